//! Shared subscriptions (`$share/GROUP/FILTER`, MQTT 5.0 §4.8.2; honoured for 3.1.1 clients
//! too, as Mosquitto does): the syntax, the group table, and which member a message goes to.
//!
//! Contract: a shared subscription is an ordinary entry of the topic tree stored under FILTER
//! and tagged with its group's [`ShareId`]; the session keeps it under the full
//! `$share/GROUP/FILTER` string (so it is stored, restored, inspected and unsubscribed like any
//! other). Routing gives each matching message to exactly one member of each group, chosen by
//! `mqtt.shared_policy` among, in this order of preference:
//! 1. members that can take it now (online, with room in the inflight window and nothing
//!    queued; for QoS 0, output buffer under `mqtt.tx_buffer_limit` and within its share of
//!    `mqtt.tx_buffer_total`, `output_budget.rs`);
//! 2. members online (it waits in that member's queue, under the usual caps);
//! 3. persistent members offline, for QoS 1/2 (it goes to that member's queue in the store);
//!
//! and otherwise it is dropped and counted (`messages_dropped`). A member's plain
//! subscriptions are separate: they get their own copy (MQTT 5.0 §4.8.2).
//!
//! When a member's session ends, the QoS 1/2 group messages it holds unacknowledged are given
//! to another member of the group (§4.8.2 SHOULD): a clean member's from memory (each
//! delivery knows its group), a persistent member's from its store rows (which do not: see
//! [`Broker::move_stored_group_rows`] for how they are recognised). An in-flight message to a
//! persistent member that only disconnects stays its own and is re-sent when it returns.
//!
//! Bounded: one group per distinct `$share/GROUP/FILTER` in use, each counted by the
//! subscriptions that hold it, so groups are bounded by the subscription limits. Owns no
//! socket and no SQL; choosing allocates nothing (a scratch list is reused).

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::num::NonZeroU32;
use std::rc::Rc;
use std::time::Instant;

use super::logging::Abbreviated;
use super::message::{Delivery, Message};
use super::output_budget::{self, Budget};
use super::session::{SessionId, Subscriptions};
use super::topic_tree::SubscriberEntry;
use super::{Broker, Outbox, SharedPolicy};
use crate::codec::{topic, QoS};
use crate::store::StoredSessionId;

/// A shared subscription group: one `$share/GROUP/FILTER` (the same group name with another
/// filter is another group, MQTT 5.0 §4.8.2).
/// Holds the group's slot + 1: never zero, so `Option<ShareId>` in every topic-tree entry
/// costs 4 bytes, not 8.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShareId(NonZeroU32);

impl ShareId {
    fn from_slot(slot: u32) -> ShareId {
        ShareId(NonZeroU32::MIN.saturating_add(slot))
    }

    fn slot(self) -> u32 {
        self.0.get() - 1
    }
}

const PREFIX: &str = "$share/";

/// What a subscribed topic filter is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterKind<'a> {
    Plain,
    Shared {
        group: &'a str,
        filter: &'a str,
    },
    /// Starts with `$share/` but is not `$share/GROUP/FILTER` with a non-empty GROUP free of
    /// `+` and `#` and a non-empty FILTER (MQTT-4.8.2-1, MQTT-4.8.2-2); the text says why.
    Malformed(&'static str),
}

/// Classifies a topic filter the codec has already found well formed.
pub fn classify(filter: &str) -> FilterKind<'_> {
    let Some(rest) = filter.strip_prefix(PREFIX) else {
        return FilterKind::Plain;
    };
    let Some((group, filter)) = rest.split_once('/') else {
        return FilterKind::Malformed("no topic filter after the share name");
    };
    if group.is_empty() {
        FilterKind::Malformed("empty share name")
    } else if group.contains(['+', '#']) {
        FilterKind::Malformed("wildcard in the share name")
    } else if filter.is_empty() {
        FilterKind::Malformed("empty topic filter after the share name")
    } else {
        FilterKind::Shared { group, filter }
    }
}

#[derive(Debug)]
struct Group {
    key: Rc<str>,
    /// Subscriptions in the tree tagged with this group.
    members: usize,
    /// Round robin: the member position (in routing order) to try first next time.
    cursor: usize,
}

/// The groups in use, with their round-robin state.
#[derive(Debug, Default)]
pub struct SharedGroups {
    groups: Vec<Option<Group>>,
    free: Vec<u32>,
    by_key: HashMap<Rc<str>, ShareId>,
}

impl SharedGroups {
    /// One more subscription in the group named by the full `$share/GROUP/FILTER` `key`.
    pub fn join(&mut self, key: &str) -> ShareId {
        if let Some(&id) = self.by_key.get(key) {
            if let Some(group) = self.group_mut(id) {
                group.members += 1;
            }
            return id;
        }
        let key: Rc<str> = Rc::from(key);
        let group = Group { key: key.clone(), members: 1, cursor: 0 };
        let id = match self.free.pop() {
            Some(slot) => {
                if let Some(entry) = self.groups.get_mut(slot as usize) {
                    *entry = Some(group);
                }
                ShareId::from_slot(slot)
            }
            None => {
                self.groups.push(Some(group));
                ShareId::from_slot((self.groups.len() - 1) as u32)
            }
        };
        self.by_key.insert(key, id);
        id
    }

    /// One subscription fewer; the group goes with its last one.
    pub fn leave(&mut self, id: ShareId) {
        let Some(group) = self.group_mut(id) else { return };
        group.members = group.members.saturating_sub(1);
        if group.members == 0 {
            let key = group.key.clone();
            self.by_key.remove(&key);
            if let Some(slot) = self.groups.get_mut(id.slot() as usize) {
                *slot = None;
            }
            self.free.push(id.slot());
        }
    }

    pub fn lookup(&self, key: &str) -> Option<ShareId> {
        self.by_key.get(key).copied()
    }

    /// Groups in use.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    fn group_mut(&mut self, id: ShareId) -> Option<&mut Group> {
        self.groups.get_mut(id.slot() as usize).and_then(Option::as_mut)
    }
}

/// Which members a choice may pick from, most wanted first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tier {
    Ready,
    Online,
    Persistent,
}

impl Broker {
    /// Adds `entry` to the tree for the subscribed `filter` (a shared one under its inner
    /// filter, tagged with its group). Returns true if it replaced an existing subscription.
    /// The caller has refused malformed `$share/` filters.
    pub(super) fn tree_subscribe(&mut self, filter: &str, mut entry: SubscriberEntry) -> bool {
        match classify(filter) {
            FilterKind::Shared { filter: inner, .. } => {
                let id = self.shared.join(filter);
                entry.share = Some(id);
                let replaced = self.tree.subscribe(inner, entry);
                if replaced {
                    self.shared.leave(id);
                }
                replaced
            }
            FilterKind::Plain | FilterKind::Malformed(_) => {
                entry.share = None;
                self.tree.subscribe(filter, entry)
            }
        }
    }

    /// Removes `session`'s subscription to the subscribed `filter` from the tree.
    pub(super) fn tree_unsubscribe(&mut self, filter: &str, session: SessionId) -> bool {
        match classify(filter) {
            FilterKind::Shared { filter: inner, .. } => {
                let Some(id) = self.shared.lookup(filter) else { return false };
                let removed = self.tree.unsubscribe(inner, session, Some(id));
                if removed {
                    self.shared.leave(id);
                }
                removed
            }
            FilterKind::Plain | FilterKind::Malformed(_) => {
                self.tree.unsubscribe(filter, session, None)
            }
        }
    }

    /// Gives `message` to one member of the group whose matching entries are `members`
    /// (all tagged `share`), or drops and counts it when none can have it.
    pub(super) fn route_shared(
        &mut self,
        share: ShareId,
        members: &[SubscriberEntry],
        message: &Rc<Message>,
        publisher: Option<SessionId>,
        now: Instant,
        out: &mut dyn Outbox,
    ) {
        let Some(entry) = self.pick_member(share, members, message, publisher, out) else {
            self.stats.messages_dropped += 1;
            if let Some(suppressed) = self.logs.message_dropped.allow(now) {
                let key = self.shared.groups.get(share.slot() as usize).and_then(Option::as_ref);
                let group = key.map(|g| g.key.clone()).unwrap_or_else(|| Rc::from(""));
                log::warn!(
                    "message {} dropped: no member of {} can take it (none online{}) \
                     ({suppressed} more drops not logged since the last warning)",
                    Abbreviated(&message.topic),
                    Abbreviated(&group),
                    if message.qos == QoS::AtMostOnce { "" } else { " or persistent" }
                );
            }
            return;
        };
        let qos = message.qos.min(entry.options.qos);
        // MQTT-3.3.1-9 / MQTT 5.0 §3.3.1.3, as for plain subscriptions.
        let retain = entry.options.retain_as_published && message.retain;
        let ids = entry.subscription_id.map(NonZeroU32::get).into_iter().collect();
        let mut delivery = Delivery::new(message.clone(), qos, retain, ids);
        delivery.share = Some(share);
        self.route_outcome.matched = true;
        self.deliver(entry.session, delivery, now, out);
    }

    /// The member that gets the message (see the module contract for the order).
    fn pick_member(
        &mut self,
        share: ShareId,
        members: &[SubscriberEntry],
        message: &Message,
        publisher: Option<SessionId>,
        out: &mut dyn Outbox,
    ) -> Option<SubscriberEntry> {
        let mut eligible = std::mem::take(&mut self.share_scratch);
        let mut chosen = None;
        for tier in [Tier::Ready, Tier::Online, Tier::Persistent] {
            eligible.clear();
            for (i, entry) in members.iter().enumerate() {
                if self.member_in_tier(entry, message.qos.min(entry.options.qos), tier, out) {
                    eligible.push(i);
                }
            }
            if !eligible.is_empty() {
                chosen = self.choose(share, members, &eligible, publisher, &message.topic);
                break;
            }
        }
        self.share_scratch = eligible;
        chosen.and_then(|i| members.get(i).copied())
    }

    fn member_in_tier(
        &self,
        entry: &SubscriberEntry,
        qos: QoS,
        tier: Tier,
        out: &dyn Outbox,
    ) -> bool {
        let Some(session) = self.session(entry.session) else { return false };
        match (tier, session.conn) {
            (Tier::Ready, Some(conn)) if qos == QoS::AtMostOnce => {
                let backlog = out.backlog(conn);
                let budget = self.limits.tx_buffer_total;
                backlog < self.limits.tx_buffer_limit
                    && output_budget::judge(budget, out.output_total(), backlog) == Budget::Room
            }
            (Tier::Ready, Some(_)) => {
                let nothing_queued = match session.stored.as_deref() {
                    Some(stored) => stored.first_unsent >= stored.next_seq,
                    None => session.queue.is_empty(),
                };
                nothing_queued && session.inflight.len() < self.window(entry.session)
            }
            (Tier::Online, Some(_)) => true,
            (Tier::Persistent, None) => {
                session.stored.is_some()
                    && (qos != QoS::AtMostOnce
                        || session.queue_qos0.unwrap_or(self.limits.queue_qos0))
            }
            (Tier::Ready | Tier::Online, None) | (Tier::Persistent, Some(_)) => false,
        }
    }

    /// One of `eligible` (positions in `members`, ascending) by `mqtt.shared_policy`.
    fn choose(
        &mut self,
        share: ShareId,
        members: &[SubscriberEntry],
        eligible: &[usize],
        publisher: Option<SessionId>,
        topic: &str,
    ) -> Option<usize> {
        match self.limits.shared_policy {
            SharedPolicy::RoundRobin => {
                let group = self.shared.group_mut(share)?;
                let start = group.cursor % members.len().max(1);
                let pick = eligible
                    .iter()
                    .copied()
                    .find(|&i| i >= start)
                    .or_else(|| eligible.first().copied())?;
                group.cursor = pick + 1;
                Some(pick)
            }
            SharedPolicy::Random => {
                let n = eligible.len() as u64;
                let r = self.next_random() % n.max(1);
                eligible.get(r as usize).copied()
            }
            SharedPolicy::Sticky => {
                // Rendezvous hashing: the member with the highest hash of (publisher, member)
                // wins, so one publisher keeps its member while that member stays eligible,
                // and a member leaving moves only the publishers it had. Messages with no
                // publisher session (wills of ended sessions) hash their topic instead.
                let from: Rc<str> = publisher
                    .and_then(|p| self.session(p))
                    .map_or_else(|| Rc::from(topic), |s| s.client_id.clone());
                eligible.iter().copied().max_by_key(|&i| {
                    let member = members.get(i).and_then(|e| self.session(e.session));
                    let mut hasher = StickyHasher::default();
                    hasher.write(from.as_bytes());
                    // 0xFF never occurs in UTF-8: ("ab", "c") and ("a", "bc") hash apart.
                    hasher.write(&[0xff]);
                    hasher.write(member.map_or(&[][..], |s| s.client_id.as_bytes()));
                    hasher.finish()
                })
            }
        }
    }

    /// xorshift64*: enough to spread messages; seeded per process from the standard library's
    /// random hash keys.
    fn next_random(&mut self) -> u64 {
        if self.random_state == 0 {
            self.random_state = std::collections::hash_map::RandomState::new().hash_one(0u8) | 1;
        }
        let mut x = self.random_state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.random_state = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A member's session ended holding `delivery` (a group message not acknowledged): it
    /// goes to another member of the group if one can have it (MQTT 5.0 §4.8.2).
    ///
    /// Never recursive: handing a message on could, through some future path, end another
    /// member's session, which would move its messages in turn. Moves are queued, and only
    /// the outermost call runs the queue, so the stack stays flat however many sessions end
    /// in a chain.
    pub(super) fn reroute_shared(
        &mut self,
        share: ShareId,
        delivery: Delivery,
        now: Instant,
        out: &mut dyn Outbox,
    ) {
        self.reroutes.push_back((share, delivery));
        if self.rerouting {
            return;
        }
        self.rerouting = true;
        while let Some((share, delivery)) = self.reroutes.pop_front() {
            self.move_one(share, delivery, now, out);
        }
        self.rerouting = false;
    }

    fn move_one(&mut self, share: ShareId, delivery: Delivery, now: Instant, out: &mut dyn Outbox) {
        if delivery.message.is_expired(now) {
            return;
        }
        let mut matches = std::mem::take(&mut self.match_scratch);
        matches.clear();
        self.tree.matches(&delivery.message.topic, &mut matches);
        matches.retain(|e| e.share == Some(share));
        if matches.is_empty() {
            self.stats.messages_dropped += 1;
            log::debug!(
                "group message {} dropped: its member left and no other remains",
                Abbreviated(&delivery.message.topic)
            );
        } else {
            matches.sort_unstable_by_key(|e| e.session);
            log::debug!(
                "group message {} moved to another member: its member's session ended",
                Abbreviated(&delivery.message.topic)
            );
            self.route_shared(share, &matches, &delivery.message, None, now, out);
        }
        matches.clear();
        self.match_scratch = matches;
    }
}

impl Broker {
    /// A persistent member's session ends (expiry, Clean Start takeover, eviction) with rows
    /// in its store queue: the rows that came through a shared group go to another member of
    /// that group (MQTT 5.0 §4.8.2 SHOULD). A row does not record its group, so it is judged
    /// by the session's subscriptions at its end: a row whose topic matches one of its shared
    /// subscriptions and none of its plain ones came through that group (the first such
    /// group in filter order if several match); a row that also matches a plain subscription
    /// may be that subscription's own copy and ends with the session, as before. Called after
    /// the session left the tree and before its rows are deleted; reads the rows in batches.
    pub(super) fn move_stored_group_rows(
        &mut self,
        stored: StoredSessionId,
        subscriptions: &Subscriptions,
        now: Instant,
        out: &mut dyn Outbox,
    ) {
        let mut shared: Vec<(&str, &str)> = subscriptions
            .keys()
            .filter_map(|key| match classify(key) {
                FilterKind::Shared { filter, .. } => Some((key, filter)),
                FilterKind::Plain | FilterKind::Malformed(_) => None,
            })
            .collect();
        if shared.is_empty() {
            return;
        }
        shared.sort_unstable();
        let plain: Vec<&str> =
            subscriptions.keys().filter(|key| classify(key) == FilterKind::Plain).collect();
        let (mut moved, mut from) = (0usize, 0i64);
        loop {
            let rows = self.store.load_queue(stored, from, ROW_BATCH);
            let Some(last) = rows.last() else { break };
            from = last.seq + 1;
            let full_batch = rows.len() == ROW_BATCH;
            for row in rows {
                let topic = row.publish.topic.clone();
                if plain.iter().any(|f| topic::matches(f, &topic)) {
                    continue;
                }
                let Some((key, _)) = shared.iter().find(|(_, f)| topic::matches(f, &topic)) else {
                    continue;
                };
                let Some(share) = self.shared.lookup(key) else {
                    // The group went with this member: nobody to give it to.
                    self.stats.messages_dropped += 1;
                    continue;
                };
                let mut delivery = Delivery::from_stored(row.seq, row.publish, row.expires_at);
                delivery.seq = None;
                moved += 1;
                self.reroute_shared(share, delivery, now, out);
            }
            if !full_batch {
                break;
            }
        }
        if moved > 0 {
            log::info!(
                "{moved} queued group message(s) of an ended session moved to other members"
            );
        }
    }
}

/// Rows read at once when moving an ended member's group messages.
const ROW_BATCH: usize = 256;

/// FNV-1a: the sticky choice must be the same in every run and on every platform, which the
/// standard library's randomly keyed hasher is not.
struct StickyHasher(u64);

impl Default for StickyHasher {
    fn default() -> Self {
        StickyHasher(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for StickyHasher {
    fn finish(&self) -> u64 {
        // A final mix so close inputs spread over the whole range.
        let mut x = self.0;
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 33;
        x
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_follows_4_8_2() {
        assert_eq!(classify("a/b"), FilterKind::Plain);
        assert_eq!(classify("$share"), FilterKind::Plain);
        assert_eq!(classify("$sharex/g/t"), FilterKind::Plain);
        assert_eq!(classify("$share/g/t"), FilterKind::Shared { group: "g", filter: "t" });
        assert_eq!(classify("$share/g/a/+/#"), FilterKind::Shared { group: "g", filter: "a/+/#" });
        assert_eq!(classify("$share/g//"), FilterKind::Shared { group: "g", filter: "/" });
        assert!(matches!(classify("$share/g"), FilterKind::Malformed(_)));
        assert!(matches!(classify("$share/"), FilterKind::Malformed(_)));
        assert!(matches!(classify("$share//t"), FilterKind::Malformed(_)));
        assert!(matches!(classify("$share/g/"), FilterKind::Malformed(_)));
        assert!(matches!(classify("$share/+/t"), FilterKind::Malformed(_)));
        assert!(matches!(classify("$share/#/t"), FilterKind::Malformed(_)));
    }

    #[test]
    fn groups_are_counted_and_slots_reused() {
        let mut groups = SharedGroups::default();
        let a = groups.join("$share/g/t");
        assert_eq!(groups.join("$share/g/t"), a);
        let b = groups.join("$share/g/u");
        assert_ne!(a, b);
        assert_eq!(groups.len(), 2);
        groups.leave(a);
        assert_eq!(groups.lookup("$share/g/t"), Some(a));
        groups.leave(a);
        assert_eq!(groups.lookup("$share/g/t"), None);
        assert_eq!(groups.len(), 1);
        assert_eq!(groups.join("$share/h/t"), a, "the freed slot is reused");
    }

    #[test]
    fn sticky_hash_is_stable() {
        let mut h = StickyHasher::default();
        h.write(b"abc");
        // FNV-1a of "abc" is 0xe71fa2190541574b; the value below is it after the final mix.
        let mut x: u64 = 0xe71f_a219_0541_574b;
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 33;
        assert_eq!(h.finish(), x);
    }
}
