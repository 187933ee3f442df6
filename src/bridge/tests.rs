//! The link state machine driven by hand: time is a parameter, nothing touches a socket.

use std::rc::Rc;
use std::time::{Duration, Instant};

use super::*;
use crate::config::Config;

fn config(extra: &str) -> Rc<BridgeConfig> {
    let text = format!(
        "[bridges.up]\naddress = \"127.0.0.1:1883\"\nkeepalive = 10\nbackoff_min = \"1s\"\n\
         backoff_max = \"8s\"\nforwards = [{{ topic = \"a/#\", qos = 1 }}]\n\
         subscriptions = [{{ topic = \"c/#\", qos = 1, local_prefix = \"in/\", remote_prefix = \"gw/\" }}]\n{extra}"
    );
    Rc::new(Config::from_toml_str(&text, "t").unwrap().bridges.remove(0))
}

fn connack(reason: ReasonCode) -> Connack {
    Connack { session_present: false, reason, properties: Default::default() }
}

/// A link brought to Active at `t0`.
fn active(t0: Instant) -> Link {
    let mut link = Link::new(config(""), t0, 7);
    assert_eq!(link.on_timer(t0), Some(Step::Connect("127.0.0.1:1883".parse().unwrap())));
    link.connecting(ConnId(3), t0);
    assert!(matches!(
        link.tcp_connected(t0, 10, 1000),
        Some(Step::Send(ConnId(3), Packet::Connect(_)))
    ));
    assert!(link.on_connack(&connack(ReasonCode::Success), t0).is_some());
    link
}

#[test]
fn a_host_name_is_resolved_off_the_loop() {
    let t0 = Instant::now();
    let c = config("");
    let mut named = (*c).clone();
    named.host = "broker.example".into();
    let mut link = Link::new(Rc::new(named), t0, 1);
    assert_eq!(
        link.on_timer(t0),
        Some(Step::Resolve { host: "broker.example".into(), port: 1883 })
    );
    assert_eq!(link.deadline(), None);
    let addr: std::net::SocketAddr = "10.0.0.1:1883".parse().unwrap();
    assert_eq!(link.resolved(Ok(addr), t0), Some(Step::Connect(addr)));
}

#[test]
fn refusals_back_off_exponentially_with_jitter_and_never_spin() {
    let t0 = Instant::now();
    let mut link = Link::new(config(""), t0, 99);
    let mut now = t0;
    let mut delays = Vec::new();
    for _ in 0..8 {
        assert!(matches!(link.on_timer(now), Some(Step::Connect(_))));
        link.connecting(ConnId(1), now);
        link.tcp_connected(now, 10, 1000);
        assert!(link.on_connack(&connack(ReasonCode::NotAuthorized), now).is_none());
        assert!(!link.closed("closed", now));
        let State::Backoff { until } = link.state() else { panic!() };
        delays.push(until - now);
        // Nothing happens before the backoff ends.
        assert_eq!(link.on_timer(now), None);
        now = until;
    }
    for d in &delays {
        assert!(*d >= Duration::from_secs(1) && *d <= Duration::from_secs(8), "{delays:?}");
    }
    assert!(delays[5] >= Duration::from_secs(4), "doubles up to the cap: {delays:?}");
}

#[test]
fn a_silent_remote_is_pinged_then_dropped_within_one_and_a_half_keepalives() {
    let t0 = Instant::now();
    let mut link = active(t0);
    // Silent for half the keep-alive: PINGREQ.
    assert_eq!(link.deadline(), Some(t0 + Duration::from_secs(5)));
    assert_eq!(
        link.on_timer(t0 + Duration::from_secs(5)),
        Some(Step::Send(ConnId(3), Packet::Pingreq))
    );
    // No answer: dropped at 1.5 x keep-alive after the last packet received.
    assert_eq!(link.deadline(), Some(t0 + Duration::from_secs(15)));
    assert_eq!(link.on_timer(t0 + Duration::from_secs(15)), Some(Step::Close(ConnId(3))));
    assert!(link.closed("closed", t0 + Duration::from_secs(15)));
}

#[test]
fn an_answering_remote_keeps_the_link_and_hears_from_us_every_keepalive() {
    let t0 = Instant::now();
    let mut link = active(t0);
    let mut now = t0;
    let mut pings = 0;
    // The remote sends a packet every second (say QoS 0 messages); we must still ping.
    for _ in 0..30 {
        now += Duration::from_secs(1);
        link.received(&Packet::Pingresp, now);
        if let Some(step) = link.on_timer(now) {
            assert_eq!(step, Step::Send(ConnId(3), Packet::Pingreq));
            pings += 1;
        }
    }
    assert!(pings >= 2, "{pings}");
}

#[test]
fn inbound_topics_map_remote_prefix_to_local() {
    let link = active(Instant::now());
    let mut p = Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: Rc::from("gw/c/x"),
        packet_id: NonZeroU16::new(1),
        properties: Default::default(),
        payload: Rc::from(&b""[..]),
    };
    link.map_inbound(&mut p);
    assert_eq!(&*p.topic, "in/c/x");
    let Some(Packet::Subscribe(s)) = link.subscribe(NonZeroU16::MIN) else { panic!() };
    assert_eq!(s.filters[0].0, "gw/c/#");
    assert!(!s.filters[0].1.no_local, "3.1.1 has no No Local");
}

#[test]
fn a_stopped_link_makes_no_further_attempt() {
    let t0 = Instant::now();
    let mut link = active(t0);
    link.stop();
    assert!(link.closed("closed", t0));
    assert_eq!(link.deadline(), None);
    assert_eq!(link.on_timer(t0 + Duration::from_secs(3600)), None);
}

#[test]
fn a_name_that_does_not_resolve_backs_off() {
    let t0 = Instant::now();
    let mut named = (*config("")).clone();
    named.host = "no.such.host".into();
    let mut link = Link::new(Rc::new(named), t0, 3);
    assert!(matches!(link.on_timer(t0), Some(Step::Resolve { .. })));
    assert_eq!(link.resolved(Err("not found".into()), t0), None);
    let State::Backoff { until } = link.state() else { panic!("{:?}", link.state()) };
    assert!(until >= t0 + Duration::from_secs(1));
}
