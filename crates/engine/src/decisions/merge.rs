//! How a coalesce resolves: whether the branches that arrived (and those
//! known lost) decide it, whether its policy is met, and the merged row by
//! strategy (union with its collision policy, nested, select). The executor
//! records what this returns; the timing metadata is its own.

use contracts::{Row, Value};
use indexmap::IndexMap;

use crate::settings::{CoalescePolicy, CoalesceSettings, MergeStrategy, UnionCollisionPolicy};

pub(crate) fn policy_name(policy: CoalescePolicy) -> &'static str {
    match policy {
        CoalescePolicy::RequireAll => "require_all",
        CoalescePolicy::Quorum => "quorum",
        CoalescePolicy::BestEffort => "best_effort",
        CoalescePolicy::First => "first",
    }
}

pub(crate) fn merge_name(merge: MergeStrategy) -> &'static str {
    match merge {
        MergeStrategy::Union => "union",
        MergeStrategy::Nested => "nested",
        MergeStrategy::Select => "select",
    }
}

/// Whether a join can resolve now: its policy is met, or the branches lost
/// so far make it impossible to meet.
pub(crate) fn is_decided(settings: &CoalesceSettings, arrived: usize, lost: usize) -> bool {
    let expected = settings.branches.len();
    let quorum = usize::try_from(settings.quorum_count.unwrap_or(u64::MAX)).unwrap_or(usize::MAX);
    match settings.policy {
        CoalescePolicy::RequireAll => arrived == expected || lost > 0,
        CoalescePolicy::BestEffort => arrived + lost >= expected,
        CoalescePolicy::Quorum => arrived >= quorum || expected.saturating_sub(lost) < quorum,
        CoalescePolicy::First => arrived > 0,
    }
}

/// The merged row, and the union fields more than one branch provided.
#[derive(Debug, PartialEq)]
pub(crate) struct Merged {
    pub(crate) row: Row,
    pub(crate) collisions: serde_json::Map<String, serde_json::Value>,
}

/// How a join resolved.
#[derive(Debug, PartialEq)]
pub(crate) struct Resolution {
    /// Branches in declared order.
    pub(crate) expected: Vec<String>,
    /// Branches in arrival order.
    pub(crate) arrived: Vec<String>,
    /// Branches that did not arrive, with why.
    pub(crate) lost: serde_json::Map<String, serde_json::Value>,
    /// The merge, or the error every arrived token fails with.
    pub(crate) result: Result<Merged, serde_json::Value>,
}

/// Resolves a join. `arrivals` are (branch, row) in arrival order; `losses`
/// the known lost branches with why; `cause` why it resolves before every
/// branch arrived (a timeout, the end of the source, a lost branch).
pub(crate) fn resolve(
    settings: &CoalesceSettings,
    arrivals: &[(&str, &Row)],
    losses: &IndexMap<String, String>,
    cause: Option<&str>,
) -> Resolution {
    let expected: Vec<String> = settings.branches.resolved().keys().cloned().collect();
    let arrived: Vec<String> = arrivals.iter().map(|(b, _)| (*b).to_owned()).collect();
    let lost: serde_json::Map<String, serde_json::Value> = expected
        .iter()
        .filter(|b| !arrived.contains(b))
        .map(|b| {
            let why = losses.get(b).cloned().or_else(|| cause.map(str::to_owned)).unwrap_or_else(|| "not arrived".into());
            (b.clone(), serde_json::Value::String(why))
        })
        .collect();
    let result = match policy_failure(settings, &arrived, lost.is_empty()) {
        Some(reason) => {
            let mut error = serde_json::json!({
                "failure_reason": reason,
                "expected_branches": expected,
                "branches_arrived": arrived,
                "branches_lost": lost,
                "merge_policy": policy_name(settings.policy),
            });
            if let Some(cause) = cause {
                error["cause"] = serde_json::json!(cause);
            }
            if let Some(t) = settings.timeout_seconds {
                error["timeout_ms"] = serde_json::json!(t * 1000.0);
            }
            if let Some(b) = &settings.select_branch {
                error["select_branch"] = serde_json::json!(b);
            }
            Err(error)
        }
        None => {
            // Merged in declared branch order.
            let by_branch: Vec<(&str, &Row)> = expected
                .iter()
                .filter_map(|branch| arrivals.iter().find(|(b, _)| b == branch).map(|(b, row)| (*b, *row)))
                .collect();
            merge(settings, &by_branch).map_err(|collisions| {
                serde_json::json!({
                    "failure_reason": "union_collision",
                    "expected_branches": expected,
                    "branches_arrived": arrived,
                    "merge_policy": policy_name(settings.policy),
                    "union_field_collisions": collisions,
                })
            })
        }
    };
    Resolution { expected, arrived, lost, result }
}

/// Why the policy refuses the branches that arrived, if it does.
fn policy_failure(settings: &CoalesceSettings, arrived: &[String], complete: bool) -> Option<&'static str> {
    let failure = match settings.policy {
        CoalescePolicy::RequireAll if !complete => Some("incomplete_branches"),
        CoalescePolicy::Quorum if u64::try_from(arrived.len()).unwrap_or(0) < settings.quorum_count.unwrap_or(u64::MAX) => {
            Some("quorum_not_met")
        }
        CoalescePolicy::RequireAll | CoalescePolicy::Quorum | CoalescePolicy::BestEffort | CoalescePolicy::First => None,
    };
    failure.or_else(|| {
        (settings.merge == MergeStrategy::Select && settings.select_branch.as_ref().is_some_and(|b| !arrived.contains(b)))
            .then_some("select_branch_missing")
    })
}

/// Merges rows given in declared branch order. A union whose collision
/// policy is `fail` returns the collisions as the error.
fn merge(settings: &CoalesceSettings, by_branch: &[(&str, &Row)]) -> Result<Merged, serde_json::Map<String, serde_json::Value>> {
    let mut collisions = serde_json::Map::new();
    let row = match settings.merge {
        MergeStrategy::Union => {
            let mut merged = Row::new();
            let mut providers: IndexMap<&str, Vec<&str>> = IndexMap::new();
            for (branch, row) in by_branch {
                for (field, value) in *row {
                    providers.entry(field.as_str()).or_default().push(branch);
                    let keep_first =
                        settings.union_collision_policy == UnionCollisionPolicy::FirstWins && merged.contains_key(field);
                    if !keep_first {
                        merged.insert(field.clone(), value.clone());
                    }
                }
            }
            for (field, branches) in providers.into_iter().filter(|(_, b)| b.len() > 1) {
                let values: Vec<&Value> = by_branch.iter().filter_map(|(_, row)| row.get(field)).collect();
                let differ = values.windows(2).any(|w| w[0] != w[1]);
                if differ || settings.union_collision_policy != UnionCollisionPolicy::Fail {
                    collisions.insert(field.to_owned(), serde_json::json!(branches));
                }
            }
            if settings.union_collision_policy == UnionCollisionPolicy::Fail && !collisions.is_empty() {
                return Err(collisions);
            }
            merged
        }
        MergeStrategy::Nested => {
            by_branch.iter().map(|(branch, row)| ((*branch).to_owned(), Value::Object((*row).clone()))).collect()
        }
        MergeStrategy::Select => settings
            .select_branch
            .as_ref()
            .and_then(|b| by_branch.iter().find(|(branch, _)| branch == b))
            .map(|(_, row)| (*row).clone())
            .unwrap_or_default(),
    };
    Ok(Merged { row, collisions })
}

#[cfg(test)]
mod tests;
