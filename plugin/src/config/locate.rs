//! Finds the line of a field in block-style YAML, so errors found after parsing (a duplicate
//! environment, a bad pin) point at the line to fix. Flow-style YAML gets no line, only the path.

use std::fmt::Write;

#[derive(Debug, Clone, Copy)]
pub enum Seg {
    Key(&'static str),
    Index(usize),
}

/// `environments[1].promoteFrom`
pub fn display_path(segments: &[Seg]) -> String {
    let mut out = String::new();
    for seg in segments {
        match seg {
            Seg::Key(k) if out.is_empty() => out.push_str(k),
            Seg::Key(k) => write!(out, ".{k}").unwrap(),
            Seg::Index(i) => write!(out, "[{i}]").unwrap(),
        }
    }
    out
}

/// 1-based line of the value at `segments`, or `None` when the path is not found.
pub fn line_of(text: &str, segments: &[Seg]) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    // The block we search: a range of lines, and the column its keys start at (`None`: the
    // smallest indentation in the range, for the top level and for values of keys).
    let (mut start, mut end) = (0, lines.len());
    let mut key_column: Option<usize> = None;
    let mut found = None;
    for seg in segments {
        let min_indent = (start..end)
            .filter_map(|i| content_indent(lines[i]))
            .min()?;
        match seg {
            Seg::Key(key) => {
                let column = key_column.unwrap_or(min_indent);
                let prefix = format!("{key}:");
                let at = (start..end)
                    .find(|&i| key_at(lines[i], column).is_some_and(|k| k.starts_with(&prefix)))?;
                found = Some(at + 1);
                // The value runs until the next line at or left of the key's column; list items
                // may sit at the key's own column (`environments:\n- name: qa`).
                end = (at + 1..end)
                    .find(|&i| {
                        content_indent(lines[i]).is_some_and(|ind| {
                            ind < column
                                || (ind == column && !lines[i].trim_start().starts_with("- "))
                        })
                    })
                    .unwrap_or(end);
                start = at + 1;
                key_column = None;
            }
            Seg::Index(n) => {
                let items: Vec<usize> = (start..end)
                    .filter(|&i| {
                        content_indent(lines[i]) == Some(min_indent)
                            && lines[i].trim_start().starts_with("- ")
                    })
                    .collect();
                let at = *items.get(*n)?;
                found = Some(at + 1);
                end = items.get(n + 1).copied().unwrap_or(end);
                start = at;
                key_column = Some(min_indent + 2);
            }
        }
    }
    found
}

/// The text starting at `column` when a key can start there: either the line's content starts
/// at that column, or the line is a list item (`- key: …`) whose marker ends there.
fn key_at(line: &str, column: usize) -> Option<&str> {
    let indent = content_indent(line)?;
    let content = line.trim_start();
    if indent == column {
        Some(content)
    } else if indent + 2 == column {
        content.strip_prefix("- ")
    } else {
        None
    }
}

/// 1-based line of a YAML syntax or type error, within the text: at the end of a text without a
/// final newline the parser reports the line after the last, which no editor shows.
pub fn error_line(text: &str, error: &serde_yaml_ng::Error) -> Option<usize> {
    let last = text.lines().count().max(1);
    error.location().map(|l| l.line().min(last))
}

/// Indentation of a line that holds content (not blank, not a comment).
fn content_indent(line: &str) -> Option<usize> {
    let trimmed = line.trim_start();
    if trimmed.is_empty() || trimmed.starts_with('#') {
        None
    } else {
        Some(line.len() - trimmed.len())
    }
}

#[cfg(test)]
mod tests {
    use super::Seg::{Index, Key};
    use super::*;

    const DOC: &str = "\
app: web
environments:
  - name: qa
    namespace: web-qa
  # production waits for qa
  - name: production
    namespace: web
    promoteFrom: qa
hooks:
  - name: labels
    sha256: abc
";

    #[test]
    fn finds_nested_fields() {
        assert_eq!(line_of(DOC, &[Key("app")]), Some(1));
        assert_eq!(
            line_of(DOC, &[Key("environments"), Index(0), Key("name")]),
            Some(3)
        );
        assert_eq!(
            line_of(DOC, &[Key("environments"), Index(1), Key("promoteFrom")]),
            Some(8)
        );
        assert_eq!(
            line_of(DOC, &[Key("hooks"), Index(0), Key("sha256")]),
            Some(11)
        );
    }

    #[test]
    fn falls_back_to_none_for_missing_paths() {
        assert_eq!(
            line_of(DOC, &[Key("environments"), Index(5), Key("name")]),
            None
        );
    }

    #[test]
    fn renders_paths() {
        assert_eq!(
            display_path(&[Key("environments"), Index(1), Key("promoteFrom")]),
            "environments[1].promoteFrom"
        );
    }
}
