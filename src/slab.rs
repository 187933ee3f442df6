//! Slot tables indexed by small ids (connections, sessions) that give memory back when they
//! empty.
//!
//! Contract: [`Slab`] holds at most `limit` values; an id stays valid until its value is
//! removed and may then be reused. Freed ids are reused lowest first, so live values gather at
//! the front and the table's tail empties when clients leave: a removal that frees the tail
//! truncates the table, and a table under a quarter full is shrunk to twice its length (for a
//! table as large as the ones issue 16 measured, glibc gives those pages back to the system at
//! once). Growing again costs an amortised reallocation (of a mapping: glibc moves its pages
//! with mremap instead of copying). [`trim_tail`] does the same for a
//! table whose ids someone else hands out (the broker's per-connection state, indexed by
//! `net`'s connection ids). Nothing here reads input; every operation is O(log n) amortised.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Below this capacity a table is not shrunk (not worth a reallocation).
const MIN_SHRINK_CAPACITY: usize = 64;

pub struct Slab<T> {
    entries: Vec<Option<T>>,
    /// Free ids, lowest on top. Ids past the end (truncated) or taken again through `push`
    /// are stale and skipped when popped; see `insert`.
    free: BinaryHeap<Reverse<u32>>,
    limit: usize,
    live: usize,
}

impl<T> Slab<T> {
    /// An empty table for at most `limit` values. Its room is reserved at once: address
    /// space only (a large reservation is its own mapping, whose pages cost nothing until
    /// used), and growing it never copies the table into a new block while the old one stays
    /// in the heap (which doubled the table's cost at a few hundred connections).
    pub fn new(limit: usize) -> Slab<T> {
        Slab { entries: Vec::with_capacity(limit), free: BinaryHeap::new(), limit, live: 0 }
    }

    /// Values held.
    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Room for `more` values beyond the limit given at start-up.
    pub fn raise_limit(&mut self, more: usize) {
        self.limit += more;
    }

    pub fn is_full(&self) -> bool {
        self.live >= self.limit
    }

    /// Slots in the table, free ones included (ids are below this).
    pub fn slots(&self) -> usize {
        self.entries.len()
    }

    /// Slots allocated (for tests of the memory given back).
    pub fn capacity(&self) -> usize {
        self.entries.capacity()
    }

    pub fn get(&self, id: u32) -> Option<&T> {
        self.entries.get(id as usize).and_then(Option::as_ref)
    }

    pub fn get_mut(&mut self, id: u32) -> Option<&mut T> {
        self.entries.get_mut(id as usize).and_then(Option::as_mut)
    }

    /// Stores `value` under the lowest free id; `None` when `limit` values are held.
    pub fn insert(&mut self, value: T) -> Option<u32> {
        if self.is_full() {
            return None;
        }
        while let Some(Reverse(id)) = self.free.pop() {
            if let Some(slot @ None) = self.entries.get_mut(id as usize) {
                *slot = Some(value);
                self.live += 1;
                return Some(id);
            }
            // Stale: truncated away, or reused through `push` after a truncation.
        }
        let id = u32::try_from(self.entries.len()).ok()?;
        self.entries.push(Some(value));
        self.live += 1;
        Some(id)
    }

    /// Takes the value of `id` out; the tail of free slots is released.
    pub fn remove(&mut self, id: u32) -> Option<T> {
        let value = self.entries.get_mut(id as usize).and_then(Option::take)?;
        self.live -= 1;
        self.free.push(Reverse(id));
        if trim_tail(&mut self.entries) {
            // Every slot past the end is stale now; drop them all once the heap holds more
            // stale ids than the table has slots (amortised O(1) per removal).
            if self.free.len() > 2 * self.entries.len() + MIN_SHRINK_CAPACITY {
                let len = self.entries.len();
                self.free.retain(|Reverse(id)| (*id as usize) < len);
                self.free.shrink_to_fit();
            }
        }
        Some(value)
    }

    pub fn iter(&self) -> impl Iterator<Item = (u32, &T)> {
        self.entries.iter().enumerate().filter_map(|(i, v)| Some((i as u32, v.as_ref()?)))
    }

    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.entries.iter().flatten()
    }

    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.entries.iter_mut().flatten()
    }
}

/// Drops the free slots at the end of `entries` and shrinks a table left under a quarter
/// full to twice its length. Returns whether anything was dropped.
pub fn trim_tail<T>(entries: &mut Vec<Option<T>>) -> bool {
    let before = entries.len();
    while let Some(None) = entries.last() {
        entries.pop();
    }
    if entries.len() == before {
        return false;
    }
    if entries.capacity() > MIN_SHRINK_CAPACITY && entries.len() < entries.capacity() / 4 {
        entries.shrink_to((entries.len() * 2).max(MIN_SHRINK_CAPACITY));
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_reused_lowest_first_and_the_limit_holds() {
        let mut slab = Slab::new(3);
        assert_eq!(slab.insert("a"), Some(0));
        assert_eq!(slab.insert("b"), Some(1));
        assert_eq!(slab.insert("c"), Some(2));
        assert_eq!(slab.insert("d"), None);
        assert_eq!(slab.remove(1), Some("b"));
        assert_eq!(slab.remove(1), None);
        assert_eq!(slab.remove(0), Some("a"));
        assert_eq!(slab.insert("e"), Some(0));
        assert_eq!(slab.insert("f"), Some(1));
        assert_eq!(slab.get(1), Some(&"f"));
        assert_eq!(slab.len(), 3);
        assert_eq!(
            slab.iter().map(|(i, v)| (i, *v)).collect::<Vec<_>>(),
            [(0, "e"), (1, "f"), (2, "c")]
        );
    }

    #[test]
    fn an_emptied_table_gives_its_memory_back_and_grows_again() {
        let mut slab = Slab::new(100_000);
        for i in 0..10_000u32 {
            assert_eq!(slab.insert(i), Some(i));
        }
        let full = slab.capacity();
        assert!(full >= 10_000);
        // Leave in an order that frees the tail last: nothing can be truncated until then.
        for i in 0..10_000u32 {
            assert_eq!(slab.remove(i), Some(i));
        }
        assert_eq!((slab.len(), slab.slots()), (0, 0));
        assert!(slab.capacity() <= MIN_SHRINK_CAPACITY, "{}", slab.capacity());
        // Stale free ids are dropped: the next ids start at 0 again.
        for i in 0..5u32 {
            assert_eq!(slab.insert(i), Some(i));
        }
        // One value at a high id keeps the table that long; the rest is reused below it.
        let mut slab = Slab::new(100);
        let ids: Vec<u32> = (0..50).filter_map(|i| slab.insert(i)).collect();
        assert_eq!(ids.len(), 50);
        for id in 0..49 {
            slab.remove(id);
        }
        assert_eq!(slab.slots(), 50);
        assert_eq!(slab.insert(7), Some(0));
        slab.remove(49);
        assert_eq!(slab.slots(), 1);
        assert_eq!(slab.insert(8), Some(1));
    }

    #[test]
    fn trim_tail_keeps_live_slots() {
        let mut v: Vec<Option<u8>> = vec![Some(1), None, Some(2), None, None];
        assert!(trim_tail(&mut v));
        assert_eq!(v, [Some(1), None, Some(2)]);
        assert!(!trim_tail(&mut v));
    }
}
