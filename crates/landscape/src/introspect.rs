//! Schema introspection: reads the tables a migrated database really has and
//! renders them as diesel `table!` definitions. `cargo xtask schema` compares
//! the rendering from both backends with the committed `schema.rs`.

use std::fmt::Write as _;

use diesel::RunQueryDsl;

use crate::connection::DbConnection;
use crate::error::{LandscapeError, Result};

/// One column as the database reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnInfo {
    pub name: String,
    /// The diesel SQL type (`Text`, `Integer`, `BigInt`, `Double`, `Timestamp`).
    pub diesel_type: &'static str,
    pub nullable: bool,
}

/// One table as the database reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableInfo {
    pub name: String,
    pub primary_key: Vec<String>,
    pub columns: Vec<ColumnInfo>,
}

#[derive(diesel::QueryableByName)]
struct SqliteColumn {
    #[diesel(sql_type = diesel::sql_types::Text)]
    name: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    r#type: String,
    #[diesel(sql_type = diesel::sql_types::Integer)]
    notnull: i32,
    #[diesel(sql_type = diesel::sql_types::Integer)]
    pk: i32,
}

#[derive(diesel::QueryableByName)]
struct PgColumn {
    #[diesel(sql_type = diesel::sql_types::Text)]
    table_name: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    column_name: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    data_type: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    is_nullable: String,
}

#[derive(diesel::QueryableByName)]
struct PgKey {
    #[diesel(sql_type = diesel::sql_types::Text)]
    table_name: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    column_name: String,
}

fn diesel_type(declared: &str) -> Result<&'static str> {
    let lower = declared.to_ascii_lowercase();
    let base = lower.split('(').next().unwrap_or(&lower).trim();
    Ok(match base {
        "varchar" | "character varying" | "text" => "Text",
        "integer" => "Integer",
        "bigint" => "BigInt",
        "double precision" => "Double",
        "timestamp" | "timestamp without time zone" => "Timestamp",
        other => return Err(LandscapeError::integrity(format!("column type {other:?} has no diesel mapping"))),
    })
}

/// Every table except diesel's own bookkeeping, in name order.
pub fn tables(connection: &mut DbConnection) -> Result<Vec<TableInfo>> {
    let mut names: Vec<String> = crate::connection::LANDSCAPE_TABLES.iter().map(|t| (*t).to_owned()).collect();
    names.sort();
    let mut tables = Vec::new();
    match connection {
        DbConnection::Sqlite(sqlite) => {
            for name in names {
                let columns: Vec<SqliteColumn> = diesel::sql_query(format!("PRAGMA table_info({name})")).load(sqlite)?;
                if columns.is_empty() {
                    return Err(LandscapeError::integrity(format!("table {name} is missing")));
                }
                let mut keyed: Vec<(i32, String)> = columns.iter().filter(|c| c.pk > 0).map(|c| (c.pk, c.name.clone())).collect();
                keyed.sort();
                tables.push(TableInfo {
                    name,
                    primary_key: keyed.into_iter().map(|(_, column)| column).collect(),
                    columns: columns
                        .iter()
                        .map(|c| {
                            Ok(ColumnInfo {
                                name: c.name.clone(),
                                diesel_type: diesel_type(&c.r#type)?,
                                nullable: c.notnull == 0,
                            })
                        })
                        .collect::<Result<_>>()?,
                });
            }
        }
        DbConnection::Postgresql(pg) => {
            let columns: Vec<PgColumn> = diesel::sql_query(
                "SELECT table_name::text AS table_name, column_name::text AS column_name, data_type::text AS data_type, \
                 is_nullable::text AS is_nullable FROM information_schema.columns \
                 WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position",
            )
            .load(pg)?;
            let keys: Vec<PgKey> = diesel::sql_query(
                "SELECT k.table_name::text AS table_name, k.column_name::text AS column_name \
                 FROM information_schema.table_constraints c JOIN information_schema.key_column_usage k \
                 ON c.constraint_name = k.constraint_name AND c.table_schema = k.table_schema \
                 WHERE c.constraint_type = 'PRIMARY KEY' AND c.table_schema = current_schema() \
                 ORDER BY k.table_name, k.ordinal_position",
            )
            .load(pg)?;
            for name in names {
                let table_columns: Vec<&PgColumn> = columns.iter().filter(|c| c.table_name == name).collect();
                if table_columns.is_empty() {
                    return Err(LandscapeError::integrity(format!("table {name} is missing")));
                }
                tables.push(TableInfo {
                    primary_key: keys.iter().filter(|k| k.table_name == name).map(|k| k.column_name.clone()).collect(),
                    columns: table_columns
                        .iter()
                        .map(|c| {
                            Ok(ColumnInfo {
                                name: c.column_name.clone(),
                                diesel_type: diesel_type(&c.data_type)?,
                                nullable: c.is_nullable == "YES",
                            })
                        })
                        .collect::<Result<_>>()?,
                    name,
                });
            }
        }
    }
    Ok(tables)
}

/// Renders tables as the text of `schema.rs`.
pub fn render_schema(tables: &[TableInfo]) -> String {
    let mut out = String::from(
        "//! Diesel table definitions of the Landscape.\n//!\n//! Generated from the migrations by `cargo xtask schema --write`; \
         `cargo xtask schema`\n//! fails when this file and the migrated schema of either backend disagree.\n\n",
    );
    for table in tables {
        let _ = writeln!(out, "diesel::table! {{");
        let _ = writeln!(out, "    {} ({}) {{", table.name, table.primary_key.join(", "));
        for column in &table.columns {
            let sql_type =
                if column.nullable { format!("Nullable<{}>", column.diesel_type) } else { column.diesel_type.to_owned() };
            let _ = writeln!(out, "        {} -> {},", column.name, sql_type);
        }
        let _ = writeln!(out, "    }}\n}}\n");
    }
    let _ = writeln!(out, "diesel::allow_tables_to_appear_in_same_query!(");
    for table in tables {
        let _ = writeln!(out, "    {},", table.name);
    }
    let _ = writeln!(out, ");");
    out
}
