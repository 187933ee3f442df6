//! Monitoring (issue 14): the `$SYS` tree and the `[http]` listener, against the real binary.
//!
//! - `$SYS`: a client subscribed to `$SYS/#` sees the counts move as clients connect, publish
//!   and queue; with `sys.interval = 0` nothing is published; values are retained.
//! - HTTP: `/metrics` is read with curl (Debian `curl`) and parsed with the Prometheus text
//!   parser of Python's `prometheus_client` (Debian `python3-prometheus-client`); `/health`
//!   answers 200, and 503 with the reason while the store refuses writes (`sqlite.max_db_size`
//!   full); hostile HTTP clients (a slowloris that never finishes its headers, a huge header,
//!   garbage, more connections than allowed) sit beside a healthy MQTT pair and a healthy HTTP
//!   client, which are served all along.
//!
//! Tests needing curl or the Python parser fail when `CI=true` and they are missing, and skip
//! with a message otherwise. Waits are deadlines ([`common::timeout`]), never timed assertions.
//! Reference mode (`EDGEMQ_TEST_REFERENCE=mosquitto`): skipped, these are edgemq's own keys.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::packets::{kind, prop, Ack, Connect, Property, Publish};
use common::{
    assert_broker_serves, http_addr, require_tool_from, scaled, skip_in_reference, timeout, Broker,
    BrokerBuilder, TestClient,
};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn sys_broker(interval: i64) -> BrokerBuilder {
    BrokerBuilder::new()
        .set("sys", "interval", interval)
        .mqtt("max_connections_per_address", 0)
        .mqtt("max_pending_connections", 0)
}

/// Reads `$SYS` publications until `topic` has a value `pred` accepts; returns every value
/// seen last (the whole tree as it stood) and the accepted one.
fn wait_sys(
    client: &mut TestClient,
    seen: &mut HashMap<String, String>,
    topic: &str,
    what: &str,
    pred: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + timeout();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "{topic}: never {what}; last values: {seen:#?}");
        let packet = match client.try_read_packet(left) {
            Ok(packet) => packet,
            Err(end) => panic!("{topic}: connection ended ({end:?}) before {what}"),
        };
        if packet.kind() != kind::PUBLISH {
            continue;
        }
        let p = Publish::parse(&packet, client.is_v5());
        let value = String::from_utf8_lossy(&p.payload).to_string();
        seen.insert(p.topic.clone(), value.clone());
        if p.topic == topic && pred(&value) {
            return value;
        }
    }
}

fn number(text: &str) -> f64 {
    text.trim().parse().unwrap_or(f64::NAN)
}

fn http_broker() -> BrokerBuilder {
    sys_broker(1).set("http", "bind", "127.0.0.1:0")
}

/// `curl -s -i` of `url` with `args`: (status, headers and body).
fn curl(addr: SocketAddr, path: &str, args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "-i", "--max-time"])
        .arg(scaled(Duration::from_secs(10)).as_secs().max(1).to_string())
        .args(args)
        .arg(format!("http://{addr}{path}"))
        .stdin(Stdio::null())
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, text)
}

fn body(response: &str) -> &str {
    response.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

/// Parses a Prometheus text exposition with `prometheus_client.parser`; returns each sample
/// as `name{labels}` -> value, and each family's type.
fn prometheus_parse(text: &str) -> (HashMap<String, f64>, HashMap<String, String>) {
    const SCRIPT: &str = r#"
import sys
from prometheus_client.parser import text_string_to_metric_families
for family in text_string_to_metric_families(sys.stdin.read()):
    print("family", family.name, family.type, family.documentation != "")
    for s in family.samples:
        labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
        print("sample", s.name + ("{" + labels + "}" if labels else ""), repr(float(s.value)))
"#;
    let out = common::python_with_stdin(SCRIPT, text.as_bytes());
    assert!(
        out.status.success(),
        "prometheus_client could not parse /metrics: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut samples = HashMap::new();
    let mut types = HashMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let words: Vec<&str> = line.split(' ').collect();
        match words.as_slice() {
            ["family", name, kind, has_help] => {
                assert_eq!(*has_help, "True", "{name} has no HELP");
                types.insert(name.to_string(), kind.to_string());
            }
            ["sample", name, value] => {
                samples.insert(name.to_string(), number(value));
            }
            _ => panic!("unexpected parser line {line:?}"),
        }
    }
    (samples, types)
}

fn require_prometheus_parser() -> bool {
    let ok = Command::new(common::PYTHON)
        .args(["-c", "import prometheus_client.parser"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    ok || {
        let msg = "prometheus_client for /usr/bin/python3 not found: install \
                   python3-prometheus-client (apt-get install python3-prometheus-client)";
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{msg} (CI=true, so a missing client fails the test)");
        }
        eprintln!("SKIPPED: {msg}");
        false
    }
}

// ---------------------------------------------------------------------------------------------
// $SYS
// ---------------------------------------------------------------------------------------------

#[test]
fn sys_counts_move_as_clients_connect_publish_and_queue() {
    if skip_in_reference("edgemq's [sys] keys") {
        return;
    }
    let broker = sys_broker(1).start();
    let mut watcher = TestClient::v311(&broker, "sys-watcher");
    watcher.subscribe("$SYS/#", 0);
    let mut seen = HashMap::new();
    let version = wait_sys(&mut watcher, &mut seen, "$SYS/broker/version", "published", |_| true);
    assert!(version.starts_with("edgemq version "), "{version}");
    wait_sys(&mut watcher, &mut seen, "$SYS/broker/clients/connected", "1", |v| v == "1");

    // A persistent subscriber goes away: its QoS 1 messages queue in the store.
    let mut parked = TestClient::handshake(&broker, Connect::v311("sys-parked").clean(false));
    parked.subscribe("sys/q", 1);
    parked.disconnect();
    let mut publisher = TestClient::v311(&broker, "sys-pub");
    for i in 0..5 {
        publisher.publish("sys/q", format!("m{i}").as_bytes(), 1, false);
    }
    let at_least = |n: f64| move |v: &str| number(v) >= n;
    wait_sys(&mut watcher, &mut seen, "$SYS/broker/store/queued", "5", |v| v == "5");
    wait_sys(&mut watcher, &mut seen, "$SYS/broker/clients/connected", "2", |v| v == "2");
    wait_sys(&mut watcher, &mut seen, "$SYS/broker/clients/disconnected", "1", |v| v == "1");
    wait_sys(&mut watcher, &mut seen, "$SYS/broker/clients/maximum", ">= 2", at_least(2.0));
    wait_sys(
        &mut watcher,
        &mut seen,
        "$SYS/broker/publish/messages/received",
        ">= 5",
        at_least(5.0),
    );
    wait_sys(&mut watcher, &mut seen, "$SYS/broker/store/commits", "> 0", at_least(1.0));
    wait_sys(&mut watcher, &mut seen, "$SYS/broker/store/fsyncs", "> 0", at_least(1.0));
    wait_sys(&mut watcher, &mut seen, "$SYS/broker/bytes/received", "> 0", at_least(50.0));
    wait_sys(&mut watcher, &mut seen, "$SYS/broker/store/db_size", "> 0", at_least(1.0));
    wait_sys(&mut watcher, &mut seen, "$SYS/broker/subscriptions/count", "2", |v| v == "2");
    let uptime = wait_sys(&mut watcher, &mut seen, "$SYS/broker/uptime", "in seconds", |v| {
        v.ends_with(" seconds")
    });
    assert!(number(uptime.trim_end_matches(" seconds")) >= 0.0, "{uptime}");
    // The load averages come from the second publication on.
    wait_sys(&mut watcher, &mut seen, "$SYS/broker/load/publish/received/1min", "> 0", |v| {
        number(v) > 0.0
    });

    // The subscriber comes back and drains its queue: the store empties.
    let mut back = TestClient::handshake(&broker, Connect::v311("sys-parked").clean(false));
    for _ in 0..5 {
        let packet = back.read_expected(kind::PUBLISH);
        let p = Publish::parse(&packet, false);
        back.send(&common::packets::puback(p.packet_id.expect("QoS 1")));
    }
    wait_sys(&mut watcher, &mut seen, "$SYS/broker/store/queued", "0", |v| v == "0");
    wait_sys(&mut watcher, &mut seen, "$SYS/broker/clients/disconnected", "0", |v| v == "0");

    // Every Mosquitto topic the issue names was published at least once.
    for topic in [
        "uptime",
        "clients/total",
        "clients/expired",
        "messages/received",
        "messages/sent",
        "messages/stored",
        "publish/messages/sent",
        "publish/messages/dropped",
        "bytes/sent",
        "retained messages/count",
        "store/messages/count",
        "store/messages/bytes",
        "heap/current",
        "store/bytes",
        "store/ring_used",
        "store/dropped",
        "store/evicted",
        "store/expired",
        "store/commit_ms_p99",
        "load/messages/received/5min",
        "load/bytes/sent/15min",
    ] {
        assert!(seen.contains_key(&format!("$SYS/broker/{topic}")), "{topic} missing: {seen:#?}");
    }

    // Retained: a late subscriber gets the current values at once, with RETAIN set.
    let mut late = TestClient::v311(&broker, "sys-late");
    late.subscribe("$SYS/broker/version", 0);
    let p = Publish::parse(&late.read_expected(kind::PUBLISH), false);
    assert_eq!(p.topic, "$SYS/broker/version");
    assert!(p.retain, "$SYS values are retained, as in Mosquitto");
}

#[test]
fn sys_interval_zero_publishes_nothing() {
    if skip_in_reference("edgemq's [sys] keys") {
        return;
    }
    let broker = sys_broker(0).start();
    let mut watcher = TestClient::v311(&broker, "sys-off");
    watcher.subscribe("$SYS/#", 0);
    let mut publisher = TestClient::v311(&broker, "sys-off-pub");
    publisher.publish("a/b", b"x", 1, false);
    watcher.expect_no_packet(scaled(Duration::from_millis(2500)));
    assert_broker_serves(&broker);
}

// ---------------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------------

#[test]
fn metrics_parse_as_prometheus_text_and_match_what_happened() {
    if skip_in_reference("edgemq's [http] listener")
        || !require_tool_from("curl", "curl")
        || !require_prometheus_parser()
    {
        return;
    }
    let broker = http_broker().start();
    let addr = http_addr(&broker);
    let mut sub = TestClient::v311(&broker, "m-sub");
    sub.subscribe("m/t", 1);
    let mut publisher = TestClient::v311(&broker, "m-pub");
    for i in 0..3 {
        publisher.publish("m/t", format!("{i}").as_bytes(), 1, false);
        sub.read_expected(kind::PUBLISH);
    }
    let (status, response) = curl(addr, "/metrics", &[]);
    assert_eq!(status, 200, "{response}");
    assert!(response.contains("Content-Type: text/plain; version=0.0.4"), "{response}");
    let (samples, types) = prometheus_parse(body(&response));
    let get = |name: &str| *samples.get(name).unwrap_or_else(|| panic!("{name} missing"));
    assert_eq!(get("edgemq_clients_connected"), 2.0);
    assert_eq!(get("edgemq_publish_messages_received_total"), 3.0);
    assert!(get("edgemq_publish_messages_sent_total") >= 3.0);
    assert_eq!(get("edgemq_subscriptions"), 1.0);
    assert!(get("edgemq_bytes_received_total") > 0.0);
    assert!(get("edgemq_messages_received_total") >= 6.0, "CONNECT, SUBSCRIBE, PUBLISH...");
    assert_eq!(get("edgemq_store_writable"), 1.0);
    assert!(get("edgemq_uptime_seconds") >= 0.0);
    assert_eq!(get("edgemq_build_info{version=\"0.1.0\"}"), 1.0);
    // The parser strips `_total` from counter family names.
    assert_eq!(types.get("edgemq_publish_messages_received").map(String::as_str), Some("counter"));
    assert_eq!(types.get("edgemq_clients_connected").map(String::as_str), Some("gauge"));
    if broker.rss_kib().is_some() {
        assert!(get("edgemq_resident_memory_bytes") > 1_000_000.0);
    }

    // The same figures as $SYS: one more client shows in both.
    let _third = TestClient::v311(&broker, "m-third");
    let (_, response) = curl(addr, "/metrics", &[]);
    let (samples, _) = prometheus_parse(body(&response));
    assert_eq!(samples.get("edgemq_clients_connected"), Some(&3.0));
    let mut watcher = TestClient::v311(&broker, "m-watch");
    watcher.subscribe("$SYS/broker/clients/connected", 0);
    let mut seen = HashMap::new();
    wait_sys(&mut watcher, &mut seen, "$SYS/broker/clients/connected", "4", |v| v == "4");
}

#[test]
fn health_and_unknown_routes_answer_with_the_right_status() {
    if skip_in_reference("edgemq's [http] listener") || !require_tool_from("curl", "curl") {
        return;
    }
    let broker = http_broker().start();
    let addr = http_addr(&broker);
    let (status, response) = curl(addr, "/health", &[]);
    assert_eq!((status, body(&response)), (200, "ok\n"), "{response}");
    assert!(response.contains("Connection: close"), "{response}");
    assert_eq!(curl(addr, "/nope", &[]).0, 404);
    assert_eq!(curl(addr, "/metrics/x", &[]).0, 404);
    let (status, response) = curl(addr, "/metrics", &["-X", "POST", "-d", "x=1"]);
    assert_eq!(status, 405, "{response}");
    assert!(response.contains("Allow: GET, HEAD"), "{response}");
    let (status, response) = curl(addr, "/health", &["-I"]);
    assert_eq!(status, 200, "{response}");
    assert!(response.contains("Content-Length: 3"), "{response}");
    assert_broker_serves(&broker);
}

/// A v5 persistent session with `filter`, then gone: its QoS 1 messages go to the store.
fn park_v5(broker: &Broker, client_id: &str, filter: &str) {
    let connect = Connect::v5(client_id)
        .clean(false)
        .prop(Property::u32(prop::SESSION_EXPIRY_INTERVAL, 3600));
    let mut client = TestClient::handshake(broker, connect);
    client.subscribe(filter, 1);
    client.disconnect();
}

/// Publishes QoS 1 from a v5 client; the PUBACK reason code.
fn publish_reason(client: &mut TestClient, topic: &str, payload: &[u8]) -> u8 {
    let id = client.next_id();
    client.send(&Publish::new(topic, payload).qos(1, id).v5().build());
    let ack = Ack::parse(&client.read_expected(kind::PUBACK), kind::PUBACK);
    assert_eq!(ack.packet_id, id);
    ack.reason
}

#[test]
fn health_turns_503_with_the_reason_while_the_store_refuses_writes() {
    if skip_in_reference("edgemq's [http] listener") || !require_tool_from("curl", "curl") {
        return;
    }
    let broker = http_broker().set("sqlite", "max_db_size", "64KB").start();
    let addr = http_addr(&broker);
    park_v5(&broker, "h-parked", "h/#");
    let mut publisher = TestClient::v5(&broker, "h-pub");
    let payload = vec![b'f'; 1000];
    let mut refused = false;
    for _ in 0..400 {
        match publish_reason(&mut publisher, "h/t", &payload) {
            0x00 => {}
            0x97 => {
                refused = true;
                break;
            }
            other => panic!("PUBACK reason {other:#04x}"),
        }
    }
    assert!(refused, "a 64KB store never filled up");
    let (status, response) = curl(addr, "/health", &[]);
    assert_eq!(status, 503, "{response}");
    assert!(body(&response).contains("full"), "the reason names a full store: {response}");
    let (_, metrics) = curl(addr, "/metrics", &[]);
    assert!(body(&metrics).contains("\nedgemq_store_writable 0\n"), "{metrics}");

    // The subscriber drains the store: writes resume by themselves, /health follows.
    let connect = Connect::v5("h-parked")
        .clean(false)
        .prop(Property::u32(prop::SESSION_EXPIRY_INTERVAL, 3600));
    let mut sub = TestClient::handshake(&broker, connect);
    let deadline = Instant::now() + timeout();
    loop {
        match sub.try_read_packet(scaled(Duration::from_millis(200))) {
            Ok(packet) if packet.kind() == kind::PUBLISH => {
                let p = Publish::parse(&packet, true);
                sub.send(&common::packets::puback(p.packet_id.expect("QoS 1")));
                continue;
            }
            Ok(_) => continue,
            Err(_) => {}
        }
        // Writes are tried again by a publisher: the first commit that stores a message
        // ends the episode.
        if publish_reason(&mut publisher, "h/t", b"probe") == 0x00
            && curl(addr, "/health", &[]).0 == 200
        {
            break;
        }
        assert!(Instant::now() < deadline, "/health never came back to 200");
    }
}

/// Reads from `stream` until EOF or `within`; what arrived and whether it was closed.
fn read_until_closed(stream: &mut TcpStream, within: Duration) -> (Vec<u8>, bool) {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return (got, false);
        }
        stream.set_read_timeout(Some(left)).expect("read timeout");
        match stream.read(&mut buf) {
            Ok(0) => return (got, true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return (got, true),
            Err(_) => return (got, false),
        }
    }
}

#[test]
fn hostile_http_clients_are_bounded_beside_healthy_mqtt_and_http_clients() {
    if skip_in_reference("edgemq's [http] listener") || !require_tool_from("curl", "curl") {
        return;
    }
    let http_timeout = scaled(Duration::from_secs(2));
    let broker = http_broker()
        .set("http", "max_connections", 6)
        .set("http", "max_request_size", "2KB")
        .set("http", "timeout", format!("{}ms", http_timeout.as_millis()))
        .start();
    let addr = http_addr(&broker);
    let mut sub = TestClient::v311(&broker, "x-sub");
    sub.subscribe("x/t", 1);
    let mut publisher = TestClient::v311(&broker, "x-pub");

    // Garbage: an MQTT CONNECT on the HTTP port gets 400 and the connection ends.
    let mut garbage = TcpStream::connect(addr).expect("connect");
    garbage.write_all(&Connect::v311("wrong-port").build()).expect("send");
    let (got, closed) = read_until_closed(&mut garbage, timeout());
    assert!(got.starts_with(b"HTTP/1.1 400 "), "{}", String::from_utf8_lossy(&got));
    assert!(closed, "closed after the 400");

    // A huge header: 431 once the head passes max_request_size, whatever else is sent.
    let mut huge = TcpStream::connect(addr).expect("connect");
    huge.write_all(b"GET /metrics HTTP/1.1\r\nX-Big: ").expect("send");
    let _ = huge.write_all(&vec![b'a'; 64 * 1024]);
    let (got, closed) = read_until_closed(&mut huge, timeout());
    assert!(got.starts_with(b"HTTP/1.1 431 "), "{}", String::from_utf8_lossy(&got));
    assert!(closed, "closed after the 431");

    // A slowloris: a byte at a time, never the blank line that ends the head.
    let mut slow = TcpStream::connect(addr).expect("connect");
    slow.write_all(b"GET /metrics HTTP/1.1\r\n").expect("send");
    let started = Instant::now();
    let give_up = http_timeout * 3;
    let trickle = thread::spawn(move || {
        while started.elapsed() < give_up {
            if slow.write_all(b"X").is_err() {
                return true; // Closed by the broker.
            }
            thread::sleep(Duration::from_millis(50));
        }
        false
    });
    // Meanwhile the healthy clients are served.
    for i in 0..5 {
        publisher.publish("x/t", format!("{i}").as_bytes(), 1, false);
        sub.expect_message("x/t", format!("{i}").as_bytes());
        assert_eq!(curl(addr, "/health", &[]).0, 200);
    }
    assert!(trickle.join().expect("trickle thread"), "the slowloris was never closed");
    assert!(started.elapsed() >= http_timeout / 2, "closed before http.timeout");

    // More connections than http.max_connections: the extra ones are closed at once, and the
    // silent ones at http.timeout; then a healthy client gets its answer again.
    let mut idle: Vec<TcpStream> =
        (0..8).map(|_| TcpStream::connect(addr).expect("connect")).collect();
    let refused = idle
        .iter_mut()
        .map(|s| read_until_closed(s, scaled(Duration::from_millis(300))).1)
        .filter(|closed| *closed)
        .count();
    // At most 6 open at once. The last curl's connection may still hold its slot (the
    // broker keeps a connection until the client's FIN after the response), so 2 or 3 go.
    assert!(8 - refused <= 6 && refused <= 3, "8 connections, 6 allowed: {refused} refused");
    for stream in &mut idle {
        let (got, _) = read_until_closed(stream, timeout());
        assert!(got.is_empty(), "a silent client gets no answer");
    }
    assert_eq!(curl(addr, "/health", &[]).0, 200);
    publisher.publish("x/t", b"after", 1, false);
    sub.expect_message("x/t", b"after");
    assert!(broker.log().iter().any(|l| l.contains("sent no complete request")));
}
