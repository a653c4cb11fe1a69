//! The release engine: deploy, promotion and rollback are one state machine — lock, read,
//! settle what a dead run left, plan, gate, journal, apply, wait, undo, record — over the
//! cluster gateway (`cluster::EnvGateway`) and the hook gate. Each verb only decides *what*
//! should run; this decides nothing about that.
//!
//! - `engine`: the state machine, every step's failure mapped to an outcome;
//! - `journal`: the record written `in-progress` before the first change and finished on every
//!   path;
//! - `apply`: patching workload by workload, undoing a partial change, waiting;
//! - `gate`: the hooks of each phase; `policy`: the cluster's mandatory hooks (and generator);
//!   `generated`: a generator's output for an environment, and the check of a release against
//!   a mandated one;
//! - `manifests`: the app's manifests of a release, rendered, staged, applied, pruned;
//!   `drift`: where live objects left what the newest release applied;
//! - `gitops`: the same release written as one commit into a deployment repository;
//! - `report`: the one document every verb prints; `interrupt`: stopping on a signal.

pub mod apply;
pub mod drift;
pub mod engine;
pub mod gate;
pub mod generated;
pub mod gitops;
pub mod interrupt;
pub mod jobs;
pub mod journal;
pub mod manifests;
pub mod policy;
pub mod report;

#[cfg(test)]
mod engine_tests;

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Result;

pub use engine::{Ran, run};
pub use gate::Gate;
pub use interrupt::Interrupt;
pub use report::Report;

use crate::cluster::{Clients, EnvTarget, KubeEnv, identity, lease};
use crate::config::{Environment, ReleaseConfig};
use crate::domain::{Actor, CommitSha, ReleaseKind, WorkloadRef};

/// What a verb wants released.
#[derive(Debug, Clone)]
pub struct Intent {
    pub kind: ReleaseKind,
    pub commit: Option<CommitSha>,
    /// `repo:<sha>` the digest was resolved from.
    pub image_tag: Option<String>,
    /// The branch the commit is the head of, when it was asked for by branch name.
    pub branch: Option<String>,
    pub wanted: Wanted,
    pub source_environment: Option<String>,
    pub source_revision: Option<u64>,
    pub forced_source: bool,
    pub restored_revision: Option<u64>,
    /// Environments the verb has already read (a promotion's source): hooks see them without a
    /// second read and without `needs: [environments]`.
    pub seen: Vec<hooks_sdk::EnvironmentState>,
    /// The environment's manifests rendered for this release (an environment with `manifests`).
    pub manifests: Option<manifests::Desired>,
}

impl Intent {
    /// An intent of `kind` that wants nothing yet.
    pub fn new(kind: ReleaseKind) -> Intent {
        Intent {
            kind,
            commit: None,
            image_tag: None,
            branch: None,
            wanted: Wanted::Exact(BTreeMap::new()),
            source_environment: None,
            source_revision: None,
            forced_source: false,
            restored_revision: None,
            seen: Vec::new(),
            manifests: None,
        }
    }
}

/// The images the release should leave running.
#[derive(Debug, Clone)]
pub enum Wanted {
    /// Every app container on this digest (a commit-hash deploy).
    Digest(String),
    /// Exactly these images per container (a promotion or rollback).
    Exact(BTreeMap<(WorkloadRef, String), String>),
}

/// How to carry a release out: the verbs' flags, resolved.
#[derive(Debug, Clone)]
pub struct Options {
    /// How long to wait for the rollout (and for an undo).
    pub timeout: Duration,
    /// Restore the previous images when the rollout fails or is interrupted.
    pub atomic: bool,
    /// Stop before the first change.
    pub dry_run: bool,
    /// Take over manifest fields another field manager owns.
    pub force_conflicts: bool,
    /// Run pre-deploy Jobs even when they already succeeded for the same bytes.
    pub rerun_jobs: bool,
    /// How a release into a GitOps environment is written and followed.
    pub gitops: GitopsOptions,
}

/// The GitOps flags: wait for the controller, or push a branch for review.
#[derive(Debug, Clone, Default)]
pub struct GitopsOptions {
    /// Wait until the cluster runs the new images (whichever controller applies them).
    pub wait: bool,
    /// Push a branch named after the app, environment and revision instead of the branch.
    pub pull_request: bool,
    /// Run to open the pull request (`sh -c`).
    pub pr_command: Option<String>,
    /// The deployment repositories' clones the releases sharing these options work in.
    pub clones: crate::artifacts::gitops_clones::Clones,
}

/// Everything a release needs to know about where it runs.
pub struct Context<'a, G> {
    pub config: &'a ReleaseConfig,
    pub env: &'a Environment,
    pub namespace: String,
    pub gateway: G,
    pub gate: Gate<'a>,
    pub actor: Actor,
    /// Who holds the lock while this release runs, in words (user, host, process).
    pub holder: String,
}

impl<'a> Context<'a, KubeEnv> {
    /// Who is releasing into `target`, its gateway, and its hooks loaded and verified.
    pub async fn prepare(
        config: &'a ReleaseConfig,
        clients: &'a Clients,
        target: &'a EnvTarget,
    ) -> Result<Context<'a, KubeEnv>> {
        let actor = identity::whoami(target).await;
        let gateway = KubeEnv::new(target, config).await?;
        let gate = Gate::load(config, clients, target).await?;
        Ok(Context {
            config,
            env: &target.env,
            namespace: target.namespace.clone(),
            gateway,
            gate,
            holder: lease::holder_identity(&actor.user),
            actor,
        })
    }
}

/// Runs the release; with `approval_patience`, a release that only lacks approvals waits —
/// without holding the lock — for approvals to be recorded, and tries again until it may go or
/// the time is up.
pub async fn run_until_approved(
    ctx: &Context<'_, KubeEnv>,
    intent: &Intent,
    opts: &Options,
    interrupt: &Interrupt,
    approval_patience: Option<Duration>,
) -> Result<Ran> {
    let Some(patience) = approval_patience else {
        return Ok(run(ctx, intent, opts, interrupt).await);
    };
    let deadline = tokio::time::Instant::now() + patience;
    let approvals =
        crate::cluster::approvals::Approvals::new(ctx.gateway.target(), &ctx.config.app);
    loop {
        // Taken before the hooks judge the approvals: one recorded meanwhile counts as a change.
        let seen = approvals.snapshot().await?;
        let ran = run(ctx, intent, opts, interrupt).await;
        let Err(failure) = &ran.end else {
            return Ok(ran);
        };
        if failure.outcome != crate::domain::Outcome::WaitingForApproval {
            return Ok(ran);
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        crate::progress::Progress::new().say(&format!(
            "{}; waiting up to {} for approvals",
            failure.message,
            humantime::format_duration(Duration::from_secs(left.as_secs()))
        ));
        let changed = tokio::select! {
            changed = approvals.wait_for_change(&seen, left) => changed,
            () = interrupt.wait() => false,
        };
        if left.is_zero() || !changed {
            return Ok(ran);
        }
    }
}

/// Reads the app's workloads in an environment (for status, where, promote).
pub async fn live_workloads(
    cfg: &ReleaseConfig,
    target: &EnvTarget,
) -> Result<Vec<crate::domain::Workload>> {
    let gateway = KubeEnv::new(target, cfg).await?;
    gateway.workloads().await
}
