//! Delivered rows: acknowledged messages leave the ring without a delete per message.
//!
//! Deleting a row rewrites a table page and an index page, and a drain deletes as fast as it
//! sends: deleting as acknowledgements arrived cost half the drain's time. Instead, when the
//! acknowledged rows of a session form a prefix of its queue (they do: MQTT acknowledges in
//! order), the session's watermark `first_live` moves past them — one row update per session
//! per commit — and the rows become garbage: no longer counted, loaded or evicted. Garbage is
//! deleted in bulk once `GARBAGE_ROWS` rows wait or `GARBAGE_DELAY` after the first of them,
//! `GARBAGE_CHUNK` rows per loop pass, so a drain runs at read speed and the deletes happen
//! when the broker has time, in slices short enough not to stall it. A killed
//! process loses nothing and redelivers nothing: the watermark commits with the batch that
//! advanced it, and opening the store deletes whatever garbage a previous run left. (Like the
//! deletes it replaces, a watermark is not worth an fsync of its own: a power cut may lose the
//! last ones, which means redelivery of those messages, never loss.)

use std::time::{Duration, Instant};

use rusqlite::{params, OptionalExtension};

use super::{Store, StoredSessionId, WriteKind};

/// Garbage rows that trigger a bulk delete in the current batch.
pub(super) const GARBAGE_ROWS: u64 = 65_536;
/// How long garbage may wait for a quiet moment.
pub(super) const GARBAGE_DELAY: Duration = Duration::from_secs(1);
/// Rows deleted per loop pass while collecting.
pub(super) const GARBAGE_CHUNK: u64 = 4096;

impl Store {
    /// Moves the rows forgotten during this batch out of the ring: a run that continues a
    /// session's delivered prefix advances its watermark, any other run is deleted now.
    pub(super) fn retire_forgotten(&mut self) {
        if self.forgotten.is_empty() {
            return;
        }
        let mut rows = std::mem::take(&mut self.forgotten);
        rows.sort_unstable();
        let mut advanced: Vec<(StoredSessionId, i64)> = Vec::new();
        let mut start = 0;
        while start < rows.len() {
            let (session, first) = rows[start];
            let mut end = start + 1;
            while end < rows.len() && rows[end].0 == session && rows[end].1 <= rows[end - 1].1 + 1 {
                end += 1;
            }
            let last = rows[end - 1].1;
            start = end;
            let floor = self.watermarks.get(&session).copied().unwrap_or(0);
            if last < floor {
                continue; // Already garbage.
            }
            let first = first.max(floor);
            if first == floor || self.no_rows_between(session, floor, first) {
                if let Some((count, bytes)) = self.count_rows(session, first, last) {
                    self.release(session, count, bytes);
                    self.garbage += count;
                    self.garbage_since.get_or_insert_with(Instant::now);
                    self.watermarks.insert(session, last + 1);
                    self.garbage_sessions.insert(session);
                    match advanced.last_mut() {
                        Some((s, mark)) if *s == session => *mark = last + 1,
                        _ => advanced.push((session, last + 1)),
                    }
                    continue;
                }
            }
            self.delete_rows(session, first, last);
        }
        for (session, first_live) in advanced {
            self.write("advance delivered mark", WriteKind::Housekeeping, |db| {
                db.prepare_cached("UPDATE sessions SET first_live = ?2 WHERE id = ?1")?
                    .execute(params![session.0, first_live])
            });
        }
        rows.clear();
        self.forgotten = rows;
    }

    /// Whether the garbage should be deleted now.
    pub(super) fn garbage_due(&self, now: Instant) -> bool {
        self.garbage >= self.garbage_limit || self.garbage_deadline().is_some_and(|d| d <= now)
    }

    pub(super) fn garbage_deadline(&self) -> Option<Instant> {
        self.garbage_since.map(|since| since + GARBAGE_DELAY)
    }

    /// One pass's share of the collection: at most `GARBAGE_CHUNK` rows, so that deleting a
    /// drained backlog never stalls the loop for long (the deadline stays due until done).
    /// After a full disk the slice is smaller (`space`): a delete rewrites the pages it
    /// empties, and the log that records it must fit in the room the reserve gave back.
    pub(super) fn collect_garbage_step(&mut self) {
        let chunk =
            self.space_garbage_chunk().unwrap_or(self.garbage_chunk).min(self.garbage_chunk);
        self.collect_up_to(chunk);
    }

    /// Deletes all garbage now (before a global eviction, after a full disk).
    pub(super) fn collect_garbage(&mut self) {
        self.collect_up_to(u64::MAX);
    }

    /// Deletes up to `max` garbage rows, oldest first per session, in the current batch.
    pub(super) fn collect_up_to(&mut self, max: u64) {
        let started = Instant::now();
        let mut deleted = 0;
        while deleted < max {
            let Some(&session) = self.garbage_sessions.iter().next() else { break };
            let Some(&first_live) = self.watermarks.get(&session) else {
                self.garbage_sessions.remove(&session);
                continue;
            };
            let limit = (max - deleted).min(i64::MAX as u64);
            let removed = self.write("delete delivered messages", WriteKind::Housekeeping, |db| {
                db.prepare_cached(
                    "DELETE FROM messages WHERE id IN (SELECT id FROM messages \
                     WHERE session = ?1 AND seq < ?2 ORDER BY seq LIMIT ?3)",
                )?
                .execute(params![session.0, first_live, limit as i64])
            });
            let Some(removed) = removed else { break }; // The batch failed.
            let removed = removed as u64;
            deleted += removed;
            if removed < limit {
                self.garbage_sessions.remove(&session);
            }
        }
        if deleted > 0 {
            log::debug!("{deleted} delivered rows deleted in {:?}", started.elapsed());
        }
        self.garbage = self.garbage.saturating_sub(deleted);
        if self.garbage == 0 || self.garbage_sessions.is_empty() {
            self.garbage = 0;
            self.garbage_sessions.clear();
            self.garbage_since = None;
        }
        // Watermarks stay: they tell the next acknowledgement where the session's prefix ends.
    }

    /// At start-up: deletes what the previous run left below the watermarks and resets them,
    /// so every row in the table is live again (and seqs may start over for empty queues).
    pub(super) fn sweep_garbage(&mut self) -> rusqlite::Result<u64> {
        let marks = self.stored_watermarks()?;
        let mut deleted = 0;
        if !marks.is_empty() {
            let tx = self.db.unchecked_transaction()?;
            for (session, first_live) in marks {
                deleted += tx.execute(
                    "DELETE FROM messages WHERE session = ?1 AND seq < ?2",
                    params![session.0, first_live],
                )?;
            }
            tx.execute("UPDATE sessions SET first_live = 0 WHERE first_live != 0", [])?;
            tx.commit()?;
        }
        self.watermarks.clear();
        self.garbage_sessions.clear();
        self.garbage = 0;
        self.garbage_since = None;
        Ok(deleted as u64)
    }

    /// Reads the watermarks and garbage back after a rolled-back batch.
    pub(super) fn reload_watermarks(&mut self) -> rusqlite::Result<()> {
        let marks: std::collections::HashMap<_, _> =
            self.stored_watermarks()?.into_iter().collect();
        let garbage: i64 = self.db.query_row(
            "SELECT count(*) FROM messages m JOIN sessions s ON s.id = m.session \
             WHERE m.seq < s.first_live",
            [],
            |r| r.get(0),
        )?;
        self.garbage_sessions = marks.keys().copied().collect();
        self.watermarks = marks;
        self.garbage = garbage.max(0) as u64;
        self.garbage_since = (self.garbage > 0).then(Instant::now);
        Ok(())
    }

    /// The sessions whose watermark is set, as committed.
    fn stored_watermarks(&self) -> rusqlite::Result<Vec<(StoredSessionId, i64)>> {
        let mut statement =
            self.db.prepare_cached("SELECT id, first_live FROM sessions WHERE first_live > 0")?;
        let rows =
            statement.query_map([], |r| Ok((StoredSessionId(r.get(0)?), r.get::<_, i64>(1)?)))?;
        rows.collect()
    }

    /// True if `session` has no row in `from..to` (so `to` continues its delivered prefix).
    fn no_rows_between(&self, session: StoredSessionId, from: i64, to: i64) -> bool {
        self.db
            .prepare_cached(
                "SELECT 1 FROM messages WHERE session = ?1 AND seq >= ?2 AND seq < ?3 LIMIT 1",
            )
            .and_then(|mut s| s.query_row(params![session.0, from, to], |_| Ok(())).optional())
            .map(|found| found.is_none())
            .unwrap_or(false)
    }

    /// Rows and bytes of `session` in `first..=last`; `None` if the read failed.
    fn count_rows(&self, session: StoredSessionId, first: i64, last: i64) -> Option<(u64, u64)> {
        self.db
            .prepare_cached(
                "SELECT count(*), coalesce(sum(size), 0) FROM messages \
                 WHERE session = ?1 AND seq BETWEEN ?2 AND ?3",
            )
            .and_then(|mut s| {
                s.query_row(params![session.0, first, last], |r| {
                    Ok((r.get::<_, i64>(0)?.max(0) as u64, r.get::<_, i64>(1)?.max(0) as u64))
                })
            })
            .map_err(|e| log::warn!("{}: cannot count delivered rows: {e}", self.path.display()))
            .ok()
    }

    /// Deletes `session`'s rows `first..=last` now.
    fn delete_rows(&mut self, session: StoredSessionId, first: i64, last: i64) {
        let deleted = self.write("delete delivered messages", WriteKind::Housekeeping, |db| {
            let mut statement = db.prepare_cached(
                "DELETE FROM messages WHERE session = ?1 AND seq BETWEEN ?2 AND ?3 \
                 RETURNING size",
            )?;
            let sizes =
                statement.query_map(params![session.0, first, last], |r| r.get::<_, i64>(0))?;
            let mut count = 0u64;
            let mut bytes = 0u64;
            for size in sizes {
                count += 1;
                bytes += size?.max(0) as u64;
            }
            Ok((count, bytes))
        });
        if let Some((count, bytes)) = deleted {
            self.release(session, count, bytes);
        }
    }
}
