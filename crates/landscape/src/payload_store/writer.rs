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
//!
//! Blobs are appended to the store's unindexed tail (see [`super::segments`]),
//! each key once per transaction (a routing reason is the same blob on every
//! row); no other connection can delete a blob while the transaction holds
//! the write lock, so skipping a key appended in it never skips a blob that
//! is gone. The thread seals the tail once it has appended
//! [`Limits::seal_at_blobs`] to it, after replying to the commit that reached
//! the threshold.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender, TryRecvError};
use std::thread::JoinHandle;

use diesel::connection::SimpleConnection;
use diesel::sqlite::SqliteConnection;
use diesel::{ExpressionMethods, RunQueryDsl};

use super::segments::{self, Limits};
use super::{payload_tail, PayloadStoreError};

/// A batch is sent once it holds this many blobs or bytes.
pub(super) const BATCH_BLOBS: usize = 256;
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
    /// Commit, then seal the tail; the result goes to the sender.
    Seal(Sender<Result<(), PayloadStoreError>>),
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
    pub(super) fn spawn(base: PathBuf, limits: Limits) -> Writer {
        let (messages, inbox) = sync_channel(IN_FLIGHT);
        let (written_sender, written) = channel();
        let thread = std::thread::spawn(move || Thread::new(base, limits).run(&inbox, &written_sender));
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
        self.request(Message::Commit)
    }

    /// Asks for what is queued to be committed and for the tail to be sealed.
    pub(super) fn seal(&mut self) -> Result<PendingCommit, PayloadStoreError> {
        self.request(Message::Seal)
    }

    fn request(
        &mut self,
        message: fn(Sender<Result<(), PayloadStoreError>>) -> Message,
    ) -> Result<PendingCommit, PayloadStoreError> {
        if !self.filling.blobs.is_empty() {
            self.send_filling()?;
        }
        let (sender, result) = channel();
        self.send(message(sender))?;
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

/// The writer thread's state.
struct Thread {
    base: PathBuf,
    limits: Limits,
    connection: Result<SqliteConnection, String>,
    in_transaction: bool,
    /// The first write that failed since the last commit request.
    failure: Option<PayloadStoreError>,
    /// The keys appended in the open transaction.
    appended: HashSet<[u8; 32]>,
    /// Blobs this thread appended to the tail since it last sealed it.
    tail_blobs: usize,
}

impl Thread {
    fn new(base: PathBuf, limits: Limits) -> Thread {
        let connection = super::connect(&base);
        Thread { base, limits, connection, in_transaction: false, failure: None, appended: HashSet::new(), tail_blobs: 0 }
    }

    /// Writes batches in one open transaction, commits on request.
    fn run(mut self, inbox: &Receiver<Message>, written: &Sender<Batch>) {
        let mut queued: Option<Message> = None;
        loop {
            let message = match queued.take() {
                Some(message) => message,
                None => match inbox.recv() {
                    Ok(message) => message,
                    Err(_) => return self.rollback(),
                },
            };
            match message {
                Message::Write(mut batch) => {
                    if self.failure.is_none() {
                        self.failure = self.write_batch(&batch).err();
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
                            if self.failure.is_none() {
                                self.failure = self.commit().err();
                            }
                            self.seal_when_full();
                        }
                        Err(TryRecvError::Disconnected) => return self.rollback(),
                    }
                }
                Message::Commit(committed) => {
                    let _ = committed.send(self.commit_requested());
                    self.seal_when_full();
                }
                Message::Seal(sealed) => {
                    let result = self.commit_requested().and_then(|()| self.seal());
                    let _ = sealed.send(result);
                }
            }
        }
    }

    fn connection(&mut self) -> Result<&mut SqliteConnection, PayloadStoreError> {
        let base = &self.base;
        self.connection.as_mut().map_err(|error| storage(base, error))
    }

    fn write_batch(&mut self, batch: &Batch) -> Result<(), PayloadStoreError> {
        if !self.in_transaction {
            self.connection()?.batch_execute("BEGIN").map_err(|e| storage(&self.base, &e))?;
            self.in_transaction = true;
        }
        let mut start = 0;
        for (key, end) in &batch.blobs {
            let bytes = batch.bytes.get(start..*end).ok_or_else(|| storage(&self.base, &"a batch's blob ends out of order"))?;
            start = *end;
            if !self.appended.insert(*key) {
                continue;
            }
            self.tail_blobs += 1;
            // A typed statement, so diesel caches it prepared.
            diesel::insert_into(payload_tail::table)
                .values((payload_tail::key.eq(key.as_slice()), payload_tail::data.eq(bytes)))
                .execute(self.connection()?)
                .map_err(|e| storage(&self.base, &e))?;
        }
        Ok(())
    }

    /// Commits, or reports (and rolls back) the write that failed.
    fn commit_requested(&mut self) -> Result<(), PayloadStoreError> {
        match self.failure.take() {
            Some(error) => {
                self.rollback();
                Err(error)
            }
            None => self.commit(),
        }
    }

    fn commit(&mut self) -> Result<(), PayloadStoreError> {
        if !self.in_transaction {
            return Ok(());
        }
        let result = self.connection()?.batch_execute("COMMIT").map_err(|e| storage(&self.base, &e));
        match result {
            Ok(()) => {
                self.in_transaction = false;
                self.appended.clear();
            }
            Err(_) => self.rollback(),
        }
        result
    }

    fn rollback(&mut self) {
        if self.in_transaction {
            if let Ok(connection) = self.connection() {
                let _ = connection.batch_execute("ROLLBACK");
            }
            self.in_transaction = false;
            self.appended.clear();
        }
    }

    /// Seals the tail once this thread has appended enough to it, between
    /// transactions; a failure is reported by the next commit request.
    fn seal_when_full(&mut self) {
        if self.tail_blobs >= self.limits.seal_at_blobs && !self.in_transaction && self.failure.is_none() {
            self.failure = self.seal().err();
        }
    }

    fn seal(&mut self) -> Result<(), PayloadStoreError> {
        let limits = self.limits;
        segments::seal(self.connection()?, limits).map_err(|e| storage(&self.base, &e))?;
        self.tail_blobs = 0;
        Ok(())
    }
}

fn storage(base: &Path, message: &dyn std::fmt::Display) -> PayloadStoreError {
    PayloadStoreError::Storage { path: base.to_owned(), message: message.to_string() }
}
