//! An app's Kubernetes manifests as part of a release: parsing the rendered YAML, pinning the
//! app's images by digest, labelling, scope checks, apply and prune order, the set's digest,
//! diffs against live objects and drift. Plain functions over JSON values, no I/O.
//!
//! Objects stay dynamic (`serde_json::Value`): the plugin applies whatever kinds the app ships,
//! custom resources included, so nothing here may depend on a typed schema.

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

use hooks_sdk::helpers::ImageRef;

/// Where a document came from, to name it in errors: `kubernetes/qa/web.yaml:12 (document 2)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub file: String,
    /// 1-based first line of the document (the line after its `---`).
    pub line: usize,
    /// 1-based index of the document in the file.
    pub document: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{} (document {})",
            self.file, self.line, self.document
        )
    }
}

/// One object of the manifests, as JSON, with where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    pub origin: Origin,
    pub object: Value,
}

impl Manifest {
    pub fn api_version(&self) -> &str {
        self.object
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    pub fn kind(&self) -> &str {
        self.object
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    pub fn name(&self) -> &str {
        self.object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    /// The namespace written in the object; an empty one counts as none.
    pub fn namespace(&self) -> Option<&str> {
        self.object
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .filter(|ns| !ns.is_empty())
    }

    /// The API group: "" for `v1`, `apps` for `apps/v1`.
    pub fn group(&self) -> &str {
        group_of(self.api_version())
    }

    pub fn id(&self) -> ObjectRef {
        ObjectRef {
            api_version: self.api_version().to_string(),
            kind: self.kind().to_string(),
            namespace: self.namespace().map(str::to_string),
            name: self.name().to_string(),
        }
    }

    /// The pod spec of workload kinds (Deployment, StatefulSet, DaemonSet, ReplicaSet, Job:
    /// `spec.template.spec`; CronJob: `spec.jobTemplate.spec.template.spec`; Pod: `spec`), if any.
    pub fn pod_spec(&self) -> Option<&Value> {
        let path = pod_spec_path(self.group(), self.kind())?;
        path.iter().try_fold(&self.object, |v, key| v.get(key))
    }

    fn pod_spec_mut(&mut self) -> Option<&mut Value> {
        let path = pod_spec_path(self.group(), self.kind())?;
        path.iter()
            .try_fold(&mut self.object, |v, key| v.get_mut(key))
    }

    fn metadata_mut(&mut self) -> &mut Map<String, Value> {
        object_entry(&mut self.object, "metadata")
    }
}

/// An object's identity, as records and reports name it.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef {
    pub api_version: String,
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind, self.name)
    }
}

impl ObjectRef {
    /// The API group: "" for `v1`, `apps` for `apps/v1`.
    pub fn group(&self) -> &str {
        group_of(&self.api_version)
    }

    /// `Deployment.apps`, `Service` (group-kind as ApplySet annotations write it).
    pub fn group_kind(&self) -> String {
        match self.group() {
            "" => self.kind.clone(),
            group => format!("{}.{group}", self.kind),
        }
    }
}

/// A manifest problem: where, which field, what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestError {
    pub origin: Origin,
    /// Dotted path of the offending field; empty when the whole document is at fault.
    pub field: String,
    pub message: String,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}: {}", self.origin, self.message)
        } else {
            write!(f, "{}: {}: {}", self.origin, self.field, self.message)
        }
    }
}

impl std::error::Error for ManifestError {}

fn error(origin: &Origin, field: impl Into<String>, message: impl Into<String>) -> ManifestError {
    ManifestError {
        origin: origin.clone(),
        field: field.into(),
        message: message.into(),
    }
}

fn group_of(api_version: &str) -> &str {
    api_version.split_once('/').map_or("", |(group, _)| group)
}

/// The map at `key` in `object`, created (or replacing a non-map) if needed.
fn object_entry<'a>(object: &'a mut Value, key: &str) -> &'a mut Map<String, Value> {
    if !object.is_object() {
        *object = Value::Object(Map::new());
    }
    let Value::Object(map) = object else {
        unreachable!("made an object above")
    };
    let entry = map.entry(key).or_insert_with(|| Value::Object(Map::new()));
    if !entry.is_object() {
        *entry = Value::Object(Map::new());
    }
    let Value::Object(inner) = entry else {
        unreachable!("made an object above")
    };
    inner
}

// ---------------------------------------------------------------------------------------------
// Parsing

/// One `---`-separated piece of a file, before YAML parsing.
struct Chunk<'a> {
    text: &'a str,
    first_line: usize,
    document: usize,
}

/// Every object in one YAML (or JSON) file, in file order.
///
/// Documents are split by hand rather than by the YAML parser so that each one's line and
/// index are known: errors then point at the file line, not at a line within a document.
pub fn parse(file: &str, text: &str) -> Result<Vec<Manifest>, ManifestError> {
    let mut manifests = Vec::new();
    for chunk in split_documents(text.strip_prefix('\u{feff}').unwrap_or(text)) {
        let origin = Origin {
            file: file.to_string(),
            line: chunk.first_line,
            document: chunk.document,
        };
        if let Some(value) = parse_chunk(&chunk, &origin)? {
            expand(value, &origin, "", &mut manifests)?;
        }
    }
    Ok(manifests)
}

/// `---` at column 0, optionally followed by whitespace or a comment.
fn is_separator(line: &str) -> bool {
    let Some(rest) = line.trim_end_matches(['\n', '\r']).strip_prefix("---") else {
        return false;
    };
    rest.is_empty()
        || (rest.starts_with([' ', '\t'])
            && (rest.trim().is_empty() || rest.trim_start().starts_with('#')))
}

/// Nothing but blank lines and comments.
fn is_blank(text: &str) -> bool {
    text.lines().all(|line| {
        let line = line.trim();
        line.is_empty() || line.starts_with('#')
    })
}

/// The documents of a file with their first line and index. Blank text before the first `---`
/// is not a document (YAML's own view: comments above the first separator are a preamble).
fn split_documents(text: &str) -> Vec<Chunk<'_>> {
    let mut pieces = Vec::new();
    let (mut start, mut first_line, mut offset) = (0, 1, 0);
    for (index, line) in text.split_inclusive('\n').enumerate() {
        if is_separator(line) {
            pieces.push((&text[start..offset], first_line));
            start = offset + line.len();
            first_line = index + 2;
        }
        offset += line.len();
    }
    pieces.push((&text[start..], first_line));
    let skip_preamble = pieces.len() > 1 && is_blank(pieces[0].0);
    pieces
        .into_iter()
        .skip(usize::from(skip_preamble))
        .enumerate()
        .map(|(index, (text, first_line))| Chunk {
            text,
            first_line,
            document: index + 1,
        })
        .collect()
}

/// The document's value, or None for an empty one (blank, comments only, or `null`).
fn parse_chunk(chunk: &Chunk<'_>, origin: &Origin) -> Result<Option<Value>, ManifestError> {
    if is_blank(chunk.text) {
        return Ok(None);
    }
    match serde_yaml_ng::from_str::<Value>(chunk.text) {
        Ok(Value::Null) => Ok(None),
        Ok(value) => Ok(Some(value)),
        Err(e) => {
            // The parser counts a lone CR as a line break and may point past the end: keep
            // the line inside the document, as an editor counts it.
            let last = chunk.text.lines().count().max(1);
            let line_in_chunk = e.location().map_or(1, |l| l.line().clamp(1, last));
            let origin = Origin {
                line: chunk.first_line + line_in_chunk - 1,
                ..origin.clone()
            };
            let message = shift_line_numbers(&e.to_string(), chunk.first_line - 1);
            Err(error(
                &origin,
                "",
                super::yaml_syntax::explain(chunk.text, Some(line_in_chunk), message),
            ))
        }
    }
}

/// The YAML error text counts lines from the document's start; make them file lines.
fn shift_line_numbers(message: &str, by: usize) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find("line ") {
        let (head, tail) = rest.split_at(at + "line ".len());
        out.push_str(head);
        let digits = tail.len() - tail.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        match tail[..digits].parse::<usize>() {
            Ok(n) => out.push_str(&(n + by).to_string()),
            Err(_) => out.push_str(&tail[..digits]),
        }
        rest = &tail[digits..];
    }
    out.push_str(rest);
    out
}

/// Checks one document and adds it, or each item of a `v1` `List`, to `out`.
fn expand(
    value: Value,
    origin: &Origin,
    prefix: &str,
    out: &mut Vec<Manifest>,
) -> Result<(), ManifestError> {
    check_identity(&value, origin, prefix)?;
    let is_list = value["apiVersion"] == "v1" && value["kind"] == "List";
    if !is_list {
        out.push(Manifest {
            origin: origin.clone(),
            object: value,
        });
        return Ok(());
    }
    let items = match value {
        Value::Object(mut object) => object.remove("items"),
        _ => None,
    };
    let Some(Value::Array(items)) = items else {
        return Err(error(
            origin,
            format!("{prefix}items"),
            "a List needs a list of items",
        ));
    };
    for (index, item) in items.into_iter().enumerate() {
        expand(item, origin, &format!("{prefix}items[{index}]."), out)?;
    }
    Ok(())
}

/// Every object needs a mapping with a string `apiVersion` and `kind`, and a name: the release
/// records, prunes and diffs objects by that identity. A `List` needs no name.
fn check_identity(value: &Value, origin: &Origin, prefix: &str) -> Result<(), ManifestError> {
    let field = |name: &str| format!("{prefix}{name}");
    let Some(object) = value.as_object() else {
        return Err(error(
            origin,
            prefix.trim_end_matches('.'),
            format!(
                "expected a Kubernetes object (a mapping), found {}",
                type_name(value)
            ),
        ));
    };
    for key in ["apiVersion", "kind"] {
        if !is_non_empty_string(object.get(key)) {
            return Err(error(origin, field(key), "missing, or not a string"));
        }
    }
    let is_list = object["apiVersion"] == "v1" && object["kind"] == "List";
    let named = is_non_empty_string(value.pointer("/metadata/name"));
    if !named && !is_list {
        return Err(error(
            origin,
            field("metadata.name"),
            "missing or empty: a release tracks its objects by name (generateName is not supported)",
        ));
    }
    Ok(())
}

fn is_non_empty_string(value: Option<&Value>) -> bool {
    value.and_then(Value::as_str).is_some_and(|s| !s.is_empty())
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

// ---------------------------------------------------------------------------------------------
// Images and labels

/// The workload kinds, in apply order, with where their pod spec sits.
const WORKLOADS: [(&str, &str, &[&str]); 7] = [
    ("apps", "Deployment", &["spec", "template", "spec"]),
    ("apps", "StatefulSet", &["spec", "template", "spec"]),
    ("apps", "DaemonSet", &["spec", "template", "spec"]),
    ("apps", "ReplicaSet", &["spec", "template", "spec"]),
    ("batch", "Job", &["spec", "template", "spec"]),
    (
        "batch",
        "CronJob",
        &["spec", "jobTemplate", "spec", "template", "spec"],
    ),
    ("", "Pod", &["spec"]),
];

/// Where a workload kind keeps its pod spec; the group is checked so that a custom resource
/// that happens to be called `Job` is not mistaken for one.
fn pod_spec_path(group: &str, kind: &str) -> Option<&'static [&'static str]> {
    WORKLOADS
        .iter()
        .find(|(g, k, _)| *g == group && *k == kind)
        .map(|(_, _, path)| *path)
}

/// Sets the image of every container and init container whose image repository is
/// `repository` to `pick(container_name)`; other images stay as written. Returns
/// (container, before, after) for each container changed or pinned. `pick` returning None is
/// an error naming the field (e.g. `spec.template.spec.containers[0].image`).
pub fn pin_images(
    m: &mut Manifest,
    repository: &str,
    pick: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<(String, String, String)>, ManifestError> {
    let Some(path) = pod_spec_path(m.group(), m.kind()) else {
        return Ok(Vec::new());
    };
    let origin = m.origin.clone();
    let Some(spec) = m.pod_spec_mut() else {
        return Ok(Vec::new());
    };
    let mut pinned = Vec::new();
    for list in ["initContainers", "containers"] {
        let Some(containers) = spec.get_mut(list).and_then(Value::as_array_mut) else {
            continue;
        };
        for (index, container) in containers.iter_mut().enumerate() {
            let change = pin_container(container, repository, pick).map_err(|message| {
                let field = format!("{}.{list}[{index}].image", path.join("."));
                error(&origin, field, message)
            })?;
            pinned.extend(change);
        }
    }
    Ok(pinned)
}

fn pin_container(
    container: &mut Value,
    repository: &str,
    pick: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<(String, String, String)>, String> {
    let Some(before) = container.get("image").and_then(Value::as_str) else {
        return Ok(None);
    };
    if ImageRef::parse(before).repository != repository {
        return Ok(None);
    }
    let before = before.to_string();
    let name = container
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let after = pick(&name).ok_or_else(|| format!("no digest for container `{name}`"))?;
    container["image"] = Value::String(after.clone());
    Ok(Some((name, before, after)))
}

/// Adds `labels` to metadata.labels (creating the map), overwriting same keys.
pub fn label(m: &mut Manifest, labels: &BTreeMap<String, String>) {
    let map = object_entry(&mut m.object, "metadata");
    let entry = map
        .entry("labels")
        .or_insert_with(|| Value::Object(Map::new()));
    if !entry.is_object() {
        *entry = Value::Object(Map::new());
    }
    if let Value::Object(existing) = entry {
        for (key, value) in labels {
            existing.insert(key.clone(), Value::String(value.clone()));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Scope

/// Whether a kind's objects live in a namespace (the server says, through discovery).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Namespaced,
    Cluster,
}

/// What an environment lets its manifests do beyond its own namespace.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Allowed {
    pub cluster_scoped: bool,
    pub other_namespaces: bool,
}

/// Checks one object against the environment and fills in its namespace: an environment owns
/// one namespace, so anything reaching beyond it must be allowed explicitly. The environment's
/// own `Namespace` object is always fine; a cluster-scoped object loses a stray
/// `metadata.namespace` (the server would ignore it, and it would skew the object's identity).
pub fn check_scope(
    m: &mut Manifest,
    scope: Scope,
    namespace: &str,
    allowed: Allowed,
) -> Result<(), ManifestError> {
    match scope {
        Scope::Namespaced => check_namespaced(m, namespace, allowed),
        Scope::Cluster => check_cluster_scoped(m, namespace, allowed),
    }
}

fn check_namespaced(
    m: &mut Manifest,
    namespace: &str,
    allowed: Allowed,
) -> Result<(), ManifestError> {
    match m.namespace() {
        None => {
            m.metadata_mut()
                .insert("namespace".into(), Value::String(namespace.into()));
            Ok(())
        }
        Some(ns) if ns == namespace || allowed.other_namespaces => Ok(()),
        Some(ns) => Err(error(
            &m.origin,
            "metadata.namespace",
            format!(
                "{} is in namespace `{ns}`, not the environment's namespace `{namespace}`: \
                 remove metadata.namespace, or allow `otherNamespaces` for this environment",
                m.id()
            ),
        )),
    }
}

fn check_cluster_scoped(
    m: &mut Manifest,
    namespace: &str,
    allowed: Allowed,
) -> Result<(), ManifestError> {
    let own_namespace = m.group().is_empty() && m.kind() == "Namespace" && m.name() == namespace;
    if !own_namespace && !allowed.cluster_scoped {
        return Err(error(
            &m.origin,
            "kind",
            format!(
                "{} is cluster-scoped: allow `clusterScoped` for this environment to apply it",
                m.id()
            ),
        ));
    }
    m.metadata_mut().remove("namespace");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Order

/// Kinds other objects depend on, in apply order: namespaces hold everything, CRDs define
/// kinds, accounts and RBAC come before what runs as them, config and claims before the pods
/// that mount them, services before the pods that look them up.
const APPLY_FIRST: [(&str, &str); 11] = [
    ("", "Namespace"),
    ("apiextensions.k8s.io", "CustomResourceDefinition"),
    ("", "ServiceAccount"),
    ("rbac.authorization.k8s.io", "ClusterRole"),
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"),
    ("rbac.authorization.k8s.io", "Role"),
    ("rbac.authorization.k8s.io", "RoleBinding"),
    ("", "ConfigMap"),
    ("", "Secret"),
    ("", "PersistentVolumeClaim"),
    ("", "Service"),
];

/// The rank in apply order: the kinds above, then everything else, then workloads.
fn apply_rank(group: &str, kind: &str) -> usize {
    if let Some(rank) = APPLY_FIRST
        .iter()
        .position(|&(g, k)| g == group && k == kind)
    {
        return rank;
    }
    match WORKLOADS
        .iter()
        .position(|&(g, k, _)| g == group && k == kind)
    {
        Some(rank) => APPLY_FIRST.len() + 1 + rank,
        None => APPLY_FIRST.len(),
    }
}

/// Apply order: Namespace, CustomResourceDefinition, ServiceAccount, ClusterRole,
/// ClusterRoleBinding, Role, RoleBinding, ConfigMap, Secret, PersistentVolumeClaim, Service,
/// everything else, then workloads (Deployment, StatefulSet, DaemonSet, ReplicaSet, Job,
/// CronJob, Pod). Stable within a rank.
pub fn sort_for_apply(set: &mut [Manifest]) {
    set.sort_by_key(|m| apply_rank(m.group(), m.kind()));
}

/// Prune (delete) order: the reverse rank of apply order, so workloads go before what they
/// use and a namespace goes last.
pub fn sort_for_delete(refs: &mut [ObjectRef]) {
    refs.sort_by_key(|r| Reverse(apply_rank(r.group(), &r.kind)));
}

// ---------------------------------------------------------------------------------------------
// Digest and ApplySet

/// The same value with every object's keys in sorted order, whatever the map type keeps.
fn canonical(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k.clone(), canonical(v)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

/// `sha256:<hex>` of the set: canonical JSON (keys sorted) of every object, ordered by
/// [`ObjectRef`], so file order and YAML formatting do not change it.
pub fn digest(set: &[Manifest]) -> String {
    let mut objects: Vec<(ObjectRef, String)> = set
        .iter()
        .map(|m| (m.id(), canonical(&m.object).to_string()))
        .collect();
    objects.sort();
    let array = format!(
        "[{}]",
        objects
            .iter()
            .map(|(_, json)| json.as_str())
            .collect::<Vec<_>>()
            .join(",")
    );
    format!("sha256:{}", hex::encode(Sha256::digest(array.as_bytes())))
}

/// The ApplySet id of a parent object, per KEP-3659: `applyset-` + base64url without padding
/// of sha256 of `<name>.<namespace>.<kind>.<group>` + `-v1`, so `kubectl apply --prune
/// --applyset` recognises the set as the same one.
pub fn applyset_id(name: &str, namespace: &str, kind: &str, group: &str) -> String {
    let hash = Sha256::digest(format!("{name}.{namespace}.{kind}.{group}").as_bytes());
    format!(
        "applyset-{}-v1",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(hash)
    )
}

// ---------------------------------------------------------------------------------------------
// Diff and drift

/// Set by the server (or by `kubectl apply`'s client side) on every object.
const SERVER_METADATA: [&str; 6] = [
    "managedFields",
    "resourceVersion",
    "uid",
    "creationTimestamp",
    "generation",
    "selfLink",
];

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// What a live object or a dry-run result looks like without what the server adds on its own:
/// drops metadata.managedFields, resourceVersion, uid, creationTimestamp, generation,
/// selfLink, the last-applied-configuration annotation (and an annotations map left empty),
/// and `status`.
pub fn without_server_fields(v: &Value) -> Value {
    let mut v = v.clone();
    let Some(object) = v.as_object_mut() else {
        return v;
    };
    object.remove("status");
    if let Some(Value::Object(metadata)) = object.get_mut("metadata") {
        for key in SERVER_METADATA {
            metadata.remove(key);
        }
        if let Some(Value::Object(annotations)) = metadata.get_mut("annotations") {
            annotations.remove(LAST_APPLIED);
            if annotations.is_empty() {
                metadata.remove("annotations");
            }
        }
    }
    v
}

fn is_secret(id: &ObjectRef) -> bool {
    id.group().is_empty() && id.kind == "Secret"
}

/// Replaces Secret values on one side with `***`, or `*** (label)` where the other side
/// differs, so a diff shows which keys change without printing any value.
fn mask_secret_values(own: &mut Value, other: Option<&Value>, label: &str) {
    for section in ["data", "stringData"] {
        let Some(Value::Object(values)) = own.get_mut(section) else {
            continue;
        };
        for (key, value) in values.iter_mut() {
            let theirs = other.and_then(|o| o.get(section)).and_then(|s| s.get(key));
            let mask = match theirs {
                Some(theirs) if theirs != value => format!("*** ({label})"),
                _ => "***".to_string(),
            };
            *value = Value::String(mask);
        }
    }
}

/// An object as hooks see it: a Secret's values replaced by `***`, keys kept. Hooks judge
/// Secrets by their keys, type and metadata; what they say is stored in release records and
/// printed in CI logs, where a value must never appear, whatever a hook echoes.
pub fn for_hooks(mut object: Value) -> Value {
    if object["apiVersion"] == "v1" && object["kind"] == "Secret" {
        mask_secret_values(&mut object, None, "");
    }
    object
}

fn to_yaml(value: Option<&Value>) -> String {
    value
        .map(|v| serde_yaml_ng::to_string(&canonical(v)).unwrap_or_else(|e| format!("# {e}\n")))
        .unwrap_or_default()
}

/// A unified diff (as `kubectl diff` shows, YAML, 3 lines of context) between the live object
/// and what the release would make of it; "" when equal. A missing `before` is a new object,
/// a missing `after` a pruned one. Secret `data` and `stringData` values are masked in both
/// sides (`***`, or `*** (before)` / `*** (after)` where they change), so values never print
/// but changes still show.
pub fn diff(id: &ObjectRef, before: Option<&Value>, after: Option<&Value>) -> String {
    let mut before = before.map(without_server_fields);
    let mut after = after.map(without_server_fields);
    if is_secret(id) {
        let (original_before, original_after) = (before.clone(), after.clone());
        if let Some(b) = before.as_mut() {
            mask_secret_values(b, original_after.as_ref(), "before");
        }
        if let Some(a) = after.as_mut() {
            mask_secret_values(a, original_before.as_ref(), "after");
        }
    }
    let (old, new) = (to_yaml(before.as_ref()), to_yaml(after.as_ref()));
    if old == new {
        return String::new();
    }
    similar::TextDiff::from_lines(&old, &new)
        .unified_diff()
        .context_radius(3)
        .header(
            &format!("live/{}/{}", id.kind, id.name),
            &format!("release/{}/{}", id.kind, id.name),
        )
        .to_string()
}

/// Where a live object differs from what the release applied: dotted paths (`spec.replicas`,
/// `spec.template.spec.containers[0].env[1].value`, `data.LOG_LEVEL`) of every field the
/// applied object sets that the live object lacks or has a different value for, sorted.
///
/// Only fields the release set count: the server defaults and adds plenty, none of it drift.
/// In metadata only labels and annotations are compared; Secret `stringData` is skipped (the
/// server turns it into data).
pub fn drift(applied: &Value, live: &Value) -> Vec<String> {
    let applied = without_server_fields(applied);
    let skip_string_data = applied["kind"] == "Secret"
        && group_of(applied["apiVersion"].as_str().unwrap_or_default()).is_empty();
    let mut found = Vec::new();
    let Some(fields) = applied.as_object() else {
        return found;
    };
    for (key, value) in fields {
        let theirs = live.get(key);
        match key.as_str() {
            "stringData" if skip_string_data => {}
            "metadata" => {
                for part in ["labels", "annotations"] {
                    if let Some(mine) = value.get(part) {
                        let path = format!("metadata.{part}");
                        compare(&path, mine, theirs.and_then(|t| t.get(part)), &mut found);
                    }
                }
            }
            _ => compare(&child_path("", key), value, theirs, &mut found),
        }
    }
    found.sort();
    found.dedup();
    found
}

/// `parent.key`, or `parent["key"]` for keys with dots (label and annotation names), so the
/// path stays unambiguous.
fn child_path(parent: &str, key: &str) -> String {
    if key.contains('.') {
        format!("{parent}[{key:?}]")
    } else if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

fn compare(path: &str, applied: &Value, live: Option<&Value>, found: &mut Vec<String>) {
    match (applied, live) {
        // An applied null asks for nothing.
        (Value::Null, None | Some(Value::Null)) => {}
        (Value::Object(mine), Some(Value::Object(theirs))) => {
            for (key, value) in mine {
                compare(&child_path(path, key), value, theirs.get(key), found);
            }
        }
        (Value::Array(mine), Some(Value::Array(theirs))) if mine.len() == theirs.len() => {
            for (index, (m, t)) in mine.iter().zip(theirs).enumerate() {
                compare(&format!("{path}[{index}]"), m, Some(t), found);
            }
        }
        (mine, Some(theirs)) if scalars_match(mine, theirs) => {}
        _ => found.push(path.to_string()),
    }
}

/// Equal as JSON, or the same number or boolean written once as a string (quantities and
/// env-like fields the server normalises: `1` against `"1"`).
fn scalars_match(a: &Value, b: &Value) -> bool {
    let as_text = |v: &Value| match v {
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    };
    match (a, b) {
        _ if a == b => true,
        (Value::String(s), other) | (other, Value::String(s)) => {
            as_text(other).is_some_and(|t| t == *s)
        }
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------------
// What one field manager applied

/// The part of a live object that `manager` set by server-side apply, read from its
/// `metadata.managedFields` (`fieldsV1`), with the object's identity; `None` when that manager
/// never applied it.
///
/// Putting an object back means applying what we applied before, not the whole live object:
/// applying the live object makes our manager own every field the server filled in (a
/// Service's `clusterIP`, say), and the next release, which no longer sets them, would then
/// ask the server to remove them (for `clusterIP`: "primary clusterIP can not be unset").
pub fn applied_by(object: &Value, manager: &str) -> Option<Value> {
    let entries = object.pointer("/metadata/managedFields")?.as_array()?;
    let mut fields = Map::new();
    let mut found = false;
    for entry in entries {
        let subresource = entry.get("subresource").and_then(Value::as_str);
        if entry["manager"] != manager
            || entry["operation"] != "Apply"
            || subresource.is_some_and(|s| !s.is_empty())
        {
            continue;
        }
        if let Some(Value::Object(set)) = entry.get("fieldsV1") {
            merge_fields(&mut fields, set);
            found = true;
        }
    }
    if !found {
        return None;
    }
    let mut out = select_fields(object, &fields);
    if !out.is_object() {
        out = Value::Object(Map::new());
    }
    for key in ["apiVersion", "kind"] {
        out[key] = object[key].clone();
    }
    for key in ["name", "namespace"] {
        if let Some(value) = object.pointer(&format!("/metadata/{key}")) {
            object_entry(&mut out, "metadata").insert(key.into(), value.clone());
        }
    }
    Some(out)
}

/// Adds the field set `from` to `into` (both `fieldsV1` maps).
fn merge_fields(into: &mut Map<String, Value>, from: &Map<String, Value>) {
    for (key, sub) in from {
        match (into.get_mut(key), sub) {
            (Some(Value::Object(mine)), Value::Object(theirs)) => merge_fields(mine, theirs),
            (Some(_), _) => {}
            (None, _) => {
                into.insert(key.clone(), sub.clone());
            }
        }
    }
}

/// The parts of `value` the `fieldsV1` set names: `f:<field>` of a map; `k:<json>` (items
/// whose keys have those values), `v:<json>` (an item of that value) or `i:<index>` of a list.
fn select_fields(value: &Value, fields: &Map<String, Value>) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            fields
                .iter()
                .filter_map(|(key, sub)| {
                    let name = key.strip_prefix("f:")?;
                    let child = map.get(name)?;
                    Some((name.to_string(), narrow(child, sub)))
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .filter_map(|(index, item)| {
                    let (_, sub) = fields
                        .iter()
                        .find(|(key, _)| item_matches(key, index, item))?;
                    Some(narrow(item, sub))
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

/// `child` narrowed to `sub`: a set naming nothing below it (`{}` or `{".": {}}`) owns the
/// whole value.
fn narrow(child: &Value, sub: &Value) -> Value {
    match sub.as_object() {
        Some(set) if set.keys().any(|k| k != ".") && (child.is_object() || child.is_array()) => {
            select_fields(child, set)
        }
        _ => child.clone(),
    }
}

fn item_matches(key: &str, index: usize, item: &Value) -> bool {
    if let Some(json) = key.strip_prefix("k:") {
        match serde_json::from_str::<Value>(json) {
            Ok(Value::Object(keys)) => keys.iter().all(|(k, v)| item.get(k) == Some(v)),
            _ => false,
        }
    } else if let Some(json) = key.strip_prefix("v:") {
        serde_json::from_str::<Value>(json).is_ok_and(|v| &v == item)
    } else if let Some(i) = key.strip_prefix("i:") {
        i.parse::<usize>() == Ok(index)
    } else {
        false
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn applied_by_keeps_only_what_the_manager_applied() {
        let live = serde_json::json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {
                "name": "web", "namespace": "qa", "uid": "u", "resourceVersion": "7",
                "labels": {"app": "web", "other": "x"},
                "managedFields": [
                    {"manager": "kubectl-release", "operation": "Apply", "fieldsV1": {
                        "f:metadata": {"f:labels": {"f:app": {}}},
                        "f:spec": {
                            "f:ports": {"k:{\"port\":80,\"protocol\":\"TCP\"}": {".": {}, "f:port": {}, "f:protocol": {}}},
                            "f:selector": {}
                        }
                    }},
                    {"manager": "other", "operation": "Update", "fieldsV1": {
                        "f:metadata": {"f:labels": {"f:other": {}}}
                    }}
                ]
            },
            "spec": {
                "clusterIP": "10.0.0.1", "clusterIPs": ["10.0.0.1"], "type": "ClusterIP",
                "selector": {"app": "web"},
                "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}]
            },
            "status": {"loadBalancer": {}}
        });
        assert_eq!(
            applied_by(&live, "kubectl-release").unwrap(),
            serde_json::json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "web", "namespace": "qa", "labels": {"app": "web"}},
                "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "protocol": "TCP"}]}
            })
        );
        assert_eq!(applied_by(&live, "someone"), None);
    }

    use super::*;
    use serde_json::json;

    const REPO: &str = "127.0.0.1:5000/acme/web";

    fn manifest(object: Value) -> Manifest {
        Manifest {
            origin: Origin {
                file: "kubernetes/qa/app.yaml".into(),
                line: 1,
                document: 1,
            },
            object,
        }
    }

    fn deployment(name: &str, replicas: u32) -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "labels": {"app": name}},
            "spec": {
                "replicas": replicas,
                "template": {"spec": {
                    "initContainers": [{"name": "migrate", "image": format!("{REPO}:old")}],
                    "containers": [
                        {"name": "web", "image": format!("{REPO}:old"),
                         "env": [{"name": "A", "value": "1"}, {"name": "LOG_LEVEL", "value": "info"}]},
                        {"name": "proxy", "image": "envoy:1"}
                    ]
                }}
            }
        })
    }

    #[test]
    fn parse_reads_every_document_with_its_origin() {
        let text = "# preamble\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n---\n\
                    # only a comment\n--- # next\n{\"apiVersion\": \"v1\", \"kind\": \"Service\", \
                    \"metadata\": {\"name\": \"b\"}}\n";
        let set = parse("app.yaml", text).unwrap();
        assert_eq!(set.len(), 2);
        assert_eq!(set[0].origin.line, 3);
        assert_eq!(set[0].origin.document, 1);
        assert_eq!(set[1].kind(), "Service");
        assert_eq!(set[1].origin.line, 10);
        assert_eq!(set[1].origin.document, 3);
        assert_eq!(set[1].origin.to_string(), "app.yaml:10 (document 3)");
    }

    #[test]
    fn parse_error_points_at_the_file_line() {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n---\n\
                    apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\n  foo: bar: baz\n---\n\
                    apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n";
        let err = parse("kubernetes/qa/web.yaml", text).unwrap_err();
        assert_eq!(err.origin.line, 10, "{err}");
        assert_eq!(err.origin.document, 2);
        assert!(err.field.is_empty());
        assert!(
            err.to_string()
                .starts_with("kubernetes/qa/web.yaml:10 (document 2): "),
            "{err}"
        );
        assert!(err.message.contains("line 10"), "{}", err.message);
    }

    #[test]
    fn a_tab_in_a_manifests_indentation_is_named() {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n---\n\
                    apiVersion: v1\nkind: ConfigMap\nmetadata:\n\t- name: b\n";
        let err = parse("kubernetes/qa/web.yaml", text).unwrap_err();
        assert_eq!(err.origin.line, 9, "{err}");
        assert!(err.message.contains("indented with a tab"), "{err}");
    }

    #[test]
    fn parse_names_a_missing_name_or_kind() {
        let err = parse("a.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n").unwrap_err();
        assert_eq!(err.field, "metadata.name");
        assert!(
            err.to_string()
                .starts_with("a.yaml:1 (document 1): metadata.name: ")
        );
        let err = parse("a.yaml", "apiVersion: v1\nmetadata: {name: x}\n").unwrap_err();
        assert_eq!(err.field, "kind");
        let err = parse("a.yaml", "- 1\n- 2\n").unwrap_err();
        assert_eq!(err.field, "");
        assert!(err.message.contains("a list"), "{}", err.message);
    }

    #[test]
    fn parse_expands_a_list() {
        let text = "apiVersion: v1\nkind: List\nitems:\n\
                    - {apiVersion: v1, kind: ConfigMap, metadata: {name: a}}\n\
                    - {apiVersion: v1, kind: Secret, metadata: {name: b}}\n";
        let set = parse("list.yaml", text).unwrap();
        let names: Vec<_> = set.iter().map(Manifest::name).collect();
        assert_eq!(names, ["a", "b"]);
        let bad = "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: ConfigMap}\n";
        assert_eq!(
            parse("list.yaml", bad).unwrap_err().field,
            "items[0].metadata.name"
        );
    }

    #[test]
    fn identity_accessors() {
        let m = manifest(deployment("web", 1));
        assert_eq!(m.group(), "apps");
        assert_eq!(m.id().to_string(), "Deployment/web");
        assert_eq!(m.id().group_kind(), "Deployment.apps");
        assert_eq!(
            manifest(json!({"apiVersion": "v1", "kind": "Service"}))
                .id()
                .group_kind(),
            "Service"
        );
        assert!(m.pod_spec().unwrap().get("containers").is_some());
    }

    #[test]
    fn pin_images_pins_app_containers_and_leaves_sidecars() {
        let mut m = manifest(deployment("web", 1));
        let pick = |name: &str| Some(format!("{REPO}@sha256:{name}"));
        let pinned = pin_images(&mut m, REPO, &pick).unwrap();
        let names: Vec<_> = pinned.iter().map(|(c, _, _)| c.as_str()).collect();
        assert_eq!(names, ["migrate", "web"]);
        assert_eq!(pinned[1].1, format!("{REPO}:old"));
        let spec = m.pod_spec().unwrap();
        assert_eq!(spec["containers"][0]["image"], format!("{REPO}@sha256:web"));
        assert_eq!(
            spec["initContainers"][0]["image"],
            format!("{REPO}@sha256:migrate")
        );
        assert_eq!(spec["containers"][1]["image"], "envoy:1");

        let mut cron = manifest(json!({
            "apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "nightly"},
            "spec": {"jobTemplate": {"spec": {"template": {"spec": {
                "containers": [{"name": "job", "image": format!("{REPO}@sha256:aaa")}]
            }}}}}
        }));
        let pinned = pin_images(&mut cron, REPO, &pick).unwrap();
        assert_eq!(pinned.len(), 1);
        assert_eq!(
            cron.object
                .pointer("/spec/jobTemplate/spec/template/spec/containers/0/image"),
            Some(&json!(format!("{REPO}@sha256:job")))
        );
    }

    #[test]
    fn pin_images_names_a_container_without_a_digest() {
        let mut m = manifest(deployment("web", 1));
        let err = pin_images(&mut m, REPO, &|name: &str| {
            (name == "migrate").then(|| "x".to_string())
        })
        .unwrap_err();
        assert_eq!(err.field, "spec.template.spec.containers[0].image");
        assert_eq!(err.message, "no digest for container `web`");
    }

    #[test]
    fn label_adds_and_overwrites() {
        let mut m =
            manifest(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}}));
        let labels = BTreeMap::from([("release".to_string(), "abc".to_string())]);
        label(&mut m, &labels);
        assert_eq!(m.object["metadata"]["labels"]["release"], "abc");
        let mut d = manifest(deployment("web", 1));
        let labels = BTreeMap::from([("app".to_string(), "other".to_string())]);
        label(&mut d, &labels);
        assert_eq!(d.object["metadata"]["labels"], json!({"app": "other"}));
    }

    #[test]
    fn check_scope_fills_refuses_and_allows() {
        let mut m = manifest(deployment("web", 1));
        check_scope(&mut m, Scope::Namespaced, "qa", Allowed::default()).unwrap();
        assert_eq!(m.namespace(), Some("qa"));

        let mut foreign = manifest(deployment("web", 1));
        foreign.object["metadata"]["namespace"] = json!("prod");
        let err =
            check_scope(&mut foreign, Scope::Namespaced, "qa", Allowed::default()).unwrap_err();
        assert_eq!(err.field, "metadata.namespace");
        assert!(err.message.contains("`prod`") && err.message.contains("`qa`"));
        assert!(err.message.contains("otherNamespaces"));
        let others = Allowed {
            other_namespaces: true,
            ..Allowed::default()
        };
        check_scope(&mut foreign, Scope::Namespaced, "qa", others).unwrap();
        assert_eq!(foreign.namespace(), Some("prod"));

        let role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                          "metadata": {"name": "reader", "namespace": "qa"}});
        let err = check_scope(
            &mut manifest(role.clone()),
            Scope::Cluster,
            "qa",
            Allowed::default(),
        )
        .unwrap_err();
        assert_eq!(err.field, "kind");
        assert!(err.message.contains("cluster-scoped") && err.message.contains("clusterScoped"));
        let mut role = manifest(role);
        let cluster = Allowed {
            cluster_scoped: true,
            ..Allowed::default()
        };
        check_scope(&mut role, Scope::Cluster, "qa", cluster).unwrap();
        assert_eq!(role.namespace(), None);

        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "qa"}});
        check_scope(&mut manifest(ns), Scope::Cluster, "qa", Allowed::default()).unwrap();
        let other_ns =
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "prod"}});
        assert!(
            check_scope(
                &mut manifest(other_ns),
                Scope::Cluster,
                "qa",
                Allowed::default()
            )
            .is_err()
        );
    }

    #[test]
    fn sort_orders_dependencies_first_and_prunes_in_reverse() {
        let object = |api: &str, kind: &str, name: &str| {
            manifest(json!({"apiVersion": api, "kind": kind, "metadata": {"name": name}}))
        };
        let mut set = vec![
            object("apps/v1", "Deployment", "web"),
            object("example.com/v1", "Widget", "w"),
            object("v1", "ConfigMap", "config"),
            object("v1", "Namespace", "qa"),
            object("v1", "ConfigMap", "config2"),
        ];
        sort_for_apply(&mut set);
        let names: Vec<_> = set.iter().map(Manifest::name).collect();
        assert_eq!(names, ["qa", "config", "config2", "w", "web"]);

        let mut refs: Vec<ObjectRef> = set.iter().map(Manifest::id).collect();
        sort_for_delete(&mut refs);
        let names: Vec<_> = refs.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["web", "w", "config", "config2", "qa"]);
    }

    #[test]
    fn digest_ignores_order_and_formatting_but_not_content() {
        let a =
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  x: '1'\n  y: '2'\n";
        let b =
            "{\"kind\": \"Service\", \"apiVersion\": \"v1\", \"metadata\": {\"name\": \"b\"}}\n";
        let one = [parse("f", a).unwrap(), parse("f", b).unwrap()].concat();
        let reformatted =
            "kind: ConfigMap\ndata: {y: \"2\", x: \"1\"}\napiVersion: v1\nmetadata: {name: a}\n";
        let two = [parse("g", b).unwrap(), parse("g", reformatted).unwrap()].concat();
        assert_eq!(digest(&one), digest(&two));
        assert!(digest(&one).starts_with("sha256:"));
        assert_eq!(digest(&one).len(), "sha256:".len() + 64);
        let mut changed = two.clone();
        changed[1].object["data"]["x"] = json!("3");
        assert_ne!(digest(&one), digest(&changed));
    }

    #[test]
    fn applyset_id_follows_the_kep_format() {
        let id = applyset_id("web", "qa", "Secret", "");
        assert_eq!(id, applyset_id("web", "qa", "Secret", ""));
        let hash = id
            .strip_prefix("applyset-")
            .unwrap()
            .strip_suffix("-v1")
            .unwrap();
        assert_eq!(hash.len(), 43);
        assert!(
            hash.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        let expected = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(Sha256::digest(b"web.qa.Secret."));
        assert_eq!(hash, expected);
        assert_ne!(id, applyset_id("web", "prod", "Secret", ""));
    }

    #[test]
    fn without_server_fields_drops_what_the_server_adds() {
        let live = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "a", "uid": "u", "resourceVersion": "1", "managedFields": [],
                         "annotations": {LAST_APPLIED: "{}"}},
            "status": {}});
        assert_eq!(
            without_server_fields(&live),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}})
        );
    }

    #[test]
    fn diff_shows_changed_fields() {
        let id = manifest(deployment("web", 1)).id();
        let mut live = deployment("web", 1);
        live["status"] = json!({"replicas": 1});
        live["metadata"]["uid"] = json!("123");
        let text = diff(&id, Some(&live), Some(&deployment("web", 3)));
        assert!(
            text.starts_with("--- live/Deployment/web\n+++ release/Deployment/web\n"),
            "{text}"
        );
        assert!(text.contains("\n-  replicas: 1\n"), "{text}");
        assert!(text.contains("\n+  replicas: 3\n"), "{text}");
        assert!(!text.contains("uid"), "{text}");
        assert_eq!(diff(&id, Some(&live), Some(&deployment("web", 1))), "");
        let created = diff(&id, None, Some(&deployment("web", 1)));
        assert!(created.contains("+kind: Deployment"), "{created}");
        let pruned = diff(&id, Some(&live), None);
        assert!(pruned.contains("-kind: Deployment"), "{pruned}");
    }

    #[test]
    fn hooks_see_a_secrets_keys_never_its_values() {
        let secret = serde_json::json!({
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"},
            "type": "Opaque", "data": {"password": "aHVudGVyMg=="}, "stringData": {"user": "web"},
        });
        let seen = for_hooks(secret);
        assert_eq!(seen["data"]["password"], "***");
        assert_eq!(seen["stringData"]["user"], "***");
        assert_eq!(seen["type"], "Opaque");
        assert_eq!(seen["metadata"]["name"], "db");
        // Another kind, even one with a `data` map, is shown as it is.
        let config = serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap", "data": {"mode": "fast"},
        });
        assert_eq!(for_hooks(config.clone()), config);
    }

    #[test]
    fn diff_masks_secret_values() {
        let secret = |password: &str| {
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"},
                   "data": {"user": "YWRtaW4=", "password": password}})
        };
        let id = manifest(secret("x")).id();
        let text = diff(&id, Some(&secret("b2xk")), Some(&secret("bmV3")));
        assert!(
            !text.contains("b2xk") && !text.contains("bmV3") && !text.contains("YWRtaW4="),
            "{text}"
        );
        assert!(text.contains("-  password: '*** (before)'"), "{text}");
        assert!(text.contains("+  password: '*** (after)'"), "{text}");
        assert!(text.contains("   user: '***'"), "{text}");
        assert_eq!(diff(&id, Some(&secret("b2xk")), Some(&secret("b2xk"))), "");
    }

    #[test]
    fn drift_finds_changes_and_ignores_server_fields() {
        let mut applied = deployment("web", 3);
        applied["metadata"]["labels"]["team"] = json!("payments");
        applied["metadata"]["labels"]["app.kubernetes.io/name"] = json!("web");
        let mut live = deployment("web", 3);
        live["metadata"]["labels"]["app.kubernetes.io/name"] = json!("web");
        live["spec"]["replicas"] = json!("3");
        live["spec"]["template"]["spec"]["containers"][0]["env"][1]["value"] = json!("debug");
        live["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] =
            json!("IfNotPresent");
        live["metadata"]["uid"] = json!("123");
        live["metadata"]["annotations"] = json!({"deployment.kubernetes.io/revision": "2"});
        live["status"] = json!({"readyReplicas": 1});
        assert_eq!(
            drift(&applied, &live),
            [
                "metadata.labels.team",
                "spec.template.spec.containers[0].env[1].value"
            ]
        );
        assert!(drift(&deployment("web", 3), &live).len() == 1);
    }

    #[test]
    fn drift_compares_lists_by_length_and_skips_secret_string_data() {
        let applied = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
                             "stringData": {"a": "b"}, "data": {"LOG_LEVEL": "aW5mbw=="}});
        let live = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
                          "data": {"LOG_LEVEL": "ZGVidWc=", "a": "Yg=="}});
        assert_eq!(drift(&applied, &live), ["data.LOG_LEVEL"]);
        let mut shorter = deployment("web", 1);
        shorter["spec"]["template"]["spec"]["containers"]
            .as_array_mut()
            .unwrap()
            .pop();
        assert_eq!(
            drift(&deployment("web", 1), &shorter),
            ["spec.template.spec.containers"]
        );
    }
}
