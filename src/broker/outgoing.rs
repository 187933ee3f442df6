//! The one gate between the broker and a client's socket: every packet the broker sends to
//! a connected client passes [`Broker::transmit`], which applies the client's MQTT 5.0
//! Maximum Packet Size (MQTT-3.1.2-24) and decides what happens to a packet that does not fit,
//! and its Request Problem Information (MQTT-3.1.2-29).
//! Owns no state; writes nothing but the [`Outbox`].

use std::time::Instant;

use super::{Broker, ConnId, Outbox, Phase};
use crate::codec::{encoded_len, Disconnect, Packet, ProtocolVersion, ReasonCode};

/// What [`Broker::transmit`] did with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Transmitted {
    /// Queued for the client (perhaps without its Reason String and User Properties).
    Sent,
    /// Not sent: larger than the client's Maximum Packet Size.
    Withheld,
}

impl Broker {
    /// The one gate every packet to a client passes: the client's Maximum Packet Size
    /// (MQTT-3.1.2-24) is checked against the whole packet, fixed header included. An
    /// oversized packet is sent without its Reason String and User Properties if that makes it
    /// fit (the spec lets a sender drop them for this reason; see
    /// [`Packet::without_diagnostics`]). If it still does not fit it is not sent, and:
    /// * PUBLISH: discarded as if delivered (MQTT-3.1.2-25); the caller counts it.
    /// * DISCONNECT: left out; the connection closes anyway, and a server may close without
    ///   one (MQTT 5.0 §4.13.2).
    /// * Every other packet (CONNACK, SUBACK, UNSUBACK, PUBACK, PUBREC, PUBREL, PUBCOMP,
    ///   PINGRESP) is an answer the client waits for: leaving it out would stall the client
    ///   for ever (a QoS exchange that never completes and holds its packet id, a subscribe
    ///   that never returns, a CONNECT with no result) with nothing to say why. The connection
    ///   is closed instead, after a DISCONNECT 0x95 if even that fits, at once: from here on
    ///   the broker takes no more input from it and sends it nothing (`close_conn`).
    pub(super) fn transmit(
        &mut self,
        out: &mut dyn Outbox,
        conn: ConnId,
        version: ProtocolVersion,
        packet: &Packet,
        now: Instant,
    ) -> Transmitted {
        let Some(state) = self.conn(conn) else { return Transmitted::Withheld };
        if state.phase == Phase::Closed {
            // Closed by the broker (perhaps just now, for an oversized packet): nothing more.
            return Transmitted::Withheld;
        }
        // MQTT 5.0 §3.1.2.11.7: a client that set Request Problem Information to 0 gets no
        // Reason String or User Property except on PUBLISH, CONNACK and DISCONNECT
        // (MQTT-3.1.2-29). Acknowledgements are the packets that may carry them.
        let quiet;
        let packet = match packet {
            Packet::Puback(_)
            | Packet::Pubrec(_)
            | Packet::Pubrel(_)
            | Packet::Pubcomp(_)
            | Packet::Suback(_)
            | Packet::Unsuback(_)
            | Packet::Auth(_)
                if !state.problem_information =>
            {
                match packet.without_diagnostics() {
                    Some(bare) => {
                        quiet = bare;
                        &quiet
                    }
                    None => packet,
                }
            }
            _ => packet,
        };
        let limit = state.client_max_packet_size;
        let fits = |p: &Packet| limit == u32::MAX || encoded_len(p, version) <= limit as usize;
        if fits(packet) {
            out.send(conn, version, packet);
            self.stats.packets_sent += 1;
            return Transmitted::Sent;
        }
        if let Some(bare) = packet.without_diagnostics().filter(|p| fits(p)) {
            log::debug!(
                "{conn:?}: {} sent without Reason String / User Properties (client maximum \
                 packet size {limit})",
                packet.name()
            );
            out.send(conn, version, &bare);
            self.stats.packets_sent += 1;
            return Transmitted::Sent;
        }
        let what = packet.name();
        match packet {
            Packet::Publish(_) => {
                log::debug!(
                    "{conn:?}: PUBLISH exceeds the client's maximum packet size; discarded"
                );
            }
            Packet::Disconnect(_) => {
                log::debug!("{conn:?}: DISCONNECT exceeds the client's maximum packet size; closing without it");
            }
            Packet::Connack(_)
            | Packet::Puback(_)
            | Packet::Pubrec(_)
            | Packet::Pubrel(_)
            | Packet::Pubcomp(_)
            | Packet::Suback(_)
            | Packet::Unsuback(_)
            | Packet::Pingresp
            | Packet::Auth(_)
            | Packet::Connect(_)
            | Packet::Subscribe(_)
            | Packet::Unsubscribe(_)
            | Packet::Pingreq => {
                log::info!(
                    "{}: {what} exceeds the client's maximum packet size ({limit}); closing",
                    self.client_label(conn)
                );
                if version == ProtocolVersion::V5 && !matches!(packet, Packet::Connack(_)) {
                    let disconnect = Disconnect {
                        reason: ReasonCode::PacketTooLarge,
                        properties: Default::default(),
                    };
                    self.transmit(out, conn, version, &Packet::Disconnect(disconnect), now);
                }
                self.close_conn(conn, now, out);
            }
        }
        Transmitted::Withheld
    }
}
