//! The cluster's own rules: one policy per cluster that every deploy, promotion and rollback
//! into it runs before the app's hooks, and that no release.yaml can remove or weaken.
//!
//! The policy is the ConfigMap `kubectl-release-policy` in the namespace `kubectl-release-system`
//! (key `policy.yaml`), writable only by platform admins (`plugin/rbac/policy.yaml`). Its hooks
//! use release.yaml's schema, except that modules are OCI artifacts pinned by digest and the
//! environments they apply to are matched by namespace name or namespace labels.
//!
//! A policy may also mandate a **generator** (`generator:`): `kubectl release generate` renders
//! the manifests of every environment in the namespaces it selects with that module and its
//! settings, whatever release.yaml names, and a release into such a namespace is denied unless
//! its manifests are exactly what the mandated generator produces from the app's spec.

use std::collections::BTreeMap;

use anyhow::Result;
use hooks_sdk::Phase;
use serde::Deserialize;

use crate::artifacts::oci_modules::{FetchedModule, ModuleRef, ModuleStore};
use crate::cluster::{self, EnvTarget};
use crate::config::locate::{self, Seg};
use crate::config::{
    FailurePolicy, HookConfig, HookLimits, Need, parse_positive_duration, parse_quantity,
};
use crate::domain::error_text::one_line;
use crate::domain::{Failure, Outcome, yaml_syntax};

pub const NAMESPACE: &str = "kubectl-release-system";
pub const CONFIGMAP: &str = "kubectl-release-policy";
pub const DATA_KEY: &str = "policy.yaml";
pub const KIND: &str = "ClusterPolicy";
/// How policy hooks are marked in output, records and JSON.
pub const SOURCE: &str = "cluster-policy";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawPolicy {
    api_version: String,
    kind: String,
    #[serde(default)]
    hooks: Vec<RawPolicyHook>,
    #[serde(default)]
    generator: Option<RawPolicyGenerator>,
}

/// `generator:` of a policy: a module pinned by digest, the namespaces it is mandated in, and
/// the organisation's settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawPolicyGenerator {
    module: String,
    #[serde(default)]
    namespaces: Option<Vec<String>>,
    #[serde(default)]
    namespace_selector: Option<String>,
    #[serde(default)]
    timeout: Option<String>,
    #[serde(default)]
    memory: Option<String>,
    #[serde(default)]
    max_output: Option<String>,
    #[serde(default)]
    max_logs: Option<String>,
    #[serde(default)]
    settings: Option<serde_json::Value>,
}

/// The sandbox limits of a policy entry, each error given with the field it is about.
fn limits_of(
    timeout: Option<&String>,
    memory: Option<&String>,
    max_output: Option<&String>,
    max_logs: Option<&String>,
) -> Result<HookLimits, (&'static str, String)> {
    let mut limits = HookLimits::default();
    if let Some(t) = timeout {
        limits.timeout = parse_positive_duration(t).map_err(|m| ("timeout", m))?;
    }
    if let Some(t) = memory {
        limits.memory_bytes = parse_quantity(t).map_err(|m| ("memory", m))?;
    }
    if let Some(t) = max_output {
        limits.max_output_bytes = parse_quantity(t).map_err(|m| ("maxOutput", m))?;
    }
    if let Some(t) = max_logs {
        limits.max_log_bytes = parse_quantity(t).map_err(|m| ("maxLogs", m))?;
    }
    Ok(limits)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawPolicyHook {
    name: String,
    /// `oci://registry/repository@sha256:…`
    module: String,
    #[serde(default)]
    phases: Option<Vec<Phase>>,
    /// Namespaces the hook applies to (default: all).
    #[serde(default)]
    namespaces: Option<Vec<String>>,
    /// Equality-based label selector on the target namespace, e.g. `tier=production`.
    #[serde(default)]
    namespace_selector: Option<String>,
    #[serde(default)]
    failure_policy: FailurePolicy,
    /// What the hook is shown beyond the target environment, as in release.yaml.
    #[serde(default)]
    needs: Vec<Need>,
    #[serde(default)]
    timeout: Option<String>,
    #[serde(default)]
    memory: Option<String>,
    #[serde(default)]
    max_output: Option<String>,
    #[serde(default)]
    max_logs: Option<String>,
    #[serde(default)]
    settings: Option<serde_json::Value>,
}

/// One policy hook, validated: its module reference is pinned by digest.
#[derive(Debug, Clone)]
pub struct PolicyHook {
    pub name: String,
    pub module: ModuleRef,
    pub phases: Vec<Phase>,
    pub namespaces: Option<Vec<String>>,
    pub namespace_selector: Option<Vec<(String, String)>>,
    pub failure_policy: FailurePolicy,
    pub needs: Vec<Need>,
    pub limits: HookLimits,
    pub settings: serde_json::Value,
}

impl PolicyHook {
    /// Whether the hook applies to a namespace with these labels.
    pub fn applies_to_namespace(&self, namespace: &str, labels: &BTreeMap<String, String>) -> bool {
        selects(
            self.namespaces.as_deref(),
            self.namespace_selector.as_deref(),
            namespace,
            labels,
        )
    }

    /// The hook as the sandbox runs it, once its module is fetched to `path`.
    pub fn to_hook_config(&self, fetched: &FetchedModule) -> HookConfig {
        HookConfig {
            name: self.name.clone(),
            module: fetched.path.clone(),
            sha256: fetched.sha256.clone(),
            phases: self.phases.clone(),
            environments: None,
            failure_policy: self.failure_policy,
            needs: self.needs.clone(),
            limits: self.limits,
            settings: self.settings.clone(),
        }
    }
}

/// A cluster's policy, validated.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub hooks: Vec<PolicyHook>,
    pub generator: Option<PolicyGenerator>,
}

/// The generator a policy mandates, validated: its module is pinned by digest.
#[derive(Debug, Clone)]
pub struct PolicyGenerator {
    pub module: ModuleRef,
    pub namespaces: Option<Vec<String>>,
    pub namespace_selector: Option<Vec<(String, String)>>,
    pub limits: HookLimits,
    pub settings: serde_json::Value,
}

impl PolicyGenerator {
    /// Whether the generator is mandated in a namespace with these labels.
    pub fn applies_to_namespace(&self, namespace: &str, labels: &BTreeMap<String, String>) -> bool {
        selects(
            self.namespaces.as_deref(),
            self.namespace_selector.as_deref(),
            namespace,
            labels,
        )
    }

    /// The generator as the sandbox runs it, once its module is fetched.
    pub fn to_hook_config(&self, fetched: &FetchedModule) -> HookConfig {
        HookConfig {
            name: format!("{SOURCE}/generator"),
            module: fetched.path.clone(),
            sha256: fetched.sha256.clone(),
            phases: Vec::new(),
            environments: None,
            failure_policy: FailurePolicy::Fail,
            needs: Vec::new(),
            limits: self.limits,
            settings: self.settings.clone(),
        }
    }
}

/// Whether a policy entry scoped by `namespaces` and `selector` covers `namespace`.
fn selects(
    namespaces: Option<&[String]>,
    selector: Option<&[(String, String)]>,
    namespace: &str,
    labels: &BTreeMap<String, String>,
) -> bool {
    namespaces.is_none_or(|ns| ns.iter().any(|n| n == namespace))
        && selector.is_none_or(|sel| sel.iter().all(|(k, v)| labels.get(k) == Some(v)))
}

/// What every policy entry (a hook, the generator) writes alike: a module, the namespaces it
/// covers, and its sandbox limits.
trait RawEntry {
    fn module(&self) -> &str;
    fn namespace_selector(&self) -> Option<&String>;
    /// timeout, memory, maxOutput, maxLogs.
    fn limits(&self) -> [Option<&String>; 4];
}

impl RawEntry for RawPolicyHook {
    fn module(&self) -> &str {
        &self.module
    }
    fn namespace_selector(&self) -> Option<&String> {
        self.namespace_selector.as_ref()
    }
    fn limits(&self) -> [Option<&String>; 4] {
        let h = self;
        [
            h.timeout.as_ref(),
            h.memory.as_ref(),
            h.max_output.as_ref(),
            h.max_logs.as_ref(),
        ]
    }
}

impl RawEntry for RawPolicyGenerator {
    fn module(&self) -> &str {
        &self.module
    }
    fn namespace_selector(&self) -> Option<&String> {
        self.namespace_selector.as_ref()
    }
    fn limits(&self) -> [Option<&String>; 4] {
        let g = self;
        [
            g.timeout.as_ref(),
            g.memory.as_ref(),
            g.max_output.as_ref(),
            g.max_logs.as_ref(),
        ]
    }
}

/// The pinned module, limits and namespace selector of one entry; `fail` turns a field's name
/// and a message into the error naming file, line and field.
fn common_parts(
    raw: &impl RawEntry,
    fail: impl Fn(&'static str, String) -> String,
) -> Result<(ModuleRef, HookLimits, Option<Selector>), String> {
    let module = pinned_module(raw.module()).map_err(|m| fail("module", m))?;
    let [timeout, memory, max_output, max_logs] = raw.limits();
    let limits = limits_of(timeout, memory, max_output, max_logs).map_err(|(f, m)| fail(f, m))?;
    let selector = match raw.namespace_selector() {
        None => None,
        Some(sel) => Some(parse_selector(sel).map_err(|m| fail("namespaceSelector", m))?),
    };
    Ok((module, limits, selector))
}

/// Parses a policy document; `origin` names the cluster and object for messages.
pub fn parse(origin: &str, text: &str) -> Result<Policy, String> {
    let at = |line: Option<usize>, field: &str, message: &str| {
        let line = line.map_or(String::new(), |l| format!(":{l}"));
        let field = if field.is_empty() {
            String::new()
        } else {
            format!(" {field}:")
        };
        format!("{origin}{line}:{field} {message}")
    };
    let raw: RawPolicy = serde_yaml_ng::from_str(text).map_err(|e| {
        let (field, message) = crate::config::split_serde_message(&e.to_string());
        let line = locate::error_line(text, &e);
        at(line, &field, &yaml_syntax::explain(text, line, message))
    })?;
    let err = |segments: &[Seg], message: String| {
        at(
            locate::line_of(text, segments),
            &locate::display_path(segments),
            &message,
        )
    };
    if raw.api_version != crate::config::API_VERSION {
        return Err(err(
            &[Seg::Key("apiVersion")],
            format!("must be `{}`", crate::config::API_VERSION),
        ));
    }
    if raw.kind != KIND {
        return Err(err(
            &[Seg::Key("kind")],
            format!("must be `{KIND}`, found `{}`", raw.kind),
        ));
    }
    let mut hooks = Vec::new();
    for (i, h) in raw.hooks.into_iter().enumerate() {
        let fail = |field: &'static str, m: String| {
            err(&[Seg::Key("hooks"), Seg::Index(i), Seg::Key(field)], m)
        };
        let (module, limits, namespace_selector) = common_parts(&h, fail)?;
        hooks.push(PolicyHook {
            name: h.name,
            module,
            phases: h
                .phases
                .unwrap_or_else(|| Phase::ALL.iter().copied().filter(|p| p.is_pre()).collect()),
            namespaces: h.namespaces,
            namespace_selector,
            failure_policy: h.failure_policy,
            needs: h.needs,
            limits,
            settings: h.settings.unwrap_or_else(|| serde_json::json!({})),
        });
    }
    let generator = match raw.generator {
        None => None,
        Some(g) => {
            let fail =
                |field: &'static str, m: String| err(&[Seg::Key("generator"), Seg::Key(field)], m);
            let (module, limits, namespace_selector) = common_parts(&g, fail)?;
            Some(PolicyGenerator {
                module,
                namespaces: g.namespaces,
                namespace_selector,
                limits,
                settings: g.settings.unwrap_or_else(|| serde_json::json!({})),
            })
        }
    };
    Ok(Policy { hooks, generator })
}

/// An `oci://…@sha256:…` reference; a tag alone is refused, as a tag can be moved.
fn pinned_module(text: &str) -> Result<ModuleRef, String> {
    let module = ModuleRef::parse(text).map_err(|e| e.to_string())?;
    if module.digest().is_none() {
        return Err(format!(
            "`{text}` must be pinned by digest: oci://…@sha256:<64 hex> (`kubectl release hooks push` prints it)"
        ));
    }
    Ok(module)
}

/// An equality-based namespace selector: `(label, value)` pairs that must all match.
type Selector = Vec<(String, String)>;

/// `a=b,c=d` (equality only: what a namespace selector needs to say "these environments").
fn parse_selector(text: &str) -> Result<Selector, String> {
    text.split(',')
        .map(|term| {
            term.split_once('=')
                .map(|(k, v)| {
                    (
                        k.trim().to_string(),
                        v.trim().trim_start_matches('=').to_string(),
                    )
                })
                .filter(|(k, _)| !k.is_empty())
                .ok_or_else(|| {
                    format!("`{text}` is not a selector of the form key=value[,key=value]")
                })
        })
        .collect()
}

/// The policy document of `target`'s cluster, read once per context and process: `promote
/// --all` releases hundreds of apps into one cluster, and its policy is one object.
async fn document_once(target: &EnvTarget) -> Result<Option<String>> {
    type Cell = std::sync::Arc<tokio::sync::OnceCell<Option<String>>>;
    static DOCUMENTS: std::sync::Mutex<BTreeMap<String, Cell>> =
        std::sync::Mutex::new(BTreeMap::new());
    let key = format!("{}@{}", target.context, target.server);
    let cell = DOCUMENTS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .entry(key)
        .or_default()
        .clone();
    cell.get_or_try_init(|| cluster::policy::document(target, NAMESPACE, CONFIGMAP, DATA_KEY))
        .await
        .cloned()
}

/// The policy hooks, and the generator, that apply to `target`'s namespace. A cluster without
/// a policy has an empty one; a malformed policy is a config error naming the cluster, the
/// object and the field.
pub async fn load_for(target: &EnvTarget) -> Result<Policy> {
    let origin = format!(
        "cluster of {} ({}): ConfigMap {NAMESPACE}/{CONFIGMAP} key {DATA_KEY}",
        target.env.name, target.server
    );
    let Some(text) = document_once(target).await? else {
        return Ok(Policy::default());
    };
    let policy = parse(&origin, &text).map_err(Failure::invalid)?;
    let by_label = policy.hooks.iter().any(|h| h.namespace_selector.is_some())
        || policy
            .generator
            .as_ref()
            .is_some_and(|g| g.namespace_selector.is_some());
    let labels = if by_label {
        cluster::policy::namespace_labels(target).await.map_err(|e| {
            Failure::new(
                Outcome::Denied,
                format!("the cluster policy selects namespaces by label, but the labels of `{}` cannot be read ({}); the release is denied", target.namespace, one_line(&e)),
            )
        })?
    } else {
        BTreeMap::new()
    };
    let ns = &target.namespace;
    Ok(Policy {
        hooks: policy
            .hooks
            .into_iter()
            .filter(|h| h.applies_to_namespace(ns, &labels))
            .collect(),
        generator: policy
            .generator
            .filter(|g| g.applies_to_namespace(ns, &labels)),
    })
}

/// Fetches (or takes from the cache) and verifies the mandated generator's module. A registry
/// problem is an error: a mandated generator is never replaced by another.
pub async fn fetch_generator(
    generator: &PolicyGenerator,
    store: &ModuleStore,
) -> Result<HookConfig> {
    let fetched = store.fetch(&generator.module).await.map_err(|e| {
        Failure::new(
            Outcome::Denied,
            format!("the cluster policy's generator: {e}; nothing can be generated or released without it"),
        )
    })?;
    Ok(generator.to_hook_config(&fetched))
}

/// Fetches (or takes from the cache) and verifies every policy hook's module. A registry
/// problem denies the release: a mandatory rule is never skipped.
pub async fn fetch_modules(hooks: &[PolicyHook], store: &ModuleStore) -> Result<Vec<HookConfig>> {
    let mut configs = Vec::new();
    for hook in hooks {
        let fetched = store.fetch(&hook.module).await.map_err(|e| {
            Failure::new(
                Outcome::Denied,
                format!(
                    "cluster policy hook `{}`: {e}; the release is denied",
                    hook.name
                ),
            )
        })?;
        configs.push(hook.to_hook_config(&fetched));
    }
    Ok(configs)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIGIN: &str = "cluster of qa (https://k): ConfigMap kubectl-release-system/kubectl-release-policy key policy.yaml";

    fn doc(hook: &str) -> String {
        format!("apiVersion: kubectl-release.io/v1alpha1\nkind: ClusterPolicy\nhooks:\n{hook}")
    }

    #[test]
    fn a_pinned_hook_parses_with_defaults() {
        let module = format!(
            "oci://127.0.0.1:5000/policies/labels@sha256:{}",
            "c".repeat(64)
        );
        let hooks = parse(
            ORIGIN,
            &doc(&format!(
                "  - name: labels\n    module: {module}\n    namespaceSelector: tier=prod\n"
            )),
        )
        .unwrap()
        .hooks;
        assert_eq!(
            hooks[0].phases,
            [Phase::PreDeploy, Phase::PrePromote, Phase::PreRollback]
        );
        let prod = BTreeMap::from([("tier".to_string(), "prod".to_string())]);
        assert!(hooks[0].applies_to_namespace("web", &prod));
        assert!(!hooks[0].applies_to_namespace("web", &BTreeMap::new()));
    }

    #[test]
    fn an_unpinned_module_is_refused_naming_cluster_object_and_field() {
        let err = parse(
            ORIGIN,
            &doc("  - name: labels\n    module: oci://127.0.0.1:5000/policies/labels:v1\n"),
        )
        .unwrap_err();
        assert_eq!(
            err,
            format!(
                "{ORIGIN}:5: hooks[0].module: `oci://127.0.0.1:5000/policies/labels:v1` must be pinned by digest: oci://…@sha256:<64 hex> (`kubectl release hooks push` prints it)"
            )
        );
    }

    #[test]
    fn an_unknown_field_is_refused() {
        let err = parse(ORIGIN, &doc("  - name: labels\n    modul: x\n")).unwrap_err();
        assert!(
            err.starts_with(&format!("{ORIGIN}:5: hooks[0]: unknown field `modul`")),
            "{err}"
        );
    }

    #[test]
    fn a_generator_is_pinned_and_scoped() {
        let module = format!("oci://r/generators/web@sha256:{}", "d".repeat(64));
        let text = format!(
            "apiVersion: kubectl-release.io/v1alpha1\nkind: ClusterPolicy\ngenerator:\n  module: {module}\n  namespaceSelector: tier=prod\n  timeout: 2s\n  settings: {{labels: {{team: x}}}}\n"
        );
        let policy = parse(ORIGIN, &text).unwrap();
        let g = policy.generator.unwrap();
        assert_eq!(g.limits.timeout, std::time::Duration::from_secs(2));
        assert_eq!(g.settings["labels"]["team"], "x");
        let prod = BTreeMap::from([("tier".to_string(), "prod".to_string())]);
        assert!(g.applies_to_namespace("web", &prod));
        assert!(!g.applies_to_namespace("web", &BTreeMap::new()));

        let tagged = "apiVersion: kubectl-release.io/v1alpha1\nkind: ClusterPolicy\ngenerator:\n  module: oci://r/generators/web:v2\n";
        let err = parse(ORIGIN, tagged).unwrap_err();
        assert!(
            err.starts_with(&format!("{ORIGIN}:4: generator.module:")),
            "{err}"
        );
        let typo = "apiVersion: kubectl-release.io/v1alpha1\nkind: ClusterPolicy\ngenerator:\n  modul: x\n";
        assert!(
            parse(ORIGIN, typo)
                .unwrap_err()
                .contains("unknown field `modul`")
        );
    }
}
