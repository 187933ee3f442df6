//! Inbound PUBLISH (topic aliases, QoS 1/2 receiver side) and routing: matching subscriptions,
//! one delivery per session at the highest granted QoS, the retained store, and handing
//! deliveries to sessions (sent now, queued behind the inflight window, or dropped at a limit).

use std::rc::Rc;
use std::time::Instant;

use super::message::{Delivery, Message};
use super::retain::RetainOutcome;
use super::session::{Inflight, OutboundState, SessionId};
use super::topic_tree::SubscriberEntry;
use super::{Broker, ConnId, Outbox};
use crate::codec::{encoded_len, Packet, PubAck, Publish, QoS, ReasonCode};

impl Broker {
    pub(super) fn handle_publish(
        &mut self,
        conn: ConnId,
        mut publish: Publish,
        now: Instant,
        out: &mut dyn Outbox,
    ) {
        let max_topic_alias = self.limits.max_topic_alias;
        let Some(state) = self.conn_mut(conn) else {
            return;
        };
        let Some(session_id) = state.session() else {
            return;
        };

        // MQTT 5.0 §3.3.2.3.4: resolve or record the topic alias.
        if let Some(alias) = publish.properties.topic_alias.take() {
            if alias == 0 || alias > max_topic_alias {
                let what = format!("topic alias {alias} above maximum {max_topic_alias}");
                return self.protocol_error(conn, ReasonCode::TopicAliasInvalid, &what, now, out);
            }
            let slot = usize::from(alias - 1);
            if state.topic_aliases.len() < usize::from(max_topic_alias) {
                state
                    .topic_aliases
                    .resize(usize::from(max_topic_alias), None);
            }
            if publish.topic.is_empty() {
                match &state.topic_aliases[slot] {
                    Some(topic) => publish.topic = topic.clone(),
                    None => {
                        let what = format!("unknown topic alias {alias}");
                        return self.protocol_error(
                            conn,
                            ReasonCode::ProtocolError,
                            &what,
                            now,
                            out,
                        );
                    }
                }
            } else {
                state.topic_aliases[slot] = Some(publish.topic.clone());
            }
        } else if publish.topic.is_empty() {
            let what = "empty topic without alias";
            return self.protocol_error(conn, ReasonCode::TopicNameInvalid, what, now, out);
        }

        if publish.qos > self.limits.max_qos {
            let what = format!("PUBLISH QoS {} above maximum", publish.qos.bits());
            return self.protocol_error(conn, ReasonCode::QoSNotSupported, &what, now, out);
        }
        if publish.retain && !self.limits.retain_available {
            let what = "retained PUBLISH while retain is unavailable";
            return self.protocol_error(conn, ReasonCode::RetainNotSupported, what, now, out);
        }
        self.stats.messages_received += 1;

        match (publish.qos, publish.packet_id) {
            (QoS::AtMostOnce, _) => self.route(
                Rc::new(Message::from_publish(publish, now)),
                Some(session_id),
                now,
                out,
            ),
            (QoS::AtLeastOnce, Some(packet_id)) => {
                self.route(
                    Rc::new(Message::from_publish(publish, now)),
                    Some(session_id),
                    now,
                    out,
                );
                self.pending_acks
                    .push((conn, Packet::Puback(PubAck::new(packet_id))));
            }
            (QoS::ExactlyOnce, Some(packet_id)) => {
                let max_inbound = usize::from(self.limits.max_inflight);
                let Some(session) = self.session_mut(session_id) else {
                    return;
                };
                // MQTT-4.3.3-10 area: a repeated packet id before PUBREL is the same message.
                if !session.inbound_qos2.contains(&packet_id.get()) {
                    if session.inbound_qos2.len() >= max_inbound && session.version.is_v5() {
                        let what = "more unacknowledged QoS 2 messages than Receive Maximum";
                        let reason = ReasonCode::ReceiveMaximumExceeded;
                        return self.protocol_error(conn, reason, what, now, out);
                    }
                    session.inbound_qos2.insert(packet_id.get());
                    let message = Rc::new(Message::from_publish(publish, now));
                    self.route(message, Some(session_id), now, out);
                }
                self.pending_acks
                    .push((conn, Packet::Pubrec(PubAck::new(packet_id))));
            }
            // The codec guarantees a packet id whenever QoS > 0.
            (QoS::AtLeastOnce | QoS::ExactlyOnce, None) => {
                self.protocol_error(conn, ReasonCode::MalformedPacket, "no packet id", now, out)
            }
        }
    }

    /// Delivers `message` to every session with a matching subscription, and applies RETAIN.
    pub(super) fn route(
        &mut self,
        message: Rc<Message>,
        publisher: Option<SessionId>,
        now: Instant,
        out: &mut dyn Outbox,
    ) {
        if message.retain {
            match self.retained.apply(&message) {
                RetainOutcome::OverLimit => log::warn!(
                    "retained message on {:?} not stored: max_retained_messages or \
                     max_retained_bytes reached",
                    message.topic
                ),
                RetainOutcome::Stored
                | RetainOutcome::Replaced
                | RetainOutcome::Deleted
                | RetainOutcome::NothingToDelete => {}
            }
        }
        let mut matches = std::mem::take(&mut self.match_scratch);
        matches.clear();
        self.tree.matches(&message.topic, &mut matches);
        // Several matching subscriptions of one session give one delivery at the highest
        // granted QoS with every subscription identifier (MQTT-3.3.4-2, MQTT 5.0 §3.3.4).
        matches.sort_unstable_by_key(|e| e.session);
        for group in matches.chunk_by(|a, b| a.session == b.session) {
            if let Some(delivery) = aggregate(group, &message, publisher) {
                self.deliver(group[0].session, delivery, now, out);
            }
        }
        self.match_scratch = matches;
    }

    /// Hands one delivery to a session: sent now if online with room in the window, queued
    /// otherwise, dropped (counted) at a limit.
    pub(super) fn deliver(
        &mut self,
        session_id: SessionId,
        delivery: Delivery,
        now: Instant,
        out: &mut dyn Outbox,
    ) {
        let tx_limit = self.limits.tx_buffer_limit;
        let queue_limit = self.limits.max_queued_messages;
        let queue_qos0 = self.limits.queue_qos0;
        let window = self.window(session_id);
        let Some(session) = self.session_mut(session_id) else {
            return;
        };
        match session.conn {
            Some(conn) if delivery.qos == QoS::AtMostOnce => {
                if out.backlog(conn) >= tx_limit {
                    self.stats.messages_dropped += 1;
                    log::debug!("{conn:?}: output buffer full; QoS 0 message dropped");
                    return;
                }
                self.send_publish(conn, &delivery, None, false, now, out);
            }
            Some(_) if session.queue.is_empty() && session.inflight.len() < window => {
                self.send_inflight(session_id, delivery, now, out);
            }
            None if delivery.qos == QoS::AtMostOnce && !queue_qos0 => {}
            Some(_) | None => {
                if session.queue.len() >= queue_limit {
                    session.dropped += 1;
                    log::warn!(
                        "client {:?}: queue full ({queue_limit}); message on {:?} dropped",
                        session.client_id,
                        delivery.message.topic
                    );
                    self.stats.messages_dropped += 1;
                    return;
                }
                session.queue.push_back(delivery);
            }
        }
    }

    /// Moves queued deliveries into the inflight window while there is room.
    pub(super) fn pump(&mut self, session_id: SessionId, now: Instant, out: &mut dyn Outbox) {
        let window = self.window(session_id);
        loop {
            let Some(session) = self.session_mut(session_id) else {
                return;
            };
            let Some(conn) = session.conn else { return };
            if session.inflight.len() >= window {
                return;
            }
            let Some(delivery) = session.queue.pop_front() else {
                return;
            };
            if delivery.message.is_expired(now) {
                self.stats.messages_expired += 1;
                continue;
            }
            if delivery.qos == QoS::AtMostOnce {
                self.send_publish(conn, &delivery, None, false, now, out);
            } else {
                self.send_inflight(session_id, delivery, now, out);
            }
        }
    }

    /// Assigns a packet id, records the delivery as inflight, and sends it.
    fn send_inflight(
        &mut self,
        session_id: SessionId,
        delivery: Delivery,
        now: Instant,
        out: &mut dyn Outbox,
    ) {
        let Some(session) = self.session_mut(session_id) else {
            return;
        };
        let Some(conn) = session.conn else { return };
        let packet_id = session.allocate_packet_id();
        let state = match delivery.qos {
            QoS::ExactlyOnce => OutboundState::AwaitPubrec,
            QoS::AtLeastOnce | QoS::AtMostOnce => OutboundState::AwaitPuback,
        };
        if self.send_publish(conn, &delivery, Some(packet_id), false, now, out) {
            if let Some(session) = self.session_mut(session_id) {
                session.inflight.push_back(Inflight {
                    packet_id,
                    state,
                    delivery,
                    sent_at: now,
                });
            }
        }
    }

    /// Encodes and queues one PUBLISH. Returns false if it was discarded because it exceeds
    /// the client's Maximum Packet Size (MQTT-3.1.2-25: as if delivered).
    pub(super) fn send_publish(
        &mut self,
        conn: ConnId,
        delivery: &Delivery,
        packet_id: Option<crate::codec::PacketId>,
        dup: bool,
        now: Instant,
        out: &mut dyn Outbox,
    ) -> bool {
        let Some(state) = self.conn(conn) else {
            return false;
        };
        let Some(version) = state.version else {
            return false;
        };
        let packet = Packet::Publish(delivery.to_publish(packet_id, dup, now));
        if state.client_max_packet_size != u32::MAX
            && encoded_len(&packet, version) > state.client_max_packet_size as usize
        {
            log::debug!("{conn:?}: PUBLISH exceeds the client's maximum packet size; discarded");
            self.stats.messages_dropped += 1;
            return false;
        }
        self.stats.messages_sent += 1;
        out.send(conn, version, &packet);
        true
    }

    /// The outbound window of a session: our `max_inflight`, narrowed by the client's
    /// Receive Maximum (MQTT-3.3.4-7).
    fn window(&self, session_id: SessionId) -> usize {
        let receive_maximum = self
            .session(session_id)
            .and_then(|s| s.conn)
            .and_then(|c| self.conn(c))
            .map_or(u16::MAX, |c| c.client_receive_maximum);
        usize::from(self.limits.max_inflight.min(receive_maximum))
    }
}

/// Folds one session's matching subscriptions into its delivery, or `None` if every match is
/// excluded by No Local (MQTT-3.8.3-3).
fn aggregate(
    group: &[SubscriberEntry],
    message: &Rc<Message>,
    publisher: Option<SessionId>,
) -> Option<Delivery> {
    let mut granted: Option<QoS> = None;
    let mut retain_as_published = false;
    let mut subscription_ids = Vec::new();
    for entry in group {
        if entry.options.no_local && publisher == Some(entry.session) {
            continue;
        }
        granted = Some(granted.map_or(entry.options.qos, |q| q.max(entry.options.qos)));
        retain_as_published |= entry.options.retain_as_published;
        if let Some(id) = entry.subscription_id {
            subscription_ids.push(id);
        }
    }
    let granted = granted?;
    Some(Delivery {
        message: message.clone(),
        qos: message.qos.min(granted),
        // MQTT-3.3.1-9 / MQTT 5.0 §3.3.1.3: live forwards clear RETAIN unless Retain As
        // Published.
        retain: retain_as_published && message.retain,
        subscription_ids,
    })
}
