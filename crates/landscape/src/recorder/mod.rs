//! The recorder: the only way audit records get written.
//!
//! Every method is atomic: multi-row operations (fork, expand, coalesce, batch
//! retry, guarded transitions) run in a transaction, or in a savepoint when a
//! unit of work is open. A unit of work ([`Recorder::begin_unit`] /
//! [`Recorder::commit_unit`]) groups many calls into one database transaction
//! so the engine chooses where commits fall.
//!
//! Guards: every single-row write checks it affected exactly one row; every
//! terminal transition is a conditional update on the allowed source statuses
//! and, when it matches nothing, reports not-found or illegal-transition and
//! writes nothing.

mod batches;
mod buffer;
mod calls;
mod checkpoints;
mod flusher;
mod graph;
mod insert;
mod outcomes;
mod queries;
mod recordings;
mod retention;
mod runs;
mod states;
mod tokens;
mod wal;

use std::collections::HashMap;

use chrono::NaiveDateTime;
use diesel::connection::TransactionManager;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::Connection;

use crate::connection::DbConnection;
use crate::error::{LandscapeError, Result};
use crate::payload_store::PayloadStore;

pub use batches::BatchCompletion;
pub use calls::{NewCall, OperationCompletion};
pub use checkpoints::{NewCheckpoint, NewSecretResolution, CHECKPOINT_FORMAT_VERSION};
pub use graph::NewNode;
pub use outcomes::{NewArtifact, NewTransformError, NewValidationError};
pub use recordings::{RecordedCall, RecordedResponse};
pub use retention::{PurgePlan, PurgeReport};
pub use states::{NewNodeState, StateCompletion};
pub use tokens::fallback_hash;

/// Writes (and reads back) audit records.
pub struct Recorder {
    /// `None` while the flush thread has it.
    conn: Option<DbConnection>,
    /// Writes full write buffers while recording goes on (started on first use).
    flusher: Option<flusher::Flusher>,
    /// Checkpoints the SQLite file's log off the writing thread.
    wal: Option<std::sync::Arc<wal::WalCheckpointer>>,
    payloads: Option<PayloadStore>,
    in_unit: bool,
    /// Next call index per call parent, seeded from the database.
    call_indices: HashMap<String, u32>,
    /// The open unit's BEGIN has not run yet: it runs when the connection
    /// is next used, here or on the flush thread.
    begin_pending: bool,
    /// Hot-path records of the open unit, written as multi-row inserts.
    buffer: buffer::WriteBuffer,
    /// A flush failure met where no error could be returned; the commit reports it.
    poisoned: Option<LandscapeError>,
}

pub(crate) type Tm = <DbConnection as Connection>::TransactionManager;

impl Recorder {
    /// Opens the Landscape at `url` (migrating it if needed).
    pub fn open(url: &str, payloads: Option<PayloadStore>) -> Result<Recorder> {
        Ok(Recorder::new(crate::connection::open(url)?, payloads).with_wal_checkpoints(url))
    }

    /// Opens a Landscape that must already exist (see [`crate::open_existing`]).
    pub fn open_existing(url: &str, payloads: Option<PayloadStore>) -> Result<Recorder> {
        Ok(Recorder::new(crate::connection::open_existing(url)?, payloads).with_wal_checkpoints(url))
    }

    /// Opens an existing Landscape read-only (see [`crate::connection::open_read_only`]).
    pub fn open_read_only(url: &str, payloads: Option<PayloadStore>) -> Result<Recorder> {
        Ok(Recorder::new(crate::connection::open_read_only(url)?, payloads))
    }

    pub fn new(conn: DbConnection, payloads: Option<PayloadStore>) -> Recorder {
        Recorder {
            conn: Some(conn),
            flusher: None,
            wal: None,
            payloads,
            in_unit: false,
            begin_pending: false,
            call_indices: HashMap::new(),
            buffer: buffer::WriteBuffer::default(),
            poisoned: None,
        }
    }

    /// A recorder that writes a SQLite file checkpoints its log on a thread
    /// of its own (see [`wal`]).
    fn with_wal_checkpoints(mut self, url: &str) -> Recorder {
        if let (Ok(crate::connection::DatabaseUrl::SqliteFile(path)), Some(conn)) =
            (crate::connection::DatabaseUrl::parse(url), self.conn.as_mut())
        {
            self.wal = wal::WalCheckpointer::start(conn, &path).map(std::sync::Arc::new);
        }
        self
    }

    pub fn payload_store(&self) -> Option<&PayloadStore> {
        self.payloads.as_ref()
    }

    /// Exports `run_id` record by record into `sink` (see [`crate::export`]),
    /// signed with `key` when given.
    pub fn export(
        &mut self,
        run_id: &contracts::RunId,
        key: Option<&[u8]>,
        sink: &mut (dyn crate::export::RecordSink + Send),
    ) -> Result<crate::export::ExportSummary> {
        let connection = self.written_connection()?;
        crate::export::export_run(connection, run_id, key, sink)
    }

    /// The underlying connection, for raw SQL in tests and tools (buffered
    /// records are written first; a failure to write them is reported by
    /// the next recorder call or the commit). Only with the `test-hooks`
    /// feature: no release build reaches around the recorder.
    #[cfg(feature = "test-hooks")]
    pub fn connection(&mut self) -> Result<&mut DbConnection> {
        self.written_connection()
    }

    /// The connection with every buffered record written.
    fn written_connection(&mut self) -> Result<&mut DbConnection> {
        self.home()?;
        let conn = self.conn.as_mut().ok_or_else(lost_connection)?;
        if let Err(error) = self.buffer.flush(conn) {
            self.poisoned.get_or_insert(error);
        }
        Ok(conn)
    }

    /// The lineage of one token (see [`crate::lineage`]).
    pub fn explain(&mut self, run_id: &contracts::RunId, token_id: &contracts::TokenId) -> Result<crate::lineage::Lineage> {
        self.conn()?;
        let conn = self.conn.as_mut().ok_or_else(lost_connection)?;
        crate::lineage::explain_token(conn, self.payloads.as_ref(), run_id, token_id)
    }

    /// The tokens a source row ended as (see [`crate::lineage::row_outputs`]).
    pub fn row_outputs(
        &mut self,
        run_id: &contracts::RunId,
        row: &crate::lineage::RowSelector,
        sink: Option<&str>,
    ) -> Result<Vec<contracts::TokenId>> {
        crate::lineage::row_outputs(self.conn()?, run_id, row, sink)
    }

    /// The connection, after the write buffer went to the database: every
    /// statement that is not itself buffered goes through here.
    pub(crate) fn conn(&mut self) -> Result<&mut DbConnection> {
        self.home()?;
        if let Some(error) = self.poisoned.take() {
            return Err(error);
        }
        let conn = self.conn.as_mut().ok_or_else(lost_connection)?;
        self.buffer.flush(conn)?;
        Ok(conn)
    }

    /// The connection, once it is back from the flush thread (whose
    /// failure, if any, poisons the recorder), with the open unit's
    /// deferred BEGIN run.
    fn home(&mut self) -> Result<&mut DbConnection> {
        if self.conn.is_none() {
            let done = self.flusher.as_ref().and_then(flusher::Flusher::wait).ok_or_else(lost_connection)?;
            self.take_back(done);
        }
        let conn = self.conn.as_mut().ok_or_else(lost_connection)?;
        if self.begin_pending && self.poisoned.is_none() {
            self.begin_pending = false;
            if let Some(wal) = &self.wal {
                wal.before_begin();
            }
            crate::connection::begin_unit_transaction(conn)?;
        }
        Ok(conn)
    }

    fn take_back(&mut self, done: flusher::Done) {
        self.conn = Some(done.conn);
        if let Err(error) = done.result {
            // The unit is lost with its transaction; so are the call indices it used.
            self.call_indices.clear();
            self.poisoned.get_or_insert(error);
        }
    }

    /// Hands the connection to the flush thread for the buffer (opening the
    /// unit's transaction first if its BEGIN is pending, committing after
    /// if asked).
    fn start_job(&mut self, commit: Option<flusher::Commit>) -> Result<()> {
        let conn = self.conn.take().ok_or_else(lost_connection)?;
        let job = flusher::Job { conn, begin: self.begin_pending, buffer: std::mem::take(&mut self.buffer), commit };
        self.begin_pending = false;
        self.flusher.get_or_insert_with(|| flusher::Flusher::spawn(self.wal.clone())).start(job).map_err(|job| {
            // The thread is gone (it cannot be, short of an abort): keep the
            // connection here and fail the unit.
            self.flusher = None;
            self.conn = Some(job.conn);
            self.abandon_unit();
            LandscapeError::InvalidWrite("the flush thread is gone".into())
        })
    }

    /// Drops what the failed unit still holds and rolls its transaction back.
    fn abandon_unit(&mut self) {
        self.buffer.clear();
        self.call_indices.clear();
        self.begin_pending = false;
        if let Some(conn) = self.conn.as_mut() {
            flusher::rollback_if_open(conn);
        }
    }

    /// Called after each buffered record: once the buffer is full, it is
    /// written on the flush thread while recording goes on. One job at a
    /// time; while one runs, the buffer just grows.
    fn buffered(&mut self) {
        if !self.in_unit || self.buffer.len() < flusher::BACKGROUND_FLUSH_AT || self.poisoned.is_some() {
            return;
        }
        if self.conn.is_none() {
            match self.flusher.as_ref().and_then(flusher::Flusher::try_done) {
                Some(done) => self.take_back(done),
                None => return,
            }
        }
        if self.poisoned.is_none() {
            // Without a thread the buffer simply waits for the next statement.
            let _ = self.start_job(None);
        }
    }

    /// Starts a unit of work: everything recorded until [`Recorder::commit_unit`]
    /// is one transaction. Its BEGIN runs when the connection is next used
    /// (after a commit still running in the background).
    pub fn begin_unit(&mut self) -> Result<()> {
        if self.in_unit {
            return Err(LandscapeError::InvalidWrite("a unit of work is already open".into()));
        }
        if let Some(error) = self.poisoned.take() {
            return Err(error);
        }
        self.in_unit = true;
        self.begin_pending = true;
        Ok(())
    }

    /// Commits the open unit of work; returns once it is durable.
    pub fn commit_unit(&mut self) -> Result<()> {
        self.commit_unit_in_background()?;
        self.wait_for_writes()
    }

    /// Commits the open unit of work on the flush thread and returns at
    /// once: the unit is durable when [`Recorder::wait_for_writes`] or any
    /// later statement returns, and a failed commit is reported there. The
    /// blobs the unit refers to are made durable before this returns.
    pub fn commit_unit_in_background(&mut self) -> Result<()> {
        if !self.in_unit {
            return Err(LandscapeError::InvalidWrite("no unit of work is open".into()));
        }
        self.in_unit = false;
        // The unit's earlier background flush, and whether it failed.
        let ready = match self.home() {
            Ok(_) => self.poisoned.take().map_or(Ok(()), Err),
            Err(error) => Err(error),
        };
        // Blobs the unit refers to are durable before the unit is: the
        // flush thread waits for them before it commits.
        let payloads = ready.and_then(|()| Ok(self.payloads.as_ref().map(PayloadStore::sync_in_background).transpose()?));
        match payloads {
            Ok(payloads) => self.start_job(Some(flusher::Commit { payloads })),
            Err(error) => {
                self.abandon_unit();
                Err(error)
            }
        }
    }

    /// Waits until everything recorded so far is written (and a unit
    /// committed in the background is durable); reports what failed.
    pub fn wait_for_writes(&mut self) -> Result<()> {
        self.home()?;
        match self.poisoned.take() {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    /// Abandons the open unit of work; nothing of it reaches the database.
    pub fn rollback_unit(&mut self) -> Result<()> {
        if !self.in_unit {
            return Err(LandscapeError::InvalidWrite("no unit of work is open".into()));
        }
        self.in_unit = false;
        self.begin_pending = false;
        self.home()?;
        self.abandon_unit();
        self.poisoned = None;
        Ok(())
    }

    pub fn in_unit(&self) -> bool {
        self.in_unit
    }

    /// After records were pushed into the write buffer: in a unit they wait
    /// there (a background flush may start); outside one they are written
    /// now.
    fn pushed(&mut self) -> Result<()> {
        if self.in_unit {
            self.buffered();
        } else {
            self.conn()?;
        }
        Ok(())
    }

    /// Runs `f` atomically. Outside a unit: in its own transaction. Inside a
    /// unit the unit is the transaction: a failure poisons it, so nothing of
    /// it can commit (a savepoint here would cost SQLite a statement-journal
    /// write per page touched, on every fork, expansion and join).
    fn atomic<T>(&mut self, f: impl FnOnce(&mut DbConnection) -> Result<T>) -> Result<T> {
        if self.in_unit {
            let result = f(self.conn()?);
            if let Err(error) = &result {
                self.poisoned
                    .get_or_insert(LandscapeError::InvalidWrite(format!("an earlier write of this unit failed: {error}")));
            }
            return result;
        }
        self.conn()?.transaction(f)
    }

    /// A write that needs no answer. In a unit it waits in the write buffer
    /// and runs after the records made before it, on whichever thread
    /// flushes the buffer; its failure fails the unit (reported by a later
    /// statement or the commit). Outside a unit it runs now.
    pub(crate) fn write(&mut self, statement: impl FnOnce(&mut DbConnection) -> Result<()> + Send + 'static) -> Result<()> {
        if self.in_unit {
            self.buffer.statements.push(Box::new(statement));
            self.buffered();
            return Ok(());
        }
        self.atomic(statement)
    }

    fn begin_savepoint(&mut self) -> Result<()> {
        Tm::begin_transaction(self.conn()?)?;
        Ok(())
    }

    fn end_savepoint(&mut self, commit: bool) -> Result<()> {
        let conn = self.home()?;
        if commit {
            Tm::commit_transaction(conn)?;
        } else {
            Tm::rollback_transaction(conn)?;
        }
        Ok(())
    }

    fn store_payload(&self, bytes: &[u8]) -> Result<Option<String>> {
        match &self.payloads {
            Some(store) if self.in_unit => Ok(Some(store.store_deferred(bytes)?)),
            Some(store) => Ok(Some(store.store(bytes)?)),
            None => Ok(None),
        }
    }
}

fn lost_connection() -> LandscapeError {
    LandscapeError::InvalidWrite("the flush thread ended while it held the connection".into())
}

pub(crate) fn now() -> (contracts::Timestamp, NaiveDateTime) {
    let at = contracts::time::now();
    (at, at.naive_utc())
}

/// A single-row write must affect exactly one row.
pub(crate) fn ensure_one(affected: usize, what: impl FnOnce() -> String) -> Result<()> {
    if affected == 1 {
        Ok(())
    } else {
        Err(LandscapeError::integrity(format!("{} affected {affected} rows instead of 1", what())))
    }
}

pub(crate) fn check_duration(duration_ms: f64) -> Result<f64> {
    if duration_ms.is_finite() && duration_ms >= 0.0 {
        Ok(duration_ms)
    } else {
        Err(LandscapeError::InvalidWrite(format!("duration_ms {duration_ms} is not a finite non-negative number")))
    }
}

pub(crate) fn is_unique_violation(error: &DieselError) -> bool {
    matches!(error, DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _))
}

pub(crate) fn non_empty(what: &str, value: &str) -> Result<()> {
    if value.is_empty() {
        Err(LandscapeError::InvalidWrite(format!("{what} must not be empty")))
    } else {
        Ok(())
    }
}

pub(crate) fn i32_of(what: &str, value: u32) -> Result<i32> {
    i32::try_from(value).map_err(|_| LandscapeError::InvalidWrite(format!("{what} {value} is too large")))
}

pub(crate) fn i64_of(what: &str, value: u64) -> Result<i64> {
    i64::try_from(value).map_err(|_| LandscapeError::InvalidWrite(format!("{what} {value} is too large")))
}
