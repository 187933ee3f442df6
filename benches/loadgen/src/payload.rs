//! The benchmark payload and the receiver-side bookkeeping that counts loss exactly.
//!
//! Every payload is `PAYLOAD_LEN` bytes: publisher id (u32 LE), sequence (u64 LE, from 0,
//! per publisher), send time (u64 LE, nanoseconds since the run's epoch `Instant`), zero
//! padding (a publisher to random topics puts the topic's index, u32 LE, at its start). Publisher and subscribers live in one process, so one epoch serves both ends.
//! For the fixed-rate latency scenario the send time is the *intended* time, so latency
//! includes any time the publisher fell behind (no coordinated omission).

use std::time::{Duration, Instant};

/// Payload size of every scenario (the 64 bytes).
pub const PAYLOAD_LEN: usize = 64;
const HEADER_LEN: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub publisher: u32,
    pub seq: u64,
    /// Nanoseconds since the epoch.
    pub sent_ns: u64,
}

impl Stamp {
    pub fn write(&self, out: &mut [u8; PAYLOAD_LEN]) {
        out[0..4].copy_from_slice(&self.publisher.to_le_bytes());
        out[4..12].copy_from_slice(&self.seq.to_le_bytes());
        out[12..20].copy_from_slice(&self.sent_ns.to_le_bytes());
    }

    /// `None` for a payload this tool did not write.
    pub fn read(payload: &[u8]) -> Option<Stamp> {
        if payload.len() < HEADER_LEN {
            return None;
        }
        let publisher = u32::from_le_bytes(payload.get(0..4)?.try_into().ok()?);
        let seq = u64::from_le_bytes(payload.get(4..12)?.try_into().ok()?);
        let sent_ns = u64::from_le_bytes(payload.get(12..20)?.try_into().ok()?);
        Some(Stamp { publisher, seq, sent_ns })
    }
}

/// Where a publisher to random topics puts the topic's index (u32 LE), in the padding.
const TOPIC_INDEX: std::ops::Range<usize> = HEADER_LEN..HEADER_LEN + 4;

pub fn write_topic_index(out: &mut [u8; PAYLOAD_LEN], index: u32) {
    out[TOPIC_INDEX].copy_from_slice(&index.to_le_bytes());
}

/// `None` for a payload too short to hold one.
pub fn read_topic_index(payload: &[u8]) -> Option<u32> {
    Some(u32::from_le_bytes(payload.get(TOPIC_INDEX)?.try_into().ok()?))
}

/// Nanoseconds from `epoch` to `at` (0 if `at` is earlier).
pub fn ns_since(epoch: Instant, at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(epoch).as_nanos()).unwrap_or(u64::MAX)
}

pub fn instant_at(epoch: Instant, ns: u64) -> Instant {
    epoch + Duration::from_nanos(ns)
}

/// What one receiver saw from one publisher: every sequence number seen once, so duplicates
/// and late (reordered) arrivals are exact.
#[derive(Debug, Clone, Default)]
pub struct SeqTracker {
    seen: Vec<u64>,
    highest: Option<u64>,
    pub unique: u64,
    pub duplicates: u64,
    /// Messages that arrived after a higher sequence number of the same publisher.
    pub reordered: u64,
}

impl SeqTracker {
    pub fn record(&mut self, seq: u64) {
        let word = usize::try_from(seq / 64).unwrap_or(usize::MAX);
        let bit = 1u64 << (seq % 64);
        if word >= self.seen.len() {
            // Sequence numbers are bounded by the scenario's message cap.
            self.seen.resize(word.saturating_add(1).max(self.seen.len() * 2), 0);
        }
        let Some(slot) = self.seen.get_mut(word) else {
            return;
        };
        if *slot & bit != 0 {
            self.duplicates += 1;
            return;
        }
        *slot |= bit;
        self.unique += 1;
        match self.highest {
            Some(h) if seq < h => self.reordered += 1,
            _ => self.highest = Some(seq),
        }
    }

    /// Adds what `other` (another subscriber of the same publisher) saw: a sequence number
    /// both saw is a duplicate. For members of one shared subscription group, whose union must
    /// be every message once.
    pub fn merge(&mut self, other: &SeqTracker) {
        if self.seen.len() < other.seen.len() {
            self.seen.resize(other.seen.len(), 0);
        }
        for (mine, theirs) in self.seen.iter_mut().zip(&other.seen) {
            self.duplicates += u64::from((*mine & theirs).count_ones());
            *mine |= theirs;
        }
        self.duplicates += other.duplicates;
        self.reordered += other.reordered;
        self.unique = self.seen.iter().map(|w| u64::from(w.count_ones())).sum();
        self.highest = self.highest.max(other.highest);
    }

    /// Sequence numbers below `sent` that never arrived.
    pub fn missing(&self, sent: u64) -> u64 {
        let mut got = 0u64;
        for seq in 0..sent {
            let word = (seq / 64) as usize;
            if self.seen.get(word).is_some_and(|w| w & (1u64 << (seq % 64)) != 0) {
                got += 1;
            }
        }
        sent - got
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_round_trip() {
        let stamp = Stamp { publisher: 3, seq: 0x0102_0304_0506, sent_ns: 99 };
        let mut buf = [0u8; PAYLOAD_LEN];
        stamp.write(&mut buf);
        // publisher 3, LE
        assert_eq!(&buf[0..4], &[3, 0, 0, 0]);
        assert_eq!(Stamp::read(&buf), Some(stamp));
        assert_eq!(Stamp::read(&buf[..19]), None);
        // The topic index sits in the padding, after the stamp.
        write_topic_index(&mut buf, 0x0A0B_0C0D);
        assert_eq!(&buf[20..24], &[0x0D, 0x0C, 0x0B, 0x0A]);
        assert_eq!(Stamp::read(&buf), Some(stamp));
        assert_eq!(read_topic_index(&buf), Some(0x0A0B_0C0D));
        assert_eq!(read_topic_index(&buf[..23]), None);
    }

    #[test]
    fn tracker_counts_dup_reorder_loss() {
        let mut t = SeqTracker::default();
        for seq in [0, 1, 3, 2, 3, 200] {
            t.record(seq);
        }
        assert_eq!(t.unique, 5);
        assert_eq!(t.duplicates, 1);
        assert_eq!(t.reordered, 1); // 2 after 3
        assert_eq!(t.missing(4), 0);
        assert_eq!(t.missing(201), 196);
    }

    #[test]
    fn merged_trackers_count_overlaps_as_duplicates() {
        let (mut a, mut b) = (SeqTracker::default(), SeqTracker::default());
        for seq in [0, 2, 4, 100] {
            a.record(seq);
        }
        for seq in [1, 3, 4] {
            b.record(seq);
        }
        a.merge(&b);
        assert_eq!((a.unique, a.duplicates), (6, 1));
        assert_eq!(a.missing(5), 0);
    }
}
