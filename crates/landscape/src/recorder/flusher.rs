//! The background flush: while the engine goes on recording, the part of a
//! unit's write buffer filled so far is written on a second thread, which
//! borrows the connection for it and hands it back. Whatever else needs the
//! connection waits for it to come home first, so statements run in the
//! order they were recorded and the unit stays one transaction.
//!
//! A unit can also be committed here ([`super::Recorder::commit_unit_in_background`]):
//! the last records are written and the transaction committed while the
//! engine goes on with the next unit, whose BEGIN waits for the connection.
//!
//! A flush or commit that fails (a second terminal outcome, a full disk)
//! poisons the recorder: the error is reported by the next statement or
//! commit, and a failed commit's transaction is rolled back here.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;

use diesel::connection::TransactionManager;

use super::buffer::WriteBuffer;
use super::wal::WalCheckpointer;
use super::Tm;
use crate::connection::DbConnection;
use crate::error::{LandscapeError, Result};
use crate::payload_store::PendingCommit;

/// Buffered records at which a background flush starts.
pub(crate) const BACKGROUND_FLUSH_AT: usize = 2_000;

/// What the thread does with the connection, in this order.
pub(crate) struct Job {
    pub(crate) conn: DbConnection,
    /// Opens the unit's transaction first (its BEGIN was deferred).
    pub(crate) begin: bool,
    pub(crate) buffer: WriteBuffer,
    /// Commits the unit after the buffer is written.
    pub(crate) commit: Option<Commit>,
}

/// What a commit waits for first: the unit's blobs being durable.
pub(crate) struct Commit {
    pub(crate) payloads: Option<PendingCommit>,
}

impl Job {
    fn run(self, wal: Option<&WalCheckpointer>) -> (DbConnection, Result<()>) {
        let Job { mut conn, begin, mut buffer, commit } = self;
        // The connection always comes back, even from a bug in the flush.
        let result =
            catch_unwind(AssertUnwindSafe(|| Job::write(&mut conn, begin, &mut buffer, commit, wal))).unwrap_or_else(|_| {
                rollback_if_open(&mut conn);
                Err(LandscapeError::InvalidWrite("the background flush of the write buffer panicked".into()))
            });
        (conn, result)
    }

    fn write(
        conn: &mut DbConnection,
        begin: bool,
        buffer: &mut WriteBuffer,
        commit: Option<Commit>,
        wal: Option<&WalCheckpointer>,
    ) -> Result<()> {
        if begin {
            if let Some(wal) = wal {
                wal.before_begin();
            }
            crate::connection::begin_unit_transaction(conn)?;
        }
        let written = buffer.flush(conn);
        let Some(Commit { payloads }) = commit else {
            return written;
        };
        let committed = written
            .and_then(|()| Ok(payloads.map_or(Ok(()), PendingCommit::wait)?))
            .and_then(|()| Ok(Tm::commit_transaction(conn)?));
        match (&committed, wal) {
            (Ok(()), Some(wal)) => wal.committed(),
            (Ok(()), None) => {}
            (Err(_), _) => rollback_if_open(conn),
        }
        committed
    }
}

/// Rolls back the connection's transaction, if one is open.
pub(crate) fn rollback_if_open(conn: &mut DbConnection) {
    if Tm::transaction_manager_status_mut(conn).transaction_depth().ok().flatten().is_some() {
        let _ = Tm::rollback_transaction(conn);
    }
}

/// The connection back from a flush, with how the flush went.
pub(crate) struct Done {
    pub(crate) conn: DbConnection,
    pub(crate) result: Result<()>,
}

/// The flush thread and its two channels.
pub(crate) struct Flusher {
    jobs: Option<Sender<Job>>,
    done: Receiver<Done>,
    thread: Option<JoinHandle<()>>,
}

impl Flusher {
    /// The thread; units it commits ask `wal` for a checkpoint, and units
    /// it begins wait for one when the log has grown too long.
    pub(crate) fn spawn(wal: Option<Arc<WalCheckpointer>>) -> Flusher {
        let (jobs, job_receiver) = channel::<Job>();
        let (done_sender, done) = channel();
        let thread = std::thread::spawn(move || {
            for job in job_receiver {
                let (conn, result) = job.run(wal.as_deref());
                if done_sender.send(Done { conn, result }).is_err() {
                    return;
                }
            }
        });
        Flusher { jobs: Some(jobs), done, thread: Some(thread) }
    }

    /// Hands the job to the thread; gives it back when the thread is gone.
    pub(crate) fn start(&self, job: Job) -> std::result::Result<(), Job> {
        match &self.jobs {
            Some(jobs) => jobs.send(job).map_err(|error| error.0),
            None => Err(job),
        }
    }

    /// The connection, if the flush has finished.
    pub(crate) fn try_done(&self) -> Option<Done> {
        self.done.try_recv().ok()
    }

    /// Waits for the flush to finish; `None` if the thread is gone (and the
    /// connection with it).
    pub(crate) fn wait(&self) -> Option<Done> {
        self.done.recv().ok()
    }
}

impl Drop for Flusher {
    /// Lets the thread end and waits for it, so the connection is closed
    /// when the recorder is gone.
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
