//! Whether a workload's rollout is done, read from its status the way `kubectl rollout status`
//! reads it, and whether a new pod is stuck for good. Pure functions over objects.

use k8s_openapi::api::core::v1::Pod;
use kube::api::DynamicObject;
use serde_json::Value;

use super::Kind;

/// How a workload's rollout stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RolloutState {
    Complete,
    /// Done as far as anyone can wait for: the controller has the new template, but its pods
    /// change only when someone deletes them (`OnDelete`). The note says so.
    CompleteWithoutPods(String),
    Progressing(String),
    /// The rollout cannot finish by itself (ProgressDeadlineExceeded, a paused Deployment).
    Failed(String),
}

impl RolloutState {
    pub fn is_complete(&self) -> bool {
        matches!(
            self,
            RolloutState::Complete | RolloutState::CompleteWithoutPods(_)
        )
    }
}

fn int(v: &Value, pointer: &str) -> i64 {
    v.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

/// Reads a workload's status the way `kubectl rollout status` does, with one extra rule: the
/// status only counts once the controller has observed the generation we wrote. Where kubectl
/// would refuse to wait (an `OnDelete` update strategy) the rollout is complete without pods,
/// and where it would wait forever (a paused Deployment) it has failed.
/// Whether the workload's pod template has every one of `images` (the release's new images of
/// it) in a container or an init container.
pub fn carries_images(workload: &crate::domain::Workload, images: &[String]) -> bool {
    let have: Vec<String> = workload.containers().into_iter().map(|c| c.image).collect();
    images.iter().all(|i| have.contains(i))
}

pub fn rollout_state(kind: Kind, object: &DynamicObject) -> RolloutState {
    let data = &object.data;
    let generation = object.metadata.generation.unwrap_or(0);
    if kind == Kind::Deployment && data.pointer("/spec/paused") == Some(&Value::Bool(true)) {
        return RolloutState::Failed(
            "the Deployment is paused, so its pods will not change; resume it (kubectl rollout resume) and release again".into(),
        );
    }
    if int(data, "/status/observedGeneration") < generation {
        return RolloutState::Progressing("waiting for the controller to see the change".into());
    }
    match kind {
        Kind::Deployment => deployment_state(data),
        Kind::StatefulSet => statefulset_state(data),
        Kind::DaemonSet => daemonset_state(data),
        Kind::CronJob => RolloutState::Complete,
    }
}

fn replicas(data: &Value) -> i64 {
    data.pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1)
}

fn on_delete(data: &Value, kind: &str) -> Option<RolloutState> {
    (data.pointer("/spec/updateStrategy/type").and_then(Value::as_str) == Some("OnDelete")).then(|| {
        RolloutState::CompleteWithoutPods(format!(
            "the {kind}'s update strategy is OnDelete: its pods take the new image only when they are deleted"
        ))
    })
}

fn deployment_state(data: &Value) -> RolloutState {
    let conditions = data
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if let Some(c) = conditions
        .iter()
        .find(|c| c["type"] == "Progressing" && c["reason"] == "ProgressDeadlineExceeded")
    {
        return RolloutState::Failed(format!(
            "ProgressDeadlineExceeded: {}",
            c["message"]
                .as_str()
                .unwrap_or("the rollout made no progress in time")
        ));
    }
    let want = replicas(data);
    let (updated, total, available) = (
        int(data, "/status/updatedReplicas"),
        int(data, "/status/replicas"),
        int(data, "/status/availableReplicas"),
    );
    if updated >= want && total == updated && available >= want {
        RolloutState::Complete
    } else {
        RolloutState::Progressing(format!(
            "{updated}/{want} updated, {available} available, {} old",
            (total - updated).max(0)
        ))
    }
}

fn statefulset_state(data: &Value) -> RolloutState {
    if let Some(state) = on_delete(data, "StatefulSet") {
        return state;
    }
    let want = replicas(data);
    let (updated, ready) = (
        int(data, "/status/updatedReplicas"),
        int(data, "/status/readyReplicas"),
    );
    if ready < want {
        return RolloutState::Progressing(format!("{updated}/{want} updated, {ready} ready"));
    }
    // With a partition only the pods at or above it are updated: kubectl calls that complete.
    let partition = int(data, "/spec/updateStrategy/rollingUpdate/partition");
    if partition > 0 {
        let expected = (want - partition).max(0);
        return if updated >= expected {
            RolloutState::Complete
        } else {
            RolloutState::Progressing(format!(
                "{updated}/{expected} updated above partition {partition}, {ready} ready"
            ))
        };
    }
    let revisions_agree =
        data.pointer("/status/updateRevision") == data.pointer("/status/currentRevision");
    if updated >= want && revisions_agree {
        RolloutState::Complete
    } else {
        RolloutState::Progressing(format!("{updated}/{want} updated, {ready} ready"))
    }
}

fn daemonset_state(data: &Value) -> RolloutState {
    if let Some(state) = on_delete(data, "DaemonSet") {
        return state;
    }
    let want = int(data, "/status/desiredNumberScheduled");
    let (updated, available) = (
        int(data, "/status/updatedNumberScheduled"),
        int(data, "/status/numberAvailable"),
    );
    if updated >= want && available >= want {
        RolloutState::Complete
    } else {
        RolloutState::Progressing(format!("{updated}/{want} updated, {available} available"))
    }
}

/// Reasons a new pod will not come up by itself: fail fast instead of waiting for the deadline.
const FATAL_WAITING_REASONS: [&str; 5] = [
    "ImagePullBackOff",
    "ErrImagePull",
    "CrashLoopBackOff",
    "InvalidImageName",
    "CreateContainerConfigError",
];

/// A pod running one of `images` that is stuck for good, with the container and reason.
pub fn stuck_container(pod: &Pod, images: &[String]) -> Option<(String, String, String)> {
    let spec = pod.spec.as_ref()?;
    let status = pod.status.as_ref()?;
    let statuses = status
        .container_statuses
        .iter()
        .flatten()
        .chain(status.init_container_statuses.iter().flatten());
    for cs in statuses {
        let spec_image = spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
            .find(|c| c.name == cs.name)
            .and_then(|c| c.image.clone());
        if !spec_image.is_some_and(|i| images.contains(&i)) {
            continue;
        }
        if let Some(waiting) = cs.state.as_ref().and_then(|s| s.waiting.as_ref()) {
            let reason = waiting.reason.clone().unwrap_or_default();
            if FATAL_WAITING_REASONS.contains(&reason.as_str()) {
                return Some((
                    cs.name.clone(),
                    reason,
                    waiting.message.clone().unwrap_or_default(),
                ));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_workload_carries_the_images_only_once_they_are_in_its_template() {
        let w = workload(Kind::Deployment, "web", &[("web", "r/web@sha256:a")]);
        assert!(carries_images(&w, &["r/web@sha256:a".to_string()]));
        assert!(carries_images(&w, &[]));
        assert!(!carries_images(&w, &["r/web@sha256:b".to_string()]));
    }
    use super::*;
    use crate::domain::workload::fixtures::workload;
    use serde_json::json;

    fn with_status(
        kind: Kind,
        generation: i64,
        spec_replicas: i64,
        status: Value,
    ) -> DynamicObject {
        let mut w = workload(kind, "web", &[("web", "r/web@sha256:a")]).object;
        w.metadata.generation = Some(generation);
        w.data["spec"]["replicas"] = spec_replicas.into();
        w.data["status"] = status;
        w
    }

    #[test]
    fn deployment_is_complete_only_after_the_new_generation_is_observed() {
        let done = json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3});
        assert_eq!(
            rollout_state(
                Kind::Deployment,
                &with_status(Kind::Deployment, 2, 3, done.clone())
            ),
            RolloutState::Complete
        );
        // Right after a patch the status still shows the old, completed rollout.
        assert!(matches!(
            rollout_state(Kind::Deployment, &with_status(Kind::Deployment, 3, 3, done)),
            RolloutState::Progressing(_)
        ));
    }

    #[test]
    fn deployment_with_old_pods_left_is_not_complete() {
        let s = json!({"observedGeneration": 2, "replicas": 4, "updatedReplicas": 3, "availableReplicas": 3});
        assert_eq!(
            rollout_state(Kind::Deployment, &with_status(Kind::Deployment, 2, 3, s)),
            RolloutState::Progressing("3/3 updated, 3 available, 1 old".into())
        );
    }

    #[test]
    fn progress_deadline_exceeded_fails() {
        let s = json!({"observedGeneration": 2, "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": "ReplicaSet \"web-1\" has timed out progressing."}]});
        assert!(
            matches!(rollout_state(Kind::Deployment, &with_status(Kind::Deployment, 2, 3, s)), RolloutState::Failed(m) if m.contains("ProgressDeadlineExceeded"))
        );
    }

    #[test]
    fn statefulset_waits_for_revisions_to_agree() {
        let s = json!({"observedGeneration": 1, "updatedReplicas": 2, "readyReplicas": 2, "currentRevision": "a", "updateRevision": "b"});
        assert!(matches!(
            rollout_state(Kind::StatefulSet, &with_status(Kind::StatefulSet, 1, 2, s)),
            RolloutState::Progressing(_)
        ));
        let s = json!({"observedGeneration": 1, "updatedReplicas": 2, "readyReplicas": 2, "currentRevision": "b", "updateRevision": "b"});
        assert_eq!(
            rollout_state(Kind::StatefulSet, &with_status(Kind::StatefulSet, 1, 2, s)),
            RolloutState::Complete
        );
    }

    #[test]
    fn stuck_pod_with_the_new_image_is_reported() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "web-1"},
            "spec": {"containers": [{"name": "web", "image": "r/web@sha256:b"}]},
            "status": {"containerStatuses": [{"name": "web", "image": "r/web@sha256:b", "imageID": "", "ready": false, "restartCount": 3,
                "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 10s"}}}]}
        }))
        .unwrap();
        assert_eq!(
            stuck_container(&pod, &["r/web@sha256:b".into()]),
            Some((
                "web".into(),
                "CrashLoopBackOff".into(),
                "back-off 10s".into()
            ))
        );
        // An old pod failing is not this release's problem.
        assert_eq!(stuck_container(&pod, &["r/web@sha256:c".into()]), None);
    }

    #[test]
    fn a_partitioned_statefulset_is_complete_once_the_pods_above_the_partition_are_updated() {
        let mut sts = with_status(
            Kind::StatefulSet,
            1,
            3,
            json!({"observedGeneration": 1, "updatedReplicas": 1, "readyReplicas": 3, "currentRevision": "a", "updateRevision": "b"}),
        );
        sts.data["spec"]["updateStrategy"] =
            json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 2}});
        assert_eq!(
            rollout_state(Kind::StatefulSet, &sts),
            RolloutState::Complete
        );
        sts.data["status"]["updatedReplicas"] = 0.into();
        assert!(
            matches!(rollout_state(Kind::StatefulSet, &sts), RolloutState::Progressing(m) if m.contains("partition 2"))
        );
    }

    #[test]
    fn on_delete_is_complete_without_pods_once_observed() {
        for kind in [Kind::StatefulSet, Kind::DaemonSet] {
            let mut w = with_status(kind, 2, 3, json!({"observedGeneration": 2}));
            w.data["spec"]["updateStrategy"] = json!({"type": "OnDelete"});
            assert!(
                matches!(rollout_state(kind, &w), RolloutState::CompleteWithoutPods(m) if m.contains("OnDelete"))
            );
            w.metadata.generation = Some(3);
            assert!(matches!(
                rollout_state(kind, &w),
                RolloutState::Progressing(_)
            ));
        }
    }

    #[test]
    fn a_paused_deployment_fails_at_once() {
        let done = json!({"observedGeneration": 1, "replicas": 3, "updatedReplicas": 0, "availableReplicas": 3});
        let mut d = with_status(Kind::Deployment, 2, 3, done);
        d.data["spec"]["paused"] = true.into();
        assert!(
            matches!(rollout_state(Kind::Deployment, &d), RolloutState::Failed(m) if m.contains("kubectl rollout resume"))
        );
    }
}
