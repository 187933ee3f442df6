//! `sqlite.on_corrupt = "quarantine"`: a corrupt database is renamed aside so that the broker
//! can start with an empty store, and nothing is ever deleted.
//!
//! Contract: [`quarantine`] renames `edgemq.db` and whichever of its `-wal`, `-shm` and
//! `-journal` files exist to `edgemq.db.corrupt-<UTC timestamp>` (plus the same suffixes, so
//! that SQLite opening the renamed file finds its log), in the same directory (a rename, never
//! a copy or a delete). The side files go first: a crash half-way leaves the database where it
//! was, to be quarantined again at the next start, and never pairs a new database with an old
//! log. A name already taken gets `.1`, `.2`, ... Returns what was renamed to what.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::DB_FILE;

/// Side files SQLite keeps next to the database.
const SIDE_SUFFIXES: [&str; 3] = ["-wal", "-shm", "-journal"];

/// Renames the database in `dir` and its side files aside; see the module comment.
pub fn quarantine(dir: &Path, now: SystemTime) -> io::Result<Vec<(PathBuf, PathBuf)>> {
    let stamp = utc_stamp(now);
    let mut base = format!("{DB_FILE}.corrupt-{stamp}");
    let taken = |base: &str| {
        std::iter::once("").chain(SIDE_SUFFIXES).any(|s| dir.join(format!("{base}{s}")).exists())
    };
    let mut n = 0;
    while taken(&base) {
        n += 1;
        if n > 1000 {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, "no free quarantine name"));
        }
        base = format!("{DB_FILE}.corrupt-{stamp}.{n}");
    }
    let mut moved = Vec::new();
    for suffix in SIDE_SUFFIXES.iter().chain(std::iter::once(&"")) {
        let from = dir.join(format!("{DB_FILE}{suffix}"));
        if !from.exists() {
            continue;
        }
        let to = dir.join(format!("{base}{suffix}"));
        std::fs::rename(&from, &to)?;
        moved.push((from, to));
    }
    Ok(moved)
}

/// `YYYYMMDDTHHMMSSZ` (ISO 8601 basic format, UTC).
fn utc_stamp(now: SystemTime) -> String {
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z", rest / 3600, rest % 3600 / 60, rest % 60)
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::TempDir;
    use std::time::Duration;

    #[test]
    fn timestamps_are_utc_calendar_dates() {
        assert_eq!(utc_stamp(UNIX_EPOCH), "19700101T000000Z");
        // 2000-02-29 12:34:56 UTC (a leap day).
        assert_eq!(utc_stamp(UNIX_EPOCH + Duration::from_secs(951_827_696)), "20000229T123456Z");
        // 2026-11-28 09:05:07 UTC.
        assert_eq!(utc_stamp(UNIX_EPOCH + Duration::from_secs(1_795_856_707)), "20261128T090507Z");
    }

    #[test]
    fn the_database_and_its_side_files_are_renamed_never_deleted() {
        let dir = TempDir::new("quarantine");
        let now = UNIX_EPOCH + Duration::from_secs(1_795_856_707);
        for (name, bytes) in [("edgemq.db", "db"), ("edgemq.db-wal", "wal"), ("other", "x")] {
            std::fs::write(dir.path().join(name), bytes).unwrap();
        }
        let moved = quarantine(dir.path(), now).unwrap();
        let names: Vec<_> = moved
            .iter()
            .map(|(a, b)| (a.file_name().unwrap().to_owned(), b.file_name().unwrap().to_owned()))
            .collect();
        assert_eq!(
            names,
            [
                ("edgemq.db-wal".into(), "edgemq.db.corrupt-20261128T090507Z-wal".into()),
                ("edgemq.db".into(), "edgemq.db.corrupt-20261128T090507Z".into()),
            ]
        );
        let read = |n: &str| std::fs::read_to_string(dir.path().join(n)).unwrap();
        assert_eq!(read("edgemq.db.corrupt-20261128T090507Z"), "db");
        assert_eq!(read("edgemq.db.corrupt-20261128T090507Z-wal"), "wal");
        assert_eq!(read("other"), "x");
        assert!(!dir.path().join("edgemq.db").exists());

        // The same second again: a new name, the first quarantine untouched.
        std::fs::write(dir.path().join("edgemq.db"), "db2").unwrap();
        quarantine(dir.path(), now).unwrap();
        assert_eq!(read("edgemq.db.corrupt-20261128T090507Z.1"), "db2");
        assert_eq!(read("edgemq.db.corrupt-20261128T090507Z"), "db");
    }
}
