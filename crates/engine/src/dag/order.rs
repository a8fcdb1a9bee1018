//! Topological order by generations (Kahn's algorithm): each generation is
//! the nodes whose in-degree reached zero, in insertion order. Cycles are
//! reported with the nodes on them.

use super::{GraphEdge, NodeIdx};

/// The order, or the nodes that lie on a cycle.
pub(crate) fn topological(n_nodes: usize, edges: &[GraphEdge]) -> Result<Vec<NodeIdx>, Vec<NodeIdx>> {
    let mut in_degree = vec![0_usize; n_nodes];
    for edge in edges {
        in_degree[edge.to] += 1;
    }
    let mut generation: Vec<NodeIdx> = (0..n_nodes).filter(|n| in_degree[*n] == 0).collect();
    let mut order = Vec::with_capacity(n_nodes);
    while !generation.is_empty() {
        let mut next = Vec::new();
        for node in &generation {
            order.push(*node);
            for edge in edges.iter().filter(|e| e.from == *node) {
                in_degree[edge.to] -= 1;
                if in_degree[edge.to] == 0 {
                    next.push(edge.to);
                }
            }
        }
        generation = next;
    }
    if order.len() == n_nodes {
        Ok(order)
    } else {
        Err((0..n_nodes).filter(|n| in_degree[*n] > 0).collect())
    }
}

/// Nodes reachable from `start` along any edge.
pub(crate) fn reachable(n_nodes: usize, edges: &[GraphEdge], start: NodeIdx) -> Vec<bool> {
    let mut seen = vec![false; n_nodes];
    let mut stack = vec![start];
    while let Some(node) = stack.pop() {
        if std::mem::replace(&mut seen[node], true) {
            continue;
        }
        stack.extend(edges.iter().filter(|e| e.from == node).map(|e| e.to));
    }
    seen
}
