//! Authentication and authorisation end to end: password files written by Debian's
//! `mosquitto_passwd` and by `edgemq passwd`, CONNACK codes of both protocol versions, anonymous
//! clients on loopback and non-loopback listeners, the ACL on PUBLISH, SUBSCRIBE, delivery
//! (live, retained, queued), wills, `%c`/`%u` patterns, the login back-off, SIGHUP reloads, and
//! real `mosquitto_pub` clients.
//!
//! The password file of Mosquitto comes two ways: `tests/data/mosquitto.passwd` was made once
//! by mosquitto_passwd 2.0.11 (its header says how) and is always tested; the live tests run
//! mosquitto_passwd when it is installed (package `mosquitto`; .ci/run installs it, so under
//! CI=true it must be there). The package is not in `make deps`: on a systemd host it starts a
//! broker service on port 1883, which `make run` wants.

mod common;

use common::packets::{self, kind, Ack, Connect, Publish, Will};
use common::{
    edgemq_command, quiet_period, require_tool, require_tool_from, skip_in_reference, timeout,
    Broker, BrokerBuilder, Process, TempDir, TestClient,
};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const FIXTURE: &str = include_str!("data/mosquitto.passwd");

/// CONNACK codes (3.1.1 return codes, 5.0 reason codes).
const V3_BAD_CREDENTIALS: u8 = 0x04;
const V3_NOT_AUTHORIZED: u8 = 0x05;
const V3_SERVER_UNAVAILABLE: u8 = 0x03;
const V5_BAD_CREDENTIALS: u8 = 0x86;
const V5_NOT_AUTHORIZED: u8 = 0x87;

/// The files a test's broker reads, in a directory of their own.
struct AuthFiles {
    dir: TempDir,
}

impl AuthFiles {
    fn new() -> AuthFiles {
        AuthFiles { dir: TempDir::new("edgemq-auth") }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, text).expect("write auth file");
        path
    }
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("UTF-8 temp path")
}

/// A broker with the fixture password file and, if given, this ACL.
fn broker_with(files: &AuthFiles, acl: Option<&str>, builder: BrokerBuilder) -> Broker {
    let pw = files.write("passwd", FIXTURE);
    let mut builder = builder.set("auth", "password_file", path_str(&pw));
    if let Some(acl) = acl {
        let acl = files.write("acl", acl);
        builder = builder.set("auth", "acl_file", path_str(&acl));
    }
    builder.start()
}

fn connect_as(
    broker: &Broker,
    connect: Connect,
    user: Option<&str>,
    password: Option<&str>,
) -> (TestClient, u8) {
    let mut connect = connect;
    if let Some(user) = user {
        connect = connect.username(user);
    }
    if let Some(password) = password {
        connect = connect.password(password.as_bytes());
    }
    let (client, connack) = TestClient::try_handshake(broker, connect);
    (client, connack.code)
}

/// Logs in and asserts success.
fn login(broker: &Broker, connect: Connect, user: &str, password: &str) -> TestClient {
    let (client, code) = connect_as(broker, connect, Some(user), Some(password));
    assert_eq!(code, 0, "login of {user:?} refused with {code:#04x}");
    client
}

/// Expects a refusal with `code`, then the close.
fn refused(
    broker: &Broker,
    connect: Connect,
    user: Option<&str>,
    password: Option<&str>,
    code: u8,
) {
    let (mut client, got) = connect_as(broker, connect, user, password);
    assert_eq!(got, code, "expected CONNACK {code:#04x} for user {user:?}, got {got:#04x}");
    client.expect_closed();
}

#[test]
fn mosquitto_passwd_fixture_file_is_accepted_in_both_formats() {
    if skip_in_reference("edgemq's [auth] keys") {
        return;
    }
    let files = AuthFiles::new();
    let broker = broker_with(&files, None, BrokerBuilder::new());
    // $7$ (PBKDF2-SHA512), $6$ (salted SHA-512), a name with a space and a password with ':'.
    login(&broker, Connect::v311("a"), "alice", "alice-secret").disconnect();
    login(&broker, Connect::v5("c"), "carol", "carol-secret").disconnect();
    login(&broker, Connect::v311("d"), "dave smith", "pass:with spaces").disconnect();
}

#[test]
fn live_mosquitto_passwd_files_are_accepted() {
    if skip_in_reference("edgemq's [auth] keys")
        || !require_tool_from("mosquitto_passwd", "mosquitto")
    {
        return;
    }
    let files = AuthFiles::new();
    let pw = files.path("live.passwd");
    let run = |args: &[&str]| {
        let status = Command::new("mosquitto_passwd")
            .args(args)
            .stdin(Stdio::null())
            .status()
            .expect("run mosquitto_passwd");
        assert!(status.success(), "mosquitto_passwd {args:?}: {status}");
    };
    let pw_str = path_str(&pw);
    run(&["-c", "-b", pw_str, "pbkdf2-user", "first pass"]);
    run(&["-H", "sha512", "-b", pw_str, "sha-user", "second:pass"]);
    let broker = BrokerBuilder::new().set("auth", "password_file", pw_str).start();
    login(&broker, Connect::v311("p"), "pbkdf2-user", "first pass").disconnect();
    login(&broker, Connect::v5("s"), "sha-user", "second:pass").disconnect();
    refused(&broker, Connect::v311("p"), Some("pbkdf2-user"), Some("first"), V3_BAD_CREDENTIALS);
}

#[test]
fn wrong_or_missing_credentials_get_each_versions_code_and_one_log_line() {
    if skip_in_reference("edgemq's [auth] keys; Mosquitto answers 0x05 for a bad password") {
        return;
    }
    let files = AuthFiles::new();
    let broker = broker_with(&files, None, BrokerBuilder::new());
    refused(&broker, Connect::v311("v3-wrong"), Some("alice"), Some("nope"), V3_BAD_CREDENTIALS);
    refused(&broker, Connect::v5("v5-wrong"), Some("alice"), Some("nope"), V5_BAD_CREDENTIALS);
    // The right password works, and clears the address's failures (four in a row would block).
    login(&broker, Connect::v311("ok"), "alice", "alice-secret").disconnect();
    refused(&broker, Connect::v31("v31-wrong"), Some("mallory"), Some("x"), V3_BAD_CREDENTIALS);
    refused(&broker, Connect::v5("v5-nopass"), Some("alice"), None, V5_BAD_CREDENTIALS);
    // The log names the client id and the address (one line; the others within the second
    // are counted, not written).
    let line = broker.wait_for_log("about the refused login", |l| l.contains("login refused"));
    assert!(line.contains("\"v3-wrong\"") && line.contains("127.0.0.1:"), "{line}");
    assert!(line.contains("wrong password"), "{line}");
    login(&broker, Connect::v5("ok-5"), "alice", "alice-secret").disconnect();
}

#[test]
fn anonymous_clients_are_refused_on_a_non_loopback_listener() {
    if skip_in_reference("edgemq's listener and [auth] defaults") {
        return;
    }
    // No [auth] key at all: "auto" refuses anonymous clients once a listener is not loopback.
    let broker = BrokerBuilder::new().listen("0.0.0.0:0").start();
    broker.wait_for_log("saying anonymous clients are refused", |l| {
        l.contains("anonymous clients refused")
    });
    refused(&broker, Connect::v311("anon-3"), None, None, V3_NOT_AUTHORIZED);
    refused(&broker, Connect::v5("anon-5"), None, None, V5_NOT_AUTHORIZED);
    // A name without a password file proves nothing either.
    refused(&broker, Connect::v311("named"), Some("someone"), None, V3_NOT_AUTHORIZED);
}

#[test]
fn anonymous_clients_are_accepted_on_loopback_unless_refused_explicitly() {
    if skip_in_reference("edgemq's [auth] defaults") {
        return;
    }
    let broker = Broker::start();
    let first = broker.wait_for_log("about auth", |l| l.contains("auth: "));
    assert!(first.contains("anonymous clients accepted"), "{first}");
    TestClient::v311(&broker, "anon").disconnect();

    let strict = BrokerBuilder::new().set("auth", "allow_anonymous", false).start();
    refused(&strict, Connect::v5("anon"), None, None, V5_NOT_AUTHORIZED);
    // And allowed on a non-loopback listener when the config says so.
    let open =
        BrokerBuilder::new().listen("0.0.0.0:0").set("auth", "allow_anonymous", true).start();
    TestClient::v5(&open, "anon").disconnect();
}

/// Who may do what in the ACL tests.
const ACL: &str = "\
# anonymous clients: read-only sensors
topic read sensors/#

user alice
topic readwrite alice/#
topic deny alice/secret
topic read shared/#

user carol
topic write alice/#
topic write shared/#
topic readwrite will/carol

pattern readwrite devices/%c/#
pattern read inbox/%u/#
";

#[test]
fn acl_on_publish_v5_is_told_and_v311_is_acknowledged_and_dropped() {
    if skip_in_reference("edgemq's [auth] keys") {
        return;
    }
    let files = AuthFiles::new();
    let broker =
        broker_with(&files, Some(ACL), BrokerBuilder::new().set("auth", "allow_anonymous", true));
    let mut alice = login(&broker, Connect::v311("alice-sub"), "alice", "alice-secret");
    alice.subscribe("alice/#", 1);

    // carol may write alice/#, not sensors/#.
    let mut v5 = login(&broker, Connect::v5("carol-5"), "carol", "carol-secret");
    v5.send(&Publish::new("sensors/t", b"x").qos(1, 1).v5().build());
    let ack = Ack::parse(&v5.read_expected(kind::PUBACK), kind::PUBACK);
    assert_eq!((ack.packet_id, ack.reason), (1, V5_NOT_AUTHORIZED));
    v5.send(&Publish::new("sensors/t", b"x").qos(2, 2).v5().build());
    let rec = Ack::parse(&v5.read_expected(kind::PUBREC), kind::PUBREC);
    assert_eq!((rec.packet_id, rec.reason), (2, V5_NOT_AUTHORIZED));
    v5.publish("alice/from-carol", b"allowed", 1, false);
    alice.expect_message("alice/from-carol", b"allowed");

    let mut v3 = login(&broker, Connect::v311("carol-3"), "carol", "carol-secret");
    // QoS 1 and 2 complete normally (3.1.1 cannot be told) but nothing is delivered.
    v3.publish("alice/secret", b"denied", 1, false);
    v3.publish("alice/secret", b"denied", 2, false);
    v3.publish("sensors/t", b"denied", 0, false);
    v3.publish("alice/ok", b"allowed", 2, false);
    let p = alice.expect_publish();
    assert_eq!((p.topic.as_str(), p.payload.as_slice()), ("alice/ok", &b"allowed"[..]));
    alice.ack(&p);
    alice.ping();
    alice.expect_no_packet(quiet_period());
    // Anonymous clients may not write sensors/# (read-only).
    let mut anon = TestClient::v5(&broker, "anon");
    anon.send(&Publish::new("sensors/t", b"x").qos(1, 7).v5().build());
    let ack = Ack::parse(&anon.read_expected(kind::PUBACK), kind::PUBACK);
    assert_eq!(ack.reason, V5_NOT_AUTHORIZED);
    let line = broker.wait_for_log("about the denied publish", |l| l.contains("not allowed"));
    assert!(line.contains("PUBLISH to \"sensors/t\""), "{line}");
}

#[test]
fn acl_on_subscribe_0x80_for_v311_and_0x87_for_v5() {
    if skip_in_reference("edgemq's [auth] keys") {
        return;
    }
    let files = AuthFiles::new();
    let broker = broker_with(&files, Some(ACL), BrokerBuilder::new());
    let mut v3 = login(&broker, Connect::v311("alice-3"), "alice", "alice-secret");
    assert_eq!(v3.subscribe_opts("sensors/#", 1), 0x80);
    assert_eq!(v3.subscribe_opts("#", 0), 0x80);
    assert_eq!(v3.subscribe_opts("alice/secret", 0), 0x80);
    assert_eq!(v3.subscribe_opts("alice/+", 1), 1);
    let mut v5 = login(&broker, Connect::v5("alice-5"), "alice", "alice-secret");
    assert_eq!(v5.subscribe_opts("sensors/#", 1), V5_NOT_AUTHORIZED);
    assert_eq!(v5.subscribe_opts("shared/x", 2), 2);
    // carol has only write rules: no subscription at all.
    let mut carol = login(&broker, Connect::v5("carol"), "carol", "carol-secret");
    assert_eq!(carol.subscribe_opts("alice/#", 0), V5_NOT_AUTHORIZED);
    // One SUBSCRIBE, several filters: each gets its own answer.
    let id = v5.next_id();
    v5.send(&packets::subscribe_v5(id, &[], &[("alice/a", 1), ("sensors/a", 1)]));
    let suback = packets::Suback::parse(&v5.read_expected(kind::SUBACK), true);
    assert_eq!(suback.codes, vec![1, V5_NOT_AUTHORIZED]);
}

#[test]
fn acl_applies_at_delivery_to_live_retained_and_queued_messages() {
    if skip_in_reference("edgemq's [auth] keys") {
        return;
    }
    let files = AuthFiles::new();
    let broker = broker_with(&files, Some(ACL), BrokerBuilder::new());
    // carol writes retained messages on a topic alice may read and on one she may not.
    let mut carol = login(&broker, Connect::v311("carol"), "carol", "carol-secret");
    carol.publish("alice/secret", b"retained secret", 1, true);
    carol.publish("alice/public", b"retained public", 1, true);

    // alice's alice/# is granted (it overlaps the deny rule only in part): the denied topic
    // is filtered out of the retained messages...
    let mut alice = login(&broker, Connect::v311("alice").clean(false), "alice", "alice-secret");
    alice.subscribe("alice/#", 1);
    let p = alice.expect_message("alice/public", b"retained public");
    assert!(p.retain);
    alice.ping();
    alice.expect_no_packet(quiet_period());
    // ...out of live messages...
    carol.publish("alice/secret", b"live secret", 1, false);
    carol.publish("alice/public", b"live public", 1, false);
    alice.expect_message("alice/public", b"live public");
    // ...and out of messages queued while she is offline.
    alice.disconnect();
    carol.publish("alice/secret", b"queued secret", 1, false);
    carol.publish("alice/public", b"queued public", 1, false);
    let mut alice = login(&broker, Connect::v311("alice").clean(false), "alice", "alice-secret");
    alice.expect_message("alice/public", b"queued public");
    alice.ping();
    alice.expect_no_packet(quiet_period());
}

#[test]
fn wills_obey_the_acl_of_their_client() {
    if skip_in_reference("edgemq's [auth] keys") {
        return;
    }
    let files = AuthFiles::new();
    let broker = broker_with(&files, Some(ACL), BrokerBuilder::new());
    // A will on a topic carol may not write: refused at CONNECT, as Mosquitto does.
    let denied = Connect::v311("carol-will").will(Will::new("sensors/will", b"w"));
    refused(&broker, denied, Some("carol"), Some("carol-secret"), V3_NOT_AUTHORIZED);
    let denied = Connect::v5("carol-will").will(Will::new("sensors/will", b"w"));
    refused(&broker, denied, Some("carol"), Some("carol-secret"), V5_NOT_AUTHORIZED);

    // An allowed will is published when the connection drops.
    let mut watcher = login(&broker, Connect::v311("watcher"), "alice", "alice-secret");
    watcher.subscribe("alice/#", 0);
    let allowed = Connect::v311("carol-will").will(Will::new("alice/carol-gone", b"bye"));
    let carol = login(&broker, allowed, "carol", "carol-secret");
    carol.drop_connection();
    watcher.expect_message("alice/carol-gone", b"bye");
}

#[test]
fn patterns_substitute_client_id_and_user_name() {
    if skip_in_reference("edgemq's [auth] keys") {
        return;
    }
    let files = AuthFiles::new();
    let broker =
        broker_with(&files, Some(ACL), BrokerBuilder::new().set("auth", "allow_anonymous", true));
    // %c: a device may use its own subtree only, anonymous or not.
    let mut dev = TestClient::v5(&broker, "dev-7");
    assert_eq!(dev.subscribe_opts("devices/dev-7/#", 1), 1);
    assert_eq!(dev.subscribe_opts("devices/dev-8/#", 1), V5_NOT_AUTHORIZED);
    dev.publish("devices/dev-7/up", b"self", 1, false);
    dev.expect_message("devices/dev-7/up", b"self");
    dev.send(&Publish::new("devices/dev-8/up", b"other").qos(1, 99).v5().build());
    let ack = Ack::parse(&dev.read_expected(kind::PUBACK), kind::PUBACK);
    assert_eq!(ack.reason, V5_NOT_AUTHORIZED);
    // A client id with a wildcard gets no pattern rule.
    let mut sneaky = TestClient::v5(&broker, "+");
    assert_eq!(sneaky.subscribe_opts("devices/+/#", 0), V5_NOT_AUTHORIZED);
    // %u: only clients with that user name; anonymous clients get no %u rule.
    let mut alice = login(&broker, Connect::v5("a"), "alice", "alice-secret");
    assert_eq!(alice.subscribe_opts("inbox/alice/#", 0), 0);
    assert_eq!(alice.subscribe_opts("inbox/carol/#", 0), V5_NOT_AUTHORIZED);
    let mut anon = TestClient::v5(&broker, "anon");
    assert_eq!(anon.subscribe_opts("inbox/+/x", 0), V5_NOT_AUTHORIZED);
}

#[test]
fn repeated_failures_from_one_address_are_refused_fast_then_let_through() {
    if skip_in_reference("edgemq's login back-off") {
        return;
    }
    let files = AuthFiles::new();
    let broker = broker_with(&files, None, BrokerBuilder::new());
    for i in 0..4 {
        let id = format!("guess-{i}");
        refused(&broker, Connect::v311(&id), Some("alice"), Some("guess"), V3_BAD_CREDENTIALS);
    }
    // Blocked now: even the right password is refused, without a check, with "try later".
    refused(
        &broker,
        Connect::v311("right"),
        Some("alice"),
        Some("alice-secret"),
        V3_SERVER_UNAVAILABLE,
    );
    let (mut v5, code) =
        connect_as(&broker, Connect::v5("right-5"), Some("alice"), Some("alice-secret"));
    assert_eq!(code, 0x89, "v5 Server busy while blocked");
    v5.expect_closed();
    // The block is short (1 s after the fourth failure): the right password gets in again.
    let deadline = std::time::Instant::now() + timeout();
    loop {
        let (client, code) =
            connect_as(&broker, Connect::v311("retry"), Some("alice"), Some("alice-secret"));
        if code == 0 {
            client.disconnect();
            break;
        }
        assert_eq!(code, V3_SERVER_UNAVAILABLE);
        assert!(std::time::Instant::now() < deadline, "still blocked after {:?}", timeout());
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let let_in_at = std::time::Instant::now();
    // The refusals in between were not all logged (one line a second at most): how many were
    // left out is logged once their second is over, or on the next refusal line if one comes
    // first.
    let line = broker.wait_for_log("summing up the refusals left out", |l| {
        l.contains("more like this not logged") && l.contains("login refused")
    });
    assert!(line.contains("WARN"), "{line}");
    // Refusals after the window are logged again. Under qemu the retry loop spans several
    // seconds and logs several summaries: the one seen above may be an earlier one, and the
    // last (due 1 s after the last refusal logged, before the let-in) opens a window of its
    // own. 2.5 s after the let-in both are over.
    let before = broker.log().len();
    let quiet = std::time::Duration::from_millis(2500).saturating_sub(let_in_at.elapsed());
    std::thread::sleep(quiet.max(std::time::Duration::from_millis(1100)));
    refused(&broker, Connect::v311("late"), Some("alice"), Some("x"), V3_BAD_CREDENTIALS);
    broker.wait_for_log("about the late refusal", |l| {
        l.contains("\"late\"") && l.contains("login refused")
    });
    assert!(broker.log().len() > before);
}

#[test]
fn sighup_reloads_the_files_and_a_bad_file_keeps_the_old_rules() {
    if skip_in_reference("edgemq's [auth] keys") {
        return;
    }
    let files = AuthFiles::new();
    let broker = broker_with(&files, Some(ACL), BrokerBuilder::new());
    let mut alice = login(&broker, Connect::v311("alice"), "alice", "alice-secret");
    alice.subscribe("shared/#", 1);
    let mut carol = login(&broker, Connect::v311("carol"), "carol", "carol-secret");
    carol.publish("shared/1", b"before", 1, false);
    alice.expect_message("shared/1", b"before");

    // New files: a new user (written by edgemq passwd), alice loses shared/#.
    let pw = files.path("passwd");
    let status = edgemq_command()
        .args(["passwd", "-b", path_str(&pw), "erin", "erin-secret"])
        .status()
        .expect("run edgemq passwd");
    assert!(status.success());
    files.write("acl", &ACL.replace("topic read shared/#\n", ""));
    refused(&broker, Connect::v5("erin"), Some("erin"), Some("erin-secret"), V5_BAD_CREDENTIALS);
    broker.signal("HUP");
    broker.wait_for_log("about the reload", |l| l.contains("reloaded: auth:"));

    // Connections stayed; erin gets in; the subscription granted before no longer delivers.
    login(&broker, Connect::v5("erin"), "erin", "erin-secret").disconnect();
    carol.publish("shared/2", b"after", 1, false);
    alice.ping();
    alice.expect_no_packet(quiet_period());

    // A broken file: the reload fails, says why, and the rules in force stay.
    files.write("passwd", "erin:plain-text\n");
    broker.signal("HUP");
    let line = broker.wait_for_log("about the failed reload", |l| l.contains("reload failed"));
    assert!(line.contains("auth.password_file") && line.contains("line 1"), "{line}");
    login(&broker, Connect::v5("erin-again"), "erin", "erin-secret").disconnect();
    carol.ping();
    alice.ping();
}

#[test]
fn edgemq_passwd_writes_files_the_broker_and_mosquitto_passwd_share() {
    if skip_in_reference("edgemq's [auth] keys") {
        return;
    }
    let files = AuthFiles::new();
    let pw = files.path("made.passwd");
    let pw_str = path_str(&pw);
    let run = |args: &[&str], stdin: Option<&str>| {
        let mut child = edgemq_command()
            .arg("passwd")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run edgemq passwd");
        let mut input = child.stdin.take().expect("stdin");
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).expect("write stdin");
        }
        drop(input);
        child.wait_with_output().expect("wait for edgemq passwd")
    };
    assert!(run(&["-c", "-b", pw_str, "frank", "frank-1"], None).status.success());
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&pw), 0o600, "a new password file is private");
    // An existing file keeps the mode it was given (e.g. readable by the broker's group).
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o640)).unwrap();
    // Not a terminal: the password is one line of standard input.
    assert!(run(&[pw_str, "gina"], Some("gina-1\n")).status.success());
    assert!(run(&["-b", pw_str, "henry", "henry-1"], None).status.success());
    assert!(run(&["-D", pw_str, "henry"], None).status.success());
    let missing = run(&["-D", pw_str, "henry"], None);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("not found"));
    let text = std::fs::read_to_string(&pw).unwrap();
    assert!(text.starts_with("frank:$7$101$") && text.contains("\ngina:$7$101$"), "{text}");
    assert!(!text.contains("henry"));
    assert_eq!(mode(&pw), 0o640);
    // mosquitto_passwd edits the same file.
    let with_mosquitto = require_tool_from("mosquitto_passwd", "mosquitto");
    if with_mosquitto {
        let status = Command::new("mosquitto_passwd")
            .args(["-b", pw_str, "ivan", "ivan-1"])
            .stdin(Stdio::null())
            .status()
            .expect("run mosquitto_passwd");
        assert!(status.success());
    }
    let broker = BrokerBuilder::new().set("auth", "password_file", pw_str).start();
    login(&broker, Connect::v311("f"), "frank", "frank-1").disconnect();
    login(&broker, Connect::v5("g"), "gina", "gina-1").disconnect();
    refused(&broker, Connect::v311("h"), Some("henry"), Some("henry-1"), V3_BAD_CREDENTIALS);
    if with_mosquitto {
        login(&broker, Connect::v311("i"), "ivan", "ivan-1").disconnect();
    }
}

#[test]
fn mosquitto_pub_with_user_and_password_is_accepted_and_refused() {
    if skip_in_reference("edgemq's [auth] keys") || !require_tool("mosquitto_pub") {
        return;
    }
    let files = AuthFiles::new();
    let broker = broker_with(&files, Some(ACL), BrokerBuilder::new());
    let mut alice = login(&broker, Connect::v311("alice"), "alice", "alice-secret");
    alice.subscribe("alice/#", 1);
    let port = broker.port().to_string();
    let pub_cmd = |user: &str, password: &str, version: &str| {
        let mut cmd = Command::new("mosquitto_pub");
        cmd.args(["-h", "127.0.0.1", "-p", &port, "-V", version, "-q", "1"]).args([
            "-u",
            user,
            "-P",
            password,
            "-t",
            "alice/from-cli",
            "-m",
            "hello",
        ]);
        cmd
    };
    for version in ["mqttv311", "mqttv5"] {
        Process::spawn(pub_cmd("carol", "carol-secret", version)).expect_success(timeout());
        alice.expect_message("alice/from-cli", b"hello");
    }
    for (version, says) in [("mqttv311", "bad user name or password"), ("mqttv5", "ad user")] {
        let mut wrong = Process::spawn(pub_cmd("carol", "wrong", version));
        let status = wrong.wait(timeout());
        assert!(!status.success(), "mosquitto_pub with a wrong password must fail");
        let said = wrong.stderr().join("\n").to_lowercase();
        assert!(said.contains(says), "mosquitto_pub {version} said: {said}");
    }
    alice.ping();
    alice.expect_no_packet(quiet_period());
}
