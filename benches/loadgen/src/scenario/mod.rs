//! Scenarios: each starts a fresh broker, drives it, and describes the outcome as one flat
//! JSON object.
//!
//! Contract: `run` never panics on broker behaviour and always returns an object with
//! `scenario`, `broker`, `variant`, `run`, `ok` and (when `ok` is false) `error`, plus
//! whatever metrics could be measured before the failure. Every scenario is bounded in time
//! and in messages (see each module), so a run cannot hang.

mod bridge;
mod idle;
mod latency;
mod offline;
mod restart;
mod storm;
mod subs100k;
mod throughput;
pub mod worker;

use std::thread::ScopedJoinHandle;
use std::time::Duration;

use edgemq::codec::{ProtocolVersion, QoS};

use crate::broker::{BrokerProcess, Durability, Kind, Launcher, Usage};
use crate::client::Client;
use crate::json::Object;
use crate::Error;
use throughput::Shape;

/// `publishers` to `subscribers` plain subscribers, nothing else.
fn shape(publishers: usize, subscribers: usize) -> Shape {
    Shape { publishers, subscribers, ..Shape::default() }
}

/// Every scenario, in the order `run.sh` runs them.
pub const ALL: &[&str] = &[
    "fanin_q0",
    "fanin_q1",
    "fanin_q1_ws",
    "fanin_q2",
    "fanin_shared_q1",
    "fanout_q0",
    "fanout_q1",
    "fanout_alias_q0",
    "fanout1k_q0",
    "fanout1k_q1",
    "subs100k",
    "latency_q0",
    "latency_q1",
    "idle",
    "idle_15k",
    "offline",
    "storm",
    "storm_15k",
    "restart_big",
    "stuck",
    "bridge_live",
    "bridge_replay",
    "bridge_kill9",
    "bridge_live_sink",
    "bridge_replay_sink",
    "bridge_kill9_sink",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    FanIn(QoS),
    /// Fan-in with every client over WebSockets.
    FanInWs(QoS),
    FanOut(QoS),
    /// 1 publisher -> 1,000 subscribers.
    FanOutWide(QoS),
    /// 10,000 devices with 10 exact topics each; publishers to random topics (`subs100k.rs`).
    Subs100k,
    Latency(QoS),
    /// Idle connections: `--connections` of them, or a fixed count (`idle_15k`).
    Idle(Option<usize>),
    Offline,
    /// Persistent sessions with queued messages reconnecting at once: `--connections` of
    /// them, or a fixed count (`storm_15k`).
    Storm(Option<usize>),
    /// A graceful restart with 10,000 sessions and 1,000,000 queued messages.
    RestartBig,
    /// Fan-in QoS 1 beside a subscriber that never reads nor acknowledges.
    Stuck,
    /// Fan-in QoS 1 to one subscriber and a shared group of 4 (`throughput.rs`).
    FanInShared,
    /// Fan-out QoS 0 over 5.0, half the subscribers taking topic aliases (`throughput.rs`).
    FanOutAlias,
    /// A local broker bridging to an upstream Mosquitto or to the load generator's sink
    /// (`bridge.rs`).
    Bridge(bridge::Phase, bridge::Upstream),
}

impl Scenario {
    pub fn parse(name: &str) -> Option<Scenario> {
        Some(match name {
            "fanin_q0" => Scenario::FanIn(QoS::AtMostOnce),
            "fanin_q1" => Scenario::FanIn(QoS::AtLeastOnce),
            "fanin_q1_ws" => Scenario::FanInWs(QoS::AtLeastOnce),
            "fanin_q2" => Scenario::FanIn(QoS::ExactlyOnce),
            "fanout_q0" => Scenario::FanOut(QoS::AtMostOnce),
            "fanout_q1" => Scenario::FanOut(QoS::AtLeastOnce),
            "fanout1k_q0" => Scenario::FanOutWide(QoS::AtMostOnce),
            "fanout1k_q1" => Scenario::FanOutWide(QoS::AtLeastOnce),
            "subs100k" => Scenario::Subs100k,
            "latency_q0" => Scenario::Latency(QoS::AtMostOnce),
            "latency_q1" => Scenario::Latency(QoS::AtLeastOnce),
            "idle" => Scenario::Idle(None),
            "idle_15k" => Scenario::Idle(Some(15_000)),
            "offline" => Scenario::Offline,
            "storm" => Scenario::Storm(None),
            "storm_15k" => Scenario::Storm(Some(15_000)),
            "restart_big" => Scenario::RestartBig,
            "stuck" => Scenario::Stuck,
            "fanin_shared_q1" => Scenario::FanInShared,
            "fanout_alias_q0" => Scenario::FanOutAlias,
            "bridge_live" => Scenario::Bridge(bridge::Phase::Live, bridge::Upstream::Mosquitto),
            "bridge_replay" => Scenario::Bridge(bridge::Phase::Replay, bridge::Upstream::Mosquitto),
            "bridge_kill9" => Scenario::Bridge(bridge::Phase::Kill9, bridge::Upstream::Mosquitto),
            "bridge_live_sink" => Scenario::Bridge(bridge::Phase::Live, bridge::Upstream::Sink),
            "bridge_replay_sink" => Scenario::Bridge(bridge::Phase::Replay, bridge::Upstream::Sink),
            "bridge_kill9_sink" => Scenario::Bridge(bridge::Phase::Kill9, bridge::Upstream::Sink),
            _ => return None,
        })
    }

    pub fn name(self) -> String {
        match self {
            Scenario::FanIn(q) => format!("fanin_q{}", q.bits()),
            Scenario::FanInWs(q) => format!("fanin_q{}_ws", q.bits()),
            Scenario::FanOut(q) => format!("fanout_q{}", q.bits()),
            Scenario::FanOutWide(q) => format!("fanout1k_q{}", q.bits()),
            Scenario::Subs100k => "subs100k".to_string(),
            Scenario::Latency(q) => format!("latency_q{}", q.bits()),
            Scenario::Idle(None) => "idle".to_string(),
            Scenario::Idle(Some(n)) => format!("idle_{}k", n / 1000),
            Scenario::Offline => "offline".to_string(),
            Scenario::Storm(None) => "storm".to_string(),
            Scenario::Storm(Some(n)) => format!("storm_{}k", n / 1000),
            Scenario::RestartBig => "restart_big".to_string(),
            Scenario::Stuck => "stuck".to_string(),
            Scenario::FanInShared => "fanin_shared_q1".to_string(),
            Scenario::FanOutAlias => "fanout_alias_q0".to_string(),
            Scenario::Bridge(phase, upstream) => {
                let phase = match phase {
                    bridge::Phase::Live => "live",
                    bridge::Phase::Replay => "replay",
                    bridge::Phase::Kill9 => "kill9",
                };
                match upstream {
                    bridge::Upstream::Mosquitto => format!("bridge_{phase}"),
                    bridge::Upstream::Sink => format!("bridge_{phase}_sink"),
                }
            }
        }
    }
}

/// How Mosquitto is set up in the throughput scenarios (fan-in, fan-out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MosquittoVariant {
    /// Shipped limits (`max_inflight_messages` 20, `max_queued_messages` 1000: the keys are
    /// not written); publishers run for the whole duration and what Mosquitto drops is
    /// counted as lost. The set-up of issue 5's reference table.
    Defaults,
    /// `max_queued_messages` = `--queue`, the same outbound window as edgemq, and QoS 1/2
    /// publishers capped at the queue, so nothing needs to be dropped.
    NoDrop,
}

impl MosquittoVariant {
    pub fn parse(name: &str) -> Option<MosquittoVariant> {
        match name {
            "defaults" => Some(MosquittoVariant::Defaults),
            "no-drop" => Some(MosquittoVariant::NoDrop),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            MosquittoVariant::Defaults => "defaults",
            MosquittoVariant::NoDrop => "no-drop",
        }
    }
}

/// Everything a scenario may be tuned with (see `main` for the flags).
#[derive(Debug, Clone)]
pub struct Options {
    pub launcher: Launcher,
    pub version: ProtocolVersion,
    pub run: u32,
    /// Publishing time of each throughput scenario.
    pub duration: Duration,
    pub latency_duration: Duration,
    /// Messages per second of the latency scenario.
    pub latency_rate: u32,
    /// Idle connections to open.
    pub connections: usize,
    /// How long the idle scenario watches the broker's CPU time and wake-ups.
    pub idle_window: Duration,
    /// Idle scenario: the load generator on CPU 0 and the broker on CPU 1 (if there are two).
    pub pin_idle: bool,
    /// Messages queued for the offline session.
    pub offline_messages: u64,
    /// edgemq `[sqlite] durability` (every scenario; `offline` is run with sync and batch).
    pub durability: Durability,
    /// QoS 1/2 publisher window (messages in flight per publisher).
    pub window: usize,
    /// Broker outbound inflight window per session: edgemq `max_inflight` everywhere,
    /// Mosquitto `max_inflight_messages` in the no-drop variant and in `offline`.
    pub broker_inflight: u16,
    /// Per-session queue of the throughput scenarios (Mosquitto no-drop
    /// `max_queued_messages`); against Mosquitto no-drop also the cap on QoS 1/2 messages
    /// published there.
    pub queue: usize,
    /// edgemq's `max_queued_messages` in the throughput scenarios, when it should differ
    /// from `queue` (edgemq applies back-pressure at its limit instead of dropping, so it can
    /// run with its default).
    pub edgemq_queue: Option<usize>,
    /// Mosquitto's set-up in the throughput scenarios.
    pub mosquitto_variant: MosquittoVariant,
    /// Messages queued locally while the upstream is down (bridge_replay, bridge_kill9).
    pub bridge_messages: u64,
    /// Messages in flight from the local broker's bridge to the upstream, both brokers.
    pub bridge_inflight: u16,
    /// The upstream Mosquitto's window towards its measuring subscriber (`max_inflight_messages`).
    pub upstream_inflight: u16,
    /// `offline`: a file with `fsyncs=N fsyncdirs=N ...` counters (tests/powercut/lossyfs.py's
    /// control file), read before and after the enqueue phase.
    pub fs_status: Option<std::path::PathBuf>,
}

impl Options {
    /// What distinguishes broker set-ups in the table: edgemq's durability, Mosquitto's
    /// limits (throughput) or persistence (offline).
    fn variant(&self, scenario: Scenario) -> &'static str {
        match (self.launcher.kind, scenario) {
            (Kind::Edgemq, _) => self.durability.name(),
            (
                Kind::Mosquitto,
                Scenario::FanIn(_)
                | Scenario::FanInWs(_)
                | Scenario::FanOut(_)
                | Scenario::FanOutWide(_)
                | Scenario::Stuck
                | Scenario::FanInShared
                | Scenario::FanOutAlias,
            ) => self.mosquitto_variant.name(),
            (
                Kind::Mosquitto,
                Scenario::Latency(_) | Scenario::Idle(_) | Scenario::Storm(_) | Scenario::Subs100k,
            ) => MosquittoVariant::Defaults.name(),
            (Kind::Mosquitto, Scenario::Offline | Scenario::RestartBig) => "persistence",
            // Mosquitto as the bridge, with its default persistence (off).
            (Kind::Mosquitto, Scenario::Bridge(..)) => "bridge",
        }
    }
}

pub fn run(scenario: Scenario, options: &Options) -> Object {
    let mut out = Object::new();
    out.str("scenario", &scenario.name())
        .str("broker", options.launcher.kind.name())
        .str("variant", options.variant(scenario))
        .int("run", u64::from(options.run))
        .str("protocol", if options.version.is_v5() { "5.0" } else { "3.1.1" })
        .bool("ok", false);
    let result = match scenario {
        Scenario::FanIn(qos) => throughput::run(options, shape(4, 1), qos, &mut out),
        Scenario::FanInWs(qos) => {
            let shape = Shape { websocket: true, ..shape(4, 1) };
            throughput::run(options, shape, qos, &mut out)
        }
        Scenario::FanOut(qos) => throughput::run(options, shape(1, 8), qos, &mut out),
        Scenario::FanOutWide(qos) => throughput::run(options, shape(1, 1000), qos, &mut out),
        Scenario::Subs100k => subs100k::run(options, &mut out),
        Scenario::Stuck => {
            let shape = Shape { stuck_subscribers: 1, ..shape(4, 1) };
            throughput::run(options, shape, QoS::AtLeastOnce, &mut out)
        }
        Scenario::FanInShared => {
            let shape = Shape { group: 4, ..shape(4, 1) };
            throughput::run(options, shape, QoS::AtLeastOnce, &mut out)
        }
        Scenario::FanOutAlias => {
            let shape = Shape { alias_subscribers: 4, ..shape(1, 8) };
            throughput::run(options, shape, QoS::AtMostOnce, &mut out)
        }
        Scenario::Latency(qos) => latency::run(options, qos, &mut out),
        Scenario::Idle(count) => idle::run(options, count.unwrap_or(options.connections), &mut out),
        Scenario::Offline => offline::run(options, &mut out),
        Scenario::RestartBig => restart::run(options, &mut out),
        Scenario::Storm(count) => {
            storm::run(options, count.unwrap_or(options.connections), &mut out)
        }
        Scenario::Bridge(phase, upstream) => bridge::run(options, phase, upstream, &mut out),
    };
    match result {
        Ok(()) => {
            out.bool("ok", true);
        }
        Err(e) => {
            out.str("error", &e.to_string());
        }
    }
    out
}

/// The broker's VmRSS once it is ready, before the scenario's clients connect.
fn record_start_rss(out: &mut Object, broker: &BrokerProcess) -> Result<(), Error> {
    out.int("start_rss_kb", broker.usage()?.rss_kb);
    Ok(())
}

/// Broker CPU and memory between two /proc samples.
fn record_usage(out: &mut Object, prefix: &str, before: &Usage, after: &Usage, messages: u64) {
    let cpu = (after.cpu_s - before.cpu_s).max(0.0);
    out.num(&format!("{prefix}cpu_s"), cpu);
    if messages > 0 {
        out.num(&format!("{prefix}cpu_us_per_msg"), cpu * 1e6 / messages as f64);
    }
}

/// Joins a worker thread, turning a panic into an error; the client (if any) goes to
/// `clients` for a later `close_all`.
fn join<T>(
    handle: ScopedJoinHandle<'_, (Result<T, Error>, Client)>,
    what: &str,
    clients: &mut Vec<Client>,
) -> Result<T, Error> {
    match handle.join() {
        Ok((result, client)) => {
            clients.push(client);
            result
        }
        Err(_) => Err(Error::new(format!("{what} thread panicked"))),
    }
}

/// Sends DISCONNECT on every client without waiting for the broker.
fn close_all(clients: Vec<Client>) {
    for client in clients {
        client.close();
    }
}

/// Remembers the first error of several threads, keeping the others' results.
#[derive(Default)]
struct FirstError(Option<Error>);

impl FirstError {
    fn take<T>(&mut self, result: Result<T, Error>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(e) => {
                self.0.get_or_insert(e);
                None
            }
        }
    }

    fn into_result(self) -> Result<(), Error> {
        match self.0 {
            None => Ok(()),
            Some(e) => Err(e),
        }
    }
}

/// `p` in 0..=1 of sorted nanoseconds, in microseconds (nearest rank).
fn percentile_us(sorted_ns: &[u64], p: f64) -> f64 {
    if sorted_ns.is_empty() {
        return f64::NAN;
    }
    let rank = (p * sorted_ns.len() as f64).ceil() as usize;
    let index = rank.clamp(1, sorted_ns.len()) - 1;
    sorted_ns.get(index).map_or(f64::NAN, |&ns| ns as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for name in ALL {
            assert_eq!(Scenario::parse(name).map(Scenario::name).as_deref(), Some(*name));
        }
    }

    #[test]
    fn mosquitto_variants_round_trip() {
        for variant in [MosquittoVariant::Defaults, MosquittoVariant::NoDrop] {
            assert_eq!(MosquittoVariant::parse(variant.name()), Some(variant));
        }
        assert_eq!(MosquittoVariant::parse("default"), None);
    }

    #[test]
    fn nearest_rank_percentiles() {
        let ns: Vec<u64> = (1..=1000).map(|i| i * 1000).collect();
        assert_eq!(percentile_us(&ns, 0.5), 500.0);
        assert_eq!(percentile_us(&ns, 0.99), 990.0);
        assert_eq!(percentile_us(&ns, 0.999), 999.0);
        assert_eq!(percentile_us(&ns, 1.0), 1000.0);
        assert!(percentile_us(&[], 0.5).is_nan());
    }
}
