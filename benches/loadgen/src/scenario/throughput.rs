//! Fan-in (4 publishers -> 1 subscriber) and fan-out (1 publisher -> 8 subscribers), and
//! `fanin_shared_q1`: fan-in QoS 1 to one subscriber and, beside it, a shared subscription
//! group of 4 members (`$share/bench/...`) that must get every message exactly once between
//! them; `fanout_alias_q0`: fan-out QoS 0 over MQTT 5.0 where 4 of the 8 subscribers announce
//! a Topic Alias Maximum, to measure the bytes the broker's topic aliases save per delivery
//! (and what they cost, in CPU per message against `fanout_q0`). And
//! `stuck`: fan-in QoS 1 with one more subscriber on the same filter that subscribes at QoS 1
//! and then never reads its socket nor acknowledges anything (a hung dashboard). A broker that
//! lets it hold the publishers stalls them (an error after `worker::STALL`); the numbers that
//! matter are the publishers' rate, the healthy subscriber's latency (recorded from the first
//! message: a pause shows up) and that it loses nothing.
//!
//! Publishers send 64-byte payloads as fast as the broker takes them for `duration` (QoS 0:
//! batches of 32 per write, TCP back-pressure is the only brake; QoS 1/2: `window` messages
//! in flight each). Subscribers count every message per publisher by sequence number, so
//! lost, duplicated and reordered messages are exact. The rate is unique deliveries / (last
//! delivery - first send), so a backlog drained after the publishers stopped counts, at the
//! time it took.
//!
//! Per-session queues and caps: edgemq runs with `--edgemq-queue` (run.sh: its shipped 1000)
//! and pauses publishers at that limit instead of dropping. Mosquitto runs in one of two
//! set-ups (`MosquittoVariant`): with its shipped limits, where it drops what does not fit its
//! queue and the drops are counted as `lost`; or "no-drop", with `max_queued_messages` =
//! `--queue` (1,000,000, edgemq's maximum) and edgemq's outbound window, where QoS 1/2
//! publishers together send at most `--queue` messages, so the subscriber's queue is never a
//! configured drop point. Everywhere else publishers publish for the whole duration
//! (`MAX_UNCAPPED_PER_PUBLISHER` is only a safety bound).
//!
//! `fanin_q1_ws` is fan-in QoS 1 with every client over WebSockets (both brokers get a
//! WebSocket listener beside their TCP one), to compare with `fanin_q1` over TCP.

use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use edgemq::codec::{ProtocolVersion, QoS};

use super::worker::{self, PublisherPlan, SubscriberControl, SubscriberPlan};
use super::{
    close_all, join, percentile_us, record_start_rss, record_usage, FirstError, MosquittoVariant,
    Options,
};
use crate::broker::{
    BrokerProcess, Kind, Settings, MOSQUITTO_SHIPPED_INFLIGHT, MOSQUITTO_SHIPPED_QUEUE,
};
use crate::client::{Client, ConnectOptions};
use crate::json::Object;
use crate::Error;

/// Bounds the message count of a publisher that is not capped at the queue (all but QoS 1/2
/// against Mosquitto no-drop) whatever the duration.
const MAX_UNCAPPED_PER_PUBLISHER: u64 = 5_000_000;
/// Once the publishers are done, a subscriber that hears nothing for this long gives up.
const QUIET: Duration = Duration::from_secs(2);
/// Subscribers stop at `end + DRAIN_LIMIT` whatever happens.
const DRAIN_LIMIT: Duration = Duration::from_secs(20);

/// Who takes part in a throughput scenario.
#[derive(Debug, Clone, Copy, Default)]
pub struct Shape {
    pub publishers: usize,
    /// Plain subscribers on the fan filter.
    pub subscribers: usize,
    /// Subscribers that never read (see `stuck`).
    pub stuck_subscribers: usize,
    /// Members of one shared subscription group on the same filter.
    pub group: usize,
    /// How many of `subscribers` announce a Topic Alias Maximum; when non-zero every client
    /// speaks MQTT 5.0.
    pub alias_subscribers: usize,
    /// Every client speaks MQTT over WebSockets (the broker gets a `ws` listener).
    pub websocket: bool,
}

/// Topic Alias Maximum the alias subscribers announce.
const ALIAS_MAXIMUM: u16 = 16;

pub fn run(options: &Options, shape: Shape, qos: QoS, out: &mut Object) -> Result<(), Error> {
    let Shape { publishers, subscribers, stuck_subscribers, group, alias_subscribers, websocket } =
        shape;
    let version = if alias_subscribers > 0 { ProtocolVersion::V5 } else { options.version };
    // Against Mosquitto's defaults no limit is written: its queue limit shows up as `lost`.
    let mosquitto_defaults = options.launcher.kind == Kind::Mosquitto
        && options.mosquitto_variant == MosquittoVariant::Defaults;
    // Only Mosquitto no-drop needs its publishers capped at its queue: edgemq applies
    // back-pressure at its limit, Mosquitto defaults drops by design.
    let capped = options.launcher.kind == Kind::Mosquitto
        && options.mosquitto_variant == MosquittoVariant::NoDrop;
    let settings = Settings {
        max_connections: (publishers + subscribers + stuck_subscribers + 100).max(1024),
        max_inflight: options.broker_inflight,
        max_queued_messages: options.edgemq_queue.unwrap_or(options.queue),
        durability: options.durability,
        mosquitto_inflight: (!mosquitto_defaults).then_some(options.broker_inflight),
        mosquitto_queue: (!mosquitto_defaults).then_some(options.queue),
        persistence: false,
        bridge: None,
        upstream: false,
        websocket,
        ..Settings::default()
    };
    // The limits the broker under test actually runs with.
    let (inflight, queue) = match options.launcher.kind {
        Kind::Edgemq => (settings.max_inflight, settings.max_queued_messages),
        Kind::Mosquitto if mosquitto_defaults => {
            (MOSQUITTO_SHIPPED_INFLIGHT, MOSQUITTO_SHIPPED_QUEUE)
        }
        Kind::Mosquitto => (options.broker_inflight, options.queue),
    };
    let dir = if stuck_subscribers > 0 { "stuck" } else { "fan" };
    let mut broker = BrokerProcess::start(&options.launcher, &settings, dir)?;
    let addr = if websocket {
        broker.ws_addr.ok_or_else(|| Error::new("no WebSocket listener"))?
    } else {
        broker.addr
    };
    let connect_options =
        |id: String| ConnectOptions { websocket, ..ConnectOptions::new(id, version) };
    record_start_rss(out, &broker)?;
    let filter = "bench/fan/+";
    out.int("publishers", publishers as u64)
        .int("group_members", group as u64)
        .int("alias_subscribers", alias_subscribers as u64)
        .int("subscribers", subscribers as u64)
        .int("stuck_subscribers", stuck_subscribers as u64)
        .int("qos", u64::from(qos.bits()))
        .int("payload_bytes", crate::payload::PAYLOAD_LEN as u64)
        .str("transport", if websocket { "websocket" } else { "tcp" });

    let mut sub_clients = Vec::with_capacity(subscribers + group);
    for i in 0..subscribers {
        let mut connect = connect_options(format!("sub-{i}"));
        if i < alias_subscribers {
            connect.topic_alias_maximum = Some(ALIAS_MAXIMUM);
        }
        let (mut client, _) = Client::connect(addr, &connect)?;
        client.subscribe(filter, qos)?;
        sub_clients.push(client);
    }
    // The group's members come after the plain subscribers (their results are split below).
    for i in 0..group {
        let (mut client, _) = Client::connect(addr, &connect_options(format!("member-{i}")))?;
        client.subscribe(&format!("$share/bench/{filter}"), qos)?;
        sub_clients.push(client);
    }
    // Subscribed, then never read until the end: the broker sees a client that stopped.
    let mut stuck_clients = Vec::with_capacity(stuck_subscribers);
    for i in 0..stuck_subscribers {
        let (mut client, _) = Client::connect(addr, &connect_options(format!("stuck-{i}")))?;
        client.subscribe(filter, qos)?;
        stuck_clients.push(client);
    }
    let mut pub_clients = Vec::with_capacity(publishers);
    for i in 0..publishers {
        let (client, _) = Client::connect(addr, &connect_options(format!("pub-{i}")))?;
        pub_clients.push(client);
    }

    let max_messages = match qos {
        QoS::AtLeastOnce | QoS::ExactlyOnce if capped => (options.queue / publishers) as u64,
        QoS::AtMostOnce | QoS::AtLeastOnce | QoS::ExactlyOnce => MAX_UNCAPPED_PER_PUBLISHER,
    };
    out.int("max_per_publisher", max_messages)
        .int("broker_inflight", u64::from(inflight))
        .int("broker_queue", queue as u64);
    let epoch = Instant::now();
    let start = epoch + Duration::from_millis(50);
    let end = start + options.duration;
    let control = SubscriberControl::new(QUIET, end + DRAIN_LIMIT);
    let stop = AtomicBool::new(false);
    let before = broker.usage()?;

    let mut clients = Vec::with_capacity(publishers + subscribers + group);
    let (pub_results, sub_results) = thread::scope(|s| {
        let clients = &mut clients;
        let control = &control;
        let stop = &stop;
        let sub_handles: Vec<_> = sub_clients
            .into_iter()
            .enumerate()
            .map(|(i, client)| {
                let plan = SubscriberPlan {
                    publishers,
                    epoch,
                    // Beside a stuck subscriber the latency is the point, pauses included.
                    latency_from_seq: (stuck_subscribers > 0).then_some(0),
                    label: format!("subscriber {i}"),
                };
                s.spawn(move || worker::subscribe(client, &plan, control))
            })
            .collect();
        let pub_handles: Vec<_> = pub_clients
            .into_iter()
            .enumerate()
            .map(|(i, client)| {
                let plan = PublisherPlan {
                    id: i as u32,
                    topic: format!("bench/fan/p{i}"),
                    qos,
                    window: options.window,
                    max_messages,
                    start,
                    end,
                    interval: None,
                    epoch,
                    record_ack_latency: false,
                    random_topics: None,
                };
                s.spawn(move || worker::publish(client, &plan, stop))
            })
            .collect();
        let pub_results: Vec<_> =
            pub_handles.into_iter().map(|h| join(h, "publisher", clients)).collect();
        // Publishers that failed still sent what they counted; subscribers expect exactly that.
        let sent: u64 = pub_results.iter().filter_map(|r| r.as_ref().ok()).map(|p| p.sent).sum();
        control.expected.store(sent, Ordering::Release);
        let sub_results: Vec<_> =
            sub_handles.into_iter().map(|h| join(h, "subscriber", clients)).collect();
        (pub_results, sub_results)
    });
    let after = broker.usage()?;
    close_all(clients);
    close_all(stuck_clients);

    let mut errors = FirstError::default();
    let pubs: Vec<_> = pub_results.into_iter().filter_map(|r| errors.take(r)).collect();
    let mut subs: Vec<_> = sub_results.into_iter().filter_map(|r| errors.take(r)).collect();
    let members = subs.split_off(subs.len().min(subscribers));
    let sent_by: Vec<u64> = pubs.iter().map(|p| p.sent).collect();
    if group > 0 {
        record_group(out, &members, &sent_by, start);
    }
    if alias_subscribers > 0 {
        let per_delivery = |subs: &[worker::SubscriberStats]| {
            let bytes: u64 = subs.iter().map(|s| s.bytes).sum();
            let received: u64 = subs.iter().map(|s| s.received).sum();
            bytes as f64 / received.max(1) as f64
        };
        let split = alias_subscribers.min(subs.len());
        let (aliased, plain) = subs.split_at(split);
        let (with, without) = (per_delivery(aliased), per_delivery(plain));
        out.num("alias_bytes_per_msg", with)
            .num("plain_bytes_per_msg", without)
            .num("alias_bytes_saved_pct", 100.0 * (without - with) / without);
    }
    let published: u64 = sent_by.iter().sum();
    let delivered: u64 = subs.iter().map(|s| s.unique()).sum();
    let lost: u64 = subs
        .iter()
        .map(|s| s.trackers.iter().zip(&sent_by).map(|(t, &sent)| t.missing(sent)).sum::<u64>())
        .sum();
    let first_receive = subs.iter().filter_map(|s| s.first_receive).min();
    let last_receive = subs.iter().filter_map(|s| s.last_receive).max();
    let last_send = pubs.iter().filter_map(|p| p.last_send).max();
    let elapsed = last_receive.map_or(f64::NAN, |t| t.duration_since(start).as_secs_f64());
    let publish_s = last_send.map_or(f64::NAN, |t| t.duration_since(start).as_secs_f64());
    let mut ended: Vec<&str> = subs.iter().map(|s| s.ended_by).collect();
    ended.dedup();
    if stuck_subscribers > 0 {
        let mut latencies: Vec<u64> =
            subs.iter().flat_map(|s| s.latencies_ns.iter().copied()).collect();
        latencies.sort_unstable();
        out.num("p50_us", percentile_us(&latencies, 0.50))
            .num("p99_us", percentile_us(&latencies, 0.99))
            .num("p999_us", percentile_us(&latencies, 0.999))
            .num("max_us", percentile_us(&latencies, 1.0));
    }

    out.int("published", published)
        .int("expected", published * subscribers as u64)
        .int("delivered", delivered)
        .int("lost", lost)
        .int("duplicates", subs.iter().map(|s| s.duplicates()).sum())
        .int("reordered", subs.iter().map(|s| s.reordered()).sum())
        .int("refused", pubs.iter().map(|p| p.refused).sum())
        .int("foreign_payloads", subs.iter().map(|s| s.unknown_payloads).sum())
        .num("publish_s", publish_s)
        .num(
            "first_delivery_s",
            first_receive.map_or(f64::NAN, |t| t.saturating_duration_since(start).as_secs_f64()),
        )
        .num("elapsed_s", elapsed)
        .num("offered_per_s", published as f64 / publish_s)
        .num("msg_per_s", delivered as f64 / elapsed)
        .num(
            "max_gap_ms",
            subs.iter().map(|s| s.max_gap).max().unwrap_or_default().as_secs_f64() * 1000.0,
        )
        .str("subscribers_ended_by", &ended.join(","));
    record_usage(out, "", &before, &after, delivered);
    out.int("peak_rss_kb", after.hwm_kb).int("broker_log_lines", broker.log_lines());
    broker.check_alive()?;
    errors.into_result()
}

/// The shared group's outcome: every message once between the members (`group_lost`,
/// `group_duplicates` must be 0), their rate, and how the messages were spread.
fn record_group(
    out: &mut Object,
    members: &[worker::SubscriberStats],
    sent_by: &[u64],
    start: Instant,
) {
    let mut union: Vec<crate::payload::SeqTracker> = vec![Default::default(); sent_by.len()];
    for member in members {
        for (all, mine) in union.iter_mut().zip(&member.trackers) {
            all.merge(mine);
        }
    }
    let delivered: u64 = union.iter().map(|t| t.unique).sum();
    let lost: u64 = union.iter().zip(sent_by).map(|(t, &sent)| t.missing(sent)).sum();
    let last = members.iter().filter_map(|m| m.last_receive).max();
    let elapsed = last.map_or(f64::NAN, |t| t.duration_since(start).as_secs_f64());
    let split: Vec<String> = members.iter().map(|m| m.unique().to_string()).collect();
    out.int("group_delivered", delivered)
        .int("group_lost", lost)
        .int("group_duplicates", union.iter().map(|t| t.duplicates).sum())
        .num("group_msg_per_s", delivered as f64 / elapsed)
        .str("group_split", &split.join(","));
}
