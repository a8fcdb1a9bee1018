//! Where the payload store's blobs live in its file, and how a read, a
//! delete or a seal finds every copy.
//!
//! Three kinds of table hold `(key, data)` rows:
//! - `payloads`: a unique index on the key; blobs stored outside a unit of
//!   work ([`super::PayloadStore::store`]) and merged segments.
//! - `payload_tail`: no index; the writer thread appends deferred blobs
//!   here. Appending costs one page at the end of the table, where an index
//!   keyed by a random hash dirties a random page per blob once it outgrows
//!   the page cache (at 1M rows that index set the pipeline's pace).
//! - `payload_segment_<n>`: a sealed tail. Sealing renames the tail and
//!   indexes it (SQLite sorts the keys; no blob is copied), at a size
//!   threshold during a run and when a run completes. When there are more
//!   than [`Limits::max_segments`], they are merged into `payloads` in key
//!   order and dropped.
//!
//! A key may have copies in several tables (two runs storing the same row,
//! two processes' tails): any copy is the blob, since every read re-hashes
//! it; a delete or a tamper reaches all of them. Reads list the tables and
//! query them in one transaction, so a seal by another process between the
//! two cannot hide a blob.

use diesel::connection::SimpleConnection;
use diesel::sqlite::SqliteConnection;
use diesel::{Connection, QueryDsl, RunQueryDsl};

use super::payload_tail;
use crate::connection::NameRow;

/// When the store seals its tail and merges its segments.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    /// A writer seals the tail once it has appended this many blobs to it.
    pub seal_at_blobs: usize,
    /// More sealed segments than this are merged into `payloads`.
    pub max_segments: usize,
}

impl Limits {
    /// Sealing 256k blobs takes ≈ 0.15–0.2 s on the bench machine; a 1M-row
    /// gate run makes four segments, so the merge comes every fourth such
    /// run on one store and costs ≈ 5–7 µs a blob (a key-ordered insert into
    /// the keyed table, checkpoint included).
    pub(super) const DEFAULT: Limits = Limits { seal_at_blobs: 262_144, max_segments: 16 };
}

/// The tables' definitions, created when a connection opens the store (and
/// the tail's again when a seal has renamed it).
pub(super) const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS payloads (key BLOB NOT NULL UNIQUE, data BLOB NOT NULL); \
     CREATE TABLE IF NOT EXISTS payload_tail (key BLOB NOT NULL, data BLOB NOT NULL);";

#[derive(diesel::QueryableByName)]
struct Blob {
    #[diesel(sql_type = diesel::sql_types::Binary)]
    data: Vec<u8>,
}

/// The sealed segments' numbers, oldest first. Names are rebuilt from the
/// numbers, so nothing read from the file is spliced into SQL.
fn segments(connection: &mut SqliteConnection) -> diesel::QueryResult<Vec<u64>> {
    let names: Vec<NameRow> =
        diesel::sql_query("SELECT name FROM sqlite_master WHERE type = 'table' AND name GLOB 'payload_segment_*'")
            .load(connection)?;
    let mut numbers: Vec<u64> =
        names.iter().filter_map(|n| n.name.strip_prefix("payload_segment_").and_then(|n| n.parse().ok())).collect();
    numbers.sort_unstable();
    Ok(numbers)
}

fn segment(number: u64) -> String {
    format!("payload_segment_{number}")
}

/// Every table that holds blobs, given the segments' numbers, in the order
/// reads try them.
fn tables(segments: &[u64]) -> Vec<String> {
    let mut tables = vec!["payloads".to_owned()];
    tables.extend(segments.iter().rev().copied().map(segment));
    tables.push("payload_tail".to_owned());
    tables
}

/// The bytes of one copy of `key`, if any table holds one.
pub(super) fn read(connection: &mut SqliteConnection, key: &[u8]) -> diesel::QueryResult<Option<Vec<u8>>> {
    connection.transaction(|connection| {
        let query = tables(&segments(connection)?)
            .iter()
            .map(|table| format!("SELECT data FROM {table} WHERE key = ?1"))
            .collect::<Vec<_>>()
            .join(" UNION ALL ");
        let found: Vec<Blob> =
            diesel::sql_query(format!("{query} LIMIT 1")).bind::<diesel::sql_types::Binary, _>(key).load(connection)?;
        Ok(found.into_iter().next().map(|blob| blob.data))
    })
}

/// Deletes every copy of `key`; the number of copies deleted. Seals a
/// non-empty tail first, so a purge does not scan it once per key.
pub(super) fn delete(connection: &mut SqliteConnection, key: &[u8]) -> diesel::QueryResult<usize> {
    connection.immediate_transaction(|connection| {
        let segments = seal_in_transaction(connection)?;
        let mut deleted = 0;
        for table in tables(&segments) {
            deleted += diesel::sql_query(format!("DELETE FROM {table} WHERE key = ?"))
                .bind::<diesel::sql_types::Binary, _>(key)
                .execute(connection)?;
        }
        Ok(deleted)
    })
}

/// Overwrites every copy of `key` (test support: a disk fault or an attacker).
pub(super) fn tamper(connection: &mut SqliteConnection, key: &[u8], bytes: &[u8]) -> diesel::QueryResult<()> {
    connection.immediate_transaction(|connection| {
        for table in tables(&segments(connection)?) {
            diesel::sql_query(format!("UPDATE {table} SET data = ? WHERE key = ?"))
                .bind::<diesel::sql_types::Binary, _>(bytes)
                .bind::<diesel::sql_types::Binary, _>(key)
                .execute(connection)?;
        }
        Ok(())
    })
}

/// Seals the tail if it holds blobs, then merges the segments into
/// `payloads` if there are more than `limits` allows; in one transaction.
pub(super) fn seal(connection: &mut SqliteConnection, limits: Limits) -> diesel::QueryResult<()> {
    connection.immediate_transaction(|connection| {
        let numbers = seal_in_transaction(connection)?;
        if numbers.len() > limits.max_segments {
            for number in numbers {
                let table = segment(number);
                connection.batch_execute(&format!(
                    "INSERT OR IGNORE INTO payloads (key, data) SELECT key, data FROM {table} ORDER BY key; DROP TABLE {table};"
                ))?;
            }
        }
        Ok(())
    })
}

/// Renames a non-empty tail to the next segment, indexes it and starts a new
/// tail; returns the segments' numbers after it.
fn seal_in_transaction(connection: &mut SqliteConnection) -> diesel::QueryResult<Vec<u64>> {
    let mut numbers = segments(connection)?;
    let holds_blobs: bool =
        diesel::select(diesel::dsl::exists(payload_tail::table.select(payload_tail::key))).get_result(connection)?;
    if holds_blobs {
        let next = numbers.last().map_or(1, |last| last + 1);
        let table = segment(next);
        connection.batch_execute(&format!(
            "ALTER TABLE payload_tail RENAME TO {table}; CREATE INDEX {table}_key ON {table} (key); {SCHEMA}"
        ))?;
        numbers.push(next);
    }
    Ok(numbers)
}
