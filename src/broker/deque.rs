//! A double-ended queue that costs one pointer in its owner until something is put in it.
//!
//! Why: every session holds two queues (messages in flight, messages waiting), and most
//! sessions hold nothing in either: offline ones restored from the store (their queue is read
//! back when they return) and online ones with nothing in flight. A `VecDeque` is 32 bytes
//! inline, this is 8; a deque in use costs one more allocation of 32 bytes.
//!
//! Contract: reads go through `Deref` to a `VecDeque` (an empty shared one while nothing is
//! held), so callers keep the `VecDeque` API; the mutations the broker uses are forwarded,
//! and only those that add allocate. `clear` gives the memory back. Nothing here reads input.

use std::collections::VecDeque;
use std::ops::Deref;

// Boxed on purpose: the box is the one pointer an unused deque costs (see above).
#[allow(clippy::box_collection)]
pub struct Deque<T>(Option<Box<VecDeque<T>>>);

impl<T: 'static> Deque<T> {
    const EMPTY: &'static VecDeque<T> = &VecDeque::new();

    fn held(&mut self) -> &mut VecDeque<T> {
        self.0.get_or_insert_with(Box::default)
    }

    pub fn push_back(&mut self, value: T) {
        self.held().push_back(value);
    }

    pub fn push_front(&mut self, value: T) {
        self.held().push_front(value);
    }

    pub fn pop_front(&mut self) -> Option<T> {
        self.0.as_mut().and_then(|d| d.pop_front())
    }

    pub fn remove(&mut self, index: usize) -> Option<T> {
        self.0.as_mut().and_then(|d| d.remove(index))
    }

    pub fn get_mut(&mut self, index: usize) -> Option<&mut T> {
        self.0.as_mut().and_then(|d| d.get_mut(index))
    }

    pub fn iter_mut(&mut self) -> impl DoubleEndedIterator<Item = &mut T> {
        self.0.as_deref_mut().into_iter().flat_map(VecDeque::iter_mut)
    }

    pub fn reserve_exact(&mut self, additional: usize) {
        if additional > 0 {
            self.held().reserve_exact(additional);
        }
    }

    /// Empties it and gives its memory back.
    pub fn clear(&mut self) {
        self.0 = None;
    }

    pub fn shrink_to_fit(&mut self) {
        match self.0.as_mut() {
            Some(d) if d.is_empty() => self.0 = None,
            Some(d) => d.shrink_to_fit(),
            None => {}
        }
    }
}

impl<T: 'static> Deref for Deque<T> {
    type Target = VecDeque<T>;

    fn deref(&self) -> &VecDeque<T> {
        self.0.as_deref().unwrap_or(Self::EMPTY)
    }
}

impl<T> Default for Deque<T> {
    fn default() -> Self {
        Deque(None)
    }
}

impl<T> From<Vec<T>> for Deque<T> {
    fn from(values: Vec<T>) -> Self {
        if values.is_empty() {
            return Deque(None);
        }
        Deque(Some(Box::new(values.into())))
    }
}

impl<T> IntoIterator for Deque<T> {
    type Item = T;
    type IntoIter = std::collections::vec_deque::IntoIter<T>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.map(|d| *d).unwrap_or_default().into_iter()
    }
}

impl<T: std::fmt::Debug + 'static> std::fmt::Debug for Deque<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_costs_a_pointer_and_reads_as_an_empty_deque() {
        assert_eq!(std::mem::size_of::<Deque<u64>>(), std::mem::size_of::<usize>());
        let mut d: Deque<u64> = Deque::default();
        assert!(d.is_empty());
        assert_eq!((d.len(), d.capacity(), d.front()), (0, 0, None));
        assert_eq!(d.pop_front(), None);
        assert_eq!(d.remove(3), None);
        assert_eq!(d.get_mut(0), None);
        assert_eq!(d.iter_mut().count(), 0);
        d.reserve_exact(0);
        d.shrink_to_fit();
        assert!(d.0.is_none(), "nothing above allocated");
    }

    #[test]
    fn works_as_a_deque_and_clear_gives_the_memory_back() {
        let mut d: Deque<u64> = vec![2, 3].into();
        d.push_back(4);
        d.push_front(1);
        assert_eq!(d.iter().copied().collect::<Vec<_>>(), vec![1, 2, 3, 4]);
        assert_eq!(d[2], 3);
        for x in d.iter_mut() {
            *x *= 10;
        }
        if let Some(x) = d.get_mut(0) {
            *x += 1;
        }
        assert_eq!(d.remove(1), Some(20));
        assert_eq!(d.pop_front(), Some(11));
        assert_eq!(d.clone_items(), vec![30, 40]);
        d.clear();
        assert!(d.0.is_none() && d.is_empty());
        d.push_back(5);
        d.pop_front();
        d.shrink_to_fit();
        assert!(d.0.is_none(), "an emptied deque shrinks to nothing");
        let d: Deque<u64> = vec![7, 8].into();
        assert_eq!(d.into_iter().collect::<Vec<_>>(), vec![7, 8]);
        assert!(Deque::<u64>::from(Vec::new()).0.is_none());
    }

    impl Deque<u64> {
        fn clone_items(&self) -> Vec<u64> {
            self.iter().copied().collect()
        }
    }
}
