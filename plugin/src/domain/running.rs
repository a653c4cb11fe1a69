//! Which digests a workload's pods run. The pods' `imageID`s say it for any template; the
//! workload's own status says it, without asking the pods, when the template pins a digest and
//! the controller reports that every live pod is of that template. A release then reads an
//! environment's pods only when some workload's status cannot settle it: one request fewer
//! per environment read in the common case of a finished rollout of a digest-pinned image.

use k8s_openapi::api::core::v1::Pod;

use super::rollout_state::{RolloutState, rollout_state};
use super::{Container, ImageRef, Kind, Workload};

/// The digest every live pod of `workload` runs for a container whose template image is
/// `image`, known from the workload alone. Content addressing makes the bytes a pod runs
/// those of the digest its template pins; a complete rollout of a Deployment counts every
/// non-terminating pod in `status.replicas` and needs them all updated, and one of a
/// StatefulSet without a partition needs every replica on the update revision. At least one
/// replica must be wanted (a workload scaled to zero runs nothing). A DaemonSet's status does
/// not count old pods apart, a partition keeps old pods on purpose and `OnDelete` leaves them
/// until deleted: those are asked.
pub fn settled_digest(workload: &Workload, image: &str) -> Option<String> {
    let data = &workload.object.data;
    let wanted = data
        .pointer("/spec/replicas")
        .and_then(serde_json::Value::as_i64)
        .unwrap_or(1);
    let partition = data
        .pointer("/spec/updateStrategy/rollingUpdate/partition")
        .and_then(serde_json::Value::as_i64)
        .unwrap_or(0);
    let all_current = match workload.id.kind {
        Kind::Deployment => wanted > 0,
        Kind::StatefulSet => wanted > 0 && partition == 0,
        Kind::DaemonSet | Kind::CronJob => false,
    } && rollout_state(workload.id.kind, &workload.object)
        == RolloutState::Complete;
    ImageRef::parse(image).digest.filter(|_| all_current)
}

/// The distinct digests `workload`'s pods run for `container`: settled by the workload's
/// status where it can be, otherwise as `pods` report them.
pub fn running_digests(workload: &Workload, pods: &[Pod], container: &Container) -> Vec<String> {
    match settled_digest(workload, &container.image) {
        Some(digest) => vec![digest],
        None => workload.pod_digests(pods, &container.name),
    }
}

/// Whether the pods must be read to know what the app's containers in `workloads` run.
/// (A CronJob has no pods between runs: what it runs is its spec.)
pub fn pods_needed(workloads: &[Workload], repository: &str) -> bool {
    workloads.iter().any(|w| {
        w.id.kind.has_rollout()
            && w.app_containers(repository)
                .iter()
                .any(|c| settled_digest(w, &c.image).is_none())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::workload::fixtures::workload;
    use serde_json::json;

    const REPO: &str = "r/web";

    fn finished(kind: Kind, image: &str, replicas: i64) -> Workload {
        let mut w = workload(kind, "web", &[("web", image)]);
        w.object.metadata.generation = Some(2);
        w.object.data["spec"]["replicas"] = replicas.into();
        w.object.data["status"] = json!({
            "observedGeneration": 2, "replicas": replicas, "updatedReplicas": replicas,
            "availableReplicas": replicas, "readyReplicas": replicas,
            "currentRevision": "web-1", "updateRevision": "web-1",
        });
        w
    }

    fn pod(digest: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": format!("web-{digest}"), "labels": {"app": "web"}},
            "status": {"containerStatuses": [{"name": "web", "image": "x", "imageID": format!("docker-pullable://r/web@{digest}"), "ready": true, "restartCount": 0}]}
        }))
        .unwrap()
    }

    fn web(w: &Workload) -> Container {
        w.app_containers(REPO).remove(0)
    }

    #[test]
    fn a_finished_rollout_of_a_pinned_digest_needs_no_pods() {
        for kind in [Kind::Deployment, Kind::StatefulSet] {
            let w = finished(kind, "r/web@sha256:a", 2);
            assert_eq!(
                settled_digest(&w, "r/web@sha256:a").as_deref(),
                Some("sha256:a")
            );
            assert!(!pods_needed(std::slice::from_ref(&w), REPO), "{kind:?}");
            assert_eq!(running_digests(&w, &[], &web(&w)), ["sha256:a"]);
        }
    }

    #[test]
    fn pods_are_asked_whenever_the_status_cannot_settle_it() {
        let tag = finished(Kind::Deployment, "r/web:v1", 2);
        let scaled_to_zero = finished(Kind::Deployment, "r/web@sha256:a", 0);
        let mut rolling = finished(Kind::Deployment, "r/web@sha256:a", 2);
        rolling.object.data["status"]["replicas"] = 3.into();
        let mut unobserved = finished(Kind::Deployment, "r/web@sha256:a", 2);
        unobserved.object.metadata.generation = Some(3);
        let mut partitioned = finished(Kind::StatefulSet, "r/web@sha256:a", 2);
        partitioned.object.data["spec"]["updateStrategy"] =
            json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 1}});
        let daemons = finished(Kind::DaemonSet, "r/web@sha256:a", 2);
        for w in [
            tag,
            scaled_to_zero,
            rolling,
            unobserved,
            partitioned,
            daemons,
        ] {
            assert!(
                pods_needed(std::slice::from_ref(&w), REPO),
                "{:?}",
                w.object.data
            );
            // What the pods report is then what runs, even where it differs from the template.
            let digests = running_digests(&w, &[pod("sha256:b")], &web(&w));
            assert_eq!(digests, ["sha256:b"], "{:?}", w.object.data);
        }
    }

    #[test]
    fn one_unsettled_workload_means_reading_the_pods() {
        let settled = finished(Kind::Deployment, "r/web@sha256:a", 2);
        let mut other = finished(Kind::Deployment, "r/web:v1", 1);
        other.id.name = "worker".into();
        assert!(pods_needed(&[settled.clone(), other], REPO));
        // Containers of other images, and CronJobs, never need the pods.
        let sidecar_only = finished(Kind::Deployment, "envoy:1.30", 1);
        let cron = workload(Kind::CronJob, "nightly", &[("web", "r/web:v1")]);
        assert!(!pods_needed(&[settled, sidecar_only, cron], REPO));
    }
}
