//! Offline enqueue and drain of one persistent session.
//!
//! 1. The subscriber connects with a persistent session (3.1.1: clean session 0; 5.0: clean
//!    start 0 and Session Expiry Interval 1 h), subscribes at QoS 1 and disconnects.
//! 2. 8 publishers send `offline_messages` QoS 1 messages in total (`window` in flight each);
//!    the enqueue rate is messages / time until the last PUBACK.
//! 3. The subscriber reconnects (expects session present) and drains; every message is
//!    checked per publisher by sequence number: none missing, no duplicates, in order.
//!
//! edgemq runs with the scenario's durability (run.sh: "sync" and "batch"); Mosquitto with
//! `persistence true` (which writes its snapshot only at shutdown or autosave, so it is an
//! in-memory queue here) and `max_queued_messages 100000`.

use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use edgemq::codec::QoS;

use super::worker::{self, PublisherPlan, SubscriberControl, SubscriberPlan};
use super::{close_all, join, record_start_rss, record_usage, FirstError, Options};
use crate::broker::{BrokerProcess, Settings};
use crate::client::{Client, ConnectOptions};
use crate::json::Object;
use crate::Error;

const PUBLISHERS: usize = 8;
const FILTER: &str = "bench/offline/+";
/// Bounds on each phase.
const ENQUEUE_LIMIT: Duration = Duration::from_secs(120);
const DRAIN_LIMIT: Duration = Duration::from_secs(120);
const QUIET: Duration = Duration::from_secs(5);

fn subscriber_options(options: &Options) -> ConnectOptions {
    let mut connect = ConnectOptions::new("offline-sub", options.version);
    connect.clean_start = false;
    connect.session_expiry = Some(3600);
    connect
}

pub fn run(options: &Options, out: &mut Object) -> Result<(), Error> {
    let settings = Settings {
        max_queued_messages: 100_000,
        max_inflight: options.broker_inflight,
        durability: options.durability,
        mosquitto_inflight: Some(options.broker_inflight),
        mosquitto_queue: Some(100_000),
        persistence: true,
        ..Settings::default()
    };
    let mut broker = BrokerProcess::start(&options.launcher, &settings, "offline")?;
    let addr = broker.addr;
    record_start_rss(out, &broker)?;
    let total = options.offline_messages;
    out.int("messages", total).int("publishers", PUBLISHERS as u64);

    // 1. Persistent session with a QoS 1 subscription, then offline.
    let (mut sub, _) = Client::connect(addr, &subscriber_options(options))?;
    sub.subscribe(FILTER, QoS::AtLeastOnce)?;
    sub.disconnect()?;

    // 2. Enqueue.
    let mut pub_clients = Vec::with_capacity(PUBLISHERS);
    for i in 0..PUBLISHERS {
        let (client, _) = Client::connect(
            addr,
            &ConnectOptions::new(format!("offline-pub-{i}"), options.version),
        )?;
        pub_clients.push(client);
    }
    let epoch = Instant::now();
    let start = epoch + Duration::from_millis(50);
    let stop = AtomicBool::new(false);
    let before = broker.usage()?;
    let mut clients = Vec::with_capacity(PUBLISHERS + 1);
    let pub_results: Vec<_> = thread::scope(|s| {
        let stop = &stop;
        let clients = &mut clients;
        let handles: Vec<_> = pub_clients
            .into_iter()
            .enumerate()
            .map(|(i, client)| {
                // Spread the remainder over the first publishers.
                let share =
                    total / PUBLISHERS as u64 + u64::from((i as u64) < total % PUBLISHERS as u64);
                let plan = PublisherPlan {
                    id: i as u32,
                    topic: format!("bench/offline/p{i}"),
                    qos: QoS::AtLeastOnce,
                    window: options.window,
                    max_messages: share,
                    start,
                    end: start + ENQUEUE_LIMIT,
                    interval: None,
                    epoch,
                };
                s.spawn(move || worker::publish(client, &plan, stop))
            })
            .collect();
        handles.into_iter().map(|h| join(h, "publisher", clients)).collect()
    });
    let enqueued = broker.usage()?;
    close_all(std::mem::take(&mut clients));
    let mut errors = FirstError::default();
    let pubs: Vec<_> = pub_results.into_iter().filter_map(|r| errors.take(r)).collect();
    let sent_by: Vec<u64> = pubs.iter().map(|p| p.sent).collect();
    let sent: u64 = sent_by.iter().sum();
    let acked: u64 = pubs.iter().map(|p| p.acked).sum();
    let enqueue_s = pubs
        .iter()
        .filter_map(|p| p.last_ack)
        .max()
        .map_or(f64::NAN, |t| t.duration_since(start).as_secs_f64());
    out.int("sent", sent)
        .int("acked", acked)
        .int("refused", pubs.iter().map(|p| p.refused).sum())
        .num("enqueue_s", enqueue_s)
        .num("enqueue_per_s", acked as f64 / enqueue_s)
        .int("data_dir_kb", dir_size(&broker.dir().join("data")) / 1024);
    record_usage(out, "enqueue_", &before, &enqueued, acked);
    broker.check_alive()?;
    if let Some(e) = errors.0.take() {
        return Err(e);
    }
    if sent != total {
        return Err(Error::new(format!("only {sent} of {total} messages were sent")));
    }

    // 3. Reconnect and drain.
    let reconnect = Instant::now();
    let (sub, connack) = Client::connect(addr, &subscriber_options(options))?;
    out.bool("session_present", connack.session_present);
    let control = SubscriberControl::new(QUIET, reconnect + DRAIN_LIMIT);
    control.expected.store(sent, Ordering::Release);
    let plan = SubscriberPlan {
        publishers: PUBLISHERS,
        epoch,
        latency_from_seq: None,
        label: "offline subscriber".to_string(),
    };
    let (drained, sub) = worker::subscribe(sub, &plan, &control);
    let after = broker.usage()?;
    sub.close();
    let sub = errors.take(drained);
    if let Some(sub) = &sub {
        let missing: u64 = sub.trackers.iter().zip(&sent_by).map(|(t, &n)| t.missing(n)).sum();
        let drain_s =
            sub.last_receive.map_or(f64::NAN, |t| t.duration_since(reconnect).as_secs_f64());
        let first_ms = sub
            .first_receive
            .map_or(f64::NAN, |t| t.duration_since(reconnect).as_secs_f64() * 1000.0);
        out.int("drained", sub.unique())
            .int("missing", missing)
            .int("duplicates", sub.duplicates())
            .int("reordered", sub.reordered())
            .bool("in_order", sub.reordered() == 0 && sub.duplicates() == 0)
            .num("first_message_ms", first_ms)
            .num("drain_s", drain_s)
            .num("drain_per_s", sub.unique() as f64 / drain_s)
            .str("subscriber_ended_by", sub.ended_by);
        record_usage(out, "drain_", &enqueued, &after, sub.unique());
    }
    out.int("peak_rss_kb", after.hwm_kb).int("broker_log_lines", broker.log_lines());
    broker.check_alive()?;
    errors.into_result()?;
    if !connack.session_present {
        return Err(Error::new("session not present on reconnect"));
    }
    Ok(())
}

/// Bytes of the files directly in `dir` (the store is flat).
fn dir_size(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}
