//! Interoperability with the Eclipse paho-mqtt Python client (`tests/clients/paho_check.py`),
//! run with Debian's `/usr/bin/python3` and `python3-paho-mqtt`.
//!
//! The script connects, subscribes, publishes QoS 0/1/2, checks retained messages (and a user
//! property over MQTT 5.0), and exits non-zero with a `FAIL:` line on any mismatch; it bounds
//! every wait itself, and the test bounds the whole run.
//!
//! Missing paho: skipped locally with a loud message, a failure under `CI=true`.
//! Reference mode (`EDGEMQ_TEST_REFERENCE=mosquitto`): all tests pass against Mosquitto 2.0.11
//! except `paho_v5_topic_aliases_from_the_broker_and_shared_group`, skipped: Mosquitto sends no
//! topic aliases.

mod common;

use common::{require_paho, run_ok, skip_in_reference, timeout, Broker, PYTHON};
use std::path::Path;
use std::process::Command;

fn paho_check(protocol: &str) {
    if !require_paho() {
        return;
    }
    let broker = Broker::start();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/paho_check.py");
    let mut cmd = Command::new(PYTHON);
    cmd.arg(&script)
        .args(["--port", &broker.port().to_string()])
        .args(["--protocol", protocol])
        .args(["--timeout", &timeout().as_secs_f64().to_string()]);
    // The script makes about a dozen bounded waits; a whole run takes well under a second.
    let stdout = run_ok(cmd, timeout() * 3);
    assert!(
        stdout.iter().any(|l| l.starts_with("OK")),
        "no OK line from the paho script: {stdout:?}"
    );
}

#[test]
fn paho_v31() {
    paho_check("31");
}

#[test]
fn paho_v311() {
    paho_check("311");
}

#[test]
fn paho_v5() {
    paho_check("5");
}

/// Issue 13: a paho v5 subscriber announcing Topic Alias Maximum 3 gets aliases it can resolve
/// (LRU over four topics) and two paho clients share a `$share/` group
/// (`tests/clients/paho_alias.py`).
#[test]
fn paho_v5_topic_aliases_from_the_broker_and_shared_group() {
    if skip_in_reference("Mosquitto 2.0.11 assigns no topic aliases on what it sends") {
        return;
    }
    if !require_paho() {
        return;
    }
    let broker = Broker::start();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/paho_alias.py");
    let mut cmd = Command::new(PYTHON);
    cmd.arg(&script)
        .args(["--port", &broker.port().to_string()])
        .args(["--max", "3"])
        .args(["--timeout", &timeout().as_secs_f64().to_string()]);
    let stdout = run_ok(cmd, timeout() * 3);
    assert!(
        stdout.iter().any(|l| l.starts_with("OK") && !l.contains(", 0 by alias")),
        "no OK line from the paho script: {stdout:?}"
    );
}
