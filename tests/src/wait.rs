//! Waiting for the cluster to reach a state: watch-driven, bounded by a timeout, and saying what
//! was last seen when it times out.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::pin::pin;
use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::watcher;
use kube::{Api, Resource, ResourceExt as _};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A timeout long enough for anything the fake kubelet does, short enough to fail a stuck test.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Waits until `condition` holds for the object `name` (`None`: it does not exist), and returns
/// the object as it was then.
///
/// # Errors
/// On timeout, with the object as last seen; when the watch cannot be started.
pub async fn wait_for<K>(
    api: &Api<K>,
    name: &str,
    timeout: Duration,
    condition: impl Fn(Option<&K>) -> bool,
) -> anyhow::Result<Option<K>>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Serialize + Debug + Send + 'static,
{
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let objects = wait_for_all(api, config, timeout, |objects: &[K]| {
        condition(objects.first())
    })
    .await
    .map_err(|e| e.context(format!("waiting for {} {name}", K::kind(&()))))?;
    Ok(objects.into_iter().next())
}

/// Waits until `condition` holds for the set of objects the watch `config` selects (labels,
/// fields), and returns them as they were then, sorted by namespace and name.
///
/// # Errors
/// On timeout, with the objects as last seen; when the watch cannot be started.
pub async fn wait_for_all<K>(
    api: &Api<K>,
    config: watcher::Config,
    timeout: Duration,
    condition: impl Fn(&[K]) -> bool,
) -> anyhow::Result<Vec<K>>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Serialize + Debug + Send + 'static,
{
    let mut events = pin!(watcher(api.clone(), config));
    let mut objects: BTreeMap<(String, String), K> = BTreeMap::new();
    let mut listing: BTreeMap<(String, String), K> = BTreeMap::new();
    let key = |o: &K| (o.namespace().unwrap_or_default(), o.name_any());
    let mut last_error = None;

    let watching = async {
        while let Some(event) = events.next().await {
            match event {
                Ok(watcher::Event::Init) => listing.clear(),
                Ok(watcher::Event::InitApply(o)) => {
                    listing.insert(key(&o), o);
                    continue;
                }
                Ok(watcher::Event::InitDone) => objects = std::mem::take(&mut listing),
                Ok(watcher::Event::Apply(o)) => {
                    objects.insert(key(&o), o);
                }
                Ok(watcher::Event::Delete(o)) => {
                    objects.remove(&key(&o));
                }
                Err(e) => {
                    // The watcher retries by itself; remember why, for the timeout message.
                    last_error = Some(e.to_string());
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            }
            let current: Vec<K> = objects.values().cloned().collect();
            if condition(&current) {
                return current;
            }
        }
        unreachable!("a kube watcher stream never ends")
    };
    let outcome = tokio::time::timeout(timeout, watching).await;
    outcome.map_err(|_| {
        let mut message = format!(
            "timed out after {timeout:?}; last seen {} {}",
            objects.len(),
            K::plural(&())
        );
        for o in objects.values() {
            let json = serde_json::to_value(o).unwrap_or_default();
            let status = json.get("status").unwrap_or(&serde_json::Value::Null);
            message += &format!("\n  {}: {status}", o.name_any());
        }
        if let Some(e) = last_error {
            message += &format!("\nlast watch error: {e}");
        }
        anyhow::anyhow!(message)
    })
}

/// Whether a Deployment has rolled out its current spec: observed, all replicas updated,
/// available, and no old ones left. Right after a patch the status still describes the previous
/// generation, hence the generation check.
pub fn deployment_rolled_out(d: &Deployment) -> bool {
    let Some(status) = &d.status else {
        return false;
    };
    let want = d.spec.replicas.unwrap_or(1);
    status.observed_generation >= d.metadata.generation
        && status.updated_replicas.unwrap_or(0) == want
        && status.replicas.unwrap_or(0) == want
        && status.available_replicas.unwrap_or(0) == want
}

/// Whether a StatefulSet has rolled out its current spec (RollingUpdate strategy).
pub fn statefulset_rolled_out(s: &StatefulSet) -> bool {
    let Some(status) = &s.status else {
        return false;
    };
    let want = s.spec.replicas.unwrap_or(1);
    status.observed_generation >= s.metadata.generation
        && status.ready_replicas.unwrap_or(0) == want
        && status.updated_replicas.unwrap_or(0) == want
        && status.current_revision.is_some()
        && status.current_revision == status.update_revision
}

/// Whether a DaemonSet has rolled out its current spec on every node that should run it.
pub fn daemonset_rolled_out(d: &DaemonSet) -> bool {
    let Some(status) = &d.status else {
        return false;
    };
    let want = status.desired_number_scheduled;
    status.observed_generation >= d.metadata.generation
        && want > 0
        && status.updated_number_scheduled.unwrap_or(0) == want
        && status.number_available.unwrap_or(0) == want
}

/// The `waiting.reason` of the pod's containers (`ErrImagePull`, `CrashLoopBackOff`, …).
pub fn waiting_reasons(pod: &Pod) -> Vec<&str> {
    pod.status
        .iter()
        .flat_map(|s| s.container_statuses.iter().flatten())
        .filter_map(|c| c.state.as_ref()?.waiting.as_ref()?.reason.as_deref())
        .collect()
}

/// The `imageID` of the pod's containers that have one.
pub fn image_ids(pod: &Pod) -> Vec<&str> {
    pod.status
        .iter()
        .flat_map(|s| s.container_statuses.iter().flatten())
        .map(|c| c.image_id.as_str())
        .filter(|id| !id.is_empty())
        .collect()
}
