//! The release state machine. Every step that can fail maps to one outcome; once the journal
//! has begun, no step returns early without finishing it.
//!
//! ```text
//! lock → read → settle abandoned records → plan → (unchanged) → pre-hooks → (denied | planned)
//!      → journal begin → apply ─(refused)→ undo → rolled-back
//!                              ─(signal)─→ [undo if atomic] → interrupted | rolled-back
//!      → wait ─(failed | timed out | signal)→ [undo if atomic] → failed | timed-out | interrupted | rolled-back
//!             → post-hooks (report only) → succeeded
//! ```

use anyhow::Result;
use hooks_sdk::Phase;

use super::apply::{self, Stopped};
use super::gate::{Judgement, TargetState};
use super::generated;
use super::jobs::{self, Jobs};
use super::journal::{self, Journal};
use super::manifests::{self, Staged};
use super::{Context, Intent, Interrupt, Options, Report, Wanted};
use crate::cluster::{EnvGateway, EnvSnapshot, Stamp, WaitFailure};
use crate::domain::error_text::one_line;
use crate::domain::hook_request::Facts;
use crate::domain::job::{JobOutcome, JobPhase, JobRun};
use crate::domain::record::{self, next_revision};
use crate::domain::{ContainerChange, Failure, Outcome, Release, ReleaseKind, Workload, plan};
use crate::progress::Progress;

/// How a release ended: the report to print, and the failure (if any) that decides the exit.
#[derive(Debug)]
pub struct Ran {
    pub report: Report,
    pub end: Result<(), Failure>,
}

impl Ran {
    pub(super) fn ok(report: Report, outcome: Outcome) -> Ran {
        Ran {
            report: report.ended_by(outcome, None),
            end: Ok(()),
        }
    }

    pub(super) fn fail(report: Report, failure: Failure) -> Ran {
        Ran {
            report: report.ended_by(failure.outcome, Some(&failure)),
            end: Err(failure),
        }
    }

    /// A release that stopped before any change: the error's outcome (`error` when it names
    /// none) and its words.
    fn stopped(report: Report, err: anyhow::Error) -> Ran {
        let failure = Failure::new(crate::domain::outcome_of(&err), one_line(&err));
        Ran::fail(report, failure)
    }
}

/// Runs the release; never returns without a report.
pub async fn run<G: EnvGateway>(
    ctx: &Context<'_, G>,
    intent: &Intent,
    opts: &Options,
    interrupt: &Interrupt,
) -> Ran {
    let mut report = Report::new(&ctx.config.app, &ctx.env.name, intent);
    if opts.gitops.pull_request && ctx.env.gitops.is_none() {
        let why = format!(
            "--pull-request pushes a GitOps release for review, and environment `{}` has no `gitops:`; drop the flag",
            ctx.env.name
        );
        return Ran::fail(report, Failure::invalid(why));
    }
    // Each run judges the approvals as they are now (a run waiting for approvals runs again).
    ctx.gate.forget_approvals();
    let created_namespace = match create_namespace(ctx, intent, opts).await {
        Ok(created) => created,
        Err(e) => return Ran::stopped(report, e),
    };
    if created_namespace {
        report
            .warnings
            .push(format!("created namespace {}", ctx.namespace));
    }
    // A dry run changes nothing, so it needs no lock.
    if !opts.dry_run
        && let Err(e) = ctx.gateway.lock(&ctx.holder).await
    {
        return Ran::stopped(report, e);
    }
    let carried = if ctx.env.gitops.is_some() {
        super::gitops::locked(ctx, intent, opts, interrupt, report.clone()).await
    } else {
        locked(ctx, intent, opts, interrupt, report.clone()).await
    };
    let mut ran = match carried {
        Ok(ran) => ran,
        Err(e) => Ran::stopped(report, e),
    };
    if !opts.dry_run {
        ctx.gateway.unlock().await;
    }
    // A release that stopped before its record (denied, invalid) changes nothing: not even the
    // namespace it created to hold its lock.
    if created_namespace && ran.report.revision.is_none() {
        match ctx.gateway.delete_namespace().await {
            Ok(()) => ran
                .report
                .warnings
                .retain(|w| !w.starts_with("created namespace")),
            Err(e) => ran.report.warnings.push(format!(
                "could not delete namespace {} again, which this release created: {}",
                ctx.namespace,
                one_line(&e)
            )),
        }
    }
    ran
}

/// The lock and the records live in the namespace: an environment with `createNamespace`
/// gets it before either. True when this run created it.
async fn create_namespace<G: EnvGateway>(
    ctx: &Context<'_, G>,
    intent: &Intent,
    opts: &Options,
) -> Result<bool> {
    let wanted = ctx
        .env
        .manifests
        .as_ref()
        .is_some_and(|m| m.create_namespace);
    if opts.dry_run || intent.manifests.is_none() || !wanted {
        return Ok(false);
    }
    ctx.gateway.ensure_namespace().await
}

/// Everything before the first change: an error here leaves the cluster as it was.
async fn locked<G: EnvGateway>(
    ctx: &Context<'_, G>,
    intent: &Intent,
    opts: &Options,
    interrupt: &Interrupt,
    mut report: Report,
) -> Result<Ran> {
    let snapshot = ctx.gateway.snapshot().await?;
    let history = ctx.gateway.history().await?;
    let staged = match &intent.manifests {
        Some(desired) => {
            report.warnings.extend(desired.warnings.iter().cloned());
            if let Err(failure) = check_generated(ctx, desired).await {
                return Ok(Ran::fail(report, failure));
            }
            match stage(ctx, desired, opts).await {
                Ok(staged) => Some(staged),
                Err(e) => return Ok(Ran::stopped(report, e)),
            }
        }
        None => None,
    };
    let changes = match &staged {
        Some(staged) => staged.container_changes(&ctx.config.image),
        None => match plan_changes(ctx, intent, &snapshot.workloads) {
            Ok(changes) => changes,
            Err(failure) => return Ok(Ran::fail(report, failure)),
        },
    };
    let digest = staged.as_ref().map(|s| s.digest.as_str());
    let abandoned = record::abandoned(&history, &ctx.holder);
    let resumed = abandoned
        .first()
        .filter(|r| {
            record::resumes(r, &changes)
                && r.manifests.as_ref().map(|m| m.digest.as_str()) == digest
        })
        .map(|r| (*r).clone());
    if !opts.dry_run {
        for stale in abandoned
            .iter()
            .filter(|r| Some(r.revision) != resumed.as_ref().map(|r| r.revision))
        {
            report
                .warnings
                .extend(journal::close_abandoned(&ctx.gateway, stale, &ctx.holder).await);
        }
    }
    // A resumed release keeps the record's `before` images: the truth about what it replaced.
    let planned = resumed
        .as_ref()
        .map_or(changes.clone(), |r| r.containers.clone());
    report = report.with_changes(planned.clone());
    if let Some(staged) = &staged {
        report.objects = staged.changes();
        report.manifests_digest = Some(staged.digest.clone());
    }
    let config_unchanged = staged.as_ref().is_none_or(Staged::unchanged);
    if resumed.is_none() && plan::is_noop(&changes) && config_unchanged {
        return Ok(Ran::ok(report, Outcome::Unchanged));
    }
    let revision = resumed
        .as_ref()
        .map_or(next_revision(&history), |r| r.revision);
    let job_context = jobs::JobContext {
        config: ctx.config,
        environment: &ctx.env.name,
        revision,
        changes: &planned,
        history: &history,
        manifests_digest: digest,
        rerun: opts.rerun_jobs,
    };
    let jobs = match jobs::plan(&job_context, intent.manifests.as_ref()) {
        Ok(jobs) => jobs,
        Err(failure) => return Ok(Ran::fail(report, failure)),
    };
    report.jobs = jobs.skipped.clone();
    let seen = Seen {
        snapshot: &snapshot,
        history: &history,
        staged: staged.as_ref(),
        jobs: &jobs,
    };
    let pre = judge(
        ctx,
        intent,
        pre_phase(intent.kind),
        revision,
        &planned,
        &seen,
    )
    .await?;
    if let Some(denied) = take_judgement(&mut report, &pre) {
        return Ok(denied);
    }
    if opts.dry_run {
        report.jobs = jobs.planned();
        return Ok(Ran::ok(report, Outcome::Planned));
    }
    report.revision = Some(revision);
    let journal = match resumed {
        Some(record) => Journal::adopt(&ctx.gateway, record, &ctx.holder).await?,
        None => {
            let mut record = new_record(ctx, intent, revision, &planned, &report);
            record.manifests = staged.as_ref().map(Staged::record);
            record.jobs = jobs.skipped.clone();
            Journal::begin(&ctx.gateway, record).await?
        }
    };
    let step = Step {
        ctx,
        intent,
        opts,
        interrupt,
        seen,
    };
    Ok(step.carry_out(journal, &changes, report).await)
}

/// With a generator mandated by the cluster policy, the release's manifests must be its output.
async fn check_generated<G>(
    ctx: &Context<'_, G>,
    desired: &manifests::Desired,
) -> Result<(), Failure> {
    let Some(mandated) = ctx.gate.mandated_generator().cloned() else {
        return Ok(());
    };
    let (cfg, env, files) = (ctx.config.clone(), ctx.env.clone(), desired.files.clone());
    tokio::task::spawn_blocking(move || generated::check(&mandated, &cfg, &env, files.as_ref()))
        .await
        .unwrap_or_else(|e| {
            Err(Failure::new(
                Outcome::Error,
                format!("the generator's thread failed: {e}"),
            ))
        })
}

/// Puts the pre-phase's verdicts, the approvals that counted and the warnings into the report;
/// the release's end when the hooks denied it (or wait for approvals).
pub(super) fn take_judgement(report: &mut Report, pre: &Judgement) -> Option<Ran> {
    report.hooks = pre.verdicts.clone();
    report.approvals = crate::domain::approvals::valid_approvals(
        &pre.approvals,
        &report.digests,
        jiff::Timestamp::now(),
    );
    report.warnings.extend(pre.warnings(true));
    pre.denied()
        .then(|| Ran::fail(report.clone(), pre.failure()))
}

/// The manifests checked and dry-run against the environment.
async fn stage<G: EnvGateway>(
    ctx: &Context<'_, G>,
    desired: &manifests::Desired,
    opts: &Options,
) -> Result<Staged> {
    let allowed = ctx
        .env
        .manifests
        .as_ref()
        .map(|m| m.allowed)
        .unwrap_or_default();
    manifests::stage(
        &ctx.gateway,
        desired,
        &ctx.namespace,
        allowed,
        opts.force_conflicts,
    )
    .await
}

/// The changes the intent asks of the workloads found, or why it cannot be planned.
fn plan_changes<G>(
    ctx: &Context<'_, G>,
    intent: &Intent,
    workloads: &[Workload],
) -> Result<Vec<ContainerChange>, Failure> {
    let cfg = ctx.config;
    if workloads.is_empty() {
        return Err(Failure::invalid(format!(
            "no Deployment, StatefulSet, DaemonSet or CronJob in namespace `{}` has a container from {}; \
             create the app's workloads there first (kubectl apply), or check `namespace` and `image` in {}",
            ctx.namespace,
            cfg.image,
            cfg.path.display()
        )));
    }
    match &intent.wanted {
        Wanted::Digest(digest) => Ok(plan::deploy_all(workloads, &cfg.image, digest)),
        Wanted::Exact(images) => {
            plan::exact(workloads, &cfg.image, images).map_err(Failure::invalid)
        }
    }
}

pub(super) fn pre_phase(kind: ReleaseKind) -> Phase {
    match kind {
        ReleaseKind::Deploy => Phase::PreDeploy,
        ReleaseKind::Promote => Phase::PrePromote,
        ReleaseKind::Rollback => Phase::PreRollback,
    }
}

/// What the release read and planned, before its first change: what hooks are shown and
/// what the steps after the journal work from.
#[derive(Clone, Copy)]
pub(super) struct Seen<'r> {
    pub snapshot: &'r EnvSnapshot,
    pub history: &'r [Release],
    /// The manifests, for an environment that has them.
    pub staged: Option<&'r Staged>,
    pub jobs: &'r Jobs,
}

/// Runs `phase`'s hooks over what the release read.
pub(super) async fn judge<G>(
    ctx: &Context<'_, G>,
    intent: &Intent,
    phase: Phase,
    revision: u64,
    changes: &[ContainerChange],
    seen: &Seen<'_>,
) -> Result<Judgement> {
    let Seen {
        snapshot,
        history,
        staged,
        jobs,
    } = *seen;
    let objects: Vec<serde_json::Value> = staged
        .map(|s| {
            s.objects
                .iter()
                .map(|o| o.manifest.object.clone())
                .collect()
        })
        .unwrap_or_default();
    // With manifests, the workloads hooks judge are the set's (new ones included), as merged.
    let set_workloads: Vec<Workload> = staged
        .map(|s| {
            s.objects
                .iter()
                .filter_map(|o| manifests::as_workload(&o.manifest.id(), &o.merged))
                .collect()
        })
        .unwrap_or_default();
    let workloads = if staged.is_some() {
        &set_workloads
    } else {
        &snapshot.workloads
    };
    let facts = Facts {
        phase,
        app: &ctx.config.app,
        actor: &ctx.actor,
        now: jiff::Timestamp::now(),
        kind: intent.kind,
        revision,
        commit: intent.commit.as_ref(),
        target: &ctx.env.name,
        namespace: &ctx.namespace,
        source_environment: intent.source_environment.as_deref(),
        forced_source: intent.forced_source,
        changes,
        workloads,
        environments: intent.seen.clone(),
        approvals: Vec::new(),
        history,
        objects,
        jobs: jobs.run.iter().map(|j| j.object.clone()).collect(),
    };
    let target = TargetState {
        workloads: &snapshot.workloads,
        pods: &snapshot.pods,
    };
    ctx.gate.judge(facts, target).await
}

pub(super) fn new_record<G>(
    ctx: &Context<'_, G>,
    intent: &Intent,
    revision: u64,
    planned: &[ContainerChange],
    report: &Report,
) -> Release {
    Release {
        revision,
        app: ctx.config.app.clone(),
        environment: ctx.env.name.clone(),
        kind: intent.kind,
        commit: intent.commit.clone(),
        image_tag: intent.image_tag.clone(),
        branch: intent.branch.clone(),
        containers: planned.to_vec(),
        actor: ctx.actor.clone(),
        started_at: jiff::Timestamp::now().to_string(),
        finished_at: String::new(),
        outcome: Outcome::InProgress,
        source_environment: intent.source_environment.clone(),
        source_revision: intent.source_revision,
        restored_revision: intent.restored_revision,
        lock_holder: ctx.holder.clone(),
        applied: Vec::new(),
        hooks: report.hooks.clone(),
        warnings: Vec::new(),
        message: String::new(),
        manifests: None,
        applied_objects: Vec::new(),
        jobs: Vec::new(),
        gitops: None,
    }
}

/// How waiting for the rollout ended, when it did not succeed.
enum Ending {
    Failed(String),
    TimedOut(String),
    Interrupted,
    /// The lock could not be renewed: another run may hold it now.
    LockLost,
}

/// The steps after the journal has begun: each one finishes it.
struct Step<'s, 'c, G> {
    ctx: &'s Context<'c, G>,
    intent: &'s Intent,
    opts: &'s Options,
    interrupt: &'s Interrupt,
    seen: Seen<'s>,
}

impl<G: EnvGateway> Step<'_, '_, G> {
    async fn carry_out(
        &self,
        mut journal: Journal<'_, G>,
        changes: &[ContainerChange],
        report: Report,
    ) -> Ran {
        let record = journal.record.clone();
        let stamp = Stamp {
            app: record.app.clone(),
            revision: record.revision,
            commit: record.commit.as_ref().map(ToString::to_string),
            image_tag: record.image_tag.clone(),
            environment: record.environment.clone(),
        };
        let mut report = report;
        if let Some((outcome, what)) = self
            .run_jobs(JobPhase::PreDeploy, &mut journal, &mut report)
            .await
        {
            // Nothing was changed yet: the release ends here, its workloads untouched.
            return self
                .end_with_undo(
                    journal,
                    report,
                    outcome,
                    what,
                    &[],
                    false,
                    "no workload was changed",
                )
                .await;
        }
        let gateway = &self.ctx.gateway;
        let applied = match self.seen.staged {
            Some(staged) => {
                let force = self.opts.force_conflicts;
                apply::apply_set(&mut journal, gateway, staged, &stamp, force, self.interrupt).await
            }
            None => {
                apply::apply_all(
                    &mut journal,
                    gateway,
                    &self.seen.snapshot.workloads,
                    changes,
                    &stamp,
                    self.interrupt,
                )
                .await
            }
        };
        let patched = match applied {
            Ok(patched) => patched,
            Err((stopped, patched)) => {
                return self
                    .stopped_part_way(journal, report, stopped, &patched)
                    .await;
            }
        };
        let progress = Progress::new();
        progress.say(&format!(
            "{} {} to {}: revision {}, waiting for the rollout",
            verb(self.intent.kind),
            self.ctx.config.app,
            self.ctx.env.name,
            record.revision
        ));
        match self.wait(&patched, &record.containers, &progress).await {
            Ok(notes) => {
                let mut report = report;
                report.warnings.extend(notes);
                match self
                    .run_jobs(JobPhase::PostDeploy, &mut journal, &mut report)
                    .await
                {
                    None => self.succeeded(journal, report).await,
                    // Verification failed: the release fails, undone with --atomic.
                    Some((outcome, what)) => {
                        let advice = "not rolled back (use --atomic or `atomic: true` to restore the previous release when verification fails)";
                        let undo = self.opts.atomic;
                        self.end_with_undo(journal, report, outcome, what, &patched, undo, advice)
                            .await
                    }
                }
            }
            Err(ending) => self.rollout_ended(journal, report, ending, &patched).await,
        }
    }

    /// Waits for the rollout, the timeout, a signal or the loss of the lock, whichever comes
    /// first; returns notes on workloads complete without their pods changing.
    async fn wait(
        &self,
        patched: &[Workload],
        planned: &[ContainerChange],
        progress: &Progress,
    ) -> Result<Vec<String>, Ending> {
        let images = plan::new_images(planned);
        let timeout = self.opts.timeout;
        tokio::select! {
            waited = self.ctx.gateway.wait(patched, &images, timeout, progress) => waited.map_err(|f| match f {
                WaitFailure::TimedOut { .. } => Ending::TimedOut(apply::describe_wait_failure(&f, timeout)),
                WaitFailure::Failed { .. } => Ending::Failed(apply::describe_wait_failure(&f, timeout)),
            }),
            () = self.interrupt.wait() => Err(Ending::Interrupted),
            () = self.ctx.gateway.lock_lost_wait() => Err(Ending::LockLost),
        }
    }

    async fn succeeded(&self, mut journal: Journal<'_, G>, mut report: Report) -> Ran {
        let revision = journal.record.revision;
        let planned = journal.record.containers.clone();
        // Post-deploy hooks report; they cannot undo what is done, and their errors never hide
        // a rollout that succeeded.
        if let Some(staged) = self.seen.staged {
            report
                .warnings
                .extend(apply::prune(&self.ctx.gateway, staged).await);
        }
        match judge(
            self.ctx,
            self.intent,
            Phase::PostDeploy,
            revision,
            &planned,
            &self.seen,
        )
        .await
        {
            Ok(post) => {
                report.warnings.extend(post.warnings(false));
                report.hooks.extend(post.verdicts);
            }
            Err(e) => report
                .warnings
                .push(format!("post-deploy hooks could not run: {}", one_line(&e))),
        }
        journal
            .finish(Outcome::Succeeded, "", &report.hooks, &report.warnings)
            .await;
        report.warnings.extend(journal.problems.iter().cloned());
        self.prune(revision).await;
        Ran::ok(report, Outcome::Succeeded)
    }

    /// Keeps the newest `historyLimit` records, from what the release read and wrote.
    async fn prune(&self, revision: u64) {
        let mut revisions: Vec<u64> = self.seen.history.iter().map(|r| r.revision).collect();
        revisions.push(revision);
        revisions.sort_unstable_by(|a, b| b.cmp(a));
        revisions.dedup();
        let keep = self.ctx.config.history_limit.max(1);
        self.ctx.gateway.prune_records(&revisions, keep).await;
        // The Jobs of releases whose records are gone go with them (an app without Jobs is
        // spared the listing).
        let has_jobs = !self.seen.jobs.run.is_empty() || !self.seen.jobs.skipped.is_empty();
        if has_jobs && let Some(&oldest_kept) = revisions.iter().take(keep).next_back() {
            self.ctx.gateway.prune_jobs(oldest_kept).await;
        }
    }

    /// Runs `phase`'s Jobs one after another, each noted in the journal and the report as it
    /// ends; stops at the first that does not succeed and says how it ended.
    async fn run_jobs(
        &self,
        phase: JobPhase,
        journal: &mut Journal<'_, G>,
        report: &mut Report,
    ) -> Option<(Outcome, String)> {
        for job in self.seen.jobs.of(phase) {
            let progress = Progress::new();
            let ended = tokio::select! {
                end = self.ctx.gateway.run_job(job, &progress) => Some(end),
                () = self.interrupt.wait() => None,
            };
            let (outcome, reason, log_tail) = match ended {
                Some(Ok(end)) => (end.outcome, end.reason, end.log_tail),
                Some(Err(e)) => (JobOutcome::Failed, one_line(&e), Vec::new()),
                None => (
                    JobOutcome::Interrupted,
                    format!(
                        "a signal arrived while it ran; the Job is left running (a migration may be half-way): kubectl -n {} logs job/{}",
                        self.ctx.namespace,
                        job.job_name()
                    ),
                    Vec::new(),
                ),
            };
            let run = JobRun {
                name: job.name.clone(),
                phase,
                job: job.job_name().to_string(),
                outcome,
                reason,
                log_tail,
                ran_in: None,
            };
            report.jobs.push(run.clone());
            journal.job(run.clone()).await;
            let release_outcome = match run.outcome {
                JobOutcome::Succeeded => continue,
                JobOutcome::TimedOut => Outcome::TimedOut,
                JobOutcome::Interrupted => Outcome::Interrupted,
                _ => Outcome::Failed,
            };
            return Some((release_outcome, jobs::describe(&run)));
        }
        None
    }

    /// The wait ended without success: undo when atomic (or interrupted and atomic), record.
    async fn rollout_ended(
        &self,
        journal: Journal<'_, G>,
        report: Report,
        ending: Ending,
        patched: &[Workload],
    ) -> Ran {
        if let Ending::LockLost = ending {
            return self
                .stopped_part_way(journal, report, Stopped::LockLost, patched)
                .await;
        }
        let atomic = self.opts.atomic;
        let (outcome, what) = match &ending {
            Ending::Failed(why) => (Outcome::Failed, why.clone()),
            Ending::TimedOut(why) => (Outcome::TimedOut, why.clone()),
            Ending::Interrupted | Ending::LockLost => (
                Outcome::Interrupted,
                "interrupted by a signal while waiting for the rollout".to_string(),
            ),
        };
        let advice = match ending {
            Ending::Interrupted | Ending::LockLost => {
                "not rolled back (with --atomic the previous images are restored on a signal)"
            }
            _ => {
                "not rolled back (use --atomic or `atomic: true` to restore the previous images on failure)"
            }
        };
        self.end_with_undo(journal, report, outcome, what, patched, atomic, advice)
            .await
    }

    /// Applying stopped part-way: a refused patch is always undone (a half-changed app is
    /// nobody's plan), a signal only with --atomic.
    async fn stopped_part_way(
        &self,
        journal: Journal<'_, G>,
        report: Report,
        stopped: Stopped,
        patched: &[Workload],
    ) -> Ran {
        match stopped {
            Stopped::Refused { object, reason } => {
                let what = format!("{object} could not be changed: {reason}");
                self.end_with_undo(journal, report, Outcome::Failed, what, patched, true, "")
                    .await
            }
            Stopped::Interrupted => {
                let what = "interrupted by a signal while changing workloads".to_string();
                let advice =
                    "not rolled back (with --atomic the previous images are restored on a signal)";
                self.end_with_undo(
                    journal,
                    report,
                    Outcome::Interrupted,
                    what,
                    patched,
                    self.opts.atomic,
                    advice,
                )
                .await
            }
            Stopped::LockLost => {
                let what = "stopped before changing more: the release lock could not be renewed, so another run may hold it".to_string();
                self.end_with_undo(
                    journal,
                    report,
                    Outcome::Interrupted,
                    what,
                    patched,
                    false,
                    "nothing was restored (it is no longer this run's to change)",
                )
                .await
            }
        }
    }

    /// Finishes a release that did not succeed: restores `patched` when `undo`, records the
    /// outcome (`rolled-back` once the previous images run again) and says why.
    #[allow(clippy::too_many_arguments)]
    async fn end_with_undo(
        &self,
        mut journal: Journal<'_, G>,
        mut report: Report,
        outcome: Outcome,
        what: String,
        patched: &[Workload],
        undo: bool,
        advice: &str,
    ) -> Ran {
        let changed_any = !patched.is_empty() || !journal.record.applied_objects.is_empty();
        let (recorded, note) = if undo && changed_any {
            Progress::new().say(&format!("{what}; restoring the previous images"));
            let planned = journal.record.containers.clone();
            let restored = match self.seen.staged {
                Some(staged) => {
                    let applied = &journal.record.applied_objects;
                    apply::undo_set(&self.ctx.gateway, staged, applied, self.opts.timeout).await
                }
                None => {
                    apply::undo(
                        &self.ctx.gateway,
                        patched,
                        &planned,
                        &self.previous_stamp(),
                        self.opts.timeout,
                    )
                    .await
                }
            };
            match restored {
                Ok(()) => (
                    Outcome::RolledBack,
                    "rolled back: the previous images are running again".to_string(),
                ),
                Err(why) => (
                    outcome,
                    format!(
                        "the previous images could not be restored either ({why}); check the workloads"
                    ),
                ),
            }
        } else if undo {
            (outcome, "nothing had been changed".to_string())
        } else {
            (outcome, advice.to_string())
        };
        let message = format!("{what}; {note}");
        journal
            .finish(recorded, &message, &report.hooks, &report.warnings)
            .await;
        report.warnings.extend(journal.problems.iter().cloned());
        report.message = format!(
            "{} {} to {} revision {}: {message}",
            verb(self.intent.kind),
            self.ctx.config.app,
            self.ctx.env.name,
            journal.record.revision
        );
        report.outcome = recorded;
        self.prune(journal.record.revision).await;
        // A timeout stays a timeout for the exit code, whatever the undo did.
        let exit_outcome = if outcome == Outcome::TimedOut {
            outcome
        } else {
            recorded
        };
        let failure = Failure::new(exit_outcome, report.message.clone());
        Ran {
            report,
            end: Err(failure),
        }
    }

    /// The annotations an undo writes: the newest earlier release's.
    fn previous_stamp(&self) -> Stamp {
        let this = self
            .seen
            .history
            .iter()
            .find(|r| r.outcome != Outcome::InProgress);
        Stamp {
            app: self.ctx.config.app.clone(),
            revision: this.map_or(0, |r| r.revision),
            commit: this.and_then(|r| r.commit.as_ref().map(ToString::to_string)),
            image_tag: None,
            environment: self.ctx.env.name.clone(),
        }
    }
}

pub(super) fn verb(kind: ReleaseKind) -> &'static str {
    match kind {
        ReleaseKind::Deploy => "deploying",
        ReleaseKind::Promote => "promoting",
        ReleaseKind::Rollback => "rolling back",
    }
}
