//! What a container "does", chosen by the test through its command line: `sh -c SCRIPT` (as
//! `command: [sh, -c, SCRIPT]`, `command: [sh]` + `args: [-c, SCRIPT]`, or any other split of the
//! same argv between `command` and `args`; `bash`, `ash`, `dash` and `/bin/…` paths count as `sh`).
//!
//! SCRIPT is a list of statements separated by `;` or newlines (outside quotes):
//! - `echo TEXT…`: appends one log line, at the moment it runs, with the words of TEXT joined by
//!   one space after shell-style quote removal (`echo "a;  b" c` logs `a;  b c`);
//! - `sleep N`: waits N seconds; N may be fractional (`sleep 0.5`), a trailing `s` is allowed;
//! - `exit N`: ends the container with exit code N (`exit` alone: 0), statements after it do not
//!   run.
//!
//! Anything else (`set -e`, `true`, pipes, variables, `&&`…) is ignored, as if it did nothing
//! and took no time. Nothing runs for real: the script is turned into a [`Timeline`], and the
//! status and the logs of the container are computed from it and the clock.

use std::time::Duration;

use k8s_openapi::api::core::v1::Container;

/// What a script does, counted from the start of the container.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Timeline {
    /// Log lines, each at its offset from the start.
    pub lines: Vec<(Duration, String)>,
    /// How long it runs: until `exit`, or until it falls off its end.
    pub duration: Duration,
    /// `Some(code)` when it ends with `exit`; `None` when it falls off its end.
    pub exit: Option<i32>,
}

/// The script of a container started as `sh -c SCRIPT`, if it is.
pub fn container_script(container: &Container) -> Option<&str> {
    let argv: Vec<&str> = container
        .command
        .iter()
        .flatten()
        .chain(container.args.iter().flatten())
        .map(String::as_str)
        .collect();
    let shell = argv.first()?.rsplit('/').next()?;
    match argv.as_slice() {
        [_, "-c", script, ..] if matches!(shell, "sh" | "bash" | "ash" | "dash") => Some(script),
        _ => None,
    }
}

/// The timeline of a container started as `sh -c SCRIPT`, if it is.
pub fn container_timeline(container: &Container) -> Option<Timeline> {
    container_script(container).map(timeline)
}

/// Interprets `script` (see the module doc).
pub fn timeline(script: &str) -> Timeline {
    let mut t = Timeline::default();
    for statement in statements(script) {
        let words = words(&statement);
        let Some((name, args)) = words.split_first() else {
            continue;
        };
        match name.as_str() {
            "echo" => t.lines.push((t.duration, args.join(" "))),
            "sleep" => {
                let seconds = args
                    .first()
                    .map(|a| a.strip_suffix('s').unwrap_or(a))
                    .and_then(|a| a.parse::<f64>().ok())
                    .filter(|s| s.is_finite() && *s >= 0.0);
                if let Some(d) = seconds.and_then(|s| Duration::try_from_secs_f64(s).ok()) {
                    t.duration += d;
                }
            }
            "exit" => {
                let code = match args.first() {
                    None => Some(0),
                    Some(a) => a.parse::<i64>().ok().map(|n| {
                        // A shell's exit status is a byte.
                        i32::try_from(n.rem_euclid(256)).unwrap_or(1)
                    }),
                };
                if let Some(code) = code {
                    t.exit = Some(code);
                    return t;
                }
            }
            _ => {}
        }
    }
    t
}

/// Splits a script at `;` and newlines outside quotes.
fn statements(script: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut quote: Option<char> = None;
    for ch in script.chars() {
        match (quote, ch) {
            (None, ';' | '\n') => out.push(std::mem::take(&mut current)),
            (None, '\'' | '"') => {
                quote = Some(ch);
                current.push(ch);
            }
            (Some(q), _) if q == ch => {
                quote = None;
                current.push(ch);
            }
            _ => current.push(ch),
        }
    }
    out.push(current);
    out.into_iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Shell-style words: split at whitespace outside quotes, quotes removed.
fn words(statement: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    let mut quote: Option<char> = None;
    for ch in statement.chars() {
        match (quote, ch) {
            (None, c) if c.is_whitespace() => {
                if let Some(w) = current.take() {
                    out.push(w);
                }
            }
            (None, '\'' | '"') => {
                quote = Some(ch);
                current.get_or_insert_with(String::new);
            }
            (Some(q), _) if q == ch => quote = None,
            _ => current.get_or_insert_with(String::new).push(ch),
        }
    }
    out.extend(current);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(command: &[&str], args: &[&str]) -> Container {
        let strings = |v: &[&str]| {
            (!v.is_empty()).then(|| v.iter().map(ToString::to_string).collect::<Vec<_>>())
        };
        Container {
            name: "c".into(),
            command: strings(command),
            args: strings(args),
            ..Default::default()
        }
    }

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn the_script_is_found_however_command_and_args_split_it() {
        let script = Some("echo hi");
        assert_eq!(
            container_script(&container(&["sh", "-c", "echo hi"], &[])),
            script
        );
        assert_eq!(
            container_script(&container(&["sh"], &["-c", "echo hi"])),
            script
        );
        assert_eq!(
            container_script(&container(&["/bin/bash", "-c"], &["echo hi", "arg0"])),
            script
        );
        assert_eq!(container_script(&container(&["sh", "echo hi"], &[])), None);
        assert_eq!(
            container_script(&container(&["python", "-c", "x"], &[])),
            None
        );
        assert_eq!(container_script(&container(&[], &[])), None);
    }

    #[test]
    fn echo_sleep_and_exit_make_the_timeline() {
        let t = timeline("echo migrating; sleep 1; echo done");
        assert_eq!(
            t.lines,
            vec![
                (Duration::ZERO, "migrating".to_string()),
                (secs(1.0), "done".to_string())
            ]
        );
        assert_eq!(t.duration, secs(1.0));
        assert_eq!(t.exit, None, "falls off its end");

        let t = timeline("echo starting\nsleep 0.25\nsleep 1.5s\nexit 3\necho never");
        assert_eq!(t.lines, vec![(Duration::ZERO, "starting".to_string())]);
        assert_eq!(t.duration, secs(1.75));
        assert_eq!(t.exit, Some(3));
    }

    #[test]
    fn quotes_protect_separators_and_spaces() {
        let t = timeline(r#"echo "a;  b"   c 'd e'; echo"#);
        assert_eq!(t.lines[0].1, "a;  b c d e");
        assert_eq!(t.lines[1].1, "", "a bare echo logs an empty line");
    }

    #[test]
    fn everything_else_is_ignored() {
        let t = timeline("set -e; true && false; sleep forever; exit nope; sleep -1; echo ok");
        assert_eq!(t.lines, vec![(Duration::ZERO, "ok".to_string())]);
        assert_eq!(t.duration, Duration::ZERO);
        assert_eq!(t.exit, None);
    }

    #[test]
    fn exit_codes_are_a_byte_and_bare_exit_is_zero() {
        assert_eq!(timeline("exit").exit, Some(0));
        assert_eq!(timeline("exit 256").exit, Some(0));
        assert_eq!(timeline("exit 300").exit, Some(44));
        assert_eq!(timeline("exit -1").exit, Some(255));
    }
}
