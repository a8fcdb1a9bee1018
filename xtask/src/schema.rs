//! `cargo xtask schema`: the committed diesel `schema.rs` must equal the
//! rendering of what the migrations create, on SQLite and on PostgreSQL.

use landscape::introspect;

const SCHEMA_RS: &str = "crates/landscape/src/schema.rs";

fn render(url: &str) -> anyhow::Result<String> {
    let mut connection = landscape::open(url)?;
    Ok(introspect::render_schema(&introspect::tables(&mut connection)?))
}

pub(crate) fn check(write: bool) -> anyhow::Result<()> {
    let path = crate::workspace_root().join(SCHEMA_RS);
    let committed = std::fs::read_to_string(&path)?;
    let from_sqlite = render("sqlite:///:memory:")?;
    if write && committed != from_sqlite {
        std::fs::write(&path, &from_sqlite)?;
        eprintln!("==> schema: rewrote {SCHEMA_RS} from the migrations");
    } else if committed != from_sqlite {
        anyhow::bail!("{SCHEMA_RS} disagrees with the SQLite migrations; run `cargo xtask schema --write`");
    }
    match test_support::PgServer::start() {
        Ok(server) => {
            let from_pg = render(&server.fresh_database())?;
            anyhow::ensure!(from_pg == from_sqlite, "the PostgreSQL migrations create a different schema than SQLite's");
            eprintln!("==> schema: ok (SQLite and PostgreSQL)");
        }
        Err(test_support::PgUnavailable::NoBinaries) => {
            eprintln!("==> schema: ok on SQLite; PostgreSQL SKIPPED (server binaries initdb/pg_ctl not found)");
        }
        Err(test_support::PgUnavailable::StartFailed(reason)) => anyhow::bail!("PostgreSQL could not be started: {reason}"),
    }
    Ok(())
}
