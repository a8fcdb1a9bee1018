//! The JSON form of a lineage (`elspeth explain --format json`). Every record
//! has exactly the fields of its export record, so a script reads explain
//! output and exports with the same code.

use serde_json::{json, Map, Value as J};

use super::{BatchHistory, Lineage, Payload, SourceRow, StateHistory, TokenHistory};
use crate::export::records::{
    artifact_record, batch_member_record, batch_record, call_record, node_state_record, outcome_record, routing_event_record,
    row_record, token_parent_record, token_record, transform_error_record, validation_error_record,
};

impl Lineage {
    /// The whole lineage as one JSON document.
    pub fn to_json(&self) -> J {
        json!({
            "run_id": self.run_id.as_str(),
            "token_id": self.target.as_str(),
            "tokens": self.tokens.iter().map(|t| self.token_json(t)).collect::<Vec<_>>(),
            "source_rows": self.rows.iter().map(source_row_json).collect::<Vec<_>>(),
        })
    }

    fn token_json(&self, history: &TokenHistory) -> J {
        let run_id = &self.run_id;
        json!({
            "token": J::Object(token_record(history.token.clone())),
            "parents": history.parents.iter().map(|p| J::Object(token_parent_record(p.clone(), run_id))).collect::<Vec<_>>(),
            "siblings": history.siblings.iter().map(contracts::TokenId::as_str).collect::<Vec<_>>(),
            "node_states": history.states.iter().map(|s| self.state_json(s)).collect::<Vec<_>>(),
            "outcomes": history.outcomes.iter().map(|o| J::Object(outcome_record(o.clone()))).collect::<Vec<_>>(),
            "batches": history.batches.iter().map(|b| self.batch_json(b)).collect::<Vec<_>>(),
            "transform_errors": history
                .transform_errors
                .iter()
                .map(|e| J::Object(transform_error_record(e.clone())))
                .collect::<Vec<_>>(),
        })
    }

    fn state_json(&self, history: &StateHistory) -> J {
        let run_id = &self.run_id;
        let mut state = node_state_record(history.state.clone());
        if let Some(node) = self.node(&history.state.common().node_id) {
            state.insert("plugin_name".into(), J::String(node.plugin_name.clone()));
            state.insert("node_type".into(), J::String(node.node_type.as_str().to_owned()));
        }
        let events: Vec<J> = history
            .routing_events
            .iter()
            .map(|event| {
                let mut map = routing_event_record(event.clone(), run_id);
                if let Some(edge) = self.edge(&event.edge_id) {
                    map.insert("label".into(), J::String(edge.label.clone()));
                    map.insert("to_node_id".into(), J::String(edge.to_node_id.as_str().to_owned()));
                }
                J::Object(map)
            })
            .collect();
        state.insert("routing_events".into(), J::Array(events));
        state.insert("calls".into(), J::Array(history.calls.iter().map(|c| J::Object(call_record(c.clone(), run_id))).collect()));
        state.insert("artifact".into(), history.artifact.clone().map_or(J::Null, |a| J::Object(artifact_record(a))));
        J::Object(state)
    }

    fn batch_json(&self, history: &BatchHistory) -> J {
        json!({
            "member": J::Object(batch_member_record(history.member.clone())),
            "batch": J::Object(batch_record(history.batch.clone())),
            "flush": history.flush.as_ref().map_or(J::Null, |f| self.state_json(f)),
        })
    }
}

fn source_row_json(source: &SourceRow) -> J {
    let mut payload = Map::new();
    let status = match &source.payload {
        Payload::Available(data) => {
            payload.insert("data".into(), data.clone());
            "available"
        }
        Payload::Purged => "purged",
        Payload::NotStored => "not_stored",
        Payload::StoreNotGiven => "store_not_given",
    };
    payload.insert("status".into(), J::String(status.to_owned()));
    json!({
        "row": J::Object(row_record(source.row.clone())),
        "payload": J::Object(payload),
        "validation_errors": source
            .validation_errors
            .iter()
            .map(|e| J::Object(validation_error_record(e.clone())))
            .collect::<Vec<_>>(),
    })
}
