//! Log lines a hostile client cannot blow up: a line it can trigger thousands of times a
//! second goes through a [`LogLimiter`] (`crate::log_limit`, shared with `net`): at most once
//! per second for the whole broker, with the count of the ones left out; a topic it chose is
//! shown abbreviated.

use std::fmt;

use crate::codec::topic;

use crate::log_limit::earliest_summary;
pub(super) use crate::log_limit::{LogLimiter, More};
use log::Level::{Info, Warn};
use std::time::Instant;

/// Every kind of line the broker writes that a client can repeat at will, each limited on its
/// own (a flood of one kind does not hide another).
#[derive(Debug)]
pub(super) struct Logs {
    /// A connection's first bytes are not a valid CONNECT.
    pub invalid_connect: LogLimiter,
    /// No CONNECT within `mqtt.connect_timeout` (a TLS handshake that never finishes included).
    pub connect_timeout: LogLimiter,
    /// A CONNECT refused for the broker's limits or options (`max_connections`,
    /// `max_keepalive`, a will topic too deep, no client certificate).
    pub connect_refused: LogLimiter,
    pub keep_alive: LogLimiter,
    /// A protocol violation on an established connection.
    pub protocol_error: LogLimiter,
    pub login_refused: LogLimiter,
    pub acl_denied: LogLimiter,
    pub message_dropped: LogLimiter,
    pub slow_subscriber: LogLimiter,
}

impl Default for Logs {
    fn default() -> Logs {
        Logs {
            invalid_connect: LogLimiter::new(Info, "invalid CONNECT"),
            connect_timeout: LogLimiter::new(Info, "no CONNECT within mqtt.connect_timeout"),
            connect_refused: LogLimiter::new(Warn, "CONNECT refused (limits)"),
            keep_alive: LogLimiter::new(Info, "keep-alive expired"),
            protocol_error: LogLimiter::new(Info, "protocol error, disconnected"),
            login_refused: LogLimiter::new(Warn, "login refused"),
            acl_denied: LogLimiter::new(Info, "not allowed by the ACL"),
            message_dropped: LogLimiter::new(Warn, "message dropped"),
            slow_subscriber: LogLimiter::new(Warn, "slow subscriber"),
        }
    }
}

impl Logs {
    fn all(&self) -> [&LogLimiter; 9] {
        [
            &self.invalid_connect,
            &self.connect_timeout,
            &self.connect_refused,
            &self.keep_alive,
            &self.protocol_error,
            &self.login_refused,
            &self.acl_denied,
            &self.message_dropped,
            &self.slow_subscriber,
        ]
    }

    /// When the next "N more like this" summary is due.
    pub fn next_summary(&self) -> Option<Instant> {
        earliest_summary(self.all())
    }

    /// Writes every summary due at `now`.
    pub fn write_summaries(&mut self, now: Instant) {
        for limiter in [
            &mut self.invalid_connect,
            &mut self.connect_timeout,
            &mut self.connect_refused,
            &mut self.keep_alive,
            &mut self.protocol_error,
            &mut self.login_refused,
            &mut self.acl_denied,
            &mut self.message_dropped,
            &mut self.slow_subscriber,
        ] {
            limiter.write_summary(now);
        }
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

    #[test]
    fn long_topics_are_abbreviated_in_logs() {
        assert_eq!(Abbreviated("a/b").to_string(), "\"a/b\"");
        let long = "é".repeat(100); // two bytes a character: the cut must fall between them
        let shown = Abbreviated(&long).to_string();
        assert_eq!(shown, format!("{:?}... (200 bytes, 1 levels)", "é".repeat(64)));
    }
}
