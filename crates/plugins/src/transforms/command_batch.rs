//! `command_batch`: runs a configured program on a whole batch, in the
//! background. The batch's rows go to the program's stdin as JSON Lines (from
//! a file), its stdout is read back as JSON Lines (one object per output
//! row). While the program runs the plugin answers *pending*, so the engine
//! goes on with other rows and polls again.
//!
//! The program runs under `sh`, which writes its exit status to a file when
//! it ends: a poll needs only the job's files, so a resumed run in another
//! process can still collect a job started before a crash. Every finished
//! invocation is recorded as a `process` call (command, exit status, input
//! and output hashes); a non-zero exit or malformed output is an error
//! result for the batch, never a crash.

use std::collections::HashMap;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use contracts::plugin::{BatchResult, BatchTransform, CallEnd, Options, PluginContext, PluginError, PluginInfo};
use contracts::{canonical_json_value, sha256_hex, CallStatus, CallType, Determinism, Row, Value};
use serde::Deserialize;

/// What this plugin records on its node.
pub(crate) const INFO: PluginInfo =
    PluginInfo { name: "command_batch", version: "1.0.0", determinism: Determinism::ExternalCall };

/// Runs the program with stdin, stdout and stderr on the job's files, then
/// records its exit status (written to a temporary name, then renamed, so a
/// reader never sees half of it).
const WRAPPER: &str = r#""$@" < "$ELSPETH_JOB_IN" > "$ELSPETH_JOB_OUT" 2> "$ELSPETH_JOB_ERR"; echo $? > "$ELSPETH_JOB_STATUS.tmp" && mv "$ELSPETH_JOB_STATUS.tmp" "$ELSPETH_JOB_STATUS""#;

/// How much of the program's stderr an error result keeps.
const STDERR_TAIL: usize = 2000;

fn default_poll() -> f64 {
    0.2
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CommandBatchOptions {
    schema: serde_json::Value,
    command: Vec<String>,
    #[serde(default = "default_poll")]
    poll_interval_seconds: f64,
    #[serde(default)]
    work_dir: Option<String>,
    #[serde(default)]
    required_input_fields: Option<Vec<String>>,
}

/// A started job: its files, as recorded in the pending answer.
#[derive(Debug, Clone, serde::Serialize, Deserialize)]
struct Job {
    job_id: String,
    input: PathBuf,
    output: PathBuf,
    stderr: PathBuf,
    status: PathBuf,
    input_hash: String,
}

pub(crate) struct CommandBatch {
    options: CommandBatchOptions,
    work_dir: PathBuf,
    /// Children started by this process, reaped when they end.
    children: HashMap<String, (Child, Instant)>,
    started_jobs: u64,
}

impl CommandBatch {
    pub(crate) fn new(options: &Options) -> Result<CommandBatch, PluginError> {
        let options: CommandBatchOptions = crate::options::parse(options)?;
        crate::options::schema(&options.schema)?;
        if options.command.first().is_none_or(String::is_empty) {
            return Err(PluginError::Config("command needs at least the program to run".into()));
        }
        if !(options.poll_interval_seconds.is_finite() && options.poll_interval_seconds > 0.0) {
            return Err(PluginError::Config("poll_interval_seconds must be greater than 0".into()));
        }
        let work_dir =
            options.work_dir.as_ref().map_or_else(|| std::env::temp_dir().join("elspeth-command-batch"), PathBuf::from);
        Ok(CommandBatch { options, work_dir, children: HashMap::new(), started_jobs: 0 })
    }

    fn pending(&self, job: &Job) -> Result<BatchResult, PluginError> {
        let job = serde_json::to_value(job).map_err(|e| PluginError::Contract(e.to_string()))?;
        Ok(BatchResult::Pending { check_after: Duration::from_secs_f64(self.options.poll_interval_seconds), job })
    }

    fn start(&mut self, rows: &[Row]) -> Result<Job, PluginError> {
        std::fs::create_dir_all(&self.work_dir)
            .map_err(|source| io("cannot create the work directory", &self.work_dir, source))?;
        self.started_jobs += 1;
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let job_id = format!("{}-{nanos}-{}", std::process::id(), self.started_jobs);
        let file = |suffix: &str| self.work_dir.join(format!("{job_id}.{suffix}"));
        let input = batch_input(rows)?;
        let job = Job {
            input: file("in.jsonl"),
            output: file("out.jsonl"),
            stderr: file("err.txt"),
            status: file("status"),
            input_hash: sha256_hex(input.as_bytes()),
            job_id,
        };
        std::fs::write(&job.input, input.as_bytes()).map_err(|source| io("cannot write the batch input", &job.input, source))?;
        let child = Command::new("sh")
            .arg("-c")
            .arg(WRAPPER)
            .arg("elspeth-command-batch")
            .args(&self.options.command)
            .env("ELSPETH_JOB_IN", &job.input)
            .env("ELSPETH_JOB_OUT", &job.output)
            .env("ELSPETH_JOB_ERR", &job.stderr)
            .env("ELSPETH_JOB_STATUS", &job.status)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group, so cancelling stops the program too.
            .process_group(0)
            .spawn()
            .map_err(|source| io("cannot start sh for the command", Path::new("sh"), source))?;
        self.children.insert(job.job_id.clone(), (child, Instant::now()));
        Ok(job)
    }

    /// What the call records as its request: the command and the batch's
    /// input (by hash), the same for the same batch in any run.
    fn request(&self, input_hash: &str) -> serde_json::Value {
        serde_json::json!({"command": self.options.command, "input_hash": input_hash})
    }

    /// Replay: the recorded run of the program on this batch answers it; the
    /// program is not run.
    fn replay(&mut self, rows: &[Row], ctx: &mut PluginContext) -> Result<BatchResult, PluginError> {
        let input = batch_input(rows)?;
        let request = self.request(&sha256_hex(input.as_bytes()));
        let ticket = ctx.begin_call(None);
        let recording = match ctx.replay(&ticket, CallType::Process, &request) {
            Some(Ok(recording)) => recording,
            Some(Err(error)) => return Ok(BatchResult::Error { reason: error.reason() }),
            None => return Err(PluginError::Contract("replay without recordings".into())),
        };
        let response = recording.response.unwrap_or(serde_json::Value::Null);
        let exit_status = response.get("exit_status").and_then(serde_json::Value::as_i64).unwrap_or(-1);
        let Some(output) = response.get("output").and_then(serde_json::Value::as_str) else {
            return Ok(failure(
                "replay_output_not_recorded",
                serde_json::json!({"source_call_id": recording.source_call_id.as_str()}),
            ));
        };
        Ok(if exit_status == 0 {
            parse_rows(output.as_bytes())
        } else {
            let stderr = response.get("stderr_tail").cloned().unwrap_or(serde_json::Value::Null);
            failure("command_failed", serde_json::json!({"exit_status": exit_status, "stderr": stderr}))
        })
    }

    /// The job's result once its status file exists.
    fn collect(&mut self, job: &Job, ctx: &mut PluginContext) -> Result<Option<BatchResult>, PluginError> {
        let status = match std::fs::read_to_string(&job.status) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                if let Some((child, _)) = self.children.get_mut(&job.job_id) {
                    if let Ok(Some(exit)) = child.try_wait() {
                        // The wrapper itself ended without writing a status.
                        if !job.status.exists() {
                            self.children.remove(&job.job_id);
                            return Ok(Some(failure(
                                "command_failed",
                                serde_json::json!({"error": format!("sh ended with {exit} and no status")}),
                            )));
                        }
                    }
                }
                return Ok(None);
            }
            Err(source) => return Err(io("cannot read the job status", &job.status, source)),
        };
        let latency_ms = self.children.remove(&job.job_id).map(|(mut child, started)| {
            let _ = child.wait();
            started.elapsed().as_secs_f64() * 1000.0
        });
        let exit_status: i64 = status.trim().parse().unwrap_or(-1);
        let output = std::fs::read(&job.output).unwrap_or_default();
        let stderr = std::fs::read_to_string(&job.stderr).unwrap_or_default();
        let tail: String = stderr.chars().rev().take(STDERR_TAIL).collect::<Vec<_>>().into_iter().rev().collect();
        let request = self.request(&job.input_hash);
        // The output itself is recorded (in the payload store), so a replay
        // can answer the batch without running the program.
        let response = serde_json::json!({
            "exit_status": exit_status, "output_hash": sha256_hex(&output), "job_id": job.job_id,
            "output": String::from_utf8_lossy(&output), "stderr_tail": tail,
        });
        let result = if exit_status == 0 {
            parse_rows(&output)
        } else {
            failure("command_failed", serde_json::json!({"exit_status": exit_status, "stderr": tail}))
        };
        let error = match &result {
            BatchResult::Error { reason } => Some(serde_json::Value::Object(reason.clone())),
            BatchResult::Rows(_) | BatchResult::Pending { .. } => None,
        };
        let status = if error.is_none() { CallStatus::Success } else { CallStatus::Error };
        let end = CallEnd { call_type: CallType::Process, status, request, response: Some(response), error };
        ctx.record_call(end, latency_ms);
        for path in [&job.input, &job.output, &job.stderr, &job.status] {
            let _ = std::fs::remove_file(path);
        }
        Ok(Some(result))
    }
}

/// The batch as the program reads it: one canonical JSON object per line.
fn batch_input(rows: &[Row]) -> Result<String, PluginError> {
    let mut input = String::new();
    for row in rows {
        let line = canonical_json_value(&Value::Object(row.clone())).map_err(|e| PluginError::Contract(e.to_string()))?;
        input.push_str(&line);
        input.push('\n');
    }
    Ok(input)
}

fn io(context: &str, path: &Path, source: std::io::Error) -> PluginError {
    PluginError::Io { context: format!("{context} {}", path.display()), source }
}

fn failure(reason: &str, details: serde_json::Value) -> BatchResult {
    let mut map = serde_json::Map::new();
    map.insert("reason".into(), reason.into());
    if let serde_json::Value::Object(details) = details {
        map.extend(details);
    }
    BatchResult::Error { reason: map }
}

/// One JSON object per non-empty line; anything else is malformed output.
#[allow(clippy::wildcard_enum_match_arm, reason = "serde_json::Value: every non-object output is the same error")]
fn parse_rows(output: &[u8]) -> BatchResult {
    let Ok(text) = std::str::from_utf8(output) else {
        return failure("malformed_output", serde_json::json!({"error": "the output is not UTF-8"}));
    };
    let mut rows = Vec::new();
    for (index, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let parsed = serde_json::from_str::<serde_json::Value>(line).map_err(|e| e.to_string()).and_then(|json| {
            match Value::from_json(json).map_err(|e| e.to_string())? {
                Value::Object(row) => Ok(row),
                other => Err(format!("expected a JSON object, got {}", other.type_name())),
            }
        });
        match parsed {
            Ok(row) => rows.push(row),
            Err(error) => return failure("malformed_output", serde_json::json!({"line": index + 1, "error": error})),
        }
    }
    BatchResult::Rows(rows)
}

impl BatchTransform for CommandBatch {
    fn info(&self) -> PluginInfo {
        INFO
    }

    fn process_batch(&mut self, rows: &[Row], ctx: &mut PluginContext) -> Result<BatchResult, PluginError> {
        let _ = &self.options.required_input_fields;
        if ctx.replaying() {
            return self.replay(rows, ctx);
        }
        let job = self.start(rows)?;
        self.pending(&job)
    }

    fn cancel(&mut self, job: &serde_json::Value) {
        let Ok(job) = serde_json::from_value::<Job>(job.clone()) else { return };
        if let Some((mut child, _)) = self.children.remove(&job.job_id) {
            // The whole process group: `sh` and the program it runs.
            let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", child.id())]).status();
            let _ = child.kill();
            let _ = child.wait();
        }
        for path in [&job.input, &job.output, &job.stderr, &job.status] {
            let _ = std::fs::remove_file(path);
        }
    }

    fn poll(&mut self, job: &serde_json::Value, ctx: &mut PluginContext) -> Result<BatchResult, PluginError> {
        let job: Job =
            serde_json::from_value(job.clone()).map_err(|e| PluginError::Contract(format!("not a command_batch job: {e}")))?;
        match self.collect(&job, ctx)? {
            Some(result) => Ok(result),
            None => self.pending(&job),
        }
    }
}
