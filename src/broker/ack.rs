//! The acknowledgement side of QoS 1 and 2 (MQTT 4.3.2, 4.3.3): PUBACK, PUBREC, PUBREL,
//! PUBCOMP from clients, and re-sending unacknowledged messages when a session resumes
//! (MQTT-4.4.0-1). Store-backed sessions delete a row when its exchange completes.

use std::time::Instant;

use super::session::{OutboundState, SessionId};
use super::{Broker, ConnId, Outbox};
use crate::codec::{Packet, PacketId, PubAck, ReasonCode};

/// What an acknowledgement from the client does to the inflight message with its packet id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AckMatch {
    /// No message with that id is in flight: a late or duplicate ack (e.g. after a resend or
    /// a restart).
    Unknown,
    /// The ack the message waits for, at this position of the window.
    Expected(usize),
    /// A PUBREC for a message already released: the client did not see our PUBREL.
    RepeatedPubrec,
    /// An ack of the wrong type for the message's state (PUBREC or PUBCOMP for QoS 1, PUBACK
    /// or PUBCOMP for a QoS 2 PUBLISH, PUBACK for a released one): a protocol violation
    /// (MQTT-4.8.0-1 area; MQTT 5.0 §4.13).
    WrongType,
}

/// Which acknowledgement arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AckKind {
    Puback,
    Pubrec,
    Pubcomp,
}

impl AckKind {
    fn name(self) -> &'static str {
        match self {
            AckKind::Puback => "PUBACK",
            AckKind::Pubrec => "PUBREC",
            AckKind::Pubcomp => "PUBCOMP",
        }
    }
}

impl Broker {
    pub(super) fn handle_puback(
        &mut self,
        conn: ConnId,
        ack: PubAck,
        now: Instant,
        out: &mut dyn Outbox,
    ) {
        self.complete(conn, ack, AckKind::Puback, now, out);
    }

    pub(super) fn handle_pubcomp(
        &mut self,
        conn: ConnId,
        ack: PubAck,
        now: Instant,
        out: &mut dyn Outbox,
    ) {
        self.complete(conn, ack, AckKind::Pubcomp, now, out);
    }

    /// How the ack `kind` for `packet_id` fits the session's outbound window.
    fn match_ack(&self, session_id: SessionId, packet_id: PacketId, kind: AckKind) -> AckMatch {
        let Some(session) = self.session(session_id) else { return AckMatch::Unknown };
        let Some(position) = session.inflight_position(packet_id) else {
            return AckMatch::Unknown;
        };
        let Some(entry) = session.inflight.get(position) else { return AckMatch::Unknown };
        match (&entry.state, kind) {
            (OutboundState::AwaitPuback(_), AckKind::Puback)
            | (OutboundState::AwaitPubrec(_), AckKind::Pubrec)
            | (OutboundState::AwaitPubcomp, AckKind::Pubcomp) => AckMatch::Expected(position),
            (OutboundState::AwaitPubcomp, AckKind::Pubrec) => AckMatch::RepeatedPubrec,
            (OutboundState::AwaitPuback(_), AckKind::Pubrec | AckKind::Pubcomp)
            | (OutboundState::AwaitPubrec(_), AckKind::Puback | AckKind::Pubcomp)
            | (OutboundState::AwaitPubcomp, AckKind::Puback) => AckMatch::WrongType,
        }
    }

    /// An ack of the wrong type for an inflight message: left alone the message would stay
    /// in flight until the client reconnects, so the connection goes (MQTT-4.8.0-1; 5.0
    /// clients are told 0x82 Protocol Error first, MQTT 5.0 §4.13.2).
    fn wrong_ack(
        &mut self,
        conn: ConnId,
        ack: &PubAck,
        kind: AckKind,
        now: Instant,
        out: &mut dyn Outbox,
    ) {
        let what = format!("{} for packet id {} in another QoS state", kind.name(), ack.packet_id);
        self.protocol_error(conn, ReasonCode::ProtocolError, &what, now, out);
    }

    pub(super) fn handle_pubrec(
        &mut self,
        conn: ConnId,
        ack: PubAck,
        now: Instant,
        out: &mut dyn Outbox,
    ) {
        let Some(session_id) = self.conn(conn).and_then(|c| c.session()) else { return };
        let position = match self.match_ack(session_id, ack.packet_id, AckKind::Pubrec) {
            AckMatch::Expected(position) => position,
            AckMatch::Unknown => {
                // MQTT 5.0 §4.3.3: answer an unknown PUBREC with PUBREL "not found".
                log::debug!("{conn:?}: PUBREC for unknown packet id {}", ack.packet_id);
                let pubrel =
                    PubAck::with_reason(ack.packet_id, ReasonCode::PacketIdentifierNotFound);
                return self.send(out, conn, &Packet::Pubrel(pubrel), now);
            }
            AckMatch::RepeatedPubrec => {
                // Our PUBREL was lost or is on its way: every PUBREC is answered with PUBREL
                // (MQTT 4.3.3), so send it again, behind the first one, which may still wait
                // for the commit. Not 0x92: the id is known and the exchange goes on.
                log::debug!("{conn:?}: repeated PUBREC for packet id {}", ack.packet_id);
                let pubrel = Packet::Pubrel(PubAck::new(ack.packet_id));
                return self.queue_ack(conn, pubrel, false);
            }
            AckMatch::WrongType => return self.wrong_ack(conn, &ack, AckKind::Pubrec, now, out),
        };
        let Some(session) = self.session_mut(session_id) else { return };
        let stored = session.stored.as_deref().copied();
        if ack.reason.is_error() {
            // MQTT 5.0 §4.3.3: a failed PUBREC ends the exchange; the slot frees up.
            let seq = session.remove_inflight(position).and_then(|m| m.seq);
            self.forget_row(session_id, seq);
            return self.pump(session_id, now, out);
        }
        let Some(entry) = session.inflight.get_mut(position) else { return };
        entry.state = OutboundState::AwaitPubcomp;
        entry.sent_at = now;
        if let (Some(stored), Some(seq)) = (stored, entry.seq) {
            self.store.mark_pubrel(stored.id, seq);
        }
        // After the commit that records it, like every answer to a client's packet.
        self.queue_ack(conn, Packet::Pubrel(PubAck::new(ack.packet_id)), false);
    }

    pub(super) fn handle_pubrel(&mut self, conn: ConnId, ack: PubAck) {
        let Some(session_id) = self.conn(conn).and_then(|c| c.session()) else { return };
        let Some(session) = self.session_mut(session_id) else { return };
        let known = session.inbound_qos2.remove(&ack.packet_id.get());
        if let (true, Some(stored)) = (known, session.stored.as_deref().copied()) {
            self.store.remove_inbound_qos2(stored.id, ack.packet_id.get());
        }
        if !known {
            // A PUBREL re-sent after a reconnect for an exchange already completed (or never
            // known): PUBCOMP 0x00, as Mosquitto does, rather than 0x92 "Packet Identifier not
            // found", which some clients answer by sending the PUBREL again, for ever.
            log::debug!("{conn:?}: PUBREL for unknown packet id {}", ack.packet_id);
        }
        // The PUBCOMP follows the PUBREC, which may still wait for the commit; keep the order.
        let pubcomp = Packet::Pubcomp(PubAck::new(ack.packet_id));
        self.queue_ack(conn, pubcomp, false);
    }

    /// PUBACK / PUBCOMP: the message awaiting `kind` with that id is done.
    fn complete(
        &mut self,
        conn: ConnId,
        ack: PubAck,
        kind: AckKind,
        now: Instant,
        out: &mut dyn Outbox,
    ) {
        let Some(session_id) = self.conn(conn).and_then(|c| c.session()) else { return };
        match self.match_ack(session_id, ack.packet_id, kind) {
            AckMatch::Expected(position) => {
                let Some(session) = self.session_mut(session_id) else { return };
                let seq = session.remove_inflight(position).and_then(|m| m.seq);
                self.forget_row(session_id, seq);
                self.pump(session_id, now, out);
            }
            AckMatch::Unknown => {
                // Late or duplicate ack (e.g. after a resend): harmless, nothing to release.
                log::debug!("{conn:?}: {} for unknown packet id {}", kind.name(), ack.packet_id);
            }
            AckMatch::RepeatedPubrec | AckMatch::WrongType => {
                self.wrong_ack(conn, &ack, kind, now, out)
            }
        }
    }

    /// Re-sends everything unacknowledged, in order, when a session resumes: PUBLISH with
    /// DUP=1 and the original packet id, or PUBREL (MQTT-4.4.0-1, MQTT-4.6.0-1).
    pub(super) fn resend_inflight(
        &mut self,
        session_id: SessionId,
        now: Instant,
        out: &mut dyn Outbox,
    ) {
        self.resend_inflight_where(session_id, |_| true, now, out);
    }

    /// Re-sends the inflight messages at the positions `select` accepts, oldest first, as
    /// many as the window allows: the others (a reconnect with a smaller Receive Maximum) are
    /// held and sent, with their packet ids, as acknowledgements free the window (`pump`).
    pub(super) fn resend_inflight_where(
        &mut self,
        session_id: SessionId,
        select: impl Fn(usize) -> bool,
        now: Instant,
        out: &mut dyn Outbox,
    ) {
        let window = self.window(session_id);
        let Some(session) = self.session_mut(session_id) else { return };
        let Some(conn) = session.conn else { return };
        let mut room = window;
        let mut pending = Vec::new();
        let mut held = false;
        for (i, m) in session.inflight.iter_mut().enumerate() {
            if !select(i) {
                // Outstanding at the client unless it is itself waiting to be re-sent.
                room = room.saturating_sub(usize::from(!m.held));
                continue;
            }
            m.held = room == 0;
            if m.held {
                held = true;
                continue;
            }
            room -= 1;
            m.sent_at = now;
            pending.push((m.packet_id, m.state.clone()));
        }
        session.maybe_held |= held;
        let mut freed = false;
        for (packet_id, state) in pending {
            freed |= !self.resend_one(session_id, conn, packet_id, state, now, out);
        }
        if freed {
            self.pump(session_id, now, out);
        }
    }

    /// Sends held inflight messages (see [`Broker::resend_inflight_where`]) while fewer than
    /// `window` are outstanding at the client.
    pub(super) fn release_held(
        &mut self,
        session_id: SessionId,
        window: usize,
        now: Instant,
        out: &mut dyn Outbox,
    ) {
        loop {
            let Some(session) = self.session_mut(session_id) else { return };
            let Some(conn) = session.conn else { return };
            // Every acknowledgement comes here: without held entries, no scan of the window.
            if !session.maybe_held {
                return;
            }
            let outstanding = session.inflight.iter().filter(|m| !m.held).count();
            if outstanding >= window {
                return;
            }
            let Some(m) = session.inflight.iter_mut().find(|m| m.held) else {
                session.maybe_held = false;
                return;
            };
            m.held = false;
            m.sent_at = now;
            let (packet_id, state) = (m.packet_id, m.state.clone());
            self.resend_one(session_id, conn, packet_id, state, now, out);
        }
    }

    /// Sends one inflight message again (PUBLISH with DUP, or PUBREL). Returns false if it was
    /// abandoned instead: expired while unacknowledged (MQTT-3.3.2-5), or now larger than the
    /// client's Maximum Packet Size; its slot is free then.
    fn resend_one(
        &mut self,
        session_id: SessionId,
        conn: ConnId,
        packet_id: PacketId,
        state: OutboundState,
        now: Instant,
        out: &mut dyn Outbox,
    ) -> bool {
        match state {
            OutboundState::AwaitPuback(delivery) | OutboundState::AwaitPubrec(delivery) => {
                if !self.send_publish(conn, &delivery, Some(packet_id), true, now, out) {
                    self.abandon_inflight(session_id, packet_id);
                    return false;
                }
            }
            OutboundState::AwaitPubcomp => {
                self.send(out, conn, &Packet::Pubrel(PubAck::new(packet_id)), now);
            }
        }
        true
    }

    /// Drops the inflight message `packet_id` of a session and its store row.
    fn abandon_inflight(&mut self, session_id: SessionId, packet_id: PacketId) {
        let Some(session) = self.session_mut(session_id) else { return };
        let Some(position) = session.inflight_position(packet_id) else { return };
        let seq = session.remove_inflight(position).and_then(|m| m.seq);
        self.forget_row(session_id, seq);
    }
}
