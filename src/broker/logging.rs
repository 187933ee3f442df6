//! Log lines a hostile client cannot blow up: a warning it can trigger thousands of times a
//! second is written at most once per second for the whole broker, with the count of the ones
//! left out since; a topic it chose is shown abbreviated.

use std::fmt;
use std::time::Instant;

use crate::codec::topic;

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

/// A topic for a log line: at most 64 characters of it and its length, so a 64 KB filter
/// does not become a 64 KB log line.
pub(super) struct Abbreviated<'a>(pub &'a str);

impl fmt::Display for Abbreviated<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 64;
        match self.0.char_indices().nth(SHOWN) {
            None => write!(f, "{:?}", self.0),
            Some((cut, _)) => {
                let head = self.0.get(..cut).unwrap_or_default();
                write!(
                    f,
                    "{head:?}... ({} bytes, {} levels)",
                    self.0.len(),
                    topic::level_count(self.0)
                )
            }
        }
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

    #[test]
    fn long_topics_are_abbreviated_in_logs() {
        assert_eq!(Abbreviated("a/b").to_string(), "\"a/b\"");
        let long = "é".repeat(100); // two bytes a character: the cut must fall between them
        let shown = Abbreviated(&long).to_string();
        assert_eq!(shown, format!("{:?}... (200 bytes, 1 levels)", "é".repeat(64)));
    }
}
