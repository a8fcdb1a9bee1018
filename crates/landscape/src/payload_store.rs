//! Content-addressed payload store: blobs keyed by the SHA-256 of their bytes.
//!
//! The blobs live in one SQLite file, `<base>/payloads.sqlite` (table
//! `payloads(key, data)`), not one file per blob: a run of a million rows
//! would otherwise create a million files, and the file system, not the
//! engine, would set the pace. Writes are atomic and deduplicated; every read
//! re-hashes the bytes, so a tampered blob is an integrity error, never data.
//! Purging deletes blobs; the hashes in the Landscape stay.
//!
//! Layout: blobs are appended in insertion order (a rowid table) and found
//! through a unique index on the key, stored as its 32 bytes (the API speaks
//! hex). Keyed by the hash itself, every insert would land on a random page
//! of the blobs, and a commit would rewrite pages all over a file that grows
//! with the input; the key index is random by nature, so it is kept small.
//!
//! Durability: inside a recorder unit of work, blobs are written in the
//! store's own transaction, which [`PayloadStore::sync`] commits before the
//! Landscape transaction that refers to them.

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use contracts::sha256_hex;
use diesel::connection::SimpleConnection;
use diesel::sqlite::SqliteConnection;
use diesel::{Connection, ExpressionMethods, RunQueryDsl};
use sha2::{Digest, Sha256};

/// Failures of the payload store.
#[derive(Debug, thiserror::Error)]
pub enum PayloadStoreError {
    #[error("payload {0} not found (purged or never stored)")]
    NotFound(String),
    /// The blob's bytes do not hash to its key: corruption or tampering.
    #[error("payload {key} is corrupt: its content hashes to {actual}")]
    Integrity { key: String, actual: String },
    #[error("invalid payload key {0:?}")]
    InvalidKey(String),
    #[error("payload store at {path}: {message}")]
    Storage { path: PathBuf, message: String },
}

/// A store of content-addressed blobs under a base directory.
pub struct PayloadStore {
    base: PathBuf,
    /// The connection for reads and immediate writes.
    open: RefCell<Option<SqliteConnection>>,
    /// The thread that writes deferred blobs, once there were any.
    writer: RefCell<Option<writer::Writer>>,
}

impl std::fmt::Debug for PayloadStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PayloadStore").field("base", &self.base).finish_non_exhaustive()
    }
}

impl Clone for PayloadStore {
    fn clone(&self) -> PayloadStore {
        PayloadStore::new(self.base.clone())
    }
}

diesel::table! {
    payloads (key) {
        key -> Binary,
        data -> Binary,
    }
}

#[derive(diesel::QueryableByName)]
struct Blob {
    #[diesel(sql_type = diesel::sql_types::Binary)]
    data: Vec<u8>,
}

/// The stored form of a key: its 32 bytes (half the index of the hex text).
fn key_bytes(key: &str) -> Result<Vec<u8>, PayloadStoreError> {
    valid_key(key)?;
    hex::decode(key).map_err(|_| PayloadStoreError::InvalidKey(key.to_owned()))
}

fn valid_key(key: &str) -> Result<(), PayloadStoreError> {
    if key.len() == 64 && key.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(())
    } else {
        Err(PayloadStoreError::InvalidKey(key.to_owned()))
    }
}

/// Opens (creating it if needed) the store's file under `base`. Its page
/// cache is 12 MiB: blobs are keyed by their random hash, so every insert
/// touches a random page of the key index, and the writer keeps up with the
/// engine at 1M rows with 16 MiB (8 MiB cost the gate pipeline 15-20%); 12
/// MiB keeps every bench pipeline's peak RSS under 150 MB with jemalloc.
fn connect(base: &Path) -> Result<SqliteConnection, String> {
    std::fs::create_dir_all(base).map_err(|e| e.to_string())?;
    let path = base.join("payloads.sqlite");
    let path_text = path.to_str().ok_or("path is not UTF-8")?;
    let mut connection = SqliteConnection::establish(path_text).map_err(|e| e.to_string())?;
    crate::connection::wait_when_busy(&mut connection).map_err(|e| e.to_string())?;
    crate::connection::use_wal(&mut connection).map_err(|e| e.to_string())?;
    connection
        .batch_execute(
            "PRAGMA synchronous = FULL; PRAGMA cache_size = -12288; \
             CREATE TABLE IF NOT EXISTS payloads (key BLOB NOT NULL UNIQUE, data BLOB NOT NULL);",
        )
        .map_err(|e| e.to_string())?;
    Ok(connection)
}

impl PayloadStore {
    pub fn new(base: impl Into<PathBuf>) -> PayloadStore {
        PayloadStore { base: base.into(), open: RefCell::new(None), writer: RefCell::new(None) }
    }

    pub fn base(&self) -> &Path {
        &self.base
    }

    fn error(&self, message: impl std::fmt::Display) -> PayloadStoreError {
        PayloadStoreError::Storage { path: self.base.clone(), message: message.to_string() }
    }

    /// Runs `f` on the connection for reads and immediate writes, after
    /// committing deferred blobs (so it sees them).
    fn with<T>(&self, f: impl FnOnce(&mut SqliteConnection) -> Result<T, PayloadStoreError>) -> Result<T, PayloadStoreError> {
        self.sync()?;
        let mut slot = self.open.borrow_mut();
        if slot.is_none() {
            *slot = Some(connect(&self.base).map_err(|e| self.error(e))?);
        }
        let connection = slot.as_mut().ok_or_else(|| self.error("store did not open"))?;
        f(connection)
    }

    /// Stores bytes durably and returns their key.
    pub fn store(&self, bytes: &[u8]) -> Result<String, PayloadStoreError> {
        let digest = Sha256::digest(bytes);
        let key = contracts::hex_lower(&digest);
        let error = |e: diesel::result::Error| self.error(e);
        self.with(|connection| {
            // A typed statement, so diesel caches it prepared.
            diesel::insert_or_ignore_into(payloads::table)
                .values((payloads::key.eq(digest.as_slice()), payloads::data.eq(bytes)))
                .execute(connection)
                .map_err(error)?;
            Ok(())
        })?;
        // Storing existing content re-checks the blob already there.
        self.retrieve(&key)?;
        Ok(key)
    }

    /// Stores bytes in the store's open transaction, written on the store's
    /// writer thread; [`PayloadStore::sync`] must run before anything that
    /// refers to the blob is committed. A failed write is reported by it.
    pub fn store_deferred(&self, bytes: &[u8]) -> Result<String, PayloadStoreError> {
        let digest: [u8; 32] = Sha256::digest(bytes).into();
        let key = contracts::hex_lower(&digest);
        let mut writer = self.writer.borrow_mut();
        writer.get_or_insert_with(|| writer::Writer::spawn(self.base.clone())).write(digest, bytes)?;
        Ok(key)
    }

    /// Commits deferred blobs durably.
    pub fn sync(&self) -> Result<(), PayloadStoreError> {
        self.sync_in_background()?.wait()
    }

    /// Asks for the deferred blobs to be committed, without waiting: they
    /// are durable once [`PendingCommit::wait`] returns `Ok`.
    pub fn sync_in_background(&self) -> Result<PendingCommit, PayloadStoreError> {
        match self.writer.borrow_mut().as_mut() {
            Some(writer) => writer.commit(),
            None => Ok(PendingCommit::done()),
        }
    }

    /// Reads a blob and verifies that it still hashes to its key.
    pub fn retrieve(&self, key: &str) -> Result<Vec<u8>, PayloadStoreError> {
        valid_key(key)?;
        let error = |e: diesel::result::Error| self.error(e);
        let found: Vec<Blob> = self.with(|connection| {
            diesel::sql_query("SELECT data FROM payloads WHERE key = ?")
                .bind::<diesel::sql_types::Binary, _>(key_bytes(key)?)
                .load(connection)
                .map_err(error)
        })?;
        let bytes = found.into_iter().next().ok_or_else(|| PayloadStoreError::NotFound(key.to_owned()))?.data;
        let actual = sha256_hex(&bytes);
        if actual != key {
            return Err(PayloadStoreError::Integrity { key: key.to_owned(), actual });
        }
        Ok(bytes)
    }

    pub fn exists(&self, key: &str) -> Result<bool, PayloadStoreError> {
        match self.retrieve(key) {
            Ok(_) => Ok(true),
            Err(PayloadStoreError::NotFound(_)) => Ok(false),
            Err(other) => Err(other),
        }
    }

    /// Deletes a blob; `false` if it was not there.
    pub fn delete(&self, key: &str) -> Result<bool, PayloadStoreError> {
        valid_key(key)?;
        let error = |e: diesel::result::Error| self.error(e);
        let deleted = self.with(|connection| {
            diesel::sql_query("DELETE FROM payloads WHERE key = ?")
                .bind::<diesel::sql_types::Binary, _>(key_bytes(key)?)
                .execute(connection)
                .map_err(error)
        })?;
        Ok(deleted > 0)
    }

    /// Test support: overwrites a blob's bytes, as an attacker or a disk fault would.
    pub fn tamper(&self, key: &str, bytes: &[u8]) -> Result<(), PayloadStoreError> {
        let error = |e: diesel::result::Error| self.error(e);
        self.with(|connection| {
            diesel::sql_query("UPDATE payloads SET data = ? WHERE key = ?")
                .bind::<diesel::sql_types::Binary, _>(bytes)
                .bind::<diesel::sql_types::Binary, _>(key_bytes(key)?)
                .execute(connection)
                .map_err(error)?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests;
mod writer;

pub use writer::PendingCommit;
