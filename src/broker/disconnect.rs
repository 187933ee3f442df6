//! Ends of connections and sessions: DISCONNECT, detaching a session from a dropped
//! connection, wills (MQTT 3.1.1 §3.1.2.5, MQTT 5.0 §3.1.3.2 Will Delay) and session end.

use std::rc::Rc;
use std::time::{Duration, Instant};

use super::connection::Phase;
use super::message::Message;
use super::session::{OutboundState, SessionExpiry, SessionId};
use super::{Broker, ConnId, Outbox};
use crate::codec::{Disconnect, ProtocolVersion, PublishProperties, ReasonCode, Will};

impl Broker {
    pub(super) fn handle_disconnect(
        &mut self,
        conn: ConnId,
        disconnect: Disconnect,
        now: Instant,
        out: &mut dyn Outbox,
    ) {
        let Some(state) = self.conn(conn) else { return };
        let version = state.version;
        let Some(session_id) = state.session() else {
            return;
        };
        if version == Some(ProtocolVersion::V5) {
            if let Some(interval) = disconnect.properties.session_expiry_interval {
                let Some(session) = self.session(session_id) else {
                    return;
                };
                if session.expiry == SessionExpiry::AtDisconnect && interval != 0 {
                    // MQTT-3.14.2-2: a session that was to end at disconnect cannot be revived.
                    let what = "DISCONNECT sets Session Expiry Interval after CONNECT had 0";
                    return self.protocol_error(conn, ReasonCode::ProtocolError, what, now, out);
                }
                let expiry = SessionExpiry::from_v5_interval(interval)
                    .capped(self.limits.max_session_expiry);
                if let Some(session) = self.session_mut(session_id) {
                    session.expiry = expiry;
                }
            }
        }
        if disconnect.reason != ReasonCode::DisconnectWithWillMessage {
            // MQTT-3.1.2-10 / MQTT-3.14.4-3: a normal DISCONNECT discards the will.
            if let Some(session) = self.session_mut(session_id) {
                session.will = None;
            }
        }
        log::debug!("{}: DISCONNECT {:?}", self.client_label(conn), disconnect.reason);
        self.close_conn(conn, now, out);
    }

    /// Unbinds `conn` from its session: the will is published now or scheduled, the session
    /// ends or starts its expiry countdown. Idempotent.
    pub(super) fn detach(&mut self, conn: ConnId, now: Instant, out: &mut dyn Outbox) {
        let Some(state) = self.conn_mut(conn) else {
            return;
        };
        let phase = std::mem::replace(&mut state.phase, Phase::Closed);
        let Phase::Active(session_id) = phase else {
            return;
        };
        self.active_connections = self.active_connections.saturating_sub(1);

        let Some(session) = self.session_mut(session_id) else {
            return;
        };
        session.conn = None;
        let will_delay = session
            .will
            .as_ref()
            .and_then(|w| w.properties.will_delay_interval)
            .map(|secs| Duration::from_secs(u64::from(secs)))
            .unwrap_or(Duration::ZERO);
        let expiry = session.expiry;
        if session.will.is_some() && !will_delay.is_zero() && expiry != SessionExpiry::AtDisconnect
        {
            session.will_due = Some(now + will_delay);
        } else if let Some(will) = session.will.take() {
            self.publish_will(session_id, *will, now, out);
        }

        match expiry {
            SessionExpiry::AtDisconnect => return self.end_session(session_id, now, out),
            SessionExpiry::After(after) => {
                if let Some(session) = self.session_mut(session_id) {
                    session.expires_at = Some(now + after);
                }
                self.arm_session_timer(session_id);
            }
            SessionExpiry::Never => self.arm_session_timer(session_id),
        }
        self.save_offline(session_id);
    }

    /// Writes an offline session's deadlines and pending will, and frees its memory cache
    /// (the rows stay in the store until it returns).
    fn save_offline(&mut self, session_id: SessionId) {
        let Some(session) = self.session_mut(session_id) else { return };
        let Some(stored) = session.stored.as_mut() else { return };
        session.queue.clear();
        session.queue.shrink_to_fit();
        stored.cached_upto = stored.first_unsent;
        let stored_id = stored.id;
        let expiry = session.expiry.as_duration();
        let (expires_at, will_due) = (session.expires_at, session.will_due);
        let will = session.will.clone();
        self.store.session_offline(stored_id, expiry, expires_at, will.as_deref(), will_due);
    }

    /// Removes a session: its pending will is published (MQTT 5.0 §3.1.2.5: at the latest
    /// when the session ends), its subscriptions leave the tree, its queue is discarded.
    pub(super) fn end_session(&mut self, id: SessionId, now: Instant, out: &mut dyn Outbox) {
        let Some(session) = self.sessions.remove(id.0) else {
            return;
        };
        if let Some(conn) = session.conn {
            // Only reached if a caller ends a live session; its connection must not keep a
            // dangling session id.
            if let Some(state) = self.conn_mut(conn) {
                state.phase = Phase::Closed;
            }
            self.active_connections = self.active_connections.saturating_sub(1);
            out.close(conn);
        }
        for filter in session.subscriptions.keys() {
            self.tree_unsubscribe(filter, id);
        }
        self.index.remove_client(&self.sessions, &session.client_id, id);
        if let Some(stored) = session.stored.as_deref().copied() {
            self.move_stored_group_rows(stored.id, &session.subscriptions, now, out);
            self.store.delete_session(stored.id);
            self.index.remove_stored(&self.sessions, stored.id, id);
        }
        let dropped = session.queue.len() + session.inflight.len();
        if dropped > 0 {
            log::debug!(
                "session {:?} ended with {dropped} undelivered messages",
                session.client_id
            );
        }
        if session.stored.is_none() {
            // A clean member's unacknowledged group messages go to another member (MQTT 5.0
            // §4.8.2); a persistent member's are its store rows (`move_stored_group_rows`).
            let held = session.inflight.into_iter().filter_map(|m| match m.state {
                OutboundState::AwaitPuback(d) | OutboundState::AwaitPubrec(d) => Some(d),
                OutboundState::AwaitPubcomp => None,
            });
            for delivery in held.chain(session.queue) {
                if let Some(share) = delivery.share {
                    self.reroute_shared(share, delivery, now, out);
                }
            }
        }
        if let Some(will) = session.will {
            if !self.will_allowed(&session.client_id, session.identity.as_ref(), &will.topic) {
                return;
            }
            // The slot is free already; the will is routed as an ordinary message.
            self.publish_will_message(None, *will, now, out);
        }
    }

    pub(super) fn publish_will(
        &mut self,
        from: SessionId,
        will: Will,
        now: Instant,
        out: &mut dyn Outbox,
    ) {
        let Some(session) = self.session(from) else { return };
        if !self.will_allowed(&session.client_id, session.identity.as_ref(), &will.topic) {
            return;
        }
        self.publish_will_message(Some(from), will, now, out);
    }

    fn publish_will_message(
        &mut self,
        from: Option<SessionId>,
        will: Will,
        now: Instant,
        out: &mut dyn Outbox,
    ) {
        log::debug!("publishing will on {:?}", will.topic);
        self.stats.wills_published += 1;
        let p = will.properties;
        let message = Message {
            topic: will.topic,
            payload: will.payload,
            qos: will.qos,
            retain: will.retain,
            properties: Message::boxed(PublishProperties {
                payload_format_indicator: p.payload_format_indicator,
                message_expiry_interval: None,
                topic_alias: None,
                response_topic: p.response_topic,
                correlation_data: p.correlation_data,
                user_properties: p.user_properties,
                subscription_identifiers: Vec::new(),
                content_type: p.content_type,
            }),
            expires_at: p
                .message_expiry_interval
                .map(|secs| now + Duration::from_secs(u64::from(secs))),
        };
        self.route(Rc::new(message), from, now, out);
    }
}

/// Gives a hash map's table back once it is under a quarter full (a storm of clients has
/// left), keeping room for twice what it holds.
pub(super) fn shrink_map<K: std::hash::Hash + Eq, V>(map: &mut std::collections::HashMap<K, V>) {
    if map.capacity() > 64 && map.len() < map.capacity() / 4 {
        map.shrink_to(map.len() * 2);
    }
}
