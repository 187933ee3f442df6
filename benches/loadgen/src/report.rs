//! The markdown table of `run.sh`: medians per scenario and broker set-up, edgemq against
//! Mosquitto with its shipped limits ("defaults") and Mosquitto set up not to drop ("no-drop").
//!
//! Contract: reads the JSON lines written by `run`, ignores lines it cannot parse (and says
//! how many), never fails on missing metrics (the cell shows `-`). Performance metrics are
//! medians over successful runs; correctness counters (lost, duplicated, reordered, missing)
//! are the maximum over all runs, so one bad run cannot hide behind a good median. Runs with
//! `ok: false` are listed with their error under the table. Mosquitto lines whose variant is
//! `no-drop` fill the no-drop column; every other Mosquitto line (defaults, and the offline
//! scenario's `persistence`) fills the defaults column.

use std::fmt::Write as _;

use crate::json::{Object, Value};
use crate::scenario::ALL;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Better {
    Higher,
    Lower,
    /// A correctness counter: must be 0.
    Zero,
    /// Context for another number; no direction, no ratio.
    Info,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Aggregate {
    Median,
    Max,
    /// The worst run of a count that should be high (messages delivered).
    Min,
}

struct Metric {
    key: &'static str,
    label: &'static str,
    better: Better,
    aggregate: Aggregate,
    /// Multiplies the stored value (e.g. KiB -> MiB).
    scale: f64,
}

const fn median(key: &'static str, label: &'static str, better: Better) -> Metric {
    Metric { key, label, better, aggregate: Aggregate::Median, scale: 1.0 }
}

const fn info(key: &'static str, label: &'static str) -> Metric {
    Metric { key, label, better: Better::Info, aggregate: Aggregate::Median, scale: 1.0 }
}

const fn mib(key: &'static str, label: &'static str) -> Metric {
    Metric { key, label, better: Better::Lower, aggregate: Aggregate::Median, scale: 1.0 / 1024.0 }
}

const fn max(key: &'static str, label: &'static str) -> Metric {
    Metric { key, label, better: Better::Zero, aggregate: Aggregate::Max, scale: 1.0 }
}

/// A counter shown at its worst run, with no ratio (QoS 0 loss, QoS 1 duplicates: allowed).
const fn info_max(key: &'static str, label: &'static str) -> Metric {
    Metric { key, label, better: Better::Info, aggregate: Aggregate::Max, scale: 1.0 }
}

const RSS: Metric = mib("peak_rss_kb", "broker peak RSS (MiB)");

fn metrics(scenario: &str) -> Vec<Metric> {
    let throughput = |label| {
        vec![
            median("msg_per_s", label, Better::Higher),
            median("cpu_us_per_msg", "broker CPU µs/msg", Better::Lower),
            RSS,
            max("lost", "lost (max)"),
            max("duplicates", "duplicates (max)"),
            max("reordered", "reordered (max)"),
        ]
    };
    match scenario {
        "fanin_shared_q1" => vec![
            median("msg_per_s", "single subscriber msg/s", Better::Higher),
            median("group_msg_per_s", "group of 4 msg/s (each message once)", Better::Higher),
            median("cpu_us_per_msg", "broker CPU µs/msg", Better::Lower),
            RSS,
            max("lost", "lost at the single subscriber (max)"),
            max("group_lost", "lost by the group (max)"),
            max("group_duplicates", "duplicates in the group (max)"),
        ],
        "fanout_alias_q0" => vec![
            median("msg_per_s", "deliveries/s (8 subs)", Better::Higher),
            median("cpu_us_per_msg", "broker CPU µs/msg", Better::Lower),
            median("alias_bytes_per_msg", "bytes/delivery, 4 subs taking aliases", Better::Lower),
            info("plain_bytes_per_msg", "bytes/delivery, 4 subs without"),
            median("alias_bytes_saved_pct", "bytes saved by aliases (%)", Better::Higher),
            RSS,
            max("lost", "lost (max)"),
        ],
        s if s.starts_with("fanin") => throughput("delivered msg/s"),
        s if s.starts_with("fanout1k") => throughput("deliveries/s (1,000 subs)"),
        s if s.starts_with("fanout") => throughput("deliveries/s (8 subs)"),
        "stuck" => vec![
            median("offered_per_s", "publishers' msg/s", Better::Higher),
            median("msg_per_s", "healthy subscriber msg/s", Better::Higher),
            median("p50_us", "healthy p50 latency (µs)", Better::Lower),
            median("p99_us", "healthy p99 latency (µs)", Better::Lower),
            median("max_gap_ms", "healthy longest silence (ms)", Better::Lower),
            RSS,
            max("lost", "lost at the healthy subscriber (max)"),
            max("duplicates", "duplicates (max)"),
            max("reordered", "reordered (max)"),
        ],
        s if s.starts_with("latency") => vec![
            median("p50_us", "p50 latency (µs)", Better::Lower),
            median("p99_us", "p99 latency (µs)", Better::Lower),
            median("p999_us", "p99.9 latency (µs)", Better::Lower),
            median("cpu_us_per_msg", "broker CPU µs/msg", Better::Lower),
            RSS,
            max("lost", "lost (max)"),
        ],
        "idle" | "idle_15k" => vec![
            median("bytes_per_conn", "RSS bytes per connection (one subscription)", Better::Lower),
            median("connect_per_s", "connects/s", Better::Higher),
            mib("start_rss_kb", "broker RSS at start (MiB)"),
            mib("rss_after_kb", "broker RSS with all connected (MiB)"),
            mib("rss_closed_kb", "broker RSS after all closed (MiB)"),
            median("closed_over_start", "RSS after all closed / at start", Better::Lower),
            median("idle_cpu_pct", "broker CPU % while idle", Better::Lower),
            median("idle_wakeups_per_s", "broker wake-ups/s while idle", Better::Lower),
            median("connected", "connections made", Better::Higher),
        ],
        "subs100k" => vec![
            median("bytes_per_sub", "RSS bytes per subscription (100,000 exact)", Better::Lower),
            median("bytes_per_conn", "RSS bytes per connection before subscribing", Better::Lower),
            mib("rss_subscribed_kb", "broker RSS with 10,000 x 10 subscribed (MiB)"),
            median("subscribe_per_s", "subscriptions/s (10 per SUBSCRIBE)", Better::Higher),
            median("q0_msg_per_s", "QoS 0 to random topics: delivered msg/s", Better::Higher),
            median("q0_cpu_us_per_msg", "QoS 0: broker CPU µs/msg", Better::Lower),
            median("q1_msg_per_s", "QoS 1 to random topics: delivered msg/s", Better::Higher),
            median("q1_cpu_us_per_msg", "QoS 1: broker CPU µs/msg", Better::Lower),
            info("q1_loadgen_cpu_s", "QoS 1: load generator CPU s (its own cost)"),
            RSS,
            info_max("q0_lost", "QoS 0 lost (max; allowed under overload)"),
            max("q1_missing", "QoS 1 missing (max)"),
            max("q0_misrouted", "QoS 0 misrouted (max)"),
            max("q1_misrouted", "QoS 1 misrouted (max)"),
            info_max("q1_duplicates", "QoS 1 duplicates (max; allowed)"),
        ],
        "storm" | "storm_15k" => vec![
            median("storm_s", "time to all sessions complete (s)", Better::Lower),
            median("session_p50_ms", "per session p50 (ms)", Better::Lower),
            median("session_p99_ms", "per session p99 (ms)", Better::Lower),
            median("first_connack_ms", "first CONNACK (ms)", Better::Lower),
            RSS,
            mib("queued_rss_kb", "broker RSS before the storm (MiB)"),
            median("storm_cpu_s", "broker CPU s during the storm", Better::Lower),
            max("missing", "missing (max)"),
            max("not_present", "session not present (max)"),
            max("connect_errors", "connect errors (max)"),
            info("duplicates", "duplicates (QoS 1 allows them)"),
        ],
        "restart_big" => vec![
            median("serving_s", "restart -> accepting connections (s)", Better::Lower),
            median("first_message_ms", "reconnect -> first queued message (ms)", Better::Lower),
            mib("start_rss_kb", "RSS at the first, empty start (MiB)"),
            mib("restart_rss_kb", "RSS after the restart (MiB)"),
            median("restart_over_empty", "RSS after restart / empty start", Better::Lower),
            mib("full_rss_kb", "RSS with 1,000,000 queued, before the stop (MiB)"),
            median("stop_s", "SIGTERM -> exited (s)", Better::Lower),
            median("queue_per_s", "queueing msg/s (PUBACKed)", Better::Higher),
            info("data_dir_kb", "data directory (KiB)"),
        ],
        "offline" => vec![
            median("enqueue_per_s", "enqueue msg/s (PUBACKed)", Better::Higher),
            median("drain_per_s", "drain msg/s", Better::Higher),
            median("drain_s", "drain time (s)", Better::Lower),
            median("first_message_ms", "first message after reconnect (ms)", Better::Lower),
            median("enqueue_cpu_us_per_msg", "broker CPU µs/msg enqueue", Better::Lower),
            median("drain_cpu_us_per_msg", "broker CPU µs/msg drain", Better::Lower),
            RSS,
            info("commits", "store commits"),
            info("log_syncs", "store log syncs (WAL fsyncs)"),
            info("messages_per_sync", "messages per log sync"),
            info("syncs_per_s", "log syncs/s (enqueue + drain)"),
            max("missing", "missing (max)"),
            max("duplicates", "duplicates (max)"),
            max("reordered", "out of order (max)"),
        ],
        "bridge_live" | "bridge_live_sink" => vec![
            median("msg_per_s", "forwarded msg/s (at the upstream subscriber)", Better::Higher),
            median("offered_per_s", "local publishers' msg/s (PUBACKed)", Better::Higher),
            median("cpu_us_per_msg", "local broker CPU µs/msg", Better::Lower),
            info("upstream_cpu_us_per_msg", "upstream Mosquitto CPU µs/msg"),
            RSS,
            max("lost", "lost upstream (max)"),
            max("duplicates", "duplicates upstream (max)"),
            max("reordered", "reordered upstream (max)"),
        ],
        "bridge_replay" | "bridge_kill9" | "bridge_replay_sink" | "bridge_kill9_sink" => vec![
            median("enqueue_per_s", "enqueue msg/s, upstream down (PUBACKed)", Better::Higher),
            median("replay_s", "upstream start -> last message upstream (s)", Better::Lower),
            median(
                "first_message_s",
                "upstream start -> first message upstream (s)",
                Better::Lower,
            ),
            median("drain_per_s", "drain msg/s (first -> last message upstream)", Better::Higher),
            median("replay_cpu_us_per_msg", "local broker CPU µs/msg (replay)", Better::Lower),
            RSS,
            Metric {
                key: "delivered",
                label: "delivered upstream (min)",
                better: Better::Info,
                aggregate: Aggregate::Min,
                scale: 1.0,
            },
            max("lost", "lost upstream (max)"),
            max("duplicates", "duplicates upstream (max)"),
        ],
        _ => Vec::new(),
    }
}

/// Mosquitto's variant that fills the second Mosquitto column.
const NO_DROP: &str = "no-drop";

/// Renders the table for the given JSON lines.
pub fn render(text: &str) -> String {
    let mut records = Vec::new();
    let mut unreadable = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match Object::parse(line) {
            Ok(o) => records.push(o),
            Err(_) => unreadable += 1,
        }
    }
    let field = |o: &Object, k: &str| o.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let mut out = String::new();
    out.push_str(
        "| scenario | metric | edgemq | mosquitto defaults | mosquitto no-drop \
         | edgemq/defaults | edgemq/no-drop | better |\n",
    );
    out.push_str("|---|---|---:|---:|---:|---:|---:|---|\n");
    let mut scenarios: Vec<String> = ALL.iter().map(|s| s.to_string()).collect();
    for r in &records {
        let s = field(r, "scenario");
        if !scenarios.contains(&s) {
            scenarios.push(s);
        }
    }
    for scenario in &scenarios {
        let of = |broker: &str| -> Vec<&Object> {
            records
                .iter()
                .filter(|r| field(r, "scenario") == *scenario && field(r, "broker") == broker)
                .collect()
        };
        let edgemq = of("edgemq");
        let mosquitto = of("mosquitto");
        if edgemq.is_empty() && mosquitto.is_empty() {
            continue;
        }
        let (no_drop, defaults): (Vec<&Object>, Vec<&Object>) =
            mosquitto.iter().partition(|r| field(r, "variant") == NO_DROP);
        let mut variants: Vec<String> = edgemq.iter().map(|r| field(r, "variant")).collect();
        variants.sort_by_key(|v| (v != "sync", v.clone()));
        variants.dedup();
        if variants.is_empty() {
            variants.push(String::new());
        }
        for variant in &variants {
            let e: Vec<&Object> =
                edgemq.iter().copied().filter(|r| field(r, "variant") == *variant).collect();
            let name = if variants.len() > 1 || scenario == "offline" {
                format!("{scenario} (edgemq {variant})")
            } else {
                scenario.clone()
            };
            let runs = |set: &[&Object]| {
                if set.is_empty() {
                    return "-".to_string();
                }
                let ok = set.iter().filter(|r| r.get("ok") == Some(&Value::Bool(true))).count();
                format!("{ok}/{} ok", set.len())
            };
            let _ = writeln!(
                out,
                "| {name} | runs | {} | {} | {} | | | |",
                runs(&e),
                runs(&defaults),
                runs(&no_drop)
            );
            for metric in metrics(scenario) {
                let a = aggregate(&e, &metric);
                let b = aggregate(&defaults, &metric);
                let c = aggregate(&no_drop, &metric);
                let better = match metric.better {
                    Better::Higher => "higher",
                    Better::Lower => "lower",
                    Better::Zero => "0",
                    Better::Info => "",
                };
                let _ = writeln!(
                    out,
                    "| {name} | {} | {} | {} | {} | {} | {} | {better} |",
                    metric.label,
                    cell(a),
                    cell(b),
                    cell(c),
                    ratio(a, b, &metric),
                    ratio(a, c, &metric)
                );
            }
        }
    }
    out.push_str(&legend(&records));
    // The offline store counters come from a line edgemq logs when SIGTERM stops it.
    let shutdowns: Vec<String> = records
        .iter()
        .filter(|r| field(r, "scenario") == "offline" && field(r, "broker") == "edgemq")
        .filter_map(|r| {
            let exit = field(r, "sigterm_exit");
            let totals = field(r, "store_totals");
            let mut problems = Vec::new();
            if !exit.is_empty() && exit != "exit status: 0" {
                problems.push(format!("after SIGTERM: {exit}"));
            }
            if totals == "missing" {
                problems.push("no `store totals` line in its log".to_string());
            }
            (!problems.is_empty()).then(|| {
                format!(
                    "- offline edgemq ({}) run {}: {}\n",
                    field(r, "variant"),
                    r.get("run").and_then(Value::as_f64).unwrap_or(0.0),
                    problems.join("; ")
                )
            })
        })
        .collect();
    if !shutdowns.is_empty() {
        out.push_str("\nedgemq shutdowns without store totals or with an unclean exit:\n");
        out.push_str(&shutdowns.concat());
    }
    let failures: Vec<&Object> =
        records.iter().filter(|r| r.get("ok") != Some(&Value::Bool(true))).collect();
    if !failures.is_empty() {
        out.push_str("\nRuns that did not complete cleanly:\n");
        for r in failures {
            let _ = writeln!(
                out,
                "- {} {} ({}) run {}: {}",
                field(r, "scenario"),
                field(r, "broker"),
                field(r, "variant"),
                r.get("run").and_then(Value::as_f64).unwrap_or(0.0),
                field(r, "error")
            );
        }
    }
    if unreadable > 0 {
        let _ = writeln!(out, "\n{unreadable} unreadable line(s) ignored.");
    }
    out
}

/// What the columns are, under the table. The limits are read from the lines: throughput
/// scenarios record the window and queue their broker ran with.
fn legend(records: &[Object]) -> String {
    let limits = |broker: &str, variant: Option<&str>, inflight_key: &str, queue_key: &str| {
        let values = |key: &str| -> String {
            let mut found: Vec<u64> = records
                .iter()
                .filter(|r| r.get("broker").and_then(Value::as_str) == Some(broker))
                .filter(|r| {
                    // `Option::is_none_or` is newer than this crate's MSRV.
                    variant.map_or(true, |v| r.get("variant").and_then(Value::as_str) == Some(v))
                })
                .filter_map(|r| r.get(key).and_then(Value::as_f64))
                .map(|v| v as u64)
                .collect();
            found.sort_unstable();
            found.dedup();
            let text: Vec<String> = found.iter().map(u64::to_string).collect();
            if text.is_empty() {
                "?".to_string()
            } else {
                text.join("/")
            }
        };
        format!(
            "`{inflight_key}` {}, `{queue_key}` {}",
            values("broker_inflight"),
            values("broker_queue")
        )
    };
    let mosquitto = |variant| {
        limits("mosquitto", Some(variant), "max_inflight_messages", "max_queued_messages")
    };
    format!(
        "\n\
         * **mosquitto defaults**: Mosquitto with its shipped limits ({}; the keys are not \
         written); publishers run for the whole duration and whatever Mosquitto drops at its \
         queue limit is counted as `lost`. This is the set-up of issue 5's reference table. \
         Latency and idle run Mosquitto only this way. In the offline rows this column is \
         Mosquitto with `persistence true` and `max_queued_messages 100000`.\n\
         * **mosquitto no-drop** (fan-in / fan-out / stuck only): {}, the same outbound window as \
         edgemq, and QoS 1/2 publishers together send at most the queue, so nothing has to be \
         dropped. This is the fair lossless comparison.\n\
         * **edgemq** in fan-in / fan-out / stuck: {}; at the queue limit it pauses publishers \
         instead of dropping, for `mqtt.max_pause` at most.\n\
         * **bridge_*** rows: the local broker bridges `bench/#` (QoS 1) to an upstream \
         Mosquitto (persistence off), or in the `_sink` rows to the load generator's sink (a \
         minimal MQTT server that acknowledges and counts, so the bridge is the bottleneck); \
         the defaults column is Mosquitto as the bridge (`cleansession false`, a queue that \
         drops nothing, persistence at its default: off), edgemq runs `[bridges.up]` with \
         `durability = \"sync\"`. Both bridges keep the same number of messages in flight \
         upstream and retry every second.\n\
         * `edgemq/defaults` and `edgemq/no-drop` divide edgemq's median by that Mosquitto \
         column's; `better` says which direction favours edgemq.\n",
        mosquitto("defaults"),
        mosquitto(NO_DROP),
        limits("edgemq", None, "max_inflight", "max_queued_messages")
    )
}

/// edgemq / Mosquitto, for metrics with a direction and a non-zero denominator.
fn ratio(edgemq: Option<f64>, mosquitto: Option<f64>, metric: &Metric) -> String {
    match (edgemq, mosquitto) {
        (Some(a), Some(b))
            if matches!(metric.better, Better::Higher | Better::Lower) && b != 0.0 =>
        {
            format!("{:.2}", a / b)
        }
        _ => String::new(),
    }
}

fn aggregate(set: &[&Object], metric: &Metric) -> Option<f64> {
    let ok_only = metric.aggregate == Aggregate::Median;
    let mut values: Vec<f64> = set
        .iter()
        .filter(|r| !ok_only || r.get("ok") == Some(&Value::Bool(true)))
        .filter_map(|r| r.get(metric.key).and_then(Value::as_f64))
        .map(|v| v * metric.scale)
        .collect();
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match metric.aggregate {
        Aggregate::Max => values.last().copied(),
        Aggregate::Min => values.first().copied(),
        Aggregate::Median if n % 2 == 1 => values.get(n / 2).copied(),
        Aggregate::Median => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
    }
}

fn cell(value: Option<f64>) -> String {
    match value {
        None => "-".to_string(),
        Some(v) if v.abs() >= 1000.0 || v == v.trunc() => format!("{v:.0}"),
        Some(v) if v.abs() >= 100.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.2}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_ratios_and_failures() {
        let text = r#"
{"scenario":"fanin_q1","broker":"edgemq","variant":"sync","run":1,"ok":true,"msg_per_s":100,"lost":0,"broker_inflight":128,"broker_queue":1000}
{"scenario":"fanin_q1","broker":"edgemq","variant":"sync","run":2,"ok":true,"msg_per_s":300,"lost":2}
{"scenario":"fanin_q1","broker":"mosquitto","variant":"defaults","run":1,"ok":true,"msg_per_s":100,"lost":700,"broker_inflight":20,"broker_queue":1000}
{"scenario":"fanin_q1","broker":"mosquitto","variant":"defaults","run":2,"ok":false,"error":"boom","msg_per_s":1}
{"scenario":"fanin_q1","broker":"mosquitto","variant":"no-drop","run":1,"ok":true,"msg_per_s":400,"lost":0,"broker_inflight":128,"broker_queue":1000000}
not json
"#;
        let table = render(text);
        assert!(table.contains("| fanin_q1 | runs | 2/2 ok | 1/2 ok | 1/1 ok | | | |"), "{table}");
        assert!(
            table.contains(
                "| fanin_q1 | delivered msg/s | 200 | 100 | 400 | 2.00 | 0.50 | higher |"
            ),
            "{table}"
        );
        assert!(table.contains("| fanin_q1 | lost (max) | 2 | 700 | 0 |  |  | 0 |"), "{table}");
        assert!(
            table.contains("`max_inflight_messages` 20, `max_queued_messages` 1000;"),
            "{table}"
        );
        assert!(
            table.contains("`max_inflight_messages` 128, `max_queued_messages` 1000000,"),
            "{table}"
        );
        assert!(table.contains("`max_inflight` 128, `max_queued_messages` 1000;"), "{table}");
        assert!(table.contains("- fanin_q1 mosquitto (defaults) run 2: boom"), "{table}");
        assert!(table.contains("1 unreadable line(s) ignored."), "{table}");
    }

    #[test]
    fn subs100k_rows_take_the_worst_counters() {
        let text = r#"
{"scenario":"subs100k","broker":"edgemq","variant":"sync","run":1,"ok":true,"bytes_per_sub":250,"q0_msg_per_s":200000,"q0_lost":0,"q1_missing":0,"q1_duplicates":3}
{"scenario":"subs100k","broker":"edgemq","variant":"sync","run":2,"ok":true,"bytes_per_sub":260,"q0_msg_per_s":300000,"q0_lost":7,"q1_missing":0,"q1_duplicates":0}
{"scenario":"subs100k","broker":"mosquitto","variant":"defaults","run":1,"ok":true,"bytes_per_sub":320,"q0_msg_per_s":50000,"q0_lost":0,"q1_missing":1}
"#;
        let table = render(text);
        let row = |needle: &str| assert!(table.contains(needle), "{needle}\n{table}");
        row("| subs100k | RSS bytes per subscription (100,000 exact) | 255 | 320 | - | 0.80 |  | lower |");
        row("| subs100k | QoS 0 to random topics: delivered msg/s | 250000 | 50000 | - | 5.00 |  | higher |");
        // Loss at QoS 0 and QoS 1 duplicates are allowed: the worst run, no ratio.
        row("| subs100k | QoS 0 lost (max; allowed under overload) | 7 | 0 | - |  |  |  |");
        row("| subs100k | QoS 1 duplicates (max; allowed) | 3 | - | - |  |  |  |");
        row("| subs100k | QoS 1 missing (max) | 0 | 1 | - |  |  | 0 |");
    }

    #[test]
    fn scenarios_without_a_no_drop_run() {
        let text = r#"
{"scenario":"idle","broker":"edgemq","variant":"sync","run":1,"ok":true,"idle_cpu_pct":0,"idle_wakeups_per_s":0.2,"start_rss_kb":2048}
{"scenario":"idle","broker":"mosquitto","variant":"defaults","run":1,"ok":true,"idle_cpu_pct":0.4,"idle_wakeups_per_s":2,"start_rss_kb":4096}
{"scenario":"offline","broker":"edgemq","variant":"sync","run":1,"ok":true,"log_syncs":738,"messages_per_sync":67.75,"sigterm_exit":"exit status: 0","store_totals":"found"}
{"scenario":"offline","broker":"edgemq","variant":"batch","run":1,"ok":true,"sigterm_exit":"exit status: 0","store_totals":"missing"}
{"scenario":"offline","broker":"mosquitto","variant":"persistence","run":1,"ok":true}
"#;
        let table = render(text);
        assert!(table.contains("| idle | runs | 1/1 ok | 1/1 ok | - | | | |"), "{table}");
        assert!(
            table.contains("| idle | broker CPU % while idle | 0 | 0.40 | - | 0.00 |  | lower |"),
            "{table}"
        );
        assert!(
            table.contains(
                "| idle | broker wake-ups/s while idle | 0.20 | 2 | - | 0.10 |  | lower |"
            ),
            "{table}"
        );
        assert!(
            table.contains("| idle | broker RSS at start (MiB) | 2 | 4 | - | 0.50 |  | lower |"),
            "{table}"
        );
        assert!(
            table.contains(
                "| offline (edgemq sync) | messages per log sync | 67.75 | - | - |  |  |  |"
            ),
            "{table}"
        );
        assert!(
            table.contains("| offline (edgemq sync) | runs | 1/1 ok | 1/1 ok | - | | | |"),
            "{table}"
        );
        assert!(
            table.contains("- offline edgemq (batch) run 1: no `store totals` line in its log\n"),
            "{table}"
        );
        assert!(!table.contains("- offline edgemq (sync)"), "{table}");
    }
}
