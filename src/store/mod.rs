//! The persistent store: the only user of rusqlite.
//!
//! Owns one SQLite database (`<data dir>/edgemq.db`, WAL mode) holding persistent sessions,
//! their subscriptions and inbound QoS 2 state, the bounded message ring and retained
//! messages. Writes are collected into one transaction per batch and committed by
//! [`Store::commit_if_due`] at the end of an event-loop pass (`durability = "sync"`: every
//! pass; `"batch"`: every `flush_mem_threshold` writes or `flush_interval_ms`; in both the
//! write-ahead log is fsync'd after a commit that backs an acknowledgement);
//! `"memory"` keeps the same tables in an in-memory database. Delivered messages leave the
//! ring through a per-session mark and are deleted in bulk later (`delivered`). A failed write
//! poisons the batch: it is rolled back as a whole and the caller learns which
//! acknowledgements must not be sent. The log stays bounded and a full disk is survived
//! (`space`).
//! Errors are logged and reported, never panics; data files are never deleted or truncated
//! (only edgemq's own reserve file is emptied and refilled).

mod blob;
mod delivered;
mod health;
mod inspect;
mod quarantine;
mod ring;
mod schema;
mod sessions;
mod space;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OpenFlags};

use crate::config::{Durability, SqliteConfig};
pub use health::Health;

pub use inspect::inspect;
pub use quarantine::quarantine;
pub use ring::{Enqueued, QueueCaps, QueuedMessage};
#[cfg(test)]
pub use sessions::Snapshot;
pub use sessions::{LoadedRetained, LoadedSession, SessionRow};
pub use space::RESERVE_FILE;

/// The longest interval MQTT can express (u32 seconds); stored durations are capped to it.
pub const LONGEST_INTERVAL: Duration = Duration::from_secs(u32::MAX as u64);

/// File name of the database inside the data directory.
pub const DB_FILE: &str = "edgemq.db";

/// A session's row id in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StoredSessionId(pub i64);

/// Why the store could not be opened; one line naming the file and what to do.
#[derive(Debug)]
pub struct StoreError {
    pub path: PathBuf,
    pub message: String,
    /// The file is not a usable database (corrupt, or not SQLite at all): what
    /// `sqlite.on_corrupt = "quarantine"` moves aside. A database from a newer edgemq, a
    /// directory that cannot be created or a full disk is not.
    pub corrupt: bool,
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.message)
    }
}

impl std::error::Error for StoreError {}

/// Whether a write backs something a client was told (an acknowledgement, a SUBACK): only
/// batches with such a write are fsync'd (`durability = "sync"` and `"batch"`). Housekeeping
/// (deleting delivered messages, send marks, counters) rides along with the next synced
/// commit; losing it in a power cut costs a QoS 1 redelivery, never a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteKind {
    Promise,
    Housekeeping,
}

/// Why a batch was rolled back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub message: String,
    /// The disk (or `sqlite.max_db_size`) is full: clients are told "Quota exceeded".
    pub disk_full: bool,
}

impl Failure {
    fn sqlite(what: &str, e: &rusqlite::Error) -> Failure {
        let disk_full = e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull);
        Failure { message: format!("{what}: {e}"), disk_full }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// What ending a batch did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Commit {
    /// No batch was open.
    Idle,
    /// `durability = "batch"` and neither threshold is reached yet.
    Deferred,
    Committed {
        writes: usize,
    },
    /// The batch was rolled back; everything written since the last commit is gone.
    Failed(Failure),
}

#[derive(Debug, Default, Clone)]
pub struct StoreStats {
    pub commits: u64,
    /// fsyncs of the write-ahead log (`durability = "sync"` and `"batch"`): one per commit that
    /// backs an acknowledgement.
    pub fsyncs: u64,
    /// Of `fsyncs`: those done by a checkpoint of the log run right after the commit (it
    /// fsyncs the log before copying it), so the store did not fsync it a second time.
    pub checkpoint_syncs: u64,
    pub failed_commits: u64,
    pub rows_written: u64,
    /// Message rows inserted by committed batches.
    pub messages_stored: u64,
    /// Messages evicted by `overflow = "drop_oldest"`.
    pub evicted: u64,
    /// Messages not stored because a cap was reached (`drop_new`, `reject`, or nothing to evict).
    pub dropped: u64,
}

/// Where one session's rows lie in the ring, as the start-up scan found them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RingBounds {
    /// First queued (not PUBREL) row.
    first_queued: Option<i64>,
    /// One past the last row.
    next_seq: Option<i64>,
    /// Some row waits for PUBCOMP.
    pubrel: bool,
}

/// The start-up scan of the ring: bounds of every session that has rows, and whether rows of
/// sessions that no longer exist were seen.
#[derive(Debug, Default)]
struct RingScan {
    bounds: HashMap<StoredSessionId, RingBounds>,
    orphans: bool,
}

/// Per-session ring usage.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub messages: u64,
    pub bytes: u64,
}

pub struct Store {
    db: Connection,
    path: PathBuf,
    config: SqliteConfig,
    in_batch: bool,
    /// The first error of the open batch; the batch will be rolled back.
    batch_error: Option<Failure>,
    writes_in_batch: usize,
    messages_in_batch: u64,
    batch_has_promise: bool,
    /// Delivered rows to retire when the batch ends (see `forget` and `delivered`).
    forgotten: Vec<(StoredSessionId, i64)>,
    /// Per session: rows before this seq are delivered garbage (see `delivered`).
    watermarks: HashMap<StoredSessionId, i64>,
    /// Sessions with garbage, the number of garbage rows, and since when there is any.
    garbage_sessions: HashSet<StoredSessionId>,
    garbage: u64,
    garbage_since: Option<Instant>,
    /// `delivered::GARBAGE_ROWS` and `GARBAGE_CHUNK`; smaller in tests.
    garbage_limit: u64,
    garbage_chunk: u64,
    /// `durability = "sync"` or `"batch"` in WAL mode: the log to fsync after commits that
    /// back a promise (opened on first use).
    wal_sync: Option<WalSync>,
    /// The log's bound, the reserve file, and the state after a full disk.
    space: space::Space,
    batch_started: Option<Instant>,
    total_messages: u64,
    usage: HashMap<StoredSessionId, Usage>,
    /// What the start-up scan of the ring found, until the restore has used it
    /// ([`Store::end_load`]). The restore's own writes (dropped subscriptions, ended
    /// sessions) touch only rows of sessions already read; a message stored (which may
    /// evict another session's row) drops it, as does a rollback.
    ring_bounds: Option<RingScan>,
    /// Rows skipped as damaged since [`Store::begin_load`].
    load_damaged: u64,
    /// Sessions with their own caps instead of the `[sqlite]` ones (bridges; see `ring`).
    queue_caps: HashMap<StoredSessionId, QueueCaps>,
    /// Maps the loop's monotonic clock to wall-clock time for stored deadlines.
    anchor: (Instant, SystemTime),
    stats: StoreStats,
    /// Commit durations and the last failure, for `$SYS`, `/metrics` and `/health`.
    monitor: health::Monitor,
}

impl Store {
    /// Opens (creating if needed) the database under `dir`, or in memory for
    /// `durability = "memory"`. Refuses unreadable, corrupt or newer-schema files.
    pub fn open(dir: &Path, config: SqliteConfig) -> Result<Store, StoreError> {
        let path = dir.join(DB_FILE);
        let fail = |message: String| StoreError { path: path.clone(), message, corrupt: false };
        let corrupt = |message: String| StoreError { path: path.clone(), message, corrupt: true };
        // SQLite's own verdict that the file is damaged or not a database.
        let damaged = |e: &rusqlite::Error| {
            matches!(
                e.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase)
            )
        };
        let advice = "the file is not a valid edgemq database (corrupt or foreign); stop edgemq, \
                      move the file aside (keep it for recovery) and start again";
        // An existing file is checked on a read-only connection first: a read-write connection
        // to a damaged file may delete its write-ahead log when it closes (SQLite does, for a
        // file that is not a database), and the log is evidence to keep, refused or
        // quarantined. Only a file that passes is opened for writing.
        let check_integrity = |db: &Connection| -> Result<(), StoreError> {
            let check: String =
                db.query_row("PRAGMA quick_check", [], |row| row.get(0)).map_err(|e| {
                    let message = format!("{e}: {advice}");
                    if damaged(&e) {
                        corrupt(message)
                    } else {
                        fail(message)
                    }
                })?;
            if check != "ok" {
                return Err(corrupt(format!("integrity check failed ({check}): {advice}")));
            }
            Ok(())
        };
        let db = if config.durability == Durability::Memory {
            Connection::open_in_memory().map_err(|e| fail(e.to_string()))?
        } else {
            std::fs::create_dir_all(dir).map_err(|e| StoreError {
                path: dir.to_path_buf(),
                message: format!("cannot create the data directory: {e}"),
                corrupt: false,
            })?;
            if path.exists() {
                let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
                let readonly =
                    Connection::open_with_flags(&path, flags).map_err(|e| fail(e.to_string()))?;
                let started = Instant::now();
                check_integrity(&readonly)?;
                log::info!(
                    "{}: quick check of {:.1} MiB took {} ms",
                    path.display(),
                    std::fs::metadata(&path).map_or(0, |m| m.len()) as f64 / 1048576.0,
                    started.elapsed().as_millis()
                );
            }
            let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX;
            Connection::open_with_flags(&path, flags).map_err(|e| fail(e.to_string()))?
        };
        // In WAL mode `synchronous = FULL` would fsync at every commit, also for commits that
        // only delete delivered messages, and `NORMAL` syncs only at checkpoints. Instead the
        // log is fsync'd by hand after the commits that back an acknowledgement (`WalSync`),
        // in `sync` and `batch` mode alike (`batch` promises that a power cut loses at most the
        // batch not yet committed); without WAL, SQLite's FULL does it.
        let data_dir = (config.durability != Durability::Memory).then_some(dir);
        let setup = || -> rusqlite::Result<(bool, space::Space)> {
            let mut wal = false;
            if config.durability != Durability::Memory {
                let mode: String = db.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
                wal = mode.eq_ignore_ascii_case("wal");
                if !wal {
                    log::warn!("{}: WAL mode unavailable, using {mode}", path.display());
                }
            }
            let synchronous = match config.durability {
                Durability::Sync | Durability::Batch if !wal => "FULL",
                Durability::Sync | Durability::Batch => "NORMAL",
                Durability::Memory => "OFF",
            };
            db.pragma_update(None, "synchronous", synchronous)?;
            db.pragma_update(None, "foreign_keys", false)?;
            let space = space::Space::configure(&db, &config, wal, data_dir)?;
            Ok((wal, space))
        };
        let (wal, space) =
            setup().map_err(|e| fail(format!("cannot configure the database: {e}")))?;
        match schema::migrate(&db) {
            Ok(Ok(())) => {}
            Ok(Err(message)) => return Err(fail(message)),
            Err(e) => {
                let message = format!("cannot migrate the schema: {e}: {advice}");
                return Err(if damaged(&e) { corrupt(message) } else { fail(message) });
            }
        }
        let sync_mode = matches!(config.durability, Durability::Sync | Durability::Batch);
        let mut store = Store {
            db,
            path: path.clone(),
            config,
            in_batch: false,
            batch_error: None,
            writes_in_batch: 0,
            messages_in_batch: 0,
            batch_has_promise: false,
            forgotten: Vec::new(),
            watermarks: HashMap::new(),
            garbage_sessions: HashSet::new(),
            garbage: 0,
            garbage_since: None,
            garbage_limit: delivered::GARBAGE_ROWS,
            garbage_chunk: delivered::GARBAGE_CHUNK,
            wal_sync: (sync_mode && wal).then(|| WalSync::new(&path)),
            space,
            batch_started: None,
            total_messages: 0,
            usage: HashMap::new(),
            ring_bounds: None,
            load_damaged: 0,
            queue_caps: HashMap::new(),
            // Both clocks read together, after the (possibly slow) open: stored deadlines
            // must not shift by how long opening took.
            anchor: (Instant::now(), SystemTime::now()),
            stats: StoreStats::default(),
            monitor: health::Monitor::default(),
        };
        // A disk filled by the previous run: the reserve it left makes room for the cleanup.
        let swept = match store.sweep_garbage() {
            Err(e)
                if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull)
                    && store.release_reserve() =>
            {
                store.sweep_garbage()
            }
            swept => swept,
        }
        .map_err(|e| fail(format!("cannot clean the message ring: {e}")))?;
        let scan_started = Instant::now();
        if swept > 0 {
            log::debug!("{}: {swept} delivered messages deleted", path.display());
        }
        store.reload_usage(true).map_err(|e| fail(format!("cannot read the message ring: {e}")))?;
        log::debug!(
            "{}: ring scanned in {} ms ({} messages)",
            path.display(),
            scan_started.elapsed().as_millis(),
            store.total_messages
        );
        store.open_reserve();
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Frees SQLite's page cache: after the start-up check and load it holds pages read once
    /// (the whole file went through `quick_check`) that serving does not need. Best effort:
    /// the cache refills from the file as the broker works.
    pub fn shrink_memory(&self) {
        if let Err(e) = self.db.execute_batch("PRAGMA shrink_memory") {
            log::debug!("{}: PRAGMA shrink_memory: {e}", self.path.display());
        }
    }

    /// The `[sqlite]` settings it runs with (caps shown by the status page).
    pub fn config(&self) -> &SqliteConfig {
        &self.config
    }

    pub fn stats(&self) -> &StoreStats {
        &self.stats
    }

    pub fn total_messages(&self) -> u64 {
        self.total_messages
    }

    pub fn usage(&self, session: StoredSessionId) -> Usage {
        self.usage.get(&session).copied().unwrap_or_default()
    }

    /// When the store has work at the latest: a deferred batch to commit (`durability =
    /// "batch"`), delivered rows to delete, a quiet log to truncate, or (while full) space to
    /// look for.
    pub fn flush_deadline(&self) -> Option<Instant> {
        [self.batch_deadline(), self.garbage_deadline(), self.space.deadline()]
            .into_iter()
            .flatten()
            .min()
    }

    /// `Some(typical fsync time)` if the open batch is to be committed with an fsync at the
    /// end of this pass (`durability = "sync"`, a write backs an acknowledgement): the loop
    /// may read a little longer first (group commit; see `net`).
    pub fn pending_sync(&self) -> Option<Duration> {
        let sync_now = self.in_batch
            && self.batch_has_promise
            && self.batch_error.is_none()
            && self.config.durability == Durability::Sync;
        sync_now.then(|| self.wal_sync.as_ref().map(|w| w.typical)).flatten()
    }

    /// When a deferred batch (`durability = "batch"`) must be committed at the latest.
    fn batch_deadline(&self) -> Option<Instant> {
        match self.config.durability {
            Durability::Batch => self.batch_started.map(|t| t + self.config.flush_interval()),
            Durability::Sync | Durability::Memory => None,
        }
    }

    /// Ends the open batch if its durability mode says so.
    pub fn commit_if_due(&mut self, now: Instant) -> Commit {
        // After a full disk, delivered rows are the room new messages wait for: no delay.
        if self.garbage_due(now) || (self.space_capped() && self.garbage > 0) {
            self.collect_garbage_step();
        }
        if !self.in_batch {
            self.space_due(now);
            return Commit::Idle;
        }
        let due = match self.config.durability {
            Durability::Sync | Durability::Memory => true,
            Durability::Batch => {
                self.batch_error.is_some()
                    || self.writes_in_batch >= self.config.flush_mem_threshold
                    || self.batch_deadline().is_some_and(|d| d <= now)
            }
        };
        if due {
            let commit = self.commit_at(now);
            self.space_due(now);
            commit
        } else {
            Commit::Deferred
        }
    }

    /// Commits the open batch now (also at shutdown).
    pub fn commit(&mut self) -> Commit {
        self.commit_at(Instant::now())
    }

    /// [`Store::commit`] at loop time `now` (what the space bookkeeping counts from).
    fn commit_at(&mut self, now: Instant) -> Commit {
        if !self.in_batch {
            return Commit::Idle;
        }
        // Delivered stays delivered: if the batch fails, these are retired again.
        let retired = self.forgotten.clone();
        self.retire_forgotten();
        self.in_batch = false;
        self.batch_started = None;
        let writes = std::mem::take(&mut self.writes_in_batch);
        let messages = std::mem::take(&mut self.messages_in_batch);
        let promise = std::mem::take(&mut self.batch_has_promise);
        // The one clock read the store makes for itself: how long the commit (and its fsync)
        // takes is what `commit_ms_p99` reports, and only a clock can say.
        let started = Instant::now();
        let failure = match self.batch_error.take() {
            Some(error) => Some(error),
            None => match self.db.execute_batch("COMMIT") {
                Err(e) => Some(Failure::sqlite("COMMIT", &e)),
                Ok(()) if promise && self.wal_sync.is_some() => {
                    self.stats.fsyncs += 1;
                    if self.checkpointed_with_commit() {
                        self.stats.checkpoint_syncs += 1;
                        None
                    } else {
                        self.wal_sync.as_mut().and_then(|wal| wal.sync().err())
                    }
                }
                Ok(()) => None,
            },
        };
        self.monitor.committed(started.elapsed(), failure.as_ref());
        match failure {
            None => {
                self.stats.commits += 1;
                self.stats.rows_written += writes as u64;
                self.stats.messages_stored += messages;
                self.on_committed(promise, now);
                Commit::Committed { writes }
            }
            Some(error) => {
                self.stats.failed_commits += 1;
                self.roll_back(retired);
                if error.disk_full {
                    self.on_disk_full(&error, writes, now);
                } else {
                    log::error!(
                        "{}: store write failed, {writes} writes rolled back: {error}",
                        self.path.display()
                    );
                }
                Commit::Failed(error)
            }
        }
    }

    /// Undoes the open transaction; `retired` (delivered rows) will be retired again.
    fn roll_back(&mut self, retired: Vec<(StoredSessionId, i64)>) {
        // After a failed COMMIT SQLite may already have rolled back; ignore "no transaction is
        // active".
        let _ = self.db.execute_batch("ROLLBACK");
        self.in_batch = false;
        self.batch_started = None;
        self.batch_error = None;
        self.writes_in_batch = 0;
        self.messages_in_batch = 0;
        self.batch_has_promise = false;
        self.forgotten = retired;
        if let Err(e) = self.reload_usage(false).and_then(|()| self.reload_watermarks()) {
            log::error!("{}: cannot re-read the ring: {e}", self.path.display());
        }
    }

    /// After a batch failed for lack of space: retires the delivered rows and deletes a slice
    /// of the garbage in a transaction of its own (nothing in it needs new pages), so a stream
    /// of refused messages cannot hold back the deletes that make room.
    fn housekeeping_now(&mut self) {
        if self.in_batch || (self.forgotten.is_empty() && self.garbage == 0) {
            return;
        }
        let retired = self.forgotten.clone();
        if self.begin() {
            self.retire_forgotten();
            self.collect_garbage_step();
        }
        let failure = match self.batch_error.take() {
            Some(error) => Some(error),
            None => self.db.execute_batch("COMMIT").err().map(|e| Failure::sqlite("COMMIT", &e)),
        };
        match failure {
            None => {
                self.in_batch = false;
                self.batch_started = None;
                self.stats.commits += 1;
                self.stats.rows_written += std::mem::take(&mut self.writes_in_batch) as u64;
            }
            Some(error) => {
                self.stats.failed_commits += 1;
                log::debug!("{}: deleting delivered messages failed: {error}", self.path.display());
                self.roll_back(retired);
            }
        }
    }

    /// Runs one write inside the current batch (opening it if needed). After a failure the
    /// batch is poisoned and further writes are skipped until it is rolled back.
    fn write<T>(
        &mut self,
        what: &str,
        kind: WriteKind,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Option<T> {
        if !self.begin() {
            return None;
        }
        self.writes_in_batch += 1;
        self.batch_has_promise |= kind == WriteKind::Promise;
        match f(&self.db) {
            Ok(value) => Some(value),
            Err(e) => {
                let failure = Failure::sqlite(what, &e);
                // A full store is logged once per episode (`space`), not once per write.
                if failure.disk_full {
                    log::debug!("{}: {what} failed: {e}", self.path.display());
                } else {
                    log::warn!("{}: {what} failed: {e}", self.path.display());
                }
                self.batch_error = Some(failure);
                None
            }
        }
    }

    /// Opens the batch if none is open. False if the batch is poisoned.
    fn begin(&mut self) -> bool {
        if self.batch_error.is_some() {
            return false;
        }
        if !self.in_batch {
            self.in_batch = true;
            if let Err(e) = self.db.execute_batch("BEGIN") {
                self.batch_error = Some(Failure::sqlite("BEGIN", &e));
                return false;
            }
            self.batch_started = Some(Instant::now());
        }
        true
    }

    /// Counts every session's live rows and bytes (one pass over the ring). At start-up
    /// (`keep_bounds`) the same pass also notes where each session's rows begin and end and
    /// whether any waits for PUBCOMP, for [`Store::load`]: asking that per session would read
    /// every row a second time (the state is not in the index), which took longer than the
    /// rest of the start together at a million rows.
    fn reload_usage(&mut self, keep_bounds: bool) -> rusqlite::Result<()> {
        let mut usage = HashMap::new();
        let mut bounds = HashMap::new();
        let mut total = 0;
        let mut orphans = false;
        let mut statement = self.db.prepare(
            "SELECT m.session, count(*), coalesce(sum(m.size), 0), \
             min(m.seq) FILTER (WHERE m.state = 0), max(m.seq), \
             count(*) FILTER (WHERE m.state = 1), s.id IS NULL FROM messages m \
             LEFT JOIN sessions s ON s.id = m.session \
             WHERE m.seq >= coalesce(s.first_live, 0) GROUP BY m.session",
        )?;
        let mut rows = statement.query([])?;
        while let Some(row) = rows.next()? {
            let session = StoredSessionId(row.get(0)?);
            let (messages, bytes): (i64, i64) = (row.get(1)?, row.get(2)?);
            let entry = Usage { messages: messages.max(0) as u64, bytes: bytes.max(0) as u64 };
            total += entry.messages;
            usage.insert(session, entry);
            orphans |= row.get::<_, bool>(6)?;
            if keep_bounds {
                let last: Option<i64> = row.get(4)?;
                bounds.insert(
                    session,
                    RingBounds {
                        first_queued: row.get(3)?,
                        next_seq: last.map(|s| s + 1),
                        pubrel: row.get::<_, i64>(5)? > 0,
                    },
                );
            }
        }
        self.usage = usage;
        self.total_messages = total;
        self.ring_bounds = keep_bounds.then_some(RingScan { bounds, orphans });
        Ok(())
    }

    /// Wall-clock milliseconds for a loop instant (stored deadlines survive restarts).
    pub fn wall_ms(&self, at: Instant) -> i64 {
        let (anchor_instant, anchor_wall) = self.anchor;
        let base = anchor_wall.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        if at >= anchor_instant {
            base + at.duration_since(anchor_instant).as_millis() as i64
        } else {
            base - anchor_instant.duration_since(at).as_millis() as i64
        }
    }

    /// The loop instant for stored wall-clock milliseconds (past deadlines map to "now").
    /// A damaged value far in the future is capped (about 136 years, the protocol's longest
    /// interval) rather than overflowing the clock.
    pub fn instant_of(&self, wall_ms: i64) -> Instant {
        let (anchor_instant, _) = self.anchor;
        let offset = wall_ms.saturating_sub(self.wall_ms(anchor_instant));
        if offset <= 0 {
            return anchor_instant;
        }
        let offset = Duration::from_millis(offset as u64).min(LONGEST_INTERVAL);
        anchor_instant.checked_add(offset).unwrap_or(anchor_instant)
    }
}

/// Bytes of the write-ahead log's header, and of each frame's header before its page.
const WAL_HEADER: u64 = 32;
const WAL_FRAME_HEADER: u64 = 24;

/// fsync of the write-ahead log after a commit: what `synchronous = FULL` does, done only
/// where an acknowledgement depends on it. fsync works on the file, whichever descriptor
/// wrote it, so a second descriptor of `<db>-wal` suffices.
struct WalSync {
    path: PathBuf,
    file: Option<std::fs::File>,
    /// Whether the log's directory entry was fsync'd (once, when the log is first synced).
    dir_synced: bool,
    /// How long an fsync takes here, smoothed over the last few.
    typical: Duration,
}

impl WalSync {
    fn new(db: &Path) -> WalSync {
        let mut name = db.as_os_str().to_owned();
        name.push("-wal");
        WalSync {
            path: PathBuf::from(name),
            file: None,
            dir_synced: false,
            typical: Duration::ZERO,
        }
    }

    /// Folds one fsync's time into `typical` (a quarter weight: one slow fsync moves it, a
    /// few make it); the first one is taken as it is.
    fn note(&mut self, took: Duration) {
        self.typical = if self.typical.is_zero() { took } else { (self.typical * 3 + took) / 4 };
    }

    /// Whether the log holds at least `frames` frames of its current generation: the header
    /// of frame number `frames` carries the log header's salt (SQLite's documented WAL
    /// format: a 32-byte header with the salt at bytes 16..24, then frames of a 24-byte
    /// header, salt at bytes 8..16, and one page). Frames of an earlier generation, left
    /// behind after the log restarted, carry an older salt. False if the file cannot be read.
    fn holds_frames(&mut self, frames: u64, page_size: u64) -> bool {
        use std::os::unix::fs::FileExt;
        if frames == 0 {
            return true;
        }
        if self.file.is_none() {
            self.file = std::fs::File::open(&self.path).ok();
        }
        let Some(file) = self.file.as_ref() else { return false };
        let (mut log_salt, mut frame_salt) = ([0u8; 8], [0u8; 8]);
        let at = WAL_HEADER + (frames - 1) * (WAL_FRAME_HEADER + page_size) + 8;
        file.read_exact_at(&mut log_salt, 16).is_ok()
            && file.read_exact_at(&mut frame_salt, at).is_ok()
            && log_salt == frame_salt
    }

    /// `Err` with the reason if the log could not be made durable.
    fn sync(&mut self) -> Result<(), Failure> {
        // Test only (Cargo.toml): the bug `make powercut-selfcheck` expects tests/powercut.rs
        // to catch.
        if cfg!(feature = "fault-skip-wal-fsync") {
            return Ok(());
        }
        let failure = |what: &Path, e: std::io::Error| Failure {
            message: format!("fsync {}: {e}", what.display()),
            disk_full: e.kind() == std::io::ErrorKind::StorageFull,
        };
        let file = match self.file.take() {
            Some(file) => file,
            None => std::fs::File::open(&self.path).map_err(|e| failure(&self.path, e))?,
        };
        if !self.dir_synced {
            // The log was just created: make its directory entry durable too.
            if let Some(dir) = self.path.parent() {
                let synced = std::fs::File::open(dir).and_then(|d| d.sync_all());
                if let Err(e) = synced {
                    self.file = Some(file);
                    return Err(failure(dir, e));
                }
            }
            self.dir_synced = true;
        }
        let started = Instant::now();
        let synced = file.sync_data().map_err(|e| failure(&self.path, e));
        self.note(started.elapsed());
        self.file = Some(file);
        synced
    }
}

#[cfg(test)]
mod tests;
