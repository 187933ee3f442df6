//! `[bridges.NAME]`: outbound links to upstream brokers (see `src/bridge/`).
//!
//! Contract: like the rest of `config`, every key has a type, a range and a default, unknown
//! keys are refused with one line naming `bridges.NAME.key`, and a [`BridgeConfig`] that exists
//! is valid: its topic filters are well formed, its prefixes hold no wildcard, its backoff range
//! is ordered, and (MQTT 3.1.1, which has no No Local) no forward can come back through one of
//! its own subscriptions. Nothing is resolved here: `address` stays a `host:port` string.

use std::time::Duration;

use toml::{Table, Value};

use super::{
    show, ConfigError, ConfigErrorKind, DurationRange, Overflow, Section, KIB, OVERFLOW_NAMES, TIB,
};
use crate::codec::{topic, ProtocolVersion, QoS};

/// Client ids with this prefix belong to bridges (`$bridge/NAME`); clients may not use them.
pub const BRIDGE_CLIENT_PREFIX: &str = "$bridge/";

/// At most this many bridges; more is a mistake, not a deployment.
pub const MAX_BRIDGES: usize = 64;
/// At most this many `forwards` and this many `subscriptions` per bridge.
pub const MAX_TOPICS: usize = 256;
/// Longest bridge name (it is part of a client id and a `$SYS` topic).
pub const MAX_NAME: usize = 64;

/// One bridge. Field names follow the config keys.
#[derive(Clone, Debug, PartialEq)]
pub struct BridgeConfig {
    /// The `NAME` of `[bridges.NAME]`: ASCII letters, digits, `_` and `-`.
    pub name: String,
    /// `host:port` as written; the host is an IP literal or a name resolved off the loop.
    pub address: String,
    pub host: String,
    pub port: u16,
    /// 3.1.1 (`proto_ver = 4`) or 5.0 (`proto_ver = 5`).
    pub version: ProtocolVersion,
    /// The client id this broker uses on the remote.
    pub clientid: String,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Keep Alive sent in CONNECT, whole seconds 1..=65535.
    pub keepalive: u16,
    pub clean_start: bool,
    /// QoS 1/2 messages unacknowledged by the remote at once (also capped by its Receive
    /// Maximum).
    pub max_inflight: u16,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// Local -> remote.
    pub forwards: Vec<TopicMap>,
    /// Remote -> local.
    pub subscriptions: Vec<TopicMap>,
    /// Queue caps of the bridge's session in the store (defaults: the `[sqlite]` ones).
    pub max_queued: u64,
    pub max_queued_bytes: u64,
    pub overflow: Overflow,
    /// Whether QoS 0 messages are queued while the link is down.
    pub queue_qos0: bool,
    pub tls: Option<BridgeTls>,
}

/// One entry of `forwards` or `subscriptions`, with Mosquitto's `topic` semantics: the topic is
/// `local_prefix + topic` here and `remote_prefix + topic` on the remote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicMap {
    pub topic: String,
    pub qos: QoS,
    pub local_prefix: String,
    pub remote_prefix: String,
}

impl TopicMap {
    /// The filter on this broker.
    pub fn local_filter(&self) -> String {
        format!("{}{}", self.local_prefix, self.topic)
    }

    /// The filter on the remote.
    pub fn remote_filter(&self) -> String {
        format!("{}{}", self.remote_prefix, self.topic)
    }
}

/// `tls = { cafile, certfile, keyfile, server_name }`: TLS to the remote. The files are read
/// when the broker starts (and on SIGHUP), not here.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct BridgeTls {
    /// CAs the remote's certificate is verified against; `None` = the system's CA bundle.
    pub cafile: Option<String>,
    /// Our client certificate (chain) and its key, for a remote that asks for one; both or
    /// neither.
    pub certfile: Option<String>,
    pub keyfile: Option<String>,
    /// The name sent as SNI and verified in the remote's certificate; `None` = the host of
    /// `address` (an IP address is verified against the certificate's IP addresses).
    pub server_name: Option<String>,
}

/// Takes `[bridges]` out of `root` and reads every `[bridges.NAME]` in it, in name order.
pub(super) fn parse_bridges(
    root: &mut Table,
    origin: &str,
    mqtt: &super::MqttConfig,
    sqlite: &super::SqliteConfig,
    effective: &mut Table,
) -> Result<Vec<BridgeConfig>, ConfigError> {
    let Some(value) = root.remove("bridges") else { return Ok(Vec::new()) };
    let invalid = |key: String, expected: &str, got: &Value| ConfigError {
        origin: origin.to_string(),
        kind: ConfigErrorKind::Invalid { key, expected: expected.to_string(), got: show(got) },
    };
    let Value::Table(tables) = value else {
        return Err(invalid("bridges".into(), "sections [bridges.NAME]", &value));
    };
    if tables.len() > MAX_BRIDGES {
        let got = Value::Integer(tables.len() as i64);
        return Err(invalid("bridges".into(), &format!("at most {MAX_BRIDGES} bridges"), &got));
    }
    let mut bridges = Vec::with_capacity(tables.len());
    for (name, table) in tables {
        let valid_name = !name.is_empty()
            && name.len() <= MAX_NAME
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !valid_name {
            return Err(invalid(
                format!("bridges.{name}"),
                &format!("a bridge name of 1 to {MAX_NAME} ASCII letters, digits, '_' or '-'"),
                &Value::String(name.clone()),
            ));
        }
        let Value::Table(table) = table else {
            return Err(invalid(format!("bridges.{name}"), "a section [bridges.NAME]", &table));
        };
        let (bridge, values) = parse_bridge(name, table, origin, sqlite)?;
        super::insert_named(effective, "bridges", &bridge.name, values);
        check_session_limits(&bridge, mqtt, origin)?;
        bridges.push(bridge);
    }
    Ok(bridges)
}

fn parse_bridge(
    name: String,
    table: Table,
    origin: &str,
    sqlite: &super::SqliteConfig,
) -> Result<(BridgeConfig, Table), ConfigError> {
    let section_name = format!("bridges.{name}");
    let mut s = Section::from_table(table, section_name.clone(), origin);
    let key = |k: &str| format!("{section_name}.{k}");

    let mut address = String::new();
    s.string(&mut address, "address", false)?;
    if address.is_empty() {
        return Err(ConfigError {
            origin: origin.to_string(),
            kind: ConfigErrorKind::Invalid {
                key: key("address"),
                expected: "a \"host:port\" address (required)".into(),
                got: "nothing".into(),
            },
        });
    }
    let Some((host, port)) = split_host_port(&address) else {
        return Err(s.invalid(
            "address",
            "\"host:port\" such as \"broker.example.com:1883\", \"10.0.0.1:1883\" or \
             \"[::1]:1883\""
                .into(),
            &Value::String(address.clone()),
        ));
    };
    let mut proto = 4u8;
    if let Some(value) = s.take("proto_ver") {
        match value {
            Value::Integer(4) => proto = 4,
            Value::Integer(5) => proto = 5,
            other => {
                return Err(s.invalid("proto_ver", "4 (MQTT 3.1.1) or 5 (MQTT 5.0)".into(), &other))
            }
        }
    }
    let version = if proto == 5 { ProtocolVersion::V5 } else { ProtocolVersion::V311 };
    let mut clientid = format!("edgemq-{name}");
    s.string(&mut clientid, "clientid", false)?;
    let mut username = String::new();
    s.string(&mut username, "username", true)?;
    let mut password = String::new();
    s.string(&mut password, "password", true)?;
    let mut keepalive = Duration::from_secs(60);
    s.duration(&mut keepalive, "keepalive", DurationRange::whole_seconds(1, 65_535))?;
    let mut clean_start = false;
    s.boolean(&mut clean_start, "clean_start")?;
    let mut max_inflight: u16 = 256;
    s.integer(&mut max_inflight, "max_inflight", 1, u16::MAX)?;
    let mut backoff_min = Duration::from_secs(1);
    let mut backoff_max = Duration::from_secs(60);
    let backoff_range =
        || DurationRange::any(Duration::from_millis(100), Duration::from_secs(86_400));
    s.duration(&mut backoff_min, "backoff_min", backoff_range())?;
    s.duration(&mut backoff_max, "backoff_max", backoff_range())?;
    let forwards = s.topic_maps("forwards")?;
    let subscriptions = s.topic_maps("subscriptions")?;
    let mut max_queued = sqlite.max_queued_per_session;
    s.integer(&mut max_queued, "max_queued", 1, sqlite.disk_cache_size)?;
    let mut max_queued_bytes = sqlite.max_queued_bytes_per_session;
    s.size(&mut max_queued_bytes, "max_queued_bytes", KIB, TIB)?;
    let mut overflow = sqlite.overflow;
    s.choice(&mut overflow, "overflow", &OVERFLOW_NAMES)?;
    let mut queue_qos0 = false;
    s.boolean(&mut queue_qos0, "queue_qos0")?;
    let tls = s.tls("tls")?;
    s.record("proto_ver", Value::Integer(i64::from(proto)));
    let (_, values) = s.finish()?;

    let conflict = |a: &str, b: &str, message: String| ConfigError {
        origin: origin.to_string(),
        kind: ConfigErrorKind::Conflict { keys: [key(a), key(b)], message },
    };
    if backoff_min > backoff_max {
        return Err(conflict(
            "backoff_min",
            "backoff_max",
            format!(
                "{} ({}) must not exceed {} ({})",
                key("backoff_min"),
                super::format_duration(backoff_min),
                key("backoff_max"),
                super::format_duration(backoff_max)
            ),
        ));
    }
    if forwards.is_empty() && subscriptions.is_empty() {
        return Err(conflict(
            "forwards",
            "subscriptions",
            format!(
                "{} and {} are both empty: the bridge would carry nothing",
                key("forwards"),
                key("subscriptions")
            ),
        ));
    }
    if version == ProtocolVersion::V311 {
        // MQTT 3.1.1 has no No Local: the remote sends a forwarded message back if one of our
        // subscriptions there matches it, and local subscribers would get it twice.
        for f in &forwards {
            for sub in &subscriptions {
                if filters_overlap(&f.remote_filter(), &sub.remote_filter()) {
                    return Err(conflict(
                        "forwards",
                        "subscriptions",
                        format!(
                            "{}: forward {:?} reaches the remote as {:?}, which subscription \
                             {:?} ({:?} there) would bring back (MQTT 3.1.1 has no No Local): \
                             use distinct remote prefixes or proto_ver = 5",
                            section_name,
                            f.local_filter(),
                            f.remote_filter(),
                            sub.topic,
                            sub.remote_filter()
                        ),
                    ));
                }
            }
        }
    }
    if tls.is_some() && !cfg!(feature = "tls") {
        return Err(conflict(
            "tls",
            "address",
            format!(
                "{}: this edgemq was built without TLS (cargo feature `tls`); build it with \
                 the feature, or remove {} to connect to {address} over plain TCP",
                key("tls"),
                key("tls")
            ),
        ));
    }
    let bridge = BridgeConfig {
        name,
        address: address.clone(),
        host,
        port,
        version,
        clientid,
        username: (!username.is_empty()).then_some(username),
        password: (!password.is_empty()).then_some(password),
        keepalive: u16::try_from(keepalive.as_secs()).unwrap_or(u16::MAX),
        clean_start,
        max_inflight,
        backoff_min,
        backoff_max,
        forwards,
        subscriptions,
        max_queued,
        max_queued_bytes,
        overflow,
        queue_qos0,
        tls,
    };
    Ok((bridge, values))
}

/// A bridge's forwards are its session's subscriptions: they obey the `[mqtt]` limits every
/// session does (the store would drop the excess at the next start).
fn check_session_limits(
    bridge: &BridgeConfig,
    mqtt: &super::MqttConfig,
    origin: &str,
) -> Result<(), ConfigError> {
    let key = format!("bridges.{}.forwards", bridge.name);
    let conflict = |other: &str, message: String| ConfigError {
        origin: origin.to_string(),
        kind: ConfigErrorKind::Conflict { keys: [key.clone(), other.to_string()], message },
    };
    let count = bridge.forwards.len();
    if count > mqtt.max_subscriptions_per_session {
        return Err(conflict(
            "mqtt.max_subscriptions_per_session",
            format!(
                "{key} has {count} entries, more than mqtt.max_subscriptions_per_session ({}): \
                 each is a subscription of the bridge's session",
                mqtt.max_subscriptions_per_session
            ),
        ));
    }
    let bytes: usize = bridge.forwards.iter().map(|f| f.local_filter().len()).sum();
    if bytes > mqtt.max_subscription_bytes {
        return Err(conflict(
            "mqtt.max_subscription_bytes",
            format!(
                "{key} filters take {bytes} bytes, more than mqtt.max_subscription_bytes ({})",
                mqtt.max_subscription_bytes
            ),
        ));
    }
    for map in bridge.forwards.iter().chain(&bridge.subscriptions) {
        let filter = map.local_filter();
        if topic::level_count(&filter) > mqtt.max_topic_levels {
            return Err(conflict(
                "mqtt.max_topic_levels",
                format!(
                    "{}: {filter:?} has more levels than mqtt.max_topic_levels ({})",
                    key.trim_end_matches(".forwards"),
                    mqtt.max_topic_levels
                ),
            ));
        }
    }
    Ok(())
}

/// `host:port` with a non-empty host (brackets around an IPv6 literal are removed) and a port
/// from 1.
fn split_host_port(address: &str) -> Option<(String, u16)> {
    let (host, port) = address.trim().rsplit_once(':')?;
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    let host = match host.strip_prefix('[') {
        Some(inner) => inner.strip_suffix(']')?,
        None if host.contains(':') => return None, // an IPv6 literal needs brackets
        None => host,
    };
    let valid = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'_'));
    valid.then(|| (host.to_string(), port))
}

/// Whether some topic name matches both filters (level by level: `+` matches any one level,
/// `#` the rest).
pub fn filters_overlap(a: &str, b: &str) -> bool {
    let mut a = a.split('/');
    let mut b = b.split('/');
    loop {
        match (a.next(), b.next()) {
            (Some("#"), _) | (_, Some("#")) => return true,
            (None, None) => return true,
            (Some(x), Some(y)) if x == "+" || y == "+" || x == y => {}
            _ => return false,
        }
    }
}

impl Section<'_> {
    /// A string; `allow_empty` says whether `""` is accepted.
    fn string(
        &mut self,
        field: &mut String,
        key: &'static str,
        allow_empty: bool,
    ) -> Result<(), ConfigError> {
        if let Some(value) = self.take(key) {
            match &value {
                Value::String(s)
                    if (allow_empty || !s.is_empty()) && s.len() <= 65_535 && !s.contains('\0') =>
                {
                    *field = s.clone();
                }
                _ => {
                    return Err(self.invalid(
                        key,
                        "a non-empty string of at most 65535 bytes".into(),
                        &value,
                    ))
                }
            }
        }
        self.record(key, Value::String(field.clone()));
        Ok(())
    }

    /// A list of `{ topic, qos, local_prefix, remote_prefix }`.
    fn topic_maps(&mut self, key: &'static str) -> Result<Vec<TopicMap>, ConfigError> {
        let Some(value) = self.take(key) else {
            self.record(key, Value::Array(Vec::new()));
            return Ok(Vec::new());
        };
        let expected = "a list of { topic = \"...\", qos = 0..2, local_prefix = \"\", \
                        remote_prefix = \"\" }";
        let Value::Array(items) = &value else {
            return Err(self.invalid(key, expected.into(), &value));
        };
        if items.len() > MAX_TOPICS {
            let got = Value::Integer(items.len() as i64);
            return Err(self.invalid(key, format!("at most {MAX_TOPICS} entries"), &got));
        }
        let mut maps = Vec::with_capacity(items.len());
        for item in items {
            let Value::Table(entry) = item else {
                return Err(self.invalid(key, expected.into(), item));
            };
            let mut map = TopicMap {
                topic: String::new(),
                qos: QoS::AtMostOnce,
                local_prefix: String::new(),
                remote_prefix: String::new(),
            };
            let mut topic_seen = false;
            for (k, v) in entry {
                let text = v.as_str();
                match (k.as_str(), text) {
                    ("topic", Some(t)) => {
                        map.topic = t.to_string();
                        topic_seen = true;
                    }
                    ("local_prefix", Some(t)) => map.local_prefix = t.to_string(),
                    ("remote_prefix", Some(t)) => map.remote_prefix = t.to_string(),
                    ("qos", _) => {
                        map.qos = match v {
                            Value::Integer(q) => u8::try_from(*q).ok().and_then(QoS::from_bits),
                            _ => None,
                        }
                        .ok_or_else(|| {
                            self.invalid(
                                &format!("{key}.qos"),
                                "an integer between 0 and 2".into(),
                                v,
                            )
                        })?;
                    }
                    ("topic" | "local_prefix" | "remote_prefix", None) => {
                        return Err(self.invalid(&format!("{key}.{k}"), "a string".into(), v));
                    }
                    (other, _) => {
                        return Err(ConfigError {
                            origin: self.origin.to_string(),
                            kind: ConfigErrorKind::UnknownKey {
                                key: format!("{}.{key}.{other}", self.name),
                                suggestion: super::closest(
                                    other,
                                    ["topic", "qos", "local_prefix", "remote_prefix"],
                                )
                                .map(|s| format!("{}.{key}.{s}", self.name)),
                            },
                        })
                    }
                }
            }
            if !topic_seen {
                return Err(self.invalid(
                    &format!("{key}.topic"),
                    "a topic (required)".into(),
                    item,
                ));
            }
            let prefixes_ok = [&map.local_prefix, &map.remote_prefix]
                .iter()
                .all(|p| !p.bytes().any(|b| matches!(b, b'+' | b'#' | 0)));
            let filters_ok = topic::is_valid_topic_filter(&map.local_filter())
                && topic::is_valid_topic_filter(&map.remote_filter());
            // Mosquitto: an empty topic maps the local prefix to the remote prefix exactly.
            let empty_ok = !map.topic.is_empty()
                || (!map.local_prefix.is_empty() && !map.remote_prefix.is_empty());
            if !(prefixes_ok && filters_ok && empty_ok) {
                // Show the filter that is wrong (the local one unless only the remote one is).
                let shown = if topic::is_valid_topic_filter(&map.local_filter()) {
                    map.remote_filter()
                } else {
                    map.local_filter()
                };
                return Err(self.invalid(
                    key,
                    "prefixes without wildcards and prefix + topic a valid topic filter \
                     (an empty topic needs both prefixes)"
                        .into(),
                    &Value::String(shown),
                ));
            }
            maps.push(map);
        }
        let shown = maps
            .iter()
            .map(|m| {
                let mut t = Table::new();
                t.insert("topic".into(), Value::String(m.topic.clone()));
                t.insert("qos".into(), Value::Integer(i64::from(m.qos as u8)));
                t.insert("local_prefix".into(), Value::String(m.local_prefix.clone()));
                t.insert("remote_prefix".into(), Value::String(m.remote_prefix.clone()));
                Value::Table(t)
            })
            .collect();
        self.record(key, Value::Array(shown));
        Ok(maps)
    }

    /// `tls = { cafile, certfile, keyfile, server_name }`: every value a non-empty string.
    fn tls(&mut self, key: &'static str) -> Result<Option<BridgeTls>, ConfigError> {
        let Some(value) = self.take(key) else { return Ok(None) };
        let Value::Table(entry) = &value else {
            return Err(self.invalid(
                key,
                "{ cafile = \"...\", certfile = \"...\", keyfile = \"...\", server_name = \"...\" }"
                    .into(),
                &value,
            ));
        };
        let mut tls = BridgeTls::default();
        for (k, v) in entry {
            let text = match v {
                Value::String(s) if !s.is_empty() && !s.contains('\0') => Some(s.clone()),
                _ => None,
            };
            let slot = match k.as_str() {
                "cafile" => &mut tls.cafile,
                "certfile" => &mut tls.certfile,
                "keyfile" => &mut tls.keyfile,
                "server_name" => &mut tls.server_name,
                other => {
                    return Err(ConfigError {
                        origin: self.origin.to_string(),
                        kind: ConfigErrorKind::UnknownKey {
                            key: format!("{}.{key}.{other}", self.name),
                            suggestion: super::closest(
                                other,
                                ["cafile", "certfile", "keyfile", "server_name"],
                            )
                            .map(|s| format!("{}.{key}.{s}", self.name)),
                        },
                    })
                }
            };
            match text {
                Some(t) => *slot = Some(t),
                None => {
                    return Err(self.invalid(&format!("{key}.{k}"), "a non-empty string".into(), v))
                }
            }
        }
        if tls.certfile.is_some() != tls.keyfile.is_some() {
            return Err(self.invalid(
                key,
                "certfile and keyfile together (or neither)".into(),
                &value,
            ));
        }
        let mut shown = Table::new();
        for (k, v) in [
            ("cafile", &tls.cafile),
            ("certfile", &tls.certfile),
            ("keyfile", &tls.keyfile),
            ("server_name", &tls.server_name),
        ] {
            if let Some(v) = v {
                shown.insert(k.into(), Value::String(v.clone()));
            }
        }
        self.record(key, Value::Table(shown));
        Ok(Some(tls))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every key a `[bridges.NAME]` table may have.
    const ALL_BRIDGE_KEYS: [&str; 17] = [
        "address",
        "proto_ver",
        "clientid",
        "username",
        "password",
        "keepalive",
        "clean_start",
        "max_inflight",
        "backoff_min",
        "backoff_max",
        "forwards",
        "subscriptions",
        "max_queued",
        "max_queued_bytes",
        "overflow",
        "queue_qos0",
        "tls",
    ];
    use crate::config::Config;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml_str(text, "test.toml")
    }

    const MINIMAL: &str = r#"
        [bridges.up]
        address = "10.0.0.1:1883"
        forwards = [{ topic = "a/#", qos = 1 }]
    "#;

    #[test]
    fn a_minimal_bridge_gets_the_defaults() {
        let config = parse(MINIMAL).unwrap();
        let b = &config.bridges[0];
        assert_eq!(b.name, "up");
        assert_eq!((b.host.as_str(), b.port), ("10.0.0.1", 1883));
        assert_eq!(b.version, ProtocolVersion::V311);
        assert_eq!(b.clientid, "edgemq-up");
        assert_eq!(b.keepalive, 60);
        assert!(!b.clean_start);
        assert_eq!(b.max_inflight, 256);
        assert!(!b.queue_qos0);
        assert_eq!(b.max_queued, config.sqlite.max_queued_per_session);
        assert_eq!(b.forwards[0].local_filter(), "a/#");
        assert_eq!(b.forwards[0].qos, QoS::AtLeastOnce);
    }

    #[test]
    fn every_key_is_read() {
        let config = parse(
            r#"
            [bridges.cloud-1]
            address = "[::1]:8883"
            proto_ver = 5
            clientid = "gw"
            username = "u"
            password = "p"
            keepalive = "30s"
            clean_start = true
            max_inflight = 7
            backoff_min = "200ms"
            backoff_max = "5s"
            forwards = [{ topic = "t/#", qos = 2, local_prefix = "l/", remote_prefix = "r/" }]
            subscriptions = [{ topic = "cmd/#", qos = 1, local_prefix = "in/", remote_prefix = "gw/" }]
            max_queued = 10
            max_queued_bytes = "1MB"
            overflow = "drop_new"
            queue_qos0 = true
            "#,
        )
        .unwrap();
        let b = &config.bridges[0];
        assert_eq!((b.host.as_str(), b.port), ("::1", 8883));
        assert_eq!(b.version, ProtocolVersion::V5);
        assert_eq!(b.clientid, "gw");
        assert_eq!(b.username.as_deref(), Some("u"));
        assert_eq!(b.password.as_deref(), Some("p"));
        assert_eq!(b.keepalive, 30);
        assert!(b.clean_start && b.queue_qos0);
        assert_eq!(b.max_inflight, 7);
        assert_eq!(b.backoff_min, Duration::from_millis(200));
        assert_eq!(b.backoff_max, Duration::from_secs(5));
        assert_eq!(b.forwards[0].local_filter(), "l/t/#");
        assert_eq!(b.forwards[0].remote_filter(), "r/t/#");
        assert_eq!(b.subscriptions[0].remote_filter(), "gw/cmd/#");
        assert_eq!((b.max_queued, b.max_queued_bytes), (10, 1024 * 1024));
        assert_eq!(b.overflow, Overflow::DropNew);
    }

    fn error(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn mistakes_are_one_line_naming_the_key() {
        let e = error("[bridges.up]\nforwards = [{ topic = \"a\" }]\n");
        assert!(e.contains("bridges.up.address") && e.contains("required"), "{e}");
        let e = error("[bridges.up]\naddress = \"x\"\nforwards = [{ topic = \"a\" }]\n");
        assert!(e.contains("bridges.up.address"), "{e}");
        let e = error(&format!("{MINIMAL}proto_ver = 3\n"));
        assert_eq!(
            e,
            "test.toml: bridges.up.proto_ver: expected 4 (MQTT 3.1.1) or 5 (MQTT 5.0), got 3"
        );
        let e = error(&format!("{MINIMAL}keepalive_interval = 3\n"));
        assert!(e.contains("unknown key \"bridges.up.keepalive_interval\""), "{e}");
        let e =
            error("[bridges.up]\naddress = \"h:1\"\nforwards = [{ topic = \"a\", qoss = 1 }]\n");
        assert!(e.contains("bridges.up.forwards.qoss") && e.contains("forwards.qos"), "{e}");
        let e = error("[bridges.up]\naddress = \"h:1\"\nforwards = [{ topic = \"a\", local_prefix = \"x/+/\" }]\n");
        assert!(e.contains("bridges.up.forwards"), "{e}");
        let e = error(&format!("{MINIMAL}backoff_min = \"10s\"\nbackoff_max = \"1s\"\n"));
        assert!(e.contains("backoff_min") && e.contains("backoff_max"), "{e}");
        let e = error("[bridges.\"a b\"]\naddress = \"h:1\"\n");
        assert!(e.contains("bridge name"), "{e}");
        let e = error("[bridges.up]\naddress = \"h:1\"\n");
        assert!(e.contains("carry nothing"), "{e}");
        assert!(!e.contains('\n'));
    }

    #[test]
    fn tls_is_checked_and_needs_the_feature() {
        let e =
            error(&format!("{MINIMAL}tls = {{ cafile = \"/ca.pem\", certfile = \"/c.pem\" }}\n"));
        assert!(e.contains("certfile and keyfile together"), "{e}");
        let e = error(&format!("{MINIMAL}tls = {{ cafle = \"/ca.pem\" }}\n"));
        assert!(e.contains("bridges.up.tls.cafle") && e.contains("tls.cafile"), "{e}");
        let e = error(&format!("{MINIMAL}tls = {{ cafile = \"\" }}\n"));
        assert!(e.contains("non-empty string"), "{e}");
        let text = format!(
            "{MINIMAL}tls = {{ cafile = \"/ca.pem\", certfile = \"/c.pem\", keyfile = \"/c.key\", \
             server_name = \"broker.example.com\" }}\n"
        );
        if cfg!(feature = "tls") {
            let config = parse(&text).unwrap();
            let tls = config.bridges[0].tls.clone().expect("tls");
            assert_eq!(tls.cafile.as_deref(), Some("/ca.pem"));
            assert_eq!(tls.certfile.as_deref(), Some("/c.pem"));
            assert_eq!(tls.keyfile.as_deref(), Some("/c.key"));
            assert_eq!(tls.server_name.as_deref(), Some("broker.example.com"));
            parse(&format!("{MINIMAL}tls = {{}}\n")).unwrap();
        } else {
            let e = error(&text);
            assert!(e.contains("bridges.up.tls") && e.contains("cargo feature `tls`"), "{e}");
        }
    }

    #[test]
    fn a_v311_echo_is_refused_and_v5_or_prefixes_allow_it() {
        let text = |proto: u8, remote_prefix: &str| {
            format!(
                "[bridges.up]\naddress = \"h:1\"\nproto_ver = {proto}\n\
                 forwards = [{{ topic = \"s/#\", qos = 1 }}]\n\
                 subscriptions = [{{ topic = \"s/+\", qos = 1, remote_prefix = \"{remote_prefix}\" }}]\n"
            )
        };
        let e = error(&text(4, ""));
        assert!(e.contains("No Local"), "{e}");
        parse(&text(5, "")).unwrap();
        parse(&text(4, "other/")).unwrap();
    }

    #[test]
    fn forwards_obey_the_session_limits() {
        let text = "[mqtt]\nmax_subscriptions_per_session = 1\n[bridges.up]\naddress = \"h:1\"\n\
                    forwards = [{ topic = \"a\" }, { topic = \"b\" }]\n";
        let e = error(text);
        assert!(e.contains("mqtt.max_subscriptions_per_session"), "{e}");
        let text = "[mqtt]\nmax_topic_levels = 2\n[bridges.up]\naddress = \"h:1\"\n\
                    subscriptions = [{ topic = \"a/b/c\" }]\n";
        let e = error(text);
        assert!(e.contains("mqtt.max_topic_levels"), "{e}");
    }

    /// The commented `[bridges.cloud]` example in conf/edgemq.toml, uncommented, is a valid
    /// bridge (its `tls` line only with the `tls` feature) and shows every key.
    #[test]
    fn the_documented_example_parses_and_shows_every_key() {
        let example = crate::config::DEFAULT_CONFIG
            .split("# [bridges.cloud]")
            .nth(1)
            .expect("conf/edgemq.toml has a commented [bridges.cloud] example");
        let mut text = String::from("[bridges.cloud]\n");
        let mut keys = Vec::new();
        for line in example.lines() {
            let Some(code) = line.strip_prefix("# ") else { continue };
            let is_key = code.split_once(" = ").is_some_and(|(k, _)| {
                !k.is_empty()
                    && k.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            });
            if is_key {
                keys.push(code.split(" = ").next().unwrap_or_default().to_string());
            }
            let is_list_line = code.starts_with("  { ") || code == "]";
            if (is_key || is_list_line) && (cfg!(feature = "tls") || !code.starts_with("tls = ")) {
                text.push_str(code);
                text.push('\n');
            }
        }
        let config = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(config.bridges[0].name, "cloud");
        keys.sort();
        let mut all: Vec<String> = ALL_BRIDGE_KEYS.iter().map(|k| k.to_string()).collect();
        all.sort();
        assert_eq!(keys, all);
    }

    /// `edgemq check` shows every key of a bridge (defaults filled in) and reads back to the same
    /// bridge; the password is a comment, not its value.
    #[test]
    fn the_effective_config_shows_every_bridge_key_and_hides_the_password() {
        use crate::config::{parse_table, parse_toml, CrossCheck, Effective};
        let text = "[bridges.up]\naddress = \"10.0.0.1:1883\"\nproto_ver = 5\nusername = \"u\"\n\
                    password = \"s3cret\"\nforwards = [{ topic = \"a/#\", qos = 1, remote_prefix \
                    = \"x/\" }]\nsubscriptions = [{ topic = \"c/#\", qos = 2, local_prefix = \
                    \"l/\", remote_prefix = \"y/\" }]\n";
        let root = parse_toml(text, "t").unwrap();
        let (config, order, root) = parse_table(root, "t", CrossCheck::Yes).unwrap();
        let shown = Effective { root, order, sources: Default::default() }.to_toml();
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("\n# password = (set, not shown)\n"), "{shown}");
        // Every key but the password (a comment) and `tls` (a table, shown when set).
        for key in ALL_BRIDGE_KEYS.iter().filter(|k| !matches!(**k, "password" | "tls")) {
            assert!(shown.contains(&format!("\n{key} = ")), "{key}: {shown}");
        }
        let back = shown.replace("# password = (set, not shown)", "password = \"s3cret\"");
        assert_eq!(parse(&back).unwrap_or_else(|e| panic!("{e}\n{back}")), config);
    }

    #[test]
    fn overlap() {
        assert!(filters_overlap("a/#", "a/b/c"));
        assert!(filters_overlap("a/+/c", "a/b/+"));
        assert!(filters_overlap("a", "a/#"));
        assert!(!filters_overlap("a/b", "a/c"));
        assert!(!filters_overlap("a/b", "a/b/c"));
        assert!(!filters_overlap("x/#", "y/#"));
    }
}
