//! The app's manifests in a release: rendered at the released commit with the release's
//! digests, staged (checked against what the server serves, dry-run applied, diffed against the
//! live objects, the previous set's leftovers found), applied in dependency order, pruned once
//! healthy, and put back when the release is undone.

use std::collections::{BTreeMap, BTreeSet};

use futures::{StreamExt as _, TryStreamExt as _};
use kube::api::DynamicObject;
use schemars::JsonSchema;
use serde::Serialize;
use serde_json::Value;

use crate::artifacts::manifests as source;
use crate::cluster::{EnvGateway, Stamp};
use crate::config::{Environment, ReleaseConfig};
use crate::domain::manifest::{self, Manifest, ObjectRef};
use crate::domain::record::RecordedManifests;
use crate::domain::{CommitSha, ContainerChange, Failure, Kind, Workload, WorkloadRef, names};

/// Requests in flight at once while staging: enough to hide latency, few enough for any server.
const CONCURRENCY: usize = 8;

/// An environment's manifests rendered for one release.
#[derive(Debug, Clone)]
pub struct Desired {
    /// The manifests directory, relative to release.yaml.
    pub path: String,
    pub commit: CommitSha,
    /// Images pinned, labelled as the app's, in file order.
    pub objects: Vec<Manifest>,
    /// Job templates marked with a phase (`kubectl-release.io/job-phase`): run as the
    /// release's Jobs, not applied with the set.
    pub job_templates: Vec<Manifest>,
    /// What the user should know: manifest edits not in the commit.
    pub warnings: Vec<String>,
    /// The directory's files as committed, name → text (`None` for a kustomization): what a
    /// mandated generator's output is checked against.
    pub files: Option<BTreeMap<String, String>>,
}

/// Which digest each of the app's containers gets.
pub enum Pins<'a> {
    /// Every app container: a commit-hash deploy.
    Digest(&'a str),
    /// Per container, as in the source of a promotion or the revision restored.
    Exact(&'a BTreeMap<(WorkloadRef, String), String>),
}

/// Reads `env`'s manifests at `commit` and pins the app's images; `None` for an environment
/// without manifests.
pub fn render(
    cfg: &ReleaseConfig,
    env: &Environment,
    commit: &CommitSha,
    pins: &Pins<'_>,
) -> Result<Option<Desired>, Failure> {
    let Some(spec) = &env.manifests else {
        return Ok(None);
    };
    let dir = cfg.path.parent().unwrap_or(std::path::Path::new("."));
    let read = source::read_at_commit(dir, commit, &spec.path)?;
    let mut objects = Vec::new();
    for file in &read.sources {
        let parsed = manifest::parse(&file.file, &file.text)
            .map_err(|e| Failure::invalid(format!("{e}; fix the manifest and commit it")))?;
        objects.extend(parsed);
    }
    let labels = BTreeMap::from([
        (names::LABEL_APP.to_string(), cfg.app.clone()),
        (
            names::LABEL_MANAGED_BY.to_string(),
            names::MANAGER.to_string(),
        ),
    ]);
    for m in &mut objects {
        pin(m, &cfg.image, pins)?;
        manifest::label(m, &labels);
    }
    let path = spec.path.display().to_string();
    let mut warnings = Vec::new();
    if !read.uncommitted.is_empty() {
        warnings.push(format!(
            "{} has changes that are not in commit {} and are not deployed: {}; commit them to release them",
            path,
            commit.short(),
            read.uncommitted.join(", ")
        ));
    }
    let (job_templates, objects): (Vec<Manifest>, Vec<Manifest>) =
        objects.into_iter().partition(is_phase_job);
    let files = (!read.kustomized).then(|| {
        read.sources
            .iter()
            .map(|s| {
                let name = s.file.rsplit('/').next().unwrap_or(&s.file);
                (name.to_string(), s.text.clone())
            })
            .collect()
    });
    Ok(Some(Desired {
        files,
        path,
        commit: commit.clone(),
        objects,
        job_templates,
        warnings,
    }))
}

/// A Job of the manifests marked to run in a phase of the release.
fn is_phase_job(m: &Manifest) -> bool {
    m.kind() == "Job"
        && m.object
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(names::ANNOTATION_JOB_PHASE))
            .is_some()
}

fn pin(m: &mut Manifest, repository: &str, pins: &Pins<'_>) -> Result<(), Failure> {
    let workload = workload_ref(m.kind(), m.name());
    let pick = |container: &str| -> Option<String> {
        match pins {
            Pins::Digest(digest) => Some(crate::domain::ImageRef::pinned(repository, digest)),
            Pins::Exact(images) => exact_pin(images, workload.as_ref(), container),
        }
    };
    manifest::pin_images(m, repository, &pick)
        .map(|_| ())
        .map_err(|e| {
            Failure::invalid(format!(
                "{e}: the environment the images come from runs no such container; \
             deploy the commit there first"
            ))
        })
}

/// The image of `container` in `workload`, or — when the source runs one image only — that one.
fn exact_pin(
    images: &BTreeMap<(WorkloadRef, String), String>,
    workload: Option<&WorkloadRef>,
    container: &str,
) -> Option<String> {
    if let Some(w) = workload
        && let Some(image) = images.get(&(w.clone(), container.to_string()))
    {
        return Some(image.clone());
    }
    let distinct: BTreeSet<&String> = images.values().collect();
    match distinct.into_iter().collect::<Vec<_>>().as_slice() {
        [only] => Some((*only).clone()),
        _ => None,
    }
}

fn workload_ref(kind: &str, name: &str) -> Option<WorkloadRef> {
    let kind = Kind::ALL.into_iter().find(|k| format!("{k:?}") == kind)?;
    Some(WorkloadRef {
        kind,
        name: name.to_string(),
    })
}

/// One object of the set, as the server would make it.
#[derive(Debug, Clone)]
pub struct StagedObject {
    pub manifest: Manifest,
    /// The object as it is now; `None` when the release creates it.
    pub live: Option<Value>,
    /// The server's dry run of applying it.
    pub merged: Value,
    /// `kubectl diff`-style, Secret values masked; empty when unchanged.
    pub diff: String,
}

/// The manifests checked, dry-run and diffed: what applying them would do.
#[derive(Debug, Clone)]
pub struct Staged {
    pub path: String,
    pub digest: String,
    /// In apply order.
    pub objects: Vec<StagedObject>,
    /// Members of the previous set the manifests no longer have, in delete order.
    pub prune: Vec<ObjectRef>,
    /// The group-kinds of the previous set and of this one.
    pub previous_kinds: Vec<String>,
    pub kinds: Vec<String>,
}

impl Staged {
    /// Nothing to apply and nothing to prune.
    pub fn unchanged(&self) -> bool {
        self.prune.is_empty() && self.objects.iter().all(|o| o.diff.is_empty())
    }

    pub fn record(&self) -> RecordedManifests {
        RecordedManifests {
            path: self.path.clone(),
            digest: self.digest.clone(),
            objects: self.objects.iter().map(|o| o.manifest.id()).collect(),
            pruned: self.prune.clone(),
        }
    }

    /// What each object's release does, for the report.
    pub fn changes(&self) -> Vec<ObjectChange> {
        let mut out: Vec<ObjectChange> = self
            .objects
            .iter()
            .map(|o| ObjectChange {
                object: o.manifest.id(),
                action: match (&o.live, o.diff.is_empty()) {
                    (None, _) => ObjectAction::Create,
                    (Some(_), true) => ObjectAction::Unchanged,
                    (Some(_), false) => ObjectAction::Update,
                },
                diff: o.diff.clone(),
            })
            .collect();
        out.extend(self.prune.iter().map(|id| ObjectChange {
            object: id.clone(),
            action: ObjectAction::Prune,
            diff: String::new(),
        }));
        out
    }

    /// The app's containers before and after, for every workload of the set: a new workload's
    /// containers have no `before`.
    pub fn container_changes(&self, repository: &str) -> Vec<ContainerChange> {
        let mut out = Vec::new();
        for o in &self.objects {
            let Some(after) = as_workload(&o.manifest.id(), &o.merged) else {
                continue;
            };
            let before: BTreeMap<String, String> = o
                .live
                .as_ref()
                .and_then(|live| as_workload(&o.manifest.id(), live))
                .map(|w| {
                    w.containers()
                        .into_iter()
                        .map(|c| (c.name, c.image))
                        .collect()
                })
                .unwrap_or_default();
            for c in after.app_containers(repository) {
                out.push(ContainerChange {
                    workload: after.id.clone(),
                    before: before.get(&c.name).cloned().unwrap_or_default(),
                    container: c.name,
                    after: c.image,
                });
            }
        }
        out.sort_by(|a, b| (&a.workload, &a.container).cmp(&(&b.workload, &b.container)));
        out
    }
}

/// What a release does to one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ObjectAction {
    Create,
    Update,
    Unchanged,
    Prune,
}

/// One object in the report: what the release does to it, and the diff.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectChange {
    pub object: ObjectRef,
    pub action: ObjectAction,
    /// Unified diff of the live object against the release's (Secret values masked).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub diff: String,
}

/// A workload of the set (a kind the release waits for), from an object's JSON.
pub fn as_workload(id: &ObjectRef, object: &Value) -> Option<Workload> {
    let kind = workload_ref(&id.kind, &id.name)?;
    let object: DynamicObject = serde_json::from_value(object.clone()).ok()?;
    Some(Workload { id: kind, object })
}

/// Checks every object against what the server serves and the environment allows, dry-runs
/// the set and finds the previous set's leftovers. An error names the object and its file; the
/// cluster is unchanged.
pub async fn stage<G: EnvGateway>(
    gateway: &G,
    desired: &Desired,
    namespace: &str,
    allowed: manifest::Allowed,
    force: bool,
) -> Result<Staged, anyhow::Error> {
    let mut objects = desired.objects.clone();
    for m in &mut objects {
        let scope = gateway
            .served_scope(m.api_version(), m.kind())
            .await?
            .ok_or_else(|| {
                Failure::invalid(format!(
                    "{}: kind: the server does not know {} in {}; check `apiVersion` and `kind`, or install its CustomResourceDefinition first",
                    m.origin,
                    m.kind(),
                    m.api_version()
                ))
            })?;
        manifest::check_scope(m, scope, namespace, allowed).map_err(|e| {
            Failure::invalid(format!("{e}; fix the manifest or `allow` in release.yaml"))
        })?;
        let part_of = BTreeMap::from([(
            crate::cluster::objects::LABEL_PART_OF.to_string(),
            gateway.applyset_id(),
        )]);
        manifest::label(m, &part_of);
    }
    refuse_duplicates(&objects)?;
    manifest::sort_for_apply(&mut objects);
    let digest = manifest::digest(&objects);
    let staged: Vec<StagedObject> =
        futures::stream::iter(objects.into_iter().map(|m| async move {
            let id = m.id();
            let live = gateway.live_object(&id).await?;
            let merged = gateway.apply_object(&m, true, force).await?;
            let diff = manifest::diff(
                &id,
                live.as_ref().map(without_stamp).as_ref(),
                Some(&without_stamp(&merged)),
            );
            Ok::<_, anyhow::Error>(StagedObject {
                manifest: m,
                live,
                merged,
                diff,
            })
        }))
        .buffered(CONCURRENCY)
        .try_collect()
        .await?;
    let previous_kinds = gateway.applyset_kinds().await?;
    let keep: BTreeSet<ObjectRef> = staged.iter().map(|o| key(&o.manifest.id())).collect();
    let mut prune: Vec<ObjectRef> = gateway
        .applyset_members(&previous_kinds)
        .await?
        .into_iter()
        .filter(|id| !keep.contains(&key(id)))
        .collect();
    manifest::sort_for_delete(&mut prune);
    let mut kinds: Vec<String> = staged
        .iter()
        .map(|o| o.manifest.id().group_kind())
        .collect();
    kinds.sort();
    kinds.dedup();
    Ok(Staged {
        path: desired.path.clone(),
        digest,
        objects: staged,
        prune,
        previous_kinds,
        kinds,
    })
}

/// An object's identity regardless of the API version it is served at.
fn key(id: &ObjectRef) -> ObjectRef {
    ObjectRef {
        api_version: id.group().to_string(),
        ..id.clone()
    }
}

fn refuse_duplicates(objects: &[Manifest]) -> Result<(), Failure> {
    let mut seen: BTreeMap<ObjectRef, &Manifest> = BTreeMap::new();
    for m in objects {
        if let Some(first) = seen.insert(key(&m.id()), m) {
            return Err(Failure::invalid(format!(
                "{}: {} is also defined at {}; keep one of them",
                m.origin,
                m.id(),
                first.origin
            )));
        }
    }
    Ok(())
}

/// The release's annotations on a workload of the set, as image patches write them.
pub fn stamp(m: &Manifest, stamp: &Stamp) -> Manifest {
    let mut m = m.clone();
    if workload_ref(m.kind(), m.name()).is_none() {
        return m;
    }
    let mut annotations = BTreeMap::from([
        (
            names::ANNOTATION_REVISION.to_string(),
            stamp.revision.to_string(),
        ),
        (
            names::ANNOTATION_ENVIRONMENT.to_string(),
            stamp.environment.clone(),
        ),
        (names::ANNOTATION_APP.to_string(), stamp.app.clone()),
    ]);
    if let Some(commit) = &stamp.commit {
        annotations.insert(names::ANNOTATION_COMMIT.to_string(), commit.clone());
    }
    if let Some(tag) = &stamp.image_tag {
        annotations.insert(names::ANNOTATION_IMAGE_TAG.to_string(), tag.clone());
    }
    let meta = &mut m.object["metadata"];
    if !meta["annotations"].is_object() {
        meta["annotations"] = Value::Object(serde_json::Map::new());
    }
    for (k, v) in annotations {
        meta["annotations"][k] = Value::String(v);
    }
    m
}

/// An object without the release's own bookkeeping: the annotations name the revision, so they
/// change with every release, and the labels only say whose set the object is in. Neither is
/// config: an adopted app (`init`) whose objects lack them deploys as `unchanged`, and its
/// objects join the set with the first release that changes anything.
fn without_stamp(object: &Value) -> Value {
    let mut object = object.clone();
    for (field, ours) in [
        ("annotations", &["kubectl-release.io/"][..]),
        (
            "labels",
            &[
                "kubectl-release.io/",
                "applyset.kubernetes.io/part-of",
                names::LABEL_MANAGED_BY,
            ][..],
        ),
    ] {
        let Some(map) = object
            .pointer_mut(&format!("/metadata/{field}"))
            .and_then(Value::as_object_mut)
        else {
            continue;
        };
        map.retain(|k, _| !ours.iter().any(|prefix| k.starts_with(prefix)));
        if map.is_empty()
            && let Some(meta) = object["metadata"].as_object_mut()
        {
            meta.remove(field);
        }
    }
    object
}

/// Fields the server allocates once and refuses to see unset later: applied as ours, the next
/// release (which does not name them) would try to remove them.
fn without_allocated_fields(mut object: Value) -> Value {
    for pointer in ["/spec/clusterIP", "/spec/clusterIPs", "/spec/volumeName"] {
        if let Some((parent, key)) = pointer.rsplit_once('/')
            && let Some(map) = object.pointer_mut(parent).and_then(Value::as_object_mut)
        {
            map.remove(key);
        }
    }
    object
}

/// The object as it was before the release, to apply again when undoing.
pub fn restoring(staged: &StagedObject) -> Option<Manifest> {
    let live = staged.live.as_ref()?;
    // What we applied before, not the whole live object: owning the fields the server filled
    // in (a Service's clusterIP) would make the next release remove them. An object we never
    // applied gets its earlier self back whole.
    let object = manifest::applied_by(live, names::MANAGER)
        .unwrap_or_else(|| without_allocated_fields(manifest::without_server_fields(live)));
    Some(Manifest {
        origin: staged.manifest.origin.clone(),
        object,
    })
}
