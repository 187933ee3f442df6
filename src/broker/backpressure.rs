//! Back-pressure instead of loss, bounded in time: when a subscriber's memory queue or output
//! buffer is full, the publisher feeding it is paused (the event loop stops reading its socket,
//! so TCP slows it down) and the message is still delivered.
//!
//! Scope: a paused publisher remembers the sessions it waits for (each once, at most
//! [`WAIT_SLOTS`]) and resumes as soon as those have drained to half their limits, whatever
//! other sessions do. Bound: no client delays another by more than `mqtt.max_pause`. A
//! publisher is resumed at the latest `max_pause` after it was paused; a session congested for
//! longer than `max_pause` becomes *slow* and pauses nobody until it has drained to half; its
//! overflow then follows `mqtt.slow_subscriber` (dropped and counted, or the subscriber is
//! disconnected). Persistent sessions queue QoS 1/2 messages in the store and never pause
//! anyone for them, so they lose nothing by being slow. The loop wakes up for these deadlines
//! ([`Broker::congestion_deadline`]); nothing is armed while nobody is congested or paused.
//!
//! The global output budget (`mqtt.tx_buffer_total`, `output_budget.rs`) uses the same
//! mechanism: a connection over its share of it while all output together is over it is
//! congested as if over its own output limit, and stays so until it drains to half its share
//! (or the total to half the budget) — unless it has QoS 1/2 messages queued or in flight:
//! those flows are held by their own limits only, so the budget does not make them slow.
//!
//! Overshoot is bounded: a paused publisher adds at most what was already read from its
//! socket, and past a hard cap (4× the queue limit, 2× the output limit) messages are dropped
//! and counted as before. A connection whose own deliveries are congested is never paused: it
//! must be read for the acknowledgements that drain it, so no set of connections can wait on
//! each other forever.
//!
//! Cost: nothing on the per-message path below the soft limits; past them, [`Broker::congest`]
//! is a few comparisons. The lists of congested sessions and paused publishers are walked
//! once per loop pass, and only while one of them is not empty.

use std::time::Instant;

use super::output_budget;
use super::session::{Flow, SessionId};
use super::{Broker, ConnId, Outbox, SlowSubscriber};
use crate::codec::{Disconnect, Packet, ProtocolVersion, ReasonCode};

/// Hard caps as multiples of the configured soft limits.
pub const QUEUE_HARD_FACTOR: usize = 4;
pub const OUTPUT_HARD_FACTOR: usize = 2;

/// Sessions a paused publisher remembers by name. One publish rarely congests more than a
/// few subscribers at once; past this the publisher waits for every congested session (the
/// old, broader rule), still for `max_pause` at most.
const WAIT_SLOTS: usize = 4;

/// Why and since when a publisher is not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pause {
    since: Instant,
    /// The congested sessions it fed, each once.
    waits_for: [Option<SessionId>; WAIT_SLOTS],
    /// It fed more congested sessions than `waits_for` holds.
    overflowed: bool,
}

impl Pause {
    fn new(since: Instant, session: SessionId) -> Pause {
        let mut waits_for = [None; WAIT_SLOTS];
        waits_for[0] = Some(session);
        Pause { since, waits_for, overflowed: false }
    }

    fn add(&mut self, session: SessionId) {
        if self.waits_for.contains(&Some(session)) {
            return;
        }
        match self.waits_for.iter_mut().find(|slot| slot.is_none()) {
            Some(slot) => *slot = Some(session),
            None => self.overflowed = true,
        }
    }
}

impl Broker {
    /// Whether the loop should stop reading `conn` for now.
    pub fn is_paused(&self, conn: ConnId) -> bool {
        self.conn(conn).is_some_and(|c| c.pause.is_some())
    }

    /// `session` is over a soft limit while a publisher is being handled: pause that publisher
    /// unless it is the congested subscriber itself. Returns false if nobody was paused, and
    /// the caller drops instead: there is no publisher to pause (a will, a retained replay),
    /// or the session has been congested for longer than `max_pause` (it is slow).
    pub(super) fn congest(&mut self, session: SessionId, now: Instant) -> bool {
        let Some(publisher) = self.current_publisher else { return false };
        let max_pause = self.limits.max_pause;
        let Some(subscriber) = self.session_mut(session) else { return false };
        match subscriber.flow {
            Flow::Clear => {
                subscriber.flow = Flow::Congested { since: now };
                self.congested.push(session);
            }
            // Past its deadline it is about to be marked slow (`on_congestion_timers`).
            Flow::Congested { since } if now >= since + max_pause => return false,
            Flow::Congested { .. } => {}
            Flow::Slow { .. } => return false,
        }
        let own = self.conn(publisher).and_then(|c| c.session()) == Some(session);
        if own {
            return false;
        }
        let Some(state) = self.conn_mut(publisher) else { return false };
        match state.pause.as_mut() {
            Some(pause) => pause.add(session),
            None => {
                state.pause = Some(Box::new(Pause::new(now, session)));
                self.paused.push(publisher);
                log::debug!("{publisher:?}: paused, a subscriber is congested");
            }
        }
        true
    }

    /// Called after output was written (once per loop pass; it also notes the unwritten output
    /// total for `$SYS`): forgets subscribers that drained to half their limits
    /// and resumes the publishers that waited only for drained (or slow, or gone) sessions,
    /// and those paused for `max_pause` already.
    pub fn relieve_congestion(&mut self, now: Instant, out: &mut dyn Outbox) {
        self.output_after_pass = out.output_total();
        if self.congested.is_empty() && self.paused.is_empty() {
            return;
        }
        let queue_low = self.limits.max_queued_messages / 2;
        let output_low = self.limits.tx_buffer_limit / 2;
        let (budget, total) = (self.limits.tx_buffer_total, out.output_total());
        let mut congested = std::mem::take(&mut self.congested);
        congested.retain(|&id| {
            let Some(session) = self.sessions.get_mut(id.0) else {
                return false;
            };
            // `Clear` here is a stale entry: the id was reused by a session not congested.
            let was_slow = match session.flow {
                Flow::Clear => return false,
                Flow::Congested { .. } => false,
                Flow::Slow { .. } => true,
            };
            let backlog = session.conn.map_or(0, |c| out.backlog(c));
            // The budget holds only a session without QoS 1/2 messages queued or in flight:
            // a QoS 1/2 flow follows its own limits alone, as before the budget existed.
            let qos0_only = session.queue.is_empty() && session.inflight.is_empty();
            let still = session.conn.is_some()
                && (session.queue.len() > queue_low
                    || backlog > output_low
                    || (qos0_only && output_budget::still_full(budget, total, backlog)));
            if !still {
                session.flow = Flow::Clear;
                if was_slow {
                    log::info!("client {:?} caught up; it is no longer slow", session.client_id);
                }
            }
            still
        });
        self.congested = congested;
        self.resume_publishers(now, out);
    }

    /// When [`Broker::on_congestion_timers`] next has work: the earliest moment a congested
    /// session turns slow or a paused publisher reaches `max_pause`. `None` when nobody is
    /// congested or paused, so an idle broker arms nothing.
    pub(super) fn congestion_deadline(&self) -> Option<Instant> {
        let max_pause = self.limits.max_pause;
        let sessions = self.congested.iter().filter_map(|&id| match self.session(id)?.flow {
            Flow::Congested { since } => Some(since),
            Flow::Clear | Flow::Slow { .. } => None,
        });
        let publishers =
            self.paused.iter().filter_map(|&c| self.conn(c)?.pause.as_ref().map(|p| p.since));
        sessions.chain(publishers).min().map(|since| since + max_pause)
    }

    /// Due with the timers: sessions congested for `max_pause` become slow (and are
    /// disconnected if `mqtt.slow_subscriber` says so); publishers paused for `max_pause`,
    /// or only for sessions that just became slow, are resumed.
    pub(super) fn on_congestion_timers(&mut self, now: Instant, out: &mut dyn Outbox) {
        if self.congested.is_empty() && self.paused.is_empty() {
            return;
        }
        let max_pause = self.limits.max_pause;
        let mut newly_slow = Vec::new();
        for &id in &self.congested {
            let Some(session) = self.sessions.get_mut(id.0) else {
                continue;
            };
            if let Flow::Congested { since } = session.flow {
                if now >= since + max_pause {
                    session.flow = Flow::Slow { since };
                    newly_slow.push(id);
                }
            }
        }
        self.resume_publishers(now, out);
        for id in newly_slow {
            self.became_slow(id, now, out);
        }
    }

    /// A session was congested for longer than `max_pause`: say so, and apply the policy.
    fn became_slow(&mut self, id: SessionId, now: Instant, out: &mut dyn Outbox) {
        let Some(session) = self.session(id) else { return };
        let Some(conn) = session.conn else { return };
        let client_id = session.client_id.clone();
        let queued = session.queue.len();
        let backlog = out.backlog(conn);
        let policy = self.limits.slow_subscriber;
        let max_pause = self.limits.max_pause;
        self.stats.slow_subscribers += 1;
        let what = match policy {
            SlowSubscriber::Drop => "its overflow is dropped until it catches up",
            SlowSubscriber::Disconnect => "disconnecting it",
        };
        if let Some(suppressed) = self.logs.slow_subscriber.allow(now) {
            log::warn!(
                "client {client_id:?} ({conn:?}): congested for over {max_pause:?} (mqtt.max_pause; \
                 {queued} queued, {backlog} bytes unwritten), publishers no longer wait for it; \
                 {what} (mqtt.slow_subscriber) ({suppressed} more slow subscribers not logged \
                 since the last warning)"
            );
        }
        match policy {
            SlowSubscriber::Drop => {}
            SlowSubscriber::Disconnect => {
                // Quota exceeded rather than Server busy: a limit of this client's was
                // exceeded (its queue); the broker itself is not overloaded and serves others.
                if self.conn(conn).and_then(|c| c.version) == Some(ProtocolVersion::V5) {
                    let disconnect = Disconnect {
                        reason: ReasonCode::QuotaExceeded,
                        properties: Default::default(),
                    };
                    self.send(out, conn, &Packet::Disconnect(disconnect), now);
                }
                self.stats.slow_disconnects += 1;
                self.close_conn(conn, now, out);
            }
        }
    }

    /// Resumes every paused publisher that no longer has to wait (see the module docs).
    fn resume_publishers(&mut self, now: Instant, out: &mut dyn Outbox) {
        if self.paused.is_empty() {
            return;
        }
        let max_pause = self.limits.max_pause;
        // Only publishers that overflowed their wait list need this; it is computed once.
        let any_holding = self.congested.iter().any(|&id| self.holds_publishers(id, now));
        let mut paused = std::mem::take(&mut self.paused);
        paused.retain(|&conn| {
            let Some(state) = self.conn(conn) else { return false };
            let Some(pause) = state.pause.as_ref() else { return false };
            let overdue = now >= pause.since + max_pause;
            let held = pause.waits_for.iter().flatten().any(|&s| self.holds_publishers(s, now))
                || (pause.overflowed && any_holding);
            // Never leave a congested subscriber's own connection paused (module docs).
            let congested_itself = state
                .session()
                .and_then(|s| self.session(s))
                .is_some_and(|s| s.flow != Flow::Clear);
            let resume = overdue || !held || congested_itself;
            if resume {
                if let Some(state) = self.conn_mut(conn) {
                    state.pause = None;
                    out.resume(conn);
                }
            }
            !resume
        });
        self.paused = paused;
    }

    /// Whether `session` still keeps the publishers paused for it: congested, not for
    /// `max_pause` yet.
    fn holds_publishers(&self, session: SessionId, now: Instant) -> bool {
        match self.session(session).map(|s| s.flow) {
            Some(Flow::Congested { since }) => now < since + self.limits.max_pause,
            Some(Flow::Clear | Flow::Slow { .. }) | None => false,
        }
    }
}
