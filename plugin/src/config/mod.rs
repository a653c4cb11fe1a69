//! The release config (`release.yaml`): finding it, parsing it, and refusing anything doubtful
//! with a message that names the file, the line and the field.
//!
//! Parsing goes in two steps: serde reads the document into the `raw` structs, which reject
//! unknown fields and wrong types with a location; `validate` then checks what serde cannot
//! (references between environments, pins, durations) and produces the typed [`ReleaseConfig`].

pub mod generate;
pub mod gitops;
mod jobs;
pub mod locate;
pub mod previews;
mod raw;

use crate::domain::names::is_dns_label;
use crate::domain::yaml_syntax;
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hooks_sdk::Phase;

pub use previews::PreviewsConfig;
pub use raw::{FailurePolicy, Need, split_serde_message};

pub const API_VERSION: &str = "kubectl-release.io/v1alpha1";
pub const KIND: &str = "ReleaseConfig";
pub const FILE_NAME: &str = "release.yaml";

/// Defaults for the hook sandbox, overridable per hook.
pub const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(2);
pub const DEFAULT_HOOK_MEMORY: u64 = 64 << 20;
pub const DEFAULT_HOOK_MAX_OUTPUT: u64 = 1 << 20;
pub const DEFAULT_HOOK_MAX_LOGS: u64 = 1 << 20;
pub const DEFAULT_HISTORY_LIMIT: usize = 20;

/// A validated release config.
#[derive(Debug, Clone)]
pub struct ReleaseConfig {
    /// Where it was read from; hook modules are relative to its directory.
    pub path: PathBuf,
    pub app: String,
    /// The image repository; a commit's image is `<image>:<40-hex sha>`.
    pub image: String,
    /// Which workloads are the app's (`workloads:`): their kinds and label selector.
    pub workloads: crate::domain::WorkloadScope,
    /// Put the previous images back when a rollout fails.
    pub atomic: bool,
    /// Release records kept per environment.
    pub history_limit: usize,
    /// In file order.
    pub environments: Vec<Environment>,
    pub hooks: Vec<HookConfig>,
    /// Migration and verification Jobs in short form (Job templates in the manifests are the
    /// other form).
    pub jobs: Vec<crate::domain::job::JobSpec>,
    /// One environment per pull request (`previews:`), if the app has them.
    pub previews: Option<PreviewsConfig>,
    /// The app spec and its generator (`spec:` and `generator:`), if manifests are generated.
    pub generate: Option<generate::GenerateConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Environment {
    pub name: String,
    /// Kubeconfig context; `None` is the current context.
    pub context: Option<String>,
    pub namespace: String,
    pub promote_from: Option<String>,
    pub atomic: Option<bool>,
    /// The app's manifests for this environment; `None` releases images only.
    pub manifests: Option<Manifests>,
    /// A promotion into this environment needs the source's current release to have passed
    /// its post-deploy Jobs.
    pub require_verification: bool,
    /// Releases are written into this deployment repository instead of the cluster.
    pub gitops: Option<gitops::Gitops>,
}

/// Where an environment's manifests are and what they may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifests {
    /// A directory of YAML files or a kustomization, relative to the config file's directory
    /// and read at the released commit.
    pub path: PathBuf,
    /// Create the environment's namespace when it does not exist.
    pub create_namespace: bool,
    pub allowed: crate::domain::manifest::Allowed,
}

#[derive(Debug, Clone)]
pub struct HookConfig {
    pub name: String,
    /// Absolute (resolved against the config file's directory).
    pub module: PathBuf,
    /// Lower-case hex sha256 the module's bytes must have.
    pub sha256: String,
    pub phases: Vec<Phase>,
    /// `None`: every environment.
    pub environments: Option<Vec<String>>,
    pub failure_policy: FailurePolicy,
    /// What the hook is shown beyond the target environment (`needs: [environments]`).
    pub needs: Vec<Need>,
    pub limits: HookLimits,
    pub settings: serde_json::Value,
}

/// The sandbox's hard limits for one hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HookLimits {
    pub timeout: Duration,
    pub memory_bytes: u64,
    pub max_output_bytes: u64,
    pub max_log_bytes: u64,
}

impl Default for HookLimits {
    fn default() -> Self {
        HookLimits {
            timeout: DEFAULT_HOOK_TIMEOUT,
            memory_bytes: DEFAULT_HOOK_MEMORY,
            max_output_bytes: DEFAULT_HOOK_MAX_OUTPUT,
            max_log_bytes: DEFAULT_HOOK_MAX_LOGS,
        }
    }
}

impl HookConfig {
    /// Whether this hook runs for `phase` in environment `env`.
    pub fn applies_to(&self, phase: Phase, env: &str) -> bool {
        self.phases.contains(&phase)
            && self
                .environments
                .as_ref()
                .is_none_or(|envs| envs.iter().any(|e| e == env))
    }
}

impl ReleaseConfig {
    /// The environment called `name`, or a usage error listing the known ones.
    pub fn environment(&self, name: &str) -> Result<&Environment, crate::domain::Failure> {
        self.environments
            .iter()
            .find(|e| e.name == name)
            .ok_or_else(|| {
                crate::domain::Failure::invalid(format!(
                    "unknown environment `{name}` in {}; known: {}",
                    self.path.display(),
                    self.environment_names().join(", ")
                ))
            })
    }

    pub fn environment_names(&self) -> Vec<&str> {
        self.environments.iter().map(|e| e.name.as_str()).collect()
    }

    /// Environments in promotion order: sources before the environments promoted from them,
    /// otherwise in file order.
    pub fn promotion_order(&self) -> Vec<&Environment> {
        let mut ordered: Vec<&Environment> = Vec::new();
        let mut placed: HashSet<&str> = HashSet::new();
        while ordered.len() < self.environments.len() {
            for env in &self.environments {
                let ready = env
                    .promote_from
                    .as_deref()
                    .is_none_or(|src| placed.contains(src));
                if ready && placed.insert(env.name.as_str()) {
                    ordered.push(env);
                }
            }
        }
        ordered
    }

    /// Whether a failed rollout in `env` is undone, given the command-line flag.
    pub fn atomic_for(&self, env: &Environment, flag: bool) -> bool {
        flag || env.atomic.unwrap_or(self.atomic)
    }
}

/// A config problem: the file, the line when we know it, the field and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub field: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if self.field.is_empty() {
            write!(f, ": {}", self.message)
        } else {
            write!(f, ": {}: {}", self.field, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// Finds the release config: `explicit` if given, else `release.yaml` in `start` or the nearest
/// parent, stopping at the git root (the first directory holding `.git`).
pub fn discover(explicit: Option<&Path>, start: &Path) -> Result<PathBuf, ConfigError> {
    if let Some(path) = explicit {
        return if path.is_file() {
            Ok(path.to_path_buf())
        } else {
            Err(ConfigError {
                file: path.to_path_buf(),
                line: None,
                field: String::new(),
                message: "no such file (given with -f/--file)".into(),
            })
        };
    }
    for dir in start.ancestors() {
        let candidate = dir.join(FILE_NAME);
        if candidate.is_file() {
            return Ok(candidate);
        }
        if dir.join(".git").exists() {
            break;
        }
    }
    Err(ConfigError {
        file: start.join(FILE_NAME),
        line: None,
        field: String::new(),
        message: format!(
            "no {FILE_NAME} here or in a parent directory up to the git root; \
             create one (see the README's config reference) or name it with -f"
        ),
    })
}

/// Every `release.yaml` below `root` (a monorepo's apps), sorted; hidden directories and build
/// output (`target`, `node_modules`, `vendor`) are skipped.
pub fn discover_all(root: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let kind = entry.file_type()?;
            if kind.is_dir() {
                if !name.starts_with('.')
                    && !matches!(name.as_ref(), "target" | "node_modules" | "vendor")
                {
                    dirs.push(entry.path());
                }
            } else if name == FILE_NAME {
                found.push(entry.path());
            }
        }
    }
    found.sort();
    Ok(found)
}

/// Reads and validates the config at `path`.
pub fn load(path: &Path) -> Result<ReleaseConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.to_path_buf(),
        line: None,
        field: String::new(),
        message: format!("cannot read: {e}"),
    })?;
    parse(path, &text)
}

/// Parses and validates config text; `path` is used for messages and relative module paths.
pub fn parse(path: &Path, text: &str) -> Result<ReleaseConfig, ConfigError> {
    let raw: raw::RawConfig = serde_yaml_ng::from_str(text).map_err(|e| {
        let (field, message) = raw::split_serde_message(&e.to_string());
        let line = locate::error_line(text, &e);
        ConfigError {
            file: path.to_path_buf(),
            line,
            field,
            message: yaml_syntax::explain(text, line, message),
        }
    })?;
    Validator { path, text }.validate(raw)
}

struct Validator<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Validator<'_> {
    fn error(&self, segments: &[locate::Seg], message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.path.to_path_buf(),
            line: locate::line_of(self.text, segments),
            field: locate::display_path(segments),
            message: message.into(),
        }
    }

    /// `workloads:`: every kind unless `kinds` names some (an empty list would find nothing).
    fn check_workloads(
        &self,
        raw: Option<&raw::RawWorkloads>,
    ) -> Result<crate::domain::WorkloadScope, ConfigError> {
        let Some(raw) = raw else {
            return Ok(crate::domain::WorkloadScope::default());
        };
        if raw.kinds.as_ref().is_some_and(Vec::is_empty) {
            return Err(self.error(
                &[locate::Seg::Key("workloads"), locate::Seg::Key("kinds")],
                "lists no kind, so no workload would be found: name the kinds the app runs (Deployment, StatefulSet, DaemonSet, CronJob) or leave `kinds` out for all four",
            ));
        }
        Ok(crate::domain::WorkloadScope::new(
            raw.kinds.as_deref(),
            raw.selector.clone(),
        ))
    }

    fn validate(&self, raw: raw::RawConfig) -> Result<ReleaseConfig, ConfigError> {
        let image = self.check_header(&raw)?;
        let mut names = self.check_environments(&raw.environments)?;
        // Previews are released as the environment `preview`: hooks and Jobs may name it.
        if raw.previews.is_some() && !names.insert(crate::domain::preview::ENVIRONMENT) {
            return Err(self.error(
                &[locate::Seg::Key("previews")],
                "an environment is named `preview`, the name previews are released as; rename that environment",
            ));
        }
        let hooks = self.check_hooks(&raw, &names)?;
        let jobs = self.check_jobs(&raw, &names)?;
        let previews = self.check_previews(&raw)?;
        let generate = self.check_generate(&raw)?;
        let workloads = self.check_workloads(raw.workloads.as_ref())?;
        let gitops = (raw.environments.iter().enumerate())
            .map(|(i, e)| self.check_gitops(i, e))
            .collect::<Result<Vec<_>, _>>()?;
        // Jobs run in the cluster; a GitOps environment is changed only through its repository.
        for (i, job) in jobs.iter().enumerate() {
            let git_env = raw
                .environments
                .iter()
                .zip(&gitops)
                .find(|(e, g)| g.is_some() && job.applies_to(&e.name));
            if let Some((env, _)) = git_env {
                return Err(self.error(
                    &[locate::Seg::Key("jobs"), locate::Seg::Index(i)],
                    format!(
                        "runs in environment `{}`, which is released through Git (gitops): list the environments it runs in (`environments: [...]`) without it",
                        env.name
                    ),
                ));
            }
        }
        Ok(ReleaseConfig {
            path: self.path.to_path_buf(),
            app: raw.app,
            image,
            workloads,
            atomic: raw.atomic,
            history_limit: raw.history_limit.unwrap_or(DEFAULT_HISTORY_LIMIT),
            environments: raw
                .environments
                .into_iter()
                .zip(gitops)
                .map(|(e, gitops)| Environment {
                    gitops,
                    manifests: e.manifests.map(|path| Manifests {
                        path,
                        create_namespace: e.create_namespace,
                        allowed: crate::domain::manifest::Allowed {
                            cluster_scoped: e.allow.contains(&raw::Allowance::ClusterScoped),
                            other_namespaces: e.allow.contains(&raw::Allowance::OtherNamespaces),
                        },
                    }),
                    require_verification: e.require_verification,
                    name: e.name,
                    context: e.context,
                    namespace: e.namespace,
                    promote_from: e.promote_from,
                    atomic: e.atomic,
                })
                .collect(),
            hooks,
            jobs,
            previews,
            generate,
        })
    }

    /// apiVersion, kind, app and image; returns the image repository.
    fn check_header(&self, raw: &raw::RawConfig) -> Result<String, ConfigError> {
        use locate::Seg::Key;

        if raw.api_version != API_VERSION {
            return Err(self.error(
                &[Key("apiVersion")],
                format!("must be `{API_VERSION}`, found `{}`", raw.api_version),
            ));
        }
        if raw.kind != KIND {
            return Err(self.error(
                &[Key("kind")],
                format!("must be `{KIND}`, found `{}`", raw.kind),
            ));
        }
        if !is_dns_label(&raw.app) || raw.app.len() > 40 {
            return Err(self.error(
                &[Key("app")],
                format!(
                    "`{}` is not a valid app name: use at most 40 lower-case letters, digits and '-', \
                     starting and ending with a letter or digit",
                    raw.app
                ),
            ));
        }
        let image = raw.image.trim();
        if image.is_empty() {
            return Err(self.error(
                &[Key("image")],
                "must name the image repository, e.g. registry.example.com/acme/web",
            ));
        }
        if image.contains('@')
            || image
                .rsplit('/')
                .next()
                .is_some_and(|last| last.contains(':'))
        {
            return Err(self.error(
                &[Key("image")],
                format!("`{image}` must be a repository without a tag or digest: the tag is always the commit"),
            ));
        }

        Ok(image.to_string())
    }

    /// The environments and their promotion order; returns their names.
    fn check_environments<'r>(
        &self,
        environments: &'r [raw::RawEnvironment],
    ) -> Result<HashSet<&'r str>, ConfigError> {
        use locate::Seg::{Index, Key};

        if environments.is_empty() {
            return Err(self.error(&[Key("environments")], "at least one environment is needed"));
        }
        let mut names: HashSet<&str> = HashSet::new();
        for (i, env) in environments.iter().enumerate() {
            if !is_dns_label(&env.name) {
                return Err(self.error(
                    &[Key("environments"), Index(i), Key("name")],
                    format!(
                        "`{}` is not a valid environment name (lower-case letters, digits, '-')",
                        env.name
                    ),
                ));
            }
            if !names.insert(&env.name) {
                return Err(self.error(
                    &[Key("environments"), Index(i), Key("name")],
                    format!("duplicate environment `{}`", env.name),
                ));
            }
            if env.namespace.is_empty() {
                return Err(self.error(
                    &[Key("environments"), Index(i), Key("namespace")],
                    "must not be empty",
                ));
            }
            self.check_manifests(i, env)?;
            if env.require_verification && env.promote_from.is_none() {
                return Err(self.error(
                    &[Key("environments"), Index(i), Key("requireVerification")],
                    "only applies to an environment with `promoteFrom`: it checks the source's verification Jobs",
                ));
            }
        }
        for (i, env) in environments.iter().enumerate() {
            if let Some(source) = &env.promote_from
                && !names.contains(source.as_str())
            {
                return Err(self.error(
                    &[Key("environments"), Index(i), Key("promoteFrom")],
                    format!(
                        "unknown environment `{source}`; known: {}",
                        join_names(environments)
                    ),
                ));
            }
        }
        if let Some((i, cycle)) = promotion_cycle(environments) {
            return Err(self.error(
                &[Key("environments"), Index(i), Key("promoteFrom")],
                format!("promotion order forms a cycle: {}", cycle.join(" <- ")),
            ));
        }

        Ok(names)
    }

    /// `manifests` stays inside the app's directory; its options need it.
    fn check_manifests(&self, i: usize, env: &raw::RawEnvironment) -> Result<(), ConfigError> {
        use locate::Seg::{Index, Key};
        use std::path::Component;

        let Some(path) = &env.manifests else {
            if env.create_namespace || !env.allow.is_empty() {
                let field = if env.create_namespace {
                    "createNamespace"
                } else {
                    "allow"
                };
                return Err(self.error(
                    &[Key("environments"), Index(i), Key(field)],
                    "only applies to an environment with `manifests`",
                ));
            }
            return Ok(());
        };
        let inside = path
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
        if !inside || path.as_os_str().is_empty() {
            return Err(self.error(
                &[Key("environments"), Index(i), Key("manifests")],
                format!(
                    "`{}` must be a directory relative to this file and inside it (no `..`, not absolute), e.g. kubernetes/{}",
                    path.display(),
                    env.name
                ),
            ));
        }
        Ok(())
    }

    fn check_hooks(
        &self,
        raw: &raw::RawConfig,
        names: &HashSet<&str>,
    ) -> Result<Vec<HookConfig>, ConfigError> {
        use locate::Seg::{Index, Key};

        let mut hooks = Vec::new();
        let mut hook_names: HashSet<&str> = HashSet::new();
        for (i, hook) in raw.hooks.iter().enumerate() {
            let at = |field: &'static str| [Key("hooks"), Index(i), Key(field)];
            if hook.name.is_empty() || !hook_names.insert(&hook.name) {
                return Err(self.error(
                    &at("name"),
                    format!(
                        "hook names must be unique and non-empty, found `{}`",
                        hook.name
                    ),
                ));
            }
            hooks.push(self.check_hook(raw, names, i, hook)?);
        }
        Ok(hooks)
    }

    fn check_hook(
        &self,
        raw: &raw::RawConfig,
        names: &HashSet<&str>,
        i: usize,
        hook: &raw::RawHook,
    ) -> Result<HookConfig, ConfigError> {
        use locate::Seg::{Index, Key};

        let at = |field: &'static str| [Key("hooks"), Index(i), Key(field)];
        let base = self.path.parent().unwrap_or(Path::new("."));
        let sha = hook.sha256.trim().to_ascii_lowercase();
        if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(self.error(
                &at("sha256"),
                format!(
                    "`{}` is not a sha256 (64 hex digits); pin the module with the output of `sha256sum {}`",
                    hook.sha256,
                    hook.module.display()
                ),
            ));
        }
        if let Some(envs) = &hook.environments {
            for (j, name) in envs.iter().enumerate() {
                if !names.contains(name.as_str()) {
                    return Err(self.error(
                        &[Key("hooks"), Index(i), Key("environments"), Index(j)],
                        format!(
                            "unknown environment `{name}`; known: {}",
                            join_names(&raw.environments)
                        ),
                    ));
                }
            }
        }
        let mut limits = HookLimits::default();
        if let Some(text) = &hook.timeout {
            limits.timeout =
                parse_positive_duration(text).map_err(|m| self.error(&at("timeout"), m))?;
        }
        if let Some(text) = &hook.memory {
            limits.memory_bytes = parse_quantity(text).map_err(|m| self.error(&at("memory"), m))?;
        }
        if let Some(text) = &hook.max_output {
            limits.max_output_bytes =
                parse_quantity(text).map_err(|m| self.error(&at("maxOutput"), m))?;
        }
        if let Some(text) = &hook.max_logs {
            limits.max_log_bytes =
                parse_quantity(text).map_err(|m| self.error(&at("maxLogs"), m))?;
        }
        let phases = match &hook.phases {
            Some(p) if p.is_empty() => {
                return Err(self.error(
                    &at("phases"),
                    "must list at least one phase, or be omitted for all pre-* phases",
                ));
            }
            Some(p) => p.clone(),
            None => Phase::ALL.iter().copied().filter(|p| p.is_pre()).collect(),
        };
        Ok(HookConfig {
            name: hook.name.clone(),
            module: base.join(&hook.module),
            sha256: sha,
            phases,
            environments: hook.environments.clone(),
            failure_policy: hook.failure_policy,
            needs: hook.needs.clone(),
            limits,
            settings: hook
                .settings
                .clone()
                .unwrap_or_else(|| serde_json::json!({})),
        })
    }
}

fn join_names(envs: &[raw::RawEnvironment]) -> String {
    envs.iter()
        .map(|e| e.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The first environment whose `promoteFrom` chain comes back to it, with the chain.
fn promotion_cycle(envs: &[raw::RawEnvironment]) -> Option<(usize, Vec<String>)> {
    let source_of: BTreeMap<&str, &str> = envs
        .iter()
        .filter_map(|e| e.promote_from.as_deref().map(|s| (e.name.as_str(), s)))
        .collect();
    for (i, env) in envs.iter().enumerate() {
        let mut chain = vec![env.name.clone()];
        let mut current = env.name.as_str();
        while let Some(&source) = source_of.get(current) {
            chain.push(source.to_string());
            if source == env.name {
                return Some((i, chain));
            }
            if chain.len() > envs.len() {
                break; // a cycle further up the chain; reported when its own member is checked
            }
            current = source;
        }
    }
    None
}

/// A duration longer than zero in humantime style: `500ms`, `2s`, `1m 30s`.
pub fn parse_positive_duration(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text.trim()) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err(format!("`{text}` must be longer than zero")),
        Err(e) => Err(format!(
            "`{text}` is not a duration ({e}); write e.g. 500ms, 2s, 1m"
        )),
    }
}

/// A byte size in Kubernetes quantity style: `64Mi`, `1Gi`, `512Ki`, `1M`, or plain bytes.
pub fn parse_quantity(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let factor: u64 = match unit {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "k" | "K" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        _ => {
            return Err(format!(
                "`{text}` is not a size; write e.g. 64Mi, 1Gi or a number of bytes"
            ));
        }
    };
    let n: u64 = digits.parse().map_err(|_| {
        format!("`{text}` is not a size; write e.g. 64Mi, 1Gi or a number of bytes")
    })?;
    match n.checked_mul(factor) {
        Some(0) => Err(format!("`{text}` must be more than zero")),
        Some(bytes) => Ok(bytes),
        None => Err(format!("`{text}` is too large")),
    }
}

#[cfg(test)]
mod tests;
