//! Content-addressed payload store: blobs named by the SHA-256 of their bytes,
//! under `<base>/<first 2 hex>/<64 hex>`, written atomically (temp file, fsync,
//! rename). Audit rows hold the key; purging deletes blobs but hashes stay.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use contracts::sha256_hex;

/// Failures of the payload store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PayloadStoreError {
    #[error("payload {0} not found (purged or never stored)")]
    NotFound(String),
    /// The blob's bytes do not hash to its key: corruption or tampering.
    #[error("payload {key} is corrupt: its content hashes to {actual}")]
    Integrity { key: String, actual: String },
    #[error("invalid payload key {0:?}")]
    InvalidKey(String),
    #[error("payload store I/O at {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// A directory of content-addressed blobs.
#[derive(Debug)]
pub struct PayloadStore {
    base: PathBuf,
    /// Blobs written but not yet made durable (see [`PayloadStore::sync`]).
    unsynced: std::cell::Cell<bool>,
}

impl Clone for PayloadStore {
    fn clone(&self) -> PayloadStore {
        PayloadStore::new(self.base.clone())
    }
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> PayloadStoreError + '_ {
    move |source| PayloadStoreError::Io { path: path.to_path_buf(), source }
}

impl PayloadStore {
    pub fn new(base: impl Into<PathBuf>) -> PayloadStore {
        PayloadStore { base: base.into(), unsynced: std::cell::Cell::new(false) }
    }

    /// Stores bytes without waiting for the disk; [`PayloadStore::sync`] must
    /// run before anything that refers to the blob is committed. The recorder
    /// does this when a unit of work commits.
    pub fn store_deferred(&self, bytes: &[u8]) -> Result<String, PayloadStoreError> {
        let key = sha256_hex(bytes);
        let path = self.path_of(&key)?;
        if path.exists() {
            return Ok(key);
        }
        let dir = path.parent().unwrap_or(&self.base).to_path_buf();
        std::fs::create_dir_all(&dir).map_err(io_error(&dir))?;
        let mut temp = tempfile::NamedTempFile::new_in(&dir).map_err(io_error(&dir))?;
        temp.write_all(bytes).map_err(io_error(&path))?;
        temp.persist(&path).map_err(|error| PayloadStoreError::Io { path: path.clone(), source: error.error })?;
        self.unsynced.set(true);
        Ok(key)
    }

    /// Makes every deferred blob durable (one `syncfs` of the store's file system).
    pub fn sync(&self) -> Result<(), PayloadStoreError> {
        if !self.unsynced.get() {
            return Ok(());
        }
        let handle = std::fs::File::open(&self.base).map_err(io_error(&self.base))?;
        rustix::fs::syncfs(&handle).map_err(|errno| PayloadStoreError::Io { path: self.base.clone(), source: errno.into() })?;
        self.unsynced.set(false);
        Ok(())
    }

    fn path_of(&self, key: &str) -> Result<PathBuf, PayloadStoreError> {
        if key.len() != 64 || !key.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(PayloadStoreError::InvalidKey(key.to_owned()));
        }
        Ok(self.base.join(&key[..2]).join(key))
    }

    /// Stores bytes and returns their key. Storing existing content re-checks
    /// the blob already there.
    pub fn store(&self, bytes: &[u8]) -> Result<String, PayloadStoreError> {
        let key = sha256_hex(bytes);
        let path = self.path_of(&key)?;
        if path.exists() {
            self.retrieve(&key)?;
            return Ok(key);
        }
        let dir = path.parent().unwrap_or(&self.base).to_path_buf();
        std::fs::create_dir_all(&dir).map_err(io_error(&dir))?;
        let mut temp = tempfile::NamedTempFile::new_in(&dir).map_err(io_error(&dir))?;
        temp.write_all(bytes).map_err(io_error(&path))?;
        temp.as_file().sync_all().map_err(io_error(&path))?;
        temp.persist(&path).map_err(|error| PayloadStoreError::Io { path: path.clone(), source: error.error })?;
        if let Ok(handle) = std::fs::File::open(&dir) {
            let _ = handle.sync_all();
        }
        Ok(key)
    }

    /// Reads a blob and verifies that it still hashes to its key.
    pub fn retrieve(&self, key: &str) -> Result<Vec<u8>, PayloadStoreError> {
        let path = self.path_of(key)?;
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Err(PayloadStoreError::NotFound(key.to_owned()))
            }
            Err(source) => return Err(PayloadStoreError::Io { path, source }),
        };
        let actual = sha256_hex(&bytes);
        if actual != key {
            return Err(PayloadStoreError::Integrity { key: key.to_owned(), actual });
        }
        Ok(bytes)
    }

    pub fn exists(&self, key: &str) -> Result<bool, PayloadStoreError> {
        Ok(self.path_of(key)?.exists())
    }

    /// Deletes a blob; `false` if it was not there.
    pub fn delete(&self, key: &str) -> Result<bool, PayloadStoreError> {
        let path = self.path_of(key)?;
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(source) => Err(PayloadStoreError::Io { path, source }),
        }
    }
}

#[cfg(test)]
mod tests;
