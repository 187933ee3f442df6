//! Retained messages (MQTT 3.3.1.3): one per topic, replaced by a newer one, deleted by an
//! empty payload, bounded by `max_retained_messages` and `max_retained_bytes`.

use std::collections::HashMap;
use std::rc::Rc;
use std::time::Instant;

use super::message::Message;
use crate::codec::topic;

/// What happened to a RETAIN=1 publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetainOutcome {
    Stored,
    Replaced,
    Deleted,
    /// Empty payload for a topic with nothing retained.
    NothingToDelete,
    /// Over `max_retained_messages` or `max_retained_bytes`: not stored (forwarded anyway).
    OverLimit,
}

#[derive(Debug)]
pub struct RetainedStore {
    messages: HashMap<Rc<str>, Rc<Message>>,
    bytes: usize,
    max_messages: usize,
    max_bytes: usize,
}

impl RetainedStore {
    pub fn new(max_messages: usize, max_bytes: usize) -> RetainedStore {
        RetainedStore { messages: HashMap::new(), bytes: 0, max_messages, max_bytes }
    }

    pub fn len(&self) -> usize {
        self.messages.len()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Applies a RETAIN=1 publish (MQTT-3.3.1-5, -6, -7, -10, -11).
    pub fn apply(&mut self, message: &Rc<Message>) -> RetainOutcome {
        if message.payload.is_empty() {
            return match self.messages.remove(&message.topic) {
                Some(old) => {
                    self.bytes -= old.size();
                    RetainOutcome::Deleted
                }
                None => RetainOutcome::NothingToDelete,
            };
        }
        let old_size = self.messages.get(&message.topic).map(|m| m.size());
        let count_after = self.messages.len() + usize::from(old_size.is_none());
        let bytes_after = self.bytes - old_size.unwrap_or(0) + message.size();
        if count_after > self.max_messages || bytes_after > self.max_bytes {
            return RetainOutcome::OverLimit;
        }
        self.bytes = bytes_after;
        self.messages.insert(message.topic.clone(), message.clone());
        if old_size.is_some() {
            RetainOutcome::Replaced
        } else {
            RetainOutcome::Stored
        }
    }

    /// Retained messages whose topic matches `filter`, expired ones dropped on the way
    /// (MQTT-3.3.2-5 for retained copies).
    pub fn matching(&mut self, filter: &str, now: Instant) -> Vec<Rc<Message>> {
        self.messages.retain(|_, m| !m.is_expired(now));
        self.bytes = self.messages.values().map(|m| m.size()).sum();
        let mut found: Vec<Rc<Message>> =
            self.messages.values().filter(|m| topic::matches(filter, &m.topic)).cloned().collect();
        // Deterministic order for clients and tests.
        found.sort_by(|a, b| a.topic.cmp(&b.topic));
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::QoS;

    fn msg(topic: &str, payload: &[u8]) -> Rc<Message> {
        Rc::new(Message {
            topic: topic.into(),
            payload: payload.into(),
            qos: QoS::AtMostOnce,
            retain: true,
            properties: None,
            expires_at: None,
        })
    }

    #[test]
    fn store_replace_delete() {
        let now = Instant::now();
        let mut store = RetainedStore::new(10, 1000);
        assert_eq!(store.apply(&msg("a/b", b"1")), RetainOutcome::Stored);
        assert_eq!(store.apply(&msg("a/b", b"22")), RetainOutcome::Replaced);
        assert_eq!(store.bytes(), 5);
        assert_eq!(store.apply(&msg("a/c", b"3")), RetainOutcome::Stored);
        let found = store.matching("a/+", now);
        assert_eq!(found.len(), 2);
        assert_eq!(&*found[0].payload, b"22");
        assert_eq!(store.apply(&msg("a/b", b"")), RetainOutcome::Deleted);
        assert_eq!(store.apply(&msg("a/b", b"")), RetainOutcome::NothingToDelete);
        assert_eq!(store.len(), 1);
        assert_eq!(store.bytes(), 4);
    }

    #[test]
    fn limits() {
        let mut store = RetainedStore::new(1, 10);
        assert_eq!(store.apply(&msg("a", b"1")), RetainOutcome::Stored);
        assert_eq!(store.apply(&msg("b", b"1")), RetainOutcome::OverLimit);
        assert_eq!(store.apply(&msg("a", b"0123456789")), RetainOutcome::OverLimit);
        assert_eq!(store.apply(&msg("a", b"012345678")), RetainOutcome::Replaced);
    }
}
