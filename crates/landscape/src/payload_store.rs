//! Content-addressed payload store: blobs keyed by the SHA-256 of their bytes.
//!
//! The blobs live in one SQLite file, `<base>/payloads.sqlite`, not one file
//! per blob: a run of a million rows would otherwise create a million files,
//! and the file system, not the engine, would set the pace. Writes are
//! atomic; the same bytes may be stored more than once (any copy is the blob);
//! every read re-hashes the bytes, so a tampered blob is an integrity error,
//! never data. Purging deletes every copy of a blob; the hashes in the
//! Landscape stay.
//!
//! Layout ([`segments`]): blobs stored inside a unit of work are appended to
//! an unindexed tail, sealed into indexed segments; others go to a table with
//! a unique index on the key. Keys are stored as their 32 bytes (the API
//! speaks hex).
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

use segments::Limits;

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
    limits: Limits,
}

impl std::fmt::Debug for PayloadStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PayloadStore").field("base", &self.base).finish_non_exhaustive()
    }
}

impl Clone for PayloadStore {
    fn clone(&self) -> PayloadStore {
        PayloadStore { limits: self.limits, ..PayloadStore::new(self.base.clone()) }
    }
}

diesel::table! {
    payloads (key) {
        key -> Binary,
        data -> Binary,
    }
}

diesel::table! {
    payload_tail (key) {
        key -> Binary,
        data -> Binary,
    }
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
/// cache is 2 MiB: appends and point reads need little, and the cache also
/// bounds what a seal sorts in memory before it spills to a temporary file
/// (with 12 MiB a 1M-row gate run peaked at 185 MB instead of 114 MB).
fn connect(base: &Path) -> Result<SqliteConnection, String> {
    std::fs::create_dir_all(base).map_err(|e| e.to_string())?;
    let path = base.join("payloads.sqlite");
    let path_text = path.to_str().ok_or("path is not UTF-8")?;
    let mut connection = SqliteConnection::establish(path_text).map_err(|e| e.to_string())?;
    crate::connection::wait_when_busy(&mut connection).map_err(|e| e.to_string())?;
    crate::connection::use_wal(&mut connection).map_err(|e| e.to_string())?;
    connection
        .batch_execute(&format!("PRAGMA synchronous = FULL; PRAGMA cache_size = -2048; {}", segments::SCHEMA))
        .map_err(|e| e.to_string())?;
    Ok(connection)
}

impl PayloadStore {
    pub fn new(base: impl Into<PathBuf>) -> PayloadStore {
        PayloadStore { base: base.into(), open: RefCell::new(None), writer: RefCell::new(None), limits: Limits::DEFAULT }
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
        writer.get_or_insert_with(|| writer::Writer::spawn(self.base.clone(), self.limits)).write(digest, bytes)?;
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

    /// Commits deferred blobs, then indexes the ones not yet indexed (and
    /// merges the indexed segments when there are many): when a run
    /// completes, so that reading its blobs needs no scan.
    pub fn seal(&self) -> Result<(), PayloadStoreError> {
        let sealing = self.writer.borrow_mut().as_mut().map(writer::Writer::seal).transpose()?;
        if let Some(sealing) = sealing {
            return sealing.wait();
        }
        let error = |e: diesel::result::Error| self.error(e);
        self.with(|connection| segments::seal(connection, self.limits).map_err(error))
    }

    /// Reads a blob and verifies that it still hashes to its key.
    pub fn retrieve(&self, key: &str) -> Result<Vec<u8>, PayloadStoreError> {
        let stored = key_bytes(key)?;
        let error = |e: diesel::result::Error| self.error(e);
        let found = self.with(|connection| segments::read(connection, &stored).map_err(error))?;
        let bytes = found.ok_or_else(|| PayloadStoreError::NotFound(key.to_owned()))?;
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

    /// Deletes every copy of a blob; `false` if there was none.
    pub fn delete(&self, key: &str) -> Result<bool, PayloadStoreError> {
        let stored = key_bytes(key)?;
        let error = |e: diesel::result::Error| self.error(e);
        let deleted = self.with(|connection| segments::delete(connection, &stored).map_err(error))?;
        Ok(deleted > 0)
    }

    /// Test support: overwrites a blob's bytes, as an attacker or a disk fault would.
    pub fn tamper(&self, key: &str, bytes: &[u8]) -> Result<(), PayloadStoreError> {
        let stored = key_bytes(key)?;
        let error = |e: diesel::result::Error| self.error(e);
        self.with(|connection| segments::tamper(connection, &stored, bytes).map_err(error))
    }
}

mod segments;
#[cfg(test)]
mod tests;
mod writer;

pub use writer::PendingCommit;
