//! CONNECT: client identifier rules, keep-alive, takeover, Clean Start / session resumption,
//! capacity limits, and the CONNACK (MQTT 3.1.1 §3.1-3.2, MQTT 5.0 §3.1-3.2).

use std::rc::Rc;
use std::time::{Duration, Instant};

use super::alias::OutboundAliases;
use super::connection::{Phase, TopicAliases};
use super::logging::More;
use super::origin::Username;
use super::session::{Secs, Session, SessionExpiry, SessionId, StoredQueue};
use super::{Broker, ConnId, OutboundTopicAlias, Outbox};
use crate::codec::{
    topic, Connack, ConnackProperties, Connect, Disconnect, Packet, ProtocolVersion, QoS,
    ReasonCode,
};
use crate::store::{SessionRow, StoredSessionId};

impl Broker {
    pub(super) fn handle_connect(
        &mut self,
        conn: ConnId,
        connect: Connect,
        now: Instant,
        out: &mut dyn Outbox,
    ) {
        let version = connect.version();
        // Outbound topic aliases (`alias.rs`): at most what the client takes and what the
        // broker takes itself (`mqtt.max_topic_alias`), for this connection only.
        let alias_max = match (version, self.limits.outbound_topic_alias) {
            (ProtocolVersion::V5, OutboundTopicAlias::Lru) => {
                connect.properties.topic_alias_maximum.unwrap_or(0).min(self.limits.max_topic_alias)
            }
            (_, _) => 0,
        };
        let Some(state) = self.conn_mut(conn) else {
            return;
        };
        state.aliases = (alias_max > 0).then(|| {
            Box::new(TopicAliases {
                inbound: Box::default(),
                outbound: Some(OutboundAliases::new(alias_max)),
            })
        });
        if state.phase != Phase::AwaitConnect {
            // The codec turns a second CONNECT into a decode error; this is defence in depth.
            self.protocol_error(conn, ReasonCode::ProtocolError, "second CONNECT", now, out);
            return;
        }
        state.version = Some(version);
        // Before any answer, refusals included (MQTT-3.1.2-24).
        state.client_max_packet_size = connect.properties.maximum_packet_size.unwrap_or(u32::MAX);

        // The username: the certificate's CN under `use_identity_as_username` (a client
        // without a certificate is refused, as in Mosquitto), else the CONNECT's.
        match state.origin.username(&connect) {
            Username::Known(username) => state.username = username,
            Username::MissingIdentity => {
                let why = "use_identity_as_username and no client certificate";
                return self.refuse_because(conn, ReasonCode::NotAuthorized, why, now, out);
            }
        }

        if connect.properties.authentication_method.is_some() {
            // No enhanced authentication methods are offered (MQTT 5.0 §4.12).
            return self.refuse(conn, ReasonCode::BadAuthenticationMethod, now, out);
        }

        // Client identifier (MQTT-3.1.3-6, -7, -8; MQTT 5.0 §3.1.3.1).
        let mut assigned_client_id = None;
        let client_id: Rc<str> = if connect.client_id.is_empty() {
            let permitted = self.limits.allow_zero_length_clientid
                && match version {
                    ProtocolVersion::V31 => false,
                    ProtocolVersion::V311 => connect.clean_start,
                    ProtocolVersion::V5 => true,
                };
            if !permitted {
                return self.refuse(conn, ReasonCode::ClientIdentifierNotValid, now, out);
            }
            let id = self.assign_client_id();
            assigned_client_id = Some(id.to_string());
            id
        } else if connect.client_id.starts_with(super::BRIDGE_CLIENT_PREFIX) {
            // Bridges' sessions (bridge.rs): no client may take one over.
            log::info!("{conn:?}: client id {:?} is reserved for bridges", connect.client_id);
            return self.refuse(conn, ReasonCode::ClientIdentifierNotValid, now, out);
        } else {
            Rc::from(connect.client_id.as_str())
        };

        // Keep-alive: v5 clients are told the server's value; 3.1.1 clients that ask for more
        // than allowed are refused, as they cannot be told.
        let max_keepalive = self.limits.max_keepalive;
        let mut keep_alive = connect.keep_alive;
        let mut server_keep_alive = None;
        if max_keepalive > 0 && (keep_alive > max_keepalive || keep_alive == 0) {
            if version == ProtocolVersion::V5 {
                keep_alive = max_keepalive;
                server_keep_alive = Some(max_keepalive);
            } else if keep_alive > max_keepalive {
                let why = format!("keep-alive {keep_alive}s above max_keepalive");
                let reason = ReasonCode::ClientIdentifierNotValid;
                return self.refuse_because(conn, reason, &why, now, out);
            }
        }

        if let Some(will) = &connect.will {
            if will.qos > self.limits.max_qos {
                return self.refuse(conn, ReasonCode::QoSNotSupported, now, out);
                // MQTT-3.2.2-12
            }
            if will.retain && !self.limits.retain_available {
                return self.refuse(conn, ReasonCode::RetainNotSupported, now, out);
                // MQTT-3.2.2-13
            }
            let levels = topic::level_count(&will.topic);
            if levels > self.limits.max_topic_levels {
                // `mqtt.max_topic_levels`, checked now rather than when the will is published.
                // 5.0: CONNACK 0x90 "Topic Name invalid". 3.1.1 has no return code for it (0x03
                // "Server unavailable" would invite the same CONNECT again), so the connection
                // is closed without CONNACK, as for a malformed CONNECT and as Mosquitto does.
                let why = format!("will topic of {levels} levels above max_topic_levels");
                if version == ProtocolVersion::V5 {
                    return self.refuse_because(conn, ReasonCode::TopicNameInvalid, &why, now, out);
                }
                if let Some(more) = self.logs.connect_refused.allow(now) {
                    log::info!("{conn:?}: CONNECT refused: {why}; closing{}", More(more));
                }
                return self.close_conn(conn, now, out);
            }
        }

        // Before takeover: a client that may not log in must not end another's connection.
        if !self.authorize_connect(conn, &client_id, &connect, now, out) {
            return;
        }

        if self.active_connections >= self.limits.max_connections {
            let why = format!("max_connections ({}) reached", self.limits.max_connections);
            return self.refuse_because(conn, ReasonCode::ServerUnavailable, &why, now, out);
        }

        let expiry = match version {
            ProtocolVersion::V5 => SessionExpiry::from_v5_interval(
                connect.properties.session_expiry_interval.unwrap_or(0),
            )
            .capped(self.limits.max_session_expiry),
            ProtocolVersion::V31 | ProtocolVersion::V311 if connect.clean_start => {
                SessionExpiry::AtDisconnect
            }
            ProtocolVersion::V31 | ProtocolVersion::V311 => {
                match self.limits.persistent_session_expiry {
                    Some(limit) => SessionExpiry::After(Secs::from_duration(limit)),
                    None => SessionExpiry::Never,
                }
            }
        };

        // Takeover (MQTT-3.1.4-3): the existing connection of this client id goes first, so
        // its will and session follow the normal disconnect rules.
        let existing = self.index.client(&self.sessions, &client_id);
        if let Some(old_conn) = existing.and_then(|s| self.session(s)).and_then(|s| s.conn) {
            log::info!("client {client_id:?}: taken over by {conn:?}; closing {old_conn:?}");
            if self.conn(old_conn).and_then(|c| c.version) == Some(ProtocolVersion::V5) {
                let disconnect = Disconnect {
                    reason: ReasonCode::SessionTakenOver,
                    properties: Default::default(),
                };
                self.send(out, old_conn, &Packet::Disconnect(disconnect), now);
            }
            self.close_conn(old_conn, now, out);
        }
        // The old connection's detach may have ended the session (expiry at disconnect).
        let existing = self.index.client(&self.sessions, &client_id);

        let (session_id, session_present) = match existing {
            Some(id) if !connect.clean_start => (id, true),
            other => {
                if let Some(id) = other {
                    log::debug!("client {client_id:?}: clean start discards its session");
                    self.end_session(id, now, out);
                }
                match self.create_session(client_id.clone(), version, expiry) {
                    Some(id) => (id, false),
                    None => {
                        let why = format!(
                            "client {client_id:?}: max_sessions ({}) reached",
                            self.limits.max_sessions
                        );
                        let reason = ReasonCode::QuotaExceeded;
                        return self.refuse_because(conn, reason, &why, now, out);
                    }
                }
            }
        };

        // Persistent sessions live in the store (the CONNACK is sent before the commit: a
        // session that is lost with the pass is simply not present on the next connect).
        let persistent = expiry != SessionExpiry::AtDisconnect
            || self.session(session_id).is_some_and(|s| s.stored.is_some());
        if persistent {
            let row = SessionRow {
                client_id: &client_id,
                protocol: version,
                expiry: expiry.as_duration(),
                will: connect.will.as_ref(),
            };
            match self.store.save_session(&row) {
                Some(stored_id) => self.bind_store_id(session_id, stored_id),
                None => log::warn!("client {client_id:?}: session not saved; it is kept in memory"),
            }
        }

        // Bind the connection and the session; cancel the session's offline timers.
        let generation = self.next_generation();
        let Some(session) = self.session_mut(session_id) else {
            return;
        };
        session.conn = Some(conn);
        session.version = version;
        session.expiry = expiry;
        session.will = connect.will.map(Box::new);
        session.will_due = None; // MQTT-3.1.3-9 area: reconnecting cancels a delayed will.
        session.expires_at = None;
        session.timer_generation = generation;
        self.bind_identity(conn, session_id);

        let keep_alive_timeout = (keep_alive > 0).then(|| {
            Duration::from_secs_f64(f64::from(keep_alive) * self.limits.keepalive_multiplier)
        });
        // The connect timeout is over: its entry goes, the keep-alive entry replaces it.
        self.cancel_conn_timer(conn);
        let conn_generation = self.next_generation();
        let connect_timeout = self.limits.connect_timeout;
        let Some(state) = self.conn_mut(conn) else {
            return;
        };
        state.phase = Phase::Active(session_id);
        state.keep_alive = keep_alive_timeout;
        state.timer_generation = conn_generation;
        state.client_receive_maximum = connect.properties.receive_maximum.unwrap_or(u16::MAX);
        state.problem_information =
            connect.properties.request_problem_information.unwrap_or(1) == 1;
        if let Some(deadline) = state.deadline(connect_timeout) {
            self.arm_conn_timer(conn, deadline);
        }
        self.connection_activated();

        let (peer, username) = match self.conn(conn) {
            Some(c) => (c.origin.peer.to_string(), c.username.clone()),
            None => (String::new(), None),
        };
        log::debug!(
            "client {client_id:?} connected on {conn:?} from {peer}: {version:?}, \
             clean_start={}, keep_alive={keep_alive}s, session_present={session_present}, \
             expiry={expiry:?}, username={username:?}",
            connect.clean_start
        );

        let mut properties = ConnackProperties::default();
        if version == ProtocolVersion::V5 {
            properties = self.connack_properties();
            properties.assigned_client_identifier = assigned_client_id;
            properties.server_keep_alive = server_keep_alive;
            // MQTT 5.0 §3.1.2.11.6: sent only when asked for (MQTT-3.1.2-28 lets the server
            // send none even then), and only if `mqtt.response_information` is set.
            if connect.properties.request_response_information == Some(1) {
                properties.response_information =
                    self.limits.response_information.as_deref().map(str::to_string);
            }
            let requested = connect.properties.session_expiry_interval.unwrap_or(0);
            if expiry.as_v5_interval() != requested {
                properties.session_expiry_interval = Some(expiry.as_v5_interval());
            }
        }
        let connack = Connack { session_present, reason: ReasonCode::Success, properties };
        self.send(out, conn, &Packet::Connack(connack), now);

        if session_present {
            self.resend_inflight(session_id, now, out);
        }
        self.pump(session_id, now, out);
    }

    /// What every v5 CONNACK says about this server (MQTT 5.0 §3.2.2.3).
    fn connack_properties(&self) -> ConnackProperties {
        let limits = &self.limits;
        let flag = |available: bool| (!available).then_some(0u8);
        ConnackProperties {
            receive_maximum: (limits.max_inflight != u16::MAX).then_some(limits.max_inflight),
            maximum_qos: (limits.max_qos != QoS::ExactlyOnce).then_some(limits.max_qos.bits()),
            retain_available: flag(limits.retain_available),
            maximum_packet_size: Some(limits.max_packet_size),
            topic_alias_maximum: (limits.max_topic_alias > 0).then_some(limits.max_topic_alias),
            wildcard_subscription_available: flag(limits.wildcard_subscription_available),
            subscription_identifiers_available: flag(limits.subscription_identifiers_available),
            shared_subscription_available: flag(limits.shared_subscription_available),
            ..ConnackProperties::default()
        }
    }

    /// CONNACK with a failure code, then close (MQTT-3.2.2-5 / MQTT-3.2.2-7).
    fn refuse(&mut self, conn: ConnId, reason: ReasonCode, now: Instant, out: &mut dyn Outbox) {
        self.refuse_because(conn, reason, "", now, out);
    }

    /// [`Broker::refuse`] saying why, in one line (rate-limited: a client can repeat it).
    fn refuse_because(
        &mut self,
        conn: ConnId,
        reason: ReasonCode,
        why: &str,
        now: Instant,
        out: &mut dyn Outbox,
    ) {
        if let Some(more) = self.logs.connect_refused.allow(now) {
            let peer = self.peer_of(conn).map(|p| format!(" from {p}")).unwrap_or_default();
            let why = if why.is_empty() { String::new() } else { format!("{why}; ") };
            log::warn!("{conn:?}{peer}: CONNECT refused: {why}CONNACK {reason:?}{}", More(more));
        }
        self.send_refusal(conn, reason, now, out);
    }

    /// The refusing CONNACK and the close, without a log line (the caller writes its own).
    pub(super) fn send_refusal(
        &mut self,
        conn: ConnId,
        reason: ReasonCode,
        now: Instant,
        out: &mut dyn Outbox,
    ) {
        let connack = Connack { session_present: false, reason, properties: Default::default() };
        self.send(out, conn, &Packet::Connack(connack), now);
        self.close_conn(conn, now, out);
    }

    /// Records which store row holds a session (a new row after a failed batch gets a new id).
    pub(super) fn bind_store_id(&mut self, session_id: SessionId, stored_id: StoredSessionId) {
        let Some(session) = self.session_mut(session_id) else { return };
        let previous = match session.stored.as_mut() {
            Some(stored) => Some(std::mem::replace(&mut stored.id, stored_id)),
            None => {
                session.stored = Some(Box::new(StoredQueue::new(stored_id)));
                None
            }
        };
        if let Some(previous) = previous {
            self.index.remove_stored(&self.sessions, previous, session_id);
        }
        self.index.insert_stored(&self.sessions, session_id);
    }

    fn assign_client_id(&mut self) -> Rc<str> {
        loop {
            self.next_assigned_id += 1;
            let id: Rc<str> = Rc::from(format!("edgemq-auto-{:x}", self.next_assigned_id));
            if self.index.client(&self.sessions, &id).is_none() {
                return id;
            }
        }
    }

    pub(super) fn create_session(
        &mut self,
        client_id: Rc<str>,
        version: ProtocolVersion,
        expiry: SessionExpiry,
    ) -> Option<SessionId> {
        let session = Session::new(client_id, version, expiry);
        let id = SessionId(self.sessions.insert(session)?);
        self.index.insert_client(&self.sessions, id);
        Some(id)
    }
}
