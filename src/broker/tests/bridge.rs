//! Bridge sessions in the core (broker/bridge.rs), driven by hand: queued while the link is
//! down, sent mapped and capped when it comes up, freed by the remote's acks, no bounce-back.

use super::*;
use crate::config::{Overflow, TopicMap};

fn spec(name: &str) -> BridgeSpec {
    BridgeSpec {
        name: name.into(),
        version: ProtocolVersion::V5,
        forwards: vec![TopicMap {
            topic: "a/#".into(),
            qos: QoS::ExactlyOnce,
            local_prefix: String::new(),
            remote_prefix: "r/".into(),
        }],
        queue_qos0: false,
        max_queued: 3,
        max_queued_bytes: 1 << 20,
        overflow: Overflow::DropOldest,
    }
}

fn params(s: &BridgeSpec, max_qos: QoS) -> LinkParams {
    let forwards = LinkParams::forwards_of(&s.forwards);
    LinkParams {
        name: s.name.clone(),
        version: s.version,
        window: 10,
        max_packet_size: u32::MAX,
        max_qos,
        retain_available: true,
        remaps: LinkParams::remaps_of(&forwards),
        forwards,
    }
}

const REMOTE: std::net::SocketAddr =
    std::net::SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 1883);

fn state_payloads(packets: &[Packet]) -> Vec<&[u8]> {
    publishes(packets).into_iter().map(|p| &*p.payload).collect()
}

#[test]
fn queued_while_down_sent_mapped_and_capped_when_up_freed_by_the_remote_ack() {
    let mut h = Harness::new(Limits::default());
    let s = spec("up");
    assert!(h.broker.add_bridge(&s, h.now, &mut h.out));
    h.broker.end_of_pass(h.now, &mut h.out);
    let (watch, _) = h.connect(ProtocolVersion::V311, "watch", true);
    let subscribe = Subscribe {
        packet_id: pid(1),
        filters: vec![("$SYS/broker/connection/up/state".into(), SubscriptionOptions::default())],
        properties: SubscribeProperties::default(),
    };
    h.handle(watch, Packet::Subscribe(subscribe));
    // The retained state "0" follows the SUBACK.
    assert_eq!(state_payloads(&h.out.take(watch)), vec![b"0"]);

    let (publisher, _) = h.connect(ProtocolVersion::V311, "pub", true);
    h.handle(publisher, Packet::Publish(publish("a/x", b"1", QoS::ExactlyOnce, Some(1))));
    // Stored for the bridge before the PUBREC (the commit in `end_of_pass`).
    assert!(matches!(h.out.take(publisher)[..], [Packet::Pubrec(_)]));

    let link = ConnId(40);
    h.broker.bridge_up(link, REMOTE, params(&s, QoS::AtLeastOnce), false, h.now, &mut h.out);
    h.broker.end_of_pass(h.now, &mut h.out);
    let sent = h.out.take(link);
    let p = publishes(&sent);
    assert_eq!(p.len(), 1);
    assert_eq!(&*p[0].topic, "r/a/x", "local topic mapped to the remote prefix");
    assert_eq!(p[0].qos, QoS::AtLeastOnce, "remote Maximum QoS 1: QoS 2 goes as 1");
    assert_eq!(state_payloads(&h.out.take(watch)), vec![b"1"]);

    let usage = |h: &Harness| h.broker.bridge_queued("up");
    assert_eq!(usage(&h), Some(1));
    let id = p[0].packet_id.expect("QoS 1");
    h.handle(link, Packet::Puback(PubAck::new(id)));
    assert_eq!(usage(&h), Some(0), "the remote's PUBACK frees the row");

    // A message from the remote is routed locally but not sent back to it (No Local).
    let (local_sub, _) = h.connect(ProtocolVersion::V311, "local", true);
    h.subscribe(local_sub, "a/#", QoS::AtLeastOnce);
    h.handle(link, Packet::Publish(publish("a/from-remote", b"r", QoS::AtLeastOnce, Some(9))));
    assert_eq!(publishes(&h.out.take(local_sub)).len(), 1);
    let back = h.out.take(link);
    assert!(publishes(&back).is_empty(), "bounced back: {back:?}");
    assert!(matches!(back[..], [Packet::Puback(_)]), "acknowledged to the remote: {back:?}");

    h.close(link);
    h.broker.bridge_down("up", h.now, &mut h.out);
    h.broker.end_of_pass(h.now, &mut h.out);
    assert_eq!(state_payloads(&h.out.take(watch)), vec![b"0"]);
}

#[test]
fn the_bridge_caps_its_own_queue() {
    let mut h = Harness::new(Limits::default());
    let s = spec("capped");
    assert!(h.broker.add_bridge(&s, h.now, &mut h.out));
    let (publisher, _) = h.connect(ProtocolVersion::V311, "pub", true);
    for i in 0..5u16 {
        h.handle(publisher, Packet::Publish(publish("a/x", b"m", QoS::AtLeastOnce, Some(i + 1))));
    }
    // max_queued = 3 (drop_oldest), whatever sqlite.max_queued_per_session says.
    assert_eq!(h.broker.bridge_queued("capped"), Some(3));
}

#[test]
fn clients_may_not_take_a_bridge_session_and_stale_bridges_go() {
    let mut h = Harness::new(Limits::default());
    assert!(h.broker.add_bridge(&spec("old"), h.now, &mut h.out));
    let (_, connack) = h.connect(ProtocolVersion::V5, "$bridge/old", false);
    assert_eq!(connack.reason, ReasonCode::ClientIdentifierNotValid);
    h.broker.remove_stale_bridges(&["new".to_string()], h.now, &mut h.out);
    assert_eq!(h.broker.bridge_queued("old"), None);
}

#[test]
fn the_acl_does_not_apply_to_a_bridge_link_but_to_the_local_readers_of_what_it_brings() {
    let mut h = Harness::new(Limits::default());
    // Anonymous clients may write "a/#" and read "open/#"; no rule names the bridge, nobody
    // may read "a/#" or write "open/#" and "closed/#".
    let acl = crate::auth::acl::parse("topic write a/#\ntopic read open/#\n").expect("test ACL");
    h.broker.set_auth(crate::auth::Auth::new(true, None, Some(acl)));
    let mut s = spec("acl");
    s.forwards[0].qos = QoS::AtLeastOnce;
    assert!(h.broker.add_bridge(&s, h.now, &mut h.out));
    let link = ConnId(41);
    h.broker.bridge_up(link, REMOTE, params(&s, QoS::AtLeastOnce), false, h.now, &mut h.out);
    h.broker.end_of_pass(h.now, &mut h.out);
    h.out.take(link);

    // Local -> remote: forwarded although no rule lets anybody read "a/#".
    let (publisher, _) = h.connect(ProtocolVersion::V311, "pub", true);
    h.handle(publisher, Packet::Publish(publish("a/x", b"1", QoS::AtLeastOnce, Some(1))));
    h.broker.end_of_pass(h.now, &mut h.out);
    let topics = |packets: &[Packet]| {
        publishes(packets).into_iter().map(|p| p.topic.to_string()).collect::<Vec<_>>()
    };
    assert_eq!(topics(&h.out.take(link)), vec!["r/a/x".to_string()], "forwarded");

    // Remote -> local: the link publishes where no rule lets anybody write (a 5.0 link would
    // hear 0x87 if the ACL applied); local readers get what the ACL lets them read.
    let (reader, _) = h.connect(ProtocolVersion::V311, "reader", true);
    h.subscribe(reader, "open/#", QoS::AtLeastOnce);
    h.handle(link, Packet::Publish(publish("open/in", b"r", QoS::AtLeastOnce, Some(7))));
    h.broker.end_of_pass(h.now, &mut h.out);
    let acks = h.out.take(link);
    assert!(
        matches!(&acks[..], [Packet::Puback(a)] if a.reason == ReasonCode::Success),
        "the remote's message is accepted: {acks:?}"
    );
    assert_eq!(topics(&h.out.take(reader)), vec!["open/in".to_string()]);
    // A client may not publish there itself.
    let (p5, _) = h.connect(ProtocolVersion::V5, "p5", true);
    h.handle(p5, Packet::Publish(publish("open/in", b"c", QoS::AtLeastOnce, Some(2))));
    let refused = PubAck::with_reason(pid(2), ReasonCode::NotAuthorized);
    assert_eq!(h.out.take(p5), vec![Packet::Puback(refused)]);
}
