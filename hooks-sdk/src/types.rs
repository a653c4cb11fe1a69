//! The two documents of the contract: the [`HookRequest`] the host writes to a hook's stdin and
//! the [`HookResponse`] the hook writes to its stdout.
//!
//! Field names are camelCase on the wire. Unknown fields are ignored when reading, so the host
//! can add fields within `v1` without breaking hooks built against an older SDK; a change that
//! removes or re-types a field needs a new `apiVersion`.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The `apiVersion` of every [`HookRequest`] in this version of the contract.
pub const API_VERSION: &str = "kubectl-release.io/hooks/v1";

/// The `kind` of a [`HookRequest`].
pub const REQUEST_KIND: &str = "HookRequest";

/// When a hook runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Before `deploy` patches the workloads; a denial stops the deploy.
    PreDeploy,
    /// Before `promote` patches the workloads of the target environment; a denial stops it.
    PrePromote,
    /// Before `rollback` re-deploys a recorded revision; a denial stops it.
    PreRollback,
    /// After a deploy succeeded; the verdict is reported but cannot undo anything.
    PostDeploy,
    /// Server-side, in the admission webhook: a workload's images change in a governed
    /// namespace, by the plugin or by anyone else (`kubectl set image`); a denial refuses the
    /// change. Only cluster-policy hooks that list it run in it.
    Admission,
}

impl Phase {
    /// Every phase, in the order a release goes through them.
    pub const ALL: [Phase; 5] = [
        Phase::PreDeploy,
        Phase::PrePromote,
        Phase::PreRollback,
        Phase::PostDeploy,
        Phase::Admission,
    ];

    /// Pre-phases run in the plugin before anything changes and may deny (and are a hook's
    /// phases by default).
    pub fn is_pre(self) -> bool {
        matches!(
            self,
            Phase::PreDeploy | Phase::PrePromote | Phase::PreRollback
        )
    }

    /// The name as written in release.yaml and on the wire, e.g. `pre-deploy`.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::PreDeploy => "pre-deploy",
            Phase::PrePromote => "pre-promote",
            Phase::PreRollback => "pre-rollback",
            Phase::PostDeploy => "post-deploy",
            Phase::Admission => "admission",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything a rule may need to decide, so that hooks never call back into the host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(
    title = "HookRequest",
    description = "The document a release hook reads from stdin (release-hook v1)."
)]
pub struct HookRequest {
    /// Always `kubectl-release.io/hooks/v1`.
    #[schemars(extend("const" = "kubectl-release.io/hooks/v1"))]
    pub api_version: String,
    /// Always `HookRequest`.
    #[schemars(extend("const" = "HookRequest"))]
    pub kind: String,
    /// The phase the hook runs in.
    pub phase: Phase,
    /// The hook's name from the release config.
    pub hook: String,
    /// The hook's `settings` from the release config, as written (an empty object if none).
    #[serde(default = "empty_object")]
    pub settings: Value,
    /// The app's name from the release config.
    pub app: String,
    /// Who runs the release.
    pub actor: Actor,
    /// The current time, RFC 3339 in UTC. Use it instead of the system clock: the host injects it
    /// so that fixtures and dry runs are reproducible.
    pub now: String,
    /// What is about to be released.
    pub release: Release,
    /// The app's workload objects (Deployments, StatefulSets, DaemonSets, CronJobs) as they will
    /// be applied, i.e. with the new images; plain Kubernetes JSON without `metadata.managedFields`.
    #[serde(default)]
    pub workloads: Vec<Value>,
    /// Every environment of the app and what currently runs there.
    #[serde(default)]
    pub environments: Vec<EnvironmentState>,
    /// Approvals recorded for the target environment.
    #[serde(default)]
    pub approvals: Vec<Approval>,
    /// Recent releases of the target environment, newest first.
    #[serde(default)]
    pub history: Vec<ReleaseSummary>,
    /// Every object of the environment's manifests as the release will apply them (images
    /// pinned by digest, the app's labels added), in apply order; empty for an environment
    /// that releases images only. A Secret's `data` and `stringData` values read `***`: a
    /// rule judges a Secret by its keys, type and metadata, and a hook's messages end up in
    /// release records and CI logs, where no value may appear.
    #[serde(default)]
    pub objects: Vec<Value>,
    /// The Job objects the release runs (migrations before the rollout, verification after
    /// it), as they will be created: named per release, on the release's digest.
    #[serde(default)]
    pub jobs: Vec<Value>,
}

fn empty_object() -> Value {
    Value::Object(serde_json::Map::new())
}

impl Default for HookRequest {
    /// A request with the right `apiVersion` and `kind` and nothing else: a starting point for
    /// tests and for the host's `validate-settings` call.
    fn default() -> Self {
        HookRequest {
            api_version: API_VERSION.to_string(),
            kind: REQUEST_KIND.to_string(),
            phase: Phase::PreDeploy,
            hook: String::new(),
            settings: empty_object(),
            app: String::new(),
            actor: Actor::default(),
            now: "1970-01-01T00:00:00Z".to_string(),
            release: Release::default(),
            workloads: Vec::new(),
            environments: Vec::new(),
            approvals: Vec::new(),
            history: Vec::new(),
            objects: Vec::new(),
            jobs: Vec::new(),
        }
    }
}

impl HookRequest {
    /// The state of the environment called `name`, if the request lists it.
    pub fn environment(&self, name: &str) -> Option<&EnvironmentState> {
        self.environments.iter().find(|e| e.name == name)
    }

    /// The state of the release's target environment, if the request lists it.
    pub fn target_environment(&self) -> Option<&EnvironmentState> {
        self.environment(&self.release.target_environment)
    }
}

/// The person or CI identity running the release.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Actor {
    /// The user name, as the API server or git reports it.
    pub user: String,
    /// The groups the API server reports for the user.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Whether the API server vouched for the identity (a `SelfSubjectReview`); `false` when it
    /// only comes from local configuration, which anyone can edit.
    #[serde(default)]
    pub verified: bool,
}

/// What kind of release this is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ReleaseKind {
    /// A commit's image deployed into an environment.
    #[default]
    Deploy,
    /// The digests running in one environment shipped to another.
    Promote,
    /// A recorded revision re-deployed.
    Rollback,
}

/// The release being decided on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Release {
    /// Deploy, promote or rollback.
    pub kind: ReleaseKind,
    /// The revision number the release will get, when known.
    #[serde(default)]
    pub revision: Option<u64>,
    /// The full 40-hex commit being released, when known.
    #[serde(default)]
    pub commit: Option<String>,
    /// The environment being changed.
    pub target_environment: String,
    /// Where the digests come from, for promotions.
    #[serde(default)]
    pub source_environment: Option<String>,
    /// The promotion's source was forced (`--force-source`) and is not the target's `promoteFrom`.
    #[serde(default)]
    pub forced_source: bool,
    /// Every container whose image changes.
    #[serde(default)]
    pub containers: Vec<ContainerChange>,
}

impl Release {
    /// The distinct digests being released (`containers[].digestAfter`), sorted.
    pub fn digests(&self) -> Vec<String> {
        let mut digests: Vec<String> = self
            .containers
            .iter()
            .map(|c| c.digest_after.clone())
            .collect();
        digests.sort();
        digests.dedup();
        digests
    }
}

/// Names one workload object.
#[derive(
    Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadRef {
    /// `Deployment`, `StatefulSet`, `DaemonSet` or `CronJob`.
    pub kind: String,
    /// The namespace it lives in.
    pub namespace: String,
    /// Its name.
    pub name: String,
}

impl WorkloadRef {
    /// A reference from its parts.
    pub fn new(
        kind: impl Into<String>,
        namespace: impl Into<String>,
        name: impl Into<String>,
    ) -> Self {
        WorkloadRef {
            kind: kind.into(),
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// Whether `other` is the same workload in another environment: same kind and name, any
    /// namespace (each environment usually has a namespace of its own).
    pub fn same_workload(&self, other: &WorkloadRef) -> bool {
        self.kind == other.kind && self.name == other.name
    }
}

impl fmt::Display for WorkloadRef {
    /// `Deployment web-qa/web`, the way kubectl users read it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// One container whose image the release changes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContainerChange {
    /// The workload holding the container.
    pub workload: WorkloadRef,
    /// The container's name.
    pub container: String,
    /// The image it runs now, if the workload exists.
    #[serde(default)]
    pub image_before: Option<String>,
    /// The image it will run, pinned by digest: `repo@sha256:…`.
    pub image_after: String,
    /// The digest of `imageAfter`: `sha256:…`.
    pub digest_after: String,
}

/// An environment and what currently runs in it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentState {
    /// The environment's name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// The environment it receives promotions from, if any.
    #[serde(default)]
    pub promote_from: Option<String>,
    /// The app's containers running there.
    #[serde(default)]
    pub containers: Vec<RunningContainer>,
}

impl EnvironmentState {
    /// The running container matching `workload` (by kind and name) and `container`.
    pub fn container(&self, workload: &WorkloadRef, container: &str) -> Option<&RunningContainer> {
        self.containers
            .iter()
            .find(|c| c.container == container && c.workload.same_workload(workload))
    }
}

/// One of the app's containers as it runs in an environment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunningContainer {
    /// The workload holding the container.
    pub workload: WorkloadRef,
    /// The container's name.
    pub container: String,
    /// The image in the workload's pod template.
    pub image: String,
    /// The distinct digests (`sha256:…`) the pods run, sorted: the one the template pins once
    /// the workload's status says every pod is of that template (a finished rollout), otherwise
    /// those the pods report in `imageID`. More than one means a rollout is in progress or pods
    /// disagree.
    #[serde(default)]
    pub digests: Vec<String>,
}

/// A person's approval of a commit's digests for an environment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Approval {
    /// Who approved.
    pub user: String,
    /// The environment the approval is for.
    pub environment: String,
    /// The commit approved.
    pub commit: String,
    /// The digests approved (`sha256:…`); the approval is only good for exactly these.
    #[serde(default)]
    pub digests: Vec<String>,
    /// When it was given, RFC 3339.
    pub approved_at: String,
    /// When it stops counting, RFC 3339.
    pub expires_at: String,
    /// Whether the API server vouched for the approver's identity when it was recorded: with
    /// the admission webhook registered, it stamps `user`, `groups` and `verified: true` from
    /// the identity that created the approval.
    #[serde(default)]
    pub verified: bool,
    /// The approver's groups, as the API server authenticated them (stamped by the webhook).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Who released what is being approved, when the approval knows it (the source
    /// environment's deployer): the webhook refuses an approval by that person.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployer: Option<String>,
}

/// How a release ended (or stands): one vocabulary for the plugin's reports, its release
/// records and the history hooks see.
///
/// Records only ever hold `in-progress` (while the release runs) and the outcomes of a release
/// that changed something: `succeeded`, `committed`, `failed`, `rolled-back`, `timed-out`,
/// `interrupted`.
/// Reports may also say why nothing changed: `unchanged`, `planned`, `denied`,
/// `waiting-for-approval`, `invalid`, `locked`, `error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ReleaseOutcome {
    /// The release is running: its record was written before its first change.
    InProgress,
    /// The rollout completed.
    Succeeded,
    /// A GitOps release: its commit is on the deployment repository (or on a branch pushed
    /// for review); the rollout, which the repository's controller carries out, was not waited
    /// for.
    Committed,
    /// Everything already ran what the release wanted: nothing changed.
    Unchanged,
    /// A dry run: everything up to the change was checked, nothing changed.
    Planned,
    /// A hook denied the release before anything changed.
    Denied,
    /// Hooks wait for approvals before anything changes.
    WaitingForApproval,
    /// The rollout failed and the new images stayed.
    Failed,
    /// The release failed or was stopped, and the previous images were put back.
    RolledBack,
    /// The wait for the rollout ran out of time and the new images stayed.
    TimedOut,
    /// The process running the release stopped (a signal, or it died) before it finished.
    Interrupted,
    /// The request was invalid (bad arguments, config, or cluster state): nothing changed.
    Invalid,
    /// Another release of the same app and environment holds the lock: nothing changed.
    Locked,
    /// An unexpected error.
    Error,
}

impl ReleaseOutcome {
    /// The outcome as written in JSON (`rolled-back`, `in-progress`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            ReleaseOutcome::InProgress => "in-progress",
            ReleaseOutcome::Succeeded => "succeeded",
            ReleaseOutcome::Committed => "committed",
            ReleaseOutcome::Unchanged => "unchanged",
            ReleaseOutcome::Planned => "planned",
            ReleaseOutcome::Denied => "denied",
            ReleaseOutcome::WaitingForApproval => "waiting-for-approval",
            ReleaseOutcome::Failed => "failed",
            ReleaseOutcome::RolledBack => "rolled-back",
            ReleaseOutcome::TimedOut => "timed-out",
            ReleaseOutcome::Interrupted => "interrupted",
            ReleaseOutcome::Invalid => "invalid",
            ReleaseOutcome::Locked => "locked",
            ReleaseOutcome::Error => "error",
        }
    }

    /// Whether the release left the cluster as it wanted it (or found it so).
    pub fn is_success(self) -> bool {
        matches!(
            self,
            ReleaseOutcome::Succeeded
                | ReleaseOutcome::Committed
                | ReleaseOutcome::Unchanged
                | ReleaseOutcome::Planned
        )
    }
}

impl fmt::Display for ReleaseOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One recorded release of the target environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseSummary {
    /// Its revision number.
    pub revision: u64,
    /// The commit released.
    pub commit: String,
    /// Who released it.
    pub actor: String,
    /// When, RFC 3339.
    pub at: String,
    /// How it ended.
    pub outcome: ReleaseOutcome,
    /// Deploy, promote or rollback.
    pub kind: ReleaseKind,
    /// The source environment of a promotion.
    #[serde(default)]
    pub source_environment: Option<String>,
}

/// A hook's verdict.
///
/// `allowed: false` denies the release; `message` and `violations` say why. Warnings are shown
/// to the user whatever the verdict.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(
    title = "HookResponse",
    description = "The document a release hook writes to stdout (release-hook v1)."
)]
pub struct HookResponse {
    /// Whether the release may go on.
    pub allowed: bool,
    /// A one-line summary, shown first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Each thing that is wrong, as precisely as the hook can tell.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub violations: Vec<Violation>,
    /// Things worth knowing that do not deny.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl HookResponse {
    /// Allows the release.
    pub fn allow() -> Self {
        HookResponse {
            allowed: true,
            ..HookResponse::default()
        }
    }

    /// Denies the release with a summary.
    pub fn deny(message: impl Into<String>) -> Self {
        HookResponse {
            allowed: false,
            message: Some(message.into()),
            ..HookResponse::default()
        }
    }

    /// Denies with `message` if there are violations, allows otherwise: the usual end of a rule
    /// that collects everything wrong before answering.
    pub fn from_violations(message: impl Into<String>, violations: Vec<Violation>) -> Self {
        if violations.is_empty() {
            HookResponse::allow()
        } else {
            HookResponse {
                allowed: false,
                message: Some(message.into()),
                violations,
                warnings: Vec::new(),
            }
        }
    }

    /// Adds a violation. A violation always denies, so this also sets `allowed` to `false`.
    #[must_use]
    pub fn with_violation(mut self, violation: Violation) -> Self {
        self.allowed = false;
        self.violations.push(violation);
        self
    }

    /// Adds a warning; the verdict is unchanged.
    #[must_use]
    pub fn with_warning(mut self, warning: impl Into<String>) -> Self {
        self.warnings.push(warning.into());
        self
    }

    /// Sets the summary message; the verdict is unchanged.
    #[must_use]
    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(message.into());
        self
    }
}

/// One reason for a denial.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Violation {
    /// The workload at fault, if the violation is about one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<WorkloadRef>,
    /// The field at fault, as a dotted path, e.g. `spec.template.metadata.labels.team`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// What is wrong and, when the hook knows, how to fix it.
    pub message: String,
}

impl Violation {
    /// A violation with a message only.
    pub fn new(message: impl Into<String>) -> Self {
        Violation {
            workload: None,
            field: None,
            message: message.into(),
        }
    }

    /// Names the workload at fault.
    #[must_use]
    pub fn on(mut self, workload: WorkloadRef) -> Self {
        self.workload = Some(workload);
        self
    }

    /// Names the field at fault.
    #[must_use]
    pub fn at(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }
}

impl fmt::Display for Violation {
    /// `Deployment web/web: metadata.labels.team: missing`, leaving out what is unknown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(workload) = &self.workload {
            write!(f, "{workload}: ")?;
        }
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        f.write_str(&self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn phases_use_the_release_yaml_names() {
        for phase in Phase::ALL {
            assert_eq!(serde_json::to_value(phase).unwrap(), json!(phase.as_str()));
        }
        assert!(!Phase::PostDeploy.is_pre());
    }

    #[test]
    fn minimal_request_reads_with_defaults() {
        let req: HookRequest = serde_json::from_value(json!({
            "apiVersion": API_VERSION, "kind": "HookRequest", "phase": "pre-promote", "hook": "h",
            "app": "web", "actor": {"user": "alice"}, "now": "2025-01-01T00:00:00Z",
            "release": {"kind": "promote", "targetEnvironment": "production", "unknownLater": 1}
        }))
        .unwrap();
        assert_eq!(req.settings, json!({}));
        assert_eq!(req.release.kind, ReleaseKind::Promote);
        assert!(req.workloads.is_empty());
    }

    #[test]
    fn response_round_trips_and_omits_empty_fields() {
        let allow = serde_json::to_value(HookResponse::allow()).unwrap();
        assert_eq!(allow, json!({"allowed": true}));
        let deny = HookResponse::allow()
            .with_violation(
                Violation::new("missing")
                    .on(WorkloadRef::new("Deployment", "web", "web"))
                    .at("metadata.labels.team"),
            )
            .with_warning("w");
        assert!(!deny.allowed);
        let text = serde_json::to_string(&deny).unwrap();
        assert_eq!(serde_json::from_str::<HookResponse>(&text).unwrap(), deny);
        assert_eq!(
            deny.violations[0].to_string(),
            "Deployment web/web: metadata.labels.team: missing"
        );
    }

    #[test]
    fn from_violations_allows_when_empty() {
        assert!(HookResponse::from_violations("x", vec![]).allowed);
        assert!(!HookResponse::from_violations("x", vec![Violation::new("v")]).allowed);
    }
}
