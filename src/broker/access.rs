//! Where the broker asks `auth` and turns its decisions into what the client sees: the one
//! place mapping auth decisions to reason codes and log lines.
//!
//! - CONNECT: refused logins get CONNACK 0x04 / 0x86 (bad user name or password) or 0x05 / 0x87
//!   (not authorised, also for a will the ACL does not allow, as Mosquitto answers); an address
//!   with repeated bad credentials is refused at once with 0x03 / 0x89 (server busy) while its
//!   back-off lasts (`auth/backoff.rs`). One log line per refusal, with client id and address,
//!   at most one per second with a count of the ones left out.
//! - PUBLISH to a topic the ACL denies: 5.0 gets PUBACK/PUBREC 0x87; 3.1.1 cannot be told, so
//!   the message is acknowledged and dropped (as Mosquitto does).
//! - SUBSCRIBE: a denied filter gets 0x87 (5.0) / 0x80 (3.1.1).
//! - Delivery: every PUBLISH to a subscriber is checked when it is sent (live, retained,
//!   queued, re-sent), so a rule changed by a reload applies to subscriptions granted before.
//! - Wills: checked at CONNECT and again when published.
//! - Bridges: a bridge's link (session `$bridge/NAME`) is the broker itself, configured by the
//!   operator in `[bridges.NAME]`, not a client: it has no login, and the ACL neither filters
//!   what it forwards to the remote (its `forwards` decide) nor what it publishes here from the
//!   remote (its `subscriptions` decide), as in Mosquitto, whose ACL checks pass bridges. Local
//!   subscribers still get a bridged message only if the ACL lets *them* read it.
//!
//! Contract: no I/O; the rules are swapped whole by [`Broker::set_auth`] (SIGHUP reload).

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant;

use super::logging::More;
use super::session::SessionId;
use super::{Broker, ConnId, Outbox};
use crate::auth::{acl::Denied, Auth, Client, ListenerPolicy, Login, LoginDenied, Verdict};
use crate::codec::{Connect, Packet, ProtocolVersion, PubAck, Publish, QoS, ReasonCode};

/// Who a session's client logged in as, kept with the session for its will.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    pub username: Option<Rc<str>>,
}

/// The auth state the broker keeps: the rules and the back-off table.
#[derive(Debug, Default)]
pub(super) struct AccessState {
    pub auth: Auth,
    backoff: crate::auth::backoff::Backoff,
}

/// The CONNACK reason for a refused login (3.1.1 return codes follow from the codec's mapping:
/// 0x86 -> 0x04, 0x87 -> 0x05).
fn login_reason(why: LoginDenied) -> ReasonCode {
    match why {
        LoginDenied::UnknownUser | LoginDenied::WrongPassword => ReasonCode::BadUserNameOrPassword,
        LoginDenied::AnonymousNotAllowed
        | LoginDenied::NoPasswordFile
        | LoginDenied::WillNotAllowed(_) => ReasonCode::NotAuthorized,
    }
}

impl Broker {
    /// Replaces the auth rules (start-up and SIGHUP). Connections stay; their next packets and
    /// every delivery from now on follow the new rules.
    pub fn set_auth(&mut self, auth: Auth) {
        self.access.auth = auth;
    }

    pub fn auth(&self) -> &Auth {
        &self.access.auth
    }

    /// Checks a CONNECT's credentials and will. Returns false if the login was refused: the
    /// CONNACK is sent and the connection is closing.
    pub(super) fn authorize_connect(
        &mut self,
        conn: ConnId,
        client_id: &str,
        connect: &Connect,
        now: Instant,
        out: &mut dyn Outbox,
    ) -> bool {
        let Some(state) = self.conn(conn) else { return false };
        let peer = Some(state.origin.peer);
        let ip = peer.map(|p| p.ip());
        // Set from the CONNECT, or the certificate's CN under `use_identity_as_username`.
        let username = state.username.clone();
        let policy = ListenerPolicy {
            allow_anonymous: state.origin.allow_anonymous,
            certified_username: state.origin.use_identity_as_username,
        };
        if let Some(left) = ip.and_then(|ip| self.access.backoff.blocked(ip, now)) {
            let why = format!(
                "too many failed logins from this address; refused without a check for {}.{:03}s",
                left.as_secs(),
                left.subsec_millis()
            );
            self.log_login_refusal(client_id, peer, &why, ReasonCode::ServerBusy, now);
            self.send_refusal(conn, ReasonCode::ServerBusy, now, out);
            return false;
        }
        let username = username.as_deref();
        let auth = &self.access.auth;
        let mut decision = auth.check_login_on(username, connect.password.as_deref(), policy);
        if let (Login::Allow, Some(will)) = (decision, &connect.will) {
            decision = auth.check_will(Client { client_id, username }, &will.topic);
        }
        match decision {
            Login::Allow => {
                // Only a checked password clears the address's failures: an anonymous login in
                // between must not reset a password guesser's count.
                if let (Some(ip), Some(_), Some(_)) = (ip, username, auth.passwords()) {
                    self.access.backoff.succeeded(ip);
                }
                true
            }
            Login::Deny(why) => {
                let mut text = why.to_string();
                if why.is_bad_credentials() {
                    if let Some(block) = ip.and_then(|ip| self.access.backoff.failed(ip, now)) {
                        text.push_str(&format!(
                            "; this address is refused for {}s",
                            block.as_secs_f32()
                        ));
                    }
                }
                let reason = login_reason(why);
                self.log_login_refusal(client_id, peer, &text, reason, now);
                self.send_refusal(conn, reason, now, out);
                false
            }
        }
    }

    fn log_login_refusal(
        &mut self,
        client_id: &str,
        peer: Option<SocketAddr>,
        why: &str,
        reason: ReasonCode,
        now: Instant,
    ) {
        let Some(suppressed) = self.logs.login_refused.allow(now) else { return };
        let from = peer.map_or_else(|| "an unknown address".to_string(), |p| p.to_string());
        let more = More(suppressed);
        log::warn!(
            "client {client_id:?} from {from}: login refused: {why}; CONNACK {reason:?}{more}"
        );
    }

    fn log_acl_denial(&mut self, conn: ConnId, what: &str, topic: &str, why: Denied, now: Instant) {
        let Some(suppressed) = self.logs.acl_denied.allow(now) else { return };
        let client = self.client_label(conn);
        let more = More(suppressed);
        log::info!("{client}: {what} {topic:?} not allowed: {why}{more}");
    }

    /// Who `conn` is, for the ACL; `None` if it has no session.
    fn acl_client(&self, conn: ConnId) -> Option<(Rc<str>, Option<Rc<str>>)> {
        let state = self.conn(conn)?;
        let session = self.session(state.session()?)?;
        Some((session.client_id.clone(), state.username.clone()))
    }

    /// Whether `conn` is a bridge link, which the ACL does not apply to (module docs).
    fn is_bridge_link(&self, conn: ConnId) -> bool {
        self.conn(conn).is_some_and(|c| c.link.is_some())
    }

    /// Whether `conn` may publish to `topic`; a denial is logged.
    pub(super) fn publish_allowed(&mut self, conn: ConnId, topic: &str, now: Instant) -> bool {
        if self.access.auth.acl().is_none() || self.is_bridge_link(conn) {
            return true;
        }
        let Some((client_id, username)) = self.acl_client(conn) else { return false };
        let client = Client { client_id: &client_id, username: username.as_deref() };
        match self.access.auth.check_publish(client, topic) {
            Verdict::Allow => true,
            Verdict::Deny(why) => {
                self.log_acl_denial(conn, "PUBLISH to", topic, why, now);
                false
            }
        }
    }

    /// The answer to a PUBLISH the ACL denied: 5.0 learns it (0x87), 3.1.1 gets the normal
    /// acknowledgement and the message is dropped. A refused QoS 2 exchange ends with the
    /// PUBREC; a 3.1.1 client's PUBREL then gets PUBCOMP as for any unknown packet id.
    pub(super) fn refuse_publish(&mut self, conn: ConnId, publish: &Publish) {
        let v5 = self.conn(conn).and_then(|c| c.version) == Some(ProtocolVersion::V5);
        let reason = if v5 { ReasonCode::NotAuthorized } else { ReasonCode::Success };
        let Some(packet_id) = publish.packet_id else { return };
        let ack = match publish.qos {
            QoS::AtMostOnce => return,
            QoS::AtLeastOnce => Packet::Puback(PubAck::with_reason(packet_id, reason)),
            QoS::ExactlyOnce => Packet::Pubrec(PubAck::with_reason(packet_id, reason)),
        };
        self.queue_ack(conn, ack, false);
    }

    /// `Some(reason)` if the ACL denies `conn` a subscription to `filter`; logged.
    pub(super) fn subscribe_refusal(
        &mut self,
        conn: ConnId,
        filter: &str,
        now: Instant,
    ) -> Option<ReasonCode> {
        self.access.auth.acl()?;
        let Some((client_id, username)) = self.acl_client(conn) else {
            return Some(ReasonCode::NotAuthorized);
        };
        let client = Client { client_id: &client_id, username: username.as_deref() };
        match self.access.auth.check_subscribe(client, filter) {
            Verdict::Allow => None,
            Verdict::Deny(why) => {
                self.log_acl_denial(conn, "SUBSCRIBE to", filter, why, now);
                Some(ReasonCode::NotAuthorized)
            }
        }
    }

    /// Whether a message on `topic` may be sent to `conn` now. A denied one is dropped as if
    /// delivered; logged at debug level only (a subscription can match many denied topics).
    pub(super) fn delivery_allowed(&self, conn: ConnId, topic: &str) -> bool {
        if self.access.auth.acl().is_none() || self.is_bridge_link(conn) {
            return true;
        }
        let Some((client_id, username)) = self.acl_client(conn) else { return false };
        let client = Client { client_id: &client_id, username: username.as_deref() };
        match self.access.auth.check_deliver(client, topic) {
            Verdict::Allow => true,
            Verdict::Deny(why) => {
                log::debug!(
                    "{}: message on {topic:?} not delivered: {why}",
                    self.client_label(conn)
                );
                false
            }
        }
    }

    /// Whether a session's will may be published now. A session restored from the store whose
    /// client has not logged in during this run had its will checked at its CONNECT.
    pub(super) fn will_allowed(
        &self,
        client_id: &str,
        identity: Option<&Identity>,
        topic: &str,
    ) -> bool {
        let Some(identity) = identity else { return true };
        let client = Client { client_id, username: identity.username.as_deref() };
        match self.access.auth.check_publish(client, topic) {
            Verdict::Allow => true,
            Verdict::Deny(why) => {
                log::info!("client {client_id:?}: will on {topic:?} not published: {why}");
                false
            }
        }
    }

    /// Records who logged in on a session (for its will).
    pub(super) fn bind_identity(&mut self, conn: ConnId, session_id: SessionId) {
        let username = self.conn(conn).and_then(|c| c.username.clone());
        if let Some(session) = self.session_mut(session_id) {
            session.identity = Some(Identity { username });
        }
    }
}
