//! Running a release's Job: create it, watch it to its end (no polling), stream its pods' logs
//! live to stderr prefixed with the Job's name, keep their last lines; and delete the app's old
//! Jobs once their records are gone.

use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, Result};
use futures::{AsyncBufReadExt as _, StreamExt as _};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, LogParams, PostParams};
use kube::runtime::WatchStreamExt as _;
use kube::runtime::watcher::{self, Event};

use crate::domain::job::{JobOutcome, LOG_TAIL_LINES, PhaseJob};
use crate::domain::names;
use crate::progress::Progress;

/// How a Job ended, with its pods' last log lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobEnd {
    pub outcome: JobOutcome,
    pub reason: String,
    pub log_tail: Vec<String>,
}

/// The last lines logged, shared by the pods' log followers.
#[derive(Clone, Default)]
struct Tail(Arc<Mutex<VecDeque<String>>>);

impl Tail {
    fn push(&self, line: String) {
        let mut lines = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if lines.len() == LOG_TAIL_LINES {
            lines.pop_front();
        }
        lines.push_back(line);
    }

    fn lines(&self) -> Vec<String> {
        let lines = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        lines.iter().cloned().collect()
    }
}

/// Creates `job` in `namespace` and follows it until it completes or fails.
pub async fn run(
    client: &kube::Client,
    namespace: &str,
    job: &PhaseJob,
    progress: &Progress,
) -> Result<JobEnd> {
    let api: Api<Job> = Api::namespaced(client.clone(), namespace);
    let name = job.job_name().to_string();
    let object: Job = serde_json::from_value(job.object.clone())
        .with_context(|| format!("Job `{}` is not a valid Job", job.name))?;
    match api.create(&PostParams::default(), &object).await {
        Ok(_) => {}
        // The same release's Job, created by a run that died (a resumed release): follow it
        // rather than fail on the name.
        Err(kube::Error::Api(e)) if e.code == 409 => {
            progress.say(&format!(
                "{}: Job {name} exists already: following it",
                job.name
            ));
        }
        Err(e) => {
            return Err(anyhow::Error::new(e).context(format!("cannot create Job {name}")));
        }
    }
    progress.say(&format!("{}: running Job {name} ({})", job.name, job.phase));
    let tail = Tail::default();
    let done = tokio_util::sync::CancellationToken::new();
    let logs = follow_logs(client, namespace, &name, &job.name, &tail, progress, &done);
    let watch = async {
        let end = watch_to_end(&api, &name).await;
        done.cancel();
        end
    };
    let (end, ()) = tokio::join!(watch, logs);
    let (outcome, reason) = end?;
    Ok(JobEnd {
        outcome,
        reason,
        log_tail: tail.lines(),
    })
}

/// Watches the Job until one of its conditions says it is over.
async fn watch_to_end(api: &Api<Job>, name: &str) -> Result<(JobOutcome, String)> {
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut events = watcher::watcher(api.clone(), config)
        .default_backoff()
        .boxed();
    while let Some(event) = events.next().await {
        match event {
            Ok(Event::Apply(job) | Event::InitApply(job)) => {
                if let Some(end) = ended(&job) {
                    return Ok(end);
                }
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(job = name, "watch error (retrying): {e}"),
        }
    }
    anyhow::bail!("the watch of Job {name} ended before the Job did")
}

/// A finished Job's outcome and reason, from its conditions.
fn ended(job: &Job) -> Option<(JobOutcome, String)> {
    let conditions = job.status.as_ref()?.conditions.as_ref()?;
    conditions
        .iter()
        .filter(|c| c.status == "True")
        .find_map(|c| match c.type_.as_str() {
            "Complete" => Some((JobOutcome::Succeeded, String::new())),
            "Failed" => {
                let reason = c.reason.clone().unwrap_or_default();
                let outcome = if reason == "DeadlineExceeded" {
                    JobOutcome::TimedOut
                } else {
                    JobOutcome::Failed
                };
                let message = c.message.clone().unwrap_or_default();
                let why = if message.is_empty() {
                    reason
                } else {
                    format!("{reason}: {message}")
                };
                Some((outcome, why))
            }
            _ => None,
        })
}

/// How long the last lines may take to arrive once the Job has ended: its containers have
/// terminated, so their log streams are ending.
const LAST_LINES: Duration = Duration::from_secs(3);

/// Follows the logs of every pod of Job `name` as its containers start: each line goes to
/// stderr as `<job>: <line>` and into `tail`, until `done` (the Job ended) and the streams
/// have delivered their last lines.
async fn follow_logs(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    label: &str,
    tail: &Tail,
    progress: &Progress,
    done: &tokio_util::sync::CancellationToken,
) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let config = watcher::Config::default().labels(&format!("job-name={name}"));
    let mut events = watcher::watcher(pods.clone(), config)
        .default_backoff()
        .boxed();
    let mut following: BTreeSet<String> = BTreeSet::new();
    let mut streams = futures::stream::FuturesUnordered::new();
    loop {
        tokio::select! {
            event = events.next() => match event {
                Some(Ok(Event::Apply(pod) | Event::InitApply(pod))) => {
                    let Some(pod_name) = pod.metadata.name.clone() else { continue };
                    if started(&pod) && following.insert(pod_name.clone()) {
                        streams.push(stream_pod(pods.clone(), pod_name, label.to_string(), tail.clone(), progress.clone()));
                    }
                }
                Some(_) => {}
                None => break,
            },
            Some(()) = streams.next(), if !streams.is_empty() => {}
            () = done.cancelled() => break,
        }
    }
    // A pod that finished before its first event reached us is still read: the Job may end
    // faster than the watch of its pods delivers.
    let selector = format!("job-name={name}");
    if let Ok(list) = pods.list(&ListParams::default().labels(&selector)).await {
        for pod in list.items {
            if let Some(pod_name) = pod.metadata.name.clone()
                && started(&pod)
                && following.insert(pod_name.clone())
            {
                streams.push(stream_pod(
                    pods.clone(),
                    pod_name,
                    label.to_string(),
                    tail.clone(),
                    progress.clone(),
                ));
            }
        }
    }
    let _ = tokio::time::timeout(LAST_LINES, async {
        while streams.next().await.is_some() {}
    })
    .await;
}

/// Whether a pod's container has started, so its log can be read.
fn started(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .is_some_and(|statuses| {
            statuses.iter().any(|c| {
                c.state
                    .as_ref()
                    .is_some_and(|s| s.running.is_some() || s.terminated.is_some())
            })
        })
}

async fn stream_pod(pods: Api<Pod>, pod: String, label: String, tail: Tail, progress: Progress) {
    let params = LogParams {
        follow: true,
        ..LogParams::default()
    };
    let reader = match pods.log_stream(&pod, &params).await {
        Ok(reader) => reader,
        Err(e) => {
            tracing::debug!(pod, "cannot follow the log: {e}");
            return;
        }
    };
    let mut lines = reader.lines();
    while let Some(Ok(line)) = lines.next().await {
        progress.say(&format!("{label}: {line}"));
        tail.push(line);
    }
}

/// Deletes the app's Jobs in this environment from revisions older than `oldest_kept` (their
/// records are gone), with their pods.
pub async fn prune(client: &kube::Client, namespace: &str, app: &str, env: &str, oldest_kept: u64) {
    let api: Api<Job> = Api::namespaced(client.clone(), namespace);
    let selector = format!(
        "{}={app},{}={env},{}",
        names::LABEL_APP,
        names::LABEL_ENVIRONMENT,
        names::LABEL_JOB
    );
    let Ok(list) = api.list(&ListParams::default().labels(&selector)).await else {
        return;
    };
    for job in list.items {
        let revision = job
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(names::LABEL_REVISION))
            .and_then(|r| r.parse::<u64>().ok());
        if revision.is_some_and(|r| r < oldest_kept)
            && let Some(name) = job.metadata.name.as_deref()
            && let Err(e) = api.delete(name, &DeleteParams::background()).await
        {
            tracing::warn!(job = name, "cannot delete an old Job: {e}");
        }
    }
}
