//! Protocol defects of issue 9 §3, driven through the broker core by hand.

use super::*;
use crate::codec::{encoded_len, PubackProperties, Suback, SubackProperties};

/// A v5 session that outlives its connection.
fn v5_persistent(h: &mut Harness, id: &str) -> ConnId {
    let mut connect = connect_packet(ProtocolVersion::V5, id, false);
    connect.properties.session_expiry_interval = Some(3600);
    h.connect_with(connect).0
}

fn v5_with_max_packet_size(h: &mut Harness, id: &str, max: u32) -> ConnId {
    let mut connect = connect_packet(ProtocolVersion::V5, id, true);
    connect.properties.maximum_packet_size = Some(max);
    let conn = h.accept();
    h.handle(conn, Packet::Connect(Box::new(connect)));
    conn
}

/// A subscriber `sub` on "t" at `qos` and the id of the one message it was sent.
fn one_inflight(h: &mut Harness, version: ProtocolVersion, qos: QoS) -> (ConnId, PacketId) {
    let (sub, _) = h.connect(version, "sub", true);
    h.subscribe(sub, "t", qos);
    let (p, _) = h.connect(version, "pub", true);
    h.handle(p, Packet::Publish(publish("t", b"x", qos, Some(1))));
    let got = h.out.take(sub);
    let id = publishes(&got)[0].packet_id.expect("QoS > 0 has a packet id");
    (sub, id)
}

fn assert_protocol_error_close(h: &mut Harness, conn: ConnId, version: ProtocolVersion) {
    assert!(h.out.closed.contains(&conn), "connection closed");
    let sent = h.out.take(conn);
    match version {
        ProtocolVersion::V5 => match sent.as_slice() {
            [Packet::Disconnect(d)] => assert_eq!(d.reason, ReasonCode::ProtocolError),
            other => panic!("expected DISCONNECT 0x82, got {other:?}"),
        },
        ProtocolVersion::V31 | ProtocolVersion::V311 => assert!(sent.is_empty(), "{sent:?}"),
    }
}

#[test]
fn wrong_ack_type_for_an_inflight_message_closes_the_connection() {
    // (state of the message, wrong ack) — MQTT-4.8.0-1.
    type MakeAck = fn(PubAck) -> Packet;
    let cases: [(QoS, bool, MakeAck); 5] = [
        (QoS::AtLeastOnce, false, Packet::Pubrec),
        (QoS::AtLeastOnce, false, Packet::Pubcomp),
        (QoS::ExactlyOnce, false, Packet::Puback),
        (QoS::ExactlyOnce, false, Packet::Pubcomp),
        (QoS::ExactlyOnce, true, Packet::Puback), // released: awaiting PUBCOMP
    ];
    for version in [ProtocolVersion::V311, ProtocolVersion::V5] {
        for (qos, released, make) in cases {
            let mut h = Harness::new(Limits::default());
            let (sub, id) = one_inflight(&mut h, version, qos);
            if released {
                h.handle(sub, Packet::Pubrec(PubAck::new(id)));
                assert_eq!(h.out.take(sub), vec![Packet::Pubrel(PubAck::new(id))]);
            }
            let wrong = make(PubAck::new(id));
            h.handle(sub, wrong.clone());
            assert_protocol_error_close(&mut h, sub, version);
            assert_eq!(h.broker.stats().protocol_errors, 1, "{version:?} {qos:?} {wrong:?}");
        }
    }
}

#[test]
fn acks_for_ids_not_in_flight_keep_their_answers() {
    for version in [ProtocolVersion::V311, ProtocolVersion::V5] {
        let mut h = Harness::new(Limits::default());
        let (c, _) = h.connect(version, "c", true);
        // PUBACK / PUBCOMP for an unknown id: ignored.
        h.handle(c, Packet::Puback(PubAck::new(pid(42))));
        h.handle(c, Packet::Pubcomp(PubAck::new(pid(42))));
        assert!(h.out.take(c).is_empty());
        // PUBREC for an unknown id: PUBREL 0x92 (3.1.1 encodes just the id).
        h.handle(c, Packet::Pubrec(PubAck::new(pid(42))));
        let not_found = PubAck::with_reason(pid(42), ReasonCode::PacketIdentifierNotFound);
        assert_eq!(h.out.take(c), vec![Packet::Pubrel(not_found)]);
        // PUBREL for an unknown id (re-sent after a reconnect): PUBCOMP 0x00, not 0x92.
        h.handle(c, Packet::Pubrel(PubAck::new(pid(43))));
        assert_eq!(h.out.take(c), vec![Packet::Pubcomp(PubAck::new(pid(43)))]);
        assert!(h.out.closed.is_empty(), "{version:?}");
    }
}

#[test]
fn repeated_pubrec_gets_pubrel_success_again() {
    let mut h = Harness::new(Limits::default());
    let (sub, id) = one_inflight(&mut h, ProtocolVersion::V5, QoS::ExactlyOnce);
    h.handle(sub, Packet::Pubrec(PubAck::new(id)));
    assert_eq!(h.out.take(sub), vec![Packet::Pubrel(PubAck::new(id))]);
    h.handle(sub, Packet::Pubrec(PubAck::new(id)));
    assert_eq!(h.out.take(sub), vec![Packet::Pubrel(PubAck::new(id))]);
    h.handle(sub, Packet::Pubcomp(PubAck::new(id)));
    assert!(h.out.take(sub).is_empty());
    assert_eq!(h.broker.gauges().inflight_messages, 0);
    assert!(h.out.closed.is_empty());
}

#[test]
fn puback_reason_no_matching_subscribers_and_quota_wins() {
    let mut h = Harness::new(Limits::default());
    let (p, _) = h.connect(ProtocolVersion::V5, "pub", true);
    h.handle(p, Packet::Publish(publish("nobody", b"x", QoS::AtLeastOnce, Some(1))));
    let none = PubAck::with_reason(pid(1), ReasonCode::NoMatchingSubscribers);
    assert_eq!(h.out.take(p), vec![Packet::Puback(none)]);
    // Retained and stored, but still nobody subscribed: 0x10 (as Mosquitto).
    let mut retained = publish("nobody", b"x", QoS::ExactlyOnce, Some(2));
    retained.retain = true;
    h.handle(p, Packet::Publish(retained));
    let none = PubAck::with_reason(pid(2), ReasonCode::NoMatchingSubscribers);
    assert_eq!(h.out.take(p), vec![Packet::Pubrec(none)]);
    // 0x10 is not an error: the QoS 2 exchange goes on.
    h.handle(p, Packet::Pubrel(PubAck::new(pid(2))));
    assert_eq!(h.out.take(p), vec![Packet::Pubcomp(PubAck::new(pid(2)))]);
    // A subscriber: 0x00.
    let (sub, _) = h.connect(ProtocolVersion::V5, "sub", true);
    h.subscribe(sub, "nobody", QoS::AtMostOnce);
    h.out.take(sub);
    h.handle(p, Packet::Publish(publish("nobody", b"x", QoS::AtLeastOnce, Some(3))));
    assert_eq!(h.out.take(p), vec![Packet::Puback(PubAck::new(pid(3)))]);
    // 3.1.1 publishers have no such code.
    let (p3, _) = h.connect(ProtocolVersion::V311, "pub3", true);
    h.handle(p3, Packet::Publish(publish("other", b"x", QoS::AtLeastOnce, Some(4))));
    assert_eq!(h.out.take(p3), vec![Packet::Puback(PubAck::new(pid(4)))]);
}

#[test]
fn quota_exceeded_wins_over_no_matching_subscribers() {
    // The only matching session rejects (overflow = "reject" on a full ring): 0x97.
    let (_, reasons) = offline_ring_run(crate::config::Overflow::Reject);
    assert!(reasons.contains(&ReasonCode::QuotaExceeded), "{reasons:?}");
    assert!(!reasons.contains(&ReasonCode::NoMatchingSubscribers), "{reasons:?}");
}

#[test]
fn expired_inflight_message_is_not_resent_and_frees_its_slot() {
    let mut h = Harness::new(Limits::default());
    let sub = v5_persistent(&mut h, "sub");
    h.subscribe(sub, "t", QoS::AtLeastOnce);
    let (p, _) = h.connect(ProtocolVersion::V5, "pub", true);
    let mut short = publish("t", b"short", QoS::AtLeastOnce, Some(1));
    short.properties.message_expiry_interval = Some(2);
    h.handle(p, Packet::Publish(short));
    let got = h.out.take(sub);
    assert_eq!(publishes(&got)[0].properties.message_expiry_interval, Some(2));
    h.close(sub);
    h.advance(Duration::from_millis(2001));
    let sub2 = v5_persistent(&mut h, "sub");
    // Nothing left of its 2 s: not re-sent with 0, and the window is free again.
    assert!(publishes(&h.out.take(sub2)).is_empty());
    assert_eq!(h.broker.gauges().inflight_messages, 0);
}

#[test]
fn queued_message_is_forwarded_with_remaining_expiry_rounded_up() {
    let mut h = Harness::new(Limits::default());
    let sub = v5_persistent(&mut h, "sub");
    h.subscribe(sub, "t", QoS::AtLeastOnce);
    h.close(sub);
    let (p, _) = h.connect(ProtocolVersion::V5, "pub", true);
    let mut m = publish("t", b"x", QoS::AtLeastOnce, Some(1));
    m.properties.message_expiry_interval = Some(4);
    m.retain = true;
    h.handle(p, Packet::Publish(m));
    h.advance(Duration::from_millis(50));
    let sub2 = v5_persistent(&mut h, "sub");
    let got = h.out.take(sub2);
    assert_eq!(publishes(&got)[0].properties.message_expiry_interval, Some(4), "queued");
    // The retained copy, 50 ms on: 4, not 3.
    let (other, _) = h.connect(ProtocolVersion::V5, "other", true);
    let subscribe = Subscribe {
        packet_id: pid(1),
        filters: vec![("t".to_string(), SubscriptionOptions::default())],
        properties: SubscribeProperties::default(),
    };
    h.handle(other, Packet::Subscribe(subscribe));
    let got = h.out.take(other);
    assert_eq!(publishes(&got)[0].properties.message_expiry_interval, Some(4), "retained");
}

#[test]
fn client_maximum_packet_size_applies_to_every_packet() {
    // CONNACK: 2 bytes fit nothing; the connection closes without one (MQTT-3.1.2-24).
    let mut h = Harness::new(Limits::default());
    let tiny = v5_with_max_packet_size(&mut h, "tiny", 2);
    assert!(h.out.take(tiny).is_empty(), "no CONNACK");
    assert_eq!(h.out.closed, vec![tiny]);
    // A refusal too (a CONNACK 0x8C is 5 bytes).
    let mut h = Harness::new(Limits::default());
    let mut connect = connect_packet(ProtocolVersion::V5, "refused", true);
    connect.properties.maximum_packet_size = Some(4);
    connect.properties.authentication_method = Some("none-offered".into());
    let refused = h.accept();
    h.handle(refused, Packet::Connect(Box::new(connect)));
    assert!(h.out.take(refused).is_empty(), "no CONNACK");
    assert!(h.out.closed.contains(&refused));

    // Room for the CONNACK (as this broker sends it) but not for a SUBACK of 40 filters (45
    // bytes): closed after a DISCONNECT 0x95 (3 bytes) rather than leaving the client waiting
    // for its SUBACK for ever.
    let mut h = Harness::new(Limits::default());
    let limit = 40;
    let small = v5_with_max_packet_size(&mut h, "small", limit);
    match h.out.take(small).as_slice() {
        [connack @ Packet::Connack(_)] => {
            assert!(encoded_len(connack, ProtocolVersion::V5) <= limit as usize)
        }
        other => panic!("expected CONNACK, got {other:?}"),
    };
    let subscribe = Subscribe {
        packet_id: pid(1),
        filters: (0..40).map(|i| (format!("t/{i}"), SubscriptionOptions::default())).collect(),
        properties: SubscribeProperties::default(),
    };
    h.handle(small, Packet::Subscribe(subscribe));
    match h.out.take(small).as_slice() {
        [Packet::Disconnect(d)] => assert_eq!(d.reason, ReasonCode::PacketTooLarge),
        other => panic!("expected only DISCONNECT 0x95, got {other:?}"),
    }
    assert_eq!(h.out.closed, vec![small]);
    // The same client with one filter: SUBACK (6 bytes), and PINGRESP (2 bytes) fit.
    let mut h = Harness::new(Limits::default());
    let small = v5_with_max_packet_size(&mut h, "small", limit);
    h.out.take(small);
    h.subscribe(small, "t", QoS::AtMostOnce);
    h.handle(small, Packet::Pingreq);
    assert_eq!(h.out.take(small), vec![Packet::Pingresp]);
    assert!(h.out.closed.is_empty());
}

#[test]
fn oversized_packets_lose_reason_string_and_user_properties_first() {
    let mut h = Harness::new(Limits::default());
    let c = v5_with_max_packet_size(&mut h, "c", 40);
    h.out.take(c);
    let mut out = Recorder::default();
    let puback = Packet::Puback(PubAck {
        packet_id: pid(1),
        reason: ReasonCode::NoMatchingSubscribers,
        properties: PubackProperties {
            reason_string: Some("a long explanation of why nobody listened".into()),
            user_properties: vec![("k".into(), "v".into())],
        },
    });
    h.broker.send(&mut out, c, &puback, h.now);
    let bare = PubAck::with_reason(pid(1), ReasonCode::NoMatchingSubscribers);
    assert_eq!(out.take(c), vec![Packet::Puback(bare)]);
    let suback = Packet::Suback(Suback {
        packet_id: pid(1),
        reasons: vec![ReasonCode::Success],
        properties: SubackProperties {
            reason_string: Some("granted as asked, nothing to add, really".into()),
            ..Default::default()
        },
    });
    h.broker.send(&mut out, c, &suback, h.now);
    let Some(Packet::Suback(sent)) = out.take(c).pop() else { panic!("SUBACK sent") };
    assert_eq!(sent.properties, SubackProperties::default());
    assert!(out.closed.is_empty());
}

#[test]
fn oversized_publish_is_discarded_and_the_connection_stays() {
    let mut h = Harness::new(Limits::default());
    let c = v5_with_max_packet_size(&mut h, "c", 40);
    h.out.take(c);
    h.subscribe(c, "t", QoS::AtLeastOnce);
    let (p, _) = h.connect(ProtocolVersion::V5, "pub", true);
    h.handle(p, Packet::Publish(publish("t", &[0u8; 40], QoS::AtLeastOnce, Some(1))));
    h.handle(p, Packet::Publish(publish("t", b"ok", QoS::AtLeastOnce, Some(2))));
    let got = h.out.take(c);
    let payloads: Vec<&[u8]> = publishes(&got).iter().map(|p| &*p.payload).collect();
    assert_eq!(payloads, vec![&b"ok"[..]]); // MQTT-3.1.2-25
    assert!(h.out.closed.is_empty());
    assert_eq!(h.broker.gauges().inflight_messages, 1);
}

/// Issue 13: MQTT-3.1.2-29. Whatever an acknowledgement carries, a client that set Request
/// Problem Information to 0 gets it without Reason String and User Properties; PUBLISH,
/// CONNACK and DISCONNECT keep theirs, and other clients get everything.
#[test]
fn request_problem_information_0_strips_diagnostics_from_acknowledgements_only() {
    let mut h = Harness::new(Limits::default());
    let mut connect = connect_packet(ProtocolVersion::V5, "quiet", true);
    connect.properties.request_problem_information = Some(0);
    let (quiet, _) = h.connect_with(connect);
    let (chatty, _) = h.connect(ProtocolVersion::V5, "chatty", true);
    let mut ack = PubAck::with_reason(pid(1), ReasonCode::NoMatchingSubscribers);
    ack.properties = PubackProperties {
        reason_string: Some("nobody listens".to_string()),
        user_properties: vec![("k".to_string(), "v".to_string())],
    };
    let suback = Suback {
        packet_id: pid(2),
        reasons: vec![ReasonCode::TopicFilterInvalid],
        properties: SubackProperties {
            reason_string: Some("bad filter".to_string()),
            user_properties: Vec::new(),
        },
    };
    let mut disconnect =
        Disconnect { reason: ReasonCode::ServerBusy, properties: Default::default() };
    disconnect.properties.reason_string = Some("busy".to_string());
    let packets = [
        Packet::Puback(ack.clone()),
        Packet::Suback(suback.clone()),
        Packet::Disconnect(disconnect.clone()),
    ];
    for conn in [quiet, chatty] {
        for packet in &packets {
            h.broker.transmit(&mut h.out, conn, ProtocolVersion::V5, packet, h.now);
        }
    }
    let bare_ack = PubAck::with_reason(pid(1), ReasonCode::NoMatchingSubscribers);
    let bare_suback = Suback { properties: Default::default(), ..suback.clone() };
    assert_eq!(
        h.out.take(quiet),
        vec![
            Packet::Puback(bare_ack),
            Packet::Suback(bare_suback),
            Packet::Disconnect(disconnect.clone())
        ]
    );
    assert_eq!(h.out.take(chatty), packets.to_vec());
}
