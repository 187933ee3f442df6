//! The status page (issue 15): `GET /api/v1/status` and `GET /`, against the real binary.
//!
//! - The JSON is read over a plain TCP socket and parsed by Python's `json` module
//!   (`/usr/bin/python3`, part of Debian's base), which flattens it into `path value` lines
//!   with every string as hex of its UTF-8 bytes, so a client id with quotes, a backslash, a
//!   newline, `<` and non-ASCII characters is compared byte for byte after a real JSON parser
//!   read it.
//! - 60 persistent sessions: the document lists 50, the largest backlog first; ~60 KB client ids
//!   that escaping makes longer are cut, so the document stays under 100 KB and valid.
//! - A real browser: headless Chromium (Debian `chromium`) loads `/` from a running broker with
//!   an offline persistent session holding queued messages; its DOM after the page's scripts
//!   ran (`--dump-dom`, `--virtual-time-budget`) shows the session, as text, with its count.
//!   Fails when `CI=true` and Chromium is missing; skips with a message otherwise.
//!
//! Waits are deadlines ([`common::timeout`]), never timed assertions. Reference mode
//! (`EDGEMQ_TEST_REFERENCE=mosquitto`): skipped, Mosquitto has no such page.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::packets::{prop, Connect, Property};
use common::{
    http_addr, require_tool_from, scaled, skip_in_reference, timeout, Broker, BrokerBuilder,
    TestClient,
};

fn page_broker() -> BrokerBuilder {
    BrokerBuilder::new()
        .set("http", "bind", "127.0.0.1:0")
        .mqtt("max_connections_per_address", 0)
        .mqtt("max_pending_connections", 0)
}

/// `GET path` over a plain socket: (head, body).
fn get(addr: SocketAddr, path: &str) -> (String, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).expect("connect to the http listener");
    stream.set_read_timeout(Some(timeout())).expect("read timeout");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).expect("send the request");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).expect("read the response");
    let split = response.windows(4).position(|w| w == b"\r\n\r\n").expect("a complete head");
    let head = String::from_utf8_lossy(&response[..split]).to_string();
    (head, response[split + 4..].to_vec())
}

/// Parses `body` with Python's `json` and flattens it: `a.b` / `list.0.key` / `list.len` ->
/// value, strings as hex of their UTF-8 bytes, booleans `true`/`false`, null `null`.
fn parse_json(body: &[u8]) -> HashMap<String, String> {
    const SCRIPT: &str = r#"
import json, sys
doc = json.loads(sys.stdin.buffer.read().decode("utf-8"))
def walk(path, v):
    if isinstance(v, dict):
        for k, x in v.items(): walk(path + [k], x)
    elif isinstance(v, list):
        print(".".join(path + ["len"]), len(v))
        for i, x in enumerate(v): walk(path + [str(i)], x)
    elif isinstance(v, bool): print(".".join(path), "true" if v else "false")
    elif v is None: print(".".join(path), "null")
    elif isinstance(v, str): print(".".join(path), "s:" + v.encode("utf-8").hex())
    else: print(".".join(path), repr(v))
walk([], doc)
"#;
    let out = common::python_with_stdin(SCRIPT, body);
    assert!(
        out.status.success(),
        "python's json could not parse /api/v1/status: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(body)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn hex(s: &str) -> String {
    let mut out = String::from("s:");
    for b in s.bytes() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Reads `/api/v1/status` until `pred` accepts it; returns it flattened.
fn status_until(
    addr: SocketAddr,
    what: &str,
    pred: impl Fn(&HashMap<String, String>) -> bool,
) -> HashMap<String, String> {
    let deadline = Instant::now() + timeout();
    loop {
        let (head, body) = get(addr, "/api/v1/status");
        assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
        assert!(head.contains("\r\nContent-Type: application/json\r\n"), "{head}");
        let doc = parse_json(&body);
        if pred(&doc) {
            return doc;
        }
        assert!(Instant::now() < deadline, "/api/v1/status never showed {what}: {doc:#?}");
        thread::sleep(Duration::from_millis(50));
    }
}

fn field<'a>(doc: &'a HashMap<String, String>, key: &str) -> &'a str {
    doc.get(key).map(String::as_str).unwrap_or_else(|| panic!("no {key} in {doc:#?}"))
}

/// A persistent (v5, one hour's expiry) session subscribed to `filters` at QoS 1, then offline.
fn park(broker: &Broker, client_id: &str, filters: &[&str]) {
    let connect = Connect::v5(client_id)
        .clean(false)
        .prop(Property::u32(prop::SESSION_EXPIRY_INTERVAL, 3600));
    let mut client = TestClient::handshake(broker, connect);
    for filter in filters {
        client.subscribe(filter, 1);
    }
    client.disconnect();
}

/// What clients may choose as an id: quotes, a backslash, a newline, markup, non-ASCII.
const ODD_ID: &str = "hmi \"north\"\\\nline2 <b>ü€😀</b>";

#[test]
fn status_json_parses_and_carries_odd_client_ids_byte_for_byte() {
    if skip_in_reference("edgemq's status page") {
        return;
    }
    let broker = page_broker().start();
    let addr = http_addr(&broker);
    park(&broker, ODD_ID, &["odd/#"]);
    let mut online = TestClient::handshake(&broker, Connect::v311("dash-online").clean(false));
    online.subscribe("elsewhere/#", 1);
    let mut publisher = TestClient::v311(&broker, "status-pub");
    for i in 0..3 {
        publisher.publish("odd/t", format!("payload-{i}").as_bytes(), 1, false);
    }

    let doc = status_until(addr, "3 messages queued", |d| {
        d.get("sessions.0.queued").map(String::as_str) == Some("3")
    });
    // The raw body holds the escapes, not the characters JSON forbids unescaped.
    let (_, body) = get(addr, "/api/v1/status");
    let text = String::from_utf8(body).expect("UTF-8 body");
    assert!(text.contains(r#""client_id":"hmi \"north\"\\\nline2 <b>ü€😀</b>""#), "{text}");
    assert!(!text.contains('\n'), "a raw newline in {text}");

    assert_eq!(field(&doc, "version"), hex(env!("CARGO_PKG_VERSION")));
    assert!(field(&doc, "uptime_secs").parse::<u64>().is_ok());
    assert_eq!(field(&doc, "clients.connected"), "2");
    assert_eq!(field(&doc, "clients.total"), "3");
    assert_eq!(field(&doc, "clients.persistent"), "2");
    assert!(field(&doc, "clients.maximum").parse::<u64>().unwrap() >= 2);
    assert!(field(&doc, "messages.received").parse::<u64>().unwrap() >= 3);
    assert!(field(&doc, "messages.received_per_sec").parse::<f64>().unwrap() >= 0.0);
    assert!(field(&doc, "messages.sent_per_sec").parse::<f64>().is_ok());

    assert_eq!(field(&doc, "sessions.len"), "2");
    assert_eq!(field(&doc, "sessions.0.client_id"), hex(ODD_ID));
    assert_eq!(field(&doc, "sessions.0.online"), "false");
    // As the store counts them (the stored packets): the ring's total, and at least topic
    // "odd/t" (5 bytes) and a 9-byte payload three times.
    let bytes: u64 = field(&doc, "sessions.0.bytes").parse().unwrap();
    assert!(bytes >= 42, "{bytes}");
    assert_eq!(field(&doc, "store.bytes"), bytes.to_string());
    assert_eq!(field(&doc, "sessions.1.client_id"), hex("dash-online"));
    assert_eq!(field(&doc, "sessions.1.online"), "true");
    assert_eq!(field(&doc, "sessions.1.queued"), "0");

    assert_eq!(field(&doc, "store.queued"), "3");
    assert_eq!(field(&doc, "store.dropped"), "0");
    assert_eq!(field(&doc, "store.accepting"), "true");
    assert_eq!(field(&doc, "store.refusing"), "null");
    // The defaults of sqlite.disk_cache_size and sqlite.max_db_size (0 = no cap).
    assert_eq!(field(&doc, "store.disk_cache_size"), "102400");
    assert_eq!(field(&doc, "store.max_db_size"), "0");
    assert!(field(&doc, "store.db_size").parse::<u64>().unwrap() > 0);
    assert_eq!(field(&doc, "bridges.len"), "0");

    // The page itself: HTML, small, self-contained.
    let (head, page) = get(addr, "/");
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    assert!(head.contains("\r\nContent-Type: text/html; charset=utf-8\r\n"), "{head}");
    let page = String::from_utf8(page).expect("UTF-8 page");
    assert!(page.len() < 8 * 1024 && page.contains("api/v1/status"), "{page}");
    // Read-only: anything but GET/HEAD is refused, and nothing changed.
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.write_all(b"POST /api/v1/status HTTP/1.1\r\nContent-Length: 0\r\n\r\n").unwrap();
    let mut answer = String::new();
    stream.set_read_timeout(Some(timeout())).unwrap();
    let _ = stream.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 405 "), "{answer}");
    online.disconnect();
    publisher.disconnect();
}

#[test]
fn status_json_lists_the_50_largest_backlogs_of_60_sessions() {
    if skip_in_reference("edgemq's status page") {
        return;
    }
    let broker = page_broker().start();
    let addr = http_addr(&broker);
    // s00..s09 have nothing queued, s10..s59 one message each, s59 three more.
    for k in 0..60 {
        let mut filters = vec![if k < 10 { "idle" } else { "busy" }];
        if k == 59 {
            filters.push("top");
        }
        park(&broker, &format!("s{k:02}"), &filters);
    }
    let mut publisher = TestClient::v311(&broker, "bound-pub");
    publisher.publish("busy", b"b", 1, false);
    for _ in 0..3 {
        publisher.publish("top", b"t", 1, false);
    }
    let doc = status_until(addr, "53 messages in the store", |d| {
        d.get("store.queued").map(String::as_str) == Some("53")
    });
    assert_eq!(field(&doc, "clients.persistent"), "60");
    assert_eq!(field(&doc, "sessions.len"), "50");
    assert_eq!(field(&doc, "sessions.0.client_id"), hex("s59"));
    assert_eq!(field(&doc, "sessions.0.queued"), "4");
    let mut listed = Vec::new();
    for i in 0..50 {
        let id = field(&doc, &format!("sessions.{i}.client_id")).to_string();
        let queued = field(&doc, &format!("sessions.{i}.queued"));
        if i > 0 {
            assert_eq!(queued, "1", "session {i} ({id})");
        }
        listed.push(id);
    }
    let mut expected: Vec<String> = (10..60).map(|k| hex(&format!("s{k:02}"))).collect();
    listed.sort();
    expected.sort();
    assert_eq!(listed, expected, "the sessions with a backlog, and only those");
    publisher.disconnect();
}

// ---------------------------------------------------------------------------------------------
// A real browser
// ---------------------------------------------------------------------------------------------

/// Runs headless Chromium on `url` with `args`; returns its standard output.
fn chromium(url: &str, args: &[&str]) -> String {
    let profile = common::TempDir::new("status-page-chromium");
    let mut child = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run chromium");
    let mut stdout = child.stdout.take().expect("stdout");
    let reader = thread::spawn(move || {
        let mut out = String::new();
        let _ = stdout.read_to_string(&mut out);
        out
    });
    let deadline = Instant::now() + scaled(Duration::from_secs(60)).max(Duration::from_secs(60));
    loop {
        if child.try_wait().expect("wait for chromium").is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish loading {url}");
        }
        thread::sleep(Duration::from_millis(50));
    }
    reader.join().expect("chromium output")
}

#[test]
fn chromium_shows_an_offline_session_and_its_queued_count() {
    if skip_in_reference("edgemq's status page") {
        return;
    }
    if !require_tool_from("chromium", "chromium") {
        return;
    }
    let broker = page_broker().start();
    let addr = http_addr(&broker);
    // Markup in an id must show as text, never become markup.
    let parked = "line-7 <b>plc</b> & \"co\"";
    park(&broker, parked, &["plant/#"]);
    let mut publisher = TestClient::v311(&broker, "page-pub");
    for i in 0..3 {
        publisher.publish("plant/temp", format!("{i}").as_bytes(), 1, false);
    }
    publisher.disconnect();
    status_until(addr, "3 messages queued", |d| {
        d.get("sessions.0.queued").map(String::as_str) == Some("3")
    });

    // The DOM once the page's script fetched /api/v1/status and filled the table.
    let dom = chromium(&format!("http://{addr}/"), &["--virtual-time-budget=3000", "--dump-dom"]);
    let row = "<tr><td class=\"id\">line-7 &lt;b&gt;plc&lt;/b&gt; &amp; \"co\"</td>\
               <td class=\"off\">offline</td><td class=\"n\">3</td><td class=\"n\">";
    assert!(dom.contains(row), "the session's row is not in the DOM:\n{dom}");
    assert!(!dom.contains("<b>plc</b>"), "the client id became markup:\n{dom}");
    assert!(dom.contains("<span id=\"err\"></span>"), "the page could not fetch:\n{dom}");
    assert!(dom.contains("<b id=\"queued\">3</b>"), "the queued card:\n{dom}");
    assert!(dom.contains("accepting writes"), "{dom}");
}

#[test]
fn hostile_client_ids_keep_the_document_valid_and_small_beside_a_healthy_session() {
    if skip_in_reference("edgemq's status page") {
        return;
    }
    let broker = page_broker().start();
    let addr = http_addr(&broker);
    // Ids of ~60 KB that JSON escaping makes longer: control characters (six bytes each
    // escaped), quotes and backslashes (two), and a four-byte character at the cut.
    let hostile = [
        "\u{1}".repeat(60_000),
        "\"\\".repeat(30_000),
        format!("{}😀{}", "a".repeat(254), "b".repeat(59_000)),
    ];
    for id in &hostile {
        park(&broker, id, &["h/#"]);
    }
    park(&broker, "healthy-1", &["h/#", "only-healthy"]);
    let mut publisher = TestClient::v311(&broker, "hostile-pub");
    publisher.publish("h/x", b"1", 1, false);
    publisher.publish("only-healthy", b"2", 1, false);

    let doc = status_until(addr, "the healthy session first with 2 messages", |d| {
        d.get("sessions.0.queued").map(String::as_str) == Some("2")
    });
    let (_, body) = get(addr, "/api/v1/status");
    assert!(body.len() < 100 * 1024, "{} bytes", body.len());
    assert_eq!(field(&doc, "sessions.len"), "4");
    assert_eq!(field(&doc, "sessions.0.client_id"), hex("healthy-1"));
    let mut shown: Vec<&str> =
        (1..4).map(|i| field(&doc, &format!("sessions.{i}.client_id"))).collect();
    shown.sort();
    let mut expected = vec![
        hex(&format!("{}…", "\u{1}".repeat(256))),
        hex(&format!("{}…", "\"\\".repeat(128))),
        hex(&format!("{}…", "a".repeat(254))),
    ];
    expected.sort();
    assert_eq!(shown, expected);
    // The MQTT side was served all along.
    publisher.publish("h/x", b"3", 1, false);
    publisher.disconnect();
}
