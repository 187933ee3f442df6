//! Persistent session rows, their subscriptions and inbound QoS 2 packet ids, retained
//! messages, and reading all of it back at start-up.

use std::time::{Duration, Instant};

use rusqlite::params;

use super::blob::{decode_publish, decode_will, encode_publish, encode_will};
use super::{RingScan, Store, StoredSessionId, WriteKind, LONGEST_INTERVAL};
use crate::codec::{ProtocolVersion, Publish, QoS, RetainHandling, SubscriptionOptions, Will};

/// What is stored about a session when it (re)connects.
#[derive(Debug, Clone)]
pub struct SessionRow<'a> {
    pub client_id: &'a str,
    pub protocol: ProtocolVersion,
    /// `None`: never expires.
    pub expiry: Option<Duration>,
    pub will: Option<&'a Will>,
}

/// A session as read back at start-up.
#[derive(Debug, Clone)]
pub struct LoadedSession {
    pub id: StoredSessionId,
    pub client_id: String,
    pub protocol: ProtocolVersion,
    pub expiry: Option<Duration>,
    pub expires_at: Option<Instant>,
    pub will: Option<Will>,
    pub will_due: Option<Instant>,
    pub subscriptions: Vec<(String, SubscriptionOptions, Option<u32>)>,
    pub inbound_qos2: Vec<u16>,
    /// Rows whose PUBREL was sent before the restart, in order.
    pub pubrel_pending: Vec<i64>,
    /// First queued (not PUBREL) row, if any.
    pub first_queued_seq: Option<i64>,
    /// Rows before this seq were sent at least once (re-sent with DUP=1).
    pub first_unsent: i64,
    /// The seq the next queued row gets.
    pub next_seq: i64,
    pub dropped: u64,
}

#[derive(Debug, Clone)]
pub struct LoadedRetained {
    pub publish: Publish,
    pub expires_at: Option<Instant>,
}

/// The whole store as read back (tests; a restore reads it in chunks).
#[cfg(test)]
#[derive(Debug, Default)]
pub struct Snapshot {
    pub sessions: Vec<LoadedSession>,
    pub retained: Vec<LoadedRetained>,
    /// Rows that could not be decoded and were skipped (logged).
    pub damaged: u64,
}

pub(super) fn options_byte(options: &SubscriptionOptions) -> u8 {
    options.qos.bits()
        | u8::from(options.no_local) << 2
        | u8::from(options.retain_as_published) << 3
        | (options.retain_handling as u8) << 4
}

pub(super) fn options_from_byte(byte: u8) -> Option<SubscriptionOptions> {
    Some(SubscriptionOptions {
        qos: QoS::from_bits(byte & 0x03)?,
        no_local: byte & 0x04 != 0,
        retain_as_published: byte & 0x08 != 0,
        retain_handling: match (byte >> 4) & 0x03 {
            0 => RetainHandling::SendAtSubscribe,
            1 => RetainHandling::SendAtNewSubscribe,
            2 => RetainHandling::DoNotSend,
            _ => return None,
        },
    })
}

fn protocol_from_level(level: i64) -> Option<ProtocolVersion> {
    match level {
        3 => Some(ProtocolVersion::V31),
        4 => Some(ProtocolVersion::V311),
        5 => Some(ProtocolVersion::V5),
        _ => None,
    }
}

impl Store {
    /// Creates or updates the row of a persistent session that just connected (online: no
    /// expiry deadline, no will due). Returns its id, or `None` if the write failed.
    pub fn save_session(&mut self, row: &SessionRow) -> Option<StoredSessionId> {
        let will = row.will.map(encode_will);
        let will_delay = row.will.and_then(|w| w.properties.will_delay_interval).unwrap_or(0);
        let expiry = row.expiry.map(|d| d.as_secs() as i64);
        self.write("save session", WriteKind::Promise, |db| {
            db.prepare_cached(
                "INSERT INTO sessions (client_id, protocol, expiry_secs, will, will_delay_secs) \
                 VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT (client_id) DO UPDATE SET protocol = ?2, expiry_secs = ?3, \
                 will = ?4, will_delay_secs = ?5, expires_at_ms = NULL, will_due_ms = NULL \
                 RETURNING id",
            )?
            .query_row(
                params![row.client_id, row.protocol.level(), expiry, will, will_delay],
                |r| r.get(0),
            )
        })
        .map(StoredSessionId)
    }

    /// Records that a session went offline: when it expires, its will (if still pending)
    /// and when that is due.
    pub fn session_offline(
        &mut self,
        id: StoredSessionId,
        expiry: Option<Duration>,
        expires_at: Option<Instant>,
        will: Option<&Will>,
        will_due: Option<Instant>,
    ) {
        let expires_ms = expires_at.map(|at| self.wall_ms(at));
        let due_ms = will_due.map(|at| self.wall_ms(at));
        let will = will.map(encode_will);
        let expiry = expiry.map(|d| d.as_secs() as i64);
        self.write("save offline session", WriteKind::Housekeeping, |db| {
            db.prepare_cached(
                "UPDATE sessions SET expiry_secs = ?2, expires_at_ms = ?3, will = ?4, \
                 will_due_ms = ?5 WHERE id = ?1",
            )?
            .execute(params![id.0, expiry, expires_ms, will, due_ms])
        });
    }

    /// Records that rows before `first_unsent` have been sent (one write per session per
    /// batch, so a restart re-sends them with DUP=1).
    pub fn save_send_mark(&mut self, id: StoredSessionId, first_unsent: i64) {
        self.write("save send mark", WriteKind::Housekeeping, |db| {
            db.prepare_cached("UPDATE sessions SET first_unsent = ?2 WHERE id = ?1")?
                .execute(params![id.0, first_unsent])
        });
    }

    /// Removes a session with everything it owns.
    pub fn delete_session(&mut self, id: StoredSessionId) {
        self.write("delete session", WriteKind::Promise, |db| {
            for sql in [
                "DELETE FROM messages WHERE session = ?1",
                "DELETE FROM subscriptions WHERE session = ?1",
                "DELETE FROM inbound_qos2 WHERE session = ?1",
                "DELETE FROM sessions WHERE id = ?1",
            ] {
                db.prepare_cached(sql)?.execute([id.0])?;
            }
            Ok(())
        });
        if let Some(usage) = self.usage.remove(&id) {
            self.total_messages = self.total_messages.saturating_sub(usage.messages);
        }
        // The id may be reused by the next new session, whose seqs start over.
        self.watermarks.remove(&id);
        self.garbage_sessions.remove(&id);
    }

    pub fn save_subscription(
        &mut self,
        id: StoredSessionId,
        filter: &str,
        options: &SubscriptionOptions,
        subscription_id: Option<u32>,
    ) {
        let byte = options_byte(options);
        self.write("save subscription", WriteKind::Promise, |db| {
            db.prepare_cached(
                "INSERT OR REPLACE INTO subscriptions (session, filter, options, subscription_id) \
                 VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![id.0, filter, byte, subscription_id])
        });
    }

    pub fn delete_subscription(&mut self, id: StoredSessionId, filter: &str) {
        self.write("delete subscription", WriteKind::Promise, |db| {
            db.prepare_cached("DELETE FROM subscriptions WHERE session = ?1 AND filter = ?2")?
                .execute(params![id.0, filter])
        });
    }

    /// An inbound QoS 2 message was accepted (PUBREC pending): remember its id.
    pub fn add_inbound_qos2(&mut self, id: StoredSessionId, packet_id: u16) {
        self.write("save inbound QoS 2 id", WriteKind::Promise, |db| {
            db.prepare_cached(
                "INSERT OR IGNORE INTO inbound_qos2 (session, packet_id) VALUES (?1, ?2)",
            )?
            .execute(params![id.0, packet_id])
        });
    }

    pub fn remove_inbound_qos2(&mut self, id: StoredSessionId, packet_id: u16) {
        self.write("delete inbound QoS 2 id", WriteKind::Housekeeping, |db| {
            db.prepare_cached("DELETE FROM inbound_qos2 WHERE session = ?1 AND packet_id = ?2")?
                .execute(params![id.0, packet_id])
        });
    }

    pub fn save_retained(&mut self, publish: Publish, expires_at: Option<Instant>) {
        let topic = publish.topic.clone();
        let packet = encode_publish(publish);
        let expires_ms = expires_at.map(|at| self.wall_ms(at));
        let topic: &str = &topic;
        self.write("save retained message", WriteKind::Promise, |db| {
            db.prepare_cached(
                "INSERT OR REPLACE INTO retained (topic, expires_at_ms, packet) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![topic, expires_ms, packet])
        });
    }

    pub fn delete_retained(&mut self, topic: &str) {
        self.write("delete retained message", WriteKind::Promise, |db| {
            db.prepare_cached("DELETE FROM retained WHERE topic = ?1")?.execute([topic])
        });
    }

    /// Starts reading the store back after a restart (then [`Store::load_retained`],
    /// [`Store::load_sessions`] chunk by chunk, [`Store::end_load`]): rows of sessions that
    /// no longer exist are removed.
    pub fn begin_load(&mut self) -> rusqlite::Result<()> {
        self.load_damaged = 0;
        // Rows whose session row was lost with a failed batch can never be delivered. The
        // start-up scan saw whether there are any (the delete reads the whole ring).
        let scan = self.ring_bounds.take();
        let orphans = match &scan {
            Some(scan) if !scan.orphans => 0,
            _ => self.db.execute(
                "DELETE FROM messages WHERE session NOT IN (SELECT id FROM sessions)",
                [],
            )?,
        };
        self.db.execute(
            "DELETE FROM subscriptions WHERE session NOT IN (SELECT id FROM sessions)",
            [],
        )?;
        self.db.execute(
            "DELETE FROM inbound_qos2 WHERE session NOT IN (SELECT id FROM sessions)",
            [],
        )?;
        if orphans > 0 {
            log::warn!(
                "{}: {orphans} queued messages of unknown sessions removed",
                self.path.display()
            );
            self.reload_usage(false)?;
        }
        // The scan still holds for the sessions that exist.
        self.ring_bounds = scan.map(|scan| RingScan { orphans: false, ..scan });
        Ok(())
    }

    /// The end of the read-back: the start-up scan's memory is given back, and the number of
    /// rows that could not be decoded and were skipped (each logged) is returned.
    pub fn end_load(&mut self) -> u64 {
        self.ring_bounds = None;
        std::mem::take(&mut self.load_damaged)
    }

    /// The sessions among the next `limit` rows with ids above `after`, in id order, into
    /// `out` (cleared first; damaged rows are skipped). Returns the id of the last row read,
    /// where the next chunk starts, or `None` at the end. A restore reads them in such
    /// chunks, so it never holds the whole store in memory.
    pub fn load_sessions(
        &mut self,
        after: Option<StoredSessionId>,
        limit: usize,
        out: &mut Vec<LoadedSession>,
    ) -> rusqlite::Result<Option<StoredSessionId>> {
        out.clear();
        type SessionColumns = (
            i64,
            String,
            i64,
            Option<i64>,
            Option<i64>,
            Option<Vec<u8>>,
            i64,
            Option<i64>,
            i64,
            i64,
        );
        let rows: Vec<SessionColumns> = {
            let mut statement = self.db.prepare_cached(
                "SELECT id, client_id, protocol, expiry_secs, expires_at_ms, will, \
                 will_delay_secs, will_due_ms, dropped, first_unsent FROM sessions \
                 WHERE id > ?1 ORDER BY id LIMIT ?2",
            )?;
            let after = after.map_or(i64::MIN, |id| id.0);
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let rows = statement.query_map(params![after, limit], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                    r.get(8)?,
                    r.get(9)?,
                ))
            })?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        let last = rows.last().map(|row| StoredSessionId(row.0));
        for row in rows {
            let (id, client_id, level, expiry, expires_ms, will, will_delay, due_ms, dropped, sent) =
                row;
            let id = StoredSessionId(id);
            let Some(protocol) = protocol_from_level(level) else {
                log::error!(
                    "{}: session {client_id:?} has protocol {level}; skipped",
                    self.path.display()
                );
                self.load_damaged += 1;
                continue;
            };
            let will = match will {
                Some(bytes) => {
                    let decoded = decode_will(&bytes, u32::try_from(will_delay).unwrap_or(0));
                    if decoded.is_none() {
                        log::error!(
                            "{}: will of {client_id:?} is damaged; dropped",
                            self.path.display()
                        );
                        self.load_damaged += 1;
                    }
                    decoded
                }
                None => None,
            };
            let mut subscriptions = Vec::new();
            {
                let mut statement = self.db.prepare_cached(
                    "SELECT filter, options, subscription_id FROM subscriptions WHERE session = ?1",
                )?;
                let rows = statement.query_map([id.0], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, Option<i64>>(2)?))
                })?;
                for row in rows {
                    let (filter, byte, sub_id) = row?;
                    let options = u8::try_from(byte).ok().and_then(options_from_byte);
                    let valid = crate::codec::topic::is_valid_topic_filter(&filter);
                    match options {
                        Some(options) if valid => subscriptions.push((
                            filter,
                            options,
                            sub_id.and_then(|s| u32::try_from(s).ok()),
                        )),
                        _ => {
                            log::error!(
                                "{}: subscription {filter:?} of {client_id:?} is damaged; skipped",
                                self.path.display()
                            );
                            self.load_damaged += 1;
                        }
                    }
                }
            }
            let inbound_qos2 = {
                let mut statement = self
                    .db
                    .prepare_cached("SELECT packet_id FROM inbound_qos2 WHERE session = ?1")?;
                let rows = statement.query_map([id.0], |r| r.get::<_, i64>(0))?;
                rows.filter_map(|r| r.ok().and_then(|v| u16::try_from(v).ok()))
                    .filter(|&v| v != 0)
                    .collect()
            };
            let (pubrel_pending, (first_queued_seq, next_seq)) = match &self.ring_bounds {
                Some(scan) => {
                    let bounds = scan.bounds.get(&id);
                    let pubrel = match bounds {
                        Some(b) if b.pubrel => self.pubrel_pending(id)?,
                        _ => Vec::new(),
                    };
                    (pubrel, bounds.map_or((None, None), |b| (b.first_queued, b.next_seq)))
                }
                None => (self.pubrel_pending(id)?, self.seq_bounds(id)?),
            };
            out.push(LoadedSession {
                id,
                client_id,
                protocol,
                expiry: expiry.map(|s| Duration::from_secs(s.max(0) as u64).min(LONGEST_INTERVAL)),
                expires_at: expires_ms.map(|ms| self.instant_of(ms)),
                will,
                will_due: due_ms.map(|ms| self.instant_of(ms)),
                subscriptions,
                inbound_qos2,
                pubrel_pending,
                first_queued_seq,
                first_unsent: sent,
                next_seq: next_seq.unwrap_or(1),
                dropped: dropped.max(0) as u64,
            });
        }
        Ok(last)
    }

    /// The retained messages (bounded by `max_retained_messages` and their bytes).
    pub fn load_retained(&mut self) -> rusqlite::Result<Vec<LoadedRetained>> {
        let mut loaded = Vec::new();
        let retained: Vec<(String, Option<i64>, Vec<u8>)> = {
            let mut statement =
                self.db.prepare("SELECT topic, expires_at_ms, packet FROM retained")?;
            let rows = statement.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        for (topic, expires_ms, packet) in retained {
            match decode_publish(&packet) {
                Some(publish) => loaded.push(LoadedRetained {
                    publish,
                    expires_at: expires_ms.map(|ms| self.instant_of(ms)),
                }),
                None => {
                    log::error!(
                        "{}: retained message on {topic:?} is damaged; skipped",
                        self.path.display()
                    );
                    self.load_damaged += 1;
                }
            }
        }
        Ok(loaded)
    }

    /// Everything at once (tests of what the store keeps).
    #[cfg(test)]
    pub fn load(&mut self) -> rusqlite::Result<Snapshot> {
        self.begin_load()?;
        let mut snapshot = Snapshot { retained: self.load_retained()?, ..Snapshot::default() };
        let (mut chunk, mut after) = (Vec::new(), None);
        while let Some(last) = self.load_sessions(after, 3, &mut chunk)? {
            after = Some(last);
            snapshot.sessions.append(&mut chunk);
        }
        snapshot.damaged = self.end_load();
        Ok(snapshot)
    }
}
