//! The background flush: while the engine goes on recording, the part of a
//! unit's write buffer filled so far is written on a second thread, which
//! borrows the connection for it and hands it back. Whatever else needs the
//! connection waits for it to come home first, so statements run in the
//! order they were recorded and the unit stays one transaction.
//!
//! A flush that fails (a second terminal outcome) poisons the unit: the
//! error is reported by the next statement or by the commit, as a flush at
//! the commit would.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::thread::JoinHandle;

use super::buffer::WriteBuffer;
use crate::connection::DbConnection;
use crate::error::{LandscapeError, Result};

/// Buffered records at which a background flush starts.
pub(crate) const BACKGROUND_FLUSH_AT: usize = 2_000;

struct Job {
    conn: DbConnection,
    buffer: WriteBuffer,
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
    pub(crate) fn spawn() -> Flusher {
        let (jobs, job_receiver) = channel::<Job>();
        let (done_sender, done) = channel();
        let thread = std::thread::spawn(move || {
            for Job { mut conn, mut buffer } in job_receiver {
                // The connection always comes back, even from a bug in the flush.
                let result = catch_unwind(AssertUnwindSafe(|| buffer.flush(&mut conn))).unwrap_or_else(|_| {
                    Err(LandscapeError::InvalidWrite("the background flush of the write buffer panicked".into()))
                });
                if done_sender.send(Done { conn, result }).is_err() {
                    return;
                }
            }
        });
        Flusher { jobs: Some(jobs), done, thread: Some(thread) }
    }

    /// Hands `conn` and `buffer` to the thread; gives them back when it is gone.
    pub(crate) fn start(&self, conn: DbConnection, buffer: WriteBuffer) -> std::result::Result<(), (DbConnection, WriteBuffer)> {
        match &self.jobs {
            Some(jobs) => jobs.send(Job { conn, buffer }).map_err(|error| (error.0.conn, error.0.buffer)),
            None => Err((conn, buffer)),
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
