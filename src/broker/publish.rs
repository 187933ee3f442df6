//! Inbound PUBLISH (topic aliases, QoS 1/2 receiver side) and routing: matching subscriptions,
//! one delivery per session at the highest granted QoS, the retained store, and handing
//! deliveries to sessions (sent now, queued behind the inflight window, or dropped at a limit).

use std::rc::Rc;
use std::time::Instant;

use super::backpressure::{OUTPUT_HARD_FACTOR, QUEUE_HARD_FACTOR};
use super::message::{Delivery, Message};
use super::retain::RetainOutcome;
use super::session::{packet_id_for_seq, Inflight, OutboundState, SessionId};
use super::topic_tree::SubscriberEntry;
use super::{Broker, ConnId, Outbox};
use crate::codec::{encoded_len, Packet, ProtocolVersion, PubAck, Publish, QoS, ReasonCode};
use crate::store::{Enqueued, StoredSessionId};

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
                state.topic_aliases.resize(usize::from(max_topic_alias), None);
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

        let v5 = self.conn(conn).and_then(|c| c.version) == Some(ProtocolVersion::V5);
        self.route_outcome = RouteOutcome::default();
        self.current_publisher = Some(conn);
        self.publish_from(conn, session_id, publish, v5, now, out);
        self.current_publisher = None;
    }

    fn publish_from(
        &mut self,
        conn: ConnId,
        session_id: SessionId,
        publish: Publish,
        v5: bool,
        now: Instant,
        out: &mut dyn Outbox,
    ) {
        match (publish.qos, publish.packet_id) {
            (QoS::AtMostOnce, _) => {
                self.route(Rc::new(Message::from_publish(publish, now)), Some(session_id), now, out)
            }
            (QoS::AtLeastOnce, Some(packet_id)) => {
                let message = Rc::new(Message::from_publish(publish, now));
                self.route(message, Some(session_id), now, out);
                let outcome = std::mem::take(&mut self.route_outcome);
                let reason = ack_reason(&outcome, v5);
                let ack = Packet::Puback(PubAck::with_reason(packet_id, reason));
                self.queue_ack(conn, ack, outcome.stored);
            }
            (QoS::ExactlyOnce, Some(packet_id)) => {
                let max_inbound = usize::from(self.limits.max_inflight);
                let Some(session) = self.session_mut(session_id) else { return };
                // MQTT-4.3.3-10 area: a repeated packet id before PUBREL is the same message.
                let mut needs_store = false;
                let mut reason = ReasonCode::Success;
                if !session.inbound_qos2.contains(&packet_id.get()) {
                    if session.inbound_qos2.len() >= max_inbound && v5 {
                        let what = "more unacknowledged QoS 2 messages than Receive Maximum";
                        let reason = ReasonCode::ReceiveMaximumExceeded;
                        return self.protocol_error(conn, reason, what, now, out);
                    }
                    let message = Rc::new(Message::from_publish(publish, now));
                    self.route(message, Some(session_id), now, out);
                    let outcome = std::mem::take(&mut self.route_outcome);
                    reason = ack_reason(&outcome, v5);
                    needs_store = outcome.stored;
                    // A PUBREC with an error code ends the exchange (MQTT 5.0 §4.3.3).
                    if !reason.is_error() {
                        let Some(session) = self.session_mut(session_id) else { return };
                        session.inbound_qos2.insert(packet_id.get());
                        if let Some(stored) = session.stored {
                            self.store.add_inbound_qos2(stored.id, packet_id.get());
                            needs_store = true;
                        }
                    }
                }
                let ack = Packet::Pubrec(PubAck::with_reason(packet_id, reason));
                self.queue_ack(conn, ack, needs_store);
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
                RetainOutcome::Stored | RetainOutcome::Replaced => {
                    self.store.save_retained(&message.to_retained_publish(), message.expires_at);
                    self.route_outcome.stored = true;
                }
                RetainOutcome::Deleted => {
                    self.store.delete_retained(&message.topic);
                    self.route_outcome.stored = true;
                }
                RetainOutcome::NothingToDelete => {}
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
    /// otherwise (in the store for persistent sessions), dropped (counted) at a limit.
    pub(super) fn deliver(
        &mut self,
        session_id: SessionId,
        delivery: Delivery,
        now: Instant,
        out: &mut dyn Outbox,
    ) {
        let tx_limit = self.limits.tx_buffer_limit;
        let queue_qos0 = self.limits.queue_qos0;
        let Some(session) = self.session(session_id) else { return };
        let online = session.conn;
        if delivery.qos == QoS::AtMostOnce {
            match online {
                Some(conn) => {
                    // QoS 0 bypasses the queue. Over the output limit its publisher is paused;
                    // over the hard cap (or with no publisher to pause) it is dropped.
                    let backlog = out.backlog(conn);
                    let keep = backlog < tx_limit
                        || (backlog < tx_limit * OUTPUT_HARD_FACTOR && self.congest(session_id));
                    if keep {
                        self.send_publish(conn, &delivery, None, false, now, out);
                    } else {
                        self.stats.messages_dropped += 1;
                        log::debug!("{conn:?}: output buffer full; QoS 0 message dropped");
                    }
                    return;
                }
                None if !queue_qos0 => return,
                None => {}
            }
        }
        if session.stored.is_some() {
            self.enqueue_stored(session_id, delivery, now, out);
        } else {
            self.enqueue_memory(session_id, delivery, now, out);
        }
    }

    fn enqueue_memory(
        &mut self,
        session_id: SessionId,
        delivery: Delivery,
        now: Instant,
        out: &mut dyn Outbox,
    ) {
        let queue_limit = self.limits.max_queued_messages;
        let window = self.window(session_id);
        let Some(session) = self.session_mut(session_id) else { return };
        if session.conn.is_some() && session.queue.is_empty() && session.inflight.len() < window {
            self.send_inflight(session_id, delivery, now, out);
            return;
        }
        let queued = session.queue.len();
        let online = session.conn.is_some();
        if queued >= queue_limit
            && !(online && queued < queue_limit * QUEUE_HARD_FACTOR && self.congest(session_id))
        {
            let why = "queue full (mqtt.max_queued_messages)";
            return self.count_drop(session_id, &delivery.message.topic, why, now);
        }
        if let Some(session) = self.session_mut(session_id) {
            session.queue.push_back(delivery);
        }
    }

    /// Appends a delivery to a persistent session's ring rows; keeps it in the memory cache
    /// too when the cache holds the whole queue, so an online session is fed without reads.
    fn enqueue_stored(
        &mut self,
        session_id: SessionId,
        mut delivery: Delivery,
        now: Instant,
        out: &mut dyn Outbox,
    ) {
        let cache_limit = self.limits.max_queued_messages;
        let Some(stored) = self.session(session_id).and_then(|s| s.stored) else { return };
        let seq = stored.next_seq;
        let publish = delivery.to_stored_publish();
        let outcome = self.store.enqueue(
            stored.id,
            seq,
            stored.first_unsent,
            &publish,
            delivery.message.expires_at,
        );
        match outcome {
            Enqueued::Stored { evicted } => {
                self.route_outcome.stored = true;
                for (victim, victim_seq) in evicted {
                    self.forget_evicted(victim, victim_seq, now);
                }
                let Some(session) = self.session_mut(session_id) else { return };
                let Some(stored) = session.stored.as_mut() else { return };
                // Only an online session keeps a cache: an offline one costs no memory per
                // queued message.
                let in_cache = session.conn.is_some()
                    && stored.fully_cached()
                    && session.queue.len() < cache_limit;
                stored.next_seq = seq + 1;
                if in_cache {
                    stored.cached_upto = seq + 1;
                    delivery.seq = Some(seq);
                    session.queue.push_back(delivery);
                }
                if session.conn.is_some() {
                    self.pump(session_id, now, out);
                }
            }
            Enqueued::Dropped | Enqueued::Rejected => {
                if outcome == Enqueued::Rejected {
                    self.route_outcome.rejected = true;
                }
                let why = "store queue full (sqlite caps)";
                self.count_drop(session_id, &delivery.message.topic, why, now);
            }
            Enqueued::Failed => self.route_outcome.stored = true,
        }
    }

    /// A ring row was evicted to make room: it must not be delivered from the memory cache.
    fn forget_evicted(&mut self, victim: StoredSessionId, seq: i64, now: Instant) {
        let Some(&session_id) = self.by_store_id.get(&victim) else { return };
        let Some(session) = self.session_mut(session_id) else { return };
        if let Some(position) = session.queue.iter().position(|d| d.seq == Some(seq)) {
            session.queue.remove(position);
        }
        self.count_drop(session_id, "", "oldest queued message evicted (sqlite caps)", now);
    }

    /// Counts a message a session will never get, and says so at warn level, at most once
    /// per second for the whole broker.
    fn count_drop(&mut self, session_id: SessionId, topic: &str, why: &str, now: Instant) {
        let Some(session) = self.session_mut(session_id) else { return };
        session.dropped += 1;
        let client_id = session.client_id.clone();
        self.stats.messages_dropped += 1;
        if self.last_drop_warning.is_some_and(|at| now.duration_since(at).as_secs() < 1) {
            self.suppressed_drop_warnings += 1;
            return;
        }
        let suppressed = std::mem::take(&mut self.suppressed_drop_warnings);
        self.last_drop_warning = Some(now);
        log::warn!(
            "client {client_id:?}: message {topic:?} dropped: {why} \
             ({suppressed} more drops not logged since the last warning)"
        );
    }

    /// Moves queued deliveries into the inflight window while there is room, reading the
    /// next rows from the store when the memory cache runs dry.
    pub(super) fn pump(&mut self, session_id: SessionId, now: Instant, out: &mut dyn Outbox) {
        let window = self.window(session_id);
        loop {
            // Field access (not `session_mut`) so `send_marks_dirty` can be borrowed too.
            let Some(session) =
                self.sessions.get_mut(session_id.0 as usize).and_then(Option::as_mut)
            else {
                return;
            };
            let Some(conn) = session.conn else { return };
            if session.inflight.len() >= window {
                return;
            }
            if session.queue.is_empty() {
                if !self.refill_cache(session_id, window) {
                    return;
                }
                continue;
            }
            let Some(delivery) = session.queue.pop_front() else { return };
            if let (Some(stored), Some(seq)) = (session.stored.as_mut(), delivery.seq) {
                if stored.first_unsent == stored.saved_first_unsent {
                    self.send_marks_dirty.push(session_id);
                }
                stored.first_unsent = stored.first_unsent.max(seq + 1);
            }
            if delivery.message.is_expired(now) {
                self.stats.messages_expired += 1;
                self.forget_row(session_id, delivery.seq);
                continue;
            }
            if delivery.qos == QoS::AtMostOnce {
                self.send_publish(conn, &delivery, None, false, now, out);
                self.forget_row(session_id, delivery.seq);
            } else if !self.send_inflight(session_id, delivery, now, out) {
                return;
            }
        }
    }

    /// Loads the next queued rows of a store-backed session into its cache. Returns false
    /// when there is nothing more to load.
    fn refill_cache(&mut self, session_id: SessionId, window: usize) -> bool {
        let Some(stored) = self.session(session_id).and_then(|s| s.stored) else { return false };
        if stored.fully_cached() {
            return false;
        }
        let batch = window.clamp(64, 1024);
        let rows = self.store.load_queue(stored.id, stored.cached_upto, batch);
        let Some(session) = self.session_mut(session_id) else { return false };
        let Some(queue_state) = session.stored.as_mut() else { return false };
        queue_state.cached_upto = match rows.last() {
            Some(last) if rows.len() == batch => last.seq + 1,
            _ => queue_state.next_seq,
        };
        for row in rows {
            session.queue.push_back(Delivery::from_stored(row.seq, row.publish, row.expires_at));
        }
        !session.queue.is_empty() || !queue_state.fully_cached()
    }

    /// Deletes a delivered, expired or abandoned row from the store.
    pub(super) fn forget_row(&mut self, session_id: SessionId, seq: Option<i64>) {
        let Some(seq) = seq else { return };
        if let Some(stored) = self.session(session_id).and_then(|s| s.stored) {
            self.store.forget(stored.id, seq);
        }
    }

    /// Assigns a packet id, records the delivery as inflight, and sends it. Returns false if
    /// it could not be sent now (its packet id is still in use) and was put back.
    fn send_inflight(
        &mut self,
        session_id: SessionId,
        delivery: Delivery,
        now: Instant,
        out: &mut dyn Outbox,
    ) -> bool {
        let Some(session) = self.session_mut(session_id) else { return false };
        let Some(conn) = session.conn else { return false };
        let packet_id = match delivery.seq {
            Some(seq) => {
                let id = packet_id_for_seq(seq);
                if session.inflight_position(id).is_some() {
                    // Rows 65535 apart both in flight: wait for the older one's ack.
                    session.queue.push_front(delivery);
                    return false;
                }
                id
            }
            None => session.allocate_packet_id(),
        };
        let seq = delivery.seq;
        if self.send_publish(conn, &delivery, Some(packet_id), false, now, out) {
            let state = match delivery.qos {
                QoS::ExactlyOnce => OutboundState::AwaitPubrec(delivery),
                QoS::AtLeastOnce | QoS::AtMostOnce => OutboundState::AwaitPuback(delivery),
            };
            if let Some(session) = self.session_mut(session_id) {
                session.inflight.push_back(Inflight { packet_id, seq, state, sent_at: now });
            }
            self.arm_resend(conn, now);
        } else {
            self.forget_row(session_id, seq);
        }
        true
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
        log::trace!(
            "{conn:?} -> PUBLISH {:?} qos {} id {packet_id:?}",
            delivery.message.topic,
            delivery.qos.bits()
        );
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

/// What routing one message did, for the publisher's acknowledgement.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct RouteOutcome {
    /// Something was written to the store: the ack waits for the commit.
    pub stored: bool,
    /// A session's ring refused it (`overflow = "reject"`).
    pub rejected: bool,
}

/// MQTT 5.0 publishers learn of a rejection (0x97); 3.1.1 ones cannot be told.
fn ack_reason(outcome: &RouteOutcome, v5: bool) -> ReasonCode {
    if outcome.rejected && v5 {
        ReasonCode::QuotaExceeded
    } else {
        ReasonCode::Success
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
    // MQTT-3.3.1-9 / MQTT 5.0 §3.3.1.3: live forwards clear RETAIN unless Retain As Published.
    let retain = retain_as_published && message.retain;
    Some(Delivery::new(message.clone(), message.qos.min(granted), retain, subscription_ids))
}
