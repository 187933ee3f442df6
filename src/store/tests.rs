//! Store tests on real files in a temporary directory.

use std::rc::Rc;
use std::time::{Duration, Instant};

use super::*;
use crate::codec::{ProtocolVersion, Publish, PublishProperties, QoS, SubscriptionOptions};
use crate::config::{Overflow, SqliteConfig};
use crate::test_support::TempDir;

fn config(edit: impl FnOnce(&mut SqliteConfig)) -> SqliteConfig {
    let mut sqlite = SqliteConfig::default();
    edit(&mut sqlite);
    sqlite
}

fn publish(topic: &str, payload: &[u8], qos: QoS) -> Publish {
    Publish {
        dup: false,
        qos,
        retain: false,
        topic: Rc::from(topic),
        packet_id: None,
        properties: PublishProperties {
            user_properties: vec![("k".into(), "v".into())],
            subscription_identifiers: vec![7],
            ..Default::default()
        },
        payload: Rc::from(payload),
    }
}

fn save(store: &mut Store, client_id: &str) -> StoredSessionId {
    let row = SessionRow { client_id, protocol: ProtocolVersion::V311, expiry: None, will: None };
    store.save_session(&row).expect("session saved")
}

fn committed(store: &mut Store) {
    assert!(matches!(store.commit(), Commit::Committed { .. }), "commit");
}

#[test]
fn sessions_subscriptions_and_queue_survive_reopen() {
    let dir = TempDir::new("reopen");
    let mut store = Store::open(dir.path(), config(|_| {})).expect("open");
    let id = save(&mut store, "sensor-1");
    let options =
        SubscriptionOptions { qos: QoS::AtLeastOnce, no_local: true, ..Default::default() };
    store.save_subscription(id, "sensors/#", &options, Some(3));
    store.add_inbound_qos2(id, 42);
    for seq in 1..=3 {
        let p = publish("sensors/t", format!("m{seq}").as_bytes(), QoS::AtLeastOnce);
        assert!(matches!(store.enqueue(id, seq, 1, p.clone(), None), Enqueued::Stored { .. }));
    }
    store.mark_pubrel(id, 1);
    committed(&mut store);
    drop(store);

    let mut store = Store::open(dir.path(), config(|_| {})).expect("reopen");
    let snapshot = store.load().expect("load");
    assert_eq!(snapshot.sessions.len(), 1);
    let s = &snapshot.sessions[0];
    assert_eq!(s.client_id, "sensor-1");
    assert_eq!(s.subscriptions, vec![("sensors/#".to_string(), options, Some(3))]);
    assert_eq!(s.inbound_qos2, vec![42]);
    assert_eq!(s.pubrel_pending, vec![1]);
    assert_eq!(s.first_queued_seq, Some(2));
    assert_eq!(s.next_seq, 4);
    assert_eq!(store.usage(id).messages, 3);
    let queued = store.load_queue(id, 2, 10);
    let payloads: Vec<&[u8]> = queued.iter().map(|q| &*q.publish.payload).collect();
    assert_eq!(payloads, vec![&b"m2"[..], b"m3"]);
    // The stored packet keeps what the subscriber must see.
    assert_eq!(queued[0].publish.properties.subscription_identifiers, vec![7]);
    assert_eq!(queued[0].publish.properties.user_properties, vec![("k".into(), "v".into())]);
}

#[test]
fn per_session_cap_evicts_oldest_unsent_only() {
    let dir = TempDir::new("cap");
    let mut store =
        Store::open(dir.path(), config(|c| c.max_queued_per_session = 2)).expect("open");
    let id = save(&mut store, "c");
    let p = publish("t", b"x", QoS::AtLeastOnce);
    store.enqueue(id, 1, 1, p.clone(), None);
    store.enqueue(id, 2, 1, p.clone(), None);
    // Row 1 was sent (first_unsent = 2): the eviction takes row 2, the oldest unsent.
    assert_eq!(
        store.enqueue(id, 3, 2, p.clone(), None),
        Enqueued::Stored { evicted: vec![(id, 2)] }
    );
    // With every row sent, nothing may be evicted for it: the new message is dropped.
    assert_eq!(store.enqueue(id, 4, 4, p.clone(), None), Enqueued::Dropped);
    committed(&mut store);
    assert_eq!(store.usage(id).messages, 2);
    assert_eq!(store.stats().evicted, 1);
    assert_eq!(store.stats().dropped, 1);
}

#[test]
fn global_cap_evicts_oldest_in_the_ring() {
    let dir = TempDir::new("global");
    let cfg = config(|c| {
        c.disk_cache_size = 3;
        c.max_queued_per_session = 3;
    });
    let mut store = Store::open(dir.path(), cfg).expect("open");
    let a = save(&mut store, "a");
    let b = save(&mut store, "b");
    let p = publish("t", b"x", QoS::AtLeastOnce);
    store.enqueue(a, 1, 1, p.clone(), None);
    store.enqueue(b, 1, 1, p.clone(), None);
    store.enqueue(a, 2, 1, p.clone(), None);
    assert_eq!(store.enqueue(b, 2, 1, p.clone(), None), Enqueued::Stored { evicted: vec![(a, 1)] });
    assert_eq!(store.total_messages(), 3);
    committed(&mut store);
}

#[test]
fn reject_and_drop_new_policies() {
    let dir = TempDir::new("policies");
    let cfg = config(|c| {
        c.max_queued_per_session = 1;
        c.overflow = Overflow::Reject;
    });
    let mut store = Store::open(dir.path(), cfg).expect("open");
    let id = save(&mut store, "c");
    let p = publish("t", b"x", QoS::AtLeastOnce);
    assert!(matches!(store.enqueue(id, 1, 1, p.clone(), None), Enqueued::Stored { .. }));
    assert_eq!(store.enqueue(id, 2, 1, p.clone(), None), Enqueued::Rejected);
    committed(&mut store);
}

#[test]
fn full_database_fails_the_batch_and_keeps_what_was_committed() {
    let dir = TempDir::new("full");
    let cfg = config(|c| c.max_db_size = 64 * 1024);
    let mut store = Store::open(dir.path(), cfg).expect("open");
    let id = save(&mut store, "c");
    committed(&mut store);
    let big = vec![0xAB; 8 * 1024];
    let p = publish("t", &big, QoS::AtLeastOnce);
    let mut stored = 0;
    let mut failed = false;
    for seq in 1..=64 {
        match store.enqueue(id, seq, 1, p.clone(), None) {
            Enqueued::Stored { .. } => stored += 1,
            Enqueued::Failed => {
                failed = true;
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
        if let Commit::Failed(_) = store.commit() {
            failed = true;
            break;
        }
    }
    assert!(failed, "a 64 KB database cannot hold 512 KB");
    assert!(stored > 0);
    let _ = store.commit();
    // Accounting matches the file again, and deleting still works on a full database.
    let usage = store.usage(id).messages;
    assert!(usage > 0 && usage < 64, "usage {usage}");
    assert!(store.remove(id, 1));
    committed(&mut store);
    assert_eq!(store.usage(id).messages, usage - 1);
}

#[test]
fn corrupt_file_is_refused_with_the_path_and_left_alone() {
    let dir = TempDir::new("corrupt");
    let path = dir.path().join(DB_FILE);
    let garbage = vec![0x42u8; 4096];
    std::fs::write(&path, &garbage).expect("write garbage");
    let error = Store::open(dir.path(), config(|_| {})).err().expect("refused");
    let text = error.to_string();
    assert!(text.contains(DB_FILE), "{text}");
    assert!(text.contains("move the file aside"), "{text}");
    assert_eq!(std::fs::read(&path).expect("still there"), garbage);
}

#[test]
fn newer_schema_is_refused() {
    let dir = TempDir::new("newer");
    {
        let store = Store::open(dir.path(), config(|_| {})).expect("open");
        store.db.pragma_update(None, "user_version", 99).expect("bump");
    }
    let error = Store::open(dir.path(), config(|_| {})).err().expect("refused");
    assert!(error.to_string().contains("newer"), "{error}");
}

#[test]
fn wall_clock_mapping_round_trips() {
    let dir = TempDir::new("clock");
    let now = Instant::now();
    let store =
        Store::open(dir.path(), config(|c| c.durability = Durability::Memory)).expect("open");
    let later = now + Duration::from_secs(90);
    let ms = store.wall_ms(later);
    let back = store.instant_of(ms);
    assert!(back.duration_since(later) < Duration::from_millis(2));
    assert!(later.duration_since(back) < Duration::from_millis(2));
    // A damaged deadline far in the future is capped instead of overflowing the clock.
    let far = store.instant_of(i64::MAX);
    assert!(far > later);
    // A deadline in the past maps to "due now".
    assert_eq!(store.instant_of(ms - 1_000_000), store.anchor.0);
}

#[test]
fn retained_and_session_deletion() {
    let dir = TempDir::new("retained");
    let now = Instant::now();
    let mut store = Store::open(dir.path(), config(|_| {})).expect("open");
    let mut r = publish("status/a", b"up", QoS::AtLeastOnce);
    r.retain = true;
    store.save_retained(r, Some(now + Duration::from_secs(60)));
    let mut gone = publish("status/b", b"x", QoS::AtMostOnce);
    gone.retain = true;
    store.save_retained(gone, None);
    store.delete_retained("status/b");
    let id = save(&mut store, "c");
    store.enqueue(id, 1, 1, publish("t", b"x", QoS::AtLeastOnce), None);
    store.delete_session(id);
    committed(&mut store);
    assert_eq!(store.total_messages(), 0);
    let snapshot = store.load().expect("load");
    assert!(snapshot.sessions.is_empty());
    assert_eq!(snapshot.retained.len(), 1);
    assert_eq!(&*snapshot.retained[0].publish.topic, "status/a");
    assert!(snapshot.retained[0].publish.retain);
    assert!(snapshot.retained[0].expires_at.is_some());
}

#[test]
fn inspect_reports_sessions_and_subscriptions() {
    let dir = TempDir::new("inspect");
    let mut store = Store::open(dir.path(), config(|_| {})).expect("open");
    let id = save(&mut store, "sensor-1");
    let options = SubscriptionOptions { qos: QoS::AtLeastOnce, ..Default::default() };
    store.save_subscription(id, "sensors/#", &options, None);
    store.enqueue(id, 1, 1, publish("sensors/t", b"x", QoS::AtLeastOnce), None);
    committed(&mut store);
    let report = inspect(dir.path()).expect("inspect");
    assert!(report.contains("session \"sensor-1\""), "{report}");
    assert!(report.contains("queued 1"), "{report}");
    assert!(report.contains("subscription \"sensors/#\" qos 1"), "{report}");
    assert!(report.contains("ring: 1 messages"), "{report}");
}

/// Every file in `dir` with its contents.
fn files(dir: &Path) -> Vec<(std::ffi::OsString, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| {
            let e = e.expect("entry");
            (e.file_name(), std::fs::read(e.path()).expect("read file"))
        })
        .collect();
    files.sort();
    files
}

#[test]
fn inspect_reports_an_uninitialised_store_without_touching_it() {
    // What a power cut right after the first start can leave: the database file exists but
    // its schema never reached the disk, either as an empty file or as a WAL-mode header
    // without tables. The broker starts on both; inspect must say so, not fail, and write
    // nothing.
    let empty = TempDir::new("inspect-empty");
    std::fs::write(empty.path().join(DB_FILE), b"").expect("create empty database file");
    let header = TempDir::new("inspect-header");
    {
        let db = Connection::open(header.path().join(DB_FILE)).expect("open");
        let mode: String =
            db.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)).expect("wal");
        assert_eq!(mode, "wal");
    }
    for dir in [&empty, &header] {
        let before = files(dir.path());
        let report = inspect(dir.path()).expect("inspect an uninitialised store");
        assert!(report.contains("uninitialised"), "{report}");
        assert!(report.contains("ring: 0 messages"), "{report}");
        assert!(report.contains("sessions: 0"), "{report}");
        assert_eq!(files(dir.path()), before, "inspect changed the data directory");
        // The broker itself starts on it and creates the schema.
        drop(Store::open(dir.path(), config(|_| {})).expect("open after inspect"));
        let report = inspect(dir.path()).expect("inspect");
        assert!(!report.contains("uninitialised"), "{report}");
        assert!(report.contains("sessions: 0"), "{report}");
    }
}

// ----- Delivered rows ---------------------------------------------------------------------------

fn physical_rows(store: &Store, id: StoredSessionId) -> i64 {
    store
        .db
        .query_row("SELECT count(*) FROM messages WHERE session = ?1", [id.0], |r| r.get(0))
        .expect("count")
}

fn fill(store: &mut Store, id: StoredSessionId, seqs: std::ops::RangeInclusive<i64>) {
    for seq in seqs {
        let p = publish("t", format!("m{seq}").as_bytes(), QoS::AtLeastOnce);
        assert!(matches!(store.enqueue(id, seq, seq, p, None), Enqueued::Stored { .. }));
    }
}

#[test]
fn delivered_prefix_leaves_the_ring_at_once_and_the_table_later() {
    let dir = TempDir::new("delivered");
    let mut store = Store::open(dir.path(), config(|_| {})).expect("open");
    let id = save(&mut store, "s");
    fill(&mut store, id, 1..=10);
    committed(&mut store);
    for seq in 1..=4 {
        store.forget(id, seq);
    }
    committed(&mut store);
    // No longer counted, but not deleted yet.
    assert_eq!(store.usage(id).messages, 6);
    assert_eq!(store.total_messages(), 6);
    assert_eq!(physical_rows(&store, id), 10);
    assert!(store.flush_deadline().is_some(), "the loop must wake up to delete them");
    // Later acknowledgements continue the prefix.
    store.forget(id, 5);
    committed(&mut store);
    assert_eq!(store.usage(id).messages, 5);
    // Nothing else to do: the quiet moment comes, the rows go.
    let later = Instant::now() + delivered::GARBAGE_DELAY + Duration::from_millis(10);
    assert!(matches!(store.commit_if_due(later), Commit::Committed { .. }));
    assert_eq!(physical_rows(&store, id), 5);
    // Only the log's checkpoint once the store stays quiet is left.
    assert_eq!(store.flush_deadline(), Some(later + space::QUIET));
    assert_eq!(store.load_queue(id, 1, 100).first().map(|q| q.seq), Some(6));
}

#[test]
fn out_of_order_acknowledgements_are_deleted_and_the_prefix_catches_up() {
    let dir = TempDir::new("delivered-gaps");
    let mut store = Store::open(dir.path(), config(|_| {})).expect("open");
    let id = save(&mut store, "s");
    fill(&mut store, id, 1..=6);
    committed(&mut store);
    store.forget(id, 3); // a QoS 2 flow finished before the QoS 1 messages around it
    committed(&mut store);
    assert_eq!(physical_rows(&store, id), 5, "a gap is deleted at once");
    assert_eq!(store.usage(id).messages, 5);
    store.forget(id, 1);
    store.forget(id, 2);
    committed(&mut store);
    store.forget(id, 4);
    committed(&mut store);
    assert_eq!(store.usage(id).messages, 2);
    assert_eq!(store.watermarks.get(&id), Some(&5), "the prefix runs over the deleted gap");
    assert_eq!(store.load_queue(id, 1, 100).iter().map(|q| q.seq).collect::<Vec<_>>(), [5, 6]);
}

#[test]
fn garbage_left_by_a_crash_is_deleted_at_open_and_never_loaded() {
    let dir = TempDir::new("delivered-crash");
    let id = {
        let mut store = Store::open(dir.path(), config(|_| {})).expect("open");
        let id = save(&mut store, "s");
        fill(&mut store, id, 1..=5);
        committed(&mut store);
        for seq in 1..=3 {
            store.forget(id, seq);
        }
        committed(&mut store);
        assert_eq!(physical_rows(&store, id), 5);
        id
        // Dropped without the bulk delete, as by kill -9.
    };
    let report = inspect(dir.path()).expect("inspect");
    assert!(report.contains("ring: 2 messages"), "inspect counts live rows only: {report}");
    let mut store = Store::open(dir.path(), config(|_| {})).expect("reopen");
    assert_eq!(physical_rows(&store, id), 2);
    assert_eq!(store.usage(id).messages, 2);
    let snapshot = store.load().expect("load");
    assert_eq!(snapshot.sessions[0].first_queued_seq, Some(4));
    assert_eq!(snapshot.sessions[0].next_seq, 6);
}

#[test]
fn many_delivered_rows_are_deleted_without_waiting_a_slice_per_pass() {
    let dir = TempDir::new("delivered-bulk");
    let mut store = Store::open(dir.path(), config(|_| {})).expect("open");
    store.garbage_limit = 25;
    store.garbage_chunk = 10;
    let id = save(&mut store, "s");
    fill(&mut store, id, 1..=31);
    committed(&mut store);
    for seq in 1..=30 {
        store.forget(id, seq);
    }
    committed(&mut store);
    assert_eq!(physical_rows(&store, id), 31, "deleting is left to the passes that follow");
    // Past the limit: the next pass deletes a slice, long before the quiet deadline.
    let now = Instant::now();
    assert!(matches!(store.commit_if_due(now), Commit::Committed { .. }));
    assert_eq!(physical_rows(&store, id), 21);
    // Below the limit again: the rest waits for the quiet moment, then goes a slice a pass,
    // the deadline staying due (the loop does not sleep) until it is all gone.
    assert!(matches!(store.commit_if_due(now), Commit::Idle));
    let quiet = store.flush_deadline().expect("a deadline for the rest");
    assert!(quiet > now);
    for left in [11, 1] {
        assert!(matches!(store.commit_if_due(quiet), Commit::Committed { .. }));
        assert_eq!(physical_rows(&store, id), left);
    }
    // Then only the quiet log's checkpoint is left, and after it nothing.
    let checkpoint = store.flush_deadline().expect("the quiet checkpoint");
    assert!(checkpoint > quiet);
    assert!(matches!(store.commit_if_due(checkpoint), Commit::Idle));
    assert_eq!(store.flush_deadline(), None);
    assert_eq!(store.usage(id).messages, 1);
}

#[test]
fn global_eviction_never_picks_a_delivered_row() {
    let dir = TempDir::new("delivered-evict");
    let mut store = Store::open(
        dir.path(),
        config(|c| {
            c.disk_cache_size = 4;
            c.overflow = Overflow::DropOldest;
        }),
    )
    .expect("open");
    let a = save(&mut store, "a");
    let b = save(&mut store, "b");
    fill(&mut store, a, 1..=2);
    fill(&mut store, b, 1..=2);
    committed(&mut store);
    store.forget(a, 1);
    committed(&mut store);
    // Three live rows: room for one more without evicting anything.
    fill(&mut store, b, 3..=3);
    committed(&mut store);
    assert_eq!(store.usage(a).messages, 1);
    assert_eq!(store.usage(b).messages, 3);
    // Full: the oldest live row (a/2) goes, not the delivered a/1.
    match store.enqueue(b, 4, 4, publish("t", b"m", QoS::AtLeastOnce), None) {
        Enqueued::Stored { evicted } => assert_eq!(evicted, vec![(a, 2)]),
        other => panic!("{other:?}"),
    }
    committed(&mut store);
    assert_eq!(store.usage(a).messages, 0);
}

#[test]
fn a_deleted_session_id_reused_starts_without_a_watermark() {
    let dir = TempDir::new("delivered-reuse");
    let mut store = Store::open(dir.path(), config(|_| {})).expect("open");
    let id = save(&mut store, "s");
    fill(&mut store, id, 1..=3);
    committed(&mut store);
    store.forget(id, 1);
    store.forget(id, 2);
    committed(&mut store);
    store.delete_session(id);
    let again = save(&mut store, "t");
    fill(&mut store, again, 1..=2);
    committed(&mut store);
    assert_eq!(store.usage(again).messages, 2);
    assert_eq!(store.load_queue(again, 1, 10).len(), 2);
}

#[test]
fn a_full_database_deletes_its_delivered_rows_before_refusing_again() {
    let dir = TempDir::new("delivered-full");
    let mut store = Store::open(dir.path(), config(|c| c.max_db_size = 64 * 1024)).expect("open");
    let id = save(&mut store, "c");
    committed(&mut store);
    let p = publish("t", &vec![0xAB; 8 * 1024], QoS::AtLeastOnce);
    let mut seq = 0;
    loop {
        seq += 1;
        assert!(seq < 64, "a 64 KB database cannot hold 512 KB");
        let enqueued = store.enqueue(id, seq, seq, p.clone(), None);
        if enqueued == Enqueued::Failed || matches!(store.commit(), Commit::Failed(_)) {
            break;
        }
    }
    let _ = store.commit();
    let live = store.usage(id).messages as i64;
    // Everything stored is delivered: garbage that still fills the file.
    for s in 1..seq {
        store.forget(id, s);
    }
    committed(&mut store);
    assert_eq!(store.usage(id).messages, 0);
    assert_eq!(physical_rows(&store, id), live);
    // The next message does not fit until the garbage is gone; the failed batch deletes it.
    let next = store.enqueue(id, seq, seq, p.clone(), None);
    assert!(matches!(store.commit(), Commit::Failed(_)), "the message must not fit: {next:?}");
    // The failed commit deleted the garbage at once, in a transaction of its own.
    assert!(matches!(store.commit(), Commit::Idle));
    assert_eq!(physical_rows(&store, id), 0);
    assert!(matches!(store.enqueue(id, seq, seq, p, None), Enqueued::Stored { .. }));
    committed(&mut store);
}

#[test]
fn a_schema_1_database_is_migrated_and_keeps_its_queue() {
    let dir = TempDir::new("migrate-1");
    {
        // A database as the first release wrote it.
        let db = rusqlite::Connection::open(dir.path().join(DB_FILE)).expect("create");
        db.execute_batch(schema::MIGRATIONS[0]).expect("schema 1");
        db.pragma_update(None, "user_version", 1).expect("version");
        db.execute("INSERT INTO sessions (id, client_id, protocol) VALUES (1, 'old', 4)", [])
            .expect("session");
        let packet = blob::encode_publish(publish("t", b"kept", QoS::AtLeastOnce));
        db.execute(
            "INSERT INTO messages (session, seq, size, packet) VALUES (1, 7, ?1, ?2)",
            rusqlite::params![packet.len() as i64, packet],
        )
        .expect("message");
    }
    let mut store = Store::open(dir.path(), config(|_| {})).expect("open migrates");
    let version: i64 = store.db.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    assert_eq!(version, schema::MIGRATIONS.len() as i64);
    let snapshot = store.load().expect("load");
    assert_eq!(snapshot.sessions[0].first_queued_seq, Some(7));
    let id = snapshot.sessions[0].id;
    let queued = store.load_queue(id, 7, 10);
    assert_eq!(&*queued[0].publish.payload, b"kept");
}

// ---- disk space (`space`) -------------------------------------------------------------------

fn file_len(dir: &TempDir, name: &str) -> u64 {
    std::fs::metadata(dir.path().join(name)).map_or(0, |m| m.len())
}

fn wal_len(dir: &TempDir) -> u64 {
    file_len(dir, &format!("{DB_FILE}-wal"))
}

/// Enqueues 64-byte messages one commit each from `seq` on, until a commit fails; returns the
/// first seq that was refused.
fn fill_until_full(store: &mut Store, id: StoredSessionId, mut seq: i64) -> i64 {
    let p = publish("t", &[0x5A; 64], QoS::AtLeastOnce);
    loop {
        assert!(seq < 1_000_000, "never full");
        let enqueued = store.enqueue(id, seq, seq, p.clone(), None);
        if enqueued == Enqueued::Failed || matches!(store.commit(), Commit::Failed(_)) {
            let _ = store.commit();
            return seq;
        }
        seq += 1;
    }
}

#[test]
fn the_log_stays_within_max_wal_size_and_is_truncated_when_the_store_is_quiet() {
    let dir = TempDir::new("wal-bound");
    let limit = 64 * 1024;
    let mut store = Store::open(dir.path(), config(|c| c.max_wal_size = limit)).expect("open");
    let id = save(&mut store, "s");
    committed(&mut store);
    let p = publish("t", &[0x5A; 64], QoS::AtLeastOnce);
    let mut largest = 0;
    for seq in 1..=3_000 {
        assert!(matches!(store.enqueue(id, seq, seq, p.clone(), None), Enqueued::Stored { .. }));
        if seq > 10 {
            store.forget(id, seq - 10);
        }
        committed(&mut store);
        largest = largest.max(wal_len(&dir));
    }
    // SQLite's default would have let it grow to ~4 MB (1000 pages) before a checkpoint.
    assert!(largest > 0 && largest <= limit, "the log reached {largest} bytes (bound {limit})");
    // Once nothing is written for a moment, the loop truncates it.
    // (Delivered rows are deleted first, at their own deadlines.)
    for _ in 0..10 {
        let Some(at) = store.flush_deadline() else { break };
        store.commit_if_due(at);
    }
    assert_eq!(wal_len(&dir), 0, "the quiet log was not truncated");
    assert_eq!(store.flush_deadline(), None, "an idle store must not wake the loop");
}

#[test]
fn max_db_size_counts_the_log() {
    let dir = TempDir::new("db-size-wal");
    let max = 1024 * 1024;
    let mut store = Store::open(dir.path(), config(|c| c.max_db_size = max)).expect("open");
    let id = save(&mut store, "s");
    committed(&mut store);
    let mut largest = 0;
    let p = publish("t", &[0x5A; 64], QoS::AtLeastOnce);
    let mut seq = 1;
    loop {
        assert!(seq < 100_000, "1 MB never filled up");
        let enqueued = store.enqueue(id, seq, seq, p.clone(), None);
        let failed = enqueued == Enqueued::Failed || matches!(store.commit(), Commit::Failed(_));
        largest = largest.max(file_len(&dir, DB_FILE) + wal_len(&dir));
        if failed {
            break;
        }
        seq += 1;
    }
    assert!(largest <= max, "database and log took {largest} bytes of max_db_size {max}");
    // And most of it holds messages (the log's share is a quarter at most).
    assert!(seq > 4_000, "only {seq} messages of 64 bytes fit in 1 MB");
}

#[test]
fn a_full_store_empties_its_reserve_stops_growing_and_resumes_after_a_drain() {
    let dir = TempDir::new("reserve");
    let cfg = config(|c| {
        c.max_db_size = 1024 * 1024;
        c.max_wal_size = 64 * 1024;
    });
    let mut store = Store::open(dir.path(), cfg.clone()).expect("open");
    assert_eq!(file_len(&dir, RESERVE_FILE), 64 * 1024, "the reserve is made at open");
    let id = save(&mut store, "s");
    committed(&mut store);
    let refused = fill_until_full(&mut store, id, 1);
    assert_eq!(file_len(&dir, RESERVE_FILE), 0, "a full store empties its reserve");
    assert!(store.space_capped());
    let pages = |store: &Store| -> i64 {
        store.db.query_row("PRAGMA page_count", [], |r| r.get(0)).expect("page_count")
    };
    let size = pages(&store);

    // A subscriber receives everything while the publisher keeps being refused: the same
    // batch holds the deliveries and a refused message, yet the deliveries stick and the
    // rows are deleted.
    for seq in 1..refused {
        store.forget(id, seq);
    }
    let p = publish("t", &[0x5A; 64], QoS::AtLeastOnce);
    let next = store.enqueue(id, refused, refused, p.clone(), None);
    assert!(matches!(store.commit(), Commit::Failed(_)), "no room yet: {next:?}");
    assert_eq!(store.usage(id).messages, 0, "the deliveries were rolled back with the batch");
    let left = physical_rows(&store, id);
    assert!(left < refused - 1, "the failed commit deleted no delivered row");
    // The rest goes a slice a pass (small enough for the log to fit in the reserve's room),
    // without waiting for a quiet moment: the loop's clock does not move here.
    let now = Instant::now();
    for _ in 0..1_000 {
        if physical_rows(&store, id) == 0 {
            break;
        }
        assert!(matches!(store.commit_if_due(now), Commit::Committed { .. }));
    }
    assert_eq!(physical_rows(&store, id), 0, "delivered rows still take the room");

    // New messages go into the freed pages; the file does not grow while capped.
    for seq in refused..refused + 1_000 {
        assert!(matches!(store.enqueue(id, seq, seq, p.clone(), None), Enqueued::Stored { .. }));
        committed(&mut store);
    }
    assert!(pages(&store) <= size, "the database grew while the disk was full");

    // The disk has room (max_db_size was the limit): the next check refills the reserve and
    // lets the database grow again.
    for _ in 0..10 {
        if !store.space_capped() {
            break;
        }
        let at = store.flush_deadline().expect("capped: a check for room");
        store.commit_if_due(at);
    }
    assert_eq!(file_len(&dir, RESERVE_FILE), 64 * 1024, "the reserve is back");
    assert!(!store.space_capped());
    drop(store);
    // And it survives a restart as it is.
    let store = Store::open(dir.path(), cfg.clone()).expect("reopen");
    assert_eq!(file_len(&dir, RESERVE_FILE), 64 * 1024);
    assert_eq!(store.usage(id).messages, 1_000);
    drop(store);
    // A smaller max_wal_size gives the difference back.
    let smaller = SqliteConfig { max_db_size: 0, ..cfg };
    let smaller = SqliteConfig { max_wal_size: 128 * 1024, ..smaller };
    drop(Store::open(dir.path(), smaller.clone()).expect("reopen larger"));
    assert_eq!(file_len(&dir, RESERVE_FILE), 128 * 1024);
    let smaller = SqliteConfig { max_wal_size: 64 * 1024, ..smaller };
    drop(Store::open(dir.path(), smaller).expect("reopen smaller"));
    assert_eq!(file_len(&dir, RESERVE_FILE), 64 * 1024);
}

#[test]
fn batch_durability_fsyncs_the_log_at_each_commit_that_backs_an_acknowledgement() {
    let dir = TempDir::new("batch-fsync");
    let cfg = config(|c| c.durability = crate::config::Durability::Batch);
    let mut store = Store::open(dir.path(), cfg).expect("open");
    let id = save(&mut store, "s");
    committed(&mut store);
    assert_eq!(store.stats().fsyncs, 1, "the session row backs a CONNACK");
    fill(&mut store, id, 1..=5);
    committed(&mut store);
    assert_eq!(store.stats().fsyncs, 2, "one fsync per batch, not per message");
    // Deliveries alone are housekeeping: no fsync of their own.
    store.forget(id, 1);
    committed(&mut store);
    assert_eq!(store.stats().fsyncs, 2);
}

#[test]
fn a_checkpoint_run_with_a_commit_stands_for_its_fsync_and_keeps_the_log_bounded() {
    let dir = TempDir::new("checkpoint-with-commit");
    let limit = 64 * 1024;
    let mut store = Store::open(dir.path(), config(|c| c.max_wal_size = limit)).expect("open");
    let id = save(&mut store, "s");
    committed(&mut store);
    let mut largest = 0;
    let mut seq = 0;
    for _ in 0..200 {
        // A pass's worth: ten 64-byte messages, one commit that backs their acknowledgements.
        fill(&mut store, id, seq + 1..=seq + 10);
        seq += 10;
        committed(&mut store);
        largest = largest.max(wal_len(&dir));
    }
    let stats = store.stats().clone();
    assert_eq!(stats.fsyncs, 201, "every commit backing an acknowledgement is made durable");
    // 2,000 rows of ~150 bytes fill the 16-page log over and over: the store checkpoints in
    // its commits (one fsync for both) rather than leaving it to SQLite's backstop.
    assert!(stats.checkpoint_syncs >= 10, "{} checkpoints with a commit", stats.checkpoint_syncs);
    assert!(stats.checkpoint_syncs < 100, "{} checkpoints for 200 commits", stats.checkpoint_syncs);
    assert!(largest > 0 && largest <= limit, "the log reached {largest} bytes (bound {limit})");
    drop(store);
    let store = Store::open(dir.path(), config(|c| c.max_wal_size = limit)).expect("reopen");
    assert_eq!(store.usage(id).messages, 2_000);
}

#[test]
fn a_batch_to_be_fsynced_at_the_end_of_the_pass_is_announced_with_the_fsync_time() {
    let dir = TempDir::new("pending-sync");
    let mut store = Store::open(dir.path(), config(|_| {})).expect("open");
    assert_eq!(store.pending_sync(), None, "no batch open");
    let id = save(&mut store, "s");
    assert!(store.pending_sync().is_some(), "a session row backs a CONNACK");
    committed(&mut store);
    assert_eq!(store.pending_sync(), None, "committed");
    // Deliveries alone are housekeeping: committed without an fsync, so nothing to wait for.
    fill(&mut store, id, 1..=3);
    committed(&mut store);
    store.forget(id, 1);
    assert_eq!(store.pending_sync(), None, "housekeeping only");
    committed(&mut store);
    // `batch` defers its commits: the loop has no reason to wait either.
    let dir = TempDir::new("pending-sync-batch");
    let cfg = config(|c| c.durability = crate::config::Durability::Batch);
    let mut store = Store::open(dir.path(), cfg).expect("open");
    save(&mut store, "s");
    assert_eq!(store.pending_sync(), None, "batch mode");
}

/// The start-up scan of the ring (one pass for usage and every session's bounds) finds what
/// the per-session queries find, orphans included.
#[test]
fn the_start_up_scan_and_the_per_session_queries_agree() {
    let dir = TempDir::new("scan");
    let mut store = Store::open(dir.path(), config(|_| {})).expect("open");
    let (a, b, empty) = (save(&mut store, "a"), save(&mut store, "b"), save(&mut store, "empty"));
    for seq in 1..=5 {
        let p = publish("t", b"x", QoS::ExactlyOnce);
        assert!(matches!(store.enqueue(a, seq, 1, p.clone(), None), Enqueued::Stored { .. }));
        assert!(matches!(store.enqueue(b, seq + 10, 1, p, None), Enqueued::Stored { .. }));
    }
    store.mark_pubrel(a, 2);
    store.mark_pubrel(a, 4);
    store.save_send_mark(a, 5);
    committed(&mut store);
    // Rows of a session whose row was lost.
    store
        .db
        .execute("INSERT INTO messages (session, seq, size, packet) VALUES (99, 1, 3, x'00')", [])
        .expect("orphan row");
    drop(store);

    let mut store = Store::open(dir.path(), config(|_| {})).expect("reopen");
    assert!(store.ring_bounds.is_some(), "the scan is kept for the load");
    let scanned = store.load().expect("load");
    assert!(store.ring_bounds.is_none(), "and dropped by it");
    assert_eq!(store.total_messages(), 10, "the orphan row is gone");
    let orphans: i64 = store
        .db
        .query_row("SELECT count(*) FROM messages WHERE session = 99", [], |r| r.get(0))
        .expect("count");
    assert_eq!(orphans, 0);
    // Without the scan (as after a write) the same comes from one query per session.
    store.save_send_mark(empty, 0);
    committed(&mut store);
    let queried = store.load().expect("load again");
    let key = |s: &LoadedSession| {
        (s.id, s.pubrel_pending.clone(), s.first_queued_seq, s.first_unsent, s.next_seq)
    };
    let scanned: Vec<_> = scanned.sessions.iter().map(key).collect();
    let queried: Vec<_> = queried.sessions.iter().map(key).collect();
    assert_eq!(scanned, queried);
    assert_eq!(
        scanned,
        vec![
            (a, vec![2, 4], Some(1), 5, 6),
            (b, vec![], Some(11), 0, 16),
            (empty, vec![], None, 0, 1)
        ]
    );
}

/// A chunk of the load in which every row is damaged does not end the load: the sessions
/// after it come back.
#[test]
fn a_chunk_of_damaged_sessions_does_not_end_the_load() {
    let dir = TempDir::new("damaged-chunk");
    let mut store = Store::open(dir.path(), config(|_| {})).expect("open");
    for n in 0..5 {
        save(&mut store, &format!("bad-{n}"));
    }
    let good = save(&mut store, "good");
    committed(&mut store);
    store
        .db
        .execute("UPDATE sessions SET protocol = 9 WHERE client_id LIKE 'bad-%'", [])
        .expect("damage");
    drop(store);
    let mut store = Store::open(dir.path(), config(|_| {})).expect("reopen");
    // `load` reads chunks of 3 rows: the first holds only damaged ones.
    let snapshot = store.load().expect("load");
    let ids: Vec<StoredSessionId> = snapshot.sessions.iter().map(|s| s.id).collect();
    assert_eq!(ids, vec![good]);
    assert_eq!(snapshot.damaged, 5);
}
