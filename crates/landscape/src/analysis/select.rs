//! One ad-hoc read-only SQL query, for the MCP `query` tool.
//!
//! Three guards, each enough on its own: the text is *parsed* (not pattern
//! matched) and must be exactly one query statement with no `INTO`, no
//! locking clause and no data-modifying statement anywhere inside it; the
//! connection it runs on cannot write (SQLite: opened read-only with
//! `query_only` and an authorizer that allows reads, selects and functions
//! only, so `ATTACH` and pragmas are refused; PostgreSQL: a `READ ONLY`
//! transaction that is rolled back); and the work is bounded (at most
//! `max_rows` rows are returned, and a deadline interrupts the statement).

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::{Connection, RunQueryDsl};
use serde::Serialize;
use serde_json::Value as J;
use sqlparser::ast::{visit_statements, SetExpr, Statement};
use sqlparser::dialect::{Dialect, PostgreSqlDialect, SQLiteDialect};
use sqlparser::parser::Parser;

use crate::connection::DatabaseUrl;

/// The most rows one query returns.
pub const SELECT_MAX_ROWS: usize = 1000;

/// The answer to one query.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SelectResult {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<J>>,
    /// More rows matched than were returned.
    pub truncated: bool,
}

/// Why a query was not run or did not finish.
#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    #[error("the SQL does not parse: {0}")]
    Parse(String),
    #[error("only one statement is allowed; found {0}")]
    NotOne(usize),
    #[error("only a read-only query (SELECT, WITH … SELECT, VALUES) is allowed; found {0}")]
    NotAQuery(String),
    #[error("the query did not finish within {0:?} and was interrupted")]
    Timeout(Duration),
    #[error("the database refused the query: {0}")]
    Database(String),
}

/// Checks that `sql` is one read-only query in the backend's dialect.
// sqlparser's statement kinds are another crate's: anything but a query is
// refused, including kinds a later sqlparser adds.
#[allow(clippy::wildcard_enum_match_arm)]
fn check(sql: &str, dialect: &dyn Dialect) -> Result<(), SelectError> {
    let statements = Parser::parse_sql(dialect, sql).map_err(|e| SelectError::Parse(e.to_string()))?;
    if statements.len() != 1 {
        return Err(SelectError::NotOne(statements.len()));
    }
    let refused = visit_statements(&statements, |statement| match statement {
        Statement::Query(query) => {
            if !query.locks.is_empty() || query.for_clause.is_some() {
                return ControlFlow::Break("a locking or FOR clause".to_owned());
            }
            match query.body.as_ref() {
                SetExpr::Select(select) if select.into.is_some() => ControlFlow::Break("SELECT … INTO".to_owned()),
                _ => ControlFlow::Continue(()),
            }
        }
        other => {
            let text = other.to_string();
            let first: String = text.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
            ControlFlow::Break(first)
        }
    });
    match refused {
        ControlFlow::Break(what) => Err(SelectError::NotAQuery(what)),
        ControlFlow::Continue(()) => Ok(()),
    }
}

/// Runs one read-only query against the Landscape at `url`, returning at
/// most `max_rows` rows (clamped to [`SELECT_MAX_ROWS`]) within `timeout`.
pub fn select(url: &str, sql: &str, max_rows: usize, timeout: Duration) -> Result<SelectResult, SelectError> {
    let max_rows = max_rows.clamp(1, SELECT_MAX_ROWS);
    let sql = sql.trim().trim_end_matches(';');
    match DatabaseUrl::parse(url).map_err(|e| SelectError::Database(e.to_string()))? {
        DatabaseUrl::SqliteFile(path) => {
            check(sql, &SQLiteDialect {})?;
            select_sqlite(&path, sql, max_rows, timeout)
        }
        DatabaseUrl::SqliteMemory => Err(SelectError::Database("an in-memory database holds no run".to_owned())),
        DatabaseUrl::Postgresql(pg_url) => {
            check(sql, &PostgreSqlDialect {})?;
            select_postgresql(&pg_url, sql, max_rows, timeout)
        }
    }
}

// The authorizer allows the listed reads and denies every other action,
// including actions a later SQLite adds.
#[allow(clippy::wildcard_enum_match_arm)]
fn select_sqlite(path: &std::path::Path, sql: &str, max_rows: usize, timeout: Duration) -> Result<SelectResult, SelectError> {
    use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
    use rusqlite::types::ValueRef;
    use rusqlite::OpenFlags;

    let database = |e: rusqlite::Error| SelectError::Database(e.to_string());
    let connection =
        rusqlite::Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .map_err(database)?;
    connection.execute_batch("PRAGMA query_only = ON; PRAGMA busy_timeout = 5000;").map_err(database)?;
    connection
        .authorizer(Some(|context: AuthContext<'_>| match context.action {
            AuthAction::Select | AuthAction::Read { .. } | AuthAction::Function { .. } | AuthAction::Recursive => {
                Authorization::Allow
            }
            _ => Authorization::Deny,
        }))
        .map_err(database)?;
    let deadline = Instant::now() + timeout;
    connection.progress_handler(10_000, Some(move || Instant::now() >= deadline)).map_err(database)?;
    let interrupted = |e: rusqlite::Error| match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::OperationInterrupted) => SelectError::Timeout(timeout),
        _ => database(e),
    };
    let mut statement = connection.prepare(sql).map_err(database)?;
    if !statement.readonly() {
        return Err(SelectError::NotAQuery("a statement that writes".to_owned()));
    }
    let columns: Vec<String> = statement.column_names().into_iter().map(str::to_owned).collect();
    let mut found = statement.query([]).map_err(interrupted)?;
    let mut rows = Vec::new();
    let mut truncated = false;
    while let Some(row) = found.next().map_err(interrupted)? {
        if rows.len() == max_rows {
            truncated = true;
            break;
        }
        let values = (0..columns.len())
            .map(|i| {
                Ok(match row.get_ref(i)? {
                    ValueRef::Null => J::Null,
                    ValueRef::Integer(n) => J::from(n),
                    ValueRef::Real(x) => serde_json::Number::from_f64(x).map_or(J::Null, J::Number),
                    ValueRef::Text(text) => J::String(String::from_utf8_lossy(text).into_owned()),
                    ValueRef::Blob(bytes) => J::String(format!("x'{}'", hex::encode(bytes))),
                })
            })
            .collect::<rusqlite::Result<Vec<J>>>()
            .map_err(database)?;
        rows.push(values);
    }
    Ok(SelectResult { columns, rows, truncated })
}

#[derive(diesel::QueryableByName)]
struct JsonText {
    #[diesel(sql_type = diesel::sql_types::Text)]
    json: String,
}

fn select_postgresql(url: &str, sql: &str, max_rows: usize, timeout: Duration) -> Result<SelectResult, SelectError> {
    let database = |e: &dyn std::fmt::Display| SelectError::Database(e.to_string());
    let mut connection = diesel::PgConnection::establish(url).map_err(|e| database(&e))?;
    let millis = timeout.as_millis().max(1);
    connection
        .batch_execute(&format!(
            "SET default_transaction_read_only = on; BEGIN READ ONLY; SET LOCAL statement_timeout = {millis};"
        ))
        .map_err(|e| database(&e))?;
    // Each row as its (column, value) pairs in column order (`json_each` on
    // `json`, unlike `jsonb`, keeps the order); one more row than asked
    // tells whether the answer was cut.
    let wrapped = format!(
        "SELECT coalesce(json_agg((SELECT json_agg(json_build_array(key, value)) FROM json_each(row_to_json(q)))), '[]')::text AS json \
         FROM (SELECT * FROM ({sql}) AS inner_query LIMIT {}) AS q",
        max_rows + 1
    );
    let answer: Result<Vec<JsonText>, diesel::result::Error> = diesel::sql_query(wrapped).load(&mut connection);
    let _ = connection.batch_execute("ROLLBACK;");
    let answer =
        answer.map_err(
            |e| {
                if e.to_string().contains("statement timeout") {
                    SelectError::Timeout(timeout)
                } else {
                    database(&e)
                }
            },
        )?;
    let text = answer.into_iter().next().map_or_else(|| "[]".to_owned(), |row| row.json);
    let parsed: Vec<Option<Vec<(String, J)>>> = serde_json::from_str(&text).map_err(|e| database(&e))?;
    let mut columns = Vec::new();
    let mut rows = Vec::new();
    for row in parsed.into_iter().take(max_rows + 1) {
        let pairs = row.unwrap_or_default();
        if columns.is_empty() {
            columns = pairs.iter().map(|(name, _)| name.clone()).collect();
        }
        rows.push(pairs.into_iter().map(|(_, value)| value).collect::<Vec<J>>());
    }
    let truncated = rows.len() > max_rows;
    rows.truncate(max_rows);
    Ok(SelectResult { columns, rows, truncated })
}
