//! MQTT over WebSockets end to end (issue 15): the real binary with a plain TCP listener
//! (`--listen`) and a `[listeners.web]` `ws` (or `wss`) listener side by side, and real clients:
//! MQTT.js under Node (`tests/clients/node`, installed by `make deps`), paho-mqtt with
//! `transport="websockets"`, and the harness's own WebSocket client (`tests/common/ws.rs`,
//! written from RFC 6455) for exact bytes, split and fragmented frames and hostile peers.
//!
//! Missing clients: skipped locally with a loud message, a failure under `CI=true`.
//! Reference mode (`EDGEMQ_TEST_REFERENCE=mosquitto`): skipped, the listener settings are
//! edgemq's.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::packets::{self, Connect, Property, Will};
use common::pki::{text, Pki, Role};
use common::ws::{self, client_frame, read_frames, Frame, BINARY, CLOSE, PING, PONG, TEXT};
use common::{
    assert_broker_serves, parse_listening_port, require_paho, run_ok, scaled, skip_in_reference,
    timeout, Broker, BrokerBuilder, TestClient, Value, PYTHON,
};

const MASK: Option<[u8; 4]> = Some([0x37, 0xfa, 0x21, 0x3d]);

// ---------------------------------------------------------------------------------------------
// Brokers and clients

/// A broker with `--listen 127.0.0.1:0` (TCP) and `[listeners.web]` (`ws`, or `wss` with
/// `pki`'s server certificate) on 127.0.0.1:0.
struct WsBroker {
    broker: Broker,
    kind: &'static str,
}

impl WsBroker {
    fn start(builder: BrokerBuilder, more: &[(&str, Value)]) -> WsBroker {
        WsBroker::start_kind(builder, "ws", more)
    }

    fn start_wss(pki: &Pki, builder: BrokerBuilder) -> WsBroker {
        let (cert, key) = pki.issue("server", "edgemq test server", Role::Server);
        let files = [("certfile", text(&cert).into()), ("keyfile", text(&key).into())];
        WsBroker::start_kind(builder, "wss", &files)
    }

    fn start_kind(builder: BrokerBuilder, kind: &'static str, more: &[(&str, Value)]) -> WsBroker {
        let mut builder =
            builder.set("listeners.web", "bind", "127.0.0.1:0").set("listeners.web", "kind", kind);
        for (k, v) in more {
            builder = builder.set("listeners.web", k, v.clone());
        }
        let b = WsBroker { broker: builder.start(), kind };
        assert_ne!(b.port(), b.broker.port(), "two listeners, two ports");
        b
    }

    /// The WebSocket listener's port in the broker's latest run (it changes on a restart).
    fn port(&self) -> u16 {
        let needle = format!("({}, listeners.web)", self.kind);
        let deadline = Instant::now() + timeout();
        loop {
            let log = self.broker.log();
            let runs = log.iter().filter(|l| l.starts_with("===== broker run ")).count();
            let lines: Vec<&String> = log.iter().filter(|l| l.contains(&needle)).collect();
            if lines.len() >= runs.max(1) {
                return parse_listening_port(lines[lines.len() - 1]).expect("the ws port");
            }
            assert!(Instant::now() < deadline, "no `listening on ... {needle}` line");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn ws_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port()))
    }

    fn url(&self) -> String {
        match self.kind {
            "wss" => format!("wss://localhost:{}/mqtt", self.port()),
            _ => format!("ws://127.0.0.1:{}/mqtt", self.port()),
        }
    }
}

fn ws_v311(b: &WsBroker, id: &str) -> TestClient {
    TestClient::handshake_ws(b.ws_addr(), "/mqtt", Connect::v311(id))
}

fn ws_v5(b: &WsBroker, id: &str) -> TestClient {
    TestClient::handshake_ws(b.ws_addr(), "/mqtt", Connect::v5(id))
}

/// A raw socket to the WebSocket listener, upgraded; returns it with bytes after the 101.
fn raw_ws(b: &WsBroker) -> (TcpStream, Vec<u8>) {
    let mut stream = TcpStream::connect(b.ws_addr()).expect("connect to the ws listener");
    let rest = ws::open(&mut stream, "/mqtt");
    (stream, rest)
}

/// The close frame among `frames` and its status code; panics without one.
fn close_code(frames: &[Frame]) -> Option<u16> {
    let close = frames
        .iter()
        .find(|f| f.opcode == CLOSE)
        .unwrap_or_else(|| panic!("no close frame in {frames:?}"));
    (close.payload.len() >= 2).then(|| u16::from_be_bytes([close.payload[0], close.payload[1]]))
}

/// Node with MQTT.js installed in tests/clients/node (`make deps` runs `npm ci` there).
fn require_mqttjs() -> bool {
    let dir = node_dir();
    let node_ok =
        Command::new("node").arg("--version").output().map(|o| o.status.success()).unwrap_or(false);
    let installed = dir.join("node_modules/mqtt/package.json").is_file();
    if node_ok && installed {
        return true;
    }
    let what = if node_ok { "MQTT.js (tests/clients/node/node_modules/mqtt)" } else { "node" };
    let msg = format!(
        "{what} not found: install Debian's nodejs and npm, then `make deps` \
         (npm ci in tests/clients/node)"
    );
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{msg} (CI=true, so a missing client fails the test)");
    }
    eprintln!("SKIPPED: {msg}");
    false
}

fn node_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/node")
}

/// `node mqttjs_check.js ARGS` in tests/clients/node; its stdout lines (it must exit 0).
fn mqttjs(args: &[&str]) -> Vec<String> {
    let mut cmd = Command::new("node");
    cmd.current_dir(node_dir())
        .arg("mqttjs_check.js")
        .args(args)
        .env("EDGEMQ_CLIENT_TIMEOUT", timeout().as_secs_f64().to_string());
    run_ok(cmd, timeout() * 3)
}

// ---------------------------------------------------------------------------------------------
// Real clients

/// MQTT.js over ws:// with MQTT 3.1.1 and 5.0: QoS 0/1/2, a 300 KB payload, retained messages.
#[test]
fn mqttjs_over_ws_v311_and_v5() {
    if skip_in_reference("edgemq's [listeners.NAME] kind = \"ws\"") || !require_mqttjs() {
        return;
    }
    let b = WsBroker::start(BrokerBuilder::new(), &[]);
    for version in ["4", "5"] {
        let stdout = mqttjs(&["roundtrip", &b.url(), version]);
        assert_eq!(stdout, vec!["OK".to_string()], "MQTT.js, protocol version {version}");
    }
    assert_broker_serves(&b.broker);
}

/// MQTT.js over wss:// (TLS under the WebSocket), verifying the broker's certificate.
#[test]
fn mqttjs_over_wss() {
    if skip_in_reference("edgemq's [listeners.NAME] kind = \"wss\"") || !require_mqttjs() {
        return;
    }
    let pki = Pki::new("mqttjs");
    let b = WsBroker::start_wss(&pki, BrokerBuilder::new());
    let stdout = mqttjs(&["roundtrip", &b.url(), "5", &text(&pki.ca_file())]);
    assert_eq!(stdout, vec!["OK".to_string()]);
}

/// paho-mqtt with transport="websockets": the whole interoperability script over ws:// for
/// 3.1, 3.1.1 and 5.0, and over wss:// for 5.0.
#[test]
fn paho_over_ws_and_wss() {
    if skip_in_reference("edgemq's [listeners.NAME] kind = \"ws\"") || !require_paho() {
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/paho_check.py");
    let run = |port: u16, protocol: &str, cafile: Option<&Path>| {
        let mut cmd = Command::new(PYTHON);
        cmd.arg(&script)
            .args(["--host", "localhost", "--port", &port.to_string(), "--websocket", "/mqtt"])
            .args(["--protocol", protocol, "--timeout", &timeout().as_secs_f64().to_string()]);
        if let Some(ca) = cafile {
            cmd.args(["--cafile", &text(ca)]);
        }
        let stdout = run_ok(cmd, timeout() * 3);
        assert!(stdout.iter().any(|l| l.starts_with("OK")), "paho {protocol}: {stdout:?}");
    };
    let b = WsBroker::start(BrokerBuilder::new(), &[]);
    for protocol in ["31", "311", "5"] {
        run(b.port(), protocol, None);
    }
    let pki = Pki::new("paho-wss");
    let s = WsBroker::start_wss(&pki, BrokerBuilder::new());
    run(s.port(), "5", Some(&pki.ca_file()));
}

/// A WebSocket publisher reaches a TCP subscriber, and a TCP publisher the WebSocket
/// subscriber: one broker, one byte stream, whatever the transport.
#[test]
fn a_websocket_publisher_reaches_a_tcp_subscriber_and_back() {
    if skip_in_reference("edgemq's [listeners.NAME] kind = \"ws\"") {
        return;
    }
    let b = WsBroker::start(BrokerBuilder::new(), &[]);
    let mut on_tcp = TestClient::v5(&b.broker, "on-tcp");
    on_tcp.subscribe("to/tcp/#", 2);
    let mut on_ws = ws_v311(&b, "on-ws");
    on_ws.subscribe("to/ws/#", 2);
    for qos in 0..=2u8 {
        let payload = format!("from ws qos {qos}");
        on_ws.publish(&format!("to/tcp/{qos}"), payload.as_bytes(), qos, false);
        let p = on_tcp.expect_message(&format!("to/tcp/{qos}"), payload.as_bytes());
        assert_eq!(p.qos, qos);
        let payload = format!("from tcp qos {qos}");
        on_tcp.publish(&format!("to/ws/{qos}"), payload.as_bytes(), qos, false);
        let p = on_ws.expect_message(&format!("to/ws/{qos}"), payload.as_bytes());
        assert_eq!(p.qos, qos);
    }
    // A 200 KB message from TCP goes out over the WebSocket (several frames or one; the
    // client joins them) and back.
    let big: Vec<u8> = (0..200 * 1024).map(|i| (i % 251) as u8).collect();
    on_tcp.publish("to/ws/big", &big, 1, false);
    on_ws.expect_message("to/ws/big", &big);
    on_ws.publish("to/tcp/big", &big, 1, false);
    on_tcp.expect_message("to/tcp/big", &big);
    on_ws.disconnect();
    on_tcp.disconnect();
}

// ---------------------------------------------------------------------------------------------
// Persistent sessions

/// Sessions and offline messages over WebSockets exactly as over TCP: a 3.1.1 and a 5.0
/// client subscribe over ws and leave, a TCP client publishes while they are away, the broker
/// is killed (SIGKILL) and restarted on the same data, and each client resumes over ws with
/// its session present and its QoS 1 messages in order; then MQTT.js and paho do the same
/// from their side.
#[test]
fn persistent_sessions_and_offline_messages_over_websockets_survive_a_restart() {
    if skip_in_reference("edgemq's [listeners.NAME] kind = \"ws\"") {
        return;
    }
    let mut b = WsBroker::start(BrokerBuilder::new(), &[]);
    let resume_v5 = |id: &str| {
        Connect::v5(id)
            .clean(false)
            .prop(Property::u32(packets::prop::SESSION_EXPIRY_INTERVAL, 3600))
    };
    let mut old =
        TestClient::handshake_ws(b.ws_addr(), "/mqtt", Connect::v311("ws-311").clean(false));
    old.subscribe("plant/311/#", 1);
    old.disconnect();
    let mut new = TestClient::handshake_ws(b.ws_addr(), "/mqtt", resume_v5("ws-5"));
    new.subscribe("plant/5/#", 1);
    new.disconnect();

    let mut publisher = TestClient::v311(&b.broker, "tcp-pub");
    for i in 0..5 {
        publisher.publish(&format!("plant/311/{i}"), format!("m{i}").as_bytes(), 1, false);
        publisher.publish(&format!("plant/5/{i}"), format!("m{i}").as_bytes(), 1, false);
    }
    publisher.disconnect();
    b.broker.kill();
    b.broker.restart();

    for (connect, prefix) in
        [(Connect::v311("ws-311").clean(false), "plant/311"), (resume_v5("ws-5"), "plant/5")]
    {
        let (mut c, connack) = TestClient::try_handshake_ws(b.ws_addr(), "/mqtt", connect);
        assert_eq!((connack.code, connack.session_present), (0, true), "{prefix}");
        for i in 0..5 {
            let p = c.expect_message(&format!("{prefix}/{i}"), format!("m{i}").as_bytes());
            assert_eq!(p.qos, 1);
        }
        c.expect_no_packet(common::quiet_period());
        c.disconnect();
    }

    if require_mqttjs() {
        let url = b.url();
        let sub = mqttjs(&["persist-sub", &url, "js-persist", "plant/js/#"]);
        assert_eq!(sub, vec!["SUBSCRIBED session_present=0".to_string()]);
        let mut publisher = TestClient::v311(&b.broker, "tcp-pub-2");
        for i in 0..3 {
            publisher.publish(&format!("plant/js/{i}"), format!("j{i}").as_bytes(), 1, false);
        }
        publisher.disconnect();
        let recv = mqttjs(&["persist-recv", &url, "js-persist", "3"]);
        assert_eq!(
            recv,
            vec![
                "CONNACK session_present=1".to_string(),
                "MSG plant/js/0 j0".to_string(),
                "MSG plant/js/1 j1".to_string(),
                "MSG plant/js/2 j2".to_string(),
            ]
        );
    }
    if require_paho() {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/persist_paho.py");
        let paho = |args: &[&str]| {
            let mut cmd = Command::new(PYTHON);
            cmd.arg(script)
                .args(["--port", &b.port().to_string(), "--websocket", "/mqtt"])
                .args(["--timeout", &timeout().as_secs().max(1).to_string()])
                .args(args);
            run_ok(cmd, timeout() + Duration::from_secs(5))
        };
        let sub = paho(&[
            "--id",
            "paho-ws",
            "--version",
            "5",
            "--subscribe",
            "plant/paho/#",
            "--exit-after-subscribe",
        ]);
        assert!(sub.iter().any(|l| l.starts_with("SUBACK 1")), "{sub:?}");
        let mut publisher = TestClient::v311(&b.broker, "tcp-pub-3");
        publisher.publish("plant/paho/a", b"p1", 1, false);
        publisher.publish("plant/paho/b", b"p2", 1, false);
        publisher.disconnect();
        let got = paho(&["--id", "paho-ws", "--version", "5", "--until", "p2"]);
        let msgs: Vec<&String> = got.iter().filter(|l| l.starts_with("MSG ")).collect();
        assert_eq!(
            msgs,
            vec![
                "MSG qos=1 dup=0 retain=0 topic=plant/paho/a payload=p1",
                "MSG qos=1 dup=0 retain=0 topic=plant/paho/b payload=p2"
            ],
            "{got:?}"
        );
        assert!(got.iter().any(|l| l.starts_with("CONNACK session_present=1")), "{got:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Framing

/// MQTT packets split across frames (CONNECT in 1-byte frames, a fragmented SUBSCRIBE with a
/// ping between its fragments), several packets in one frame, and the answers in exact bytes.
#[test]
fn packets_split_across_frames_and_joined_in_one_frame() {
    if skip_in_reference("edgemq's [listeners.NAME] kind = \"ws\"") {
        return;
    }
    let b = WsBroker::start(BrokerBuilder::new(), &[]);
    let (mut stream, mut raw) = raw_ws(&b);
    assert!(raw.is_empty());
    // CONNECT 3.1.1 "split", one byte per frame.
    let mut input = Vec::new();
    for byte in Connect::v311("split").build() {
        input.extend(client_frame(true, BINARY, &[byte], MASK));
    }
    stream.write_all(&input).unwrap();
    let (frames, _) = read_frames(&mut stream, &mut raw, 1);
    assert_eq!(frames[0].opcode, BINARY);
    assert_eq!(frames[0].payload, vec![0x20, 0x02, 0x00, 0x00], "CONNACK accepted");
    // SUBSCRIBE id 1 "a/b" QoS 1 in three fragments with a ping in the middle.
    let subscribe = packets::subscribe(1, &[("a/b", 1)]);
    let mut input = client_frame(false, BINARY, &subscribe[..3], MASK);
    input.extend(client_frame(true, PING, b"are you there", MASK));
    input.extend(client_frame(false, 0x0, &subscribe[3..6], MASK));
    input.extend(client_frame(true, 0x0, &subscribe[6..], MASK));
    stream.write_all(&input).unwrap();
    let (frames, _) = read_frames(&mut stream, &mut raw, 2);
    assert_eq!(frames[0], Frame { fin: true, opcode: PONG, payload: b"are you there".to_vec() });
    assert_eq!(frames[1].payload, vec![0x90, 0x03, 0x00, 0x01, 0x01], "SUBACK QoS 1");
    // PUBLISH QoS 1 to itself + PINGREQ in one frame: PUBACK, the delivery, PINGRESP.
    let mut two = packets::Publish::new("a/b", b"hello").qos(1, 7).build();
    two.extend_from_slice(&packets::PINGREQ);
    stream.write_all(&client_frame(true, BINARY, &two, MASK)).unwrap();
    let mut mqtt = Vec::new();
    // PUBACK 4, PUBLISH 14 (2 + topic 2+3, id 2, payload 5), PINGRESP 2.
    let expected_len = 4 + 14 + 2;
    let deadline = Instant::now() + timeout();
    while mqtt.len() < expected_len && Instant::now() < deadline {
        let (frames, ended) = read_frames(&mut stream, &mut raw, 1);
        assert!(!ended, "closed after {mqtt:02x?}");
        for f in frames {
            assert_eq!(f.opcode, BINARY);
            mqtt.extend(f.payload);
        }
    }
    let puback = vec![0x40, 0x02, 0x00, 0x07]; // PUBACK 7
    let mut delivery = vec![0x32, 0x0c, 0x00, 0x03, b'a', b'/', b'b', 0x00, 0x01]; // id 1
    delivery.extend(b"hello");
    // The delivery goes out before the store commit, the PUBACK after it (README "Durability").
    let expected = [delivery, puback, vec![0xd0, 0x00]].concat(); // ..., PINGRESP
    assert_eq!(mqtt, expected);
}

/// The close handshake both ways. A client's close frame is echoed with its code and ends
/// the connection like a network drop (the will is published); a DISCONNECT the broker sends
/// is followed by a close frame 1000.
#[test]
fn close_handshake_both_ways() {
    if skip_in_reference("edgemq's [listeners.NAME] kind = \"ws\"") {
        return;
    }
    let b = WsBroker::start(BrokerBuilder::new(), &[]);
    let mut watcher = TestClient::v311(&b.broker, "watcher");
    watcher.subscribe("wills/#", 0);
    let (mut stream, mut raw) = raw_ws(&b);
    let connect = Connect::v311("leaving").will(Will::new("wills/leaving", b"gone"));
    stream.write_all(&client_frame(true, BINARY, &connect.build(), MASK)).unwrap();
    let (frames, _) = read_frames(&mut stream, &mut raw, 1);
    assert_eq!(frames[0].payload, vec![0x20, 0x02, 0x00, 0x00]);
    stream.write_all(&client_frame(true, CLOSE, &1001u16.to_be_bytes(), MASK)).unwrap();
    let (frames, ended) = read_frames(&mut stream, &mut raw, 2);
    assert_eq!(close_code(&frames), Some(1001), "the code is echoed");
    assert!(ended || read_frames(&mut stream, &mut raw, 1).1, "then the socket closes");
    watcher.expect_message("wills/leaving", b"gone");

    // The broker ends a 5.0 session (a second CONNECT is a protocol error): DISCONNECT 0x82
    // in a binary frame, then close 1000, then the socket closes.
    let mut c = ws_v5(&b, "twice");
    c.send(&Connect::v5("twice").build());
    c.expect_disconnect_v5(&[0x82]);
    assert_eq!(c.ws.as_ref().and_then(|w| w.close), Some(Some(1000)));
    watcher.ping();
}

/// `mqtt.max_packet_size` caps a frame and a fragmented message (close 1009) before any of
/// its payload is taken; a packet just under the cap, split over frames, passes.
#[test]
fn frames_over_max_packet_size_are_refused_with_1009() {
    if skip_in_reference("edgemq's [listeners.NAME] kind = \"ws\"") {
        return;
    }
    let b = WsBroker::start(BrokerBuilder::new().mqtt("max_packet_size", 2048), &[]);
    let mut c = ws_v311(&b, "near-limit");
    c.subscribe("big", 0);
    c.ws.as_mut().unwrap().split = 500;
    let payload = vec![b'x'; 1900];
    c.publish("big", &payload, 0, false);
    c.expect_message("big", &payload);

    for fragmented in [false, true] {
        let (mut stream, mut raw) = raw_ws(&b);
        stream.write_all(&client_frame(true, BINARY, &Connect::v311("").build(), MASK)).unwrap();
        let (frames, _) = read_frames(&mut stream, &mut raw, 1);
        assert_eq!(frames[0].payload[..2], [0x20, 0x02]);
        if fragmented {
            // A PUBLISH declaring 1900 bytes (under the cap, so the MQTT decoder waits for
            // it), in fragments of 1500 + 1500 bytes: the message goes over the cap at the
            // second fragment's header.
            let mut first = vec![0x30, 0xec, 0x0e, 0x00, 0x01, b't']; // 0x76c = 1900
            first.resize(1500, b'x');
            stream.write_all(&client_frame(false, BINARY, &first, MASK)).unwrap();
            stream.write_all(&client_frame(true, 0x0, &[b'x'; 1500], MASK)).unwrap();
        } else {
            // A header declaring 1 GB, and no payload.
            let mut header = vec![0x82, 0xff];
            header.extend((1u64 << 30).to_be_bytes());
            header.extend(MASK.unwrap());
            stream.write_all(&header).unwrap();
        }
        let (frames, _) = read_frames(&mut stream, &mut raw, 1);
        assert_eq!(close_code(&frames), Some(1009), "fragmented: {fragmented}");
    }
    c.ping();
    c.disconnect();
}

// ---------------------------------------------------------------------------------------------
// Hostile peers

/// Bad handshakes get the HTTP status that says why; an unmasked frame, a text frame, a
/// reserved opcode and a huge 64-bit length get a close frame with their code. A healthy
/// WebSocket client beside them keeps being served throughout.
#[test]
fn hostile_websocket_peers_are_refused_without_affecting_a_healthy_client() {
    if skip_in_reference("edgemq's [listeners.NAME] kind = \"ws\"") {
        return;
    }
    let b = WsBroker::start(
        BrokerBuilder::new()
            .mqtt("max_connections_per_address", 0)
            .mqtt("max_pending_connections", 0),
        &[],
    );
    let mut healthy = ws_v5(&b, "healthy");
    healthy.subscribe("still/#", 1);
    let mut round = 0;
    let mut still_served = |healthy: &mut TestClient| {
        round += 1;
        let payload = format!("round {round}");
        healthy.publish("still/here", payload.as_bytes(), 1, false);
        healthy.expect_message("still/here", payload.as_bytes());
    };

    let mut huge = vec![0x82, 0xff];
    huge.extend(u64::MAX.to_be_bytes());
    huge.extend(MASK.unwrap());
    let frames: [(Vec<u8>, u16); 5] = [
        (client_frame(true, BINARY, &packets::PINGREQ, None), 1002), // unmasked
        (client_frame(true, TEXT, b"{\"mqtt\": 1}", MASK), 1003),
        (client_frame(true, 0x3, b"x", MASK), 1002), // reserved opcode
        (client_frame(false, PING, b"", MASK), 1002), // fragmented control frame
        (huge, 1002),                                // top bit of a 64-bit length
    ];
    for (frame, code) in frames {
        let (mut stream, mut raw) = raw_ws(&b);
        stream.write_all(&client_frame(true, BINARY, &Connect::v311("").build(), MASK)).unwrap();
        stream.write_all(&frame).unwrap();
        let (frames, ended) = read_frames(&mut stream, &mut raw, 2);
        assert_eq!(frames[0].payload[..2], [0x20, 0x02], "CONNACK first");
        assert_eq!(close_code(&frames), Some(code), "{frame:02x?}");
        assert!(ended || read_frames(&mut stream, &mut raw, 1).1, "closed after the close");
        still_served(&mut healthy);
    }
    b.broker.wait_for_log("naming the unmasked frame", |l| {
        l.contains("WebSocket: unmasked client frame; closed with code 1002")
    });

    let handshakes: [(Vec<u8>, &str); 7] = [
        (ws::upgrade_request("/elsewhere", &["mqtt"]), "HTTP/1.1 404 "),
        (ws::upgrade_request("/mqtt", &["chat"]), "HTTP/1.1 400 "),
        (b"GET /mqtt HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), "HTTP/1.1 426 "),
        (b"POST /mqtt HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), "HTTP/1.1 405 "),
        (
            String::from_utf8(ws::upgrade_request("/mqtt", &["mqtt"]))
                .unwrap()
                .replace("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8")
                .into_bytes(),
            "HTTP/1.1 426 ",
        ),
        // Plain MQTT on the WebSocket port.
        (Connect::v311("lost").build(), "HTTP/1.1 400 "),
        // 9 KB of headers.
        (
            [b"GET /mqtt HTTP/1.1\r\n".to_vec(), b"X-Padding: aaaaaaaaaaaaaaaa\r\n".repeat(320)]
                .concat(),
            "HTTP/1.1 431 ",
        ),
    ];
    for (request, status) in handshakes {
        let mut stream = TcpStream::connect(b.ws_addr()).unwrap();
        // A refused peer may see a reset for the rest of a long request: the answer was sent.
        let _ = stream.write_all(&request);
        let mut answer = Vec::new();
        stream.set_read_timeout(Some(timeout())).unwrap();
        let _ = stream.read_to_end(&mut answer);
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with(status), "{status}expected, got {answer:?}");
        still_served(&mut healthy);
    }

    healthy.disconnect();
}

/// A WebSocket handshake that never finishes is an unfinished login: it counts against
/// `mqtt.max_pending_connections` and is closed at `mqtt.connect_timeout`, as a silent TCP
/// or TLS socket is, while a client that does log in is served.
#[test]
fn a_handshake_that_never_finishes_is_closed_at_connect_timeout() {
    if skip_in_reference("edgemq's [listeners.NAME] kind = \"ws\"") {
        return;
    }
    let connect_timeout = scaled(Duration::from_secs(1));
    let b = WsBroker::start(
        BrokerBuilder::new()
            .mqtt("connect_timeout", format!("{}ms", connect_timeout.as_millis()))
            .mqtt("max_connections_per_address", 0)
            .mqtt("max_pending_connections", 2),
        &[],
    );
    let mut healthy = ws_v311(&b, "healthy");
    let started = Instant::now();
    // Half a request, then nothing: two of them fill the pending limit.
    let mut stalled: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut s = TcpStream::connect(b.ws_addr()).unwrap();
            s.write_all(b"GET /mqtt HTTP/1.1\r\nHost: x\r\nUpgr").unwrap();
            s
        })
        .collect();
    healthy.ping();
    // A third pending socket is refused at accept (closed without an answer).
    let mut third = TcpStream::connect(b.ws_addr()).unwrap();
    let _ = third.write_all(&ws::upgrade_request("/mqtt", &["mqtt"]));
    third.set_read_timeout(Some(timeout())).unwrap();
    let mut buf = Vec::new();
    let _ = third.read_to_end(&mut buf);
    assert!(buf.is_empty(), "refused at accept, got {:?}", String::from_utf8_lossy(&buf));
    for s in &mut stalled {
        s.set_read_timeout(Some(timeout())).unwrap();
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        assert!(rest.is_empty(), "no answer to half a request: {rest:?}");
    }
    assert!(started.elapsed() >= connect_timeout, "closed at connect_timeout, not before");
    // Their slots are free again.
    let mut after = ws_v311(&b, "after");
    after.ping();
    healthy.ping();
}

/// `path` moves the endpoint; the default one is then a 404.
#[test]
fn the_path_is_configurable() {
    if skip_in_reference("edgemq's [listeners.NAME] kind = \"ws\"") {
        return;
    }
    let b = WsBroker::start(BrokerBuilder::new(), &[("path", "/ws/mqtt".into())]);
    let mut stream = TcpStream::connect(b.ws_addr()).unwrap();
    stream.write_all(&ws::upgrade_request("/mqtt", &["mqtt"])).unwrap();
    let (head, _) = ws::read_response(&mut stream).unwrap();
    assert!(head.starts_with("HTTP/1.1 404 "), "{head}");
    let mut c = TestClient::handshake_ws(b.ws_addr(), "/ws/mqtt", Connect::v311("moved"));
    c.ping();
    c.disconnect();
}

/// Old clients offer only `mqttv3.1`; a client that offers no subprotocol is served too.
#[test]
fn subprotocol_mqttv31_and_none_are_accepted() {
    if skip_in_reference("edgemq's [listeners.NAME] kind = \"ws\"") {
        return;
    }
    let b = WsBroker::start(BrokerBuilder::new(), &[]);
    for (offered, answered) in [(&["mqttv3.1"][..], Some("mqttv3.1")), (&[][..], None)] {
        let mut stream = TcpStream::connect(b.ws_addr()).unwrap();
        stream.write_all(&ws::upgrade_request("/mqtt", offered)).unwrap();
        let (head, mut raw) = ws::read_response(&mut stream).unwrap();
        assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
        match answered {
            Some(p) => assert!(head.contains(&format!("Sec-WebSocket-Protocol: {p}\r\n"))),
            None => assert!(!head.contains("Sec-WebSocket-Protocol")),
        }
        let connect = Connect::v31("old-client").build();
        stream.write_all(&client_frame(true, BINARY, &connect, MASK)).unwrap();
        let (frames, _) = read_frames(&mut stream, &mut raw, 1);
        assert_eq!(frames[0].payload, vec![0x20, 0x02, 0x00, 0x00]);
    }
}
