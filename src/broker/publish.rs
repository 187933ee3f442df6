//! Inbound PUBLISH (topic aliases, QoS 1/2 receiver side, the acknowledgement and its reason)
//! and routing: matching subscriptions, one delivery per session at the highest granted QoS,
//! and the retained store. Handing deliveries to sessions is `deliver.rs`.

use std::rc::Rc;
use std::time::Instant;

use super::logging::Abbreviated;
use super::message::{Delivery, Message};
use super::retain::RetainOutcome;
use super::session::SessionId;
use super::topic_tree::SubscriberEntry;
use super::{Broker, ConnId, Outbox};
use crate::codec::{topic, Packet, ProtocolVersion, PubAck, Publish, QoS, ReasonCode};

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
            let aliases = &mut state.aliases.get_or_insert_with(Box::default).inbound;
            if aliases.len() < usize::from(max_topic_alias) {
                let mut grown = std::mem::take(aliases).into_vec();
                grown.resize(usize::from(max_topic_alias), None);
                *aliases = grown.into_boxed_slice();
            }
            if publish.topic.is_empty() {
                match &aliases[slot] {
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
                aliases[slot] = Some(publish.topic.clone());
            }
        } else if publish.topic.is_empty() {
            // The codec refuses this already (MQTT 5.0 §3.3.2.1: a Protocol Error).
            let what = "empty topic without alias";
            return self.protocol_error(conn, ReasonCode::ProtocolError, what, now, out);
        }
        let levels = topic::level_count(&publish.topic);
        if levels > self.limits.max_topic_levels {
            // `mqtt.max_topic_levels`. 3.1.1 has no negative PUBACK, and a QoS 0 message has no
            // acknowledgement at all, so the connection ends for every version and QoS, as in
            // Mosquitto (TOPIC_HIERARCHY_LIMIT); a v5 client learns why: 0x90 "Topic Name
            // invalid", which MQTT 5.0 §3.14.2.1 defines as well formed but not accepted.
            let what = format!("PUBLISH topic of {levels} levels above max_topic_levels");
            return self.protocol_error(conn, ReasonCode::TopicNameInvalid, &what, now, out);
        }

        if publish.qos > self.limits.max_qos {
            let what = format!("PUBLISH QoS {} above maximum", publish.qos.bits());
            return self.protocol_error(conn, ReasonCode::QoSNotSupported, &what, now, out);
        }
        if publish.retain && !self.limits.retain_available {
            let what = "retained PUBLISH while retain is unavailable";
            return self.protocol_error(conn, ReasonCode::RetainNotSupported, what, now, out);
        }
        if !self.publish_allowed(conn, &publish.topic, now) {
            return self.refuse_publish(conn, &publish);
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
                        if let Some(stored) = session.stored.as_deref().copied() {
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
                    "retained message on {} not stored: max_retained_messages or \
                     max_retained_bytes reached",
                    Abbreviated(&message.topic)
                ),
                RetainOutcome::Stored | RetainOutcome::Replaced => {
                    self.store.save_retained(message.to_retained_publish(), message.expires_at);
                    self.route_outcome.stored = true;
                }
                RetainOutcome::Deleted => {
                    self.store.delete_retained(&message.topic);
                    self.route_outcome.stored = true;
                }
                RetainOutcome::NothingToDelete => {}
            }
        }
        self.route_to_subscribers(message, publisher, now, out);
    }

    /// Delivers `message` to every session with a matching subscription (RETAIN already
    /// applied by the caller).
    pub(super) fn route_to_subscribers(
        &mut self,
        message: Rc<Message>,
        publisher: Option<SessionId>,
        now: Instant,
        out: &mut dyn Outbox,
    ) {
        let mut matches = std::mem::take(&mut self.match_scratch);
        matches.clear();
        self.tree.matches(&message.topic, &mut matches);
        // Plain subscriptions first (share `None`), by session; then shared groups, by group.
        matches.sort_unstable_by_key(|e| (e.share, e.session));
        let plain = matches.partition_point(|e| e.share.is_none());
        let (own, shared) = matches.split_at(plain);
        // Several matching subscriptions of one session give one delivery at the highest
        // granted QoS with every subscription identifier (MQTT-3.3.4-2, MQTT 5.0 §3.3.4).
        for group in own.chunk_by(|a, b| a.session == b.session) {
            if let Some(delivery) = aggregate(group, &message, publisher) {
                self.route_outcome.matched = true;
                self.deliver(group[0].session, delivery, now, out);
            }
        }
        // Each shared group gives its own copy to one member (MQTT 5.0 §4.8.2), apart from
        // the plain subscriptions above, also of that member.
        for members in shared.chunk_by(|a, b| a.share == b.share) {
            if let Some(share) = members.first().and_then(|e| e.share) {
                self.route_shared(share, members, &message, publisher, now, out);
            }
        }
        self.match_scratch = matches;
    }
}

/// What routing one message did, for the publisher's acknowledgement.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct RouteOutcome {
    /// Something was written to the store: the ack waits for the commit.
    pub stored: bool,
    /// A session's ring refused it (`overflow = "reject"`).
    pub rejected: bool,
    /// At least one session was handed a delivery (subscriptions excluded by No Local do
    /// not count).
    pub matched: bool,
}

/// MQTT 5.0 publishers learn of a rejection (0x97, which wins) and of a message no
/// subscription matched (0x10 "No matching subscribers", MQTT 5.0 §3.4.2.1; not an error, the
/// exchange completes). A retained message with no subscriber is 0x10 too, although it was
/// stored: the code speaks of subscribers, and Mosquitto answers the same. 3.1.1 publishers
/// cannot be told.
fn ack_reason(outcome: &RouteOutcome, v5: bool) -> ReasonCode {
    match (v5, outcome.rejected, outcome.matched) {
        (false, _, _) => ReasonCode::Success,
        (true, true, _) => ReasonCode::QuotaExceeded,
        (true, false, false) => ReasonCode::NoMatchingSubscribers,
        (true, false, true) => ReasonCode::Success,
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
            subscription_ids.push(id.get());
        }
    }
    let granted = granted?;
    // MQTT-3.3.1-9 / MQTT 5.0 §3.3.1.3: live forwards clear RETAIN unless Retain As Published.
    let retain = retain_as_published && message.retain;
    Some(Delivery::new(message.clone(), message.qos.min(granted), retain, subscription_ids))
}
