//! The fix for YAML syntax errors whose parser message does not name it. A tab in the
//! indentation is the common one: YAML indents with spaces only, and depending on where the tab
//! is the parser says "found character that cannot start any token", which names no character.

/// `message` (the parser's, about `line` of `text`, 1-based), with the fix added when the line
/// is indented with a tab and the message does not already say so.
pub fn explain(text: &str, line: Option<usize>, message: String) -> String {
    let indented_with_tab = line
        .and_then(|n| text.lines().nth(n.checked_sub(1)?))
        .is_some_and(|l| {
            let content = l.trim_start_matches([' ', '\t']);
            l[..l.len() - content.len()].contains('\t')
        });
    if indented_with_tab && !message.contains("tab") {
        format!(
            "{message} (the line is indented with a tab: YAML indents with spaces only, replace the tab with spaces)"
        )
    } else {
        message
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "app: web\nenvironments:\n\t- name: qa\n  - name: production\n";

    #[test]
    fn a_tab_in_the_indentation_is_named() {
        let out = explain(
            TEXT,
            Some(3),
            "found character that cannot start any token".into(),
        );
        assert!(
            out.starts_with(
                "found character that cannot start any token (the line is indented with a tab"
            ),
            "{out}"
        );
    }

    #[test]
    fn other_lines_and_messages_that_say_it_are_left_alone() {
        let plain = "found character that cannot start any token".to_string();
        assert_eq!(explain(TEXT, Some(4), plain.clone()), plain);
        assert_eq!(explain(TEXT, None, plain.clone()), plain);
        assert_eq!(explain(TEXT, Some(99), plain.clone()), plain);
        assert_eq!(explain(TEXT, Some(0), plain.clone()), plain);
        // A tab after the content is not indentation.
        assert_eq!(explain("app:\tweb\n", Some(1), plain.clone()), plain);
        let says_it = "found a tab character that violates indentation".to_string();
        assert_eq!(explain(TEXT, Some(3), says_it.clone()), says_it);
    }
}
