//! The app's workloads in an environment, and which of their containers carry the app's image.
//!
//! Workloads are handled as dynamic objects: the four kinds differ only in where their pod
//! template lives and how a finished rollout shows in their status, so one code path serves all.

use std::collections::BTreeMap;
use std::fmt;

use kube::api::DynamicObject;
use kube::discovery::ApiResource;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use hooks_sdk::helpers::ImageRef;

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
pub enum Kind {
    Deployment,
    StatefulSet,
    DaemonSet,
    CronJob,
}

impl Kind {
    pub const ALL: [Kind; 4] = [
        Kind::Deployment,
        Kind::StatefulSet,
        Kind::DaemonSet,
        Kind::CronJob,
    ];

    /// The API resource; CronJobs are `batch/v1` from Kubernetes 1.21 and `batch/v1beta1` before.
    pub fn api_resource(self, cronjob_version: &str) -> ApiResource {
        let (group, version, plural) = match self {
            Kind::Deployment => ("apps", "v1", "deployments"),
            Kind::StatefulSet => ("apps", "v1", "statefulsets"),
            Kind::DaemonSet => ("apps", "v1", "daemonsets"),
            Kind::CronJob => ("batch", cronjob_version, "cronjobs"),
        };
        ApiResource {
            group: group.into(),
            version: version.into(),
            api_version: format!("{group}/{version}"),
            kind: format!("{self:?}"),
            plural: plural.into(),
        }
    }

    /// Where the pod spec sits in the object.
    pub fn pod_spec_path(self) -> &'static [&'static str] {
        match self {
            Kind::CronJob => &["spec", "jobTemplate", "spec", "template", "spec"],
            _ => &["spec", "template", "spec"],
        }
    }

    /// CronJobs have no rollout: their next run simply uses the new image.
    pub fn has_rollout(self) -> bool {
        self != Kind::CronJob
    }
}

/// Which workloads of a namespace are the app's: those of `kinds` matching `selector` (when
/// set) with at least one container from the app's image. Every kind is one list request per
/// environment read, so an app that names its kinds (`workloads.kinds`) is read with fewer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadScope {
    /// In [`Kind::ALL`]'s order, without repeats.
    pub kinds: Vec<Kind>,
    pub selector: Option<String>,
}

impl Default for WorkloadScope {
    fn default() -> WorkloadScope {
        WorkloadScope {
            kinds: Kind::ALL.to_vec(),
            selector: None,
        }
    }
}

impl WorkloadScope {
    /// The scope of `kinds` (every kind when `None`) and `selector`.
    pub fn new(kinds: Option<&[Kind]>, selector: Option<String>) -> WorkloadScope {
        let kinds = match kinds {
            Some(named) => Kind::ALL
                .into_iter()
                .filter(|k| named.contains(k))
                .collect(),
            None => Kind::ALL.to_vec(),
        };
        WorkloadScope { kinds, selector }
    }
}

/// `Deployment/web`: a workload's identity within an environment's namespace.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema,
)]
pub struct WorkloadRef {
    pub kind: Kind,
    pub name: String,
}

impl fmt::Display for WorkloadRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}/{}", self.kind, self.name)
    }
}

/// One container of a workload's pod template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    pub name: String,
    pub image: String,
    /// An init container (e.g. a migration step that uses the app's image).
    pub init: bool,
}

/// A workload as read from the cluster.
#[derive(Debug, Clone)]
pub struct Workload {
    pub id: WorkloadRef,
    pub object: DynamicObject,
}

impl Workload {
    pub fn pod_spec(&self) -> Option<&Value> {
        let mut v = self.object.data.get(self.id.kind.pod_spec_path()[0])?;
        for key in &self.id.kind.pod_spec_path()[1..] {
            v = v.get(key)?;
        }
        Some(v)
    }

    pub fn containers(&self) -> Vec<Container> {
        let Some(spec) = self.pod_spec() else {
            return Vec::new();
        };
        let list = |field: &str, init: bool| {
            spec.get(field)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(move |c| {
                    Some(Container {
                        name: c.get("name")?.as_str()?.to_string(),
                        image: c.get("image")?.as_str().unwrap_or_default().to_string(),
                        init,
                    })
                })
        };
        list("initContainers", true)
            .chain(list("containers", false))
            .collect()
    }

    /// The containers whose image is from `repository`.
    pub fn app_containers(&self, repository: &str) -> Vec<Container> {
        self.containers()
            .into_iter()
            .filter(|c| ImageRef::parse(&c.image).repository == repository)
            .collect()
    }

    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.object
            .metadata
            .annotations
            .as_ref()?
            .get(key)
            .map(String::as_str)
    }

    pub fn resource_version(&self) -> Option<&str> {
        self.object.metadata.resource_version.as_deref()
    }

    /// The workload's pod selector (`spec.selector`, labels and expressions). A workload
    /// without one (a CronJob) owns no pods directly.
    pub fn selector(&self) -> Option<super::selector::Selector> {
        super::selector::Selector::from_spec(self.object.data.pointer("/spec/selector")?)
    }

    /// Whether `pod` is one of this workload's, by its selector.
    pub fn owns(&self, pod: &k8s_openapi::api::core::v1::Pod) -> bool {
        let Some(selector) = self.selector() else {
            return false;
        };
        let empty = BTreeMap::new();
        selector.matches(pod.metadata.labels.as_ref().unwrap_or(&empty))
    }

    /// The distinct digests this workload's live pods report for `container` (from `imageID`).
    pub fn pod_digests(
        &self,
        pods: &[k8s_openapi::api::core::v1::Pod],
        container: &str,
    ) -> Vec<String> {
        let mut digests: Vec<String> = pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none() && self.owns(p))
            .filter_map(|p| p.status.as_ref())
            .flat_map(|s| {
                s.container_statuses
                    .iter()
                    .flatten()
                    .chain(s.init_container_statuses.iter().flatten())
            })
            .filter(|cs| cs.name == container)
            .filter_map(|cs| cs.image_id.rsplit_once('@').map(|(_, d)| d.to_string()))
            .collect();
        digests.sort();
        digests.dedup();
        digests
    }

    /// The pod selector as a `labelSelector` query string.
    pub fn pod_selector(&self) -> Option<String> {
        self.selector().map(|s| s.to_query())
    }
}

/// The app's containers of every workload: `(workload, container) → image`.
pub fn current_images(
    workloads: &[Workload],
    repository: &str,
) -> BTreeMap<(WorkloadRef, String), String> {
    workloads
        .iter()
        .flat_map(|w| {
            w.app_containers(repository)
                .into_iter()
                .map(move |c| ((w.id.clone(), c.name), c.image))
        })
        .collect()
}

#[cfg(test)]
pub mod fixtures {
    //! Workload objects for unit tests, built the way the API server returns them.
    use super::*;

    pub fn workload(kind: Kind, name: &str, containers: &[(&str, &str)]) -> Workload {
        let containers: Vec<Value> = containers
            .iter()
            .map(|(n, image)| serde_json::json!({"name": n, "image": image}))
            .collect();
        let pod = serde_json::json!({"metadata": {"labels": {"app": name}}, "spec": {"containers": containers}});
        let spec = match kind {
            Kind::CronJob => {
                serde_json::json!({"schedule": "* * * * *", "jobTemplate": {"spec": {"template": pod}}})
            }
            _ => serde_json::json!({"selector": {"matchLabels": {"app": name}}, "template": pod}),
        };
        let mut object = DynamicObject::new(name, &kind.api_resource("v1")).within("ns");
        object.data = serde_json::json!({ "spec": spec });
        object.metadata.resource_version = Some("1".into());
        Workload {
            id: WorkloadRef {
                kind,
                name: name.into(),
            },
            object,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::workload;
    use super::*;

    const REPO: &str = "127.0.0.1:5000/acme/web";

    #[test]
    fn only_containers_of_the_app_repository_are_the_apps() {
        let w = workload(
            Kind::Deployment,
            "web",
            &[
                ("web", "127.0.0.1:5000/acme/web:abc"),
                ("proxy", "envoy:1.30"),
                ("other", "127.0.0.1:5000/acme/web-admin:abc"),
            ],
        );
        let names: Vec<_> = w.app_containers(REPO).into_iter().map(|c| c.name).collect();
        assert_eq!(names, ["web"]);
    }

    #[test]
    fn cronjob_containers_are_found_in_the_job_template() {
        let w = workload(
            Kind::CronJob,
            "nightly",
            &[("job", "127.0.0.1:5000/acme/web@sha256:1")],
        );
        assert_eq!(w.app_containers(REPO).len(), 1);
        assert_eq!(w.pod_selector(), None);
    }

    #[test]
    fn selector_from_match_labels() {
        let w = workload(Kind::Deployment, "web", &[("web", "x")]);
        assert_eq!(w.pod_selector().as_deref(), Some("app=web"));
    }
}
