//! SUBSCRIBE and UNSUBSCRIBE (MQTT 3.1.1 §3.8-3.11, MQTT 5.0 §3.8-3.11): granting QoS,
//! replacing existing subscriptions, per-session limits, and retained messages on subscribe
//! per Retain Handling (never on a shared subscription). Shared subscriptions
//! (`$share/GROUP/FILTER`) are checked here and held as `shared.rs` says.
//!
//! The per-session limits (`max_subscriptions_per_session`, `max_subscription_bytes`) and the
//! per-filter one (`max_topic_levels`) are checked in one place, [`over_limits`], which restore
//! uses too, so a session never holds more than today's configuration allows.

use super::session::filter_bytes;
use std::time::Instant;

use super::limits::Limits;
use super::logging::Abbreviated;
use super::message::Delivery;
use super::session::{Session, Subscription};
use super::shared::{classify, FilterKind};
use super::topic_tree::SubscriberEntry;
use super::{Broker, ConnId, Outbox};
use crate::codec::{
    topic, Packet, ProtocolVersion, QoS, ReasonCode, RetainHandling, Suback, Subscribe, Unsuback,
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
            let kind = classify(&filter);
            let shared = matches!(kind, FilterKind::Shared { .. });
            if kind != FilterKind::Plain
                && !limits.shared_subscription_available
                && version == ProtocolVersion::V5
            {
                // MQTT 5.0 §3.2.2.3.15: CONNACK said they are not supported, so using one is a
                // Protocol Error answered with DISCONNECT 0x9E (3.1.1: SUBACK 0x80 below).
                let what = "shared subscription while shared_subscription_available = false";
                let reason = ReasonCode::SharedSubscriptionsNotSupported;
                return self.protocol_error(conn, reason, what, now, out);
            }
            if shared && options.no_local && limits.shared_subscription_available {
                // MQTT-3.8.3-4.
                let what = "No Local on a shared subscription";
                return self.protocol_error(conn, ReasonCode::ProtocolError, what, now, out);
            }
            // The ACL sees the filter a shared subscription subscribes to, as Mosquitto does.
            let acl_filter = match kind {
                FilterKind::Shared { filter, .. } => filter,
                FilterKind::Plain | FilterKind::Malformed(_) => &filter,
            };
            let acl_refusal = self.subscribe_refusal(conn, acl_filter, now);
            let Some(session) = self.session_mut(session_id) else {
                return;
            };
            let exists = session.subscriptions.contains_key(&filter);
            let refusal = if let Some(why) = shared_refusal(&limits, &filter) {
                // A malformed `$share/` filter is 0x8F "Topic Filter invalid"; switched off,
                // only 3.1.1 clients get here (0x80 on the wire).
                let reason = match kind {
                    FilterKind::Malformed(_) if limits.shared_subscription_available => {
                        ReasonCode::TopicFilterInvalid
                    }
                    FilterKind::Plain | FilterKind::Shared { .. } | FilterKind::Malformed(_) => {
                        ReasonCode::SharedSubscriptionsNotSupported
                    }
                };
                Some((reason, why))
            } else if has_wildcard && !limits.wildcard_subscription_available {
                Some((ReasonCode::WildcardSubscriptionsNotSupported, "wildcard"))
            } else if let Some(reason) = acl_refusal {
                Some((reason, "acl_file"))
            } else {
                over_limits(&limits, session, &filter)
            };
            if let Some((reason, why)) = refusal {
                log::info!(
                    "client {:?}: subscription to {} refused ({why}): {reason:?}",
                    session.client_id,
                    Abbreviated(&filter)
                );
                reasons.push(reason);
                continue;
            }
            options.qos = options.qos.min(limits.max_qos);
            if !exists {
                session.subscription_bytes =
                    session.subscription_bytes.saturating_add(filter_bytes(&filter));
            }
            session.subscriptions.insert(&filter, Subscription { options, subscription_id });
            log::debug!(
                "client {:?} subscribed to {} at QoS {}",
                session.client_id,
                Abbreviated(&filter),
                options.qos.bits()
            );
            let stored = session.stored.as_deref().copied();
            self.tree_subscribe(
                &filter,
                SubscriberEntry {
                    session: session_id,
                    options,
                    subscription_id: subscription_id.and_then(std::num::NonZeroU32::new),
                    share: None,
                },
            );
            if let Some(stored) = stored {
                self.store.save_subscription(stored.id, &filter, &options, subscription_id);
            }
            self.sys_subscribed(&filter, now);
            reasons.push(granted_reason(options.qos));
            let send_retained = match (version, options.retain_handling) {
                // MQTT 5.0 §4.8.2: retained messages are not sent on a shared subscription.
                _ if shared => false,
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
        self.send(out, conn, &Packet::Suback(suback), now);

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
        now: Instant,
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
            if existed {
                session.subscription_bytes =
                    session.subscription_bytes.saturating_sub(filter_bytes(filter));
            }
            let stored = session.stored.as_deref().copied();
            if existed {
                self.tree_unsubscribe(filter, session_id);
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
        self.send(out, conn, &Packet::Unsuback(unsuback), now);
    }
}

/// Why a `$share/` `filter` may not be subscribed (or kept, at restore): shared subscriptions
/// are switched off, or it is not `$share/GROUP/FILTER` (MQTT-4.8.2-1, MQTT-4.8.2-2).
pub(super) fn shared_refusal(limits: &Limits, filter: &str) -> Option<&'static str> {
    match classify(filter) {
        FilterKind::Plain => None,
        FilterKind::Shared { .. } | FilterKind::Malformed(_)
            if !limits.shared_subscription_available =>
        {
            Some("shared_subscription_available = false")
        }
        FilterKind::Shared { .. } => None,
        FilterKind::Malformed(why) => Some(why),
    }
}

/// Why `session` may not add `filter` (or keep it, at restore) under `limits`: the reason code
/// for the SUBACK and the limit's name for the log. Replacing a filter the session already
/// holds costs no extra subscription or byte (MQTT-3.8.4-3: it replaces the old one).
pub(super) fn over_limits(
    limits: &Limits,
    session: &Session,
    filter: &str,
) -> Option<(ReasonCode, &'static str)> {
    if topic::level_count(filter) > limits.max_topic_levels {
        // 0x8F "Topic Filter invalid" (MQTT 5.0 §3.9.3: correctly formed, but not allowed for
        // this client) rather than 0x97 "Quota exceeded": the depth belongs to the filter
        // itself, so the same filter is refused again however many others the client drops.
        // 3.1.1 has only 0x80.
        return Some((ReasonCode::TopicFilterInvalid, "max_topic_levels"));
    }
    if session.subscriptions.contains_key(filter) {
        return None;
    }
    if session.subscriptions.len() >= limits.max_subscriptions_per_session {
        return Some((ReasonCode::QuotaExceeded, "max_subscriptions_per_session"));
    }
    if (session.subscription_bytes as usize).saturating_add(filter.len())
        > limits.max_subscription_bytes
    {
        // A quota like the count above: dropping other filters makes room.
        return Some((ReasonCode::QuotaExceeded, "max_subscription_bytes"));
    }
    None
}

fn granted_reason(qos: QoS) -> ReasonCode {
    match qos {
        QoS::AtMostOnce => ReasonCode::Success,
        QoS::AtLeastOnce => ReasonCode::GrantedQoS1,
        QoS::ExactlyOnce => ReasonCode::GrantedQoS2,
    }
}
