//! The bounded message ring: rows queued for (or in flight to) persistent sessions.
//!
//! Caps: `disk_cache_size` rows in all, `max_queued_per_session` rows and
//! `max_queued_bytes_per_session` bytes per session. At a cap, `overflow` decides: evict the
//! oldest unsent row of that session (or, for the global cap, the oldest row of the whole
//! ring), drop the new message, or reject it. Every eviction and drop is counted on the
//! session row. Each step is one indexed statement, so inserting costs the same at any fill.

use std::time::Instant;

use rusqlite::{params, OptionalExtension};

use super::blob::{decode_publish, encode_publish};
use super::{Store, StoredSessionId, WriteKind};
use crate::codec::Publish;
use crate::config::Overflow;

/// What became of a message offered to the ring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enqueued {
    /// Stored; to make room these `(session, seq)` rows were evicted.
    Stored { evicted: Vec<(StoredSessionId, i64)> },
    /// Not stored (`drop_new`, or nothing evictable); counted.
    Dropped,
    /// Not stored because `overflow = "reject"`; the publisher should be told.
    Rejected,
    /// The write failed; the batch will be rolled back.
    Failed,
}

/// A session's own queue caps (a bridge's `max_queued`, `max_queued_bytes`, `overflow`),
/// used instead of `sqlite.max_queued_per_session`, `max_queued_bytes_per_session` and
/// `overflow`; the ring's global `disk_cache_size` still applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueCaps {
    pub max_messages: u64,
    pub max_bytes: u64,
    pub overflow: Overflow,
}

/// A queued row read back for delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedMessage {
    pub seq: i64,
    pub publish: Publish,
    pub expires_at: Option<Instant>,
}

impl Store {
    /// Appends `publish` as row `seq` of `session`'s queue. `first_unsent` is the session's
    /// first seq not yet sent: rows from there on may be evicted for it under `drop_oldest`.
    pub fn enqueue(
        &mut self,
        session: StoredSessionId,
        seq: i64,
        first_unsent: i64,
        publish: Publish,
        expires_at: Option<Instant>,
    ) -> Enqueued {
        // What the start-up scan read of other sessions may be evicted below.
        self.ring_bounds = None;
        let packet = encode_publish(publish);
        let size = packet.len() as u64;
        let mut evicted = Vec::new();
        let caps = self.queue_caps(session);
        loop {
            let usage = self.usage(session);
            let session_full =
                usage.messages + 1 > caps.max_messages || usage.bytes + size > caps.max_bytes;
            let ring_full = self.total_messages + 1 > self.config.disk_cache_size;
            if !session_full && !ring_full {
                break;
            }
            let victim = match caps.overflow {
                Overflow::DropNew => None,
                Overflow::Reject => {
                    self.count_drop(session);
                    return Enqueued::Rejected;
                }
                Overflow::DropOldest if session_full => {
                    self.oldest_unsent(session, first_unsent).map(|seq| (session, seq))
                }
                Overflow::DropOldest => {
                    // Delivered rows are the oldest of all but are not live: delete them first.
                    self.collect_garbage();
                    self.oldest_in_ring()
                }
            };
            let Some((victim_session, victim_seq)) = victim else {
                self.count_drop(session);
                return Enqueued::Dropped;
            };
            if !self.remove(victim_session, victim_seq) {
                return Enqueued::Failed;
            }
            self.stats.evicted += 1;
            self.add_dropped(victim_session, 1);
            evicted.push((victim_session, victim_seq));
        }
        let expires_ms = expires_at.map(|at| self.wall_ms(at));
        // When the batch began stands for when the message was queued: the same loop pass in
        // `sync` mode, at most `flush_interval_ms` earlier in `batch` mode; no clock read here.
        self.begin();
        let queued_ms = self.batch_started.map(|at| self.wall_ms(at));
        let inserted =
            self.write("queue message", WriteKind::Promise, |db| {
                db.prepare_cached(
                "INSERT INTO messages (session, seq, expires_at_ms, size, packet, queued_at_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![session.0, seq, expires_ms, size as i64, packet, queued_ms])
            });
        if inserted.is_none() {
            return Enqueued::Failed;
        }
        self.messages_in_batch += 1;
        let usage = self.usage.entry(session).or_default();
        usage.messages += 1;
        usage.bytes += size;
        self.total_messages += 1;
        Enqueued::Stored { evicted }
    }

    /// Gives `session` its own queue caps (kept in memory; set again at each start-up).
    pub fn set_queue_caps(&mut self, session: StoredSessionId, caps: QueueCaps) {
        self.queue_caps.insert(session, caps);
    }

    fn queue_caps(&self, session: StoredSessionId) -> QueueCaps {
        self.queue_caps.get(&session).copied().unwrap_or(QueueCaps {
            max_messages: self.config.max_queued_per_session,
            max_bytes: self.config.max_queued_bytes_per_session,
            overflow: self.config.overflow,
        })
    }

    /// Deletes row `seq` of `session` (delivered, expired or evicted). Returns false only if
    /// the write failed; a row already gone is fine.
    pub fn remove(&mut self, session: StoredSessionId, seq: i64) -> bool {
        let deleted = self.write("delete message", WriteKind::Housekeeping, |db| {
            db.prepare_cached(
                "DELETE FROM messages WHERE session = ?1 AND seq = ?2 RETURNING size",
            )?
            .query_row(params![session.0, seq], |row| row.get::<_, i64>(0))
            .optional()
        });
        match deleted {
            None => false,
            Some(None) => true,
            Some(Some(size)) => {
                self.release(session, 1, size.max(0) as u64);
                true
            }
        }
    }

    /// Row `seq` of `session` was delivered (or abandoned): it leaves the ring when the batch
    /// ends, together with its neighbours (see `delivered`).
    pub fn forget(&mut self, session: StoredSessionId, seq: i64) {
        if self.begin() {
            self.forgotten.push((session, seq));
        }
    }

    pub(super) fn release(&mut self, session: StoredSessionId, count: u64, bytes: u64) {
        if let Some(usage) = self.usage.get_mut(&session) {
            usage.messages = usage.messages.saturating_sub(count);
            usage.bytes = usage.bytes.saturating_sub(bytes);
            if usage.messages == 0 {
                self.usage.remove(&session);
            }
        }
        self.total_messages = self.total_messages.saturating_sub(count);
    }

    /// Records that PUBREL was sent for row `seq` (QoS 2, second half).
    pub fn mark_pubrel(&mut self, session: StoredSessionId, seq: i64) {
        self.write("mark PUBREL", WriteKind::Housekeeping, |db| {
            db.prepare_cached("UPDATE messages SET state = 1 WHERE session = ?1 AND seq = ?2")?
                .execute(params![session.0, seq])
        });
    }

    /// Up to `limit` queued rows of `session` from `from_seq` on, in order. Rows that cannot
    /// be decoded are logged and deleted so they cannot block the queue.
    pub fn load_queue(
        &mut self,
        session: StoredSessionId,
        from_seq: i64,
        limit: usize,
    ) -> Vec<QueuedMessage> {
        // Delivered rows may still be in the table (see `delivered`).
        let from_seq = from_seq.max(self.watermarks.get(&session).copied().unwrap_or(0));
        type Row = (i64, Option<i64>, Vec<u8>);
        let rows = (|| -> rusqlite::Result<Vec<Row>> {
            let mut statement = self.db.prepare_cached(
                "SELECT seq, expires_at_ms, packet FROM messages \
                 WHERE session = ?1 AND seq >= ?2 AND state = 0 ORDER BY seq LIMIT ?3",
            )?;
            let rows = statement
                .query_map(params![session.0, from_seq, limit as i64], |row| {
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })();
        let rows = match rows {
            Ok(rows) => rows,
            Err(e) => {
                log::error!("{}: cannot read queued messages: {e}", self.path.display());
                return Vec::new();
            }
        };
        let mut out = Vec::with_capacity(rows.len());
        for (seq, expires_ms, packet) in rows {
            match decode_publish(&packet) {
                Some(publish) => out.push(QueuedMessage {
                    seq,
                    publish,
                    expires_at: expires_ms.map(|ms| self.instant_of(ms)),
                }),
                None => {
                    log::error!(
                        "{}: queued message {seq} of session {} is damaged; discarded",
                        self.path.display(),
                        session.0
                    );
                    self.remove(session, seq);
                }
            }
        }
        out
    }

    /// Seqs of `session`'s rows whose PUBREL was sent, in order (restored as inflight).
    pub fn pubrel_pending(&self, session: StoredSessionId) -> rusqlite::Result<Vec<i64>> {
        let mut statement = self.db.prepare_cached(
            "SELECT seq FROM messages WHERE session = ?1 AND state = 1 ORDER BY seq",
        )?;
        let rows = statement.query_map([session.0], |row| row.get(0))?;
        rows.collect()
    }

    /// First and one-past-last seq of `session`'s rows.
    pub fn seq_bounds(
        &self,
        session: StoredSessionId,
    ) -> rusqlite::Result<(Option<i64>, Option<i64>)> {
        self.db
            .prepare_cached(
                "SELECT min(seq) FILTER (WHERE state = 0), max(seq) FROM messages WHERE session = ?1",
            )?
            .query_row([session.0], |row| Ok((row.get(0)?, row.get::<_, Option<i64>>(1)?.map(|m| m + 1))))
    }

    fn oldest_unsent(&self, session: StoredSessionId, first_unsent: i64) -> Option<i64> {
        self.db
            .prepare_cached(
                "SELECT seq FROM messages WHERE session = ?1 AND seq >= ?2 AND state = 0 \
                 ORDER BY seq LIMIT 1",
            )
            .and_then(|mut s| {
                s.query_row(params![session.0, first_unsent], |r| r.get(0)).optional()
            })
            .unwrap_or_else(|e| {
                log::error!("{}: cannot find a message to evict: {e}", self.path.display());
                None
            })
    }

    fn oldest_in_ring(&self) -> Option<(StoredSessionId, i64)> {
        self.db
            .prepare_cached("SELECT session, seq FROM messages ORDER BY id LIMIT 1")
            .and_then(|mut s| {
                s.query_row([], |r| Ok((StoredSessionId(r.get(0)?), r.get(1)?))).optional()
            })
            .unwrap_or_else(|e| {
                log::error!("{}: cannot find a message to evict: {e}", self.path.display());
                None
            })
    }

    fn count_drop(&mut self, session: StoredSessionId) {
        self.stats.dropped += 1;
        self.add_dropped(session, 1);
    }

    /// Counts `n` messages `session` will never get (shown by `edgemq inspect`).
    pub fn add_dropped(&mut self, session: StoredSessionId, n: i64) {
        self.write("count dropped message", WriteKind::Housekeeping, |db| {
            db.prepare_cached("UPDATE sessions SET dropped = dropped + ?2 WHERE id = ?1")?
                .execute(params![session.0, n])
        });
    }
}
