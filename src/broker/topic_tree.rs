//! The subscription trie: topic filters, level by level, to the sessions subscribed to them.
//!
//! Owns nothing but filter levels and `(SessionId, options)` entries; the session table owns
//! the sessions. Matching walks one path per topic level (exact, `+`, `#`) and allocates
//! nothing: results go into a caller-owned buffer that is reused for every publish. Nodes live
//! in an arena (`Vec`) and are recycled through a free list, so memory is bounded by the number
//! of distinct filter levels ever subscribed at once.

use std::collections::HashMap;

use super::session::SessionId;
use crate::codec::SubscriptionOptions;

/// One subscription as the router needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscriberEntry {
    pub session: SessionId,
    pub options: SubscriptionOptions,
    /// MQTT 5.0 Subscription Identifier given with the SUBSCRIBE, if any.
    pub subscription_id: Option<u32>,
}

type NodeId = u32;
const ROOT: NodeId = 0;

#[derive(Debug, Default)]
struct Node {
    /// Child levels by name; `+` and `#` are stored as ordinary keys and also, because every
    /// publish looks them up at every level, in `plus` and `hash`.
    children: HashMap<Box<str>, NodeId>,
    plus: Option<NodeId>,
    hash: Option<NodeId>,
    subscribers: Vec<SubscriberEntry>,
    parent: NodeId,
    /// The level name under which the parent holds this node (for pruning).
    level: Box<str>,
}

#[derive(Debug)]
pub struct TopicTree {
    nodes: Vec<Node>,
    free: Vec<NodeId>,
    subscription_count: usize,
}

impl Default for TopicTree {
    fn default() -> Self {
        TopicTree::new()
    }
}

impl TopicTree {
    pub fn new() -> TopicTree {
        TopicTree { nodes: vec![Node::default()], free: Vec::new(), subscription_count: 0 }
    }

    /// Total subscriptions held (all sessions).
    pub fn len(&self) -> usize {
        self.subscription_count
    }

    /// Adds or replaces `entry.session`'s subscription to `filter` (MQTT-3.8.4-3: a repeated
    /// filter replaces the existing subscription). Returns true if it already existed.
    pub fn subscribe(&mut self, filter: &str, entry: SubscriberEntry) -> bool {
        let mut node = ROOT;
        for level in filter.split('/') {
            node = match self.child(node, level) {
                Some(child) => child,
                None => self.add_child(node, level),
            };
        }
        let subscribers = &mut self.nodes[node as usize].subscribers;
        match subscribers.iter_mut().find(|e| e.session == entry.session) {
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

    /// Removes `session`'s subscription to `filter`; returns whether one existed.
    pub fn unsubscribe(&mut self, filter: &str, session: SessionId) -> bool {
        let mut node = ROOT;
        for level in filter.split('/') {
            match self.child(node, level) {
                Some(child) => node = child,
                None => return false,
            }
        }
        let subscribers = &mut self.nodes[node as usize].subscribers;
        let Some(pos) = subscribers.iter().position(|e| e.session == session) else {
            return false;
        };
        subscribers.swap_remove(pos);
        self.subscription_count -= 1;
        self.prune(node);
        true
    }

    /// Appends every subscription matching `topic` (a valid topic name) to `out`.
    /// A session subscribed through several filters appears several times.
    pub fn matches(&self, topic: &str, out: &mut Vec<SubscriberEntry>) {
        // MQTT-4.7.2-1: filters starting with a wildcard do not match topics starting with `$`.
        let dollar = topic.starts_with('$');
        self.walk(ROOT, topic, !dollar, out);
    }

    fn walk(&self, node: NodeId, rest: &str, wildcards: bool, out: &mut Vec<SubscriberEntry>) {
        let (level, tail) = match rest.find('/') {
            Some(i) => (&rest[..i], Some(&rest[i + 1..])),
            None => (rest, None),
        };
        let here = &self.nodes[node as usize];
        if wildcards {
            // `#` matches this level and everything below it, including "nothing more" for
            // the parent (`a/#` matches `a`, handled when `tail` was None one level up).
            if let Some(hash) = here.hash {
                out.extend_from_slice(&self.nodes[hash as usize].subscribers);
            }
        }
        let mut visit = |child: NodeId| {
            let child_node = &self.nodes[child as usize];
            match tail {
                Some(tail) => self.walk(child, tail, true, out),
                None => {
                    out.extend_from_slice(&child_node.subscribers);
                    if let Some(hash) = child_node.hash {
                        out.extend_from_slice(&self.nodes[hash as usize].subscribers);
                    }
                }
            }
        };
        if let Some(&exact) = here.children.get(level) {
            visit(exact);
        }
        if wildcards {
            if let Some(plus) = here.plus {
                visit(plus);
            }
        }
    }

    fn child(&self, node: NodeId, level: &str) -> Option<NodeId> {
        self.nodes[node as usize].children.get(level).copied()
    }

    fn add_child(&mut self, parent: NodeId, level: &str) -> NodeId {
        let fresh = Node { parent, level: level.into(), ..Node::default() };
        let id = match self.free.pop() {
            Some(id) => {
                self.nodes[id as usize] = fresh;
                id
            }
            None => {
                self.nodes.push(fresh);
                (self.nodes.len() - 1) as NodeId
            }
        };
        let parent = &mut self.nodes[parent as usize];
        parent.children.insert(level.into(), id);
        match level {
            "+" => parent.plus = Some(id),
            "#" => parent.hash = Some(id),
            _ => {}
        }
        id
    }

    /// Frees `node` and its ancestors while they hold neither subscribers nor children.
    fn prune(&mut self, mut node: NodeId) {
        while node != ROOT {
            let n = &self.nodes[node as usize];
            if !n.subscribers.is_empty() || !n.children.is_empty() {
                return;
            }
            let parent = n.parent;
            let level = std::mem::take(&mut self.nodes[node as usize].level);
            let parent_node = &mut self.nodes[parent as usize];
            parent_node.children.remove(&level);
            match &*level {
                "+" => parent_node.plus = None,
                "#" => parent_node.hash = None,
                _ => {}
            }
            self.nodes[node as usize] = Node::default();
            self.free.push(node);
            node = parent;
        }
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
        }
    }

    fn matched(tree: &TopicTree, topic: &str) -> Vec<u32> {
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
        assert_eq!(matched(&tree, "sport/tennis/player1"), vec![1, 2, 3, 7, 11]);
        // MQTT 4.7.1.2: `sport/#` also matches the parent `sport`.
        assert_eq!(matched(&tree, "sport"), vec![3, 7, 8]);
        assert_eq!(matched(&tree, "sport/"), vec![3, 4, 5, 7]);
        assert_eq!(matched(&tree, "/finance"), vec![5, 6, 7]);
        // MQTT-4.7.2-1: no leading wildcard matches a `$` topic.
        assert_eq!(matched(&tree, "$SYS/monitor/Clients"), vec![9]);
        assert_eq!(matched(&tree, "$SYS"), vec![9]);
        assert_eq!(matched(&tree, "a/b/c"), vec![7]);
    }

    #[test]
    fn resubscribe_replaces_and_unsubscribe_prunes() {
        let mut tree = TopicTree::new();
        assert!(!tree.subscribe("a/b/c", entry(1)));
        assert!(tree.subscribe("a/b/c", entry(1)));
        assert_eq!(tree.len(), 1);
        tree.subscribe("a/+", entry(2));
        assert_eq!(tree.node_count(), 5); // root, a, b, c, +
        assert!(tree.unsubscribe("a/b/c", SessionId(1)));
        assert!(!tree.unsubscribe("a/b/c", SessionId(1)));
        assert_eq!(tree.node_count(), 3); // root, a, +
        assert!(tree.unsubscribe("a/+", SessionId(2)));
        assert_eq!(tree.node_count(), 1);
        assert_eq!(tree.len(), 0);
        // Freed nodes are reused.
        tree.subscribe("x/y", entry(3));
        assert_eq!(tree.nodes.len(), 5);
        assert_eq!(matched(&tree, "x/y"), vec![3]);
    }

    #[test]
    fn empty_levels() {
        let mut tree = TopicTree::new();
        tree.subscribe("a//b", entry(1));
        tree.subscribe("a/+/b", entry(2));
        tree.subscribe("+/+/+", entry(3));
        assert_eq!(matched(&tree, "a//b"), vec![1, 2, 3]);
        assert_eq!(matched(&tree, "a/b"), Vec::<u32>::new());
    }

    #[test]
    fn pruned_wildcards_are_forgotten() {
        let mut tree = TopicTree::new();
        tree.subscribe("a/+", entry(1));
        tree.subscribe("a/#", entry(2));
        assert_eq!(matched(&tree, "a/c"), vec![1, 2]);
        assert!(tree.unsubscribe("a/+", SessionId(1)));
        assert!(tree.unsubscribe("a/#", SessionId(2)));
        // The freed `+` and `#` nodes are reused for literal levels; stale wildcard links
        // would make them match everything under `a`.
        tree.subscribe("a/b", entry(3));
        tree.subscribe("a/d", entry(4));
        assert_eq!(matched(&tree, "a/c"), Vec::<u32>::new());
        assert_eq!(matched(&tree, "a/b"), vec![3]);
        tree.subscribe("a/#", entry(5));
        assert_eq!(matched(&tree, "a/c"), vec![5]);
        assert_eq!(matched(&tree, "a"), vec![5]);
    }
}
