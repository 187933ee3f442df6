//! The acknowledgement side of QoS 1 and 2 (MQTT 4.3.2, 4.3.3): PUBACK, PUBREC, PUBREL,
//! PUBCOMP from clients, and re-sending unacknowledged messages when a session resumes
//! (MQTT-4.4.0-1). Store-backed sessions delete a row when its exchange completes.

use std::time::Instant;

use super::session::{OutboundState, SessionId};
use super::{Broker, ConnId, Outbox};
use crate::codec::{Packet, PubAck, ReasonCode};

impl Broker {
    pub(super) fn handle_puback(
        &mut self,
        conn: ConnId,
        ack: PubAck,
        now: Instant,
        out: &mut dyn Outbox,
    ) {
        self.complete(conn, ack, "PUBACK", now, out);
    }

    pub(super) fn handle_pubcomp(
        &mut self,
        conn: ConnId,
        ack: PubAck,
        now: Instant,
        out: &mut dyn Outbox,
    ) {
        self.complete(conn, ack, "PUBCOMP", now, out);
    }

    pub(super) fn handle_pubrec(
        &mut self,
        conn: ConnId,
        ack: PubAck,
        now: Instant,
        out: &mut dyn Outbox,
    ) {
        let Some(session_id) = self.conn(conn).and_then(|c| c.session()) else { return };
        let Some(session) = self.session_mut(session_id) else { return };
        let position = session
            .inflight_position(ack.packet_id)
            .filter(|&i| matches!(session.inflight[i].state, OutboundState::AwaitPubrec(_)));
        let Some(position) = position else {
            // MQTT 5.0 §4.3.3: answer an unknown PUBREC with PUBREL "not found".
            log::debug!("{conn:?}: PUBREC for unknown packet id {}", ack.packet_id);
            let pubrel = PubAck::with_reason(ack.packet_id, ReasonCode::PacketIdentifierNotFound);
            return self.send(out, conn, &Packet::Pubrel(pubrel));
        };
        let stored = session.stored;
        if ack.reason.is_error() {
            // MQTT 5.0 §4.3.3: a failed PUBREC ends the exchange; the slot frees up.
            let seq = session.inflight.remove(position).and_then(|m| m.seq);
            self.forget_row(session_id, seq);
            return self.pump(session_id, now, out);
        }
        let entry = &mut session.inflight[position];
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
        if let (true, Some(stored)) = (known, session.stored) {
            self.store.remove_inbound_qos2(stored.id, ack.packet_id.get());
        }
        let reason = if known { ReasonCode::Success } else { ReasonCode::PacketIdentifierNotFound };
        // The PUBCOMP follows the PUBREC, which may still wait for the commit; keep the order.
        let pubcomp = Packet::Pubcomp(PubAck::with_reason(ack.packet_id, reason));
        self.queue_ack(conn, pubcomp, false);
    }

    /// PUBACK / PUBCOMP: the message awaiting `which` with that id is done.
    fn complete(
        &mut self,
        conn: ConnId,
        ack: PubAck,
        which: &str,
        now: Instant,
        out: &mut dyn Outbox,
    ) {
        let Some(session_id) = self.conn(conn).and_then(|c| c.session()) else { return };
        let Some(session) = self.session_mut(session_id) else { return };
        let expected = |state: &OutboundState| match state {
            OutboundState::AwaitPuback(_) => which == "PUBACK",
            OutboundState::AwaitPubcomp => which == "PUBCOMP",
            OutboundState::AwaitPubrec(_) => false,
        };
        match session.inflight_position(ack.packet_id) {
            Some(position) if expected(&session.inflight[position].state) => {
                let seq = session.inflight.remove(position).and_then(|m| m.seq);
                self.forget_row(session_id, seq);
                self.pump(session_id, now, out);
            }
            _ => {
                // Late or duplicate ack (e.g. after a resend): harmless, nothing to release.
                log::debug!("{conn:?}: {which} for unknown packet id {}", ack.packet_id);
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

    /// Re-sends the inflight messages at the positions `select` accepts.
    pub(super) fn resend_inflight_where(
        &mut self,
        session_id: SessionId,
        select: impl Fn(usize) -> bool,
        now: Instant,
        out: &mut dyn Outbox,
    ) {
        let Some(session) = self.session_mut(session_id) else { return };
        let Some(conn) = session.conn else { return };
        let pending: Vec<_> = session
            .inflight
            .iter_mut()
            .enumerate()
            .filter(|(i, _)| select(*i))
            .map(|(_, m)| {
                m.sent_at = now;
                (m.packet_id, m.state.clone())
            })
            .collect();
        for (packet_id, state) in pending {
            match state {
                OutboundState::AwaitPuback(delivery) | OutboundState::AwaitPubrec(delivery) => {
                    self.send_publish(conn, &delivery, Some(packet_id), true, now, out);
                }
                OutboundState::AwaitPubcomp => {
                    self.send(out, conn, &Packet::Pubrel(PubAck::new(packet_id)));
                }
            }
        }
    }
}
