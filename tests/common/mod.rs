//! End-to-end test harness: runs the real broker binary on an ephemeral port with its own
//! config and data directory, and talks to it over raw TCP.
//!
//! Contract:
//! - Every test starts its own [`Broker`] (tests run in parallel); dropping it kills the process
//!   and removes its temporary directory. While a test is panicking, the drop prints the
//!   broker's whole log, so a failure explains itself.
//! - Nothing here sleeps for correctness: every wait polls against a deadline derived from
//!   [`timeout`], which scales with `EDGEMQ_TEST_TIMEOUT_SCALE` (qemu-user is 5-20x slower).
//! - Packets are built and parsed by [`packets`], written from the specification and sharing
//!   no code with the `edgemq` codec.
//!
//! Environment:
//! - `EDGEMQ_BIN`: broker binary (default: the one cargo built for this test run).
//! - `EDGEMQ_TEST_RUNNER`: command put in front of it, split on whitespace
//!   (e.g. `qemu-arm -L /usr/arm-linux-gnueabihf`; binfmt_misc is not available everywhere).
//! - `EDGEMQ_TEST_TIMEOUT_SCALE`: multiplies every deadline (default 1).
//! - `EDGEMQ_TEST_LOG_LEVEL`: the broker's `--log-level` (default `info`; must keep `info`
//!   lines, the harness reads the listening port from one).
//! - `EDGEMQ_TEST_REFERENCE=mosquitto`: run `mosquitto` instead, to validate the tests
//!   themselves against the reference broker.
//! - `EDGEMQ_TEST_NO_SKIP=1`: in reference mode, also run the tests marked as differing.
//! - `CI=true`: a missing external client (mosquitto_sub, paho) fails the test instead of
//!   skipping it.
//! - `EDGEMQ_TEST_TRANSPORT=ws`: every edgemq broker also gets a `ws` listener
//!   (`[listeners.e2e-ws]`) and every [`TestClient`] made from a [`Broker`] speaks MQTT over
//!   WebSockets to it (raw sockets a test opens itself stay TCP), so a suite written for TCP
//!   runs over `ws://` (`make test-ws`).
#![allow(dead_code)] // Each test binary uses a different part of the harness.

pub mod packets;
pub mod pki;
pub mod ws;

use packets::{kind, Ack, Connack, Connect, Packet, Publish, Suback};
use std::collections::{BTreeMap, VecDeque};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// Time
// ---------------------------------------------------------------------------------------------

/// `EDGEMQ_TEST_TIMEOUT_SCALE`, default 1.0.
pub fn timeout_scale() -> f64 {
    match std::env::var("EDGEMQ_TEST_TIMEOUT_SCALE") {
        Ok(s) => match s.trim().parse::<f64>() {
            Ok(v) if v > 0.0 && v.is_finite() => v,
            _ => panic!("EDGEMQ_TEST_TIMEOUT_SCALE={s:?} is not a positive number"),
        },
        Err(_) => 1.0,
    }
}

/// A duration multiplied by the timeout scale.
pub fn scaled(d: Duration) -> Duration {
    d.mul_f64(timeout_scale())
}

/// The default upper bound for anything the broker should do "promptly": 10 s, scaled.
pub fn timeout() -> Duration {
    scaled(Duration::from_secs(10))
}

/// A short window for "nothing more arrives" checks that cannot fail falsely when the
/// machine is slow (a slow broker only makes them pass more easily): 300 ms, scaled.
pub fn quiet_period() -> Duration {
    scaled(Duration::from_millis(300))
}

/// The name libtest gives the current test's thread, for skip messages.
fn test_name() -> String {
    thread::current().name().unwrap_or("<unnamed>").to_string()
}

// ---------------------------------------------------------------------------------------------
// Reference mode and external tools
// ---------------------------------------------------------------------------------------------

/// Which broker the suite runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Edgemq,
    Mosquitto,
}

pub fn target() -> Target {
    match std::env::var("EDGEMQ_TEST_REFERENCE").as_deref() {
        Err(_) | Ok("") => Target::Edgemq,
        Ok("mosquitto") => Target::Mosquitto,
        Ok(other) => panic!("EDGEMQ_TEST_REFERENCE={other:?}: only \"mosquitto\" is supported"),
    }
}

pub fn is_reference() -> bool {
    target() == Target::Mosquitto
}

/// For tests of edgemq behaviour where Mosquitto differs (or cannot be configured the same
/// way): returns true, after saying why, when running against the reference broker.
/// `EDGEMQ_TEST_NO_SKIP=1` runs them anyway, to see how Mosquitto differs.
pub fn skip_in_reference(why: &str) -> bool {
    if !is_reference() {
        return false;
    }
    if std::env::var("EDGEMQ_TEST_NO_SKIP").is_ok_and(|v| v == "1") {
        loud(&format!(
            "NOT SKIPPED {} (EDGEMQ_TEST_NO_SKIP=1), expected to differ: {why}",
            test_name()
        ));
        return false;
    }
    loud(&format!("SKIPPED {} in reference mode (mosquitto): {why}", test_name()));
    true
}

/// Writes to the real stderr, past libtest's output capture, so skips show in every run.
fn loud(msg: &str) {
    let _ = writeln!(io::stderr().lock(), "{msg}");
}

fn in_ci() -> bool {
    std::env::var("CI").map(|v| v == "true").unwrap_or(false)
}

/// A missing external dependency: a loud skip locally, a failure under `CI=true`.
fn missing(what: &str, install: &str) -> bool {
    let msg = format!("{what} not found: install {install}");
    if in_ci() {
        panic!("{msg} (CI=true, so a missing client fails the test)");
    }
    loud(&format!("SKIPPED {}: {msg}", test_name()));
    false
}

/// Whether an executable is on PATH; see [`missing`] for what happens when it is not.
pub fn require_tool(name: &str) -> bool {
    require_tool_from(name, "mosquitto-clients")
}

/// Like [`require_tool`], for a tool of another Debian package.
pub fn require_tool_from(name: &str, package: &str) -> bool {
    let found = std::env::var_os("PATH")
        .map(|path| {
            std::env::split_paths(&path).any(|dir| {
                let p = dir.join(name);
                p.is_file()
                    && std::fs::metadata(&p)
                        .map(|m| {
                            std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0
                        })
                        .unwrap_or(false)
            })
        })
        .unwrap_or(false);
    found || missing(name, &format!("{package} (apt-get install {package})"))
}

/// The interpreter the paho scripts run with: Debian's, where `python3-paho-mqtt` lives.
pub const PYTHON: &str = "/usr/bin/python3";

/// Whether `/usr/bin/python3` can import paho-mqtt; see [`missing`].
pub fn require_paho() -> bool {
    let ok = Command::new(PYTHON)
        .args(["-c", "import paho.mqtt.client"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    ok || missing(
        "paho-mqtt for /usr/bin/python3",
        "python3-paho-mqtt (apt-get install python3-paho-mqtt)",
    )
}

// ---------------------------------------------------------------------------------------------
// Temporary directory (std only)
// ---------------------------------------------------------------------------------------------

/// A directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!(
            "{prefix}-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let path = std::env::temp_dir().join(name);
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        TempDir(path)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------------------------------------
// Broker
// ---------------------------------------------------------------------------------------------

/// A config value; written as TOML for edgemq, as plain text for Mosquitto.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
}

impl Value {
    fn toml(&self) -> String {
        match self {
            Value::Int(v) => v.to_string(),
            Value::Float(v) => format!("{v:?}"),
            Value::Bool(v) => v.to_string(),
            Value::Str(s) => format!("{s:?}"),
        }
    }
    fn plain(&self) -> String {
        match self {
            Value::Int(v) => v.to_string(),
            Value::Float(v) => v.to_string(),
            Value::Bool(v) => v.to_string(),
            Value::Str(s) => s.clone(),
        }
    }
}

impl From<i32> for Value {
    fn from(v: i32) -> Value {
        Value::Int(i64::from(v))
    }
}
impl From<i64> for Value {
    fn from(v: i64) -> Value {
        Value::Int(v)
    }
}
impl From<u32> for Value {
    fn from(v: u32) -> Value {
        Value::Int(i64::from(v))
    }
}
impl From<f64> for Value {
    fn from(v: f64) -> Value {
        Value::Float(v)
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Value {
        Value::Bool(v)
    }
}
impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::Str(v)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::Str(v.to_string())
    }
}

/// Config overrides for one broker; everything not set keeps the broker's default.
#[derive(Clone, Debug, Default)]
pub struct BrokerBuilder {
    /// section -> key -> value, written in a stable order.
    settings: BTreeMap<String, BTreeMap<String, Value>>,
    /// TOML appended as is (tables the key/value form cannot write, e.g. `[bridges.NAME]`).
    raw: String,
    /// `--listen` address (default `127.0.0.1:0`); its port must be 0.
    listen: Option<String>,
    /// `--data` instead of `<temp dir>/data` (e.g. a small filesystem the test mounted).
    data_dir: Option<PathBuf>,
    /// `--log-level` for this broker instead of `EDGEMQ_TEST_LOG_LEVEL` (edgemq only).
    log_level: Option<String>,
    /// Environment variables for the broker process (edgemq only).
    env: Vec<(String, String)>,
}

impl BrokerBuilder {
    pub fn new() -> BrokerBuilder {
        BrokerBuilder::default()
    }

    /// A key of the `[mqtt]` section, e.g. `.mqtt("max_packet_size", 1024)` or
    /// `.mqtt("connect_timeout", "1s")`.
    pub fn mqtt(self, key: &str, value: impl Into<Value>) -> BrokerBuilder {
        self.set("mqtt", key, value)
    }

    /// A key of any section.
    pub fn set(mut self, section: &str, key: &str, value: impl Into<Value>) -> BrokerBuilder {
        self.settings.entry(section.to_string()).or_default().insert(key.to_string(), value.into());
        self
    }

    /// Listens on `addr` instead of `127.0.0.1:0` (port 0: the harness reads the port from the
    /// log and clients still connect to 127.0.0.1). E.g. `0.0.0.0:0`, a non-loopback listener.
    pub fn listen(mut self, addr: &str) -> BrokerBuilder {
        self.listen = Some(addr.to_string());
        self
    }

    /// Keeps the data in `dir` (which the test owns) instead of the broker's temp directory.
    pub fn data_dir(mut self, dir: &Path) -> BrokerBuilder {
        self.data_dir = Some(dir.to_path_buf());
        self
    }

    /// Runs edgemq with this `--log-level` (for tests that read `debug` lines). It must keep
    /// `info` lines: the harness reads the port from one.
    pub fn log_level(mut self, level: &str) -> BrokerBuilder {
        self.log_level = Some(level.to_string());
        self
    }

    pub fn start(self) -> Broker {
        Broker::start_with(self)
    }

    /// Sets an environment variable for the broker process (`EDGEMQ_MQTT_MAX_CONNECTIONS`;
    /// edgemq only: a test using it must call [`skip_in_reference`] first).
    pub fn env(mut self, name: &str, value: &str) -> BrokerBuilder {
        self.env.push((name.to_string(), value.to_string()));
        self
    }

    /// TOML text appended to edgemq's config file after the sections (edgemq only: a test
    /// using it must call [`skip_in_reference`] first).
    pub fn raw_toml(mut self, text: &str) -> BrokerBuilder {
        self.raw.push_str(text);
        self
    }

    fn edgemq_toml(&self) -> String {
        let mut out = String::from("# written by the edgemq end-to-end tests\n");
        let mut settings = self.settings.clone();
        // `mqtt.max_pause` is a wall-clock bound on how long a congested subscriber may hold its
        // publishers; past it a clean session's overflow is dropped. An emulated broker drains
        // a healthy subscriber `timeout_scale` times slower, so the default bound scales like
        // the tests' own deadlines (tests that set it keep their value).
        if timeout_scale() > 1.0 {
            let max_pause = scaled(Duration::from_secs(1)).min(Duration::from_secs(60));
            let millis = format!("{}ms", max_pause.as_millis());
            settings
                .entry("mqtt".to_string())
                .or_default()
                .entry("max_pause".to_string())
                .or_insert(Value::from(millis.as_str()));
        }
        for (section, keys) in &settings {
            out.push_str(&format!("\n[{section}]\n"));
            for (k, v) in keys {
                out.push_str(&format!("{k} = {}\n", v.toml()));
            }
        }
        if transport_ws() {
            out.push_str("\n[listeners.e2e-ws]\nbind = \"127.0.0.1:0\"\nkind = \"ws\"\n");
        }
        out.push_str(&self.raw);
        out
    }

    /// The Mosquitto equivalent of the overrides; panics on one without an equivalent (a
    /// test that needs it must call [`skip_in_reference`] first).
    fn mosquitto_conf(&self, port: u16, data_dir: &Path) -> String {
        let mut out = format!(
            "listener {port} 127.0.0.1\n\
             allow_anonymous true\n\
             persistence false\n\
             persistence_location {}/\n\
             log_dest stderr\n\
             log_type all\n\
             connection_messages true\n",
            data_dir.display()
        );
        for (section, keys) in &self.settings {
            for (k, v) in keys {
                let name = match (section.as_str(), k.as_str()) {
                    // No limit: what Mosquitto does, with no setting for it.
                    ("mqtt", "max_connections_per_address" | "max_pending_connections")
                        if *v == Value::Int(0) =>
                    {
                        continue
                    }
                    ("mqtt", "max_packet_size") => "max_packet_size",
                    ("mqtt", "max_inflight") => "max_inflight_messages",
                    ("mqtt", "max_queued_messages") => "max_queued_messages",
                    ("mqtt", "max_keepalive") => "max_keepalive",
                    ("mqtt", "retain_available") => "retain_available",
                    ("mqtt", "max_topic_alias") => "max_topic_alias",
                    ("mqtt", "allow_zero_length_clientid") => "allow_zero_length_clientid",
                    ("mqtt", "max_qos") => "max_qos",
                    ("mqtt", "queue_qos0") => "queue_qos0_messages",
                    ("mqtt", "max_connections") => "max_connections",
                    ("mqtt", "persistent_session_expiry") => "persistent_client_expiration",
                    _ => panic!(
                        "[{section}] {k} has no Mosquitto equivalent: the test must call \
                         skip_in_reference() before starting the broker"
                    ),
                };
                out.push_str(&format!("{name} {}\n", v.plain()));
            }
        }
        out
    }
}

/// What the stderr reader saw during start-up.
enum Startup {
    Listening(u16),
    PortTaken,
}

/// A running broker (edgemq, or Mosquitto in reference mode) with its own temp directory.
pub struct Broker {
    target: Target,
    builder: BrokerBuilder,
    dir: TempDir,
    child: Option<Child>,
    port: u16,
    /// The `ws` listener's port under `EDGEMQ_TEST_TRANSPORT=ws` (edgemq only).
    ws_port: Option<u16>,
    /// Every line the broker printed, over all its runs.
    log: Arc<Mutex<Vec<String>>>,
    runs: usize,
    /// The last command line started, for failure messages.
    command: String,
}

impl Broker {
    /// A broker with default settings.
    pub fn start() -> Broker {
        BrokerBuilder::new().start()
    }

    fn start_with(builder: BrokerBuilder) -> Broker {
        let dir = TempDir::new("edgemq-e2e");
        std::fs::create_dir_all(dir.path().join("data")).expect("create data dir");
        let mut broker = Broker {
            target: target(),
            builder,
            dir,
            child: None,
            port: 0,
            ws_port: None,
            log: Arc::new(Mutex::new(Vec::new())),
            runs: 0,
            command: String::new(),
        };
        broker.spawn();
        broker
    }

    pub fn port(&self) -> u16 {
        self.port
    }
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The WebSocket listener [`TestClient`]s use under `EDGEMQ_TEST_TRANSPORT=ws`.
    pub fn ws_addr(&self) -> Option<SocketAddr> {
        self.ws_port.map(|port| SocketAddr::from(([127, 0, 0, 1], port)))
    }
    /// The directory the broker keeps its data in; the same across [`Broker::restart`].
    pub fn data_dir(&self) -> PathBuf {
        match &self.builder.data_dir {
            Some(dir) => dir.clone(),
            None => self.dir.path().join("data"),
        }
    }
    /// The broker's output so far, one line per entry.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// The broker's process id (the runner's under `EDGEMQ_TEST_RUNNER`: qemu-user passes
    /// signals on to the program it runs).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("broker is not running").id()
    }

    /// Sends `signal` (e.g. "HUP") to the broker with kill(1).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Waits until a log line satisfies `pred` (the log is read by a thread, so it may lag
    /// behind what clients already saw); fails the test after [`timeout`].
    pub fn wait_for_log(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout();
        loop {
            if let Some(line) = self.log().into_iter().find(|l| pred(l)) {
                return line;
            }
            assert!(Instant::now() < deadline, "no log line {what} within {:?}", timeout());
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Kills the process with SIGKILL (no chance to flush anything) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Asks the process to stop with SIGTERM and waits up to [`timeout`] for it to exit
    /// (SIGKILL after that, and the test fails). Returns the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("broker is not running");
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
        let deadline = Instant::now() + timeout();
        loop {
            if let Some(status) = child.try_wait().expect("wait for broker") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("broker did not exit within {:?} of SIGTERM", timeout());
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Starts the broker again on the same config and data directory (killing it first with
    /// SIGKILL if it still runs). The port changes: ask [`Broker::port`] again.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => child.try_wait().map(|s| s.is_none()).unwrap_or(false),
            None => false,
        }
    }

    /// The broker process's resident memory (`VmRSS` of /proc/PID/status) in KiB; `None` when
    /// it would not be edgemq's own (behind `EDGEMQ_TEST_RUNNER`, e.g. qemu-user, the process is
    /// the emulator; in reference mode it is Mosquitto) or it cannot be read.
    pub fn rss_kib(&self) -> Option<u64> {
        if self.target != Target::Edgemq || std::env::var_os("EDGEMQ_TEST_RUNNER").is_some() {
            return None;
        }
        let pid = self.child.as_ref()?.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    /// The config file edgemq runs with (rewritten at each start and by
    /// [`Broker::write_config`]).
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("edgemq.toml")
    }

    /// Writes the config file with the changes [`Broker::reconfigure`] made, without
    /// restarting (for SIGHUP tests).
    pub fn write_config(&self) {
        std::fs::write(self.config_path(), self.builder.edgemq_toml()).expect("write config");
    }

    /// Changes one config key for the next [`Broker::restart`] (a changed config across a
    /// restart on the same data directory).
    pub fn reconfigure(&mut self, section: &str, key: &str, value: impl Into<Value>) {
        let builder = std::mem::take(&mut self.builder);
        self.builder = builder.set(section, key, value);
    }

    fn spawn(&mut self) {
        self.runs += 1;
        self.push_log(format!("===== broker run {} ({:?}) =====", self.runs, self.target));
        match self.target {
            Target::Edgemq => self.spawn_edgemq(),
            Target::Mosquitto => {
                // Mosquitto cannot be told to pick a port, so pick a free one and retry if
                // another test grabbed it in between.
                for attempt in 1..=5 {
                    if self.spawn_mosquitto() {
                        return;
                    }
                    self.push_log(format!("===== port taken, retry {attempt} ====="));
                }
                self.fail_start("mosquitto could not bind a port in 5 attempts");
            }
        }
    }

    fn push_log(&self, line: String) {
        if let Ok(mut log) = self.log.lock() {
            log.push(line);
        }
    }

    fn spawn_edgemq(&mut self) {
        let conf = self.dir.path().join("edgemq.toml");
        std::fs::write(&conf, self.builder.edgemq_toml()).expect("write config");
        let bin = std::env::var("EDGEMQ_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_edgemq").to_string());
        let level = match &self.builder.log_level {
            Some(level) => level.clone(),
            None => std::env::var("EDGEMQ_TEST_LOG_LEVEL").unwrap_or_else(|_| "info".to_string()),
        };
        let mut cmd = runner_command(&bin);
        cmd.arg("--conf")
            .arg(&conf)
            .args(["--listen", self.builder.listen.as_deref().unwrap_or("127.0.0.1:0"), "--data"])
            .arg(self.data_dir())
            .args(["--log-level", &level])
            .envs(self.builder.env.iter().map(|(k, v)| (k, v)))
            .current_dir(self.dir.path());
        let rx = self.launch(cmd, |line| parse_listening_port(line).map(Startup::Listening));
        match self.wait_startup(&rx) {
            Startup::Listening(port) => self.port = port,
            Startup::PortTaken => self.fail_start("port taken, though edgemq was given port 0"),
        }
        if transport_ws() {
            // Logged right after the TCP listener's line; this run's is the last one.
            let deadline = Instant::now() + timeout();
            self.ws_port = loop {
                let log = self.log();
                let runs = log.iter().filter(|l| l.starts_with("===== broker run ")).count();
                let lines: Vec<&String> =
                    log.iter().filter(|l| l.contains(E2E_WS_LISTENER)).collect();
                if lines.len() >= runs {
                    break lines.last().and_then(|l| parse_listening_port(l));
                }
                if Instant::now() > deadline {
                    self.fail_start("EDGEMQ_TEST_TRANSPORT=ws: no `listening on` line for it");
                }
                thread::sleep(Duration::from_millis(5));
            };
        }
    }

    /// Returns false if the port was taken in the meantime (mosquitto exits saying so).
    fn spawn_mosquitto(&mut self) -> bool {
        let port = free_port();
        let conf = self.dir.path().join("mosquitto.conf");
        std::fs::write(&conf, self.builder.mosquitto_conf(port, &self.data_dir()))
            .expect("write config");
        let mut cmd = Command::new("mosquitto");
        cmd.arg("-c").arg(&conf).current_dir(self.dir.path());
        let rx = self.launch(cmd, move |line| {
            if line.contains("Address already in use") {
                Some(Startup::PortTaken)
            } else if line.contains(" running") {
                Some(Startup::Listening(port))
            } else {
                None
            }
        });
        match self.wait_startup(&rx) {
            Startup::Listening(port) => {
                self.port = port;
                true
            }
            Startup::PortTaken => {
                self.kill();
                false
            }
        }
    }

    /// Waits for the first start-up event the stderr reader reports; fails the test if stderr
    /// closes first (the process exited) or nothing comes within [`timeout`].
    fn wait_startup(&mut self, rx: &mpsc::Receiver<Startup>) -> Startup {
        match rx.recv_timeout(timeout()) {
            Ok(event) => event,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                self.fail_start("the broker closed stderr (exited) before it was listening")
            }
            Err(mpsc::RecvTimeoutError::Timeout) => self.fail_start(&format!(
                "not listening within {:?} (edgemq must log `listening on 127.0.0.1:PORT`)",
                timeout()
            )),
        }
    }

    /// Spawns `cmd` with stdout and stderr captured line by line into the log; `on_line` sees
    /// every stderr line (to find the port).
    fn launch(
        &mut self,
        mut cmd: Command,
        on_line: impl Fn(&str) -> Option<Startup> + Send + 'static,
    ) -> mpsc::Receiver<Startup> {
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        self.command = format!("{cmd:?}");
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start broker {cmd:?}: {e}"));
        let stderr = child.stderr.take().expect("stderr piped");
        let stdout = child.stdout.take().expect("stdout piped");
        let log = Arc::clone(&self.log);
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            // `tx` is dropped at EOF: the waiting side then knows the process is gone.
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let event = on_line(&line);
                if let Ok(mut log) = log.lock() {
                    log.push(line);
                }
                if let Some(event) = event {
                    let _ = tx.send(event);
                }
            }
        });
        let log = Arc::clone(&self.log);
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Ok(mut log) = log.lock() {
                    log.push(format!("[stdout] {line}"));
                }
            }
        });
        self.child = Some(child);
        rx
    }

    /// Panics with what was run and how it ended; the log follows from `Drop`.
    fn fail_start(&mut self, why: &str) -> ! {
        let status = match self.child.as_mut().map(|c| c.try_wait()) {
            Some(Ok(Some(status))) => format!("exited with {status}"),
            Some(_) => "still running, killed".to_string(),
            None => "not running".to_string(),
        };
        self.kill();
        panic!("broker start failed: {why} ({status}); command: {}", self.command);
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
        if thread::panicking() {
            eprintln!(
                "----- broker log ({:?}, port {}, dir {}) -----\n{}\n----- end of broker log -----",
                self.target,
                self.port,
                self.dir.path().display(),
                self.log().join("\n")
            );
        }
    }
}

/// The edgemq binary under test (`EDGEMQ_BIN`, runner in front), for its subcommands.
pub fn edgemq_command() -> Command {
    let bin =
        std::env::var("EDGEMQ_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_edgemq").to_string());
    runner_command(&bin)
}

/// `program` with `EDGEMQ_TEST_RUNNER` (split on whitespace) in front of it.
fn runner_command(program: &str) -> Command {
    let runner = std::env::var("EDGEMQ_TEST_RUNNER").unwrap_or_default();
    let mut words = runner.split_whitespace();
    match words.next() {
        Some(first) => {
            let mut cmd = Command::new(first);
            cmd.args(words).arg(program);
            cmd
        }
        None => Command::new(program),
    }
}

/// `EDGEMQ_TEST_TRANSPORT=ws`: see the module documentation.
pub fn transport_ws() -> bool {
    std::env::var("EDGEMQ_TEST_TRANSPORT").is_ok_and(|v| v == "ws")
}

/// How the broker names the extra listener of `EDGEMQ_TEST_TRANSPORT=ws` in its log.
const E2E_WS_LISTENER: &str = "(ws, listeners.e2e-ws)";

/// The port in a log line containing `listening on 127.0.0.1:PORT`.
pub fn parse_listening_port(line: &str) -> Option<u16> {
    let rest = &line[line.find("listening on ")? + "listening on ".len()..];
    let addr = rest.split_whitespace().next()?;
    let port: String =
        addr.rsplit(':').next()?.chars().take_while(|c| c.is_ascii_digit()).collect();
    port.parse().ok().filter(|p| *p != 0)
}

/// A port nothing listens on right now (the kernel's choice for an ephemeral bind).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port")
}

// ---------------------------------------------------------------------------------------------
// Raw-socket client
// ---------------------------------------------------------------------------------------------

/// How a read attempt ended when it did not return bytes.
#[derive(Debug)]
pub enum ReadEnd {
    /// Nothing within the deadline.
    Timeout,
    /// EOF or reset: the broker closed the connection.
    Closed(String),
}

/// A raw MQTT client over a blocking `TcpStream` with deadline-based reads.
pub struct TestClient {
    stream: TcpStream,
    name: String,
    /// Received bytes not consumed yet.
    pending: Vec<u8>,
    /// Whole packets read ahead while waiting for another one (e.g. a PUBLISH that arrived
    /// before the PUBREL [`TestClient::ack`] waits for); [`TestClient::read_packet`] returns
    /// these first.
    stash: VecDeque<Packet>,
    /// Protocol level used by the helpers that build or parse version-dependent packets.
    pub level: u8,
    next_packet_id: u16,
    /// MQTT over WebSockets: packets go out in masked binary frames and come back out of the
    /// server's frames ([`TestClient::connect_ws`]).
    pub ws: Option<ws::Framing>,
}

impl TestClient {
    /// Opens a TCP connection; nothing is sent.
    pub fn connect(broker: &Broker) -> TestClient {
        TestClient::connect_named(broker, "client")
    }

    pub fn connect_named(broker: &Broker, name: &str) -> TestClient {
        match broker.ws_addr() {
            Some(addr) => TestClient::connect_ws(addr, "/mqtt", name),
            None => TestClient::connect_to(broker.addr(), name),
        }
    }

    /// Opens a TCP connection to any address (another broker than the one under test).
    pub fn connect_to(addr: SocketAddr, name: &str) -> TestClient {
        let stream = TcpStream::connect_timeout(&addr, timeout())
            .unwrap_or_else(|e| panic!("[{name}] cannot connect to {addr}: {e}"));
        stream.set_nodelay(true).expect("set_nodelay");
        TestClient {
            stream,
            name: name.to_string(),
            pending: Vec::new(),
            stash: VecDeque::new(),
            level: packets::V311,
            next_packet_id: 1,
            ws: None,
        }
    }

    /// Opens a WebSocket to `addr` at `path` (upgrade with subprotocol `mqtt` checked); every
    /// helper then speaks MQTT in binary frames. Nothing MQTT is sent.
    pub fn connect_ws(addr: SocketAddr, path: &str, name: &str) -> TestClient {
        let mut client = TestClient::connect_to(addr, name);
        let rest = ws::open(&mut client.stream, path);
        let mut framing = ws::Framing::default();
        framing.unwrap(&rest, &mut client.pending);
        client.ws = Some(framing);
        client
    }

    /// [`TestClient::connect_ws`], then `connect` and a successful CONNACK.
    pub fn handshake_ws(addr: SocketAddr, path: &str, connect: Connect) -> TestClient {
        let (client, connack) = TestClient::try_handshake_ws(addr, path, connect);
        assert_eq!(connack.code, 0, "CONNACK refused: {connack:?}");
        client
    }

    /// [`TestClient::connect_ws`], then `connect`; the CONNACK whatever its code.
    pub fn try_handshake_ws(
        addr: SocketAddr,
        path: &str,
        connect: Connect,
    ) -> (TestClient, Connack) {
        let name = if connect.client_id.is_empty() { "<empty id>" } else { &connect.client_id };
        let mut client = TestClient::connect_ws(addr, path, &format!("{name} (ws)"));
        client.level = connect.level;
        client.send(&connect.build());
        let packet = client.read_packet();
        let connack = Connack::parse(&packet, connect.level == packets::V5);
        (client, connack)
    }

    /// The raw socket, for tests that write their own frames.
    pub fn stream(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    /// Connects and completes an MQTT 3.1.1 handshake (clean session, keep alive 60).
    pub fn v311(broker: &Broker, client_id: &str) -> TestClient {
        TestClient::handshake(broker, Connect::v311(client_id))
    }

    /// Connects and completes an MQTT 5.0 handshake (clean start, keep alive 60).
    pub fn v5(broker: &Broker, client_id: &str) -> TestClient {
        TestClient::handshake(broker, Connect::v5(client_id))
    }

    /// Connects, sends `connect`, expects a successful CONNACK and returns the client.
    pub fn handshake(broker: &Broker, connect: Connect) -> TestClient {
        let (client, connack) = TestClient::try_handshake(broker, connect);
        assert_eq!(connack.code, 0, "CONNACK refused: {connack:?}");
        client
    }

    /// Connects, sends `connect`, returns the client and the CONNACK, whatever its code.
    pub fn try_handshake(broker: &Broker, connect: Connect) -> (TestClient, Connack) {
        match broker.ws_addr() {
            Some(addr) => TestClient::try_handshake_ws(addr, "/mqtt", connect),
            None => TestClient::try_handshake_to(broker.addr(), connect),
        }
    }

    /// [`TestClient::handshake`] with any address (another broker than the one under test).
    pub fn handshake_to(addr: SocketAddr, connect: Connect) -> TestClient {
        let (client, connack) = TestClient::try_handshake_to(addr, connect);
        assert_eq!(connack.code, 0, "CONNACK refused: {connack:?}");
        client
    }

    /// [`TestClient::try_handshake`] with any address.
    pub fn try_handshake_to(addr: SocketAddr, connect: Connect) -> (TestClient, Connack) {
        let name = if connect.client_id.is_empty() { "<empty id>" } else { &connect.client_id };
        let mut client = TestClient::connect_to(addr, name);
        client.level = connect.level;
        client.send(&connect.build());
        let packet = client.read_packet();
        let connack = Connack::parse(&packet, connect.level == packets::V5);
        (client, connack)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn is_v5(&self) -> bool {
        self.level == packets::V5
    }

    /// A fresh packet identifier (1, 2, ...; never 0).
    pub fn next_id(&mut self) -> u16 {
        let id = self.next_packet_id;
        self.next_packet_id = self.next_packet_id.checked_add(1).unwrap_or(1);
        id
    }

    /// Writes all bytes; panics if the connection is gone.
    pub fn send(&mut self, bytes: &[u8]) {
        self.try_send(bytes).unwrap_or_else(|e| {
            panic!("[{}] send of [{}] failed: {e}", self.name, packets::hex(bytes))
        });
    }

    /// Bounds how long a send may block (a broker that stops reading makes sends time out).
    pub fn set_write_timeout(&self, limit: Option<Duration>) {
        self.stream.set_write_timeout(limit).expect("set_write_timeout");
    }

    pub fn try_send(&mut self, bytes: &[u8]) -> io::Result<()> {
        match &mut self.ws {
            Some(framing) => self.stream.write_all(&framing.wrap(bytes))?,
            None => self.stream.write_all(bytes)?,
        }
        self.stream.flush()
    }

    /// Reads more bytes into `pending`; returns how many, or why none came.
    fn fill(&mut self, deadline: Instant) -> Result<usize, ReadEnd> {
        let mut buf = [0u8; 4096];
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(ReadEnd::Timeout);
            }
            let wait = (deadline - now).max(Duration::from_millis(1));
            self.stream.set_read_timeout(Some(wait)).expect("set_read_timeout");
            match self.stream.read(&mut buf) {
                Ok(0) => return Err(ReadEnd::Closed("EOF".to_string())),
                Ok(n) => {
                    match &mut self.ws {
                        Some(framing) => framing.unwrap(&buf[..n], &mut self.pending),
                        None => self.pending.extend_from_slice(&buf[..n]),
                    }
                    return Ok(n);
                }
                Err(e) => match e.kind() {
                    io::ErrorKind::WouldBlock
                    | io::ErrorKind::TimedOut
                    | io::ErrorKind::Interrupted => {}
                    io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::BrokenPipe => return Err(ReadEnd::Closed(e.to_string())),
                    _ => panic!("[{}] read error: {e}", self.name),
                },
            }
        }
    }

    /// Reads exactly `expected.len()` bytes and compares them; panics with a hex diff.
    pub fn expect(&mut self, expected: &[u8]) {
        self.assert_no_stash(&format!("expecting [{}]", packets::hex(expected)));
        let deadline = Instant::now() + timeout();
        while self.pending.len() < expected.len() {
            if let Err(end) = self.fill(deadline) {
                panic!(
                    "[{}] expected [{}] but got {end:?} after receiving [{}]",
                    self.name,
                    packets::hex(expected),
                    packets::hex(&self.pending)
                );
            }
        }
        let actual: Vec<u8> = self.pending.drain(..expected.len()).collect();
        if actual != expected {
            let at = actual.iter().zip(expected).position(|(a, e)| a != e).unwrap_or(0);
            panic!(
                "[{}] received bytes differ from expected at byte {at}\n  expected: {}\n  actual:   {}",
                self.name,
                packets::hex(expected),
                packets::hex(&actual)
            );
        }
    }

    /// Reads one packet (fixed header, Remaining Length, body) within [`timeout`].
    pub fn read_packet(&mut self) -> Packet {
        match self.try_read_packet(timeout()) {
            Ok(p) => p,
            Err(end) => panic!(
                "[{}] expected a packet but got {end:?} (partial bytes: [{}])",
                self.name,
                packets::hex(&self.pending)
            ),
        }
    }

    /// Reads one packet, or says why none arrived within `within`.
    pub fn try_read_packet(&mut self, within: Duration) -> Result<Packet, ReadEnd> {
        if let Some(p) = self.stash.pop_front() {
            return Ok(p);
        }
        self.read_from_socket(within)
    }

    fn read_from_socket(&mut self, within: Duration) -> Result<Packet, ReadEnd> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(packet) = self.take_packet() {
                return Ok(packet);
            }
            self.fill(deadline)?;
        }
    }

    /// Splits one complete packet off `pending`, if there is one.
    fn take_packet(&mut self) -> Option<Packet> {
        let mut len = 0usize;
        let mut header = 1usize;
        loop {
            let byte = *self.pending.get(header)?;
            len |= usize::from(byte & 0x7F) << (7 * (header - 1));
            header += 1;
            if byte & 0x80 == 0 {
                break;
            }
            assert!(
                header <= 4,
                "[{}] broker sent a Remaining Length longer than 4 bytes: [{}]",
                self.name,
                packets::hex(&self.pending)
            );
        }
        if self.pending.len() < header + len {
            return None;
        }
        let first = self.pending[0];
        let body = self.pending[header..header + len].to_vec();
        self.pending.drain(..header + len);
        Some(Packet { first, body })
    }

    /// Asserts the broker closes the connection (EOF or reset) within [`timeout`] without
    /// sending anything more.
    pub fn expect_closed(&mut self) {
        self.assert_no_stash("expecting the connection to close");
        let deadline = Instant::now() + timeout();
        loop {
            if !self.pending.is_empty() {
                panic!(
                    "[{}] expected the connection to close, but received [{}]",
                    self.name,
                    packets::hex(&self.pending)
                );
            }
            match self.fill(deadline) {
                Ok(_) => {}
                Err(ReadEnd::Closed(_)) => return,
                Err(ReadEnd::Timeout) => panic!(
                    "[{}] connection still open {:?} after it should have been closed",
                    self.name,
                    timeout()
                ),
            }
        }
    }

    /// Asserts nothing arrives (and the connection stays open) for `within`.
    pub fn expect_no_packet(&mut self, within: Duration) {
        self.assert_no_stash("expecting no packet");
        let deadline = Instant::now() + within;
        loop {
            if !self.pending.is_empty() {
                let what = self
                    .take_packet()
                    .map(|p| p.to_string())
                    .unwrap_or_else(|| format!("partial bytes [{}]", packets::hex(&self.pending)));
                panic!("[{}] expected no packet but received {what}", self.name);
            }
            match self.fill(deadline) {
                Ok(_) => {}
                Err(ReadEnd::Timeout) => return,
                Err(ReadEnd::Closed(why)) => {
                    panic!("[{}] expected no packet but the connection closed ({why})", self.name)
                }
            }
        }
    }

    /// Reads until a packet of `kind` (not PUBLISH) arrives. Deliveries may legitimately
    /// overtake an acknowledgement, so PUBLISH packets met on the way are kept for later
    /// reads; anything else is a failure.
    pub fn read_expected(&mut self, kind: u8) -> Packet {
        let deadline = Instant::now() + timeout();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let packet = match self.read_from_socket(left) {
                Ok(p) => p,
                Err(end) => panic!("[{}] waiting for {}: {end:?}", self.name, kind::name(kind)),
            };
            if packet.kind() == kind {
                return packet;
            }
            assert_eq!(
                packet.kind(),
                kind::PUBLISH,
                "[{}] waiting for {}, got {packet}",
                self.name,
                kind::name(kind)
            );
            self.stash.push_back(packet);
        }
    }

    fn assert_no_stash(&self, doing: &str) {
        assert!(
            self.stash.is_empty(),
            "[{}] {doing}, but packets read ahead are still unhandled: {:?}",
            self.name,
            self.stash
        );
    }

    /// Closes the socket without DISCONNECT (an "abnormal" disconnection for wills).
    pub fn drop_connection(self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }

    /// Sends DISCONNECT and waits for the broker to close the connection, so the broker has
    /// provably processed it when this returns.
    pub fn disconnect(mut self) {
        self.send(&packets::DISCONNECT);
        self.expect_closed();
    }

    // ----- protocol helpers (version from `self.level`) -----

    /// Subscribes to one filter with the given options byte; returns the SUBACK code.
    pub fn subscribe_opts(&mut self, filter: &str, opts: u8) -> u8 {
        let id = self.next_id();
        let packet = if self.is_v5() {
            packets::subscribe_v5(id, &[], &[(filter, opts)])
        } else {
            packets::subscribe(id, &[(filter, opts)])
        };
        self.send(&packet);
        let suback = Suback::parse(&self.read_expected(kind::SUBACK), self.is_v5());
        assert_eq!(suback.packet_id, id, "SUBACK for another packet id: {suback:?}");
        assert_eq!(suback.codes.len(), 1, "SUBACK code count: {suback:?}");
        suback.codes[0]
    }

    /// Subscribes and asserts the requested QoS is granted.
    pub fn subscribe(&mut self, filter: &str, qos: u8) {
        let granted = self.subscribe_opts(filter, qos);
        assert_eq!(
            granted, qos,
            "[{}] SUBSCRIBE {filter} QoS {qos}: granted {granted:#04x}",
            self.name
        );
    }

    /// Publishes and completes the QoS flow (PUBACK, or PUBREC/PUBREL/PUBCOMP).
    pub fn publish(&mut self, topic: &str, payload: &[u8], qos: u8, retain: bool) {
        let id = self.next_id();
        let mut p = Publish::new(topic, payload).qos(qos, id).retain(retain);
        if self.is_v5() {
            p = p.v5();
        }
        self.send_publish(&p);
    }

    /// Sends a PUBLISH built by the test and completes its QoS flow.
    pub fn send_publish(&mut self, p: &Publish) {
        self.send(&p.build());
        let Some(id) = p.packet_id else { return };
        match p.qos {
            1 => {
                let ack = Ack::parse(&self.read_expected(kind::PUBACK), kind::PUBACK);
                assert_eq!(ack.packet_id, id, "PUBACK packet id");
                assert!(ack.reason < 0x80, "PUBACK failure: {ack:?}");
            }
            2 => {
                let rec = Ack::parse(&self.read_expected(kind::PUBREC), kind::PUBREC);
                assert_eq!(rec.packet_id, id, "PUBREC packet id");
                assert!(rec.reason < 0x80, "PUBREC failure: {rec:?}");
                self.send(&packets::pubrel(id));
                let comp = Ack::parse(&self.read_expected(kind::PUBCOMP), kind::PUBCOMP);
                assert_eq!(comp.packet_id, id, "PUBCOMP packet id");
            }
            _ => {}
        }
    }

    /// Reads the next packet, asserts it is a PUBLISH and parses it for this client's version.
    pub fn expect_publish(&mut self) -> Publish {
        let packet = self.read_packet();
        assert_eq!(packet.kind(), kind::PUBLISH, "[{}] expected PUBLISH, got {packet}", self.name);
        Publish::parse(&packet, self.is_v5())
    }

    /// Completes the receiver side of a delivered message's QoS flow.
    pub fn ack(&mut self, p: &Publish) {
        match (p.qos, p.packet_id) {
            (1, Some(id)) => self.send(&packets::puback(id)),
            (2, Some(id)) => {
                self.send(&packets::pubrec(id));
                let rel = Ack::parse(&self.read_expected(kind::PUBREL), kind::PUBREL);
                assert_eq!(rel.packet_id, id, "PUBREL packet id");
                self.send(&packets::pubcomp(id));
            }
            _ => {}
        }
    }

    /// Expects a PUBLISH on `topic` with `payload`, acks it, and returns it.
    pub fn expect_message(&mut self, topic: &str, payload: &[u8]) -> Publish {
        let p = self.expect_publish();
        assert_eq!(
            (p.topic.as_str(), p.payload.as_slice()),
            (topic, payload),
            "[{}] unexpected message {p:?}",
            self.name
        );
        self.ack(&p);
        p
    }

    /// Sends PINGREQ and expects PINGRESP: a barrier proving the broker has processed
    /// everything this client sent before.
    pub fn ping(&mut self) {
        self.send(&packets::PINGREQ);
        let resp = self.read_expected(kind::PINGRESP);
        assert_eq!(resp.to_bytes(), packets::PINGRESP, "[{}]", self.name);
    }

    /// Expects an MQTT 5.0 DISCONNECT with `reason` (one of `reasons`), then the close.
    pub fn expect_disconnect_v5(&mut self, reasons: &[u8]) -> packets::Disconnect {
        let packet = self.read_packet();
        let d = packets::Disconnect::parse(&packet);
        assert!(
            reasons.contains(&d.reason),
            "[{}] DISCONNECT reason {:#04x}, expected one of {}: {packet}",
            self.name,
            d.reason,
            reasons.iter().map(|r| format!("{r:#04x}")).collect::<Vec<_>>().join(", ")
        );
        self.expect_closed();
        d
    }
}

/// Proves the broker still serves clients: a fresh subscriber and publisher complete a
/// QoS 1 round trip. Used after every hostile input.
pub fn assert_broker_serves(broker: &Broker) {
    let mut sub = TestClient::v311(broker, "health-sub");
    sub.subscribe("health/check", 1);
    let mut publisher = TestClient::v311(broker, "health-pub");
    publisher.publish("health/check", b"still serving", 1, false);
    let p = sub.expect_message("health/check", b"still serving");
    assert_eq!(p.qos, 1);
    publisher.disconnect();
    sub.disconnect();
}

// ---------------------------------------------------------------------------------------------
// External processes (mosquitto_pub/sub, python)
// ---------------------------------------------------------------------------------------------

/// A process whose stdout and stderr are collected line by line; killed on drop.
pub struct Process {
    what: String,
    child: Option<Child>,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
    /// One per reader thread; disconnected when that stream hit EOF.
    readers_done: Vec<mpsc::Receiver<()>>,
}

impl Process {
    pub fn spawn(mut cmd: Command) -> Process {
        let what = format!("{cmd:?}");
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let readers_done = vec![
            collect_lines(child.stdout.take().expect("stdout piped"), Arc::clone(&stdout)),
            collect_lines(child.stderr.take().expect("stderr piped"), Arc::clone(&stderr)),
        ];
        Process { what, child: Some(child), stdout, stderr, readers_done }
    }

    pub fn stdout(&self) -> Vec<String> {
        self.stdout.lock().map(|l| l.clone()).unwrap_or_default()
    }

    pub fn stderr(&self) -> Vec<String> {
        self.stderr.lock().map(|l| l.clone()).unwrap_or_default()
    }

    fn describe(&self) -> String {
        format!(
            "{}\n----- stdout -----\n{}\n----- stderr -----\n{}\n------------------",
            self.what,
            self.stdout().join("\n"),
            self.stderr().join("\n")
        )
    }

    /// Waits until a stdout line satisfies `pred`; panics with the output after [`timeout`].
    pub fn wait_for_line(&mut self, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout();
        loop {
            if let Some(line) = self.stdout().into_iter().find(|l| pred(l)) {
                return line;
            }
            let exited =
                self.child.as_mut().map(|c| matches!(c.try_wait(), Ok(Some(_)))).unwrap_or(true);
            if exited {
                // One more look: the reader may have been behind the exit.
                thread::sleep(Duration::from_millis(50));
                if let Some(line) = self.stdout().into_iter().find(|l| pred(l)) {
                    return line;
                }
                panic!("process exited before printing the awaited line: {}", self.describe());
            }
            if Instant::now() > deadline {
                panic!("awaited line not printed within {:?}: {}", timeout(), self.describe());
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for exit within `within`; kills and panics on timeout. Returns the status, with
    /// the output fully collected.
    pub fn wait(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        let child = self.child.as_mut().expect("process already waited for");
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.child = None;
                // The readers finish at EOF, right after the exit.
                for done in &self.readers_done {
                    let left = deadline.saturating_duration_since(Instant::now());
                    let _ = done.recv_timeout(left.max(Duration::from_millis(100)));
                }
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                self.child = None;
                panic!("process did not finish within {within:?}: {}", self.describe());
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for exit and asserts success; returns stdout lines.
    pub fn expect_success(&mut self, within: Duration) -> Vec<String> {
        let status = self.wait(within);
        assert!(status.success(), "exited with {status}: {}", self.describe());
        self.stdout()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if thread::panicking() {
            eprintln!("----- external process -----\n{}", self.describe());
        }
    }
}

/// Collects `stream` line by line into `into`; the returned receiver disconnects at EOF.
fn collect_lines(
    stream: impl Read + Send + 'static,
    into: Arc<Mutex<Vec<String>>>,
) -> mpsc::Receiver<()> {
    let (done_tx, done_rx) = mpsc::channel::<()>();
    thread::spawn(move || {
        let _done = done_tx;
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if let Ok(mut v) = into.lock() {
                v.push(line);
            }
        }
    });
    done_rx
}

/// Runs a command to completion within `within` and asserts it succeeds; returns stdout.
pub fn run_ok(cmd: Command, within: Duration) -> Vec<String> {
    Process::spawn(cmd).expect_success(within)
}

/// Whether the broker closed `stream` within `within` (EOF or reset), reading what comes.
pub fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        stream.set_read_timeout(Some(left)).expect("set_read_timeout");
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                return false
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return true,
        }
    }
}

/// The HTTP port from the broker's log line.
pub fn http_addr(broker: &Broker) -> SocketAddr {
    let line = broker.wait_for_log("the http listener's address", |l| {
        l.contains("http: serving /metrics and /health on ")
    });
    let addr = line.rsplit(" on ").next().and_then(|rest| rest.split_whitespace().next());
    addr.and_then(|a| a.parse().ok()).unwrap_or_else(|| panic!("no address in {line:?}"))
}

/// Runs `script` with Debian's python3, `input` on its standard input; its output.
pub fn python_with_stdin(script: &str, input: &[u8]) -> std::process::Output {
    let mut child = Command::new(PYTHON)
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3");
    child.stdin.take().expect("stdin").write_all(input).expect("feed python3");
    child.wait_with_output().expect("python3's output")
}
