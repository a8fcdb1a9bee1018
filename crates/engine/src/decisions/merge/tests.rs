//! Coalesce decisions without a Landscape: when a join is decided, which
//! policy failures it reports, and the three merge strategies.

use super::*;
use crate::settings::Branches;

fn settings(policy: CoalescePolicy, merge: MergeStrategy) -> CoalesceSettings {
    CoalesceSettings {
        name: "join".into(),
        branches: Branches::List(vec!["a".into(), "b".into(), "c".into()]),
        policy,
        merge,
        timeout_seconds: None,
        quorum_count: None,
        select_branch: None,
        on_success: None,
        union_collision_policy: UnionCollisionPolicy::LastWins,
    }
}

fn row(pairs: &[(&str, i64)]) -> Row {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), Value::Integer(*v))).collect()
}

#[test]
fn each_policy_decides_when_it_can_no_longer_change() {
    let all = settings(CoalescePolicy::RequireAll, MergeStrategy::Union);
    assert!(!is_decided(&all, 2, 0));
    assert!(is_decided(&all, 3, 0));
    assert!(is_decided(&all, 1, 1), "a lost branch decides require_all at once");
    let best = settings(CoalescePolicy::BestEffort, MergeStrategy::Union);
    assert!(!is_decided(&best, 1, 1));
    assert!(is_decided(&best, 2, 1));
    let mut quorum = settings(CoalescePolicy::Quorum, MergeStrategy::Union);
    quorum.quorum_count = Some(2);
    assert!(!is_decided(&quorum, 1, 0));
    assert!(is_decided(&quorum, 2, 0));
    assert!(is_decided(&quorum, 0, 2), "two of three lost: the quorum can no longer be met");
    let first = settings(CoalescePolicy::First, MergeStrategy::Union);
    assert!(!is_decided(&first, 0, 2));
    assert!(is_decided(&first, 1, 0));
}

#[test]
fn union_merges_in_declared_order_and_reports_collisions() {
    let s = settings(CoalescePolicy::RequireAll, MergeStrategy::Union);
    let (a, b, c) = (row(&[("x", 1), ("a", 1)]), row(&[("x", 2), ("b", 2)]), row(&[("c", 3)]));
    // Arrival order c, b, a; declared order a, b, c decides who wins.
    let resolution = resolve(&s, &[("c", &c), ("b", &b), ("a", &a)], &IndexMap::new(), None);
    assert_eq!(resolution.arrived, vec!["c", "b", "a"]);
    let merged = resolution.result.expect("merged");
    assert_eq!(merged.row.get("x"), Some(&Value::Integer(2)), "last wins in declared order");
    assert_eq!(merged.row.keys().collect::<Vec<_>>(), vec!["x", "a", "b", "c"]);
    assert_eq!(merged.collisions.get("x"), Some(&serde_json::json!(["a", "b"])));
}

#[test]
fn union_first_wins_and_fail() {
    let mut s = settings(CoalescePolicy::BestEffort, MergeStrategy::Union);
    s.union_collision_policy = UnionCollisionPolicy::FirstWins;
    let (a, b) = (row(&[("x", 1)]), row(&[("x", 2)]));
    let merged = resolve(&s, &[("b", &b), ("a", &a)], &IndexMap::new(), Some("end of source")).result.expect("merged");
    assert_eq!(merged.row.get("x"), Some(&Value::Integer(1)));
    s.union_collision_policy = UnionCollisionPolicy::Fail;
    let error = resolve(&s, &[("a", &a), ("b", &b)], &IndexMap::new(), None).result.expect_err("collision fails");
    assert_eq!(error["failure_reason"], "union_collision");
    assert_eq!(error["union_field_collisions"]["x"], serde_json::json!(["a", "b"]));
    // Equal values are no collision under `fail`.
    let same = row(&[("x", 1)]);
    assert!(resolve(&s, &[("a", &a), ("b", &same)], &IndexMap::new(), None).result.is_ok());
}

#[test]
fn nested_and_select() {
    let (a, b) = (row(&[("x", 1)]), row(&[("y", 2)]));
    let nested =
        resolve(&settings(CoalescePolicy::BestEffort, MergeStrategy::Nested), &[("b", &b), ("a", &a)], &IndexMap::new(), None)
            .result
            .expect("merged");
    assert_eq!(nested.row.keys().collect::<Vec<_>>(), vec!["a", "b"]);
    assert_eq!(nested.row.get("b"), Some(&Value::Object(b.clone())));
    let mut select = settings(CoalescePolicy::BestEffort, MergeStrategy::Select);
    select.select_branch = Some("b".into());
    assert_eq!(resolve(&select, &[("a", &a), ("b", &b)], &IndexMap::new(), None).result.expect("merged").row, b);
    let missing = resolve(&select, &[("a", &a)], &IndexMap::new(), None).result.expect_err("selected branch missing");
    assert_eq!(missing["failure_reason"], "select_branch_missing");
    assert_eq!(missing["select_branch"], "b");
}

#[test]
fn policy_failures_name_the_lost_branches_and_why() {
    let a = row(&[("x", 1)]);
    let losses: IndexMap<String, String> = [("b".to_owned(), "failed".to_owned())].into_iter().collect();
    let resolution =
        resolve(&settings(CoalescePolicy::RequireAll, MergeStrategy::Union), &[("a", &a)], &losses, Some("branch lost"));
    let error = resolution.result.expect_err("incomplete");
    assert_eq!(error["failure_reason"], "incomplete_branches");
    assert_eq!(error["branches_lost"], serde_json::json!({"b": "failed", "c": "branch lost"}));
    assert_eq!(error["cause"], "branch lost");
    let mut quorum = settings(CoalescePolicy::Quorum, MergeStrategy::Union);
    quorum.quorum_count = Some(2);
    quorum.timeout_seconds = Some(1.5);
    let error = resolve(&quorum, &[("a", &a)], &IndexMap::new(), Some("timeout after 1.5 s")).result.expect_err("quorum");
    assert_eq!(error["failure_reason"], "quorum_not_met");
    assert_eq!(error["timeout_ms"], 1500.0);
    assert_eq!(error["branches_lost"]["b"], "timeout after 1.5 s");
}
