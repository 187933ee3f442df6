//! Giving freed heap memory back to the system after a crowd has left.
//!
//! Why: glibc keeps freed small blocks in its heap, and it can only shrink the heap from the
//! top. After a storm of connections has gone, the blocks of those connections (client ids,
//! filters, level names, timer entries) sit free below blocks still in use, and RSS stays near
//! the peak. `malloc_trim(0)` hands every whole free page inside the heap back to the kernel
//! (`madvise(MADV_DONTNEED)`); the pages come back zeroed when used again.
//!
//! When: [`TrimPolicy`] asks for it each time the number of connections has halved since the
//! last trim, once a crowd of at least [`MIN_CROWD`] was there, down to [`MIN_LEFT`]: a walk of
//! the heap (0.1-0.3 ms each while 15,000 connections left; the debug log times every one) a
//! handful of times per exodus, never per connection, and never on a timer (an idle broker does not wake up for it). The halving
//! goes on below `MIN_CROWD` because the last few hundred connections of a crowd pin pages all
//! over the heap. Also once after the store's state is restored at start, which leaves what the
//! load read freed between the restored sessions.
//!
//! Elsewhere (musl on OpenWrt, other systems) there is no `malloc_trim` and the call does
//! nothing; what musl's allocator returns by itself was not measured.

/// Connections there must have been at once before their leaving is worth a heap walk.
pub const MIN_CROWD: usize = 256;

/// Below this many connections the halving stops (what so few pin is not worth a walk).
pub const MIN_LEFT: usize = 16;

/// Decides when a trim is due, from the number of live connections after a pass that closed
/// some. Pure: the caller makes the call.
#[derive(Debug, Default)]
pub struct TrimPolicy {
    /// The most connections seen since the last trim.
    peak: usize,
    /// A crowd is leaving: trims go on at every halving until under `MIN_LEFT`.
    draining: bool,
}

impl TrimPolicy {
    /// Records that `live` connections are open; growth only raises the peak.
    pub fn opened(&mut self, live: usize) {
        self.peak = self.peak.max(live);
    }

    /// After connections closed, with `live` left: whether to trim now. The peak restarts
    /// from `live` when it says yes.
    pub fn closed(&mut self, live: usize) -> bool {
        let due = live.saturating_mul(2) <= self.peak && (self.peak >= MIN_CROWD || self.draining);
        if due {
            self.peak = live;
            self.draining = live >= MIN_LEFT;
        }
        due
    }
}

/// Returns the heap's free pages to the system where the allocator needs asking (glibc);
/// whether any memory was released.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn release_free_memory() -> bool {
    extern "C" {
        fn malloc_trim(pad: usize) -> std::os::raw::c_int;
    }
    // SAFETY: `malloc_trim` takes no pointers and only rearranges glibc's own free lists under
    // the allocator's lock; it is documented as safe to call at any time (MT-Safe).
    unsafe { malloc_trim(0) != 0 }
}

/// Returns the heap's free pages to the system where the allocator needs asking (glibc);
/// whether any memory was released.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn release_free_memory() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crowd_leaving_is_trimmed_at_every_halving_down_to_a_few() {
        let mut policy = TrimPolicy::default();
        for live in 1..=1000 {
            policy.opened(live);
        }
        assert!(!policy.closed(999), "one leaving is not worth a heap walk");
        assert!(!policy.closed(501), "not yet half");
        assert!(policy.closed(500));
        assert!(!policy.closed(300));
        assert!(policy.closed(250));
        // Under MIN_CROWD the halving goes on: the last of a crowd pin pages too.
        let mut trims = vec![];
        for live in (0..250).rev() {
            if policy.closed(live) {
                trims.push(live);
            }
        }
        assert_eq!(trims, vec![125, 62, 31, 15], "halvings until under MIN_LEFT");
        // The crowd is gone: a handful coming and going is never trimmed.
        for _ in 0..3 {
            policy.opened(15 + 10);
            assert!(!policy.closed(0));
        }
    }

    #[test]
    fn small_brokers_never_trim() {
        let mut policy = TrimPolicy::default();
        policy.opened(MIN_CROWD - 1);
        assert!(!policy.closed(0));
        policy.opened(MIN_CROWD);
        assert!(policy.closed(0));
    }

    #[test]
    fn free_pages_between_blocks_in_use_are_given_back() {
        // Blocks freed below blocks still in use: free() cannot shrink the heap past them,
        // malloc_trim gives the whole free pages between them back.
        let mut blocks: Vec<Option<Vec<u8>>> =
            (0..20_000).map(|i| Some(vec![i as u8; 200])).collect();
        for (i, block) in blocks.iter_mut().enumerate() {
            if i % 64 != 0 {
                *block = None;
            }
        }
        let released = release_free_memory();
        if cfg!(all(target_os = "linux", target_env = "gnu")) {
            assert!(released, "glibc kept the free pages");
        } else {
            assert!(!released, "nothing to ask elsewhere");
        }
        drop(blocks);
    }
}
