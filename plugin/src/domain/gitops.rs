//! GitOps environments: a release written into a deployment repository instead of the cluster.
//! This is the pure part: the text edits that pin image digests in an environment's directory,
//! and the commit message whose trailers record the release.
//!
//! The edits work on lines, not on a parsed tree: a YAML round trip loses comments, quoting and
//! key order, and whoever reviews the commit should see the digests move and nothing else. The
//! kustomization edit reads its result back with a parser and compares it with the intended
//! document, so a layout the line scanner misreads ends in an error, never in a wrong file.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;

use serde_yaml_ng::{Mapping, Value};

use crate::domain::ImageRef;

/// Why a kustomization could not be edited; each message says what to change by hand.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    #[error("`{0}` is not an image digest: expected `sha256:` and 64 lower-case hex digits")]
    Digest(String),
    #[error("the kustomization is not valid YAML ({0}); fix it, then release again")]
    NotYaml(String),
    #[error(
        "the kustomization is not a mapping of keys (`resources:`, `images:`…); it must be one \
         YAML document of `key: value` lines"
    )]
    NotMapping,
    #[error(
        "`images:` is written in flow style (`{0}`); write it as a block list (`images:` then one \
         `- name: …` entry per image) so its entries can be edited in place"
    )]
    FlowStyle(String),
    #[error("`images:` is {0}, not a list; write it as a block list of `- name: …` entries")]
    NotAList(&'static str),
    #[error(
        "could not find {0} in the kustomization's text; write `images:` as a top-level block \
         list with one `key: value` per line"
    )]
    Layout(&'static str),
    #[error(
        "the edited kustomization would not read back as intended ({0}); nothing was written: \
         set the image's digest by hand"
    )]
    Unverified(String),
}

/// What setting an image in a kustomization did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageEdit {
    /// An entry named the image: its digest is set (and its `newTag:` gone). The new text.
    Changed(String),
    /// The entry already pins that digest, with no `newTag:`: the text stays as it is.
    Unchanged,
    /// No entry named the image: one is appended to `images:`. The new text.
    Added(String),
}

/// The top-level kustomization keys that never change which image a container names.
const INERT_KEYS: [&str; 17] = [
    "apiVersion",
    "kind",
    "metadata",
    "namespace",
    "resources",
    "images",
    "commonLabels",
    "labels",
    "commonAnnotations",
    "namePrefix",
    "nameSuffix",
    "replicas",
    "configMapGenerator",
    "secretGenerator",
    "generatorOptions",
    "buildMetadata",
    "sortOptions",
];

/// Whether pinning `name` to a digest in this kustomization (its text before the edit) is known
/// to pin exactly the containers `rendered` — the images the app's containers rendered to
/// before — so that rendering the edit again could only confirm it.
///
/// It is known when the `images:` transformer is the only thing at the top level that can
/// touch an image: every other key is [inert](INERT_KEYS) (no patches, replacements,
/// components or transformers), no entry renames `name` or renames another image to `name`
/// (kustomize applies entries in order, so a rename could win over the pin), and every
/// rendered image spells `name` literally (kustomize matches names as written, with no
/// registry defaults). What the bases do is already in `rendered` and does not change.
pub fn pin_is_predictable(text: &str, name: &str, rendered: &[String]) -> bool {
    let Ok(document) = parse_document(text) else {
        return false;
    };
    let inert = document
        .keys()
        .all(|k| k.as_str().is_some_and(|k| INERT_KEYS.contains(&k)));
    let renames = match document.get("images") {
        None | Some(Value::Null) => false,
        Some(Value::Sequence(entries)) => entries.iter().any(|entry| {
            let new_name = entry.get("newName").and_then(Value::as_str);
            let own = entry.get("name").and_then(Value::as_str);
            match (own, new_name) {
                (_, Some(new)) => own == Some(name) || new == name,
                (Some(_), None) => false,
                (None, None) => true,
            }
        }),
        Some(_) => true,
    };
    let literal = !rendered.is_empty()
        && rendered.iter().all(|image| {
            image.strip_prefix(name).is_some_and(|rest| {
                rest.is_empty() || rest.starts_with(':') || rest.starts_with('@')
            })
        });
    inert && !renames && literal
}

/// Pins `name` (the image as the resources write it, `registry.example.com/team/web`) to
/// `digest` in a kustomization's `images:`, editing only the lines concerned.
///
/// Every entry whose `name:` is `name` gets `digest:` set (the line's value replaced, its trailing
/// comment kept, or a `digest:` line inserted after `name:`) and loses its `newTag:`, since a tag
/// beside a digest would mislead a reader. Without such an entry one is appended to the list, in
/// the list's own indentation, or an `images:` block to the end of the file. Every other byte is
/// kept, and the result is checked to read back as exactly the intended document.
///
/// # Errors
///
/// An invalid digest, a text that is not one YAML mapping, an `images:` that is not a block
/// list, or an edit that would not read back as intended ([`EditError`] says which).
pub fn set_kustomization_image(
    text: &str,
    name: &str,
    digest: &str,
) -> Result<ImageEdit, EditError> {
    check_digest(digest)?;
    let before = parse_document(text)?;
    let lines = lines(text);
    let Some(key) = images_key_line(&lines) else {
        if before.contains_key("images") {
            return Err(EditError::Layout("the top-level `images:` line"));
        }
        let new = append_images(text, name, digest);
        verify(&new, &expected(&before, name, digest, &[]))?;
        return Ok(ImageEdit::Added(new));
    };
    let entries: &[Value] = match before.get("images") {
        Some(Value::Sequence(entries)) => entries,
        Some(Value::Null) => &[],
        Some(other) => return Err(EditError::NotAList(describe(other))),
        None => return Err(EditError::Layout("the `images:` key the parser reads")),
    };
    let inline = key_line(lines[key].body)
        .and_then(|k| split_value(&lines[key].body[k.value_at..]))
        .map_or("", |(value, _)| value);
    if !inline.is_empty() {
        return Err(EditError::FlowStyle(inline.to_owned()));
    }
    let (spans, last) = list_entries(&lines, key);
    if spans.len() != entries.len() {
        return Err(EditError::Layout("each entry of `images:` as a `- ` line"));
    }
    let matching: Vec<usize> = (0..entries.len())
        .filter(|&i| entries[i].get("name").and_then(Value::as_str) == Some(name))
        .collect();
    let mut ops = BTreeMap::new();
    if matching.is_empty() {
        ops.insert(
            last,
            Op::InsertAfter(new_entry(&lines, &spans, name, digest)),
        );
    } else if matching.iter().all(|&i| is_pinned(&entries[i], digest)) {
        return Ok(ImageEdit::Unchanged);
    } else {
        for &i in &matching {
            ops.extend(pin_entry(&lines, &spans[i], digest)?);
        }
    }
    let new = apply(&lines, &ops);
    verify(&new, &expected(&before, name, digest, &matching))?;
    Ok(if matching.is_empty() {
        ImageEdit::Added(new)
    } else {
        ImageEdit::Changed(new)
    })
}

/// Sets every `image:` whose repository (the reference without tag or digest) is `repository`
/// to `image`, the pinned `repository@sha256:…`, in a text of YAML manifests (any number of
/// documents). Each value keeps its quoting and trailing comment; lines inside block scalars
/// (`|`, `>`) are text, not keys, and stay as they are. Returns the new text and how many values
/// changed (a value that already is `image` does not count).
pub fn set_manifest_images(text: &str, repository: &str, image: &str) -> (String, usize) {
    if repository.is_empty() {
        return (text.to_owned(), 0);
    }
    let mut out = String::with_capacity(text.len());
    let mut changed = 0;
    // The column a block scalar's lines must stay right of to still belong to it.
    let mut block: Option<usize> = None;
    for line in lines(text) {
        if let Some(owner) = block
            && (line.body.trim().is_empty() || indent(line.body) > owner)
        {
            out.push_str(line.body);
            out.push_str(line.end);
            continue;
        }
        block = block_scalar_owner(line.body);
        match pin_image_line(line.body, repository, image) {
            Some(new) => {
                out.push_str(&new);
                changed += 1;
            }
            None => out.push_str(line.body),
        }
        out.push_str(line.end);
    }
    (out, changed)
}

/// What a release commit records in its trailers, for `git log` and for the plugin reading its
/// history back (and, as JSON, for `history -o json`).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseTrailers {
    pub app: String,
    pub environment: String,
    pub revision: u64,
    /// `deploy`, `promote` or `rollback`.
    pub kind: String,
    /// The app's commit (40 hex digits), when the release names one.
    pub commit: Option<String>,
    /// Full pinned image references (`repo@sha256:…`), sorted.
    pub digests: Vec<String>,
    pub approvers: Vec<String>,
    /// Where a promotion took its images from.
    pub source_environment: Option<String>,
    pub actor: String,
}

const APP: &str = "Release-App";
const ENVIRONMENT: &str = "Release-Environment";
const REVISION: &str = "Release-Revision";
const KIND: &str = "Release-Kind";
const COMMIT: &str = "Release-Commit";
const DIGEST: &str = "Release-Digest";
const SOURCE: &str = "Release-Source-Environment";
const APPROVED: &str = "Release-Approved-By";
const ACTOR: &str = "Release-Actor";

impl ReleaseTrailers {
    /// The commit message: `subject`, a blank line, `body` (if any) and a blank line, then the
    /// trailers as the last paragraph, one `Key: value` per line, which is where
    /// `git interpret-trailers` looks. Values are made single-line (line breaks become spaces);
    /// empty values are left out; digests are written sorted, once each. An empty subject is
    /// replaced by [`subject`]'s. A `---` line would end what git reads as the message, hiding
    /// the trailers, so such lines are indented by one space.
    pub fn message(&self, subject_line: &str, body: &str) -> String {
        let mut title = one_line(subject_line);
        if title.is_empty() {
            let what = self.commit.as_deref().map(short_commit).unwrap_or_default();
            title = subject(
                &self.kind,
                &self.app,
                &self.environment,
                self.revision,
                &what,
            );
        }
        let mut out = no_divider(&title);
        out.push_str("\n\n");
        let body = body.trim();
        if !body.is_empty() {
            for line in body.lines() {
                out.push_str(&no_divider(line));
                out.push('\n');
            }
            out.push('\n');
        }
        for (key, value) in self.trailers() {
            let value = one_line(&value);
            if !value.is_empty() {
                out.push_str(key);
                out.push_str(": ");
                out.push_str(&value);
                out.push('\n');
            }
        }
        out
    }

    /// The trailers of a release commit's `message`; `None` when its last paragraph is not a
    /// block of trailers or lacks `Release-App`, `Release-Environment` or a numeric
    /// `Release-Revision`. Other trailers (`Signed-off-by:`) are ignored, keys match in any case,
    /// blanks around keys and values do not matter, and indented lines continue the value above.
    pub fn parse(message: &str) -> Option<ReleaseTrailers> {
        let fields = trailer_fields(last_paragraph(message))?;
        let first = |key: &str| {
            fields
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v.clone())
        };
        let all = |key: &str| -> Vec<String> {
            fields
                .iter()
                .filter(|(k, v)| k.eq_ignore_ascii_case(key) && !v.is_empty())
                .map(|(_, v)| v.clone())
                .collect()
        };
        let mut digests = all(DIGEST);
        digests.sort();
        digests.dedup();
        Some(ReleaseTrailers {
            app: first(APP).filter(|v| !v.is_empty())?,
            environment: first(ENVIRONMENT).filter(|v| !v.is_empty())?,
            revision: first(REVISION)?.parse().ok()?,
            kind: first(KIND).unwrap_or_default(),
            commit: first(COMMIT).filter(|v| !v.is_empty()),
            digests,
            approvers: all(APPROVED),
            source_environment: first(SOURCE).filter(|v| !v.is_empty()),
            actor: first(ACTOR).unwrap_or_default(),
        })
    }

    /// Every trailer in the order they are written, digests sorted and deduplicated.
    fn trailers(&self) -> Vec<(&'static str, String)> {
        let mut digests: Vec<&String> = self.digests.iter().collect();
        digests.sort();
        digests.dedup();
        let mut out = vec![
            (APP, self.app.clone()),
            (ENVIRONMENT, self.environment.clone()),
            (REVISION, self.revision.to_string()),
            (KIND, self.kind.clone()),
        ];
        out.extend(self.commit.iter().map(|c| (COMMIT, c.clone())));
        out.extend(digests.into_iter().map(|d| (DIGEST, d.clone())));
        out.extend(self.source_environment.iter().map(|s| (SOURCE, s.clone())));
        out.extend(self.approvers.iter().map(|a| (APPROVED, a.clone())));
        out.push((ACTOR, self.actor.clone()));
        out
    }
}

/// A release commit's one-line subject: `promote web to production: revision 7 (qa's abc1234)`.
/// `what` is a short description of what ships (`commit abc1234`, `qa's images`, `revision 5's
/// images`), left out when empty; a rollback happens `in` its environment rather than `to` it.
pub fn subject(kind: &str, app: &str, environment: &str, revision: u64, what: &str) -> String {
    let preposition = if kind == "rollback" { "in" } else { "to" };
    let line = format!("{kind} {app} {preposition} {environment}: revision {revision}");
    match what.trim() {
        "" => one_line(&line),
        what => one_line(&format!("{line} ({what})")),
    }
}

/// The first seven digits of a commit, as `git log --oneline` shows it.
fn short_commit(commit: &str) -> String {
    format!("commit {}", commit.get(..7).unwrap_or(commit))
}

/// `text` on one line: line breaks become spaces, and the ends are trimmed.
fn one_line(text: &str) -> String {
    text.replace(['\r', '\n'], " ").trim().to_owned()
}

/// `line`, indented by a space if git would take it for the `---` before a patch.
fn no_divider(line: &str) -> String {
    let divider = line
        .strip_prefix("---")
        .is_some_and(|rest| rest.chars().next().is_none_or(char::is_whitespace));
    if divider {
        format!(" {line}")
    } else {
        line.to_owned()
    }
}

/// The lines of the last paragraph of `message` (paragraphs are separated by blank lines).
fn last_paragraph(message: &str) -> Vec<&str> {
    let mut paragraph = Vec::new();
    let mut ended = false;
    for line in message.lines() {
        if line.trim().is_empty() {
            ended = true;
        } else {
            if ended {
                paragraph.clear();
                ended = false;
            }
            paragraph.push(line);
        }
    }
    paragraph
}

/// `(key, value)` of each trailer line, or `None` if a line is no trailer: then the paragraph
/// is prose that happens to come last, as git sees it too.
fn trailer_fields(paragraph: Vec<&str>) -> Option<Vec<(String, String)>> {
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in paragraph {
        if line.starts_with([' ', '\t'])
            && let Some((_, value)) = fields.last_mut()
        {
            value.push(' ');
            value.push_str(line.trim());
            continue;
        }
        let (key, value) = line.trim_start().split_once(':')?;
        let key = key.trim_end();
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return None;
        }
        fields.push((key.to_owned(), value.trim().to_owned()));
    }
    (!fields.is_empty()).then_some(fields)
}

fn check_digest(digest: &str) -> Result<(), EditError> {
    let valid = digest.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    });
    if valid {
        Ok(())
    } else {
        Err(EditError::Digest(digest.to_owned()))
    }
}

/// The kustomization as a mapping; an empty document is an empty mapping, with room for
/// `images:`.
fn parse_document(text: &str) -> Result<Mapping, EditError> {
    match serde_yaml_ng::from_str::<Value>(text) {
        Ok(Value::Mapping(mapping)) => Ok(mapping),
        Ok(Value::Null) => Ok(Mapping::new()),
        Ok(_) => Err(EditError::NotMapping),
        Err(e) => Err(EditError::NotYaml(e.to_string())),
    }
}

fn describe(value: &Value) -> &'static str {
    match value {
        Value::Mapping(_) => "a mapping",
        Value::String(_) => "a string",
        Value::Number(_) => "a number",
        Value::Bool(_) => "a boolean",
        _ => "a tagged value",
    }
}

fn is_pinned(entry: &Value, digest: &str) -> bool {
    entry.get("digest").and_then(Value::as_str) == Some(digest) && entry.get("newTag").is_none()
}

/// The document the edit must produce: `before` with the `matching` entries pinned, or with a
/// new entry when none matched.
fn expected(before: &Mapping, name: &str, digest: &str, matching: &[usize]) -> Value {
    let mut after = before.clone();
    let images = after
        .entry("images".into())
        .or_insert(Value::Sequence(Vec::new()));
    if images.is_null() {
        *images = Value::Sequence(Vec::new());
    }
    if let Value::Sequence(entries) = images {
        if matching.is_empty() {
            let mut entry = Mapping::new();
            entry.insert("name".into(), name.into());
            entry.insert("digest".into(), digest.into());
            entries.push(Value::Mapping(entry));
        }
        for &i in matching {
            if let Some(Value::Mapping(entry)) = entries.get_mut(i) {
                entry.remove("newTag");
                entry.insert("digest".into(), digest.into());
            }
        }
    }
    Value::Mapping(after)
}

fn verify(text: &str, expected: &Value) -> Result<(), EditError> {
    match serde_yaml_ng::from_str::<Value>(text) {
        Ok(ref actual) if actual == expected => Ok(()),
        Ok(_) => Err(EditError::Unverified(
            "it reads as a different document than the one intended".to_owned(),
        )),
        Err(e) => Err(EditError::Unverified(e.to_string())),
    }
}

/// `text` with an `images:` block holding one entry appended at its end.
fn append_images(text: &str, name: &str, digest: &str) -> String {
    let newline = if text.is_empty() || text.ends_with('\n') {
        ""
    } else {
        "\n"
    };
    let name = plain_or_quoted(name);
    format!("{text}{newline}images:\n- name: {name}\n  digest: {digest}\n")
}

/// The lines of a new entry, written like the list's last entry with a key on its `- ` line
/// (`- `, `  - `, `-   `); a list of lone `-` lines only lends its indentation.
fn new_entry(
    lines: &[Line<'_>],
    spans: &[RangeInclusive<usize>],
    name: &str,
    digest: &str,
) -> Vec<String> {
    let dash_lines = spans.iter().rev().map(|span| lines[*span.start()].body);
    let prefix = dash_lines
        .clone()
        .find_map(|body| {
            let (at, _) = skip_dashes(body);
            is_content(&body[at..]).then(|| body[..at].to_owned())
        })
        .unwrap_or_else(|| {
            let col = dash_lines.map(indent).next().unwrap_or(0);
            format!("{}- ", " ".repeat(col))
        });
    let pad = " ".repeat(prefix.len());
    vec![
        format!("{prefix}name: {}", plain_or_quoted(name)),
        format!("{pad}digest: {digest}"),
    ]
}

/// The edits that pin one entry: `digest:` set or inserted after `name:`, `newTag:` removed.
fn pin_entry(
    lines: &[Line<'_>],
    span: &RangeInclusive<usize>,
    digest: &str,
) -> Result<Vec<(usize, Op)>, EditError> {
    let col = entry_key_column(lines, span).ok_or(EditError::Layout("the keys of the entry"))?;
    let find = |key: &str| {
        span.clone().find_map(|i| {
            key_line(lines[i].body)
                .filter(|k| k.col == col && k.key == key)
                .map(|k| (i, k))
        })
    };
    let (name_at, _) = find("name").ok_or(EditError::Layout("the entry's `name:` line"))?;
    let digest_line = find("digest");
    let unreadable = EditError::Layout("the value of the entry's `digest:` line");
    let mut ops = Vec::new();
    match find("newTag") {
        // The tag's line carries the entry's `- `: the digest takes its place, so the entry
        // keeps its marker, and the old `digest:` line (its comment moved along) goes.
        Some((at, _)) if at == *span.start() => {
            let comment = match &digest_line {
                Some((i, k)) => {
                    split_value(&lines[*i].body[k.value_at..])
                        .ok_or(unreadable)?
                        .1
                }
                None => "",
            };
            let head = &lines[at].body[..col];
            ops.push((at, Op::Replace(format!("{head}digest: {digest}{comment}"))));
            ops.extend(digest_line.map(|(i, _)| (i, Op::Delete)));
            return Ok(ops);
        }
        Some((at, _)) => ops.push((at, Op::Delete)),
        None => {}
    }
    match digest_line {
        Some((i, k)) => {
            let new = replace_value(lines[i].body, k.value_at, digest).ok_or(unreadable)?;
            ops.push((i, Op::Replace(new)));
        }
        None => ops.push((
            name_at,
            Op::InsertAfter(vec![format!("{}digest: {digest}", " ".repeat(col))]),
        )),
    }
    Ok(ops)
}

/// The column of an entry's keys: right of its `- `, or that of its first line below when the
/// `-` stands alone.
fn entry_key_column(lines: &[Line<'_>], span: &RangeInclusive<usize>) -> Option<usize> {
    let body = lines[*span.start()].body;
    let (at, _) = skip_dashes(body);
    if is_content(&body[at..]) {
        return Some(at);
    }
    span.clone()
        .skip(1)
        .map(|i| lines[i].body)
        .find(|b| is_content(b))
        .map(indent)
}

/// The line of the top-level `images:` key.
fn images_key_line(lines: &[Line<'_>]) -> Option<usize> {
    lines.iter().position(|line| {
        indent(line.body) == 0
            && key_line(line.body).is_some_and(|k| k.col == 0 && k.key == "images")
    })
}

/// The entries of the block list after the `images:` line `key` (each from its `- ` line to the
/// line before the next entry), and the list's last line with content (`key` when it is empty).
fn list_entries(lines: &[Line<'_>], key: usize) -> (Vec<RangeInclusive<usize>>, usize) {
    let mut starts = Vec::new();
    let mut last = key;
    let mut item: Option<usize> = None;
    for (i, line) in lines.iter().enumerate().skip(key + 1) {
        if !is_content(line.body) {
            continue;
        }
        let col = indent(line.body);
        let dash = is_item(&line.body[col..]);
        let item_col = match item {
            Some(c) => c,
            None if dash => *item.insert(col),
            None => break,
        };
        if col < item_col || (col == item_col && !dash) {
            break;
        }
        if col == item_col {
            starts.push(i);
        }
        last = i;
    }
    let spans = starts
        .iter()
        .enumerate()
        .map(|(n, &start)| start..=starts.get(n + 1).map_or(last, |next| next - 1))
        .collect();
    (spans, last)
}

/// `body` with its `image:` value set to `image`, when that value is another reference to
/// `repository`.
fn pin_image_line(body: &str, repository: &str, image: &str) -> Option<String> {
    let k = key_line(body).filter(|k| k.key == "image")?;
    let (old, _) = split_value(&body[k.value_at..])?;
    let current = unquote(old)?;
    if current == image || ImageRef::parse(&current).repository != repository {
        return None;
    }
    replace_value(body, k.value_at, image)
}

/// The column a block scalar started on this line (`key: |`, `- >-`) must have its lines right
/// of.
fn block_scalar_owner(body: &str) -> Option<usize> {
    let (at, dash) = skip_dashes(body);
    let (owner, rest) = match key_line(body) {
        Some(k) => (k.col, &body[k.value_at..]),
        None => (dash?, &body[at..]),
    };
    let (value, _) = split_value(rest)?;
    let header = value.strip_prefix(['|', '>'])?;
    header
        .chars()
        .all(|c| c.is_ascii_digit() || c == '+' || c == '-')
        .then_some(owner)
}

/// One line of a text: its body and its ending (`\n`, `\r\n`, or nothing at the very end).
#[derive(Clone, Copy)]
struct Line<'a> {
    body: &'a str,
    end: &'a str,
}

fn lines(text: &str) -> Vec<Line<'_>> {
    text.split_inclusive('\n')
        .map(|l| {
            let body = l
                .strip_suffix('\n')
                .map_or(l, |b| b.strip_suffix('\r').unwrap_or(b));
            Line {
                body,
                end: &l[body.len()..],
            }
        })
        .collect()
}

/// An edit of one line.
enum Op {
    Replace(String),
    Delete,
    InsertAfter(Vec<String>),
}

/// The text of `lines` with `ops` applied; every other line byte for byte.
fn apply(lines: &[Line<'_>], ops: &BTreeMap<usize, Op>) -> String {
    let mut out = String::new();
    for (i, line) in lines.iter().enumerate() {
        match ops.get(&i) {
            None => {
                out.push_str(line.body);
                out.push_str(line.end);
            }
            Some(Op::Replace(body)) => {
                out.push_str(body);
                out.push_str(line.end);
            }
            Some(Op::Delete) => {}
            Some(Op::InsertAfter(new)) => {
                // Inserted lines end like the line they follow (a last line without one gets `\n`).
                let end = if line.end.is_empty() { "\n" } else { line.end };
                out.push_str(line.body);
                out.push_str(end);
                for body in new {
                    out.push_str(body);
                    out.push_str(end);
                }
            }
        }
    }
    out
}

/// Leading spaces (YAML indents with spaces only).
fn indent(body: &str) -> usize {
    body.len() - body.trim_start_matches(' ').len()
}

/// Whether a line holds anything but blanks and a comment.
fn is_content(body: &str) -> bool {
    let rest = body.trim_start();
    !rest.is_empty() && !rest.starts_with('#')
}

/// Whether `rest` (a line after its indentation) starts a sequence item: `-` then a blank or
/// the end of the line.
fn is_item(rest: &str) -> bool {
    rest.strip_prefix('-')
        .is_some_and(|after| after.is_empty() || after.starts_with([' ', '\t']))
}

/// Where the node of a line starts, past its indentation and `- ` markers, and the column of
/// the last `-`.
fn skip_dashes(body: &str) -> (usize, Option<usize>) {
    let mut at = indent(body);
    let mut dash = None;
    while is_item(&body[at..]) {
        dash = Some(at);
        at += 1;
        at = body.len() - body[at..].trim_start_matches([' ', '\t']).len();
    }
    (at, dash)
}

/// A `key: value` line, as far as these edits need to read it.
struct KeyLine<'a> {
    /// The key's column, right of any `- `.
    col: usize,
    /// The key, without its quotes.
    key: &'a str,
    /// Where the value starts in the line, past the `:` and blanks.
    value_at: usize,
}

fn key_line(body: &str) -> Option<KeyLine<'_>> {
    let (col, _) = skip_dashes(body);
    let rest = &body[col..];
    let (key, after) = match rest.chars().next()? {
        '#' => return None,
        quote @ ('"' | '\'') => {
            let close = rest[1..].find(quote)? + 1;
            (&rest[1..close], close + 1)
        }
        _ => {
            let colon = rest
                .match_indices(':')
                .map(|(i, _)| i)
                .find(|&i| rest[i + 1..].is_empty() || rest[i + 1..].starts_with([' ', '\t']))?;
            let key = &rest[..colon];
            if key.contains(" #") || key.contains("\t#") {
                return None;
            }
            (key.trim_end(), colon)
        }
    };
    let tail = rest[after..].strip_prefix(':')?;
    if !(tail.is_empty() || tail.starts_with([' ', '\t'])) {
        return None;
    }
    let value_at = body.len() - tail.trim_start_matches([' ', '\t']).len();
    Some(KeyLine { col, key, value_at })
}

/// The scalar at the start of `s` (plain, `'…'` or `"…"`, as written) and what follows it on
/// the line (blanks and a comment). `None` for a quoted scalar that does not close on the line.
fn split_value(s: &str) -> Option<(&str, &str)> {
    let bytes = s.as_bytes();
    let end = match bytes.first() {
        Some(b'"') => {
            let mut i = 1;
            loop {
                match bytes.get(i)? {
                    b'\\' => i += 2,
                    b'"' => break i + 1,
                    _ => i += 1,
                }
            }
        }
        Some(b'\'') => {
            let mut i = 1;
            loop {
                match (bytes.get(i)?, bytes.get(i + 1)) {
                    (b'\'', Some(b'\'')) => i += 2,
                    (b'\'', _) => break i + 1,
                    _ => i += 1,
                }
            }
        }
        _ => {
            // A plain scalar ends where a comment starts: `#` at the start or after a blank.
            let comment = s
                .char_indices()
                .find(|&(i, c)| c == '#' && (i == 0 || s[..i].ends_with([' ', '\t'])))
                .map_or(s.len(), |(i, _)| i);
            s[..comment].trim_end().len()
        }
    };
    Some(s.split_at(end))
}

/// The string a scalar written as `raw` holds; `None` for a double-quoted one with escapes
/// beyond JSON's (image references need none).
fn unquote(raw: &str) -> Option<String> {
    if raw.starts_with('"') {
        serde_json::from_str(raw).ok()
    } else if let Some(inner) = raw.strip_prefix('\'') {
        Some(inner.strip_suffix('\'')?.replace("''", "'"))
    } else {
        Some(raw.to_owned())
    }
}

/// `body` with the value at `value_at` replaced by `value`, in the old value's quoting, its
/// trailing comment kept.
fn replace_value(body: &str, value_at: usize, value: &str) -> Option<String> {
    let (old, rest) = split_value(&body[value_at..])?;
    let head = &body[..value_at];
    // `digest:` alone or `digest: # …`: the new value needs blanks around it.
    let before = if head.ends_with([' ', '\t']) { "" } else { " " };
    let after = if rest.starts_with('#') { " " } else { "" };
    let scalar = match old.as_bytes().first() {
        Some(b'\'') => format!("'{}'", value.replace('\'', "''")),
        Some(b'"') => serde_json::Value::String(value.to_owned()).to_string(),
        _ => plain_or_quoted(value),
    };
    Some(format!("{head}{before}{scalar}{after}{rest}"))
}

/// `value` as a plain scalar if it reads back as that string, else double-quoted.
fn plain_or_quoted(value: &str) -> String {
    let plain = serde_yaml_ng::from_str::<Value>(value)
        .is_ok_and(|v| v.as_str() == Some(value) && !value.contains('\n'));
    if plain {
        value.to_owned()
    } else {
        serde_json::Value::String(value.to_owned()).to_string()
    }
}

#[cfg(test)]
mod tests {

    const PIN: &str = "registry.example.com:5000/team/web";

    fn predictable(text: &str) -> bool {
        pin_is_predictable(
            text,
            PIN,
            &[format!("{PIN}:abc"), format!("{PIN}@sha256:1")],
        )
    }

    #[test]
    fn a_plain_images_entry_pins_predictably_and_anything_that_may_touch_images_does_not() {
        let plain = format!(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: prod\n\
             resources: [../base]\ncommonLabels: {{team: a}}\nimages:\n  - name: {PIN}\n    newTag: abc\n  \
             - name: other\n    newName: elsewhere/other\n"
        );
        assert!(predictable(&plain));
        assert!(predictable("resources: [d.yaml]\n"), "no entry yet");
        for key in [
            "patches: []",
            "patchesStrategicMerge: [p.yaml]",
            "replacements: []",
            "components: [../c]",
            "transformers: [t.yaml]",
            "configurations: [c.yaml]",
            "helmCharts: []",
        ] {
            assert!(!predictable(&format!("{plain}{key}\n")), "{key}");
        }
        let renamed = format!("images:\n  - name: {PIN}\n    newName: {PIN}-mirror\n");
        assert!(!predictable(&renamed), "the app's image renamed");
        let onto =
            format!("images:\n  - name: {PIN}\n    newTag: a\n  - name: old\n    newName: {PIN}\n");
        assert!(!predictable(&onto), "another image renamed to the app's");
        assert!(!predictable("images: {}\n"), "not a list");
        assert!(
            !predictable("images:\n  - newTag: a\n"),
            "an entry without a name"
        );
        assert!(!predictable("- a list\n"), "not a kustomization");
    }

    #[test]
    fn a_rendered_image_that_does_not_spell_the_name_needs_the_render() {
        let text = "resources: [d.yaml]\n";
        assert!(!pin_is_predictable(
            text,
            "nginx",
            &["docker.io/library/nginx:1".into()]
        ));
        assert!(!pin_is_predictable(
            text,
            "reg/web",
            &["reg/web-two:1".into()]
        ));
        assert!(
            !pin_is_predictable(text, "reg/web", &[]),
            "nothing rendered"
        );
        assert!(pin_is_predictable(
            text,
            "reg/web",
            &["reg/web".into(), "reg/web:1".into()]
        ));
    }

    use super::*;

    const OLD: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const NEW: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn changed(text: &str, name: &str) -> String {
        match set_kustomization_image(text, name, NEW) {
            Ok(ImageEdit::Changed(new)) => new,
            other => panic!("expected Changed, got {other:?}"),
        }
    }

    fn added(text: &str, name: &str) -> String {
        match set_kustomization_image(text, name, NEW) {
            Ok(ImageEdit::Added(new)) => new,
            other => panic!("expected Added, got {other:?}"),
        }
    }

    #[test]
    fn replaces_the_digest_and_keeps_every_other_byte() {
        let text = format!(
            "# Kustomization for qa.\n\
             apiVersion: kustomize.config.k8s.io/v1beta1\n\
             kind: Kustomization\n\
             resources:\n  \
               - deployment.yaml   # the app\n\
             \n\
             images:\n  \
               # the web image, pinned by the release\n  \
               - name: registry.example.com/team/web\n    \
                 newName: registry.example.com/team/web-qa  # mirrored\n    \
                 digest: {OLD}  # pinned by kubectl-release\n  \
               - name: other\n    \
                 newTag: v2\n\
             namespace: 'qa'  # quoted on purpose\n"
        );
        let expected = text.replace(OLD, NEW);
        assert_eq!(changed(&text, "registry.example.com/team/web"), expected);
    }

    #[test]
    fn a_tag_gives_way_to_the_digest_inserted_after_the_name() {
        let text = "images:\n- name: 127.0.0.1:5000/web # the app\n  newTag: v1 # old\n  newName: 127.0.0.1:5000/mirror\n# end\n";
        let expected = format!(
            "images:\n- name: 127.0.0.1:5000/web # the app\n  digest: {NEW}\n  newName: 127.0.0.1:5000/mirror\n# end\n"
        );
        assert_eq!(changed(text, "127.0.0.1:5000/web"), expected);
    }

    #[test]
    fn an_entry_whose_first_key_is_not_its_name() {
        let text = "images:\n  - newName: y\n    name: x\n    newTag: v1\n";
        let expected = format!("images:\n  - newName: y\n    name: x\n    digest: {NEW}\n");
        assert_eq!(changed(text, "x"), expected);
    }

    #[test]
    fn a_tag_on_the_entry_s_dash_line_is_replaced_by_the_digest() {
        let text =
            format!("images:\n- newTag: v1\n  name: x\n  digest: {OLD} # pinned\nresources: []\n");
        let expected = format!("images:\n- digest: {NEW} # pinned\n  name: x\nresources: []\n");
        assert_eq!(changed(&text, "x"), expected);
    }

    #[test]
    fn wide_dashes_and_lone_dashes() {
        let text = "images:\n-   name: x\n    newTag: v1\n-\n  name: y\n  newTag: v2\n";
        let x = changed(text, "x");
        assert_eq!(
            x,
            format!("images:\n-   name: x\n    digest: {NEW}\n-\n  name: y\n  newTag: v2\n")
        );
        assert_eq!(
            changed(&x, "y"),
            format!("images:\n-   name: x\n    digest: {NEW}\n-\n  name: y\n  digest: {NEW}\n")
        );
        assert_eq!(
            added(text, "z"),
            format!("{text}-   name: z\n    digest: {NEW}\n")
        );
    }

    #[test]
    fn a_list_of_lone_dashes_lends_its_indentation() {
        let text = "images:\n  -\n    name: y\n";
        assert_eq!(
            added(text, "z"),
            format!("{text}  - name: z\n    digest: {NEW}\n")
        );
    }

    #[test]
    fn quoted_names_match_and_quoted_digests_stay_quoted() {
        let text = format!(
            "images:\n- name: \"r/web\"\n  digest: \"{OLD}\"\n- name: 'r/api'\n  digest: '{OLD}' # c\n"
        );
        let web = changed(&text, "r/web");
        assert_eq!(
            web,
            format!(
                "images:\n- name: \"r/web\"\n  digest: \"{NEW}\"\n- name: 'r/api'\n  digest: '{OLD}' # c\n"
            )
        );
        assert_eq!(
            changed(&web, "r/api"),
            format!(
                "images:\n- name: \"r/web\"\n  digest: \"{NEW}\"\n- name: 'r/api'\n  digest: '{NEW}' # c\n"
            )
        );
    }

    #[test]
    fn an_empty_digest_value_is_filled() {
        let text = "images:\n- name: x\n  digest: # to be set\n";
        assert_eq!(
            changed(text, "x"),
            format!("images:\n- name: x\n  digest: {NEW} # to be set\n")
        );
    }

    #[test]
    fn a_new_entry_follows_the_list_s_indentation() {
        let indented = "images:\n  - name: a\n    newTag: v1  # keep\n# the resources\nresources:\n  - x.yaml\n";
        assert_eq!(
            added(indented, "r/web"),
            format!(
                "images:\n  - name: a\n    newTag: v1  # keep\n  - name: r/web\n    digest: {NEW}\n# the resources\nresources:\n  - x.yaml\n"
            )
        );
        let flush = "resources:\n- x.yaml\nimages:\n- name: a\n  newTag: v1\n\nnamespace: qa\n";
        assert_eq!(
            added(flush, "127.0.0.1:5000/web"),
            format!(
                "resources:\n- x.yaml\nimages:\n- name: a\n  newTag: v1\n- name: 127.0.0.1:5000/web\n  digest: {NEW}\n\nnamespace: qa\n"
            )
        );
    }

    #[test]
    fn an_empty_images_key_gets_its_first_entry() {
        let text = "images: # none yet\n# resources below\nresources:\n- x.yaml\n";
        assert_eq!(
            added(text, "r/web"),
            format!(
                "images: # none yet\n- name: r/web\n  digest: {NEW}\n# resources below\nresources:\n- x.yaml\n"
            )
        );
    }

    #[test]
    fn a_missing_images_key_is_appended() {
        let text = "resources:\n- x.yaml # the app";
        assert_eq!(
            added(text, "r/web"),
            format!("resources:\n- x.yaml # the app\nimages:\n- name: r/web\n  digest: {NEW}\n")
        );
        assert_eq!(
            added("", "r/web"),
            format!("images:\n- name: r/web\n  digest: {NEW}\n")
        );
        // A name YAML would read as a number is quoted.
        assert_eq!(
            added("resources: []\n", "1234"),
            format!("resources: []\nimages:\n- name: \"1234\"\n  digest: {NEW}\n")
        );
    }

    #[test]
    fn a_second_edit_changes_nothing() {
        let text = "images:\n- name: x\n  newTag: v1\n";
        let once = changed(text, "x");
        assert_eq!(
            set_kustomization_image(&once, "x", NEW),
            Ok(ImageEdit::Unchanged)
        );
        let appended = added("resources: []\n", "y");
        assert_eq!(
            set_kustomization_image(&appended, "y", NEW),
            Ok(ImageEdit::Unchanged)
        );
        // The same digest beside a tag is not pinned yet.
        let tagged = format!("images:\n- name: x\n  newTag: v1\n  digest: {NEW}\n");
        assert_eq!(
            changed(&tagged, "x"),
            format!("images:\n- name: x\n  digest: {NEW}\n")
        );
    }

    #[test]
    fn every_entry_of_the_name_is_pinned() {
        let text = "images:\n- name: x\n  newTag: v1\n- name: x\n  newTag: v2\n";
        assert_eq!(
            changed(text, "x"),
            format!("images:\n- name: x\n  digest: {NEW}\n- name: x\n  digest: {NEW}\n")
        );
    }

    #[test]
    fn line_endings_are_kept() {
        let text = "images:\r\n- name: x\r\n  newTag: v1\r\n";
        assert_eq!(
            changed(text, "x"),
            format!("images:\r\n- name: x\r\n  digest: {NEW}\r\n")
        );
    }

    #[test]
    fn flow_style_and_other_shapes_are_refused() {
        for text in [
            "images: []\n",
            "images: [{name: x, newTag: v1}]\n",
            "images: ~\n",
        ] {
            let err = set_kustomization_image(text, "x", NEW).unwrap_err();
            assert!(matches!(err, EditError::FlowStyle(_)), "{text}: {err:?}");
            assert!(err.to_string().contains("block list"), "{err}");
        }
        assert_eq!(
            set_kustomization_image("images:\n  name: x\n", "x", NEW),
            Err(EditError::NotAList("a mapping"))
        );
        assert!(matches!(
            set_kustomization_image("images:\n- name: [x\n", "x", NEW),
            Err(EditError::NotYaml(_))
        ));
        assert_eq!(
            set_kustomization_image("- a\n- b\n", "x", NEW),
            Err(EditError::NotMapping)
        );
        assert!(matches!(
            set_kustomization_image("a: 1\n---\nb: 2\n", "x", NEW),
            Err(EditError::NotYaml(_))
        ));
    }

    #[test]
    fn a_digest_must_be_sha256_hex() {
        for digest in [
            "sha256:abc",
            "latest",
            &NEW.to_uppercase(),
            &NEW.replace("sha256", "sha512"),
        ] {
            assert_eq!(
                set_kustomization_image("images: []\n", "x", digest),
                Err(EditError::Digest(digest.to_owned()))
            );
        }
    }

    #[test]
    fn an_edit_that_reads_back_wrong_is_refused() {
        // The tag's value sits on the next line: removing `newTag:` alone would leave it behind.
        let text = "images:\n- name: x\n  newTag:\n    v1\n";
        assert!(matches!(
            set_kustomization_image(text, "x", NEW),
            Err(EditError::Unverified(_))
        ));
    }

    const MANIFESTS: &str = "\
apiVersion: apps/v1
kind: Deployment
spec:
  template:
    spec:
      containers:
        - name: web
          image: 127.0.0.1:5000/web:1.2   # the app
        - name: sidecar
          image: 127.0.0.1:5000/web-sidecar:1.2
      initContainers:
      - image: \"127.0.0.1:5000/web@sha256:3333333333333333333333333333333333333333333333333333333333333333\"
        name: init
---
apiVersion: batch/v1
kind: CronJob
spec:
  jobTemplate:
    spec:
      template:
        spec:
          containers:
          - name: a
            image: '127.0.0.1:5000/web'
          - name: b
            image: 127.0.0.1:5000/team/web:1
          - name: c
            image: 127.0.0.1:5001/web:1
          - name: d
            image: 127.0.0.1:5000/web:latest
---
kind: ConfigMap
data:
  pod.yaml: |
    image: 127.0.0.1:5000/web:1
  other: x
";

    #[test]
    fn manifests_pin_their_repository_only() {
        let pinned = format!("127.0.0.1:5000/web@{NEW}");
        let (text, count) = set_manifest_images(MANIFESTS, "127.0.0.1:5000/web", &pinned);
        assert_eq!(count, 4);
        let expected = MANIFESTS
            .replace(
                "image: 127.0.0.1:5000/web:1.2   # the app",
                &format!("image: {pinned}   # the app"),
            )
            .replace(
                "\"127.0.0.1:5000/web@sha256:3333333333333333333333333333333333333333333333333333333333333333\"",
                &format!("\"{pinned}\""),
            )
            .replace("'127.0.0.1:5000/web'", &format!("'{pinned}'"))
            .replace(
                "image: 127.0.0.1:5000/web:latest",
                &format!("image: {pinned}"),
            );
        assert_eq!(text, expected);
        // The block scalar is text, not a container.
        assert!(text.contains("    image: 127.0.0.1:5000/web:1\n  other: x\n"));
        assert_eq!(
            set_manifest_images(&text, "127.0.0.1:5000/web", &pinned),
            (text.clone(), 0)
        );
    }

    #[test]
    fn manifests_without_the_repository_are_untouched() {
        assert_eq!(
            set_manifest_images(
                MANIFESTS,
                "registry.example.com/web",
                "registry.example.com/web@x"
            ),
            (MANIFESTS.to_owned(), 0)
        );
        assert_eq!(
            set_manifest_images(MANIFESTS, "", "x"),
            (MANIFESTS.to_owned(), 0)
        );
    }

    fn full() -> ReleaseTrailers {
        ReleaseTrailers {
            app: "web".to_owned(),
            environment: "production".to_owned(),
            revision: 7,
            kind: "promote".to_owned(),
            commit: Some("0123456789abcdef0123456789abcdef01234567".to_owned()),
            digests: vec![format!("r/api@{OLD}"), format!("r/web@{NEW}")],
            approvers: vec!["alice".to_owned(), "Bob <bob@example.com>".to_owned()],
            source_environment: Some("qa".to_owned()),
            actor: "carol".to_owned(),
        }
    }

    #[test]
    fn the_message_is_subject_body_and_trailers() {
        let message = full().message(
            "promote web to production: revision 7 (qa's images)",
            "Why:\nbecause.\n",
        );
        assert_eq!(
            message,
            format!(
                "promote web to production: revision 7 (qa's images)\n\n\
                 Why:\nbecause.\n\n\
                 Release-App: web\n\
                 Release-Environment: production\n\
                 Release-Revision: 7\n\
                 Release-Kind: promote\n\
                 Release-Commit: 0123456789abcdef0123456789abcdef01234567\n\
                 Release-Digest: r/api@{OLD}\n\
                 Release-Digest: r/web@{NEW}\n\
                 Release-Source-Environment: qa\n\
                 Release-Approved-By: alice\n\
                 Release-Approved-By: Bob <bob@example.com>\n\
                 Release-Actor: carol\n"
            )
        );
        assert_eq!(ReleaseTrailers::parse(&message), Some(full()));
    }

    #[test]
    fn trailers_round_trip_without_the_optional_ones() {
        let minimal = ReleaseTrailers {
            app: "web".to_owned(),
            environment: "qa".to_owned(),
            revision: 1,
            kind: "deploy".to_owned(),
            actor: "ci".to_owned(),
            ..ReleaseTrailers::default()
        };
        let message = minimal.message("deploy web to qa", "");
        assert_eq!(
            message,
            "deploy web to qa\n\nRelease-App: web\nRelease-Environment: qa\nRelease-Revision: 1\nRelease-Kind: deploy\nRelease-Actor: ci\n"
        );
        assert_eq!(ReleaseTrailers::parse(&message), Some(minimal));
    }

    #[test]
    fn values_are_kept_on_one_line() {
        let mut t = full();
        t.actor = "mallory\nRelease-Environment: qa\r\n".to_owned();
        t.approvers = vec!["a\nb".to_owned()];
        let message = t.message("one\ntwo", "");
        assert!(message.starts_with("one two\n\n"), "{message}");
        assert!(message.contains("Release-Actor: mallory Release-Environment: qa\n"));
        assert!(message.contains("Release-Approved-By: a b\n"));
        let parsed = ReleaseTrailers::parse(&message).unwrap();
        assert_eq!(parsed.environment, "production");
        assert_eq!(parsed.actor, "mallory Release-Environment: qa");
    }

    #[test]
    fn parse_tolerates_other_trailers_and_blanks() {
        let message = "deploy web\n\nbody\n\n  Release-App :  web  \nrelease-environment: qa\nSigned-off-by: A <a@b>\nRelease-Revision: 12\nRelease-Digest: r/web@x\n  (continued)\n\n\n";
        let parsed = ReleaseTrailers::parse(message).unwrap();
        assert_eq!(parsed.app, "web");
        assert_eq!(parsed.environment, "qa");
        assert_eq!(parsed.revision, 12);
        assert_eq!(parsed.digests, vec!["r/web@x (continued)".to_owned()]);
        assert_eq!(parsed.kind, "");
        assert_eq!(parsed.commit, None);
    }

    #[test]
    fn parse_reads_the_last_paragraph_only() {
        let trailers = "Release-App: web\nRelease-Environment: qa\nRelease-Revision: 3\n";
        assert!(ReleaseTrailers::parse(&format!("s\n\n{trailers}")).is_some());
        assert_eq!(
            ReleaseTrailers::parse(&format!("s\n\n{trailers}\nThanks for reading.\n")),
            None
        );
        assert_eq!(
            ReleaseTrailers::parse(&format!("s\n\n{trailers}Not a trailer line\n")),
            None
        );
        assert_eq!(ReleaseTrailers::parse("s\n\nSigned-off-by: a\n"), None);
        assert_eq!(ReleaseTrailers::parse(""), None);
        let bad = trailers.replace("Release-Revision: 3", "Release-Revision: three");
        assert_eq!(ReleaseTrailers::parse(&format!("s\n\n{bad}")), None);
        let missing = trailers.replace("Release-Environment: qa\n", "");
        assert_eq!(ReleaseTrailers::parse(&format!("s\n\n{missing}")), None);
    }

    #[test]
    fn subjects_are_one_short_line() {
        assert_eq!(
            subject("promote", "web", "production", 7, "qa's abc1234"),
            "promote web to production: revision 7 (qa's abc1234)"
        );
        assert_eq!(
            subject("deploy", "web", "qa", 1, " "),
            "deploy web to qa: revision 1"
        );
        assert_eq!(
            subject("rollback", "web", "production", 9, "revision 5's images"),
            "rollback web in production: revision 9 (revision 5's images)"
        );
        assert_eq!(
            subject("deploy", "web", "qa", 2, "a\nb"),
            "deploy web to qa: revision 2 (a b)"
        );
        let t = full();
        assert_eq!(
            t.message("", "").lines().next(),
            Some("promote web to production: revision 7 (commit 0123456)")
        );
    }

    /// What `git interpret-trailers --parse` reads from `message`, if git is installed.
    fn git_trailers(message: &str) -> Option<String> {
        use std::io::Write as _;
        let mut child = std::process::Command::new("git")
            .args(["interpret-trailers", "--parse"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .ok()?;
        child.stdin.take()?.write_all(message.as_bytes()).ok()?;
        let out = child.wait_with_output().ok()?;
        assert!(out.status.success());
        Some(String::from_utf8(out.stdout).unwrap())
    }

    #[test]
    fn git_reads_the_trailers() {
        // A `---` line in the body would otherwise end what git reads as the message.
        let message = full().message("promote web", "Notes:\n---\nend");
        assert!(message.contains("\n ---\n"), "{message}");
        let Some(parsed) = git_trailers(&message) else {
            return; // no git here: the format is checked by construction above
        };
        let ours: String = message.split("\n\n").last().unwrap().to_owned();
        assert_eq!(parsed, ours);
    }
}
