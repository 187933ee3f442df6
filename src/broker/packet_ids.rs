//! A set of packet ids that costs one pointer in its owner while empty: the inbound QoS 2
//! ids a session has answered with PUBREC and not yet seen released (MQTT 4.3.3).
//!
//! Why: every session holds one and almost every one is empty (a QoS 2 exchange lasts one
//! round trip). A `BTreeSet` is 24 bytes inline, this is 8; a set in use costs one more
//! allocation of 24 bytes, given back when it empties.
//!
//! Contract: reads go through `Deref` to a `BTreeSet` (an empty shared one while empty);
//! `insert` and `remove` are forwarded. Nothing here reads input.

use std::collections::BTreeSet;
use std::ops::Deref;

#[derive(Debug, Default)]
// Boxed on purpose: the box is the one pointer an empty set costs (see above).
#[allow(clippy::box_collection)]
pub struct PacketIds(Option<Box<BTreeSet<u16>>>);

const EMPTY: &BTreeSet<u16> = &BTreeSet::new();

impl PacketIds {
    /// Whether `id` was not there.
    pub fn insert(&mut self, id: u16) -> bool {
        self.0.get_or_insert_with(Box::default).insert(id)
    }

    /// Whether `id` was there.
    pub fn remove(&mut self, id: &u16) -> bool {
        let Some(set) = self.0.as_mut() else { return false };
        let removed = set.remove(id);
        if set.is_empty() {
            self.0 = None;
        }
        removed
    }
}

impl Deref for PacketIds {
    type Target = BTreeSet<u16>;

    fn deref(&self) -> &BTreeSet<u16> {
        self.0.as_deref().unwrap_or(EMPTY)
    }
}

impl FromIterator<u16> for PacketIds {
    fn from_iter<I: IntoIterator<Item = u16>>(ids: I) -> Self {
        let set: BTreeSet<u16> = ids.into_iter().collect();
        PacketIds((!set.is_empty()).then(|| Box::new(set)))
    }
}

impl IntoIterator for PacketIds {
    type Item = u16;
    type IntoIter = std::collections::btree_set::IntoIter<u16>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.map(|s| *s).unwrap_or_default().into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pointer_while_empty_a_set_while_used() {
        assert_eq!(std::mem::size_of::<PacketIds>(), std::mem::size_of::<usize>());
        let mut ids = PacketIds::default();
        assert!(ids.is_empty() && !ids.contains(&5));
        assert!(!ids.remove(&5));
        assert!(ids.0.is_none());
        assert!(ids.insert(5) && ids.insert(3) && !ids.insert(5));
        assert_eq!((ids.len(), ids.contains(&3)), (2, true));
        assert!(ids.remove(&5) && !ids.remove(&5));
        assert!(ids.remove(&3));
        assert!(ids.0.is_none(), "an emptied set gives its memory back");
        let ids: PacketIds = [9, 7, 9].into_iter().collect();
        assert_eq!(ids.into_iter().collect::<Vec<_>>(), vec![7, 9]);
        let none: PacketIds = std::iter::empty().collect();
        assert!(none.0.is_none());
    }
}
