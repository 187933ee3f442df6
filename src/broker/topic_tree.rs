//! The subscription trie: topic filters, level by level, to the sessions subscribed to them.
//!
//! Owns nothing but filter levels and `(SessionId, options)` entries; the session table owns
//! the sessions. Matching follows one path per topic level (exact, `+`, `#`) and allocates
//! nothing in the steady state: results go into a caller-owned buffer that is reused for every
//! publish, and the walk's explicit stack is a scratch `Vec` kept here. Nodes live in an arena
//! (`Vec`) and are recycled lowest id first, so memory is bounded by the number of distinct
//! filter levels subscribed at once: free nodes at the arena's end are dropped, and an arena
//! left under a quarter full is reallocated smaller (as the slot tables in `slab.rs`).
//!
//! Must not recurse: the depth of a filter or a topic comes from a client, so every walk here
//! is a loop with an explicit stack, and a deep filter costs heap (bounded by
//! `mqtt.max_topic_levels` and `mqtt.max_subscription_bytes`), never call stack.

use std::collections::{BTreeSet, HashMap};
use std::num::NonZeroU32;

use super::session::SessionId;
use super::shared::ShareId;
use crate::codec::SubscriptionOptions;

/// One subscription as the router needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscriberEntry {
    pub session: SessionId,
    pub options: SubscriptionOptions,
    /// MQTT 5.0 Subscription Identifier given with the SUBSCRIBE, if any (never 0,
    /// MQTT 5.0 §3.8.2.1.2; `NonZeroU32` keeps the entry at 16 bytes and one inline in a node).
    pub subscription_id: Option<NonZeroU32>,
    /// Set for a member of a shared subscription group (`$share/GROUP/FILTER`, stored here
    /// under FILTER): the router gives each message to one member of the group, not to all.
    /// A session holds at most one entry per (filter, group), plain subscriptions being the
    /// group `None`.
    pub share: Option<ShareId>,
}

type NodeId = u32;
const ROOT: NodeId = 0;

#[derive(Debug, Default)]
struct Node {
    /// Child levels by name; `+` and `#` are stored as ordinary keys and also, because every
    /// publish looks them up at every level, in `plus` and `hash`.
    children: Children,
    /// Never the root (0), so a `NonZeroU32`: 4 bytes instead of 8 each.
    plus: Option<NonZeroU32>,
    hash: Option<NonZeroU32>,
    subscribers: Subscribers,
}

/// A node's subscribers. Most filters have one (a device's own `site/<id>/cmd`): it is held
/// inline, where a vector would cost a 32-byte allocation per filter.
#[derive(Debug, Default)]
enum Subscribers {
    #[default]
    None,
    One(SubscriberEntry),
    Many(Vec<SubscriberEntry>),
}

impl Subscribers {
    fn as_slice(&self) -> &[SubscriberEntry] {
        match self {
            Subscribers::None => &[],
            Subscribers::One(entry) => std::slice::from_ref(entry),
            Subscribers::Many(entries) => entries,
        }
    }

    fn is_empty(&self) -> bool {
        self.as_slice().is_empty()
    }

    /// `session`'s entry in group `share` (`None`: its plain subscription).
    fn find_mut(
        &mut self,
        session: SessionId,
        share: Option<ShareId>,
    ) -> Option<&mut SubscriberEntry> {
        let same = |e: &SubscriberEntry| e.session == session && e.share == share;
        match self {
            Subscribers::None => None,
            Subscribers::One(entry) => Some(entry).filter(|e| same(e)),
            Subscribers::Many(entries) => entries.iter_mut().find(|e| same(e)),
        }
    }

    /// Adds `entry`; the caller has checked that its (session, group) is absent.
    fn push(&mut self, entry: SubscriberEntry) {
        *self = match std::mem::take(self) {
            Subscribers::None => Subscribers::One(entry),
            Subscribers::One(first) => Subscribers::Many(vec![first, entry]),
            Subscribers::Many(mut entries) => {
                entries.push(entry);
                Subscribers::Many(entries)
            }
        };
    }

    /// Removes `session`'s entry in group `share`; returns whether there was one. A vector
    /// left with one entry goes back inline (and gives its memory back).
    fn remove(&mut self, session: SessionId, share: Option<ShareId>) -> bool {
        let same = |e: &SubscriberEntry| e.session == session && e.share == share;
        let (next, removed) = match std::mem::take(self) {
            Subscribers::None => (Subscribers::None, false),
            Subscribers::One(entry) if same(&entry) => (Subscribers::None, true),
            one @ Subscribers::One(_) => (one, false),
            Subscribers::Many(mut entries) => {
                let removed = match entries.iter().position(same) {
                    Some(pos) => {
                        entries.swap_remove(pos);
                        true
                    }
                    None => false,
                };
                let next = match entries.len() {
                    0 => Subscribers::None,
                    1 => entries.pop().map_or(Subscribers::None, Subscribers::One),
                    _ => Subscribers::Many(entries),
                };
                (next, removed)
            }
        };
        *self = next;
        removed
    }
}

/// A level's name as a child key. Most names are short (a device number, `cmd`, `temp`, the
/// digits of `dev/<n>/<k>`): up to `INLINE` bytes they are held in the key itself, where a
/// `Box<str>` would cost a 32-byte heap block for a name of one byte (glibc's smallest; issue
/// 16: 100,000 subscriptions `dev/<n>/<k>` took 35 B each for their names). 16 bytes either
/// way, so a child map's bucket does not grow.
#[derive(Debug, Clone)]
enum Level {
    /// The name's bytes, padded with zeros: valid UTF-8 without U+0000 (which no topic
    /// filter holds, MQTT-4.7.3-2; a name with one goes to the heap).
    Inline([u8; INLINE]),
    Heap(Box<str>),
}

const INLINE: usize = 8;

impl Level {
    fn new(name: &str) -> Level {
        let bytes = name.as_bytes();
        if bytes.len() <= INLINE && !bytes.contains(&0) {
            let mut inline = [0u8; INLINE];
            inline[..bytes.len()].copy_from_slice(bytes);
            Level::Inline(inline)
        } else {
            Level::Heap(name.into())
        }
    }

    fn as_bytes(&self) -> &[u8] {
        match self {
            Level::Inline(bytes) => {
                let len = bytes.iter().position(|&b| b == 0).unwrap_or(INLINE);
                bytes.get(..len).unwrap_or_default()
            }
            Level::Heap(name) => name.as_bytes(),
        }
    }

    fn as_str(&self) -> &str {
        // Inline bytes are a whole `&str` copied in `new`: always valid.
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }

    fn is(&self, name: &str) -> bool {
        self.as_bytes() == name.as_bytes()
    }
}

impl PartialEq for Level {
    fn eq(&self, other: &Level) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for Level {}

/// Hashes as the `str` it holds, so a map keyed by `Level` is searched with a `&str`.
impl std::hash::Hash for Level {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

impl std::borrow::Borrow<str> for Level {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

/// Children a node holds in a plain list before it switches to a hash map: a scan of up to
/// this many short names is as fast as hashing one, and a list of exactly the children it
/// has costs 24 bytes each where a map of 10 costs about 480 (16 buckets, its control bytes
/// and the boxed map; issue 16).
const FEW: usize = 16;

/// A node's children. Most nodes of a real tree have one child (`site/<id>/temp` chains) and
/// every level of a deep filter has one, so one child is held inline: no map, no hashing, one
/// comparison. A few (a device's own topics) are a list of exactly their number; more hash.
#[derive(Debug, Default)]
enum Children {
    #[default]
    None,
    One(Level, NodeId),
    /// 2..=`FEW` children, unordered.
    Few(Box<[(Level, NodeId)]>),
    /// Boxed: an inline `HashMap` (48 bytes) would make every node 24 bytes larger, and most
    /// nodes have one child or none. The extra pointer costs little: 80 instead of 75 ns per
    /// match in a micro-benchmark of 10,000 sessions' filters (82 with the recursive walk).
    #[allow(clippy::box_collection)]
    Many(Box<HashMap<Level, NodeId>>),
}

impl Children {
    fn get(&self, level: &str) -> Option<NodeId> {
        match self {
            Children::None => None,
            Children::One(name, id) => name.is(level).then_some(*id),
            Children::Few(list) => list.iter().find(|(name, _)| name.is(level)).map(|(_, id)| *id),
            Children::Many(map) => map.get(level).copied(),
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            Children::None => true,
            Children::One(..) | Children::Few(_) => false,
            Children::Many(map) => map.is_empty(),
        }
    }

    /// Adds `level -> id`; the caller has checked that `level` is absent.
    fn insert(&mut self, level: &str, id: NodeId) {
        let entry = (Level::new(level), id);
        *self = match std::mem::take(self) {
            Children::None => Children::One(entry.0, entry.1),
            Children::One(name, other) => Children::Few(Box::new([(name, other), entry])),
            Children::Few(list) if list.len() < FEW => {
                // Exactly one more: a list grows once per new child, never by doubling.
                let mut grown = Vec::with_capacity(list.len() + 1);
                grown.extend(list.into_vec());
                grown.push(entry);
                Children::Few(grown.into_boxed_slice())
            }
            Children::Few(list) => {
                let mut map = HashMap::with_capacity(list.len() + 1);
                map.extend(list.into_vec());
                map.insert(entry.0, entry.1);
                Children::Many(Box::new(map))
            }
            Children::Many(mut map) => {
                map.insert(entry.0, entry.1);
                Children::Many(map)
            }
        };
    }

    fn remove(&mut self, level: &str) {
        *self = match std::mem::take(self) {
            Children::None => Children::None,
            Children::One(name, _) if name.is(level) => Children::None,
            one @ Children::One(..) => one,
            Children::Few(list) => Children::from_list(
                list.into_vec().into_iter().filter(|(name, _)| !name.is(level)).collect(),
            ),
            Children::Many(mut map) => {
                map.remove(level);
                if map.len() <= FEW {
                    Children::from_list(map.drain().collect())
                } else {
                    super::disconnect::shrink_map(&mut map);
                    Children::Many(map)
                }
            }
        };
    }

    /// At most `FEW` children, in the smallest form that holds them.
    fn from_list(mut list: Vec<(Level, NodeId)>) -> Children {
        match list.len() {
            0 => Children::None,
            1 => match list.pop() {
                Some((name, id)) => Children::One(name, id),
                None => Children::None,
            },
            _ => Children::Few(list.into_boxed_slice()),
        }
    }
}

/// Arena slots kept however empty the tree gets.
const MIN_ARENA: usize = 64;

/// One pending step of a match: `node` is to be matched against the topic from byte `at` on.
#[derive(Debug, Clone, Copy)]
struct Step {
    node: NodeId,
    at: usize,
}

#[derive(Debug)]
pub struct TopicTree {
    nodes: Vec<Node>,
    /// Free arena slots below the last node in use; the lowest is reused first, so the
    /// arena's tail empties when subscriptions go.
    free: BTreeSet<NodeId>,
    subscription_count: usize,
    /// The explicit stack of `matches`, kept between calls so matching allocates nothing once
    /// it has seen the deepest topic (at most `max_topic_levels` deep in the broker).
    steps: Vec<Step>,
    /// The node path of `unsubscribe`, kept for the same reason.
    path: Vec<NodeId>,
}

impl Default for TopicTree {
    fn default() -> Self {
        TopicTree::new()
    }
}

impl TopicTree {
    pub fn new() -> TopicTree {
        TopicTree {
            nodes: vec![Node::default()],
            free: BTreeSet::new(),
            subscription_count: 0,
            steps: Vec::new(),
            path: Vec::new(),
        }
    }

    /// Whether some filter starts with the level `level` (e.g. `$SYS`): one look at the root.
    pub fn has_root_level(&self, level: &str) -> bool {
        self.nodes.first().is_some_and(|root| root.children.get(level).is_some())
    }

    /// Total subscriptions held (all sessions).
    pub fn len(&self) -> usize {
        self.subscription_count
    }

    /// Adds or replaces `entry.session`'s subscription to `filter` in `entry.share`'s group
    /// (MQTT-3.8.4-3: a repeated filter replaces the existing subscription). Returns true if
    /// it already existed.
    pub fn subscribe(&mut self, filter: &str, entry: SubscriberEntry) -> bool {
        let mut node = ROOT;
        for level in filter.split('/') {
            node = match self.child(node, level) {
                Some(child) => child,
                None => self.add_child(node, level),
            };
        }
        let subscribers = &mut self.nodes[node as usize].subscribers;
        match subscribers.find_mut(entry.session, entry.share) {
            Some(existing) => {
                *existing = entry;
                true
            }
            None => {
                subscribers.push(entry);
                self.subscription_count += 1;
                false
            }
        }
    }

    /// Removes `session`'s subscription to `filter` in group `share` (`None`: the plain one);
    /// returns whether one existed.
    pub fn unsubscribe(
        &mut self,
        filter: &str,
        session: SessionId,
        share: Option<ShareId>,
    ) -> bool {
        let mut path = std::mem::take(&mut self.path);
        path.clear();
        path.push(ROOT);
        let mut node = ROOT;
        let mut found = true;
        for level in filter.split('/') {
            match self.child(node, level) {
                Some(child) => {
                    node = child;
                    path.push(child);
                }
                None => {
                    found = false;
                    break;
                }
            }
        }
        let removed = found && self.remove_subscriber(node, session, share);
        if removed {
            self.prune(filter, &path);
        }
        self.path = path;
        removed
    }

    fn remove_subscriber(
        &mut self,
        node: NodeId,
        session: SessionId,
        share: Option<ShareId>,
    ) -> bool {
        if !self.nodes[node as usize].subscribers.remove(session, share) {
            return false;
        }
        self.subscription_count -= 1;
        true
    }

    /// Appends every subscription matching `topic` (a valid topic name) to `out`.
    /// A session subscribed through several filters appears several times.
    ///
    /// A depth-first walk with an explicit stack: each step looks at one node and one topic
    /// level, and pushes at most two steps for the next level (the exact child and `+`), so the
    /// stack holds at most two entries per level.
    pub fn matches(&mut self, topic: &str, out: &mut Vec<SubscriberEntry>) {
        // MQTT-4.7.2-1: filters starting with a wildcard do not match topics starting with `$`.
        let dollar = topic.starts_with('$');
        let mut steps = std::mem::take(&mut self.steps);
        steps.clear();
        steps.push(Step { node: ROOT, at: 0 });
        while let Some(Step { node, at }) = steps.pop() {
            let rest = topic.get(at..).unwrap_or_default();
            let (level, next) = match rest.find('/') {
                Some(i) => (rest.get(..i).unwrap_or_default(), Some(at + i + 1)),
                None => (rest, None),
            };
            // Only the root is ever matched from byte 0, so this is "first level of a `$` topic".
            let wildcards = !(dollar && at == 0);
            let here = &self.nodes[node as usize];
            if wildcards {
                // `#` matches this level and everything below it, including "nothing more" for
                // the parent (`a/#` matches `a`, handled when `next` was None one level up).
                if let Some(hash) = here.hash.map(NonZeroU32::get) {
                    out.extend_from_slice(self.nodes[hash as usize].subscribers.as_slice());
                }
            }
            let plus = if wildcards { here.plus.map(NonZeroU32::get) } else { None };
            if let Some(exact) = here.children.get(level) {
                self.visit(exact, next, &mut steps, out);
            }
            if let Some(plus) = plus {
                self.visit(plus, next, &mut steps, out);
            }
        }
        self.steps = steps;
    }

    /// One matching child: its subtree is matched from byte `next` of the topic on, or, on the
    /// topic's last level, its subscribers and those of its `#` child match.
    fn visit(
        &self,
        child: NodeId,
        next: Option<usize>,
        steps: &mut Vec<Step>,
        out: &mut Vec<SubscriberEntry>,
    ) {
        match next {
            Some(at) => steps.push(Step { node: child, at }),
            None => {
                let child_node = &self.nodes[child as usize];
                out.extend_from_slice(child_node.subscribers.as_slice());
                if let Some(hash) = child_node.hash.map(NonZeroU32::get) {
                    out.extend_from_slice(self.nodes[hash as usize].subscribers.as_slice());
                }
            }
        }
    }

    fn child(&self, node: NodeId, level: &str) -> Option<NodeId> {
        self.nodes[node as usize].children.get(level)
    }

    fn add_child(&mut self, parent: NodeId, level: &str) -> NodeId {
        let id = match self.free.pop_first() {
            Some(id) => {
                self.nodes[id as usize] = Node::default();
                id
            }
            None => {
                self.nodes.push(Node::default());
                (self.nodes.len() - 1) as NodeId
            }
        };
        let parent = &mut self.nodes[parent as usize];
        parent.children.insert(level, id);
        match level {
            "+" => parent.plus = NonZeroU32::new(id),
            "#" => parent.hash = NonZeroU32::new(id),
            _ => {}
        }
        id
    }

    /// Frees the nodes of `filter`'s `path` (the root, then one node per level), deepest first,
    /// while they hold neither subscribers nor children.
    fn prune(&mut self, filter: &str, path: &[NodeId]) {
        let mut levels = filter.rsplit('/');
        for pair in path.windows(2).rev() {
            let (parent, node) = match *pair {
                [parent, node] => (parent, node),
                _ => return,
            };
            let Some(level) = levels.next() else { return };
            let n = &self.nodes[node as usize];
            if !n.subscribers.is_empty() || !n.children.is_empty() {
                return;
            }
            let parent_node = &mut self.nodes[parent as usize];
            parent_node.children.remove(level);
            match level {
                "+" => parent_node.plus = None,
                "#" => parent_node.hash = None,
                _ => {}
            }
            self.nodes[node as usize] = Node::default();
            self.free.insert(node);
            self.trim_tail();
        }
    }

    /// Drops free slots at the arena's end, and reallocates an arena left under a quarter full.
    fn trim_tail(&mut self) {
        while self.free.last().is_some_and(|&last| last as usize + 1 == self.nodes.len()) {
            self.free.pop_last();
            self.nodes.pop();
        }
        if self.nodes.capacity() > MIN_ARENA && self.nodes.len() < self.nodes.capacity() / 4 {
            self.nodes.shrink_to((self.nodes.len() * 2).max(MIN_ARENA));
        }
    }

    /// Bytes of one arena slot, for the size test in `broker/tests.rs`.
    #[cfg(test)]
    pub fn node_size() -> usize {
        std::mem::size_of::<Node>()
    }

    /// Arena slots in use.
    #[cfg(test)]
    fn node_count(&self) -> usize {
        self.nodes.len() - self.free.len()
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::QoS;

    fn entry(session: u32) -> SubscriberEntry {
        SubscriberEntry {
            session: SessionId(session),
            options: SubscriptionOptions { qos: QoS::AtLeastOnce, ..Default::default() },
            subscription_id: None,
            share: None,
        }
    }

    fn matched(tree: &mut TopicTree, topic: &str) -> Vec<u32> {
        let mut out = Vec::new();
        tree.matches(topic, &mut out);
        let mut ids: Vec<u32> = out.iter().map(|e| e.session.0).collect();
        ids.sort_unstable();
        ids
    }

    #[test]
    fn wildcard_table() {
        let filters = [
            ("sport/tennis/player1", 1),
            ("sport/tennis/player1/#", 2),
            ("sport/#", 3),
            ("sport/+", 4),
            ("+/+", 5),
            ("/+", 6),
            ("#", 7),
            ("+", 8),
            ("$SYS/#", 9),
            ("+/monitor/Clients", 10),
            ("sport/+/player1", 11),
        ];
        let mut tree = TopicTree::new();
        for (f, id) in filters {
            tree.subscribe(f, entry(id));
        }
        assert_eq!(matched(&mut tree, "sport/tennis/player1"), vec![1, 2, 3, 7, 11]);
        // MQTT 4.7.1.2: `sport/#` also matches the parent `sport`.
        assert_eq!(matched(&mut tree, "sport"), vec![3, 7, 8]);
        assert_eq!(matched(&mut tree, "sport/"), vec![3, 4, 5, 7]);
        assert_eq!(matched(&mut tree, "/finance"), vec![5, 6, 7]);
        // MQTT-4.7.2-1: no leading wildcard matches a `$` topic.
        assert_eq!(matched(&mut tree, "$SYS/monitor/Clients"), vec![9]);
        assert_eq!(matched(&mut tree, "$SYS"), vec![9]);
        assert_eq!(matched(&mut tree, "a/b/c"), vec![7]);
    }

    #[test]
    fn resubscribe_replaces_and_unsubscribe_prunes() {
        let mut tree = TopicTree::new();
        assert!(!tree.subscribe("a/b/c", entry(1)));
        assert!(tree.subscribe("a/b/c", entry(1)));
        assert_eq!(tree.len(), 1);
        tree.subscribe("a/+", entry(2));
        assert_eq!(tree.node_count(), 5); // root, a, b, c, +
        assert!(tree.unsubscribe("a/b/c", SessionId(1), None));
        assert!(!tree.unsubscribe("a/b/c", SessionId(1), None));
        assert_eq!(tree.node_count(), 3); // root, a, +
        assert!(tree.unsubscribe("a/+", SessionId(2), None));
        assert_eq!(tree.node_count(), 1);
        assert_eq!(tree.len(), 0);
        // The freed nodes were the arena's tail: dropped, and the new ones take their ids.
        assert_eq!(tree.nodes.len(), 1);
        tree.subscribe("x/y", entry(3));
        assert_eq!(tree.nodes.len(), 3);
        assert_eq!(matched(&mut tree, "x/y"), vec![3]);
    }

    #[test]
    fn the_arena_reuses_low_slots_and_shrinks_when_subscriptions_go() {
        let mut tree = TopicTree::new();
        for n in 0..10_000u32 {
            tree.subscribe(&format!("dev/{n}/cmd"), entry(n));
        }
        assert_eq!(tree.node_count(), 1 + 1 + 2 * 10_000);
        let grown = tree.nodes.capacity();
        // A hole in the middle is filled before the arena grows.
        assert!(tree.unsubscribe("dev/5/cmd", SessionId(5), None));
        let len = tree.nodes.len();
        tree.subscribe("other/x", entry(1));
        assert_eq!(tree.nodes.len(), len, "the two freed slots were reused");
        assert!(tree.unsubscribe("other/x", SessionId(1), None));
        for n in (0..10_000u32).filter(|&n| n != 5) {
            assert!(tree.unsubscribe(&format!("dev/{n}/cmd"), SessionId(n), None));
        }
        assert_eq!(tree.node_count(), 1);
        assert_eq!(tree.nodes.len(), 1);
        assert!(tree.free.is_empty());
        assert!(tree.nodes.capacity() <= MIN_ARENA.max(grown / 4), "{}", tree.nodes.capacity());
        tree.subscribe("dev/1/cmd", entry(1));
        assert_eq!(matched(&mut tree, "dev/1/cmd"), vec![1]);
    }

    #[test]
    fn empty_levels() {
        let mut tree = TopicTree::new();
        tree.subscribe("a//b", entry(1));
        tree.subscribe("a/+/b", entry(2));
        tree.subscribe("+/+/+", entry(3));
        assert_eq!(matched(&mut tree, "a//b"), vec![1, 2, 3]);
        assert_eq!(matched(&mut tree, "a/b"), Vec::<u32>::new());
    }

    #[test]
    fn pruned_wildcards_are_forgotten() {
        let mut tree = TopicTree::new();
        tree.subscribe("a/+", entry(1));
        tree.subscribe("a/#", entry(2));
        assert_eq!(matched(&mut tree, "a/c"), vec![1, 2]);
        assert!(tree.unsubscribe("a/+", SessionId(1), None));
        assert!(tree.unsubscribe("a/#", SessionId(2), None));
        // The freed `+` and `#` nodes are reused for literal levels; stale wildcard links
        // would make them match everything under `a`.
        tree.subscribe("a/b", entry(3));
        tree.subscribe("a/d", entry(4));
        assert_eq!(matched(&mut tree, "a/c"), Vec::<u32>::new());
        assert_eq!(matched(&mut tree, "a/b"), vec![3]);
        tree.subscribe("a/#", entry(5));
        assert_eq!(matched(&mut tree, "a/c"), vec![5]);
        assert_eq!(matched(&mut tree, "a"), vec![5]);
    }

    /// Runs `f` on a thread whose stack is far too small for one frame per level of a deep
    /// topic: a recursive walk overflows it (and aborts the test binary), a loop does not.
    fn on_small_stack(f: impl FnOnce() + Send + 'static) {
        std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(f)
            .expect("spawn test thread")
            .join()
            .expect("test thread panicked");
    }

    #[test]
    fn a_100000_level_filter_matches_and_unsubscribes_without_recursion() {
        on_small_stack(|| {
            let levels = 100_000;
            let empty_levels = "/".repeat(levels - 1); // 100,000 empty levels
            let named: String = (0..levels).map(|i| format!("l{i}")).collect::<Vec<_>>().join("/");
            let mut plus_filter = named.clone();
            plus_filter.replace_range(..2, "+"); // "+/l1/l2/..."
            let mut tree = TopicTree::new();
            tree.subscribe(&empty_levels, entry(1));
            tree.subscribe(&named, entry(2));
            tree.subscribe(&plus_filter, entry(3));
            tree.subscribe(&format!("{empty_levels}/#"), entry(4));
            assert_eq!(tree.node_count(), 1 + levels + levels + 1 + (levels - 1) + 1);
            assert_eq!(matched(&mut tree, &empty_levels), vec![1, 4]);
            assert_eq!(matched(&mut tree, &named), vec![2, 3]);
            assert_eq!(matched(&mut tree, &format!("{named}/more")), Vec::<u32>::new());
            assert_eq!(matched(&mut tree, &format!("{empty_levels}/x/y")), vec![4]);
            assert!(tree.unsubscribe(&empty_levels, SessionId(1), None));
            assert!(tree.unsubscribe(&named, SessionId(2), None));
            assert!(tree.unsubscribe(&plus_filter, SessionId(3), None));
            assert!(tree.unsubscribe(&format!("{empty_levels}/#"), SessionId(4), None));
            assert_eq!(tree.node_count(), 1);
            assert_eq!(tree.len(), 0);
        });
    }

    #[test]
    fn matching_reuses_its_stack() {
        let mut tree = TopicTree::new();
        tree.subscribe("a/+/c/#", entry(1));
        tree.subscribe("a/b/c/d", entry(2));
        let mut out = Vec::with_capacity(8);
        tree.matches("a/b/c/d", &mut out);
        let stack = (tree.steps.as_ptr(), tree.steps.capacity());
        for _ in 0..100 {
            out.clear();
            tree.matches("a/b/c/d", &mut out);
        }
        assert_eq!((tree.steps.as_ptr(), tree.steps.capacity()), stack);
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn agrees_with_the_codec_matcher() {
        let filters = [
            "a", "a/b", "a/+", "a/#", "+", "#", "+/+", "+/b/#", "/", "/+", "//", "+/+/+", "a/+/c",
            "a/b/c/#", "$SYS/#", "$SYS/+", "+/b", "a//c",
        ];
        let topics = [
            "a", "a/b", "a/b/c", "a/b/c/d", "b", "/", "//", "/a", "a/", "a//c", "$SYS", "$SYS/x",
            "$SYS/x/y", "x/b", "x/b/y",
        ];
        let mut tree = TopicTree::new();
        for (i, f) in filters.iter().enumerate() {
            tree.subscribe(f, entry(i as u32));
        }
        for topic in topics {
            let mut expected: Vec<u32> = (0..filters.len() as u32)
                .filter(|&i| crate::codec::topic::matches(filters[i as usize], topic))
                .collect();
            expected.sort_unstable();
            assert_eq!(matched(&mut tree, topic), expected, "topic {topic:?}");
        }
    }

    #[test]
    fn children_go_from_one_to_many_and_back() {
        let mut tree = TopicTree::new();
        tree.subscribe("a/x", entry(1));
        tree.subscribe("a/y", entry(2));
        tree.subscribe("a/z", entry(3));
        assert_eq!(matched(&mut tree, "a/y"), vec![2]);
        assert!(tree.unsubscribe("a/x", SessionId(1), None));
        assert!(tree.unsubscribe("a/z", SessionId(3), None));
        assert!(matches!(tree.nodes[1].children, Children::One(..)));
        assert_eq!(matched(&mut tree, "a/y"), vec![2]);
        assert_eq!(matched(&mut tree, "a/x"), Vec::<u32>::new());
        assert!(!tree.unsubscribe("a/x", SessionId(1), None));
        assert!(tree.unsubscribe("a/y", SessionId(2), None));
        assert!(matches!(tree.nodes[ROOT as usize].children, Children::None));
        assert_eq!(tree.node_count(), 1);
    }

    #[test]
    fn level_names_short_inline_long_on_the_heap() {
        for name in ["", "0", "cmd", "12345678", "é", "日本"] {
            let level = Level::new(name);
            assert!(matches!(level, Level::Inline(_)), "{name:?}");
            assert_eq!(level.as_str(), name);
            assert!(level.is(name));
        }
        // Over 8 bytes (a 3-byte character makes "日本語" 9), or a NUL (never in a valid
        // filter, but then the padding could not tell where the name ends).
        for name in ["123456789", "日本語", "a\0"] {
            let level = Level::new(name);
            assert!(matches!(level, Level::Heap(_)), "{name:?}");
            assert_eq!(level.as_str(), name);
        }
        assert!(!Level::new("ab").is("abc"));
        assert!(!Level::new("abc").is("ab"));
        assert!(!Level::new("").is("a"));
        assert!(Level::new("a") == Level::new("a"));
        assert!(Level::new("a") != Level::new("a\0"));
        // A map keyed by levels is searched with the `&str`, hashed alike.
        let mut map = HashMap::new();
        map.insert(Level::new("short"), 1);
        map.insert(Level::new("a-longer-name"), 2);
        assert_eq!(map.get("short"), Some(&1));
        assert_eq!(map.get("a-longer-name"), Some(&2));
        assert_eq!(map.get("shor"), None);
    }

    #[test]
    fn children_grow_from_a_list_to_a_map_and_shrink_back() {
        let mut tree = TopicTree::new();
        let count = FEW as u32 + 4;
        // Short and long names under one parent.
        let name = |i: u32| if i % 2 == 0 { format!("d/{i}") } else { format!("d/long-name-{i}") };
        for i in 0..count {
            tree.subscribe(&name(i), entry(i));
            let d = &tree.nodes[1].children;
            match i as usize + 1 {
                1 => assert!(matches!(d, Children::One(..))),
                n if n <= FEW => assert!(matches!(d, Children::Few(l) if l.len() == n)),
                _ => assert!(matches!(d, Children::Many(_))),
            }
            for j in 0..=i {
                assert_eq!(matched(&mut tree, &name(j)), vec![j]);
            }
            assert_eq!(matched(&mut tree, &format!("d/{}", i + 1)), Vec::<u32>::new());
        }
        for i in 0..count {
            assert!(tree.unsubscribe(&name(i), SessionId(i), None));
            let left = (count - i - 1) as usize;
            if left == 0 {
                // `d` went too, and the arena's free tail with it.
                assert!(matches!(tree.nodes[ROOT as usize].children, Children::None));
                assert_eq!(tree.nodes.len(), 1);
                continue;
            }
            let d = &tree.nodes[1].children;
            match left {
                1 => assert!(matches!(d, Children::One(..))),
                n if n <= FEW => assert!(matches!(d, Children::Few(l) if l.len() == n)),
                _ => assert!(matches!(d, Children::Many(_))),
            }
            for j in i + 1..count {
                assert_eq!(matched(&mut tree, &name(j)), vec![j]);
            }
            assert_eq!(matched(&mut tree, &name(i)), Vec::<u32>::new());
        }
        assert_eq!(tree.node_count(), 1);
    }

    #[test]
    fn a_shared_prefix_is_kept_while_used() {
        let mut tree = TopicTree::new();
        tree.subscribe("a/b/c", entry(1));
        tree.subscribe("a/b", entry(2));
        assert!(tree.unsubscribe("a/b/c", SessionId(1), None));
        assert_eq!(tree.node_count(), 3); // root, a, b
        assert_eq!(matched(&mut tree, "a/b"), vec![2]);
        // Another session's entry on the same filter keeps the node.
        tree.subscribe("a/b", entry(3));
        assert!(tree.unsubscribe("a/b", SessionId(2), None));
        assert_eq!(matched(&mut tree, "a/b"), vec![3]);
        assert_eq!(tree.node_count(), 3);
    }
}
