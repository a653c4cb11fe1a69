//! Changing workloads and watching them roll out.
//!
//! Patches touch only the image fields of the app's containers (a strategic merge patch keyed by
//! container name) plus our annotations, and carry the resourceVersion we planned against, so a
//! workload changed by someone else in between is a conflict, not a silent overwrite.
//!
//! Waiting is watch-driven: one watch on the workload and one on its pods, evaluated on every
//! event, never a sleep loop. Both start from the version the release patched (see
//! [`super::resumed_watch`]), not with a list.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DynamicObject, LogParams, Patch, PatchParams};
use kube::runtime::watcher::{self, Event};
use serde_json::{Value, json};

use super::ServerApis;
use super::resumed_watch::{Start, watch_from};
use crate::domain::rollout_state::{RolloutState, carries_images, rollout_state, stuck_container};
use crate::domain::{ContainerChange, Kind, Workload, WorkloadRef};
use crate::progress::Progress;

/// Annotations written on every changed workload.
#[derive(Debug, Clone)]
pub struct Stamp {
    pub app: String,
    pub revision: u64,
    pub commit: Option<String>,
    pub image_tag: Option<String>,
    pub environment: String,
}

/// The strategic merge patch that sets `changes`' images on one workload.
pub fn image_patch(
    kind: Kind,
    resource_version: Option<&str>,
    changes: &[&ContainerChange],
    init: &[String],
    stamp: &Stamp,
) -> Value {
    let entry = |c: &&ContainerChange| json!({"name": c.container, "image": c.after});
    let (inits, mains): (Vec<&&ContainerChange>, Vec<&&ContainerChange>) =
        changes.iter().partition(|c| init.contains(&c.container));
    let mut pod_spec = serde_json::Map::new();
    if !mains.is_empty() {
        pod_spec.insert(
            "containers".into(),
            Value::Array(mains.into_iter().map(entry).collect()),
        );
    }
    if !inits.is_empty() {
        pod_spec.insert(
            "initContainers".into(),
            Value::Array(inits.into_iter().map(entry).collect()),
        );
    }
    let mut spec = Value::Object(pod_spec);
    for key in kind.pod_spec_path().iter().rev() {
        spec = json!({ *key: spec });
    }
    let mut annotations = serde_json::Map::new();
    annotations.insert(
        crate::domain::names::ANNOTATION_REVISION.into(),
        stamp.revision.to_string().into(),
    );
    annotations.insert(
        crate::domain::names::ANNOTATION_ENVIRONMENT.into(),
        stamp.environment.clone().into(),
    );
    annotations.insert(
        crate::domain::names::ANNOTATION_APP.into(),
        stamp.app.clone().into(),
    );
    annotations.insert(
        crate::domain::names::ANNOTATION_COMMIT.into(),
        stamp.commit.clone().map_or(Value::Null, Value::from),
    );
    annotations.insert(
        crate::domain::names::ANNOTATION_IMAGE_TAG.into(),
        stamp.image_tag.clone().map_or(Value::Null, Value::from),
    );
    spec["metadata"] = json!({ "annotations": annotations });
    if let Some(rv) = resource_version {
        spec["metadata"]["resourceVersion"] = rv.into();
    }
    spec
}

/// Sets `changes`' images on one workload; returns the patched object (its new generation is
/// what the wait must see observed). With `check_version` the patch carries the
/// resourceVersion it was planned against.
pub async fn patch_one(
    client: &kube::Client,
    apis: &ServerApis,
    namespace: &str,
    w: &Workload,
    mine: &[&ContainerChange],
    stamp: &Stamp,
    check_version: bool,
) -> anyhow::Result<Workload> {
    let params = PatchParams {
        field_manager: Some(crate::domain::names::MANAGER.into()),
        ..Default::default()
    };
    let init: Vec<String> = w
        .containers()
        .into_iter()
        .filter(|c| c.init)
        .map(|c| c.name)
        .collect();
    let api = apis.api(client, namespace, w.id.kind);
    let mut current = w.clone();
    let mut attempts = 0;
    loop {
        let rv = if check_version {
            current.resource_version()
        } else {
            None
        };
        let patch = image_patch(w.id.kind, rv, mine, &init, stamp);
        match api
            .patch(&w.id.name, &params, &Patch::Strategic(&patch))
            .await
        {
            Ok(object) => {
                return Ok(Workload {
                    id: w.id.clone(),
                    object,
                });
            }
            // A conflict only says the object moved on; its status moves all the time (pods
            // becoming ready). If its spec is still the one we planned against — same
            // generation, same images — patch again against the new version; otherwise
            // someone else changed it and the plan no longer holds.
            Err(kube::Error::Api(s)) if s.code == 409 && attempts < 5 => {
                attempts += 1;
                let fresh = Workload {
                    id: w.id.clone(),
                    object: api.get(&w.id.name).await?,
                };
                if !same_spec(w, &fresh, mine) {
                    anyhow::bail!(
                        "{} was changed by someone else while this release was being prepared; run again",
                        w.id
                    );
                }
                current = fresh;
            }
            Err(kube::Error::Api(s)) if s.code == 403 => {
                anyhow::bail!("{} may not be changed: {}", w.id, s.message);
            }
            Err(e) => {
                return Err(anyhow::Error::new(e).context(format!("cannot patch {}", w.id)));
            }
        }
    }
}

/// Whether `fresh` still has the spec the plan was made from: the same generation and, for the
/// planned containers, the same images as before.
fn same_spec(planned: &Workload, fresh: &Workload, changes: &[&ContainerChange]) -> bool {
    let images: BTreeMap<String, String> = fresh
        .containers()
        .into_iter()
        .map(|c| (c.name, c.image))
        .collect();
    planned.object.metadata.generation == fresh.object.metadata.generation
        && changes
            .iter()
            .all(|c| images.get(&c.container) == Some(&c.before))
}

/// Why a wait ended without success.
#[derive(Debug, Clone)]
pub enum WaitFailure {
    /// A pod is stuck or the controller gave up: the release failed.
    Failed {
        workload: WorkloadRef,
        reason: String,
    },
    /// The deadline passed first.
    TimedOut { pending: Vec<String> },
}

/// Waits until every workload has rolled out, one failing, or `timeout` — whichever comes first.
pub async fn wait_all(
    client: &kube::Client,
    apis: &ServerApis,
    namespace: &str,
    workloads: &[Workload],
    new_images: &BTreeMap<WorkloadRef, Vec<String>>,
    timeout: Duration,
    progress: &Progress,
) -> Result<Vec<String>, WaitFailure> {
    let waits = workloads
        .iter()
        .filter(|w| w.id.kind.has_rollout())
        .map(|w| {
            let images = new_images.get(&w.id).cloned().unwrap_or_default();
            let line = progress.line(&w.id.to_string());
            async move {
                let result = wait_one(client, apis, namespace, w, &images, &line).await;
                match &result {
                    Ok(None) => line.finish("rolled out"),
                    Ok(Some(note)) => line.finish(note),
                    Err(reason) => line.finish(&format!("FAILED: {reason}")),
                }
                result
                    .map(|note| note.map(|n| format!("{}: {n}", w.id)))
                    .map_err(|reason| WaitFailure::Failed {
                        workload: w.id.clone(),
                        reason,
                    })
            }
        });
    let all = futures::future::try_join_all(waits);
    match tokio::time::timeout(timeout, all).await {
        Ok(result) => result.map(|notes| notes.into_iter().flatten().collect()),
        Err(_) => Err(WaitFailure::TimedOut {
            pending: progress.unfinished(),
        }),
    }
}

/// Watches one workload and its pods until it is complete (`Ok`, with a note when it is
/// complete without its pods changing) or hopeless (`Err(reason)`).
async fn wait_one(
    client: &kube::Client,
    apis: &ServerApis,
    namespace: &str,
    workload: &Workload,
    images: &[String],
    line: &crate::progress::Line,
) -> Result<Option<String>, String> {
    let api = apis.api(client, namespace, workload.id.kind);
    let (workload_start, pods_start) = starts(workload);
    let objects = watch_from(
        api,
        watcher::Config::default().fields(&format!("metadata.name={}", workload.id.name)),
        workload_start,
    )
    .map_ok(|e| Change::Workload(Box::new(e)));
    let pods_api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let pod_config = match workload.pod_selector() {
        Some(selector) => watcher::Config::default().labels(&selector),
        None => watcher::Config::default(),
    };
    let pods =
        watch_from(pods_api.clone(), pod_config, pods_start).map_ok(|e| Change::Pod(Box::new(e)));
    let mut events = futures::stream::select(objects, pods);
    while let Some(event) = events.next().await {
        match event {
            Ok(Change::Workload(event)) => match *event {
                Event::Apply(obj) | Event::InitApply(obj) => {
                    // A GitOps controller applies the images some time after the release: until
                    // the workload carries them, its rollout is not this release's.
                    let live = Workload {
                        id: workload.id.clone(),
                        object: obj,
                    };
                    if !carries_images(&live, images) {
                        line.set("waiting for the new images to be applied to the workload");
                        continue;
                    }
                    match rollout_state(workload.id.kind, &live.object) {
                        RolloutState::Complete => return Ok(None),
                        RolloutState::CompleteWithoutPods(note) => return Ok(Some(note)),
                        RolloutState::Failed(reason) => return Err(reason),
                        RolloutState::Progressing(msg) => line.set(&msg),
                    }
                }
                _ => {}
            },
            Ok(Change::Pod(event)) => {
                if let Event::Apply(pod) | Event::InitApply(pod) = *event
                    && let Some((container, reason, message)) = stuck_container(&pod, images)
                {
                    let name = pod.metadata.name.clone().unwrap_or_default();
                    let logs = last_log_lines(&pods_api, &name, &container).await;
                    return Err(format!(
                        "pod {name} container {container}: {reason}: {message}{logs}"
                    ));
                }
            }
            // Watch errors are retried by the watcher; say so only in logs.
            Err(e) => tracing::debug!(workload = %workload.id, "watch error (retrying): {e}"),
        }
    }
    Err("the watch ended unexpectedly".into())
}

/// Where the watches of `workload` (as the release last read or patched it) start. The workload's
/// own watch starts from that object, with it as the first event. Its pods' watch starts from
/// the same version only while the controller has not yet seen the workload's generation: then
/// no pod of the new template can exist yet, so every pod that matters is created after that
/// version. Otherwise (nothing changed, or a GitOps controller applies the change later) pods
/// carrying the images may already exist, and only a list shows them. A workload's version
/// serves for its pods because both are revisions of the same etcd; a server that stores pods
/// elsewhere refuses or cannot place it, and the watch falls back to a list.
fn starts(workload: &Workload) -> (Start<DynamicObject>, Start<Pod>) {
    let Some(version) = workload.resource_version() else {
        return (Start::Listed, Start::Listed);
    };
    let observed = workload
        .object
        .data
        .pointer("/status/observedGeneration")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    // No observedGeneration yet: the controller has not seen the object at all (just created).
    let unseen = workload
        .object
        .metadata
        .generation
        .is_some_and(|generation| observed < generation);
    let pods = if unseen {
        Start::From {
            version: version.to_string(),
            known: None,
        }
    } else {
        Start::Listed
    };
    let own = Start::From {
        version: version.to_string(),
        known: Some(workload.object.clone()),
    };
    (own, pods)
}

enum Change {
    Workload(Box<Event<DynamicObject>>),
    Pod(Box<Event<Pod>>),
}

/// The last lines of a failing container's log, when the server can give them.
async fn last_log_lines(api: &Api<Pod>, pod: &str, container: &str) -> String {
    let params = LogParams {
        container: Some(container.into()),
        tail_lines: Some(5),
        ..Default::default()
    };
    match tokio::time::timeout(Duration::from_secs(3), api.logs(pod, &params)).await {
        Ok(Ok(text)) if !text.trim().is_empty() => format!(
            "\n  last log lines:\n    {}",
            text.trim().replace('\n', "\n    ")
        ),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::workload::fixtures::workload;

    #[test]
    fn a_status_only_change_keeps_the_plan_and_a_spec_change_breaks_it() {
        let planned = workload(Kind::Deployment, "web", &[("web", "r/web@sha256:a")]);
        let change = ContainerChange {
            workload: planned.id.clone(),
            container: "web".into(),
            before: "r/web@sha256:a".into(),
            after: "r/web@sha256:b".into(),
        };
        // Pods became ready: new resourceVersion, same generation and images.
        let mut status_moved = planned.clone();
        status_moved.object.metadata.resource_version = Some("2".into());
        status_moved.object.data["status"] = json!({"readyReplicas": 3});
        assert!(same_spec(&planned, &status_moved, &[&change]));
        // Someone set another image: the plan no longer holds.
        let edited = workload(Kind::Deployment, "web", &[("web", "r/web:hotfix")]);
        assert!(!same_spec(&planned, &edited, &[&change]));
        // Someone scaled it (a spec change): generation moved on.
        let mut scaled = planned.clone();
        scaled.object.metadata.generation = Some(7);
        assert!(!same_spec(&planned, &scaled, &[&change]));
    }

    #[test]
    fn pods_are_watched_from_the_patch_only_while_its_generation_is_unseen() {
        let version = |s: &Start<Pod>| match s {
            Start::From { version, known } => {
                assert!(known.is_none());
                Some(version.clone())
            }
            Start::Listed => None,
        };
        let mut patched = workload(Kind::Deployment, "web", &[("web", "r/web@sha256:b")]);
        patched.object.metadata.resource_version = Some("41".into());
        patched.object.metadata.generation = Some(3);
        patched.object.data["status"] = json!({"observedGeneration": 2});
        let (own, pods) = starts(&patched);
        assert_eq!(version(&pods).as_deref(), Some("41"));
        match own {
            Start::From { version, known } => {
                assert_eq!(version, "41");
                assert_eq!(known.unwrap().metadata.generation, Some(3));
            }
            Start::Listed => panic!("the workload's own watch starts from the patch"),
        }
        // Seen already (a patch that changed nothing, or a GitOps read): its pods may exist.
        patched.object.data["status"] = json!({"observedGeneration": 3});
        assert_eq!(version(&starts(&patched).1), None);
        // Just created, never seen by its controller: no pod of it can exist yet.
        patched.object.data["status"] = json!({});
        assert_eq!(version(&starts(&patched).1).as_deref(), Some("41"));
        // No generation known, no version: a list, as before.
        patched.object.metadata.generation = None;
        assert_eq!(version(&starts(&patched).1), None);
        patched.object.metadata.resource_version = None;
        assert!(matches!(starts(&patched), (Start::Listed, Start::Listed)));
    }

    #[test]
    fn patch_touches_only_images_and_our_annotations() {
        let change = ContainerChange {
            workload: WorkloadRef {
                kind: Kind::CronJob,
                name: "nightly".into(),
            },
            container: "job".into(),
            before: "r/web:old".into(),
            after: "r/web@sha256:b".into(),
        };
        let stamp = Stamp {
            app: "web".into(),
            revision: 4,
            commit: Some("c".repeat(40)),
            image_tag: Some("r/web:cc".into()),
            environment: "qa".into(),
        };
        let patch = image_patch(Kind::CronJob, Some("42"), &[&change], &[], &stamp);
        assert_eq!(
            patch["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"],
            json!([{"name": "job", "image": "r/web@sha256:b"}])
        );
        assert_eq!(patch["metadata"]["resourceVersion"], "42");
        assert_eq!(
            patch["metadata"]["annotations"]["kubectl-release.io/revision"],
            "4"
        );
        assert_eq!(
            patch.as_object().unwrap().len(),
            2,
            "only spec and metadata: {patch}"
        );
    }
}
