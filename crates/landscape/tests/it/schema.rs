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
