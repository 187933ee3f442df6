//! Issue 13: topic aliases the broker assigns on what it sends (MQTT 5.0 §3.3.2.3.4).

use super::*;

fn v5_with_alias_max(h: &mut Harness, id: &str, clean: bool, max: u16) -> ConnId {
    let mut connect = connect_packet(ProtocolVersion::V5, id, clean);
    connect.properties.topic_alias_maximum = Some(max);
    if !clean {
        connect.properties.session_expiry_interval = Some(3600);
    }
    h.connect_with(connect).0
}

/// (topic as sent, alias) of each PUBLISH `conn` got.
fn sent_topics(h: &mut Harness, conn: ConnId) -> Vec<(String, Option<u16>)> {
    publishes(&h.out.take(conn))
        .iter()
        .map(|p| (p.topic.to_string(), p.properties.topic_alias))
        .collect()
}

fn t(topic: &str, alias: Option<u16>) -> (String, Option<u16>) {
    (topic.to_string(), alias)
}

#[test]
fn topics_are_sent_once_then_as_aliases_with_lru_replacement() {
    let mut h = Harness::new(Limits::default());
    let sub = v5_with_alias_max(&mut h, "sub", true, 2);
    h.subscribe(sub, "#", QoS::AtMostOnce);
    let (p, _) = h.connect(ProtocolVersion::V5, "pub", true);
    for topic in ["a", "b", "a", "c", "b", "c"] {
        h.handle(p, Packet::Publish(publish(topic, b"x", QoS::AtMostOnce, None)));
    }
    assert_eq!(
        sent_topics(&mut h, sub),
        vec![
            t("a", Some(1)),
            t("b", Some(2)),
            t("", Some(1)),  // a known
            t("c", Some(2)), // b was the least recently used: its alias goes to c
            t("b", Some(1)), // a was older than c
            t("", Some(2)),  // c known
        ]
    );
    assert_eq!(h.broker.stats().topic_bytes_aliased, 2);
    // ... and /metrics reports it.
    let metrics =
        h.broker.metrics(Instant::now(), &crate::broker::sys::Process { rss_bytes: None });
    let figure = crate::broker::sys::FIGURES
        .iter()
        .find(|f| f.metric == Some("edgemq_topic_bytes_aliased_total"))
        .expect("the figure");
    assert_eq!((figure.value)(&metrics), Some(2.0));
}

#[test]
fn no_aliases_without_a_client_maximum_for_3_1_1_or_when_off() {
    let mut h = Harness::new(Limits {
        outbound_topic_alias: OutboundTopicAlias::Off,
        ..Default::default()
    });
    let off = v5_with_alias_max(&mut h, "off", true, 5);
    h.subscribe(off, "t", QoS::AtMostOnce);
    let mut h2 = Harness::new(Limits::default());
    let none = v5_with_alias_max(&mut h2, "none", true, 0);
    h2.subscribe(none, "t", QoS::AtMostOnce);
    let (v3, _) = h2.connect(ProtocolVersion::V311, "v3", true);
    h2.subscribe(v3, "t", QoS::AtMostOnce);
    for h in [&mut h, &mut h2] {
        let (p, _) = h.connect(ProtocolVersion::V5, "pub", true);
        for _ in 0..2 {
            h.handle(p, Packet::Publish(publish("t", b"x", QoS::AtMostOnce, None)));
        }
    }
    assert_eq!(sent_topics(&mut h, off), vec![t("t", None), t("t", None)]);
    assert_eq!(sent_topics(&mut h2, none), vec![t("t", None), t("t", None)]);
    assert_eq!(sent_topics(&mut h2, v3), vec![t("t", None), t("t", None)]);
}

#[test]
fn the_broker_maximum_bounds_the_aliases_too() {
    let mut h = Harness::new(Limits { max_topic_alias: 1, ..Default::default() });
    let sub = v5_with_alias_max(&mut h, "sub", true, 100);
    h.subscribe(sub, "#", QoS::AtMostOnce);
    let (p, _) = h.connect(ProtocolVersion::V5, "pub", true);
    for topic in ["a", "b", "b"] {
        h.handle(p, Packet::Publish(publish(topic, b"x", QoS::AtMostOnce, None)));
    }
    assert_eq!(sent_topics(&mut h, sub), vec![t("a", Some(1)), t("b", Some(1)), t("", Some(1))]);
}

#[test]
fn a_withheld_publish_does_not_teach_an_alias() {
    // The client takes at most 40 bytes: a PUBLISH with a big payload is withheld
    // (MQTT-3.1.2-25); the alias it would have assigned must not be used afterwards.
    let mut h = Harness::new(Limits::default());
    let mut connect = connect_packet(ProtocolVersion::V5, "small", true);
    connect.properties.topic_alias_maximum = Some(4);
    connect.properties.maximum_packet_size = Some(40);
    let (sub, _) = h.connect_with(connect);
    h.subscribe(sub, "#", QoS::AtMostOnce);
    let (p, _) = h.connect(ProtocolVersion::V5, "pub", true);
    h.handle(p, Packet::Publish(publish("big", &[0; 64], QoS::AtMostOnce, None)));
    h.handle(p, Packet::Publish(publish("big", b"x", QoS::AtMostOnce, None)));
    h.handle(p, Packet::Publish(publish("big", b"y", QoS::AtMostOnce, None)));
    assert_eq!(sent_topics(&mut h, sub), vec![t("big", Some(1)), t("", Some(1))]);
}

#[test]
fn aliases_start_again_on_reconnect_also_for_resent_messages() {
    let mut h = Harness::new(Limits::default());
    let sub = v5_with_alias_max(&mut h, "sub", false, 4);
    h.subscribe(sub, "t", QoS::AtLeastOnce);
    let (p, _) = h.connect(ProtocolVersion::V5, "pub", true);
    for i in 1..=2 {
        h.handle(p, Packet::Publish(publish("t", b"x", QoS::AtLeastOnce, Some(i))));
    }
    assert_eq!(sent_topics(&mut h, sub), vec![t("t", Some(1)), t("", Some(1))]);
    h.close(sub);
    // Not acknowledged: both are re-sent on the new connection, which knows no alias.
    let sub = v5_with_alias_max(&mut h, "sub", false, 4);
    let resent = h.out.take(sub);
    let resent: Vec<(String, Option<u16>, bool)> = publishes(&resent)
        .iter()
        .map(|p| (p.topic.to_string(), p.properties.topic_alias, p.dup))
        .collect();
    assert_eq!(resent, vec![("t".to_string(), Some(1), true), (String::new(), Some(1), true)]);
    // A reconnect without a Topic Alias Maximum gets full topics.
    h.close(sub);
    let sub = v5_with_alias_max(&mut h, "sub", false, 0);
    assert_eq!(sent_topics(&mut h, sub), vec![t("t", None), t("t", None)]);
}
