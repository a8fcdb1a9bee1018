//! The committed `schema.rs` matches what the migrations create, and opening
//! refuses foreign or newer schemas.

use landscape::{introspect, open, LandscapeError};

fn committed_schema() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/schema.rs")).expect("schema.rs is readable")
}

#[test]
fn schema_rs_matches_the_sqlite_migrations() {
    let mut connection = open("sqlite:///:memory:").expect("in-memory Landscape opens");
    let rendered = introspect::render_schema(&introspect::tables(&mut connection).expect("introspection"));
    if std::env::var_os("UPDATE_SCHEMA").is_some() {
        std::fs::write(concat!(env!("CARGO_MANIFEST_DIR"), "/src/schema.rs"), &rendered).expect("write schema.rs");
    }
    assert_eq!(committed_schema(), rendered, "schema.rs is stale: run `cargo xtask schema --write`");
}

#[test]
fn a_foreign_landscape_is_refused_not_upgraded() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("reference.db");
    {
        let mut connection = open(&format!("sqlite:///{}", path.display())).expect("opens");
        landscape::connection::execute_raw(&mut connection, "DROP TABLE __diesel_schema_migrations").expect("drop versions");
    }
    let error = open(&format!("sqlite:///{}", path.display())).err().expect("foreign schema must be refused");
    assert!(matches!(error, LandscapeError::IncompatibleSchema(_)), "{error}");
    assert!(error.to_string().contains("will not be upgraded in place"), "{error}");
}

#[test]
fn a_landscape_missing_tables_or_columns_is_refused_naming_them() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite:///{}", dir.path().join("altered.db").display());
    {
        let mut connection = open(&url).expect("opens");
        landscape::connection::execute_raw(&mut connection, "PRAGMA foreign_keys = OFF").expect("pragma");
        landscape::connection::execute_raw(&mut connection, "DROP TABLE secret_resolutions").expect("drop a table");
        landscape::connection::execute_raw(&mut connection, "ALTER TABLE runs DROP COLUMN export_format").expect("drop a column");
    }
    let error = open(&url).err().expect("an altered Landscape must be refused");
    assert!(matches!(error, LandscapeError::IncompatibleSchema(_)), "{error}");
    let message = error.to_string();
    assert!(message.contains("table secret_resolutions") && message.contains("column runs.export_format"), "{message}");
    assert!(message.contains("altered.db"), "names the database: {message}");
}

#[test]
fn a_newer_landscape_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite:///{}", dir.path().join("newer.db").display());
    {
        let mut connection = open(&url).expect("opens");
        landscape::connection::execute_raw(
            &mut connection,
            "INSERT INTO __diesel_schema_migrations (version) VALUES ('99991231000000')",
        )
        .expect("stamp a newer version");
    }
    let error = open(&url).err().expect("newer schema must be refused");
    assert!(error.to_string().contains("written by a newer ELSPETH"), "{error}");
}

#[test]
fn schema_rs_matches_the_postgresql_migrations() {
    let Some(server) = test_support::pg_server_or_skip("schema_rs_matches_the_postgresql_migrations") else {
        return;
    };
    let mut connection = open(&server.fresh_database()).expect("PostgreSQL Landscape opens");
    let rendered = introspect::render_schema(&introspect::tables(&mut connection).expect("introspection"));
    assert_eq!(committed_schema(), rendered, "PostgreSQL migrations disagree with schema.rs");
}

/// The tables every unit of a run inserts into, in bulk.
const HOT_PATH_TABLES: &[&str] =
    &["rows", "tokens", "token_parents", "batches", "batch_members", "node_states", "routing_events", "token_outcomes"];

/// The opcodes of `EXPLAIN sql` that make SQLite keep a statement journal
/// for a multi-row insert: a constraint that aborts the statement half-way
/// (`Halt`/`HaltIfNull` with OE_Abort = 2) or an immediate foreign-key
/// counter (`FkCounter` with P1 = 0).
fn aborting_opcodes(connection: &rusqlite::Connection, sql: &str) -> Vec<String> {
    let mut explain = connection.prepare(&format!("EXPLAIN {sql}")).expect("explain prepares");
    let nulls = vec![rusqlite::types::Null; explain.parameter_count()];
    let opcodes = explain
        .query_map(rusqlite::params_from_iter(nulls), |row| {
            Ok((row.get::<_, String>(1)?, row.get::<_, i64>(2)?, row.get::<_, i64>(3)?))
        })
        .expect("explain runs")
        .collect::<Result<Vec<_>, _>>()
        .expect("explain rows");
    opcodes
        .into_iter()
        .filter(|(opcode, p1, p2)| match opcode.as_str() {
            "Halt" => *p1 != 0 && *p2 == 2,
            "HaltIfNull" => *p2 == 2,
            "FkCounter" => *p1 == 0,
            _ => false,
        })
        .map(|(opcode, p1, p2)| format!("{opcode} {p1} {p2}"))
        .collect()
}

/// Issue #20: no statement-journal writes on the hot path. The recorder
/// writes each hot-path table with multi-row `INSERT OR IGNORE`; with the
/// schema's deferred foreign keys such a statement can never abort half-way,
/// so SQLite keeps no statement journal for it. A plain `INSERT` (the
/// control) still could, which shows the check can fail.
#[test]
fn hot_path_inserts_keep_no_statement_journal_on_sqlite() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("audit.db");
    drop(open(&format!("sqlite:///{}", path.display())).expect("a new Landscape"));
    let connection = rusqlite::Connection::open(&path).expect("opens with rusqlite");
    connection.execute_batch("PRAGMA foreign_keys = ON").expect("foreign keys on, as the recorder runs");
    for table in HOT_PATH_TABLES {
        let mut columns = connection.prepare(&format!("SELECT name FROM pragma_table_info('{table}')")).expect("columns");
        let columns: Vec<String> =
            columns.query_map([], |row| row.get(0)).expect("columns").collect::<Result<_, _>>().expect("names");
        let row = format!("({})", vec!["?"; columns.len()].join(", "));
        let values = format!("INTO {table} ({}) VALUES {row}, {row}", columns.join(", "));
        assert_eq!(aborting_opcodes(&connection, &format!("INSERT OR IGNORE {values}")), Vec::<String>::new(), "{table}");
        assert!(!aborting_opcodes(&connection, &format!("INSERT {values}")).is_empty(), "control: a plain insert into {table}");
    }
}

/// Opens `url` from `n` threads released at the same instant (each its own
/// connection, as two `elspeth run`s are) and returns what each got.
fn open_at_once(url: &str, n: usize) -> Vec<Result<(), String>> {
    let start = std::sync::Barrier::new(n);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..n)
            .map(|_| {
                scope.spawn(|| {
                    start.wait();
                    open(url).map(drop).map_err(|e| e.to_string())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("opener ends")).collect()
    })
}

/// Holds the write lock of the new SQLite file at `path` (as the first of two
/// runs starting together does while it switches the file to WAL) and lets
/// go of it after 300 ms, while `open` runs on this thread. The pause is the
/// scenario, not synchronisation: `open` must succeed however long the lock
/// is held (up to the busy timeout); before the fix it failed at once.
fn while_another_run_holds_the_new_file<T>(path: &std::path::Path, open: impl FnOnce() -> T) -> T {
    let holder = rusqlite::Connection::open(path).expect("sqlite");
    holder.execute_batch("BEGIN IMMEDIATE").expect("the write lock");
    std::thread::scope(|scope| {
        scope.spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(300));
            holder.execute_batch("COMMIT").expect("lets go");
        });
        open()
    })
}

#[test]
fn a_new_sqlite_landscape_and_payload_store_open_while_another_run_holds_the_file() {
    // Before: SQLite refused the switch to WAL at once with "database is
    // locked" (its busy timeout does not cover that lock upgrade), so of two
    // runs starting together on a new Landscape one failed.
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("shared.db");
    while_another_run_holds_the_new_file(&path, || open(&format!("sqlite:///{}", path.display())))
        .expect("waits for the other run, then opens");
    let reader = rusqlite::Connection::open(&path).expect("sqlite");
    let mode: String = reader.query_row("PRAGMA journal_mode", [], |row| row.get(0)).expect("journal mode");
    assert_eq!(mode, "wal");
    let payloads = dir.path().join("shared.payloads");
    std::fs::create_dir_all(&payloads).expect("store dir");
    let store = landscape::PayloadStore::new(&payloads);
    let key = while_another_run_holds_the_new_file(&payloads.join("payloads.sqlite"), || store.store(b"row"))
        .expect("waits for the other run, then stores");
    assert_eq!(store.retrieve(&key).expect("stored"), b"row");
}

#[test]
fn a_new_postgresql_landscape_opened_by_several_runs_at_once_opens_for_all() {
    let Some(server) = test_support::pg_server_or_skip("a_new_postgresql_landscape_opened_by_several_runs_at_once_opens_for_all")
    else {
        return;
    };
    // Before: all but one failed, their migrations meeting the first's
    // ("duplicate key value violates unique constraint pg_type_typname_nsp_index").
    for round in 0..4 {
        let url = server.fresh_database();
        for result in open_at_once(&url, 4) {
            assert_eq!(result, Ok(()), "round {round}");
        }
    }
}
