//! Deadlines: connect timeout, keep-alive, will delay, session expiry, and back-pressure's
//! `max_pause` (kept by `backpressure.rs` itself: its few entries change with every pause).
//!
//! One ordered set for all of them. Activity costs no timer operation: a due keep-alive entry
//! whose deadline moved later is simply re-armed. Each entry carries the generation of what
//! armed it, so an entry made stale by a session coming back is dropped when due. A
//! connection's entry is removed outright when CONNECT replaces the connect timeout and when
//! the connection closes, so idle connections cause no wake-ups before their keep-alive
//! deadline, and the loop sleeps until `next_deadline`.

use std::collections::BTreeSet;
use std::time::Instant;

use super::connection::Phase;
use super::logging::More;
use super::session::SessionId;
use super::{Broker, ConnId, Outbox};
use crate::codec::{Disconnect, Packet, ProtocolVersion, ReasonCode};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKey {
    Conn(ConnId, u32),
    Session(SessionId, u32),
    /// MQTT 3.1.1 re-send of unacknowledged messages on a live connection.
    Resend(ConnId, u32),
}

#[derive(Debug, Default)]
pub struct Timers {
    due: BTreeSet<(Instant, TimerKey)>,
}

impl Timers {
    fn arm_conn(&mut self, at: Instant, conn: ConnId, generation: u32) {
        self.due.insert((at, TimerKey::Conn(conn, generation)));
    }

    fn cancel_conn(&mut self, at: Instant, conn: ConnId, generation: u32) {
        self.due.remove(&(at, TimerKey::Conn(conn, generation)));
    }

    pub fn arm_session(&mut self, at: Instant, session: SessionId, generation: u32) {
        self.due.insert((at, TimerKey::Session(session, generation)));
    }

    pub fn arm_resend(&mut self, at: Instant, conn: ConnId, generation: u32) {
        self.due.insert((at, TimerKey::Resend(conn, generation)));
    }

    fn next(&self) -> Option<Instant> {
        self.due.first().map(|(at, _)| *at)
    }

    fn pop_due(&mut self, now: Instant) -> Option<TimerKey> {
        match self.due.first() {
            Some((at, _)) if *at <= now => self.due.pop_first().map(|(_, key)| key),
            _ => None,
        }
    }
}

impl Broker {
    /// The earliest moment `on_timers` has work (possibly a stale entry: waking early is
    /// harmless, sleeping late is not).
    pub fn next_deadline(&self) -> Option<Instant> {
        [
            self.timers.next(),
            self.store.flush_deadline(),
            self.congestion_deadline(),
            self.logs.next_summary(),
            self.sys_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Runs everything due at `now`.
    pub fn on_timers(&mut self, now: Instant, out: &mut dyn Outbox) {
        while let Some(key) = self.timers.pop_due(now) {
            match key {
                TimerKey::Conn(conn, generation) => self.conn_timer(conn, generation, now, out),
                TimerKey::Session(session, generation) => {
                    self.session_timer(session, generation, now, out)
                }
                TimerKey::Resend(conn, generation) => self.resend_timer(conn, generation, now, out),
            }
        }
        self.on_congestion_timers(now, out);
        self.logs.write_summaries(now);
    }

    /// Arms the connection's one timer entry (connect timeout or keep-alive) at `at`.
    pub(super) fn arm_conn_timer(&mut self, conn: ConnId, at: Instant) {
        let Some(state) = self.conn_mut(conn) else { return };
        state.timer_at = Some(at);
        let generation = state.timer_generation;
        self.timers.arm_conn(at, conn, generation);
    }

    /// Removes the connection's timer entry, if one is armed.
    pub(super) fn cancel_conn_timer(&mut self, conn: ConnId) {
        let Some(state) = self.conn_mut(conn) else { return };
        if let Some(at) = state.timer_at.take() {
            let generation = state.timer_generation;
            self.timers.cancel_conn(at, conn, generation);
        }
    }

    fn conn_timer(&mut self, conn: ConnId, generation: u32, now: Instant, out: &mut dyn Outbox) {
        let connect_timeout = self.limits.connect_timeout;
        let Some(state) = self.conn_mut(conn).filter(|c| c.timer_generation == generation) else {
            return;
        };
        state.timer_at = None; // This entry was just taken from the set.
        let (phase, version, paused) = (state.phase, state.version, state.pause.is_some());
        let deadline = state.deadline(connect_timeout);
        if paused {
            // Its PINGREQs sit unread in the socket while it is paused: not its fault. A pause
            // lasts `mqtt.max_pause` at most (backpressure.rs), well under any keep-alive.
            if let Some(keep_alive) = state.keep_alive {
                self.arm_conn_timer(conn, now + keep_alive);
            }
            return;
        }
        match deadline {
            None => {}
            Some(deadline) if deadline > now => self.arm_conn_timer(conn, deadline),
            Some(_) => match phase {
                Phase::AwaitConnect => {
                    // A TLS handshake that never finishes ends here too.
                    if let Some(more) = self.logs.connect_timeout.allow(now) {
                        let peer =
                            self.peer_of(conn).map(|p| format!(" from {p}")).unwrap_or_default();
                        log::info!(
                            "{conn:?}{peer}: no CONNECT within {connect_timeout:?}; closing{}",
                            More(more)
                        );
                    }
                    self.close_conn(conn, now, out);
                }
                Phase::Active(_) => {
                    if let Some(more) = self.logs.keep_alive.allow(now) {
                        let client = self.client_label(conn);
                        log::info!("{client}: keep-alive expired; closing{}", More(more));
                    }
                    if version == Some(ProtocolVersion::V5) {
                        let disconnect = Disconnect {
                            reason: ReasonCode::KeepAliveTimeout,
                            properties: Default::default(),
                        };
                        self.send(out, conn, &Packet::Disconnect(disconnect), now);
                    }
                    self.close_conn(conn, now, out);
                }
                Phase::Closed => {}
            },
        }
    }

    fn session_timer(
        &mut self,
        id: SessionId,
        generation: u32,
        now: Instant,
        out: &mut dyn Outbox,
    ) {
        let Some(session) = self.session_mut(id) else {
            return;
        };
        if session.timer_generation != generation || session.conn.is_some() {
            return;
        }
        if session.will_due.is_some_and(|due| due <= now) {
            session.will_due = None;
            if let Some(will) = session.will.take() {
                self.publish_will(id, *will, now, out);
            }
        }
        let Some(session) = self.session_mut(id) else {
            return;
        };
        if session.expires_at.is_some_and(|at| at <= now) {
            let client_id = session.client_id.clone();
            log::debug!("session {client_id:?} expired");
            self.stats.sessions_expired += 1;
            self.end_session(id, now, out);
            return;
        }
        self.arm_session_timer(id);
    }

    /// Arms the 3.1.1 resend timer of `conn` if `sqlite.resend_interval` is set and nothing
    /// is armed yet (one timer per connection, re-armed while messages stay unacknowledged).
    pub(super) fn arm_resend(&mut self, conn: ConnId, now: Instant) {
        let Some(interval) = self.limits.resend_interval else { return };
        let Some(state) = self.conn_mut(conn) else { return };
        if state.resend_armed || state.version == Some(ProtocolVersion::V5) {
            return;
        }
        state.resend_armed = true;
        let generation = state.timer_generation;
        self.timers.arm_resend(now + interval, conn, generation);
    }

    fn resend_timer(&mut self, conn: ConnId, generation: u32, now: Instant, out: &mut dyn Outbox) {
        let Some(interval) = self.limits.resend_interval else { return };
        let Some(state) = self.conn_mut(conn).filter(|c| c.timer_generation == generation) else {
            return;
        };
        state.resend_armed = false;
        let Some(session_id) = state.session() else { return };
        let Some(session) = self.session(session_id) else { return };
        let due: Vec<usize> = (0..session.inflight.len())
            .filter(|&i| session.inflight[i].sent_at + interval <= now)
            .collect();
        if !due.is_empty() {
            log::debug!(
                "{}: re-sending {} unacknowledged messages",
                self.client_label(conn),
                due.len()
            );
        }
        self.resend_inflight_where(session_id, |i| due.contains(&i), now, out);
        if self.session(session_id).is_some_and(|s| !s.inflight.is_empty()) {
            let earliest = self
                .session(session_id)
                .and_then(|s| s.inflight.iter().map(|m| m.sent_at).min())
                .unwrap_or(now);
            if let Some(state) = self.conn_mut(conn) {
                state.resend_armed = true;
            }
            // Everything due was just re-sent, so this lies in the future.
            self.timers.arm_resend(earliest + interval, conn, generation);
        }
    }

    /// Arms the earliest of the session's will and expiry deadlines under a new generation.
    pub(super) fn arm_session_timer(&mut self, id: SessionId) {
        let generation = self.next_generation();
        let Some(session) = self.session_mut(id) else {
            return;
        };
        session.timer_generation = generation;
        let next = match (session.will_due, session.expires_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let Some(at) = next {
            self.timers.arm_session(at, id, generation);
        }
    }
}
