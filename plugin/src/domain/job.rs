//! Jobs as phases of a release: migrations before the rollout, verification after it. Plain
//! data and decisions: what a Job of a release is called, what it runs, whether it has already
//! run for these bytes, and whether a source environment passed its verification.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use super::{Outcome, Release, names};

/// When a Job runs.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum JobPhase {
    /// Before the rollout (migrations): the rollout starts only when it succeeds.
    PreDeploy,
    /// After the rollout (verification, smoke tests): the release succeeds only when it does.
    PostDeploy,
}

impl std::fmt::Display for JobPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            JobPhase::PreDeploy => "pre-deploy",
            JobPhase::PostDeploy => "post-deploy",
        })
    }
}

/// How a Job of a release ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum JobOutcome {
    Succeeded,
    Failed,
    /// Ran past its `timeout` (`activeDeadlineSeconds`).
    TimedOut,
    /// The release stopped on a signal while it ran; the Job was left running.
    Interrupted,
    /// Not run: it already succeeded for the same digests and manifests here.
    Skipped,
    /// A dry run: it would run.
    Planned,
}

/// One Job of one release, as the record and the report keep it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobRun {
    /// The Job's name in release.yaml (or its manifest).
    pub name: String,
    pub phase: JobPhase,
    /// The Job object's name in the cluster: unique per release.
    pub job: String,
    pub outcome: JobOutcome,
    /// Why it failed, as the Job's condition says (`BackoffLimitExceeded`, `DeadlineExceeded`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// The last lines its pods logged.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub log_tail: Vec<String>,
    /// For a skipped Job: the revision whose run of it succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ran_in: Option<u64>,
}

/// A Job the release runs: its name, phase, and the Job object to create (named per release).
#[derive(Debug, Clone, PartialEq)]
pub struct PhaseJob {
    pub name: String,
    pub phase: JobPhase,
    pub object: Value,
}

impl PhaseJob {
    /// The Job object's name in the cluster.
    pub fn job_name(&self) -> &str {
        self.object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }
}

/// Lines of a Job's log kept in the record and the report.
pub const LOG_TAIL_LINES: usize = 20;
/// Kubernetes object names are DNS labels here (Job names label their pods).
const MAX_NAME: usize = 63;

/// `<app>-<job>-r<revision>`: unique per release, so a rerun never meets an immutable Job;
/// cut to 63 characters with a hash of the whole name, so two long names stay apart.
pub fn job_name(app: &str, job: &str, revision: u64) -> String {
    let full = format!("{app}-{job}-r{revision}");
    if full.len() <= MAX_NAME {
        return full;
    }
    let hash = hex::encode(Sha256::digest(full.as_bytes()));
    let suffix = format!("-{}-r{revision}", &hash[..8]);
    let keep = MAX_NAME - suffix.len();
    let head = full[..keep].trim_end_matches('-');
    format!("{head}{suffix}")
}

/// The short form of a Job in release.yaml.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSpec {
    pub name: String,
    pub phase: JobPhase,
    pub command: Vec<String>,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub timeout: Duration,
    pub backoff_limit: u32,
    /// `None`: every environment.
    pub environments: Option<Vec<String>>,
}

impl JobSpec {
    pub fn applies_to(&self, env: &str) -> bool {
        self.environments
            .as_ref()
            .is_none_or(|envs| envs.iter().any(|e| e == env))
    }
}

/// Who a release's Jobs belong to, for their labels.
pub struct JobOwner<'a> {
    pub app: &'a str,
    pub environment: &'a str,
    pub revision: u64,
}

/// The Job object of a short-form Job: one container running `image` (the release's digest).
pub fn from_spec(spec: &JobSpec, image: &str, owner: &JobOwner<'_>) -> PhaseJob {
    let env: Vec<Value> = spec
        .env
        .iter()
        .map(|(name, value)| json!({"name": name, "value": value}))
        .collect();
    let mut container = json!({"name": spec.name, "image": image});
    if !spec.command.is_empty() {
        container["command"] = json!(spec.command);
    }
    if !spec.args.is_empty() {
        container["args"] = json!(spec.args);
    }
    if !env.is_empty() {
        container["env"] = Value::Array(env);
    }
    let object = json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": spec.name},
        "spec": {
            "backoffLimit": spec.backoff_limit,
            "activeDeadlineSeconds": spec.timeout.as_secs().max(1),
            "template": {"spec": {"restartPolicy": "Never", "containers": [container]}},
        },
    });
    named(spec.name.clone(), spec.phase, object, owner)
}

/// A Job template of the manifests (marked with [`names::ANNOTATION_JOB_PHASE`]) as the Job of
/// this release: renamed, labelled, its pod never restarted in place.
pub fn from_template(
    name: &str,
    phase: JobPhase,
    template: &Value,
    owner: &JobOwner<'_>,
) -> PhaseJob {
    let mut object = template.clone();
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("namespace");
        meta.remove("generateName");
    }
    if object
        .pointer("/spec/template/spec/restartPolicy")
        .is_none()
        && let Some(spec) = object
            .pointer_mut("/spec/template/spec")
            .and_then(Value::as_object_mut)
    {
        spec.insert("restartPolicy".into(), "Never".into());
    }
    named(name.to_string(), phase, object, owner)
}

fn named(name: String, phase: JobPhase, mut object: Value, owner: &JobOwner<'_>) -> PhaseJob {
    let job = job_name(owner.app, &name, owner.revision);
    let labels = json!({
        names::LABEL_APP: owner.app,
        names::LABEL_ENVIRONMENT: owner.environment,
        names::LABEL_REVISION: owner.revision.to_string(),
        names::LABEL_JOB: name,
        names::LABEL_MANAGED_BY: names::MANAGER,
    });
    object["metadata"]["name"] = job.into();
    merge_labels(&mut object["metadata"], &labels);
    if object.pointer("/spec/template").is_some() {
        if !object["spec"]["template"]["metadata"].is_object() {
            object["spec"]["template"]["metadata"] = json!({});
        }
        merge_labels(&mut object["spec"]["template"]["metadata"], &labels);
    }
    PhaseJob {
        name,
        phase,
        object,
    }
}

fn merge_labels(meta: &mut Value, labels: &Value) {
    if !meta["labels"].is_object() {
        meta["labels"] = json!({});
    }
    if let (Some(into), Some(from)) = (meta["labels"].as_object_mut(), labels.as_object()) {
        for (k, v) in from {
            into.insert(k.clone(), v.clone());
        }
    }
}

/// The revision whose run of pre-deploy Job `name` succeeded for exactly these digests and
/// manifests, if one did: it is not run again (unless asked).
pub fn already_succeeded(
    history: &[Release],
    name: &str,
    digests: &[String],
    manifests_digest: Option<&str>,
) -> Option<u64> {
    history.iter().find_map(|r| {
        let same_bytes = super::plan::digests(&r.containers) == digests
            && r.manifests.as_ref().map(|m| m.digest.as_str()) == manifests_digest;
        let ran = r.jobs.iter().any(|j| {
            j.name == name && j.phase == JobPhase::PreDeploy && j.outcome == JobOutcome::Succeeded
        });
        (same_bytes && ran).then_some(r.revision)
    })
}

/// Whether `source`'s current release passed its post-deploy Jobs, for a promotion that
/// requires it: `Err` says which verification is missing or failed.
pub fn verified(source_env: &str, current: Option<&Release>) -> Result<(), String> {
    let Some(release) = current else {
        return Err(format!("{source_env} has no release to have verified"));
    };
    let revision = release.revision;
    if release.outcome != Outcome::Succeeded {
        return Err(format!(
            "{source_env}'s current release (revision {revision}) is {}, not succeeded",
            release.outcome
        ));
    }
    let post: Vec<&JobRun> = release
        .jobs
        .iter()
        .filter(|j| j.phase == JobPhase::PostDeploy)
        .collect();
    if post.is_empty() {
        return Err(format!(
            "{source_env}'s current release (revision {revision}) ran no post-deploy verification Job; declare one in release.yaml's `jobs` and deploy {source_env} again"
        ));
    }
    match post.iter().find(|j| j.outcome != JobOutcome::Succeeded) {
        Some(j) => Err(format!(
            "{source_env}'s verification Job `{}` of revision {revision} is {:?}{}",
            j.name,
            j.outcome,
            if j.reason.is_empty() {
                String::new()
            } else {
                format!(" ({})", j.reason)
            }
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_names_are_unique_per_revision_and_fit_a_dns_label() {
        assert_eq!(job_name("web", "migrate", 7), "web-migrate-r7");
        let long = job_name(&"a".repeat(40), &"m".repeat(40), 123);
        assert!(long.len() <= 63, "{long}");
        assert!(long.ends_with("-r123"), "{long}");
        assert_ne!(long, job_name(&"a".repeat(40), &"m".repeat(41), 123));
    }

    fn spec() -> JobSpec {
        JobSpec {
            name: "migrate".into(),
            phase: JobPhase::PreDeploy,
            command: vec!["bin/migrate".into()],
            args: vec!["--up".into()],
            env: BTreeMap::from([("LEVEL".into(), "debug".into())]),
            timeout: Duration::from_secs(300),
            backoff_limit: 0,
            environments: None,
        }
    }

    #[test]
    fn a_short_form_job_runs_the_release_digest_once_with_its_deadline() {
        let owner = JobOwner {
            app: "web",
            environment: "qa",
            revision: 4,
        };
        let job = from_spec(&spec(), "r/web@sha256:abc", &owner);
        assert_eq!(job.job_name(), "web-migrate-r4");
        let o = &job.object;
        assert_eq!(o["spec"]["activeDeadlineSeconds"], 300);
        assert_eq!(o["spec"]["backoffLimit"], 0);
        let pod = &o["spec"]["template"];
        assert_eq!(pod["spec"]["restartPolicy"], "Never");
        assert_eq!(pod["spec"]["containers"][0]["image"], "r/web@sha256:abc");
        assert_eq!(pod["spec"]["containers"][0]["env"][0]["name"], "LEVEL");
        assert_eq!(pod["metadata"]["labels"][names::LABEL_JOB], "migrate");
        assert_eq!(o["metadata"]["labels"][names::LABEL_REVISION], "4");
    }

    fn record(revision: u64, digest: &str, jobs: Vec<JobRun>) -> Release {
        let mut r = crate::domain::record::fixtures::release(
            revision,
            Outcome::Succeeded,
            &format!("r/web@{digest}"),
        );
        r.jobs = jobs;
        r
    }

    fn run(name: &str, phase: JobPhase, outcome: JobOutcome) -> JobRun {
        JobRun {
            name: name.into(),
            phase,
            job: format!("web-{name}"),
            outcome,
            reason: String::new(),
            log_tail: vec![],
            ran_in: None,
        }
    }

    #[test]
    fn a_migration_that_succeeded_for_the_same_bytes_is_not_run_again() {
        let ok = run("migrate", JobPhase::PreDeploy, JobOutcome::Succeeded);
        let history = vec![
            record(3, "sha256:b", vec![]),
            record(2, "sha256:a", vec![ok]),
        ];
        let a = vec!["sha256:a".to_string()];
        let b = vec!["sha256:b".to_string()];
        assert_eq!(already_succeeded(&history, "migrate", &a, None), Some(2));
        assert_eq!(already_succeeded(&history, "migrate", &b, None), None);
        assert_eq!(
            already_succeeded(&history, "migrate", &a, Some("sha256:m")),
            None,
            "other manifests"
        );
    }

    #[test]
    fn promotion_needs_a_passed_verification_of_the_current_release() {
        let failed = JobRun {
            reason: "BackoffLimitExceeded".into(),
            ..run("smoke", JobPhase::PostDeploy, JobOutcome::Failed)
        };
        let err = verified("qa", Some(&record(5, "sha256:a", vec![failed]))).unwrap_err();
        assert!(
            err.contains("`smoke`") && err.contains("BackoffLimitExceeded"),
            "{err}"
        );
        let err = verified("qa", Some(&record(5, "sha256:a", vec![]))).unwrap_err();
        assert!(err.contains("ran no post-deploy verification"), "{err}");
        let ok = run("smoke", JobPhase::PostDeploy, JobOutcome::Succeeded);
        assert!(verified("qa", Some(&record(5, "sha256:a", vec![ok]))).is_ok());
        assert!(verified("qa", None).is_err());
    }
}
