//! `database`: writes rows into a table of a SQLite or PostgreSQL database
//! (diesel). The table is created on the first write from the schema
//! (observed: the first row's keys as text; fixed: the declared fields,
//! typed, required ones NOT NULL; flexible: both), or dropped first with
//! `if_exists: replace`; a row with a key the table lacks is refused. Each
//! write is one transaction, and every statement is recorded as an `sql`
//! call under the sink's operation. The artifact is
//! `db://<table>@<url without password>`, hashed over the canonical JSON of
//! the rows written.
//!
//! Exactly once across a crash: each write also records, in the same
//! transaction, this run's row count and its last batch in
//! `elspeth_sink_progress`. On resume, a batch the database committed but
//! the Landscape never did (the process died between the two commits) is
//! deleted again, row by row, before the run goes on.

use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Double, Nullable, Text};
use diesel::sqlite::SqliteConnection;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use contracts::plugin::{ArtifactDescriptor, CallEnd, Options, PluginContext, PluginError, PluginInfo, Sink};
use contracts::schema::{FieldType, SchemaConfig, SchemaMode};
use contracts::{CallStatus, CallType, ContentHash, Determinism, Row, Value};

/// What this plugin records on its node.
pub(crate) const INFO: PluginInfo = PluginInfo { name: "database", version: "1.0.0", determinism: Determinism::IoWrite };

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
enum IfExists {
    #[default]
    Append,
    Replace,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DatabaseOptions {
    url: String,
    table: String,
    #[serde(default)]
    if_exists: IfExists,
    #[serde(default)]
    #[allow(dead_code, reason = "rows are always checked against the declared fields before anything is written")]
    validate_input: bool,
    schema: serde_json::Value,
    #[serde(default)]
    #[allow(dead_code, reason = "the engine checks it when the graph is built")]
    required_input_fields: Option<Vec<String>>,
}

/// A table column and how its values are bound.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Column {
    name: String,
    kind: FieldType,
    required: bool,
}

enum Database {
    Sqlite(SqliteConnection),
    Postgres(PgConnection),
}

pub(crate) struct DatabaseSink {
    options: DatabaseOptions,
    schema: SchemaConfig,
    /// The URL without its password (for the artifact).
    shown_url: String,
    connection: Option<Database>,
    columns: Option<Vec<Column>>,
    /// The table was dropped (replace) or may not be (resume, append).
    prepared: bool,
    rows_written: u64,
    digest: Sha256,
    bytes: u64,
    run_id: Option<String>,
}

fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

fn sql_error(context: &str, error: impl std::fmt::Display) -> PluginError {
    PluginError::Input(format!("database sink: {context}: {error}"))
}

impl DatabaseSink {
    pub(crate) fn new(options: &Options) -> Result<DatabaseSink, PluginError> {
        let options: DatabaseOptions = crate::options::parse(options)?;
        let schema = crate::options::schema(&options.schema)?;
        if options.table.trim().is_empty() {
            return Err(PluginError::Config("table must not be empty".to_owned()));
        }
        let shown_url = without_password(&options.url);
        if !(options.url.starts_with("sqlite:") || options.url.starts_with("postgresql") || options.url.starts_with("postgres:"))
        {
            return Err(PluginError::Config(format!("url {shown_url:?}: expected sqlite:///path or postgresql://…")));
        }
        Ok(DatabaseSink {
            options,
            schema,
            shown_url,
            connection: None,
            columns: None,
            prepared: false,
            rows_written: 0,
            digest: Sha256::new(),
            bytes: 0,
            run_id: None,
        })
    }

    fn connection(&mut self) -> Result<&mut Database, PluginError> {
        if self.connection.is_none() {
            let url = &self.options.url;
            let connection = if let Some(path) = url.strip_prefix("sqlite:///") {
                let path = std::path::Path::new(path);
                if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    std::fs::create_dir_all(parent).map_err(|e| sql_error("creating the database directory", e))?;
                }
                let mut sqlite =
                    SqliteConnection::establish(&path.to_string_lossy()).map_err(|e| sql_error("opening the database", e))?;
                sqlite.batch_execute("PRAGMA busy_timeout = 30000;").map_err(|e| sql_error("configuring SQLite", e))?;
                Database::Sqlite(sqlite)
            } else {
                let url = match url.split_once("://") {
                    Some((scheme, rest)) if scheme.starts_with("postgres") => format!("postgresql://{rest}"),
                    _ => url.clone(),
                };
                Database::Postgres(PgConnection::establish(&url).map_err(|e| sql_error("connecting", e))?)
            };
            self.connection = Some(connection);
        }
        self.connection.as_mut().ok_or_else(|| PluginError::Contract("no database connection".to_owned()))
    }

    fn execute(&mut self, sql: &str) -> Result<(), PluginError> {
        match self.connection()? {
            Database::Sqlite(c) => c.batch_execute(sql),
            Database::Postgres(c) => c.batch_execute(sql),
        }
        .map_err(|e| sql_error(sql, e))
    }

    /// Runs a statement, recording it as an `sql` call.
    fn recorded(
        &mut self,
        ctx: &mut PluginContext,
        request: serde_json::Value,
        response: serde_json::Value,
        run: impl FnOnce(&mut DatabaseSink) -> Result<(), PluginError>,
    ) -> Result<(), PluginError> {
        let ticket = ctx.begin_call(None);
        let outcome = run(self);
        let (status, response, error) = match &outcome {
            Ok(()) => (CallStatus::Success, Some(response), None),
            Err(e) => (CallStatus::Error, None, Some(serde_json::json!({"type": "DatabaseError", "message": e.to_string()}))),
        };
        ctx.end_call(ticket, CallEnd { call_type: CallType::Sql, status, request, response, error });
        outcome
    }

    /// The table's columns, from the schema and the first row.
    fn columns_for(&self, first: &Row) -> Vec<Column> {
        let declared =
            self.schema.fields.iter().map(|f| Column { name: f.name.clone(), kind: f.field_type, required: f.required });
        match self.schema.mode {
            SchemaMode::Observed => {
                first.keys().map(|k| Column { name: k.clone(), kind: FieldType::Any, required: false }).collect()
            }
            SchemaMode::Fixed => declared.collect(),
            SchemaMode::Flexible => {
                let mut columns: Vec<Column> = declared.collect();
                for key in first.keys() {
                    if !columns.iter().any(|c| &c.name == key) {
                        columns.push(Column { name: key.clone(), kind: FieldType::Any, required: false });
                    }
                }
                columns
            }
        }
    }

    fn create_table(&mut self, ctx: &mut PluginContext, first: &Row) -> Result<(), PluginError> {
        let table = self.options.table.clone();
        let postgres = matches!(self.connection()?, Database::Postgres(_));
        if !self.prepared {
            self.prepared = true;
            if self.options.if_exists == IfExists::Replace {
                let request = serde_json::json!({"operation": "DROP_TABLE", "table": table, "mode": "replace"});
                let sql = format!("DROP TABLE IF EXISTS {}", quote(&table));
                self.recorded(ctx, request, serde_json::json!({"table_dropped": true}), |s| s.execute(&sql))?;
            }
        }
        let columns = self.columns_for(first);
        let definitions: Vec<String> = columns
            .iter()
            .map(|c| {
                let kind = match (c.kind, postgres) {
                    (FieldType::Int, _) => "BIGINT",
                    (FieldType::Float, true) => "DOUBLE PRECISION",
                    (FieldType::Float, false) => "REAL",
                    (FieldType::Bool, _) => "BOOLEAN",
                    (FieldType::Str | FieldType::Any, _) => "TEXT",
                };
                format!("{} {kind}{}", quote(&c.name), if c.required { " NOT NULL" } else { "" })
            })
            .collect();
        let sql = format!(
            "CREATE TABLE IF NOT EXISTS {} ({}); CREATE TABLE IF NOT EXISTS elspeth_sink_progress \
             (run_id TEXT NOT NULL, table_name TEXT NOT NULL, row_count BIGINT NOT NULL, last_batch TEXT NOT NULL, \
             PRIMARY KEY (run_id, table_name))",
            quote(&table),
            definitions.join(", ")
        );
        let request = serde_json::json!({"operation": "CREATE_TABLE", "table": table, "if_not_exists": true});
        self.recorded(ctx, request, serde_json::json!({"table_created": true}), |s| s.execute(&sql))?;
        self.columns = Some(columns);
        Ok(())
    }

    /// Deletes the rows of a batch the Landscape never committed (one row
    /// per recorded row: equal rows are interchangeable) and sets the
    /// progress back, in one transaction.
    fn delete_orphans(&mut self, run_id: &str, batch: &str) -> Result<(), PluginError> {
        let rows: Vec<Row> = serde_json::from_str::<Vec<serde_json::Value>>(batch)
            .map_err(|e| sql_error("reading the last batch", e))?
            .into_iter()
            .filter_map(|v| match Value::from_json(v) {
                Ok(Value::Object(row)) => Some(row),
                Ok(_) | Err(_) => None,
            })
            .collect();
        // Without a checkpoint the orphan is the table's first batch: its
        // first row chose the columns, as it does again here.
        let columns = match (&self.columns, rows.first()) {
            (Some(columns), _) => columns.clone(),
            (None, Some(first)) => self.columns_for(first),
            (None, None) => return Ok(()),
        };
        let table = self.options.table.clone();
        let kept = i64::try_from(self.rows_written).unwrap_or(i64::MAX);
        match self.connection()? {
            Database::Sqlite(c) => c.transaction(|c| {
                let matches: Vec<String> = columns.iter().map(|col| format!("{} IS ?", quote(&col.name))).collect();
                let sql = format!(
                    "DELETE FROM {t} WHERE rowid = (SELECT rowid FROM {t} WHERE {} LIMIT 1)",
                    matches.join(" AND "),
                    t = quote(&table)
                );
                for row in &rows {
                    bind_row(diesel::sql_query(sql.clone()).into_boxed::<diesel::sqlite::Sqlite>(), &columns, row).execute(c)?;
                }
                diesel::sql_query("UPDATE elspeth_sink_progress SET row_count = ? WHERE run_id = ? AND table_name = ?")
                    .bind::<BigInt, _>(kept)
                    .bind::<Text, _>(run_id)
                    .bind::<Text, _>(&table)
                    .execute(c)
                    .map(drop)
            }),
            Database::Postgres(c) => c.transaction(|c| {
                let matches: Vec<String> = columns
                    .iter()
                    .enumerate()
                    .map(|(i, col)| format!("{} IS NOT DISTINCT FROM ${}", quote(&col.name), i + 1))
                    .collect();
                let sql = format!(
                    "DELETE FROM {t} WHERE ctid = (SELECT ctid FROM {t} WHERE {} LIMIT 1)",
                    matches.join(" AND "),
                    t = quote(&table)
                );
                for row in &rows {
                    bind_row(diesel::sql_query(sql.clone()).into_boxed::<diesel::pg::Pg>(), &columns, row).execute(c)?;
                }
                diesel::sql_query("UPDATE elspeth_sink_progress SET row_count = $1 WHERE run_id = $2 AND table_name = $3")
                    .bind::<BigInt, _>(kept)
                    .bind::<Text, _>(run_id)
                    .bind::<Text, _>(&table)
                    .execute(c)
                    .map(drop)
            }),
        }
        .map_err(|e| sql_error(&format!("removing an uncommitted batch from {table}"), e))
    }

    /// Inserts a batch and the run's progress in one transaction.
    fn insert(&mut self, run_id: &str, rows: &[Row]) -> Result<(), PluginError> {
        let columns = self.columns.clone().unwrap_or_default();
        let table = self.options.table.clone();
        let names: Vec<String> = columns.iter().map(|c| quote(&c.name)).collect();
        let total = i64::try_from(self.rows_written + rows.len() as u64).unwrap_or(i64::MAX);
        let batch = serde_json::Value::Array(rows.iter().map(|r| Value::Object(r.clone()).to_json()).collect()).to_string();
        match self.connection()? {
            Database::Sqlite(c) => c.transaction(|c| {
                for row in rows {
                    let marks = vec!["?"; columns.len()].join(", ");
                    let sql = format!("INSERT INTO {} ({}) VALUES ({marks})", quote(&table), names.join(", "));
                    bind_row(diesel::sql_query(sql).into_boxed::<diesel::sqlite::Sqlite>(), &columns, row).execute(c)?;
                }
                diesel::sql_query(placeholders(UPSERT_PROGRESS, false))
                    .bind::<Text, _>(run_id)
                    .bind::<Text, _>(&table)
                    .bind::<BigInt, _>(total)
                    .bind::<Text, _>(&batch)
                    .execute(c)
                    .map(drop)
            }),
            Database::Postgres(c) => c.transaction(|c| {
                for row in rows {
                    let marks: Vec<String> = (1..=columns.len()).map(|i| format!("${i}")).collect();
                    let sql = format!("INSERT INTO {} ({}) VALUES ({})", quote(&table), names.join(", "), marks.join(", "));
                    bind_row(diesel::sql_query(sql).into_boxed::<diesel::pg::Pg>(), &columns, row).execute(c)?;
                }
                diesel::sql_query(placeholders(UPSERT_PROGRESS, true))
                    .bind::<Text, _>(run_id)
                    .bind::<Text, _>(&table)
                    .bind::<BigInt, _>(total)
                    .bind::<Text, _>(&batch)
                    .execute(c)
                    .map(drop)
            }),
        }
        .map_err(|e| sql_error(&format!("inserting into {table}"), e))
    }
}

const UPSERT_PROGRESS: &str =
    "INSERT INTO elspeth_sink_progress (run_id, table_name, row_count, last_batch) VALUES ({1}, {2}, {3}, {4}) \
     ON CONFLICT (run_id, table_name) DO UPDATE SET row_count = excluded.row_count, last_batch = excluded.last_batch";

/// The statement with SQLite's (`?`) or PostgreSQL's (`$n`) placeholders.
fn placeholders(template: &str, postgres: bool) -> String {
    (1..=4).fold(template.to_owned(), |sql, n| {
        sql.replace(&format!("{{{n}}}"), &if postgres { format!("${n}") } else { "?".to_owned() })
    })
}

#[derive(diesel::QueryableByName)]
struct Progress {
    #[diesel(sql_type = BigInt)]
    row_count: i64,
    #[diesel(sql_type = Text)]
    last_batch: String,
}

/// Binds a row's values in column order with the column's type.
fn bind_row<'a, DB>(
    mut query: diesel::query_builder::BoxedSqlQuery<'a, DB, diesel::query_builder::SqlQuery>,
    columns: &[Column],
    row: &Row,
) -> diesel::query_builder::BoxedSqlQuery<'a, DB, diesel::query_builder::SqlQuery>
where
    DB: diesel::backend::Backend + diesel::sql_types::HasSqlType<Text>,
    Option<String>: diesel::serialize::ToSql<Nullable<Text>, DB>,
    Option<i64>: diesel::serialize::ToSql<Nullable<BigInt>, DB>,
    Option<f64>: diesel::serialize::ToSql<Nullable<Double>, DB>,
    Option<bool>: diesel::serialize::ToSql<Nullable<Bool>, DB>,
    DB: diesel::sql_types::HasSqlType<BigInt> + diesel::sql_types::HasSqlType<Double> + diesel::sql_types::HasSqlType<Bool>,
{
    for column in columns {
        let value = row.get(&column.name).unwrap_or(&Value::Null);
        query = match (column.kind, value) {
            (FieldType::Int, Value::Integer(i)) => query.bind::<Nullable<BigInt>, _>(Some(*i)),
            (FieldType::Int, _) => query.bind::<Nullable<BigInt>, _>(None::<i64>),
            (FieldType::Float, Value::Float(f)) => query.bind::<Nullable<Double>, _>(Some(f.get())),
            #[allow(clippy::cast_precision_loss, reason = "an int stored in a float column, as the schema allows")]
            (FieldType::Float, Value::Integer(i)) => query.bind::<Nullable<Double>, _>(Some(*i as f64)),
            (FieldType::Float, _) => query.bind::<Nullable<Double>, _>(None::<f64>),
            (FieldType::Bool, Value::Bool(b)) => query.bind::<Nullable<Bool>, _>(Some(*b)),
            (FieldType::Bool, _) => query.bind::<Nullable<Bool>, _>(None::<bool>),
            (FieldType::Str | FieldType::Any, Value::Null) => query.bind::<Nullable<Text>, _>(None::<String>),
            (FieldType::Str | FieldType::Any, other) => query.bind::<Nullable<Text>, _>(Some(crate::sinks::cell_text(other))),
        };
    }
    query
}

/// `scheme://user:password@host` → `scheme://user@host`.
fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let Some((credentials, host)) = rest.split_once('@') else { return url.to_owned() };
    let user = credentials.split_once(':').map_or(credentials, |(user, _)| user);
    format!("{scheme}://{user}@{host}")
}

impl Sink for DatabaseSink {
    fn info(&self) -> PluginInfo {
        INFO
    }

    fn write(&mut self, rows: &[Row], ctx: &mut PluginContext) -> Result<(), PluginError> {
        let Some(first) = rows.first() else { return Ok(()) };
        for row in rows {
            super::check_declared(&self.schema, row, super::Cells::Typed)?;
        }
        if self.columns.is_none() {
            self.create_table(ctx, first)?;
        }
        let columns = self.columns.clone().unwrap_or_default();
        for row in rows {
            if let Some(key) = row.keys().find(|k| !columns.iter().any(|c| &c.name == *k)) {
                return Err(PluginError::Contract(format!(
                    "a row has field {key:?}, which table {} does not have",
                    self.options.table
                )));
            }
        }
        let run_id = ctx.run_id.as_str().to_owned();
        let request = serde_json::json!({"operation": "INSERT", "table": self.options.table, "row_count": rows.len()});
        let response = serde_json::json!({"rows_inserted": rows.len()});
        self.recorded(ctx, request, response, |s| s.insert(&run_id, rows))?;
        // The artifact is the batch just written (as the reference hashes it).
        self.digest = Sha256::new();
        self.bytes = 0;
        for row in rows {
            let canonical =
                contracts::canonical_json_value(&Value::Object(row.clone())).map_err(|e| PluginError::Contract(e.to_string()))?;
            self.digest.update(canonical.as_bytes());
            self.digest.update(b"\n");
            self.bytes += canonical.len() as u64 + 1;
        }
        self.rows_written += rows.len() as u64;
        Ok(())
    }

    fn flush(&mut self, _ctx: &mut PluginContext) -> Result<Option<ArtifactDescriptor>, PluginError> {
        if self.rows_written == 0 {
            return Ok(None);
        }
        Ok(Some(ArtifactDescriptor {
            artifact_type: "database".to_owned(),
            path_or_uri: format!("db://{}@{}", self.options.table, self.shown_url),
            content_hash: ContentHash::parse(hex::encode(self.digest.clone().finalize()))
                .map_err(|e| PluginError::Contract(e.to_string()))?,
            size_bytes: self.bytes,
        }))
    }

    fn bind_run(&mut self, run_id: &contracts::RunId) {
        self.run_id = Some(run_id.as_str().to_owned());
    }

    fn checkpoint_state(&self) -> serde_json::Value {
        let columns: Vec<serde_json::Value> = self
            .columns
            .iter()
            .flatten()
            .map(|c| serde_json::json!({"name": c.name, "type": c.kind.as_str(), "required": c.required}))
            .collect();
        serde_json::json!({"rows": self.rows_written, "columns": columns})
    }

    /// Continues the table: never dropped again; a batch committed after
    /// the checkpoint (the process died before the Landscape committed it)
    /// is deleted, so each row ends up in the table once.
    fn resume(&mut self, _bytes: u64, state: &serde_json::Value) -> Result<(), PluginError> {
        self.prepared = true;
        self.rows_written = state.get("rows").and_then(serde_json::Value::as_u64).unwrap_or(0);
        let columns: Vec<Column> = state
            .get("columns")
            .and_then(serde_json::Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|c| {
                let kind = match c.get("type").and_then(serde_json::Value::as_str)? {
                    "str" => FieldType::Str,
                    "int" => FieldType::Int,
                    "float" => FieldType::Float,
                    "bool" => FieldType::Bool,
                    _ => FieldType::Any,
                };
                let name = c.get("name").and_then(serde_json::Value::as_str)?.to_owned();
                Some(Column { name, kind, required: c.get("required").and_then(serde_json::Value::as_bool).unwrap_or(false) })
            })
            .collect();
        if !columns.is_empty() {
            self.columns = Some(columns);
        }
        let Some(run_id) = self.run_id.clone() else { return Err(PluginError::Contract("resume before bind_run".to_owned())) };
        let table = self.options.table.clone();
        let postgres = matches!(self.connection()?, Database::Postgres(_));
        let query = placeholders(
            "SELECT row_count, last_batch FROM elspeth_sink_progress WHERE run_id = {1} AND table_name = {2}",
            postgres,
        );
        let found: Vec<Progress> = match self.connection()? {
            Database::Sqlite(c) => diesel::sql_query(query).bind::<Text, _>(&run_id).bind::<Text, _>(&table).load(c),
            Database::Postgres(c) => diesel::sql_query(query).bind::<Text, _>(&run_id).bind::<Text, _>(&table).load(c),
        }
        .unwrap_or_default();
        let Some(progress) = found.into_iter().next() else { return Ok(()) };
        let committed = u64::try_from(progress.row_count).unwrap_or(0);
        if committed < self.rows_written {
            return Err(PluginError::Changed(format!(
                "table {table} holds {committed} of this run's rows, fewer than the {} its checkpoint recorded",
                self.rows_written
            )));
        }
        if committed > self.rows_written {
            self.delete_orphans(&run_id, &progress.last_batch)?;
        }
        Ok(())
    }
}
