//! Waiting for a workload's pods to run an image, as the fake kubelet reports it in `imageID`.

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::runtime::watcher;

use crate::workloads::NAME_LABEL;
use crate::{App, DEFAULT_TIMEOUT, image_ids, wait_for_all};

/// Waits until `workload` in `namespace` has exactly `count` live pods (not being deleted), each
/// running `app`'s image at `digest`, and returns them.
pub async fn wait_for_pods_on(
    app: &App,
    namespace: &str,
    workload: &str,
    count: usize,
    digest: &str,
) -> Vec<Pod> {
    let pods: Api<Pod> = Api::namespaced(app.env.client("admin").await, namespace);
    let wanted = format!("docker-pullable://{}@{digest}", app.image);
    wait_for_all(
        &pods,
        watcher::Config::default().labels(&format!("{NAME_LABEL}={workload}")),
        DEFAULT_TIMEOUT,
        |pods| {
            let live: Vec<&Pod> = pods
                .iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .collect();
            live.len() == count
                && live
                    .iter()
                    .all(|p| image_ids(p).first() == Some(&wanted.as_str()))
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{workload} pods never all ran {digest}: {e:#}"))
}
