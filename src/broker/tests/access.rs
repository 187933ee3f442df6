//! The broker's use of `auth`, driven by hand: the reason codes of `access.rs`, rules swapped
//! while clients are connected, wills under the ACL of their client.

use super::*;
use crate::auth::{acl, password, Auth};

const ALICE: &str = "alice:$7$101$ZFFRz7R3aWx10UoD$8daPUqzzZWv7qsu4pQgUnofS1EDxS+nBs0F0OUg\
                     +Z86MCRMG5BL1vikN71T5V8JdifUEqZxL01XvXkWslCLshg==";

fn auth(allow_anonymous: bool, acl_text: Option<&str>) -> Auth {
    let passwords = password::parse(ALICE).expect("test password file");
    Auth::new(allow_anonymous, Some(passwords), acl_text.map(|t| acl::parse(t).expect("test ACL")))
}

fn login(version: ProtocolVersion, id: &str, user: &str, password: &[u8]) -> Connect {
    let mut connect = connect_packet(version, id, true);
    connect.username = Some(user.to_string());
    connect.password = Some(password.to_vec());
    connect
}

#[test]
fn refused_logins_get_the_codes_of_access_rs() {
    let mut h = Harness::new(Limits::default());
    h.broker.set_auth(auth(false, None));
    let cases = [
        (login(ProtocolVersion::V311, "a", "alice", b"x"), ReasonCode::BadUserNameOrPassword),
        (login(ProtocolVersion::V5, "b", "bob", b"x"), ReasonCode::BadUserNameOrPassword),
        (connect_packet(ProtocolVersion::V5, "c", true), ReasonCode::NotAuthorized),
    ];
    for (connect, reason) in cases {
        let (conn, connack) = h.connect_with(connect);
        assert_eq!(connack.reason, reason);
        assert!(h.out.closed.contains(&conn));
    }
    let (_, connack) = h.connect_with(login(ProtocolVersion::V5, "d", "alice", b"secret"));
    assert_eq!(connack.reason, ReasonCode::Success);
}

#[test]
fn a_refused_login_does_not_take_over_the_session_of_its_client_id() {
    let mut h = Harness::new(Limits::default());
    h.broker.set_auth(auth(false, None));
    let (owner, _) = h.connect_with(login(ProtocolVersion::V311, "dev", "alice", b"secret"));
    let (intruder, connack) = h.connect_with(login(ProtocolVersion::V311, "dev", "alice", b"no"));
    assert_eq!(connack.reason, ReasonCode::BadUserNameOrPassword);
    assert!(h.out.closed.contains(&intruder) && !h.out.closed.contains(&owner));
    assert!(h.broker.wants_input(owner));
}

#[test]
fn a_v311_qos2_publish_the_acl_denies_completes_and_is_dropped() {
    let mut h = Harness::new(Limits::default());
    h.broker.set_auth(auth(true, Some("topic read #\nuser alice\ntopic write ok/#\n")));
    let (sub, _) = h.connect(ProtocolVersion::V311, "sub", true);
    h.subscribe(sub, "#", QoS::ExactlyOnce);
    let (p, _) = h.connect_with(login(ProtocolVersion::V311, "p", "alice", b"secret"));
    h.handle(p, Packet::Publish(publish("no/x", b"x", QoS::ExactlyOnce, Some(3))));
    assert_eq!(h.out.take(p), vec![Packet::Pubrec(PubAck::new(pid(3)))]);
    h.handle(p, Packet::Pubrel(PubAck::new(pid(3))));
    assert_eq!(h.out.take(p), vec![Packet::Pubcomp(PubAck::new(pid(3)))]);
    assert!(publishes(&h.out.take(sub)).is_empty());
    // The v5 publisher is told.
    let (p5, _) = h.connect_with(login(ProtocolVersion::V5, "p5", "alice", b"secret"));
    h.handle(p5, Packet::Publish(publish("no/x", b"x", QoS::ExactlyOnce, Some(4))));
    let refused = PubAck::with_reason(pid(4), ReasonCode::NotAuthorized);
    assert_eq!(h.out.take(p5), vec![Packet::Pubrec(refused)]);
}

#[test]
fn a_will_the_new_rules_deny_is_not_published() {
    let mut h = Harness::new(Limits::default());
    h.broker.set_auth(auth(true, Some("topic readwrite wills/#\n")));
    let (watcher, _) = h.connect(ProtocolVersion::V311, "w", true);
    h.subscribe(watcher, "wills/#", QoS::AtLeastOnce);
    let mut c = connect_packet(ProtocolVersion::V311, "a", true);
    c.will = Some(will("wills/a", None));
    let (a, connack) = h.connect_with(c.clone());
    assert_eq!(connack.reason, ReasonCode::Success);
    // Reload: anonymous clients may read wills/# but no longer write it.
    h.broker.set_auth(auth(true, Some("topic read wills/#\n")));
    h.close(a);
    assert!(publishes(&h.out.take(watcher)).is_empty());
    // And a new CONNECT with that will is refused.
    let (_, connack) = h.connect_with(c);
    assert_eq!(connack.reason, ReasonCode::NotAuthorized);
}
