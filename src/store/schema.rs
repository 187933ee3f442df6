//! The database schema as an append-only list of migrations; `PRAGMA user_version` counts how
//! many have run. Never edit a released migration: add one.

use rusqlite::Connection;

pub(super) const MIGRATIONS: &[&str] = &[
    // 1: sessions, subscriptions, inbound QoS 2 state, the message ring, retained messages.
    "
    CREATE TABLE sessions (
        id              INTEGER PRIMARY KEY,
        client_id       TEXT NOT NULL UNIQUE,
        protocol        INTEGER NOT NULL,
        expiry_secs     INTEGER,            -- NULL: never expires
        expires_at_ms   INTEGER,            -- wall clock, while offline
        will            BLOB,               -- the will as an MQTT 5.0 PUBLISH
        will_delay_secs INTEGER NOT NULL DEFAULT 0,
        will_due_ms     INTEGER,            -- wall clock, while offline with a delayed will
        dropped         INTEGER NOT NULL DEFAULT 0,
        first_unsent    INTEGER NOT NULL DEFAULT 0  -- rows before it were sent at least once
    );
    CREATE TABLE subscriptions (
        session         INTEGER NOT NULL,
        filter          TEXT NOT NULL,
        options         INTEGER NOT NULL,   -- MQTT 5.0 subscription options byte
        subscription_id INTEGER,
        PRIMARY KEY (session, filter)
    ) WITHOUT ROWID;
    CREATE TABLE inbound_qos2 (
        session         INTEGER NOT NULL,
        packet_id       INTEGER NOT NULL,
        PRIMARY KEY (session, packet_id)
    ) WITHOUT ROWID;
    -- The ring: one row per message queued for (or in flight to) one session. `id` orders
    -- the whole ring for global eviction; `seq` orders one session's queue and gives its
    -- packet id, so a restart re-sends with the same ids.
    CREATE TABLE messages (
        id              INTEGER PRIMARY KEY,
        session         INTEGER NOT NULL,
        seq             INTEGER NOT NULL,
        state           INTEGER NOT NULL DEFAULT 0,  -- 0 queued or sent, 1 PUBREL sent
        expires_at_ms   INTEGER,
        size            INTEGER NOT NULL,
        packet          BLOB NOT NULL               -- MQTT 5.0 PUBLISH as delivered
    );
    CREATE UNIQUE INDEX messages_by_session ON messages (session, seq);
    CREATE TABLE retained (
        topic           TEXT PRIMARY KEY,
        expires_at_ms   INTEGER,
        packet          BLOB NOT NULL
    );
    ",
    // 2: delivered rows are deleted in bulk later; rows of a session before `first_live` are
    // delivered (garbage), whatever their state.
    "
    ALTER TABLE sessions ADD COLUMN first_live INTEGER NOT NULL DEFAULT 0;
    ",
    // 3: when a row was queued (wall clock, ms; NULL for older rows), for the age of the
    // oldest queued message in `edgemq inspect` (a bridge's backlog).
    "
    ALTER TABLE messages ADD COLUMN queued_at_ms INTEGER;
    ",
];

/// Runs the migrations this database has not seen yet. Refuses a database written by a newer
/// edgemq rather than guessing at its schema.
pub fn migrate(db: &Connection) -> rusqlite::Result<Result<(), String>> {
    let version: i64 = db.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    let known = MIGRATIONS.len() as i64;
    if version > known {
        return Ok(Err(format!(
            "schema version {version} is newer than this edgemq understands ({known}); \
             run a newer edgemq or move the data directory aside"
        )));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
        db.execute_batch("BEGIN IMMEDIATE")?;
        db.execute_batch(sql)?;
        db.pragma_update(None, "user_version", index as i64 + 1)?;
        db.execute_batch("COMMIT")?;
    }
    Ok(Ok(()))
}
