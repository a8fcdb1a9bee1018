//! Property: random sequences of recorder calls are accepted exactly when the
//! contract's transition tables allow them, and never leave the database
//! violating its invariants (one terminal outcome per token, no state leaving
//! a terminal status, batch lifecycle order).

use contracts::records::{BatchTrigger, OutcomeDetail};
use contracts::{error_hash, BatchStatus, ContentHash, NodeStateStatus, StateId, TriggerType};
use landscape::recorder::{BatchCompletion, StateCompletion};
use proptest::prelude::*;

use crate::fixtures::{count, fixture, sqlite_recorder};

#[derive(Debug, Clone)]
enum Op {
    BeginState { token: usize },
    CompleteState { state: usize, to: NodeStateStatus },
    Outcome { token: usize, terminal: bool },
    Batch { batch: usize, to: BatchStatus },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..3_usize).prop_map(|token| Op::BeginState { token }),
        (0..6_usize, prop::sample::select(NodeStateStatus::ALL.to_vec())).prop_map(|(state, to)| Op::CompleteState { state, to }),
        (0..3_usize, any::<bool>()).prop_map(|(token, terminal)| Op::Outcome { token, terminal }),
        (0..2_usize, prop::sample::select(BatchStatus::ALL.to_vec())).prop_map(|(batch, to)| Op::Batch { batch, to }),
    ]
}

fn completion(to: NodeStateStatus) -> Option<StateCompletion> {
    match to {
        NodeStateStatus::Open => None,
        NodeStateStatus::Pending => Some(StateCompletion::Pending { context_after_json: None }),
        NodeStateStatus::Completed => Some(StateCompletion::Completed {
            output_hash: ContentHash::of_bytes(b"{}"),
            context_after_json: None,
            success_reason_json: None,
        }),
        NodeStateStatus::Failed => {
            Some(StateCompletion::Failed { error_json: "{}".into(), output_hash: None, context_after_json: None })
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn random_recorder_calls_keep_the_invariants(ops in prop::collection::vec(op(), 1..40)) {
        let mut recorder = sqlite_recorder();
        let f = fixture(&mut recorder);
        let mut tokens = vec![f.token.clone()];
        for index in 1..3_u64 {
            let row = recorder.create_row(&f.run.run_id, &f.source, index, &crate::fixtures::row_value(0)).expect("row");
            tokens.push(recorder.create_token(&row).expect("token"));
        }
        let batches: Vec<_> = (0..2).map(|_| recorder.create_batch(&f.run.run_id, &f.transform).expect("batch")).collect();
        let flush_state = recorder.begin_node_state(f.state(&tokens[0], &f.source, 0, 0)).expect("flush state");
        let mut states: Vec<(StateId, NodeStateStatus)> = Vec::new();
        let mut attempts = [0_u32; 3];
        let mut terminal = [false; 3];
        let mut batch_status = [BatchStatus::Draft; 2];
        for op in ops {
            match op {
                Op::BeginState { token } => {
                    let state = recorder.begin_node_state(f.state(&tokens[token], &f.transform, 1, attempts[token])).expect("begin");
                    attempts[token] += 1;
                    states.push((state.common().state_id.clone(), NodeStateStatus::Open));
                }
                Op::CompleteState { state, to } => {
                    let Some((id, current)) = states.get(state).cloned() else { continue };
                    let Some(completion) = completion(to) else { continue };
                    let result = recorder.complete_node_state(&id, &completion, 1.0);
                    prop_assert_eq!(result.is_ok(), current.can_transition_to(to), "{} -> {}", current, to);
                    if result.is_ok() {
                        states[state].1 = to;
                    }
                }
                Op::Outcome { token, terminal: is_terminal } => {
                    let detail = if is_terminal {
                        OutcomeDetail::Failed { error_hash: error_hash("boom"), batch_id: None }
                    } else {
                        OutcomeDetail::Buffered { batch_id: batches[0].batch_id.clone() }
                    };
                    let result = recorder.record_token_outcome(&f.run.run_id, &tokens[token].token_id, detail, None);
                    prop_assert_eq!(result.is_ok(), !(is_terminal && terminal[token]));
                    terminal[token] |= is_terminal;
                }
                Op::Batch { batch, to } => {
                    let id = &batches[batch].batch_id;
                    let result = match to {
                        BatchStatus::Draft => continue,
                        BatchStatus::Executing => recorder.start_batch(
                            id,
                            &BatchTrigger { trigger_type: TriggerType::Count, trigger_reason: "count reached 1".into() },
                            &flush_state.common().state_id,
                        ),
                        BatchStatus::Completed => recorder.complete_batch(id, BatchCompletion::Completed),
                        BatchStatus::Failed => recorder.complete_batch(id, BatchCompletion::Failed),
                    };
                    prop_assert_eq!(result.is_ok(), batch_status[batch].can_transition_to(to), "{} -> {}", batch_status[batch], to);
                    if result.is_ok() {
                        batch_status[batch] = to;
                    }
                }
            }
        }
        for (id, status) in &states {
            prop_assert_eq!(recorder.get_node_state(id).expect("state reads back strictly").status(), *status);
        }
        for (batch, status) in batches.iter().zip(batch_status) {
            prop_assert_eq!(recorder.get_batch(&batch.batch_id).expect("batch").state.status(), status);
        }
        let doubled = count(
            &mut recorder,
            "SELECT count(*) AS n FROM (SELECT token_id FROM token_outcomes WHERE is_terminal = 1 GROUP BY token_id HAVING count(*) > 1) d",
        );
        prop_assert_eq!(doubled, 0);
    }
}
