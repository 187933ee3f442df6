//! Issue 10: the origin of a connection, and `use_identity_as_username`.

use super::*;

fn tls_origin(use_identity_as_username: bool) -> Origin {
    listener_origin(None, use_identity_as_username)
}

fn listener_origin(allow_anonymous: Option<bool>, use_identity_as_username: bool) -> Origin {
    Origin {
        peer: std::net::SocketAddr::from(([192, 0, 2, 7], 40_001)),
        listener: ListenerId(1),
        allow_anonymous,
        use_identity_as_username,
        tls_identity: None,
    }
}

fn connect_as(h: &mut Harness, conn: ConnId, username: Option<&str>) -> Packet {
    let mut connect = connect_packet(ProtocolVersion::V5, "c", true);
    connect.username = username.map(str::to_string);
    h.handle(conn, Packet::Connect(Box::new(connect)));
    h.out.take(conn).into_iter().next().expect("an answer to CONNECT")
}

fn reason(packet: &Packet) -> ReasonCode {
    match packet {
        Packet::Connack(connack) => connack.reason,
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

#[test]
fn the_origin_is_kept_with_the_connection() {
    let mut h = Harness::new(Limits::default());
    let conn = h.accept_from(tls_origin(false));
    let state = h.broker.conn(conn).expect("accepted");
    assert_eq!(state.origin.listener, ListenerId(1));
    assert_eq!(state.origin.peer.to_string(), "192.0.2.7:40001");
    assert_eq!(state.origin.allow_anonymous, None);
}

#[test]
fn a_listeners_allow_anonymous_overrides_the_global_setting() {
    // The broker's default rules accept anonymous clients; this listener does not.
    let mut h = Harness::new(Limits::default());
    let conn = h.accept_from(listener_origin(Some(false), false));
    assert_eq!(reason(&connect_as(&mut h, conn, None)), ReasonCode::NotAuthorized);
    // And the other way round: global rules refusing them, a listener that accepts them.
    let mut h = Harness::new(Limits::default());
    h.broker.set_auth(crate::auth::Auth::new(false, None, None));
    let conn = h.accept_from(listener_origin(Some(true), false));
    assert_eq!(reason(&connect_as(&mut h, conn, None)), ReasonCode::Success);
    let conn = h.accept_from(listener_origin(None, false));
    assert_eq!(reason(&connect_as(&mut h, conn, None)), ReasonCode::NotAuthorized);
}

#[test]
fn a_certified_username_needs_no_password() {
    // Global rules refuse anyone without a checked password; the certificate's CN is checked.
    let mut h = Harness::new(Limits::default());
    h.broker.set_auth(crate::auth::Auth::new(false, None, None));
    let conn = h.accept_from(tls_origin(true));
    h.broker.on_tls_identity(conn, Rc::from("device-7"));
    assert_eq!(reason(&connect_as(&mut h, conn, None)), ReasonCode::Success);
}

#[test]
fn the_connect_username_is_the_username_without_use_identity() {
    let mut h = Harness::new(Limits::default());
    let conn = h.accept_from(tls_origin(false));
    h.broker.on_tls_identity(conn, Rc::from("device-7"));
    assert_eq!(reason(&connect_as(&mut h, conn, Some("alice"))), ReasonCode::Success);
    assert_eq!(h.broker.conn(conn).and_then(|c| c.username.as_deref()), Some("alice"));
}

#[test]
fn use_identity_as_username_replaces_the_connect_username_with_the_cn() {
    let mut h = Harness::new(Limits::default());
    let conn = h.accept_from(tls_origin(true));
    h.broker.on_tls_identity(conn, Rc::from("device-7"));
    assert_eq!(reason(&connect_as(&mut h, conn, Some("alice"))), ReasonCode::Success);
    assert_eq!(h.broker.conn(conn).and_then(|c| c.username.as_deref()), Some("device-7"));
}

#[test]
fn use_identity_as_username_without_a_certificate_is_not_authorized() {
    let mut h = Harness::new(Limits::default());
    let conn = h.accept_from(tls_origin(true));
    assert_eq!(reason(&connect_as(&mut h, conn, Some("alice"))), ReasonCode::NotAuthorized);
    assert!(h.out.closed.contains(&conn));
}
