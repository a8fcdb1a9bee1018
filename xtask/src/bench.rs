//! `cargo xtask bench`: performance figures, always next to a baseline
//! measured in the same run on the same machine.
//!
//! - pipelines: the bench pipelines (`xtask/bench/pipelines`) run by the
//!   release `elspeth` binary on generated inputs: rows/s, peak RSS and audit
//!   DB size per input size, and rows/s against the same pipeline with its
//!   Landscape in memory (the ratio shows what durable auditing costs);
//! - export and explain: records/s and peak RSS of a signed export of each
//!   gate run, and the time `elspeth explain` takes for its middle row;
//! - recorder: audit records per second through the recorder in one unit of
//!   work, against the same inserts as plain SQL.
//!
//! `--quick` runs 10k rows only; `--full` adds 1M rows.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use contracts::records::Row as RowRecord;
use contracts::{Determinism, NodeId, NodeType};
use diesel::connection::SimpleConnection;
use landscape::recorder::NewNode;
use landscape::{DbConnection, Recorder};

/// Builds the release binaries, then measures in a release build of xtask.
pub(crate) fn run(args: &[String]) -> anyhow::Result<()> {
    let status = crate::cargo().args(["build", "--quiet", "--release", "-p", "cli"]).status()?;
    anyhow::ensure!(status.success(), "building the release elspeth binary failed");
    let mut command = crate::cargo();
    command.args(["run", "--quiet", "--release", "--package", "xtask", "--", "bench-inner"]).args(args);
    let status = command.status()?;
    anyhow::ensure!(status.success(), "benchmark failed ({status})");
    Ok(())
}

pub(crate) fn inner(args: &[String]) -> anyhow::Result<()> {
    let quick = args.iter().any(|a| a == "--quick");
    let full = args.iter().any(|a| a == "--full");
    let sizes: &[u64] = if quick {
        &[10_000]
    } else if full {
        &[10_000, 100_000, 1_000_000]
    } else {
        &[10_000, 100_000]
    };
    pipelines(sizes)?;
    recorder_records_per_second(if quick { 20_000 } else { 200_000 })?;
    Ok(())
}

fn bench_root() -> PathBuf {
    crate::workspace_root().join("target").join("bench")
}

fn generate_inputs(sizes: &[u64]) -> anyhow::Result<PathBuf> {
    let data = bench_root().join("data");
    let generator = crate::workspace_root().join("xtask/bench/generate_data.py");
    let mut command = Command::new("python3");
    command.arg(&generator).args(sizes.iter().map(ToString::to_string)).arg("--out-dir").arg(&data);
    let output = command.output()?;
    anyhow::ensure!(output.status.success(), "generating inputs failed: {}", String::from_utf8_lossy(&output.stderr));
    Ok(data)
}

struct Measurement {
    rows_per_second: f64,
    peak_rss_mb: f64,
    audit_db_mb: f64,
}

fn dir_size(path: &Path) -> u64 {
    std::fs::read_dir(path).map_or(0, |entries| {
        entries.flatten().map(|e| if e.path().is_dir() { dir_size(&e.path()) } else { e.metadata().map_or(0, |m| m.len()) }).sum()
    })
}

fn run_once(pipeline: &str, input: &Path, in_memory: bool) -> anyhow::Result<Measurement> {
    let dir = bench_root().join("runs").join(format!("{pipeline}-{}", if in_memory { "memory" } else { "file" }));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("output"))?;
    std::fs::copy(input, dir.join("input.csv"))?;
    let mut settings =
        std::fs::read_to_string(crate::workspace_root().join("xtask/bench/pipelines").join(format!("{pipeline}.yaml")))?;
    if in_memory {
        settings = settings.replace("url: sqlite:///audit.db", "url: 'sqlite:///:memory:'");
    }
    std::fs::write(dir.join("settings.yaml"), settings)?;
    let binary = crate::workspace_root().join("target/release/elspeth");
    let started = Instant::now();
    let output = Command::new(binary)
        .current_dir(&dir)
        .args(["run", "--settings", "settings.yaml", "--execute", "--format", "json"])
        .output()?;
    let elapsed = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        output.status.success(),
        "{pipeline} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let rows = summary["rows_read"].as_f64().unwrap_or(0.0);
    let audit_db_bytes: u64 =
        ["audit.db", "audit.db-wal"].iter().map(|f| std::fs::metadata(dir.join(f)).map_or(0, |m| m.len())).sum::<u64>()
            + dir_size(&dir.join(".elspeth"));
    Ok(Measurement {
        rows_per_second: rows / elapsed,
        peak_rss_mb: summary["peak_rss_bytes"].as_f64().unwrap_or(0.0) / 1_048_576.0,
        audit_db_mb: audit_db_bytes as f64 / 1_048_576.0,
    })
}

fn pipelines(sizes: &[u64]) -> anyhow::Result<()> {
    let data = generate_inputs(sizes)?;
    println!("pipeline gate (csv -> field_mapper -> gate -> 2 csv sinks), release build, whole process wall time");
    println!(
        "  {:>9} {:>10} {:>13} {:>10} {:>22} {:>16}",
        "rows", "rows/s", "peak RSS MB", "audit MB", "in-memory audit rows/s", "ratio file/mem"
    );
    let mut after_runs = Vec::new();
    let mut explain_baseline: Option<f64> = None;
    for size in sizes {
        let input = data.join(format!("input_{size}.csv"));
        let file = run_once("gate", &input, false)?;
        after_runs.push(export_and_explain(*size, &mut explain_baseline)?);
        let memory = run_once("gate", &input, true)?;
        println!(
            "  {:>9} {:>10.0} {:>13.1} {:>10.1} {:>22.0} {:>16.2}",
            size,
            file.rows_per_second,
            file.peak_rss_mb,
            file.audit_db_mb,
            memory.rows_per_second,
            file.rows_per_second / memory.rows_per_second
        );
    }
    println!("  reference (Python, 10k rows, same machine class): 49-59 rows/s, 190 MB peak RSS");
    println!("export of the gate run's audit trail (JSON Lines, signed), and explain of one row");
    for line in after_runs {
        println!("{line}");
    }
    Ok(())
}

/// Exports the audit trail of the gate run just made, then explains its
/// middle row; returns the report lines.
fn export_and_explain(size: u64, explain_baseline: &mut Option<f64>) -> anyhow::Result<String> {
    let dir = bench_root().join("runs").join("gate-file");
    let started = Instant::now();
    let output = Command::new(crate::workspace_root().join("target/release/elspeth"))
        .current_dir(&dir)
        .env("ELSPETH_SIGNING_KEY", "bench-key")
        .args(["export", "--run", "latest", "--database", "sqlite:///audit.db", "--output", "export.jsonl", "--sign"])
        .output()?;
    let elapsed = started.elapsed().as_secs_f64();
    anyhow::ensure!(output.status.success(), "export failed: {}", String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8_lossy(&output.stdout);
    let records: f64 =
        text.split_whitespace().skip_while(|w| !w.ends_with(':')).nth(1).and_then(|n| n.parse().ok()).unwrap_or(0.0);
    let rss = text.split("peak RSS ").nth(1).and_then(|t| t.split_whitespace().next()).unwrap_or("?");
    let explain_ms = explain_middle_row(&dir, size)?;
    let baseline = *explain_baseline.get_or_insert(explain_ms);
    Ok(format!(
        "  {size:>9} rows: {records:>10.0} records, {:>10.0} records/s, peak RSS {rss} MB; \
         explain of row {} {explain_ms:.0} ms (whole process, {:.2}x the smallest run's)",
        records / elapsed,
        size / 2,
        explain_ms / baseline
    ))
}

/// Wall time of `elspeth explain --row N/2 --format json` on the latest run.
fn explain_middle_row(dir: &Path, size: u64) -> anyhow::Result<f64> {
    let row = (size / 2).to_string();
    let started = Instant::now();
    let output = Command::new(crate::workspace_root().join("target/release/elspeth"))
        .current_dir(dir)
        .args(["explain", "--database", "sqlite:///audit.db", "--run", "latest", "--row", &row, "--format", "json"])
        .output()?;
    let elapsed = started.elapsed().as_secs_f64() * 1000.0;
    anyhow::ensure!(output.status.success(), "explain failed: {}", String::from_utf8_lossy(&output.stderr));
    Ok(elapsed)
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
    let connection: &mut DbConnection = plain.connection()?;
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
