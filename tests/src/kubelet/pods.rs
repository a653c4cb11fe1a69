//! Running pods: one watch per node, one small task per pod that pulls its images and keeps its
//! status up to date, and grace-period-0 deletion of pods being deleted.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Pod, PodStatus};
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Api, Client, ResourceExt as _};
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::sync::{Semaphore, watch};

use super::image::{PullOutcome, Puller};
use super::logs::LogStore;
use super::status::{ImageState, PodRuntime, Timing, pod_status};

/// How soon a failed pull is tried again. Much shorter than the real kubelet's back-off, so a
/// test that pushes an image after deploying sees its pods recover within seconds.
const PULL_RETRY: Duration = Duration::from_secs(2);
/// How soon a failed API call of a pod's worker is tried again.
const API_RETRY: Duration = Duration::from_secs(1);

/// What every pod worker shares.
pub struct Shared {
    pub client: Client,
    pub puller: Puller,
    pub timing: Timing,
    /// Bounds the API calls in flight (status patches, deletions), so a burst of hundreds of new
    /// pods does not hit the API server's in-flight limit.
    pub api_calls: Semaphore,
    /// Bounds the registry requests in flight.
    pub pulls: Semaphore,
    /// The containers' logs, which the kubelet API serves.
    pub logs: Arc<LogStore>,
}

/// A node's pods, for as long as the process runs: watches the pods bound to `node` and keeps
/// one worker per live pod.
pub async fn run_node(shared: Arc<Shared>, node: String, host_ip: String) {
    let api: Api<Pod> = Api::all(shared.client.clone());
    let config = watcher::Config::default().fields(&format!("spec.nodeName={node}"));
    let mut events = pin!(watcher(api, config).default_backoff());
    let mut pods = NodePods {
        shared,
        host_ip,
        workers: HashMap::new(),
        deleting: HashSet::new(),
    };
    // Pods seen since the watch (re)started, so those deleted while it was down can be dropped.
    let mut relisted: Option<HashSet<String>> = None;
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::Init) => relisted = Some(HashSet::new()),
            Ok(watcher::Event::InitApply(pod)) => {
                if let Some(seen) = relisted.as_mut() {
                    seen.insert(pod.uid().unwrap_or_default());
                }
                pods.apply(pod);
            }
            Ok(watcher::Event::InitDone) => {
                if let Some(seen) = relisted.take() {
                    let gone: Vec<String> = pods
                        .workers
                        .keys()
                        .chain(pods.deleting.iter())
                        .filter(|uid| !seen.contains(*uid))
                        .cloned()
                        .collect();
                    for uid in gone {
                        pods.forget(&uid);
                    }
                }
            }
            Ok(watcher::Event::Apply(pod)) => pods.apply(pod),
            Ok(watcher::Event::Delete(pod)) => pods.forget(&pod.uid().unwrap_or_default()),
            Err(e) => tracing::warn!(%node, error = %e, "pod watch failed; retrying"),
        }
    }
}

/// The pods of one node and the tasks looking after them.
struct NodePods {
    shared: Arc<Shared>,
    host_ip: String,
    /// Dropping a sender stops its worker.
    workers: HashMap<String, watch::Sender<Pod>>,
    deleting: HashSet<String>,
}

impl NodePods {
    fn apply(&mut self, pod: Pod) {
        let uid = pod.uid().unwrap_or_default();
        if pod.metadata.deletion_timestamp.is_some() {
            self.workers.remove(&uid);
            self.shared.logs.forget(&uid);
            if self.deleting.insert(uid) {
                tokio::spawn(delete_now(self.shared.clone(), pod));
            }
        } else if let Some(worker) = self.workers.get(&uid) {
            worker.send_replace(pod);
        } else if !is_terminal(&pod) {
            // A terminal pod not already ours is left over from before a restart: it ran.
            let (tx, rx) = watch::channel(pod);
            self.workers.insert(uid, tx);
            tokio::spawn(run_pod(self.shared.clone(), self.host_ip.clone(), rx));
        }
    }

    fn forget(&mut self, uid: &str) {
        self.workers.remove(uid);
        self.shared.logs.forget(uid);
        self.deleting.remove(uid);
    }
}

fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// A fake pod IP, stable per pod.
pub fn pod_ip(uid: &str) -> String {
    let h = Sha256::digest(uid.as_bytes());
    format!("10.244.{}.{}", h[0], 1 + h[1] % 254)
}

/// One container's image, as the worker last pulled it.
struct ContainerImage {
    image: String,
    state: ImageState,
    attempted: Timestamp,
}

/// Looks after one pod until its sender is dropped: pulls, then reports the status whenever it
/// changes, waking up for time-driven changes (ready after the delay, restarts, back-off).
async fn run_pod(shared: Arc<Shared>, host_ip: String, mut pod_rx: watch::Receiver<Pod>) {
    let started = Timestamp::now();
    let mut images: BTreeMap<String, ContainerImage> = BTreeMap::new();
    let mut reported: Option<PodStatus> = None;
    loop {
        let pod = pod_rx.borrow_and_update().clone();
        pull_due_images(&shared, &pod, &mut images).await;

        let states: BTreeMap<String, ImageState> = images
            .iter()
            .map(|(name, c)| (name.clone(), c.state.clone()))
            .collect();
        let ip = pod_ip(&pod.uid().unwrap_or_default());
        let runtime = PodRuntime {
            started,
            images: &states,
            pod_ip: &ip,
            host_ip: &host_ip,
        };
        let previous = reported.as_ref().or(pod.status.as_ref());
        let computed = pod_status(&pod, &runtime, &shared.timing, previous, Timestamp::now());
        shared.logs.sync(
            &pod.namespace().unwrap_or_default(),
            &pod.name_any(),
            &pod.uid().unwrap_or_default(),
            &computed.logs,
        );

        let mut wake = computed.next_change;
        if reported.as_ref() != Some(&computed.status) {
            match patch_status(&shared, &pod, &computed.status).await {
                Ok(()) => reported = Some(computed.status),
                Err(PatchError::Gone) => return,
                Err(PatchError::Failed(e)) => {
                    tracing::warn!(pod = %pod.name_any(), error = %e, "status update failed; retrying");
                    wake = earliest(wake, Timestamp::now() + API_RETRY);
                }
            }
        }
        for c in images.values() {
            if matches!(c.state, ImageState::Failed { .. }) {
                wake = earliest(wake, c.attempted + PULL_RETRY);
            }
        }

        let sleep = wake.map(|t| {
            t.duration_since(Timestamp::now())
                .try_into()
                .unwrap_or(Duration::ZERO)
        });
        tokio::select! {
            changed = pod_rx.changed() => if changed.is_err() { return },
            () = sleep_for(sleep) => {}
        }
    }
}

fn earliest(a: Option<Timestamp>, b: Timestamp) -> Option<Timestamp> {
    Some(a.map_or(b, |a| a.min(b)))
}

async fn sleep_for(d: Option<Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

/// Pulls the images never pulled, changed in the spec, or failed and due for a retry.
async fn pull_due_images(
    shared: &Shared,
    pod: &Pod,
    images: &mut BTreeMap<String, ContainerImage>,
) {
    let now = Timestamp::now();
    let spec = pod.spec.as_ref();
    let containers = spec
        .and_then(|s| s.init_containers.as_deref())
        .unwrap_or_default()
        .iter()
        .chain(spec.map(|s| s.containers.as_slice()).unwrap_or_default());
    let due: Vec<(String, String)> = containers
        .filter_map(|c| {
            let image = c.image.clone().unwrap_or_default();
            let is_due = match images.get(&c.name) {
                None => true,
                Some(known) if known.image != image => true,
                Some(known) => {
                    matches!(known.state, ImageState::Failed { .. })
                        && now >= known.attempted + PULL_RETRY
                }
            };
            is_due.then(|| (c.name.clone(), image))
        })
        .collect();
    if due.is_empty() {
        return;
    }

    let outcomes = futures::future::join_all(due.into_iter().map(|(name, image)| async move {
        let _permit = shared.pulls.acquire().await;
        let outcome = shared.puller.pull(&image).await;
        (name, image, outcome)
    }))
    .await;

    let now = Timestamp::now();
    for (name, image, outcome) in outcomes {
        let state = match outcome {
            PullOutcome::Pulled {
                image_id,
                crashloop,
            } => ImageState::Pulled {
                image_id,
                at: now,
                crashloop,
            },
            PullOutcome::Failed { message } => {
                tracing::info!(pod = %pod.name_any(), %image, %message, "image pull failed");
                // Keep the start of the failure streak: it decides ErrImagePull vs back-off.
                let since = match images.get(&name) {
                    Some(ContainerImage {
                        image: before,
                        state: ImageState::Failed { since, .. },
                        ..
                    }) if *before == image => *since,
                    _ => now,
                };
                ImageState::Failed { message, since }
            }
        };
        images.insert(
            name,
            ContainerImage {
                image,
                state,
                attempted: now,
            },
        );
    }
}

enum PatchError {
    /// The pod is gone, or a new pod of the same name replaced it (StatefulSets reuse names).
    Gone,
    Failed(kube::Error),
}

async fn patch_status(shared: &Shared, pod: &Pod, status: &PodStatus) -> Result<(), PatchError> {
    let api: Api<Pod> =
        Api::namespaced(shared.client.clone(), &pod.namespace().unwrap_or_default());
    // The uid makes the patch a precondition, as the kubelet's: it must not land on a new pod
    // that took the old one's name.
    let patch = json!({ "metadata": { "uid": pod.uid() }, "status": status });
    let _permit = shared.api_calls.acquire().await;
    match api
        .patch_status(
            &pod.name_any(),
            &PatchParams::default(),
            &Patch::Strategic(patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Err(PatchError::Gone),
        Err(e) => Err(PatchError::Failed(e)),
    }
}

/// Deletes a pod that is being deleted, without waiting for its grace period: its containers
/// exist only in our imagination, so they stop at once.
async fn delete_now(shared: Arc<Shared>, pod: Pod) {
    let api: Api<Pod> =
        Api::namespaced(shared.client.clone(), &pod.namespace().unwrap_or_default());
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: pod.uid(),
            resource_version: None,
        }),
        ..Default::default()
    };
    for attempt in 1..=10 {
        let result = {
            let _permit = shared.api_calls.acquire().await;
            api.delete(&pod.name_any(), &params).await
        };
        match result {
            Ok(_) => return,
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => return,
            Err(e) => {
                tracing::warn!(pod = %pod.name_any(), attempt, error = %e, "pod deletion failed; retrying");
                tokio::time::sleep(API_RETRY).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_ips_are_stable_and_valid() {
        let ip = pod_ip("3f0c6e0e-1111-2222-3333-444455556666");
        assert_eq!(ip, pod_ip("3f0c6e0e-1111-2222-3333-444455556666"));
        let last: u8 = ip.rsplit('.').next().unwrap().parse().unwrap();
        assert!((1..=254).contains(&last), "{ip}");
    }
}
