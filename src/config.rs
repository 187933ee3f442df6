//! Configuration: TOML text in, a validated [`Config`] holding every limit the broker runs with.
//!
//! Contract:
//! - Every key has a type, a range and a default. The defaults are the values written in
//!   `conf/edgemq.toml`, which is built in as [`DEFAULT_CONFIG`]; a test keeps that file and
//!   [`Config::default_values`] equal, and checks that the file shows every key.
//! - Anything wrong is one [`ConfigError`] whose `Display` is a single line naming the file and
//!   the key: a value of the wrong type or out of range, an unknown key or section (typos are
//!   never silent), a TOML syntax error (with line and column), or two keys that contradict each
//!   other (both named).
//! - [`Config::load`] reads the config file and nothing else: no sockets, no data directory, no
//!   logging, no global state. A `Config` that exists is valid; later layers do not re-check it.
//! - Every key the parser reads records the value it ends up with ([`Effective`]: what
//!   `edgemq check` prints and SIGHUP compares), so a new key needs no list of its own.
//!   `Config::load_layered` (`config/layers.rs`) puts the environment and the command line over
//!   the file; the caller passes the environment in.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::{Table, Value};

use crate::codec::QoS;

mod bridge;
mod effective;
mod layers;
mod monitor;
pub use bridge::{BridgeConfig, BridgeTls, TopicMap, BRIDGE_CLIENT_PREFIX};
pub use effective::{is_live, Effective, LIVE_KEYS};
pub use layers::{env_overrides, env_value, Loaded, Override, ENV_PREFIX};
pub use monitor::{HttpConfig, SysConfig};

/// The documented default configuration, built into the binary.
pub const DEFAULT_CONFIG: &str = include_str!("../conf/edgemq.toml");

/// What errors in [`DEFAULT_CONFIG`] name as their file.
pub const DEFAULT_CONFIG_ORIGIN: &str = "built-in conf/edgemq.toml";

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;
const TIB: u64 = 1024 * GIB;

/// The largest packet MQTT can frame: a 4-byte Remaining Length tops out at 268,435,455.
pub const PROTOCOL_MAX_PACKET_SIZE: u32 = 268_435_455;

/// The largest finite session expiry in seconds: on the wire 0xFFFFFFFF means "does not expire"
/// (MQTT 5.0 §3.1.2.11.2), so finite values stop one below it.
const MAX_FINITE_SESSION_EXPIRY_SECS: u64 = u32::MAX as u64 - 1;

/// At most this many listening sockets; more is a mistake, not a deployment.
pub const MAX_LISTENERS: usize = 64;

/// The sections a config file may have, in the order they are read.
const SECTIONS: [&str; 9] =
    ["log", "listener", "listeners", "mqtt", "sqlite", "auth", "sys", "http", "bridges"];

/// The keys of one `[listeners.NAME]` table, in the order they are read.
pub const LISTENER_KEYS: [&str; 9] = [
    "bind",
    "kind",
    "path",
    "allow_anonymous",
    "certfile",
    "keyfile",
    "cafile",
    "require_certificate",
    "use_identity_as_username",
];

/// Log levels by their config and command-line names.
pub const LOG_LEVELS: [(&str, log::Level); 5] = [
    ("error", log::Level::Error),
    ("warn", log::Level::Warn),
    ("info", log::Level::Info),
    ("debug", log::Level::Debug),
    ("trace", log::Level::Trace),
];

/// The whole validated configuration. Fields mirror the file: `config.mqtt.max_inflight` is
/// `[mqtt] max_inflight`.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub log: LogConfig,
    pub listener: ListenerConfig,
    /// `[listeners.NAME]` tables, in file order (TOML tables are read sorted by name).
    pub listeners: Vec<NamedListener>,
    pub mqtt: MqttConfig,
    pub sqlite: SqliteConfig,
    pub auth: AuthConfig,
    /// `[bridges.NAME]`, in name order (see `config/bridge.rs`); none by default.
    pub bridges: Vec<BridgeConfig>,
    /// `[sys]` and `[http]` (see `config/monitor.rs`).
    pub sys: SysConfig,
    pub http: HttpConfig,
}

/// `[auth]`: who may connect and what they may do. Mosquitto's keys, Mosquitto's file formats.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuthConfig {
    /// Whether clients without a user name are accepted; `None` ("auto") = only when every
    /// listener is on a loopback address (see [`AuthConfig::anonymous_allowed`]).
    pub allow_anonymous: Option<bool>,
    /// Mosquitto password file (`user:$7$...`); `None` = no password checks.
    pub password_file: Option<PathBuf>,
    /// Mosquitto ACL file; `None` = every topic allowed.
    pub acl_file: Option<PathBuf>,
}

impl AuthConfig {
    /// `allow_anonymous` resolved against the listeners: "auto" accepts anonymous clients only
    /// when every address is loopback, as Mosquitto 2.0 does in its local-only mode.
    pub fn anonymous_allowed(&self, bind: &[SocketAddr]) -> bool {
        self.allow_anonymous.unwrap_or_else(|| bind.iter().all(|a| a.ip().is_loopback()))
    }
}

/// `[log]`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogConfig {
    /// Most verbose level logged.
    pub level: log::Level,
}

/// `[listener]`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerConfig {
    /// Addresses to accept MQTT over TCP on: at least one, no duplicates.
    pub bind: Vec<SocketAddr>,
    /// Connections the kernel queues for each listener (this one and every
    /// `[listeners.NAME]`) before edgemq accepts them: listen(2)'s backlog, capped by
    /// `/proc/sys/net/core/somaxconn`.
    pub backlog: u32,
}

/// How a listener's clients speak to it (`listeners.NAME.kind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListenerKind {
    /// MQTT over plain TCP.
    Tcp,
    /// MQTT over TLS 1.2 / 1.3 (needs the `tls` build feature).
    Tls,
    /// MQTT over WebSockets (RFC 6455; needs the `websocket` build feature).
    Ws,
    /// MQTT over WebSockets over TLS (needs the `websocket` and `tls` build features).
    Wss,
}

const LISTENER_KIND_NAMES: [(&str, ListenerKind); 4] = [
    ("tcp", ListenerKind::Tcp),
    ("tls", ListenerKind::Tls),
    ("ws", ListenerKind::Ws),
    ("wss", ListenerKind::Wss),
];

/// The HTTP path a `ws`/`wss` listener upgrades when `path` is not set: the one MQTT.js,
/// paho and NanoMQ use.
pub const DEFAULT_WEBSOCKET_PATH: &str = "/mqtt";
/// Longest `listeners.NAME.path`.
const MAX_WEBSOCKET_PATH: usize = 256;

impl ListenerKind {
    /// The config-file spelling.
    pub fn name(self) -> &'static str {
        match self {
            ListenerKind::Tcp => "tcp",
            ListenerKind::Tls => "tls",
            ListenerKind::Ws => "ws",
            ListenerKind::Wss => "wss",
        }
    }

    /// TLS is (part of) the transport: `tls` and `wss`.
    pub fn uses_tls(self) -> bool {
        matches!(self, ListenerKind::Tls | ListenerKind::Wss)
    }

    /// Clients speak WebSocket: `ws` and `wss`.
    pub fn uses_websocket(self) -> bool {
        matches!(self, ListenerKind::Ws | ListenerKind::Wss)
    }
}

/// One `[listeners.NAME]` table. Checked as a whole: a `tls` or `wss` listener has `certfile`
/// and `keyfile`; the TLS keys appear on `tls`/`wss` listeners only; `require_certificate` and
/// `use_identity_as_username` need a `cafile` to verify client certificates with; `path`
/// appears on `ws`/`wss` listeners only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamedListener {
    /// `NAME`: 1 to 32 of `A-Z a-z 0-9 _ -`.
    pub name: String,
    pub bind: SocketAddr,
    pub kind: ListenerKind,
    /// Overrides `auth.allow_anonymous` for this listener's clients; `None` = the global one.
    pub allow_anonymous: Option<bool>,
    /// The TLS files; `Some` exactly when `kind` is `tls` or `wss`.
    pub tls: Option<ListenerTls>,
    /// The WebSocket settings; `Some` exactly when `kind` is `ws` or `wss`.
    pub websocket: Option<ListenerWebSocket>,
}

/// The WebSocket part of a `[listeners.NAME]` table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerWebSocket {
    /// The request path upgraded to MQTT (`/mqtt` by default); the query string is ignored.
    pub path: String,
}

/// The TLS part of a `[listeners.NAME]` table. Paths only: the files are read by `net` at
/// start-up and on SIGHUP, not by the config parser.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerTls {
    /// PEM: the server certificate first, then the intermediates.
    pub certfile: PathBuf,
    /// PEM: the private key (PKCS#8, PKCS#1 or SEC1).
    pub keyfile: PathBuf,
    /// PEM: the CAs client certificates are verified against; without it none are asked for.
    pub cafile: Option<PathBuf>,
    /// A client without a certificate the CAs signed fails the handshake.
    pub require_certificate: bool,
    /// The client certificate's Common Name becomes the MQTT username.
    pub use_identity_as_username: bool,
}

impl NamedListener {
    /// `listeners.NAME.KEY`, as errors name it.
    pub fn key(&self, key: &str) -> String {
        format!("listeners.{}.{key}", self.name)
    }
}

/// `[mqtt]`: protocol limits and features. See `conf/edgemq.toml` for what each one does.
#[derive(Clone, Debug, PartialEq)]
pub struct MqttConfig {
    /// Open connections at once, 1..=1_000_000.
    pub max_connections: usize,
    /// Open connections from one IP address (CONNECTed or not), 0..=1_000_000; 0 = no limit.
    pub max_connections_per_address: usize,
    /// Connections accepted that have not completed CONNECT (TLS handshakes included),
    /// 0..=1_000_000; 0 = no limit of their own.
    pub max_pending_connections: usize,
    /// Sessions kept, online and offline, 1..=10_000_000 and at least `max_connections`.
    pub max_sessions: usize,
    /// Subscriptions per session, 1..=1_000_000.
    pub max_subscriptions_per_session: usize,
    /// Levels of a topic filter, topic name or will topic, 1..=65535.
    pub max_topic_levels: usize,
    /// Bytes of one session's topic filters together, 1KiB..=1GiB.
    pub max_subscription_bytes: usize,
    /// Largest whole packet in either direction, 64..=268_435_455 bytes.
    pub max_packet_size: u32,
    /// Largest CONNECT, the one packet a client sends before it is known,
    /// 64..=268_435_455 bytes; `max_packet_size` applies too.
    pub max_connect_packet_size: u32,
    /// Per-session outbound QoS 1/2 window and the v5 Receive Maximum we advertise, 1..=65535.
    pub max_inflight: u16,
    /// In-memory messages per online session waiting for inflight space, 0..=1_000_000.
    pub max_queued_messages: usize,
    /// Time from accept to a complete CONNECT, 100ms..=1h.
    pub connect_timeout: Duration,
    /// Keep Alive is enforced as `keepalive * keepalive_multiplier`, 1.0..=10.0.
    pub keepalive_multiplier: f64,
    /// Largest Keep Alive in seconds; 0 = no limit. v5 clients asking more get Server Keep Alive.
    pub max_keepalive: u16,
    pub retain_available: bool,
    /// Retained messages stored at once, 1..=100_000_000.
    pub max_retained_messages: u64,
    /// Bytes of all retained messages, 1KiB..=1TiB.
    pub max_retained_bytes: u64,
    /// v5 Topic Alias Maximum we advertise; 0 = no aliases.
    pub max_topic_alias: u16,
    pub allow_zero_length_clientid: bool,
    /// Highest QoS granted.
    pub max_qos: QoS,
    /// Whether QoS 0 messages are queued for offline sessions.
    pub queue_qos0: bool,
    /// How long an abandoned 3.1.1 persistent session is kept, whole seconds; `None` = never
    /// expires.
    pub persistent_session_expiry: Option<Duration>,
    /// Cap on the v5 Session Expiry Interval, whole seconds; `None` = no cap.
    pub max_session_expiry: Option<Duration>,
    /// Per-connection output queue cap in bytes, 4KiB..=1GiB and at least `max_packet_size`.
    pub tx_buffer_limit: usize,
    /// Output queued for all connections together: 0 (no global budget) or from
    /// `tx_buffer_limit` to 1GiB.
    pub tx_buffer_total: usize,
    pub wildcard_subscription_available: bool,
    pub subscription_identifiers_available: bool,
    /// Longest one client's congestion may pause another client's input, 10ms..=60s.
    pub max_pause: Duration,
    /// What happens to a subscriber congested for longer than `max_pause`.
    pub slow_subscriber: SlowSubscriber,
    /// Whether `$share/GROUP/FILTER` subscriptions are offered (told to v5 clients in CONNACK).
    pub shared_subscription_available: bool,
    /// How a shared subscription group picks the member a message goes to.
    pub shared_policy: SharedPolicy,
    /// Whether the broker assigns topic aliases on what it sends to v5 clients.
    pub outbound_topic_alias: OutboundTopicAlias,
    /// Response Information sent to v5 clients that ask for it (`None`: not sent).
    pub response_information: Option<String>,
}

/// `[sqlite]`: the on-disk store. Names follow NanoMQ's `sqlite` section where they overlap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SqliteConfig {
    /// Directory holding the database.
    pub mounted_file_path: PathBuf,
    pub durability: Durability,
    /// Global cap on stored messages, 1..=1_000_000_000.
    pub disk_cache_size: u64,
    /// Stored messages per session, 1..=`disk_cache_size`.
    pub max_queued_per_session: u64,
    /// Stored bytes per session, 1KiB..=1TiB.
    pub max_queued_bytes_per_session: u64,
    pub overflow: Overflow,
    /// Messages buffered before a batch is written, 1..=1_000_000.
    pub flush_mem_threshold: usize,
    /// Longest wait before a batch is written, in milliseconds, 1..=60_000. See
    /// [`SqliteConfig::flush_interval`].
    pub flush_interval_ms: u64,
    /// 3.1.1 resend of unacknowledged inflight messages; `Duration::ZERO` = off. 0..=1d.
    pub resend_interval: Duration,
    /// Cap on the database size in bytes, write-ahead log included; 0 = none. Writes past it
    /// fail as on a full disk.
    pub max_db_size: u64,
    /// Bound on the write-ahead log, 64KiB..=64MiB: it is checkpointed at half of it and
    /// truncated to it; also the size of the reserve file kept for a full disk.
    pub max_wal_size: u64,
    /// What start-up does with a database that is corrupt.
    pub on_corrupt: OnCorrupt,
}

/// What start-up does with a corrupt database file (`sqlite.on_corrupt`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnCorrupt {
    /// Stop with one line naming the file (exit 1); the file is left as it is.
    Refuse,
    /// Rename the file and its `-wal`/`-shm` aside with a timestamp (never delete them), log
    /// an error naming both names, and start with an empty store.
    Quarantine,
}

const ON_CORRUPT_NAMES: [(&str, OnCorrupt); 2] =
    [("refuse", OnCorrupt::Refuse), ("quarantine", OnCorrupt::Quarantine)];

/// When store writes reach the disk (`sqlite.durability`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Each batch is committed and synced before the acknowledgements that depend on it.
    Sync,
    /// Acknowledgements go out at once; writes are committed every `flush_mem_threshold`
    /// messages or `flush_interval_ms`, each commit fsync'd (a crash loses up to one batch).
    Batch,
    /// The database lives in memory; nothing survives a restart.
    Memory,
}

/// What happens when a session queue or the store is full (`sqlite.overflow`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overflow {
    /// Drop the oldest queued message of that session to make room.
    DropOldest,
    /// Drop the new message for that session.
    DropNew,
    /// Refuse the publish (v5: Quota exceeded); 3.1.1 publishers cannot be told, so it is dropped.
    Reject,
}

/// How a shared subscription group (`$share/GROUP/FILTER`) picks one member for a message
/// (`mqtt.shared_policy`), among the members that can take it now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SharedPolicy {
    /// Each member in turn.
    RoundRobin,
    /// A member picked at random.
    Random,
    /// The member picked by a hash of the publisher's client id and the member's: one
    /// publisher's messages keep going to the same member while it can take them.
    Sticky,
}

/// Topic aliases on PUBLISH packets the broker sends to v5 clients (`mqtt.outbound_topic_alias`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutboundTopicAlias {
    /// Assigned per connection; the least recently used is replaced when all are taken.
    Lru,
    /// Never: every PUBLISH carries its topic.
    Off,
}

/// What happens to a subscriber that stayed congested for longer than `mqtt.max_pause`
/// (`mqtt.slow_subscriber`). Either way it pauses no publisher until it has drained.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlowSubscriber {
    /// Messages past its queue (clean session) or output limit are dropped and counted; a
    /// persistent session's QoS 1/2 messages still go to its queue in the store.
    Drop,
    /// It is disconnected (MQTT 5.0: DISCONNECT "Quota exceeded").
    Disconnect,
}

const SLOW_SUBSCRIBER_NAMES: [(&str, SlowSubscriber); 2] =
    [("drop", SlowSubscriber::Drop), ("disconnect", SlowSubscriber::Disconnect)];

const SHARED_POLICY_NAMES: [(&str, SharedPolicy); 3] = [
    ("round_robin", SharedPolicy::RoundRobin),
    ("random", SharedPolicy::Random),
    ("sticky", SharedPolicy::Sticky),
];

const OUTBOUND_TOPIC_ALIAS_NAMES: [(&str, OutboundTopicAlias); 2] =
    [("lru", OutboundTopicAlias::Lru), ("off", OutboundTopicAlias::Off)];

const DURABILITY_NAMES: [(&str, Durability); 3] =
    [("sync", Durability::Sync), ("batch", Durability::Batch), ("memory", Durability::Memory)];

const OVERFLOW_NAMES: [(&str, Overflow); 3] = [
    ("drop_oldest", Overflow::DropOldest),
    ("drop_new", Overflow::DropNew),
    ("reject", Overflow::Reject),
];

impl Durability {
    /// The config-file spelling.
    pub fn name(self) -> &'static str {
        match self {
            Durability::Sync => "sync",
            Durability::Batch => "batch",
            Durability::Memory => "memory",
        }
    }
}

impl Overflow {
    /// The config-file spelling.
    pub fn name(self) -> &'static str {
        match self {
            Overflow::DropOldest => "drop_oldest",
            Overflow::DropNew => "drop_new",
            Overflow::Reject => "reject",
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { level: log::Level::Info }
    }
}

impl Default for ListenerConfig {
    fn default() -> Self {
        ListenerConfig { bind: vec![SocketAddr::from(([127, 0, 0, 1], 1883))], backlog: 1024 }
    }
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            max_connections: 1024,
            max_connections_per_address: 64,
            max_pending_connections: 256,
            max_sessions: 4096,
            max_subscriptions_per_session: 128,
            max_topic_levels: 200,
            max_subscription_bytes: 64 * 1024,
            max_packet_size: 1024 * 1024,
            max_connect_packet_size: 100 * 1024,
            max_inflight: 128,
            max_queued_messages: 1000,
            connect_timeout: Duration::from_secs(10),
            keepalive_multiplier: 1.5,
            max_keepalive: 65535,
            retain_available: true,
            max_retained_messages: 10_000,
            max_retained_bytes: 16 * MIB,
            max_topic_alias: 16,
            allow_zero_length_clientid: true,
            max_qos: QoS::ExactlyOnce,
            queue_qos0: false,
            persistent_session_expiry: None,
            max_session_expiry: None,
            tx_buffer_limit: 256 * 1024,
            tx_buffer_total: 16 * 1024 * 1024,
            wildcard_subscription_available: true,
            subscription_identifiers_available: true,
            max_pause: Duration::from_secs(1),
            slow_subscriber: SlowSubscriber::Drop,
            shared_subscription_available: true,
            shared_policy: SharedPolicy::RoundRobin,
            outbound_topic_alias: OutboundTopicAlias::Lru,
            response_information: None,
        }
    }
}

impl Default for SqliteConfig {
    fn default() -> Self {
        SqliteConfig {
            mounted_file_path: PathBuf::from("./data"),
            durability: Durability::Sync,
            disk_cache_size: 102_400,
            max_queued_per_session: 100_000,
            max_queued_bytes_per_session: 64 * MIB,
            overflow: Overflow::DropOldest,
            flush_mem_threshold: 100,
            flush_interval_ms: 100,
            resend_interval: Duration::ZERO,
            max_db_size: 0,
            max_wal_size: 512 * KIB,
            on_corrupt: OnCorrupt::Refuse,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config::default_values()
    }
}

impl SqliteConfig {
    /// `flush_interval_ms` as a `Duration`.
    pub fn flush_interval(&self) -> Duration {
        Duration::from_millis(self.flush_interval_ms)
    }
}

impl Config {
    /// The defaults, as written in `conf/edgemq.toml` (a test keeps the two equal).
    pub fn default_values() -> Config {
        Config {
            log: LogConfig::default(),
            listener: ListenerConfig::default(),
            listeners: Vec::new(),
            mqtt: MqttConfig::default(),
            sqlite: SqliteConfig::default(),
            bridges: Vec::new(),
            auth: AuthConfig::default(),
            sys: SysConfig::default(),
            http: HttpConfig::default(),
        }
    }

    /// Every address the broker listens on: `listener.bind` (after `--listen`) and each
    /// `[listeners.NAME]` (what `auth.allow_anonymous = "auto"` looks at).
    pub fn all_binds(&self) -> Vec<SocketAddr> {
        let named = self.listeners.iter().map(|l| l.bind);
        self.listener.bind.iter().copied().chain(named).collect()
    }

    /// Parses and validates [`DEFAULT_CONFIG`]. Cannot fail in a tested build; it returns a
    /// `Result` anyway so that nothing on the start-up path can panic.
    pub fn embedded_default() -> Result<Config, ConfigError> {
        Config::from_toml_str(DEFAULT_CONFIG, DEFAULT_CONFIG_ORIGIN)
    }

    /// Reads and validates the config file at `path`. Errors name `path` as the file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let origin = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(text) => Config::from_toml_str(&text, &origin),
            Err(e) => {
                Err(ConfigError { origin, kind: ConfigErrorKind::Read { reason: e.to_string() } })
            }
        }
    }

    /// Parses and validates TOML text. `origin` is what errors call the file (usually its path).
    /// Keys that are absent keep their defaults.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Config, ConfigError> {
        parse_with_keys(text, origin).map(|(config, _keys)| config)
    }
}

/// Parses like [`Config::from_toml_str`] and also returns every key the parser knows, as
/// `"section.key"` in reading order (tests check the default file against this list).
fn parse_with_keys(text: &str, origin: &str) -> Result<(Config, Vec<String>), ConfigError> {
    let root = parse_toml(text, origin)?;
    parse_table(root, origin, CrossCheck::Yes).map(|(config, known, _)| (config, known))
}

/// TOML text to a table; errors give the line and column.
fn parse_toml(text: &str, origin: &str) -> Result<Table, ConfigError> {
    text.parse().map_err(|e: toml::de::Error| syntax_error(text, origin, &e))
}

/// Whether [`parse_table`] checks the rules between keys (an environment variable is checked
/// alone first, where the other keys still have their defaults).
#[derive(Clone, Copy, PartialEq, Eq)]
enum CrossCheck {
    Yes,
    No,
}

/// Reads and validates a parsed TOML table: the config, every key the parser knows and the
/// effective values (every key with the value it ended up with, defaults filled in).
fn parse_table(
    mut root: Table,
    origin: &str,
    cross: CrossCheck,
) -> Result<(Config, Vec<String>, Table), ConfigError> {
    let mut config = Config::default_values();
    let mut known = Vec::new();
    let mut effective = Table::new();
    // `[listeners.NAME]` and `[bridges.NAME]`, as `listeners` -> `NAME` -> keys.
    let mut effective_named = Table::new();
    let mut done = |(keys, values): (Vec<String>, Table), name: &str| {
        known.extend(keys);
        effective.insert(name.to_string(), Value::Table(values));
    };

    let mut s = Section::open(&mut root, "log", origin)?;
    s.choice(&mut config.log.level, "level", &LOG_LEVELS)?;
    let name = s.name.clone();
    done(s.finish()?, &name);

    let mut s = Section::open(&mut root, "listener", origin)?;
    s.bind(&mut config.listener.bind, "bind")?;
    s.integer(&mut config.listener.backlog, "backlog", 1, 65_535)?;
    let name = s.name.clone();
    done(s.finish()?, &name);

    config.listeners = read_listeners(&mut root, origin, &mut effective_named)?;

    let m = &mut config.mqtt;
    let mut s = Section::open(&mut root, "mqtt", origin)?;
    s.integer(&mut m.max_connections, "max_connections", 1, 1_000_000)?;
    s.integer(&mut m.max_connections_per_address, "max_connections_per_address", 0, 1_000_000)?;
    s.integer(&mut m.max_pending_connections, "max_pending_connections", 0, 1_000_000)?;
    s.integer(&mut m.max_sessions, "max_sessions", 1, 10_000_000)?;
    s.integer(&mut m.max_subscriptions_per_session, "max_subscriptions_per_session", 1, 1_000_000)?;
    s.integer(&mut m.max_topic_levels, "max_topic_levels", 1, 65_535)?;
    s.size(&mut m.max_subscription_bytes, "max_subscription_bytes", KIB, GIB)?;
    s.size(&mut m.max_packet_size, "max_packet_size", 64, u64::from(PROTOCOL_MAX_PACKET_SIZE))?;
    s.size(
        &mut m.max_connect_packet_size,
        "max_connect_packet_size",
        64,
        u64::from(PROTOCOL_MAX_PACKET_SIZE),
    )?;
    s.integer(&mut m.max_inflight, "max_inflight", 1, u16::MAX)?;
    s.integer(&mut m.max_queued_messages, "max_queued_messages", 0, 1_000_000)?;
    s.duration(
        &mut m.connect_timeout,
        "connect_timeout",
        DurationRange::any(Duration::from_millis(100), Duration::from_secs(3600)),
    )?;
    s.float(&mut m.keepalive_multiplier, "keepalive_multiplier", 1.0, 10.0)?;
    s.integer(&mut m.max_keepalive, "max_keepalive", 0, u16::MAX)?;
    s.boolean(&mut m.retain_available, "retain_available")?;
    s.integer(&mut m.max_retained_messages, "max_retained_messages", 1, 100_000_000)?;
    s.size(&mut m.max_retained_bytes, "max_retained_bytes", KIB, TIB)?;
    s.integer(&mut m.max_topic_alias, "max_topic_alias", 0, u16::MAX)?;
    s.boolean(&mut m.allow_zero_length_clientid, "allow_zero_length_clientid")?;
    s.qos(&mut m.max_qos, "max_qos")?;
    s.boolean(&mut m.queue_qos0, "queue_qos0")?;
    s.duration_or_never(
        &mut m.persistent_session_expiry,
        "persistent_session_expiry",
        DurationRange::whole_seconds(1, MAX_FINITE_SESSION_EXPIRY_SECS),
    )?;
    s.duration_or_never(
        &mut m.max_session_expiry,
        "max_session_expiry",
        DurationRange::whole_seconds(0, MAX_FINITE_SESSION_EXPIRY_SECS),
    )?;
    s.size(&mut m.tx_buffer_limit, "tx_buffer_limit", 4 * KIB, GIB)?;
    s.size(&mut m.tx_buffer_total, "tx_buffer_total", 0, GIB)?;
    s.boolean(&mut m.wildcard_subscription_available, "wildcard_subscription_available")?;
    s.boolean(&mut m.subscription_identifiers_available, "subscription_identifiers_available")?;
    s.duration(
        &mut m.max_pause,
        "max_pause",
        DurationRange::any(Duration::from_millis(10), Duration::from_secs(60)),
    )?;
    s.choice(&mut m.slow_subscriber, "slow_subscriber", &SLOW_SUBSCRIBER_NAMES)?;
    s.boolean(&mut m.shared_subscription_available, "shared_subscription_available")?;
    s.choice(&mut m.shared_policy, "shared_policy", &SHARED_POLICY_NAMES)?;
    s.choice(&mut m.outbound_topic_alias, "outbound_topic_alias", &OUTBOUND_TOPIC_ALIAS_NAMES)?;
    s.mqtt_string(&mut m.response_information, "response_information")?;
    let name = s.name.clone();
    done(s.finish()?, &name);

    let q = &mut config.sqlite;
    let mut s = Section::open(&mut root, "sqlite", origin)?;
    s.path(&mut q.mounted_file_path, "mounted_file_path")?;
    s.choice(&mut q.durability, "durability", &DURABILITY_NAMES)?;
    s.integer(&mut q.disk_cache_size, "disk_cache_size", 1, 1_000_000_000)?;
    s.integer(&mut q.max_queued_per_session, "max_queued_per_session", 1, 1_000_000_000)?;
    s.size(&mut q.max_queued_bytes_per_session, "max_queued_bytes_per_session", KIB, TIB)?;
    s.choice(&mut q.overflow, "overflow", &OVERFLOW_NAMES)?;
    s.integer(&mut q.flush_mem_threshold, "flush_mem_threshold", 1, 1_000_000)?;
    s.integer(&mut q.flush_interval_ms, "flush_interval_ms", 1, 60_000)?;
    s.duration(
        &mut q.resend_interval,
        "resend_interval",
        DurationRange::any(Duration::ZERO, Duration::from_secs(86_400)),
    )?;
    s.size(&mut q.max_db_size, "max_db_size", 0, TIB)?;
    s.size(&mut q.max_wal_size, "max_wal_size", 64 * KIB, 64 * MIB)?;
    s.choice(&mut q.on_corrupt, "on_corrupt", &ON_CORRUPT_NAMES)?;
    let name = s.name.clone();
    done(s.finish()?, &name);

    let a = &mut config.auth;
    let mut s = Section::open(&mut root, "auth", origin)?;
    s.auto_bool(&mut a.allow_anonymous, "allow_anonymous")?;
    s.optional_file(&mut a.password_file, "password_file")?;
    s.optional_file(&mut a.acl_file, "acl_file")?;
    let name = s.name.clone();
    done(s.finish()?, &name);

    for (name, section) in
        monitor::parse_monitor(&mut root, origin, &mut config.sys, &mut config.http)?
    {
        done(section, &name);
    }

    config.bridges = bridge::parse_bridges(
        &mut root,
        origin,
        &config.mqtt,
        &config.sqlite,
        &mut effective_named,
    )?;

    // Whatever is left at the top level is a section or key nobody reads.
    if let Some((name, value)) = root.iter().next() {
        return Err(unknown_top_level(origin, name, value, &known));
    }

    if cross == CrossCheck::Yes {
        check_cross_keys(&config, origin)?;
    }
    effective.extend(effective_named);
    Ok((config, known, effective))
}

/// Rules between keys; each error names both keys and says why the pair cannot work.
fn check_cross_keys(config: &Config, origin: &str) -> Result<(), ConfigError> {
    let conflict = |a: &str, b: &str, message: String| ConfigError {
        origin: origin.to_string(),
        kind: ConfigErrorKind::Conflict { keys: [a.to_string(), b.to_string()], message },
    };
    let m = &config.mqtt;
    let q = &config.sqlite;
    let total = config.listener.bind.len() + config.listeners.len();
    if total > MAX_LISTENERS {
        return Err(conflict(
            "listeners",
            "listener.bind",
            format!(
                "listener.bind and [listeners.*] open {total} sockets together; at most \
                 {MAX_LISTENERS}"
            ),
        ));
    }
    // Port 0 lets the system pick a free port, so it never collides.
    for (i, named) in config.listeners.iter().enumerate().filter(|(_, l)| l.bind.port() != 0) {
        let earlier = config.listeners[..i].iter().find(|l| l.bind == named.bind);
        let other = match earlier {
            Some(l) => Some(l.key("bind")),
            None => config.listener.bind.contains(&named.bind).then(|| "listener.bind".into()),
        };
        if let Some(other) = other {
            return Err(conflict(
                &named.key("bind"),
                &other,
                format!("{} and {other} both listen on {}", named.key("bind"), named.bind),
            ));
        }
    }
    if m.max_sessions < m.max_connections {
        return Err(conflict(
            "mqtt.max_sessions",
            "mqtt.max_connections",
            format!(
                "mqtt.max_sessions ({}) must be at least mqtt.max_connections ({}): \
                 every connection holds a session",
                m.max_sessions, m.max_connections
            ),
        ));
    }
    if m.tx_buffer_total != 0 && m.tx_buffer_total < m.tx_buffer_limit {
        return Err(conflict(
            "mqtt.tx_buffer_total",
            "mqtt.tx_buffer_limit",
            format!(
                "mqtt.tx_buffer_total ({}) must be 0 (no global budget) or at least \
                 mqtt.tx_buffer_limit ({}): all connections together cannot hold less than one",
                m.tx_buffer_total, m.tx_buffer_limit
            ),
        ));
    }
    if q.max_queued_per_session > q.disk_cache_size {
        return Err(conflict(
            "sqlite.max_queued_per_session",
            "sqlite.disk_cache_size",
            format!(
                "sqlite.max_queued_per_session ({}) must not exceed sqlite.disk_cache_size ({}): \
                 one session cannot queue more than the whole store holds",
                q.max_queued_per_session, q.disk_cache_size
            ),
        ));
    }
    Ok(())
}

/// Reads every `[listeners.NAME]` table (sorted by name, as TOML tables are).
fn read_listeners(
    root: &mut Table,
    origin: &str,
    effective: &mut Table,
) -> Result<Vec<NamedListener>, ConfigError> {
    let tables = match root.remove("listeners") {
        None => return Ok(Vec::new()),
        Some(Value::Table(t)) => t,
        Some(other) => {
            return Err(ConfigError {
                origin: origin.to_string(),
                kind: ConfigErrorKind::Invalid {
                    key: "listeners".to_string(),
                    expected: "tables [listeners.NAME]".to_string(),
                    got: show(&other),
                },
            })
        }
    };
    let mut listeners = Vec::with_capacity(tables.len());
    for (name, value) in tables {
        let key = format!("listeners.{name}");
        let invalid = |expected: &str, got: &Value| ConfigError {
            origin: origin.to_string(),
            kind: ConfigErrorKind::Invalid {
                key: key.clone(),
                expected: expected.to_string(),
                got: show(got),
            },
        };
        let valid_name = (1..=32).contains(&name.len())
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !valid_name {
            let got = Value::String(name.clone());
            return Err(invalid("a listener name of 1 to 32 letters, digits, '_' or '-'", &got));
        }
        let Value::Table(table) = value else {
            return Err(invalid("a table [listeners.NAME]", &value));
        };
        let (listener, values) = read_listener(name, table, origin)?;
        insert_named(effective, "listeners", &listener.name, values);
        listeners.push(listener);
    }
    Ok(listeners)
}

/// One `[listeners.NAME]` table; its keys are named `listeners.NAME.KEY` in errors.
fn read_listener(
    name: String,
    table: Table,
    origin: &str,
) -> Result<(NamedListener, Table), ConfigError> {
    let mut s = Section::from_table(table, "listeners".to_string(), origin);
    let prefix = |key: &str| format!("{name}.{key}");
    let rename = |mut e: ConfigError| {
        // Section errors say `listeners.KEY`; the key is `listeners.NAME.KEY`.
        match &mut e.kind {
            ConfigErrorKind::Invalid { key, .. } | ConfigErrorKind::UnknownKey { key, .. } => {
                if let Some(rest) = key.strip_prefix("listeners.") {
                    *key = format!("listeners.{}", prefix(rest));
                }
            }
            _ => {}
        }
        if let ConfigErrorKind::UnknownKey { suggestion: Some(s), .. } = &mut e.kind {
            if let Some(rest) = s.strip_prefix("listeners.") {
                *s = format!("listeners.{}", prefix(rest));
            }
        }
        e
    };
    let mut bind = Vec::new();
    let mut kind = ListenerKind::Tcp;
    let mut allow_anonymous = None;
    let mut certfile = None;
    let mut keyfile = None;
    let mut cafile = None;
    let mut require_certificate = false;
    let mut use_identity_as_username = false;
    let mut path = None;
    let mut read = |s: &mut Section| -> Result<(), ConfigError> {
        s.bind(&mut bind, "bind")?;
        s.choice(&mut kind, "kind", &LISTENER_KIND_NAMES)?;
        if let Some(value) = s.take("path") {
            match &value {
                Value::String(p)
                    if p.starts_with('/')
                        && p.len() <= MAX_WEBSOCKET_PATH
                        && p.bytes().all(|b| b.is_ascii_graphic() && b != b'?' && b != b'#') =>
                {
                    path = Some(p.clone());
                }
                _ => {
                    return Err(s.invalid(
                        "path",
                        format!(
                            "an HTTP path starting with '/', at most {MAX_WEBSOCKET_PATH} \
                             printable ASCII characters without spaces, '?' or '#'"
                        ),
                        &value,
                    ))
                }
            }
        }
        let mut anonymous = false;
        if s.table.contains_key("allow_anonymous") {
            s.boolean(&mut anonymous, "allow_anonymous")?;
            allow_anonymous = Some(anonymous);
        } else {
            s.known.push("allow_anonymous");
        }
        s.file(&mut certfile, "certfile")?;
        s.file(&mut keyfile, "keyfile")?;
        s.file(&mut cafile, "cafile")?;
        s.boolean(&mut require_certificate, "require_certificate")?;
        s.boolean(&mut use_identity_as_username, "use_identity_as_username")?;
        Ok(())
    };
    read(&mut s).map_err(rename)?;
    let (_, mut values) = s.finish().map_err(rename)?;

    let key = |k: &str| format!("listeners.{}", prefix(k));
    let conflict = |a: &str, b: &str, message: String| ConfigError {
        origin: origin.to_string(),
        kind: ConfigErrorKind::Conflict { keys: [key(a), key(b)], message },
    };
    let bind = match bind.as_slice() {
        [one] => *one,
        [] => {
            return Err(ConfigError {
                origin: origin.to_string(),
                kind: ConfigErrorKind::Invalid {
                    key: key("bind"),
                    expected: "an \"IP:port\" address (the key is required)".to_string(),
                    got: "nothing".to_string(),
                },
            })
        }
        more => {
            return Err(ConfigError {
                origin: origin.to_string(),
                kind: ConfigErrorKind::Invalid {
                    key: key("bind"),
                    expected: "one \"IP:port\" address (one listener, one socket)".to_string(),
                    got: format!("{} addresses", more.len()),
                },
            })
        }
    };
    let websocket = if kind.uses_websocket() {
        let path = path.unwrap_or_else(|| DEFAULT_WEBSOCKET_PATH.to_string());
        values.insert("path".to_string(), Value::String(path.clone()));
        Some(ListenerWebSocket { path })
    } else {
        if path.is_some() {
            return Err(conflict(
                "path",
                "kind",
                format!(
                    "{} is a WebSocket setting; {} is \"{}\" (\"ws\" or \"wss\" have a path)",
                    key("path"),
                    key("kind"),
                    kind.name()
                ),
            ));
        }
        None
    };
    let tls = match kind {
        ListenerKind::Tcp | ListenerKind::Ws => {
            let tls_keys = [
                ("certfile", certfile.is_some()),
                ("keyfile", keyfile.is_some()),
                ("cafile", cafile.is_some()),
                ("require_certificate", require_certificate),
                ("use_identity_as_username", use_identity_as_username),
            ];
            if let Some((k, _)) = tls_keys.iter().find(|(_, set)| *set) {
                return Err(conflict(
                    k,
                    "kind",
                    format!("{} is a TLS setting; {} is \"{}\"", key(k), key("kind"), kind.name()),
                ));
            }
            None
        }
        ListenerKind::Tls | ListenerKind::Wss => {
            let (Some(certfile), Some(keyfile)) = (certfile, keyfile) else {
                return Err(conflict(
                    "kind",
                    "certfile",
                    format!(
                        "{} = \"{}\" needs {} and {} (the server certificate and its key)",
                        key("kind"),
                        kind.name(),
                        key("certfile"),
                        key("keyfile")
                    ),
                ));
            };
            for (k, set) in [
                ("require_certificate", require_certificate),
                ("use_identity_as_username", use_identity_as_username),
            ] {
                if set && cafile.is_none() {
                    return Err(conflict(
                        k,
                        "cafile",
                        format!(
                            "{} needs {}: the CAs that client certificates are verified against",
                            key(k),
                            key("cafile")
                        ),
                    ));
                }
            }
            Some(ListenerTls {
                certfile,
                keyfile,
                cafile,
                require_certificate,
                use_identity_as_username,
            })
        }
    };
    Ok((NamedListener { name, bind, kind, allow_anonymous, tls, websocket }, values))
}

/// Puts the effective values of `[section.NAME]` into `effective` (`section` -> `NAME`).
fn insert_named(effective: &mut Table, section: &str, name: &str, values: Table) {
    let entry = effective.entry(section.to_string()).or_insert_with(|| Value::Table(Table::new()));
    if let Value::Table(names) = entry {
        names.insert(name.to_string(), Value::Table(values));
    }
}

// ---------------------------------------------------------------------------------------------
// Errors

/// A position in the config text, both 1-based; the column counts characters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

/// Why a configuration was refused. `Display` is one line: `FILE: ...`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The file the error is in (its path, or [`DEFAULT_CONFIG_ORIGIN`]).
    pub origin: String,
    pub kind: ConfigErrorKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigErrorKind {
    /// The file could not be read: missing, unreadable, or not UTF-8.
    Read { reason: String },
    /// The text is not valid TOML (this includes a key given twice).
    Syntax { position: Option<Position>, message: String },
    /// A `[section]` edgemq does not have.
    UnknownSection { section: String, suggestion: Option<String> },
    /// A key edgemq does not have, as `section.key`.
    UnknownKey { key: String, suggestion: Option<String> },
    /// A known key with a value of the wrong type or out of range.
    Invalid { key: String, expected: String, got: String },
    /// Two keys whose values cannot work together; `message` names both.
    Conflict { keys: [String; 2], message: String },
}

impl ConfigError {
    /// The key the error is about (`section.key`, or the section), if it is about one.
    pub fn key(&self) -> Option<&str> {
        match &self.kind {
            ConfigErrorKind::Read { .. } | ConfigErrorKind::Syntax { .. } => None,
            ConfigErrorKind::UnknownSection { section, .. } => Some(section),
            ConfigErrorKind::UnknownKey { key, .. } | ConfigErrorKind::Invalid { key, .. } => {
                Some(key)
            }
            ConfigErrorKind::Conflict { keys, .. } => Some(&keys[0]),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.origin)?;
        match &self.kind {
            ConfigErrorKind::Read { reason } => write!(f, "cannot read config file: {reason}"),
            ConfigErrorKind::Syntax { position, message } => {
                if let Some(p) = position {
                    write!(f, "line {}, column {}: ", p.line, p.column)?;
                }
                write!(f, "invalid TOML: {message}")
            }
            ConfigErrorKind::UnknownSection { section, suggestion } => {
                write!(f, "unknown section \"[{section}]\"")?;
                match suggestion {
                    Some(s) => write!(f, " (did you mean \"[{s}]\"?)"),
                    None => write!(
                        f,
                        " (sections are [log], [listener], [listeners.NAME], [mqtt], [sqlite], \
                         [auth], [sys], [http], [bridges.NAME])"
                    ),
                }
            }
            ConfigErrorKind::UnknownKey { key, suggestion } => {
                write!(f, "unknown key \"{key}\"")?;
                match suggestion {
                    Some(s) => write!(f, " (did you mean \"{s}\"?)"),
                    None => Ok(()),
                }
            }
            ConfigErrorKind::Invalid { key, expected, got } => {
                write!(f, "{key}: expected {expected}, got {got}")
            }
            ConfigErrorKind::Conflict { message, .. } => f.write_str(message),
        }
    }
}

impl std::error::Error for ConfigError {}

fn syntax_error(text: &str, origin: &str, err: &toml::de::Error) -> ConfigError {
    let position = err.span().map(|span| position_of(text, span.start));
    // toml's messages can span lines; the error must stay one line.
    let message = err
        .message()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    ConfigError { origin: origin.to_string(), kind: ConfigErrorKind::Syntax { position, message } }
}

/// The 1-based line and character column of byte `offset` in `text` (clamped to the text).
fn position_of(text: &str, offset: usize) -> Position {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    Position {
        line: before.matches('\n').count() + 1,
        column: before[line_start..].chars().count() + 1,
    }
}

fn unknown_top_level(origin: &str, name: &str, value: &Value, known: &[String]) -> ConfigError {
    let kind = if value.is_table() {
        ConfigErrorKind::UnknownSection {
            section: name.to_string(),
            suggestion: closest(name, SECTIONS).map(str::to_string),
        }
    } else {
        // A key outside any section: most likely one that belongs in a section.
        let bare = known.iter().map(|k| k.split_once('.').map_or(k.as_str(), |(_, key)| key));
        let suggestion = closest(name, bare)
            .and_then(|bare| known.iter().find(|k| k.ends_with(&format!(".{bare}"))))
            .cloned();
        ConfigErrorKind::UnknownKey { key: name.to_string(), suggestion }
    };
    ConfigError { origin: origin.to_string(), kind }
}

/// How a value is shown after "got": as it would be written in TOML, kept to one short line.
fn show(value: &Value) -> String {
    match value {
        Value::String(s) => {
            let shown = format!("{s:?}");
            if shown.chars().count() > 64 {
                let cut: String = shown.chars().take(60).collect();
                format!("{cut}...\"")
            } else {
                shown
            }
        }
        Value::Integer(i) => i.to_string(),
        Value::Float(x) => format!("{x:?}"),
        Value::Boolean(b) => b.to_string(),
        Value::Datetime(d) => d.to_string(),
        Value::Array(items) => {
            let mut parts: Vec<String> = items.iter().take(4).map(show).collect();
            if items.len() > 4 {
                parts.push("...".to_string());
            }
            format!("[{}]", parts.join(", "))
        }
        Value::Table(_) => "a table".to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// Reading one section

/// The keys of one `[section]` not yet read. Each reader takes its key out (recording it as
/// known) and writes the field only when the key is present, so absent keys keep the defaults;
/// [`Section::finish`] reports whatever nobody took.
struct Section<'a> {
    origin: &'a str,
    /// `section` or, for a named table, `section.name` (what errors print before the key).
    name: String,
    table: Table,
    known: Vec<&'static str>,
    /// The value every key read so far ends up with (see [`Section::record`]).
    effective: Table,
}

/// The range a duration key accepts.
struct DurationRange {
    min: Duration,
    max: Duration,
    /// Values that go on the wire in seconds must be whole seconds.
    whole_seconds: bool,
}

impl DurationRange {
    fn any(min: Duration, max: Duration) -> DurationRange {
        DurationRange { min, max, whole_seconds: false }
    }

    fn whole_seconds(min_secs: u64, max_secs: u64) -> DurationRange {
        DurationRange {
            min: Duration::from_secs(min_secs),
            max: Duration::from_secs(max_secs),
            whole_seconds: true,
        }
    }

    fn accepts(&self, d: Duration) -> bool {
        d >= self.min && d <= self.max && (!self.whole_seconds || d.subsec_nanos() == 0)
    }

    fn describe(&self, never: bool) -> String {
        format!(
            "a duration from {} to {}{} (integer seconds or a string like \"10s\"){}",
            format_duration(self.min),
            format_duration(self.max),
            if self.whole_seconds { " in whole seconds" } else { "" },
            if never { " or \"never\"" } else { "" }
        )
    }
}

impl<'a> Section<'a> {
    /// Takes `[name]` out of the root table; an absent section is an empty one.
    fn open(root: &mut Table, name: &'static str, origin: &'a str) -> Result<Self, ConfigError> {
        let table = match root.remove(name) {
            None => Table::new(),
            Some(Value::Table(t)) => t,
            Some(other) => {
                return Err(ConfigError {
                    origin: origin.to_string(),
                    kind: ConfigErrorKind::Invalid {
                        key: name.to_string(),
                        expected: format!("a section ([{name}])"),
                        got: show(&other),
                    },
                })
            }
        };
        Ok(Section::from_table(table, name.to_string(), origin))
    }

    /// A section over an already separated table (`[bridges.NAME]`).
    fn from_table(table: Table, name: String, origin: &'a str) -> Self {
        Section { origin, name, table, known: Vec::new(), effective: Table::new() }
    }

    fn take(&mut self, key: &'static str) -> Option<Value> {
        self.known.push(key);
        self.table.remove(key)
    }

    /// Notes the value `key` ends up with (read or default), as TOML, for the effective config.
    fn record(&mut self, key: &str, value: Value) {
        self.effective.insert(key.to_string(), value);
    }

    fn invalid(&self, key: &str, expected: String, got: &Value) -> ConfigError {
        ConfigError {
            origin: self.origin.to_string(),
            kind: ConfigErrorKind::Invalid {
                key: format!("{}.{key}", self.name),
                expected,
                got: show(got),
            },
        }
    }

    /// An integer in `min..=max`.
    fn integer<T>(
        &mut self,
        field: &mut T,
        key: &'static str,
        min: T,
        max: T,
    ) -> Result<(), ConfigError>
    where
        T: Copy + PartialOrd + fmt::Display + TryFrom<i64>,
        i64: TryFrom<T>,
    {
        if let Some(value) = self.take(key) {
            let parsed = match &value {
                Value::Integer(i) => T::try_from(*i).ok(),
                _ => None,
            };
            match parsed {
                Some(n) if n >= min && n <= max => *field = n,
                _ => {
                    return Err(self.invalid(
                        key,
                        format!("an integer between {min} and {max}"),
                        &value,
                    ))
                }
            }
        }
        self.record(key, Value::Integer(i64::try_from(*field).unwrap_or(i64::MAX)));
        Ok(())
    }

    /// A number in `min..=max`; integers are accepted too.
    fn float(
        &mut self,
        field: &mut f64,
        key: &'static str,
        min: f64,
        max: f64,
    ) -> Result<(), ConfigError> {
        if let Some(value) = self.take(key) {
            let parsed = match &value {
                Value::Float(x) => Some(*x),
                // Small integers convert exactly; anything this large is out of range anyway.
                Value::Integer(i) => i32::try_from(*i).ok().map(f64::from),
                _ => None,
            };
            match parsed {
                // NaN fails both comparisons.
                Some(x) if x >= min && x <= max => *field = x,
                _ => {
                    return Err(self.invalid(
                        key,
                        format!("a number between {min:?} and {max:?}"),
                        &value,
                    ))
                }
            }
        }
        self.record(key, Value::Float(*field));
        Ok(())
    }

    fn boolean(&mut self, field: &mut bool, key: &'static str) -> Result<(), ConfigError> {
        if let Some(value) = self.take(key) {
            match value {
                Value::Boolean(b) => *field = b,
                other => return Err(self.invalid(key, "true or false".to_string(), &other)),
            }
        }
        self.record(key, Value::Boolean(*field));
        Ok(())
    }

    /// A size in bytes in `min..=max`: an integer or a string like `"64KB"`.
    fn size<T>(
        &mut self,
        field: &mut T,
        key: &'static str,
        min: u64,
        max: u64,
    ) -> Result<(), ConfigError>
    where
        T: Copy + TryFrom<u64>,
        u64: TryFrom<T>,
    {
        if let Some(value) = self.take(key) {
            let parsed = match &value {
                Value::Integer(i) => <u64 as TryFrom<i64>>::try_from(*i).ok(),
                Value::String(s) => parse_size(s),
                _ => None,
            };
            let narrowed =
                parsed.filter(|n| (min..=max).contains(n)).and_then(|n| T::try_from(n).ok());
            match narrowed {
                Some(n) => *field = n,
                None => {
                    return Err(self.invalid(
                        key,
                        format!(
                            "a size from {} to {} (integer bytes or a string like \"1MB\")",
                            format_size(min),
                            format_size(max)
                        ),
                        &value,
                    ))
                }
            }
        }
        self.record(key, size_value(u64::try_from(*field).unwrap_or(u64::MAX)));
        Ok(())
    }

    fn duration(
        &mut self,
        field: &mut Duration,
        key: &'static str,
        range: DurationRange,
    ) -> Result<(), ConfigError> {
        if let Some(value) = self.take(key) {
            match duration_value(&value).filter(|d| range.accepts(*d)) {
                Some(d) => *field = d,
                None => return Err(self.invalid(key, range.describe(false), &value)),
            }
        }
        self.record(key, Value::String(format_duration(*field)));
        Ok(())
    }

    /// Like [`Section::duration`], and the string `"never"` gives `None`.
    fn duration_or_never(
        &mut self,
        field: &mut Option<Duration>,
        key: &'static str,
        range: DurationRange,
    ) -> Result<(), ConfigError> {
        if let Some(value) = self.take(key) {
            match &value {
                Value::String(s) if s.trim().eq_ignore_ascii_case("never") => *field = None,
                _ => match duration_value(&value).filter(|d| range.accepts(*d)) {
                    Some(d) => *field = Some(d),
                    None => return Err(self.invalid(key, range.describe(true), &value)),
                },
            }
        }
        let shown = field.map_or_else(|| "never".to_string(), format_duration);
        self.record(key, Value::String(shown));
        Ok(())
    }

    /// One of a fixed set of names (ASCII case-insensitive).
    fn choice<T: Copy + PartialEq>(
        &mut self,
        field: &mut T,
        key: &'static str,
        options: &[(&'static str, T)],
    ) -> Result<(), ConfigError> {
        if let Some(value) = self.take(key) {
            let found = match &value {
                Value::String(s) => lookup(options, s),
                _ => None,
            };
            match found {
                Some(v) => *field = v,
                None => {
                    let names: Vec<String> =
                        options.iter().map(|(n, _)| format!("\"{n}\"")).collect();
                    return Err(self.invalid(key, format!("one of {}", names.join(", ")), &value));
                }
            }
        }
        if let Some((name, _)) = options.iter().find(|(_, v)| v == field) {
            self.record(key, Value::String((*name).to_string()));
        }
        Ok(())
    }

    fn qos(&mut self, field: &mut QoS, key: &'static str) -> Result<(), ConfigError> {
        if let Some(value) = self.take(key) {
            let parsed = match &value {
                Value::Integer(i) => u8::try_from(*i).ok().and_then(QoS::from_bits),
                _ => None,
            };
            match parsed {
                Some(q) => *field = q,
                None => {
                    return Err(self.invalid(key, "an integer between 0 and 2".to_string(), &value))
                }
            }
        }
        self.record(key, Value::Integer(i64::from(*field as u8)));
        Ok(())
    }

    /// A string sent to clients as an MQTT UTF-8 string: at most 65535 bytes, no U+0000
    /// (MQTT-1.5.4-2); `""` means none.
    fn mqtt_string(
        &mut self,
        field: &mut Option<String>,
        key: &'static str,
    ) -> Result<(), ConfigError> {
        if let Some(value) = self.take(key) {
            match &value {
                Value::String(s) if s.len() <= usize::from(u16::MAX) && !s.contains('\0') => {
                    *field = (!s.is_empty()).then(|| s.clone());
                }
                _ => {
                    return Err(self.invalid(
                        key,
                        "a string of at most 65535 bytes without U+0000".to_string(),
                        &value,
                    ))
                }
            }
        }
        self.record(key, Value::String(field.clone().unwrap_or_default()));
        Ok(())
    }

    fn path(&mut self, field: &mut PathBuf, key: &'static str) -> Result<(), ConfigError> {
        if let Some(value) = self.take(key) {
            match &value {
                Value::String(s) if !s.is_empty() && !s.contains('\0') => {
                    *field = PathBuf::from(s);
                }
                _ => {
                    return Err(self.invalid(key, "a non-empty directory path".to_string(), &value))
                }
            }
        }
        self.record(key, Value::String(field.to_string_lossy().into_owned()));
        Ok(())
    }

    /// `true`, `false` or `"auto"` (`None`).
    fn auto_bool(
        &mut self,
        field: &mut Option<bool>,
        key: &'static str,
    ) -> Result<(), ConfigError> {
        if let Some(value) = self.take(key) {
            match &value {
                Value::Boolean(b) => *field = Some(*b),
                Value::String(s) if s.trim().eq_ignore_ascii_case("auto") => *field = None,
                _ => return Err(self.invalid(key, "true, false or \"auto\"".to_string(), &value)),
            }
        }
        self.record(key, field.map_or_else(|| Value::String("auto".into()), Value::Boolean));
        Ok(())
    }

    /// A file path, or `""` for none.
    fn optional_file(
        &mut self,
        field: &mut Option<PathBuf>,
        key: &'static str,
    ) -> Result<(), ConfigError> {
        if let Some(value) = self.take(key) {
            match &value {
                Value::String(s) if s.is_empty() => *field = None,
                Value::String(s) if !s.contains('\0') => *field = Some(PathBuf::from(s)),
                _ => {
                    return Err(self.invalid(
                        key,
                        "a file path, or \"\" for none".to_string(),
                        &value,
                    ))
                }
            }
        }
        let shown = field.as_ref().map_or_else(String::new, |p| p.to_string_lossy().into_owned());
        self.record(key, Value::String(shown));
        Ok(())
    }

    /// A file path (checked to be readable later, by whoever reads the file); absent = `None`.
    fn file(&mut self, field: &mut Option<PathBuf>, key: &'static str) -> Result<(), ConfigError> {
        if let Some(value) = self.take(key) {
            match &value {
                Value::String(s) if !s.is_empty() && !s.contains('\0') => {
                    *field = Some(PathBuf::from(s));
                }
                _ => return Err(self.invalid(key, "a non-empty file path".to_string(), &value)),
            }
        }
        if let Some(path) = field {
            let shown = path.to_string_lossy().into_owned();
            self.record(key, Value::String(shown));
        }
        Ok(())
    }

    /// A list of `IP:port` strings (or one string): at least one, none twice.
    fn bind(&mut self, field: &mut Vec<SocketAddr>, key: &'static str) -> Result<(), ConfigError> {
        if let Some(value) = self.take(key) {
            *field = self.addresses(key, &value)?;
        }
        let shown = field.iter().map(|a| Value::String(a.to_string())).collect();
        self.record(key, Value::Array(shown));
        Ok(())
    }

    fn addresses(&self, key: &'static str, value: &Value) -> Result<Vec<SocketAddr>, ConfigError> {
        let items: Vec<&Value> = match value {
            Value::String(_) => vec![value],
            Value::Array(items) => items.iter().collect(),
            _ => {
                return Err(self.invalid(
                    key,
                    "an \"IP:port\" string or a list of them".to_string(),
                    value,
                ))
            }
        };
        if items.is_empty() {
            return Err(self.invalid(key, "at least one \"IP:port\" address".to_string(), value));
        }
        if items.len() > MAX_LISTENERS {
            return Err(ConfigError {
                origin: self.origin.to_string(),
                kind: ConfigErrorKind::Invalid {
                    key: format!("{}.{key}", self.name),
                    expected: format!("at most {MAX_LISTENERS} addresses"),
                    got: items.len().to_string(),
                },
            });
        }
        let mut addrs = Vec::with_capacity(items.len());
        for item in items {
            let addr = match item {
                Value::String(s) => parse_socket_addr(s),
                _ => None,
            };
            let Some(addr) = addr else {
                return Err(self.invalid(
                    key,
                    "an \"IP:port\" address such as \"127.0.0.1:1883\" or \"[::]:1883\""
                        .to_string(),
                    item,
                ));
            };
            if addrs.contains(&addr) {
                return Err(self.invalid(key, "each address once".to_string(), item));
            }
            addrs.push(addr);
        }
        Ok(addrs)
    }

    /// Reports the first key nobody read (with a suggestion when one is close) and returns the
    /// section's known keys as `section.key` and the values its keys ended up with.
    fn finish(self) -> Result<(Vec<String>, Table), ConfigError> {
        if let Some(key) = self.table.keys().next() {
            let suggestion =
                closest(key, self.known.iter().copied()).map(|k| format!("{}.{k}", self.name));
            return Err(ConfigError {
                origin: self.origin.to_string(),
                kind: ConfigErrorKind::UnknownKey {
                    key: format!("{}.{key}", self.name),
                    suggestion,
                },
            });
        }
        let known = self.known.iter().map(|k| format!("{}.{k}", self.name)).collect();
        Ok((known, self.effective))
    }
}

/// A size as the config shows it: `"64KB"` when a unit fits exactly, else the integer.
fn size_value(bytes: u64) -> Value {
    if bytes != 0 && bytes % KIB == 0 {
        Value::String(format_size(bytes))
    } else {
        Value::Integer(i64::try_from(bytes).unwrap_or(i64::MAX))
    }
}

fn lookup<T: Copy>(options: &[(&str, T)], name: &str) -> Option<T> {
    let name = name.trim();
    options.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| *v)
}

fn duration_value(value: &Value) -> Option<Duration> {
    match value {
        Value::Integer(i) => u64::try_from(*i).ok().map(Duration::from_secs),
        Value::String(s) => parse_duration(s),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Value syntax shared with the command line

/// A log level by name (`error`, `warn`, `info`, `debug`, `trace`; ASCII case-insensitive).
pub fn parse_log_level(name: &str) -> Option<log::Level> {
    lookup(&LOG_LEVELS, name)
}

/// An `IP:port` socket address (`127.0.0.1:1883`, `[::1]:1883`); host names are not resolved.
pub fn parse_socket_addr(text: &str) -> Option<SocketAddr> {
    text.trim().parse().ok()
}

/// Splits `"123unit"` into the number and the unit after it (spaces between are allowed).
fn split_number(text: &str) -> Option<(u64, &str)> {
    let text = text.trim();
    let digits_end = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(digits_end);
    if digits.is_empty() {
        return None;
    }
    Some((digits.parse().ok()?, unit.trim_start()))
}

/// A duration string: a non-negative integer followed by `ms`, `s`, `m`, `h` or `d` (ASCII
/// case-insensitive), e.g. `"500ms"`, `"10s"`, `"5m"`, `"2h"`, `"7d"`. The unit is required.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let (n, unit) = split_number(text)?;
    let unit = unit.to_ascii_lowercase();
    let secs_per_unit = match unit.as_str() {
        "ms" => return Some(Duration::from_millis(n)),
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    n.checked_mul(secs_per_unit).map(Duration::from_secs)
}

/// A size string: a non-negative integer, optionally followed by `B`, `KB`/`KiB`/`K`,
/// `MB`/`MiB`/`M`, `GB`/`GiB`/`G` or `TB`/`TiB`/`T` (ASCII case-insensitive; 1KB = 1024 bytes).
pub fn parse_size(text: &str) -> Option<u64> {
    let (n, unit) = split_number(text)?;
    let unit = unit.to_ascii_lowercase();
    let multiplier = match unit.as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => KIB,
        "m" | "mb" | "mib" => MIB,
        "g" | "gb" | "gib" => GIB,
        "t" | "tb" | "tib" => TIB,
        _ => return None,
    };
    n.checked_mul(multiplier)
}

/// A duration in the largest unit that shows it exactly: `"500ms"`, `"10s"`, `"5m"`, `"1d"`.
pub fn format_duration(d: Duration) -> String {
    if d.subsec_nanos() != 0 {
        if d.subsec_nanos() % 1_000_000 == 0 {
            return format!("{}ms", d.as_millis());
        }
        return format!("{d:?}");
    }
    let secs = d.as_secs();
    for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60)] {
        if secs != 0 && secs % size == 0 {
            return format!("{}{unit}", secs / size);
        }
    }
    format!("{secs}s")
}

/// A byte count in the largest unit that shows it exactly: `"64KB"`, `"1MB"`, `"100 bytes"`.
pub fn format_size(bytes: u64) -> String {
    for (unit, size) in [("TB", TIB), ("GB", GIB), ("MB", MIB), ("KB", KIB)] {
        if bytes != 0 && bytes % size == 0 {
            return format!("{}{unit}", bytes / size);
        }
    }
    format!("{bytes} bytes")
}

/// The candidate closest to `word` by edit distance, if close enough to be a likely typo.
pub(crate) fn closest<'c>(
    word: &str,
    candidates: impl IntoIterator<Item = &'c str>,
) -> Option<&'c str> {
    let limit = (word.chars().count() / 3).clamp(1, 3);
    candidates
        .into_iter()
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = substitute.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "test.toml";

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml_str(text, FILE)
    }

    /// The error for `text`, checked to be one line that starts with the file name.
    fn error(text: &str) -> ConfigError {
        match parse(text) {
            Ok(config) => panic!("accepted {text:?} as {config:?}"),
            Err(e) => {
                let line = e.to_string();
                assert!(!line.contains('\n'), "multi-line error: {line:?}");
                assert!(line.starts_with("test.toml: "), "file not named: {line:?}");
                e
            }
        }
    }

    #[test]
    fn embedded_default_parses_to_the_default_values() {
        let config = Config::embedded_default().expect("built-in default must parse");
        assert_eq!(config, Config::default_values());
        assert_eq!(config, Config::default());
    }

    #[test]
    fn allow_anonymous_auto_means_only_when_every_listener_is_loopback() {
        let auto = AuthConfig::default();
        let addrs = |list: &[&str]| -> Vec<SocketAddr> {
            list.iter().map(|a| a.parse().unwrap()).collect()
        };
        assert!(auto.anonymous_allowed(&addrs(&["127.0.0.1:1883", "[::1]:1883"])));
        assert!(auto.anonymous_allowed(&addrs(&["127.0.0.2:0"])));
        assert!(!auto.anonymous_allowed(&addrs(&["127.0.0.1:1883", "0.0.0.0:1883"])));
        assert!(!auto.anonymous_allowed(&addrs(&["192.0.2.1:1883"])));
        let yes = AuthConfig { allow_anonymous: Some(true), ..AuthConfig::default() };
        assert!(yes.anonymous_allowed(&addrs(&["0.0.0.0:1883"])));
        let no = AuthConfig { allow_anonymous: Some(false), ..AuthConfig::default() };
        assert!(!no.anonymous_allowed(&addrs(&["127.0.0.1:1883"])));
    }

    #[test]
    fn empty_file_gives_the_default_values() {
        assert_eq!(parse("").unwrap(), Config::default_values());
        // Empty sections too.
        assert_eq!(
            parse("[log]\n[listener]\n[mqtt]\n[sqlite]\n").unwrap(),
            Config::default_values()
        );
    }

    #[test]
    fn documented_defaults_are_the_ones_the_brief_names() {
        let c = Config::default_values();
        assert_eq!(c.log.level, log::Level::Info);
        assert_eq!(c.listener.bind, vec!["127.0.0.1:1883".parse().unwrap()]);
        assert_eq!(c.mqtt.max_packet_size, 1_048_576);
        assert_eq!(c.mqtt.max_connect_packet_size, 102_400);
        assert_eq!(c.mqtt.max_connections_per_address, 64);
        assert_eq!(c.mqtt.max_pending_connections, 256);
        assert_eq!(c.mqtt.max_qos, QoS::ExactlyOnce);
        assert_eq!(c.mqtt.persistent_session_expiry, None);
        assert_eq!(c.sqlite.mounted_file_path, PathBuf::from("./data"));
        assert_eq!(c.sqlite.max_queued_bytes_per_session, 64 * 1024 * 1024);
        assert_eq!(c.sqlite.flush_interval(), Duration::from_millis(100));
        assert_eq!(c.sqlite.resend_interval, Duration::ZERO);
        assert_eq!(c.mqtt.max_pause, Duration::from_secs(1));
        assert_eq!(c.mqtt.slow_subscriber, SlowSubscriber::Drop);
    }

    #[test]
    fn default_file_shows_every_key_once_each_with_a_comment_above() {
        let (_, mut known) = parse_with_keys("", FILE).unwrap();
        let table: Table = DEFAULT_CONFIG.parse().unwrap();
        let mut in_file = Vec::new();
        for (section, keys) in &table {
            for key in keys.as_table().expect("sections only").keys() {
                in_file.push(format!("{section}.{key}"));
            }
        }
        known.sort();
        in_file.sort();
        assert_eq!(known, in_file);

        let lines: Vec<&str> = DEFAULT_CONFIG.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let is_key = !line.is_empty() && !line.starts_with('#') && !line.starts_with('[');
            if is_key {
                assert!(i > 0 && lines[i - 1].starts_with('#'), "no comment above {line:?}");
            }
        }
    }

    #[test]
    fn every_key_lands_in_its_own_field() {
        let text = r#"
            [log]
            level = "debug"
            [listener]
            bind = ["0.0.0.0:1883", "[::1]:8883"]
            backlog = 4096
            [mqtt]
            max_connections = 10
            max_connections_per_address = 3
            max_pending_connections = 4
            max_sessions = 20
            max_subscriptions_per_session = 30
            max_topic_levels = 31
            max_subscription_bytes = "32KB"
            max_packet_size = "64KB"
            max_connect_packet_size = "2KB"
            max_inflight = 40
            max_queued_messages = 50
            connect_timeout = "1500ms"
            keepalive_multiplier = 2.5
            max_keepalive = 60
            retain_available = false
            max_retained_messages = 70
            max_retained_bytes = "2MiB"
            max_topic_alias = 0
            allow_zero_length_clientid = false
            max_qos = 1
            queue_qos0 = true
            persistent_session_expiry = "7d"
            max_session_expiry = 3600
            tx_buffer_limit = "128KB"
            tx_buffer_total = "8MB"
            wildcard_subscription_available = false
            subscription_identifiers_available = false
            max_pause = "250ms"
            slow_subscriber = "disconnect"
            shared_subscription_available = false
            shared_policy = "sticky"
            outbound_topic_alias = "off"
            response_information = "replies/"
            [sqlite]
            mounted_file_path = "/var/lib/edgemq"
            durability = "batch"
            disk_cache_size = 1000
            max_queued_per_session = 100
            max_queued_bytes_per_session = "1GB"
            overflow = "reject"
            flush_mem_threshold = 7
            flush_interval_ms = 250
            resend_interval = "30s"
            max_wal_size = "2MB"
            on_corrupt = "quarantine"
            [auth]
            allow_anonymous = false
            password_file = "/etc/edgemq/passwd"
            acl_file = "/etc/edgemq/acl"
        "#;
        let expected = Config {
            log: LogConfig { level: log::Level::Debug },
            listener: ListenerConfig {
                bind: vec!["0.0.0.0:1883".parse().unwrap(), "[::1]:8883".parse().unwrap()],
                backlog: 4096,
            },
            listeners: Vec::new(),
            mqtt: MqttConfig {
                max_connections: 10,
                max_connections_per_address: 3,
                max_pending_connections: 4,
                max_sessions: 20,
                max_subscriptions_per_session: 30,
                max_topic_levels: 31,
                max_subscription_bytes: 32 * 1024,
                max_packet_size: 65_536,
                max_connect_packet_size: 2048,
                max_inflight: 40,
                max_queued_messages: 50,
                connect_timeout: Duration::from_millis(1500),
                keepalive_multiplier: 2.5,
                max_keepalive: 60,
                retain_available: false,
                max_retained_messages: 70,
                max_retained_bytes: 2 * 1024 * 1024,
                max_topic_alias: 0,
                allow_zero_length_clientid: false,
                max_qos: QoS::AtLeastOnce,
                queue_qos0: true,
                persistent_session_expiry: Some(Duration::from_secs(7 * 86_400)),
                max_session_expiry: Some(Duration::from_secs(3600)),
                tx_buffer_limit: 131_072,
                tx_buffer_total: 8 * 1024 * 1024,
                wildcard_subscription_available: false,
                subscription_identifiers_available: false,
                max_pause: Duration::from_millis(250),
                slow_subscriber: SlowSubscriber::Disconnect,
                shared_subscription_available: false,
                shared_policy: SharedPolicy::Sticky,
                outbound_topic_alias: OutboundTopicAlias::Off,
                response_information: Some("replies/".to_string()),
            },
            sqlite: SqliteConfig {
                mounted_file_path: PathBuf::from("/var/lib/edgemq"),
                durability: Durability::Batch,
                disk_cache_size: 1000,
                max_queued_per_session: 100,
                max_queued_bytes_per_session: 1024 * 1024 * 1024,
                overflow: Overflow::Reject,
                flush_mem_threshold: 7,
                flush_interval_ms: 250,
                resend_interval: Duration::from_secs(30),
                max_db_size: 0,
                max_wal_size: 2 * 1024 * 1024,
                on_corrupt: OnCorrupt::Quarantine,
            },
            auth: AuthConfig {
                allow_anonymous: Some(false),
                password_file: Some(PathBuf::from("/etc/edgemq/passwd")),
                acl_file: Some(PathBuf::from("/etc/edgemq/acl")),
            },
            bridges: Vec::new(),
            // `[sys]` and `[http]`: config/monitor.rs tests their keys.
            sys: SysConfig::default(),
            http: HttpConfig::default(),
        };
        assert_eq!(parse(text).unwrap(), expected);
    }

    #[test]
    fn listener_backlog_is_read_and_bounded() {
        let c = Config::from_toml_str("[listener]\nbacklog = 4096\n", "test.toml").unwrap();
        assert_eq!(c.listener.backlog, 4096);
        assert_eq!(Config::default_values().listener.backlog, 1024);
        for bad in ["0", "65536", "\"lots\""] {
            let text = format!("[listener]\nbacklog = {bad}\n");
            let e = Config::from_toml_str(&text, "test.toml").unwrap_err();
            assert_eq!(e.key(), Some("listener.backlog"), "{bad}");
            assert!(e.to_string().contains("between 1 and 65535"), "{e}");
        }
    }

    #[test]
    fn the_example_error_reads_as_documented() {
        let e = Config::from_toml_str("[mqtt]\nmax_connections = \"abc\"\n", "conf/edgemq.toml")
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "conf/edgemq.toml: mqtt.max_connections: expected an integer between 1 and \
             1000000, got \"abc\""
        );
        assert_eq!(e.key(), Some("mqtt.max_connections"));
    }

    /// One key's range test: values that must parse and values that must be refused. `extra`
    /// lines go in the same section, to keep cross-key rules out of the way at the extremes.
    struct RangeCase {
        key: &'static str,
        extra: &'static str,
        good: &'static [&'static str],
        bad: &'static [&'static str],
    }

    #[rustfmt::skip]
    const RANGE_CASES: &[RangeCase] = &[
        RangeCase {
            key: "log.level", extra: "",
            good: &[r#""error""#, r#""warn""#, r#""TRACE""#],
            bad: &[r#""verbose""#, r#""off""#, "3"],
        },
        RangeCase {
            key: "listener.bind", extra: "",
            good: &[r#""0.0.0.0:1""#, r#"["[::]:1883", "127.0.0.1:1883"]"#, r#""127.0.0.1:0""#],
            bad: &["[]", r#""localhost:1883""#, "1883", r#""1.2.3.4""#, "[1]", r#"["1.2.3.4:1", "1.2.3.4:1"]"#, "{ a = 1 }"],
        },
        RangeCase {
            key: "listener.backlog", extra: "",
            good: &["1", "1024", "65535"],
            bad: &["0", "65536", "-1", r#""1024""#],
        },
        RangeCase {
            key: "mqtt.max_connections", extra: "max_sessions = 10000000",
            good: &["1", "1000000"],
            bad: &["0", "1000001", r#""abc""#, "-1", "1.5", r#""10""#],
        },
        RangeCase {
            key: "mqtt.max_connections_per_address", extra: "",
            good: &["0", "1", "64", "1000000"],
            bad: &["-1", "1000001", r#""64""#],
        },
        RangeCase {
            key: "mqtt.max_pending_connections", extra: "",
            good: &["0", "1", "256", "1000000"],
            bad: &["-1", "1000001", "1.5"],
        },
        RangeCase {
            key: "mqtt.max_sessions", extra: "max_connections = 1",
            good: &["1", "10000000"],
            bad: &["0", "10000001"],
        },
        RangeCase {
            key: "mqtt.max_subscriptions_per_session", extra: "",
            good: &["1", "1000000"],
            bad: &["0", "1000001"],
        },
        RangeCase {
            key: "mqtt.max_topic_levels", extra: "",
            good: &["1", "200", "65535"],
            bad: &["0", "65536", r#""200""#],
        },
        RangeCase {
            key: "mqtt.max_subscription_bytes", extra: "",
            good: &["1024", r#""64KB""#, r#""1GB""#],
            bad: &["1023", r#""1025MB""#, "-1"],
        },
        RangeCase {
            key: "mqtt.max_packet_size", extra: "tx_buffer_limit = \"1GB\"\ntx_buffer_total = 0",
            good: &["64", r#""64""#, r#""1kb""#, "268435455", r#""255MB""#],
            bad: &["63", r#""256MB""#, "268435456", r#""1XB""#, "-1", r#""""#, "true", "1.5"],
        },
        RangeCase {
            key: "mqtt.max_connect_packet_size", extra: "",
            good: &["64", r#""100KB""#, "268435455"],
            bad: &["63", r#""256MB""#, "-1"],
        },
        RangeCase {
            key: "mqtt.max_inflight", extra: "",
            good: &["1", "65535"],
            bad: &["0", "65536"],
        },
        RangeCase {
            key: "mqtt.max_queued_messages", extra: "",
            good: &["0", "1000000"],
            bad: &["-1", "1000001"],
        },
        RangeCase {
            key: "mqtt.connect_timeout", extra: "",
            good: &[r#""100ms""#, r#""1h""#, "1", "3600", r#""60m""#],
            bad: &[r#""99ms""#, r#""3601s""#, r#""2h""#, "0", r#""10""#, r#""abc""#, "-5", "1.5", r#""never""#],
        },
        RangeCase {
            key: "mqtt.keepalive_multiplier", extra: "",
            good: &["1.0", "10", "2.5", "1"],
            bad: &["0.99", "10.01", r#""1.5""#, "nan", "inf", "-1"],
        },
        RangeCase {
            key: "mqtt.max_keepalive", extra: "",
            good: &["0", "65535"],
            bad: &["-1", "65536"],
        },
        RangeCase {
            key: "mqtt.retain_available", extra: "",
            good: &["true", "false"],
            bad: &[r#""true""#, "1"],
        },
        RangeCase {
            key: "mqtt.max_retained_messages", extra: "",
            good: &["1", "100000000"],
            bad: &["0", "100000001"],
        },
        RangeCase {
            key: "mqtt.max_retained_bytes", extra: "",
            good: &[r#""1KB""#, r#""1TB""#, "1024"],
            bad: &["1023", r#""2TB""#],
        },
        RangeCase {
            key: "mqtt.max_topic_alias", extra: "",
            good: &["0", "65535"],
            bad: &["-1", "65536"],
        },
        RangeCase {
            key: "mqtt.allow_zero_length_clientid", extra: "",
            good: &["true", "false"],
            bad: &[r#""yes""#],
        },
        RangeCase {
            key: "mqtt.max_qos", extra: "",
            good: &["0", "1", "2"],
            bad: &["3", "-1", r#""2""#],
        },
        RangeCase {
            key: "mqtt.queue_qos0", extra: "",
            good: &["true", "false"],
            bad: &["0"],
        },
        RangeCase {
            key: "mqtt.persistent_session_expiry", extra: "",
            good: &[r#""never""#, r#""NEVER""#, r#""1s""#, r#""7d""#, "4294967294"],
            bad: &["0", r#""0s""#, r#""500ms""#, "4294967295", r#""forever""#],
        },
        RangeCase {
            key: "mqtt.max_session_expiry", extra: "",
            good: &["0", r#""never""#, "4294967294", r#""2h""#],
            bad: &[r#""1500ms""#, "4294967295", "-1"],
        },
        RangeCase {
            key: "mqtt.tx_buffer_limit", extra: "max_packet_size = 64\ntx_buffer_total = 0",
            good: &[r#""4KB""#, r#""1GB""#, "4096"],
            bad: &["4095", "1073741825", r#""2GB""#],
        },
        RangeCase {
            key: "mqtt.tx_buffer_total", extra: "tx_buffer_limit = \"4KB\"",
            good: &["0", r#""4KB""#, r#""16MB""#, r#""1GB""#],
            bad: &["-1", "1073741825", r#""2GB""#, "true"],
        },
        RangeCase {
            key: "mqtt.wildcard_subscription_available", extra: "",
            good: &["true", "false"],
            bad: &[r#""false""#],
        },
        RangeCase {
            key: "mqtt.subscription_identifiers_available", extra: "",
            good: &["true", "false"],
            bad: &["1"],
        },
        RangeCase {
            key: "mqtt.max_pause", extra: "",
            good: &[r#""10ms""#, r#""1s""#, r#""60s""#, "1", "60", r#""1m""#],
            bad: &[r#""9ms""#, r#""61s""#, "0", "61", r#""never""#, r#""1""#],
        },
        RangeCase {
            key: "mqtt.slow_subscriber", extra: "",
            good: &[r#""drop""#, r#""disconnect""#, r#""Disconnect""#],
            bad: &[r#""pause""#, r#""drop_oldest""#, "1", "true"],
        },
        RangeCase {
            key: "mqtt.shared_subscription_available", extra: "",
            good: &["true", "false"],
            bad: &["0", r#""no""#],
        },
        RangeCase {
            key: "mqtt.shared_policy", extra: "",
            good: &[r#""round_robin""#, r#""random""#, r#""sticky""#, r#""Sticky""#],
            bad: &[r#""hash""#, r#""""#, "1"],
        },
        RangeCase {
            key: "mqtt.outbound_topic_alias", extra: "",
            good: &[r#""lru""#, r#""off""#, r#""LRU""#],
            bad: &[r#""on""#, "true", "0"],
        },
        RangeCase {
            key: "mqtt.response_information", extra: "",
            good: &[r#""""#, r#""replies/""#, r#""réponse""#],
            bad: &[r#""a\u0000b""#, "1", "true"],
        },
        RangeCase {
            key: "sqlite.mounted_file_path", extra: "",
            good: &[r#""/var/lib/edgemq""#, r#""data dir""#, r#""./data""#],
            bad: &[r#""""#, "1", r#"["a"]"#],
        },
        RangeCase {
            key: "sqlite.durability", extra: "",
            good: &[r#""sync""#, r#""batch""#, r#""memory""#, r#""Memory""#],
            bad: &[r#""fast""#, "1"],
        },
        RangeCase {
            key: "sqlite.disk_cache_size", extra: "max_queued_per_session = 1",
            good: &["1", "1000000000"],
            bad: &["0", "1000000001", r#""1MB""#],
        },
        RangeCase {
            key: "sqlite.max_queued_per_session", extra: "disk_cache_size = 1000000000",
            good: &["1", "1000000000"],
            bad: &["0", "1000000001"],
        },
        RangeCase {
            key: "sqlite.max_queued_bytes_per_session", extra: "",
            good: &[r#""1KiB""#, r#""1TiB""#],
            bad: &[r#""1023B""#, "0"],
        },
        RangeCase {
            key: "sqlite.overflow", extra: "",
            good: &[r#""drop_oldest""#, r#""drop_new""#, r#""reject""#],
            bad: &[r#""drop""#, r#""dropoldest""#],
        },
        RangeCase {
            key: "sqlite.flush_mem_threshold", extra: "",
            good: &["1", "1000000"],
            bad: &["0", "1000001"],
        },
        RangeCase {
            key: "sqlite.flush_interval_ms", extra: "",
            good: &["1", "60000"],
            bad: &["0", "60001", r#""100ms""#],
        },
        RangeCase {
            key: "sqlite.max_db_size", extra: "",
            good: &["0", r#""64KB""#, r#""1TB""#],
            bad: &["-1", r#""2TB""#],
        },
        RangeCase {
            key: "sqlite.max_wal_size", extra: "",
            good: &[r#""64KB""#, r#""512KB""#, r#""64MB""#, "65536"],
            bad: &[r#""63KB""#, r#""65MB""#, "0"],
        },
        RangeCase {
            key: "sqlite.on_corrupt", extra: "",
            good: &[r#""refuse""#, r#""quarantine""#, r#""Quarantine""#],
            bad: &[r#""delete""#, "true", r#""""#],
        },
        RangeCase {
            key: "auth.allow_anonymous", extra: "",
            good: &["true", "false", r#""auto""#, r#""AUTO""#],
            bad: &[r#""yes""#, "1", r#""""#],
        },
        RangeCase {
            key: "auth.password_file", extra: "",
            good: &[r#""""#, r#""/etc/edgemq/passwd""#, r#""passwd""#],
            bad: &["1", "true", r#""a\u0000b""#],
        },
        RangeCase {
            key: "auth.acl_file", extra: "",
            good: &[r#""""#, r#""/etc/edgemq/acl""#],
            bad: &["[]", r#""a\u0000b""#],
        },
        RangeCase {
            key: "sys.interval", extra: "",
            good: &["0", r#""0s""#, r#""10s""#, r#""1d""#, "86400"],
            bad: &[r#""1500ms""#, r#""2d""#, "-1", r#""never""#],
        },
        RangeCase {
            key: "http.bind", extra: "",
            good: &[r#""""#, r#""127.0.0.1:9883""#, r#""[::1]:0""#],
            bad: &[r#""localhost:9883""#, "9883", r#""127.0.0.1""#],
        },
        RangeCase {
            key: "http.max_connections", extra: "",
            good: &["1", "16", "1024"],
            bad: &["0", "1025"],
        },
        RangeCase {
            key: "http.max_request_size", extra: "",
            good: &[r#""1KB""#, r#""8KB""#, r#""1MB""#],
            bad: &[r#""1023B""#, r#""2MB""#, "0"],
        },
        RangeCase {
            key: "http.timeout", extra: "",
            good: &[r#""100ms""#, r#""5s""#, r#""1h""#],
            bad: &[r#""99ms""#, r#""2h""#, "0"],
        },
        RangeCase {
            key: "sqlite.resend_interval", extra: "",
            good: &[r#""0s""#, "0", r#""1d""#, r#""250ms""#],
            bad: &[r#""25h""#, "-1", r#""never""#],
        },
    ];

    #[test]
    fn every_key_accepts_its_range_and_names_itself_outside_it() {
        for case in RANGE_CASES {
            let (section, key) = case.key.split_once('.').unwrap();
            for value in case.good {
                let text = format!("[{section}]\n{}\n{key} = {value}\n", case.extra);
                if let Err(e) = parse(&text) {
                    panic!("{} = {value} refused: {e}", case.key);
                }
            }
            for value in case.bad {
                let text = format!("[{section}]\n{}\n{key} = {value}\n", case.extra);
                let e = error(&text);
                assert_eq!(e.key(), Some(case.key), "{text}");
                assert!(matches!(e.kind, ConfigErrorKind::Invalid { .. }), "{text}: {e:?}");
                let line = e.to_string();
                let prefix = format!("test.toml: {}: expected ", case.key);
                assert!(line.starts_with(&prefix), "{line}");
            }
        }
    }

    #[test]
    fn the_range_table_covers_every_key() {
        let (_, mut known) = parse_with_keys("", FILE).unwrap();
        let mut covered: Vec<&str> = RANGE_CASES.iter().map(|case| case.key).collect();
        known.sort();
        covered.sort();
        assert_eq!(known, covered);
    }

    /// `edgemq check` prints the effective config; read back, it is the same config. Every
    /// accepted value of every key (the range table covers every key), listeners and bridges.
    #[test]
    fn the_effective_config_reads_back_as_the_same_config() {
        let round_trip = |text: &str| {
            let root = parse_toml(text, FILE).unwrap();
            let (config, order, root) =
                parse_table(root, FILE, CrossCheck::Yes).unwrap_or_else(|e| panic!("{e}\n{text}"));
            let effective = Effective { root, order, sources: Default::default() };
            let shown = effective.to_toml();
            let again =
                Config::from_toml_str(&shown, "shown").unwrap_or_else(|e| panic!("{e}\n{shown}"));
            assert_eq!(again, config, "{text}\n--- shown as ---\n{shown}");
            let (_, known) = parse_with_keys(&shown, "shown").unwrap();
            for key in known {
                let (section, key) = key.split_once('.').unwrap();
                assert!(shown.contains(&format!("[{section}]")), "{section} missing:\n{shown}");
                assert!(shown.contains(&format!("\n{key} = ")), "{key} missing:\n{shown}");
            }
            effective
        };
        for case in RANGE_CASES {
            let (section, key) = case.key.split_once('.').unwrap();
            for value in case.good {
                round_trip(&format!("[{section}]\n{}\n{key} = {value}\n", case.extra));
            }
        }
        let listeners = "[listeners.a]\nbind = \"1.2.3.4:1\"\nallow_anonymous = false\n\
                         [listeners.t]\nbind = \"1.2.3.4:2\"\nkind = \"tls\"\n\
                         certfile = \"c.pem\"\nkeyfile = \"k.pem\"\ncafile = \"ca.pem\"\n\
                         require_certificate = true\n";
        let shown = round_trip(listeners).to_toml();
        assert!(shown.contains("\n[listeners.t]\nbind = [\"1.2.3.4:2\"]\n"), "{shown}");
    }

    #[test]
    fn changed_keys_compares_every_key() {
        let load = |text: &str| {
            let (_, order, root) =
                parse_table(parse_toml(text, FILE).unwrap(), FILE, CrossCheck::Yes).unwrap();
            Effective { root, order, sources: Default::default() }
        };
        let a = load("[mqtt]\nmax_inflight = 5\n");
        let b = load(
            "[mqtt]\nmax_inflight = 6\n[log]\nlevel = \"debug\"\n\
                      [listeners.x]\nbind = \"1.2.3.4:1\"\n",
        );
        assert_eq!(
            a.changed_keys(&b),
            [
                "listeners.x.bind",
                "listeners.x.kind",
                "listeners.x.require_certificate",
                "listeners.x.use_identity_as_username",
                "log.level",
                "mqtt.max_inflight"
            ]
        );
        assert_eq!(b.changed_keys(&a), a.changed_keys(&b));
        assert!(a.changed_keys(&a).is_empty());
        assert_eq!(b.show("mqtt.max_inflight").as_deref(), Some("6"));
    }

    #[test]
    fn range_errors_say_what_would_be_accepted() {
        let e = error("[mqtt]\nmax_packet_size = \"256MB\"\n");
        assert_eq!(
            e.to_string(),
            "test.toml: mqtt.max_packet_size: expected a size from 64 bytes to 268435455 bytes \
             (integer bytes or a string like \"1MB\"), got \"256MB\""
        );
        let e = error("[mqtt]\nconnect_timeout = \"2h\"\n");
        assert_eq!(
            e.to_string(),
            "test.toml: mqtt.connect_timeout: expected a duration from 100ms to 1h (integer \
             seconds or a string like \"10s\"), got \"2h\""
        );
        let e = error("[mqtt]\nmax_session_expiry = \"1500ms\"\n");
        assert_eq!(
            e.to_string(),
            "test.toml: mqtt.max_session_expiry: expected a duration from 0s to 4294967294s in \
             whole seconds (integer seconds or a string like \"10s\") or \"never\", got \"1500ms\""
        );
        let e = error("[sqlite]\noverflow = \"drop\"\n");
        assert_eq!(
            e.to_string(),
            "test.toml: sqlite.overflow: expected one of \"drop_oldest\", \"drop_new\", \
             \"reject\", got \"drop\""
        );
        let e = error("[mqtt]\nkeepalive_multiplier = 0.5\n");
        assert_eq!(
            e.to_string(),
            "test.toml: mqtt.keepalive_multiplier: expected a number between 1.0 and 10.0, got 0.5"
        );
        let e = error("[listener]\nbind = [\"1.2.3.4:1\", \"1.2.3.4:1\"]\n");
        assert_eq!(
            e.to_string(),
            "test.toml: listener.bind: expected each address once, got \"1.2.3.4:1\""
        );
    }

    #[test]
    fn bind_accepts_one_string_or_a_list_and_at_most_64() {
        let c = parse("[listener]\nbind = \"[::]:1883\"\n").unwrap();
        assert_eq!(c.listener.bind, vec!["[::]:1883".parse().unwrap()]);
        let list: Vec<String> = (0..64).map(|p| format!("\"127.0.0.1:{}\"", p + 1)).collect();
        let text = format!("[listener]\nbind = [{}]\n", list.join(", "));
        assert_eq!(parse(&text).unwrap().listener.bind.len(), 64);
        let list: Vec<String> = (0..65).map(|p| format!("\"127.0.0.1:{}\"", p + 1)).collect();
        let text = format!("[listener]\nbind = [{}]\n", list.join(", "));
        assert_eq!(
            error(&text).to_string(),
            "test.toml: listener.bind: expected at most 64 addresses, got 65"
        );
    }

    #[test]
    fn listener_tables_land_in_their_fields() {
        let c = parse(
            r#"
            [listeners.secure]
            bind = "0.0.0.0:8883"
            kind = "tls"
            certfile = "/etc/edgemq/server.pem"
            keyfile = "/etc/edgemq/server.key"
            cafile = "/etc/edgemq/ca.pem"
            require_certificate = true
            use_identity_as_username = true
            allow_anonymous = false
            [listeners.lan]
            bind = "[::]:1884"
            "#,
        )
        .unwrap();
        assert_eq!(c.listener, ListenerConfig::default());
        assert_eq!(
            c.listeners,
            vec![
                NamedListener {
                    name: "lan".to_string(),
                    bind: "[::]:1884".parse().unwrap(),
                    kind: ListenerKind::Tcp,
                    allow_anonymous: None,
                    tls: None,
                    websocket: None,
                },
                NamedListener {
                    name: "secure".to_string(),
                    bind: "0.0.0.0:8883".parse().unwrap(),
                    kind: ListenerKind::Tls,
                    allow_anonymous: Some(false),
                    tls: Some(ListenerTls {
                        certfile: PathBuf::from("/etc/edgemq/server.pem"),
                        keyfile: PathBuf::from("/etc/edgemq/server.key"),
                        cafile: Some(PathBuf::from("/etc/edgemq/ca.pem")),
                        require_certificate: true,
                        use_identity_as_username: true,
                    }),
                    websocket: None,
                },
            ]
        );
    }

    #[test]
    fn websocket_listeners_have_a_path_and_wss_has_tls_files() {
        let c = parse(
            r#"
            [listeners.web]
            bind = "0.0.0.0:8083"
            kind = "ws"
            [listeners.webs]
            bind = "0.0.0.0:8084"
            kind = "wss"
            path = "/ws/mqtt"
            certfile = "s.pem"
            keyfile = "s.key"
            "#,
        )
        .unwrap();
        let [web, webs] = c.listeners.as_slice() else { panic!("{:?}", c.listeners) };
        assert_eq!(web.kind, ListenerKind::Ws);
        assert_eq!(web.websocket, Some(ListenerWebSocket { path: "/mqtt".to_string() }));
        assert_eq!(web.tls, None);
        assert_eq!(webs.kind, ListenerKind::Wss);
        assert_eq!(webs.websocket, Some(ListenerWebSocket { path: "/ws/mqtt".to_string() }));
        assert_eq!(webs.tls.as_ref().map(|t| t.certfile.clone()), Some(PathBuf::from("s.pem")));
    }

    #[test]
    fn listener_errors_name_the_listener_key() {
        let tls = "kind = \"tls\"\ncertfile = \"c.pem\"\nkeyfile = \"k.pem\"\n";
        let cases: &[(&str, &str)] = &[
            (
                "[listeners.a]\nbind = \"1.2.3.4:1\"\nkind = \"tls\"\n",
                "test.toml: listeners.a.kind = \"tls\" needs listeners.a.certfile and \
                 listeners.a.keyfile (the server certificate and its key)",
            ),
            (
                "[listeners.a]\nbind = \"1.2.3.4:1\"\ncertfile = \"c.pem\"\n",
                "test.toml: listeners.a.certfile is a TLS setting; listeners.a.kind is \"tcp\"",
            ),
            (
                &format!("[listeners.a]\nbind = \"1.2.3.4:1\"\n{tls}require_certificate = true\n"),
                "test.toml: listeners.a.require_certificate needs listeners.a.cafile: the CAs \
                 that client certificates are verified against",
            ),
            (
                &format!(
                    "[listeners.a]\nbind = \"1.2.3.4:1\"\n{tls}use_identity_as_username = true\n"
                ),
                "test.toml: listeners.a.use_identity_as_username needs listeners.a.cafile: the \
                 CAs that client certificates are verified against",
            ),
            (
                "[listeners.a]\nbind = \"1.2.3.4:1\"\ncertfle = \"c.pem\"\n",
                "test.toml: unknown key \"listeners.a.certfle\" (did you mean \
                 \"listeners.a.certfile\"?)",
            ),
            (
                "[listeners.a]\nkind = \"tcp\"\n",
                "test.toml: listeners.a.bind: expected an \"IP:port\" address (the key is \
                 required), got nothing",
            ),
            (
                "[listeners.a]\nbind = [\"1.2.3.4:1\", \"1.2.3.4:2\"]\n",
                "test.toml: listeners.a.bind: expected one \"IP:port\" address (one listener, \
                 one socket), got 2 addresses",
            ),
            (
                "[listeners.a]\nbind = \"1.2.3.4:1\"\nkind = \"quic\"\n",
                "test.toml: listeners.a.kind: expected one of \"tcp\", \"tls\", \"ws\", \"wss\", \
                 got \"quic\"",
            ),
            (
                "[listeners.a]\nbind = \"1.2.3.4:1\"\nkind = \"wss\"\n",
                "test.toml: listeners.a.kind = \"wss\" needs listeners.a.certfile and \
                 listeners.a.keyfile (the server certificate and its key)",
            ),
            (
                "[listeners.a]\nbind = \"1.2.3.4:1\"\nkind = \"ws\"\ncertfile = \"c.pem\"\n",
                "test.toml: listeners.a.certfile is a TLS setting; listeners.a.kind is \"ws\"",
            ),
            (
                "[listeners.a]\nbind = \"1.2.3.4:1\"\npath = \"/mqtt\"\n",
                "test.toml: listeners.a.path is a WebSocket setting; listeners.a.kind is \"tcp\" \
                 (\"ws\" or \"wss\" have a path)",
            ),
            (
                "[listeners.a]\nbind = \"1.2.3.4:1\"\nkind = \"ws\"\npath = \"mqtt\"\n",
                "test.toml: listeners.a.path: expected an HTTP path starting with '/', at most \
                 256 printable ASCII characters without spaces, '?' or '#', got \"mqtt\"",
            ),
            (
                "[listeners.a]\nbind = \"1.2.3.4:1\"\nallow_anonymous = \"yes\"\n",
                "test.toml: listeners.a.allow_anonymous: expected true or false, got \"yes\"",
            ),
            (
                "[listeners.\"a b\"]\nbind = \"1.2.3.4:1\"\n",
                "test.toml: listeners.a b: expected a listener name of 1 to 32 letters, digits, \
                 '_' or '-', got \"a b\"",
            ),
            (
                "[listeners]\nbind = \"1.2.3.4:1\"\n",
                "test.toml: listeners.bind: expected a table [listeners.NAME], got \"1.2.3.4:1\"",
            ),
            (
                "[listener]\nbind = \"127.0.0.1:1883\"\n[listeners.a]\nbind = \"127.0.0.1:1883\"\n",
                "test.toml: listeners.a.bind and listener.bind both listen on 127.0.0.1:1883",
            ),
            (
                "[listeners.a]\nbind = \"1.2.3.4:1\"\n[listeners.b]\nbind = \"1.2.3.4:1\"\n",
                "test.toml: listeners.b.bind and listeners.a.bind both listen on 1.2.3.4:1",
            ),
        ];
        let ephemeral =
            "[listener]\nbind = \"127.0.0.1:0\"\n[listeners.a]\nbind = \"127.0.0.1:0\"\n";
        assert_eq!(parse(ephemeral).unwrap().listeners.len(), 1);
        for (text, expected) in cases {
            assert_eq!(error(text).to_string(), *expected, "{text}");
        }
        let mut text = String::from("[listener]\nbind = [");
        let list: Vec<String> = (0..60).map(|p| format!("\"127.0.0.1:{}\"", p + 1)).collect();
        text.push_str(&list.join(", "));
        text.push_str("]\n");
        for i in 0..5 {
            text.push_str(&format!("[listeners.l{i}]\nbind = \"127.0.0.2:{}\"\n", i + 1));
        }
        assert_eq!(
            error(&text).to_string(),
            "test.toml: listener.bind and [listeners.*] open 65 sockets together; at most 64"
        );
    }

    /// The commented `[listeners.NAME]` examples of the default file parse once uncommented,
    /// and its key list documents every listener key.
    #[test]
    fn default_file_documents_every_listener_key_and_its_examples_parse() {
        for key in LISTENER_KEYS {
            let documented = format!("# {key} ");
            assert!(DEFAULT_CONFIG.contains(&documented), "{key} not documented");
        }
        let mut examples = String::new();
        let mut in_example = false;
        for line in DEFAULT_CONFIG.lines() {
            let uncommented = line.strip_prefix("# ").unwrap_or("");
            if uncommented.starts_with("[listeners.") {
                in_example = true;
            } else if !line.starts_with("# ") || !uncommented.contains(" = ") {
                in_example = in_example && line == "#";
                continue;
            }
            if in_example {
                examples.push_str(uncommented);
                examples.push('\n');
            }
        }
        let c = parse(&examples).unwrap_or_else(|e| panic!("{e}\n{examples}"));
        assert_eq!(c.listeners.len(), 4, "{examples}");
        let used: Vec<&str> = examples.lines().filter_map(|l| l.split(" = ").next()).collect();
        for key in LISTENER_KEYS {
            assert!(used.contains(&key), "no example uses {key}");
        }
    }

    #[test]
    fn unknown_keys_are_errors_with_a_suggestion_when_close() {
        let e = error("[mqtt]\nmax_conections = 5\n");
        assert_eq!(
            e.to_string(),
            "test.toml: unknown key \"mqtt.max_conections\" (did you mean \"mqtt.max_connections\"?)"
        );
        assert_eq!(e.key(), Some("mqtt.max_conections"));

        let e = error("[sqlite]\nbanana = 1\n");
        assert_eq!(e.to_string(), "test.toml: unknown key \"sqlite.banana\"");

        // A sub-table inside a section is a key nobody reads.
        let e = error("[mqtt.limits]\nx = 1\n");
        assert_eq!(e.key(), Some("mqtt.limits"));

        // A key outside any section points at the section it belongs to.
        let e = error("max_inflight = 5\n");
        assert_eq!(
            e.to_string(),
            "test.toml: unknown key \"max_inflight\" (did you mean \"mqtt.max_inflight\"?)"
        );

        // Reported even when every other key is fine.
        let e = error("[mqtt]\nmax_connections = 5\nmax_sesions = 9\n");
        assert_eq!(e.key(), Some("mqtt.max_sesions"));
    }

    #[test]
    fn unknown_sections_are_errors() {
        let e = error("[mqt]\nmax_connections = 5\n");
        assert_eq!(
            e.to_string(),
            "test.toml: unknown section \"[mqt]\" (did you mean \"[mqtt]\"?)"
        );
        let e = error("[bridge]\n");
        assert_eq!(
            e.to_string(),
            "test.toml: unknown section \"[bridge]\" (did you mean \"[bridges]\"?)"
        );
        let e = error("[metrics]\n");
        assert_eq!(
            e.to_string(),
            "test.toml: unknown section \"[metrics]\" (sections are [log], [listener], \
             [listeners.NAME], [mqtt], [sqlite], [auth], [sys], [http], [bridges.NAME])"
        );
        let e = error("mqtt = 5\n");
        assert_eq!(e.to_string(), "test.toml: mqtt: expected a section ([mqtt]), got 5");
    }

    #[test]
    fn syntax_errors_give_line_and_column() {
        let e = error("[mqtt]\nmax_connections = \n");
        match &e.kind {
            ConfigErrorKind::Syntax { position: Some(p), .. } => assert_eq!(p.line, 2),
            other => panic!("{other:?}"),
        }
        assert!(e.to_string().starts_with("test.toml: line 2, column "), "{e}");

        let e = error("[mqtt\n");
        assert!(e.to_string().starts_with("test.toml: line 1, column "), "{e}");

        // A key given twice is a TOML error, not a silent override.
        let e = error("[mqtt]\nmax_inflight = 5\nmax_inflight = 6\n");
        assert!(matches!(e.kind, ConfigErrorKind::Syntax { .. }), "{e:?}");
        assert!(e.to_string().starts_with("test.toml: line 3, column "), "{e}");
    }

    #[test]
    fn position_counts_characters_and_clamps() {
        assert_eq!(position_of("ab\ncdé f", 8), Position { line: 2, column: 5 });
        assert_eq!(position_of("a", 99), Position { line: 1, column: 2 });
        // Inside a multi-byte character: stays on a boundary, no panic.
        assert_eq!(position_of("é", 1), Position { line: 1, column: 1 });
    }

    #[test]
    fn cross_key_errors_name_both_keys() {
        let e = error("[sqlite]\ndisk_cache_size = 10\nmax_queued_per_session = 11\n");
        assert_eq!(
            e.to_string(),
            "test.toml: sqlite.max_queued_per_session (11) must not exceed sqlite.disk_cache_size \
             (10): one session cannot queue more than the whole store holds"
        );
        assert!(matches!(e.kind, ConfigErrorKind::Conflict { .. }));

        let e = error("[mqtt]\nmax_connections = 5000\n");
        let line = e.to_string();
        assert!(line.contains("mqtt.max_sessions (4096)"), "{line}");
        assert!(line.contains("mqtt.max_connections (5000)"), "{line}");

        // A message larger than the output limit is still sent (into a buffer below it).
        parse("[mqtt]\nmax_packet_size = \"2MB\"\ntx_buffer_limit = \"64KB\"\n").unwrap();

        let e = error("[mqtt]\ntx_buffer_limit = \"1MB\"\ntx_buffer_total = \"512KB\"\n");
        let line = e.to_string();
        assert!(line.contains("mqtt.tx_buffer_total (524288)"), "{line}");
        assert!(line.contains("mqtt.tx_buffer_limit (1048576)"), "{line}");
        assert!(matches!(e.kind, ConfigErrorKind::Conflict { .. }));
        // 0: no global budget, whatever the per-connection limit.
        parse("[mqtt]\ntx_buffer_limit = \"1GB\"\ntx_buffer_total = 0\n").unwrap();

        // Equal is fine on every rule.
        parse("[mqtt]\ntx_buffer_limit = \"1MB\"\ntx_buffer_total = \"1MB\"\n").unwrap();
        parse("[mqtt]\nmax_connections = 4096\nmax_packet_size = \"1MB\"\n").unwrap();
        parse("[sqlite]\ndisk_cache_size = 7\nmax_queued_per_session = 7\n").unwrap();
    }

    #[test]
    fn duration_strings() {
        let table: &[(&str, Option<Duration>)] = &[
            ("500ms", Some(Duration::from_millis(500))),
            ("0ms", Some(Duration::ZERO)),
            ("10s", Some(Duration::from_secs(10))),
            ("5m", Some(Duration::from_secs(300))),
            ("2h", Some(Duration::from_secs(7200))),
            ("7d", Some(Duration::from_secs(604_800))),
            ("0s", Some(Duration::ZERO)),
            (" 10 s ", Some(Duration::from_secs(10))),
            ("10S", Some(Duration::from_secs(10))),
            ("10", None),
            ("s", None),
            ("", None),
            ("-1s", None),
            ("1.5s", None),
            ("10w", None),
            ("10sec", None),
            ("1h30m", None),
            ("never", None),
            ("99999999999999999999s", None),
            ("18446744073709551615d", None),
        ];
        for (text, expected) in table {
            assert_eq!(parse_duration(text), *expected, "{text:?}");
        }
    }

    #[test]
    fn size_strings() {
        let table: &[(&str, Option<u64>)] = &[
            ("0", Some(0)),
            ("64", Some(64)),
            ("64B", Some(64)),
            ("64KB", Some(65_536)),
            ("64kb", Some(65_536)),
            ("64KiB", Some(65_536)),
            ("64k", Some(65_536)),
            ("1MB", Some(1_048_576)),
            ("1mib", Some(1_048_576)),
            ("1 MB", Some(1_048_576)),
            ("1GB", Some(1_073_741_824)),
            ("1GiB", Some(1_073_741_824)),
            ("1TB", Some(1_099_511_627_776)),
            ("", None),
            ("MB", None),
            ("1.5MB", None),
            ("-1KB", None),
            ("1XB", None),
            ("1 M B", None),
            ("18446744073709551615KB", None),
        ];
        for (text, expected) in table {
            assert_eq!(parse_size(text), *expected, "{text:?}");
        }
    }

    #[test]
    fn formatting_picks_the_largest_exact_unit() {
        assert_eq!(format_duration(Duration::ZERO), "0s");
        assert_eq!(format_duration(Duration::from_millis(100)), "100ms");
        assert_eq!(format_duration(Duration::from_secs(90)), "90s");
        assert_eq!(format_duration(Duration::from_secs(3600)), "1h");
        assert_eq!(format_duration(Duration::from_secs(86_400)), "1d");
        assert_eq!(format_duration(Duration::from_micros(1)), "1µs");
        assert_eq!(format_size(0), "0 bytes");
        assert_eq!(format_size(100), "100 bytes");
        assert_eq!(format_size(4096), "4KB");
        assert_eq!(format_size(1_048_576), "1MB");
        assert_eq!(format_size(TIB), "1TB");
    }

    #[test]
    fn suggestions_only_for_near_misses() {
        assert_eq!(closest("mqt", SECTIONS), Some("mqtt"));
        assert_eq!(closest("sqllite", SECTIONS), Some("sqlite"));
        assert_eq!(closest("bridge", SECTIONS), Some("bridges"));
        assert_eq!(closest("web", SECTIONS), None);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn long_values_are_cut_in_errors() {
        let long = "x".repeat(500);
        let line = error(&format!("[log]\nlevel = \"{long}\"\n")).to_string();
        assert!(line.len() < 200, "{line}");
        let line = error("[log]\nlevel = \"a\\nb\"\n").to_string();
        assert!(line.ends_with("got \"a\\nb\""), "{line}");
    }

    #[test]
    fn load_reads_a_file_and_names_it_in_errors() {
        let dir = std::env::temp_dir().join(format!("edgemq-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.toml");
        std::fs::write(&good, "[mqtt]\nmax_inflight = 7\n").unwrap();
        assert_eq!(Config::load(&good).unwrap().mqtt.max_inflight, 7);

        let bad = dir.join("bad.toml");
        std::fs::write(&bad, "[mqtt]\nmax_inflight = 0\n").unwrap();
        let line = Config::load(&bad).unwrap_err().to_string();
        assert!(line.starts_with(&format!("{}: mqtt.max_inflight: ", bad.display())), "{line}");

        let missing = dir.join("missing.toml");
        let e = Config::load(&missing).unwrap_err();
        assert!(matches!(e.kind, ConfigErrorKind::Read { .. }));
        let line = e.to_string();
        assert!(
            line.starts_with(&format!("{}: cannot read config file: ", missing.display())),
            "{line}"
        );
        assert!(!line.contains('\n'));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn log_levels_and_addresses_shared_with_the_command_line() {
        assert_eq!(parse_log_level("Debug"), Some(log::Level::Debug));
        assert_eq!(parse_log_level("off"), None);
        assert_eq!(parse_socket_addr(" [::1]:1883 "), Some("[::1]:1883".parse().unwrap()));
        assert_eq!(parse_socket_addr("localhost:1883"), None);
    }
}
