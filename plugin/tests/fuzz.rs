//! Property-based fuzzing of everything that reads input someone else wrote: the release config
//! and its line finder, image references, times, durations and sizes, release records,
//! approvals, the cluster policy and hook responses.
//!
//! Every target runs a bounded number of cases under `cargo test`; `PROPTEST_CASES=N` gives
//! every target N cases instead, for a longer run (the README's "Fuzzing" has the figures).
//! Failures are not persisted anywhere (`failure_persistence: None`): proptest prints the shrunk
//! input, and each crash found becomes a plain `#[test]` with that input next to its target.

use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use hooks_sdk::helpers::{
    ImageRef, Timestamp, compare_times, image_digest, image_repository, image_tag, is_digest,
    is_immutable_reference, valid_approvals,
};
use hooks_sdk::{Approval, HookRequest, HookResponse};
use kubectl_release::config::locate::{self, Seg};
use kubectl_release::config::{self, parse_positive_duration, parse_quantity};
use kubectl_release::domain::approvals::{Standing, standing};
use kubectl_release::domain::lock::LockState;
use kubectl_release::domain::record::{
    abandoned, describe_applied, effective_outcome, next_revision, previous_good, resumes,
};
use kubectl_release::domain::{CommitSha, Outcome, Release, plan};
use kubectl_release::release::policy;
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::sample::{Index, select};
use serde_json::{Value, json};

/// `default` cases per target, or `PROPTEST_CASES` when it is set. `ProptestConfig::with_cases`
/// would override the variable (it replaces the `cases` that `default()` read from it), so the
/// count proptest read is kept whenever the variable is there.
fn cases(default: u32) -> ProptestConfig {
    let from_env = ProptestConfig::default();
    ProptestConfig {
        cases: if std::env::var_os("PROPTEST_CASES").is_some() {
            from_env.cases
        } else {
            default
        },
        failure_persistence: None,
        ..from_env
    }
}

// ---------------------------------------------------------------------------------------------
// Inputs
// ---------------------------------------------------------------------------------------------

/// Characters that mean something to YAML, JSON, image references or times; now and then a
/// control character or line break YAML refuses or counts differently (CR, NEL, LS, BOM); and
/// sometimes any character at all.
fn tricky_char() -> impl Strategy<Value = char> {
    prop_oneof![
        8 => select(vec![
            ' ', '\n', '\t', ':', '-', '#', '@', '/', '.', '[', ']', '{', '}', ',', '"', '\'',
            '&', '*', '!', '|', '>', '?', '%', '~', '\\', '+', 'T', 'Z', '0', '1', '9', 'a', 'f',
            'é', 'ß', '😀',
        ]),
        1 => select(vec!['\r', '\u{85}', '\u{2028}', '\u{feff}', '\u{0}', '\u{7f}', '\u{1b}']),
        1 => any::<char>(),
    ]
}

fn tricky_string(max: usize) -> impl Strategy<Value = String> {
    vec(tricky_char(), 0..max).prop_map(String::from_iter)
}

/// Text built from YAML's own vocabulary and the config's field names, so the parser gets past
/// its first character often.
fn yaml_soup() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        3 => select(vec![
            "\n", "\n", "  ", "  ", "- ", ": ", "apiVersion", "kind", "app", "image",
            "environments", "hooks", "name", "namespace", "promoteFrom", "sha256", "module", "{",
            "}", "[", "]", ", ", "&a ", "*a", "!!str ", "!!binary ", "!tag ", "'", "\"", "# c",
            "|\n", ">-\n", "? ", "---\n", "...\n", "%YAML 1.2\n", "<<: *a", "~", "null", "1e309",
            "-0", "0x1F", ".nan", "é", "\t", "\r\n", "\u{2028}",
        ])
        .prop_map(str::to_string),
        1 => tricky_string(8),
    ];
    vec(token, 0..60).prop_map(|t| t.concat())
}

/// YAML values of every wrong kind: other types, huge numbers, bad units, aliases, non-ASCII,
/// very long strings.
fn weird_value() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => select(vec![
            "", "~", "null", "[]", "{}", "-1", "0", "18446744073709551615", "18446744073709551616",
            "340282366920938463463374607431768211456", "1e400", "-.inf", ".nan", "true", "no",
            "0o17", "0x_ff", "'unterminated", "\"unterminated", "[a, b", "{a: b}", "*nowhere",
            "&anchor x", "!!binary aGVsbG8=", "!!int x", "? complex", "|", ">-", "é", "\u{2028}",
            "18446744073709551615Mi", "17592186044416Mi", "17592186044415Mi", "16Ei", "0Mi",
            "1.5Gi", "-1Mi", " 64Mi ", "0s", "1ns", "18446744073709551615s", "584942417356y",
            "1s 1s", "2 s", "1µs", "pre-deploy", "post-deploy", "Ignore", "Fail", "qa",
            "production", "environments", "registry.example.com/acme/web:v1",
            "registry.example.com/acme/web@sha256:abc", "127.0.0.1:5000/web", "WEB", "-web",
        ])
        .prop_map(str::to_string),
        2 => "[a-z0-9-]{0,70}",
        1 => (1usize..4096, tricky_char()).prop_map(|(n, c)| c.to_string().repeat(n)),
        1 => any::<u64>().prop_map(|n| n.to_string()),
        2 => (any::<u64>(), select(vec!["", "Ki", "Mi", "Gi", "k", "M", "G", "s", "ms", "h", "d"]))
            .prop_map(|(n, unit)| format!("{n}{unit}")),
        2 => tricky_string(20),
    ]
}

/// One edit of a text, positions taken modulo its length when applied.
#[derive(Debug, Clone)]
enum Edit {
    InsertChar(Index, char),
    DeleteChars(Index, usize),
    ReplaceLine(Index, String),
    DeleteLine(Index),
    DuplicateLine(Index, Index),
    SwapLines(Index, Index),
    Reindent(Index, usize),
    ReplaceValue(Index, String),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        1 => (any::<Index>(), tricky_char()).prop_map(|(i, c)| Edit::InsertChar(i, c)),
        1 => (any::<Index>(), 1usize..8).prop_map(|(i, n)| Edit::DeleteChars(i, n)),
        1 => (any::<Index>(), yaml_soup()).prop_map(|(i, l)| Edit::ReplaceLine(i, l)),
        1 => any::<Index>().prop_map(Edit::DeleteLine),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(i, j)| Edit::DuplicateLine(i, j)),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(i, j)| Edit::SwapLines(i, j)),
        1 => (any::<Index>(), 0usize..9).prop_map(|(i, n)| Edit::Reindent(i, n)),
        6 => (any::<Index>(), weird_value()).prop_map(|(i, v)| Edit::ReplaceValue(i, v)),
    ]
}

fn apply_edits(text: &str, edits: &[Edit]) -> String {
    let mut text = text.to_string();
    for e in edits {
        text = apply_edit(&text, e);
    }
    text
}

fn apply_edit(text: &str, edit: &Edit) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    let mut lines: Vec<String> = text.split('\n').map(str::to_string).collect();
    match edit {
        Edit::InsertChar(at, c) => {
            chars.insert(at.index(chars.len() + 1), *c);
            return chars.into_iter().collect();
        }
        Edit::DeleteChars(at, n) => {
            if !chars.is_empty() {
                let start = at.index(chars.len());
                chars.drain(start..(start + n).min(chars.len()));
            }
            return chars.into_iter().collect();
        }
        Edit::ReplaceLine(at, line) => {
            let i = at.index(lines.len());
            lines[i] = line.clone();
        }
        Edit::DeleteLine(at) => {
            lines.remove(at.index(lines.len()));
        }
        Edit::DuplicateLine(from, to) => {
            let line = lines[from.index(lines.len())].clone();
            lines.insert(to.index(lines.len() + 1), line);
        }
        Edit::SwapLines(a, b) => {
            let (a, b) = (a.index(lines.len()), b.index(lines.len()));
            lines.swap(a, b);
        }
        Edit::Reindent(at, n) => {
            let i = at.index(lines.len());
            lines[i] = format!("{}{}", " ".repeat(*n), lines[i].trim_start());
        }
        Edit::ReplaceValue(at, value) => {
            let i = at.index(lines.len());
            let line = &lines[i];
            lines[i] = match line.split_once(": ") {
                Some((key, _)) => format!("{key}: {value}"),
                None if line.trim_start().starts_with("- ") => {
                    let indent = line.len() - line.trim_start().len();
                    format!("{}- {value}", " ".repeat(indent))
                }
                None => format!("{line} {value}"),
            };
        }
    }
    lines.join("\n")
}

/// Scalars the records, approvals and responses hold, right and wrong.
fn json_string() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => select(vec![
            "deploy", "promote", "rollback", "succeeded", "in-progress", "rolled-back", "failed",
            "interrupted", "unchanged", "Deployment", "StatefulSet", "CronJob", "deployment",
            "pre-deploy", "post-deploy", "allowed", "denied", "error", "Fail", "Ignore", "app",
            "cluster-policy", "qa", "production", "ann", "bob", "",
            "3f2a9c1e0b7d4a5f8e6c2b1a0d9f8e7c6b5a4d3e", "3F2A9C1E0B7D4A5F8E6C2B1A0D9F8E7C6B5A4D3E",
            "3f2a9c1", "é3f2a9c1e0b7d4a5f8e6c2b1a0d9f8e7c6b5a4d3",
            "2026-01-01T00:00:00Z", "2026-01-01T12:00:00+02:00", "soon",
            "kubectl-release.io/hooks/v1", "HookRequest",
            "r/web@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        ])
        .prop_map(str::to_string),
        1 => tricky_string(12),
    ]
}

fn json_key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => select(vec![
            "revision", "app", "environment", "kind", "commit", "imageTag", "containers",
            "workload", "name", "container", "before", "after", "actor", "user", "groups",
            "verified", "startedAt", "finishedAt", "outcome", "sourceEnvironment",
            "sourceRevision", "restoredRevision", "lockHolder", "applied", "hooks", "hook",
            "phase", "source", "failurePolicy", "verdict", "message", "violations", "field",
            "error", "errorKind", "ignored", "warnings", "durationMs", "allowed", "digests",
            "approvedAt", "expiresAt", "apiVersion", "settings", "now", "release", "namespace",
            "targetEnvironment", "history", "approvals", "environments", "workloads", "at",
        ])
        .prop_map(str::to_string),
        1 => tricky_string(6),
    ]
}

/// Any u64, with its edges as likely as the rest (proptest draws uniformly otherwise).
fn edge_u64() -> impl Strategy<Value = u64> {
    prop_oneof![
        any::<u64>(),
        select(vec![
            0,
            1,
            7,
            u64::MAX - 1,
            u64::MAX,
            i64::MAX as u64,
            1 << 53
        ]),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        1 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::from),
        1 => edge_u64().prop_map(Value::from),
        1 => any::<i64>().prop_map(Value::from),
        1 => any::<f64>()
            .prop_filter("JSON has no NaN or infinity", |f| f.is_finite())
            .prop_map(Value::from),
        3 => json_string().prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 40, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::Array),
            btree_map(json_key(), inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// One edit of a JSON document at its `at`-th node (pre-order).
#[derive(Debug, Clone)]
enum JsonEdit {
    Replace(Index, Value),
    RemoveChild(Index, Index),
    InsertChild(Index, String, Value),
}

fn json_edit() -> impl Strategy<Value = JsonEdit> {
    prop_oneof![
        2 => (any::<Index>(), json_value()).prop_map(|(at, v)| JsonEdit::Replace(at, v)),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(at, c)| JsonEdit::RemoveChild(at, c)),
        1 => (any::<Index>(), json_key(), json_value())
            .prop_map(|(at, k, v)| JsonEdit::InsertChild(at, k, v)),
    ]
}

fn node_count(v: &Value) -> usize {
    1 + match v {
        Value::Array(items) => items.iter().map(node_count).sum(),
        Value::Object(map) => map.values().map(node_count).sum(),
        _ => 0,
    }
}

fn apply_json_edits(mut doc: Value, edits: &[JsonEdit]) -> Value {
    for e in edits {
        let at = match e {
            JsonEdit::Replace(at, _)
            | JsonEdit::RemoveChild(at, _)
            | JsonEdit::InsertChild(at, ..) => at.index(node_count(&doc)),
        };
        edit_node(&mut doc, &mut { at }, e);
    }
    doc
}

/// Walks pre-order, counting `at` down, and edits the node where it reaches zero.
fn edit_node(v: &mut Value, at: &mut usize, e: &JsonEdit) -> bool {
    if *at == 0 {
        match (e, &mut *v) {
            (JsonEdit::Replace(_, new), _) => *v = new.clone(),
            (JsonEdit::RemoveChild(_, c), Value::Array(items)) if !items.is_empty() => {
                items.remove(c.index(items.len()));
            }
            (JsonEdit::RemoveChild(_, c), Value::Object(map)) if !map.is_empty() => {
                let key = map.keys().nth(c.index(map.len())).cloned().unwrap();
                map.remove(&key);
            }
            (JsonEdit::InsertChild(_, _, new), Value::Array(items)) => items.push(new.clone()),
            (JsonEdit::InsertChild(_, key, new), Value::Object(map)) => {
                map.insert(key.clone(), new.clone());
            }
            _ => {}
        }
        return true;
    }
    *at -= 1;
    match v {
        Value::Array(items) => items.iter_mut().any(|c| edit_node(c, at, e)),
        Value::Object(map) => map.values_mut().any(|c| edit_node(c, at, e)),
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------------
// The release config and its line finder
// ---------------------------------------------------------------------------------------------

/// `plugin/src/config/tests.rs`'s GOOD, with every optional field given.
const GOOD_CONFIG: &str = "\
apiVersion: kubectl-release.io/v1alpha1
kind: ReleaseConfig
app: web
image: registry.example.com/acme/web
workloads:
  selector: app=web
atomic: true
historyLimit: 10
environments:
  - name: qa
    context: qa-cluster
    namespace: web-qa
  - name: production
    context: prod-cluster
    namespace: web
    promoteFrom: qa
    atomic: false
hooks:
  - name: same-image
    module: hooks/same_image.wasm
    sha256: 9f2c000000000000000000000000000000000000000000000000000000000abc
    phases: [pre-promote, pre-deploy]
    environments: [production]
    failurePolicy: Fail
    needs: [environments]
    timeout: 3s
    memory: 32Mi
    maxOutput: 1Mi
    maxLogs: 64Ki
    settings: {strict: true}
";

fn is_app_name(name: &str) -> bool {
    (1..=40).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

fn check_config(text: &str) -> Result<(), TestCaseError> {
    let cfg = match config::parse(Path::new("/repo/release.yaml"), text) {
        Ok(cfg) => cfg,
        Err(e) => {
            if let Some(line) = e.line {
                let lines = text.lines().count().max(1);
                prop_assert!((1..=lines).contains(&line), "line {line} of {lines}: {e}");
            }
            prop_assert!(e.to_string().starts_with("/repo/release.yaml"));
            return Ok(());
        }
    };
    prop_assert!(is_app_name(&cfg.app), "app {:?}", cfg.app);
    prop_assert_eq!(
        ImageRef::parse(&cfg.image),
        ImageRef {
            repository: cfg.image.clone(),
            tag: None,
            digest: None
        }
    );
    prop_assert!(!cfg.image.is_empty() && cfg.image.trim() == cfg.image);
    let names = cfg.environment_names();
    prop_assert!(!names.is_empty());
    prop_assert_eq!(names.iter().collect::<BTreeSet<_>>().len(), names.len());
    // Terminates (a cycle would loop forever) and places every environment after its source.
    let order: Vec<&str> = cfg
        .promotion_order()
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    prop_assert_eq!(order.len(), names.len());
    for env in &cfg.environments {
        prop_assert!(!env.namespace.is_empty());
        prop_assert!(cfg.environment(&env.name).is_ok());
        if let Some(source) = &env.promote_from {
            let pos = |n: &str| order.iter().position(|o| *o == n);
            prop_assert!(pos(source) < pos(&env.name));
        }
        cfg.atomic_for(env, false);
    }
    for hook in &cfg.hooks {
        prop_assert!(
            hook.sha256.len() == 64
                && hook
                    .sha256
                    .bytes()
                    .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        );
        prop_assert!(!hook.phases.is_empty());
        prop_assert!(!hook.limits.timeout.is_zero());
        prop_assert!(hook.limits.memory_bytes > 0 && hook.limits.max_output_bytes > 0);
        prop_assert!(hook.limits.max_log_bytes > 0);
        for env in hook.environments.iter().flatten() {
            prop_assert!(names.contains(&env.as_str()));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(cases(5000))]

    #[test]
    fn config_parse_arbitrary_text(text in prop_oneof![3 => yaml_soup(), 1 => tricky_string(200), 1 => any::<String>()]) {
        check_config(&text)?;
    }

    #[test]
    fn config_parse_mutated(edits in vec(edit(), 1..4)) {
        check_config(&apply_edits(GOOD_CONFIG, &edits))?;
    }

    /// A value of the wrong type in `image`: what is accepted is a repository, nothing more.
    #[test]
    fn config_parse_image_references(reference in reference_soup()) {
        let quoted = serde_json::to_string(&reference).unwrap();
        check_config(&GOOD_CONFIG.replace("registry.example.com/acme/web", &quoted))?;
    }
}

proptest! {
    // About 1,600 distinct inputs, each slow to refuse.
    #![proptest_config(cases(1000))]

    #[test]
    fn config_parse_deeply_nested(depth in 1usize..400, open in select(vec!["[", "{a: ", "- ", "&a [*a, "])) {
        check_config(&format!("apiVersion: {}", open.repeat(depth)))?;
    }
}

/// Found by `config_parse_arbitrary_text`: at the end of a text without a final newline the
/// YAML parser reports the line after the last (`release.yaml:2` for a one-line file).
#[test]
fn an_error_at_the_end_of_the_text_is_on_its_last_line() {
    let err = config::parse(Path::new("/repo/release.yaml"), "#").unwrap_err();
    assert_eq!(err.line, Some(1), "{err}");
    let err = policy::parse(ORIGIN, "#").unwrap_err();
    assert!(err.starts_with(&format!("{ORIGIN}:1: ")), "{err}");
}

/// A key to look for: the config's own, a few odd ones, or one taken from the text.
fn segment(words: &[&'static str]) -> impl Strategy<Value = Seg> + use<> {
    let mut keys = vec![
        "apiVersion",
        "app",
        "environments",
        "hooks",
        "name",
        "namespace",
        "promoteFrom",
        "sha256",
        "settings",
        "strict",
        "",
        "-",
        "é",
        "a: b",
        "#",
    ];
    keys.extend_from_slice(words);
    prop_oneof![
        2 => select(keys).prop_map(Seg::Key),
        1 => (0usize..4).prop_map(Seg::Index),
        1 => any::<usize>().prop_map(Seg::Index),
    ]
}

/// Words of `text` as `&'static str`, so that `Seg::Key` can look for them (leaked: a test).
fn words_of(text: &str) -> Vec<&'static str> {
    text.split(|c: char| c.is_whitespace() || c == ':')
        .filter(|w| !w.is_empty())
        .take(20)
        .map(|w| &*Box::leak(w.to_string().into_boxed_str()))
        .collect()
}

fn text_and_path() -> impl Strategy<Value = (String, Vec<Seg>)> {
    prop_oneof![
        vec(edit(), 0..6).prop_map(|edits| apply_edits(GOOD_CONFIG, &edits)),
        yaml_soup(),
        tricky_string(120),
    ]
    .prop_flat_map(|text| {
        let words = words_of(&text);
        (Just(text), vec(segment(&words), 0..6))
    })
}

proptest! {
    #![proptest_config(cases(5000))]

    #[test]
    fn line_of_stays_within_the_text((text, segments) in text_and_path()) {
        let rendered = locate::display_path(&segments);
        for seg in &segments {
            if let Seg::Key(k) = seg {
                prop_assert!(rendered.contains(k));
            }
        }
        let lines: Vec<&str> = text.lines().collect();
        if let Some(line) = locate::line_of(&text, &segments) {
            prop_assert!((1..=lines.len()).contains(&line), "line {line} of {}", lines.len());
            // The line found holds what the last segment names.
            let found = lines[line - 1];
            match segments.last() {
                Some(Seg::Key(k)) => prop_assert!(found.contains(&format!("{k}:")), "{found:?}"),
                Some(Seg::Index(_)) => prop_assert!(found.trim_start().starts_with("- "), "{found:?}"),
                None => prop_assert!(false, "a line for the empty path"),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Durations and sizes
// ---------------------------------------------------------------------------------------------

const QUANTITY_UNITS: [(&str, u64); 7] = [
    ("", 1),
    ("Ki", 1 << 10),
    ("Mi", 1 << 20),
    ("Gi", 1 << 30),
    ("k", 1_000),
    ("M", 1_000_000),
    ("G", 1_000_000_000),
];

proptest! {
    #![proptest_config(cases(10000))]

    #[test]
    fn quantities_never_panic(text in prop_oneof![weird_value(), tricky_string(24), any::<String>()]) {
        if let Ok(bytes) = parse_quantity(&text) {
            prop_assert!(bytes > 0);
        }
    }

    /// `<n><unit>` is n times the unit, and an overflow is an error, never a wrap.
    #[test]
    fn quantities_multiply_exactly(
        n in prop_oneof![any::<u64>(), 0u64..5000, (1u64 << 44) - 2..(1u64 << 44) + 2],
        unit in 0..QUANTITY_UNITS.len(),
        pad in select(vec!["", " ", "\t"]),
    ) {
        let (suffix, factor) = QUANTITY_UNITS[unit];
        let got = parse_quantity(&format!("{pad}{n}{suffix}{pad}"));
        match n.checked_mul(factor) {
            Some(0) | None => prop_assert!(got.is_err(), "{n}{suffix}: {got:?}"),
            Some(bytes) => prop_assert_eq!(got, Ok(bytes)),
        }
    }

    #[test]
    fn durations_never_panic(
        text in prop_oneof![
            weird_value(),
            tricky_string(24),
            vec((any::<u64>(), select(vec!["s", "ms", "us", "ns", "m", "h", "d", "w", "M", "y", "sec", "min", "x"])), 1..5)
                .prop_map(|parts| parts.iter().map(|(n, u)| format!("{n}{u}")).collect::<Vec<_>>().join(" ")),
        ]
    ) {
        if let Ok(d) = parse_positive_duration(&text) {
            prop_assert!(!d.is_zero());
        }
    }

    /// `<n><unit>` is exactly n units; zero and overflows are errors.
    #[test]
    fn durations_are_exact(n in prop_oneof![any::<u64>(), 0u64..100_000], unit in 0usize..5) {
        let (suffix, expected) = match unit {
            0 => ("s", Some(Duration::from_secs(n))),
            1 => ("ms", Some(Duration::from_millis(n))),
            2 => ("ns", Some(Duration::from_nanos(n))),
            3 => ("m", n.checked_mul(60).map(Duration::from_secs)),
            _ => ("h", n.checked_mul(3600).map(Duration::from_secs)),
        };
        let got = parse_positive_duration(&format!("{n}{suffix}"));
        match expected.filter(|d| !d.is_zero()) {
            // humantime counts in u64 nanoseconds: longer (584 years) may be refused.
            Some(d) if d.as_nanos() > u128::from(u64::MAX) => {
                prop_assert!(got.is_err() || got == Ok(d), "{n}{suffix}: {got:?}");
            }
            Some(d) => prop_assert_eq!(got, Ok(d)),
            None => prop_assert!(got.is_err(), "{n}{suffix}: {got:?}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Image references
// ---------------------------------------------------------------------------------------------

fn reference_soup() -> impl Strategy<Value = String> {
    let part = prop_oneof![
        3 => select(vec![
            "@", ":", "/", "sha256:", "registry.example.com", "localhost", "127.0.0.1:5000", "web",
            "v1", "3f2a9c1e0b7d4a5f8e6c2b1a0d9f8e7c6b5a4d3e",
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "é", "😀", "",
        ])
        .prop_map(str::to_string),
        1 => tricky_string(6),
    ];
    prop_oneof![vec(part, 0..10).prop_map(|p| p.concat()), any::<String>(),]
}

fn repository() -> impl Strategy<Value = String> {
    (
        prop::option::of(prop_oneof![
            Just("localhost".to_string()),
            "[a-z0-9]{1,8}(\\.[a-z0-9]{1,8}){1,2}",
            "[a-z0-9]{1,8}\\.[a-z]{2,4}:[0-9]{2,5}",
        ]),
        vec("[a-z0-9]([a-z0-9._-]{0,10}[a-z0-9])?", 1..4),
    )
        .prop_map(|(host, path)| {
            let path = path.join("/");
            host.map_or(path.clone(), |h| format!("{h}/{path}"))
        })
}

proptest! {
    #![proptest_config(cases(10000))]

    /// The parts put back together are the reference; every helper splits it the same way.
    #[test]
    fn image_references_split_consistently(reference in reference_soup()) {
        let parsed = ImageRef::parse(&reference);
        parsed.registry();
        let mut rebuilt = parsed.repository.clone();
        if let Some(tag) = &parsed.tag {
            rebuilt.push(':');
            rebuilt.push_str(tag);
        }
        if let Some(digest) = &parsed.digest {
            rebuilt.push('@');
            rebuilt.push_str(digest);
        }
        prop_assert_eq!(&rebuilt, &reference);
        prop_assert_eq!(image_repository(&reference), parsed.repository.as_str());
        prop_assert_eq!(image_tag(&reference), parsed.tag.as_deref());
        prop_assert!(!parsed.repository.contains('@'));
        prop_assert!(parsed.tag.as_deref().is_none_or(|t| !t.contains([':', '/', '@'])));
        let digest = image_digest(&reference);
        prop_assert!(digest.is_none_or(is_digest));
        prop_assert!(
            digest.is_none() || digest == parsed.digest.as_deref(),
            "image_digest {digest:?} but ImageRef digest {:?}",
            parsed.digest
        );
        if is_immutable_reference(&reference) {
            prop_assert!(digest.is_some() || parsed.tag.as_deref().is_some_and(|t| t.len() == 40));
        }
    }

    #[test]
    fn pinned_parses_back(repo in repository(), hex in "[0-9a-f]{64}", tag in prop::option::of("[A-Za-z0-9_.-]{1,20}")) {
        let digest = format!("sha256:{hex}");
        let pinned = ImageRef::pinned(&repo, &digest);
        let parsed = ImageRef::parse(&pinned);
        prop_assert_eq!(&parsed.repository, &repo);
        prop_assert_eq!(parsed.digest.as_deref(), Some(digest.as_str()));
        prop_assert_eq!(parsed.tag, None);
        prop_assert_eq!(image_digest(&pinned), Some(digest.as_str()));
        prop_assert!(is_immutable_reference(&pinned));
        // A tag between repository and digest is kept apart from both.
        if let Some(tag) = tag {
            let tagged = format!("{repo}:{tag}@{digest}");
            let parsed = ImageRef::parse(&tagged);
            prop_assert_eq!(&parsed.repository, &repo);
            prop_assert_eq!(parsed.tag.as_deref(), Some(tag.as_str()));
            prop_assert_eq!(image_digest(&tagged), Some(digest.as_str()));
        }
    }
}

/// Found by `image_references_split_consistently`: `image_digest` took the digest after the
/// last `@` while `ImageRef` (and `image_repository`) split at the first, so this reference
/// was immutable to one and had the digest `@sha256:…` for the other.
#[test]
fn a_digest_follows_the_first_at_sign() {
    let reference = format!("@@sha256:{}", "a".repeat(64));
    assert_eq!(image_digest(&reference), None);
    assert!(!is_immutable_reference(&reference));
    assert_eq!(
        ImageRef::parse(&reference).digest.as_deref(),
        Some(&reference[1..])
    );
}

// ---------------------------------------------------------------------------------------------
// Timestamps
// ---------------------------------------------------------------------------------------------

/// A valid RFC 3339 time in the forms both `Timestamp::parse` and jiff read.
fn rfc3339() -> impl Strategy<Value = String> {
    (
        (0i64..=9998, 1i64..=12, 1i64..=31),
        (0i64..=23, 0i64..=59, 0i64..=59),
        prop::option::of("[0-9]{1,9}"),
        prop_oneof![
            select(vec!["Z", "z", "+00:00", "-00:00"]).prop_map(str::to_string),
            (select(vec!['+', '-']), 0u8..=23, 0u8..=59)
                .prop_map(|(s, h, m)| format!("{s}{h:02}:{m:02}")),
        ],
        select(vec!['T', 't', ' ']),
    )
        .prop_map(|((y, mo, d), (h, mi, s), frac, offset, sep)| {
            let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
            let days = match mo {
                2 if leap => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            let frac = frac.map_or(String::new(), |f| format!(".{f}"));
            format!(
                "{y:04}-{mo:02}-{:02}{sep}{h:02}:{mi:02}:{s:02}{frac}{offset}",
                d.min(days)
            )
        })
}

fn time_soup() -> impl Strategy<Value = String> {
    prop_oneof![
        rfc3339().prop_flat_map(|t| {
            vec(edit(), 1..3).prop_map(move |edits| apply_edits(&t, &edits))
        }),
        vec(
            select(vec![
                "2025", "-", "02", "29", "T", ":", "60", "99", ".", "Z", "+", "24:00", "9", "é",
                " "
            ]),
            0..14
        )
        .prop_map(|p| p.concat()),
        any::<String>(),
    ]
}

proptest! {
    #![proptest_config(cases(10000))]

    #[test]
    fn timestamps_never_panic(a in time_soup(), b in time_soup()) {
        compare_times(&a, &b);
        if let Some(t) = Timestamp::parse(&a) {
            prop_assert!(t.nanos < 1_000_000_000);
            prop_assert_eq!(compare_times(&a, &a), Some(Ordering::Equal));
        }
    }

    /// On valid RFC 3339 times the small parser agrees with jiff, to the nanosecond.
    #[test]
    fn timestamps_agree_with_jiff(a in rfc3339(), b in rfc3339()) {
        let theirs: jiff::Timestamp = a.parse().map_err(|e| TestCaseError::fail(format!("jiff: {a}: {e}")))?;
        // jiff counts the nanoseconds of a time before 1970 back from the second after it.
        let nanos = theirs.as_nanosecond();
        let expected = Timestamp {
            seconds: nanos.div_euclid(1_000_000_000) as i64,
            nanos: nanos.rem_euclid(1_000_000_000) as u32,
        };
        prop_assert_eq!(Timestamp::parse(&a), Some(expected), "{}", a);
        let theirs_b: jiff::Timestamp = b.parse().unwrap();
        prop_assert_eq!(compare_times(&a, &b), Some(theirs.cmp(&theirs_b)));
    }
}

// ---------------------------------------------------------------------------------------------
// Release records
// ---------------------------------------------------------------------------------------------

const SHA: &str = "3f2a9c1e0b7d4a5f8e6c2b1a0d9f8e7c6b5a4d3e";

fn digest_of(c: char) -> String {
    format!("sha256:{}", c.to_string().repeat(64))
}

/// A record with every field given, shaped like `domain::record::fixtures::release`.
fn record(revision: u64, outcome: &str, digest: char) -> Value {
    json!({
        "revision": revision,
        "app": "web",
        "environment": "qa",
        "kind": "deploy",
        "commit": SHA,
        "imageTag": format!("r/web:{SHA}"),
        "containers": [{
            "workload": {"kind": "Deployment", "name": "web"},
            "container": "web",
            "before": format!("r/web@{}", digest_of('0')),
            "after": format!("r/web@{}", digest_of(digest)),
        }],
        "actor": {"user": "dev", "groups": ["system:authenticated"], "verified": true},
        "startedAt": "2026-01-01T00:00:00Z",
        "finishedAt": "2026-01-01T00:01:00Z",
        "outcome": outcome,
        "sourceEnvironment": "dev",
        "sourceRevision": 3,
        "restoredRevision": 2,
        "lockHolder": "ci on host (pid 7)",
        "applied": [{"kind": "Deployment", "name": "web"}],
        "hooks": [
            {"hook": "labels", "phase": "pre-deploy", "source": "app", "failurePolicy": "Fail",
             "outcome": {"verdict": "denied", "message": "no team",
                         "violations": [{"workload": {"kind": "Deployment", "namespace": "qa", "name": "web"},
                                         "field": "metadata.labels.team", "message": "missing"}]},
             "warnings": ["w"], "durationMs": 12},
            {"hook": "policy", "phase": "pre-deploy", "source": "cluster-policy",
             "outcome": {"verdict": "error", "error": "trap", "errorKind": "trap", "ignored": true}},
            {"hook": "ok", "phase": "post-deploy", "source": "app", "outcome": {"verdict": "allowed"}},
        ],
        "warnings": ["w"],
        "message": "m",
    })
}

fn mutated_record() -> impl Strategy<Value = Value> {
    (
        edge_u64(),
        select(vec![
            "succeeded",
            "in-progress",
            "failed",
            "rolled-back",
            "interrupted",
            "planned",
        ]),
        select(vec!['a', 'b', 'c']),
        vec(json_edit(), 0..4),
    )
        .prop_map(|(revision, outcome, digest, edits)| {
            apply_json_edits(record(revision, outcome, digest), &edits)
        })
}

fn lock_state() -> impl Strategy<Value = LockState> {
    prop_oneof![
        Just(LockState::Free),
        (
            select(vec!["ci on host (pid 7)", "someone", ""]),
            any::<i64>()
        )
            .prop_map(|(h, age)| LockState::Held {
                holder: h.into(),
                age_secs: age
            }),
        select(vec!["ci on host (pid 7)", "someone"])
            .prop_map(|h| LockState::Expired { holder: h.into() }),
    ]
}

fn check_history(history: &[Release], lock: &LockState, holder: &str) -> Result<(), TestCaseError> {
    for r in history {
        let text = serde_json::to_string(r).unwrap();
        prop_assert_eq!(
            &serde_json::from_str::<Release>(&text).unwrap(),
            r,
            "{}",
            text
        );
        if let Some(commit) = &r.commit {
            prop_assert_eq!(commit.short().len(), 7);
            prop_assert!(commit.as_str().starts_with(commit.short()));
        }
        let outcome = effective_outcome(r, lock);
        let held_by_its_holder =
            matches!(lock, LockState::Held { holder, .. } if *holder == r.lock_holder);
        prop_assert!(outcome != Outcome::InProgress || held_by_its_holder);
        prop_assert_eq!(resumes(r, &r.containers), !r.containers.is_empty());
        describe_applied(r);
        let digests = plan::digests(&r.containers);
        prop_assert!(digests.windows(2).all(|w| w[0] < w[1]));
        prop_assert_eq!(&plan::inverse(&plan::inverse(&r.containers)), &r.containers);
        r.images();
    }
    let next = next_revision(history);
    let newest = history.iter().map(|r| r.revision).max().unwrap_or(0);
    prop_assert!(next > newest || newest == u64::MAX);
    if let Some(good) = previous_good(history) {
        prop_assert!(good.succeeded());
        prop_assert!(history[1..].iter().any(|r| std::ptr::eq(r, good)));
    }
    for r in abandoned(history, holder) {
        prop_assert!(r.outcome == Outcome::InProgress && r.lock_holder != holder);
    }
    Ok(())
}

proptest! {
    #![proptest_config(cases(10000))]

    #[test]
    fn records_from_arbitrary_json(doc in json_value(), lock in lock_state()) {
        if let Ok(r) = serde_json::from_value::<Release>(doc.clone()) {
            check_history(&[r], &lock, "me")?;
        }
        let _ = serde_json::from_str::<Release>(&doc.to_string());
    }

    /// Exactly 40 hex digits (around them, only whitespace, which is trimmed), lower-cased.
    #[test]
    fn commit_sha_is_exactly_40_hex(text in prop_oneof![
        "[0-9a-fA-F]{38,42}",
        "[ \t\n]?[0-9a-fA-F]{40}[ \t\n]?",
        "[0-9a-f]{20}[^0-9a-f][0-9a-f]{19}",
        tricky_string(44),
    ]) {
        let got = serde_json::from_value::<CommitSha>(Value::String(text.clone()));
        let t = text.trim();
        if t.len() == 40 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
            let sha = got.unwrap();
            prop_assert_eq!(sha.as_str(), t.to_ascii_lowercase());
            prop_assert_eq!(sha.short(), &t.to_ascii_lowercase()[..7]);
        } else {
            prop_assert!(got.is_err(), "{text:?} accepted");
        }
    }
}

proptest! {
    #![proptest_config(cases(2000))]

    #[test]
    fn records_mutated(docs in vec(mutated_record(), 1..5), lock in lock_state(), holder in select(vec!["ci on host (pid 7)", "me"])) {
        let history: Vec<Release> = docs
            .into_iter()
            .filter_map(|d| serde_json::from_str(&d.to_string()).ok())
            .collect();
        check_history(&history, &lock, holder)?;
    }
}

/// Found by `records_mutated`: a (hand-edited) record at the last revision made
/// `next_revision` overflow, a panic in debug builds and revision 0 in release builds.
#[test]
fn the_revision_after_the_last_one_does_not_overflow() {
    let history: Vec<Release> =
        vec![serde_json::from_value(record(u64::MAX, "succeeded", 'a')).unwrap()];
    assert_eq!(next_revision(&history), u64::MAX);
}

// ---------------------------------------------------------------------------------------------
// Approvals
// ---------------------------------------------------------------------------------------------

fn approval_time() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => (0i64..48).prop_map(|h| format!("2026-01-0{}T{:02}:00:00Z", 1 + h / 24, h % 24)),
        1 => select(vec!["", "soon", "never", "2026-13-01T00:00:00Z", "2026-01-01"]).prop_map(str::to_string),
        1 => time_soup(),
    ]
}

fn digests() -> impl Strategy<Value = Vec<String>> {
    vec(select(vec!['a', 'b', 'c']).prop_map(digest_of), 0..4)
}

fn approval() -> impl Strategy<Value = Approval> {
    (
        select(vec!["ann", "bob", ""]),
        select(vec!["production", "qa"]),
        digests(),
        approval_time(),
        approval_time(),
        any::<bool>(),
    )
        .prop_map(
            |(user, env, digests, approved_at, expires_at, verified)| Approval {
                user: user.into(),
                environment: env.into(),
                commit: SHA.into(),
                digests,
                approved_at,
                expires_at,
                verified,
                ..Default::default()
            },
        )
}

fn approval_json() -> impl Strategy<Value = Value> {
    prop_oneof![
        json_value(),
        (approval(), vec(json_edit(), 1..4))
            .prop_map(|(a, edits)| { apply_json_edits(serde_json::to_value(a).unwrap(), &edits) }),
    ]
}

proptest! {
    #![proptest_config(cases(5000))]

    #[test]
    fn approvals_from_arbitrary_json(docs in vec(approval_json(), 0..5), wanted in digests(), now in approval_time()) {
        let approvals: Vec<Approval> = docs
            .into_iter()
            .filter_map(|d| serde_json::from_value(d).ok())
            .collect();
        let now_jiff = now.parse::<jiff::Timestamp>().unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        for a in &approvals {
            standing(a, &wanted, now_jiff);
        }
        let valid = valid_approvals(&approvals, "production", &wanted, &now, Some("ann"));
        let users: BTreeSet<&str> = valid.iter().map(|a| a.user.as_str()).collect();
        prop_assert_eq!(users.len(), valid.len());
        prop_assert!(valid.iter().all(|a| a.environment == "production" && a.user != "ann"));
    }

    /// The plugin's `standing` and the hooks' `valid_approvals` agree on whether an approval
    /// counts, where both judge the same thing: an approval for the environment, given no later
    /// than `now` (`standing` leaves that to the hooks), for some digests.
    #[test]
    fn approvals_standing_agrees_with_the_sdk(
        mut a in approval(),
        wanted in vec(select(vec!['a', 'b', 'c']).prop_map(digest_of), 1..4),
        hours in (0i64..48, 0i64..48),
    ) {
        let at = |h: i64| format!("2026-01-0{}T{:02}:00:00Z", 1 + h / 24, h % 24);
        a.approved_at = at(hours.0.min(hours.1));
        let now = at(hours.0.max(hours.1));
        let counts = !valid_approvals(std::slice::from_ref(&a), &a.environment, &wanted, &now, None).is_empty();
        let valid = standing(&a, &wanted, now.parse().unwrap()) == Standing::Valid;
        prop_assert_eq!(valid, counts, "{:?} wanted {:?} at {}", a, wanted, now);
    }
}

/// Found by `approvals_standing_agrees_with_the_sdk`: `standing` compared the digests as sorted
/// lists, the hooks as sets; it parsed the expiry with jiff, which refuses what the SDK accepts
/// (a leading space), and took an expiry it could not read for one that never comes.
#[test]
fn standing_judges_an_approval_as_the_hooks_do() {
    let approval = |digests: Vec<String>, expires_at: &str| Approval {
        user: "ann".into(),
        environment: "production".into(),
        commit: SHA.into(),
        digests,
        approved_at: "2026-01-01T00:00:00Z".into(),
        expires_at: expires_at.into(),
        ..Approval::default()
    };
    let now = "2026-01-01T00:00:00Z";
    let (a, c) = (digest_of('a'), digest_of('c'));
    let wanted = vec![a.clone(), c.clone()];
    let cases = [
        (
            vec![a.clone(), c.clone(), c.clone()],
            "2026-01-01T15:00:00Z",
            Standing::Valid,
        ),
        (vec![a.clone()], "", Standing::Expired),
        (
            wanted.clone(),
            " 2028-10-30T10:36:24+00:00",
            Standing::Valid,
        ),
    ];
    for (digests, expires_at, expected) in cases {
        let a = approval(digests, expires_at);
        assert_eq!(
            standing(&a, &wanted, now.parse().unwrap()),
            expected,
            "{a:?}"
        );
        let counts =
            !valid_approvals(std::slice::from_ref(&a), "production", &wanted, now, None).is_empty();
        assert_eq!(counts, expected == Standing::Valid, "{a:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// The cluster policy
// ---------------------------------------------------------------------------------------------

const ORIGIN: &str = "cluster of qa (https://k): ConfigMap kubectl-release-system/kubectl-release-policy key policy.yaml";

const GOOD_POLICY: &str = "\
apiVersion: kubectl-release.io/v1alpha1
kind: ClusterPolicy
hooks:
  - name: labels
    module: oci://127.0.0.1:5000/policies/labels@sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc
    phases: [pre-deploy, pre-promote]
    namespaces: [web, web-qa]
    namespaceSelector: tier=prod,team=web
    failurePolicy: Ignore
    needs: [environments]
    timeout: 3s
    memory: 32Mi
    maxOutput: 1Mi
    maxLogs: 64Ki
    settings: {required: [team]}
  - name: signed
    module: oci://registry.example.com/policies/signed@sha256:dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd
";

fn check_policy(text: &str) -> Result<(), TestCaseError> {
    match policy::parse(ORIGIN, text) {
        Ok(policy) => {
            if let Some(g) = &policy.generator {
                prop_assert!(g.module.digest().is_some());
            }
            for h in policy.hooks {
                prop_assert!(h.module.digest().is_some());
                prop_assert!(!h.limits.timeout.is_zero() && h.limits.memory_bytes > 0);
                for (key, _) in h.namespace_selector.iter().flatten() {
                    prop_assert!(!key.is_empty());
                }
                h.applies_to_namespace("web", &Default::default());
            }
        }
        Err(message) => {
            let rest = message.strip_prefix(ORIGIN);
            prop_assert!(rest.is_some(), "{message}");
            // `origin:line: …` when the line is known.
            let digits: String = rest
                .and_then(|r| r.strip_prefix(':'))
                .unwrap_or_default()
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            if let Ok(line) = digits.parse::<usize>() {
                let lines = text.lines().count().max(1);
                prop_assert!(
                    (1..=lines).contains(&line),
                    "line {line} of {lines}: {message}"
                );
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(cases(5000))]

    #[test]
    fn policy_arbitrary_text(text in prop_oneof![yaml_soup(), tricky_string(200)]) {
        check_policy(&text)?;
    }

    #[test]
    fn policy_mutated(edits in vec(edit(), 1..4)) {
        check_policy(&apply_edits(GOOD_POLICY, &edits))?;
    }

    /// Any module reference: only one pinned by digest is accepted.
    #[test]
    fn policy_module_references(reference in reference_soup()) {
        let quoted = serde_json::to_string(&format!("oci://{reference}")).unwrap();
        let module = "oci://registry.example.com/policies/signed@sha256:dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd";
        check_policy(&GOOD_POLICY.replace(module, &quoted))?;
    }
}

// ---------------------------------------------------------------------------------------------
// Hook responses and requests
// ---------------------------------------------------------------------------------------------

fn response_bytes() -> impl Strategy<Value = Vec<u8>> {
    let valid = json!({
        "allowed": false,
        "message": "1 problem",
        "violations": [{"workload": {"kind": "Deployment", "namespace": "qa", "name": "web"},
                        "field": "metadata.labels.team", "message": "missing"}],
        "warnings": ["w"],
    });
    prop_oneof![
        any::<Vec<u8>>(),
        tricky_string(64).prop_map(String::into_bytes),
        json_value().prop_map(|v| v.to_string().into_bytes()),
        vec(json_edit(), 0..4).prop_map(move |edits| apply_json_edits(valid.clone(), &edits)
            .to_string()
            .into_bytes()),
        (1usize..300, select(vec!["[", "{\"a\":"]))
            .prop_map(|(n, open)| open.repeat(n).into_bytes()),
    ]
}

fn request_bytes() -> impl Strategy<Value = Vec<u8>> {
    let mut valid = serde_json::to_value(HookRequest::default()).unwrap();
    valid["release"]["containers"] = json!([{
        "workload": {"kind": "Deployment", "namespace": "qa", "name": "web"},
        "container": "web", "imageAfter": format!("r/web@{}", digest_of('a')), "digestAfter": digest_of('a'),
    }]);
    valid["approvals"] = json!([serde_json::to_value(Approval::default()).unwrap()]);
    valid["history"] = json!([{"revision": 1, "commit": SHA, "actor": "dev", "at": "2026-01-01T00:00:00Z",
                              "outcome": "succeeded", "kind": "deploy"}]);
    prop_oneof![
        1 => any::<Vec<u8>>(),
        1 => json_value().prop_map(|v| v.to_string().into_bytes()),
        3 => vec(json_edit(), 0..4).prop_map(move |edits| apply_json_edits(valid.clone(), &edits).to_string().into_bytes()),
    ]
}

proptest! {
    #![proptest_config(cases(5000))]

    #[test]
    fn hook_responses_from_arbitrary_bytes(bytes in response_bytes()) {
        if let Ok(response) = serde_json::from_slice::<HookResponse>(&bytes) {
            let again = serde_json::to_vec(&response).unwrap();
            prop_assert_eq!(serde_json::from_slice::<HookResponse>(&again).unwrap(), response);
        }
    }

    #[test]
    fn hook_requests_from_arbitrary_bytes(bytes in request_bytes()) {
        if let Ok(request) = hooks_sdk::guest::read_request(&bytes) {
            prop_assert_eq!(request.api_version.as_str(), hooks_sdk::API_VERSION);
            prop_assert_eq!(request.kind.as_str(), hooks_sdk::REQUEST_KIND);
            request.release.digests();
            request.target_environment();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Manifests: the app's YAML, and live objects read back from the cluster
// ---------------------------------------------------------------------------------------------

/// Manifests as a team might write them, then mangled.
fn manifest_soup() -> impl Strategy<Value = String> {
    let good = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  template:\n    spec:\n      containers:\n        - name: web\n          image: r/web:1\n---\napiVersion: v1\nkind: List\nitems:\n  - {apiVersion: v1, kind: ConfigMap, metadata: {name: c}}\n";
    prop_oneof![
        2 => vec(edit(), 1..5).prop_map(move |edits| apply_edits(good, &edits)),
        1 => yaml_soup(),
        1 => vec(yaml_soup(), 1..4).prop_map(|docs| docs.join("\n---\n")),
    ]
}

proptest! {
    #![proptest_config(cases(256))]

    /// Whatever the file says, parsing ends in objects or an error naming a line inside it.
    #[test]
    fn manifests_parse_arbitrary_text(text in manifest_soup()) {
        use kubectl_release::domain::manifest;
        match manifest::parse("kubernetes/qa/web.yaml", &text) {
            Ok(objects) => {
                for mut m in objects {
                    prop_assert!(!m.name().is_empty());
                    let _ = manifest::pin_images(&mut m, "r/web", &|_| Some("r/web@sha256:0".into()));
                    let _ = manifest::check_scope(&mut m, manifest::Scope::Namespaced, "qa", manifest::Allowed::default());
                }
            }
            Err(e) => {
                let lines = text.lines().count().max(1);
                prop_assert!(e.origin.line >= 1 && e.origin.line <= lines + 1, "line {} of {lines}: {e}", e.origin.line);
            }
        }
    }

    /// Live objects are whatever the cluster holds: diff and drift never panic on them, and an
    /// object never drifts from itself.
    #[test]
    fn diff_and_drift_take_any_object(applied in json_value(), live in json_value()) {
        use kubectl_release::domain::manifest::{self, ObjectRef};
        let id = ObjectRef { api_version: "v1".into(), kind: "Secret".into(), namespace: None, name: "s".into() };
        let _ = manifest::diff(&id, Some(&live), Some(&applied));
        let _ = manifest::drift(&applied, &live);
        prop_assert!(manifest::diff(&id, Some(&applied), Some(&applied)).is_empty());
        prop_assert!(manifest::drift(&applied, &applied).is_empty(), "{applied}");
    }
}

/// Found by `manifests_parse_arbitrary_text`: the YAML parser counts a lone CR as a line break
/// and pointed past the file's last line.
#[test]
fn a_manifest_error_after_a_lone_carriage_return_stays_inside_the_file() {
    let err = kubectl_release::domain::manifest::parse("m.yaml", "apiVersion: \n\r~").unwrap_err();
    assert!(err.origin.line <= 2, "{err}");
}
