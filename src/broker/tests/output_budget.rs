//! Issue 16: the global output budget (`mqtt.tx_buffer_total`, `output_budget.rs`). `net`'s
//! running total is played by the recorder ([`Recorder::set_backlog`]).

use super::*;

const MAX_PAUSE: Duration = Duration::from_secs(1);

/// A budget of 10,000 bytes for all connections, 4,096 per connection.
fn budget_limits(total: usize) -> Limits {
    Limits {
        tx_buffer_limit: 4096,
        tx_buffer_total: total,
        max_pause: MAX_PAUSE,
        ..Default::default()
    }
}

/// Four QoS 0 subscribers that hold 3,000 unwritten bytes each (12,000 together: over a
/// 10,000 budget, each over its 2,500 share, each under its own 4,096 limit), a healthy QoS 0
/// subscriber, a QoS 1 subscriber and a publisher.
struct Crowd {
    slow: Vec<ConnId>,
    healthy: ConnId,
    reliable: ConnId,
    publisher: ConnId,
}

fn crowd(h: &mut Harness) -> Crowd {
    let mut slow = Vec::new();
    for i in 0..4 {
        let (conn, _) = h.connect(ProtocolVersion::V311, &format!("slow-{i}"), true);
        h.subscribe(conn, "t", QoS::AtMostOnce);
        slow.push(conn);
    }
    let (healthy, _) = h.connect(ProtocolVersion::V311, "healthy", true);
    h.subscribe(healthy, "t", QoS::AtMostOnce);
    let (reliable, _) = h.connect(ProtocolVersion::V311, "reliable", true);
    h.subscribe(reliable, "t", QoS::AtLeastOnce);
    let (publisher, _) = h.connect(ProtocolVersion::V311, "publisher", true);
    h.out.sent.clear();
    for &conn in &slow {
        h.out.set_backlog(conn, 3000);
    }
    Crowd { slow, healthy, reliable, publisher }
}

fn payloads(h: &mut Harness, conn: ConnId) -> Vec<u16> {
    publishes(&h.out.take(conn))
        .iter()
        .map(|p| u16::from_be_bytes([p.payload[0], p.payload[1]]))
        .collect()
}

fn acknowledge(h: &mut Harness, conn: ConnId) -> Vec<u16> {
    let got = h.out.take(conn);
    let mut payloads = Vec::new();
    for p in publishes(&got) {
        payloads.push(u16::from_be_bytes([p.payload[0], p.payload[1]]));
        if let Some(id) = p.packet_id {
            h.handle(conn, Packet::Puback(PubAck::new(id)));
        }
    }
    payloads
}

#[test]
fn over_the_budget_the_crowd_over_its_share_pauses_then_drops_and_the_healthy_get_everything() {
    let mut h = Harness::new(budget_limits(10_000));
    let c = crowd(&mut h);

    // First, back-pressure as for a full output buffer: the publisher is paused, nothing is
    // dropped, everyone gets the message.
    h.handle(
        c.publisher,
        Packet::Publish(publish("t", &1u16.to_be_bytes(), QoS::AtMostOnce, None)),
    );
    assert!(h.broker.is_paused(c.publisher), "the crowd over its share pauses the publisher");
    assert_eq!(h.broker.stats().messages_dropped, 0);
    for &conn in c.slow.iter().chain([&c.healthy, &c.reliable]) {
        assert_eq!(payloads(&mut h, conn), vec![1], "{conn:?}");
    }
    // Still over: the crowd stays congested through the loop's passes; after max_pause it is
    // slow and the publisher goes on. `$SYS` and `/metrics` show the total after the pass.
    h.relieve();
    let metrics = h.broker.metrics(h.now, &sys::Process::default());
    assert_eq!(metrics.output_bytes, 12_000);
    assert!(h.broker.is_paused(c.publisher), "the crowd has not drained");
    h.advance(MAX_PAUSE);
    assert!(!h.broker.is_paused(c.publisher));
    assert_eq!(h.broker.stats().slow_subscribers, 4);

    // Now the crowd's QoS 0 overflow is dropped and counted, per session too; the healthy
    // subscriber and the QoS 1 one (even over its share: QoS 1 is never dropped for the
    // budget) get every message.
    h.out.set_backlog(c.reliable, 3000);
    let mut healthy = Vec::new();
    let mut reliable = Vec::new();
    for i in 2..=11u16 {
        let p = publish("t", &i.to_be_bytes(), QoS::AtLeastOnce, Some(i));
        h.handle(c.publisher, Packet::Publish(p));
        assert!(!h.broker.is_paused(c.publisher), "paused again at {i}");
        healthy.extend(payloads(&mut h, c.healthy));
        reliable.extend(acknowledge(&mut h, c.reliable));
        h.relieve();
    }
    assert_eq!(healthy, (2..=11).collect::<Vec<u16>>());
    assert_eq!(reliable, (2..=11).collect::<Vec<u16>>());
    assert_eq!(h.out.take(c.publisher).len(), 10, "every PUBACK was sent");
    assert_eq!(h.broker.stats().messages_dropped, 4 * 10);
    for &conn in &c.slow {
        assert!(payloads(&mut h, conn).is_empty(), "{conn:?}");
    }
    for i in 0..4 {
        let id = h.broker.index.client(&h.broker.sessions, &format!("slow-{i}"));
        assert_eq!(id.and_then(|id| h.broker.session(id)).map(|s| s.dropped), Some(10));
    }

    // The crowd drains (to half its share: 4 x 1,200 = 4,800 < half the budget): it is no
    // longer slow and gets messages again.
    for &conn in &c.slow {
        h.out.set_backlog(conn, 1200);
    }
    h.out.set_backlog(c.reliable, 0);
    h.relieve();
    h.handle(
        c.publisher,
        Packet::Publish(publish("t", &12u16.to_be_bytes(), QoS::AtMostOnce, None)),
    );
    for &conn in c.slow.iter().chain([&c.healthy]) {
        assert_eq!(payloads(&mut h, conn), vec![12], "{conn:?}");
    }
    assert_eq!(h.broker.stats().messages_dropped, 40);
    assert!(!h.broker.is_paused(c.publisher));
}

/// Subscribes `conn` to `r` at QoS 0; returns the retained messages it was sent.
fn subscribe_to_retained(h: &mut Harness, conn: ConnId) -> Vec<u16> {
    let options = SubscriptionOptions { qos: QoS::AtMostOnce, ..Default::default() };
    let subscribe = Subscribe {
        packet_id: pid(1),
        filters: vec![("r".to_string(), options)],
        properties: SubscribeProperties::default(),
    };
    h.handle(conn, Packet::Subscribe(subscribe));
    payloads(h, conn)
}

#[test]
fn with_nobody_to_pause_qos0_over_the_share_is_dropped_and_a_share_is_always_kept() {
    let mut h = Harness::new(budget_limits(10_000));
    let c = crowd(&mut h);
    let mut retained = publish("r", &1u16.to_be_bytes(), QoS::AtMostOnce, None);
    retained.retain = true;
    h.handle(c.publisher, Packet::Publish(retained));
    h.out.sent.clear();
    // Two late subscribers, one over its share and one under it (six holders: 1,666 each;
    // the total 12,000 + 3,000 + 1,500 is over the budget). A retained replay has no publisher
    // to pause.
    let (over, _) = h.connect(ProtocolVersion::V311, "late-over", true);
    let (within, _) = h.connect(ProtocolVersion::V311, "late-within", true);
    h.out.set_backlog(over, 3000);
    h.out.set_backlog(within, 1500);
    assert!(subscribe_to_retained(&mut h, over).is_empty());
    assert_eq!(subscribe_to_retained(&mut h, within), vec![1], "within its share");
    assert_eq!(h.broker.stats().messages_dropped, 1);
    let id = h.broker.index.client(&h.broker.sessions, "late-over");
    assert_eq!(id.and_then(|id| h.broker.session(id)).map(|s| s.dropped), Some(1));
    assert!(!h.broker.is_paused(c.publisher));
}

#[test]
fn without_a_budget_only_the_per_connection_limit_applies() {
    let mut h = Harness::new(budget_limits(0));
    let c = crowd(&mut h);
    for &conn in &c.slow {
        h.out.set_backlog(conn, 4000); // 16,000 in all, each under its 4,096
    }
    h.handle(
        c.publisher,
        Packet::Publish(publish("t", &1u16.to_be_bytes(), QoS::AtMostOnce, None)),
    );
    assert!(!h.broker.is_paused(c.publisher));
    for &conn in c.slow.iter().chain([&c.healthy, &c.reliable]) {
        assert_eq!(payloads(&mut h, conn), vec![1], "{conn:?}");
    }
    assert_eq!(h.broker.stats().messages_dropped, 0);
}

#[test]
fn a_shared_group_prefers_members_within_their_share() {
    let mut h = Harness::new(budget_limits(10_000));
    let c = crowd(&mut h);
    let (over, _) = h.connect(ProtocolVersion::V311, "member-over", true);
    h.subscribe(over, "$share/g/t", QoS::AtMostOnce);
    let (within, _) = h.connect(ProtocolVersion::V311, "member-within", true);
    h.subscribe(within, "$share/g/t", QoS::AtMostOnce);
    h.out.sent.clear();
    // 12,000 + 3,000: over the budget; six holders, a share of 1,666.
    h.out.set_backlog(over, 3000);
    h.out.set_backlog(within, 100);
    for i in 1..=4u16 {
        h.handle(
            c.publisher,
            Packet::Publish(publish("t", &i.to_be_bytes(), QoS::AtMostOnce, None)),
        );
        h.advance(MAX_PAUSE);
    }
    assert_eq!(payloads(&mut h, within), vec![1, 2, 3, 4]);
    assert!(payloads(&mut h, over).is_empty());
}

#[test]
fn a_qos1_flow_follows_its_own_limits_only() {
    // A window of 1 and a queue of 2, as in the back-pressure tests.
    let limits = Limits { max_inflight: 1, max_queued_messages: 2, ..budget_limits(10_000) };
    let mut h = Harness::new(limits);
    let c = crowd(&mut h);
    let (q1, _) = h.connect(ProtocolVersion::V311, "qos1", true);
    h.subscribe(q1, "q", QoS::AtLeastOnce);
    // Over half its share (five holders: 2,000), under half its own limit, while the total is
    // over the budget; it stays so: the budget's hysteresis alone would hold it congested once
    // its queue made it so.
    h.out.set_backlog(q1, 1500);
    let sent = h.publish_until_paused(c.publisher, "q", 1..=10);
    // Its queue drains to half: the publisher goes on, as without the budget.
    assert_eq!(h.drain(q1), sent);
    assert!(!h.broker.is_paused(c.publisher));
    assert_eq!(h.out.resumed, vec![c.publisher]);
    let more = h.publish_until_paused(c.publisher, "q", 11..=20);
    assert_eq!(h.drain(q1), more);
    assert_eq!(h.broker.stats().messages_dropped, 0);
    assert_eq!(h.broker.stats().slow_subscribers, 0);
}
