//! Carrying out a release — deploy, promotion or rollback alike: lock, plan, hooks, patch,
//! wait, record. Each verb only decides *what* should run; this decides nothing about that.

use std::collections::BTreeMap;

use anyhow::{Context as _, Result};
use serde::Serialize;

use crate::cli::{GlobalArgs, OutputFormat, RolloutArgs};
use crate::config::ReleaseConfig;
use crate::exit::{ExitCode, Failure};
use crate::gate::Gate;
use crate::git::CommitSha;
use crate::kube_client::EnvTarget;
use crate::lock::{Lock, holder_identity};
use crate::output;
use crate::plan::{self, ContainerChange, ReleaseKind};
use crate::progress::Progress;
use crate::records::{Actor, Outcome, Records, Release};
use crate::rollout::{self, Stamp, WaitFailure};
use crate::workloads::{self, ServerApis, Workload, WorkloadRef};

/// What a verb wants released.
#[derive(Debug, Clone)]
pub struct Intent {
    pub kind: ReleaseKind,
    pub commit: Option<CommitSha>,
    /// `repo:<sha>` the digest was resolved from.
    pub image_tag: Option<String>,
    pub wanted: Wanted,
    pub source_environment: Option<String>,
    pub source_revision: Option<u64>,
    pub forced_source: bool,
    pub restored_revision: Option<u64>,
}

/// The images the release should leave running.
#[derive(Debug, Clone)]
pub enum Wanted {
    /// Every app container on this digest (a commit-hash deploy).
    Digest(String),
    /// Exactly these images per container (a promotion or rollback).
    Exact(BTreeMap<(WorkloadRef, String), String>),
}

/// Everything a release needs to know about where it runs.
pub struct Context<'a> {
    pub global: &'a GlobalArgs,
    pub config: &'a ReleaseConfig,
    pub target: &'a EnvTarget,
    pub actor: Actor,
    pub gate: Gate<'a>,
}

impl<'a> Context<'a> {
    /// Who is releasing into `target`, and its hooks loaded and verified.
    pub async fn prepare(
        global: &'a GlobalArgs,
        config: &'a ReleaseConfig,
        clients: &'a crate::kube_client::Clients,
        target: &'a EnvTarget,
    ) -> Result<Context<'a>> {
        let actor = crate::identity::whoami(target).await;
        let gate = Gate::load(config, clients, target, &actor).await?;
        Ok(Context {
            global,
            config,
            target,
            actor,
            gate,
        })
    }
}

/// What `deploy`/`promote`/`rollback` print: on stdout in every outcome, so CI gets one
/// document whatever happened. This is the stable `-o json` shape.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// `succeeded`, `unchanged`, `planned`, `denied`, `failed`, `rolled-back`, `timed-out`.
    pub outcome: String,
    pub app: String,
    pub environment: String,
    pub kind: ReleaseKind,
    pub commit: Option<CommitSha>,
    pub revision: Option<u64>,
    pub changes: Vec<ContainerChange>,
    pub digests: Vec<String>,
    pub hooks: Vec<serde_json::Value>,
    /// Approvals that were valid for these digests and handed to the hooks.
    pub approvals: Vec<hooks_sdk::Approval>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
}

impl Report {
    pub fn render(&self) -> String {
        let commit = self
            .commit
            .as_ref()
            .map_or(String::new(), |c| format!(" {}", c.short()));
        let mut out = match self.outcome.as_str() {
            "unchanged" => format!(
                "{}{commit} already deployed to {}: nothing to do\n",
                self.app, self.environment
            ),
            "planned" => format!(
                "plan: {:?} {}{commit} to {} (dry run, nothing changed)\n",
                self.kind, self.app, self.environment
            )
            .to_lowercase(),
            outcome => format!(
                "{} {}{commit} to {}: {outcome}{}\n",
                format!("{:?}", self.kind).to_lowercase(),
                self.app,
                self.environment,
                self.revision
                    .map_or(String::new(), |r| format!(" (revision {r})"))
            ),
        };
        let rows: Vec<Vec<String>> = self
            .changes
            .iter()
            .map(|c| {
                let mark = if c.changes() { "~" } else { "=" };
                vec![
                    c.workload.to_string(),
                    c.container.clone(),
                    format!("{mark} {}", c.after),
                    c.before.clone(),
                ]
            })
            .collect();
        if !rows.is_empty() {
            out.push_str(&output::table(
                &["WORKLOAD", "CONTAINER", "IMAGE", "BEFORE"],
                &rows,
            ));
        }
        if !self.hooks.is_empty() {
            out.push_str(&crate::gate::render_verdicts(&self.hooks));
        }
        out
    }

    pub fn print(&self, format: OutputFormat) -> Result<()> {
        output::emit(format, self, || self.render())
    }
}

/// Runs the release and prints its report (in every outcome, so CI always gets one document).
/// Failures come back as errors carrying their exit code. With `approval_wait`, a release that
/// only lacks approvals waits — without holding the lock — for approvals to be recorded, and
/// tries again until it may go or the time is up.
pub async fn execute(
    ctx: &Context<'_>,
    intent: Intent,
    opts: &RolloutArgs,
    approval_wait: Option<std::time::Duration>,
) -> Result<ExitCode> {
    let (report, outcome) = run(ctx, intent, opts, approval_wait).await?;
    report.print(ctx.global.output)?;
    outcome.map_err(Into::into)
}

/// Runs the release without printing: its report, and how it ended.
pub async fn run(
    ctx: &Context<'_>,
    intent: Intent,
    opts: &RolloutArgs,
    approval_wait: Option<std::time::Duration>,
) -> Result<(Report, Result<ExitCode, Failure>)> {
    let cfg = ctx.config;
    let target = ctx.target;
    let env = &target.env.name;
    let client = &target.client;
    let deadline = approval_wait.map(|d| tokio::time::Instant::now() + d);

    let apis = target.server_apis().await?;
    let approvals = crate::approvals::Approvals::new(target, &cfg.app);
    loop {
        // Taken before the hooks judge the approvals: one recorded meanwhile counts as a change.
        let seen = match deadline {
            Some(_) => approvals.snapshot().await?,
            None => Default::default(),
        };
        // The lock comes first so the plan, the hooks and the patch all see one state.
        let lock = if opts.dry_run {
            None
        } else {
            Some(
                Lock::acquire(
                    client,
                    &target.namespace,
                    &cfg.app,
                    env,
                    &holder_identity(&ctx.actor.user),
                )
                .await?,
            )
        };
        let result = execute_locked(ctx, &intent, opts, &apis, &Progress::new()).await;
        if let Some(lock) = lock {
            lock.release().await;
        }
        let (report, outcome) = result?;
        if let (Err(failure), Some(deadline)) = (&outcome, deadline)
            && failure.code == ExitCode::WaitingForApproval
        {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            Progress::new().say(&format!(
                "{}; waiting up to {} for approvals",
                failure.message,
                humantime::format_duration(round_secs(left))
            ));
            if !left.is_zero() && approvals.wait_for_change(&seen, left).await {
                continue;
            }
        }
        let mut report = report;
        if let Err(failure) = &outcome
            && report.message.is_empty()
        {
            report.message = failure.message.clone();
        }
        return Ok((report, outcome));
    }
}

fn round_secs(d: std::time::Duration) -> std::time::Duration {
    std::time::Duration::from_secs(d.as_secs())
}

/// The release under the lock: what happened (the report) and how it ended.
async fn execute_locked(
    ctx: &Context<'_>,
    intent: &Intent,
    opts: &RolloutArgs,
    apis: &ServerApis,
    progress: &Progress,
) -> Result<(Report, Result<ExitCode, Failure>)> {
    let cfg = ctx.config;
    let target = ctx.target;
    let env = target.env.name.clone();
    let client = &target.client;

    let found = workloads::discover(
        client,
        apis,
        &target.namespace,
        &cfg.image,
        cfg.workload_selector.as_deref(),
    )
    .await
    .with_context(|| format!("cannot list workloads in {target}"))?;
    if found.is_empty() {
        return Ok((
            empty_report(cfg, intent, &env),
            Err(Failure::usage(format!(
                "no Deployment, StatefulSet, DaemonSet or CronJob in namespace `{}` has a container from {}; \
             create the app's workloads there first (kubectl apply), or check `namespace` and `image` in {}",
                target.namespace,
                cfg.image,
                cfg.path.display()
            ))),
        ));
    }
    let changes = match &intent.wanted {
        Wanted::Digest(digest) => plan::deploy_all(&found, &cfg.image, digest),
        Wanted::Exact(images) => match plan::exact(&found, &cfg.image, images) {
            Ok(changes) => changes,
            Err(why) => return Ok((empty_report(cfg, intent, &env), Err(Failure::usage(why)))),
        },
    };
    let records = Records::new(client, &target.namespace, &cfg.app, &env);
    let history = records.list().await?;
    let revision = crate::records::next_revision(&history);
    let mut report = Report {
        outcome: String::new(),
        app: cfg.app.clone(),
        environment: env.clone(),
        kind: intent.kind,
        commit: intent.commit.clone(),
        revision: None,
        digests: plan::digests(&changes),
        changes,
        hooks: Vec::new(),
        approvals: Vec::new(),
        message: String::new(),
    };

    if plan::is_noop(&report.changes) {
        report.outcome = "unchanged".into();
        return Ok((report, Ok(ExitCode::Ok)));
    }

    // Pre-phase hooks decide before anything changes.
    let (pre, approvals) = ctx
        .gate
        .pre_phase(intent, &report.changes, &found, &history, revision)
        .await?;
    report.hooks = pre.verdicts_json();
    report.approvals = crate::gate::valid_approvals(&approvals, &report.digests);
    if pre.denied() {
        report.message = pre.render();
        // A denial only for want of approvals is not final: the release may go once they arrive.
        let failure = if crate::gate::only_missing_approvals(&pre) {
            report.outcome = "waiting-for-approval".into();
            Failure::new(
                ExitCode::WaitingForApproval,
                format!(
                    "waiting for approval: {}",
                    crate::gate::approval_messages(&pre)
                ),
            )
        } else {
            report.outcome = "denied".into();
            Failure::new(ExitCode::Denied, pre.render())
        };
        return Ok((report, Err(failure)));
    }
    if opts.dry_run {
        report.outcome = "planned".into();
        return Ok((report, Ok(ExitCode::Ok)));
    }

    let started_at = jiff::Timestamp::now().to_string();
    let stamp = Stamp {
        revision,
        commit: intent.commit.as_ref().map(ToString::to_string),
        image_tag: intent.image_tag.clone(),
        environment: env.clone(),
    };
    let applied = rollout::apply(
        client,
        apis,
        &target.namespace,
        &found,
        &report.changes,
        &stamp,
        true,
    )
    .await?;
    progress.say(&format!(
        "{} {} to {env}: revision {revision}, waiting for the rollout",
        verb(intent.kind),
        cfg.app
    ));
    let waited = rollout::wait_all(
        client,
        apis,
        &target.namespace,
        &applied,
        &new_images(&report.changes),
        opts.timeout,
        progress,
    )
    .await;

    let mut release = Release {
        revision,
        app: cfg.app.clone(),
        environment: env.clone(),
        kind: intent.kind,
        commit: intent.commit.clone(),
        containers: report.changes.clone(),
        actor: ctx.actor.clone(),
        started_at,
        finished_at: String::new(),
        outcome: Outcome::Succeeded,
        source_environment: intent.source_environment.clone(),
        source_revision: intent.source_revision,
        restored_revision: intent.restored_revision,
        hooks: report.hooks.clone(),
        message: String::new(),
    };
    report.revision = Some(revision);

    if let Err(failure) = waited {
        let (code, what) = match &failure {
            WaitFailure::Failed { workload, reason } => (
                ExitCode::RolloutFailed,
                format!("{workload} failed: {reason}"),
            ),
            WaitFailure::TimedOut { pending } => (
                ExitCode::TimedOut,
                format!(
                    "timed out after {} waiting for {}",
                    humantime::format_duration(opts.timeout),
                    pending.join(", ")
                ),
            ),
        };
        let atomic = cfg.atomic_for(&target.env, opts.atomic);
        let undo_note = if atomic {
            progress.say(&format!("{what}; rolling back to the previous images"));
            let back = plan::inverse(&report.changes);
            let previous = history.first();
            let undo_stamp = Stamp {
                revision: previous.map_or(0, |r| r.revision),
                commit: previous.and_then(|r| r.commit.as_ref().map(ToString::to_string)),
                image_tag: None,
                environment: env.clone(),
            };
            let undo_progress = Progress::new();
            let reverted = rollout::apply(
                client,
                apis,
                &target.namespace,
                &applied,
                &back,
                &undo_stamp,
                false,
            )
            .await?;
            match rollout::wait_all(
                client,
                apis,
                &target.namespace,
                &reverted,
                &new_images(&back),
                opts.timeout,
                &undo_progress,
            )
            .await
            {
                Ok(()) => {
                    release.outcome = Outcome::RolledBack;
                    "rolled back: the previous images are running again".to_string()
                }
                Err(_) => {
                    release.outcome = Outcome::Failed;
                    "the rollback to the previous images did not complete either; check the workloads".to_string()
                }
            }
        } else {
            release.outcome = Outcome::Failed;
            "not rolled back (use --atomic or `atomic: true` to restore the previous images on failure)".to_string()
        };
        release.message = format!("{what}; {undo_note}");
        release.finished_at = jiff::Timestamp::now().to_string();
        records.write(&release, cfg.history_limit).await?;
        report.outcome = if code == ExitCode::TimedOut && release.outcome != Outcome::RolledBack {
            "timed-out".into()
        } else {
            release.outcome.to_string()
        };
        report.message = release.message.clone();
        let failure = Failure::new(
            code,
            format!(
                "{} {} to {env} revision {revision}: {}",
                verb(intent.kind),
                cfg.app,
                release.message
            ),
        );
        return Ok((report, Err(failure)));
    }

    release.finished_at = jiff::Timestamp::now().to_string();
    // Post-deploy hooks report; they cannot undo what is done.
    let (post, _) = ctx
        .gate
        .post_deploy(intent, &report.changes, &applied, &history, revision)
        .await?;
    release.hooks.extend(post.verdicts_json());
    records.write(&release, cfg.history_limit).await?;
    report.hooks = release.hooks.clone();
    report.outcome = Outcome::Succeeded.to_string();
    Ok((report, Ok(ExitCode::Ok)))
}

/// The report of a release that stopped before it had a plan.
fn empty_report(cfg: &ReleaseConfig, intent: &Intent, env: &str) -> Report {
    Report {
        outcome: "invalid".into(),
        app: cfg.app.clone(),
        environment: env.to_string(),
        kind: intent.kind,
        commit: intent.commit.clone(),
        revision: None,
        changes: Vec::new(),
        digests: Vec::new(),
        hooks: Vec::new(),
        approvals: Vec::new(),
        message: String::new(),
    }
}

fn verb(kind: ReleaseKind) -> &'static str {
    match kind {
        ReleaseKind::Deploy => "deploying",
        ReleaseKind::Promote => "promoting",
        ReleaseKind::Rollback => "rolling back",
    }
}

/// The images each workload's new pods will have, to tell new pods from old ones.
fn new_images(changes: &[ContainerChange]) -> BTreeMap<WorkloadRef, Vec<String>> {
    let mut map: BTreeMap<WorkloadRef, Vec<String>> = BTreeMap::new();
    for c in changes {
        map.entry(c.workload.clone())
            .or_default()
            .push(c.after.clone());
    }
    map
}

/// Reads the app's workloads in an environment (for status, where, promote).
pub async fn live_workloads(cfg: &ReleaseConfig, target: &EnvTarget) -> Result<Vec<Workload>> {
    let apis = target.server_apis().await?;
    workloads::discover(
        &target.client,
        &apis,
        &target.namespace,
        &cfg.image,
        cfg.workload_selector.as_deref(),
    )
    .await
    .with_context(|| format!("cannot list workloads in {target}"))
}
