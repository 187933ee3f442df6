//! Bridges: a local broker forwarding `bench/#` at QoS 1 to an upstream on loopback.
//!
//! Two upstreams ([`Upstream`]): Debian's Mosquitto (`--mosquitto-bin`; scenarios `bridge_*`),
//! a fresh one per run on a free port, persistence off, no queue limit, a 128-message window
//! towards its subscriber (`--upstream-inflight`); or the load generator's own sink (`crate::sink`; scenarios
//! `bridge_*_sink`), a minimal MQTT server that acknowledges and counts every message and
//! forwards nothing, so it costs little per message and the bridge, not the upstream, is what
//! is measured. Both bridges run against the same kind of upstream in the same run.
//! The local broker is the one under test: edgemq with `[bridges.up]` (`forwards = [{ topic =
//! "bench/#", qos = 1 }]`, the scenario's durability, queue caps far above what is published)
//! or Mosquitto as a bridge (`connection up`, `cleansession false`, `topic bench/# out 1`,
//! `max_queued_messages` as large, `queue_qos0_messages false`, persistence at its default:
//! off). Both bridges get the same window (`--bridge-inflight`) and reconnect every
//! `RETRY_S` second (edgemq `backoff_min` = `backoff_max`, Mosquitto `restart_timeout`).
//!
//! * `bridge_live`: 4 local publishers (QoS 1, `window` in flight each) for `duration`; an
//!   upstream subscriber (`bench/bridge/+`, QoS 1) counts every message per publisher by
//!   sequence number. msg/s = unique messages upstream / (last one upstream - start).
//! * `bridge_replay`: the upstream is killed (SIGKILL), 4 local publishers send
//!   `--bridge-messages` QoS 1 messages (all PUBACKed), then the upstream is started again on
//!   the same port: the time from that start to the last message upstream, and what is
//!   missing or duplicated.
//! * `bridge_kill9`: the same, but once every PUBACK is in the local broker is killed with
//!   SIGKILL and started again (same config, data and port) before the upstream returns.
//!
//! With Mosquitto upstream, its subscriber must be subscribed before the bridge reaches the
//! restarted upstream, or messages would reach an upstream with nobody to give them to. It
//! connects as soon as the upstream listens (the bridges retry only once per `RETRY_S`), and
//! the upstream's own log (connection and subscribe lines) is checked: a run where the bridge
//! came first is a failed run (`ok: false`), never a loss blamed on the broker. The sink
//! counts what it receives itself, from its first connection on.

use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use edgemq::codec::{Packet, QoS};

use super::worker::{self, PublisherPlan, PublisherStats, SubscriberControl, SubscriberPlan};
use super::{close_all, join, record_start_rss, record_usage, FirstError, Options};
use crate::broker::{BridgeSettings, BrokerProcess, Kind, Launcher, Settings};
use crate::client::{Client, ConnectOptions};
use crate::json::Object;
use crate::sink::Sink;
use crate::Error;

const PUBLISHERS: usize = 4;
/// Client id of both bridges on the upstream.
const BRIDGE_CLIENT_ID: &str = "bench-bridge";
const SUBSCRIBER_ID: &str = "bench-upstream-sub";
const FILTER: &str = "bench/bridge/+";
/// The sink counts the topics `FILTER` matches (every publisher's is `bench/bridge/pN`).
const TOPIC_PREFIX: &str = "bench/bridge/";
/// Probes (QoS 0, neither broker queues them while the link is down) show the link is up.
const PROBE_TOPIC: &str = "bench/probe";
/// Reconnect interval of both bridges, seconds.
const RETRY_S: u32 = 1;
/// Queue cap of both bridges: nothing a scenario publishes comes near it.
const BRIDGE_QUEUE: usize = 1_000_000;
const LINK_LIMIT: Duration = Duration::from_secs(20);
const PUBLISH_LIMIT: Duration = Duration::from_secs(120);
const DRAIN_LIMIT: Duration = Duration::from_secs(120);
/// Live: once the publishers are done, this long without a message upstream ends the run.
const LIVE_QUIET: Duration = Duration::from_secs(3);
/// Replay: a bridge reconnects within about `RETRY_S`; this long without a message upstream
/// (also before the first one) ends the run. Mosquitto after kill -9 delivers nothing, so
/// its kill9 runs last about this long.
const REPLAY_QUIET: Duration = Duration::from_secs(8);
/// How long the local broker gets to notice that the upstream is gone.
const NOTICE: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Live,
    Replay,
    Kill9,
}

/// What the local broker bridges to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upstream {
    /// Debian's Mosquitto with one QoS 1 subscriber that counts.
    Mosquitto,
    /// The load generator's sink (`crate::sink`): acknowledges and counts, forwards nothing.
    Sink,
}

/// The running upstream.
enum UpstreamProcess {
    Mosquitto(BrokerProcess),
    Sink(Sink),
}

impl UpstreamProcess {
    fn addr(&self) -> std::net::SocketAddr {
        match self {
            UpstreamProcess::Mosquitto(p) => p.addr,
            UpstreamProcess::Sink(s) => s.addr,
        }
    }

    /// SIGKILL for Mosquitto; the sink closes its listener and every connection.
    fn kill(&mut self) -> Result<(), Error> {
        match self {
            UpstreamProcess::Mosquitto(p) => p.kill9(),
            UpstreamProcess::Sink(s) => {
                s.kill();
                Ok(())
            }
        }
    }

    /// Back on the same port, with nothing kept (Mosquitto runs without persistence).
    fn restart(&mut self) -> Result<(), Error> {
        match self {
            UpstreamProcess::Mosquitto(p) => p.restart(),
            UpstreamProcess::Sink(s) => {
                *s = Sink::start(s.addr, PUBLISHERS, TOPIC_PREFIX, PROBE_TOPIC)?;
                Ok(())
            }
        }
    }

    fn check_alive(&mut self) -> Result<(), Error> {
        match self {
            UpstreamProcess::Mosquitto(p) => p.check_alive(),
            UpstreamProcess::Sink(_) => Ok(()),
        }
    }
}

pub fn run(
    options: &Options,
    phase: Phase,
    upstream_kind: Upstream,
    out: &mut Object,
) -> Result<(), Error> {
    let mut upstream = match upstream_kind {
        Upstream::Mosquitto => {
            // The upstream keeps its data (none: persistence off) in its own directory.
            let launcher =
                Launcher { kind: Kind::Mosquitto, data_dir: None, ..options.launcher.clone() };
            let settings = Settings {
                mosquitto_inflight: Some(options.upstream_inflight),
                upstream: true,
                ..Settings::default()
            };
            UpstreamProcess::Mosquitto(BrokerProcess::start(&launcher, &settings, "upstream")?)
        }
        Upstream::Sink => UpstreamProcess::Sink(Sink::start(
            "127.0.0.1:0".parse().map_err(|_| Error::new("bad sink address"))?,
            PUBLISHERS,
            TOPIC_PREFIX,
            PROBE_TOPIC,
        )?),
    };
    out.str(
        "upstream",
        match upstream_kind {
            Upstream::Mosquitto => "mosquitto",
            Upstream::Sink => "sink",
        },
    );
    let bridge = BridgeSettings {
        upstream: upstream.addr(),
        client_id: BRIDGE_CLIENT_ID.to_string(),
        inflight: options.bridge_inflight,
        queue: BRIDGE_QUEUE,
        retry_s: RETRY_S,
    };
    let settings = Settings {
        max_inflight: options.broker_inflight,
        max_queued_messages: options.edgemq_queue.unwrap_or(1000),
        durability: options.durability,
        bridge: Some(bridge),
        ..Settings::default()
    };
    let mut local = BrokerProcess::start(&options.launcher, &settings, "local")?;
    record_start_rss(out, &local)?;
    out.int("publishers", PUBLISHERS as u64)
        .int("window", options.window as u64)
        .int("bridge_inflight", u64::from(options.bridge_inflight))
        .int("upstream_inflight", u64::from(options.upstream_inflight))
        .int("bridge_queue", BRIDGE_QUEUE as u64)
        .int("retry_s", u64::from(RETRY_S))
        .int("payload_bytes", crate::payload::PAYLOAD_LEN as u64);

    // Subscribed upstream first, then the link is up once a probe made it through.
    let sub = match &upstream {
        UpstreamProcess::Mosquitto(p) => Some(connect_subscriber(p, options)?),
        UpstreamProcess::Sink(_) => None,
    };
    let linked = wait_linked(&local, &upstream, options)?;
    out.num("link_up_s", linked.as_secs_f64());
    let result = match phase {
        Phase::Live => live(options, &mut local, &upstream, sub, out),
        Phase::Replay | Phase::Kill9 => {
            if let Some(sub) = sub {
                sub.close();
            }
            replay(options, phase, &mut local, &mut upstream, out)
        }
    };
    out.int("broker_log_lines", local.log_lines());
    if let UpstreamProcess::Sink(sink) = &upstream {
        out.int("sink_connections", sink.connections())
            .int("sink_other_topics", sink.other_topics());
    }
    local.check_alive()?;
    upstream.check_alive()?;
    result
}

fn connect_subscriber(upstream: &BrokerProcess, options: &Options) -> Result<Client, Error> {
    let (mut sub, _) =
        Client::connect(upstream.addr, &ConnectOptions::new(SUBSCRIBER_ID, options.version))?;
    sub.subscribe(FILTER, QoS::AtLeastOnce)?;
    Ok(sub)
}

/// Publishes QoS 0 probes locally until one arrives upstream; how long that took.
fn wait_linked(
    local: &BrokerProcess,
    upstream: &UpstreamProcess,
    options: &Options,
) -> Result<Duration, Error> {
    let started = Instant::now();
    let mut probe_sub = match upstream {
        UpstreamProcess::Mosquitto(p) => {
            let (mut sub, _) =
                Client::connect(p.addr, &ConnectOptions::new("bench-probe-sub", options.version))?;
            sub.subscribe(PROBE_TOPIC, QoS::AtMostOnce)?;
            Some(sub)
        }
        UpstreamProcess::Sink(_) => None,
    };
    let (mut probe_pub, _) =
        Client::connect(local.addr, &ConnectOptions::new("bench-probe-pub", options.version))?;
    let topic = std::rc::Rc::from(PROBE_TOPIC);
    let linked = loop {
        if started.elapsed() > LINK_LIMIT {
            return Err(Error::new(format!(
                "the bridge did not forward a probe within {LINK_LIMIT:?}: {}",
                local.log_tail(3)
            )));
        }
        probe_pub.queue_publish(&topic, QoS::AtMostOnce, b"probe");
        probe_pub.flush()?;
        let deadline = Instant::now() + Duration::from_millis(100);
        let got = match (&mut probe_sub, upstream) {
            (Some(sub), _) => {
                let mut got = false;
                while let Some(packet) = sub.read_packet(deadline)? {
                    got |= matches!(packet, Packet::Publish(_));
                }
                got
            }
            (None, UpstreamProcess::Sink(sink)) => {
                while sink.probes() == 0 && Instant::now() < deadline {
                    thread::sleep(Duration::from_millis(1));
                }
                sink.probes() > 0
            }
            (None, UpstreamProcess::Mosquitto(_)) => false,
        };
        if got {
            break started.elapsed();
        }
    };
    probe_pub.close();
    if let Some(sub) = probe_sub {
        sub.close();
    }
    Ok(linked)
}

fn connect_publishers(local: &BrokerProcess, options: &Options) -> Result<Vec<Client>, Error> {
    (0..PUBLISHERS)
        .map(|i| {
            Client::connect(
                local.addr,
                &ConnectOptions::new(format!("bench-pub-{i}"), options.version),
            )
            .map(|(c, _)| c)
        })
        .collect()
}

fn publisher_plan(
    i: usize,
    options: &Options,
    max_messages: u64,
    epoch: Instant,
    start: Instant,
    end: Instant,
) -> PublisherPlan {
    PublisherPlan {
        id: i as u32,
        topic: format!("bench/bridge/p{i}"),
        qos: QoS::AtLeastOnce,
        window: options.window,
        max_messages,
        start,
        end,
        interval: None,
        epoch,
        record_ack_latency: false,
        random_topics: None,
    }
}

fn subscriber_plan(epoch: Instant) -> SubscriberPlan {
    SubscriberPlan {
        publishers: PUBLISHERS,
        epoch,
        latency_from_seq: None,
        label: "upstream subscriber".to_string(),
    }
}

/// Live forwarding: publishers and the upstream subscriber at the same time.
fn live(
    options: &Options,
    local: &mut BrokerProcess,
    upstream: &UpstreamProcess,
    sub: Option<Client>,
    out: &mut Object,
) -> Result<(), Error> {
    let pub_clients = connect_publishers(local, options)?;
    // Both brokers get the same cap, far below the bridges' queues.
    let max_messages = (BRIDGE_QUEUE / PUBLISHERS) as u64;
    let epoch = Instant::now();
    let start = epoch + Duration::from_millis(50);
    let end = start + options.duration;
    let control = SubscriberControl::new(LIVE_QUIET, end + DRAIN_LIMIT);
    let stop = AtomicBool::new(false);
    let upstream_process = match upstream {
        UpstreamProcess::Mosquitto(p) => Some(p),
        UpstreamProcess::Sink(_) => None,
    };
    let before = local.usage()?;
    let upstream_before = upstream_process.map(BrokerProcess::usage).transpose()?;
    let mut clients = Vec::with_capacity(PUBLISHERS + 1);
    let (pub_results, sub_result) = thread::scope(|s| {
        let clients = &mut clients;
        let control = &control;
        let stop = &stop;
        let plan = subscriber_plan(epoch);
        let sub_handle = match (sub, upstream) {
            (Some(sub), _) => s.spawn(move || {
                let (result, client) = worker::subscribe(sub, &plan, control);
                (result, Some(client))
            }),
            (None, UpstreamProcess::Sink(sink)) => s.spawn(move || (Ok(sink.wait(control)), None)),
            (None, UpstreamProcess::Mosquitto(_)) => {
                s.spawn(|| (Err(Error::new("no upstream subscriber")), None))
            }
        };
        let pub_handles: Vec<_> = pub_clients
            .into_iter()
            .enumerate()
            .map(|(i, client)| {
                let plan = publisher_plan(i, options, max_messages, epoch, start, end);
                s.spawn(move || worker::publish(client, &plan, stop))
            })
            .collect();
        let pub_results: Vec<_> =
            pub_handles.into_iter().map(|h| join(h, "publisher", clients)).collect();
        let sent: u64 = pub_results.iter().filter_map(|r| r.as_ref().ok()).map(|p| p.sent).sum();
        control.expected.store(sent, Ordering::Release);
        let sub_result = match sub_handle.join() {
            Ok((result, client)) => {
                clients.extend(client);
                result
            }
            Err(_) => Err(Error::new("subscriber thread panicked")),
        };
        (pub_results, sub_result)
    });
    let after = local.usage()?;
    let upstream_after = upstream_process.map(BrokerProcess::usage).transpose()?;
    close_all(clients);

    let mut errors = FirstError::default();
    let pubs: Vec<PublisherStats> =
        pub_results.into_iter().filter_map(|r| errors.take(r)).collect();
    let sent_by: Vec<u64> = pubs.iter().map(|p| p.sent).collect();
    let published: u64 = sent_by.iter().sum();
    let acked: u64 = pubs.iter().map(|p| p.acked).sum();
    let last_ack = pubs.iter().filter_map(|p| p.last_ack).max();
    let publish_s = last_ack.map_or(f64::NAN, |t| t.duration_since(start).as_secs_f64());
    out.int("published", published)
        .int("acked", acked)
        .int("refused", pubs.iter().map(|p| p.refused).sum())
        .num("publish_s", publish_s)
        .num("offered_per_s", acked as f64 / publish_s);
    if let Some(sub) = errors.take(sub_result) {
        let delivered = sub.unique();
        let lost: u64 = sub.trackers.iter().zip(&sent_by).map(|(t, &n)| t.missing(n)).sum();
        let elapsed = sub.last_receive.map_or(f64::NAN, |t| t.duration_since(start).as_secs_f64());
        out.int("delivered", delivered)
            .int("lost", lost)
            .int("duplicates", sub.duplicates())
            .int("reordered", sub.reordered())
            .int("foreign_payloads", sub.unknown_payloads)
            .num("elapsed_s", elapsed)
            .num("msg_per_s", delivered as f64 / elapsed)
            .num("max_gap_ms", sub.max_gap.as_secs_f64() * 1000.0)
            .str("subscriber_ended_by", sub.ended_by);
        record_usage(out, "", &before, &after, delivered);
        if let (Some(b), Some(a)) = (&upstream_before, &upstream_after) {
            record_usage(out, "upstream_", b, a, delivered);
        }
    }
    out.int("peak_rss_kb", after.hwm_kb);
    errors.into_result()
}

/// Outage, backlog, (kill -9 of the local broker,) the upstream back.
fn replay(
    options: &Options,
    phase: Phase,
    local: &mut BrokerProcess,
    upstream: &mut UpstreamProcess,
    out: &mut Object,
) -> Result<(), Error> {
    upstream.kill()?;
    thread::sleep(NOTICE);

    let total = options.bridge_messages;
    let pub_clients = connect_publishers(local, options)?;
    let epoch = Instant::now();
    let start = epoch + Duration::from_millis(50);
    let stop = AtomicBool::new(false);
    let before = local.usage()?;
    let mut clients = Vec::with_capacity(PUBLISHERS);
    let pub_results: Vec<_> = thread::scope(|s| {
        let clients = &mut clients;
        let stop = &stop;
        let handles: Vec<_> = pub_clients
            .into_iter()
            .enumerate()
            .map(|(i, client)| {
                let share =
                    total / PUBLISHERS as u64 + u64::from((i as u64) < total % PUBLISHERS as u64);
                let plan = publisher_plan(i, options, share, epoch, start, start + PUBLISH_LIMIT);
                s.spawn(move || worker::publish(client, &plan, stop))
            })
            .collect();
        handles.into_iter().map(|h| join(h, "publisher", clients)).collect()
    });
    let enqueued = local.usage()?;
    close_all(clients);
    let mut errors = FirstError::default();
    let pubs: Vec<PublisherStats> =
        pub_results.into_iter().filter_map(|r| errors.take(r)).collect();
    let sent_by: Vec<u64> = pubs.iter().map(|p| p.sent).collect();
    let sent: u64 = sent_by.iter().sum();
    let acked: u64 = pubs.iter().map(|p| p.acked).sum();
    let enqueue_s = pubs
        .iter()
        .filter_map(|p| p.last_ack)
        .max()
        .map_or(f64::NAN, |t| t.duration_since(start).as_secs_f64());
    out.int("messages", total)
        .int("sent", sent)
        .int("acked", acked)
        .int("refused", pubs.iter().map(|p| p.refused).sum())
        .num("enqueue_s", enqueue_s)
        .num("enqueue_per_s", acked as f64 / enqueue_s);
    record_usage(out, "enqueue_", &before, &enqueued, acked);
    local.check_alive()?;
    errors.into_result()?;
    if acked != total {
        return Err(Error::new(format!("only {acked} of {total} messages were PUBACKed")));
    }

    if phase == Phase::Kill9 {
        let killed = Instant::now();
        local.kill9()?;
        local.restart()?;
        out.num("local_restart_s", killed.elapsed().as_secs_f64());
        // A restarted bridge tries the upstream at once, then every `RETRY_S`: let that first
        // attempt fail, or it could race the upstream's subscriber (as it did in a trial run).
        thread::sleep(NOTICE);
    }
    let restarted = local.usage()?;

    // The upstream comes back; its subscriber is subscribed before the bridge can reconnect.
    let upstream_start = Instant::now();
    let control = SubscriberControl::new(REPLAY_QUIET, upstream_start + DRAIN_LIMIT);
    control.expected.store(acked, Ordering::Release);
    let (sub, subscribed_ms) = match upstream {
        UpstreamProcess::Mosquitto(p) => {
            let log_from = p.log_len();
            p.restart()?;
            let sub = connect_subscriber(p, options)?;
            let subscribed_ms = upstream_start.elapsed().as_secs_f64() * 1000.0;
            let (result, sub) = worker::subscribe(sub, &subscriber_plan(epoch), &control);
            sub.close();
            check_subscribed_first(&p.log_text(), log_from)?;
            (result?, subscribed_ms)
        }
        UpstreamProcess::Sink(_) => {
            upstream.restart()?;
            let subscribed_ms = upstream_start.elapsed().as_secs_f64() * 1000.0;
            let UpstreamProcess::Sink(sink) = upstream else {
                return Err(Error::new("upstream changed kind"));
            };
            (sink.wait(&control), subscribed_ms)
        }
    };
    let after = local.usage()?;
    let delivered = sub.unique();
    let lost: u64 = sub.trackers.iter().zip(&sent_by).map(|(t, &n)| t.missing(n)).sum();
    let since = |t: Option<Instant>| {
        t.map_or(f64::NAN, |t| t.saturating_duration_since(upstream_start).as_secs_f64())
    };
    let first_s = since(sub.first_receive);
    let replay_s = since(sub.last_receive);
    out.num("subscribed_ms", subscribed_ms)
        .int("delivered", delivered)
        .int("lost", lost)
        .int("duplicates", sub.duplicates())
        .int("reordered", sub.reordered())
        .int("foreign_payloads", sub.unknown_payloads)
        .num("first_message_s", first_s)
        .num("replay_s", replay_s)
        .num("drain_s", replay_s - first_s)
        .num("drain_per_s", delivered as f64 / (replay_s - first_s))
        .str("subscriber_ended_by", sub.ended_by);
    record_usage(out, "replay_", &restarted, &after, delivered);
    out.int("peak_rss_kb", after.hwm_kb);
    Ok(())
}

/// In the upstream's log from `from` on: the subscriber's SUBSCRIBE came before the bridge's
/// connection. Mosquitto logs `New client connected from ... as ID (...)` and, with
/// `log_type subscribe`, `ID QOS FILTER`.
fn check_subscribed_first(log: &str, from: usize) -> Result<(), Error> {
    let log = log.get(from..).unwrap_or("");
    let subscribed = log.find(&format!("{SUBSCRIBER_ID} 1 {FILTER}"));
    let bridge = log.find(&format!(" as {BRIDGE_CLIENT_ID} ("));
    match (subscribed, bridge) {
        (Some(s), Some(b)) if b < s => Err(Error::new(
            "the bridge reached the restarted upstream before its subscriber had subscribed: \
             messages may have had nobody to go to upstream (rerun)",
        )),
        (None, _) => Err(Error::new("no subscribe line in the upstream's log")),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscriber_must_come_first() {
        let sub = "1: New client connected from 127.0.0.1:5 as bench-upstream-sub (p2, c1, k60).\n\
                   1: bench-upstream-sub 1 bench/bridge/+\n";
        let bridge = "1: New client connected from 127.0.0.1:6 as bench-bridge (p4, c0, k60).\n";
        assert!(check_subscribed_first(&format!("{sub}{bridge}"), 0).is_ok());
        assert!(check_subscribed_first(sub, 0).is_ok());
        assert!(check_subscribed_first(&format!("{bridge}{sub}"), 0).is_err());
        // Only what follows `from` counts: an earlier life of the upstream is ignored.
        let earlier = format!("{bridge}{sub}");
        assert!(check_subscribed_first(&format!("{earlier}{sub}{bridge}"), earlier.len()).is_ok());
        assert!(check_subscribed_first(bridge, 0).is_err());
    }
}
