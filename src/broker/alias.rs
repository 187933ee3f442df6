//! Topic aliases the broker assigns on the PUBLISH packets it sends to an MQTT 5.0 client
//! (§3.3.2.3.4), when the client announced a Topic Alias Maximum and
//! `mqtt.outbound_topic_alias = "lru"`: the first PUBLISH on a topic carries the topic and a
//! new alias, later ones an empty topic and the alias. When every alias is taken, the least
//! recently used one is given to the new topic (sent with the topic, which re-maps it).
//!
//! Contract: one table per connection, created at CONNECT and dropped with the connection, so
//! a reconnecting client (persistent session or not) starts with none (MQTT-3.3.2-7: aliases
//! belong to the Network Connection). The alias of a PUBLISH is decided when it is sent, never
//! stored: [`OutboundAliases::plan`] says what the packet should carry, and only a packet that
//! was really queued for the client is [`OutboundAliases::commit`]ted — a PUBLISH withheld
//! for the client's Maximum Packet Size must not leave the table believing the client knows a
//! mapping it never saw. Bounded: at most min(client's maximum, `mqtt.max_topic_alias`) topics,
//! each an `Rc` of a routed message's topic (no copy).

use std::collections::HashMap;
use std::rc::Rc;

/// What the next PUBLISH on a topic carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AliasPlan {
    /// The client knows this alias for the topic: empty topic and the alias.
    Known(u16),
    /// The topic and this alias (a free one, or the least recently used one re-mapped).
    Fresh(u16),
}

#[derive(Debug)]
pub struct OutboundAliases {
    /// Index = alias - 1: the topic and when it was last sent.
    slots: Vec<(Rc<str>, u64)>,
    by_topic: HashMap<Rc<str>, u16>,
    max: u16,
    clock: u64,
}

impl OutboundAliases {
    /// A table of at most `max` (> 0) aliases.
    pub fn new(max: u16) -> OutboundAliases {
        OutboundAliases { slots: Vec::new(), by_topic: HashMap::new(), max, clock: 0 }
    }

    /// The alias the next PUBLISH on `topic` should use; `None` only if the table is empty
    /// and may hold nothing (`max` 0).
    pub fn plan(&self, topic: &str) -> Option<AliasPlan> {
        if let Some(&alias) = self.by_topic.get(topic) {
            return Some(AliasPlan::Known(alias));
        }
        if self.slots.len() < usize::from(self.max) {
            return u16::try_from(self.slots.len() + 1).ok().map(AliasPlan::Fresh);
        }
        // Full: the least recently used. A scan, as replacing is the rare case once a
        // client's topics fit (and `max` is bounded by `mqtt.max_topic_alias`).
        let (index, _) = self.slots.iter().enumerate().min_by_key(|(_, (_, used))| *used)?;
        u16::try_from(index + 1).ok().map(AliasPlan::Fresh)
    }

    /// Records that a PUBLISH on `topic` carrying `plan` was sent.
    pub fn commit(&mut self, topic: &Rc<str>, plan: AliasPlan) {
        self.clock += 1;
        let (AliasPlan::Known(alias) | AliasPlan::Fresh(alias)) = plan;
        let index = usize::from(alias).saturating_sub(1);
        match plan {
            AliasPlan::Known(_) => {
                if let Some(slot) = self.slots.get_mut(index) {
                    slot.1 = self.clock;
                }
            }
            AliasPlan::Fresh(_) => {
                if let Some(slot) = self.slots.get_mut(index) {
                    let old = std::mem::replace(slot, (topic.clone(), self.clock));
                    self.by_topic.remove(&old.0);
                } else if index == self.slots.len() {
                    self.slots.push((topic.clone(), self.clock));
                } else {
                    return;
                }
                self.by_topic.insert(topic.clone(), alias);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send(table: &mut OutboundAliases, topic: &str) -> AliasPlan {
        let topic: Rc<str> = Rc::from(topic);
        let plan = table.plan(&topic).expect("max > 0");
        table.commit(&topic, plan);
        plan
    }

    #[test]
    fn topics_get_aliases_then_reuse_them() {
        let mut t = OutboundAliases::new(2);
        assert_eq!(send(&mut t, "a"), AliasPlan::Fresh(1));
        assert_eq!(send(&mut t, "b"), AliasPlan::Fresh(2));
        assert_eq!(send(&mut t, "a"), AliasPlan::Known(1));
        assert_eq!(send(&mut t, "b"), AliasPlan::Known(2));
    }

    #[test]
    fn the_least_recently_used_alias_is_replaced_when_full() {
        let mut t = OutboundAliases::new(2);
        send(&mut t, "a");
        send(&mut t, "b");
        send(&mut t, "a"); // b is now the least recently used
        assert_eq!(send(&mut t, "c"), AliasPlan::Fresh(2));
        assert_eq!(send(&mut t, "b"), AliasPlan::Fresh(1), "a (alias 1) was older than c");
        assert_eq!(send(&mut t, "c"), AliasPlan::Known(2));
        assert_eq!(send(&mut t, "b"), AliasPlan::Known(1));
        assert_eq!(t.by_topic.len(), 2);
    }

    #[test]
    fn an_uncommitted_plan_changes_nothing() {
        let mut t = OutboundAliases::new(1);
        send(&mut t, "a");
        // "b" would take alias 1, but its PUBLISH was withheld: "a" keeps it.
        assert_eq!(t.plan("b"), Some(AliasPlan::Fresh(1)));
        assert_eq!(send(&mut t, "a"), AliasPlan::Known(1));
    }
}
