//! `cargo xtask bench`: performance figures, always next to a baseline
//! measured in the same run on the same machine.
//!
//! - pipelines: the bench pipelines (`xtask/bench/pipelines`) run by the
//!   release `elspeth` binary on generated inputs: rows/s, peak RSS and audit
//!   DB size per input size, and rows/s against the same pipeline with its
//!   Landscape in memory (the ratio shows what durable auditing costs), and
//!   against its ceiling: the run's own audit records replayed as plain SQL,
//!   no engine (`ceiling.rs`; the ratio shows what the engine adds); the aggregation,
//!   fork/coalesce and gate + export pipelines on the same input, as ratios to
//!   the gate's rate and to their own ceilings (gate + export's adds the time
//!   of a standalone `elspeth export` of the same run). Up to 100k rows each pipeline runs three
//!   times, each run followed by its ceiling: the medians are reported, with
//!   the range of the run/ceiling ratios (this machine's runs vary by ±10–20%);
//! - export, verify and explain: records/s and peak RSS of a signed export of each
//!   gate run, and the time `elspeth explain` takes for its middle row;
//! - explorer: `elspeth serve` on each gate run: the p95 of 20 requests to
//!   each page (runs, run, a page of rows from the middle, the middle row's
//!   lineage, its token), and the first view of the run page;
//! - recorder: audit records per second through the recorder in one unit of
//!   work, against the same inserts as plain SQL;
//! - llm: the `llm` pipeline against `elspeth-chaosllm` (in this process, on
//!   127.0.0.1) at 50 ms latency, at pool sizes 1, 8, 32 and 64: rows/s
//!   against the ideal `pool_size / latency`, the same with the
//!   `stress_aimd` preset (15% 429s), and peak RSS at two row counts.
//!
//! - postgresql: the gate and fork pipelines with the Landscape on a
//!   PostgreSQL server the bench starts itself, against SQLite, and the gate
//!   ceiling (the gate run's records replayed as plain SQL) on both stores.
//!
//! `--quick` runs 10k rows only; `--full` adds 1M rows; `--llm-only` and
//! `--pg-only` run one part.

mod ceiling;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use contracts::records::Row as RowRecord;
use contracts::{Determinism, NodeId, NodeType};
use diesel::connection::SimpleConnection;
use landscape::recorder::NewNode;
use landscape::{DbConnection, Recorder};

/// The flags `cargo xtask bench` takes, with what each does.
const FLAGS: &[(&str, &str)] = &[
    ("--quick", "10k rows only, a short LLM pool run"),
    ("--full", "10k, 100k and 1M rows"),
    ("--pg-only", "gate and fork on a PostgreSQL server the bench starts, 20k rows"),
    ("--llm-only", "the LLM pool pipeline against elspeth-chaosllm"),
];

/// Builds the release binaries, then measures in a release build of xtask.
pub(crate) fn run(args: &[String]) -> anyhow::Result<()> {
    if let Some(unknown) = args.iter().find(|a| !FLAGS.iter().any(|(flag, _)| flag == a)) {
        let flags: Vec<String> = FLAGS.iter().map(|(flag, what)| format!("  {flag:<11} {what}")).collect();
        let usage = format!("usage: cargo xtask bench [FLAG]  (default: 10k and 100k rows)\n{}", flags.join("\n"));
        anyhow::ensure!(unknown == "--help" || unknown == "-h", "unknown flag {unknown}\n{usage}");
        println!("{usage}");
        return Ok(());
    }
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
    if args.iter().any(|a| a == "--llm-only") {
        return llm_pool(quick);
    }
    if args.iter().any(|a| a == "--pg-only") {
        let data = generate_inputs(&[20_000])?;
        println!("{}", postgresql(20_000, &data.join("input_20000.csv"))?);
        return Ok(());
    }
    pipelines(sizes)?;
    recorder_records_per_second(if quick { 20_000 } else { 200_000 })?;
    llm_pool(quick)
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
    rows: f64,
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
    run_on(pipeline, input, if in_memory { Store::Memory } else { Store::File })
}

/// Where a bench run keeps its Landscape.
enum Store {
    /// `audit.db` in the run directory.
    File,
    /// An in-memory SQLite database (no durability cost).
    Memory,
    /// A database on the bench's own PostgreSQL server.
    Postgresql(String),
}

fn run_on(pipeline: &str, input: &Path, store: Store) -> anyhow::Result<Measurement> {
    let label = match &store {
        Store::File => "file",
        Store::Memory => "memory",
        Store::Postgresql(_) => "postgresql",
    };
    let dir = bench_root().join("runs").join(format!("{pipeline}-{label}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("output"))?;
    std::fs::copy(input, dir.join("input.csv"))?;
    let mut settings =
        std::fs::read_to_string(crate::workspace_root().join("xtask/bench/pipelines").join(format!("{pipeline}.yaml")))?;
    match &store {
        Store::File => {}
        Store::Memory => settings = settings.replace("url: sqlite:///audit.db", "url: 'sqlite:///:memory:'"),
        Store::Postgresql(url) => settings = settings.replace("url: sqlite:///audit.db", &format!("url: '{url}'")),
    }
    std::fs::write(dir.join("settings.yaml"), settings)?;
    let (summary, elapsed) = run_settings(&dir, pipeline)?;
    let rows = summary["rows_read"].as_f64().unwrap_or(0.0);
    let audit_db_bytes: u64 =
        ["audit.db", "audit.db-wal"].iter().map(|f| std::fs::metadata(dir.join(f)).map_or(0, |m| m.len())).sum::<u64>()
            + dir_size(&dir.join("audit.payloads"))
            + dir_size(&dir.join(".elspeth"));
    Ok(Measurement {
        rows,
        rows_per_second: rows / elapsed,
        peak_rss_mb: summary["peak_rss_bytes"].as_f64().unwrap_or(0.0) / 1_048_576.0,
        audit_db_mb: audit_db_bytes as f64 / 1_048_576.0,
    })
}

/// Runs `dir/settings.yaml` with the release binary: its JSON summary and
/// the whole process's wall time in seconds.
fn run_settings(dir: &Path, what: &str) -> anyhow::Result<(serde_json::Value, f64)> {
    let started = Instant::now();
    let output = Command::new(crate::workspace_root().join("target/release/elspeth"))
        .current_dir(dir)
        .args(["run", "--settings", "settings.yaml", "--execute", "--format", "json"])
        .output()?;
    let elapsed = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        output.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok((serde_json::from_slice(&output.stdout)?, elapsed))
}

fn pipelines(sizes: &[u64]) -> anyhow::Result<()> {
    let data = generate_inputs(sizes)?;
    println!("pipeline gate (csv -> field_mapper -> gate -> 2 csv sinks), release build, whole process wall time");
    println!(
        "  {:>9} {:>10} {:>13} {:>10} {:>22} {:>16} {:>16} {:>18}",
        "rows",
        "rows/s",
        "peak RSS MB",
        "audit MB",
        "in-memory audit rows/s",
        "ratio file/mem",
        "SQLite ceiling",
        "ratio run/ceiling"
    );
    let mut after_runs = Vec::new();
    let mut shapes = Vec::new();
    let mut explain_baseline: Option<f64> = None;
    for size in sizes {
        let input = data.join(format!("input_{size}.csv"));
        let gate = Repeated::measure("gate", &input, repeats(*size))?;
        shapes.push(other_shapes(*size, &input, gate.rows_per_second())?);
        after_runs.push(export_and_explain(*size, &mut explain_baseline)?);
        let memory = run_once("gate", &input, true)?;
        println!(
            "  {:>9} {:>10.0} {:>13.1} {:>10.1} {:>22.0} {:>16.2} {:>16.0} {:>18.2}{}",
            size,
            gate.rows_per_second(),
            gate.peak_rss_mb(),
            gate.audit_db_mb(),
            memory.rows_per_second,
            gate.rows_per_second() / memory.rows_per_second,
            gate.ceiling(),
            gate.ratio(),
            gate.spread()
        );
    }
    println!("  reference (Python, 10k rows, same machine class): 49-59 rows/s, 190 MB peak RSS");
    println!(
        "  ceiling: the records of the run's own Landscape written again into a fresh one as plain multi-row SQL, \
         one transaction per 1000 source rows (a recorder unit: the log checkpointed as in a run), no engine, \
         no payloads (only the statements and commits are timed)"
    );
    println!("other pipeline shapes, same input, against the gate run of the same size");
    for line in shapes {
        println!("{line}");
    }
    if let Some(size) = sizes.iter().copied().find(|s| *s >= 10_000) {
        println!("{}", postgresql(size, &data.join(format!("input_{size}.csv")))?);
    }
    println!("export of the gate run's audit trail (JSON Lines, signed), and explain of one row");
    for line in after_runs {
        println!("{line}");
    }
    Ok(())
}

/// Runs of a pipeline on a Landscape file per input size: three up to 100k
/// rows (this machine's runs vary by ±10–20%), one beyond.
fn repeats(size: u64) -> usize {
    if size <= 100_000 {
        3
    } else {
        1
    }
}

/// Runs of one pipeline on a Landscape file, each followed by its ceiling
/// (so a run and its ceiling see the same machine): the figures reported
/// are medians, the peak RSS the largest.
struct Repeated {
    runs: Vec<Measurement>,
    ceilings: Vec<f64>,
}

impl Repeated {
    fn measure(pipeline: &str, input: &Path, repeats: usize) -> anyhow::Result<Repeated> {
        let mut repeated = Repeated { runs: Vec::new(), ceilings: Vec::new() };
        for _ in 0..repeats.max(1) {
            let run = run_once(pipeline, input, false)?;
            repeated.ceilings.push(ceiling_of_run(pipeline, run.rows)?);
            repeated.runs.push(run);
        }
        Ok(repeated)
    }

    fn ratios(&self) -> Vec<f64> {
        self.runs.iter().zip(&self.ceilings).map(|(run, ceiling)| run.rows_per_second / ceiling).collect()
    }

    fn rows_per_second(&self) -> f64 {
        median(self.runs.iter().map(|run| run.rows_per_second).collect())
    }

    fn ceiling(&self) -> f64 {
        median(self.ceilings.clone())
    }

    /// The median of the runs' ratios to their own ceilings.
    fn ratio(&self) -> f64 {
        median(self.ratios())
    }

    /// ` [min-max over N]` of the ratios, when there was more than one run.
    fn spread(&self) -> String {
        let ratios = self.ratios();
        let (min, max) = ratios.iter().fold((f64::MAX, f64::MIN), |(min, max), r| (min.min(*r), max.max(*r)));
        if ratios.len() > 1 {
            format!(" [{min:.2}-{max:.2} over {}]", ratios.len())
        } else {
            String::new()
        }
    }

    fn peak_rss_mb(&self) -> f64 {
        self.runs.iter().map(|run| run.peak_rss_mb).fold(0.0, f64::max)
    }

    fn audit_db_mb(&self) -> f64 {
        self.runs.last().map_or(0.0, |run| run.audit_db_mb)
    }
}

/// The middle value (the mean of the middle two for an even count).
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => f64::midpoint(values[n / 2 - 1], values[n / 2]),
    }
}

/// The ceiling of the run of `pipeline` just made, in rows/s: its records
/// as plain SQL (`ceiling.rs`). For `gate_export`, which exports its trail
/// when the run completes, the time of `elspeth export` on the same
/// Landscape is added: the export's own cost has no cheaper baseline than
/// the exporter (its rate is reported on its own below), so this ratio shows
/// what exporting at the end of a run adds to the run and a later export.
fn ceiling_of_run(pipeline: &str, rows: f64) -> anyhow::Result<f64> {
    let records_as_sql = ceiling_of(&format!("{pipeline}-file"), None)?;
    if pipeline != "gate_export" {
        return Ok(records_as_sql);
    }
    let dir = bench_root().join("runs").join("gate_export-file");
    let started = Instant::now();
    let output = Command::new(crate::workspace_root().join("target/release/elspeth"))
        .current_dir(&dir)
        .args(["export", "--run", "latest", "--database", "sqlite:///audit.db", "--output", "ceiling_export.jsonl"])
        .output()?;
    let export_seconds = started.elapsed().as_secs_f64();
    anyhow::ensure!(output.status.success(), "export failed: {}", String::from_utf8_lossy(&output.stderr));
    Ok(rows / (rows / records_as_sql + export_seconds))
}

/// The aggregation, fork/coalesce and gate + export pipelines on the same
/// input: rows/s, peak RSS and the ratio to the gate pipeline's rate
/// measured just before.
fn other_shapes(size: u64, input: &Path, gate_rows_per_second: f64) -> anyhow::Result<String> {
    let mut lines = Vec::new();
    for pipeline in ["agg", "fork", "gate_export"] {
        let run = Repeated::measure(pipeline, input, repeats(size))?;
        lines.push(format!(
            "  {size:>9} rows  {pipeline:<11} {:>7.0} rows/s ({:.2}x gate), {:.2} of its ceiling {:.0}{}, peak RSS {:.1} MB, audit {:.1} MB",
            run.rows_per_second(),
            run.rows_per_second() / gate_rows_per_second,
            run.ratio(),
            run.ceiling(),
            run.spread(),
            run.peak_rss_mb(),
            run.audit_db_mb()
        ));
    }
    Ok(lines.join("\n"))
}

/// The gate and fork pipelines with their Landscape on a PostgreSQL server
/// the bench starts on 127.0.0.1 (`test-support`: as the tests run it, fsync
/// off), against the same pipelines on a SQLite file measured just before.
fn postgresql(size: u64, input: &Path) -> anyhow::Result<String> {
    let server = match test_support::PgServer::start() {
        Ok(server) => server,
        Err(error) => return Ok(format!("PostgreSQL: skipped ({error:?})")),
    };
    let mut line = format!("PostgreSQL Landscape (own server), {size} rows:");
    for pipeline in ["gate", "fork"] {
        let sqlite = run_on(pipeline, input, Store::File)?;
        if pipeline == "gate" {
            let sqlite_ceiling = ceiling_of("gate-file", None)?;
            let pg_ceiling = ceiling_of("gate-file", Some(&server.fresh_database()))?;
            let _ = write!(
                line,
                "  gate ceiling {pg_ceiling:.0} rows/s ({:.2}x SQLite's {sqlite_ceiling:.0});",
                pg_ceiling / sqlite_ceiling
            );
        }
        let pg = run_on(pipeline, input, Store::Postgresql(server.fresh_database()))?;
        let _ = write!(
            line,
            "  {pipeline} {:.0} rows/s ({:.2}x the SQLite file's {:.0}), peak RSS {:.1} MB;",
            pg.rows_per_second,
            pg.rows_per_second / sqlite.rows_per_second,
            sqlite.rows_per_second,
            pg.peak_rss_mb
        );
    }
    Ok(line)
}

/// The signing key of the bench's exports (long enough to be accepted).
const BENCH_KEY: &str = "bench-signing-key-not-a-secret";

/// Verifies the export just written: records/s and the verifier's peak RSS
/// (it streams the file, so this must not grow with the run).
fn verify_export(dir: &Path) -> anyhow::Result<(f64, f64)> {
    let started = Instant::now();
    let output = Command::new(crate::workspace_root().join("target/release/elspeth"))
        .current_dir(dir)
        .env("ELSPETH_SIGNING_KEY", BENCH_KEY)
        .args(["verify", "export.jsonl", "--format", "json"])
        .output()?;
    let elapsed = started.elapsed().as_secs_f64();
    anyhow::ensure!(output.status.success(), "verify failed: {}", String::from_utf8_lossy(&output.stdout));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let records = report["records"].as_f64().unwrap_or(0.0);
    Ok((records / elapsed, report["peak_rss_bytes"].as_f64().unwrap_or(0.0) / 1_048_576.0))
}

/// Exports the audit trail of the gate run just made, verifies it, then
/// explains its middle row; returns the report lines.
fn export_and_explain(size: u64, explain_baseline: &mut Option<f64>) -> anyhow::Result<String> {
    let dir = bench_root().join("runs").join("gate-file");
    let started = Instant::now();
    let output = Command::new(crate::workspace_root().join("target/release/elspeth"))
        .current_dir(&dir)
        .env("ELSPETH_SIGNING_KEY", BENCH_KEY)
        .args(["export", "--run", "latest", "--database", "sqlite:///audit.db", "--output", "export.jsonl", "--sign"])
        .output()?;
    let elapsed = started.elapsed().as_secs_f64();
    anyhow::ensure!(output.status.success(), "export failed: {}", String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8_lossy(&output.stdout);
    let records: f64 =
        text.split_whitespace().skip_while(|w| !w.ends_with(':')).nth(1).and_then(|n| n.parse().ok()).unwrap_or(0.0);
    let rss = text.split("peak RSS ").nth(1).and_then(|t| t.split_whitespace().next()).unwrap_or("?");
    let (verify_rate, verify_rss) = verify_export(&dir)?;
    let explain_ms = explain_middle_row(&dir, size)?;
    let baseline = *explain_baseline.get_or_insert(explain_ms);
    let pages = explorer_pages(&dir, size)?;
    Ok(format!(
        "  {size:>9} rows: {records:>10.0} records, export {:>8.0} records/s, peak RSS {rss} MB; \
         verify {verify_rate:>8.0} records/s, peak RSS {verify_rss:.1} MB; \
         explain of row {} {explain_ms:.0} ms (whole process, {:.2}x the smallest run's)\n  {size:>9} rows: explorer p95 {pages}",
        records / elapsed,
        size / 2,
        explain_ms / baseline
    ))
}

/// One GET over a fresh connection: the response's status line and body.
fn http_get(address: &str, path: &str) -> anyhow::Result<(String, String)> {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(address)?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response.lines().next().unwrap_or_default().to_owned();
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    Ok((status, body))
}

/// `elspeth serve` on the run in `dir`: the first view of the run page and
/// the p95 of 20 requests to each page, in ms.
fn explorer_pages(dir: &Path, size: u64) -> anyhow::Result<String> {
    use std::io::BufRead as _;
    struct Killed(std::process::Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Command::new(crate::workspace_root().join("target/release/elspeth"))
        .current_dir(dir)
        .args(["serve", "--database", "sqlite:///audit.db", "--bind", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().ok_or_else(|| anyhow::format_err!("no stdout"))?;
    let _server = Killed(child);
    let mut line = String::new();
    std::io::BufReader::new(stdout).read_line(&mut line)?;
    let address = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .ok_or_else(|| anyhow::format_err!("serve printed no address: {line}"))?
        .to_owned();
    let started = Instant::now();
    let (_, runs) = http_get(&address, "/")?;
    let run = runs.split("href=\"/runs/").nth(1).and_then(|r| r.split('"').next()).unwrap_or_default().to_owned();
    let (status, _) = http_get(&address, &format!("/runs/{run}"))?;
    let first_view = started.elapsed().as_secs_f64() * 1000.0;
    anyhow::ensure!(status.contains("200"), "run page: {status}");
    let middle = size / 2;
    let (_, row) = http_get(&address, &format!("/runs/{run}/rows/{middle}"))?;
    let token = row.split("href=\"/tokens/").nth(1).and_then(|r| r.split('"').next()).unwrap_or_default().to_owned();
    let mut report = String::new();
    for (name, path) in [
        ("runs", "/".to_owned()),
        ("run", format!("/runs/{run}")),
        ("rows", format!("/runs/{run}/rows?offset={middle}")),
        ("row", format!("/runs/{run}/rows/{middle}")),
        ("token", format!("/tokens/{token}")),
    ] {
        let mut times = Vec::with_capacity(20);
        for _ in 0..20 {
            let started = Instant::now();
            let (status, _) = http_get(&address, &path)?;
            times.push(started.elapsed().as_secs_f64() * 1000.0);
            anyhow::ensure!(status.contains("200"), "{path}: {status}");
        }
        times.sort_by(f64::total_cmp);
        let _ = write!(report, "{name} {:.1} ms, ", times[18]);
    }
    let _ = write!(
        report,
        "first view of the runs and run pages {first_view:.0} ms (their summaries are computed once per ended run)"
    );
    Ok(report)
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

/// The ceiling of the run in `runs/<run>`: its records replayed as plain
/// SQL into a fresh SQLite file (`target_url: None`) or the given Landscape
/// (see `ceiling`), in source rows per second.
fn ceiling_of(run: &str, target_url: Option<&str>) -> anyhow::Result<f64> {
    let source = bench_root().join("runs").join(run).join("audit.db");
    let dir = tempfile::tempdir_in(bench_root())?;
    let file = format!("sqlite:///{}", dir.path().join("ceiling.db").display());
    ceiling::rows_per_second(&source, target_url.unwrap_or(&file))
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

/// The fake server's latency in the llm bench.
const LLM_LATENCY_MS: f64 = 50.0;

/// Runs the llm pipeline with `pool` rows in flight on `rows` rows against
/// a fake server built from `overrides`.
fn run_llm(pool: usize, rows: usize, overrides: serde_json::Value) -> anyhow::Result<(Measurement, u64)> {
    let mut config = chaosllm::config::preset("silent")?;
    chaosllm::config::merge(
        &mut config,
        serde_json::json!({"server": {"host": "127.0.0.1", "port": 0}, "response": {"mode": "echo"},
                           "latency": {"base_ms": LLM_LATENCY_MS, "jitter_ms": 0}, "seed": 5}),
    );
    chaosllm::config::merge(&mut config, overrides);
    let server = chaosllm::start(chaosllm::Config::from_value(config, "bench")?)?;
    let dir = bench_root().join("runs").join(format!("llm-{pool}-{rows}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("output"))?;
    let mut input = String::from("id,text\n");
    for id in 0..rows {
        let _ = writeln!(input, "{id},customer message number {id} about an order");
    }
    std::fs::write(dir.join("input.csv"), input)?;
    let settings = std::fs::read_to_string(crate::workspace_root().join("xtask/bench/pipelines/llm.yaml"))?
        .replace("BASE_URL", &server.base_url())
        .replace("POOL_SIZE", &pool.to_string());
    std::fs::write(dir.join("settings.yaml"), settings)?;
    let (summary, elapsed) = run_settings(&dir, &format!("llm pool {pool}"))?;
    let answered = std::fs::read_to_string(dir.join("output/answers.jsonl"))?.lines().count() as u64;
    let rows_read = summary["rows_read"].as_f64().unwrap_or(0.0);
    Ok((
        Measurement {
            rows: rows_read,
            rows_per_second: rows_read / elapsed,
            peak_rss_mb: summary["peak_rss_bytes"].as_f64().unwrap_or(0.0) / 1_048_576.0,
            audit_db_mb: dir_size(&dir) as f64 / 1_048_576.0,
        },
        answered,
    ))
}

fn llm_pool(quick: bool) -> anyhow::Result<()> {
    println!("pipeline llm (csv -> llm -> json) against elspeth-chaosllm at {LLM_LATENCY_MS} ms latency, release build");
    println!(
        "  {:>6} {:>7} {:>10} {:>12} {:>14} {:>13} {:>9}",
        "pool", "rows", "rows/s", "ideal rows/s", "ratio to ideal", "peak RSS MB", "answered"
    );
    let scale = if quick { 1 } else { 2 };
    let mut last_ideal = 0.0;
    for pool in [1_usize, 8, 32, 64] {
        let rows = (pool * 40 * scale).max(50);
        let (run, answered) = run_llm(pool, rows, serde_json::json!({}))?;
        last_ideal = pool as f64 / (LLM_LATENCY_MS / 1000.0);
        println!(
            "  {:>6} {:>7} {:>10.0} {:>12.0} {:>14.2} {:>13.1} {:>9}",
            pool,
            rows,
            run.rows_per_second,
            last_ideal,
            run.rows_per_second / last_ideal,
            run.peak_rss_mb,
            answered
        );
    }
    let rows = 64 * 40 * scale;
    let (stress, answered) = run_llm(64, rows, chaosllm::config::preset("stress_aimd")?)?;
    println!(
        "  stress_aimd (15% 429s), pool 64, {rows} rows: {:.0} rows/s, {:.2} of ideal, {answered} of {rows} answered, peak RSS {:.1} MB",
        stress.rows_per_second,
        stress.rows_per_second / last_ideal,
        stress.peak_rss_mb
    );
    for factor in [4, 16] {
        let (long, _) = run_llm(64, rows * factor, serde_json::json!({}))?;
        println!(
            "  pool 64 on {} rows: {:.0} rows/s, peak RSS {:.1} MB (bounded: the SQLite caches fill, then stop)",
            rows * factor,
            long.rows_per_second,
            long.peak_rss_mb
        );
    }
    println!("  reference (Python, same machine class, 50 ms): 7.1 rows/s without rate limit, 1.06 rows/s with its default");
    Ok(())
}
