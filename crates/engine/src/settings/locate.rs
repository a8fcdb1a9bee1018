//! Finds the line of a key path in block-style YAML, so problems found after
//! parsing (wiring, names) can still point at a line.

/// A key path segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Segment {
    Key(String),
    Index(usize),
}

/// Parses `gates[0].routes.true` into segments.
pub(crate) fn segments(path: &str) -> Vec<Segment> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let mut rest = part;
        if let Some(open) = rest.find('[') {
            if open > 0 {
                out.push(Segment::Key(rest[..open].to_owned()));
            }
            rest = &rest[open..];
            while let Some(stripped) = rest.strip_prefix('[') {
                let Some(close) = stripped.find(']') else { break };
                if let Ok(index) = stripped[..close].parse() {
                    out.push(Segment::Index(index));
                }
                rest = &stripped[close + 1..];
            }
        } else if !rest.is_empty() {
            out.push(Segment::Key(rest.to_owned()));
        }
    }
    out
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

fn key_of(content: &str) -> Option<&str> {
    let (key, _) = content.split_once(':')?;
    Some(key.trim().trim_matches(|c| c == '\'' || c == '"'))
}

/// The 1-based (line, column) of the deepest segment of `path` that can be
/// found, or `None` when not even the first one is found.
pub(crate) fn locate(text: &str, path: &str) -> Option<(usize, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut start = 0;
    let mut end = lines.len();
    // Column where the current block's entries begin (None: any).
    let mut parent_column: Option<usize> = None;
    let mut found = None;
    for segment in segments(path) {
        let block: Vec<(usize, usize, &str)> = (start..end)
            .filter_map(|idx| {
                let line = lines[idx];
                let content = line.trim_start();
                if content.is_empty() || content.starts_with('#') {
                    return None;
                }
                Some((idx, indent(line), content))
            })
            .collect();
        let Some(min_indent) = block.iter().map(|(_, column, _)| *column).filter(|c| parent_column.is_none_or(|p| *c >= p)).min()
        else {
            break;
        };
        let hit = match &segment {
            Segment::Key(key) => block
                .iter()
                .find(|(_, column, content)| {
                    let content = content.trim_start_matches("- ");
                    (*column == min_indent || parent_column.is_some_and(|p| *column == p))
                        && key_of(content) == Some(key.as_str())
                })
                .map(|(idx, column, content)| (*idx, column + (content.len() - content.trim_start_matches("- ").len()))),
            Segment::Index(index) => block
                .iter()
                .filter(|(_, column, content)| *column == min_indent && content.starts_with('-'))
                .nth(*index)
                .map(|(idx, column, _)| (*idx, column + 2)),
        };
        let Some((line_idx, column)) = hit else { break };
        found = Some((line_idx + 1, column + 1));
        let own_indent = indent(lines[line_idx]);
        let is_key = matches!(segment, Segment::Key(_));
        start = line_idx + 1;
        end = (start..lines.len())
            .find(|idx| {
                let content = lines[*idx].trim_start();
                let line_indent = indent(lines[*idx]);
                // A block sequence may sit at its key's own indentation.
                let same_level_item = is_key && line_indent == own_indent && content.starts_with('-');
                !content.is_empty() && !content.starts_with('#') && line_indent <= own_indent && !same_level_item
            })
            .unwrap_or(lines.len());
        parent_column = match segment {
            Segment::Index(_) => {
                // The item's first key sits on the '-' line; the rest of it is indented to that key.
                start = line_idx;
                Some(column)
            }
            Segment::Key(_) => None,
        };
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = "source:\n  plugin: csv\ngates:\n- name: a\n  input: x\n- name: b\n  routes:\n    'true': out\n";

    #[test]
    fn keys_and_indices_are_found() {
        assert_eq!(locate(YAML, "source.plugin"), Some((2, 3)));
        assert_eq!(locate(YAML, "gates[1].routes.true"), Some((8, 5)));
        assert_eq!(locate(YAML, "gates[0].input"), Some((5, 3)));
        assert_eq!(locate(YAML, "gates[1]"), Some((6, 3)));
        assert_eq!(locate(YAML, "nothing"), None);
    }
}
