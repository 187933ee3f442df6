//! Handing deliveries to sessions: sent at once when online with room in the inflight
//! window, queued in memory (clean sessions) or in the store's ring (persistent sessions),
//! moved into the window as acknowledgements free it, dropped and counted only at a hard cap.

use std::time::Instant;

use super::alias::AliasPlan;
use super::backpressure::{OUTPUT_HARD_FACTOR, QUEUE_HARD_FACTOR};
use super::logging::Abbreviated;
use super::message::Delivery;
use super::output_budget::{self, Budget};
use super::session::{packet_id_for_seq, Flow, Inflight, OutboundState, SessionId};
use super::{Broker, ConnId, Outbox, Transmitted};
use crate::codec::{Packet, QoS};
use crate::store::{Enqueued, StoredSessionId};

impl Broker {
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
        let Some(session) = self.session(session_id) else { return };
        let queue_qos0 = session.queue_qos0.unwrap_or(self.limits.queue_qos0);
        let online = session.conn;
        if delivery.qos == QoS::AtMostOnce {
            match online {
                Some(conn) => {
                    // QoS 0 bypasses the queue. Over the output limit, or over its share of
                    // the global budget (`output_budget.rs`), its publisher is paused; over the
                    // hard cap (or with no publisher to pause) it is dropped.
                    let backlog = out.backlog(conn);
                    let total = out.output_total();
                    let budget = output_budget::judge(self.limits.tx_buffer_total, total, backlog);
                    let keep = (backlog < tx_limit && budget == Budget::Room)
                        || (backlog < tx_limit * OUTPUT_HARD_FACTOR
                            && self.congest(session_id, now));
                    if keep {
                        self.send_publish(conn, &delivery, None, false, now, out);
                    } else if backlog >= tx_limit {
                        self.stats.messages_dropped += 1;
                        log::debug!("{conn:?}: output buffer full; QoS 0 message dropped");
                    } else {
                        let why = "all clients' unwritten output is over mqtt.tx_buffer_total \
                                   and this client holds more than its share";
                        self.count_drop(session_id, &delivery.message.topic, why, now);
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
            && !(online
                && queued < queue_limit * QUEUE_HARD_FACTOR
                && self.congest(session_id, now))
        {
            // Only the drop path reads the flow: the hot path stays a few comparisons.
            let why = match self.session(session_id).map(|s| s.flow) {
                Some(Flow::Slow { .. }) => {
                    "queue full (mqtt.max_queued_messages) and the subscriber is slow \
                     (mqtt.max_pause; mqtt.slow_subscriber = \"drop\")"
                }
                Some(Flow::Clear | Flow::Congested { .. }) | None => {
                    "queue full (mqtt.max_queued_messages)"
                }
            };
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
        let Some(stored) = self.session(session_id).and_then(|s| s.stored.as_deref().copied())
        else {
            return;
        };
        let seq = stored.next_seq;
        let publish = delivery.to_stored_publish();
        let outcome = self.store.enqueue(
            stored.id,
            seq,
            stored.first_unsent,
            publish,
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
        let Some(session_id) = self.index.stored(&self.sessions, victim) else { return };
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
        let Some(suppressed) = self.logs.message_dropped.allow(now) else { return };
        log::warn!(
            "client {client_id:?}: message {} dropped: {why} \
             ({suppressed} more drops not logged since the last warning)",
            Abbreviated(topic)
        );
    }

    /// Moves queued deliveries into the inflight window while there is room, reading the
    /// next rows from the store when the memory cache runs dry.
    pub(super) fn pump(&mut self, session_id: SessionId, now: Instant, out: &mut dyn Outbox) {
        let window = self.window(session_id);
        self.release_held(session_id, window, now, out);
        loop {
            // Field access (not `session_mut`) so `send_marks_dirty` can be borrowed too.
            let Some(session) = self.sessions.get_mut(session_id.0) else {
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
            if session.inflight.len() == session.inflight.capacity() {
                // Room for what will go out now, exactly: a deque doubles (4, 8, 16...), and
                // a reconnect storm holds thousands of these at once (issue 16).
                let room = window.saturating_sub(session.inflight.len()).min(session.queue.len());
                session.inflight.reserve_exact(room);
            }
            let Some(mut delivery) = session.queue.pop_front() else { return };
            if session.queue.is_empty() && session.stored.is_some() {
                // A store-backed session's cache is refilled from the store when needed.
                session.queue = Default::default();
            }
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
            if let Some(link) = self.conn(conn).and_then(|c| c.link.as_ref()) {
                // A bridge remote's Maximum QoS decides the exchange (QoS 2 goes as 1).
                delivery.qos = delivery.qos.min(link.max_qos);
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
        let Some(stored) = self.session(session_id).and_then(|s| s.stored.as_deref().copied())
        else {
            return false;
        };
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
        session.queue.reserve_exact(rows.len());
        for row in rows {
            session.queue.push_back(Delivery::from_stored(row.seq, row.publish, row.expires_at));
        }
        !session.queue.is_empty() || !queue_state.fully_cached()
    }

    /// Deletes a delivered, expired or abandoned row from the store.
    pub(super) fn forget_row(&mut self, session_id: SessionId, seq: Option<i64>) {
        let Some(seq) = seq else { return };
        if let Some(stored) = self.session(session_id).and_then(|s| s.stored.as_deref().copied()) {
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
                session.inflight.push_back(Inflight {
                    packet_id,
                    seq,
                    state,
                    sent_at: now,
                    held: false,
                });
            }
            self.arm_resend(conn, now);
        } else {
            self.forget_row(session_id, seq);
        }
        true
    }

    /// Encodes and queues one PUBLISH. Returns false if it was not sent: its Message Expiry
    /// Interval ran out (MQTT-3.3.2-5; nothing left is never forwarded as 0), or it exceeds the
    /// client's Maximum Packet Size (MQTT-3.1.2-25: discarded as if delivered).
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
        if delivery.message.is_expired(now) {
            log::debug!("{conn:?}: PUBLISH {:?} expired; not sent", delivery.message.topic);
            self.stats.messages_expired += 1;
            return false;
        }
        // The ACL sees the local topic; a bridge link is exempt (see `access.rs`).
        if !self.delivery_allowed(conn, &delivery.message.topic) {
            return false;
        }
        let Some(state) = self.conn(conn) else {
            return false;
        };
        let mut publish = delivery.to_publish(packet_id, dup, now);
        if let Some(link) = &state.link {
            link.adapt(&mut publish);
        }
        // The alias is chosen now, for this connection (`alias.rs`), and kept only if sent.
        let outbound = state.aliases.as_ref().and_then(|a| a.outbound.as_ref());
        let alias = outbound.and_then(|a| a.plan(&publish.topic));
        match alias {
            Some(AliasPlan::Known(id)) => {
                publish.properties.topic_alias = Some(id);
                publish.topic = self.empty_topic.clone();
            }
            Some(AliasPlan::Fresh(id)) => publish.properties.topic_alias = Some(id),
            None => {}
        }
        let packet = Packet::Publish(publish);
        log::trace!(
            "{conn:?} -> PUBLISH {:?} qos {} id {packet_id:?} alias {alias:?}",
            delivery.message.topic,
            delivery.qos.bits()
        );
        match self.transmit(out, conn, version, &packet, now) {
            Transmitted::Sent => {
                self.stats.messages_sent += 1;
                if let Some(plan) = alias {
                    if matches!(plan, AliasPlan::Known(_)) {
                        self.stats.topic_bytes_aliased += delivery.message.topic.len() as u64;
                    }
                    let aliases = self
                        .conn_mut(conn)
                        .and_then(|c| c.aliases.as_mut())
                        .and_then(|a| a.outbound.as_mut());
                    if let Some(aliases) = aliases {
                        aliases.commit(&delivery.message.topic, plan);
                    }
                }
                true
            }
            Transmitted::Withheld => {
                self.stats.messages_dropped += 1;
                if let Some(link) = self.conn(conn).and_then(|c| c.link.clone()) {
                    // Never retried: the remote would refuse it again, for ever. Counted as a
                    // drop of the bridge's session (`edgemq inspect`).
                    let session = self.conn(conn).and_then(|c| c.session());
                    if let Some(session) = session.and_then(|s| self.session_mut(s)) {
                        session.dropped += 1;
                        if let Some(stored) = session.stored.as_deref().copied() {
                            self.store.add_dropped(stored.id, 1);
                        }
                    }
                    if let Some(suppressed) = self.logs.message_dropped.allow(now) {
                        log::warn!(
                            "bridge {}: message {:?} dropped: larger than the remote's maximum \
                             packet size ({}) ({suppressed} more drops not logged since the \
                             last warning)",
                            link.name,
                            delivery.message.topic,
                            link.max_packet_size
                        );
                    }
                }
                false
            }
        }
    }

    /// The outbound window of a session: our `max_inflight`, narrowed by the client's
    /// Receive Maximum (MQTT-3.3.4-7).
    pub(super) fn window(&self, session_id: SessionId) -> usize {
        let (ours, receive_maximum) = self
            .session(session_id)
            .and_then(|s| s.conn)
            .and_then(|c| self.conn(c))
            // A bridge link's window is its own `max_inflight` (already in the field).
            .map_or((self.limits.max_inflight, u16::MAX), |c| match c.link {
                Some(_) => (u16::MAX, c.client_receive_maximum),
                None => (self.limits.max_inflight, c.client_receive_maximum),
            });
        usize::from(ours.min(receive_maximum))
    }
}
