//! What the store tells monitors (`$SYS/broker/store/...`, `/metrics`, `/health`): whether it
//! accepts writes, how long recent commits took, how much it holds on disk.
//!
//! Contract: bounded and cheap. Commit times go into a fixed ring of the last
//! [`COMMIT_SAMPLES`] commits (4 KB), read only when someone asks; the health is derived from
//! state the store keeps anyway (a "store full" episode, the last commit's failure). Nothing
//! here writes to the database.

use std::time::Duration;

use super::{Failure, Store, DB_FILE};

/// Commits whose duration the p99 is taken over.
pub const COMMIT_SAMPLES: usize = 1024;

/// Whether the store takes writes now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    Writable,
    /// Writes are refused; the reason is for people (`/health` prints it).
    Refusing(String),
}

/// The monitoring side of the store: commit durations and the last failure.
#[derive(Debug)]
pub(super) struct Monitor {
    /// Commit durations in microseconds, a ring of the last `COMMIT_SAMPLES`.
    commit_us: Box<[u32; COMMIT_SAMPLES]>,
    samples: usize,
    next: usize,
    /// The last commit failed for another reason than a full disk (cleared by a success).
    failed: Option<Failure>,
}

impl Default for Monitor {
    fn default() -> Self {
        Monitor { commit_us: Box::new([0; COMMIT_SAMPLES]), samples: 0, next: 0, failed: None }
    }
}

impl Monitor {
    /// A commit (with its fsync, if any) took `took`; `failure` if it was rolled back.
    pub(super) fn committed(&mut self, took: Duration, failure: Option<&Failure>) {
        let us = u32::try_from(took.as_micros()).unwrap_or(u32::MAX);
        if let Some(slot) = self.commit_us.get_mut(self.next) {
            *slot = us;
        }
        self.next = (self.next + 1) % COMMIT_SAMPLES;
        self.samples = (self.samples + 1).min(COMMIT_SAMPLES);
        self.failed = failure.filter(|f| !f.disk_full).cloned();
    }

    /// The 99th percentile of the recorded commit durations (zero before the first commit).
    pub(super) fn commit_p99(&self) -> Duration {
        let Some(recorded) = self.commit_us.get(..self.samples) else { return Duration::ZERO };
        if recorded.is_empty() {
            return Duration::ZERO;
        }
        let mut sorted = recorded.to_vec();
        // Nearest rank: the smallest value at or above 99 % of the samples.
        let rank = (sorted.len() * 99).div_ceil(100).max(1) - 1;
        let (_, p99, _) = sorted.select_nth_unstable(rank);
        Duration::from_micros(u64::from(*p99))
    }
}

impl Store {
    /// Whether writes are accepted: not while a full disk (or `sqlite.max_db_size`) refuses
    /// them, nor after a commit failed for another reason until one succeeds.
    pub fn health(&self) -> Health {
        if let Some(reason) = self.refusing_reason() {
            return Health::Refusing(reason);
        }
        match &self.monitor.failed {
            Some(failure) => Health::Refusing(format!("the last commit failed: {failure}")),
            None => Health::Writable,
        }
    }

    /// The p99 of the last [`COMMIT_SAMPLES`] commits' durations (fsync included).
    pub fn commit_p99(&self) -> Duration {
        self.monitor.commit_p99()
    }

    /// Bytes of message payload and topic queued in the ring (all sessions).
    pub fn total_bytes(&self) -> u64 {
        self.usage.values().map(|u| u.bytes).sum()
    }

    /// Messages the ring holds against `sqlite.disk_cache_size`, in percent.
    pub fn ring_used_percent(&self) -> f64 {
        let cap = self.config.disk_cache_size.max(1) as f64;
        self.total_messages as f64 * 100.0 / cap
    }

    /// Bytes of the database file and its write-ahead log on disk (0 in memory).
    pub fn disk_bytes(&self) -> u64 {
        if self.config.durability == crate::config::Durability::Memory {
            return 0;
        }
        let size = |path: &std::path::Path| std::fs::metadata(path).map_or(0, |m| m.len());
        let wal = self.path.with_file_name(format!("{DB_FILE}-wal"));
        size(&self.path) + size(&wal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p99_is_the_nearest_rank_of_the_last_samples() {
        let mut m = Monitor::default();
        assert_eq!(m.commit_p99(), Duration::ZERO);
        for us in 1..=100 {
            m.committed(Duration::from_micros(us), None);
        }
        assert_eq!(m.commit_p99(), Duration::from_micros(99));
        // The ring forgets the oldest: 1,024 fast commits push the slow ones out.
        m.committed(Duration::from_millis(50), None);
        assert_eq!(m.commit_p99(), Duration::from_micros(100));
        for _ in 0..COMMIT_SAMPLES {
            m.committed(Duration::from_micros(7), None);
        }
        assert_eq!(m.commit_p99(), Duration::from_micros(7));
    }

    #[test]
    fn a_failed_commit_is_unhealthy_until_one_succeeds() {
        let mut m = Monitor::default();
        let io = Failure { message: "COMMIT: disk I/O error".into(), disk_full: false };
        m.committed(Duration::ZERO, Some(&io));
        assert!(m.failed.is_some());
        m.committed(Duration::ZERO, None);
        assert!(m.failed.is_none());
        // A full disk is the space episode's business, not this one's.
        let full = Failure { message: "full".into(), disk_full: true };
        m.committed(Duration::ZERO, Some(&full));
        assert!(m.failed.is_none());
    }
}
