//! Session state that outlives a network connection (MQTT 3.1.1 §3.1.2.4, MQTT 5.0 §4.1):
//! subscriptions, the outbound QoS 1/2 window and queue, inbound QoS 2 packet ids, the will.
//!
//! Owns only plain data (no sockets, no clock reads, no SQL), so a session can be written to
//! and restored from the store. Every collection is bounded by a limit checked by the caller
//! or here (`max_inflight`, `max_queued_messages`, `max_subscriptions_per_session`,
//! `max_subscription_bytes`).

use std::num::NonZeroU16;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::deque::Deque;
use super::message::Delivery;
use super::packet_ids::PacketIds;
use super::ConnId;
use crate::codec::{PacketId, ProtocolVersion, SubscriptionOptions, Will};
use crate::store::StoredSessionId;

/// Index of a session in the broker's fixed-capacity session table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub u32);

/// A session's place in back-pressure (see `backpressure.rs`). The only transitions are
/// `Clear -> Congested -> Slow -> Clear` and `Congested -> Clear`, all in `backpressure.rs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Under its soft limits, or not yet found over them.
    Clear,
    /// Over a soft limit since `since`: publishers feeding it are paused, for `max_pause` at
    /// most.
    Congested { since: Instant },
    /// Congested for longer than `max_pause`: it pauses nobody and its overflow follows
    /// `mqtt.slow_subscriber` until it drains to half its limits.
    Slow { since: Instant },
}

/// What an outbound QoS 1/2 message waits for (MQTT 4.3.2, 4.3.3).
// Named after what each state waits for, like rustls' `ExpectFinished`.
#[allow(clippy::enum_variant_names)]
#[derive(Debug, Clone, PartialEq)]
pub enum OutboundState {
    /// QoS 1 PUBLISH sent.
    AwaitPuback(Delivery),
    /// QoS 2 PUBLISH sent.
    AwaitPubrec(Delivery),
    /// PUBREL sent; the message is delivered and only the packet id is still in use.
    AwaitPubcomp,
}

#[derive(Debug, Clone)]
pub struct Inflight {
    pub packet_id: PacketId,
    /// The store row this message lives in (store-backed sessions).
    pub seq: Option<i64>,
    pub state: OutboundState,
    /// When this PUBLISH or PUBREL was last sent (for the 3.1.1 resend interval).
    pub sent_at: Instant,
    /// Not re-sent yet after a reconnect: the new connection's Receive Maximum is smaller than
    /// what was in flight (MQTT-3.3.4-9); sent, with its packet id, as acks free the window.
    pub held: bool,
}

/// Where a persistent session's queue lives in the store, and which part of it is in memory.
///
/// Rows `first_unsent..next_seq` are queued; rows before `first_unsent` have been sent and
/// wait for acknowledgement. `Session::queue` caches rows `first_unsent..cached_upto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredQueue {
    pub id: StoredSessionId,
    pub next_seq: i64,
    pub first_unsent: i64,
    pub cached_upto: i64,
    /// `first_unsent` as last written to the store.
    pub saved_first_unsent: i64,
}

impl StoredQueue {
    pub fn new(id: StoredSessionId) -> StoredQueue {
        StoredQueue { id, next_seq: 1, first_unsent: 1, cached_upto: 1, saved_first_unsent: 1 }
    }

    /// Every queued row is in the memory cache.
    pub fn fully_cached(&self) -> bool {
        self.cached_upto >= self.next_seq
    }
}

/// The packet id of store row `seq`: a function of the row, so a restarted broker re-sends a
/// message with the id it had (MQTT-4.4.0-1) without writing ids to disk.
pub fn packet_id_for_seq(seq: i64) -> PacketId {
    let id = seq.wrapping_sub(1).rem_euclid(65535) + 1;
    NonZeroU16::new(id as u16).unwrap_or(NonZeroU16::MIN)
}

/// A subscription as granted, kept so it can be restored and replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subscription {
    pub options: SubscriptionOptions,
    pub subscription_id: Option<u32>,
}

/// A session's subscriptions: filter -> what was granted.
///
/// Not a hash map: most sessions hold one or a few filters, and a hash map costs 48 bytes
/// inline plus a 4-bucket table (about 200 bytes) from the first entry. One filter is held
/// inline (the filter string is its only allocation); more go to a vector sorted by filter,
/// searched by bisection, whose inserts and removes move at most
/// `max_subscriptions_per_session` entries of 32 bytes.
#[derive(Debug, Default)]
pub enum Subscriptions {
    #[default]
    None,
    One(Box<str>, Subscription),
    Many(Vec<(Box<str>, Subscription)>),
}

impl Subscriptions {
    pub fn get(&self, filter: &str) -> Option<&Subscription> {
        match self {
            Subscriptions::None => None,
            Subscriptions::One(f, s) => (**f == *filter).then_some(s),
            Subscriptions::Many(entries) => entries
                .binary_search_by(|(f, _)| (**f).cmp(filter))
                .ok()
                .and_then(|i| entries.get(i))
                .map(|(_, s)| s),
        }
    }

    pub fn contains_key(&self, filter: &str) -> bool {
        self.get(filter).is_some()
    }

    /// Adds or replaces `filter`; returns what it replaced.
    pub fn insert(&mut self, filter: &str, subscription: Subscription) -> Option<Subscription> {
        let (next, replaced) = match std::mem::take(self) {
            Subscriptions::None => (Subscriptions::One(filter.into(), subscription), None),
            Subscriptions::One(f, old) if *f == *filter => {
                (Subscriptions::One(f, subscription), Some(old))
            }
            Subscriptions::One(f, old) => {
                let mut entries = Vec::with_capacity(2);
                entries.push((f, old));
                (Subscriptions::Many(entries), None)
            }
            many @ Subscriptions::Many(_) => (many, None),
        };
        *self = next;
        if replaced.is_some() {
            return replaced;
        }
        match self {
            Subscriptions::Many(entries) => {
                match entries.binary_search_by(|(f, _)| (**f).cmp(filter)) {
                    Ok(i) => entries.get_mut(i).map(|(_, s)| std::mem::replace(s, subscription)),
                    Err(i) => {
                        if entries.len() == entries.capacity() {
                            // Grow by a quarter, not double: a device's 10 filters take 10
                            // slots, not 16 (issue 16: 19 bytes per subscription).
                            entries.reserve_exact((entries.len() / 4).max(1));
                        }
                        entries.insert(i, (filter.into(), subscription));
                        None
                    }
                }
            }
            // Just set above.
            Subscriptions::None | Subscriptions::One(..) => None,
        }
    }

    pub fn remove(&mut self, filter: &str) -> Option<Subscription> {
        let (next, removed) = match std::mem::take(self) {
            Subscriptions::None => (Subscriptions::None, None),
            Subscriptions::One(f, s) if *f == *filter => (Subscriptions::None, Some(s)),
            one @ Subscriptions::One(..) => (one, None),
            Subscriptions::Many(mut entries) => {
                let removed = match entries.binary_search_by(|(f, _)| (**f).cmp(filter)) {
                    Ok(i) => Some(entries.remove(i).1),
                    Err(_) => None,
                };
                let next = match entries.len() {
                    0 => Subscriptions::None,
                    1 => match entries.pop() {
                        Some((f, s)) => Subscriptions::One(f, s),
                        None => Subscriptions::None,
                    },
                    _ => Subscriptions::Many(entries),
                };
                (next, removed)
            }
        };
        *self = next;
        removed
    }

    pub fn len(&self) -> usize {
        match self {
            Subscriptions::None => 0,
            Subscriptions::One(..) => 1,
            Subscriptions::Many(entries) => entries.len(),
        }
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        let (one, many) = match self {
            Subscriptions::None => (None, &[][..]),
            Subscriptions::One(f, _) => (Some(&**f), &[][..]),
            Subscriptions::Many(entries) => (None, &entries[..]),
        };
        one.into_iter().chain(many.iter().map(|(f, _)| &**f))
    }
}

/// A filter's length as counted in `Session::subscription_bytes` (an MQTT string: at most
/// 65,535 bytes).
pub fn filter_bytes(filter: &str) -> u32 {
    u32::try_from(filter.len()).unwrap_or(u32::MAX)
}

/// When a session ends after its connection closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionExpiry {
    /// Ends with the connection (clean session / Session Expiry Interval 0).
    AtDisconnect,
    After(Secs),
    Never,
}

/// Whole seconds, as MQTT counts a session's expiry (MQTT 5.0 §3.1.2.11.2): 4 bytes in every
/// session where a `Duration` takes 16.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Secs(pub u32);

impl Secs {
    /// Longer than a u32 of seconds (136 years) is capped.
    pub fn from_duration(d: Duration) -> Secs {
        Secs(u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
    }

    pub fn duration(self) -> Duration {
        Duration::from_secs(u64::from(self.0))
    }
}

impl std::ops::Add<Secs> for Instant {
    type Output = Instant;

    fn add(self, after: Secs) -> Instant {
        self + after.duration()
    }
}

impl SessionExpiry {
    /// MQTT 5.0 §3.1.2.11.2: 0 = at disconnect, 0xFFFFFFFF = never.
    pub fn from_v5_interval(secs: u32) -> SessionExpiry {
        match secs {
            0 => SessionExpiry::AtDisconnect,
            u32::MAX => SessionExpiry::Never,
            s => SessionExpiry::After(Secs(s)),
        }
    }

    /// Capped by the broker's maximum (`None` = no cap).
    pub fn capped(self, max: Option<Duration>) -> SessionExpiry {
        match (self, max) {
            (_, None) | (SessionExpiry::AtDisconnect, _) => self,
            (SessionExpiry::Never, Some(max)) => SessionExpiry::After(Secs::from_duration(max)),
            (SessionExpiry::After(d), Some(max)) => {
                SessionExpiry::After(d.min(Secs::from_duration(max)))
            }
        }
    }

    /// As stored: `None` = never, zero = at disconnect.
    pub fn as_duration(self) -> Option<Duration> {
        match self {
            SessionExpiry::AtDisconnect => Some(Duration::ZERO),
            SessionExpiry::After(d) => Some(d.duration()),
            SessionExpiry::Never => None,
        }
    }

    pub fn from_duration(stored: Option<Duration>) -> SessionExpiry {
        match stored {
            None => SessionExpiry::Never,
            Some(d) if d.is_zero() => SessionExpiry::AtDisconnect,
            Some(d) => SessionExpiry::After(Secs::from_duration(d)),
        }
    }

    pub fn as_v5_interval(self) -> u32 {
        match self {
            SessionExpiry::AtDisconnect => 0,
            SessionExpiry::Never => u32::MAX,
            SessionExpiry::After(d) => d.0.min(u32::MAX - 1),
        }
    }
}

#[derive(Debug)]
pub struct Session {
    pub client_id: Rc<str>,
    pub version: ProtocolVersion,
    /// The live connection, if the client is online.
    pub conn: Option<ConnId>,
    pub expiry: SessionExpiry,
    pub subscriptions: Subscriptions,
    /// Bytes of the filters in `subscriptions` (bounded by `max_subscription_bytes`; a u32
    /// beside `timer_generation` instead of 8 bytes of its own).
    pub subscription_bytes: u32,
    /// Outbound QoS 1/2 messages sent and not completed, oldest first.
    pub inflight: Deque<Inflight>,
    /// Some `inflight` entry may be `held` (set when one is held, cleared by a scan that finds
    /// none), so acknowledgements skip the scan for held entries while none can exist.
    pub maybe_held: bool,
    /// Outbound messages waiting for a free inflight slot (or for the client to come back).
    pub queue: Deque<Delivery>,
    /// Inbound QoS 2 packet ids received (PUBREC sent) and not yet released by PUBREL.
    /// A pointer while empty (see `packet_ids.rs`; a hash set is 48 bytes, a B-tree set 24).
    pub inbound_qos2: PacketIds,
    /// The will of the current (or last) connection, until published or discarded. Boxed:
    /// 160 bytes inline in every session, and most clients have no will.
    pub will: Option<Box<Will>>,
    /// When a delayed will is due (MQTT 5.0 Will Delay Interval), while offline.
    pub will_due: Option<Instant>,
    /// When the session expires, while offline.
    pub expires_at: Option<Instant>,
    /// Bumped whenever a timer of this session is re-armed, so stale timers are ignored.
    pub timer_generation: u32,
    /// Messages dropped for this session because its queue was full.
    pub dropped: u64,
    /// Set for persistent sessions: their queue and state live in the store.
    /// Boxed: 48 bytes that clean sessions (most of them) would carry for nothing.
    pub stored: Option<Box<StoredQueue>>,
    /// Whether it is over a soft limit, and so pauses the publishers feeding it.
    pub flow: Flow,
    /// A bridge's own `queue_qos0`, instead of `mqtt.queue_qos0`.
    pub queue_qos0: Option<bool>,
    /// Who logged in on it during this run (`None`: restored from the store, not yet back);
    /// its will is published under this identity's ACL.
    pub identity: Option<super::access::Identity>,
    next_packet_id: u16,
}

impl Session {
    /// Removes inflight entry `position`. An emptied deque gives its memory back: after a
    /// reconnect storm thousands of sessions have nothing in flight.
    pub fn remove_inflight(&mut self, position: usize) -> Option<Inflight> {
        let entry = self.inflight.remove(position);
        if self.inflight.is_empty() {
            self.inflight = Deque::default();
        }
        entry
    }

    pub fn new(client_id: Rc<str>, version: ProtocolVersion, expiry: SessionExpiry) -> Session {
        Session {
            client_id,
            version,
            conn: None,
            expiry,
            subscriptions: Subscriptions::default(),
            subscription_bytes: 0,
            inflight: Deque::default(),
            maybe_held: false,
            queue: Deque::default(),
            inbound_qos2: PacketIds::default(),
            will: None,
            will_due: None,
            expires_at: None,
            timer_generation: 0,
            dropped: 0,
            stored: None,
            flow: Flow::Clear,
            queue_qos0: None,
            identity: None,
            next_packet_id: 1,
        }
    }

    /// A packet id not used by any outbound inflight message (MQTT-2.3.1-2). The caller keeps
    /// `inflight.len()` below 65535, so one is always free.
    pub fn allocate_packet_id(&mut self) -> PacketId {
        loop {
            let candidate = self.next_packet_id;
            self.next_packet_id = self.next_packet_id.checked_add(1).unwrap_or(1);
            if let Some(id) = NonZeroU16::new(candidate) {
                if !self.inflight.iter().any(|m| m.packet_id == id) {
                    return id;
                }
            }
        }
    }

    /// Position of the inflight message with `packet_id`; acks usually arrive in order, so the
    /// front is checked first.
    pub fn inflight_position(&self, packet_id: PacketId) -> Option<usize> {
        self.inflight.iter().position(|m| m.packet_id == packet_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packet_ids_skip_inflight_and_zero() {
        let mut s = Session::new("c".into(), ProtocolVersion::V311, SessionExpiry::Never);
        s.next_packet_id = u16::MAX;
        assert_eq!(s.allocate_packet_id().get(), u16::MAX);
        // Wraps past 0 to 1.
        assert_eq!(s.allocate_packet_id().get(), 1);
    }

    #[test]
    fn seq_packet_ids_cycle_through_all_nonzero_ids() {
        assert_eq!(packet_id_for_seq(1).get(), 1);
        assert_eq!(packet_id_for_seq(65535).get(), 65535);
        assert_eq!(packet_id_for_seq(65536).get(), 1);
        assert_eq!(packet_id_for_seq(0).get(), 65535);
    }

    #[test]
    fn expiry_mapping() {
        assert_eq!(SessionExpiry::from_v5_interval(0), SessionExpiry::AtDisconnect);
        assert_eq!(SessionExpiry::from_v5_interval(u32::MAX), SessionExpiry::Never);
        let ten = Duration::from_secs(10);
        assert_eq!(SessionExpiry::Never.capped(Some(ten)), SessionExpiry::After(Secs(10)));
        assert_eq!(
            SessionExpiry::After(Secs(99)).capped(Some(ten)),
            SessionExpiry::After(Secs(10))
        );
        assert_eq!(SessionExpiry::from_v5_interval(7), SessionExpiry::After(Secs(7)));
        assert_eq!(SessionExpiry::After(Secs(7)).as_duration(), Some(Duration::from_secs(7)));
        // The longest stored interval (u32::MAX s) stays an interval, reported one below
        // "never".
        let longest = SessionExpiry::from_duration(Some(crate::store::LONGEST_INTERVAL));
        assert_eq!(longest, SessionExpiry::After(Secs(u32::MAX)));
        assert_eq!(longest.as_v5_interval(), u32::MAX - 1);
        assert_eq!(SessionExpiry::AtDisconnect.capped(Some(ten)), SessionExpiry::AtDisconnect);
    }

    fn granted(qos: crate::codec::QoS, id: Option<u32>) -> Subscription {
        Subscription {
            options: SubscriptionOptions { qos, ..Default::default() },
            subscription_id: id,
        }
    }

    #[test]
    fn subscriptions_go_from_inline_to_sorted_and_back() {
        use crate::codec::QoS;
        let mut subs = Subscriptions::default();
        assert_eq!(subs.len(), 0);
        assert_eq!(subs.insert("b/c", granted(QoS::AtMostOnce, None)), None);
        assert!(matches!(subs, Subscriptions::One(..)));
        // A repeated filter replaces (MQTT-3.8.4-3), inline too.
        assert_eq!(
            subs.insert("b/c", granted(QoS::AtLeastOnce, Some(7))),
            Some(granted(QoS::AtMostOnce, None))
        );
        assert_eq!(subs.insert("a/#", granted(QoS::ExactlyOnce, None)), None);
        assert_eq!(subs.insert("z", granted(QoS::AtMostOnce, None)), None);
        assert_eq!(
            subs.insert("z", granted(QoS::AtLeastOnce, None)),
            Some(granted(QoS::AtMostOnce, None))
        );
        assert_eq!(subs.len(), 3);
        assert_eq!(subs.keys().collect::<Vec<_>>(), vec!["a/#", "b/c", "z"]);
        assert_eq!(subs.get("b/c"), Some(&granted(QoS::AtLeastOnce, Some(7))));
        assert!(!subs.contains_key("b"));
        assert_eq!(subs.remove("nope"), None);
        assert_eq!(subs.remove("a/#"), Some(granted(QoS::ExactlyOnce, None)));
        assert_eq!(subs.remove("z"), Some(granted(QoS::AtLeastOnce, None)));
        // Back inline with the one left.
        assert!(matches!(&subs, Subscriptions::One(f, _) if &**f == "b/c"));
        assert_eq!(subs.remove("b/c"), Some(granted(QoS::AtLeastOnce, Some(7))));
        assert!(matches!(subs, Subscriptions::None));
        assert_eq!(subs.keys().count(), 0);
    }

    #[test]
    fn subscriptions_grow_by_a_quarter_not_double() {
        use crate::codec::QoS;
        let mut subs = Subscriptions::default();
        for k in 0..10 {
            subs.insert(&format!("dev/7/{k}"), granted(QoS::AtLeastOnce, None));
        }
        // 2, 3, 4, 5, 6, 7, 8, 10: a doubling vector would hold 16 slots of 32 bytes.
        assert!(matches!(&subs, Subscriptions::Many(e) if e.capacity() == 10), "{subs:?}");
        for k in 10..200 {
            subs.insert(&format!("dev/7/{k}"), granted(QoS::AtLeastOnce, None));
        }
        assert!(matches!(&subs, Subscriptions::Many(e) if e.capacity() <= 250), "{subs:?}");
        assert_eq!(subs.len(), 200);
        assert_eq!(subs.keys().filter(|f| subs.contains_key(f)).count(), 200);
    }
}
