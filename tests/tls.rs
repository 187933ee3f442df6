//! TLS listeners end to end (issue 10): the real binary with a plain TCP listener (`--listen`)
//! and a `[listeners.tls]` TLS listener side by side, certificates made at test time (a CA,
//! server and client certificates, an expired one, another CA), and real clients:
//! `mosquitto_pub`/`mosquitto_sub` with `--cafile` (and `--cert/--key`), paho-mqtt with TLS,
//! raw sockets that misbehave, and edgemq's own TLS client transport.
//!
//! Missing clients: skipped locally with a loud message, a failure under `CI=true`.
//! Reference mode (`EDGEMQ_TEST_REFERENCE=mosquitto`): skipped, the listener settings are
//! edgemq's.

mod common;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::pki::{text, Pki, Role};
use common::{
    assert_broker_serves, edgemq_command, parse_listening_port, require_paho, require_tool, run_ok,
    skip_in_reference, timeout, Broker, BrokerBuilder, Process, TempDir, TestClient, PYTHON,
};

// ---------------------------------------------------------------------------------------------
// Brokers

/// A broker with `--listen 127.0.0.1:0` (TCP) and `[listeners.tls]` on 127.0.0.1:0 with the
/// server certificate of `pki`; `more` adds keys to the TLS listener.
struct TlsBroker {
    broker: Broker,
    tls_port: u16,
}

impl TlsBroker {
    fn start(pki: &Pki, more: &[(&str, common::Value)]) -> TlsBroker {
        TlsBroker::start_with(pki, BrokerBuilder::new(), more)
    }

    fn start_with(pki: &Pki, builder: BrokerBuilder, more: &[(&str, common::Value)]) -> TlsBroker {
        let (cert, key) = pki.issue("server", "edgemq test server", Role::Server);
        let mut builder = builder
            .set("listeners.tls", "bind", "127.0.0.1:0")
            .set("listeners.tls", "kind", "tls")
            .set("listeners.tls", "certfile", text(&cert))
            .set("listeners.tls", "keyfile", text(&key));
        for (k, v) in more {
            builder = builder.set("listeners.tls", k, v.clone());
        }
        let broker = builder.start();
        let line =
            broker.wait_for_log("as the test expects", |l| l.contains("(tls, listeners.tls)"));
        let tls_port = parse_listening_port(&line).expect("the TLS listener's port");
        assert_ne!(tls_port, broker.port(), "two listeners, two ports");
        TlsBroker { broker, tls_port }
    }

    fn tls_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.tls_port))
    }
}

fn clients_available() -> bool {
    require_tool("mosquitto_sub") && require_tool("mosquitto_pub") && require_tool("stdbuf")
}

/// TLS arguments for the mosquitto clients.
fn tls_args(ca: &Path, cert: Option<&(PathBuf, PathBuf)>) -> Vec<String> {
    let mut args = vec!["--cafile".to_string(), text(ca)];
    if let Some((cert, key)) = cert {
        args.extend(["--cert".to_string(), text(cert), "--key".to_string(), text(key)]);
    }
    args
}

/// `mosquitto_pub -h localhost -p PORT ARGS -t t -m m`: whether it succeeded, and its stderr.
fn mosquitto_pub(port: u16, args: &[String], topic: &str, message: &str) -> (bool, String) {
    let mut cmd = Command::new("mosquitto_pub");
    cmd.args(["-h", "localhost", "-p", &port.to_string(), "-q", "1", "-i", "tls-pub"])
        .args(args)
        .args(["-t", topic, "-m", message]);
    let mut process = Process::spawn(cmd);
    let status = process.wait(timeout() * 2);
    (status.success(), process.stderr().join("\n"))
}

/// A `mosquitto_sub` over TLS, subscribed when returned, exiting after `count` messages.
fn mosquitto_sub_tls(port: u16, args: &[String], topic: &str, count: usize) -> Process {
    let mut cmd = Command::new("stdbuf");
    cmd.args(["-oL", "mosquitto_sub", "-h", "localhost", "-p", &port.to_string()])
        .args(["-q", "1", "-d", "-i", "tls-sub", "-t", topic])
        .args(["-C", &count.to_string(), "-W", &timeout().as_secs().max(1).to_string()])
        .args(["-F", "MSG|%t|%p"])
        .args(args);
    let mut process = Process::spawn(cmd);
    process.wait_for_line(|l| l.starts_with("Subscribed (mid"));
    process
}

/// Reads from a raw socket until the broker closes it; returns what arrived before.
fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    stream.set_read_timeout(Some(timeout())).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return got,
            Err(e) => panic!("not closed within {:?}: {e} (got {got:?})", timeout()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Tests

/// `mosquitto_pub` over TLS reaches a raw TCP subscriber and a `mosquitto_sub` over TLS: two
/// listeners, one broker.
#[test]
fn tls_publisher_reaches_tcp_and_tls_subscribers() {
    if skip_in_reference("edgemq's [listeners.NAME]") || !clients_available() {
        return;
    }
    let pki = Pki::new("two-listeners");
    let b = TlsBroker::start(&pki, &[]);
    let mut tcp_sub = TestClient::v311(&b.broker, "tcp-sub");
    tcp_sub.subscribe("tls/t", 1);
    let tls_sub = mosquitto_sub_tls(b.tls_port, &tls_args(&pki.ca_file(), None), "tls/t", 1);

    let (ok, stderr) = mosquitto_pub(b.tls_port, &tls_args(&pki.ca_file(), None), "tls/t", "hi");
    assert!(ok, "mosquitto_pub over TLS failed: {stderr}");

    tcp_sub.expect_message("tls/t", b"hi");
    let mut tls_sub = tls_sub;
    let lines = tls_sub.expect_success(timeout() * 2);
    assert!(lines.iter().any(|l| l == "MSG|tls/t|hi"), "{lines:?}");
    assert!(b
        .broker
        .log()
        .iter()
        .any(|l| l.contains("listening on 127.0.0.1:") && l.contains("(tcp, listener.bind)")));
}

/// paho-mqtt over TLS, MQTT 3.1.1 and 5.0: the whole interoperability script (QoS 0/1/2,
/// retained messages), with a client certificate on a listener that asks for one.
#[test]
fn paho_over_tls_with_and_without_client_certificate() {
    if skip_in_reference("edgemq's [listeners.NAME]") || !require_paho() {
        return;
    }
    let pki = Pki::new("paho");
    let client = pki.issue("paho-client", "paho-device", Role::Client);
    let b = TlsBroker::start(&pki, &[("cafile", text(&pki.ca_file()).into())]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/paho_check.py");
    for (protocol, with_cert) in [("311", false), ("5", true)] {
        let mut cmd = Command::new(PYTHON);
        cmd.arg(&script)
            .args(["--host", "localhost", "--port", &b.tls_port.to_string()])
            .args(["--protocol", protocol, "--timeout", &timeout().as_secs_f64().to_string()])
            .args(["--cafile", &text(&pki.ca_file())]);
        if with_cert {
            cmd.args(["--certfile", &text(&client.0), "--keyfile", &text(&client.1)]);
        }
        let stdout = run_ok(cmd, timeout() * 3);
        assert!(stdout.iter().any(|l| l.starts_with("OK")), "{stdout:?}");
    }
}

/// A client that trusts another CA refuses the broker's certificate; the broker serves on.
#[test]
fn a_client_trusting_another_ca_refuses_the_broker() {
    if skip_in_reference("edgemq's [listeners.NAME]") || !clients_available() {
        return;
    }
    let pki = Pki::new("wrong-ca");
    let other = Pki::new("wrong-ca-other");
    let b = TlsBroker::start(&pki, &[]);
    let (ok, stderr) = mosquitto_pub(b.tls_port, &tls_args(&other.ca_file(), None), "t", "x");
    assert!(!ok, "a client of another CA connected");
    assert!(stderr.contains("TLS") || stderr.contains("certificate"), "{stderr}");
    let (ok, stderr) = mosquitto_pub(b.tls_port, &tls_args(&pki.ca_file(), None), "t", "x");
    assert!(ok, "{stderr}");
    assert_broker_serves(&b.broker);
}

/// An expired server certificate is refused by the client.
#[test]
fn an_expired_server_certificate_is_refused_by_the_client() {
    if skip_in_reference("edgemq's [listeners.NAME]") || !clients_available() {
        return;
    }
    let pki = Pki::new("expired");
    let (cert, key) = pki.issue_with("expired", "expired server", Role::Server, |p| {
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(2021, 1, 1);
    });
    let broker = BrokerBuilder::new()
        .set("listeners.tls", "bind", "127.0.0.1:0")
        .set("listeners.tls", "kind", "tls")
        .set("listeners.tls", "certfile", text(&cert))
        .set("listeners.tls", "keyfile", text(&key))
        .start();
    let line = broker.wait_for_log("as the test expects", |l| l.contains("(tls, listeners.tls)"));
    let port = parse_listening_port(&line).unwrap();
    let (ok, stderr) = mosquitto_pub(port, &tls_args(&pki.ca_file(), None), "t", "x");
    assert!(!ok, "a client accepted an expired certificate");
    assert!(stderr.contains("TLS") || stderr.contains("certificate"), "{stderr}");
    assert_broker_serves(&broker);
}

/// Plain MQTT and garbage sent to the TLS port: each connection is closed, no CONNACK is ever
/// sent, and everyone else is served. The log names the first one; such lines are written once
/// a second at most (a peer can repeat them at will), so the second one, a moment later, is
/// either named too or counted in a "1 more like this" summary.
#[test]
fn plaintext_mqtt_and_garbage_to_the_tls_port_are_closed() {
    if skip_in_reference("edgemq's [listeners.NAME]") {
        return;
    }
    let pki = Pki::new("plaintext");
    let b = TlsBroker::start(&pki, &[]);
    // A 3.1.1 CONNECT: fixed header, "MQTT", level 4, clean session, keep-alive 60, id "p".
    let connect = b"\x10\x0d\x00\x04MQTT\x04\x02\x00\x3c\x00\x01p";
    let garbage: Vec<u8> = (0..2000u32).map(|i| (i * 7 + 3) as u8).collect();
    let mut peers = Vec::new();
    for (what, bytes) in [("plain MQTT", &connect[..]), ("garbage", &garbage[..])] {
        let mut stream = TcpStream::connect(b.tls_addr()).unwrap();
        stream.write_all(bytes).unwrap();
        let got = read_until_closed(&mut stream);
        // At most a TLS alert (content type 21), never MQTT.
        assert!(got.is_empty() || got[0] == 21, "{what}: got {got:?}");
        peers.push(stream.local_addr().unwrap().to_string());
    }
    let named = |peer: &str| format!("from {peer} on listeners.tls: TLS handshake failed");
    b.broker.wait_for_log("naming the first", |l| l.contains(&named(&peers[0])));
    b.broker.wait_for_log("naming or counting the second", |l| {
        l.contains(&named(&peers[1])) || l.contains("1 more like this not logged: TLS failed")
    });
    assert_broker_serves(&b.broker);
}

/// A client that stops in the middle of its ClientHello is closed by mqtt.connect_timeout,
/// while a healthy TLS client beside it publishes and subscribes.
#[test]
fn a_stalled_handshake_is_closed_by_the_connect_timeout_while_others_are_served() {
    if skip_in_reference("edgemq's [listeners.NAME]") || !clients_available() {
        return;
    }
    let pki = Pki::new("stall");
    let builder = BrokerBuilder::new().mqtt("connect_timeout", "1s");
    let b = TlsBroker::start_with(&pki, builder, &[]);
    // A TLS record header announcing a 512-byte handshake message, then 10 of its bytes.
    let mut stalled = TcpStream::connect(b.tls_addr()).unwrap();
    stalled.write_all(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\x00\x00\x00\x00").unwrap();
    let peer = stalled.local_addr().unwrap().to_string();

    let args = tls_args(&pki.ca_file(), None);
    let mut sub = mosquitto_sub_tls(b.tls_port, &args, "stall/t", 1);
    let (ok, stderr) = mosquitto_pub(b.tls_port, &args, "stall/t", "served");
    assert!(ok, "{stderr}");
    let lines = sub.expect_success(timeout() * 2);
    assert!(lines.iter().any(|l| l == "MSG|stall/t|served"), "{lines:?}");

    let got = read_until_closed(&mut stalled);
    assert!(got.is_empty() || got[0] == 21, "at most a TLS alert, got {got:?}");
    let closed = b.broker.wait_for_log("as the test expects", |l| l.contains("no CONNECT within"));
    assert!(closed.contains(&format!("from {peer}: no CONNECT within 1s")), "{closed}");
}

/// `require_certificate`: a client without a certificate fails the handshake (log line with
/// its address); one with a certificate of the CA gets in.
#[test]
fn require_certificate_refuses_a_client_without_one() {
    if skip_in_reference("edgemq's [listeners.NAME]") || !clients_available() {
        return;
    }
    let pki = Pki::new("require");
    let other = Pki::new("require-other");
    let b = TlsBroker::start(
        &pki,
        &[("cafile", text(&pki.ca_file()).into()), ("require_certificate", true.into())],
    );
    let (ok, _) = mosquitto_pub(b.tls_port, &tls_args(&pki.ca_file(), None), "t", "x");
    assert!(!ok, "a client without a certificate connected");
    b.broker.wait_for_log("as the test expects", |l| {
        l.contains("on listeners.tls: TLS handshake failed")
    });

    let stranger = other.issue("stranger", "stranger", Role::Client);
    let (ok, _) = mosquitto_pub(b.tls_port, &tls_args(&pki.ca_file(), Some(&stranger)), "t", "x");
    assert!(!ok, "a certificate of another CA was accepted");

    let device = pki.issue("device", "device-1", Role::Client);
    let (ok, stderr) =
        mosquitto_pub(b.tls_port, &tls_args(&pki.ca_file(), Some(&device)), "t", "x");
    assert!(ok, "{stderr}");
}

/// `use_identity_as_username`: the certificate's CN is the username (debug log of the
/// connect), whatever the CONNECT says; without a certificate the CONNECT is refused.
#[test]
fn use_identity_as_username_takes_the_cn() {
    if skip_in_reference("edgemq's [listeners.NAME]") || !clients_available() {
        return;
    }
    let pki = Pki::new("identity");
    let b = TlsBroker::start_with(
        &pki,
        BrokerBuilder::new().log_level("debug"),
        &[("cafile", text(&pki.ca_file()).into()), ("use_identity_as_username", true.into())],
    );
    let device = pki.issue("device", "sensor-17", Role::Client);
    let mut args = tls_args(&pki.ca_file(), Some(&device));
    args.extend(["-u".to_string(), "someone-else".to_string()]);
    let (ok, stderr) = mosquitto_pub(b.tls_port, &args, "t", "x");
    assert!(ok, "{stderr}");
    let line = b
        .broker
        .wait_for_log("as the test expects", |l| l.contains("client \"tls-pub\" connected"));
    assert!(line.contains("username=Some(\"sensor-17\")"), "{line}");

    // Certificates are optional on this listener, but the username needs one.
    let (ok, stderr) = mosquitto_pub(b.tls_port, &tls_args(&pki.ca_file(), None), "t", "x");
    assert!(!ok, "connected without an identity");
    assert!(stderr.contains("not authori"), "{stderr}");
}

/// SIGHUP re-reads the certificate files: a broken file keeps the old certificate (warning),
/// a new certificate of another CA is used by new connections.
#[test]
fn sighup_reloads_the_certificate_and_a_bad_file_keeps_the_old_one() {
    if skip_in_reference("edgemq's [listeners.NAME]") || !clients_available() {
        return;
    }
    let pki = Pki::new("reload");
    let mut b = TlsBroker::start(&pki, &[]);
    let old_ca = tls_args(&pki.ca_file(), None);
    let cert_file = pki.path("server.pem");

    std::fs::write(&cert_file, "not a certificate").unwrap();
    b.broker.signal("HUP");
    let warning =
        b.broker.wait_for_log("as the test expects", |l| l.contains("TLS files not reloaded"));
    assert!(warning.contains("listeners.tls.certfile"), "{warning}");
    let (ok, stderr) = mosquitto_pub(b.tls_port, &old_ca, "t", "x");
    assert!(ok, "the old certificate is no longer served: {stderr}");

    let next = Pki::new("reload-next");
    let (cert, key) = next.issue("server", "next server", Role::Server);
    std::fs::copy(&cert, &cert_file).unwrap();
    std::fs::copy(&key, pki.path("server.key")).unwrap();
    b.broker.signal("HUP");
    b.broker.wait_for_log("as the test expects", |l| {
        l.contains("listeners.tls: TLS certificate and key reloaded")
    });
    let (ok, _) = mosquitto_pub(b.tls_port, &old_ca, "t", "x");
    assert!(!ok, "the old certificate is still served");
    let (ok, stderr) = mosquitto_pub(b.tls_port, &tls_args(&next.ca_file(), None), "t", "x");
    assert!(ok, "{stderr}");
    assert!(b.broker.is_running());
}

/// A missing certificate file stops start-up: exit 2, one line naming the key and the file.
#[test]
fn a_missing_certificate_file_stops_start_up_naming_key_and_file() {
    if skip_in_reference("edgemq's [listeners.NAME]") {
        return;
    }
    let dir = TempDir::new("edgemq-tls-missing");
    let conf = dir.path().join("edgemq.toml");
    let missing = dir.path().join("missing.pem");
    std::fs::write(
        &conf,
        format!(
            "[listeners.secure]\nbind = \"127.0.0.1:0\"\nkind = \"tls\"\ncertfile = {:?}\n\
             keyfile = {:?}\n",
            text(&missing),
            text(&dir.path().join("missing.key"))
        ),
    )
    .unwrap();
    let mut cmd = edgemq_command();
    cmd.arg("--conf").arg(&conf).arg("--listen").arg("127.0.0.1:0").arg("--data");
    cmd.arg(dir.path().join("data"));
    let mut process = Process::spawn(cmd);
    let status = process.wait(timeout());
    assert_eq!(status.code(), Some(2), "{:?}", process.stderr());
    let stderr = process.stderr();
    let expected = format!(
        "edgemq: {}: listeners.secure.certfile: {}: cannot read: ",
        conf.display(),
        missing.display()
    );
    assert!(stderr.iter().any(|l| l.starts_with(&expected)), "{stderr:?}");
}

/// edgemq's own TLS client transport (what bridges use) against the broker's TLS
/// listener: CONNECT out, CONNACK back, through the `Transport` API on a mio poll.
#[test]
fn the_tls_client_transport_speaks_mqtt_to_the_tls_listener() {
    use edgemq::net::transport::{TlsClient, TlsClientSettings, Transport};
    use mio::{Events, Interest, Poll, Token};

    if skip_in_reference("edgemq's [listeners.NAME]") {
        return;
    }
    let pki = Pki::new("client-transport");
    let b = TlsBroker::start(&pki, &[]);
    let settings = TlsClientSettings {
        prefix: "test".to_string(),
        cafile: Some(pki.ca_file()),
        ..TlsClientSettings::default()
    };
    let client = TlsClient::load(&settings).unwrap();
    let socket = mio::net::TcpStream::connect(b.tls_addr()).unwrap();
    let mut transport = Transport::Tls(Box::new(client.connect(socket, "localhost").unwrap()));
    let mut poll = Poll::new().unwrap();
    let interest = Interest::READABLE | Interest::WRITABLE;
    poll.registry().register(transport.socket_mut(), Token(0), interest).unwrap();
    let mut events = Events::with_capacity(8);

    let connect = b"\x10\x0e\x00\x04MQTT\x04\x02\x00\x3c\x00\x02tc";
    let mut written = 0;
    let mut received = Vec::new();
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + timeout();
    while received.len() < 4 {
        assert!(Instant::now() < deadline, "no CONNACK within {:?}", timeout());
        poll.poll(&mut events, Some(Duration::from_millis(100))).unwrap();
        while written < connect.len() {
            match transport.write(&connect[written..]) {
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("write: {e}"),
            }
        }
        match transport.flush() {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("flush: {e}"),
        }
        loop {
            match transport.read(&mut buf) {
                Ok(0) => panic!("closed by the broker; got {received:?}"),
                Ok(n) => received.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("read: {e}"),
            }
        }
    }
    // CONNACK, 3.1.1: no session present, accepted.
    assert_eq!(received, b"\x20\x02\x00\x00");
}
