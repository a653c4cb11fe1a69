//! What hooks are shown: the `HookRequest` of a phase, built from what the release already
//! read. Pure functions: hooks never call back into the host, and the host reads nothing for
//! them that the release has not read already (other environments only for hooks that declare
//! `needs: [environments]`).

use hooks_sdk::{Approval, EnvironmentState, HookRequest, Phase};
use k8s_openapi::api::core::v1::Pod;
use kube::api::DynamicObject;

use super::{
    Actor, CommitSha, ContainerChange, ImageRef, Kind, Outcome, Release, ReleaseKind, Workload,
};

/// Everything a phase's request is made of.
#[derive(Debug)]
pub struct Facts<'a> {
    pub phase: Phase,
    pub app: &'a str,
    pub actor: &'a Actor,
    pub now: jiff::Timestamp,
    pub kind: ReleaseKind,
    pub revision: u64,
    pub commit: Option<&'a CommitSha>,
    pub target: &'a str,
    pub namespace: &'a str,
    pub source_environment: Option<&'a str>,
    pub forced_source: bool,
    pub changes: &'a [ContainerChange],
    /// The target's workloads as read (the request shows them as they will be applied).
    pub workloads: &'a [Workload],
    pub environments: Vec<EnvironmentState>,
    pub approvals: Vec<Approval>,
    pub history: &'a [Release],
    /// The manifests' objects as they will be applied (empty without manifests); the request
    /// masks Secret values.
    pub objects: Vec<serde_json::Value>,
    /// The Job objects the release runs.
    pub jobs: Vec<serde_json::Value>,
}

/// The request every hook of the phase sees (name and settings are filled in per hook).
pub fn request(facts: Facts<'_>) -> HookRequest {
    let ns = facts.namespace;
    let containers = facts
        .changes
        .iter()
        .map(|c| hooks_sdk::ContainerChange {
            workload: workload_ref(&c.workload, ns),
            container: c.container.clone(),
            image_before: Some(c.before.clone()),
            image_after: c.after.clone(),
            digest_after: c.digest().to_string(),
        })
        .collect();
    HookRequest {
        api_version: hooks_sdk::API_VERSION.into(),
        kind: hooks_sdk::REQUEST_KIND.into(),
        phase: facts.phase,
        hook: String::new(),
        settings: serde_json::Value::Null,
        app: facts.app.into(),
        actor: hooks_sdk::Actor {
            user: facts.actor.user.clone(),
            groups: facts.actor.groups.clone(),
            verified: facts.actor.verified,
        },
        now: facts.now.to_string(),
        release: hooks_sdk::Release {
            kind: facts.kind,
            revision: Some(facts.revision),
            commit: facts.commit.map(ToString::to_string),
            target_environment: facts.target.into(),
            source_environment: facts.source_environment.map(Into::into),
            forced_source: facts.forced_source,
            containers,
        },
        workloads: as_applied(facts.workloads, facts.changes),
        environments: facts.environments,
        approvals: facts.approvals,
        history: facts.history.iter().take(10).map(summary).collect(),
        objects: facts
            .objects
            .into_iter()
            .map(super::manifest::for_hooks)
            .collect(),
        jobs: facts.jobs,
    }
}

fn workload_ref(w: &super::WorkloadRef, namespace: &str) -> hooks_sdk::WorkloadRef {
    hooks_sdk::WorkloadRef::new(format!("{:?}", w.kind), namespace, w.name.clone())
}

/// A workload object as hooks see it: plain Kubernetes JSON with its `apiVersion` and `kind`,
/// without `metadata.managedFields`. Those are the API server's record of which manager set
/// which field (`kubectl get` hides them too), often a third of the object, and every hook of a
/// phase would parse them on every run.
pub fn workload_json(object: &DynamicObject, kind: Kind) -> serde_json::Value {
    let mut value = serde_json::to_value(object).unwrap_or_default();
    if let Some(metadata) = value.get_mut("metadata").and_then(|m| m.as_object_mut()) {
        metadata.remove("managedFields");
    }
    value["apiVersion"] = kind.api_resource("v1").api_version.into();
    value["kind"] = format!("{kind:?}").into();
    value
}

/// The workloads as they will be after the patch: the hook judges what will run.
fn as_applied(workloads: &[Workload], changes: &[ContainerChange]) -> Vec<serde_json::Value> {
    workloads
        .iter()
        .map(|w| {
            let mut value = workload_json(&w.object, w.id.kind);
            let path: String =
                w.id.kind
                    .pod_spec_path()
                    .iter()
                    .map(|k| format!("/{k}"))
                    .collect();
            for field in ["containers", "initContainers"] {
                let Some(list) = value
                    .pointer_mut(&format!("{path}/{field}"))
                    .and_then(|v| v.as_array_mut())
                else {
                    continue;
                };
                for container in list {
                    let name = container["name"].as_str().unwrap_or_default().to_string();
                    if let Some(c) = changes
                        .iter()
                        .find(|c| c.workload == w.id && c.container == name)
                    {
                        container["image"] = c.after.clone().into();
                    }
                }
            }
            value
        })
        .collect()
}

/// One environment's running app containers: each one's image and the distinct digests its
/// pods run (settled by the workload's status or reported in `imageID`, see `running`).
pub fn environment_state(
    name: &str,
    namespace: &str,
    promote_from: Option<&str>,
    live: &[Workload],
    pods: &[Pod],
    repository: &str,
) -> EnvironmentState {
    let mut containers = Vec::new();
    for w in live {
        for c in w.app_containers(repository) {
            let mut digests = crate::domain::running::running_digests(w, pods, &c);
            // A CronJob has no pods between runs: the digest its spec pins is what it runs.
            if !w.id.kind.has_rollout()
                && let Some(pinned) = ImageRef::parse(&c.image).digest
            {
                digests.push(pinned);
            }
            digests.sort();
            digests.dedup();
            containers.push(hooks_sdk::RunningContainer {
                workload: workload_ref(&w.id, namespace),
                container: c.name,
                image: c.image,
                digests,
            });
        }
    }
    EnvironmentState {
        name: name.into(),
        namespace: namespace.into(),
        promote_from: promote_from.map(Into::into),
        containers,
    }
}

/// The target after a completed rollout: every changed container on its new digest (what a
/// rollout being complete means), so post-deploy hooks need no second read.
pub fn after_rollout(mut state: EnvironmentState, changes: &[ContainerChange]) -> EnvironmentState {
    for running in &mut state.containers {
        if let Some(c) = changes.iter().find(|c| {
            c.container == running.container
                && format!("{:?}", c.workload.kind) == running.workload.kind
                && c.workload.name == running.workload.name
        }) {
            running.image = c.after.clone();
            running.digests = vec![c.digest().to_string()];
        }
    }
    state
}

/// A record as the hooks' `history` shows it.
pub fn summary(r: &Release) -> hooks_sdk::ReleaseSummary {
    hooks_sdk::ReleaseSummary {
        revision: r.revision,
        commit: r
            .commit
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        actor: r.actor.user.clone(),
        at: r.finished_at.clone(),
        outcome: match r.outcome {
            // Hooks see a dead run's record as what it is.
            Outcome::InProgress => Outcome::Interrupted,
            other => other,
        },
        kind: r.kind,
        source_environment: r.source_environment.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hooks_see_a_workload_without_its_managed_fields() {
        let object: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": "web",
                "labels": {"team": "payments"},
                "managedFields": [{"manager": "kubectl", "operation": "Apply", "fieldsV1": {"f:spec": {}}}]
            },
            "spec": {"replicas": 2},
            "status": {"readyReplicas": 2}
        }))
        .unwrap();
        let json = workload_json(&object, Kind::Deployment);
        assert_eq!(json["apiVersion"], "apps/v1");
        assert_eq!(json["kind"], "Deployment");
        assert_eq!(json["metadata"]["name"], "web");
        assert_eq!(json["metadata"]["labels"]["team"], "payments");
        assert!(json["metadata"].get("managedFields").is_none(), "{json}");
        assert_eq!(json["spec"]["replicas"], 2);
        assert_eq!(json["status"]["readyReplicas"], 2);
    }
}
