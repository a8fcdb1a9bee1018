//! The ceiling of a pipeline run: the records its Landscape holds, written
//! again into a fresh Landscape (same DDL, pragmas, indexes and foreign keys)
//! as plain multi-row `INSERT` text (`OR IGNORE` on SQLite, as the recorder
//! writes), one transaction per 1000 source rows, no engine and no payloads.
//! Each transaction is a unit of the recorder, so its log is checkpointed
//! on the recorder's own thread after each commit, as in a run (before,
//! nothing asked for a checkpoint and the log grew to the database's size).
//! Only the statements and their commit are timed; the run's rate divided
//! by this one is what the engine reaches of its store.
//!
//! Records go into the transaction of the 1000-row window their time falls
//! in (a row's `created_at`, a state's `started_at`, a link's token's time),
//! tables in foreign-key order, each table in its insertion order. A batch
//! counts from its completion (it names the state that flushed it), and so
//! do its members, outputs and the outcomes that name it: every record then
//! follows its parents, which the foreign keys check at each commit.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::sql_types::{BigInt, Text};
use diesel::{Connection, QueryableByName, RunQueryDsl, SqliteConnection};
use landscape::{DbConnection, Recorder};

/// Tables copied before the clock starts: the run, its graph, run-level records.
const SETUP_TABLES: &[&str] = &["runs", "nodes", "edges", "secret_resolutions", "preflight_results"];

/// Timed tables in foreign-key order, with the SQL expression (over the
/// table's alias `t`) of the time that places a record in its window.
const TIMED_TABLES: &[(&str, &str)] = &[
    ("rows", "t.created_at"),
    ("tokens", "t.created_at"),
    ("token_parents", "(SELECT created_at FROM tokens WHERE token_id = t.token_id)"),
    ("node_states", "t.started_at"),
    ("operations", "t.started_at"),
    ("calls", "t.created_at"),
    ("routing_events", "t.created_at"),
    ("batches", "coalesce(t.completed_at, t.created_at)"),
    (
        "batch_members",
        "(SELECT max(k.created_at, coalesce(b.completed_at, b.created_at)) FROM tokens AS k, batches AS b \
         WHERE k.token_id = t.token_id AND b.batch_id = t.batch_id)",
    ),
    ("batch_outputs", "(SELECT coalesce(completed_at, created_at) FROM batches WHERE batch_id = t.batch_id)"),
    ("artifacts", "t.created_at"),
    (
        "token_outcomes",
        "coalesce((SELECT max(t.recorded_at, coalesce(completed_at, created_at)) FROM batches WHERE batch_id = t.batch_id), \
         t.recorded_at)",
    ),
    ("validation_errors", "t.created_at"),
    ("transform_errors", "t.created_at"),
    ("checkpoints", "t.created_at"),
];

/// Source rows per transaction.
const WINDOW_ROWS: i64 = 1000;

/// Rows per multi-row `INSERT` statement.
const VALUES_PER_STATEMENT: usize = 250;

#[derive(QueryableByName)]
struct Name {
    #[diesel(sql_type = Text)]
    name: String,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    count: i64,
}

#[derive(QueryableByName)]
struct Literal {
    #[diesel(sql_type = BigInt)]
    window: i64,
    #[diesel(sql_type = BigInt)]
    table: i64,
    #[diesel(sql_type = Text)]
    values: String,
}

/// The ceiling of the run whose Landscape is the SQLite file `source`,
/// replayed into a fresh Landscape at `target_url`: source rows per second.
pub(crate) fn rows_per_second(source: &Path, target_url: &str) -> anyhow::Result<f64> {
    let mut source = SqliteConnection::establish(&source.display().to_string())?;
    check_every_table_is_known(&mut source)?;
    let columns: Vec<Vec<String>> =
        TIMED_TABLES.iter().map(|(table, _)| column_list(&mut source, table)).collect::<Result<_, _>>()?;
    let rows = diesel::sql_query("SELECT count(*) AS count FROM rows").get_result::<Count>(&mut source)?.count;

    let mut recorder = Recorder::open(target_url, None)?;
    let target = recorder.connection()?;
    let verb = insert_verb(target);
    for table in SETUP_TABLES {
        let columns = column_list(&mut source, table)?;
        let values: Vec<String> = diesel::sql_query(format!(
            "SELECT 0 AS window, 0 AS \"table\", {} AS \"values\" FROM {table} ORDER BY rowid",
            literal(&columns)
        ))
        .load::<Literal>(&mut source)?
        .into_iter()
        .map(|l| l.values)
        .collect();
        if !values.is_empty() {
            execute(target, &inserts(verb, table, &columns, &values))?;
        }
    }

    // `TIMESTAMP`, as the times it is compared with: a `TEXT` column would
    // get their numeric affinity in the comparison and lose its index.
    source.batch_execute(&format!(
        "CREATE TEMP TABLE ceiling_windows (starts_at TIMESTAMP NOT NULL, window INTEGER NOT NULL); \
         INSERT INTO ceiling_windows SELECT created_at, row_index / {WINDOW_ROWS} FROM rows WHERE row_index % {WINDOW_ROWS} = 0; \
         CREATE INDEX temp.ix_ceiling_windows ON ceiling_windows (starts_at);"
    ))?;
    let union = TIMED_TABLES
        .iter()
        .zip(&columns)
        .enumerate()
        .map(|(k, ((table, time), columns))| {
            format!(
                "SELECT coalesce((SELECT window FROM ceiling_windows WHERE starts_at <= {time} ORDER BY starts_at DESC LIMIT 1), 0) AS window, \
                 {k} AS \"table\", t.rowid AS position, {} AS \"values\" FROM {table} AS t",
                literal(columns)
            )
        })
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    let query = format!("SELECT window, \"table\", \"values\" FROM ({union}) ORDER BY window, \"table\", position");

    let mut timed = Duration::ZERO;
    let mut window = None;
    let mut pending: Vec<Vec<String>> = vec![Vec::new(); TIMED_TABLES.len()];
    // Each window is a unit of the recorder (its BEGIN, the statements on
    // its connection, its commit): the log is checkpointed on the
    // recorder's own thread after each commit, as in a run.
    let mut flush = |pending: &mut Vec<Vec<String>>, recorder: &mut Recorder| -> anyhow::Result<()> {
        let mut sql = String::new();
        for (k, values) in pending.iter_mut().enumerate() {
            if !values.is_empty() {
                sql.push_str(&inserts(verb, TIMED_TABLES[k].0, &columns[k], values));
                values.clear();
            }
        }
        let started = Instant::now();
        recorder.begin_unit()?;
        execute(recorder.connection()?, &sql)?;
        recorder.commit_unit()?;
        timed += started.elapsed();
        Ok(())
    };
    for literal in diesel::sql_query(query).load_iter::<Literal, diesel::connection::DefaultLoadingMode>(&mut source)? {
        let literal = literal?;
        if window.is_some_and(|w| w != literal.window) {
            flush(&mut pending, &mut recorder)?;
        }
        window = Some(literal.window);
        let k = usize::try_from(literal.table)?;
        pending[k].push(literal.values);
    }
    flush(&mut pending, &mut recorder)?;
    check_same_counts(&mut source, recorder.connection()?)?;
    Ok(rows as f64 / timed.as_secs_f64())
}

/// The replay wrote every record of every table, no more.
fn check_same_counts(source: &mut SqliteConnection, target: &mut DbConnection) -> anyhow::Result<()> {
    for table in SETUP_TABLES.iter().chain(TIMED_TABLES.iter().map(|(table, _)| table)) {
        let query = format!("SELECT count(*) AS count FROM {table}");
        let expected = diesel::sql_query(&query).get_result::<Count>(source)?.count;
        let written = match target {
            DbConnection::Sqlite(sqlite) => diesel::sql_query(&query).get_result::<Count>(sqlite)?.count,
            DbConnection::Postgresql(pg) => diesel::sql_query(&query).get_result::<Count>(pg)?.count,
        };
        anyhow::ensure!(written == expected, "the ceiling wrote {written} records to {table}, the run {expected}");
    }
    Ok(())
}

fn execute(target: &mut DbConnection, sql: &str) -> anyhow::Result<()> {
    match target {
        DbConnection::Sqlite(sqlite) => sqlite.batch_execute(sql)?,
        DbConnection::Postgresql(pg) => pg.batch_execute(sql)?,
    }
    Ok(())
}

/// The insert the recorder uses: `INSERT OR IGNORE` on SQLite (no statement
/// journal; `check_same_counts` finds a refused record), plain on PostgreSQL.
fn insert_verb(target: &DbConnection) -> &'static str {
    match target {
        DbConnection::Sqlite(_) => "INSERT OR IGNORE",
        DbConnection::Postgresql(_) => "INSERT",
    }
}

/// Multi-row `verb` statements of `values` (each a parenthesised list).
fn inserts(verb: &str, table: &str, columns: &[String], values: &[String]) -> String {
    let mut sql = String::new();
    for part in values.chunks(VALUES_PER_STATEMENT) {
        let _ = write!(sql, "{verb} INTO {table} ({}) VALUES {};", columns.join(", "), part.join(","));
    }
    sql
}

/// The SQL expression that renders a record of `t` as `(literal, …)`.
fn literal(columns: &[String]) -> String {
    let quoted: Vec<String> = columns.iter().map(|c| format!("quote({c})")).collect();
    format!("'(' || {} || ')'", quoted.join(" || ',' || "))
}

fn column_list(source: &mut SqliteConnection, table: &str) -> anyhow::Result<Vec<String>> {
    let names = diesel::sql_query(format!("SELECT name FROM pragma_table_info('{table}') ORDER BY cid")).load::<Name>(source)?;
    anyhow::ensure!(!names.is_empty(), "the Landscape has no table {table}");
    Ok(names.into_iter().map(|n| n.name).collect())
}

/// A table the lists above do not name would be left out of the ceiling.
fn check_every_table_is_known(source: &mut SqliteConnection) -> anyhow::Result<()> {
    let tables = diesel::sql_query(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '__diesel%'",
    )
    .load::<Name>(source)?;
    for table in tables {
        let known = SETUP_TABLES.contains(&table.name.as_str()) || TIMED_TABLES.iter().any(|(t, _)| *t == table.name);
        anyhow::ensure!(known, "the ceiling does not know the Landscape table {}: add it to bench/ceiling.rs", table.name);
    }
    Ok(())
}
