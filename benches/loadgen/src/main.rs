//! `edgemq-loadgen`: runs one benchmark scenario against a fresh edgemq or Mosquitto process
//! and prints one JSON line; `report` turns those lines into a markdown table.
//!
//! Raw MQTT over blocking sockets, one thread per client, edgemq's codec for framing: the
//! tool sees exactly what a broker sends. Exit codes: 0 scenario completed cleanly, 1 it ran
//! but failed (the JSON line says why), 2 bad command line.
#![forbid(unsafe_code)]

mod broker;
mod client;
mod json;
mod payload;
mod report;
mod scenario;
mod sink;
mod websocket;

use std::fmt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use edgemq::codec::ProtocolVersion;

use broker::{Durability, Kind, Launcher};
use json::Value;
use scenario::{MosquittoVariant, Options, Scenario};

const USAGE: &str = "\
edgemq-loadgen - MQTT broker benchmark scenarios (edgemq vs Mosquitto)

Usage:
  edgemq-loadgen run --broker edgemq|mosquitto --scenario NAME [options]
  edgemq-loadgen report FILE.jsonl
  edgemq-loadgen scenarios

Scenarios: fanin_q0 fanin_q1 fanin_q1_ws fanin_q2 fanin_shared_q1 fanout_q0 fanout_q1
           fanout_alias_q0 fanout1k_q0 fanout1k_q1 subs100k latency_q0 latency_q1 idle
           idle_15k offline storm storm_15k restart_big stuck
           bridge_live bridge_replay bridge_kill9 bridge_live_sink bridge_replay_sink
           bridge_kill9_sink

Options of `run` (defaults in brackets):
  --edgemq-bin PATH        [target/release/edgemq]
  --mosquitto-bin PATH     [/usr/sbin/mosquitto]
  --workdir DIR            where broker directories are made and removed [$TMPDIR]
  --run N                  run number recorded in the JSON line [1]
  --protocol 3.1.1|5       MQTT version of every client [3.1.1]
  --durability sync|batch|memory   edgemq [sqlite] durability [sync]
  --duration SECS          publishing time of fan-in / fan-out / stuck [4]
  --latency-duration SECS  length of the fixed-rate latency run [10]
  --rate N                 latency scenario messages per second [1000]
  --connections N          idle scenario connections [5000]
  --idle-window SECS       idle scenario: how long broker CPU time and wake-ups are watched
                           once everyone is connected [5]
  --no-pin                 idle scenario: leave CPU placement to the scheduler (by default the
                           load generator runs on CPU 0 and the broker on CPU 1, with `taskset`)
  --offline-messages N     offline scenario messages [50000]
  --window N               QoS 1/2 messages in flight per publisher [16]
  --broker-inflight N      broker outbound window per session: edgemq max_inflight, Mosquitto
                           max_inflight_messages in no-drop and offline [128]
  --mosquitto-variant defaults|no-drop
                           Mosquitto in fan-in / fan-out / stuck [defaults]:
                           defaults: shipped max_inflight_messages (20) and max_queued_messages
                             (1000), publishers run for the whole duration, drops count as lost;
                           no-drop: max_queued_messages = --queue, the --broker-inflight window,
                             QoS 1/2 publishers capped at --queue in total
                           (latency and idle always run Mosquitto with its defaults; offline with
                           persistence and max_queued_messages 100000)
  --queue N                Mosquitto no-drop per-session queue; its QoS 1/2 fan-in/fan-out
                           publishers send at most this many messages in total [1000000]
  --edgemq-queue N         edgemq's max_queued_messages in fan-in / fan-out (it pauses
                           publishers at its limit instead of dropping) [same as --queue]
  --bridge-messages N      bridge_replay / bridge_kill9: QoS 1 messages published while the
                           upstream is down [100000]
  --bridge-inflight N      bridge scenarios: messages in flight to the upstream, edgemq
                           [bridges.up] max_inflight and Mosquitto max_inflight_messages
                           (edgemq's bridge default) [256]
  --upstream-inflight N    bridge scenarios with Mosquitto upstream: its max_inflight_messages
                           towards the measuring QoS 1 subscriber [128]
  --log-level LEVEL        edgemq --log-level [warn; at least info in offline]
  --keep-dirs              keep each broker's directory (config, log, data) afterwards
  --data-dir DIR           the broker's data directory (edgemq --data, Mosquitto
                           persistence_location): an existing directory, e.g. a slow file system
                           mounted there (benches/slow-storage.sh); --edgemq-data is an alias
                           [data/ in the broker's directory]
  --edgemq-sqlite LINE     a line added to edgemq's [sqlite] table, e.g. max_wal_size = '4MB'
                           (repeatable)
  --edgemq-sys-interval S  edgemq's sys.interval in seconds, 0 = off [edgemq's default, 10]
  --fs-status FILE         offline: read fsync counters (`fsyncs=N fsyncdirs=N`, lossyfs's
                           control file) before and after the enqueue phase
";

/// An error with a message for the JSON line; every failure in this tool is one of these.
#[derive(Debug)]
pub struct Error(String);

impl Error {
    pub fn new(message: impl Into<String>) -> Error {
        Error(message.into())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Error {
        Error(e.to_string())
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("run") => match parse_run(&args[1..]) {
            Ok((scenario, options)) => {
                let record = scenario::run(scenario, &options);
                println!("{}", record.to_line());
                if record.get("ok") == Some(&Value::Bool(true)) {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                }
            }
            Err(e) => {
                eprintln!("edgemq-loadgen: {e}\n\n{USAGE}");
                ExitCode::from(2)
            }
        },
        Some("report") => {
            let Some(path) = args.get(1) else {
                eprintln!("edgemq-loadgen: report needs a file\n\n{USAGE}");
                return ExitCode::from(2);
            };
            match std::fs::read_to_string(path) {
                Ok(text) => {
                    print!("{}", report::render(&text));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("edgemq-loadgen: {path}: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Some("scenarios") => {
            println!("{}", scenario::ALL.join(" "));
            ExitCode::SUCCESS
        }
        Some("-h" | "--help" | "help") => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        _ => {
            eprint!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn parse_run(args: &[String]) -> Result<(Scenario, Options), Error> {
    let mut kind = None;
    let mut scenario = None;
    let mut options = Options {
        launcher: Launcher {
            kind: Kind::Edgemq,
            edgemq_bin: PathBuf::from("target/release/edgemq"),
            mosquitto_bin: PathBuf::from("/usr/sbin/mosquitto"),
            work_root: std::env::temp_dir(),
            log_level: "warn".to_string(),
            keep_dirs: false,
            data_dir: None,
            edgemq_sqlite: Vec::new(),
            edgemq_sys_interval: None,
        },
        version: ProtocolVersion::V311,
        run: 1,
        duration: Duration::from_secs(4),
        latency_duration: Duration::from_secs(10),
        latency_rate: 1000,
        connections: 5000,
        idle_window: Duration::from_secs(5),
        pin_idle: true,
        offline_messages: 50_000,
        durability: Durability::Sync,
        window: 16,
        broker_inflight: 128,
        queue: 1_000_000,
        edgemq_queue: None,
        mosquitto_variant: MosquittoVariant::Defaults,
        bridge_messages: 100_000,
        bridge_inflight: 256,
        upstream_inflight: 128,
        fs_status: None,
    };
    let mut rest = args.iter();
    while let Some(flag) = rest.next() {
        let (flag, inline) = match flag.split_once('=') {
            Some((f, v)) => (f, Some(v.to_string())),
            None => (flag.as_str(), None),
        };
        let mut value = || -> Result<String, Error> {
            inline
                .clone()
                .or_else(|| rest.next().cloned())
                .ok_or_else(|| Error::new(format!("{flag} needs a value")))
        };
        match flag {
            "--broker" => {
                kind = Some(match value()?.as_str() {
                    "edgemq" => Kind::Edgemq,
                    "mosquitto" => Kind::Mosquitto,
                    other => return Err(Error::new(format!("unknown broker {other:?}"))),
                })
            }
            "--scenario" => {
                let name = value()?;
                scenario = Some(
                    Scenario::parse(&name)
                        .ok_or_else(|| Error::new(format!("unknown scenario {name:?}")))?,
                );
            }
            "--edgemq-bin" => options.launcher.edgemq_bin = PathBuf::from(value()?),
            "--mosquitto-bin" => options.launcher.mosquitto_bin = PathBuf::from(value()?),
            "--workdir" => options.launcher.work_root = PathBuf::from(value()?),
            "--log-level" => options.launcher.log_level = value()?,
            "--keep-dirs" => options.launcher.keep_dirs = true,
            "--edgemq-sqlite" => options.launcher.edgemq_sqlite.push(value()?),
            "--edgemq-sys-interval" => {
                let secs = value()?;
                let secs = secs
                    .parse()
                    .map_err(|_| Error::new(format!("--edgemq-sys-interval: {secs:?}")))?;
                options.launcher.edgemq_sys_interval = Some(secs);
            }
            "--fs-status" => options.fs_status = Some(PathBuf::from(value()?)),
            "--data-dir" | "--edgemq-data" => {
                options.launcher.data_dir = Some(PathBuf::from(value()?))
            }
            "--run" => options.run = number(flag, &value()?)?,
            "--protocol" => {
                options.version = match value()?.as_str() {
                    "3.1.1" | "4" => ProtocolVersion::V311,
                    "5" | "5.0" => ProtocolVersion::V5,
                    other => return Err(Error::new(format!("unknown protocol {other:?}"))),
                }
            }
            "--durability" => {
                options.durability = match value()?.as_str() {
                    "sync" => Durability::Sync,
                    "batch" => Durability::Batch,
                    "memory" => Durability::Memory,
                    other => return Err(Error::new(format!("unknown durability {other:?}"))),
                }
            }
            "--duration" => options.duration = seconds(flag, &value()?)?,
            "--latency-duration" => options.latency_duration = seconds(flag, &value()?)?,
            "--rate" => options.latency_rate = number(flag, &value()?)?,
            "--connections" => options.connections = number(flag, &value()?)?,
            "--idle-window" => options.idle_window = seconds(flag, &value()?)?,
            "--no-pin" => options.pin_idle = false,
            "--offline-messages" => options.offline_messages = number(flag, &value()?)?,
            "--window" => options.window = number::<usize>(flag, &value()?)?.clamp(1, 65_000),
            "--broker-inflight" => options.broker_inflight = number(flag, &value()?)?,
            "--queue" => options.queue = number(flag, &value()?)?,
            "--bridge-messages" => options.bridge_messages = number(flag, &value()?)?,
            "--bridge-inflight" => options.bridge_inflight = number::<u16>(flag, &value()?)?.max(1),
            "--upstream-inflight" => {
                options.upstream_inflight = number::<u16>(flag, &value()?)?.max(1)
            }
            "--edgemq-queue" => options.edgemq_queue = Some(number(flag, &value()?)?),
            "--mosquitto-variant" => {
                let name = value()?;
                options.mosquitto_variant = MosquittoVariant::parse(&name)
                    .ok_or_else(|| Error::new(format!("unknown Mosquitto variant {name:?}")))?;
            }
            other => return Err(Error::new(format!("unknown flag {other:?}"))),
        }
    }
    // The broker runs in its own directory: relative binary paths must not depend on it.
    for bin in [&mut options.launcher.edgemq_bin, &mut options.launcher.mosquitto_bin] {
        if let Ok(absolute) = std::fs::canonicalize(&*bin) {
            *bin = absolute;
        }
    }
    options.launcher.kind = kind.ok_or_else(|| Error::new("--broker is required"))?;
    let scenario = scenario.ok_or_else(|| Error::new("--scenario is required"))?;
    Ok((scenario, options))
}

fn number<T: std::str::FromStr>(flag: &str, text: &str) -> Result<T, Error> {
    text.parse().map_err(|_| Error::new(format!("{flag}: not a number: {text:?}")))
}

fn seconds(flag: &str, text: &str) -> Result<Duration, Error> {
    let secs: f64 = number(flag, text)?;
    if !(0.1..=3600.0).contains(&secs) {
        return Err(Error::new(format!("{flag}: {secs} s is outside 0.1..3600")));
    }
    Ok(Duration::from_secs_f64(secs))
}
