//! End-to-end latency at a fixed rate (default 1,000 msg/s), 1 publisher -> 1 subscriber.
//!
//! Message `n` is due at `start + n / rate` and carries that *intended* time; the subscriber
//! measures receive time minus intended time. A publisher that falls behind (scheduler, a
//! full QoS 1 window) therefore shows up as latency instead of silently sending less — no
//! coordinated omission. The first half second is warm-up and not counted. The numbers
//! include the load generator's own wake-up delay (`thread::sleep`, typically 50-100 µs on
//! an idle core), the same for both brokers.

use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use edgemq::codec::QoS;

use super::worker::{self, PublisherPlan, SubscriberControl, SubscriberPlan};
use super::{close_all, join, percentile_us, record_start_rss, record_usage, FirstError, Options};
use crate::broker::{BrokerProcess, Settings};
use crate::client::{Client, ConnectOptions};
use crate::json::Object;
use crate::Error;

const QUIET: Duration = Duration::from_secs(2);
const DRAIN_LIMIT: Duration = Duration::from_secs(10);

pub fn run(options: &Options, qos: QoS, out: &mut Object) -> Result<(), Error> {
    // Mosquitto with its shipped limits: at 1,000 msg/s and one subscriber neither its window
    // nor its queue is reached.
    let settings = Settings {
        max_inflight: options.broker_inflight,
        durability: options.durability,
        ..Settings::default()
    };
    let mut broker = BrokerProcess::start(&options.launcher, &settings, "latency")?;
    let addr = broker.addr;
    record_start_rss(out, &broker)?;
    let rate = options.latency_rate.max(1);
    let interval = Duration::from_secs(1) / rate;
    let messages = (options.latency_duration.as_secs_f64() * f64::from(rate)).ceil() as u64;
    let warmup = u64::from(rate / 2);
    out.int("qos", u64::from(qos.bits()))
        .int("rate_per_s", u64::from(rate))
        .int("warmup_messages", warmup);

    let (mut sub, _) = Client::connect(addr, &ConnectOptions::new("lat-sub", options.version))?;
    sub.subscribe("bench/latency", qos)?;
    let (publisher, _) = Client::connect(addr, &ConnectOptions::new("lat-pub", options.version))?;

    let epoch = Instant::now();
    let start = epoch + Duration::from_millis(50);
    // The message cap ends the run; `end` is only a safety net.
    let end = start + options.latency_duration + Duration::from_secs(1);
    let control = SubscriberControl::new(QUIET, end + DRAIN_LIMIT);
    let stop = AtomicBool::new(false);
    let before = broker.usage()?;

    let mut clients = Vec::with_capacity(2);
    let (pub_result, sub_result) = thread::scope(|s| {
        let clients = &mut clients;
        let control = &control;
        let stop = &stop;
        let plan = SubscriberPlan {
            publishers: 1,
            epoch,
            latency_from_seq: Some(warmup),
            label: "subscriber".to_string(),
        };
        let sub_handle = s.spawn(move || worker::subscribe(sub, &plan, control));
        let plan = PublisherPlan {
            id: 0,
            topic: "bench/latency".to_string(),
            qos,
            window: options.window,
            max_messages: messages,
            start,
            end,
            interval: Some(interval),
            epoch,
            record_ack_latency: false,
            random_topics: None,
        };
        let pub_handle = s.spawn(move || worker::publish(publisher, &plan, stop));
        let pub_result = join(pub_handle, "publisher", clients);
        let sent = pub_result.as_ref().map_or(0, |p| p.sent);
        control.expected.store(sent, Ordering::Release);
        (pub_result, join(sub_handle, "subscriber", clients))
    });
    let after = broker.usage()?;
    close_all(clients);

    let mut errors = FirstError::default();
    let sent = errors.take(pub_result).map_or(0, |p| p.sent);
    if let Some(mut sub) = errors.take(sub_result) {
        sub.latencies_ns.sort_unstable();
        let l = &sub.latencies_ns;
        out.int("sent", sent)
            .int("delivered", sub.unique())
            .int("lost", sub.trackers.first().map_or(sent, |t| t.missing(sent)))
            .int("duplicates", sub.duplicates())
            .int("reordered", sub.reordered())
            .int("samples", l.len() as u64)
            .num("p50_us", percentile_us(l, 0.50))
            .num("p90_us", percentile_us(l, 0.90))
            .num("p99_us", percentile_us(l, 0.99))
            .num("p999_us", percentile_us(l, 0.999))
            .num("max_us", percentile_us(l, 1.0))
            .str("subscriber_ended_by", sub.ended_by);
        record_usage(out, "", &before, &after, sub.unique());
    }
    out.int("peak_rss_kb", after.hwm_kb).int("broker_log_lines", broker.log_lines());
    broker.check_alive()?;
    errors.into_result()
}
