//! Plugin traits (sources, transforms, batch transforms, sinks), the context
//! they receive and the results they return.
//!
//! Architecture invariant: plugins never see a database handle. Whatever a
//! plugin wants on the audit record (external calls, a success reason, an
//! error reason) it returns or hands to its [`PluginContext`]; the engine
//! records it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::enums::{CallStatus, CallType, Determinism};
use crate::hashing::ContentHash;
use crate::ids::CallId;
use crate::ids::{NodeId, RunId};
use crate::records::CallOrigin;
use crate::value::{Row, Value};

/// What every plugin says about itself; recorded on its node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginInfo {
    pub name: &'static str,
    pub version: &'static str,
    pub determinism: Determinism,
}

/// An external call a plugin made, to be recorded against the current node
/// state (or operation) by the engine. `call_index` was taken before the
/// call was made ([`PluginContext::begin_call`]) and is never reused.
#[derive(Debug, Clone, PartialEq)]
pub struct CallRecord {
    pub call_index: u32,
    pub call_type: CallType,
    pub status: CallStatus,
    pub request: serde_json::Value,
    pub response: Option<serde_json::Value>,
    pub error: Option<serde_json::Value>,
    pub latency_ms: Option<f64>,
    /// Live, or replayed from an earlier run's call. (Verification is the
    /// engine's: it compares live calls when it records them.)
    pub origin: CallOrigin,
}

/// An earlier run's answer to a request, in replay mode.
#[derive(Debug, Clone, PartialEq)]
pub struct Recording {
    pub source_call_id: CallId,
    pub status: CallStatus,
    pub response: Option<serde_json::Value>,
    pub error: Option<serde_json::Value>,
    pub latency_ms: Option<f64>,
}

/// Why replay has no answer for a request: that row fails, the run goes on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    #[error("no recorded call in the source run matches request {request_hash}")]
    Miss { request_hash: String },
    #[error("the recorded response to request {request_hash} (call {source_call_id}) was purged")]
    PayloadMissing { request_hash: String, source_call_id: CallId },
}

impl ReplayError {
    /// The error result a transform returns for it.
    pub fn reason(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut reason = serde_json::Map::new();
        let (name, hash) = match self {
            ReplayError::Miss { request_hash } => ("replay_miss", request_hash),
            ReplayError::PayloadMissing { request_hash, source_call_id } => {
                reason.insert("source_call_id".into(), source_call_id.as_str().into());
                ("replay_payload_missing", request_hash)
            }
        };
        reason.insert("reason".into(), name.into());
        reason.insert("request_hash".into(), hash.clone().into());
        reason.insert("error".into(), self.to_string().into());
        reason
    }
}

/// What the engine lends plugins for their external calls: rate limits
/// shared by every node that calls one service, and the key that turns
/// secrets (API keys in headers) into fingerprints before anything is
/// recorded. Plugins never see the Landscape itself.
pub trait CallServices: Send + Sync + std::fmt::Debug {
    /// Blocks until `service`'s rate limit allows one more request.
    fn acquire(&self, service: &str);
    /// The HMAC-SHA256 fingerprint (hex) of a secret. Fails when no
    /// fingerprint key is configured: such a call cannot be audited.
    fn fingerprint(&self, secret: &str) -> Result<String, PluginError>;
    /// In replay mode, the source run's answer to this request (matched by
    /// call type, request hash and occurrence); `None` when calls are live.
    fn replay(&self, _call_type: CallType, _request_hash: &str) -> Option<Result<Recording, ReplayError>> {
        None
    }
    /// Whether calls are answered from recordings (nothing to wait for:
    /// no rate limit, back-off or retry delay).
    fn replaying(&self) -> bool {
        false
    }
}

/// No rate limits and no fingerprint key (validation, unit tests).
#[derive(Debug, Default)]
pub struct NoServices;

impl CallServices for NoServices {
    fn acquire(&self, _service: &str) {}

    fn fingerprint(&self, _secret: &str) -> Result<String, PluginError> {
        Err(PluginError::Config(
            "a secret must be fingerprinted; set ELSPETH_FINGERPRINT_KEY (secrets are never stored raw)".to_owned(),
        ))
    }
}

/// A call in progress: its index (taken before the request goes out) and
/// when it started (after the rate limiter let it through).
#[derive(Debug)]
#[must_use = "a begun call must be ended, also when it failed"]
pub struct CallTicket {
    pub call_index: u32,
    started: Instant,
}

/// How a call ended.
#[derive(Debug, Clone, PartialEq)]
pub struct CallEnd {
    pub call_type: CallType,
    pub status: CallStatus,
    pub request: serde_json::Value,
    pub response: Option<serde_json::Value>,
    pub error: Option<serde_json::Value>,
}

/// Passed to every plugin call: who is calling, the engine's call services,
/// and a place to put calls.
#[derive(Debug)]
pub struct PluginContext {
    pub run_id: RunId,
    pub node_id: NodeId,
    services: Arc<dyn CallServices>,
    next_call_index: u32,
    calls: Vec<CallRecord>,
}

impl PluginContext {
    pub fn new(run_id: RunId, node_id: NodeId) -> PluginContext {
        PluginContext::with_services(run_id, node_id, Arc::new(NoServices))
    }

    pub fn with_services(run_id: RunId, node_id: NodeId, services: Arc<dyn CallServices>) -> PluginContext {
        PluginContext { run_id, node_id, services, next_call_index: 0, calls: Vec::new() }
    }

    /// A fresh context for one attempt of one item (call indices from 0),
    /// sharing this one's identity and services.
    #[must_use]
    pub fn for_attempt(&self) -> PluginContext {
        PluginContext::with_services(self.run_id.clone(), self.node_id.clone(), Arc::clone(&self.services))
    }

    /// Whether calls are answered from an earlier run's recordings: a
    /// plugin then skips every wait (back-off, `Retry-After`).
    pub fn replaying(&self) -> bool {
        self.services.replaying()
    }

    /// Starts an external call, in the reference's order: wait for the
    /// service's rate limit (when it has one), take the call index, start
    /// the timer. Latency therefore excludes the wait for the limiter.
    pub fn begin_call(&mut self, service: Option<&str>) -> CallTicket {
        if let Some(service) = service {
            self.services.acquire(service);
        }
        let call_index = self.next_call_index;
        self.next_call_index += 1;
        CallTicket { call_index, started: Instant::now() }
    }

    /// Ends a begun call and keeps it for the engine to record.
    pub fn end_call(&mut self, ticket: CallTicket, end: CallEnd) {
        let latency_ms = ticket.started.elapsed().as_secs_f64() * 1000.0;
        let CallEnd { call_type, status, request, response, error } = end;
        self.calls.push(CallRecord {
            call_index: ticket.call_index,
            call_type,
            status,
            request,
            response,
            error,
            latency_ms: Some(latency_ms),
            origin: CallOrigin::Live,
        });
    }

    /// In replay mode, answers a begun call from the source run instead of
    /// sending it: the call is recorded with the recorded answer (and points
    /// at the call it came from) and the answer is returned. `None` when
    /// calls are live: send the request. A miss or a purged answer is
    /// returned as the error the row fails with (nothing is recorded).
    pub fn replay(
        &mut self,
        ticket: &CallTicket,
        call_type: CallType,
        request: &serde_json::Value,
    ) -> Option<Result<Recording, ReplayError>> {
        let request_hash = match crate::hashing::stable_hash_json(request) {
            Ok(hash) => hash.as_str().to_owned(),
            Err(error) => return Some(Err(ReplayError::Miss { request_hash: format!("(not canonical: {error})") })),
        };
        let answer = self.services.replay(call_type, &request_hash)?;
        if let Ok(recording) = &answer {
            self.calls.push(CallRecord {
                call_index: ticket.call_index,
                call_type,
                status: recording.status,
                request: request.clone(),
                response: recording.response.clone(),
                error: recording.error.clone(),
                latency_ms: recording.latency_ms,
                origin: CallOrigin::Replayed { source_call_id: recording.source_call_id.clone() },
            });
        }
        Some(answer)
    }

    /// Records a call whose timing the plugin measured itself.
    pub fn record_call(&mut self, end: CallEnd, latency_ms: Option<f64>) {
        let call_index = self.next_call_index;
        self.next_call_index += 1;
        let CallEnd { call_type, status, request, response, error } = end;
        let origin = CallOrigin::Live;
        self.calls.push(CallRecord { call_index, call_type, status, request, response, error, latency_ms, origin });
    }

    /// The audit copy of request headers: sensitive values (see
    /// [`crate::secrets::is_sensitive_header`]) become
    /// `<fingerprint:HEX>`; the others are kept.
    pub fn audit_headers(&self, headers: &[(String, String)]) -> Result<serde_json::Value, PluginError> {
        let mut copy = serde_json::Map::new();
        for (name, value) in headers {
            let recorded = if crate::secrets::is_sensitive_header(name) {
                format!("<fingerprint:{}>", self.services.fingerprint(value)?)
            } else {
                value.clone()
            };
            copy.insert(name.clone(), serde_json::Value::String(recorded));
        }
        Ok(serde_json::Value::Object(copy))
    }

    /// Hands the recorded calls to the engine, emptying the list; the next
    /// call starts again at index 0 (a new node state).
    pub fn take_calls(&mut self) -> Vec<CallRecord> {
        self.next_call_index = 0;
        std::mem::take(&mut self.calls)
    }
}

/// Details of a schema violation, for the `validation_errors` columns.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Violation {
    /// `type_mismatch`, `missing_field` or `extra_field`.
    pub violation_type: Option<String>,
    pub original_field_name: Option<String>,
    pub normalized_field_name: Option<String>,
    pub expected_type: Option<String>,
    pub actual_type: Option<String>,
}

/// A source record that could not become a valid row (Tier 3 data).
#[derive(Debug, Clone, PartialEq)]
pub struct InvalidRecord {
    /// The raw record as well as it could be read (`{"_raw": text}` when it
    /// is not even an object).
    pub raw: Value,
    pub error: String,
    /// What kind of check failed (`parse`, `validation`, ...).
    pub schema_mode: String,
    pub violation: Violation,
}

/// One item produced by a source.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceItem {
    Valid(Row),
    Invalid(InvalidRecord),
}

/// Where a source is in its input, so a resumed run can continue there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SourcePosition {
    /// Items produced so far.
    pub items: u64,
    /// Byte offset of the next record, for seekable file sources.
    pub byte_offset: Option<u64>,
}

/// An error raised by plugin code. Errors about *data* are results
/// (`TransformResult::Error`, `SourceItem::Invalid`), not this.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("invalid options: {0}")]
    Config(String),
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
    /// The input as a whole cannot be read (not one bad record: those are
    /// quarantined). Stops the run.
    #[error("{0}")]
    Input(String),
    /// A failure worth retrying (per the `retry` settings): a new attempt,
    /// a new node state.
    #[error("transient failure: {0}")]
    Transient(String),
    /// The plugin broke its own contract: a bug, which stops the run.
    #[error("plugin contract violated: {0}")]
    Contract(String),
    /// What the plugin wrote earlier is no longer what it wrote (an output
    /// edited after a checkpoint): continuing would keep the change.
    #[error("{0}")]
    Changed(String),
}

/// A source of rows.
pub trait Source: Send {
    fn info(&self) -> PluginInfo;
    /// The next item, `None` at end of input. An `Err` is fatal (file missing,
    /// unreadable); a bad record is `Ok(Some(SourceItem::Invalid))`.
    fn next_item(&mut self, ctx: &mut PluginContext) -> Result<Option<SourceItem>, PluginError>;
    fn position(&self) -> SourcePosition;
    /// Original header → final field name, when the source renamed fields
    /// (recorded in `runs.source_field_resolution_json`).
    fn field_resolution(&self) -> Option<Vec<(String, String)>> {
        None
    }
}

/// What a row transform produced.
#[derive(Debug, Clone, PartialEq)]
pub enum TransformResult {
    Row {
        row: Row,
        success_reason: Option<serde_json::Value>,
    },
    /// One input row became several (an expansion).
    Rows {
        rows: Vec<Row>,
        success_reason: Option<serde_json::Value>,
    },
    /// The row could not be processed; `reason` must hold a `"reason"` key.
    Error {
        reason: serde_json::Map<String, serde_json::Value>,
    },
}

/// A row-at-a-time transform. `process` takes `&self`: a transform with a
/// `pool_size` above 1 is called from several threads at once, one row
/// each, and the engine puts the results back in source order.
pub trait Transform: Send + Sync {
    fn info(&self) -> PluginInfo;
    /// Whether an `Ok(Rows)` result creates new tokens (an expansion).
    fn creates_tokens(&self) -> bool {
        false
    }
    /// How many rows may be in flight at once (external calls).
    fn pool_size(&self) -> usize {
        1
    }
    fn process(&self, row: Row, ctx: &mut PluginContext) -> Result<TransformResult, PluginError>;
}

/// What a batch transform produced.
#[derive(Debug, Clone, PartialEq)]
pub enum BatchResult {
    Rows(Vec<Row>),
    Error {
        reason: serde_json::Map<String, serde_json::Value>,
    },
    /// Work submitted; ask again (`BatchTransform::poll`) after `check_after`.
    /// `job` is what the plugin needs to find the work again, also after a
    /// resume in a new process.
    Pending {
        check_after: Duration,
        job: serde_json::Value,
    },
}

/// A transform over a whole aggregation batch.
pub trait BatchTransform: Send {
    fn info(&self) -> PluginInfo;
    fn process_batch(&mut self, rows: &[Row], ctx: &mut PluginContext) -> Result<BatchResult, PluginError>;
    /// Asks again about pending work.
    fn poll(&mut self, job: &serde_json::Value, ctx: &mut PluginContext) -> Result<BatchResult, PluginError>;
    /// The engine gave up on pending work (it waited too long, or the run
    /// failed): stop it and free what it holds.
    fn cancel(&mut self, _job: &serde_json::Value) {}
}

/// What a sink wrote, registered as an artifact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactDescriptor {
    pub artifact_type: String,
    pub path_or_uri: String,
    pub content_hash: ContentHash,
    pub size_bytes: u64,
}

/// A sink's output as it was after a durable write: its length and the
/// SHA-256 of those bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputPosition {
    pub bytes: u64,
    pub content_hash: ContentHash,
}

/// A destination for rows.
pub trait Sink: Send {
    fn info(&self) -> PluginInfo;
    /// Appends rows; they need not be durable until `flush` returns.
    fn write(&mut self, rows: &[Row], ctx: &mut PluginContext) -> Result<(), PluginError>;
    /// Makes everything written so far durable and describes the artifact
    /// (`None` when nothing was ever written).
    fn flush(&mut self, ctx: &mut PluginContext) -> Result<Option<ArtifactDescriptor>, PluginError>;
    /// Completes the output at the end of a run (closing a JSON array, for
    /// example), durably, and describes the final artifact.
    fn finish(&mut self, ctx: &mut PluginContext) -> Result<Option<ArtifactDescriptor>, PluginError> {
        self.flush(ctx)
    }
    /// Tells the sink which run it writes for (before any write or resume).
    fn bind_run(&mut self, _run_id: &RunId) {}
    /// Tells the sink the source's original headers (final name → original),
    /// for `headers: original`.
    fn bind_field_resolution(&mut self, _resolution: &[(String, String)]) {}
    /// What the sink needs to continue its output after a crash (the CSV
    /// columns, the JSON elements written), saved with every checkpoint.
    fn checkpoint_state(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
    /// Checks, before anything is changed, that the output still holds what
    /// the run wrote: `kept` are the lengths and SHA-256 hashes recorded
    /// after each durable write, ascending, the last one checkpointed.
    /// A difference is [`PluginError::Changed`], naming the output and where.
    fn check_kept_output(&self, _kept: &[OutputPosition]) -> Result<(), PluginError> {
        Ok(())
    }
    /// Continues an output that is cut back to its checkpointed length
    /// `bytes` (everything written after it is removed), with the state
    /// saved then.
    fn resume(&mut self, _bytes: u64, _state: &serde_json::Value) -> Result<(), PluginError> {
        Err(PluginError::Contract(format!("sink {} cannot continue an earlier run's output", self.info().name)))
    }
}

/// Plugin options as written in `settings.yaml`.
pub type Options = serde_json::Map<String, serde_json::Value>;

/// Builds plugin instances by name. Constructors validate their options and
/// must not touch files or the network: the engine builds plugins both to
/// validate a pipeline and to run it (the same code path).
pub trait PluginRegistry {
    fn source(&self, plugin: &str, options: &Options) -> Result<Box<dyn Source>, PluginError>;
    fn transform(&self, plugin: &str, options: &Options) -> Result<Box<dyn Transform>, PluginError>;
    fn batch_transform(&self, plugin: &str, options: &Options) -> Result<Box<dyn BatchTransform>, PluginError>;
    fn sink(&self, plugin: &str, options: &Options) -> Result<Box<dyn Sink>, PluginError>;
    /// Whether `plugin` is a batch transform (usable under `aggregations`).
    fn is_batch_aware(&self, plugin: &str) -> bool;
}
