//! Rate-limited log lines: a hostile or broken client can trigger the same warning thousands of
//! times a second, so each kind of line is written at most once per second for the whole
//! broker, with the count of the ones left out since.

use std::time::Instant;

#[derive(Debug, Default)]
pub(super) struct LogLimiter {
    last: Option<Instant>,
    suppressed: u64,
}

impl LogLimiter {
    /// `Some(lines left out since the last one)` if a line may be written now.
    pub(super) fn allow(&mut self, now: Instant) -> Option<u64> {
        if self.last.is_some_and(|at| now.duration_since(at).as_secs() < 1) {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn one_line_per_second_with_the_count_left_out() {
        let t0 = Instant::now();
        let mut limiter = LogLimiter::default();
        assert_eq!(limiter.allow(t0), Some(0));
        assert_eq!(limiter.allow(t0 + Duration::from_millis(10)), None);
        assert_eq!(limiter.allow(t0 + Duration::from_millis(999)), None);
        assert_eq!(limiter.allow(t0 + Duration::from_secs(1)), Some(2));
        assert_eq!(limiter.allow(t0 + Duration::from_secs(3)), Some(0));
    }
}
