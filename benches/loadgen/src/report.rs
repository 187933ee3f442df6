//! The markdown table of `run.sh`: medians per scenario and broker, edgemq / Mosquitto.
//!
//! Contract: reads the JSON lines written by `run`, ignores lines it cannot parse (and says
//! how many), never fails on missing metrics (the cell shows `-`). Performance metrics are
//! medians over successful runs; correctness counters (lost, duplicated, reordered, missing)
//! are the maximum over all runs, so one bad run cannot hide behind a good median. Runs with
//! `ok: false` are listed with their error under the table.

use std::fmt::Write as _;

use crate::json::{Object, Value};
use crate::scenario::ALL;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Better {
    Higher,
    Lower,
    /// A correctness counter: must be 0.
    Zero,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Aggregate {
    Median,
    Max,
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

const fn max(key: &'static str, label: &'static str) -> Metric {
    Metric { key, label, better: Better::Zero, aggregate: Aggregate::Max, scale: 1.0 }
}

const RSS: Metric = Metric {
    key: "peak_rss_kb",
    label: "broker peak RSS (MiB)",
    better: Better::Lower,
    aggregate: Aggregate::Median,
    scale: 1.0 / 1024.0,
};

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
        s if s.starts_with("fanin") => throughput("delivered msg/s"),
        s if s.starts_with("fanout") => throughput("deliveries/s (8 subs)"),
        s if s.starts_with("latency") => vec![
            median("p50_us", "p50 latency (µs)", Better::Lower),
            median("p99_us", "p99 latency (µs)", Better::Lower),
            median("p999_us", "p99.9 latency (µs)", Better::Lower),
            median("cpu_us_per_msg", "broker CPU µs/msg", Better::Lower),
            RSS,
            max("lost", "lost (max)"),
        ],
        "idle" => vec![
            median("bytes_per_conn", "RSS bytes per connection", Better::Lower),
            median("connect_per_s", "connects/s", Better::Higher),
            Metric {
                key: "rss_after_kb",
                label: "broker RSS with all connected (MiB)",
                better: Better::Lower,
                aggregate: Aggregate::Median,
                scale: 1.0 / 1024.0,
            },
            median("connected", "connections made", Better::Higher),
        ],
        "offline" => vec![
            median("enqueue_per_s", "enqueue msg/s (PUBACKed)", Better::Higher),
            median("drain_per_s", "drain msg/s", Better::Higher),
            median("drain_s", "drain time (s)", Better::Lower),
            median("first_message_ms", "first message after reconnect (ms)", Better::Lower),
            median("enqueue_cpu_us_per_msg", "broker CPU µs/msg enqueue", Better::Lower),
            median("drain_cpu_us_per_msg", "broker CPU µs/msg drain", Better::Lower),
            RSS,
            max("missing", "missing (max)"),
            max("duplicates", "duplicates (max)"),
            max("reordered", "out of order (max)"),
        ],
        _ => Vec::new(),
    }
}

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
    out.push_str("| scenario | metric | edgemq | mosquitto | edgemq/mosquitto | better |\n");
    out.push_str("|---|---|---:|---:|---:|---|\n");
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
                let ok = set.iter().filter(|r| r.get("ok") == Some(&Value::Bool(true))).count();
                format!("{ok}/{} ok", set.len())
            };
            let _ = writeln!(out, "| {name} | runs | {} | {} | | |", runs(&e), runs(&mosquitto));
            for metric in metrics(scenario) {
                let a = aggregate(&e, &metric);
                let b = aggregate(&mosquitto, &metric);
                let ratio = match (a, b) {
                    (Some(a), Some(b)) if metric.better != Better::Zero && b != 0.0 => {
                        format!("{:.2}", a / b)
                    }
                    _ => String::new(),
                };
                let better = match metric.better {
                    Better::Higher => "higher",
                    Better::Lower => "lower",
                    Better::Zero => "0",
                };
                let _ = writeln!(
                    out,
                    "| {name} | {} | {} | {} | {ratio} | {better} |",
                    metric.label,
                    cell(a),
                    cell(b)
                );
            }
        }
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
{"scenario":"fanin_q1","broker":"edgemq","variant":"sync","run":1,"ok":true,"msg_per_s":100,"lost":0}
{"scenario":"fanin_q1","broker":"edgemq","variant":"sync","run":2,"ok":true,"msg_per_s":300,"lost":2}
{"scenario":"fanin_q1","broker":"mosquitto","variant":"default","run":1,"ok":true,"msg_per_s":100,"lost":0}
{"scenario":"fanin_q1","broker":"mosquitto","variant":"default","run":2,"ok":false,"error":"boom","msg_per_s":1}
not json
"#;
        let table = render(text);
        assert!(table.contains("| fanin_q1 | runs | 2/2 ok | 1/2 ok | | |"), "{table}");
        assert!(
            table.contains("| fanin_q1 | delivered msg/s | 200 | 100 | 2.00 | higher |"),
            "{table}"
        );
        assert!(table.contains("| fanin_q1 | lost (max) | 2 | 0 |  | 0 |"), "{table}");
        assert!(table.contains("- fanin_q1 mosquitto (default) run 2: boom"), "{table}");
        assert!(table.contains("1 unreadable line(s) ignored."), "{table}");
    }
}
