//! Opening the Landscape: URL parsing, backend selection, SQLite pragmas,
//! schema compatibility check and embedded migrations.

use std::path::PathBuf;

use diesel::connection::SimpleConnection;
use diesel::connection::TransactionManager as _;
use diesel::pg::PgConnection;
use diesel::sqlite::SqliteConnection;
use diesel::{Connection, RunQueryDsl};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use crate::error::{LandscapeError, Result};

/// The embedded schema migrations (one DDL for both backends).
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// Tables every Landscape has; used to recognise a database holding them.
pub const LANDSCAPE_TABLES: &[&str] = &[
    "runs",
    "nodes",
    "edges",
    "rows",
    "tokens",
    "token_parents",
    "node_states",
    "operations",
    "calls",
    "routing_events",
    "batches",
    "batch_members",
    "batch_outputs",
    "artifacts",
    "token_outcomes",
    "validation_errors",
    "transform_errors",
    "checkpoints",
    "secret_resolutions",
    "preflight_results",
];

/// Runs `$body` with `$c` bound to the backend's own connection. Hot-path
/// statements go through this instead of the multi-backend connection so
/// diesel caches their prepared statements by type instead of rebuilding and
/// hashing their SQL on every execution.
#[macro_export]
macro_rules! on_backend {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            $crate::connection::DbConnection::Sqlite($c) => $body,
            $crate::connection::DbConnection::Postgresql($c) => $body,
        }
    };
}

/// One connection to either backend.
#[derive(diesel::MultiConnection)]
pub enum DbConnection {
    Sqlite(SqliteConnection),
    Postgresql(PgConnection),
}

/// Where the Landscape lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    SqliteFile(PathBuf),
    SqliteMemory,
    Postgresql(String),
}

impl DatabaseUrl {
    /// Parses `sqlite:///relative.db`, `sqlite:////absolute.db`,
    /// `sqlite:///:memory:`, `postgresql://…` (also `postgres://` and
    /// `postgresql+driver://`), or a bare file path.
    pub fn parse(url: &str) -> Result<DatabaseUrl> {
        if let Some(rest) = url.strip_prefix("sqlite://") {
            let path = rest.strip_prefix('/').unwrap_or(rest);
            return Ok(match path {
                "" | ":memory:" => DatabaseUrl::SqliteMemory,
                path => DatabaseUrl::SqliteFile(PathBuf::from(path)),
            });
        }
        if let Some((scheme, rest)) = url.split_once("://") {
            let base = scheme.split('+').next().unwrap_or(scheme);
            return match base {
                "postgresql" | "postgres" => Ok(DatabaseUrl::Postgresql(format!("postgresql://{rest}"))),
                other => Err(LandscapeError::Open {
                    url: url.to_owned(),
                    reason: format!("unsupported scheme {other:?}; expected sqlite:// or postgresql://"),
                }),
            };
        }
        if url.is_empty() {
            return Err(LandscapeError::Open { url: String::new(), reason: "empty database URL".to_owned() });
        }
        Ok(DatabaseUrl::SqliteFile(PathBuf::from(url)))
    }
}

/// Opens (creating if needed) a Landscape and brings its schema up to date.
///
/// A database that holds Landscape tables not created by this implementation
/// (for example one written by the Python reference), or a schema newer than
/// this build knows, is refused with [`LandscapeError::IncompatibleSchema`].
pub fn open(url: &str) -> Result<DbConnection> {
    open_with(url, Create::Yes)
}

/// Opens a Landscape that must already exist, for commands that read an audit
/// trail (`explain`, `runs`, `purge`, `export`): a missing SQLite file, or a
/// database without this implementation's schema, is an error and nothing is
/// created.
pub fn open_existing(url: &str) -> Result<DbConnection> {
    open_with(url, Create::No)
}

/// Opens a unit of work's transaction. On PostgreSQL it also drops the
/// session's cached plans: foreign-key checks run as plans cached per
/// session, and one made generic while a new Landscape's tables were nearly
/// empty scans them, and stays while they grow (measured: each token's
/// check against `rows` grew to 0.14 ms after 8,000 rows, quadratic over a
/// run). Planned again once per unit, they see the tables as they are.
pub(crate) fn begin_unit_transaction(conn: &mut DbConnection) -> Result<()> {
    <DbConnection as diesel::Connection>::TransactionManager::begin_transaction(conn)?;
    if let DbConnection::Postgresql(pg) = conn {
        pg.batch_execute("DISCARD PLANS;")?;
        // The schema's foreign keys are deferred to the commit, which is
        // only fast on SQLite while no statement leaves a child before its
        // parent (a pending violation makes every later parent insert look
        // for its children). Debug builds (every test) hold PostgreSQL to
        // that order by checking each key when its statement ends.
        if cfg!(debug_assertions) {
            pg.batch_execute("SET CONSTRAINTS ALL IMMEDIATE;")?;
        }
    }
    Ok(())
}

/// Opens an existing Landscape for reading only, for `elspeth serve` and
/// `elspeth mcp`: a SQLite file is opened in read-only mode with
/// `query_only` set, a PostgreSQL session defaults to read-only
/// transactions; nothing is migrated or created, and a schema this build
/// cannot read is refused.
pub fn open_read_only(url: &str) -> Result<DbConnection> {
    let refuse = |reason: String| LandscapeError::Open { url: url.to_owned(), reason };
    let mut connection = match DatabaseUrl::parse(url)? {
        DatabaseUrl::SqliteFile(path) => {
            if !path.is_file() {
                return Err(refuse("no such database file (nothing was created)".to_owned()));
            }
            let uri = sqlite_read_only_uri(&path).map_err(refuse)?;
            let mut sqlite = SqliteConnection::establish(&uri).map_err(|e| refuse(e.to_string()))?;
            wait_when_busy(&mut sqlite)?;
            sqlite.batch_execute("PRAGMA query_only = ON;")?;
            DbConnection::Sqlite(sqlite)
        }
        DatabaseUrl::SqliteMemory => return Err(refuse("an in-memory database holds no earlier run".to_owned())),
        DatabaseUrl::Postgresql(pg_url) => {
            let mut pg = PgConnection::establish(&pg_url).map_err(|e| refuse(e.to_string()))?;
            pg.batch_execute("SET default_transaction_read_only = on; SET client_min_messages = WARNING;")?;
            DbConnection::Postgresql(pg)
        }
    };
    let tables = table_names(&mut connection).map_err(|e| refuse(e.to_string()))?;
    if !tables.iter().any(|t| t == "__diesel_schema_migrations") {
        return Err(refuse("the database holds no Landscape (no schema version of this implementation)".to_owned()));
    }
    if migration_state(&mut connection)?.unapplied > 0 {
        return Err(refuse(
            "the Landscape was written by an older ELSPETH; open it once with a command that writes (`elspeth runs`) to upgrade it"
                .to_owned(),
        ));
    }
    check_columns(&mut connection)?;
    Ok(connection)
}

#[derive(diesel::QueryableByName)]
struct Version {
    #[diesel(sql_type = diesel::sql_types::Text)]
    version: String,
}

/// Where a Landscape's schema stands against this build's migrations.
struct MigrationState {
    /// This build's migrations the database lacks.
    unapplied: usize,
    /// One the database has that this build does not know (a newer ELSPETH wrote it).
    unknown: Option<String>,
}

/// Reads the [`MigrationState`] with a plain SELECT (diesel's own check
/// creates its table if absent, which a read-only connection must not try).
fn migration_state(connection: &mut DbConnection) -> Result<MigrationState> {
    let known: Vec<String> = diesel::migration::MigrationSource::<diesel::sqlite::Sqlite>::migrations(&MIGRATIONS)
        .map_err(|e| LandscapeError::IncompatibleSchema(e.to_string()))?
        .iter()
        .map(|migration| migration.name().version().to_string())
        .collect();
    let applied: Vec<Version> = diesel::sql_query("SELECT version FROM __diesel_schema_migrations").load(connection)?;
    let unapplied = known.iter().filter(|k| !applied.iter().any(|a| &a.version == *k)).count();
    let unknown = applied.into_iter().map(|a| a.version).find(|a| !known.contains(a));
    Ok(MigrationState { unapplied, unknown })
}

/// A `file:` URI that opens `path` read-only (SQLite URI filenames: `?` and
/// `#` in the path are percent-encoded).
fn sqlite_read_only_uri(path: &std::path::Path) -> std::result::Result<String, String> {
    let absolute = std::path::absolute(path).map_err(|e| format!("cannot resolve the path: {e}"))?;
    let text = absolute.to_str().ok_or_else(|| "database path is not valid UTF-8".to_owned())?;
    let escaped = text.replace('%', "%25").replace('?', "%3f").replace('#', "%23");
    Ok(format!("file:{escaped}?mode=ro"))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Create {
    Yes,
    No,
}

fn open_with(url: &str, create: Create) -> Result<DbConnection> {
    let parsed = DatabaseUrl::parse(url)?;
    // Whatever goes wrong while opening names the database.
    let named = |error: LandscapeError| match error {
        LandscapeError::Database(error) => LandscapeError::Open { url: url.to_owned(), reason: error.to_string() },
        LandscapeError::IncompatibleSchema(reason) => LandscapeError::IncompatibleSchema(format!("{url}: {reason}")),
        other @ (LandscapeError::Open { .. }
        | LandscapeError::Integrity(_)
        | LandscapeError::IllegalTransition(_)
        | LandscapeError::InvalidWrite(_)
        | LandscapeError::NotFound(_)
        | LandscapeError::Canonical(_)
        | LandscapeError::PayloadStore(_)) => other,
    };
    open_parsed(url, &parsed, create).map_err(named)
}

fn open_parsed(url: &str, parsed: &DatabaseUrl, create: Create) -> Result<DbConnection> {
    let open_error = |error: diesel::ConnectionError| LandscapeError::Open { url: url.to_owned(), reason: error.to_string() };
    let refuse = |reason: &str| LandscapeError::Open { url: url.to_owned(), reason: reason.to_owned() };
    let mut connection = match parsed {
        DatabaseUrl::SqliteFile(path) if create == Create::No && !path.is_file() => {
            return Err(refuse("no such database file (nothing was created)"));
        }
        DatabaseUrl::SqliteMemory if create == Create::No => {
            return Err(refuse("an in-memory database holds no earlier run"));
        }
        DatabaseUrl::SqliteFile(path) => {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(|error| LandscapeError::Open {
                    url: url.to_owned(),
                    reason: format!("cannot create the directory {}: {error}", parent.display()),
                })?;
            }
            let path_text = path.to_str().ok_or_else(|| LandscapeError::Open {
                url: url.to_owned(),
                reason: "database path is not valid UTF-8".to_owned(),
            })?;
            DbConnection::Sqlite(SqliteConnection::establish(path_text).map_err(open_error)?)
        }
        DatabaseUrl::SqliteMemory => DbConnection::Sqlite(SqliteConnection::establish(":memory:").map_err(open_error)?),
        DatabaseUrl::Postgresql(pg_url) => DbConnection::Postgresql(PgConnection::establish(pg_url).map_err(open_error)?),
    };
    if let DbConnection::Sqlite(sqlite) = &mut connection {
        wait_when_busy(sqlite)?;
    }
    // Read before anything is set or created: a database that is not ours is
    // left exactly as it was.
    let tables = table_names(&mut connection)?;
    let ours = tables.iter().any(|t| t == "__diesel_schema_migrations");
    if create == Create::No && !ours {
        return Err(refuse("the database holds no Landscape (no schema version of this implementation)"));
    }
    if !ours {
        refuse_foreign_tables(&tables)?;
    }
    configure(&mut connection, parsed)?;
    migrate(&mut connection, ours)?;
    check_columns(&mut connection)?;
    Ok(connection)
}

#[derive(diesel::QueryableByName)]
struct ColumnName {
    #[diesel(sql_type = diesel::sql_types::Text)]
    name: String,
}

/// The column names of every Landscape table as the database has them (an
/// absent table has none).
fn columns_of(connection: &mut DbConnection) -> Result<std::collections::BTreeMap<&'static str, Vec<String>>> {
    let mut found = std::collections::BTreeMap::new();
    for table in LANDSCAPE_TABLES {
        let rows: Vec<ColumnName> = match connection {
            DbConnection::Sqlite(sqlite) => diesel::sql_query(format!("SELECT name FROM pragma_table_info('{table}')")).load(sqlite)?,
            DbConnection::Postgresql(pg) => diesel::sql_query(
                "SELECT column_name AS name FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1",
            )
            .bind::<diesel::sql_types::Text, _>(*table)
            .load(pg)?,
        };
        found.insert(*table, rows.into_iter().map(|r| r.name).collect());
    }
    Ok(found)
}

/// What this build's migrations create, read once from a fresh in-memory
/// Landscape.
fn expected_columns() -> Result<&'static std::collections::BTreeMap<&'static str, Vec<String>>> {
    static EXPECTED: std::sync::OnceLock<std::collections::BTreeMap<&'static str, Vec<String>>> = std::sync::OnceLock::new();
    if let Some(expected) = EXPECTED.get() {
        return Ok(expected);
    }
    let mut fresh = DbConnection::Sqlite(
        SqliteConnection::establish(":memory:").map_err(|e| LandscapeError::IncompatibleSchema(e.to_string()))?,
    );
    migrate(&mut fresh, false)?;
    let columns = columns_of(&mut fresh)?;
    Ok(EXPECTED.get_or_init(|| columns))
}

/// Every table and column this build writes must be there: a Landscape of
/// an older or altered schema is refused naming what it lacks, before any
/// work starts.
fn check_columns(connection: &mut DbConnection) -> Result<()> {
    let expected = expected_columns()?;
    let found = columns_of(connection)?;
    let mut missing = Vec::new();
    for (table, columns) in expected {
        let have = found.get(table).map(Vec::as_slice).unwrap_or_default();
        if have.is_empty() {
            missing.push(format!("table {table}"));
            continue;
        }
        missing.extend(columns.iter().filter(|c| !have.contains(c)).map(|c| format!("column {table}.{c}")));
    }
    if missing.is_empty() {
        return Ok(());
    }
    Err(LandscapeError::IncompatibleSchema(format!(
        "the Landscape lacks {} that this build writes; it was made by an older or altered schema",
        missing.join(", ")
    )))
}

/// A database without our schema may be empty, nothing else: Landscape
/// tables of another implementation are not upgraded in place, and a
/// database of the user's own is not turned into a Landscape.
fn refuse_foreign_tables(tables: &[String]) -> Result<()> {
    let landscape_tables: Vec<&str> = tables.iter().map(String::as_str).filter(|t| LANDSCAPE_TABLES.contains(t)).collect();
    if !landscape_tables.is_empty() {
        return Err(LandscapeError::IncompatibleSchema(format!(
            "the database already holds Landscape tables ({}) but no schema version of this implementation; \
             it was probably written by another ELSPETH implementation and will not be upgraded in place",
            landscape_tables.join(", ")
        )));
    }
    let own: Vec<&str> = tables.iter().map(String::as_str).filter(|t| !t.starts_with("sqlite_")).collect();
    if !own.is_empty() {
        let shown: Vec<&str> = own.iter().copied().take(5).collect();
        let more = if own.len() > shown.len() { format!(" and {} more", own.len() - shown.len()) } else { String::new() };
        return Err(LandscapeError::IncompatibleSchema(format!(
            "the database holds tables of its own ({}{more}) and no Landscape; it is left untouched. \
             Point the Landscape at a new file (or an empty database)",
            shown.join(", ")
        )));
    }
    Ok(())
}

/// Statement journals and sorts in memory: the recorder's units are small,
/// and writing SQLite's statement journal to disk was 15% of the fork path.
const TEMP_IN_MEMORY: &str = "PRAGMA temp_store = MEMORY;";

/// Runs `work` with SQLite's temporary storage on disk: a whole-run sort
/// (an export ordered by columns no index covers) then spills to a
/// temporary file instead of growing the process by the size of the run.
/// The connection's in-memory setting is restored afterwards.
pub(crate) fn with_sorts_on_disk<T>(
    connection: &mut DbConnection,
    work: impl FnOnce(&mut DbConnection) -> Result<T>,
) -> Result<T> {
    if let DbConnection::Sqlite(sqlite) = &mut *connection {
        sqlite.batch_execute("PRAGMA temp_store = FILE;")?;
    }
    let result = work(connection);
    if let DbConnection::Sqlite(sqlite) = connection {
        sqlite.batch_execute(TEMP_IN_MEMORY)?;
    }
    result
}

fn configure(connection: &mut DbConnection, url: &DatabaseUrl) -> Result<()> {
    match connection {
        DbConnection::Sqlite(sqlite) => {
            // 8 KiB pages: a run writes a few KB of audit records per row,
            // appended at the right edge of each index; larger pages mean
            // fewer WAL frames and system calls per row (measured: about 6%
            // faster than 4 KiB on the gate pipeline). Takes effect only on
            // a new database, before its switch to WAL.
            sqlite.batch_execute("PRAGMA page_size = 8192;")?;
            match url {
                DatabaseUrl::SqliteMemory => {}
                DatabaseUrl::SqliteFile(_) | DatabaseUrl::Postgresql(_) => use_wal(sqlite)?,
            }
            // A 32 MB page cache: twice that grew the process by 64 MB for
            // no measurable gain; half of it cost the gate pipeline ≈ 10%
            // (docs/ARCHITECTURE.md).
            sqlite.batch_execute(&format!(
                "PRAGMA foreign_keys = ON; PRAGMA synchronous = FULL; PRAGMA cache_size = -32768; {TEMP_IN_MEMORY}"
            ))?;
        }
        DbConnection::Postgresql(pg) => {
            pg.batch_execute("SET client_min_messages = WARNING;")?;
        }
    }
    Ok(())
}

/// Switches a SQLite file to write-ahead logging (a no-op when it is
/// already). Two processes opening a new file at once both try the switch,
/// and SQLite refuses the second at once with "database is locked": its busy
/// timeout does not cover that lock upgrade. So the switch is retried, for
/// as long as the busy timeout would wait.
pub(crate) fn use_wal(sqlite: &mut SqliteConnection) -> diesel::QueryResult<()> {
    let give_up = std::time::Instant::now() + BUSY_TIMEOUT;
    loop {
        match sqlite.batch_execute("PRAGMA journal_mode = WAL;") {
            Err(error) if is_busy(&error) && std::time::Instant::now() < give_up => {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            done => return done,
        }
    }
}

/// How long a SQLite connection waits for another process's lock.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Makes `sqlite` wait for another process's transaction rather than fail (a
/// setting of this connection only: the file is not touched).
pub(crate) fn wait_when_busy(sqlite: &mut SqliteConnection) -> diesel::QueryResult<()> {
    sqlite.batch_execute(&format!("PRAGMA busy_timeout = {};", BUSY_TIMEOUT.as_millis()))
}

/// SQLite's SQLITE_BUSY, which diesel reports by its message only.
fn is_busy(error: &diesel::result::Error) -> bool {
    matches!(error, diesel::result::Error::DatabaseError(_, info) if info.message() == "database is locked")
}

#[derive(diesel::QueryableByName)]
pub(crate) struct NameRow {
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub(crate) name: String,
}

fn table_names(connection: &mut DbConnection) -> Result<Vec<String>> {
    let rows: Vec<NameRow> = match connection {
        DbConnection::Sqlite(sqlite) => {
            diesel::sql_query("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").load(sqlite)?
        }
        DbConnection::Postgresql(pg) => diesel::sql_query(
            "SELECT table_name AS name FROM information_schema.tables WHERE table_schema = current_schema() ORDER BY table_name",
        )
        .load(pg)?,
    };
    Ok(rows.into_iter().map(|row| row.name).collect())
}

/// Applies this build's pending migrations, one opener at a time: on SQLite
/// inside an immediate transaction (it waits for the write lock, then sees
/// what another opener applied), on PostgreSQL under a transaction-scoped
/// advisory lock. Two runs starting on a new database both open it; neither
/// sees the other's half-applied schema. An up-to-date Landscape (`ours`,
/// nothing pending: every open but the first) takes no lock.
fn migrate(connection: &mut DbConnection, ours: bool) -> Result<()> {
    if ours {
        let MigrationState { unapplied, unknown } = migration_state(connection)?;
        if let Some(version) = unknown {
            return Err(LandscapeError::IncompatibleSchema(format!(
                "the database has schema migration {version}, which this build does not know; \
                 it was written by a newer ELSPETH"
            )));
        }
        if unapplied == 0 {
            return Ok(());
        }
    }
    match connection {
        DbConnection::Sqlite(sqlite) => sqlite.immediate_transaction(run_pending_migrations),
        DbConnection::Postgresql(pg) => pg.transaction(|pg| {
            diesel::sql_query(format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")).execute(pg)?;
            run_pending_migrations(pg)
        }),
    }
}

/// The PostgreSQL advisory lock key that serialises migrations (any fixed
/// number; "ELSPETH" in ASCII).
const MIGRATION_LOCK: i64 = 0x0045_4c53_5045_5448;

fn run_pending_migrations<C>(connection: &mut C) -> Result<()>
where
    C: MigrationHarness<C::Backend> + Connection,
{
    connection
        .run_pending_migrations(MIGRATIONS)
        .map(drop)
        .map_err(|e| LandscapeError::IncompatibleSchema(format!("applying migrations failed: {e}")))
}

/// Where the payload store of a SQLite Landscape file lives by default:
/// beside it, named after it (`runs/audit.db` → `runs/audit.payloads`).
/// `None` for PostgreSQL and in-memory databases.
pub fn default_payload_dir(url: &str) -> Option<std::path::PathBuf> {
    match DatabaseUrl::parse(url).ok()? {
        DatabaseUrl::SqliteFile(path) => Some(path.with_extension("payloads")),
        DatabaseUrl::SqliteMemory | DatabaseUrl::Postgresql(_) => None,
    }
}

/// Runs raw SQL; for tests and tools that must bypass the recorder.
#[cfg(feature = "test-hooks")]
pub fn execute_raw(connection: &mut DbConnection, sql: &str) -> Result<usize> {
    Ok(diesel::sql_query(sql).execute(connection)?)
}

#[cfg(feature = "test-hooks")]
#[derive(diesel::QueryableByName)]
struct Number {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

/// Runs a query returning one BIGINT column named `n` and returns its first
/// value; for tests and tools inspecting the Landscape with SQL.
#[cfg(feature = "test-hooks")]
pub fn query_i64(connection: &mut DbConnection, sql: &str) -> Result<i64> {
    let rows: Vec<Number> = diesel::sql_query(sql).load(connection)?;
    rows.first().map(|row| row.n).ok_or_else(|| LandscapeError::integrity(format!("query returned no rows: {sql}")))
}

#[cfg(feature = "test-hooks")]
#[derive(diesel::QueryableByName)]
struct Texts {
    #[diesel(sql_type = diesel::sql_types::Text)]
    a: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    b: String,
}

/// Runs a query returning two TEXT columns named `a` and `b`.
#[cfg(feature = "test-hooks")]
pub fn query_pairs(connection: &mut DbConnection, sql: &str) -> Result<Vec<(String, String)>> {
    let rows: Vec<Texts> = diesel::sql_query(sql).load(connection)?;
    Ok(rows.into_iter().map(|row| (row.a, row.b)).collect())
}
