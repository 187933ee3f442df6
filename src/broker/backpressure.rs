//! Back-pressure instead of loss: when a subscriber's memory queue or output buffer is full,
//! the publisher feeding it is paused (the event loop stops reading its socket, so TCP slows it
//! down) and the message is still delivered. Publishers resume once every congested subscriber
//! has drained to half its limit.
//!
//! Overshoot is bounded: a paused publisher adds at most what was already read from its
//! socket, and past a hard cap (4× the queue limit, 2× the output limit) messages are dropped
//! and counted as before. A connection whose own deliveries are congested is never paused: it
//! must be read for the acknowledgements that drain it, so no set of connections can wait on
//! each other forever.

use super::session::SessionId;
use super::{Broker, ConnId, Outbox};

/// Hard caps as multiples of the configured soft limits.
pub(super) const QUEUE_HARD_FACTOR: usize = 4;
pub(super) const OUTPUT_HARD_FACTOR: usize = 2;

impl Broker {
    /// Whether the loop should stop reading `conn` for now.
    pub fn is_paused(&self, conn: ConnId) -> bool {
        self.conn(conn).is_some_and(|c| c.paused)
    }

    /// `session` is over a soft limit while a publisher is being handled: pause that publisher
    /// unless it is the congested subscriber itself. Returns false if there is no publisher
    /// to pause (a will, a retained replay): the caller drops instead.
    pub(super) fn congest(&mut self, session: SessionId) -> bool {
        let Some(publisher) = self.current_publisher else { return false };
        let Some(subscriber) = self.session_mut(session) else { return false };
        if !subscriber.congested {
            subscriber.congested = true;
            self.congested.push(session);
        }
        let own = self.conn(publisher).and_then(|c| c.session()) == Some(session);
        if own {
            return false;
        }
        if let Some(state) = self.conn_mut(publisher) {
            if !state.paused {
                state.paused = true;
                self.paused.push(publisher);
                log::debug!("{publisher:?}: paused, a subscriber is congested");
            }
        }
        true
    }

    /// Called after output was written: forgets subscribers that drained to half their limits
    /// and, when none is left, resumes every paused publisher.
    pub fn relieve_congestion(&mut self, out: &mut dyn Outbox) {
        if self.congested.is_empty() && self.paused.is_empty() {
            return;
        }
        let queue_low = self.limits.max_queued_messages / 2;
        let output_low = self.limits.tx_buffer_limit / 2;
        let mut congested = std::mem::take(&mut self.congested);
        congested.retain(|&id| {
            let Some(session) = self.sessions.get_mut(id.0 as usize).and_then(Option::as_mut)
            else {
                return false;
            };
            let backlog = session.conn.map_or(0, |c| out.backlog(c));
            let still =
                session.conn.is_some() && (session.queue.len() > queue_low || backlog > output_low);
            session.congested = still;
            still
        });
        self.congested = congested;
        // Never leave a congested subscriber's own connection paused (see module docs).
        let mut paused = std::mem::take(&mut self.paused);
        paused.retain(|&conn| {
            let resume = self.congested.is_empty()
                || self
                    .conn(conn)
                    .and_then(|c| c.session())
                    .and_then(|s| self.session(s))
                    .is_some_and(|s| s.congested);
            if resume {
                if let Some(state) = self.conn_mut(conn) {
                    state.paused = false;
                    out.resume(conn);
                }
            }
            !resume && self.conn(conn).is_some()
        });
        self.paused = paused;
    }
}
