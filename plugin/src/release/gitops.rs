//! A release into a GitOps environment: resolved, locked, judged and journaled exactly as a
//! direct one, but its change is one commit in the deployment repository — the digests written
//! into the environment's directory there — which the repository's controller (Argo CD, Flux)
//! applies. `--wait` then follows the cluster until it runs them.
//!
//! ```text
//! lock → read (the process's clone of the branch, fetched; render the path) → plan against
//!      Git → (unchanged) → edit the directory, render it again unless the result is known
//!      → pre-hooks → journal begin → commit, push (rebase and retry)
//!      ─(denied, dry run)→ the edit put back
//!      ─(refused)→ failed, nothing pushed
//!      → [--wait: the controller applies, the rollout completes] → committed | succeeded
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Result;
use hooks_sdk::helpers::ImageRef;

use super::engine::{Ran, Seen, judge, new_record, pre_phase, take_judgement, verb};
use super::journal::{self, Journal};
use super::{Context, Intent, Interrupt, Options, Report, Wanted, jobs, manifests};
use crate::artifacts::gitops::{Author, Pushed, Workdir};
use crate::artifacts::gitops_clones::{Claim, Clones, SharedClone};
use crate::artifacts::manifests::build_kustomization;
use crate::cluster::{EnvGateway, WaitFailure};
use crate::config::ReleaseConfig;
use crate::config::gitops::Gitops;
use crate::domain::gitops::{self as edit, ImageEdit, ReleaseTrailers};
use crate::domain::manifest;
use crate::domain::record::{self, RecordedGitops, next_revision};
use crate::domain::{ContainerChange, Failure, Outcome, Release, Workload, plan};
use crate::progress::Progress;

/// How many times a push is tried when the branch keeps moving under it: enough for dozens of
/// apps promoted into one repository at once (each rebase takes milliseconds), few enough that
/// a branch that never settles is an error soon.
const PUSH_ATTEMPTS: u32 = 10;
/// How far back `history` and the settling of a dead run look in the path's commits.
pub const HISTORY_DEPTH: usize = 200;

const KUSTOMIZATION_FILES: [&str; 3] = ["kustomization.yaml", "kustomization.yml", "Kustomization"];

/// The environment's directory as the branch has it, claimed in this process's clone.
pub struct Checkout {
    claim: Claim,
    pub gitops: Gitops,
    /// The kustomization file, when the directory is one.
    kustomization: Option<PathBuf>,
    /// The directory's own manifest files otherwise.
    files: Vec<PathBuf>,
    /// The workloads the directory renders to.
    pub workloads: Vec<Workload>,
}

/// How a release gets its clone of the deployment repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloneKind {
    /// The process's shared clone of the branch (whatever lands on the branch).
    Shared,
    /// A clone of its own: a `--pull-request` commit must never sit on a shared branch.
    Private,
}

impl Checkout {
    pub fn workdir(&self) -> &Workdir {
        self.claim.shared().workdir()
    }

    fn shared(&self) -> &SharedClone {
        self.claim.shared()
    }

    /// The images of `image`'s repository that the directory's containers run, as rendered.
    pub fn images_of(&self, image: &str) -> Vec<String> {
        self.workloads
            .iter()
            .flat_map(Workload::containers)
            .map(|c| c.image)
            .filter(|i| ImageRef::parse(i).repository == image)
            .collect()
    }

    /// `repo:path@branch`, for messages.
    pub fn label(&self) -> String {
        format!(
            "{}:{} (branch {})",
            self.workdir().url(),
            self.gitops.path.display(),
            self.gitops.branch
        )
    }

    pub fn recorded(&self, commit: Option<String>, review: Option<String>) -> RecordedGitops {
        RecordedGitops {
            repo: self.workdir().url().to_string(),
            branch: self.gitops.branch.clone(),
            path: self.gitops.path.display().to_string(),
            commit,
            review_branch: review,
        }
    }
}

/// Checks the branch out (the shared clone, caught up, unless `kind` or another release of
/// this process editing the same directory asks for a private one) and renders the
/// environment's directory (blocking: run it on a blocking thread). Every problem is the
/// user's to fix and changes nothing: an `invalid` failure.
pub fn read(gitops: &Gitops, clones: &Clones, kind: CloneKind) -> Result<Checkout, Failure> {
    let invalid = |e: crate::artifacts::gitops::GitError| Failure::invalid(e.to_string());
    let private = || -> Result<Claim, Failure> {
        let own = SharedClone::new(Workdir::clone(&gitops.repo, &gitops.branch).map_err(invalid)?);
        Ok(own.claim(&gitops.path).expect("a new clone has no claims"))
    };
    let claim = match kind {
        CloneKind::Private => private()?,
        CloneKind::Shared => {
            let shared = clones
                .checkout(&gitops.repo, &gitops.branch)
                .map_err(invalid)?;
            match shared.claim(&gitops.path) {
                Some(claim) => claim,
                None => private()?,
            }
        }
    };
    let (kustomization, files) = {
        let _reading = claim.shared().reading();
        list_directory(claim.shared().workdir(), gitops)?
    };
    let mut checkout = Checkout {
        claim,
        gitops: gitops.clone(),
        kustomization,
        files,
        workloads: Vec::new(),
    };
    let workloads = {
        let _reading = checkout.shared().reading();
        rendered(&checkout)?
    };
    checkout.workloads = workloads;
    Ok(checkout)
}

/// The directory's kustomization, or else its own manifest files.
fn list_directory(
    workdir: &Workdir,
    gitops: &Gitops,
) -> Result<(Option<PathBuf>, Vec<PathBuf>), Failure> {
    let dir = &gitops.path;
    let label = format!(
        "{}:{} (branch {})",
        workdir.url(),
        dir.display(),
        gitops.branch
    );
    if !workdir.is_dir(dir) {
        return Err(Failure::invalid(format!(
            "{label} is not a directory: commit the environment's kustomization or manifests there, or fix `gitops.path`"
        )));
    }
    let mut names: Vec<String> = std::fs::read_dir(workdir.root().join(dir))
        .map_err(|e| Failure::invalid(format!("cannot read {label}: {e}")))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    names.sort();
    let kustomization = names
        .iter()
        .find(|n| KUSTOMIZATION_FILES.contains(&n.as_str()))
        .map(|n| dir.join(n));
    let files: Vec<PathBuf> = names
        .iter()
        .filter(|n| n.ends_with(".yaml") || n.ends_with(".yml"))
        .map(|n| dir.join(n))
        .collect();
    Ok((kustomization, files))
}

fn parse(file: &str, text: &str) -> Result<Vec<manifest::Manifest>, Failure> {
    manifest::parse(file, text)
        .map_err(|e| Failure::invalid(format!("{e}; fix it in the deployment repository")))
}

fn read_file(workdir: &Workdir, file: &Path) -> Result<String, Failure> {
    workdir
        .read(file)
        .map_err(|e| Failure::invalid(e.to_string()))?
        .ok_or_else(|| Failure::invalid(format!("{} vanished from the clone", file.display())))
}

/// The changes the intent asks of the workloads the directory renders.
pub fn plan(
    checkout: &Checkout,
    cfg: &ReleaseConfig,
    wanted: &Wanted,
) -> Result<Vec<ContainerChange>, Failure> {
    let changes = match wanted {
        Wanted::Digest(digest) => plan::deploy_all(&checkout.workloads, &cfg.image, digest),
        Wanted::Exact(images) => {
            plan::exact(&checkout.workloads, &cfg.image, images).map_err(Failure::invalid)?
        }
    };
    if changes.is_empty() {
        return Err(Failure::invalid(format!(
            "{} has no Deployment, StatefulSet, DaemonSet or CronJob with a container from {}: \
             add the app's workloads there, or check `image` in {}",
            checkout.label(),
            cfg.image,
            cfg.path.display()
        )));
    }
    Ok(changes)
}

/// The one digest the release pins the app's image to: a kustomization pins one per image name.
fn the_digest(changes: &[ContainerChange]) -> Result<String, Failure> {
    let mut digests: Vec<&str> = changes.iter().map(ContainerChange::digest).collect();
    digests.sort_unstable();
    digests.dedup();
    match digests.as_slice() {
        [one] if !one.is_empty() => Ok((*one).to_string()),
        _ => Err(Failure::invalid(format!(
            "the release would pin the app's image to {} digests ({}); a GitOps environment pins one digest per image: \
             promote from an environment that runs one",
            digests.len(),
            digests.join(", ")
        ))),
    }
}

/// The release's edit of its directory, in the clone's work tree and not yet committed.
#[derive(Debug)]
pub struct Staged {
    /// The files changed.
    pub touched: Vec<PathBuf>,
    /// Whether [`push`] took it: pushed, or put back after a failed push.
    settled: AtomicBool,
}

impl Staged {
    fn new(touched: Vec<PathBuf>) -> Staged {
        Staged {
            touched,
            settled: AtomicBool::new(false),
        }
    }

    pub fn is_settled(&self) -> bool {
        self.settled.load(Ordering::SeqCst)
    }
}

/// Writes the digest into the clone's directory and checks that it renders as planned
/// (blocking). Nothing leaves the clone: a problem here is the user's to fix, an `invalid`
/// failure before the release is journaled, and leaves the directory as it was.
pub fn stage(
    checkout: &Checkout,
    cfg: &ReleaseConfig,
    changes: &[ContainerChange],
) -> Result<Staged, Failure> {
    let digest = the_digest(changes)?;
    let verified = {
        let _reading = checkout.shared().reading();
        let predictable = pins_predictably(checkout, &cfg.image);
        let touched = edit_directory(checkout, &cfg.image, &digest)?;
        if touched.is_empty() {
            return Err(Failure::invalid(format!(
                "{} has no image field of {} to pin and no kustomization: nothing to write",
                checkout.label(),
                cfg.image
            )));
        }
        // A second `kubectl kustomize` is most of a release's own work; where the edit's effect
        // is known without it, it is not run.
        let checked = if predictable {
            Ok(())
        } else {
            verify(checkout, cfg, &digest)
        };
        (Staged::new(touched), checked)
    };
    match verified {
        (staged, Ok(())) => Ok(staged),
        (staged, Err(failure)) => {
            discard(checkout, &staged);
            Err(failure)
        }
    }
}

/// Puts the staged files back as the branch has them (blocking): the release stopped before
/// its push. A failure is logged: the clone is temporary.
pub fn discard(checkout: &Checkout, staged: &Staged) {
    let _writing = checkout.shared().writing();
    if let Err(e) = checkout.workdir().restore(&staged.touched) {
        tracing::warn!(error = %e, "cannot restore the clone's staged files");
    }
}

/// Commits the staged files with the trailers and pushes (blocking): to the environment's
/// branch, or with `review` to that new branch. A refusal is a `failed` release with nothing
/// pushed, and the clone is left as the branch has it.
pub fn push(
    checkout: &Checkout,
    staged: &Staged,
    message: &str,
    review: Option<&str>,
) -> Result<Pushed, Failure> {
    let author = Author {
        name: checkout.gitops.author_name.clone(),
        email: checkout.gitops.author_email.clone(),
    };
    let failed = |e: crate::artifacts::gitops::GitError| {
        let words = e.to_string();
        if words.contains("nothing was pushed") {
            Failure::new(Outcome::Failed, words)
        } else {
            Failure::new(Outcome::Failed, format!("{words}; nothing was pushed"))
        }
    };
    // The releases of this process take turns to commit and push through the clone: each one
    // pushes onto the last, so in one process nobody races. Other processes still race, and
    // the push rebases onto them.
    let _writing = checkout.shared().writing();
    staged.settled.store(true, Ordering::SeqCst);
    let workdir = checkout.workdir();
    let mut committed = false;
    let pushed = workdir
        .commit(&staged.touched, message, &author)
        .and_then(|_| {
            committed = true;
            match review {
                Some(branch) => workdir.push_new_branch(branch),
                None => workdir.push(PUSH_ATTEMPTS),
            }
        });
    if pushed.is_err() {
        // What did not land must not stay on the clone's branch for the next release to push.
        if committed && let Err(e) = workdir.uncommit() {
            tracing::warn!(error = %e, "cannot take back the commit that was not pushed");
        }
        if let Err(e) = workdir.restore(&staged.touched) {
            tracing::warn!(error = %e, "cannot restore the clone's staged files");
        }
    }
    pushed.map_err(failed)
}

/// Edits the kustomization's `images:` (or the manifests' image fields), keeping everything
/// else as written; returns the files changed.
fn edit_directory(checkout: &Checkout, image: &str, digest: &str) -> Result<Vec<PathBuf>, Failure> {
    let workdir = checkout.workdir();
    if let Some(file) = &checkout.kustomization {
        let text = read_file(workdir, file)?;
        let edited = edit::set_kustomization_image(&text, image, digest)
            .map_err(|e| Failure::invalid(format!("{}: {e}", file.display())))?;
        return match edited {
            ImageEdit::Changed(new) | ImageEdit::Added(new) => {
                workdir
                    .write(file, &new)
                    .map_err(|e| Failure::invalid(e.to_string()))?;
                Ok(vec![file.clone()])
            }
            ImageEdit::Unchanged => Ok(Vec::new()),
        };
    }
    let pinned = ImageRef::pinned(image, digest);
    let mut touched = Vec::new();
    for file in &checkout.files {
        let text = read_file(workdir, file)?;
        let (new, count) = edit::set_manifest_images(&text, image, &pinned);
        if count > 0 {
            workdir
                .write(file, &new)
                .map_err(|e| Failure::invalid(e.to_string()))?;
            touched.push(file.clone());
        }
    }
    Ok(touched)
}

/// Whether pinning `image` in the directory's kustomization is known to pin exactly the app's
/// containers as they rendered, without rendering the edit (see [`edit::pin_is_predictable`]).
fn pins_predictably(checkout: &Checkout, image: &str) -> bool {
    let Some(file) = &checkout.kustomization else {
        return false;
    };
    let Ok(text) = read_file(checkout.workdir(), file) else {
        return false;
    };
    edit::pin_is_predictable(&text, image, &checkout.images_of(image))
}

/// The edited directory renders every app container on the digest, or nothing is committed.
fn verify(checkout: &Checkout, cfg: &ReleaseConfig, digest: &str) -> Result<(), Failure> {
    let again = rendered(checkout)?;
    let pinned = ImageRef::pinned(&cfg.image, digest);
    let missed: Vec<String> = plan::deploy_all(&again, &cfg.image, digest)
        .iter()
        .filter(|c| c.before != pinned)
        .map(|c| format!("{} container {}", c.workload, c.container))
        .collect();
    if missed.is_empty() {
        return Ok(());
    }
    Err(Failure::invalid(format!(
        "after pinning {} in {}, {} still run another image (an `images:` entry with `newName`, or an image field this \
         cannot edit); fix the directory so that {} names the app's image",
        cfg.image,
        checkout.label(),
        missed.join(", "),
        checkout
            .kustomization
            .as_ref()
            .map_or_else(|| "each manifest".to_string(), |k| k.display().to_string())
    )))
}

/// The workloads the directory renders to, as its files are now (the caller reads the tree).
fn rendered(checkout: &Checkout) -> Result<Vec<Workload>, Failure> {
    let workdir = checkout.workdir();
    let mut objects = Vec::new();
    if checkout.kustomization.is_some() {
        let label = checkout.label();
        let text = build_kustomization(&workdir.root().join(&checkout.gitops.path), &label)?;
        objects = parse(&format!("{label} (kustomize build)"), &text)?;
    } else {
        for file in &checkout.files {
            objects.extend(parse(
                &file.display().to_string(),
                &read_file(workdir, file)?,
            )?);
        }
    }
    Ok(objects
        .iter()
        .filter_map(|m| manifests::as_workload(&m.id(), &m.object))
        .collect())
}

/// The commit's trailers: what a machine reads back from the repository's history.
fn trailers(record: &Release, approvers: Vec<String>, digests: Vec<String>) -> ReleaseTrailers {
    ReleaseTrailers {
        app: record.app.clone(),
        environment: record.environment.clone(),
        revision: record.revision,
        kind: kind_word(record.kind).to_string(),
        commit: record.commit.as_ref().map(ToString::to_string),
        digests,
        approvers,
        source_environment: record.source_environment.clone(),
        actor: record.actor.user.clone(),
    }
}

/// `deploy`, `promote` or `rollback`, as trailers and subjects say it.
fn kind_word(kind: crate::domain::ReleaseKind) -> &'static str {
    match kind {
        crate::domain::ReleaseKind::Deploy => "deploy",
        crate::domain::ReleaseKind::Promote => "promote",
        crate::domain::ReleaseKind::Rollback => "rollback",
    }
}

/// The branch `--pull-request` pushes: named after the app, environment and revision.
pub fn review_branch(app: &str, env: &str, revision: u64) -> String {
    format!("kubectl-release/{app}/{env}/revision-{revision}")
}

/// Runs a blocking GitOps step on a blocking thread.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Failure> + Send + 'static,
) -> Result<T, Failure> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(Failure::new(
            Outcome::Error,
            format!("the git thread failed: {e}"),
        ))
    })
}

/// Everything of a GitOps release after the lock: as the engine's `locked`, with the push for
/// the patch.
pub(super) async fn locked<G: EnvGateway>(
    ctx: &Context<'_, G>,
    intent: &Intent,
    opts: &Options,
    interrupt: &Interrupt,
    mut report: Report,
) -> Result<Ran> {
    let Some(gitops) = ctx.env.gitops.clone() else {
        return Err(Failure::invalid("not a GitOps environment").into());
    };
    let snapshot = ctx.gateway.snapshot().await?;
    let history = ctx.gateway.history().await?;
    let clones = opts.gitops.clones.clone();
    let kind = if opts.gitops.pull_request {
        CloneKind::Private
    } else {
        CloneKind::Shared
    };
    let checkout = match blocking(move || read(&gitops, &clones, kind)).await {
        Ok(checkout) => Arc::new(checkout),
        Err(failure) => return Ok(Ran::fail(report, failure)),
    };
    let changes = match plan(&checkout, ctx.config, &intent.wanted) {
        Ok(changes) => changes,
        Err(failure) => return Ok(Ran::fail(report, failure)),
    };
    report = report.with_changes(changes.clone());
    report.gitops = Some(checkout.recorded(None, None));
    if !opts.dry_run {
        report
            .warnings
            .extend(settle_abandoned(ctx, &checkout, &history).await);
    }
    if plan::is_noop(&changes) {
        return Ok(Ran::ok(report, Outcome::Unchanged));
    }
    let staged = {
        let (checkout, cfg, planned) = (checkout.clone(), ctx.config.clone(), changes.clone());
        blocking(move || stage(&checkout, &cfg, &planned)).await
    };
    let staged = match staged {
        Ok(staged) => Arc::new(staged),
        Err(failure) => return Ok(Ran::fail(report, failure)),
    };
    let read = Read {
        checkout: &checkout,
        staged: &staged,
        snapshot: &snapshot,
        history: &history,
        changes: &changes,
    };
    let ran = judged_and_pushed(ctx, intent, opts, interrupt, report, &read).await;
    // A release that stopped before its push (denied, a dry run, a journal that could not
    // begin) leaves the directory as the branch has it, for the next release of the process.
    if !staged.is_settled() {
        let (checkout, staged) = (checkout.clone(), staged.clone());
        let _ = blocking(move || {
            discard(&checkout, &staged);
            Ok(())
        })
        .await;
    }
    ran
}

/// What a GitOps release read and staged before it is judged.
struct Read<'r> {
    checkout: &'r Arc<Checkout>,
    staged: &'r Arc<Staged>,
    snapshot: &'r crate::cluster::EnvSnapshot,
    history: &'r [Release],
    changes: &'r [ContainerChange],
}

/// The pre-phase hooks' verdict, then the journal and the push.
async fn judged_and_pushed<G: EnvGateway>(
    ctx: &Context<'_, G>,
    intent: &Intent,
    opts: &Options,
    interrupt: &Interrupt,
    mut report: Report,
    read: &Read<'_>,
) -> Result<Ran> {
    let revision = next_revision(read.history);
    let no_jobs = jobs::Jobs::default();
    let seen = Seen {
        snapshot: read.snapshot,
        history: read.history,
        staged: None,
        jobs: &no_jobs,
    };
    let phase = pre_phase(intent.kind);
    let pre = judge(ctx, intent, phase, revision, read.changes, &seen).await?;
    if let Some(denied) = take_judgement(&mut report, &pre) {
        return Ok(denied);
    }
    if opts.dry_run {
        return Ok(Ran::ok(report, Outcome::Planned));
    }
    report.revision = Some(revision);
    let mut record = new_record(ctx, intent, revision, read.changes, &report);
    let review = opts
        .gitops
        .pull_request
        .then(|| review_branch(&ctx.config.app, &ctx.env.name, revision));
    record.gitops = Some(read.checkout.recorded(None, review.clone()));
    let journal = Journal::begin(&ctx.gateway, record).await?;
    let push = Push {
        ctx,
        opts,
        interrupt,
        checkout: read.checkout.clone(),
        staged: read.staged.clone(),
        review,
        revisions: read.history.iter().map(|r| r.revision).collect(),
    };
    Ok(push.carry_out(journal, report, read.changes).await)
}

/// The steps after the journal has begun: each one finishes it.
struct Push<'s, 'c, G> {
    ctx: &'s Context<'c, G>,
    opts: &'s Options,
    interrupt: &'s Interrupt,
    checkout: Arc<Checkout>,
    /// The release's edit of the clone.
    staged: Arc<Staged>,
    review: Option<String>,
    /// The revisions the release read, newest first: what pruning keeps or deletes.
    revisions: Vec<u64>,
}

impl<G: EnvGateway> Push<'_, '_, G> {
    async fn carry_out(
        &self,
        mut journal: Journal<'_, G>,
        mut report: Report,
        changes: &[ContainerChange],
    ) -> Ran {
        let record = journal.record.clone();
        let approvers: Vec<String> = report.approvals.iter().map(|a| a.user.clone()).collect();
        let mut images: Vec<String> = changes
            .iter()
            .filter(|c| c.changes())
            .map(|c| c.after.clone())
            .collect();
        images.sort();
        images.dedup();
        let trailers = trailers(&record, approvers, images.clone());
        let what = match (&record.source_environment, &record.commit) {
            (Some(source), _) => format!("{source}'s images"),
            (None, Some(commit)) => format!("commit {}", commit.short()),
            (None, None) => String::new(),
        };
        let subject = edit::subject(
            kind_word(record.kind),
            &record.app,
            &record.environment,
            record.revision,
            &what,
        );
        let body = images.join("\n");
        let message = trailers.message(&subject, &body);
        let progress = Progress::new();
        progress.say(&format!(
            "{} {} to {}: revision {}, pushing to {}",
            verb(record.kind),
            record.app,
            record.environment,
            record.revision,
            self.review
                .as_deref()
                .unwrap_or(&self.checkout.gitops.branch)
        ));
        let (checkout, staged, review) = (
            self.checkout.clone(),
            self.staged.clone(),
            self.review.clone(),
        );
        let pushed = blocking(move || push(&checkout, &staged, &message, review.as_deref())).await;
        let pushed = match pushed {
            Ok(pushed) => pushed,
            Err(failure) => {
                return self
                    .finish(journal, report, Outcome::Failed, &failure.message)
                    .await;
            }
        };
        let recorded = self
            .checkout
            .recorded(Some(pushed.commit.clone()), self.review.clone());
        journal.record.gitops = Some(recorded.clone());
        report.gitops = Some(recorded);
        if pushed.attempts > 1 {
            report.warnings.push(format!(
                "the branch moved while releasing: rebased and pushed on attempt {}",
                pushed.attempts
            ));
        }
        if let Some(branch) = &self.review {
            report
                .warnings
                .extend(self.open_pull_request(branch, &subject));
        }
        if !self.opts.gitops.wait {
            return self.finish(journal, report, Outcome::Committed, "").await;
        }
        match self.wait(changes, &progress).await {
            Ok(notes) => {
                report.warnings.extend(notes);
                self.finish(journal, report, Outcome::Succeeded, "").await
            }
            Err((outcome, why)) => self.finish(journal, report, outcome, &why).await,
        }
    }

    /// Waits until the cluster's workloads carry the new images and have rolled out: the
    /// controller applies the commit whenever it syncs. The lock is held meanwhile.
    async fn wait(
        &self,
        changes: &[ContainerChange],
        progress: &Progress,
    ) -> Result<Vec<String>, (Outcome, String)> {
        let images = plan::new_images(changes);
        let workloads: Vec<Workload> = self
            .checkout
            .workloads
            .iter()
            .filter(|w| images.contains_key(&w.id))
            .cloned()
            .collect();
        let timeout = self.opts.timeout;
        progress.say("waiting for the cluster to apply the commit and roll out");
        tokio::select! {
            waited = self.ctx.gateway.wait(&workloads, &images, timeout, progress) => waited.map_err(|f| match f {
                WaitFailure::TimedOut { .. } => (Outcome::TimedOut, format!(
                    "{}; the commit is in the repository: the controller has not applied it (or its rollout is not done) yet",
                    super::apply::describe_wait_failure(&f, timeout)
                )),
                WaitFailure::Failed { .. } => (Outcome::Failed, super::apply::describe_wait_failure(&f, timeout)),
            }),
            () = self.interrupt.wait() => Err((Outcome::Interrupted, "interrupted by a signal while waiting for the cluster; the commit is in the repository".into())),
            () = self.ctx.gateway.lock_lost_wait() => Err((Outcome::Interrupted, "the release lock could not be renewed while waiting; the commit is in the repository".into())),
        }
    }

    /// `--pr-command`, with what it needs in its environment; its failure is a warning (the
    /// branch is pushed either way).
    fn open_pull_request(&self, branch: &str, title: &str) -> Option<String> {
        let command = self.opts.gitops.pr_command.as_deref()?;
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg(command)
            .env("RELEASE_BRANCH", branch)
            .env("RELEASE_BASE", &self.checkout.gitops.branch)
            .env("RELEASE_REPO", self.checkout.workdir().url())
            .env("RELEASE_TITLE", title)
            .stdout(std::process::Stdio::null())
            .status();
        match status {
            Ok(s) if s.success() => None,
            Ok(s) => Some(format!(
                "--pr-command exited with {s}; branch {branch} is pushed: open the pull request by hand"
            )),
            Err(e) => Some(format!(
                "--pr-command could not run ({e}); branch {branch} is pushed: open the pull request by hand"
            )),
        }
    }

    async fn finish(
        &self,
        mut journal: Journal<'_, G>,
        mut report: Report,
        outcome: Outcome,
        message: &str,
    ) -> Ran {
        journal
            .finish(outcome, message, &report.hooks, &report.warnings)
            .await;
        report.warnings.extend(journal.problems.iter().cloned());
        let revision = journal.record.revision;
        let keep = self.ctx.config.history_limit.max(1);
        let mut revisions = self.revisions.clone();
        revisions.push(revision);
        revisions.sort_unstable_by(|a, b| b.cmp(a));
        revisions.dedup();
        self.ctx.gateway.prune_records(&revisions, keep).await;
        if outcome.is_success() {
            return Ran::ok(report, outcome);
        }
        report.message = format!(
            "{} {} to {} revision {revision}: {message}",
            verb(journal.record.kind),
            self.ctx.config.app,
            self.ctx.env.name,
        );
        let failure = Failure::new(outcome, report.message.clone());
        Ran::fail(report, failure)
    }
}

/// A dead run's record: its commit on the branch (found by its trailers) means the push landed
/// and the record says `committed`; otherwise nothing was pushed and it is `interrupted`.
async fn settle_abandoned<G: EnvGateway>(
    ctx: &Context<'_, G>,
    checkout: &Checkout,
    history: &[Release],
) -> Vec<String> {
    let abandoned = record::abandoned(history, &ctx.holder);
    if abandoned.is_empty() {
        return Vec::new();
    }
    let log = {
        let _reading = checkout.shared().reading();
        checkout
            .workdir()
            .log(&checkout.gitops.path, HISTORY_DEPTH)
            .unwrap_or_default()
    };
    let mut notes = Vec::new();
    for stale in abandoned {
        let landed = log.iter().find(|c| {
            ReleaseTrailers::parse(&c.message).is_some_and(|t| {
                t.app == stale.app
                    && t.environment == stale.environment
                    && t.revision == stale.revision
            })
        });
        match landed {
            Some(commit) => {
                let mut closed = stale.clone();
                closed.outcome = Outcome::Committed;
                closed.finished_at = jiff::Timestamp::now().to_string();
                closed.message = format!(
                    "the run of {} stopped after its push landed; closed by {}",
                    stale.lock_holder, ctx.holder
                );
                if let Some(g) = &mut closed.gitops {
                    g.commit = Some(commit.id.clone());
                }
                if ctx.gateway.update_record(&closed).await.is_ok() {
                    notes.push(format!(
                        "revision {} was left in progress by a run that stopped after pushing {}; recorded it as committed",
                        stale.revision,
                        &commit.id[..commit.id.len().min(12)]
                    ));
                }
            }
            None => notes.extend(journal::close_abandoned(&ctx.gateway, stale, &ctx.holder).await),
        }
    }
    notes
}

/// One release as the deployment repository's history tells it.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GitRelease {
    /// The repository's commit.
    pub git_commit: String,
    pub time: String,
    pub author: String,
    #[serde(flatten)]
    pub trailers: ReleaseTrailers,
}

/// The releases of `app` into `env` written on the branch, newest first (blocking): commits
/// on the path whose trailers name them; other commits (hand edits) are not releases.
pub fn history(gitops: &Gitops, app: &str, env: &str) -> Result<Vec<GitRelease>, Failure> {
    let workdir = Workdir::clone(&gitops.repo, &gitops.branch)
        .map_err(|e| Failure::invalid(e.to_string()))?;
    let log = workdir
        .log(&gitops.path, HISTORY_DEPTH)
        .map_err(|e| Failure::invalid(e.to_string()))?;
    Ok(log
        .into_iter()
        .filter_map(|c| {
            let t = ReleaseTrailers::parse(&c.message)?;
            (t.app == app && t.environment == env).then_some(GitRelease {
                git_commit: c.id,
                time: c.time,
                author: c.author,
                trailers: t,
            })
        })
        .collect())
}

/// The app's images in the environment's directory on the branch (blocking): what Git says
/// should run, for `status` beside what does.
pub fn images_in_git(gitops: &Gitops, image: &str) -> Result<Vec<String>, Failure> {
    let checkout = read(gitops, &Clones::default(), CloneKind::Private)?;
    let mut images = checkout.images_of(image);
    images.sort();
    images.dedup();
    Ok(images)
}
