//! The audit export: every record of a run, streamed in a total,
//! deterministic order, signed (HMAC-SHA256 per record) or hash-chained, and
//! an offline verifier.
//!
//! Order (documented, with unique tie-breakers): `run`; `secret_resolution`
//! (timestamp, id); `node` (sequence, registered_at, node_id); `edge`
//! (created_at, edge_id); `operation` (started_at, id); `call` of operations
//! (operation_id, call_index); `row` (row_index); `token` (created_at, id);
//! `token_parent` (token_id, ordinal); `token_outcome` (recorded_at, id);
//! `node_state` (token_id, step_index, attempt, state_id); `routing_event`
//! (state_id, ordinal, event_id); `call` of node states (state_id,
//! call_index); `batch` (created_at, id); `batch_member` (batch_id, ordinal);
//! `artifact` (created_at, id); `validation_error` (created_at, id);
//! `transform_error` (created_at, id); then the `manifest`. Each block is one
//! streaming query, so memory does not grow with the run and the number of
//! queries does not depend on its size. Parents always precede children.
//!
//! An export is a pure function of the Landscape's contents: exporting a run
//! twice gives byte-identical files. The moment an export was written is kept
//! in `runs.exported_at`, not in the file.

mod csv_files;
pub mod records;
mod verify;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use contracts::RunId;

use crate::connection::DbConnection;
use crate::error::{LandscapeError, Result};

pub use csv_files::CsvFiles;
pub use verify::{check_signing_key, verify_jsonl, verify_reader, UnsignedExports, VerifyError, VerifyReport, MIN_KEY_BYTES};

/// Writes one JSON record per line.
pub trait RecordSink {
    /// Writes one record; `canonical` is its canonical JSON (signature
    /// included), already computed for the chain.
    fn write_record(&mut self, record: &serde_json::Map<String, serde_json::Value>, canonical: &str) -> Result<()>;
}

/// What the manifest says about an export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportSummary {
    pub record_count: u64,
    pub final_hash: String,
    pub signed: bool,
}

/// HMAC-SHA256 with its key already mixed in: signing a record clones this
/// state instead of hashing the key's pads again.
pub(crate) struct Signer(Hmac<Sha256>);

impl Signer {
    pub(crate) fn new(key: &[u8]) -> Signer {
        Signer(Hmac::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length")))
    }

    /// The signature of `data`, in lower-case hex.
    pub(crate) fn sign(&self, data: &[u8]) -> String {
        contracts::hex_lower(&self.0.clone().chain_update(data).finalize().into_bytes())
    }
}

/// The chain: each link is SHA-256 of the previous link and the record's
/// signature (or, unsigned, the record's own hash), in hex.
pub(crate) struct Chain {
    link: String,
    signer: Option<Signer>,
    pub(crate) count: u64,
    pub(crate) counts: std::collections::BTreeMap<String, u64>,
}

/// Records per batch handed from the reading thread to the sealing thread.
const QUEUE_BATCH: usize = 256;
/// Batches in flight at most: the export's memory does not grow with the run.
const QUEUE_DEPTH: usize = 8;

type Batch = Vec<serde_json::Map<String, serde_json::Value>>;

/// The reading side of an export: records go, in batches, to the thread that
/// seals and writes them, so reading the Landscape and making, signing and
/// writing canonical JSON run on two cores. Written batches come back to be
/// freed (and their vectors reused) on the thread that allocated them, so the
/// two threads do not contend in the allocator.
pub(crate) struct RecordQueue {
    batch: Batch,
    sender: std::sync::mpsc::SyncSender<Batch>,
    /// Batches the writer is done with.
    returned: std::sync::mpsc::Receiver<Batch>,
}

impl RecordQueue {
    /// Queues the next record in export order.
    pub(crate) fn push(&mut self, record: serde_json::Map<String, serde_json::Value>) -> Result<()> {
        self.batch.push(record);
        if self.batch.len() == QUEUE_BATCH {
            self.send()?;
        }
        Ok(())
    }

    fn send(&mut self) -> Result<()> {
        let next = match self.returned.try_recv() {
            Ok(mut done) => {
                done.clear();
                done
            }
            Err(_) => Vec::with_capacity(QUEUE_BATCH),
        };
        let batch = std::mem::replace(&mut self.batch, next);
        // The writer only hangs up after failing; its error is the one reported.
        self.sender.send(batch).map_err(|_| LandscapeError::integrity("the export writer stopped"))
    }
}

/// The sealing side: every queued record, in order, sealed into the chain
/// and written.
fn seal_all(
    chain: &mut Chain,
    sink: &mut (dyn RecordSink + Send),
    batches: std::sync::mpsc::Receiver<Batch>,
    returned: std::sync::mpsc::Sender<Batch>,
) -> Result<()> {
    for mut batch in batches {
        for record in &mut batch {
            let line = chain.seal(record)?;
            sink.write_record(record, &line)?;
        }
        // The reader may have finished; then the batch is freed here.
        let _ = returned.send(batch);
    }
    Ok(())
}

impl Chain {
    pub(crate) fn new(key: Option<&[u8]>) -> Chain {
        Chain { link: "0".repeat(64), signer: key.map(Signer::new), count: 0, counts: std::collections::BTreeMap::new() }
    }

    /// Seals a record: adds its signature (signed exports) and advances the
    /// chain; returns the record's canonical JSON as written. The record is
    /// made canonical once: the signature member is spliced into the bytes
    /// it signs, at its place in key order.
    pub(crate) fn seal(&mut self, record: &mut serde_json::Map<String, serde_json::Value>) -> Result<String> {
        let (canonical, starts) = contracts::canonical::canonical_json_members(record)?;
        let (mark, line) = match &self.signer {
            Some(signer) => {
                let signature = signer.sign(canonical.as_bytes());
                let line = with_member(&canonical, &starts, "signature", &contracts::canonical::canonical_string(&signature));
                (signature, line)
            }
            None => (contracts::sha256_hex(canonical.as_bytes()), canonical.clone()),
        };
        if self.signer.is_some() {
            record.insert("signature".into(), serde_json::Value::String(mark.clone()));
        }
        let mut hasher = Sha256::new();
        hasher.update(self.link.as_bytes());
        hasher.update(mark.as_bytes());
        self.link = contracts::hex_lower(&hasher.finalize());
        self.count += 1;
        let kind = record.get("record_type").and_then(serde_json::Value::as_str).unwrap_or("unknown");
        match self.counts.get_mut(kind) {
            Some(count) => *count += 1,
            None => {
                self.counts.insert(kind.to_owned(), 1);
            }
        }
        Ok(line)
    }

    pub(crate) fn link(&self) -> &str {
        &self.link
    }
}

/// `canonical` (an object whose members start at `starts`) with the member
/// `"key":value` (value already canonical) added at its place in key order.
fn with_member(canonical: &str, starts: &[(&str, usize)], key: &str, value: &str) -> String {
    let member = format!("{}:{value}", contracts::canonical::canonical_string(key));
    let mut line = String::with_capacity(canonical.len() + member.len() + 1);
    match starts.iter().find(|(other, _)| contracts::canonical::canonical_key_order(other, key).is_gt()) {
        Some((_, at)) => {
            line.push_str(&canonical[..*at]);
            line.push_str(&member);
            line.push(',');
            line.push_str(&canonical[*at..]);
        }
        None => {
            line.push_str(&canonical[..canonical.len() - 1]);
            if !starts.is_empty() {
                line.push(',');
            }
            line.push_str(&member);
            line.push('}');
        }
    }
    line
}

/// Exports every record of `run_id` to `sink`. With `key`, each record is
/// signed. `reader` opens an extra connection for each streaming query.
pub fn export_run(
    connection: &mut DbConnection,
    run_id: &RunId,
    key: Option<&[u8]>,
    sink: &mut (dyn RecordSink + Send),
) -> Result<ExportSummary> {
    if let Some(key) = key {
        check_signing_key(key).map_err(|e| LandscapeError::InvalidWrite(e.to_string()))?;
    }
    let mut chain = Chain::new(key);
    let (sender, receiver) = std::sync::mpsc::sync_channel(QUEUE_DEPTH);
    let (return_sender, returned) = std::sync::mpsc::channel();
    let (read, written) = std::thread::scope(|scope| {
        let chain = &mut chain;
        let sink = &mut *sink;
        let writer = scope.spawn(move || seal_all(chain, sink, receiver, return_sender));
        let mut queue = RecordQueue { batch: Vec::with_capacity(QUEUE_BATCH), sender, returned };
        let read = crate::connection::with_sorts_on_disk(connection, |connection| {
            records::export_records(connection, run_id, &mut queue).and_then(|as_of| queue.send().map(|()| as_of))
        });
        drop(queue);
        let written = writer.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (read, written)
    });
    written?;
    let run = read?;
    let mut manifest = serde_json::Map::new();
    manifest.insert("record_type".into(), "manifest".into());
    manifest.insert("run_id".into(), run_id.as_str().into());
    manifest.insert("record_count".into(), chain.count.into());
    manifest.insert("counts".into(), serde_json::to_value(&chain.counts).map_err(|e| LandscapeError::integrity(e.to_string()))?);
    manifest.insert("hash_algorithm".into(), "sha256".into());
    manifest.insert("chain".into(), "link = sha256(previous link hex + record mark), first link 64 zeros".into());
    manifest.insert("final_hash".into(), chain.link().to_owned().into());
    manifest.insert("exported_at".into(), run.into());
    match &chain.signer {
        Some(signer) => {
            manifest.insert("signature_algorithm".into(), "hmac-sha256".into());
            manifest.insert("key_fingerprint".into(), signer.sign(b"elspeth-export-key-fingerprint").into());
            let (canonical, _) = contracts::canonical::canonical_json_members(&manifest)?;
            manifest.insert("signature".into(), signer.sign(canonical.as_bytes()).into());
        }
        None => {
            manifest.insert("signature_algorithm".into(), serde_json::Value::Null);
        }
    }
    let (line, _) = contracts::canonical::canonical_json_members(&manifest)?;
    sink.write_record(&manifest, &line)?;
    Ok(ExportSummary { record_count: chain.count, final_hash: chain.link().to_owned(), signed: key.is_some() })
}

/// Writes JSON Lines to a writer.
pub struct JsonLines<W: std::io::Write>(pub W);

impl<W: std::io::Write> RecordSink for JsonLines<W> {
    fn write_record(&mut self, _record: &serde_json::Map<String, serde_json::Value>, line: &str) -> Result<()> {
        self.0
            .write_all(line.as_bytes())
            .and_then(|()| self.0.write_all(b"\n"))
            .map_err(|e| LandscapeError::integrity(format!("export write: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A spliced member gives exactly the bytes of writing the whole object.
    #[test]
    fn a_spliced_member_equals_the_object_written_whole() {
        for keys in
            [vec![], vec!["a"], vec!["z"], vec!["a", "z"], vec!["record_type", "run_id", "state_id"], vec!["sig", "signaturf"]]
        {
            let mut map = serde_json::Map::new();
            for (i, key) in keys.iter().enumerate() {
                map.insert((*key).to_owned(), serde_json::json!({"n": i, "s": "x\"y"}));
            }
            let (canonical, starts) = contracts::canonical::canonical_json_members(&map).expect("canonical");
            let spliced = with_member(&canonical, &starts, "signature", "\"abc\"");
            map.insert("signature".into(), "abc".into());
            assert_eq!(spliced, contracts::canonical_json(&serde_json::Value::Object(map)).expect("canonical"), "{keys:?}");
        }
    }
}
