//! Disk space: a bounded write-ahead log, a reserve file, and what the store does when the
//! disk (or `sqlite.max_db_size`) is full.
//!
//! Why: SQLite checkpoints its log only once it holds ~4 MB (1000 pages). On a 3 MB
//! filesystem the log alone filled the disk, and then nothing could run any more — not even the
//! deletes and the checkpoint that would have made room — until a restart.
//!
//! - The log is checkpointed once it holds half of `max_wal_size` (`wal_autocheckpoint`), cut
//!   back to `max_wal_size` after a checkpoint (`journal_size_limit`), and truncated to nothing
//!   when no commit came for [`QUIET`] (a `TRUNCATE` checkpoint run from the loop between
//!   batches: it copies at most the log's bound and never waits for a reader). A commit whose
//!   COMMIT ran the checkpoint is not fsync'd again: the checkpoint fsync'd the log first
//!   (`checkpointed_with_commit`).
//! - `max_db_size` counts the log: the database file itself may use `max_db_size` minus the
//!   log's bound (`max_page_count`), so edgemq refuses before the directory holds more.
//! - A reserve file ([`RESERVE_FILE`], as large as the log's bound, filled with bytes no
//!   filesystem stores as a hole or compresses away) is kept in the data directory. When a
//!   commit fails because the disk is full, the reserve is emptied: with that room the log can
//!   be checkpointed and delivered messages deleted. From then on the database may not grow
//!   (`max_page_count` = its current size): new messages fit only in pages freed by deletes, so
//!   the room released stays for the log, and writes resume by themselves once subscribers
//!   drained; delivered rows are deleted at once, in slices whose log fits in that room.
//!   While commits are refused the store checkpoints and tries to refill the reserve every
//!   [`CHECK_FIRST`] (backing off to [`CHECK_MAX`]; every [`CHECK_IDLE`] once freed pages
//!   suffice), writing twice its size to be sure the log can grow too; once it could, another
//!   program freed space and the database may grow again.
//! - Logging: one line when commits start being refused, one summary ("N commits refused") at
//!   the first commit backing an acknowledgement after that, whatever happened in between.
//!
//! The reserve is edgemq's own filler, not data: it is emptied and refilled; nothing else in the
//! directory is ever truncated or deleted. Without statvfs (std has none and the crate forbids
//! `unsafe`; rustix or nix would be a new dependency) the reserve is also how the store learns
//! that space came back: refilling it is the probe, written only while commits are refused.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::Connection;

use super::{Failure, Store};
use crate::config::SqliteConfig;

/// File name of the reserve inside the data directory.
pub const RESERVE_FILE: &str = "edgemq.reserve";
/// No commit for this long: the log is truncated.
pub(super) const QUIET: Duration = Duration::from_secs(1);
/// While commits are refused: first interval between attempts to get the reserve back.
pub(super) const CHECK_FIRST: Duration = Duration::from_secs(1);
/// ... doubling up to this (each attempt may write the whole reserve).
pub(super) const CHECK_MAX: Duration = Duration::from_secs(4);
/// Capped but no longer refusing (the freed pages suffice): attempts this far apart.
pub(super) const CHECK_IDLE: Duration = Duration::from_secs(60);
/// A new "store full" episode within this time of the last one logged is logged at debug
/// level only (its summary too): a store at the edge of full must not flood the log.
const LOG_EVERY: Duration = Duration::from_secs(60);
/// Smallest log bound, whatever `max_db_size` says (a commit touches a few pages).
const MIN_WAL_PAGES: u64 = 4;

/// The log's bound in bytes: `max_wal_size`, but at most a quarter of `max_db_size`.
pub(super) fn wal_limit(config: &SqliteConfig, page_size: u64) -> u64 {
    let limit = match config.max_db_size {
        0 => config.max_wal_size,
        db => config.max_wal_size.min(db / 4),
    };
    limit.max(MIN_WAL_PAGES * page_size)
}

/// Sets a pragma that answers with a row (most do), ignoring the answer.
fn pragma(db: &Connection, sql: &str) -> rusqlite::Result<()> {
    let mut statement = db.prepare(sql)?;
    let mut rows = statement.query([])?;
    while rows.next()?.is_some() {}
    Ok(())
}

/// Commits are being refused because the store is full.
#[derive(Debug)]
struct Refusing {
    /// The error of the commit that started the episode ("database or disk is full").
    reason: String,
    since: Instant,
    commits: u64,
    /// Whether the start was logged (then the end is too).
    logged: bool,
}

/// The store's view of its disk space; see the module documentation.
#[derive(Debug)]
pub(super) struct Space {
    /// `None` for an in-memory store, or if the reserve cannot be created at all.
    reserve: Option<PathBuf>,
    reserve_size: u64,
    page_size: u64,
    /// `max_page_count` while the database may grow.
    page_limit: i64,
    /// The disk was full: the database may not grow until the reserve is back.
    capped: bool,
    refusing: Option<Refusing>,
    last_logged: Option<Instant>,
    /// While refusing: when to try to get the reserve back, and the interval after that.
    next_check: Option<Instant>,
    check_interval: Duration,
    /// When the log is to be truncated (a commit was written and none followed).
    quiet_at: Option<Instant>,
    /// Whether the log is in use (WAL mode).
    wal: bool,
}

impl Space {
    /// Sizes the log and the database for `config`; run at open, before anything is written.
    pub(super) fn configure(
        db: &Connection,
        config: &SqliteConfig,
        wal: bool,
        data_dir: Option<&Path>,
    ) -> rusqlite::Result<Space> {
        let page_size: i64 = db.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        let page_size = page_size.max(512);
        let limit = wal_limit(config, page_size as u64);
        if wal {
            // `Space::checkpoint_pages` says the same.
            let checkpoint_pages = (limit / 2 / page_size as u64).max(2);
            pragma(db, &format!("PRAGMA wal_autocheckpoint = {checkpoint_pages}"))?;
            pragma(db, &format!("PRAGMA journal_size_limit = {limit}"))?;
        }
        let page_limit = if config.max_db_size > 0 {
            let pages = (config.max_db_size.saturating_sub(limit) / page_size as u64).max(8);
            let pages = i64::try_from(pages).unwrap_or(i64::MAX);
            pragma(db, &format!("PRAGMA max_page_count = {pages}"))?;
            pages
        } else {
            db.query_row("PRAGMA max_page_count", [], |r| r.get(0))?
        };
        Ok(Space {
            reserve: data_dir.map(|dir| dir.join(RESERVE_FILE)),
            reserve_size: limit,
            page_size: page_size as u64,
            page_limit,
            capped: false,
            refusing: None,
            last_logged: None,
            next_check: None,
            check_interval: CHECK_FIRST,
            quiet_at: None,
            wal,
        })
    }

    /// The log's page count at which SQLite checkpoints it (`wal_autocheckpoint`).
    pub(super) fn checkpoint_pages(&self) -> u64 {
        (self.reserve_size / 2 / self.page_size).max(2)
    }

    pub(super) fn page_size(&self) -> u64 {
        self.page_size
    }

    /// Why new messages are refused now, if they are (a "store full" episode).
    pub(super) fn refusing_reason(&self) -> Option<String> {
        self.refusing.as_ref().map(|r| {
            format!(
                "store full ({}) for {:.0}s, {} commits refused",
                r.reason,
                r.since.elapsed().as_secs_f64(),
                r.commits
            )
        })
    }

    pub(super) fn deadline(&self) -> Option<Instant> {
        match (self.next_check, self.quiet_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

impl Store {
    /// Why new messages are refused now, if they are (see [`Store::health`]).
    pub(super) fn refusing_reason(&self) -> Option<String> {
        self.space.refusing_reason()
    }

    /// At open: makes sure the reserve is there. A disk too full for it leaves the store
    /// capped (as after a failed commit) rather than refusing to start.
    pub(super) fn open_reserve(&mut self) {
        let Some(path) = self.space.reserve.clone() else { return };
        match fill_reserve(&path, self.space.reserve_size) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::StorageFull => {
                log::warn!(
                    "{}: the disk is full at start-up: no room for the {} bytes reserve; the \
                     database will not grow until there is",
                    self.path.display(),
                    self.space.reserve_size
                );
                self.cap_growth();
                self.space.next_check = Some(Instant::now() + CHECK_FIRST);
            }
            Err(e) => {
                log::warn!("{}: cannot keep a reserve: {e}", path.display());
                self.space.reserve = None;
            }
        }
    }

    /// Empties the reserve (at open, when the disk is too full to clean up). True if it had
    /// room to give.
    pub(super) fn release_reserve(&mut self) -> bool {
        let Some(path) = &self.space.reserve else { return false };
        match empty_reserve(path) {
            Ok(released) => released > 0,
            Err(e) => {
                log::warn!("{}: cannot empty the reserve: {e}", path.display());
                false
            }
        }
    }

    /// A commit failed for lack of space: count it (log the first of an episode), release the
    /// reserve, stop the database from growing, and use the room to delete what subscribers
    /// already received and to checkpoint the log.
    pub(super) fn on_disk_full(&mut self, error: &Failure, writes: usize, now: Instant) {
        let first = self.space.refusing.is_none();
        let refusing = self.space.refusing.get_or_insert(Refusing {
            reason: error.message.clone(),
            since: now,
            commits: 0,
            logged: false,
        });
        refusing.commits += 1;
        if first {
            let log_it =
                self.space.last_logged.is_none_or(|at| now.duration_since(at) >= LOG_EVERY);
            refusing.logged = log_it;
            let level = if log_it { log::Level::Warn } else { log::Level::Debug };
            if log_it {
                self.space.last_logged = Some(now);
            }
            log::log!(
                level,
                "{}: store full ({error}); {writes} writes rolled back; refusing new messages \
                 until there is room again (delivered messages are deleted, and writes resume \
                 by themselves)",
                self.path.display()
            );
            self.space.check_interval = CHECK_FIRST;
            self.space.next_check = Some(now + CHECK_FIRST);
        } else {
            log::debug!(
                "{}: store full ({error}); {writes} writes rolled back",
                self.path.display()
            );
        }
        if !self.space.capped {
            self.release_reserve();
            self.cap_growth();
        }
        self.housekeeping_now();
        if first {
            self.checkpoint_truncate();
        }
    }

    /// A commit succeeded. One that backs an acknowledgement ends a "store full" episode if
    /// there is room again: the database may grow, or deletes freed at least a reserve's
    /// worth of it (squeezing a few messages into the last free bytes of a page is not room).
    pub(super) fn on_committed(&mut self, promise: bool, now: Instant) {
        if self.space.wal {
            self.space.quiet_at = Some(now + QUIET);
        }
        if !promise || self.space.refusing.is_none() || !self.has_room() {
            return;
        }
        let Some(refusing) = self.space.refusing.take() else { return };
        self.space.next_check = self.space.capped.then(|| now + CHECK_IDLE);
        let level = if refusing.logged { log::Level::Info } else { log::Level::Debug };
        log::log!(
            level,
            "{}: store writable again after {:.1}s: {} commits refused",
            self.path.display(),
            now.duration_since(refusing.since).as_secs_f64(),
            refusing.commits
        );
    }

    /// Runs what is due between batches: truncating a quiet log; while refusing, trying to
    /// get the reserve back.
    pub(super) fn space_due(&mut self, now: Instant) {
        if self.in_batch {
            return;
        }
        if self.space.quiet_at.is_some_and(|at| at <= now) {
            self.space.quiet_at = None;
            self.checkpoint_truncate();
        }
        let Some(at) = self.space.next_check else { return };
        if at > now {
            return;
        }
        self.checkpoint_truncate();
        if self.space.capped {
            self.try_uncap();
        }
        self.space.next_check = if self.space.refusing.is_some() {
            self.space.check_interval = (self.space.check_interval * 2).min(CHECK_MAX);
            Some(now + self.space.check_interval)
        } else if self.space.capped {
            Some(now + CHECK_IDLE)
        } else {
            None
        };
    }

    /// Room for new messages: free pages, plus the pages the database may still grow by
    /// (none while capped, up to `max_db_size` otherwise), hold at least a reserve's worth
    /// (or an eighth of a database smaller than 8 reserves).
    fn has_room(&self) -> bool {
        let pragma = |name: &str| self.db.query_row(&format!("PRAGMA {name}"), [], |r| r.get(0));
        let room = || -> rusqlite::Result<i64> {
            let free: i64 = pragma("freelist_count")?;
            let used: i64 = pragma("page_count")?;
            let limit: i64 = pragma("max_page_count")?;
            Ok(free.max(0).saturating_add(limit.saturating_sub(used).max(0)))
        };
        let limit_bytes =
            (self.space.page_limit.max(0) as u64).saturating_mul(self.space.page_size);
        let enough = self.space.reserve_size.min(limit_bytes / 8).max(self.space.page_size);
        room().is_ok_and(|pages| (pages as u64).saturating_mul(self.space.page_size) >= enough)
    }

    /// While capped: how many delivered rows one transaction may delete, so that the log it
    /// writes (deleting rewrites the pages it touches) takes at most a quarter of the room the
    /// reserve gave back. Rows are estimated at the live rows' average size plus their index
    /// entry and cell overhead. `None` when not capped.
    pub(super) fn space_garbage_chunk(&self) -> Option<u64> {
        if !self.space.capped {
            return None;
        }
        let (rows, bytes) =
            self.usage.values().fold((0u64, 0u64), |(r, b), u| (r + u.messages, b + u.bytes));
        let average = bytes.checked_div(rows).unwrap_or(1024);
        Some((self.space.reserve_size / 4 / (average + 64)).max(16))
    }

    /// Whether the database may not grow (after a full disk, until the reserve is back).
    pub(super) fn space_capped(&self) -> bool {
        self.space.capped
    }

    /// The database may not grow past its current size.
    fn cap_growth(&mut self) {
        self.space.capped = true;
        let set = self
            .db
            .query_row("PRAGMA page_count", [], |r| r.get::<_, i64>(0))
            .and_then(|pages| pragma(&self.db, &format!("PRAGMA max_page_count = {pages}")));
        if let Err(e) = set {
            log::warn!("{}: cannot stop the database from growing: {e}", self.path.display());
        }
    }

    /// Refills the reserve; if there was room for it and for the log to grow as far again, the
    /// database may grow again (a reserve that just fits would be taken back by the very next
    /// commit).
    fn try_uncap(&mut self) {
        if let Some(path) = &self.space.reserve {
            let probe = fill_reserve(path, 2 * self.space.reserve_size)
                .and_then(|()| fill_reserve(path, self.space.reserve_size));
            if let Err(e) = probe {
                log::debug!("{}: no room for the reserve yet: {e}", path.display());
                return;
            }
        }
        let limit = self.space.page_limit;
        match pragma(&self.db, &format!("PRAGMA max_page_count = {limit}")) {
            Ok(()) => {
                self.space.capped = false;
                log::debug!("{}: reserve restored, the database may grow", self.path.display());
            }
            Err(e) => log::warn!("{}: cannot lift the size cap: {e}", self.path.display()),
        }
    }

    /// Right after a COMMIT that backs an acknowledgement, before the store fsyncs the log:
    /// true if a checkpoint already made the commit durable, so that fsync can be left out.
    ///
    /// Why: once the log holds half its bound, SQLite checkpoints it inside the COMMIT, and a
    /// checkpoint fsyncs the whole log before it copies anything (`synchronous = NORMAL`).
    /// The store's own fsync after that was a second one for nothing: at 20 ms an fsync, a
    /// checkpointing commit took three (log, database, log) instead of two.
    ///
    /// How: the log's frames are counted from its file (`WalSync::holds_frames`); only if the
    /// COMMIT left at least the checkpoint threshold is a PASSIVE checkpoint asked for, which
    /// then finds nothing left to copy and reports every frame copied. Whatever else it
    /// reports (a reader in the way, an error, or a count fooled by frames of a rolled-back
    /// write, in which case it checkpointed now and fsync'd the log itself, also fine) leaves
    /// the decision to the normal fsync. An fsync is never skipped unless SQLite says that
    /// every frame in the log, this commit's included, was copied, which it does only after
    /// fsyncing the log.
    pub(super) fn checkpointed_with_commit(&mut self) -> bool {
        if !self.space.wal || self.in_batch {
            return false;
        }
        let (threshold, page_size) = (self.space.checkpoint_pages(), self.space.page_size());
        let Some(wal) = self.wal_sync.as_mut() else { return false };
        // The first fsync also makes the files' directory entries durable: never skipped.
        if !wal.dir_synced || !wal.holds_frames(threshold, page_size) {
            return false;
        }
        let _ = self.db.busy_timeout(Duration::ZERO);
        let result = self.db.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
        });
        let _ = self.db.busy_timeout(Duration::from_secs(5));
        match result {
            Ok((0, frames, copied)) if frames > 0 && copied == frames => true,
            Ok((busy, frames, copied)) => {
                log::debug!(
                    "{}: log checkpoint incomplete (busy {busy}, {copied} of {frames} frames)",
                    self.path.display()
                );
                false
            }
            Err(e) => {
                log::debug!("{}: log checkpoint failed: {e}", self.path.display());
                false
            }
        }
    }

    /// Copies the log into the database and truncates it, if no reader is in the way (never
    /// waits: a busy checkpoint is simply tried again later).
    pub(super) fn checkpoint_truncate(&mut self) {
        if !self.space.wal || self.in_batch {
            return;
        }
        // rusqlite's default busy timeout (5 s) would let a reader stall the loop.
        let _ = self.db.busy_timeout(Duration::ZERO);
        let started = Instant::now();
        let result = self.db.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
        });
        let _ = self.db.busy_timeout(Duration::from_secs(5));
        match result {
            Ok((busy, frames)) => log::debug!(
                "{}: log checkpoint{} ({frames} frames) in {:?}",
                self.path.display(),
                if busy != 0 { " incomplete" } else { "" },
                started.elapsed()
            ),
            Err(e) => log::debug!("{}: log checkpoint failed: {e}", self.path.display()),
        }
    }
}

/// Size of the filler written at a time.
const CHUNK: usize = 64 * 1024;

/// Bytes that no filesystem stores as a hole or compresses to nothing (xorshift32).
fn filler() -> Vec<u8> {
    let mut x: u32 = 0x9E37_79B9;
    (0..CHUNK)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x.to_le_bytes()[0]
        })
        .collect()
}

/// Grows the reserve at `path` to `size` bytes of filler. On any error it is emptied again,
/// so a half-written reserve never holds space that nobody may use.
pub(super) fn fill_reserve(path: &Path, size: u64) -> std::io::Result<()> {
    let mut file = OpenOptions::new().create(true).truncate(false).write(true).open(path)?;
    let have = file.metadata()?.len();
    if have >= size {
        // Larger when max_wal_size was lowered since: give the difference back.
        return if have > size { file.set_len(size) } else { Ok(()) };
    }
    let written = write_filler(&mut file, have, size);
    if written.is_err() {
        let _ = file.set_len(0);
    }
    written
}

fn write_filler(file: &mut File, from: u64, to: u64) -> std::io::Result<()> {
    let chunk = filler();
    file.seek(SeekFrom::Start(from))?;
    let mut at = from;
    while at < to {
        let n = usize::try_from(to - at).map_or(CHUNK, |left| left.min(CHUNK));
        file.write_all(&chunk[..n])?;
        at += n as u64;
    }
    file.flush()
}

/// Empties the reserve; returns how many bytes it held.
fn empty_reserve(path: &Path) -> std::io::Result<u64> {
    match OpenOptions::new().write(true).open(path) {
        Ok(file) => {
            let had = file.metadata()?.len();
            file.set_len(0)?;
            Ok(had)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(e),
    }
}
