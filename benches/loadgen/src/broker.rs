//! A fresh broker process per scenario: generated config, free port, private data
//! directory, CPU, memory and context switches read from /proc, killed and cleaned up on drop.
//!
//! Contract: `BrokerProcess::start` returns only once the broker accepts TCP connections (or
//! fails within `READY_TIMEOUT`). `stop_with_sigterm` asks for a graceful stop and waits a
//! bounded time. Dropping the value always kills the process (if it still runs) and removes its
//! directory, also on error paths and panics (the crate unwinds). The broker's PID is written
//! to `<dir>/broker.pid` so `run.sh` can kill it even if this process is killed itself.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::Error;

const READY_TIMEOUT: Duration = Duration::from_secs(15);
/// Mosquitto's `max_inflight_messages` when the config does not set it (mosquitto.conf(5)).
pub const MOSQUITTO_SHIPPED_INFLIGHT: u16 = 20;
/// Mosquitto's `max_queued_messages` when the config does not set it (mosquitto.conf(5)).
pub const MOSQUITTO_SHIPPED_QUEUE: usize = 1000;
/// Port races (another process taking the port between our probe and the broker's bind) are
/// retried with a new port this many times.
const START_ATTEMPTS: usize = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Edgemq,
    Mosquitto,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Edgemq => "edgemq",
            Kind::Mosquitto => "mosquitto",
        }
    }
}

/// edgemq `[sqlite] durability`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    Sync,
    Batch,
    Memory,
}

impl Durability {
    pub fn name(self) -> &'static str {
        match self {
            Durability::Sync => "sync",
            Durability::Batch => "batch",
            Durability::Memory => "memory",
        }
    }
}

/// The limits a scenario needs; each broker's config is generated from these.
#[derive(Debug, Clone)]
pub struct Settings {
    pub max_connections: usize,
    /// edgemq `max_inflight` (outbound window per session).
    pub max_inflight: u16,
    /// edgemq `max_queued_messages` (per-session queue behind the window).
    pub max_queued_messages: usize,
    /// edgemq only.
    pub durability: Durability,
    /// Mosquitto only: `max_inflight_messages`; `None` writes nothing, so Mosquitto keeps its
    /// shipped default (`MOSQUITTO_SHIPPED_INFLIGHT`).
    pub mosquitto_inflight: Option<u16>,
    /// Mosquitto only: `max_queued_messages`; `None` keeps its shipped default
    /// (`MOSQUITTO_SHIPPED_QUEUE`).
    pub mosquitto_queue: Option<usize>,
    /// Mosquitto only: `persistence true`.
    pub persistence: bool,
    /// A bridge to an upstream broker (the bridge scenarios' local broker).
    pub bridge: Option<BridgeSettings>,
    /// edgemq `disk_cache_size` at least (the store's message cap).
    pub store_messages: usize,
    /// Mosquitto only: the bridge scenarios' upstream (its subscriber's window and an unlimited
    /// queue, and connection and subscription log lines, whose order the scenario checks).
    pub upstream: bool,
    /// A second listener for MQTT over WebSockets on another port, path `/mqtt` (edgemq
    /// `kind = "ws"`, Mosquitto `protocol websockets`): `BrokerProcess::ws_addr`.
    pub websocket: bool,
}

/// The bridge of the local broker in the bridge scenarios, the same for both brokers.
#[derive(Debug, Clone)]
pub struct BridgeSettings {
    pub upstream: SocketAddr,
    /// Client id on the upstream.
    pub client_id: String,
    /// Messages in flight to the upstream: edgemq `max_inflight` of the bridge, Mosquitto
    /// `max_inflight_messages` (global: its bridge is the only outgoing client).
    pub inflight: u16,
    /// Queue cap while the upstream is away: edgemq `max_queued` of the bridge, Mosquitto
    /// `max_queued_messages`; far above what a scenario publishes, so nothing drops.
    pub queue: usize,
    /// Reconnect interval, whole seconds: edgemq `backoff_min` = `backoff_max`, Mosquitto
    /// `restart_timeout N N` (backoff from N to N: Mosquitto 2.0.11 took 5-6 s to reconnect with
    /// the single-value form in a trial run).
    pub retry_s: u32,
}

impl Default for Settings {
    /// Both brokers as shipped, apart from the connection limit.
    fn default() -> Settings {
        Settings {
            max_connections: 1024,
            max_inflight: 128,
            max_queued_messages: 1000,
            durability: Durability::Sync,
            mosquitto_inflight: None,
            mosquitto_queue: None,
            persistence: false,
            bridge: None,
            upstream: false,
            websocket: false,
            store_messages: 200_000,
        }
    }
}

/// Where the binaries are and where temporary directories go.
#[derive(Debug, Clone)]
pub struct Launcher {
    pub kind: Kind,
    pub edgemq_bin: PathBuf,
    pub mosquitto_bin: PathBuf,
    pub work_root: PathBuf,
    /// edgemq `--log-level`.
    pub log_level: String,
    /// Keep every broker directory (config, log, data) for inspection.
    pub keep_dirs: bool,
    /// The broker's data directory (edgemq `--data`, Mosquitto `persistence_location`): a
    /// directory the caller provides (e.g. a slow file system mounted there,
    /// benches/slow-storage.sh) instead of `data/` in the broker directory.
    pub data_dir: Option<PathBuf>,
    /// Extra `[sqlite]` lines for edgemq's config (e.g. `max_wal_size = "4MB"`).
    pub edgemq_sqlite: Vec<String>,
    /// edgemq's `sys.interval` in seconds (0 = off); `None`: its default.
    pub edgemq_sys_interval: Option<u64>,
}

pub struct BrokerProcess {
    child: Child,
    pid: u32,
    pub addr: SocketAddr,
    /// The WebSocket listener, when `Settings::websocket` asked for one.
    pub ws_addr: Option<SocketAddr>,
    dir: PathBuf,
    /// Where the broker keeps its data.
    data: PathBuf,
    keep_dir: bool,
    clock_ticks: u64,
    /// Program and arguments, to start the broker again on the same port and data
    /// (`restart`).
    argv: Vec<OsString>,
}

/// CPU time and memory of the broker, from /proc.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    /// utime + stime, seconds.
    pub cpu_s: f64,
    /// VmRSS, KiB.
    pub rss_kb: u64,
    /// VmHWM (peak RSS), KiB.
    pub hwm_kb: u64,
    /// `voluntary_ctxt_switches` summed over the broker's threads. A thread that sleeps in
    /// `epoll_wait` and is woken makes one voluntary switch, so this counts wake-ups.
    pub voluntary_switches: u64,
    /// `nonvoluntary_ctxt_switches` summed over the threads (preempted while running).
    pub nonvoluntary_switches: u64,
}

impl Usage {
    /// Context switches of both kinds.
    pub fn switches(&self) -> u64 {
        self.voluntary_switches + self.nonvoluntary_switches
    }
}

/// How a broker asked to stop with SIGTERM ended.
#[derive(Debug, Clone, Copy)]
pub enum Stopped {
    /// It exited by itself, with this status, after this long.
    Exited { status: ExitStatus, after: Duration },
    /// Still running at the limit (it is killed when the `BrokerProcess` is dropped).
    TimedOut,
}

impl BrokerProcess {
    pub fn start(
        launcher: &Launcher,
        settings: &Settings,
        tag: &str,
    ) -> Result<BrokerProcess, Error> {
        let mut last_error = Error::new("no start attempt");
        for attempt in 0..START_ATTEMPTS {
            match BrokerProcess::start_once(launcher, settings, &format!("{tag}-{attempt}")) {
                Ok(broker) => return Ok(broker),
                Err(e) => last_error = e,
            }
        }
        Err(last_error)
    }

    fn start_once(
        launcher: &Launcher,
        settings: &Settings,
        tag: &str,
    ) -> Result<BrokerProcess, Error> {
        let dir = launcher.work_root.join(format!(
            "{}-{}-{}",
            launcher.kind.name(),
            std::process::id(),
            tag
        ));
        if dir.exists() {
            fs::remove_dir_all(&dir)?;
        }
        fs::create_dir_all(dir.join("data"))?;
        let data = launcher.data_dir.clone().unwrap_or_else(|| dir.join("data"));
        let port = free_port()?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let ws_port = if settings.websocket { Some(free_port()?) } else { None };
        let argv: Vec<OsString> = match launcher.kind {
            Kind::Edgemq => {
                let conf = dir.join("edgemq.toml");
                let mut config = edgemq_config(settings, &data, port, ws_port);
                for line in &launcher.edgemq_sqlite {
                    config.push_str(line);
                    config.push('\n');
                }
                if let Some(secs) = launcher.edgemq_sys_interval {
                    config.push_str(&format!("\n[sys]\ninterval = {secs}\n"));
                }
                fs::write(&conf, config)?;
                vec![
                    launcher.edgemq_bin.clone().into(),
                    "--conf".into(),
                    conf.into(),
                    "--listen".into(),
                    addr.to_string().into(),
                    "--data".into(),
                    data.clone().into(),
                    "--log-level".into(),
                    launcher.log_level.clone().into(),
                ]
            }
            Kind::Mosquitto => {
                let conf = dir.join("mosquitto.conf");
                fs::write(&conf, mosquitto_config(settings, &data, port, ws_port))?;
                vec![launcher.mosquitto_bin.clone().into(), "-c".into(), conf.into()]
            }
        };
        let child = spawn(&dir, &argv)?;
        let pid = child.id();
        let mut broker = BrokerProcess {
            child,
            pid,
            addr,
            ws_addr: ws_port.map(|p| SocketAddr::from(([127, 0, 0, 1], p))),
            dir,
            data,
            keep_dir: launcher.keep_dirs,
            clock_ticks: clock_ticks(),
            argv,
        };
        fs::write(broker.dir.join("broker.pid"), format!("{pid}\n"))?;
        broker.wait_ready()?;
        Ok(broker)
    }

    /// Kills the broker with SIGKILL (no chance to save anything) and waits until it is gone
    /// and its port refuses connections.
    pub fn kill9(&mut self) -> Result<(), Error> {
        let _ = self.child.kill();
        self.child.wait()?;
        let deadline = Instant::now() + READY_TIMEOUT;
        while TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok() {
            if Instant::now() >= deadline {
                return Err(Error::new(format!("{} still accepts after kill -9", self.addr)));
            }
            thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    /// Starts the broker again (after `kill9`) with the same command line: same config, port
    /// and data. Returns once it accepts connections. The log is appended to.
    pub fn restart(&mut self) -> Result<(), Error> {
        if self.child.try_wait()?.is_none() {
            self.kill9()?;
        }
        self.child = spawn(&self.dir, &self.argv)?;
        self.pid = self.child.id();
        fs::write(self.dir.join("broker.pid"), format!("{}\n", self.pid))?;
        self.wait_ready()
    }

    /// Bytes in the broker's log so far (`log_text()[offset..]` is what came later).
    pub fn log_len(&self) -> usize {
        self.log_text().len()
    }

    fn wait_ready(&mut self) -> Result<(), Error> {
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                return Err(Error::new(format!(
                    "broker exited at start-up ({status}): {}",
                    self.log_tail(5)
                )));
            }
            // Every listener: Mosquitto opens its WebSocket one after the TCP one.
            let ready = |addr: &SocketAddr| {
                TcpStream::connect_timeout(addr, Duration::from_millis(200)).is_ok()
            };
            if ready(&self.addr) && self.ws_addr.as_ref().map_or(true, ready) {
                return Ok(());
            }
            thread::sleep(Duration::from_millis(5));
        }
        Err(Error::new(format!("broker not listening after {READY_TIMEOUT:?}")))
    }

    /// `Err` with the exit status and log tail if the broker died.
    pub fn check_alive(&mut self) -> Result<(), Error> {
        match self.child.try_wait()? {
            None => Ok(()),
            Some(status) => {
                self.keep_dir = true;
                Err(Error::new(format!(
                    "broker exited during the scenario ({status}); log kept in {}: {}",
                    self.dir.display(),
                    self.log_tail(5)
                )))
            }
        }
    }

    pub fn usage(&self) -> Result<Usage, Error> {
        let stat = fs::read_to_string(format!("/proc/{}/stat", self.pid))?;
        // The command name (field 2) may contain spaces: fields are counted after its ')'.
        let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
        let fields: Vec<&str> = after.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after ')'.
        let tick = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
        let ticks = tick(11) + tick(12);
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid))?;
        // The process's own status counts the context switches of its main thread only.
        let (mut voluntary, mut nonvoluntary) = (0, 0);
        for task in fs::read_dir(format!("/proc/{}/task", self.pid))? {
            // A thread that ended between listing and reading has nothing left to count.
            let Ok(task_status) = fs::read_to_string(task?.path().join("status")) else {
                continue;
            };
            voluntary += status_number(&task_status, "voluntary_ctxt_switches:");
            nonvoluntary += status_number(&task_status, "nonvoluntary_ctxt_switches:");
        }
        Ok(Usage {
            cpu_s: ticks as f64 / self.clock_ticks as f64,
            rss_kb: status_number(&status, "VmRSS:"),
            hwm_kb: status_number(&status, "VmHWM:"),
            voluntary_switches: voluntary,
            nonvoluntary_switches: nonvoluntary,
        })
    }

    /// Sends SIGTERM (with `kill`, so this crate needs no libc) and waits up to `limit` for
    /// the broker to exit. The process is reaped here; a broker still running at the limit
    /// is killed on drop like any other.
    pub fn stop_with_sigterm(&mut self, limit: Duration) -> Result<Stopped, Error> {
        let sent = Instant::now();
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|e| Error::new(format!("cannot run kill: {e}")))?;
        if !status.success() {
            return Err(Error::new(format!("kill -TERM {} failed ({status})", self.pid)));
        }
        while sent.elapsed() < limit {
            if let Some(status) = self.child.try_wait()? {
                return Ok(Stopped::Exited { status, after: sent.elapsed() });
            }
            thread::sleep(Duration::from_millis(10));
        }
        Ok(Stopped::TimedOut)
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The broker's whole log (stdout and stderr); empty if it cannot be read.
    pub fn log_text(&self) -> String {
        fs::read_to_string(self.dir.join("broker.log")).unwrap_or_default()
    }

    /// The last lines of the broker's log, on one line (for error messages).
    pub fn log_tail(&self, lines: usize) -> String {
        let text = self.log_text();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join(" | ")
    }

    /// Lines in the broker's log so far (a broker that logs per message shows up here).
    pub fn log_lines(&self) -> u64 {
        self.log_text().lines().count() as u64
    }

    /// The broker's data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !self.keep_dir {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// Starts `argv` in `dir`, output appended to `dir/broker.log`.
fn spawn(dir: &Path, argv: &[OsString]) -> Result<Child, Error> {
    let log = fs::OpenOptions::new().create(true).append(true).open(dir.join("broker.log"))?;
    let (program, args) =
        argv.split_first().ok_or_else(|| Error::new("empty broker command line"))?;
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .current_dir(dir)
        .spawn()
        .map_err(|e| Error::new(format!("cannot start {}: {e}", Path::new(program).display())))
}

/// The number after `key` on its `/proc/PID/status` line (KiB for `Vm*`); 0 if there is none.
fn status_number(status: &str, key: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// A port the kernel just handed out; the broker binds it a moment later.
fn free_port() -> Result<u16, Error> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// CPU time (utime + stime, all threads) of this process so far, in seconds: what the load
/// generator itself spends, to tell when it, not the broker, is the limit.
pub fn own_cpu_s() -> f64 {
    let stat = fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let tick = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    (tick(11) + tick(12)) as f64 / clock_ticks() as f64
}

/// `getconf CLK_TCK` (100 on every Linux this runs on; asked anyway, no libc needed).
fn clock_ticks() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|&t| t > 0)
        .unwrap_or(100)
}

fn edgemq_config(s: &Settings, data: &Path, port: u16, ws_port: Option<u16>) -> String {
    let mut c = String::new();
    let _ = writeln!(c, "# Generated by edgemq-loadgen for one scenario.");
    let _ = writeln!(c, "[listener]\nbind = [\"127.0.0.1:{port}\"]\n");
    if let Some(ws_port) = ws_port {
        let _ = writeln!(c, "[listeners.web]\nbind = \"127.0.0.1:{ws_port}\"\nkind = \"ws\"\n");
    }
    let _ = writeln!(c, "[mqtt]");
    let _ = writeln!(c, "max_connections = {}", s.max_connections);
    let _ = writeln!(c, "max_sessions = {}", s.max_connections.max(4096));
    // Every client comes from 127.0.0.1, many connect at once: no admission limits, as in
    // Mosquitto (which has none).
    let _ = writeln!(c, "max_connections_per_address = 0");
    let _ = writeln!(c, "max_pending_connections = 0");
    let _ = writeln!(c, "max_inflight = {}", s.max_inflight);
    let _ = writeln!(c, "max_queued_messages = {}", s.max_queued_messages);
    let _ = writeln!(c, "\n[sqlite]");
    let _ = writeln!(c, "mounted_file_path = {:?}", data.display().to_string());
    let _ = writeln!(c, "durability = \"{}\"", s.durability.name());
    // The offline scenario queues 50,000 messages for one session.
    let _ = writeln!(c, "max_queued_per_session = 100000");
    let queue = s.bridge.as_ref().map_or(0, |b| b.queue);
    let _ = writeln!(c, "disk_cache_size = {}", queue.max(s.store_messages));
    if let Some(b) = &s.bridge {
        // Mosquitto's `topic bench/# out 1`, queued in the store (fsync'd before the local
        // PUBACK in `sync`), caps far above what the scenario publishes.
        let _ = writeln!(c, "\n[bridges.up]");
        let _ = writeln!(c, "address = \"{}\"", b.upstream);
        let _ = writeln!(c, "clientid = {:?}", b.client_id);
        let _ = writeln!(c, "max_inflight = {}", b.inflight);
        let _ = writeln!(c, "backoff_min = \"{}s\"", b.retry_s);
        let _ = writeln!(c, "backoff_max = \"{}s\"", b.retry_s);
        let _ = writeln!(c, "forwards = [{{ topic = \"bench/#\", qos = 1 }}]");
        let _ = writeln!(c, "max_queued = {}", b.queue);
        let _ = writeln!(c, "max_queued_bytes = \"1GB\"");
    }
    c
}

/// Listener, socket option and logging always; limits and persistence only when the
/// scenario asks for them, so an empty `Settings` runs Mosquitto with its shipped limits.
fn mosquitto_config(s: &Settings, data: &Path, port: u16, ws_port: Option<u16>) -> String {
    let mut c = String::new();
    let _ = writeln!(c, "# Generated by edgemq-loadgen for one scenario.");
    let _ = writeln!(c, "listener {port} 127.0.0.1");
    if let Some(ws_port) = ws_port {
        // Global options below apply to every listener.
        let _ = writeln!(c, "listener {ws_port} 127.0.0.1\nprotocol websockets");
    }
    let _ = writeln!(c, "allow_anonymous true");
    if is_root() {
        // Otherwise Mosquitto drops to user `mosquitto`, who cannot write our directory.
        let _ = writeln!(c, "user root");
    }
    if s.persistence {
        let _ = writeln!(c, "persistence true");
        let _ = writeln!(c, "persistence_location {}/", data.display());
    }
    // edgemq sets TCP_NODELAY on every connection; Mosquitto only when asked. Without it
    // Nagle adds milliseconds to every QoS 1 round trip and the comparison would be about
    // a socket option, not the brokers.
    let _ = writeln!(c, "set_tcp_nodelay true");
    if let Some(inflight) = s.mosquitto_inflight {
        let _ = writeln!(c, "max_inflight_messages {inflight}");
    }
    if let Some(queue) = s.mosquitto_queue {
        let _ = writeln!(c, "max_queued_messages {queue}");
    }
    if s.upstream {
        // 0: no limit, so the upstream never drops for its subscriber.
        let _ = writeln!(c, "max_queued_messages 0");
    }
    if let Some(b) = &s.bridge {
        // Global in Mosquitto: the bridge is this broker's only outgoing client.
        let _ = writeln!(c, "max_inflight_messages {}", b.inflight);
        let _ = writeln!(c, "max_queued_messages {}", b.queue);
        let _ = writeln!(c, "queue_qos0_messages false");
    }
    let _ = writeln!(c, "log_dest stderr");
    let _ = writeln!(c, "log_type error");
    let _ = writeln!(c, "log_type warning");
    let _ = writeln!(c, "log_type notice");
    if s.upstream {
        // The bridge scenarios check, in this log, that their subscriber had subscribed
        // before the bridge connected.
        let _ = writeln!(c, "log_type subscribe");
        let _ = writeln!(c, "connection_messages true");
    } else {
        let _ = writeln!(c, "connection_messages false");
    }
    if let Some(b) = &s.bridge {
        // Bridge options come after `connection`; persistence is left at its default (off).
        let _ = writeln!(c, "\nconnection up");
        let _ = writeln!(c, "address {}", b.upstream);
        let _ = writeln!(c, "remote_clientid {}", b.client_id);
        let _ = writeln!(c, "cleansession false");
        let _ = writeln!(c, "restart_timeout {} {}", b.retry_s, b.retry_s);
        let _ = writeln!(c, "topic bench/# out 1");
    }
    c
}

fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .map(|r| r.split_whitespace().nth(1).is_some_and(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

/// Pins every thread of process `pid` to `cpu` with util-linux `taskset` (this crate has no
/// libc). False if that is not possible here.
pub fn pin_to_cpu(pid: u32, cpu: usize) -> bool {
    Command::new("taskset")
        .args(["-a", "-p", "-c", &cpu.to_string(), &pid.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_parsing() {
        let status = "Name:\tx\nVmHWM:\t    1234 kB\nVmRSS:\t     999 kB\n";
        assert_eq!(status_number(status, "VmHWM:"), 1234);
        assert_eq!(status_number(status, "VmRSS:"), 999);
        assert_eq!(status_number(status, "VmSwap:"), 0);
        let task = "voluntary_ctxt_switches:\t17\nnonvoluntary_ctxt_switches:\t3\n";
        assert_eq!(status_number(task, "voluntary_ctxt_switches:"), 17);
        assert_eq!(status_number(task, "nonvoluntary_ctxt_switches:"), 3);
    }

    #[test]
    fn configs_carry_the_limits() {
        let s = Settings { max_connections: 5200, ..Settings::default() };
        let e = edgemq_config(&s, Path::new("/tmp/d"), 1234, None);
        assert!(e.contains("max_connections = 5200"));
        assert!(e.contains("max_sessions = 5200"));
        assert!(e.contains("max_connections_per_address = 0"));
        assert!(e.contains("max_inflight = 128"));
        assert!(e.contains("max_queued_messages = 1000"));
        let m = mosquitto_config(&s, Path::new("/tmp/d"), 1234, None);
        assert!(m.contains("listener 1234 127.0.0.1"));
        assert!(m.contains("set_tcp_nodelay true"));
        // Shipped limits: the keys are not written at all.
        assert!(!m.contains("max_inflight_messages"), "{m}");
        assert!(!m.contains("max_queued_messages"), "{m}");
        assert!(!m.contains("persistence"), "{m}");

        let s = Settings {
            mosquitto_inflight: Some(128),
            mosquitto_queue: Some(1_000_000),
            persistence: true,
            ..Settings::default()
        };
        let m = mosquitto_config(&s, Path::new("/tmp/d"), 1234, None);
        assert!(m.contains("max_inflight_messages 128\n"), "{m}");
        assert!(m.contains("max_queued_messages 1000000\n"), "{m}");
        assert!(m.contains("persistence true\npersistence_location /tmp/d/\n"), "{m}");
    }
}
