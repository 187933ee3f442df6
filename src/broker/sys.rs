//! `$SYS`: the broker's figures, published every `sys.interval` under Mosquitto's topic names
//! (so existing dashboards work) plus edgemq's own `$SYS/broker/store/...`, and the same
//! figures as one [`Metrics`] value for `/metrics` (`src/net/http/`).
//!
//! Contract: [`FIGURES`] is the one table of what is reported: each figure's `$SYS` topic, its
//! Prometheus name, help text and type, and how to read it from [`Metrics`]; `$SYS` and
//! `/metrics` both walk it, so they cannot drift apart. Publishing goes through the ordinary
//! route path (ACLs on delivery, queues, back-pressure as for any message) at QoS 0 with
//! RETAIN, as Mosquitto does; the retained copies live in memory only (never in the store:
//! they describe this run) and are removed once nobody subscribes to `$SYS`.
//!
//! Cost: with `sys.interval = 0` there is no deadline at all (an idle broker stays at zero
//! wake-ups). Otherwise the loop wakes once per interval and, unless a subscription under
//! `$SYS` exists (one look at the root of the topic tree: `#` and `+` never match `$` topics,
//! MQTT-4.7.2-1), does nothing else — no formatting, no allocation. A new `$SYS` subscription
//! brings the next publication forward (at most once a second), so a dashboard does not wait a
//! whole interval for fresh figures.
//!
//! Reads no clock and no file: the event loop passes `now` and the process figures it sampled
//! ([`Process`]).

use std::rc::Rc;
use std::time::{Duration, Instant};

use super::message::Message;
use super::session::OutboundState;
use super::{Broker, Outbox, BRIDGE_CLIENT_PREFIX};
use crate::codec::{Publish, QoS};

/// The root level every `$SYS` topic starts with.
const SYS_ROOT: &str = "$SYS";
/// A new `$SYS` subscription brings the next publication forward, but not more often.
const EARLY_PUBLISH_GAP: Duration = Duration::from_secs(1);

/// What the event loop knows of the process (read from `/proc` by `net`).
#[derive(Debug, Default, Clone, Copy)]
pub struct Process {
    /// Resident set size in bytes; `None` where `/proc` is not available.
    pub rss_bytes: Option<u64>,
}

/// One bridge's figures.
#[derive(Debug, Clone)]
pub struct BridgeMetrics {
    pub name: String,
    pub connected: bool,
    pub queued: u64,
    pub queued_bytes: u64,
    /// Messages dropped for the bridge's session since the start (queue full, or too large
    /// for the remote).
    pub dropped: u64,
}

/// Every figure at one moment: the broker's counters and sizes, the store's totals and health.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    pub uptime: Duration,
    pub clients_connected: u64,
    pub clients_disconnected: u64,
    pub clients_total: u64,
    pub clients_maximum: u64,
    pub clients_expired: u64,
    pub connections_accepted: u64,
    pub packets_received: u64,
    pub packets_sent: u64,
    pub publish_received: u64,
    pub publish_sent: u64,
    pub publish_dropped: u64,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    /// Topic bytes not sent because a topic alias stood for them (`alias.rs`).
    pub topic_bytes_aliased: u64,
    pub subscriptions: u64,
    pub retained_messages: u64,
    /// Messages held for sessions (store rows, clean sessions' memory queues and inflight).
    pub messages_stored: u64,
    pub messages_stored_bytes: u64,
    /// Bytes queued for all connections and not yet written, after the last loop pass's
    /// writes (`mqtt.tx_buffer_total` bounds its QoS 0 part).
    pub output_bytes: u64,
    pub rss_bytes: Option<u64>,
    pub store_queued: u64,
    pub store_bytes: u64,
    pub store_db_size: u64,
    pub store_ring_used_percent: f64,
    pub store_dropped: u64,
    pub store_evicted: u64,
    pub messages_expired: u64,
    pub store_commits: u64,
    pub store_failed_commits: u64,
    pub store_fsyncs: u64,
    pub store_commit_p99: Duration,
    /// `None` while the store accepts writes; the reason while it refuses them.
    pub store_refusing: Option<String>,
    pub bridges: Vec<BridgeMetrics>,
}

/// Prometheus metric types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// One reported figure.
pub struct Figure {
    /// The topic after `$SYS/broker/`; `None`: `/metrics` only.
    pub topic: Option<&'static str>,
    /// The Prometheus name (`edgemq_...`); `None`: `$SYS` only.
    pub metric: Option<&'static str>,
    pub help: &'static str,
    pub kind: Kind,
    /// The value; `None` when it is unknown (then it is not reported).
    pub value: fn(&Metrics) -> Option<f64>,
}

const fn fig(
    topic: &'static str,
    metric: &'static str,
    help: &'static str,
    kind: Kind,
    value: fn(&Metrics) -> Option<f64>,
) -> Figure {
    Figure { topic: Some(topic), metric: Some(metric), help, kind, value }
}

/// Every figure `$SYS` and `/metrics` report (besides `version`, `uptime`, the load rates and
/// the bridges, which have their own forms). README "Monitoring" lists the same.
pub static FIGURES: &[Figure] = &[
    fig(
        "clients/connected",
        "edgemq_clients_connected",
        "Clients connected now (bridge links included).",
        Kind::Gauge,
        |m| Some(m.clients_connected as f64),
    ),
    fig(
        "clients/disconnected",
        "edgemq_clients_disconnected",
        "Persistent sessions whose client is not connected.",
        Kind::Gauge,
        |m| Some(m.clients_disconnected as f64),
    ),
    fig(
        "clients/total",
        "edgemq_sessions",
        "Sessions held, connected or not (Mosquitto's clients/total).",
        Kind::Gauge,
        |m| Some(m.clients_total as f64),
    ),
    fig(
        "clients/maximum",
        "edgemq_clients_maximum",
        "Most clients connected at once since the start.",
        Kind::Gauge,
        |m| Some(m.clients_maximum as f64),
    ),
    fig(
        "clients/expired",
        "edgemq_clients_expired_total",
        "Sessions removed because their expiry interval passed.",
        Kind::Counter,
        |m| Some(m.clients_expired as f64),
    ),
    Figure {
        topic: None,
        metric: Some("edgemq_connections_accepted_total"),
        help: "TCP connections accepted (before CONNECT).",
        kind: Kind::Counter,
        value: |m| Some(m.connections_accepted as f64),
    },
    Figure {
        topic: None,
        metric: Some("edgemq_topic_bytes_aliased_total"),
        help: "Topic bytes not sent to MQTT 5.0 clients because a topic alias stood for them.",
        kind: Kind::Counter,
        value: |m| Some(m.topic_bytes_aliased as f64),
    },
    fig(
        "messages/received",
        "edgemq_messages_received_total",
        "MQTT packets of any type received.",
        Kind::Counter,
        |m| Some(m.packets_received as f64),
    ),
    fig(
        "messages/sent",
        "edgemq_messages_sent_total",
        "MQTT packets of any type sent.",
        Kind::Counter,
        |m| Some(m.packets_sent as f64),
    ),
    fig(
        "messages/stored",
        "edgemq_messages_stored",
        "Messages held for sessions (queued, in flight, in the store) plus retained messages.",
        Kind::Gauge,
        |m| Some((m.messages_stored + m.retained_messages) as f64),
    ),
    fig(
        "publish/messages/received",
        "edgemq_publish_messages_received_total",
        "PUBLISH packets received from clients and accepted.",
        Kind::Counter,
        |m| Some(m.publish_received as f64),
    ),
    fig(
        "publish/messages/sent",
        "edgemq_publish_messages_sent_total",
        "PUBLISH packets sent to clients and bridges.",
        Kind::Counter,
        |m| Some(m.publish_sent as f64),
    ),
    fig(
        "publish/messages/dropped",
        "edgemq_publish_messages_dropped_total",
        "Messages not delivered because a queue or output buffer was full.",
        Kind::Counter,
        |m| Some(m.publish_dropped as f64),
    ),
    fig(
        "bytes/received",
        "edgemq_bytes_received_total",
        "Bytes read from MQTT connections.",
        Kind::Counter,
        |m| Some(m.bytes_received as f64),
    ),
    fig(
        "bytes/sent",
        "edgemq_bytes_sent_total",
        "Bytes written to MQTT connections.",
        Kind::Counter,
        |m| Some(m.bytes_sent as f64),
    ),
    fig(
        "subscriptions/count",
        "edgemq_subscriptions",
        "Subscriptions of all sessions.",
        Kind::Gauge,
        |m| Some(m.subscriptions as f64),
    ),
    fig(
        "retained messages/count",
        "edgemq_retained_messages",
        "Retained messages held (the $SYS ones included while someone subscribes to $SYS).",
        Kind::Gauge,
        |m| Some(m.retained_messages as f64),
    ),
    fig(
        "store/messages/count",
        "edgemq_store_messages",
        "Messages held for sessions: queued, in flight, in the store.",
        Kind::Gauge,
        |m| Some(m.messages_stored as f64),
    ),
    fig(
        "store/messages/bytes",
        "edgemq_store_messages_bytes",
        "Bytes of the messages held for sessions (topic and payload).",
        Kind::Gauge,
        |m| Some(m.messages_stored_bytes as f64),
    ),
    fig(
        "output/bytes",
        "edgemq_output_bytes",
        "Bytes queued for all connections and not yet written (after the last loop pass).",
        Kind::Gauge,
        |m| Some(m.output_bytes as f64),
    ),
    fig(
        "heap/current",
        "edgemq_resident_memory_bytes",
        "Resident set size of the process in bytes (VmRSS).",
        Kind::Gauge,
        |m| m.rss_bytes.map(|b| b as f64),
    ),
    fig("store/queued", "edgemq_store_queued", "Messages in the SQLite ring.", Kind::Gauge, |m| {
        Some(m.store_queued as f64)
    }),
    fig(
        "store/bytes",
        "edgemq_store_queued_bytes",
        "Bytes of the messages in the SQLite ring.",
        Kind::Gauge,
        |m| Some(m.store_bytes as f64),
    ),
    fig(
        "store/db_size",
        "edgemq_store_db_size_bytes",
        "Size of the database file and its write-ahead log.",
        Kind::Gauge,
        |m| Some(m.store_db_size as f64),
    ),
    fig(
        "store/ring_used",
        "edgemq_store_ring_used_percent",
        "Messages in the ring as a percentage of sqlite.disk_cache_size.",
        Kind::Gauge,
        |m| Some(m.store_ring_used_percent),
    ),
    fig(
        "store/dropped",
        "edgemq_store_dropped_total",
        "Messages not stored because a cap was reached (drop_new, reject).",
        Kind::Counter,
        |m| Some(m.store_dropped as f64),
    ),
    fig(
        "store/evicted",
        "edgemq_store_evicted_total",
        "Messages evicted by overflow = \"drop_oldest\".",
        Kind::Counter,
        |m| Some(m.store_evicted as f64),
    ),
    fig(
        "store/expired",
        "edgemq_messages_expired_total",
        "Messages whose Message Expiry Interval passed before delivery.",
        Kind::Counter,
        |m| Some(m.messages_expired as f64),
    ),
    fig(
        "store/commits",
        "edgemq_store_commits_total",
        "Store transactions committed.",
        Kind::Counter,
        |m| Some(m.store_commits as f64),
    ),
    Figure {
        topic: None,
        metric: Some("edgemq_store_failed_commits_total"),
        help: "Store transactions rolled back (full disk, I/O error).",
        kind: Kind::Counter,
        value: |m| Some(m.store_failed_commits as f64),
    },
    fig(
        "store/fsyncs",
        "edgemq_store_fsyncs_total",
        "fsyncs of the write-ahead log.",
        Kind::Counter,
        |m| Some(m.store_fsyncs as f64),
    ),
    fig(
        "store/commit_ms_p99",
        "edgemq_store_commit_p99_seconds",
        "99th percentile of the last 1024 commits' durations, fsync included.",
        Kind::Gauge,
        |m| Some(m.store_commit_p99.as_secs_f64()),
    ),
    Figure {
        topic: None,
        metric: Some("edgemq_store_writable"),
        help: "1 while the store accepts writes, 0 while it refuses them (see /health).",
        kind: Kind::Gauge,
        value: |m| Some(if m.store_refusing.is_none() { 1.0 } else { 0.0 }),
    },
];

impl Figure {
    /// The value as `$SYS` prints it: integers without a fraction, `commit_ms_p99` in
    /// milliseconds with three decimals.
    pub fn sys_payload(&self, m: &Metrics) -> Option<String> {
        let value = (self.value)(m)?;
        Some(match self.topic {
            Some("store/commit_ms_p99") => format!("{:.3}", value * 1000.0),
            Some("store/ring_used") => format!("{value:.2}"),
            _ => format!("{value}"),
        })
    }
}

/// The 1, 5 and 15 minute averages of the counters Mosquitto reports under `load/`.
type Read = fn(&Metrics) -> u64;
const LOAD_SOURCES: [(&str, Read); 8] = [
    ("messages/received", |m| m.packets_received),
    ("messages/sent", |m| m.packets_sent),
    ("publish/received", |m| m.publish_received),
    ("publish/sent", |m| m.publish_sent),
    ("publish/dropped", |m| m.publish_dropped),
    ("bytes/received", |m| m.bytes_received),
    ("bytes/sent", |m| m.bytes_sent),
    ("sockets", |m| m.connections_accepted),
];
const LOAD_WINDOWS: [(&str, f64); 3] = [("1min", 1.0), ("5min", 5.0), ("15min", 15.0)];

/// Per-minute rates as exponentially weighted averages over 1, 5 and 15 minutes, advanced at
/// each publication (Mosquitto's `load/` figures, computed the same way). The status page
/// (`/api/v1/status`) keeps one of its own, advanced at each request, so its rates need no
/// `$SYS` subscriber and no timer.
#[derive(Debug, Default, Clone)]
pub struct Load {
    last: Option<(Instant, [u64; LOAD_SOURCES.len()])>,
    averages: [[f64; LOAD_WINDOWS.len()]; LOAD_SOURCES.len()],
}

impl Load {
    /// Starts measuring at `now` from counters at zero (the broker's start).
    pub fn starting_at(now: Instant) -> Load {
        Load { last: Some((now, [0; LOAD_SOURCES.len()])), ..Load::default() }
    }

    /// Moves the averages to `now` with the counters of `m`. Samples need not be evenly
    /// spaced: each decays the old average by the time that passed.
    pub fn advance(&mut self, now: Instant, m: &Metrics) {
        let counts = LOAD_SOURCES.map(|(_, read)| read(m));
        if let Some((at, before)) = self.last {
            let secs = now.saturating_duration_since(at).as_secs_f64();
            if secs > 0.0 {
                for (i, (count, old)) in counts.iter().zip(before).enumerate() {
                    let per_minute = count.saturating_sub(old) as f64 * 60.0 / secs;
                    for (j, (_, minutes)) in LOAD_WINDOWS.iter().enumerate() {
                        let decay = (-secs / (60.0 * minutes)).exp();
                        let average = &mut self.averages[i][j];
                        *average = per_minute + decay * (*average - per_minute);
                    }
                }
            }
        }
        self.last = Some((now, counts));
    }

    /// The 1-minute average of `source` (a `load/` name such as `"publish/received"`) per
    /// second; 0 for an unknown name.
    pub fn one_minute_per_second(&self, source: &str) -> f64 {
        let index = LOAD_SOURCES.iter().position(|(name, _)| *name == source);
        index.and_then(|i| self.averages.get(i)).map_or(0.0, |windows| windows[0] / 60.0)
    }
}

/// The `$SYS` publisher's state.
#[derive(Debug, Default)]
pub(super) struct SysTree {
    interval: Option<Duration>,
    next_at: Option<Instant>,
    started: Option<Instant>,
    last_published: Option<Instant>,
    load: Load,
    /// Topics retained by the last publication (removed when nobody subscribes any more).
    retained: Vec<Rc<str>>,
}

impl Broker {
    /// Sets `sys.interval` (`None` = off) at start-up or on reload; the first publication is
    /// one interval from `now`.
    pub fn set_sys_interval(&mut self, interval: Option<Duration>, now: Instant) {
        let sys = &mut self.sys;
        sys.started.get_or_insert(now);
        if sys.interval == interval && (interval.is_none() || sys.next_at.is_some()) {
            return;
        }
        sys.interval = interval;
        sys.next_at = interval.map(|i| now + i);
    }

    /// When the next `$SYS` publication is due (none when `sys.interval = 0`).
    pub(super) fn sys_deadline(&self) -> Option<Instant> {
        self.sys.next_at
    }

    /// Whether `publish_sys` has work at `now`.
    pub fn sys_due(&self, now: Instant) -> bool {
        self.sys.next_at.is_some_and(|at| at <= now)
    }

    /// A subscription to `filter` was made: a `$SYS` one gets fresh figures at the next pass
    /// rather than at the end of the interval.
    pub(super) fn sys_subscribed(&mut self, filter: &str, now: Instant) {
        if !filter.starts_with(SYS_ROOT) || self.sys.interval.is_none() {
            return;
        }
        let earliest = self.sys.last_published.map_or(now, |at| (at + EARLY_PUBLISH_GAP).max(now));
        self.sys.next_at = Some(self.sys.next_at.map_or(earliest, |at| at.min(earliest)));
    }

    /// Every figure now.
    pub fn metrics(&self, now: Instant, process: &Process) -> Metrics {
        let gauges = self.gauges();
        let mut messages_stored = 0;
        let mut messages_stored_bytes = 0;
        let mut disconnected = 0;
        let mut bridges = Vec::new();
        for session in self.sessions.values() {
            let (messages, bytes) = match session.stored.as_deref() {
                Some(stored) => {
                    let usage = self.store.usage(stored.id);
                    (usage.messages, usage.bytes)
                }
                None => {
                    let in_flight = session.inflight.iter().filter_map(|m| match &m.state {
                        OutboundState::AwaitPuback(d) | OutboundState::AwaitPubrec(d) => Some(d),
                        OutboundState::AwaitPubcomp => None,
                    });
                    let held = session.queue.iter().chain(in_flight);
                    held.fold((0, 0), |(n, b), d| (n + 1, b + d.message.size() as u64))
                }
            };
            messages_stored += messages;
            messages_stored_bytes += bytes;
            if let Some(name) = session.client_id.strip_prefix(BRIDGE_CLIENT_PREFIX) {
                bridges.push(BridgeMetrics {
                    name: name.to_string(),
                    connected: session.conn.is_some(),
                    queued: messages,
                    queued_bytes: bytes,
                    dropped: session.dropped,
                });
            } else if session.conn.is_none() {
                disconnected += 1;
            }
        }
        bridges.sort_by(|a, b| a.name.cmp(&b.name));
        let store = self.store.stats();
        Metrics {
            uptime: self.sys.started.map_or(Duration::ZERO, |at| now.saturating_duration_since(at)),
            clients_connected: gauges.connections as u64,
            clients_disconnected: disconnected,
            clients_total: gauges.sessions as u64,
            clients_maximum: self.stats.max_connected,
            clients_expired: self.stats.sessions_expired,
            connections_accepted: self.stats.connections_accepted,
            packets_received: self.stats.packets_received,
            packets_sent: self.stats.packets_sent,
            publish_received: self.stats.messages_received,
            publish_sent: self.stats.messages_sent,
            publish_dropped: self.stats.messages_dropped,
            bytes_received: self.stats.bytes_received,
            bytes_sent: self.stats.bytes_sent,
            topic_bytes_aliased: self.stats.topic_bytes_aliased,
            subscriptions: gauges.subscriptions as u64,
            retained_messages: gauges.retained_messages as u64,
            messages_stored,
            messages_stored_bytes,
            output_bytes: self.output_after_pass.bytes as u64,
            rss_bytes: process.rss_bytes,
            store_queued: self.store.total_messages(),
            store_bytes: self.store.total_bytes(),
            store_db_size: self.store.disk_bytes(),
            store_ring_used_percent: self.store.ring_used_percent(),
            store_dropped: store.dropped,
            store_evicted: store.evicted,
            messages_expired: self.stats.messages_expired,
            store_commits: store.commits,
            store_failed_commits: store.failed_commits,
            store_fsyncs: store.fsyncs,
            store_commit_p99: self.store.commit_p99(),
            store_refusing: match self.store.health() {
                crate::store::Health::Writable => None,
                crate::store::Health::Refusing(reason) => Some(reason),
            },
            bridges,
        }
    }

    /// The `$SYS` publication due at `now` (see the module documentation for what it costs).
    pub fn publish_sys(&mut self, now: Instant, process: &Process, out: &mut dyn Outbox) {
        let Some(interval) = self.sys.interval else {
            self.sys.next_at = None;
            return;
        };
        self.sys.next_at = Some(now + interval);
        if !self.tree.has_root_level(SYS_ROOT) {
            self.forget_sys_retained(now, out);
            // The rates need no figures from a pass nobody watches: they start again.
            self.sys.load.last = None;
            return;
        }
        let m = self.metrics(now, process);
        self.sys.load.advance(now, &m);
        self.sys.last_published = Some(now);
        let mut published = Vec::with_capacity(self.sys.retained.len().max(64));
        let version = format!("edgemq version {}", env!("CARGO_PKG_VERSION"));
        self.publish_sys_value("$SYS/broker/version", version, now, out, &mut published);
        let uptime = format!("{} seconds", m.uptime.as_secs());
        self.publish_sys_value("$SYS/broker/uptime", uptime, now, out, &mut published);
        for figure in FIGURES {
            let (Some(topic), Some(payload)) = (figure.topic, figure.sys_payload(&m)) else {
                continue;
            };
            let topic = format!("$SYS/broker/{topic}");
            self.publish_sys_value(&topic, payload, now, out, &mut published);
        }
        if self.sys.load.last.is_some() {
            let averages = self.sys.load.averages;
            for (i, (source, _)) in LOAD_SOURCES.iter().enumerate() {
                for (j, (window, _)) in LOAD_WINDOWS.iter().enumerate() {
                    let topic = format!("$SYS/broker/load/{source}/{window}");
                    let payload = format!("{:.2}", averages[i][j]);
                    self.publish_sys_value(&topic, payload, now, out, &mut published);
                }
            }
        }
        for bridge in &m.bridges {
            let base = format!("$SYS/broker/connection/{}", bridge.name);
            let queued = bridge.queued.to_string();
            self.publish_sys_value(&format!("{base}/queued"), queued, now, out, &mut published);
            let bytes = bridge.queued_bytes.to_string();
            self.publish_sys_value(
                &format!("{base}/queued_bytes"),
                bytes,
                now,
                out,
                &mut published,
            );
        }
        // Topics of the previous publication not published now (a bridge removed by a
        // reload, the heap figure gone) must not stay retained.
        let stale: Vec<Rc<str>> =
            self.sys.retained.iter().filter(|t| !published.contains(t)).cloned().collect();
        for topic in stale {
            self.retain_sys(&topic, Vec::new(), now);
        }
        self.sys.retained = published;
    }

    /// Removes the retained `$SYS` values once nobody subscribes to them.
    fn forget_sys_retained(&mut self, now: Instant, _out: &mut dyn Outbox) {
        for topic in std::mem::take(&mut self.sys.retained) {
            self.retain_sys(&topic, Vec::new(), now);
        }
    }

    fn publish_sys_value(
        &mut self,
        topic: &str,
        payload: String,
        now: Instant,
        out: &mut dyn Outbox,
        published: &mut Vec<Rc<str>>,
    ) {
        let message = self.retain_sys(topic, payload.into_bytes(), now);
        published.push(message.topic.clone());
        let saved = std::mem::take(&mut self.route_outcome);
        let publisher = self.current_publisher.take();
        self.route_to_subscribers(message, None, now, out);
        self.current_publisher = publisher;
        self.route_outcome = saved;
    }

    /// Keeps `payload` as the retained value of `topic` in memory (empty: removes it). Over
    /// `max_retained_*` the value is not kept and still delivered.
    fn retain_sys(&mut self, topic: &str, payload: Vec<u8>, now: Instant) -> Rc<Message> {
        let publish = Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: true,
            topic: Rc::from(topic),
            packet_id: None,
            properties: Default::default(),
            payload: Rc::from(payload),
        };
        let message = Rc::new(Message::from_publish(publish, now));
        let _ = self.retained.apply(&message);
        message
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_figure_has_a_unique_topic_and_a_prometheus_name() {
        let mut topics = Vec::new();
        let mut metrics = Vec::new();
        for figure in FIGURES {
            if let Some(topic) = figure.topic {
                assert!(!topics.contains(&topic), "{topic} twice");
                topics.push(topic);
            }
            let name = figure.metric.expect("every figure is in /metrics");
            assert!(name.starts_with("edgemq_"), "{name}");
            assert!(name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'_' || b.is_ascii_digit()));
            // Prometheus naming: counters end in _total, nothing else does.
            assert_eq!(figure.kind == Kind::Counter, name.ends_with("_total"), "{name}");
            assert!(!metrics.contains(&name), "{name} twice");
            metrics.push(name);
        }
    }

    #[test]
    fn load_averages_follow_the_rate_and_decay_like_mosquitto() {
        let start = Instant::now();
        let mut load = Load::default();
        let mut m = Metrics::default();
        load.advance(start, &m);
        // 600 messages in 10 s: 3,600 a minute.
        m.packets_received = 600;
        load.advance(start + Duration::from_secs(10), &m);
        let one_min = load.averages[0][0];
        let expected = 3600.0 * (1.0 - (-10.0f64 / 60.0).exp());
        assert!((one_min - expected).abs() < 1e-6, "{one_min} vs {expected}");
        // The 15-minute average moves slower than the 1-minute one.
        assert!(load.averages[0][2] < load.averages[0][1] && load.averages[0][1] < one_min);
        // Nothing more: every average decays, none goes negative.
        load.advance(start + Duration::from_secs(20), &m);
        assert!(load.averages[0][0] < one_min && load.averages[0][0] > 0.0);
    }

    #[test]
    fn a_load_started_at_zero_gives_the_one_minute_rate_per_second() {
        let start = Instant::now();
        let mut load = Load::starting_at(start);
        assert_eq!(load.one_minute_per_second("publish/received"), 0.0);
        // 120 PUBLISH in 60 s (2 a second), sampled at uneven times.
        let mut m = Metrics::default();
        for (secs, count) in [(7, 14), (30, 60), (60, 120)] {
            m.publish_received = count;
            load.advance(start + Duration::from_secs(secs), &m);
        }
        // An average that started at 0 a minute ago: 2/s x (1 - e^-1).
        let rate = load.one_minute_per_second("publish/received");
        let expected = 2.0 * (1.0 - (-1.0f64).exp());
        assert!((rate - expected).abs() < 1e-9, "{rate} vs {expected}");
        assert_eq!(load.one_minute_per_second("publish/sent"), 0.0);
        assert_eq!(load.one_minute_per_second("no/such"), 0.0);
    }

    #[test]
    fn payloads_print_integers_plainly_and_the_p99_in_milliseconds() {
        let m = Metrics {
            clients_connected: 3,
            store_commit_p99: Duration::from_micros(1500),
            store_ring_used_percent: 12.5,
            ..Metrics::default()
        };
        let payload = |topic: &str| {
            FIGURES.iter().find(|f| f.topic == Some(topic)).and_then(|f| f.sys_payload(&m))
        };
        assert_eq!(payload("clients/connected").as_deref(), Some("3"));
        assert_eq!(payload("store/commit_ms_p99").as_deref(), Some("1.500"));
        assert_eq!(payload("store/ring_used").as_deref(), Some("12.50"));
        assert_eq!(payload("heap/current"), None);
    }
}
