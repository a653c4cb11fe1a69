//! A release's Jobs: which run (release.yaml's short forms for this environment, and the Job
//! templates of its manifests marked with a phase), on which image, and which pre-deploy ones
//! are skipped because they already succeeded for the same bytes here.

use hooks_sdk::helpers::ImageRef;

use super::manifests::Desired;
use crate::config::ReleaseConfig;
use crate::domain::job::{self, JobOutcome, JobOwner, JobPhase, JobRun, PhaseJob};
use crate::domain::{ContainerChange, Failure, Release, names};

/// The Jobs of one release, in the order they run within their phase.
#[derive(Debug, Clone, Default)]
pub struct Jobs {
    pub run: Vec<PhaseJob>,
    /// Pre-deploy Jobs not run again, with the revision whose run of them succeeded.
    pub skipped: Vec<JobRun>,
}

impl Jobs {
    pub fn of(&self, phase: JobPhase) -> impl Iterator<Item = &PhaseJob> {
        self.run.iter().filter(move |j| j.phase == phase)
    }

    /// What the report of a dry run says: every Job that would run, and those skipped.
    pub fn planned(&self) -> Vec<JobRun> {
        let mut out: Vec<JobRun> = self
            .run
            .iter()
            .map(|j| JobRun {
                name: j.name.clone(),
                phase: j.phase,
                job: j.job_name().to_string(),
                outcome: JobOutcome::Planned,
                reason: String::new(),
                log_tail: Vec::new(),
                ran_in: None,
            })
            .collect();
        out.extend(self.skipped.iter().cloned());
        out
    }
}

/// What a release needs to know to plan its Jobs.
pub struct JobContext<'a> {
    pub config: &'a ReleaseConfig,
    pub environment: &'a str,
    pub revision: u64,
    pub changes: &'a [ContainerChange],
    pub history: &'a [Release],
    pub manifests_digest: Option<&'a str>,
    pub rerun: bool,
}

/// The Jobs this release runs in `environment`.
pub fn plan(cx: &JobContext<'_>, desired: Option<&Desired>) -> Result<Jobs, Failure> {
    let owner = JobOwner {
        app: &cx.config.app,
        environment: cx.environment,
        revision: cx.revision,
    };
    let mut all = Vec::new();
    let specs: Vec<_> = cx
        .config
        .jobs
        .iter()
        .filter(|s| s.applies_to(cx.environment))
        .collect();
    if !specs.is_empty() {
        let image = release_image(cx)?;
        all.extend(specs.iter().map(|s| job::from_spec(s, &image, &owner)));
    }
    for template in desired
        .map(|d| d.job_templates.as_slice())
        .unwrap_or_default()
    {
        let phase = template_phase(template)?;
        all.push(job::from_template(
            template.name(),
            phase,
            &template.object,
            &owner,
        ));
    }
    let digests = crate::domain::plan::digests(cx.changes);
    let mut jobs = Jobs::default();
    for j in all {
        let done = (j.phase == JobPhase::PreDeploy && !cx.rerun)
            .then(|| job::already_succeeded(cx.history, &j.name, &digests, cx.manifests_digest))
            .flatten();
        match done {
            Some(revision) => jobs.skipped.push(JobRun {
                name: j.name.clone(),
                phase: j.phase,
                job: j.job_name().to_string(),
                outcome: JobOutcome::Skipped,
                reason: format!(
                    "succeeded in revision {revision} for the same digests and manifests (--rerun-jobs runs it again)"
                ),
                log_tail: Vec::new(),
                ran_in: Some(revision),
            }),
            None => jobs.run.push(j),
        }
    }
    Ok(jobs)
}

/// The image a short-form Job runs: the release's digest of the app's image.
fn release_image(cx: &JobContext<'_>) -> Result<String, Failure> {
    let repository = &cx.config.image;
    cx.changes
        .iter()
        .map(|c| c.after.as_str())
        .find(|after| ImageRef::parse(after).repository == *repository && after.contains('@'))
        .map(str::to_string)
        .ok_or_else(|| {
            Failure::invalid(format!(
                "the release's Jobs run the app's image, but this release pins no container of {repository}"
            ))
        })
}

fn template_phase(template: &crate::domain::manifest::Manifest) -> Result<JobPhase, Failure> {
    let annotation = template
        .object
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(names::ANNOTATION_JOB_PHASE))
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default();
    serde_json::from_value(serde_json::Value::String(annotation.to_string())).map_err(|_| {
        Failure::invalid(format!(
            "{}: metadata.annotations[\"{}\"]: `{annotation}` is no phase; use pre-deploy or post-deploy",
            template.origin,
            names::ANNOTATION_JOB_PHASE
        ))
    })
}

/// A Job's ending in words, with its last log lines, for the record's message and stderr.
pub fn describe(run: &JobRun) -> String {
    let what = match run.outcome {
        JobOutcome::TimedOut => "ran past its timeout",
        JobOutcome::Interrupted => "was interrupted",
        _ => "failed",
    };
    let mut text = format!("{} Job `{}` ({}) {what}", run.phase, run.name, run.job);
    if !run.reason.is_empty() {
        text.push_str(&format!(": {}", run.reason));
    }
    if !run.log_tail.is_empty() {
        text.push_str(&format!(
            "\n  last log lines:\n    {}",
            run.log_tail.join("\n    ")
        ));
    }
    text
}
