//! `cargo xtask bench`: performance figures, always as a ratio against a
//! baseline measured in the same run on the same machine.
//!
//! The measurements run in a release build of xtask (`bench-inner`), started
//! by `cargo xtask bench`.

use std::fmt::Write as _;
use std::time::Instant;

use contracts::records::Row as RowRecord;
use contracts::{Determinism, NodeId, NodeType};
use diesel::connection::SimpleConnection;
use landscape::recorder::NewNode;
use landscape::{DbConnection, Recorder};

/// Re-runs xtask in release mode to measure.
pub(crate) fn run(args: &[String]) -> anyhow::Result<()> {
    let mut command = crate::cargo();
    command.args(["run", "--quiet", "--release", "--package", "xtask", "--", "bench-inner"]).args(args);
    let status = command.status()?;
    anyhow::ensure!(status.success(), "benchmark failed ({status})");
    Ok(())
}

pub(crate) fn inner(args: &[String]) -> anyhow::Result<()> {
    let quick = args.iter().any(|a| a == "--quick");
    recorder_records_per_second(if quick { 20_000 } else { 200_000 })?;
    Ok(())
}

fn setup(n_label: &str) -> anyhow::Result<(tempfile::TempDir, Recorder, RowRecord)> {
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite:///{}", dir.path().join(format!("{n_label}.db")).display());
    let mut recorder = Recorder::open(&url, None)?;
    let run = recorder.begin_run(&serde_json::json!({"bench": n_label}), None)?;
    let source = NodeId::parse("source_bench")?;
    recorder.register_node(
        &run.run_id,
        &NewNode {
            node_id: &source,
            plugin_name: "bench",
            node_type: NodeType::Source,
            plugin_version: "1",
            determinism: Determinism::IoRead,
            config: &serde_json::json!({}),
            sequence_in_pipeline: None,
            schema_mode: None,
            schema_fields: None,
        },
    )?;
    let mut data = contracts::Row::new();
    data.insert("id".into(), contracts::Value::Integer(1));
    let row = recorder.create_row(&run.run_id, &source, 0, &contracts::Value::Object(data))?;
    Ok((dir, recorder, row))
}

/// Token inserts through the recorder inside one unit of work, against the
/// same inserts as plain SQL text (multi-row `INSERT … VALUES`, 500 per
/// statement) in one transaction on a fresh database.
fn recorder_records_per_second(n: usize) -> anyhow::Result<()> {
    let (_dir, mut recorder, row) = setup("recorder")?;
    let started = Instant::now();
    recorder.begin_unit()?;
    for _ in 0..n {
        recorder.create_token(&row)?;
    }
    recorder.commit_unit()?;
    let recorder_rate = n as f64 / started.elapsed().as_secs_f64();

    let (_dir2, mut plain, row2) = setup("plain")?;
    let started = Instant::now();
    let connection: &mut DbConnection = plain.connection();
    let DbConnection::Sqlite(sqlite) = connection else { anyhow::bail!("the benchmark runs on SQLite") };
    sqlite.batch_execute("BEGIN")?;
    let created = contracts::time::now().naive_utc().format("%Y-%m-%d %H:%M:%S%.6f").to_string();
    let mut remaining = n;
    while remaining > 0 {
        let chunk = remaining.min(500);
        let mut sql = String::from("INSERT INTO tokens (token_id, row_id, run_id, created_at) VALUES ");
        for idx in 0..chunk {
            if idx > 0 {
                sql.push(',');
            }
            let _ = write!(sql, "('{}','{}','{}','{}')", contracts::new_uuid_hex(), row2.row_id, row2.run_id, created);
        }
        sqlite.batch_execute(&sql)?;
        remaining -= chunk;
    }
    sqlite.batch_execute("COMMIT")?;
    let plain_rate = n as f64 / started.elapsed().as_secs_f64();
    println!("recorder: audit records written in one unit of work (SQLite, {n} token inserts)");
    println!("  recorder        {recorder_rate:>12.0} records/s");
    println!("  plain SQL       {plain_rate:>12.0} records/s  (multi-row INSERT text, one transaction)");
    println!("  ratio           {:>12.2}", recorder_rate / plain_rate);
    Ok(())
}
