//! Overload without loss: a slow subscriber slows its publishers down (back-pressure) instead
//! of losing their messages, and a client that stops reading stops being read, so neither can
//! grow the broker's memory without bound. A stuck subscriber holds its publishers for
//! `mqtt.max_pause` at most (issue 9 §2).

mod common;

use std::time::{Duration, Instant};

use common::packets::{kind, Ack, Connect, Publish};
use common::{scaled, timeout, BrokerBuilder, TestClient};

const PUBLISHERS: usize = 4;
const PER_PUBLISHER: usize = 500;

#[test]
fn slow_subscriber_gets_every_message_from_fast_publishers_in_order() {
    if common::skip_in_reference("Mosquitto drops past max_queued_messages") {
        return;
    }
    // A tiny window and queue: without back-pressure most of the 2,000 messages would be
    // dropped at the subscriber.
    let broker =
        BrokerBuilder::new().mqtt("max_inflight", 2).mqtt("max_queued_messages", 8).start();
    let mut sub = TestClient::v311(&broker, "slow-sub");
    sub.subscribe("fan/#", 1);

    std::thread::scope(|scope| {
        for p in 0..PUBLISHERS {
            let broker = &broker;
            scope.spawn(move || {
                let mut publisher = TestClient::v311(broker, &format!("fast-pub-{p}"));
                // Pipelined: every PUBLISH first, then every PUBACK.
                let mut batch = Vec::new();
                for i in 0..PER_PUBLISHER {
                    let payload = format!("{p}:{i}");
                    let id = (i + 1) as u16;
                    batch.extend(
                        Publish::new(&format!("fan/{p}"), payload.as_bytes()).qos(1, id).build(),
                    );
                }
                publisher.send(&batch);
                for i in 0..PER_PUBLISHER {
                    let ack = Ack::parse(&publisher.read_expected(kind::PUBACK), kind::PUBACK);
                    assert_eq!(ack.packet_id, (i + 1) as u16);
                }
                publisher.disconnect();
            });
        }
        let mut next = [0usize; PUBLISHERS];
        let deadline = Instant::now() + timeout() * 6;
        for _ in 0..PUBLISHERS * PER_PUBLISHER {
            assert!(Instant::now() < deadline, "delivery too slow: {next:?}");
            let message = sub.expect_publish();
            sub.ack(&message);
            let text = message.payload_str().to_string();
            let (p, i) = text.split_once(':').expect("payload p:i");
            let (p, i): (usize, usize) = (p.parse().expect("p"), i.parse().expect("i"));
            assert_eq!(i, next[p], "publisher {p}: lost, duplicated or reordered");
            next[p] += 1;
        }
        assert_eq!(next, [PER_PUBLISHER; PUBLISHERS]);
    });
    sub.expect_no_packet(scaled(Duration::from_millis(200)));
    let log = broker.log();
    assert!(!log.iter().any(|l| l.contains("dropped")), "no message may be dropped");
}

#[test]
fn client_that_stops_reading_is_not_read_and_others_are_served() {
    if common::skip_in_reference("checks edgemq's log line") {
        return;
    }
    let broker =
        BrokerBuilder::new().mqtt("max_packet_size", 2048).mqtt("tx_buffer_limit", "4KB").start();
    // It subscribes to what it publishes and then never reads: its output can only pile up.
    let mut hog = TestClient::v311(&broker, "hog");
    hog.subscribe("echo", 0);
    let payload = vec![b'x'; 1024];
    let flood = Publish::new("echo", &payload).build();
    let give_up = Instant::now() + timeout() * 3;
    let mut stalled = false;
    hog.set_write_timeout(Some(scaled(Duration::from_millis(200))));
    while Instant::now() < give_up {
        // Once the broker stops reading, the kernel buffers fill and the write times out.
        if hog.try_send(&flood).is_err() {
            stalled = true;
            break;
        }
    }
    assert!(stalled, "the broker kept reading a client that does not read");
    let log = broker.log();
    assert!(log.iter().any(|l| l.contains("not reading")), "log says why");
    common::assert_broker_serves(&broker);
    hog.drop_connection();
    common::assert_broker_serves(&broker);
}

#[test]
fn a_message_larger_than_the_output_limit_is_delivered() {
    // The output limit bounds what piles up for a client, not the size of one message.
    let broker = BrokerBuilder::new()
        .mqtt("max_packet_size", 256 * 1024)
        .mqtt("tx_buffer_limit", "16KB")
        .start();
    let mut sub0 = TestClient::v311(&broker, "big-sub-0");
    sub0.subscribe("big/#", 0);
    let mut sub1 = TestClient::v311(&broker, "big-sub-1");
    sub1.subscribe("big/#", 1);
    let payload: Vec<u8> = (0..100 * 1024).map(|i| (i % 251) as u8).collect();
    let mut publisher = TestClient::v311(&broker, "big-pub");
    publisher.publish("big/one", &payload, 1, false);
    publisher.publish("big/two", &payload, 0, false);
    for sub in [&mut sub0, &mut sub1] {
        sub.expect_message("big/one", &payload);
        sub.expect_message("big/two", &payload);
    }
}

/// Issue 9 §2: the QoS 1 messages a publisher sends to a subscriber that never acknowledges.
const STUCK_MESSAGES: u16 = 3000;

/// Connects a publisher and a watcher of `b`, sends `STUCK_MESSAGES` QoS 1 messages to `a`,
/// one QoS 0 message to `b` and a PINGREQ in one write, and checks that every PUBACK (in
/// order), the PINGRESP and the message on `b` arrive.
fn publish_past_a_stuck_subscriber(broker: &common::Broker) {
    let mut watcher = TestClient::v311(broker, "watcher");
    watcher.subscribe("b", 0);
    let mut publisher = TestClient::v311(broker, "publisher");
    let mut batch = Vec::new();
    for id in 1..=STUCK_MESSAGES {
        batch.extend(Publish::new("a", id.to_string().as_bytes()).qos(1, id).build());
    }
    batch.extend(Publish::new("b", b"after the flood").build());
    batch.extend(common::packets::PINGREQ);
    publisher.send(&batch);
    for id in 1..=STUCK_MESSAGES {
        let ack = Ack::parse(&publisher.read_expected(kind::PUBACK), kind::PUBACK);
        assert_eq!(ack.packet_id, id, "PUBACKs in order");
    }
    publisher.read_expected(kind::PINGRESP);
    watcher.expect_message("b", b"after the flood");
}

#[test]
fn stuck_clean_subscriber_holds_publishers_for_max_pause_at_most() {
    let broker = BrokerBuilder::new().start();
    // Stays connected, never reads, never acknowledges.
    let mut stuck = TestClient::v311(&broker, "stuck");
    stuck.subscribe("a", 1);
    publish_past_a_stuck_subscriber(&broker);
    common::assert_broker_serves(&broker);
    if !common::is_reference() {
        broker.wait_for_log("about the slow subscriber", |l| l.contains("mqtt.max_pause"));
    }
    stuck.drop_connection();
}

#[test]
fn stuck_persistent_subscriber_gets_everything_when_it_comes_back() {
    if common::skip_in_reference("Mosquitto drops past max_queued_messages (1000)") {
        return;
    }
    let broker = BrokerBuilder::new().start();
    let mut stuck = TestClient::handshake(&broker, Connect::v311("stuck").clean(false));
    stuck.subscribe("a", 1);
    publish_past_a_stuck_subscriber(&broker);
    stuck.drop_connection();

    let (mut back, connack) =
        TestClient::try_handshake(&broker, Connect::v311("stuck").clean(false));
    assert_eq!((connack.code, connack.session_present), (0, true));
    // What was sent before and never acknowledged comes again first, then the rest: all of
    // it, once each, in order.
    for id in 1..=STUCK_MESSAGES {
        let message = back.expect_publish();
        assert_eq!(message.topic, "a");
        assert_eq!(message.payload_str(), id.to_string(), "lost, duplicated or reordered");
        back.ack(&message);
    }
    back.expect_no_packet(common::quiet_period());
    assert!(!broker.log().iter().any(|l| l.contains("dropped")), "no message may be dropped");
}

#[test]
fn slow_subscriber_is_disconnected_with_quota_exceeded_when_configured() {
    if common::skip_in_reference("mqtt.slow_subscriber is edgemq's") {
        return;
    }
    let broker = BrokerBuilder::new()
        .mqtt("max_inflight", 4)
        .mqtt("max_queued_messages", 8)
        .mqtt("max_pause", "100ms")
        .mqtt("slow_subscriber", "disconnect")
        .start();
    let mut stuck = TestClient::v5(&broker, "stuck-v5");
    stuck.subscribe("a", 1);
    let mut publisher = TestClient::v311(&broker, "publisher");
    let mut batch = Vec::new();
    for id in 1..=100u16 {
        batch.extend(Publish::new("a", id.to_string().as_bytes()).qos(1, id).build());
    }
    publisher.send(&batch);
    for id in 1..=100u16 {
        let ack = Ack::parse(&publisher.read_expected(kind::PUBACK), kind::PUBACK);
        assert_eq!(ack.packet_id, id, "PUBACKs in order");
    }
    // It read nothing so far: its window of deliveries, unacknowledged, then the DISCONNECT.
    for _ in 0..4 {
        stuck.expect_publish();
    }
    stuck.expect_disconnect_v5(&[0x97]);
    // The log is read by a thread: the line may arrive after the client saw the DISCONNECT.
    broker.wait_for_log("saying why the subscriber was disconnected", |l| {
        l.contains("disconnecting it")
    });
}
