//! Test workloads: chained builders for the four kinds kubectl-release manages, and `apply`.
//!
//! ```no_run
//! # async fn example(client: kube::Client) -> anyhow::Result<()> {
//! use kubectl_release_tests::{apply, deployment};
//! let web = deployment("web").image("127.0.0.1:5000/web:v1").replicas(3).label("team", "shop");
//! apply(&client, "web-qa", &web.build()).await?;
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::marker::PhantomData;

use anyhow::Context as _;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::{
    DaemonSet, DaemonSetSpec, DaemonSetUpdateStrategy, Deployment, DeploymentSpec,
    RollingUpdateStatefulSetStrategy, StatefulSet, StatefulSetSpec, StatefulSetUpdateStrategy,
};
use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, JobSpec, JobTemplateSpec};
use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, ObjectMeta,
};
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::{Api, Client, Resource, ResourceExt as _, discovery};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Field manager of the harness's server-side applies.
pub const FIELD_MANAGER: &str = "kubectl-release-tests";
/// The label every builder puts on its pods and selects them by.
pub const NAME_LABEL: &str = "app.kubernetes.io/name";

/// A workload under construction; `K` is the kind it builds.
#[derive(Clone, Debug)]
pub struct WorkloadBuilder<K> {
    name: String,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    /// (name, image); the first is named after the workload.
    containers: Vec<(String, String)>,
    replicas: i32,
    schedule: String,
    restart_policy: Option<String>,
    node_selector: BTreeMap<String, String>,
    /// Select the pods by `matchExpressions` only, no `matchLabels`.
    select_by_expression: bool,
    paused: bool,
    on_delete: bool,
    partition: Option<i32>,
    kind: PhantomData<K>,
}

/// A Deployment named `name`, 1 replica, one container `name` running `busybox` until
/// [`WorkloadBuilder::image`] says otherwise.
pub fn deployment(name: &str) -> WorkloadBuilder<Deployment> {
    WorkloadBuilder::new(name)
}

/// A StatefulSet (parallel pod management, so replicas start together).
pub fn statefulset(name: &str) -> WorkloadBuilder<StatefulSet> {
    WorkloadBuilder::new(name)
}

/// A DaemonSet: one pod per fake node.
pub fn daemonset(name: &str) -> WorkloadBuilder<DaemonSet> {
    WorkloadBuilder::new(name)
}

/// A CronJob, every minute by default, its pods restartPolicy `Never`.
pub fn cronjob(name: &str) -> WorkloadBuilder<CronJob> {
    WorkloadBuilder::new(name)
}

impl<K> WorkloadBuilder<K> {
    fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            containers: vec![(name.to_string(), "busybox:1.36".to_string())],
            replicas: 1,
            schedule: "*/1 * * * *".to_string(),
            restart_policy: None,
            node_selector: BTreeMap::new(),
            select_by_expression: false,
            paused: false,
            on_delete: false,
            partition: None,
            kind: PhantomData,
        }
    }

    /// The image of the first container.
    pub fn image(mut self, image: impl Into<String>) -> Self {
        self.containers[0].1 = image.into();
        self
    }

    /// Adds a container.
    pub fn container(mut self, name: impl Into<String>, image: impl Into<String>) -> Self {
        self.containers.push((name.into(), image.into()));
        self
    }

    /// Replicas of a Deployment or StatefulSet (ignored by the other kinds).
    pub fn replicas(mut self, replicas: i32) -> Self {
        self.replicas = replicas;
        self
    }

    /// A label on the workload and its pods.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Labels on the workload and its pods.
    pub fn labels<I, Ks, V>(mut self, labels: I) -> Self
    where
        I: IntoIterator<Item = (Ks, V)>,
        Ks: Into<String>,
        V: Into<String>,
    {
        self.labels
            .extend(labels.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// An annotation on the workload.
    pub fn annotation(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.annotations.insert(key.into(), value.into());
        self
    }

    /// Schedule of a CronJob (ignored by the other kinds).
    pub fn schedule(mut self, schedule: impl Into<String>) -> Self {
        self.schedule = schedule.into();
        self
    }

    /// The pods' restart policy (default: the kind's default).
    pub fn restart_policy(mut self, policy: impl Into<String>) -> Self {
        self.restart_policy = Some(policy.into());
        self
    }

    /// A `nodeSelector` entry on the pods: with a label no node has, they stay Pending
    /// (unschedulable, which is no reason to give up on a rollout).
    pub fn node_selector(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.node_selector.insert(key.into(), value.into());
        self
    }

    /// Selects the pods with `matchExpressions` only (`app.kubernetes.io/name In [name]`), as
    /// some charts do, instead of `matchLabels`.
    pub fn select_by_expression(mut self) -> Self {
        self.select_by_expression = true;
        self
    }

    /// A paused Deployment (`spec.paused`): its controller rolls nothing out (ignored by the
    /// other kinds).
    pub fn paused(mut self) -> Self {
        self.paused = true;
        self
    }

    /// Update strategy `OnDelete` for a StatefulSet or DaemonSet: pods take a new template only
    /// when deleted (ignored by the other kinds).
    pub fn on_delete(mut self) -> Self {
        self.on_delete = true;
        self
    }

    /// A StatefulSet's `rollingUpdate.partition`: only pods with an ordinal at or above it are
    /// updated (ignored by the other kinds).
    pub fn partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }

    fn selector_labels(&self) -> BTreeMap<String, String> {
        [(NAME_LABEL.to_string(), self.name.clone())].into()
    }

    fn metadata(&self) -> ObjectMeta {
        ObjectMeta {
            name: Some(self.name.clone()),
            labels: Some(self.labels.clone()),
            annotations: (!self.annotations.is_empty()).then(|| self.annotations.clone()),
            ..Default::default()
        }
    }

    fn selector(&self) -> LabelSelector {
        if self.select_by_expression {
            return LabelSelector {
                match_expressions: Some(
                    self.selector_labels()
                        .into_iter()
                        .map(|(key, value)| LabelSelectorRequirement {
                            key,
                            operator: "In".into(),
                            values: Some(vec![value]),
                        })
                        .collect(),
                ),
                match_labels: None,
            };
        }
        LabelSelector {
            match_labels: Some(self.selector_labels()),
            ..Default::default()
        }
    }

    fn pod_template(&self, default_restart_policy: Option<&str>) -> PodTemplateSpec {
        let mut labels = self.labels.clone();
        labels.extend(self.selector_labels());
        PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(labels),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                containers: self
                    .containers
                    .iter()
                    .map(|(name, image)| Container {
                        name: name.clone(),
                        image: Some(image.clone()),
                        ..Default::default()
                    })
                    .collect(),
                restart_policy: self
                    .restart_policy
                    .clone()
                    .or(default_restart_policy.map(str::to_string)),
                node_selector: (!self.node_selector.is_empty()).then(|| self.node_selector.clone()),
                // Nothing runs, so nothing needs a grace period; keeps deletions instant.
                termination_grace_period_seconds: Some(0),
                ..Default::default()
            }),
        }
    }
}

impl<K> WorkloadBuilder<K>
where
    K: From<WorkloadBuilder<K>>,
{
    /// The k8s-openapi object.
    pub fn build(self) -> K {
        K::from(self)
    }
}

impl From<WorkloadBuilder<Deployment>> for Deployment {
    fn from(b: WorkloadBuilder<Deployment>) -> Self {
        Deployment {
            metadata: b.metadata(),
            spec: DeploymentSpec {
                replicas: Some(b.replicas),
                selector: b.selector(),
                template: b.pod_template(None),
                paused: b.paused.then_some(true),
                ..Default::default()
            },
            status: None,
        }
    }
}

impl From<WorkloadBuilder<StatefulSet>> for StatefulSet {
    fn from(b: WorkloadBuilder<StatefulSet>) -> Self {
        StatefulSet {
            metadata: b.metadata(),
            spec: StatefulSetSpec {
                replicas: Some(b.replicas),
                selector: b.selector(),
                service_name: Some(b.name.clone()),
                pod_management_policy: Some("Parallel".into()),
                template: b.pod_template(None),
                update_strategy: if b.on_delete {
                    Some(StatefulSetUpdateStrategy {
                        type_: Some("OnDelete".into()),
                        rolling_update: None,
                    })
                } else {
                    b.partition.map(|partition| StatefulSetUpdateStrategy {
                        type_: Some("RollingUpdate".into()),
                        rolling_update: Some(RollingUpdateStatefulSetStrategy {
                            partition: Some(partition),
                            ..Default::default()
                        }),
                    })
                },
                ..Default::default()
            },
            status: None,
        }
    }
}

impl From<WorkloadBuilder<DaemonSet>> for DaemonSet {
    fn from(b: WorkloadBuilder<DaemonSet>) -> Self {
        DaemonSet {
            metadata: b.metadata(),
            spec: DaemonSetSpec {
                selector: b.selector(),
                template: b.pod_template(None),
                update_strategy: b.on_delete.then(|| DaemonSetUpdateStrategy {
                    type_: Some("OnDelete".into()),
                    rolling_update: None,
                }),
                ..Default::default()
            },
            status: None,
        }
    }
}

impl From<WorkloadBuilder<CronJob>> for CronJob {
    fn from(b: WorkloadBuilder<CronJob>) -> Self {
        CronJob {
            metadata: b.metadata(),
            spec: CronJobSpec {
                schedule: b.schedule.clone(),
                job_template: JobTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(b.labels.clone()),
                        ..Default::default()
                    }),
                    spec: Some(JobSpec {
                        template: b.pod_template(Some("Never")),
                        ..Default::default()
                    }),
                },
                ..Default::default()
            },
            status: None,
        }
    }
}

/// Creates or updates `obj` in namespace `ns` by server-side apply (forcing conflicts: the
/// harness owns what it applies) and returns the object as stored.
///
/// When the server does not serve the version of `K` — k8s-openapi only has `batch/v1` CronJob,
/// the v1.20 test control plane only `batch/v1beta1` — the object is sent as the kind's most
/// stable served version instead; the two are field-compatible for what the builders set.
///
/// # Errors
/// When the API server refuses the object or has no version of its kind.
pub async fn apply<K>(client: &Client, ns: &str, obj: &K) -> anyhow::Result<K>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Serialize
        + DeserializeOwned
        + Clone
        + Debug,
{
    let name = obj.name_any();
    let kind = K::kind(&());
    let resource = served_resource::<K>(client).await?;
    let mut body = serde_json::to_value(obj)?;
    body["apiVersion"] = resource.api_version.clone().into();
    body["kind"] = kind.as_ref().into();

    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &resource);
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let stored = api
        .patch(&name, &params, &Patch::Apply(&body))
        .await
        .with_context(|| format!("Failed to apply {kind} {ns}/{name}"))?;

    // Back to K's own version, which its deserializer insists on.
    let mut stored = serde_json::to_value(stored)?;
    stored["apiVersion"] = K::api_version(&()).as_ref().into();
    serde_json::from_value(stored)
        .with_context(|| format!("Failed to read back {kind} {ns}/{name}"))
}

/// The API resource to talk to for `K`: its own version if served, else the most stable one.
async fn served_resource<K>(client: &Client) -> anyhow::Result<ApiResource>
where
    K: Resource<DynamicType = ()>,
{
    let gvk = GroupVersionKind::gvk(&K::group(&()), &K::version(&()), &K::kind(&()));
    if let Ok((resource, _)) = discovery::pinned_kind(client, &gvk).await {
        return Ok(resource);
    }
    let group = discovery::group(client, &gvk.group)
        .await
        .with_context(|| format!("Failed to discover API group {:?}", gvk.group))?;
    // Not `recommended_kind`: it only looks at the group's preferred version, and batch/v1 is
    // preferred on v1.20 although CronJob is only in batch/v1beta1 there.
    group
        .resources_by_stability()
        .into_iter()
        .map(|(resource, _)| resource)
        .find(|resource| resource.kind == gvk.kind)
        .with_context(|| format!("the API server serves no version of {}", gvk.kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployment_builder_sets_image_replicas_labels_and_selector() {
        let d = deployment("web")
            .image("127.0.0.1:5000/web:v1")
            .replicas(3)
            .labels([("team", "shop")])
            .container("sidecar", "127.0.0.1:5000/proxy:v2")
            .build();
        assert_eq!(d.metadata.name.as_deref(), Some("web"));
        assert_eq!(d.metadata.labels.as_ref().unwrap()["team"], "shop");
        let spec = d.spec;
        assert_eq!(spec.replicas, Some(3));
        let selector = spec.selector.match_labels.unwrap();
        let template = spec.template.metadata.unwrap().labels.unwrap();
        assert!(
            selector.iter().all(|(k, v)| template.get(k) == Some(v)),
            "template matches selector"
        );
        assert_eq!(template["team"], "shop");
        let containers = spec.template.spec.unwrap().containers;
        assert_eq!(containers[0].name, "web");
        assert_eq!(
            containers[0].image.as_deref(),
            Some("127.0.0.1:5000/web:v1")
        );
        assert_eq!(
            containers[1].image.as_deref(),
            Some("127.0.0.1:5000/proxy:v2")
        );
    }

    #[test]
    fn cronjob_pods_run_to_completion() {
        let c = cronjob("report")
            .image("127.0.0.1:5000/report:v1")
            .schedule("0 * * * *")
            .build();
        let spec = c.spec;
        assert_eq!(spec.schedule, "0 * * * *");
        let pod = spec.job_template.spec.unwrap().template.spec.unwrap();
        assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
        assert_eq!(
            pod.containers[0].image.as_deref(),
            Some("127.0.0.1:5000/report:v1")
        );
    }

    #[test]
    fn strategies_selectors_and_node_selectors_reach_the_spec() {
        let d = deployment("web")
            .paused()
            .select_by_expression()
            .node_selector("disk", "none")
            .build();
        assert_eq!(d.spec.paused, Some(true));
        assert_eq!(d.spec.selector.match_labels, None);
        let expressions = d.spec.selector.match_expressions.unwrap();
        assert_eq!(expressions[0].key, NAME_LABEL);
        assert_eq!(expressions[0].operator, "In");
        assert_eq!(expressions[0].values, Some(vec!["web".to_string()]));
        let pod = d.spec.template.spec.unwrap();
        assert_eq!(pod.node_selector.unwrap()["disk"], "none");

        let s = statefulset("db").replicas(3).partition(2).build();
        let strategy = s.spec.update_strategy.unwrap();
        assert_eq!(strategy.type_.as_deref(), Some("RollingUpdate"));
        assert_eq!(strategy.rolling_update.unwrap().partition, Some(2));
        let s = statefulset("db").on_delete().build();
        assert_eq!(
            s.spec.update_strategy.unwrap().type_.as_deref(),
            Some("OnDelete")
        );
        let ds = daemonset("agent").on_delete().build();
        assert_eq!(
            ds.spec.update_strategy.unwrap().type_.as_deref(),
            Some("OnDelete")
        );
        assert_eq!(deployment("web").build().spec.paused, None);
    }

    #[test]
    fn statefulset_and_daemonset_select_their_pods() {
        let s = statefulset("db").replicas(2).build();
        let spec = s.spec;
        assert_eq!(spec.replicas, Some(2));
        assert_eq!(spec.service_name.as_deref(), Some("db"));
        let d = daemonset("agent").build();
        assert_eq!(d.spec.selector.match_labels.unwrap()[NAME_LABEL], "agent");
    }
}
