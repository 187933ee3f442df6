//! Issue 15: `Broker::top_backlogs`, what the status page lists as persistent sessions.

use super::*;

/// A persistent session subscribed to `filter`, offline unless `stay` is set.
fn persistent(h: &mut Harness, id: &str, filter: &str, stay: bool) {
    let (conn, _) = h.connect(ProtocolVersion::V311, id, false);
    h.subscribe(conn, filter, QoS::AtLeastOnce);
    if !stay {
        h.close(conn);
    }
}

fn publish_n(h: &mut Harness, publisher: ConnId, topic: &str, n: u16, next_id: &mut u16) {
    for _ in 0..n {
        *next_id += 1;
        let p = publish(topic, b"0123456789", QoS::AtLeastOnce, Some(*next_id));
        h.handle(publisher, Packet::Publish(p));
    }
}

#[test]
fn top_backlogs_keeps_the_largest_largest_first_and_counts_every_persistent_session() {
    let mut h = Harness::new(Limits::default());
    // Ten persistent sessions; session k is sent k messages (session 0 none).
    for k in 0..10 {
        persistent(&mut h, &format!("s{k}"), &format!("q/{k}"), false);
    }
    // A clean session is not persistent: not listed, not counted.
    let (clean, _) = h.connect(ProtocolVersion::V311, "clean", true);
    h.subscribe(clean, "q/#", QoS::AtLeastOnce);
    let (p, _) = h.connect(ProtocolVersion::V311, "pub", true);
    let mut id = 0;
    for k in 0..10u16 {
        publish_n(&mut h, p, &format!("q/{k}"), k, &mut id);
    }

    let all = h.broker.top_backlogs(50);
    assert_eq!(all.persistent, 10);
    let ids: Vec<&str> = all.top.iter().map(|b| &*b.client_id).collect();
    assert_eq!(ids, ["s9", "s8", "s7", "s6", "s5", "s4", "s3", "s2", "s1", "s0"]);
    let s9 = &all.top[0];
    assert_eq!((s9.queued, s9.online), (9, false));
    // As the store counts them: each stored packet holds topic "q/9" and a 10-byte payload.
    assert_eq!(s9.bytes, h.broker.store().usage(stored_id(&h, "s9")).bytes);
    assert!(s9.bytes >= 9 * 10, "{s9:?}");
    assert_eq!(all.top[9].queued, 0);

    // Bounded: only the three largest, still largest first.
    let top3 = h.broker.top_backlogs(3);
    let ids: Vec<&str> = top3.top.iter().map(|b| &*b.client_id).collect();
    assert_eq!((ids, top3.persistent), (vec!["s9", "s8", "s7"], 10));
    assert!(h.broker.top_backlogs(0).top.is_empty());

    // Back online: flagged so, and its backlog drains into the inflight window, which the
    // store still holds until acknowledged.
    let (s9_conn, _) = h.connect(ProtocolVersion::V311, "s9", false);
    let top = h.broker.top_backlogs(1).top;
    assert_eq!(&*top[0].client_id, "s9");
    assert!(top[0].online);
    h.close(s9_conn);
}

fn stored_id(h: &Harness, client_id: &str) -> crate::store::StoredSessionId {
    let session = h.broker.sessions.values().find(|s| &*s.client_id == client_id);
    session.and_then(|s| s.stored.as_deref()).expect("a persistent session").id
}

#[test]
fn ties_are_broken_by_bytes_then_by_the_older_slot() {
    let mut h = Harness::new(Limits::default());
    persistent(&mut h, "a", "t/a", false);
    persistent(&mut h, "b", "t/bbbbbbbb", false);
    persistent(&mut h, "c", "t/c", false);
    let (p, _) = h.connect(ProtocolVersion::V311, "pub", true);
    let mut id = 0;
    for topic in ["t/a", "t/bbbbbbbb", "t/c"] {
        publish_n(&mut h, p, topic, 2, &mut id);
    }
    // Same count; "b" has the longer topic, "a" the older slot than "c".
    let ids: Vec<String> =
        h.broker.top_backlogs(2).top.iter().map(|b| b.client_id.to_string()).collect();
    assert_eq!(ids, ["b", "a"]);
}
