//! `elspeth`: run, validate, explain and export auditable pipelines.
//!
//! A thin wrapper over engine operations: every command parses its
//! arguments, calls into `engine` / `landscape`, and renders the result for a
//! human or, with `--format json`, for a script.
#![forbid(unsafe_code)]

mod explain;
mod export;
mod landscape_args;
mod mcp;
mod plugins_list;
mod purge;
mod run;
mod runs;
mod serve;
mod validate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// The version `--version` prints: the workspace version and, when the build
/// knew it, the git commit it was built from (see `build.rs`).
const VERSION: &str = env!("ELSPETH_VERSION");

/// Auditable Sense/Decide/Act pipelines.
///
/// ELSPETH runs a pipeline described by a settings.yaml (one source,
/// transforms, gates, aggregations, forks/coalesces and sinks) and records
/// every row, token, node visit, routing decision and outcome in the
/// Landscape audit database, so any output can be explained back to its
/// source row.
///
/// Start with `elspeth validate --settings examples/threshold_gate/settings.yaml`.
#[derive(Debug, Parser)]
#[command(name = "elspeth", version = VERSION, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Output style for commands that report results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    /// Readable text.
    Text,
    /// One JSON document on stdout, for scripts.
    Json,
}

/// Export file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ExportFormat {
    /// JSON Lines, canonical JSON per record: the verifiable format.
    Jsonl,
    /// One CSV file per record type in a directory.
    Csv,
}

impl ExportFormat {
    fn as_str(self) -> &'static str {
        match self {
            ExportFormat::Jsonl => "jsonl",
            ExportFormat::Csv => "csv",
        }
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check a settings file: parse it, build and validate the pipeline graph
    /// exactly as `run` would, and print the graph (nodes, edges, steps).
    ///
    /// Exits 0 when the pipeline is valid, 1 when it is not (every problem is
    /// listed with file, line, key and what was expected).
    Validate {
        /// The pipeline's settings.yaml.
        #[arg(long, short)]
        settings: PathBuf,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Run a pipeline and record its audit trail in the Landscape.
    ///
    /// Without --execute this is a dry run: the pipeline is validated exactly
    /// as a run would build it, and nothing is read or written.
    ///
    /// External calls (the `llm` transform) are live unless --replay-from
    /// answers them from an earlier run's recordings (no request is sent;
    /// outputs are those of the recorded run) or --verify-against makes them
    /// live and compares each answer with its recording.
    ///
    /// When `landscape.export` is enabled, a completed run's audit trail is
    /// exported before the summary, which reports it (`export` in JSON).
    ///
    /// Exit codes: 0 completed, 1 invalid settings, failed run or failed
    /// export, 3 interrupted (Ctrl-C / SIGTERM; resumable, the resume command is
    /// printed), 4 the audit trail itself could not be opened or written, 5
    /// completed but every row failed (none reached a sink), 6 with
    /// --fail-on-mismatch: a verified answer differed from its recording.
    /// With --format json, stdout holds exactly one JSON document whatever
    /// happens.
    Run {
        /// The pipeline's settings.yaml.
        #[arg(long, short)]
        settings: PathBuf,
        /// Really run (otherwise: validate and stop).
        #[arg(long)]
        execute: bool,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
        /// Source rows per audit transaction and sink write.
        #[arg(long, default_value_t = 1000)]
        chunk_size: usize,
        #[command(flatten)]
        calls: run::CallModeArgs,
    },
    /// Resume a run that was interrupted (Ctrl-C) or crashed (its process is
    /// gone while it still says running), from its last checkpoint:
    /// sink files are cut back to their checkpointed length, aggregation
    /// buffers, pending batches and coalesce entries are restored, and the
    /// source is read on from where the run stopped. The outputs end up as an
    /// uninterrupted run's would, each row once.
    ///
    /// Refused with a clear message: a run whose process is still alive, a
    /// completed or failed run, a settings file that differs from the run's,
    /// an input file whose already-read rows changed.
    ///
    /// Exit codes as `run`.
    Resume {
        /// Run id, or `latest`.
        run: String,
        /// The pipeline's settings.yaml, unchanged since the run began.
        #[arg(long, short)]
        settings: PathBuf,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
        /// Source rows per audit transaction and sink write.
        #[arg(long, default_value_t = 1000)]
        chunk_size: usize,
    },
    /// Export a run's whole audit trail, in a total deterministic order.
    ///
    /// Every record type with every field, then a manifest whose final hash
    /// chains every record. The same run always exports to the same bytes.
    /// Only a signed export proves who wrote it: sign exports that leave your
    /// hands, and keep the key apart from the file.
    ///
    /// Example: ELSPETH_SIGNING_KEY=... elspeth export --run latest --database sqlite:///audit.db --output trail.jsonl --sign
    Export {
        /// Run id, or `latest`.
        #[arg(long)]
        run: String,
        /// The Landscape URL (sqlite:///path.db or postgresql://...).
        #[arg(long)]
        database: String,
        #[arg(long, value_enum, default_value = "jsonl")]
        format: ExportFormat,
        /// Output file (jsonl) or directory (csv).
        #[arg(long)]
        output: PathBuf,
        /// Sign every record and the manifest with HMAC-SHA256, keyed by the
        /// secret in the ELSPETH_SIGNING_KEY environment variable (at least
        /// 16 bytes). A signed export can be verified by anyone holding the
        /// key; an unsigned one only shows it is consistent with itself.
        #[arg(long)]
        sign: bool,
    },
    /// Explain an output: the lineage of a row or token back to its source
    /// row, as a tree — every node it visited (with input and output hashes),
    /// each routing decision and why, calls, batch membership and the flush
    /// that consumed it, fork/join/expand parents and siblings, errors, the
    /// outcome and the artifact it went into.
    ///
    /// `--row N` explains every output of source row N (a forked row has
    /// several; `--sink` keeps the one at that sink); `--token ID` one token.
    ///
    /// Example: elspeth explain --settings examples/threshold_gate/settings.yaml --run latest --row 2
    Explain {
        #[command(flatten)]
        landscape: landscape_args::LandscapeArgs,
        /// Run id, or `latest`.
        #[arg(long, short)]
        run: String,
        /// The source row: its number as `explain` and the sinks show it
        /// (row_index, from 0), or its row id.
        #[arg(long, conflicts_with = "token", required_unless_present = "token")]
        row: Option<String>,
        /// A token id (from an earlier explain or an export).
        #[arg(long, short)]
        token: Option<String>,
        /// With --row: only the output that reached this sink.
        #[arg(long, requires = "row")]
        sink: Option<String>,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
        /// Shorthand for --format json.
        #[arg(long)]
        json: bool,
        /// Also show each visit's node id, state id and recorded step (the
        /// text names nodes as the settings do; JSON always has every id).
        #[arg(long)]
        ids: bool,
    },
    /// List the runs of a Landscape: status (a `running` run whose process is
    /// gone is shown as interrupted, resumable), times, row and outcome
    /// counts, reproducibility grade and export status.
    Runs {
        #[command(flatten)]
        landscape: landscape_args::LandscapeArgs,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Delete stored payloads (source rows, call requests and responses,
    /// routing reasons, operation data) of completed and failed runs that
    /// ended more than N days ago. Running and interrupted runs are never
    /// touched; payloads shared with other runs are kept; every hash stays,
    /// and explain marks purged data. A run that loses recorded responses
    /// its replay needs drops to reproducibility grade attributable_only.
    Purge {
        #[command(flatten)]
        landscape: landscape_args::LandscapeArgs,
        /// Keep payloads of runs that ended less than N days ago (0: purge
        /// every ended run).
        #[arg(long)]
        retention_days: u32,
        /// Only report what would be deleted.
        #[arg(long)]
        dry_run: bool,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Serve the Landscape to an AI assistant over the Model Context Protocol
    /// (stdio), read-only: 25 tools to list runs, summarise them, explain any
    /// output, analyse errors, performance and calls, and run one SELECT.
    ///
    /// The database is opened read-only (SQLite read-only mode; PostgreSQL
    /// read-only transactions) and nothing is ever written. Register it with
    /// an MCP client as the command `elspeth mcp --database URL`.
    ///
    /// Example: elspeth mcp --database sqlite:///examples/threshold_gate/runs/audit.db
    Mcp {
        #[command(flatten)]
        landscape: landscape_args::LandscapeArgs,
    },
    /// Browse the Landscape in a web browser, read-only: the runs, each run's
    /// pipeline drawn as a graph with counts, its errors, calls and settings,
    /// and the plain-language lineage of any row or token, with a signed
    /// export download (signed when ELSPETH_SIGNING_KEY is set).
    ///
    /// Pages have stable URLs to cite: /runs/RUN, /runs/RUN/rows/N,
    /// /tokens/TOKEN. Only GET is served; nothing is ever written. Listening
    /// anywhere but loopback requires --token (sent as a bearer token).
    ///
    /// Example: elspeth serve --database sqlite:///examples/threshold_gate/runs/audit.db
    Serve {
        #[command(flatten)]
        landscape: landscape_args::LandscapeArgs,
        /// Address and port to listen on (port 0: any free port, printed at start).
        #[arg(long, default_value = "127.0.0.1:8765")]
        bind: std::net::SocketAddr,
        /// Require `Authorization: Bearer TOKEN` on every request (mandatory
        /// when --bind is not a loopback address).
        #[arg(long)]
        token: Option<String>,
    },
    /// The built-in plugins.
    Plugins {
        #[command(subcommand)]
        command: PluginsCommand,
    },
    /// Verify a JSON Lines export offline: every record's signature, the
    /// chain over them, the manifest and the counts. Exits 0 when valid, 2
    /// naming the first problem when a record was edited, deleted, inserted
    /// or reordered. The file is read as a stream (memory stays small).
    ///
    /// A signed export is verified with the key in ELSPETH_SIGNING_KEY. When
    /// a key is set, an unsigned export is refused: a stripped signature is a
    /// forgery's first step. Without a key, an unsigned export verifies only
    /// with --allow-unsigned, and the result says UNSIGNED.
    ///
    /// Example: ELSPETH_SIGNING_KEY=... elspeth verify trail.jsonl
    Verify {
        /// The JSON Lines export to check (as written by `elspeth export`).
        path: PathBuf,
        /// Accept an unsigned export when no key is set: its hash chain then
        /// shows only that the file is consistent with itself, not who wrote it.
        #[arg(long)]
        allow_unsigned: bool,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
}

#[derive(Debug, Subcommand)]
enum PluginsCommand {
    /// List the built-in plugins with their determinism (recorded on every
    /// node, it decides a run's reproducibility grade) and their options.
    List {
        /// Only plugins of this kind.
        #[arg(long, short = 't', value_enum)]
        r#type: Option<plugins_list::KindFilter>,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
}

/// jemalloc, not glibc's malloc: the engine, the recorder's flush thread, the
/// payload writer and the WAL checkpointer allocate and free across threads,
/// where it is faster (1M gate rows in the same time with a smaller payload
/// cache; fork/coalesce 18% faster) at the same peak RSS (`docs/ARCHITECTURE.md`, session 10).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Validate { settings, format } => validate::run(&settings, format),
        Command::Run { settings, execute, format, chunk_size, calls } => {
            let mode = if execute { run::Mode::Run } else { run::Mode::DryRun };
            run::run(&settings, mode, format, chunk_size, &calls)
        }
        Command::Resume { run, settings, format, chunk_size } => {
            run::run(&settings, run::Mode::Resume(run), format, chunk_size, &run::CallModeArgs::default())
        }
        Command::Export { run, database, format, output, sign } => export::export(&run, &database, format, &output, sign),
        Command::Verify { path, allow_unsigned, format } => export::verify(&path, allow_unsigned, format),
        Command::Explain { landscape, run, row, token, sink, format, json, ids } => {
            let format = if json { Format::Json } else { format };
            explain::explain(&landscape, &run, &explain::Target { ids, row, token, sink }, format)
        }
        Command::Mcp { landscape } => {
            landscape.locate().and_then(|(url, payloads)| mcp::serve(&url, payloads)).map(|()| ExitCode::SUCCESS)
        }
        Command::Serve { landscape, bind, token } => landscape
            .locate()
            .and_then(|(url, payloads)| serve::serve(&url, payloads, serve::ServeOptions { bind, token }))
            .map(|()| ExitCode::SUCCESS),
        Command::Plugins { command: PluginsCommand::List { r#type, format } } => plugins_list::list(r#type, format),
        Command::Runs { landscape, format } => runs::runs(&landscape, format),
        Command::Purge { landscape, retention_days, dry_run, format } => {
            purge::purge(&landscape, retention_days, dry_run, format)
        }
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(1)
        }
    }
}

/// Writes `text` to stdout. A reader that stops early (`elspeth explain … |
/// head`) closes the pipe; that ends the output quietly instead of failing.
pub(crate) fn print_out(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()) {
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => Err(error.into()),
        Ok(()) | Err(_) => Ok(()),
    }
}

/// Peak resident set size of this process (Linux `VmHWM`), when known.
pub(crate) fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
