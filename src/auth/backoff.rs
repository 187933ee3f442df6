//! Per-address back-off for failed logins: after a few failures from one IP address, its next
//! CONNECTs are refused at once, without checking the password, for a time that doubles with
//! each further failure (capped). A success clears the address.
//!
//! Why refuse instead of delaying the CONNACK: the loop must never block, and a held CONNACK
//! would keep a connection (and a slot) open per attempt; a fast refusal costs the attacker a
//! round trip and the broker no hashing. The honest answer is "try later" (v5 0x89 Server busy,
//! 3.1.1 0x03 Server unavailable), which a legitimate client retries.
//!
//! Contract: pure (time is a parameter), bounded: at most [`MAX_ADDRESSES`] entries; when full,
//! the entry whose block ends first (the least dangerous) makes room.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Addresses remembered at once.
pub const MAX_ADDRESSES: usize = 1024;
/// Failures from one address before it is blocked at all: a user mistyping a password is not
/// slowed down.
pub const FREE_FAILURES: u32 = 3;
/// The first block; each further failure doubles it.
pub const FIRST_BLOCK: Duration = Duration::from_secs(1);
/// The longest block.
pub const MAX_BLOCK: Duration = Duration::from_secs(60);
/// An address with no failure for this long is forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    last_failure: Instant,
    blocked_until: Option<Instant>,
}

#[derive(Debug, Default)]
pub struct Backoff {
    entries: HashMap<IpAddr, Entry>,
}

impl Backoff {
    /// How long `ip` is still blocked, if it is.
    pub fn blocked(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let until = self.entries.get(&ip)?.blocked_until?;
        (until > now).then(|| until - now)
    }

    /// Records a failed login from `ip`; returns the block it now has, if any.
    pub fn failed(&mut self, ip: IpAddr, now: Instant) -> Option<Duration> {
        if !self.entries.contains_key(&ip) && self.entries.len() >= MAX_ADDRESSES {
            self.make_room(now);
        }
        let entry = self.entries.entry(ip).or_insert(Entry {
            failures: 0,
            last_failure: now,
            blocked_until: None,
        });
        if now.saturating_duration_since(entry.last_failure) > FORGET_AFTER {
            entry.failures = 0;
        }
        entry.failures = entry.failures.saturating_add(1);
        entry.last_failure = now;
        let over = entry.failures.checked_sub(FREE_FAILURES + 1)?;
        // 1 s, 2 s, 4 s ... capped; the shift is capped so it cannot overflow.
        let block = FIRST_BLOCK.saturating_mul(1 << over.min(16)).min(MAX_BLOCK);
        entry.blocked_until = Some(now + block);
        Some(block)
    }

    /// A successful login from `ip` clears its record.
    pub fn succeeded(&mut self, ip: IpAddr) {
        self.entries.remove(&ip);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Forgets stale entries; if none is stale, the one whose block ends first.
    fn make_room(&mut self, now: Instant) {
        self.entries.retain(|_, e| now.saturating_duration_since(e.last_failure) <= FORGET_AFTER);
        if self.entries.len() < MAX_ADDRESSES {
            return;
        }
        let victim = self
            .entries
            .iter()
            .min_by_key(|(_, e)| (e.blocked_until.unwrap_or(e.last_failure), e.last_failure))
            .map(|(ip, _)| *ip);
        if let Some(ip) = victim {
            self.entries.remove(&ip);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn ip(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(n))
    }

    #[test]
    fn blocks_grow_after_the_free_failures_and_a_success_clears() {
        let t0 = Instant::now();
        let mut b = Backoff::default();
        for _ in 0..FREE_FAILURES {
            assert_eq!(b.failed(ip(1), t0), None);
        }
        assert_eq!(b.blocked(ip(1), t0), None);
        assert_eq!(b.failed(ip(1), t0), Some(Duration::from_secs(1)));
        assert_eq!(b.blocked(ip(1), t0), Some(Duration::from_secs(1)));
        assert_eq!(b.blocked(ip(2), t0), None);
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(b.blocked(ip(1), t1), None);
        assert_eq!(b.failed(ip(1), t1), Some(Duration::from_secs(2)));
        assert_eq!(b.failed(ip(1), t1), Some(Duration::from_secs(4)));
        for _ in 0..100 {
            b.failed(ip(1), t1);
        }
        assert_eq!(b.blocked(ip(1), t1), Some(MAX_BLOCK));
        b.succeeded(ip(1));
        assert_eq!(b.blocked(ip(1), t1), None);
        assert_eq!(b.failed(ip(1), t1), None);
    }

    #[test]
    fn old_failures_are_forgotten() {
        let t0 = Instant::now();
        let mut b = Backoff::default();
        for _ in 0..FREE_FAILURES {
            b.failed(ip(1), t0);
        }
        let later = t0 + FORGET_AFTER + Duration::from_secs(1);
        assert_eq!(b.failed(ip(1), later), None);
    }

    #[test]
    fn the_table_is_bounded() {
        let t0 = Instant::now();
        let mut b = Backoff::default();
        for n in 0..(MAX_ADDRESSES as u32 * 3) {
            for _ in 0..=FREE_FAILURES {
                b.failed(ip(n), t0 + Duration::from_millis(u64::from(n)));
            }
            assert!(b.len() <= MAX_ADDRESSES);
        }
        // The newest address is still blocked.
        let last = ip(MAX_ADDRESSES as u32 * 3 - 1);
        assert!(b.blocked(last, t0 + Duration::from_secs(3)).is_some());
    }
}
