//! Log lines a hostile peer cannot multiply. Each kind of line that a client can trigger at
//! will (an invalid CONNECT, a connect timeout, a refused connection, a failed TLS handshake,
//! a dropped message, ...) goes through its own [`LogLimiter`]: at most one line of that kind
//! per second for the whole broker, and the lines left out are counted. The count is shown on
//! the next line of the kind (" (N more like this not logged)") or, if none comes, on a
//! summary line written once the second is over (the owner arms [`LogLimiter::summary_due`]
//! as a deadline and calls [`LogLimiter::write_summary`]), so a flood of 9,000 hostile
//! connections costs a handful of lines and its size is still in the log.
//!
//! Used by `net` and `broker` alike (one type, one behaviour); no clock is read here.

use std::fmt;
use std::time::{Duration, Instant};

/// Lines of one kind written at most this often.
pub const LOG_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub struct LogLimiter {
    /// What the lines are about, for the summary ("invalid CONNECT").
    what: &'static str,
    /// The level of the lines, and of their summary.
    level: log::Level,
    last: Option<Instant>,
    suppressed: u64,
}

impl LogLimiter {
    /// A limiter for lines about `what`, written at `level`.
    pub const fn new(level: log::Level, what: &'static str) -> LogLimiter {
        LogLimiter { what, level, last: None, suppressed: 0 }
    }

    /// `Some(lines left out since the last one)` if a line may be written now; `None` (and
    /// the line is counted) if one was written less than [`LOG_INTERVAL`] ago. Callers write
    /// the count with [`More`].
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        if self.last.is_some_and(|at| now.saturating_duration_since(at) < LOG_INTERVAL) {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }

    /// When a summary of left-out lines is due (`None`: nothing was left out).
    pub fn summary_due(&self) -> Option<Instant> {
        match (self.suppressed, self.last) {
            (0, _) | (_, None) => None,
            (_, Some(at)) => Some(at + LOG_INTERVAL),
        }
    }

    /// Writes "N more like this not logged" if lines were left out and their second is over.
    /// Counts as this kind's line for the next second.
    pub fn write_summary(&mut self, now: Instant) {
        if self.summary_due().is_some_and(|due| due <= now) {
            let left_out = std::mem::take(&mut self.suppressed);
            self.last = Some(now);
            log::log!(self.level, "{left_out} more like this not logged: {}", self.what);
        }
    }
}

/// " (N more like this not logged)" after a line that [`LogLimiter::allow`] let through with
/// a count of N; nothing for 0.
#[derive(Debug, Clone, Copy)]
pub struct More(pub u64);

impl fmt::Display for More {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            0 => Ok(()),
            n => write!(f, " ({n} more like this not logged)"),
        }
    }
}

/// The earliest summary due among `limiters`.
pub fn earliest_summary<'a>(limiters: impl IntoIterator<Item = &'a LogLimiter>) -> Option<Instant> {
    limiters.into_iter().filter_map(LogLimiter::summary_due).min()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_second_with_the_count_left_out() {
        let t0 = Instant::now();
        let mut limiter = LogLimiter::new(log::Level::Info, "test lines");
        assert_eq!(limiter.allow(t0), Some(0));
        assert_eq!(limiter.summary_due(), None, "nothing left out yet");
        assert_eq!(limiter.allow(t0 + Duration::from_millis(10)), None);
        assert_eq!(limiter.allow(t0 + Duration::from_millis(999)), None);
        assert_eq!(limiter.summary_due(), Some(t0 + LOG_INTERVAL));
        assert_eq!(limiter.allow(t0 + Duration::from_secs(1)), Some(2));
        assert_eq!(limiter.summary_due(), None, "the count went out with that line");
        assert_eq!(limiter.allow(t0 + Duration::from_secs(3)), Some(0));
    }

    #[test]
    fn a_summary_closes_a_burst_that_no_later_line_reports() {
        let t0 = Instant::now();
        let mut limiter = LogLimiter::new(log::Level::Info, "test lines");
        assert_eq!(limiter.allow(t0), Some(0));
        for ms in 1..=500 {
            assert_eq!(limiter.allow(t0 + Duration::from_millis(ms)), None);
        }
        // Too early: nothing happens, the count stays.
        limiter.write_summary(t0 + Duration::from_millis(600));
        assert_eq!(limiter.summary_due(), Some(t0 + LOG_INTERVAL));
        limiter.write_summary(t0 + LOG_INTERVAL);
        assert_eq!(limiter.summary_due(), None);
        // The summary counts as the second's line.
        assert_eq!(limiter.allow(t0 + Duration::from_millis(1500)), None);
        assert_eq!(limiter.allow(t0 + Duration::from_millis(2000)), Some(1));
    }

    #[test]
    fn more_is_silent_for_zero() {
        assert_eq!(More(0).to_string(), "");
        assert_eq!(More(7).to_string(), " (7 more like this not logged)");
    }
}
