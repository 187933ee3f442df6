//! The capacity report: what a configuration's limits reserve and the most memory they allow,
//! so that an operator can size a small device before it runs out. Logged at start-up and
//! printed by `edgemq check`.
//!
//! Contract: pure arithmetic on a validated [`Config`] (saturating, no panics on huge values).
//! Each figure says whether it is a *bound* (follows from the limits and the code paths that
//! enforce them: the broker cannot hold more) or an *estimate* (measured per-item costs,
//! README "Memory per subscription", times the limit; allocator and platform change them).

use crate::broker::{OUTPUT_HARD_FACTOR, QUEUE_HARD_FACTOR};
use crate::config::{format_size, Config, Durability};
use crate::net::{OVERFLOW_SLOTS, READ_BUFFER_SIZE};

/// Bytes per subscription-tree node, measured (README "Memory per subscription": 25,600 nodes
/// of one-character levels took 2.4 MiB on x86_64).
const TREE_NODE_BYTES: u64 = 100;
/// Bytes of an idle connection with its clean session, measured (README, x86_64, 1,155 B).
const SESSION_BYTES: u64 = 1_200;
/// Per retained message besides its payload: the topic and the map entry (estimate).
const RETAINED_ENTRY_BYTES: u64 = 128;
/// SQLite's page cache: its default `cache_size` of -2000, i.e. 2000 KiB (the store does not
/// change it).
const SQLITE_CACHE_BYTES: u64 = 2000 * 1024;

/// One line of the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Figure {
    pub what: &'static str,
    pub bytes: u64,
    /// A bound (true) or an estimate (false).
    pub bound: bool,
    /// How it is computed, with the numbers.
    pub how: String,
}

fn mul(a: u64, b: u64) -> u64 {
    a.saturating_mul(b)
}

fn n(x: usize) -> u64 {
    u64::try_from(x).unwrap_or(u64::MAX)
}

/// Every figure for `config`, in report order.
pub fn figures(config: &Config) -> Vec<Figure> {
    let m = &config.mqtt;
    let q = &config.sqlite;
    let slots = n(m.max_connections).saturating_add(n(OVERFLOW_SLOTS));
    let packet = u64::from(m.max_packet_size);
    let tx = n(m.tx_buffer_limit);
    let sessions = n(m.max_sessions);
    // Only online sessions keep messages in memory (an offline one's are in the store).
    let online = n(m.max_connections);
    let per_session_messages = n(m.max_queued_messages)
        .saturating_mul(n(QUEUE_HARD_FACTOR))
        .saturating_add(u64::from(m.max_inflight));
    let nodes_per_session = mul(n(m.max_subscriptions_per_session), n(m.max_topic_levels))
        .min(n(m.max_subscription_bytes).saturating_add(n(m.max_subscriptions_per_session)));
    let output = mul(n(OUTPUT_HARD_FACTOR), tx).saturating_add(packet);
    let budget = match m.tx_buffer_total {
        0 => "; no tx_buffer_total".to_string(),
        total => format!(
            "; past tx_buffer_total {} for all connections together, QoS 0 output goes only to \
             connections within their share, publishers pausing for max_pause at most, so a \
             crowd of slow subscribers holds about that much",
            format_size(n(total))
        ),
    };
    let mut out = vec![
        Figure {
            what: "connection input buffers",
            bytes: mul(slots, packet),
            bound: true,
            how: format!(
                "{slots} connection slots (max_connections + {OVERFLOW_SLOTS}) x one partial \
                 packet of at most max_packet_size {}",
                format_size(packet)
            ),
        },
        Figure {
            what: "connection output buffers",
            bytes: mul(slots, output),
            bound: true,
            how: format!(
                "{slots} slots x ({OUTPUT_HARD_FACTOR} x tx_buffer_limit {} + one message of \
                 max_packet_size){budget}",
                format_size(tx)
            ),
        },
        Figure {
            what: "messages queued in memory",
            bytes: mul(mul(online, per_session_messages), packet),
            bound: true,
            how: format!(
                "{online} online sessions (max_connections) x ({QUEUE_HARD_FACTOR} x \
                 max_queued_messages {} + max_inflight {}) x max_packet_size; offline sessions \
                 queue in the store, and a message shared by subscribers is held once, so real \
                 use is far lower",
                m.max_queued_messages, m.max_inflight
            ),
        },
        Figure {
            what: "retained messages",
            bytes: q_retained(config),
            bound: false,
            how: format!(
                "max_retained_bytes {} (a bound on payloads) + max_retained_messages {} x \
                 ~{RETAINED_ENTRY_BYTES} B for topics and entries",
                format_size(config.mqtt.max_retained_bytes),
                config.mqtt.max_retained_messages
            ),
        },
        Figure {
            what: "subscription tree",
            bytes: mul(mul(sessions, nodes_per_session), TREE_NODE_BYTES),
            bound: false,
            how: format!(
                "max_sessions {sessions} x {nodes_per_session} nodes (min(max_subscriptions_per_\
                 session x max_topic_levels, max_subscription_bytes + max_subscriptions_per_\
                 session)) x ~{TREE_NODE_BYTES} B measured per node"
            ),
        },
        Figure {
            what: "sessions",
            bytes: mul(sessions, SESSION_BYTES),
            bound: false,
            how: format!("max_sessions {sessions} x ~{SESSION_BYTES} B measured per idle session"),
        },
        Figure {
            what: "SQLite page cache",
            bytes: SQLITE_CACHE_BYTES,
            bound: true,
            how: "SQLite's default cache_size (2000 KiB)".to_string(),
        },
        Figure {
            what: "shared read buffer",
            bytes: n(READ_BUFFER_SIZE),
            bound: true,
            how: "one for all connections".to_string(),
        },
    ];
    if q.durability == Durability::Memory {
        let rows = mul(q.disk_cache_size, packet);
        let bytes = if q.max_db_size > 0 { rows.min(q.max_db_size) } else { rows };
        out.push(Figure {
            what: "in-memory store (durability = \"memory\")",
            bytes,
            bound: true,
            how: format!(
                "disk_cache_size {} x max_packet_size{}",
                q.disk_cache_size,
                if q.max_db_size > 0 { ", capped by max_db_size" } else { "" }
            ),
        });
    }
    out
}

fn q_retained(config: &Config) -> u64 {
    config
        .mqtt
        .max_retained_bytes
        .saturating_add(mul(config.mqtt.max_retained_messages, RETAINED_ENTRY_BYTES))
}

/// The report as lines for the log (and, as comments, `edgemq check`): what is reserved, then
/// each figure, then the total.
pub fn report(config: &Config) -> Vec<String> {
    let m = &config.mqtt;
    let figures = figures(config);
    let mut lines = vec![format!(
        "capacity: {} connections ({} pending at most), {} sessions, {} subscriptions and {} \
         of filters per session, {} in flight and {} queued in memory per session, {} retained \
         messages / {}, {} stored messages",
        m.max_connections,
        // Pending connections hold slots too: never more than there are.
        match m.max_pending_connections {
            0 => m.max_connections.saturating_add(OVERFLOW_SLOTS),
            pending => pending.min(m.max_connections.saturating_add(OVERFLOW_SLOTS)),
        },
        m.max_sessions,
        m.max_subscriptions_per_session,
        format_size(n(m.max_subscription_bytes)),
        m.max_inflight,
        m.max_queued_messages,
        m.max_retained_messages,
        format_size(m.max_retained_bytes),
        config.sqlite.disk_cache_size
    )];
    for f in &figures {
        lines.push(format!(
            "capacity: {} up to {} ({}: {})",
            f.what,
            human(f.bytes),
            if f.bound { "bound" } else { "estimate" },
            f.how
        ));
    }
    let bounds: u64 = figures.iter().filter(|f| f.bound).fold(0, |a, f| a.saturating_add(f.bytes));
    let all: u64 = figures.iter().fold(0, |a, f| a.saturating_add(f.bytes));
    lines.push(format!(
        "capacity: worst case {} in all ({} of it bounds, the rest estimates); the process \
         itself comes on top (an idle broker: about 6 MB resident, x86_64 release build)",
        human(all),
        human(bounds)
    ));
    lines
}

/// Bytes rounded to a readable unit (`1.5 GiB`, `640 KiB`, `100 B`).
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else if value >= 100.0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_follow_the_limits() {
        let mut c = Config::default_values();
        c.mqtt.max_connections = 10;
        c.mqtt.max_sessions = 20;
        c.mqtt.max_packet_size = 1000;
        c.mqtt.tx_buffer_limit = 4096;
        c.mqtt.max_queued_messages = 5;
        c.mqtt.max_inflight = 3;
        let f = figures(&c);
        let get = |what: &str| f.iter().find(|f| f.what == what).unwrap().bytes;
        assert_eq!(get("connection input buffers"), 26 * 1000);
        assert_eq!(get("connection output buffers"), 26 * (2 * 4096 + 1000));
        let how = |c: &Config| figures(c)[1].how.clone();
        assert!(how(&c).ends_with("past tx_buffer_total 16MB for all connections together, QoS 0 output goes only to connections within their share, publishers pausing for max_pause at most, so a crowd of slow subscribers holds about that much"), "{}", how(&c));
        c.mqtt.tx_buffer_total = 0;
        assert!(how(&c).ends_with("; no tx_buffer_total"), "{}", how(&c));
        assert_eq!(get("messages queued in memory"), 10 * (4 * 5 + 3) * 1000);
        // Defaults: 128 x 200 = 25,600 nodes per session (README).
        assert_eq!(get("subscription tree"), 20 * 25_600 * 100);
        assert!(!f.iter().any(|f| f.what.starts_with("in-memory store")));
        c.sqlite.durability = Durability::Memory;
        c.sqlite.max_db_size = 5000;
        assert_eq!(figures(&c).last().unwrap().bytes, 5000);
    }

    #[test]
    fn huge_limits_saturate_instead_of_overflowing() {
        let mut c = Config::default_values();
        c.mqtt.max_sessions = 10_000_000;
        c.mqtt.max_connections = 1_000_000;
        c.mqtt.max_packet_size = 268_435_455;
        c.mqtt.max_queued_messages = 1_000_000;
        let lines = report(&c);
        assert!(lines.iter().all(|l| l.starts_with("capacity: ") && !l.contains('\n')));
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human(100), "100 B");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(640 * 1024), "640 KiB");
        assert_eq!(human(3 << 30), "3.0 GiB");
    }
}
