//! The bounded queries behind [`explain_token`] and [`row_outputs`], and the
//! lineage integrity checks.

use std::collections::{BTreeMap, HashMap, HashSet};

use diesel::prelude::*;

use contracts::records::{BatchState, CallParent, NodeState, Token, TokenLineage, TokenParent};
use contracts::{sink_write_hash, NodeType, RowId, RunId, StateId, TokenId};

use super::{BatchHistory, Lineage, Payload, SourceRow, StateHistory, TokenHistory};
use crate::connection::DbConnection;
use crate::error::{LandscapeError, Result};
use crate::loaders;
use crate::models::{
    ArtifactRow, BatchMemberRow, BatchRow, CallRow, EdgeRow, NodeRow, NodeStateRow, RoutingEventRow, RowRow, RunRow,
    TokenOutcomeRow, TokenParentRow, TokenRow, TransformErrorRow, ValidationErrorRow,
};
use crate::payload_store::{PayloadStore, PayloadStoreError};
use crate::schema::{
    artifacts, batch_members, batches, calls, edges, node_states, nodes, routing_events, rows, runs, token_outcomes,
    token_parents, tokens, transform_errors, validation_errors,
};

/// Keys per `IN (...)` list: far below every backend's bind-parameter limit.
const CHUNK: usize = 500;

/// Loads `$query` (a closure over one chunk of `$keys`) for every chunk.
macro_rules! load_in {
    ($conn:expr, $keys:expr, |$chunk:ident| $query:expr) => {{
        let mut found = Vec::new();
        for $chunk in $keys.chunks(CHUNK) {
            found.extend($query.load(&mut *$conn)?);
        }
        found
    }};
}

/// How a caller names a source row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowSelector {
    /// The row's position in the source (`rows.row_index`, from 0).
    Index(u64),
    Id(RowId),
}

fn ensure_run(conn: &mut DbConnection, run_id: &RunId) -> Result<()> {
    let found: Vec<RunRow> =
        runs::table.filter(runs::run_id.eq(run_id.as_str())).select(RunRow::as_select()).limit(1).load(conn)?;
    if found.is_empty() {
        return Err(LandscapeError::NotFound(format!("run {run_id}")));
    }
    Ok(())
}

/// The tokens a source row ended as: every token reachable from the row's
/// tokens through `token_parents` that has no child (the outputs, failures
/// and buffered tokens of that row), with their outcomes. With `sink`, only
/// those whose terminal outcome names that sink; none is an error naming
/// where the row's outputs went.
pub fn row_outputs(conn: &mut DbConnection, run_id: &RunId, row: &RowSelector, sink: Option<&str>) -> Result<Vec<TokenId>> {
    ensure_run(conn, run_id)?;
    let query = rows::table.filter(rows::run_id.eq(run_id.as_str())).select(RowRow::as_select()).limit(1);
    let found: Vec<RowRow> = match row {
        RowSelector::Index(index) => {
            let index = i64::try_from(*index).map_err(|_| LandscapeError::NotFound(format!("row {index}")))?;
            query.filter(rows::row_index.eq(index)).load(&mut *conn)?
        }
        RowSelector::Id(id) => query.filter(rows::row_id.eq(id.as_str())).load(&mut *conn)?,
    };
    let row = match found.into_iter().next() {
        Some(found) => loaders::source_row(found)?,
        None => {
            let name = match row {
                RowSelector::Index(index) => format!("row {index}"),
                RowSelector::Id(id) => format!("row {id}"),
            };
            return Err(LandscapeError::NotFound(format!("{name} in run {run_id}")));
        }
    };
    let initial: Vec<String> = tokens::table
        .filter(tokens::row_id.eq(row.row_id.as_str()))
        .order((tokens::created_at.asc(), tokens::token_id.asc()))
        .select(tokens::token_id)
        .load(&mut *conn)?;
    let mut seen: HashSet<String> = initial.iter().cloned().collect();
    let mut order = initial.clone();
    let mut has_child: HashSet<String> = HashSet::new();
    let mut frontier = initial;
    while !frontier.is_empty() {
        let links: Vec<(String, String)> = load_in!(conn, frontier, |chunk| token_parents::table
            .filter(token_parents::parent_token_id.eq_any(chunk))
            .order((token_parents::parent_token_id.asc(), token_parents::token_id.asc()))
            .select((token_parents::parent_token_id, token_parents::token_id)));
        let mut next = Vec::new();
        for (parent, child) in links {
            has_child.insert(parent);
            if seen.insert(child.clone()) {
                order.push(child.clone());
                next.push(child);
            }
        }
        frontier = next;
    }
    let leaves: Vec<String> = order.into_iter().filter(|t| !has_child.contains(t)).collect();
    let Some(sink) = sink else {
        return leaves.iter().map(|t| Ok(TokenId::parse(t)?)).collect();
    };
    let outcomes: Vec<TokenOutcomeRow> = load_in!(conn, leaves, |chunk| token_outcomes::table
        .filter(token_outcomes::token_id.eq_any(chunk))
        .select(TokenOutcomeRow::as_select()));
    let outcomes = outcomes.into_iter().map(loaders::token_outcome).collect::<Result<Vec<_>>>()?;
    let at_sink: HashSet<&str> =
        outcomes.iter().filter(|o| o.is_terminal() && o.detail.sink_name() == Some(sink)).map(|o| o.token_id.as_str()).collect();
    let chosen: Vec<TokenId> =
        leaves.iter().filter(|t| at_sink.contains(t.as_str())).map(|t| Ok(TokenId::parse(t)?)).collect::<Result<_>>()?;
    if chosen.is_empty() {
        let mut sinks: Vec<&str> = outcomes.iter().filter(|o| o.is_terminal()).filter_map(|o| o.detail.sink_name()).collect();
        sinks.sort_unstable();
        sinks.dedup();
        let went = if sinks.is_empty() { "no sink".to_owned() } else { format!("sinks {}", sinks.join(", ")) };
        return Err(LandscapeError::NotFound(format!(
            "an output of row {} at sink {sink} (its outputs reached {went})",
            row.row_index
        )));
    }
    Ok(chosen)
}

/// The complete lineage of `token_id` in `run_id`, with source payloads read
/// from `payloads` when given.
#[allow(
    clippy::too_many_lines,
    reason = "one bounded query per part of the lineage, in order: splitting it would hide the query count"
)]
pub fn explain_token(
    conn: &mut DbConnection,
    payloads: Option<&PayloadStore>,
    run_id: &RunId,
    token_id: &TokenId,
) -> Result<Lineage> {
    ensure_run(conn, run_id)?;
    let (tokens, parents) = walk_ancestors(conn, run_id, token_id)?;
    check_parents(&tokens, &parents)?;
    let ids: Vec<String> = tokens.iter().map(|t| t.token_id.as_str().to_owned()).collect();

    let siblings = load_siblings(conn, &tokens)?;
    let states: Vec<NodeStateRow> = load_in!(conn, ids, |chunk| node_states::table
        .filter(node_states::token_id.eq_any(chunk))
        .order((node_states::token_id.asc(), node_states::step_index.asc(), node_states::attempt.asc()))
        .select(NodeStateRow::as_select()));
    let mut states = states.into_iter().map(loaders::node_state).collect::<Result<Vec<_>>>()?;

    let members: Vec<BatchMemberRow> = load_in!(conn, ids, |chunk| batch_members::table
        .filter(batch_members::token_id.eq_any(chunk))
        .order((batch_members::token_id.asc(), batch_members::batch_id.asc()))
        .select(BatchMemberRow::as_select()));
    let members = members.into_iter().map(loaders::batch_member).collect::<Result<Vec<_>>>()?;
    let batch_ids: Vec<String> = members.iter().map(|m| m.batch_id.as_str().to_owned()).collect();
    let found: Vec<BatchRow> =
        load_in!(conn, batch_ids, |chunk| batches::table.filter(batches::batch_id.eq_any(chunk)).select(BatchRow::as_select()));
    let batches = found.into_iter().map(loaders::batch).collect::<Result<Vec<_>>>()?;
    let flush_ids: Vec<String> = batches.iter().filter_map(|b| flush_state_id(&b.state)).map(|s| s.as_str().to_owned()).collect();
    let found: Vec<NodeStateRow> = load_in!(conn, flush_ids, |chunk| node_states::table
        .filter(node_states::state_id.eq_any(chunk))
        .select(NodeStateRow::as_select()));
    let flush_states = found.into_iter().map(loaders::node_state).collect::<Result<Vec<_>>>()?;

    let state_ids: Vec<String> = states.iter().chain(&flush_states).map(|s| s.common().state_id.as_str().to_owned()).collect();
    let found: Vec<RoutingEventRow> = load_in!(conn, state_ids, |chunk| routing_events::table
        .filter(routing_events::state_id.eq_any(chunk))
        .order((routing_events::state_id.asc(), routing_events::ordinal.asc(), routing_events::event_id.asc()))
        .select(RoutingEventRow::as_select()));
    let mut events = found.into_iter().map(loaders::routing_event).collect::<Result<Vec<_>>>()?;
    let found: Vec<CallRow> = load_in!(conn, state_ids, |chunk| calls::table
        .filter(calls::state_id.eq_any(chunk))
        .order((calls::state_id.asc(), calls::call_index.asc()))
        .select(CallRow::as_select()));
    let mut calls = found.into_iter().map(loaders::call).collect::<Result<Vec<_>>>()?;

    let found: Vec<TokenOutcomeRow> = load_in!(conn, ids, |chunk| token_outcomes::table
        .filter(token_outcomes::token_id.eq_any(chunk))
        .order((token_outcomes::is_terminal.asc(), token_outcomes::recorded_at.asc(), token_outcomes::outcome_id.asc()))
        .select(TokenOutcomeRow::as_select()));
    let mut outcomes = found.into_iter().map(loaders::token_outcome).collect::<Result<Vec<_>>>()?;
    let found: Vec<TransformErrorRow> = load_in!(conn, ids, |chunk| transform_errors::table
        .filter(transform_errors::token_id.eq_any(chunk))
        .order((transform_errors::created_at.asc(), transform_errors::error_id.asc()))
        .select(TransformErrorRow::as_select()));
    let mut transform_errors = found.into_iter().map(loaders::transform_error).collect::<Result<Vec<_>>>()?;

    let found: Vec<NodeRow> = nodes::table
        .filter(nodes::run_id.eq(run_id.as_str()))
        .order((nodes::sequence_in_pipeline.asc(), nodes::registered_at.asc(), nodes::node_id.asc()))
        .select(NodeRow::as_select())
        .load(&mut *conn)?;
    let nodes = found.into_iter().map(loaders::node).collect::<Result<Vec<_>>>()?;
    let found: Vec<EdgeRow> = edges::table
        .filter(edges::run_id.eq(run_id.as_str()))
        .order((edges::created_at.asc(), edges::edge_id.asc()))
        .select(EdgeRow::as_select())
        .load(&mut *conn)?;
    let edges = found.into_iter().map(loaders::edge).collect::<Result<Vec<_>>>()?;

    let sink_nodes: Vec<String> = nodes
        .iter()
        .filter(|n| n.node_type == NodeType::Sink)
        .filter(|n| states.iter().any(|s| s.common().node_id == n.node_id))
        .map(|n| n.node_id.as_str().to_owned())
        .collect();
    let found: Vec<ArtifactRow> = load_in!(conn, sink_nodes, |chunk| artifacts::table
        .filter(artifacts::run_id.eq(run_id.as_str()))
        .filter(artifacts::sink_node_id.eq_any(chunk))
        .order((artifacts::created_at.asc(), artifacts::artifact_id.asc()))
        .select(ArtifactRow::as_select()));
    let artifacts = found.into_iter().map(loaders::artifact).collect::<Result<Vec<_>>>()?;

    let rows = load_rows(conn, payloads, &tokens)?;

    let mut state_history = |state: NodeState| -> Result<StateHistory> {
        let id = state.common().state_id.clone();
        let artifact = match &state {
            NodeState::Completed { common, output_hash, .. } => artifacts
                .iter()
                .filter(|a| a.sink_node_id == common.node_id)
                .map(|a| Ok((a, sink_write_hash(&common.input_hash, &a.path_or_uri, &a.content_hash)?)))
                .collect::<Result<Vec<_>>>()?
                .into_iter()
                .find(|(_, hash)| hash == output_hash)
                .map(|(a, _)| a.clone()),
            NodeState::Open { .. } | NodeState::Pending { .. } | NodeState::Failed { .. } => None,
        };
        Ok(StateHistory {
            routing_events: drain(&mut events, |e| e.state_id == id),
            calls: drain(&mut calls, |c| matches!(&c.parent, CallParent::State(parent) if *parent == id)),
            artifact,
            state,
        })
    };
    let mut flush_by_id: HashMap<StateId, StateHistory> = HashMap::new();
    for state in flush_states {
        let history = state_history(state)?;
        flush_by_id.insert(history.state.common().state_id.clone(), history);
    }
    let mut histories = Vec::with_capacity(tokens.len());
    for token in tokens {
        let own_states = drain(&mut states, |s| s.common().token_id == token.token_id);
        let own_states = own_states.into_iter().map(&mut state_history).collect::<Result<Vec<_>>>()?;
        let batches = members
            .iter()
            .filter(|m| m.token_id == token.token_id)
            .map(|member| {
                let batch = batches.iter().find(|b| b.batch_id == member.batch_id).cloned().ok_or_else(|| {
                    LandscapeError::integrity(format!("batch {} of token {} does not exist", member.batch_id, token.token_id))
                })?;
                let flush = flush_state_id(&batch.state).and_then(|id| flush_by_id.get(id)).cloned();
                Ok(BatchHistory { member: member.clone(), batch, flush })
            })
            .collect::<Result<Vec<_>>>()?;
        histories.push(TokenHistory {
            parents: parents.get(&token.token_id).cloned().unwrap_or_default(),
            siblings: siblings.get(&token.token_id).cloned().unwrap_or_default(),
            states: own_states,
            outcomes: drain(&mut outcomes, |o| o.token_id == token.token_id),
            batches,
            transform_errors: drain(&mut transform_errors, |e| e.token_id == token.token_id),
            token,
        });
    }
    Ok(Lineage { run_id: run_id.clone(), target: token_id.clone(), tokens: histories, rows, nodes, edges })
}

/// Removes and returns the items matching `pred`, keeping the order of both.
fn drain<T>(items: &mut Vec<T>, pred: impl Fn(&T) -> bool) -> Vec<T> {
    let (taken, kept) = std::mem::take(items).into_iter().partition(|item| pred(item));
    *items = kept;
    taken
}

fn flush_state_id(state: &BatchState) -> Option<&StateId> {
    match state {
        BatchState::Draft => None,
        BatchState::Executing { aggregation_state_id, .. } | BatchState::Completed { aggregation_state_id, .. } => {
            Some(aggregation_state_id)
        }
        BatchState::Failed { flush, .. } => flush.as_ref().map(|(_, id)| id),
    }
}

/// The target and its ancestors (nearest generation first) and every
/// token's parent links.
fn walk_ancestors(
    conn: &mut DbConnection,
    run_id: &RunId,
    token_id: &TokenId,
) -> Result<(Vec<Token>, HashMap<TokenId, Vec<TokenParent>>)> {
    let mut ordered: Vec<Token> = Vec::new();
    let mut parents: HashMap<TokenId, Vec<TokenParent>> = HashMap::new();
    let mut seen: HashSet<String> = HashSet::from([token_id.as_str().to_owned()]);
    let mut frontier = vec![token_id.as_str().to_owned()];
    let mut children_of: HashMap<String, String> = HashMap::new();
    while !frontier.is_empty() {
        let found: Vec<TokenRow> =
            load_in!(conn, frontier, |chunk| tokens::table.filter(tokens::token_id.eq_any(chunk)).select(TokenRow::as_select()));
        let mut by_id: HashMap<String, Token> = HashMap::new();
        for row in found {
            let token = loaders::token(row)?;
            by_id.insert(token.token_id.as_str().to_owned(), token);
        }
        for id in &frontier {
            let child = children_of.get(id);
            let token = by_id.remove(id).ok_or_else(|| match child {
                None => LandscapeError::NotFound(format!("token {id}")),
                Some(child) => LandscapeError::integrity(format!("parent token {id} of token {child} does not exist")),
            })?;
            if &token.run_id != run_id {
                return Err(match child {
                    None => LandscapeError::NotFound(format!("token {id} in run {run_id} (it belongs to run {})", token.run_id)),
                    Some(child) => LandscapeError::integrity(format!(
                        "parent token {id} of token {child} belongs to run {}, not {run_id}",
                        token.run_id
                    )),
                });
            }
            ordered.push(token);
        }
        let links: Vec<TokenParentRow> = load_in!(conn, frontier, |chunk| token_parents::table
            .filter(token_parents::token_id.eq_any(chunk))
            .order((token_parents::token_id.asc(), token_parents::ordinal.asc()))
            .select(TokenParentRow::as_select()));
        let mut grouped: BTreeMap<String, Vec<TokenParent>> = BTreeMap::new();
        for link in links {
            let link = loaders::token_parent(link)?;
            grouped.entry(link.token_id.as_str().to_owned()).or_default().push(link);
        }
        let mut next = Vec::new();
        for id in &frontier {
            let Some(links) = grouped.remove(id) else { continue };
            for link in &links {
                let parent = link.parent_token_id.as_str().to_owned();
                if seen.insert(parent.clone()) {
                    children_of.insert(parent.clone(), id.clone());
                    next.push(parent);
                }
            }
            parents.insert(TokenId::parse(id)?, links);
        }
        frontier = next;
    }
    Ok((ordered, parents))
}

/// A token's parent links must match how it came to exist.
fn check_parents(tokens: &[Token], parents: &HashMap<TokenId, Vec<TokenParent>>) -> Result<()> {
    let by_id: HashMap<&TokenId, &Token> = tokens.iter().map(|t| (&t.token_id, t)).collect();
    for token in tokens {
        let links = parents.get(&token.token_id).map_or(&[][..], Vec::as_slice);
        let id = &token.token_id;
        let parent = |link: &TokenParent| -> Result<&Token> {
            by_id.get(&link.parent_token_id).copied().ok_or_else(|| {
                LandscapeError::integrity(format!("parent token {} of token {id} was not loaded", link.parent_token_id))
            })
        };
        match &token.lineage {
            TokenLineage::Initial => {
                if !links.is_empty() {
                    return Err(LandscapeError::integrity(format!("token {id} is a source row's first token but has parents")));
                }
            }
            TokenLineage::Forked { .. } | TokenLineage::Joined { .. } => {
                if links.is_empty() {
                    return Err(LandscapeError::integrity(format!("token {id} has a fork or join group but no parents")));
                }
                for link in links {
                    if parent(link)?.row_id != token.row_id {
                        return Err(LandscapeError::integrity(format!(
                            "parent token {} of token {id} belongs to another row",
                            link.parent_token_id
                        )));
                    }
                }
            }
            TokenLineage::Expanded { .. } => {
                let Some(first) = links.first() else {
                    return Err(LandscapeError::integrity(format!("token {id} has an expand group but no parents")));
                };
                // An expansion's (or batch output's) row is its first parent's row.
                if parent(first)?.row_id != token.row_id {
                    return Err(LandscapeError::integrity(format!(
                        "first parent token {} of token {id} belongs to another row",
                        first.parent_token_id
                    )));
                }
            }
        }
    }
    Ok(())
}

/// Other members of each token's fork or expand group.
fn load_siblings(conn: &mut DbConnection, tokens: &[Token]) -> Result<HashMap<TokenId, Vec<TokenId>>> {
    let forks: Vec<String> = tokens
        .iter()
        .filter_map(|t| match &t.lineage {
            TokenLineage::Forked { fork_group_id, .. } => Some(fork_group_id.as_str().to_owned()),
            TokenLineage::Initial | TokenLineage::Joined { .. } | TokenLineage::Expanded { .. } => None,
        })
        .collect();
    let expands: Vec<String> = tokens
        .iter()
        .filter_map(|t| match &t.lineage {
            TokenLineage::Expanded { expand_group_id, .. } => Some(expand_group_id.as_str().to_owned()),
            TokenLineage::Initial | TokenLineage::Joined { .. } | TokenLineage::Forked { .. } => None,
        })
        .collect();
    let mut found: Vec<TokenRow> = load_in!(conn, forks, |chunk| tokens::table
        .filter(tokens::fork_group_id.eq_any(chunk))
        .order((tokens::created_at.asc(), tokens::token_id.asc()))
        .select(TokenRow::as_select()));
    let expanded: Vec<TokenRow> = load_in!(conn, expands, |chunk| tokens::table
        .filter(tokens::expand_group_id.eq_any(chunk))
        .order((tokens::created_at.asc(), tokens::token_id.asc()))
        .select(TokenRow::as_select()));
    found.extend(expanded);
    let group_members = found.into_iter().map(loaders::token).collect::<Result<Vec<_>>>()?;
    let group_of = |t: &Token| match &t.lineage {
        TokenLineage::Forked { fork_group_id, .. } => Some(fork_group_id.as_str().to_owned()),
        TokenLineage::Expanded { expand_group_id, .. } => Some(expand_group_id.as_str().to_owned()),
        TokenLineage::Initial | TokenLineage::Joined { .. } => None,
    };
    let mut siblings = HashMap::new();
    for token in tokens {
        let Some(group) = group_of(token) else { continue };
        let others: Vec<TokenId> = group_members
            .iter()
            .filter(|m| m.token_id != token.token_id && group_of(m).as_deref() == Some(group.as_str()))
            .map(|m| m.token_id.clone())
            .collect();
        siblings.insert(token.token_id.clone(), others);
    }
    Ok(siblings)
}

fn load_rows(conn: &mut DbConnection, payloads: Option<&PayloadStore>, tokens: &[Token]) -> Result<Vec<SourceRow>> {
    let mut row_ids: Vec<String> = tokens.iter().map(|t| t.row_id.as_str().to_owned()).collect();
    row_ids.sort_unstable();
    row_ids.dedup();
    let found: Vec<RowRow> = load_in!(conn, row_ids, |chunk| rows::table
        .filter(rows::row_id.eq_any(chunk))
        .order(rows::row_index.asc())
        .select(RowRow::as_select()));
    if found.len() != row_ids.len() {
        return Err(LandscapeError::integrity(format!(
            "{} of the lineage's {} source rows do not exist",
            row_ids.len() - found.len(),
            row_ids.len()
        )));
    }
    let errors: Vec<ValidationErrorRow> = load_in!(conn, row_ids, |chunk| validation_errors::table
        .filter(validation_errors::row_id.eq_any(chunk))
        .order((validation_errors::created_at.asc(), validation_errors::error_id.asc()))
        .select(ValidationErrorRow::as_select()));
    let mut errors = errors.into_iter().map(loaders::validation_error).collect::<Result<Vec<_>>>()?;
    let mut rows = Vec::with_capacity(found.len());
    for found in found {
        let row = loaders::source_row(found)?;
        if let Some(token) = tokens.iter().find(|t| t.row_id == row.row_id && t.run_id != row.run_id) {
            return Err(LandscapeError::integrity(format!("token {} refers to a row of another run", token.token_id)));
        }
        let payload = load_payload(payloads, row.source_data_ref.as_deref(), &format!("row {}", row.row_id))?;
        let own = drain(&mut errors, |e| e.row_id.as_ref() == Some(&row.row_id));
        rows.push(SourceRow { row, payload, validation_errors: own });
    }
    Ok(rows)
}

/// What the payload store holds under `key` (the payload of `what`), as JSON.
pub(crate) fn load_payload(payloads: Option<&PayloadStore>, key: Option<&str>, what: &str) -> Result<Payload> {
    match (key, payloads) {
        (None, _) => Ok(Payload::NotStored),
        (Some(_), None) => Ok(Payload::StoreNotGiven),
        (Some(key), Some(store)) => match store.retrieve(key) {
            Ok(bytes) => Ok(Payload::Available(
                serde_json::from_slice(&bytes)
                    .map_err(|e| LandscapeError::integrity(format!("payload {key} of {what} is not JSON: {e}")))?,
            )),
            Err(PayloadStoreError::NotFound(_)) => Ok(Payload::Purged),
            Err(error) => Err(error.into()),
        },
    }
}
