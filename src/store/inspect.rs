//! `edgemq inspect`: a read-only report of what the store holds, safe while the broker runs
//! (WAL readers never block the writer).

use std::fmt::Write as _;
use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use super::sessions::options_from_byte;
use super::{StoreError, DB_FILE};

/// The report for the database in `dir`, as text.
pub fn inspect(dir: &Path) -> Result<String, StoreError> {
    let path = dir.join(DB_FILE);
    let fail = |e: rusqlite::Error| StoreError {
        path: path.clone(),
        message: e.to_string(),
        corrupt: false,
    };
    if !path.exists() {
        return Err(StoreError {
            path,
            message: "no database here (wrong --data?)".into(),
            corrupt: false,
        });
    }
    // A cleanly stopped broker leaves no write-ahead log; a read-only open would create one
    // (and its index) for a WAL database. Open such a file as immutable: nothing is written.
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let db = if Path::new(&wal).exists() {
        Connection::open_with_flags(&path, flags)
    } else {
        let uri = format!("file:{}?immutable=1", uri_path(&path));
        Connection::open_with_flags(uri, flags | OpenFlags::SQLITE_OPEN_URI)
    }
    .map_err(fail)?;
    let mut out = String::new();
    let version: i64 = db.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(fail)?;
    // A database whose schema never reached the disk (a power cut after the first start,
    // before anything was acknowledged): an empty file, or one without tables. The broker
    // creates the schema at its next start; there is nothing in it to report.
    let tables: i64 = db
        .query_row("SELECT count(*) FROM sqlite_master WHERE type = 'table'", [], |r| r.get(0))
        .map_err(fail)?;
    if version == 0 && tables == 0 {
        let _ = writeln!(
            out,
            "database: {} (uninitialised: no schema yet; edgemq creates it at start-up)",
            path.display()
        );
        let _ = writeln!(out, "ring: 0 messages, 0 bytes; retained: 0");
        let _ = writeln!(out, "sessions: 0");
        return Ok(out);
    }
    // Rows before a session's `first_live` (schema 2) are delivered and wait to be deleted.
    let live = if version >= 2 { "m.seq >= coalesce(s.first_live, 0)" } else { "1" };
    // Schema 3 records when each row was queued.
    let oldest = if version >= 3 {
        format!("(SELECT min(queued_at_ms) FROM messages m WHERE m.session = s.id AND {live})")
    } else {
        "NULL".to_string()
    };
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let (rows, bytes): (i64, i64) = db
        .query_row(
            &format!(
                "SELECT count(*), coalesce(sum(m.size), 0) FROM messages m \
                 LEFT JOIN sessions s ON s.id = m.session WHERE {live}"
            ),
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(fail)?;
    let retained: i64 =
        db.query_row("SELECT count(*) FROM retained", [], |r| r.get(0)).map_err(fail)?;
    let _ = writeln!(out, "database: {} (schema {version})", path.display());
    let _ = writeln!(out, "ring: {rows} messages, {bytes} bytes; retained: {retained}");

    let mut sessions = db
        .prepare(&format!(
            "SELECT s.id, s.client_id, s.protocol, s.expiry_secs, s.expires_at_ms, \
             s.will IS NOT NULL, s.dropped, \
             (SELECT count(*) FROM messages m WHERE m.session = s.id AND {live}), \
             (SELECT coalesce(sum(size), 0) FROM messages m WHERE m.session = s.id AND {live}), \
             (SELECT count(*) FROM messages m WHERE m.session = s.id AND m.state = 1 AND {live}), \
             {oldest} \
             FROM sessions s ORDER BY s.client_id",
        ))
        .map_err(fail)?;
    let rows = sessions
        .query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, Option<i64>>(3)?,
                r.get::<_, Option<i64>>(4)?,
                r.get::<_, bool>(5)?,
                r.get::<_, i64>(6)?,
                r.get::<_, i64>(7)?,
                r.get::<_, i64>(8)?,
                r.get::<_, i64>(9)?,
                r.get::<_, Option<i64>>(10)?,
            ))
        })
        .map_err(fail)?;
    let mut count = 0;
    for row in rows {
        let (
            id,
            client,
            protocol,
            expiry,
            expires_ms,
            will,
            dropped,
            queued,
            qbytes,
            pubrel,
            oldest,
        ) = row.map_err(fail)?;
        count += 1;
        let expiry = expiry.map_or("never".to_string(), |s| format!("{s}s"));
        let state = expires_ms.map_or("online or never expires".to_string(), |ms| {
            format!("offline, expires at unix ms {ms}")
        });
        // A bridge's session (`$bridge/NAME`): its queue is the backlog for the remote.
        let bridge = client
            .strip_prefix(crate::config::BRIDGE_CLIENT_PREFIX)
            .map_or(String::new(), |name| format!(" (bridge {name})"));
        let age = oldest.map_or(String::new(), |ms| {
            format!(", oldest queued {:.1}s ago", (now_ms - ms).max(0) as f64 / 1000.0)
        });
        let _ = writeln!(
            out,
            "session {client:?}{bridge}: protocol {protocol}, expiry {expiry}, {state}, will {}, \
             queued {queued} ({qbytes} bytes, {pubrel} awaiting PUBCOMP{age}), dropped {dropped}",
            if will { "yes" } else { "no" }
        );
        let mut subs = db
            .prepare_cached(
                "SELECT filter, options, subscription_id FROM subscriptions WHERE session = ?1 \
                 ORDER BY filter",
            )
            .map_err(fail)?;
        let subs = subs
            .query_map([id], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, Option<i64>>(2)?))
            })
            .map_err(fail)?;
        for sub in subs {
            let (filter, options, sub_id) = sub.map_err(fail)?;
            let qos = u8::try_from(options)
                .ok()
                .and_then(options_from_byte)
                .map_or("?".to_string(), |o| o.qos.bits().to_string());
            let id = sub_id.map_or(String::new(), |i| format!(", id {i}"));
            // `$share/GROUP/FILTER` (MQTT 5.0 §4.8.2): say which group it makes the session a
            // member of (the broker refuses malformed ones, so GROUP is followed by `/`).
            let shared = filter
                .strip_prefix("$share/")
                .and_then(|rest| rest.split_once('/'))
                .map_or(String::new(), |(group, inner)| {
                    format!(", shared: group {group:?} on {inner:?}")
                });
            let _ = writeln!(out, "  subscription {filter:?} qos {qos}{id}{shared}");
        }
    }
    let _ = writeln!(out, "sessions: {count}");
    Ok(out)
}

/// `path` for a `file:` URI: `%`, `?` and `#` escaped.
fn uri_path(path: &Path) -> String {
    let mut out = String::new();
    for c in path.to_string_lossy().chars() {
        match c {
            '%' => out.push_str("%25"),
            '?' => out.push_str("%3f"),
            '#' => out.push_str("%23"),
            c => out.push(c),
        }
    }
    out
}
