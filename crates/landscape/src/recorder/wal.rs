//! WAL checkpoints on a connection and thread of their own.
//!
//! SQLite copies the write-ahead log back into the database file
//! (a checkpoint) inside the commit that crosses its threshold, on the
//! writing connection: at a million gate rows that was a quarter of the
//! flush thread's time, on the run's critical path. Here the writing
//! connection turns its automatic checkpoints off and, after each unit's
//! commit, asks this thread for a passive checkpoint, which runs while the
//! next unit is written.
//!
//! The log restarts from its beginning only when a write transaction
//! begins with every frame already copied back. So the log cannot grow
//! without bound: once a checkpoint reports it past [`WAL_FRAMES_LIMIT`],
//! the next unit waits to begin until the checkpoint asked for by the last
//! commit is done. A checkpoint that fails leaves its frames in the log,
//! where they are as durable as they were; the next one tries again.

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use diesel::connection::SimpleConnection;
use diesel::sqlite::SqliteConnection;
use diesel::{Connection, RunQueryDsl};

use crate::connection::DbConnection;

/// Log frames (pages of 8 KiB) past which a unit waits for the
/// checkpoint before it begins: 32 MiB, four times SQLite's own threshold.
pub(crate) const WAL_FRAMES_LIMIT: i64 = 4_000;

struct State {
    /// Checkpoints asked for (one per commit) and done.
    requested: u64,
    done: u64,
    /// The log's length in frames at the end of the last checkpoint.
    log_frames: i64,
    /// Log frames from which a unit waits for the checkpoint.
    limit: i64,
    stop: bool,
}

type Shared = Arc<(Mutex<State>, Condvar)>;

fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    shared.0.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The checkpoint thread of one writing connection.
pub(crate) struct WalCheckpointer {
    shared: Shared,
    thread: Option<JoinHandle<()>>,
}

#[derive(diesel::QueryableByName)]
struct CheckpointResult {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    log: i64,
}

impl WalCheckpointer {
    /// Takes over `writer`'s checkpoints when it writes a SQLite file in
    /// WAL mode; `None` (and `writer` unchanged) otherwise, or when a
    /// second connection to `path` cannot be opened.
    pub(crate) fn start(writer: &mut DbConnection, path: &Path) -> Option<WalCheckpointer> {
        WalCheckpointer::start_with_limit(writer, path, WAL_FRAMES_LIMIT)
    }

    fn start_with_limit(writer: &mut DbConnection, path: &Path, limit: i64) -> Option<WalCheckpointer> {
        #[derive(diesel::QueryableByName)]
        struct Mode {
            #[diesel(sql_type = diesel::sql_types::Text)]
            journal_mode: String,
        }
        let DbConnection::Sqlite(sqlite) = writer else { return None };
        let mut own = SqliteConnection::establish(path.to_str()?).ok()?;
        crate::connection::wait_when_busy(&mut own).ok()?;
        own.batch_execute("PRAGMA synchronous = FULL; PRAGMA cache_size = -1024;").ok()?;
        let mode: Mode = diesel::sql_query("PRAGMA journal_mode").get_result(&mut own).ok()?;
        if !mode.journal_mode.eq_ignore_ascii_case("wal") {
            return None;
        }
        sqlite.batch_execute("PRAGMA wal_autocheckpoint = 0;").ok()?;
        let state = State { requested: 0, done: 0, log_frames: 0, limit, stop: false };
        let shared: Shared = Arc::new((Mutex::new(state), Condvar::new()));
        let for_thread = Arc::clone(&shared);
        let thread = std::thread::Builder::new().name("wal-checkpoint".into()).spawn(move || run(&mut own, &for_thread)).ok();
        if thread.is_none() {
            let _ = sqlite.batch_execute("PRAGMA wal_autocheckpoint = 1000;");
            return None;
        }
        Some(WalCheckpointer { shared, thread })
    }

    /// After a commit: a checkpoint is due.
    pub(crate) fn committed(&self) {
        lock(&self.shared).requested += 1;
        self.shared.1.notify_all();
    }

    /// Before a unit begins: when the log has grown past its limit, waits
    /// for the checkpoint asked for last, so this unit restarts the log.
    pub(crate) fn before_begin(&self) {
        let mut state = lock(&self.shared);
        if state.log_frames < state.limit {
            return;
        }
        let target = state.requested;
        while state.done < target && !state.stop {
            state = self.shared.1.wait(state).unwrap_or_else(PoisonError::into_inner);
        }
    }
}

fn run(connection: &mut SqliteConnection, shared: &Shared) {
    loop {
        let target = {
            let mut state = lock(shared);
            while state.done == state.requested && !state.stop {
                state = shared.1.wait(state).unwrap_or_else(PoisonError::into_inner);
            }
            if state.done == state.requested {
                return;
            }
            state.requested
        };
        let log = diesel::sql_query("PRAGMA wal_checkpoint(PASSIVE)").get_result::<CheckpointResult>(connection);
        let mut state = lock(shared);
        state.done = target;
        // Unknown after a failure: the limit, so the writer waits for the next.
        state.log_frames = log.map_or(state.limit, |result| result.log);
        shared.1.notify_all();
    }
}

impl Drop for WalCheckpointer {
    /// Ends the thread after the checkpoints asked for, and closes its connection.
    fn drop(&mut self) {
        lock(&self.shared).stop = true;
        self.shared.1.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer(path: &Path) -> DbConnection {
        let mut sqlite = SqliteConnection::establish(path.to_str().expect("UTF-8 path")).expect("open");
        sqlite
            .batch_execute("PRAGMA page_size = 8192; PRAGMA journal_mode = WAL; CREATE TABLE t (x BLOB NOT NULL);")
            .expect("set up");
        DbConnection::Sqlite(sqlite)
    }

    /// Writes one unit of about 400 KB, as the flush thread does.
    fn unit(conn: &mut DbConnection, wal: Option<&WalCheckpointer>) {
        if let Some(wal) = wal {
            wal.before_begin();
        }
        let DbConnection::Sqlite(sqlite) = conn else { unreachable!("a SQLite writer") };
        sqlite
            .batch_execute("BEGIN; WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100) INSERT INTO t SELECT randomblob(4000) FROM n; COMMIT;")
            .expect("unit");
        if let Some(wal) = wal {
            wal.committed();
        }
    }

    fn wal_bytes(path: &Path) -> u64 {
        std::fs::metadata(path.with_extension("db-wal")).map_or(0, |m| m.len())
    }

    #[test]
    fn the_writer_leaves_checkpoints_to_the_thread_and_the_log_restarts() {
        #[derive(diesel::QueryableByName)]
        struct Setting {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            wal_autocheckpoint: i64,
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("audit.db");
        let mut conn = writer(&path);
        // A limit of 0: every unit waits for the checkpoint of the last, so
        // each one restarts the log (deterministically).
        let wal = WalCheckpointer::start_with_limit(&mut conn, &path, 0).expect("a checkpointer for a WAL file");
        let DbConnection::Sqlite(sqlite) = &mut conn else { unreachable!("a SQLite writer") };
        let setting: Setting = diesel::sql_query("PRAGMA wal_autocheckpoint").get_result(sqlite).expect("setting");
        assert_eq!(setting.wal_autocheckpoint, 0, "the writer no longer checkpoints in its commits");
        unit(&mut conn, Some(&wal));
        let one_unit = wal_bytes(&path);
        for _ in 0..20 {
            unit(&mut conn, Some(&wal));
        }
        assert!(
            wal_bytes(&path) <= one_unit + 64 * 1024,
            "the log restarted: {} bytes after 21 units of {one_unit}",
            wal_bytes(&path)
        );
        drop(wal);
        // Every frame was copied back while the writer was still open.
        let db_bytes = std::fs::metadata(&path).expect("db").len();
        assert!(db_bytes >= 21 * 100 * 4000, "the database file holds the units: {db_bytes} bytes");
    }

    #[test]
    fn without_the_thread_the_log_only_grows() {
        // The control for the test above: what the limit guards against.
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("audit.db");
        let mut conn = writer(&path);
        let DbConnection::Sqlite(sqlite) = &mut conn else { unreachable!("a SQLite writer") };
        sqlite.batch_execute("PRAGMA wal_autocheckpoint = 0;").expect("no checkpoints");
        unit(&mut conn, None);
        let one_unit = wal_bytes(&path);
        for _ in 0..20 {
            unit(&mut conn, None);
        }
        assert!(wal_bytes(&path) > 10 * one_unit, "{} bytes after 21 units of {one_unit}", wal_bytes(&path));
    }

    #[test]
    fn a_database_not_in_wal_mode_keeps_its_own_checkpoints() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("rollback.db");
        let sqlite = SqliteConnection::establish(path.to_str().expect("UTF-8 path")).expect("open");
        let mut conn = DbConnection::Sqlite(sqlite);
        assert!(WalCheckpointer::start(&mut conn, &path).is_none(), "a rollback-journal database");
    }
}
