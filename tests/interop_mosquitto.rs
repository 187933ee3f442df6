//! Interoperability with the Mosquitto command-line clients (`mosquitto_pub`, `mosquitto_sub`)
//! over MQTT 3.1, 3.1.1 and 5.0.
//!
//! A subscriber runs as `stdbuf -oL mosquitto_sub -d ...` so its output is line-buffered and
//! the test can wait for its "Subscribed" line before publishing (no sleeps). Every
//! `mosquitto_sub` is bounded by `-C count` and `-W seconds`, and every process by a deadline.
//! Messages are printed with `-F 'MSG|%t|%q|%r|%p'` so topic, QoS, retain flag and payload are
//! all checked.
//!
//! Missing clients: skipped locally with a loud message, a failure under `CI=true`.
//! Reference mode (`EDGEMQ_TEST_REFERENCE=mosquitto`): all tests pass against Mosquitto 2.0.11.

mod common;

use common::{require_tool, run_ok, timeout, Broker, Process};
use std::process::Command;

/// Whether the clients (and `stdbuf`, from coreutils) are installed.
fn clients_available() -> bool {
    require_tool("mosquitto_sub") && require_tool("mosquitto_pub") && require_tool("stdbuf")
}

/// `-W` for mosquitto_sub: the harness timeout in whole seconds.
fn wait_secs() -> String {
    timeout().as_secs().max(1).to_string()
}

/// One message as printed by `-F 'MSG|%t|%q|%r|%p'`.
#[derive(Debug, PartialEq, Eq)]
struct Received {
    topic: String,
    qos: u8,
    retain: bool,
    payload: String,
}

fn msg(topic: &str, qos: u8, retain: bool, payload: &str) -> Received {
    Received { topic: topic.to_string(), qos, retain, payload: payload.to_string() }
}

/// A running `mosquitto_sub`, already subscribed when returned.
struct Sub(Process);

impl Sub {
    /// Subscribes to `topics` at `qos` with protocol `version` (`mqttv31`, `mqttv311`,
    /// `mqttv5`); exits after `count` messages.
    fn start(
        broker: &Broker,
        id: &str,
        version: &str,
        qos: u8,
        topics: &[&str],
        count: usize,
    ) -> Sub {
        let mut cmd = Command::new("stdbuf");
        cmd.args(["-oL", "mosquitto_sub", "-h", "127.0.0.1", "-p"])
            .arg(broker.port().to_string())
            .args(["-V", version, "-i", id, "-q", &qos.to_string(), "-d"])
            .args(["-C", &count.to_string(), "-W", &wait_secs()])
            .args(["-F", "MSG|%t|%q|%r|%p"]);
        for t in topics {
            cmd.args(["-t", t]);
        }
        let mut p = Process::spawn(cmd);
        p.wait_for_line(|l| l.starts_with("Subscribed (mid"));
        Sub(p)
    }

    /// Waits for the exit (after `count` messages) and returns the messages in order.
    fn messages(mut self) -> Vec<Received> {
        let lines = self.0.expect_success(timeout() + timeout());
        lines
            .iter()
            .filter_map(|l| l.strip_prefix("MSG|"))
            .map(|l| {
                let mut f = l.splitn(4, '|');
                let mut next = || f.next().unwrap_or_else(|| panic!("bad output line {l:?}"));
                let topic = next().to_string();
                let qos = next().parse().unwrap_or_else(|_| panic!("bad QoS in {l:?}"));
                let retain = next() == "1";
                Received { topic, qos, retain, payload: next().to_string() }
            })
            .collect()
    }
}

/// `mosquitto_pub` with the given extra arguments; asserts it succeeds.
fn publish(broker: &Broker, version: &str, args: &[&str]) {
    let mut cmd = Command::new("mosquitto_pub");
    cmd.args(["-h", "127.0.0.1", "-p"])
        .arg(broker.port().to_string())
        .args(["-V", version])
        .args(args);
    run_ok(cmd, timeout());
}

/// Publishes QoS 0, 1 and 2 with `version` and receives them with a QoS 2 subscriber of the
/// same version: each arrives once, at the QoS it was published with.
fn qos_round_trip(version: &str) {
    if !clients_available() {
        return;
    }
    let broker = Broker::start();
    let sub = Sub::start(&broker, "sub", version, 2, &["interop/#"], 3);
    for qos in ["0", "1", "2"] {
        let topic = format!("interop/q{qos}");
        publish(
            &broker,
            version,
            &["-i", "pub", "-q", qos, "-t", &topic, "-m", &format!("payload {qos}")],
        );
    }
    assert_eq!(
        sub.messages(),
        [
            msg("interop/q0", 0, false, "payload 0"),
            msg("interop/q1", 1, false, "payload 1"),
            msg("interop/q2", 2, false, "payload 2"),
        ]
    );
}

#[test]
fn mosquitto_clients_v31_qos_0_1_2() {
    qos_round_trip("mqttv31");
}

#[test]
fn mosquitto_clients_v311_qos_0_1_2() {
    qos_round_trip("mqttv311");
}

#[test]
fn mosquitto_clients_v5_qos_0_1_2() {
    qos_round_trip("mqttv5");
}

#[test]
fn mosquitto_clients_qos_downgraded_to_subscription() {
    if !clients_available() {
        return;
    }
    let broker = Broker::start();
    let sub = Sub::start(&broker, "sub", "mqttv5", 1, &["down/#"], 2);
    publish(&broker, "mqttv311", &["-q", "2", "-t", "down/a", "-m", "two"]);
    publish(&broker, "mqttv31", &["-q", "0", "-t", "down/b", "-m", "zero"]);
    assert_eq!(sub.messages(), [msg("down/a", 1, false, "two"), msg("down/b", 0, false, "zero")]);
}

#[test]
fn mosquitto_clients_across_versions() {
    if !clients_available() {
        return;
    }
    let broker = Broker::start();
    let v31 = Sub::start(&broker, "sub31", "mqttv31", 1, &["x/#"], 2);
    let v5 = Sub::start(&broker, "sub5", "mqttv5", 1, &["x/#"], 2);
    publish(&broker, "mqttv5", &["-q", "1", "-t", "x/from5", "-m", "five"]);
    publish(&broker, "mqttv31", &["-q", "1", "-t", "x/from31", "-m", "three-one"]);
    let expected = [msg("x/from5", 1, false, "five"), msg("x/from31", 1, false, "three-one")];
    assert_eq!(v31.messages(), expected);
    assert_eq!(v5.messages(), expected);
}

#[test]
fn mosquitto_clients_wildcards() {
    if !clients_available() {
        return;
    }
    let broker = Broker::start();
    let sub = Sub::start(&broker, "sub", "mqttv311", 0, &["sensors/+/temp", "alerts/#"], 3);
    for topic in
        ["sensors/a/temp", "sensors/a/b/temp", "alerts", "other/x", "sensors/temp", "alerts/fire/1"]
    {
        publish(&broker, "mqttv311", &["-q", "1", "-t", topic, "-m", topic]);
    }
    // Published in order, each acknowledged before the next: a wrongly matched topic would
    // show up among the first three.
    assert_eq!(
        sub.messages(),
        [
            msg("sensors/a/temp", 0, false, "sensors/a/temp"),
            msg("alerts", 0, false, "alerts"),
            msg("alerts/fire/1", 0, false, "alerts/fire/1"),
        ]
    );
}

fn retained(version: &str) {
    if !clients_available() {
        return;
    }
    let broker = Broker::start();
    publish(&broker, version, &["-q", "1", "-r", "-t", "ret/a", "-m", "first"]);
    publish(&broker, version, &["-q", "1", "-r", "-t", "ret/a", "-m", "kept"]);
    let sub = Sub::start(&broker, "late", version, 1, &["ret/#"], 1);
    assert_eq!(sub.messages(), [msg("ret/a", 1, true, "kept")]);

    // Delete it (-n: zero-length payload), then a new subscriber sees only live traffic.
    publish(&broker, version, &["-q", "1", "-r", "-t", "ret/a", "-n"]);
    let sub = Sub::start(&broker, "later", version, 1, &["ret/#"], 1);
    publish(&broker, version, &["-q", "1", "-t", "ret/a", "-m", "live"]);
    assert_eq!(sub.messages(), [msg("ret/a", 1, false, "live")]);
}

#[test]
fn mosquitto_clients_retained_v311() {
    retained("mqttv311");
}

#[test]
fn mosquitto_clients_retained_v5() {
    retained("mqttv5");
}

#[test]
fn readme_scenario_pub_qos2_sub_hash_v5() {
    // The README's first example: `mosquitto_sub -t '#' -v -V mqttv5` in one terminal,
    // `mosquitto_pub -q 2 ...` in another (default protocol: 3.1.1).
    if !clients_available() {
        return;
    }
    let broker = Broker::start();
    let mut cmd = Command::new("stdbuf");
    cmd.args(["-oL", "mosquitto_sub", "-h", "127.0.0.1", "-p"])
        .arg(broker.port().to_string())
        .args(["-t", "#", "-v", "-V", "mqttv5"])
        .args(["-d", "-C", "1", "-W", &wait_secs()]); // -d: to see the SUBACK; -C/-W: bounded
    let mut sub = Process::spawn(cmd);
    sub.wait_for_line(|l| l.starts_with("Subscribed (mid"));
    publish(&broker, "mqttv311", &["-q", "2", "-t", "gateway/line1/temp", "-m", "21.5"]);
    let lines = sub.expect_success(timeout() + timeout());
    assert!(
        lines.iter().any(|l| l == "gateway/line1/temp 21.5"),
        "mosquitto_sub -v output: {lines:?}"
    );
}

/// Issue 13: three `mosquitto_sub` in one shared group share the load: each message goes to
/// exactly one of them, in turn (`mqtt.shared_policy = "round_robin"`, the default), while a
/// plain subscriber beside them gets every message. Also for 3.1.1 clients, as in Mosquitto.
fn shared_group_shares_the_load(version: &str) {
    if !clients_available() {
        return;
    }
    let broker = Broker::start();
    let members: Vec<Sub> = (0..3)
        .map(|i| Sub::start(&broker, &format!("member{i}"), version, 1, &["$share/g/work/+"], 3))
        .collect();
    let all = Sub::start(&broker, "all", version, 1, &["work/+"], 9);
    // Nine QoS 1 messages, payloads 0..8: a member given every message would print 0, 1, 2
    // like the others, so duplicates show.
    for i in 0..9 {
        let payload = i.to_string();
        publish(&broker, version, &["-i", "pub", "-q", "1", "-t", "work/job", "-m", &payload]);
    }
    let mut payloads = Vec::new();
    for (i, member) in members.into_iter().enumerate() {
        let got = member.messages();
        assert_eq!(got.len(), 3, "member {i}: {got:?}");
        payloads.extend(got.into_iter().map(|m| {
            assert_eq!((m.topic.as_str(), m.qos, m.retain), ("work/job", 1, false));
            m.payload
        }));
    }
    payloads.sort();
    let expected: Vec<String> = (0..9).map(|i| i.to_string()).collect();
    assert_eq!(payloads, expected, "each message to exactly one member");
    assert_eq!(all.messages().len(), 9, "the plain subscriber gets its own copy of each");
}

#[test]
fn mosquitto_clients_shared_subscription_v5() {
    shared_group_shares_the_load("mqttv5");
}

#[test]
fn mosquitto_clients_shared_subscription_v311() {
    shared_group_shares_the_load("mqttv311");
}
