//! Record shapes: state accessors agree with the enums.

use super::*;
use crate::enums::{BatchStatus, NodeStateStatus, RowOutcome, RunStatus};
use crate::hashing::ContentHash;
use crate::ids::{BatchId, NodeId, RunId, StateId, TokenId};
use crate::time::now;

fn common() -> NodeStateCommon {
    NodeStateCommon {
        state_id: StateId::new(),
        token_id: TokenId::new(),
        run_id: RunId::new(),
        node_id: NodeId::parse("transform_x").expect("valid"),
        step_index: 1,
        attempt: 0,
        input_hash: ContentHash::of_bytes(b"{}"),
        context_before_json: None,
        started_at: now(),
    }
}

#[test]
fn node_state_status_follows_the_variant() {
    let at = now();
    let states = [
        NodeState::Open { common: common() },
        NodeState::Pending { common: common(), completed_at: at, duration_ms: 1.0, context_after_json: None },
        NodeState::Completed {
            common: common(),
            output_hash: ContentHash::of_bytes(b"{}"),
            completed_at: at,
            duration_ms: 1.0,
            context_after_json: None,
            success_reason_json: None,
        },
        NodeState::Failed {
            common: common(),
            output_hash: None,
            completed_at: at,
            duration_ms: 1.0,
            error_json: "{}".to_owned(),
            context_after_json: None,
        },
    ];
    let statuses: Vec<NodeStateStatus> = states.iter().map(NodeState::status).collect();
    assert_eq!(statuses, NodeStateStatus::ALL);
}

#[test]
fn outcome_detail_maps_to_every_outcome() {
    let batch_id = BatchId::new();
    let details = [
        OutcomeDetail::Completed { sink_name: "out".into() },
        OutcomeDetail::Buffered { batch_id: batch_id.clone() },
        OutcomeDetail::ConsumedInBatch { batch_id },
    ];
    let outcomes: Vec<RowOutcome> = details.iter().map(OutcomeDetail::outcome).collect();
    assert_eq!(outcomes, vec![RowOutcome::Completed, RowOutcome::Buffered, RowOutcome::ConsumedInBatch]);
}

#[test]
fn ended_run_states_carry_their_completion_time() {
    let at = now();
    assert_eq!(RunState::ended(RunStatus::Running, at), None);
    let failed = RunState::ended(RunStatus::Failed, at).expect("terminal");
    assert_eq!(failed.status(), RunStatus::Failed);
    assert_eq!(failed.completed_at(), Some(at));
    assert_eq!(BatchState::Draft.status(), BatchStatus::Draft);
}
