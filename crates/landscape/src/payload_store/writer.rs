//! The payload store's background writer: blobs stored inside a unit of
//! work ([`super::PayloadStore::store_deferred`]) are hashed on the caller's
//! thread and written, in the store's own transaction, on a thread of their
//! own with a connection of its own; [`Writer::commit`] waits until they are
//! committed. On a million-row run the store's key index is far larger than
//! its page cache and every insert lands on a random page of it, so this
//! work is worth a core of its own.
//!
//! Blobs travel in batches (one buffer of bytes and a list of keys and
//! ends), at most [`IN_FLIGHT`] at a time; written batches come back to be
//! refilled, so the steady state allocates nothing. The thread commits
//! whenever it has caught up with its queue, so it never holds the store's
//! write lock while it waits: runs in other processes share the store, and a
//! lock held by an idle writer could close a cycle with their Landscape's.
//! A failed write is kept and reported by the next commit request.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender, TryRecvError};
use std::thread::JoinHandle;

use diesel::connection::SimpleConnection;
use diesel::sqlite::SqliteConnection;
use diesel::{ExpressionMethods, RunQueryDsl};

use super::{payloads, PayloadStoreError};

/// A batch is sent once it holds this many blobs or bytes.
const BATCH_BLOBS: usize = 256;
const BATCH_BYTES: usize = 256 * 1024;
/// Batches sent and not yet written; the caller waits beyond this.
const IN_FLIGHT: usize = 8;

/// Blobs to write: their bytes back to back, and each one's key and end.
#[derive(Default)]
struct Batch {
    bytes: Vec<u8>,
    blobs: Vec<([u8; 32], usize)>,
}

impl Batch {
    fn is_full(&self) -> bool {
        self.blobs.len() >= BATCH_BLOBS || self.bytes.len() >= BATCH_BYTES
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.blobs.clear();
    }
}

enum Message {
    Write(Batch),
    /// Commit what was written; the result goes to the sender.
    Commit(Sender<Result<(), PayloadStoreError>>),
}

/// A commit asked of the writer thread, to be waited for.
#[derive(Debug)]
pub struct PendingCommit(Option<Receiver<Result<(), PayloadStoreError>>>);

impl PendingCommit {
    /// Nothing to commit.
    pub(super) fn done() -> PendingCommit {
        PendingCommit(None)
    }

    /// Waits until the blobs are durable; reports why they are not.
    pub fn wait(self) -> Result<(), PayloadStoreError> {
        match self.0 {
            Some(result) => result.recv().map_err(|_| gone())?,
            None => Ok(()),
        }
    }
}

/// The caller's end of the writer thread.
pub(super) struct Writer {
    messages: Option<SyncSender<Message>>,
    written: Receiver<Batch>,
    filling: Batch,
    /// Something was sent since the last commit.
    uncommitted: bool,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    /// Starts the thread, which opens its own connection to the store at `base`.
    pub(super) fn spawn(base: PathBuf) -> Writer {
        let (messages, inbox) = sync_channel(IN_FLIGHT);
        let (written_sender, written) = channel();
        let thread = std::thread::spawn(move || run(&base, &inbox, &written_sender));
        Writer { messages: Some(messages), written, filling: Batch::default(), uncommitted: false, thread: Some(thread) }
    }

    /// Queues a blob under its key (the SHA-256 of `bytes`).
    pub(super) fn write(&mut self, key: [u8; 32], bytes: &[u8]) -> Result<(), PayloadStoreError> {
        self.filling.bytes.extend_from_slice(bytes);
        self.filling.blobs.push((key, self.filling.bytes.len()));
        if self.filling.is_full() {
            self.send_filling()?;
        }
        Ok(())
    }

    /// Whether blobs were queued since the last commit.
    pub(super) fn has_uncommitted(&self) -> bool {
        self.uncommitted || !self.filling.blobs.is_empty()
    }

    /// Asks for what is queued to be written and committed; waiting for
    /// it reports the first write that failed since the last commit.
    pub(super) fn commit(&mut self) -> Result<PendingCommit, PayloadStoreError> {
        if !self.has_uncommitted() {
            return Ok(PendingCommit::done());
        }
        if !self.filling.blobs.is_empty() {
            self.send_filling()?;
        }
        let (sender, result) = channel();
        self.send(Message::Commit(sender))?;
        self.uncommitted = false;
        Ok(PendingCommit(Some(result)))
    }

    fn send_filling(&mut self) -> Result<(), PayloadStoreError> {
        let mut next = self.written.try_recv().unwrap_or_default();
        next.clear();
        let full = std::mem::replace(&mut self.filling, next);
        self.uncommitted = true;
        self.send(Message::Write(full))
    }

    fn send(&self, message: Message) -> Result<(), PayloadStoreError> {
        self.messages.as_ref().ok_or_else(gone)?.send(message).map_err(|_| gone())
    }
}

impl Drop for Writer {
    /// Ends the thread; what was not committed is rolled back with its
    /// connection.
    fn drop(&mut self) {
        self.messages = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn gone() -> PayloadStoreError {
    PayloadStoreError::Storage { path: "payload writer".into(), message: "the writer thread ended".into() }
}

/// The thread: writes batches in one open transaction, commits on request.
fn run(base: &Path, inbox: &Receiver<Message>, written: &Sender<Batch>) {
    let mut connection = super::connect(base);
    let mut in_transaction = false;
    let mut failure: Option<PayloadStoreError> = None;
    let mut queued: Option<Message> = None;
    loop {
        let message = match queued.take() {
            Some(message) => message,
            None => match inbox.recv() {
                Ok(message) => message,
                Err(_) => return,
            },
        };
        match message {
            Message::Write(mut batch) => {
                if failure.is_none() {
                    let result = match &mut connection {
                        Ok(connection) => write_batch(base, connection, &mut in_transaction, &batch),
                        Err(error) => Err(storage(base, error)),
                    };
                    failure = result.err();
                }
                batch.clear();
                let _ = written.send(batch);
                // Caught up: commit, so the store's write lock is never held
                // while this thread waits. Another process on the same store
                // may hold its Landscape's write lock and wait for this one
                // (and this process's unit for that one).
                match inbox.try_recv() {
                    Ok(next) => queued = Some(next),
                    Err(TryRecvError::Empty) => {
                        if let (None, Ok(connection)) = (&failure, &mut connection) {
                            failure = commit(base, connection, &mut in_transaction).err();
                        }
                    }
                    Err(TryRecvError::Disconnected) => return,
                }
            }
            Message::Commit(committed) => {
                let result = match (failure.take(), &mut connection) {
                    (Some(error), Ok(connection)) => {
                        rollback(connection, &mut in_transaction);
                        Err(error)
                    }
                    (Some(error), Err(_)) => Err(error),
                    (None, Ok(connection)) => commit(base, connection, &mut in_transaction),
                    (None, Err(error)) => Err(storage(base, error)),
                };
                let _ = committed.send(result);
            }
        }
    }
}

fn write_batch(
    base: &Path,
    connection: &mut SqliteConnection,
    in_transaction: &mut bool,
    batch: &Batch,
) -> Result<(), PayloadStoreError> {
    if !*in_transaction {
        connection.batch_execute("BEGIN").map_err(|e| storage(base, &e))?;
        *in_transaction = true;
    }
    let mut start = 0;
    for (key, end) in &batch.blobs {
        let bytes = batch.bytes.get(start..*end).ok_or_else(|| storage(base, &"a batch's blob ends out of order"))?;
        // A typed statement, so diesel caches it prepared.
        diesel::insert_or_ignore_into(payloads::table)
            .values((payloads::key.eq(key.as_slice()), payloads::data.eq(bytes)))
            .execute(connection)
            .map_err(|e| storage(base, &e))?;
        start = *end;
    }
    Ok(())
}

fn commit(base: &Path, connection: &mut SqliteConnection, in_transaction: &mut bool) -> Result<(), PayloadStoreError> {
    if !*in_transaction {
        return Ok(());
    }
    let result = connection.batch_execute("COMMIT").map_err(|e| storage(base, &e));
    if result.is_err() {
        rollback(connection, in_transaction);
    }
    *in_transaction = false;
    result
}

fn rollback(connection: &mut SqliteConnection, in_transaction: &mut bool) {
    if *in_transaction {
        let _ = connection.batch_execute("ROLLBACK");
        *in_transaction = false;
    }
}

fn storage(base: &Path, message: &dyn std::fmt::Display) -> PayloadStoreError {
    PayloadStoreError::Storage { path: base.to_owned(), message: message.to_string() }
}
