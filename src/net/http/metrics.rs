//! `/metrics`: [`Metrics`] in the Prometheus text exposition format (version 0.0.4): for each
//! metric a `# HELP` and a `# TYPE` line, then its samples. The names and help texts come from
//! the broker's one table of figures ([`FIGURES`]), the same one `$SYS` is published from.

use std::fmt::Write;

use crate::broker::{BridgeMetrics, Kind, Metrics, FIGURES};

/// The whole exposition.
pub fn render(m: &Metrics) -> String {
    let mut out = String::with_capacity(8 * 1024);
    family(&mut out, "edgemq_build_info", "The running edgemq version (always 1).", Kind::Gauge);
    let _ = writeln!(out, "edgemq_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"));
    family(&mut out, "edgemq_uptime_seconds", "Seconds since the broker started.", Kind::Gauge);
    let _ = writeln!(out, "edgemq_uptime_seconds {}", m.uptime.as_secs());
    for figure in FIGURES {
        let (Some(name), Some(value)) = (figure.metric, (figure.value)(m)) else { continue };
        family(&mut out, name, figure.help, figure.kind);
        let _ = writeln!(out, "{name} {}", number(value));
    }
    type Read = fn(&BridgeMetrics) -> u64;
    let bridges: [(&str, &str, Kind, Read); 3] = [
        ("edgemq_bridge_connected", "1 while the bridge's link is up.", Kind::Gauge, |b| {
            u64::from(b.connected)
        }),
        (
            "edgemq_bridge_queued",
            "Messages queued for the bridge (in flight included).",
            Kind::Gauge,
            |b| b.queued,
        ),
        (
            "edgemq_bridge_queued_bytes",
            "Bytes of the messages queued for the bridge.",
            Kind::Gauge,
            |b| b.queued_bytes,
        ),
    ];
    if !m.bridges.is_empty() {
        for (name, help, kind, read) in bridges {
            family(&mut out, name, help, kind);
            for bridge in &m.bridges {
                // Bridge names are ASCII letters, digits, '_' and '-' (config/bridge.rs):
                // nothing to escape in a label value.
                let _ = writeln!(out, "{name}{{bridge=\"{}\"}} {}", bridge.name, read(bridge));
            }
        }
    }
    out
}

fn family(out: &mut String, name: &str, help: &str, kind: Kind) {
    // HELP text escapes backslashes and newlines; ours have neither, but stay safe.
    let help = help.replace('\\', "\\\\").replace('\n', "\\n");
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {}", kind.name());
}

/// Integers without a fraction, other values as Rust prints them (both valid Go floats).
fn number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 9.0e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn every_sample_follows_its_help_and_type() {
        let m = Metrics {
            clients_connected: 2,
            publish_received: 7,
            store_commit_p99: Duration::from_micros(2500),
            bridges: vec![BridgeMetrics {
                name: "cloud".into(),
                connected: true,
                queued: 4,
                queued_bytes: 99,
                dropped: 0,
            }],
            ..Metrics::default()
        };
        let text = render(&m);
        assert!(text.contains(
            "# HELP edgemq_clients_connected Clients connected now (bridge links included).\n\
             # TYPE edgemq_clients_connected gauge\nedgemq_clients_connected 2\n"
        ));
        assert!(text.contains(
            "# TYPE edgemq_publish_messages_received_total counter\n\
                               edgemq_publish_messages_received_total 7\n"
        ));
        assert!(text.contains("edgemq_store_commit_p99_seconds 0.0025\n"), "{text}");
        assert!(text.contains("edgemq_bridge_queued{bridge=\"cloud\"} 4\n"));
        assert!(text.contains("edgemq_store_writable 1\n"));
        // RSS unknown: not reported rather than reported as 0.
        assert!(!text.contains("edgemq_resident_memory_bytes"));
        let mut last_family = "";
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                last_family = rest.split(' ').next().unwrap();
            } else if !line.starts_with('#') {
                assert!(line.starts_with(last_family), "{line} outside its family");
            }
        }
    }
}
