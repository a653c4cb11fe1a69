//! Any object of the app's manifests: what the server serves (discovery, one request per API
//! version and process), server-side apply (dry run or for real, under our field manager), reads,
//! deletes, and the ApplySet that names the set so the next release can prune it.
//!
//! The ApplySet follows KEP-3659 as kubectl implements it: a ConfigMap parent labelled with the
//! set's id and annotated with the group-kinds it contains; every member labelled
//! `applyset.kubernetes.io/part-of: <id>`. kubectl only manages sets whose tooling is `kubectl`,
//! so the parent says `kubectl/…`: `kubectl apply --prune --applyset=configmap/<parent>` then
//! sees and prunes the same set this tool does.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use anyhow::{Context as _, Result};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::domain::manifest::{self, Manifest, ObjectRef, Scope};
use crate::domain::names;

pub const LABEL_APPLYSET_ID: &str = "applyset.kubernetes.io/id";
pub const LABEL_PART_OF: &str = "applyset.kubernetes.io/part-of";
pub const ANNOTATION_TOOLING: &str = "applyset.kubernetes.io/tooling";
pub const ANNOTATION_GROUP_KINDS: &str = "applyset.kubernetes.io/contains-group-kinds";
/// Namespaces other than the parent's holding members (an environment allowing
/// `otherNamespaces`), as KEP-3659 and kubectl name them: without it a member there is never
/// found, so never pruned.
pub const ANNOTATION_ADDITIONAL_NAMESPACES: &str = "applyset.kubernetes.io/additional-namespaces";
/// kubectl refuses ApplySets whose tooling name is not `kubectl`; the version part says who wrote it.
const TOOLING: &str = concat!(
    "kubectl/v1.32.0+kubectl-release.",
    env!("CARGO_PKG_VERSION")
);

/// A resource the server serves.
#[derive(Debug, Clone)]
pub struct Served {
    pub resource: ApiResource,
    pub scope: Scope,
}

/// The objects of one namespace's app, through one client.
pub struct Objects {
    client: kube::Client,
    namespace: String,
    /// apiVersion → what it serves; `None` when the server does not serve that version.
    served: Mutex<HashMap<String, Option<Arc<Vec<Served>>>>>,
    /// group → its preferred version, for the group-kinds an ApplySet parent names.
    preferred: Mutex<Option<Arc<BTreeMap<String, String>>>>,
    /// Namespaces other than `namespace` of the objects applied (or dry-run) through this
    /// value: this set's additional namespaces.
    others: std::sync::Mutex<BTreeSet<String>>,
}

impl Objects {
    pub fn new(client: &kube::Client, namespace: &str) -> Objects {
        Objects {
            client: client.clone(),
            namespace: namespace.into(),
            served: Mutex::new(HashMap::new()),
            preferred: Mutex::new(None),
            others: std::sync::Mutex::new(BTreeSet::new()),
        }
    }

    /// The ApplySet parent of `app`'s objects in this namespace.
    pub fn parent_name(app: &str) -> String {
        format!("applyset-{app}")
    }

    /// The set's id, as kubectl computes it for `--applyset=configmap/<parent>`.
    pub fn applyset_id(&self, app: &str) -> String {
        manifest::applyset_id(&Self::parent_name(app), &self.namespace, "ConfigMap", "")
    }

    /// The resource serving `kind` in `api_version`, or `None` when the server does not know it.
    pub async fn served(&self, api_version: &str, kind: &str) -> Result<Option<Served>> {
        let all = self.version(api_version).await?;
        Ok(all.and_then(|list| list.iter().find(|s| s.resource.kind == kind).cloned()))
    }

    async fn version(&self, api_version: &str) -> Result<Option<Arc<Vec<Served>>>> {
        let mut cache = self.served.lock().await;
        if let Some(known) = cache.get(api_version) {
            return Ok(known.clone());
        }
        let listed = if api_version.contains('/') {
            self.client.list_api_group_resources(api_version).await
        } else {
            self.client.list_core_api_resources(api_version).await
        };
        let found = match listed {
            Ok(list) => Some(Arc::new(served_from(api_version, &list))),
            Err(kube::Error::Api(e)) if e.code == 404 => None,
            Err(e) => {
                return Err(anyhow::Error::new(e)
                    .context(format!("cannot discover the resources of {api_version}")));
            }
        };
        cache.insert(api_version.to_string(), found.clone());
        Ok(found)
    }

    async fn api_for(&self, id: &ObjectRef) -> Result<Api<DynamicObject>> {
        let served = self
            .served(&id.api_version, &id.kind)
            .await?
            .ok_or_else(|| {
                anyhow::anyhow!("the server does not serve {} {}", id.api_version, id.kind)
            })?;
        Ok(self.api(&served, id.namespace.as_deref()))
    }

    fn api(&self, served: &Served, namespace: Option<&str>) -> Api<DynamicObject> {
        match served.scope {
            Scope::Namespaced => Api::namespaced_with(
                self.client.clone(),
                namespace.unwrap_or(&self.namespace),
                &served.resource,
            ),
            Scope::Cluster => Api::all_with(self.client.clone(), &served.resource),
        }
    }

    /// The live object, or `None` when it does not exist.
    pub async fn get(&self, id: &ObjectRef) -> Result<Option<Value>> {
        let api = self.api_for(id).await?;
        let found = api
            .get_opt(&id.name)
            .await
            .with_context(|| format!("cannot read {id}"))?;
        Ok(found.map(|o| serde_json::to_value(o).unwrap_or(Value::Null)))
    }

    /// Server-side applies one object under our field manager; with `dry_run` the server
    /// validates, defaults and merges it without storing anything. `force` takes over fields
    /// another manager owns.
    pub async fn apply(&self, m: &Manifest, dry_run: bool, force: bool) -> Result<Value> {
        let id = m.id();
        let api = self.api_for(&id).await?;
        if let Some(ns) = id.namespace.as_deref()
            && ns != self.namespace
        {
            self.others
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(ns.to_string());
        }
        let mut params = PatchParams::apply(names::MANAGER);
        if force {
            params = params.force();
        }
        if dry_run {
            params = params.dry_run();
        }
        let applied = api
            .patch(&id.name, &params, &Patch::Apply(&m.object))
            .await
            .map_err(|e| describe_apply_error(e, m, dry_run))?;
        Ok(serde_json::to_value(applied).unwrap_or(Value::Null))
    }

    /// Deletes one object; one already gone is fine.
    pub async fn delete(&self, id: &ObjectRef) -> Result<()> {
        let api = self.api_for(id).await?;
        let params = DeleteParams::background();
        match api.delete(&id.name, &params).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(e) => Err(anyhow::Error::new(e).context(format!("cannot delete {id}"))),
        }
    }

    /// Whether the namespace exists. A user whose rights end at the namespace (most deployers)
    /// may not read Namespace objects: then it is taken to exist, since such a user could not
    /// create it either, and if it is missing the release's first write there says so.
    pub async fn namespace_exists(&self) -> Result<bool> {
        let api = Api::<Namespace>::all(self.client.clone());
        match api.get_opt(&self.namespace).await {
            Ok(found) => Ok(found.is_some()),
            Err(kube::Error::Api(e)) if e.code == 403 => Ok(true),
            Err(e) => {
                Err(anyhow::Error::new(e)
                    .context(format!("cannot read namespace {}", self.namespace)))
            }
        }
    }

    /// Deletes the namespace (one this run created and left empty).
    pub async fn delete_namespace(&self) -> Result<()> {
        let api = Api::<Namespace>::all(self.client.clone());
        match api
            .delete(&self.namespace, &DeleteParams::background())
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(e) => Err(anyhow::Error::new(e)
                .context(format!("cannot delete namespace {}", self.namespace))),
        }
    }

    /// Creates the namespace (server-side applied, so a racing creation is no error).
    pub async fn create_namespace(&self, app: &str) -> Result<()> {
        let api = Api::<Namespace>::all(self.client.clone());
        let ns = json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": self.namespace, "labels": {names::LABEL_MANAGED_BY: names::MANAGER, names::LABEL_APP: app}},
        });
        api.patch(
            &self.namespace,
            &PatchParams::apply(names::MANAGER),
            &Patch::Apply(&ns),
        )
        .await
        .with_context(|| format!("cannot create namespace {}", self.namespace))?;
        Ok(())
    }

    /// The group-kinds the app's ApplySet parent says it contains (empty: no set yet).
    pub async fn applyset_group_kinds(&self, app: &str) -> Result<Vec<String>> {
        self.parent_list(app, ANNOTATION_GROUP_KINDS).await
    }

    /// A comma-separated annotation of the app's ApplySet parent (empty: no set yet).
    async fn parent_list(&self, app: &str, annotation: &str) -> Result<Vec<String>> {
        let api = Api::<ConfigMap>::namespaced(self.client.clone(), &self.namespace);
        let name = Self::parent_name(app);
        let parent = api
            .get_opt(&name)
            .await
            .with_context(|| format!("cannot read the ApplySet parent configmap/{name}"))?;
        let items = parent
            .as_ref()
            .and_then(|p| p.metadata.annotations.as_ref())
            .and_then(|a| a.get(annotation))
            .map(|s| {
                s.split(',')
                    .map(str::trim)
                    .filter(|k| !k.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        Ok(items)
    }

    /// Every namespace that may hold members: the parent's, the ones its annotation names (the
    /// previous set's) and the ones this set's objects are in.
    async fn member_namespaces(&self, app: &str) -> Result<BTreeSet<String>> {
        let mut namespaces: BTreeSet<String> = self
            .parent_list(app, ANNOTATION_ADDITIONAL_NAMESPACES)
            .await?
            .into_iter()
            .collect();
        namespaces.extend(
            self.others
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .iter()
                .cloned(),
        );
        namespaces.insert(self.namespace.clone());
        Ok(namespaces)
    }

    /// Writes the ApplySet parent, naming `group_kinds` (sorted, deduplicated).
    pub async fn write_applyset(&self, app: &str, group_kinds: &[String]) -> Result<()> {
        let mut kinds = group_kinds.to_vec();
        kinds.sort();
        kinds.dedup();
        // A namespace stays named while it holds members of these kinds (before the apply:
        // the previous set's; after the prune: this set's), so none is ever lost track of.
        let mut namespaces: BTreeSet<String> = self
            .others
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let listed = self.members(app, &kinds).await?;
        namespaces.extend(listed.into_iter().filter_map(|m| m.namespace));
        namespaces.remove(&self.namespace);
        let name = Self::parent_name(app);
        let parent = json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {
                "name": name, "namespace": self.namespace,
                "labels": {LABEL_APPLYSET_ID: self.applyset_id(app), names::LABEL_MANAGED_BY: names::MANAGER, names::LABEL_APP: app},
                "annotations": {
                    ANNOTATION_TOOLING: TOOLING,
                    ANNOTATION_GROUP_KINDS: kinds.join(","),
                    ANNOTATION_ADDITIONAL_NAMESPACES: namespaces.into_iter().collect::<Vec<_>>().join(","),
                },
            },
        });
        Api::<ConfigMap>::namespaced(self.client.clone(), &self.namespace)
            .patch(
                &name,
                &PatchParams::apply(names::MANAGER).force(),
                &Patch::Apply(&parent),
            )
            .await
            .with_context(|| format!("cannot write the ApplySet parent configmap/{name}"))?;
        Ok(())
    }

    /// Every object labelled as a member of the app's set, of the given group-kinds, in the
    /// parent's namespace and the set's additional namespaces (or cluster-wide for a
    /// cluster-scoped kind).
    pub async fn members(&self, app: &str, group_kinds: &[String]) -> Result<Vec<ObjectRef>> {
        let selector = format!("{LABEL_PART_OF}={}", self.applyset_id(app));
        let namespaces = self.member_namespaces(app).await?;
        let mut found = Vec::new();
        for group_kind in group_kinds {
            let Some(served) = self.resolve_group_kind(group_kind).await? else {
                // A kind the server no longer serves has no objects left to prune.
                continue;
            };
            let scopes: Vec<Option<&str>> = match served.scope {
                Scope::Namespaced => namespaces.iter().map(|n| Some(n.as_str())).collect(),
                Scope::Cluster => vec![None],
            };
            for namespace in scopes {
                let listed = self
                    .api(&served, namespace)
                    .list(&ListParams::default().labels(&selector))
                    .await
                    .with_context(|| format!("cannot list the app's {group_kind} objects"))?;
                found.extend(listed.items.into_iter().map(|o| ObjectRef {
                    api_version: served.resource.api_version.clone(),
                    kind: served.resource.kind.clone(),
                    namespace: o.metadata.namespace.clone(),
                    name: o.metadata.name.clone().unwrap_or_default(),
                }));
            }
        }
        Ok(found)
    }

    async fn resolve_group_kind(&self, group_kind: &str) -> Result<Option<Served>> {
        let (kind, group) = group_kind.split_once('.').unwrap_or((group_kind, ""));
        let api_version = if group.is_empty() {
            "v1".to_string()
        } else {
            match self.preferred_versions().await?.get(group) {
                Some(version) => format!("{group}/{version}"),
                None => return Ok(None),
            }
        };
        self.served(&api_version, kind).await
    }

    async fn preferred_versions(&self) -> Result<Arc<BTreeMap<String, String>>> {
        let mut cache = self.preferred.lock().await;
        if let Some(known) = cache.as_ref() {
            return Ok(known.clone());
        }
        let groups = self
            .client
            .list_api_groups()
            .await
            .context("cannot list the server's API groups")?;
        let map: BTreeMap<String, String> = groups
            .groups
            .into_iter()
            .filter_map(|g| {
                let version = g
                    .preferred_version
                    .map(|v| v.version)
                    .or_else(|| g.versions.first().map(|v| v.version.clone()))?;
                Some((g.name, version))
            })
            .collect();
        let map = Arc::new(map);
        *cache = Some(map.clone());
        Ok(map)
    }
}

fn served_from(
    api_version: &str,
    list: &k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResourceList,
) -> Vec<Served> {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    list.resources
        .iter()
        // Subresources (`deployments/scale`) are not objects of their own.
        .filter(|r| !r.name.contains('/'))
        .map(|r| Served {
            resource: ApiResource {
                group: group.into(),
                version: version.into(),
                api_version: api_version.into(),
                kind: r.kind.clone(),
                plural: r.name.clone(),
            },
            scope: if r.namespaced {
                Scope::Namespaced
            } else {
                Scope::Cluster
            },
        })
        .collect()
}

/// The server's refusal, naming the object, where it came from and — for a conflict with
/// another field manager — the way out.
fn describe_apply_error(err: kube::Error, m: &Manifest, dry_run: bool) -> anyhow::Error {
    let what = if dry_run {
        "the server refused"
    } else {
        "cannot apply"
    };
    let advice = match &err {
        kube::Error::Api(e) if e.code == 409 => {
            "; another field manager owns these fields: change them through that tool, or pass --force-conflicts to take them over"
        }
        _ => "",
    };
    let text = format!("{what} {} ({})", m.id(), m.origin);
    match err {
        // The object itself is wrong (invalid, forbidden, conflicting, or — before Kubernetes
        // 1.21 — a list entry missing a key field such as a port's `protocol`): input to fix.
        kube::Error::Api(e)
            if (400..500).contains(&e.code)
                || e.message.contains("failed to create typed patch object") =>
        {
            anyhow::Error::new(crate::domain::Failure::invalid(format!(
                "{text}: {}{advice}",
                e.message
            )))
        }
        kube::Error::Api(e) => anyhow::anyhow!("{text}: {} (HTTP {})", e.message, e.code),
        other => anyhow::Error::new(other).context(text),
    }
}
