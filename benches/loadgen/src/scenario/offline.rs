//! Offline enqueue and drain of one persistent session.
//!
//! 1. The subscriber connects with a persistent session (3.1.1: clean session 0; 5.0: clean
//!    start 0 and Session Expiry Interval 1 h), subscribes at QoS 1 and disconnects.
//! 2. 8 publishers send `offline_messages` QoS 1 messages in total (`window` in flight each);
//!    the enqueue rate is messages / time until the last PUBACK; every message's
//!    acknowledgement latency (PUBLISH written -> PUBACK read) gives `ack_p50_us`, `ack_p99_us`.
//! 3. The subscriber reconnects (expects session present) and drains; every message is
//!    checked per publisher by sequence number: none missing, no duplicates, in order.
//! 4. edgemq only: it is stopped with SIGTERM and the `store totals: C commits, S log syncs,
//!    M messages written` line it logs (at info level) on a graceful stop gives the commits and
//!    write-ahead-log syncs of the whole run (`messages_per_sync`, `syncs_per_s` over enqueue +
//!    drain). A missing line is recorded as `"store_totals": "missing"`, not as a failure.
//!
//! edgemq runs with the scenario's durability (run.sh: "sync" and "batch") and at least
//! `--log-level info`; Mosquitto with `persistence true` (which writes its snapshot only at
//! shutdown or autosave, so it is an in-memory queue here) and `max_queued_messages 100000`.

use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use edgemq::codec::QoS;

use super::worker::{self, PublisherPlan, SubscriberControl, SubscriberPlan};
use super::{close_all, join, percentile_us, record_start_rss, record_usage, FirstError, Options};
use crate::broker::{BrokerProcess, Kind, Settings, Stopped};
use crate::client::{Client, ConnectOptions};
use crate::json::Object;
use crate::Error;

const PUBLISHERS: usize = 8;
const FILTER: &str = "bench/offline/+";
/// Bounds on each phase.
const ENQUEUE_LIMIT: Duration = Duration::from_secs(120);
const DRAIN_LIMIT: Duration = Duration::from_secs(120);
const QUIET: Duration = Duration::from_secs(5);
/// How long edgemq may take to exit after SIGTERM.
const STOP_LIMIT: Duration = Duration::from_secs(10);

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
    // The store totals are logged at info level.
    let mut launcher = options.launcher.clone();
    if matches!(launcher.log_level.as_str(), "off" | "error" | "warn") {
        launcher.log_level = "info".to_string();
    }
    let mut broker = BrokerProcess::start(&launcher, &settings, "offline")?;
    let addr = broker.addr;
    record_start_rss(out, &broker)?;
    let total = options.offline_messages;
    out.int("messages", total)
        .int("publishers", PUBLISHERS as u64)
        .int("window", options.window as u64);

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
    let fs_before = options.fs_status.as_deref().map(FsSyncs::read).transpose()?;
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
                    record_ack_latency: true,
                    random_topics: None,
                };
                s.spawn(move || worker::publish(client, &plan, stop))
            })
            .collect();
        handles.into_iter().map(|h| join(h, "publisher", clients)).collect()
    });
    let enqueued = broker.usage()?;
    if let (Some(path), Some(before)) = (options.fs_status.as_deref(), fs_before) {
        // Every fsync the file system saw while the publishers ran (log, database, directory).
        let after = FsSyncs::read(path)?;
        out.int("enqueue_fs_fsyncs", after.fsyncs.saturating_sub(before.fsyncs))
            .int("enqueue_fs_fsyncdirs", after.fsyncdirs.saturating_sub(before.fsyncdirs));
    }
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
    // Acknowledgement latency: PUBLISH written -> PUBACK read, every message of every
    // publisher (edgemq `sync`: includes waiting for the fsync'd commit).
    let mut ack_ns: Vec<u64> =
        pubs.iter().flat_map(|p| p.ack_latencies_ns.iter().copied()).collect();
    ack_ns.sort_unstable();
    out.num("ack_p50_us", percentile_us(&ack_ns, 0.50))
        .num("ack_p99_us", percentile_us(&ack_ns, 0.99))
        .num("ack_p999_us", percentile_us(&ack_ns, 0.999))
        .num("ack_max_us", percentile_us(&ack_ns, 1.0));
    out.int("sent", sent)
        .int("acked", acked)
        .int("refused", pubs.iter().map(|p| p.refused).sum())
        .num("enqueue_s", enqueue_s)
        .num("enqueue_per_s", acked as f64 / enqueue_s)
        .int("data_dir_kb", dir_size(broker.data_dir()) / 1024);
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
    let mut drain_s = f64::NAN;
    if let Some(sub) = &sub {
        let missing: u64 = sub.trackers.iter().zip(&sent_by).map(|(t, &n)| t.missing(n)).sum();
        drain_s = sub.last_receive.map_or(f64::NAN, |t| t.duration_since(reconnect).as_secs_f64());
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
    if options.launcher.kind == Kind::Edgemq {
        stop_and_read_totals(&mut broker, enqueue_s + drain_s, out)?;
    }
    Ok(())
}

/// Stops edgemq with SIGTERM and records its store totals; `busy_s` is enqueue + drain time.
fn stop_and_read_totals(
    broker: &mut BrokerProcess,
    busy_s: f64,
    out: &mut Object,
) -> Result<(), Error> {
    match broker.stop_with_sigterm(STOP_LIMIT)? {
        Stopped::Exited { status, after } => {
            out.str("sigterm_exit", &status.to_string())
                .num("sigterm_exit_ms", after.as_secs_f64() * 1000.0);
        }
        Stopped::TimedOut => {
            out.str("sigterm_exit", &format!("still running after {STOP_LIMIT:?}"));
        }
    }
    match StoreTotals::find(&broker.log_text()) {
        Some(t) => {
            out.str("store_totals", "found")
                .int("commits", t.commits)
                .int("log_syncs", t.log_syncs)
                .int("messages_written", t.messages);
            // `batch` may not sync the log at all: 0 syncs/s, no messages per sync.
            out.num("syncs_per_s", t.log_syncs as f64 / busy_s);
            if t.log_syncs > 0 {
                out.num("messages_per_sync", t.messages as f64 / t.log_syncs as f64);
            }
        }
        None => {
            out.str("store_totals", "missing");
        }
    }
    Ok(())
}

/// The line edgemq logs when it stops gracefully:
/// `store totals: 812 commits, 738 log syncs, 50000 messages written` ("log syncs" are
/// fsyncs of SQLite's write-ahead log), after the logger's own prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct StoreTotals {
    commits: u64,
    log_syncs: u64,
    messages: u64,
}

impl StoreTotals {
    /// The last well-formed totals line in `log`.
    fn find(log: &str) -> Option<StoreTotals> {
        log.lines().rev().find_map(StoreTotals::parse_line)
    }

    fn parse_line(line: &str) -> Option<StoreTotals> {
        let (_, rest) = line.split_once("store totals: ")?;
        let mut parts = rest.trim_end().split(", ");
        let mut count =
            |suffix: &str| -> Option<u64> { parts.next()?.strip_suffix(suffix)?.parse().ok() };
        let totals = StoreTotals {
            commits: count(" commits")?,
            log_syncs: count(" log syncs")?,
            messages: count(" messages written")?,
        };
        parts.next().is_none().then_some(totals)
    }
}

/// fsync counters of a file system that reports them (tests/powercut/lossyfs.py's control
/// file: `fsyncs=N fsyncdirs=N writes=N ...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FsSyncs {
    fsyncs: u64,
    fsyncdirs: u64,
}

impl FsSyncs {
    fn read(path: &Path) -> Result<FsSyncs, Error> {
        let text = fs::read_to_string(path)?;
        FsSyncs::parse(&text)
            .ok_or_else(|| Error::new(format!("{}: no fsync counters in {text:?}", path.display())))
    }

    fn parse(text: &str) -> Option<FsSyncs> {
        let value = |key: &str| {
            text.split_whitespace()
                .find_map(|word| word.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
        };
        Some(FsSyncs { fsyncs: value("fsyncs")?, fsyncdirs: value("fsyncdirs")? })
    }
}

/// Bytes of the files directly in `dir` (the store is flat).
pub(super) fn dir_size(dir: &Path) -> u64 {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fs_syncs_counters() {
        assert_eq!(
            FsSyncs::parse("fsyncs=12 fsyncdirs=3 writes=40 written_bytes=9000 cut=0\n"),
            Some(FsSyncs { fsyncs: 12, fsyncdirs: 3 })
        );
        assert_eq!(FsSyncs::parse("writes=40"), None);
    }

    #[test]
    fn store_totals_line() {
        // env_logger's prefix (timestamp, level, target), then the message.
        let log = "\
[2025-01-01T10:00:00.000Z INFO  edgemq] listening on 127.0.0.1:41234
[2025-01-01T10:00:07.120Z INFO  edgemq::net] signal 15 received: stopping
[2025-01-01T10:00:07.130Z INFO  edgemq::store] store totals: 812 commits, 738 log syncs, 50000 messages written
[2025-01-01T10:00:07.131Z INFO  edgemq] stopped
";
        assert_eq!(
            StoreTotals::find(log),
            Some(StoreTotals { commits: 812, log_syncs: 738, messages: 50_000 })
        );
        // The bare message, and a line with trailing whitespace.
        assert_eq!(
            StoreTotals::parse_line("store totals: 0 commits, 0 log syncs, 0 messages written \r"),
            Some(StoreTotals { commits: 0, log_syncs: 0, messages: 0 })
        );
    }

    #[test]
    fn store_totals_missing_or_malformed() {
        assert_eq!(StoreTotals::find(""), None);
        assert_eq!(StoreTotals::find("[.. INFO  edgemq] stopped\n"), None);
        for line in [
            "store totals: 812 commits, 738 log syncs",
            "store totals: 812 commits, 738 syncs, 50000 messages written",
            "store totals: -1 commits, 738 log syncs, 50000 messages written",
            "store totals: 812 commits, 738 log syncs, 50000 messages written, 3 more",
            "store totals: 8.5 commits, 738 log syncs, 50000 messages written",
        ] {
            assert_eq!(StoreTotals::parse_line(line), None, "{line}");
        }
    }
}
