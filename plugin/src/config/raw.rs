//! The config exactly as written: serde rejects unknown fields and wrong types here.

use std::path::PathBuf;

use hooks_sdk::Phase;
use serde::Deserialize;

pub use crate::domain::FailurePolicy;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawConfig {
    pub api_version: String,
    pub kind: String,
    pub app: String,
    pub image: String,
    #[serde(default)]
    pub workloads: Option<RawWorkloads>,
    #[serde(default)]
    pub atomic: bool,
    #[serde(default)]
    pub history_limit: Option<usize>,
    pub environments: Vec<RawEnvironment>,
    #[serde(default)]
    pub hooks: Vec<RawHook>,
    #[serde(default)]
    pub jobs: Vec<RawJob>,
    #[serde(default)]
    pub previews: Option<super::previews::RawPreviews>,
    /// The app spec `generate` renders manifests from (`generate.rs`).
    #[serde(default)]
    pub spec: Option<crate::domain::spec::AppSpec>,
    #[serde(default)]
    pub generator: Option<super::generate::RawGenerator>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawJob {
    pub name: String,
    pub phase: crate::domain::job::JobPhase,
    #[serde(default)]
    pub command: Vec<String>,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub timeout: Option<String>,
    #[serde(default)]
    pub backoff_limit: Option<u32>,
    #[serde(default)]
    pub environments: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWorkloads {
    #[serde(default)]
    pub selector: Option<String>,
    #[serde(default)]
    pub kinds: Option<Vec<crate::domain::Kind>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawEnvironment {
    pub name: String,
    #[serde(default)]
    pub context: Option<String>,
    pub namespace: String,
    #[serde(default)]
    pub promote_from: Option<String>,
    #[serde(default)]
    pub atomic: Option<bool>,
    #[serde(default)]
    pub manifests: Option<PathBuf>,
    #[serde(default)]
    pub create_namespace: bool,
    #[serde(default)]
    pub allow: Vec<Allowance>,
    #[serde(default)]
    pub require_verification: bool,
    /// The release is written into a deployment repository (`gitops.rs`).
    #[serde(default)]
    pub gitops: Option<super::gitops::RawGitops>,
}

/// What an environment's manifests may do beyond its own namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Allowance {
    /// Cluster-scoped objects (ClusterRoles, CRDs, Namespaces other than the environment's).
    ClusterScoped,
    /// Objects in namespaces other than the environment's.
    OtherNamespaces,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawHook {
    pub name: String,
    pub module: PathBuf,
    pub sha256: String,
    #[serde(default)]
    pub phases: Option<Vec<Phase>>,
    #[serde(default)]
    pub environments: Option<Vec<String>>,
    #[serde(default)]
    pub failure_policy: FailurePolicy,
    #[serde(default)]
    pub needs: Vec<Need>,
    #[serde(default)]
    pub timeout: Option<String>,
    #[serde(default)]
    pub memory: Option<String>,
    #[serde(default)]
    pub max_output: Option<String>,
    #[serde(default)]
    pub max_logs: Option<String>,
    #[serde(default)]
    pub settings: Option<serde_json::Value>,
}

/// What a hook asks to be shown beyond the release itself. A release reads only the target
/// environment unless one of its hooks needs more, so a deploy into qa needs no credentials
/// for production.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Need {
    /// Every environment's running images and digests (`environments` in the request).
    Environments,
}

/// Splits serde_yaml's "path: message at line L column C" into the field path and the message,
/// dropping the location (we print it ourselves, in `file:line` form).
pub fn split_serde_message(text: &str) -> (String, String) {
    let without_location = match text.rfind(" at line ") {
        Some(i) => &text[..i],
        None => text,
    };
    // serde_yaml prefixes nested errors with the path, e.g. "environments[0]: unknown field ...".
    match without_location.split_once(": ") {
        Some((path, message))
            if !path.contains(' ')
                && path.chars().next().is_some_and(|c| c.is_ascii_alphabetic()) =>
        {
            (path.to_string(), message.to_string())
        }
        _ => (String::new(), without_location.to_string()),
    }
}
