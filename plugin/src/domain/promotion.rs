//! What a promotion ships: the digests every pod of the source environment agrees on, as
//! their workloads' status settles it or the pods report it (see `running`).
//! Pure functions over the source's workloads and pods.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;

use crate::domain::ImageRef;
use crate::domain::rollout_state::{RolloutState, rollout_state};
use crate::domain::running::running_digests;
use crate::domain::{Workload, WorkloadRef};

/// `(workload, container) → repo@digest` that runs in the source, or the reason it cannot be
/// promoted (a rollout still going on, pods that disagree, an unpinned CronJob image).
pub fn source_images(
    workloads: &[Workload],
    pods: &[Pod],
    repository: &str,
) -> Result<BTreeMap<(WorkloadRef, String), String>, String> {
    let mut out = BTreeMap::new();
    for w in workloads {
        if let RolloutState::Progressing(msg) | RolloutState::Failed(msg) =
            rollout_state(w.id.kind, &w.object)
        {
            return Err(format!(
                "{} is not fully rolled out ({msg}); wait for it, then promote",
                w.id
            ));
        }
        for c in w.app_containers(repository) {
            let image = if w.id.kind.has_rollout() {
                let digests = running_digests(w, pods, &c);
                match digests.as_slice() {
                    [one] => ImageRef::pinned(repository, one),
                    [] => {
                        return Err(format!(
                            "{} container {}: no running pod reports an image digest",
                            w.id, c.name
                        ));
                    }
                    many => {
                        return Err(format!(
                            "{} container {}: pods disagree on the image ({}); promote once one image runs everywhere",
                            w.id,
                            c.name,
                            many.join(", ")
                        ));
                    }
                }
            } else {
                // A CronJob has no pods to ask between runs: its spec must already pin a digest.
                match ImageRef::parse(&c.image).digest {
                    Some(d) => ImageRef::pinned(repository, &d),
                    None => {
                        return Err(format!(
                            "{} container {}: image {} is not pinned by digest",
                            w.id, c.name, c.image
                        ));
                    }
                }
            };
            out.insert((w.id.clone(), c.name), image);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Kind;
    use crate::domain::workload::fixtures::workload;
    use serde_json::json;

    fn rolled_out(mut w: Workload) -> Workload {
        w.object.metadata.generation = Some(1);
        w.object.data["spec"]["replicas"] = 2.into();
        w.object.data["status"] = json!({"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2});
        w
    }

    fn pod(app: &str, digest: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": format!("{app}-{digest}"), "labels": {"app": app}},
            "status": {"containerStatuses": [{"name": "web", "image": "x", "imageID": format!("docker-pullable://r/web@{digest}"), "ready": true, "restartCount": 0}]}
        }))
        .unwrap()
    }

    #[test]
    fn agreeing_pods_give_one_digest() {
        let ws = vec![rolled_out(workload(
            Kind::Deployment,
            "web",
            &[("web", "r/web:v1")],
        ))];
        let images = source_images(
            &ws,
            &[pod("web", "sha256:a"), pod("web", "sha256:a")],
            "r/web",
        )
        .unwrap();
        assert_eq!(images.values().collect::<Vec<_>>(), ["r/web@sha256:a"]);
    }

    #[test]
    fn a_finished_rollout_of_a_pinned_digest_ships_it_without_asking_the_pods() {
        let ws = vec![rolled_out(workload(
            Kind::Deployment,
            "web",
            &[("web", "r/web@sha256:a")],
        ))];
        let images = source_images(&ws, &[], "r/web").unwrap();
        assert_eq!(images.values().collect::<Vec<_>>(), ["r/web@sha256:a"]);
    }

    #[test]
    fn disagreeing_pods_are_refused_naming_the_workload() {
        // A tag moved while pods started: only the pods can tell which bytes run.
        let ws = vec![rolled_out(workload(
            Kind::Deployment,
            "web",
            &[("web", "r/web:v1")],
        ))];
        let err = source_images(
            &ws,
            &[pod("web", "sha256:a"), pod("web", "sha256:b")],
            "r/web",
        )
        .unwrap_err();
        assert!(
            err.starts_with("Deployment/web container web: pods disagree"),
            "{err}"
        );
    }

    #[test]
    fn unfinished_rollout_is_refused() {
        let ws = [workload(
            Kind::Deployment,
            "web",
            &[("web", "r/web@sha256:a")],
        )];
        let mut w = ws[0].clone();
        w.object.metadata.generation = Some(2);
        let err = source_images(&[w], &[], "r/web").unwrap_err();
        assert!(err.contains("is not fully rolled out"), "{err}");
    }
}
