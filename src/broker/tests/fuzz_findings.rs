//! Found by `fuzz/` (target `broker_sequence`); see fuzz/README.md, "Findings". Each test is
//! the smallest sequence that showed the defect, named after the promise it broke; both are
//! fixed, and these tests keep them so.

use super::*;

/// Finding 1. `transmit` (outgoing.rs) closes a connection whose CONNACK, SUBACK, ... does not
/// fit the client's Maximum Packet Size with `Outbox::close` alone: the broker's own state
/// stays `Active` (no `close_conn`, no detach), so it keeps taking input from a connection it
/// has decided to drop — packets already read from the socket in the same pass are handled,
/// PUBLISHes routed — and keeps sending to it (a second CONNECT there gets a DISCONNECT after
/// the close; a takeover of its client id sends DISCONNECT 0x8E to a client that never got a
/// CONNACK). `net` reports the socket closed only at the end of the pass.
#[test]
fn a_connection_closed_for_an_oversized_packet_takes_no_more_input() {
    let mut h = Harness::new(Limits::default());
    let (sub, _) = h.connect(ProtocolVersion::V311, "sub", true);
    h.subscribe(sub, "t", QoS::AtMostOnce);

    // This server's v5 CONNACK is 16 bytes (receive maximum, maximum packet size, topic alias
    // maximum): it does not fit in 15.
    let mut connect = connect_packet(ProtocolVersion::V5, "small", true);
    connect.properties.maximum_packet_size = Some(15);
    let small = h.accept();
    h.broker.handle(small, Packet::Connect(Box::new(connect)), h.now, &mut h.out);
    assert!(h.out.take(small).is_empty(), "no CONNACK");
    assert_eq!(h.out.closed, vec![small]);

    // Closed is closed: no more input is wanted from it ...
    assert!(!h.broker.wants_input(small), "still reading a connection it closed");
    // ... and what was already read is not acted on: no routing, nothing sent.
    h.broker.handle(
        small,
        Packet::Publish(publish("t", b"x", QoS::AtMostOnce, None)),
        h.now,
        &mut h.out,
    );
    h.broker.end_of_pass(h.now, &mut h.out);
    assert!(h.out.take(sub).is_empty(), "a PUBLISH from a closed connection was routed");
    assert!(h.out.take(small).is_empty());
}

/// Finding 2. On a 5.0 reconnect with a session present, `resend_inflight` (ack.rs) re-sends
/// every unacknowledged message at once; the Receive Maximum of the new connection (which is
/// not carried over from the old one, MQTT 5.0 §4.9) is only applied to new deliveries
/// (deliver.rs). A client that reconnects asking for fewer gets more unacknowledged QoS 1/2
/// PUBLISHes than it allows (MQTT-3.3.4-9) and may treat that as a protocol error (0x93).
#[test]
fn resend_on_reconnect_respects_the_new_receive_maximum() {
    let mut h = Harness::new(Limits::default());
    let mut connect = connect_packet(ProtocolVersion::V5, "sub", false);
    connect.properties.session_expiry_interval = Some(3600);
    let (sub, _) = h.connect_with(connect.clone());
    h.subscribe(sub, "t", QoS::AtLeastOnce);
    let (p, _) = h.connect(ProtocolVersion::V311, "pub", true);
    for id in 1..=2 {
        h.handle(p, Packet::Publish(publish("t", b"x", QoS::AtLeastOnce, Some(id))));
    }
    assert_eq!(publishes(&h.out.take(sub)).len(), 2, "both delivered, neither acknowledged");
    h.close(sub);

    // Back with Receive Maximum 1: one re-sent now (MQTT-4.4.0-1 within MQTT-3.3.4-9) ...
    connect.properties.receive_maximum = Some(1);
    let (back, connack) = h.connect_with(connect);
    assert!(connack.session_present);
    let sent = h.out.take(back);
    let resent = publishes(&sent);
    assert_eq!(resent.len(), 1, "Receive Maximum 1, got {resent:?}");
    assert!(resent[0].dup);
    // ... the other once the first is acknowledged.
    let first = resent[0].packet_id.expect("QoS 1 has a packet id");
    h.handle(back, Packet::Puback(PubAck::new(first)));
    let sent = h.out.take(back);
    assert_eq!(publishes(&sent).len(), 1, "{sent:?}");
}
