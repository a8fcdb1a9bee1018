//! An earlier run's calls, for replay and verify: looked up by call type
//! and request hash, the n-th lookup of a request getting the n-th
//! recording of it (the reference's occurrence matching). Lookups happen in
//! source order — replay runs pooled transforms one row at a time, verify
//! compares when calls are recorded — so who gets which recording never
//! depends on timing.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use contracts::records::CallOrigin;
use contracts::{CallType, Verification};
use landscape::recorder::{RecordedCall, RecordedResponse};

use crate::decisions::diff::{differences, DiffOptions};

type Key = (CallType, String);

/// The recordings and how many times each request was looked up.
#[derive(Debug)]
pub(crate) struct Recordings {
    calls: Vec<RecordedCall>,
    by_request: HashMap<Key, Vec<usize>>,
    used: Mutex<HashMap<Key, usize>>,
}

/// What verification found, for the summary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    pub total: u64,
    pub matches: u64,
    pub mismatches: u64,
    pub missing_recordings: u64,
    pub missing_payloads: u64,
}

impl Recordings {
    pub(crate) fn new(calls: Vec<RecordedCall>) -> Recordings {
        let mut by_request: HashMap<Key, Vec<usize>> = HashMap::new();
        for (index, call) in calls.iter().enumerate() {
            by_request.entry((call.call_type, call.request_hash.as_str().to_owned())).or_default().push(index);
        }
        Recordings { calls, by_request, used: Mutex::new(HashMap::new()) }
    }

    /// The next recording of this request, if the source run has one more.
    pub(crate) fn next(&self, call_type: CallType, request_hash: &str) -> Option<&RecordedCall> {
        let key = (call_type, request_hash.to_owned());
        let occurrence = {
            let mut used = self.used.lock().unwrap_or_else(PoisonError::into_inner);
            let count = used.entry(key.clone()).or_insert(0);
            *count += 1;
            *count - 1
        };
        self.by_request.get(&key).and_then(|indices| indices.get(occurrence)).map(|&index| &self.calls[index])
    }

    /// Compares a live call's response with its recording; the origin the
    /// live call is recorded with.
    pub(crate) fn verify(
        &self,
        call_type: CallType,
        request_hash: &str,
        live: Option<&serde_json::Value>,
        options: &DiffOptions,
        report: &mut VerifyReport,
    ) -> CallOrigin {
        report.total += 1;
        let Some(recorded) = self.next(call_type, request_hash) else {
            report.missing_recordings += 1;
            return CallOrigin::Verified {
                source_call_id: None,
                verification: Verification::MissingRecording,
                differences: None,
            };
        };
        let source_call_id = Some(recorded.call_id.clone());
        let (verification, found) = match (&recorded.response, live) {
            (RecordedResponse::Available(recorded), Some(live)) => {
                let found = differences(recorded, live, options);
                (if found.is_empty() { Verification::Match } else { Verification::Mismatch }, found)
            }
            (RecordedResponse::None, None) => (Verification::Match, Vec::new()),
            (RecordedResponse::Available(_), None) | (RecordedResponse::None, Some(_)) => {
                (Verification::Mismatch, vec!["(response present in one call only)".to_owned()])
            }
            (RecordedResponse::Purged { response_hash }, live) => {
                let live_hash = live.and_then(|l| contracts::stable_hash_json(l).ok());
                let same = live_hash.as_ref().is_some_and(|h| h == response_hash);
                let found = if same { Vec::new() } else { vec!["(hash of the purged response differs)".to_owned()] };
                (Verification::MissingPayload, found)
            }
        };
        match verification {
            Verification::Match => report.matches += 1,
            Verification::Mismatch => report.mismatches += 1,
            Verification::MissingPayload => report.missing_payloads += 1,
            Verification::MissingRecording => report.missing_recordings += 1,
        }
        let differences = (!found.is_empty()).then(|| serde_json::Value::from(found).to_string());
        CallOrigin::Verified { source_call_id, verification, differences }
    }
}
