//! The release state machine over a fake cluster gateway: every step's failure leads to the
//! documented outcome and record. (What the real API server does is the e2e suite's job.)

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Result;

use super::{Context, Gate, Intent, Interrupt, Options, Wanted, run};
use crate::cluster::{EnvGateway, EnvSnapshot, Stamp, WaitFailure};
use crate::config::ReleaseConfig;
use crate::domain::job::JobOutcome;
use crate::domain::manifest::{Manifest, ObjectRef, Scope};
use crate::domain::workload::fixtures::workload;
use crate::domain::{
    Actor, ContainerChange, Failure, Kind, Outcome, Release, ReleaseKind, Workload, WorkloadRef,
};
use crate::progress::Progress;

const OLD: &str = "r/web@sha256:aaa";
const NEW: &str = "r/web@sha256:bbb";

/// What the fake does when waited on.
#[derive(Clone, Copy, PartialEq)]
enum WaitResult {
    Ok,
    Fail,
    TimeOut,
    /// Never finishes (a signal must end it).
    Hang,
}

struct FakeEnv {
    workloads: Vec<Workload>,
    records: Mutex<BTreeMap<u64, Release>>,
    /// Every call, in order: `lock`, `create 1 in-progress`, `patch Deployment/web r/web@…`, …
    log: Mutex<Vec<String>>,
    locked_by_other: bool,
    refuse_patch_of: Option<&'static str>,
    wait: WaitResult,
    fail_create: bool,
    /// The lease cannot be renewed: the lock is lost once the wait begins.
    loses_lock: bool,
    /// The objects of the namespace, for releases with manifests.
    objects: Mutex<BTreeMap<ObjectRef, serde_json::Value>>,
    applyset: Mutex<Vec<String>>,
    /// How every Job the release runs ends.
    job_outcome: JobOutcome,
}

impl FakeEnv {
    fn new(workloads: Vec<Workload>) -> FakeEnv {
        FakeEnv {
            workloads,
            records: Mutex::default(),
            log: Mutex::default(),
            locked_by_other: false,
            refuse_patch_of: None,
            wait: WaitResult::Ok,
            fail_create: false,
            loses_lock: false,
            objects: Mutex::default(),
            applyset: Mutex::default(),
            job_outcome: JobOutcome::Succeeded,
        }
    }

    fn say(&self, line: String) {
        self.log.lock().unwrap().push(line);
    }

    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    fn record(&self, revision: u64) -> Release {
        self.records.lock().unwrap()[&revision].clone()
    }
}

impl EnvGateway for FakeEnv {
    async fn lock(&self, _holder: &str) -> Result<()> {
        if self.locked_by_other {
            return Err(Failure::new(Outcome::Locked, "locked by ci").into());
        }
        self.say("lock".into());
        Ok(())
    }
    async fn unlock(&self) {
        self.say("unlock".into());
    }
    fn lock_lost(&self) -> bool {
        false
    }
    async fn lock_lost_wait(&self) {
        if !self.loses_lock {
            std::future::pending::<()>().await;
        }
    }
    async fn snapshot(&self) -> Result<EnvSnapshot> {
        Ok(EnvSnapshot {
            workloads: self.workloads.clone(),
            pods: Vec::new(),
        })
    }
    async fn history(&self) -> Result<Vec<Release>> {
        Ok(self
            .records
            .lock()
            .unwrap()
            .values()
            .rev()
            .cloned()
            .collect())
    }
    async fn create_record(&self, record: &Release) -> Result<()> {
        if self.fail_create {
            anyhow::bail!("configmaps is forbidden");
        }
        self.say(format!("create {} {}", record.revision, record.outcome));
        self.records
            .lock()
            .unwrap()
            .insert(record.revision, record.clone());
        Ok(())
    }
    async fn update_record(&self, record: &Release) -> Result<()> {
        self.say(format!("update {} {}", record.revision, record.outcome));
        self.records
            .lock()
            .unwrap()
            .insert(record.revision, record.clone());
        Ok(())
    }
    async fn prune_records(&self, revisions: &[u64], keep: usize) {
        for old in revisions.iter().skip(keep) {
            self.records.lock().unwrap().remove(old);
        }
    }
    async fn patch(
        &self,
        w: &Workload,
        changes: &[&ContainerChange],
        _: &Stamp,
        _: bool,
    ) -> Result<Workload> {
        if self.refuse_patch_of == Some(w.id.name.as_str()) {
            anyhow::bail!("{} may not be changed: forbidden", w.id);
        }
        self.say(format!("patch {} {}", w.id, changes[0].after));
        Ok(w.clone())
    }
    async fn wait(
        &self,
        _: &[Workload],
        images: &BTreeMap<WorkloadRef, Vec<String>>,
        _: Duration,
        _: &Progress,
    ) -> Result<Vec<String>, WaitFailure> {
        let undoing = images.values().flatten().all(|i| i == OLD);
        self.say(format!("wait {}", if undoing { "old" } else { "new" }));
        match self.wait {
            _ if undoing => Ok(Vec::new()),
            WaitResult::Ok => Ok(Vec::new()),
            WaitResult::Fail => Err(WaitFailure::Failed {
                workload: self.workloads.first().map_or(
                    WorkloadRef {
                        kind: Kind::Deployment,
                        name: "web".into(),
                    },
                    |w| w.id.clone(),
                ),
                reason: "CrashLoopBackOff".into(),
            }),
            WaitResult::TimeOut => Err(WaitFailure::TimedOut {
                pending: vec!["Deployment/web".into()],
            }),
            WaitResult::Hang => std::future::pending().await,
        }
    }
    async fn served_scope(&self, _: &str, kind: &str) -> Result<Option<Scope>> {
        Ok(match kind {
            "Unknown" => None,
            "Namespace" | "ClusterRole" => Some(Scope::Cluster),
            _ => Some(Scope::Namespaced),
        })
    }
    async fn live_object(&self, id: &ObjectRef) -> Result<Option<serde_json::Value>> {
        Ok(self.objects.lock().unwrap().get(id).cloned())
    }
    async fn apply_object(
        &self,
        m: &Manifest,
        dry_run: bool,
        _: bool,
    ) -> Result<serde_json::Value> {
        if !dry_run {
            self.say(format!("apply {}", m.id()));
            self.objects
                .lock()
                .unwrap()
                .insert(m.id(), m.object.clone());
        }
        Ok(m.object.clone())
    }
    async fn delete_object(&self, id: &ObjectRef) -> Result<()> {
        self.say(format!("delete {id}"));
        self.objects.lock().unwrap().remove(id);
        Ok(())
    }
    fn applyset_id(&self) -> String {
        "applyset-test-v1".into()
    }
    async fn applyset_kinds(&self) -> Result<Vec<String>> {
        Ok(self.applyset.lock().unwrap().clone())
    }
    async fn applyset_members(&self, _: &[String]) -> Result<Vec<ObjectRef>> {
        Ok(self.objects.lock().unwrap().keys().cloned().collect())
    }
    async fn ensure_namespace(&self) -> Result<bool> {
        Ok(false)
    }
    async fn run_job(
        &self,
        job: &crate::domain::job::PhaseJob,
        _: &Progress,
    ) -> Result<crate::cluster::jobs::JobEnd> {
        self.say(format!("job {}", job.job_name()));
        Ok(crate::cluster::jobs::JobEnd {
            outcome: self.job_outcome,
            reason: if self.job_outcome == JobOutcome::Succeeded {
                String::new()
            } else {
                "BackoffLimitExceeded".into()
            },
            log_tail: vec![format!("{} says hello", job.name)],
        })
    }
    async fn prune_jobs(&self, oldest_kept: u64) {
        self.say(format!("prune jobs before {oldest_kept}"));
    }
    async fn delete_namespace(&self) -> Result<()> {
        self.say("delete namespace".into());
        Ok(())
    }
    async fn write_applyset(&self, kinds: &[String]) -> Result<()> {
        self.say(format!("applyset {}", kinds.join(",")));
        *self.applyset.lock().unwrap() = kinds.to_vec();
        Ok(())
    }
}

fn config() -> ReleaseConfig {
    crate::config::parse(
        Path::new("/repo/release.yaml"),
        "apiVersion: kubectl-release.io/v1alpha1\nkind: ReleaseConfig\napp: web\nimage: r/web\n\
         environments:\n  - name: qa\n    namespace: web-qa\n",
    )
    .unwrap()
}

fn two_workloads() -> Vec<Workload> {
    vec![
        workload(Kind::Deployment, "web", &[("web", OLD)]),
        workload(Kind::StatefulSet, "cache", &[("cache", OLD)]),
    ]
}

fn deploy() -> Intent {
    let mut intent = Intent::new(ReleaseKind::Deploy);
    intent.wanted = Wanted::Digest("sha256:bbb".into());
    intent
}

fn opts(atomic: bool) -> Options {
    Options {
        timeout: Duration::from_secs(5),
        atomic,
        dry_run: false,
        force_conflicts: false,
        rerun_jobs: false,
        gitops: super::GitopsOptions::default(),
    }
}

fn context<'a>(cfg: &'a ReleaseConfig, env: FakeEnv) -> Context<'a, FakeEnv> {
    Context {
        config: cfg,
        env: &cfg.environments[0],
        namespace: "web-qa".into(),
        gateway: env,
        gate: Gate::none(),
        actor: Actor {
            user: "dev".into(),
            groups: vec![],
            verified: false,
        },
        holder: "dev on host (pid 1)".into(),
    }
}

async fn release(env: FakeEnv, atomic: bool) -> (super::Ran, FakeEnv) {
    let cfg = config();
    let ctx = context(&cfg, env);
    let ran = run(&ctx, &deploy(), &opts(atomic), &Interrupt::new()).await;
    (ran, ctx.gateway)
}

#[tokio::test]
async fn the_record_is_written_in_progress_before_the_first_change_and_finished() {
    let (ran, env) = release(FakeEnv::new(two_workloads()), false).await;
    assert!(ran.end.is_ok(), "{:?}", ran.end);
    assert_eq!(ran.report.outcome, Outcome::Succeeded);
    assert_eq!(ran.report.revision, Some(1));
    assert_eq!(
        env.log(),
        [
            "lock",
            "create 1 in-progress",
            &format!("patch Deployment/web {NEW}"),
            "update 1 in-progress",
            &format!("patch StatefulSet/cache {NEW}"),
            "update 1 in-progress",
            "wait new",
            "update 1 succeeded",
            "unlock"
        ]
    );
    let record = env.record(1);
    assert_eq!(record.applied.len(), 2);
    assert_eq!(record.lock_holder, "dev on host (pid 1)");
    assert!(!record.finished_at.is_empty());
}

#[tokio::test]
async fn pull_request_into_a_direct_environment_is_invalid_and_touches_nothing() {
    let cfg = config();
    let ctx = context(&cfg, FakeEnv::new(two_workloads()));
    let mut options = opts(false);
    options.gitops.pull_request = true;
    let ran = run(&ctx, &deploy(), &options, &Interrupt::new()).await;
    assert_eq!(ran.report.outcome, Outcome::Invalid);
    assert!(ctx.gateway.log().is_empty(), "{:?}", ctx.gateway.log());
}

#[tokio::test]
async fn deploying_what_runs_is_unchanged_and_writes_no_record() {
    let env = FakeEnv::new(vec![workload(Kind::Deployment, "web", &[("web", NEW)])]);
    let (ran, env) = release(env, false).await;
    assert_eq!(ran.report.outcome, Outcome::Unchanged);
    assert_eq!(env.log(), ["lock", "unlock"]);
}

#[tokio::test]
async fn a_patch_refused_on_the_second_workload_restores_the_first() {
    let mut env = FakeEnv::new(two_workloads());
    env.refuse_patch_of = Some("cache");
    let (ran, env) = release(env, false).await;
    let failure = ran.end.unwrap_err();
    assert_eq!(failure.outcome, Outcome::RolledBack, "exit 5");
    assert!(
        failure
            .message
            .contains("StatefulSet/cache could not be changed"),
        "{}",
        failure.message
    );
    let log = env.log();
    assert!(
        log.contains(&format!("patch Deployment/web {OLD}")),
        "{log:?}"
    );
    assert!(log.contains(&"wait old".to_string()), "{log:?}");
    let record = env.record(1);
    assert_eq!(record.outcome, Outcome::RolledBack);
    assert!(
        record.message.contains("StatefulSet/cache"),
        "{}",
        record.message
    );
}

#[tokio::test]
async fn a_failed_rollout_is_recorded_failed_or_rolled_back_with_atomic() {
    let mut env = FakeEnv::new(two_workloads());
    env.wait = WaitResult::Fail;
    let (ran, env) = release(env, false).await;
    assert_eq!(ran.end.unwrap_err().outcome, Outcome::Failed);
    assert_eq!(env.record(1).outcome, Outcome::Failed);
    assert!(!env.log().contains(&"wait old".to_string()));

    let mut env = FakeEnv::new(two_workloads());
    env.wait = WaitResult::Fail;
    let (ran, env) = release(env, true).await;
    assert_eq!(ran.end.unwrap_err().outcome, Outcome::RolledBack);
    assert_eq!(env.record(1).outcome, Outcome::RolledBack);
    assert_eq!(ran.report.outcome, Outcome::RolledBack);
}

#[tokio::test]
async fn a_timeout_stays_a_timeout_for_the_exit_code_after_an_undo() {
    let mut env = FakeEnv::new(two_workloads());
    env.wait = WaitResult::TimeOut;
    let (ran, env) = release(env, true).await;
    assert_eq!(ran.end.unwrap_err().outcome, Outcome::TimedOut, "exit 6");
    assert_eq!(env.record(1).outcome, Outcome::RolledBack);
}

#[tokio::test]
async fn a_signal_during_the_wait_records_interrupted_or_rolled_back() {
    for (atomic, recorded) in [(false, Outcome::Interrupted), (true, Outcome::RolledBack)] {
        let mut env = FakeEnv::new(two_workloads());
        env.wait = WaitResult::Hang;
        let cfg = config();
        let ctx = context(&cfg, env);
        let interrupt = Interrupt::new();
        let raise = interrupt.clone();
        let (intent, options) = (deploy(), opts(atomic));
        let (ran, ()) = tokio::join!(run(&ctx, &intent, &options, &interrupt), async move {
            raise.raise();
        });
        assert_eq!(ctx.gateway.record(1).outcome, recorded);
        assert_eq!(ran.report.outcome, recorded);
        assert_eq!(ctx.gateway.log().last().map(String::as_str), Some("unlock"));
    }
}

#[tokio::test]
async fn a_held_lock_is_locked_and_touches_nothing() {
    let mut env = FakeEnv::new(two_workloads());
    env.locked_by_other = true;
    let (ran, env) = release(env, false).await;
    assert_eq!(ran.end.unwrap_err().outcome, Outcome::Locked);
    assert_eq!(ran.report.outcome, Outcome::Locked);
    assert!(env.log().is_empty());
}

#[tokio::test]
async fn a_record_that_cannot_be_written_stops_the_release_before_any_change() {
    let mut env = FakeEnv::new(two_workloads());
    env.fail_create = true;
    let (ran, env) = release(env, false).await;
    assert_eq!(ran.end.unwrap_err().outcome, Outcome::Error);
    assert!(
        !env.log().iter().any(|l| l.starts_with("patch")),
        "{:?}",
        env.log()
    );
}

fn abandoned(target: &str, applied: bool) -> Release {
    let mut record = crate::domain::record::fixtures::release(3, Outcome::InProgress, target);
    record.containers[0].before = OLD.into();
    record.lock_holder = "ci on runner (pid 9)".into();
    if applied {
        record.applied = vec![record.containers[0].workload.clone()];
    }
    record
}

#[tokio::test]
async fn the_same_release_after_a_dead_run_resumes_its_record() {
    // The dead run had patched the Deployment: it runs the new image, nobody recorded it.
    let env = FakeEnv::new(vec![workload(Kind::Deployment, "web", &[("web", NEW)])]);
    env.records.lock().unwrap().insert(3, abandoned(NEW, true));
    let (ran, env) = release(env, false).await;
    assert!(ran.end.is_ok(), "{:?}", ran.end);
    assert_eq!(ran.report.outcome, Outcome::Succeeded, "not `unchanged`");
    assert_eq!(ran.report.revision, Some(3), "the same revision, finished");
    assert_eq!(env.records.lock().unwrap().len(), 1);
    let record = env.record(3);
    assert_eq!(record.outcome, Outcome::Succeeded);
    assert_eq!(
        record.containers[0].before, OLD,
        "what it replaced stays recorded"
    );
    assert!(
        record.message.contains("ci on runner (pid 9)"),
        "{}",
        record.message
    );
    assert!(
        !env.log().iter().any(|l| l.starts_with("patch")),
        "nothing left to patch"
    );
}

#[tokio::test]
async fn another_release_after_a_dead_run_closes_its_record_as_interrupted() {
    let env = FakeEnv::new(vec![workload(Kind::Deployment, "web", &[("web", OLD)])]);
    env.records
        .lock()
        .unwrap()
        .insert(3, abandoned("r/web@sha256:ccc", false));
    let (ran, env) = release(env, false).await;
    assert!(ran.end.is_ok(), "{:?}", ran.end);
    assert_eq!(ran.report.revision, Some(4));
    assert_eq!(env.record(3).outcome, Outcome::Interrupted);
    assert!(
        ran.report.warnings.iter().any(|w| w.contains("revision 3")),
        "{:?}",
        ran.report.warnings
    );
    assert_eq!(env.record(4).outcome, Outcome::Succeeded);
}

#[tokio::test]
async fn a_lost_lock_stops_the_release_without_touching_anything_more() {
    let mut env = FakeEnv::new(two_workloads());
    env.wait = WaitResult::Hang;
    env.loses_lock = true;
    let (ran, env) = release(env, true).await;
    let failure = ran.end.unwrap_err();
    assert_eq!(
        failure.outcome,
        Outcome::Interrupted,
        "exit 5 without a signal"
    );
    let record = env.record(1);
    assert_eq!(record.outcome, Outcome::Interrupted);
    assert!(
        record.message.contains("release lock"),
        "{}",
        record.message
    );
    // Even with --atomic: the workloads are no longer this run's to change.
    assert!(
        !env.log().contains(&"wait old".to_string()),
        "{:?}",
        env.log()
    );
}

// Releases with manifests: the set is applied in dependency order after the record, waited
// for, and only then pruned; an undo deletes what the release created.

const SET: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  template:\n    spec:\n      containers:\n        - name: web\n          image: r/web@sha256:bbb\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web-config\ndata:\n  a: b\n";

fn with_manifests(text: &str) -> Intent {
    let mut intent = deploy();
    intent.manifests = Some(super::manifests::Desired {
        path: "kubernetes/qa".into(),
        commit: crate::domain::CommitSha::parse_full(&"a".repeat(40)).unwrap(),
        objects: crate::domain::manifest::parse("kubernetes/qa/web.yaml", text).unwrap(),
        job_templates: Vec::new(),
        warnings: Vec::new(),
        files: None,
    });
    intent
}

/// An object the previous release applied, now gone from the manifests.
fn leftover(env: &FakeEnv) {
    let id = ObjectRef {
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        namespace: Some("web-qa".into()),
        name: "old-config".into(),
    };
    env.objects
        .lock()
        .unwrap()
        .insert(id, serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "old-config"}}));
    *env.applyset.lock().unwrap() = vec!["ConfigMap".into()];
}

async fn release_set(env: FakeEnv, intent: &Intent, atomic: bool) -> (super::Ran, FakeEnv) {
    let cfg = config();
    let ctx = context(&cfg, env);
    let ran = run(&ctx, intent, &opts(atomic), &Interrupt::new()).await;
    (ran, ctx.gateway)
}

#[tokio::test]
async fn manifests_are_applied_in_dependency_order_and_pruned_after_the_wait() {
    let env = FakeEnv::new(Vec::new());
    leftover(&env);
    let (ran, env) = release_set(env, &with_manifests(SET), false).await;
    assert!(ran.end.is_ok(), "{:?}", ran.end);
    assert_eq!(
        env.log(),
        [
            "lock",
            "create 1 in-progress",
            "applyset ConfigMap,ConfigMap,Deployment.apps",
            "apply ConfigMap/web-config",
            "update 1 in-progress",
            "apply Deployment/web",
            "update 1 in-progress",
            "wait new",
            "delete ConfigMap/old-config",
            "applyset ConfigMap,Deployment.apps",
            "update 1 succeeded",
            "unlock"
        ]
    );
    let record = env.record(1);
    let manifests = record.manifests.expect("the record names the set");
    assert_eq!(manifests.objects.len(), 2);
    assert_eq!(manifests.pruned[0].name, "old-config");
    assert_eq!(record.applied_objects.len(), 2);
    // A new workload's container had no image before.
    assert_eq!(record.containers[0].before, "");
}

#[tokio::test]
async fn the_same_set_again_is_unchanged() {
    let (first, env) = release_set(FakeEnv::new(Vec::new()), &with_manifests(SET), false).await;
    assert!(first.end.is_ok(), "{:?}", first.end);
    let (again, env) = release_set(env, &with_manifests(SET), false).await;
    assert_eq!(again.report.outcome, Outcome::Unchanged, "{:?}", again.end);
    let changed = SET.replace("a: b", "a: c");
    let (config_only, env) = release_set(env, &with_manifests(&changed), false).await;
    assert_eq!(config_only.report.outcome, Outcome::Succeeded);
    assert_eq!(
        config_only.report.revision,
        Some(2),
        "a config-only commit is a release"
    );
    assert!(env.record(2).manifests.is_some());
}

#[tokio::test]
async fn a_failed_rollout_of_a_new_set_with_atomic_deletes_what_it_created() {
    let mut env = FakeEnv::new(Vec::new());
    env.wait = WaitResult::Fail;
    leftover(&env);
    let (ran, env) = release_set(env, &with_manifests(SET), true).await;
    assert_eq!(ran.end.unwrap_err().outcome, Outcome::RolledBack);
    let log = env.log();
    assert!(
        log.contains(&"delete Deployment/web".to_string()),
        "{log:?}"
    );
    assert!(
        log.contains(&"delete ConfigMap/web-config".to_string()),
        "{log:?}"
    );
    // Nothing is pruned by a release that did not succeed.
    assert!(
        !log.contains(&"delete ConfigMap/old-config".to_string()),
        "{log:?}"
    );
    assert_eq!(env.record(1).outcome, Outcome::RolledBack);
}

#[tokio::test]
async fn an_unknown_kind_stops_the_release_before_the_record() {
    let text =
        format!("{SET}---\napiVersion: example.com/v1\nkind: Unknown\nmetadata:\n  name: w\n");
    let (ran, env) = release_set(FakeEnv::new(Vec::new()), &with_manifests(&text), false).await;
    let failure = ran.end.unwrap_err();
    assert_eq!(failure.outcome, Outcome::Invalid, "exit 2");
    assert!(
        failure.message.contains("kubernetes/qa/web.yaml:19"),
        "{}",
        failure.message
    );
    assert_eq!(env.log(), ["lock", "unlock"]);
}

// Jobs: migrations run after the record and before the first change; verification after the
// rollout decides whether the release succeeded.

fn config_with_jobs() -> ReleaseConfig {
    crate::config::parse(
        Path::new("/repo/release.yaml"),
        "apiVersion: kubectl-release.io/v1alpha1\nkind: ReleaseConfig\napp: web\nimage: r/web\n\
         environments:\n  - name: qa\n    namespace: web-qa\n\
         jobs:\n  - {name: migrate, phase: pre-deploy, command: [bin/migrate]}\n  - {name: smoke, phase: post-deploy, args: [--smoke]}\n",
    )
    .unwrap()
}

async fn release_with_jobs(env: FakeEnv, atomic: bool) -> (super::Ran, FakeEnv) {
    let cfg = config_with_jobs();
    let ctx = context(&cfg, env);
    let ran = run(&ctx, &deploy(), &opts(atomic), &Interrupt::new()).await;
    (ran, ctx.gateway)
}

#[tokio::test]
async fn a_migration_runs_after_the_record_and_before_the_rollout() {
    let (ran, env) = release_with_jobs(FakeEnv::new(two_workloads()), false).await;
    assert!(ran.end.is_ok(), "{:?}", ran.end);
    let log = env.log();
    let at = |line: &str| {
        log.iter()
            .position(|l| l == line)
            .unwrap_or_else(|| panic!("{line} not in {log:?}"))
    };
    assert!(at("create 1 in-progress") < at("job web-migrate-r1"));
    assert!(at("job web-migrate-r1") < at(&format!("patch Deployment/web {NEW}")));
    assert!(
        at("wait new") < at("job web-smoke-r1"),
        "verification after the rollout"
    );
    let record = env.record(1);
    assert_eq!(record.jobs.len(), 2);
    assert!(
        record
            .jobs
            .iter()
            .all(|j| j.outcome == JobOutcome::Succeeded)
    );
    assert_eq!(record.jobs[0].log_tail, ["migrate says hello"]);
}

#[tokio::test]
async fn a_failed_migration_ends_the_release_before_any_change() {
    let mut env = FakeEnv::new(two_workloads());
    env.job_outcome = JobOutcome::Failed;
    let (ran, env) = release_with_jobs(env, true).await;
    let failure = ran.end.unwrap_err();
    assert_eq!(failure.outcome, Outcome::Failed, "exit 5");
    assert!(
        failure
            .message
            .contains("pre-deploy Job `migrate` (web-migrate-r1) failed: BackoffLimitExceeded")
            && failure.message.contains("migrate says hello"),
        "{}",
        failure.message
    );
    assert!(
        !env.log().iter().any(|l| l.starts_with("patch")),
        "{:?}",
        env.log()
    );
    assert_eq!(env.record(1).outcome, Outcome::Failed);
    assert_eq!(ran.report.jobs[0].outcome, JobOutcome::Failed);
}

#[tokio::test]
async fn a_migration_past_its_timeout_is_a_timeout() {
    let mut env = FakeEnv::new(two_workloads());
    env.job_outcome = JobOutcome::TimedOut;
    let (ran, _) = release_with_jobs(env, false).await;
    assert_eq!(ran.end.unwrap_err().outcome, Outcome::TimedOut, "exit 6");
}

#[tokio::test]
async fn a_migration_that_succeeded_for_the_same_digests_is_not_run_again() {
    let (first, env) = release_with_jobs(FakeEnv::new(two_workloads()), false).await;
    assert!(first.end.is_ok());
    // The same digests again, in workloads that were changed back by hand.
    let (again, env) = release_with_jobs(env, false).await;
    assert!(again.end.is_ok(), "{:?}", again.end);
    let migrate = &again.report.jobs[0];
    assert_eq!(migrate.outcome, JobOutcome::Skipped);
    assert_eq!(migrate.ran_in, Some(1));
    assert_eq!(
        env.log()
            .iter()
            .filter(|l| l.starts_with("job web-migrate"))
            .count(),
        1
    );
}
