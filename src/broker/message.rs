//! An application message as the broker routes it: decoded once, shared by reference count
//! between every subscriber queue, inflight slot and the retained store.

use std::rc::Rc;
use std::time::{Duration, Instant};

use super::shared::ShareId;
use crate::codec::{PacketId, Publish, PublishProperties, QoS};

/// One published message. Immutable once built; per-delivery details (packet id, DUP, granted
/// QoS, RETAIN as delivered, subscription identifiers) live in [`Delivery`].
#[derive(Debug, PartialEq)]
pub struct Message {
    pub topic: Rc<str>,
    pub payload: Rc<[u8]>,
    /// QoS as published (the ceiling for every delivery).
    pub qos: QoS,
    /// RETAIN as published.
    pub retain: bool,
    /// Forwarded MQTT 5.0 properties, without Topic Alias, Subscription Identifiers and the
    /// Message Expiry Interval (kept as `expires_at`); `None` when there are none left (every
    /// 3.1.1 message, most 5.0 ones). Boxed: inline they made every message 208 bytes, which
    /// a reconnect storm pays for each message in flight to each session (issue 16).
    pub properties: Option<Box<PublishProperties>>,
    /// When the MQTT 5.0 Message Expiry Interval runs out.
    pub expires_at: Option<Instant>,
}

impl Message {
    /// Builds the routed message from an inbound PUBLISH whose topic alias was resolved.
    pub fn from_publish(publish: Publish, now: Instant) -> Message {
        let expires_at = publish
            .properties
            .message_expiry_interval
            .map(|secs| now + Duration::from_secs(u64::from(secs)));
        Message::with_deadline(publish, expires_at).0
    }

    /// The message of `publish` expiring at `expires_at`, and the subscription identifiers
    /// that were on the packet (they belong to a delivery, not to the message).
    pub fn with_deadline(publish: Publish, expires_at: Option<Instant>) -> (Message, Vec<u32>) {
        let mut properties = publish.properties;
        let subscription_ids = std::mem::take(&mut properties.subscription_identifiers);
        properties.message_expiry_interval = None;
        properties.topic_alias = None;
        let properties = Message::boxed(properties);
        let message = Message {
            topic: publish.topic,
            payload: publish.payload,
            qos: publish.qos,
            retain: publish.retain,
            properties,
            expires_at,
        };
        (message, subscription_ids)
    }

    /// The PUBLISH kept in the store for a retained message (expiry stored beside it).
    pub fn to_retained_publish(&self) -> Publish {
        Publish {
            dup: false,
            qos: self.qos,
            retain: true,
            topic: self.topic.clone(),
            packet_id: None,
            properties: self.forwarded_properties(),
            payload: self.payload.clone(),
        }
    }

    /// `properties` as a message keeps them: `None` when there are none.
    pub fn boxed(properties: PublishProperties) -> Option<Box<PublishProperties>> {
        (properties != PublishProperties::default()).then(|| Box::new(properties))
    }

    /// The forwarded properties, to build a PUBLISH from.
    pub fn forwarded_properties(&self) -> PublishProperties {
        self.properties.as_deref().cloned().unwrap_or_default()
    }

    /// Its lifetime has passed. Strictly after the deadline: a message with Message Expiry
    /// Interval 0 is still delivered to the subscribers online when it arrives (routing runs
    /// with the same `now` it was received at, so onward delivery starts within its lifetime,
    /// MQTT-3.3.2-5) and forwarded with 0; it is never queued for later or kept as retained.
    pub fn is_expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|at| at < now)
    }

    /// Bytes this message holds, for retained-store accounting.
    pub fn size(&self) -> usize {
        self.topic.len() + self.payload.len()
    }
}

/// One message on its way to one session.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub message: Rc<Message>,
    /// min(published QoS, granted QoS) (MQTT-3.8.4-8 area).
    pub qos: QoS,
    pub retain: bool,
    /// MQTT 5.0 Subscription Identifiers of the matching subscriptions.
    pub subscription_ids: Vec<u32>,
    /// The store row holding this delivery (store-backed sessions only).
    pub seq: Option<i64>,
    /// The shared subscription group it was given through (memory only: a clean member's
    /// unacknowledged group messages go to another member when its session ends).
    pub share: Option<ShareId>,
}

impl Delivery {
    pub fn new(message: Rc<Message>, qos: QoS, retain: bool, subscription_ids: Vec<u32>) -> Self {
        Delivery { message, qos, retain, subscription_ids, seq: None, share: None }
    }

    /// The PUBLISH as stored in the ring: as delivered, without packet id and expiry (the
    /// deadline is stored as wall-clock time beside it).
    pub fn to_stored_publish(&self) -> Publish {
        let message = &self.message;
        let mut properties = message.forwarded_properties();
        properties.subscription_identifiers.clone_from(&self.subscription_ids);
        Publish {
            dup: false,
            qos: self.qos,
            retain: self.retain,
            topic: message.topic.clone(),
            packet_id: None,
            properties,
            payload: message.payload.clone(),
        }
    }

    /// A delivery read back from store row `seq`.
    pub fn from_stored(seq: i64, publish: Publish, expires_at: Option<Instant>) -> Delivery {
        let (qos, retain) = (publish.qos, publish.retain);
        let (message, subscription_ids) = Message::with_deadline(publish, expires_at);
        let message = Rc::new(message);
        Delivery { message, qos, retain, subscription_ids, seq: Some(seq), share: None }
    }

    /// The PUBLISH to send. The remaining expiry is computed at send time (MQTT-3.3.2-6).
    /// The caller sends only unexpired messages (see [`Message::is_expired`]).
    pub fn to_publish(&self, packet_id: Option<PacketId>, dup: bool, now: Instant) -> Publish {
        let message = &self.message;
        let mut properties = message.forwarded_properties();
        properties.message_expiry_interval =
            message.expires_at.map(|at| remaining_secs(at.saturating_duration_since(now)));
        properties.subscription_identifiers.clone_from(&self.subscription_ids);
        Publish {
            dup,
            qos: self.qos,
            retain: self.retain,
            topic: message.topic.clone(),
            packet_id,
            properties,
            payload: message.payload.clone(),
        }
    }
}

/// The Message Expiry Interval to forward for `left` of lifetime: whole seconds rounded up
/// (MQTT-3.3.2-6), so 0.95 s left is sent as 1 and a 4 s message read 50 ms later as 4, never
/// as 0 (a message with nothing left is expired and not sent at all).
fn remaining_secs(left: Duration) -> u32 {
    let secs = left.as_secs().saturating_add(u64::from(left.subsec_nanos() > 0));
    u32::try_from(secs).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(expires_at: Option<Instant>) -> Delivery {
        let message = Message {
            topic: "t".into(),
            payload: b"x".as_slice().into(),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: None,
            expires_at,
        };
        Delivery::new(Rc::new(message), QoS::AtLeastOnce, false, Vec::new())
    }

    fn forwarded_expiry(delivery: &Delivery, now: Instant) -> Option<u32> {
        delivery.to_publish(None, false, now).properties.message_expiry_interval
    }

    #[test]
    fn remaining_expiry_is_rounded_up() {
        // MQTT-3.3.2-6: 1 s read 50 ms later is still 1 s, not 0; 4 s read 1 ms later is 4.
        let now = Instant::now();
        let one = delivery(Some(now + Duration::from_secs(1)));
        assert_eq!(forwarded_expiry(&one, now + Duration::from_millis(50)), Some(1));
        assert_eq!(forwarded_expiry(&one, now + Duration::from_millis(999)), Some(1));
        let four = delivery(Some(now + Duration::from_secs(4)));
        assert_eq!(forwarded_expiry(&four, now), Some(4));
        assert_eq!(forwarded_expiry(&four, now + Duration::from_millis(1)), Some(4));
        assert_eq!(forwarded_expiry(&four, now + Duration::from_millis(1001)), Some(3));
        assert_eq!(forwarded_expiry(&delivery(None), now), None);
        // Nothing left: expired, and the senders skip it.
        assert!(one.message.is_expired(now + Duration::from_secs(1) + Duration::from_nanos(1)));
        assert!(!one.message.is_expired(now + Duration::from_millis(999)));
    }

    #[test]
    fn store_restored_delivery_is_rounded_up_too() {
        let now = Instant::now();
        let publish = delivery(None).to_stored_publish();
        let restored = Delivery::from_stored(3, publish, Some(now + Duration::from_millis(2500)));
        assert_eq!(forwarded_expiry(&restored, now), Some(3));
    }

    #[test]
    fn expiry_zero_is_delivered_live_only() {
        let now = Instant::now();
        let zero = delivery(Some(now));
        assert!(!zero.message.is_expired(now), "routed in the pass it arrived in");
        assert_eq!(forwarded_expiry(&zero, now), Some(0));
        assert!(zero.message.is_expired(now + Duration::from_millis(1)), "never later");
    }

    #[test]
    fn remaining_secs_saturates() {
        assert_eq!(remaining_secs(Duration::ZERO), 0);
        assert_eq!(remaining_secs(Duration::from_nanos(1)), 1);
        assert_eq!(remaining_secs(Duration::from_secs(u64::MAX)), u32::MAX);
    }
}
