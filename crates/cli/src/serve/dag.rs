//! The pipeline's DAG drawn as SVG on the server: nodes in columns by their
//! longest distance from the source, edges as lines labelled with their
//! label and routing count. No JavaScript, no external assets.

use std::collections::HashMap;
use std::fmt::Write as _;

use landscape::analysis::{node_name, EdgeCount, NodeStats};

const NODE_WIDTH: usize = 190;
const NODE_HEIGHT: usize = 64;
const COLUMN_GAP: usize = 90;
const ROW_GAP: usize = 28;
const MARGIN: usize = 20;

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Each node's column: its longest path from a node without inbound edges
/// (edges that would close a cycle are ignored; a DAG has none).
fn columns(nodes: &[NodeStats], edges: &[EdgeCount]) -> HashMap<String, usize> {
    let mut column: HashMap<String, usize> = nodes.iter().map(|n| (n.node_id.clone(), 0)).collect();
    for _ in 0..nodes.len() {
        let mut changed = false;
        for edge in edges {
            let from = column.get(&edge.from_node_id).copied().unwrap_or(0);
            if let Some(to) = column.get_mut(&edge.to_node_id) {
                if *to < from + 1 && from + 1 < nodes.len() {
                    *to = from + 1;
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }
    column
}

/// The SVG of the DAG, with per-node outcome counts and per-edge counts.
pub(crate) fn svg(nodes: &[NodeStats], edges: &[EdgeCount]) -> String {
    let column = columns(nodes, edges);
    let mut per_column: HashMap<usize, usize> = HashMap::new();
    let mut position: HashMap<&str, (usize, usize)> = HashMap::new();
    for node in nodes {
        let c = column.get(&node.node_id).copied().unwrap_or(0);
        let r = per_column.entry(c).or_insert(0);
        position.insert(&node.node_id, (MARGIN + c * (NODE_WIDTH + COLUMN_GAP), MARGIN + 40 + *r * (NODE_HEIGHT + ROW_GAP)));
        *r += 1;
    }
    let width = position.values().map(|p| p.0).max().unwrap_or(0) + NODE_WIDTH + MARGIN;
    let height = position.values().map(|p| p.1).max().unwrap_or(0) + NODE_HEIGHT + MARGIN + 80;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"dag\" role=\"img\" aria-label=\"pipeline graph\" \
         width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\">\
         <defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" \
         orient=\"auto-start-reverse\"><path d=\"M 0 0 L 10 5 L 0 10 z\" fill=\"#555\"/></marker></defs>"
    );
    // Edges between the same two nodes, and edges that skip columns, bend
    // away from the straight line so that neither they nor their labels overlap.
    let mut seen: HashMap<(&str, &str), usize> = HashMap::new();
    for edge in edges {
        let (Some(from), Some(to)) = (position.get(edge.from_node_id.as_str()), position.get(edge.to_node_id.as_str())) else {
            continue;
        };
        let nth = seen.entry((edge.from_node_id.as_str(), edge.to_node_id.as_str())).or_insert(0);
        let (x1, y1) = (from.0 + NODE_WIDTH, from.1 + NODE_HEIGHT / 2);
        let (x2, y2) = (to.0, to.1 + NODE_HEIGHT / 2);
        let skips = to.0.saturating_sub(from.0) / (NODE_WIDTH + COLUMN_GAP) > 1;
        let bend = i64::try_from(*nth).unwrap_or(0) * 26 + if skips { 60 } else { 0 };
        let bend = if *nth % 2 == 1 { -bend } else { bend };
        *nth += 1;
        let (cx, cy) = (usize::midpoint(x1, x2), i64::try_from(usize::midpoint(y1, y2)).unwrap_or(0) + bend * 2);
        let dash = match edge.default_mode.as_str() {
            "copy" => " stroke-dasharray=\"6 3\"",
            "divert" => " stroke-dasharray=\"2 3\"",
            _ => "",
        };
        let label = if edge.routed > 0 { format!("{} ({})", edge.label, edge.routed) } else { edge.label.clone() };
        let label_y = i64::try_from(usize::midpoint(y1, y2)).unwrap_or(0) + bend - 4;
        let _ = write!(
            svg,
            "<g class=\"edge\"><path d=\"M {x1} {y1} Q {cx} {cy} {x2} {y2}\" fill=\"none\" stroke=\"#555\"{dash} marker-end=\"url(#arrow)\"/>\
             <text x=\"{cx}\" y=\"{label_y}\" font-size=\"11\" text-anchor=\"middle\" fill=\"#333\" \
             paint-order=\"stroke\" stroke=\"#fff\" stroke-width=\"3\">{}</text></g>",
            escape(&label)
        );
    }
    for node in nodes {
        let Some(&(x, y)) = position.get(node.node_id.as_str()) else { continue };
        let fill = match node.node_type.as_str() {
            "source" => "#e3f2fd",
            "sink" => "#e8f5e9",
            "gate" => "#fff8e1",
            "coalesce" | "aggregation" => "#f3e5f5",
            _ => "#f5f5f5",
        };
        let counts: Vec<String> = node.states.iter().map(|s| format!("{} {}", s.count, s.status)).collect();
        let _ = write!(
            svg,
            "<g class=\"node\" data-node=\"{id}\"><title>{id} ({det})</title>\
             <rect x=\"{x}\" y=\"{y}\" width=\"{NODE_WIDTH}\" height=\"{NODE_HEIGHT}\" rx=\"6\" fill=\"{fill}\" stroke=\"#888\"/>\
             <text x=\"{tx}\" y=\"{}\" font-size=\"13\" font-weight=\"bold\">{name}</text>\
             <text x=\"{tx}\" y=\"{}\" font-size=\"11\">{kind} · {plugin}</text>\
             <text x=\"{tx}\" y=\"{}\" font-size=\"11\">{counts}</text></g>",
            y + 18,
            y + 35,
            y + 52,
            id = escape(&node.node_id),
            tx = x + 8,
            name = escape(node_name(&node.node_id)),
            kind = escape(&node.node_type),
            plugin = escape(&node.plugin_name),
            det = escape(&node.determinism),
            counts = escape(&if counts.is_empty() { "no visits".to_owned() } else { counts.join(", ") }),
        );
    }
    svg.push_str("</svg>");
    svg
}
