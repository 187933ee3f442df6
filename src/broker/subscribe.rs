//! SUBSCRIBE and UNSUBSCRIBE (MQTT 3.1.1 §3.8-3.11, MQTT 5.0 §3.8-3.11): granting QoS,
//! replacing existing subscriptions, per-session limits, and retained messages on subscribe
//! per Retain Handling.

use std::time::Instant;

use super::message::Delivery;
use super::session::Subscription;
use super::topic_tree::SubscriberEntry;
use super::{Broker, ConnId, Outbox};
use crate::codec::{
    Packet, ProtocolVersion, QoS, ReasonCode, RetainHandling, Suback, Subscribe, Unsuback,
    Unsubscribe,
};

impl Broker {
    pub(super) fn handle_subscribe(
        &mut self,
        conn: ConnId,
        subscribe: Subscribe,
        now: Instant,
        out: &mut dyn Outbox,
    ) {
        let Some(state) = self.conn(conn) else { return };
        let Some(session_id) = state.session() else {
            return;
        };
        let version = state.version.unwrap_or(ProtocolVersion::V311);
        let subscription_id = subscribe.properties.subscription_identifier;
        if subscription_id.is_some() && !self.limits.subscription_identifiers_available {
            // MQTT 5.0 §3.2.2.3.12: using them when not offered is a protocol error.
            let reason = ReasonCode::SubscriptionIdentifiersNotSupported;
            return self.protocol_error(conn, reason, "subscription identifier", now, out);
        }

        let limits = self.limits.clone();
        let mut reasons = Vec::with_capacity(subscribe.filters.len());
        let mut retained_for = Vec::new();
        for (filter, mut options) in subscribe.filters {
            let has_wildcard = filter.contains(['+', '#']);
            let acl_refusal = self.subscribe_refusal(conn, &filter, now);
            let Some(session) = self.session_mut(session_id) else {
                return;
            };
            let exists = session.subscriptions.contains_key(&filter);
            let refusal = if filter.starts_with("$share/") {
                Some(ReasonCode::SharedSubscriptionsNotSupported)
            } else if has_wildcard && !limits.wildcard_subscription_available {
                Some(ReasonCode::WildcardSubscriptionsNotSupported)
            } else if acl_refusal.is_some() {
                acl_refusal
            } else if !exists && session.subscriptions.len() >= limits.max_subscriptions_per_session
            {
                Some(ReasonCode::QuotaExceeded)
            } else {
                None
            };
            if let Some(reason) = refusal {
                log::info!(
                    "client {:?}: subscription to {filter:?} refused: {reason:?}",
                    session.client_id
                );
                reasons.push(reason);
                continue;
            }
            options.qos = options.qos.min(limits.max_qos);
            session.subscriptions.insert(filter.clone(), Subscription { options, subscription_id });
            log::debug!(
                "client {:?} subscribed to {filter:?} at QoS {}",
                session.client_id,
                options.qos.bits()
            );
            let stored = session.stored;
            self.tree.subscribe(
                &filter,
                SubscriberEntry { session: session_id, options, subscription_id },
            );
            if let Some(stored) = stored {
                self.store.save_subscription(stored.id, &filter, &options, subscription_id);
            }
            reasons.push(granted_reason(options.qos));
            let send_retained = match (version, options.retain_handling) {
                (ProtocolVersion::V5, RetainHandling::SendAtSubscribe) => true,
                (ProtocolVersion::V5, RetainHandling::SendAtNewSubscribe) => !exists,
                (ProtocolVersion::V5, RetainHandling::DoNotSend) => false,
                (ProtocolVersion::V31 | ProtocolVersion::V311, _) => true,
            };
            if send_retained {
                retained_for.push((filter, options.qos));
            }
        }

        let suback =
            Suback { packet_id: subscribe.packet_id, reasons, properties: Default::default() };
        self.send(out, conn, &Packet::Suback(suback));

        // Retained messages follow the SUBACK, with RETAIN=1 (MQTT-3.3.1-8).
        for (filter, granted) in retained_for {
            for message in self.retained.matching(&filter, now) {
                let qos = message.qos.min(granted);
                let ids = subscription_id.into_iter().collect();
                let delivery = Delivery::new(message, qos, true, ids);
                self.deliver(session_id, delivery, now, out);
            }
        }
    }

    pub(super) fn handle_unsubscribe(
        &mut self,
        conn: ConnId,
        unsubscribe: Unsubscribe,
        out: &mut dyn Outbox,
    ) {
        let Some(session_id) = self.conn(conn).and_then(|c| c.session()) else {
            return;
        };
        let mut reasons = Vec::with_capacity(unsubscribe.filters.len());
        for filter in &unsubscribe.filters {
            let Some(session) = self.session_mut(session_id) else {
                return;
            };
            let existed = session.subscriptions.remove(filter).is_some();
            let stored = session.stored;
            if existed {
                self.tree.unsubscribe(filter, session_id);
                if let Some(stored) = stored {
                    self.store.delete_subscription(stored.id, filter);
                }
            }
            reasons.push(if existed {
                ReasonCode::Success
            } else {
                ReasonCode::NoSubscriptionExisted
            });
        }
        let unsuback =
            Unsuback { packet_id: unsubscribe.packet_id, reasons, properties: Default::default() };
        self.send(out, conn, &Packet::Unsuback(unsuback));
    }
}

fn granted_reason(qos: QoS) -> ReasonCode {
    match qos {
        QoS::AtMostOnce => ReasonCode::Success,
        QoS::AtLeastOnce => ReasonCode::GrantedQoS1,
        QoS::ExactlyOnce => ReasonCode::GrantedQoS2,
    }
}
