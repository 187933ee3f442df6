//! Rebuilding the broker's state from the store at start-up: persistent sessions with their
//! subscriptions, queues, inflight PUBRELs and inbound QoS 2 ids, and retained messages.
//! Sessions that were online when the broker stopped are treated as disconnected at restart:
//! their wills follow the normal rules and their expiry starts counting.
//!
//! Stored state obeys today's limits, not the ones it was written under: a subscription over
//! `max_topic_levels`, `max_subscriptions_per_session` or `max_subscription_bytes` (written by
//! an older version or under a larger setting) is dropped from the session and the store with
//! one warning per session, never loaded into the tree.

use super::session::filter_bytes;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::logging::Abbreviated;
use super::message::{Delivery, Message};
use super::session::{packet_id_for_seq, Inflight, OutboundState, SessionExpiry, Subscription};
use super::subscribe::{over_limits, shared_refusal};
use super::{Broker, ConnId, Limits, Outbox, SessionId};
use crate::codec::{Packet, ProtocolVersion, QoS};
use crate::store::LoadedSession;

/// Sessions read from the store at a time: the restore holds this many as read (a few hundred
/// bytes each, their strings and wills) besides what it has restored, never the whole store.
const LOAD_CHUNK: usize = 256;

/// No connection exists during restore, so nothing can be sent.
struct NoConnections;

impl Outbox for NoConnections {
    fn send(&mut self, _: ConnId, _: ProtocolVersion, _: &Packet) {}
    fn close(&mut self, _: ConnId) {}
    fn backlog(&self, _: ConnId) -> usize {
        0
    }
    fn resume(&mut self, _: ConnId) {}
}

/// What was brought back, for the start-up log line.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Restored {
    pub sessions: usize,
    pub subscriptions: usize,
    pub queued_messages: u64,
    pub retained: usize,
    /// Sessions left in the store because `max_sessions` is smaller than what it holds.
    pub skipped_sessions: usize,
    /// Stored subscriptions dropped because they break today's limits.
    pub skipped_subscriptions: usize,
}

impl Broker {
    /// Brings back what the store holds into an empty broker, reading it in chunks.
    pub fn restore(&mut self, now: Instant) -> rusqlite::Result<Restored> {
        let out = &mut NoConnections;
        let mut restored = Restored::default();
        self.store.begin_load()?;
        for loaded in self.store.load_retained()? {
            if loaded.expires_at.is_some_and(|at| at <= now) {
                self.store.delete_retained(&loaded.publish.topic);
                continue;
            }
            let (message, _) = Message::with_deadline(loaded.publish, loaded.expires_at);
            self.retained.apply(&Rc::new(message));
            restored.retained += 1;
        }

        let mut wills_due_now = Vec::new();
        let limits = self.limits.clone();
        let mut chunk = Vec::with_capacity(LOAD_CHUNK);
        let mut after = None;
        while let Some(last) = self.store.load_sessions(after, LOAD_CHUNK, &mut chunk)? {
            after = Some(last);
            for loaded in chunk.drain(..) {
                let wills = &mut wills_due_now;
                self.restore_session(loaded, &limits, now, wills, &mut restored, out);
            }
        }
        drop(chunk);
        let damaged = self.store.end_load();
        for session_id in wills_due_now {
            if let Some(will) = self.session_mut(session_id).and_then(|s| s.will.take()) {
                self.publish_will(session_id, *will, now, out);
            }
        }
        // Deadlines already past are handled by the first timer pass.
        self.end_of_pass(now, out);
        if damaged > 0 {
            log::warn!("{damaged} damaged rows were skipped while loading the store");
        }
        Ok(restored)
    }

    /// One stored session back in the table, the tree and the timers.
    fn restore_session(
        &mut self,
        loaded: LoadedSession,
        limits: &Limits,
        now: Instant,
        wills_due_now: &mut Vec<SessionId>,
        restored: &mut Restored,
        out: &mut NoConnections,
    ) {
        let expiry = SessionExpiry::from_duration(loaded.expiry);
        let client_id: Rc<str> = Rc::from(loaded.client_id.as_str());
        let Some(session_id) = self.create_session(client_id.clone(), loaded.protocol, expiry)
        else {
            restored.skipped_sessions += 1;
            return;
        };
        self.bind_store_id(session_id, loaded.id);
        restored.sessions += 1;
        restored.queued_messages += self.store.usage(loaded.id).messages;
        let mut skipped = Vec::new();
        for (filter, options, subscription_id) in loaded.subscriptions {
            let Some(session) = self.session_mut(session_id) else { break };
            if let Some((_, why)) = over_limits(limits, session, &filter) {
                skipped.push((filter, why));
                continue;
            }
            if let Some(why) = shared_refusal(limits, &filter) {
                skipped.push((filter, why));
                continue;
            }
            if session
                .subscriptions
                .insert(&filter, Subscription { options, subscription_id })
                .is_none()
            {
                session.subscription_bytes =
                    session.subscription_bytes.saturating_add(filter_bytes(&filter));
            }
            self.tree_subscribe(
                &filter,
                super::topic_tree::SubscriberEntry {
                    session: session_id,
                    options,
                    subscription_id: subscription_id.and_then(std::num::NonZeroU32::new),
                    share: None,
                },
            );
            restored.subscriptions += 1;
        }
        if let Some((first, why)) = skipped.first() {
            log::warn!(
                "client {client_id:?}: {} stored subscription(s) over today's limits dropped \
                 (first: {} over {why})",
                skipped.len(),
                Abbreviated(first)
            );
            restored.skipped_subscriptions += skipped.len();
            for (filter, _) in &skipped {
                self.store.delete_subscription(loaded.id, filter);
            }
        }
        // Rows sent before the stop (and not acknowledged) go back in flight, in order,
        // to be re-sent with DUP=1 and their original packet ids on reconnect.
        let first_queued = loaded.first_queued_seq.unwrap_or(loaded.next_seq);
        let first_unsent = loaded.first_unsent.clamp(first_queued, loaded.next_seq);
        let sent_rows = if first_unsent > first_queued {
            self.store.load_queue(loaded.id, first_queued, usize::from(u16::MAX))
        } else {
            Vec::new()
        };
        let mut inflight: Vec<Inflight> = sent_rows
            .into_iter()
            .filter(|row| row.seq < first_unsent)
            .map(|row| {
                let seq = row.seq;
                let delivery = Delivery::from_stored(seq, row.publish, row.expires_at);
                let state = match delivery.qos {
                    QoS::ExactlyOnce => OutboundState::AwaitPubrec(delivery),
                    QoS::AtLeastOnce | QoS::AtMostOnce => OutboundState::AwaitPuback(delivery),
                };
                Inflight {
                    packet_id: packet_id_for_seq(seq),
                    seq: Some(seq),
                    state,
                    sent_at: now,
                    held: false,
                }
            })
            .collect();
        inflight.extend(loaded.pubrel_pending.iter().map(|&seq| Inflight {
            packet_id: packet_id_for_seq(seq),
            seq: Some(seq),
            state: OutboundState::AwaitPubcomp,
            sent_at: now,
            held: false,
        }));
        inflight.sort_by_key(|m| m.seq);

        let Some(session) = self.session_mut(session_id) else { return };
        session.inflight = inflight.into();
        session.inbound_qos2 = loaded.inbound_qos2.into_iter().collect();
        session.dropped = loaded.dropped;
        if let Some(stored) = session.stored.as_mut() {
            stored.next_seq = loaded.next_seq;
            stored.first_unsent = first_unsent;
            stored.saved_first_unsent = first_unsent;
            stored.cached_upto = first_unsent;
        }
        // A stored will without a due time belonged to a connection that was open when
        // the broker stopped: that connection ended abnormally now.
        let was_online = loaded.will_due.is_none() && loaded.expires_at.is_none();
        session.will = loaded.will.map(Box::new);
        session.will_due = loaded.will_due;
        session.expires_at = loaded.expires_at;
        if was_online {
            if let SessionExpiry::After(after) = expiry {
                session.expires_at = Some(now + after);
            }
            let delay = session
                .will
                .as_ref()
                .and_then(|w| w.properties.will_delay_interval)
                .map_or(Duration::ZERO, |s| Duration::from_secs(u64::from(s)));
            if session.will.is_some() {
                if delay.is_zero() || expiry == SessionExpiry::AtDisconnect {
                    wills_due_now.push(session_id);
                } else {
                    session.will_due = Some(now + delay);
                }
            }
        }
        if expiry == SessionExpiry::AtDisconnect {
            self.end_session(session_id, now, out);
            return;
        }
        self.arm_session_timer(session_id);
    }
}
