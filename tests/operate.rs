//! Operating edgemq like a gateway daemon, against the real binary:
//! - SIGHUP re-reads the config: a live limit applies to new connections while the open ones
//!   keep working; keys that need a restart are named in one warning line; a bad file keeps the
//!   running configuration and says why.
//! - `edgemq check`: the effective config as TOML plus the capacity report, exit 0 / 2, and the
//!   data directory untouched.
//! - `EDGEMQ_<SECTION>_<KEY>` environment overrides: applied, shown by check, refused with one
//!   line naming the variable.
//! - `sqlite.on_corrupt = "quarantine"`: the corrupt file and its log are renamed aside, never
//!   deleted, and the broker serves with an empty store.
//! - Every command that prints exits quietly when its standard output is closed early, and an
//!   error keeps its exit status when standard error is closed.
//!
//! Reference mode (`EDGEMQ_TEST_REFERENCE=mosquitto`): skipped, all of this is edgemq's own.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::packets::Connect;
use common::{
    closed_within, edgemq_command, skip_in_reference, timeout, Broker, BrokerBuilder, Process,
    TempDir, TestClient,
};

/// `a` publishes at QoS 1 and `b`, subscribed to `t`, receives it: both still served.
fn still_served(a: &mut TestClient, b: &mut TestClient, payload: &[u8]) {
    a.publish("t", payload, 1, false);
    let got = b.expect_publish();
    assert_eq!(got.payload, payload);
}

/// Sends SIGHUP and waits for the reload to be done (its summary line, or its error, is its
/// last line); returns the lines logged since line `after`.
fn reload(broker: &Broker, after: usize) -> Vec<String> {
    broker.signal("HUP");
    let deadline = Instant::now() + timeout();
    loop {
        let log = broker.log();
        let new: Vec<String> = log.into_iter().skip(after).collect();
        let done = new.iter().any(|l| {
            l.contains("reload: applied")
                || l.contains("reload: no setting that applies live changed")
                || l.contains("reload failed, the running configuration stays")
        });
        if done {
            // The summary is the reload's last line: everything before it is in `new`.
            return new;
        }
        assert!(Instant::now() < deadline, "no reload within {:?}: {new:?}", timeout());
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn sighup_applies_a_lower_per_address_limit_to_new_connections_while_open_ones_keep_working() {
    if skip_in_reference("SIGHUP config reload is edgemq's") {
        return;
    }
    let mut broker = BrokerBuilder::new()
        .mqtt("max_connections_per_address", 0)
        .mqtt("max_pending_connections", 0)
        .start();
    let mut a = TestClient::v311(&broker, "reload-a");
    let mut b = TestClient::v311(&broker, "reload-b");
    b.subscribe("t", 1);
    let mut c = TestClient::v311(&broker, "reload-c");
    still_served(&mut a, &mut b, b"before");

    // Three connections are open from 127.0.0.1; the new limit is 3.
    broker.reconfigure("mqtt", "max_connections_per_address", 3);
    broker.write_config();
    let lines = reload(&broker, broker.log().len());
    assert!(
        lines
            .iter()
            .any(|l| l.contains("reload: applied mqtt.max_connections_per_address = 3 (was 0)")),
        "{lines:#?}"
    );
    assert!(!lines.iter().any(|l| l.contains("only applied by a restart")), "{lines:#?}");

    // A fourth connection is closed at accept, before CONNACK.
    let mut refused = TcpStream::connect(broker.addr()).expect("connect");
    let _ = refused.write_all(&Connect::v311("reload-d").build());
    assert!(closed_within(&mut refused, timeout()), "the 4th connection was not refused");

    // The three open ones keep working.
    still_served(&mut a, &mut b, b"after");
    c.ping();
    broker.wait_for_log("the refusal", |l| {
        l.contains("connection refused") && l.contains("mqtt.max_connections_per_address")
    });

    // Back to no limit: a new connection is accepted again.
    broker.reconfigure("mqtt", "max_connections_per_address", 0);
    broker.write_config();
    reload(&broker, broker.log().len());
    let mut d = TestClient::v311(&broker, "reload-d");
    d.ping();
}

#[test]
fn sighup_names_every_key_that_needs_a_restart_in_one_warning_and_keeps_their_values() {
    if skip_in_reference("SIGHUP config reload is edgemq's") {
        return;
    }
    let mut broker = BrokerBuilder::new().start();
    broker.reconfigure("mqtt", "max_inflight", 5);
    broker.reconfigure("sqlite", "durability", "batch");
    broker.reconfigure("mqtt", "max_topic_levels", 3);
    broker.write_config();
    let lines = reload(&broker, broker.log().len());
    let warnings: Vec<&String> =
        lines.iter().filter(|l| l.contains("only applied by a restart")).collect();
    assert_eq!(warnings.len(), 1, "{lines:#?}");
    let warning = warnings[0];
    assert!(warning.contains("WARN"), "{warning}");
    assert!(warning.contains("mqtt.max_inflight"), "{warning}");
    assert!(warning.contains("sqlite.durability"), "{warning}");
    assert!(!warning.contains("max_topic_levels"), "a live key named as restart: {warning}");
    assert!(
        lines.iter().any(|l| l.contains("reload: applied mqtt.max_topic_levels = 3 (was 200)")),
        "{lines:#?}"
    );

    // max_inflight stays what CONNACK promises (Receive Maximum 128, the default)...
    let mut v5 = TestClient::v5(&broker, "restart-keys");
    v5.ping();
    // ...and the live one applies to the next packet: a 4-level topic is refused now.
    let mut sub = TestClient::v311(&broker, "levels-sub");
    sub.subscribe("a/b/c", 0);
    let mut publisher = TestClient::v311(&broker, "levels-pub");
    publisher.publish("a/b/c/d", b"deep", 0, false);
    publisher.expect_closed();
    publisher = TestClient::v311(&broker, "levels-pub2");
    publisher.publish("a/b/c", b"ok", 0, false);
    assert_eq!(sub.expect_publish().payload, b"ok");

    // A second SIGHUP without changes still names them: they still differ from what runs.
    let lines = reload(&broker, broker.log().len());
    let warning = lines.iter().find(|l| l.contains("only applied by a restart")).cloned();
    assert!(warning.is_some_and(|w| w.contains("mqtt.max_inflight")), "{lines:#?}");
}

#[test]
fn sighup_with_a_bad_file_keeps_the_running_config_and_says_why_in_one_line() {
    if skip_in_reference("SIGHUP config reload is edgemq's") {
        return;
    }
    let broker = BrokerBuilder::new()
        .mqtt("max_connections_per_address", 0)
        .mqtt("max_pending_connections", 0)
        .start();
    let mut a = TestClient::v311(&broker, "bad-a");
    let mut b = TestClient::v311(&broker, "bad-b");
    b.subscribe("t", 1);

    // Valid TOML, one bad value (and a live key changed beside it, which must not apply).
    let path = broker.config_path();
    let good = std::fs::read_to_string(&path).expect("read config");
    let bad = good.replace("max_connections_per_address = 0", "max_connections_per_address = 1")
        + "\n[log]\nlevel = \"loud\"\n";
    std::fs::write(&path, bad).expect("write config");
    let lines = reload(&broker, broker.log().len());
    let errors: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("reload failed, the running configuration stays"))
        .collect();
    assert_eq!(errors.len(), 1, "{lines:#?}");
    let shown = path.display().to_string();
    assert!(errors[0].contains(&format!("{shown}: ")), "file not named: {}", errors[0]);
    assert!(errors[0].contains("log.level"), "key not named: {}", errors[0]);
    assert!(!lines.iter().any(|l| l.contains("reload: applied")), "{lines:#?}");

    // The limit of 1 did not apply: more connections from the same address are accepted.
    let mut c = TestClient::v311(&broker, "bad-c");
    c.ping();
    still_served(&mut a, &mut b, b"still");

    // A file that is not TOML at all, and a missing file: the same.
    std::fs::write(&path, "[mqtt\n").expect("write config");
    let lines = reload(&broker, broker.log().len());
    assert!(
        lines.iter().any(|l| l.contains("reload failed") && l.contains("line 1")),
        "{lines:#?}"
    );
    std::fs::remove_file(&path).expect("remove config");
    let lines = reload(&broker, broker.log().len());
    assert!(
        lines.iter().any(|l| l.contains("reload failed") && l.contains("cannot read config file")),
        "{lines:#?}"
    );
    still_served(&mut a, &mut b, b"still 2");
}

/// Runs `edgemq check ARGS` with `env`; returns the status, stdout and stderr.
fn check(args: &[&str], env: &[(&str, &str)]) -> (ExitStatus, String, String) {
    let mut cmd = edgemq_command();
    cmd.arg("check").args(args).envs(env.iter().copied());
    let output = cmd.output().expect("run edgemq check");
    (
        output.status,
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn check_prints_the_effective_config_and_capacities_without_touching_the_data_directory() {
    if skip_in_reference("edgemq check") {
        return;
    }
    let dir = TempDir::new("edgemq-check");
    let conf = dir.path().join("edgemq.toml");
    std::fs::write(&conf, "[mqtt]\nmax_inflight = 7\n").expect("write config");
    let data = dir.path().join("no-such-data-dir");
    let conf_arg = conf.display().to_string();
    let data_arg = data.display().to_string();
    let (status, stdout, stderr) = check(&["--conf", &conf_arg, "--data", &data_arg], &[]);
    assert_eq!(status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(!data.exists(), "check created the data directory");
    assert!(stderr.is_empty(), "{stderr}");
    // The file's value, a default filled in, the flag's value and where it came from.
    assert!(stdout.contains("\nmax_inflight = 7\n"), "{stdout}");
    assert!(stdout.contains("\nmax_connections = 1024\n"), "{stdout}");
    assert!(stdout.contains(&format!("mounted_file_path = \"{data_arg}\"  # from --data")));
    assert!(stdout.contains("\non_corrupt = \"refuse\"\n"), "{stdout}");
    // The capacity report, as comments.
    assert!(stdout.contains("# capacity: connection input buffers up to "), "{stdout}");
    assert!(stdout.contains("# capacity: worst case "), "{stdout}");

    // What it prints is a config file that checks the same.
    let shown = dir.path().join("shown.toml");
    std::fs::write(&shown, &stdout).expect("write shown config");
    let shown_arg = shown.display().to_string();
    let (status, again, stderr) = check(&["--conf", &shown_arg, "--data", &data_arg], &[]);
    assert_eq!(status.code(), Some(0), "{again}\n{stderr}");
    let body = |s: &str| s.lines().skip(1).collect::<Vec<_>>().join("\n");
    assert_eq!(body(&again), body(&stdout));

    // A bad file: exit 2, one line naming the file and the key, nothing on stdout.
    std::fs::write(&conf, "[mqtt]\nmax_inflight = 0\n").expect("write config");
    let (status, stdout, stderr) = check(&["--conf", &conf_arg, "--data", &data_arg], &[]);
    assert_eq!(status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains(&format!("{conf_arg}: mqtt.max_inflight: expected ")), "{stderr}");
    assert!(!data.exists(), "check created the data directory");

    // Files the config names are read as at start-up: a missing certificate is exit 2 too.
    std::fs::write(
        &conf,
        "[listeners.secure]\nbind = \"127.0.0.1:0\"\nkind = \"tls\"\n\
         certfile = \"/nonexistent/c.pem\"\nkeyfile = \"/nonexistent/k.pem\"\n",
    )
    .expect("write config");
    let (status, stdout, stderr) = check(&["--conf", &conf_arg, "--data", &data_arg], &[]);
    assert_eq!(status.code(), Some(2), "{stdout}\n{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("listeners.secure") && stderr.contains("/nonexistent/"), "{stderr}");
}

#[test]
fn environment_overrides_are_applied_shown_and_refused_by_name() {
    if skip_in_reference("EDGEMQ_* variables are edgemq's") {
        return;
    }
    // Shown by check, with where each value came from; a flag beats the environment.
    let env = [
        ("EDGEMQ_MQTT_MAX_CONNECTIONS", "5000"),
        ("EDGEMQ_MQTT_MAX_SESSIONS", "5000"),
        ("EDGEMQ_SQLITE_DURABILITY", "batch"),
        ("EDGEMQ_LOG_LEVEL", "debug"),
    ];
    let (status, stdout, stderr) = check(&["--log-level", "warn", "--data", "/nonexistent"], &env);
    assert_eq!(status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("\nmax_connections = 5000  # from EDGEMQ_MQTT_MAX_CONNECTIONS\n"));
    assert!(stdout.contains("\ndurability = \"batch\"  # from EDGEMQ_SQLITE_DURABILITY\n"));
    assert!(stdout.contains("\nlevel = \"warn\"  # from --log-level\n"), "{stdout}");

    // Bad values: exit 2, one line naming the variable.
    let cases = [
        ("EDGEMQ_SQLITE_DURABILITY", "fast", "sqlite.durability: expected one of"),
        ("EDGEMQ_MQTT_MAX_CONNECTIONS", "lots", "mqtt.max_connections: expected an integer"),
        ("EDGEMQ_MQTT_MAX_CONECTIONS", "5", "unknown key \"mqtt.max_conections\""),
        ("EDGEMQ_BRIDGES_UP_ADDRESS", "10.0.0.1:1883", "[bridges.NAME] tables cannot be set"),
    ];
    for (name, value, what) in cases {
        let (status, stdout, stderr) = check(&[], &[(name, value)]);
        assert_eq!(status.code(), Some(2), "{name}={value}: {stdout}\n{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.starts_with(&format!("edgemq: {name}: ")), "{stderr}");
        assert!(stderr.contains(what), "{stderr}");

        // The broker itself refuses to start the same way, before touching its data directory.
        let dir = TempDir::new("edgemq-env-bad");
        let data = dir.path().join("data");
        let mut cmd = edgemq_command();
        cmd.args(["--listen", "127.0.0.1:0", "--data"]).arg(&data).env(name, value);
        let mut process = Process::spawn(cmd);
        let status = process.wait(timeout());
        assert_eq!(status.code(), Some(2), "{name}={value}");
        let stderr = process.stderr();
        assert_eq!(stderr.len(), 1, "{stderr:?}");
        assert!(stderr[0].starts_with(&format!("edgemq: {name}: ")), "{stderr:?}");
        assert!(!data.exists(), "the data directory was created");
    }

    // A running broker takes the variable: two connections at most.
    let broker = BrokerBuilder::new()
        .mqtt("max_connections_per_address", 0)
        .mqtt("max_pending_connections", 0)
        .env("EDGEMQ_MQTT_MAX_CONNECTIONS", "2")
        .start();
    let _one = TestClient::v311(&broker, "env-1");
    let _two = TestClient::v311(&broker, "env-2");
    let (_three, connack) = TestClient::try_handshake(&broker, Connect::v311("env-3"));
    assert_eq!(connack.code, 0x03, "3.1.1 Server unavailable at max_connections = 2");
    broker.wait_for_log("the capacity line", |l| l.contains("capacity: 2 connections"));
}

/// Garbage where the database and its write-ahead log live.
fn corrupt_store(dir: &Path) -> (Vec<u8>, Vec<u8>) {
    std::fs::create_dir_all(dir).expect("create data dir");
    let mut db = b"SQLite format 3\0".to_vec();
    db.extend((0..8192u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    let wal: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(40_503) >> 5) as u8).collect();
    std::fs::write(dir.join("edgemq.db"), &db).expect("write db");
    std::fs::write(dir.join("edgemq.db-wal"), &wal).expect("write wal");
    (db, wal)
}

#[test]
fn on_corrupt_quarantine_moves_the_files_aside_and_serves_with_an_empty_store() {
    if skip_in_reference("sqlite.on_corrupt is edgemq's") {
        return;
    }
    let dir = TempDir::new("edgemq-quarantine");
    let data = dir.path().join("data");
    let (db, wal) = corrupt_store(&data);
    let broker =
        BrokerBuilder::new().data_dir(&data).set("sqlite", "on_corrupt", "quarantine").start();
    let line = broker.wait_for_log("the quarantine", |l| l.contains("sqlite.on_corrupt"));
    assert!(line.contains("ERROR"), "{line}");
    assert!(line.contains(&data.join("edgemq.db").display().to_string()), "{line}");

    let mut names: Vec<String> = std::fs::read_dir(&data)
        .expect("list data dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let moved_db = names
        .iter()
        .find(|n| n.starts_with("edgemq.db.corrupt-") && !n.ends_with("-wal"))
        .unwrap_or_else(|| panic!("no quarantined database in {names:?}"))
        .clone();
    assert!(line.contains(&moved_db), "the line names the new name: {line}");
    assert_eq!(std::fs::read(data.join(&moved_db)).expect("read moved db"), db);
    assert_eq!(std::fs::read(data.join(format!("{moved_db}-wal"))).expect("moved wal"), wal);
    assert!(names.contains(&"edgemq.db".to_string()), "no fresh database: {names:?}");

    // It serves, with an empty store.
    let mut sub = TestClient::v311(&broker, "q-sub");
    sub.subscribe("t", 1);
    let mut publisher = TestClient::v311(&broker, "q-pub");
    still_served(&mut publisher, &mut sub, b"fresh");
}

#[test]
fn on_corrupt_refuse_is_the_default_and_leaves_the_files_alone() {
    if skip_in_reference("sqlite.on_corrupt is edgemq's") {
        return;
    }
    let dir = TempDir::new("edgemq-refuse");
    let data = dir.path().join("data");
    let (db, wal) = corrupt_store(&data);
    let mut cmd = edgemq_command();
    cmd.args(["--listen", "127.0.0.1:0", "--data"]).arg(&data);
    let mut process = Process::spawn(cmd);
    assert_eq!(process.wait(timeout()).code(), Some(1));
    assert_eq!(std::fs::read(data.join("edgemq.db")).expect("db"), db);
    assert_eq!(std::fs::read(data.join("edgemq.db-wal")).expect("wal"), wal);
    // Nothing renamed or removed (SQLite's -shm index may appear next to a write-ahead log).
    let mut left: Vec<String> = std::fs::read_dir(&data)
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n != "edgemq.db-shm")
        .collect();
    left.sort();
    assert_eq!(left, ["edgemq.db", "edgemq.db-wal"], "files in the data directory");
}

/// Runs `args` with standard output a pipe whose reading end is closed before the command
/// writes: it must exit 0 with no panic or error message.
fn assert_quiet_on_closed_stdout(args: &[&str], stdin: Option<&str>) {
    let mut cmd: Command = edgemq_command();
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    let mut child = cmd.spawn().expect("spawn edgemq");
    // Close our end of stdout at once: every write of the child fails with EPIPE.
    drop(child.stdout.take());
    if let (Some(text), Some(mut input)) = (stdin, child.stdin.take()) {
        let _ = input.write_all(text.as_bytes());
    }
    let mut stderr = String::new();
    child.stderr.take().expect("stderr").read_to_string(&mut stderr).expect("read stderr");
    let status = child.wait().expect("wait");
    assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    assert!(!stderr.contains("Broken pipe"), "{args:?}: {stderr}");
    assert_eq!(status.code(), Some(0), "{args:?}: {stderr}");
}

#[test]
fn every_printing_command_exits_quietly_when_stdout_is_closed() {
    if skip_in_reference("edgemq's command line") {
        return;
    }
    // A store for inspect to report on.
    let mut broker = Broker::start();
    let mut client = TestClient::v311(&broker, "pipe");
    client.subscribe("t", 1);
    let data = broker.data_dir();
    broker.terminate();
    let data = data.display().to_string();

    assert_quiet_on_closed_stdout(&["inspect", "--data", &data], None);
    assert_quiet_on_closed_stdout(&["check", "--data", &data], None);
    assert_quiet_on_closed_stdout(&["--help"], None);
    assert_quiet_on_closed_stdout(&["--version"], None);
    let dir = TempDir::new("edgemq-pipe-passwd");
    let file = dir.path().join("passwd").display().to_string();
    assert_quiet_on_closed_stdout(&["passwd", "-c", "-b", &file, "user", "secret"], None);
    assert_quiet_on_closed_stdout(&["passwd", &file, "user2"], Some("secret2\n"));
    let text = std::fs::read_to_string(&file).expect("password file");
    assert!(text.contains("user:$7$") && text.contains("user2:$7$"), "{text}");

    // And `| head` for real, when a shell is there: the whole pipeline succeeds.
    let bin =
        std::env::var("EDGEMQ_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_edgemq").to_string());
    let runner = std::env::var("EDGEMQ_TEST_RUNNER").unwrap_or_default();
    let script =
        format!("set -o pipefail; {runner} {bin} check --data {data} | head -c 10 >/dev/null");
    let output = Command::new("bash").args(["-c", &script]).output().expect("run bash");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{script}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// Runs `args` with standard error a pipe whose reading end is closed: the command's error
/// line is lost, its documented exit status is not (no panic's 101).
fn exit_code_with_closed_stderr(args: &[&str]) -> Option<i32> {
    let mut cmd: Command = edgemq_command();
    cmd.args(args).stdout(Stdio::null()).stderr(Stdio::piped()).stdin(Stdio::null());
    let mut child = cmd.spawn().expect("spawn edgemq");
    drop(child.stderr.take());
    child.wait().expect("wait").code()
}

#[test]
fn errors_keep_their_exit_status_when_stderr_is_closed() {
    if skip_in_reference("edgemq's command line") {
        return;
    }
    let dir = TempDir::new("edgemq-closed-stderr");
    let conf = dir.path().join("bad.toml");
    std::fs::write(&conf, "[mqtt]\nmax_connections = \"many\"\n").expect("write config");
    let conf = conf.display().to_string();
    assert_eq!(exit_code_with_closed_stderr(&["--no-such-flag"]), Some(2));
    assert_eq!(exit_code_with_closed_stderr(&["--conf", &conf]), Some(2));
    assert_eq!(exit_code_with_closed_stderr(&["check", "--conf", &conf]), Some(2));
}

#[test]
fn sighup_turns_sys_publication_on_and_off_without_a_restart() {
    if skip_in_reference("SIGHUP config reload is edgemq's") {
        return;
    }
    let mut broker = BrokerBuilder::new().set("sys", "interval", 0).start();
    let mut watcher = TestClient::v311(&broker, "sys-reload");
    watcher.subscribe("$SYS/broker/uptime", 0);
    watcher.expect_no_packet(common::scaled(Duration::from_millis(1500)));

    broker.reconfigure("sys", "interval", 1);
    broker.write_config();
    let lines = reload(&broker, broker.log().len());
    assert!(
        lines.iter().any(|l| l.contains("reload: applied sys.interval = \"1s\" (was \"0s\")")),
        "{lines:#?}"
    );
    let uptime = watcher.expect_publish();
    assert_eq!(uptime.topic, "$SYS/broker/uptime");
    let again = watcher.expect_publish();
    assert_eq!(again.topic, "$SYS/broker/uptime", "published again one interval later");

    broker.reconfigure("sys", "interval", 0);
    broker.write_config();
    reload(&broker, broker.log().len());
    // A publication already on its way may still arrive; after that, silence.
    let _ = watcher.try_read_packet(common::scaled(Duration::from_millis(300)));
    watcher.expect_no_packet(common::scaled(Duration::from_millis(2500)));
}
