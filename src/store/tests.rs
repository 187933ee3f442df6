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
