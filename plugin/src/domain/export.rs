//! Adopting a running app (`init`): which live objects belong to the app, and what of them is
//! worth keeping in git.
//!
//! A live object is full of what the server wrote: its status, bookkeeping metadata, the
//! defaults it filled in. Committed as they are, those fields would make every manifest noisy
//! and some of them unappliable (a `resourceVersion` makes an apply conflict, a `clusterIP`
//! pins an address). [`clean`] keeps what a person would have written, so the exported files
//! read like hand-written manifests and deploy back as a no-op.

use super::names::is_dns_label;
use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::{Map, Value, json};

use super::names::{LABEL_MANAGED_BY, MANAGER};
use super::{Failure, Workload};

/// Prefix of every label and annotation the plugin writes itself.
const OWN_PREFIX: &str = "kubectl-release.io/";
/// Prefix of the ApplySet labels and annotations the plugin writes on the objects it applies.
const APPLYSET_PREFIX: &str = "applyset.kubernetes.io/";
/// Annotations other tools write that say nothing about the desired state.
const FOREIGN_BOOKKEEPING: [&str; 2] = [
    "kubectl.kubernetes.io/last-applied-configuration",
    "deployment.kubernetes.io/revision",
];

/// One `--env NAME=NAMESPACE[@CONTEXT]` of `init`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvArg {
    pub name: String,
    pub namespace: String,
    pub context: Option<String>,
}

/// Parses `NAME=NAMESPACE` or `NAME=NAMESPACE@CONTEXT`; the name and the namespace must be
/// DNS labels (release.yaml and the API server insist on it, so say so before reading anything).
pub fn parse_env_arg(arg: &str) -> Result<EnvArg, Failure> {
    let bad = |why: &str| {
        Failure::invalid(format!(
            "--env `{arg}`: {why}; expected NAME=NAMESPACE or NAME=NAMESPACE@CONTEXT"
        ))
    };
    let (name, rest) = arg.split_once('=').ok_or_else(|| bad("no `=`"))?;
    let (namespace, context) = match rest.split_once('@') {
        Some((ns, "")) => {
            return Err(bad(&format!("empty context after `{ns}@`")));
        }
        Some((ns, ctx)) => (ns, Some(ctx.to_string())),
        None => (rest, None),
    };
    if !is_dns_label(name) {
        return Err(bad(&format!(
            "`{name}` is not a valid environment name (lower-case letters, digits, '-')"
        )));
    }
    if !is_dns_label(namespace) {
        return Err(bad(&format!(
            "`{namespace}` is not a valid namespace (lower-case letters, digits, '-')"
        )));
    }
    Ok(EnvArg {
        name: name.to_string(),
        namespace: namespace.to_string(),
        context,
    })
}

/// The workload as a whole object: list responses leave `apiVersion` and `kind` out of their
/// items, and a manifest needs both.
pub fn workload_object(workload: &Workload, api_version: &str) -> Value {
    let mut object = serde_json::to_value(&workload.object).unwrap_or_else(|_| json!({}));
    if let Some(map) = object.as_object_mut() {
        map.insert("apiVersion".into(), api_version.into());
        map.insert("kind".into(), format!("{:?}", workload.id.kind).into());
    }
    object
}

/// The labels of the pods a workload makes (its pod template's).
pub fn pod_template_labels(workload: &Workload) -> BTreeMap<String, String> {
    let path = workload.id.kind.pod_spec_path();
    let mut template = workload.object.data.get(path[0]);
    for key in &path[1..path.len() - 1] {
        template = template.and_then(|v| v.get(key));
    }
    string_map(template.and_then(|t| t.pointer("/metadata/labels")))
}

/// Whether a Service's `spec.selector` picks pods labelled `labels`. A Service without a
/// selector picks no pods (its endpoints are managed by hand), so it is nobody's.
pub fn selects(service: &Value, labels: &BTreeMap<String, String>) -> bool {
    let selector = string_map(service.pointer("/spec/selector"));
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// The Services selecting the pods of at least one of `workloads`, in the order given.
pub fn app_services<'a>(services: &'a [Value], workloads: &[Workload]) -> Vec<&'a Value> {
    let pod_labels: Vec<_> = workloads.iter().map(pod_template_labels).collect();
    services
        .iter()
        .filter(|s| pod_labels.iter().any(|labels| selects(s, labels)))
        .collect()
}

/// What a pod spec reads from ConfigMaps and Secrets, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct References {
    pub config_maps: BTreeSet<String>,
    pub secrets: BTreeSet<String>,
}

impl References {
    pub fn extend(&mut self, other: References) {
        self.config_maps.extend(other.config_maps);
        self.secrets.extend(other.secrets);
    }
}

/// The ConfigMaps and Secrets a pod spec references: env `valueFrom`, `envFrom`, volumes
/// (projected sources included) and, for Secrets, `imagePullSecrets`.
pub fn references(pod_spec: &Value) -> References {
    let mut refs = References::default();
    let name = |v: Option<&Value>| v.and_then(|n| n.get("name")?.as_str()).map(str::to_string);
    let containers = ["initContainers", "containers", "ephemeralContainers"]
        .iter()
        .flat_map(|field| array(pod_spec.get(*field)));
    for container in containers {
        for env in array(container.get("env")) {
            let from = env.get("valueFrom");
            refs.config_maps
                .extend(name(from.and_then(|f| f.get("configMapKeyRef"))));
            refs.secrets
                .extend(name(from.and_then(|f| f.get("secretKeyRef"))));
        }
        for source in array(container.get("envFrom")) {
            refs.config_maps.extend(name(source.get("configMapRef")));
            refs.secrets.extend(name(source.get("secretRef")));
        }
    }
    for volume in array(pod_spec.get("volumes")) {
        refs.config_maps.extend(name(volume.get("configMap")));
        refs.secrets.extend(
            volume
                .pointer("/secret/secretName")
                .and_then(Value::as_str)
                .map(str::to_string),
        );
        for source in array(volume.pointer("/projected/sources")) {
            refs.config_maps.extend(name(source.get("configMap")));
            refs.secrets.extend(name(source.get("secret")));
        }
    }
    for secret in array(pod_spec.get("imagePullSecrets")) {
        refs.secrets.extend(name(Some(secret)));
    }
    refs
}

/// A live object as a person would have written it: only `apiVersion`, `kind`, the rest of
/// its body and the name, labels and annotations of its metadata, without its status, the
/// bookkeeping of the server and other tools, the plugin's own marks and the server's
/// defaults. The namespace goes too: the environment supplies it.
pub fn clean(live: &Value) -> Value {
    let mut object = live.as_object().cloned().unwrap_or_default();
    object.remove("status");
    let metadata = clean_metadata(object.get("metadata"));
    object.insert("metadata".into(), Value::Object(metadata));
    let kind = object
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let kind = kind.to_string();
    if let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut) {
        match kind.as_str() {
            "Deployment" => clean_deployment(spec),
            "StatefulSet" => clean_statefulset(spec),
            "DaemonSet" => clean_daemonset(spec),
            "CronJob" => clean_cronjob(spec),
            "Service" => clean_service(spec),
            _ => {}
        }
    }
    Value::Object(object)
}

/// Name, labels and annotations, minus what was written for bookkeeping.
fn clean_metadata(metadata: Option<&Value>) -> Map<String, Value> {
    let mut clean = Map::new();
    let Some(metadata) = metadata else {
        return clean;
    };
    if let Some(name) = metadata.get("name") {
        clean.insert("name".into(), name.clone());
    }
    for field in ["labels", "annotations"] {
        let kept: Map<String, Value> = metadata
            .get(field)
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .filter(|(key, value)| !is_bookkeeping(key, value))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if !kept.is_empty() {
            clean.insert(field.into(), Value::Object(kept));
        }
    }
    clean
}

/// A label or annotation the plugin, kubectl or a controller wrote, not the team.
fn is_bookkeeping(key: &str, value: &Value) -> bool {
    key.starts_with(OWN_PREFIX)
        || key.starts_with(APPLYSET_PREFIX)
        || FOREIGN_BOOKKEEPING.contains(&key)
        || (key == LABEL_MANAGED_BY && value == MANAGER)
}

/// Removes `field` when it holds the server's default.
fn drop_default(map: &mut Map<String, Value>, field: &str, default: &Value) {
    if map.get(field) == Some(default) {
        map.remove(field);
    }
}

fn clean_deployment(spec: &mut Map<String, Value>) {
    drop_default(spec, "progressDeadlineSeconds", &json!(600));
    drop_default(spec, "revisionHistoryLimit", &json!(10));
    drop_default(
        spec,
        "strategy",
        &json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}),
    );
    clean_template(spec.get_mut("template"));
}

fn clean_statefulset(spec: &mut Map<String, Value>) {
    drop_default(spec, "podManagementPolicy", &json!("OrderedReady"));
    drop_default(spec, "revisionHistoryLimit", &json!(10));
    drop_default(
        spec,
        "updateStrategy",
        &json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}),
    );
    drop_default(spec, "updateStrategy", &json!({"type": "RollingUpdate"}));
    drop_default(
        spec,
        "persistentVolumeClaimRetentionPolicy",
        &json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
    );
    clean_template(spec.get_mut("template"));
}

fn clean_daemonset(spec: &mut Map<String, Value>) {
    drop_default(spec, "revisionHistoryLimit", &json!(10));
    drop_default(
        spec,
        "updateStrategy",
        &json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}),
    );
    clean_template(spec.get_mut("template"));
}

fn clean_cronjob(spec: &mut Map<String, Value>) {
    drop_default(spec, "concurrencyPolicy", &json!("Allow"));
    drop_default(spec, "failedJobsHistoryLimit", &json!(1));
    drop_default(spec, "successfulJobsHistoryLimit", &json!(3));
    drop_default(spec, "suspend", &json!(false));
    if let Some(job) = spec.get_mut("jobTemplate").and_then(Value::as_object_mut) {
        drop_creation_timestamp(job);
        clean_template(job.get_mut("spec").and_then(|s| s.get_mut("template")));
    }
}

/// `metadata.creationTimestamp: null` is what the server leaves in templates.
fn drop_creation_timestamp(object: &mut Map<String, Value>) {
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.remove("creationTimestamp");
        if metadata.is_empty() {
            object.remove("metadata");
        }
    }
}

/// A pod template: its metadata's timestamp and its pod spec's defaults.
fn clean_template(template: Option<&mut Value>) {
    let Some(template) = template.and_then(Value::as_object_mut) else {
        return;
    };
    drop_creation_timestamp(template);
    let Some(pod) = template.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    drop_default(pod, "dnsPolicy", &json!("ClusterFirst"));
    drop_default(pod, "restartPolicy", &json!("Always"));
    drop_default(pod, "schedulerName", &json!("default-scheduler"));
    drop_default(pod, "securityContext", &json!({}));
    drop_default(pod, "terminationGracePeriodSeconds", &json!(30));
    for field in ["initContainers", "containers"] {
        for container in array_mut(pod.get_mut(field)) {
            if let Some(container) = container.as_object_mut() {
                clean_container(container);
            }
        }
    }
    for volume in array_mut(pod.get_mut("volumes")) {
        for source in ["configMap", "secret"] {
            if let Some(source) = volume.get_mut(source).and_then(Value::as_object_mut) {
                drop_default(source, "defaultMode", &json!(0o644));
            }
        }
        if let Some(projected) = volume.get_mut("projected").and_then(Value::as_object_mut) {
            drop_default(projected, "defaultMode", &json!(0o644));
        }
    }
}

fn clean_container(container: &mut Map<String, Value>) {
    drop_default(
        container,
        "terminationMessagePath",
        &json!("/dev/termination-log"),
    );
    drop_default(container, "terminationMessagePolicy", &json!("File"));
    drop_default(container, "resources", &json!({}));
    let image = container.get("image").and_then(Value::as_str);
    if image.is_some_and(pulled_if_not_present_by_default) {
        drop_default(container, "imagePullPolicy", &json!("IfNotPresent"));
    }
}

/// The server defaults `imagePullPolicy` to `Always` for `:latest` and untagged images, to
/// `IfNotPresent` for digests and other tags.
fn pulled_if_not_present_by_default(image: &str) -> bool {
    if image.contains('@') {
        return true;
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    last.split_once(':').is_some_and(|(_, tag)| tag != "latest")
}

fn clean_service(spec: &mut Map<String, Value>) {
    // A headless Service's `clusterIP: None` is the team's choice; any address is the server's.
    if spec.get("clusterIP") != Some(&json!("None")) {
        spec.remove("clusterIP");
        spec.remove("clusterIPs");
    }
    spec.remove("ipFamilies");
    spec.remove("ipFamilyPolicy");
    drop_default(spec, "sessionAffinity", &json!("None"));
    drop_default(spec, "type", &json!("ClusterIP"));
    drop_default(spec, "internalTrafficPolicy", &json!("Cluster"));
    // `protocol` stays: Kubernetes before 1.21 cannot server-side apply a port without it.
    for port in array_mut(spec.get_mut("ports")) {
        if let Some(port) = port.as_object_mut()
            && port.get("targetPort").is_some()
            && port.get("targetPort") == port.get("port")
        {
            port.remove("targetPort");
        }
    }
}

/// `<kind-lowercase>-<name>.yaml`: one file per object, named so a listing reads like the app.
pub fn file_name(object: &Value) -> String {
    let kind = object
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("object");
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("unnamed");
    format!("{}-{name}.yaml", kind.to_ascii_lowercase())
}

/// A cleaned object as a manifest file, headed by where it came from.
pub fn manifest_text(object: &Value, namespace: &str) -> Result<String, serde_yaml_ng::Error> {
    let body = serde_yaml_ng::to_string(&ordered(object))?;
    Ok(format!(
        "# Exported by `kubectl release init` from namespace {namespace}.\n{body}"
    ))
}

/// `apiVersion`, `kind` and `metadata` first, as manifests are written, then the rest (a YAML
/// mapping keeps its order; a JSON object here is sorted by key).
fn ordered(object: &Value) -> serde_yaml_ng::Value {
    let to_yaml = |v: &Value| serde_yaml_ng::to_value(v).unwrap_or(serde_yaml_ng::Value::Null);
    let Some(map) = object.as_object() else {
        return to_yaml(object);
    };
    let head = ["apiVersion", "kind", "metadata"];
    let mut out = serde_yaml_ng::Mapping::new();
    for key in head {
        if let Some(v) = map.get(key) {
            out.insert(key.into(), to_yaml(v));
        }
    }
    for (k, v) in map.iter().filter(|(k, _)| !head.contains(&k.as_str())) {
        out.insert(k.as_str().into(), to_yaml(v));
    }
    serde_yaml_ng::Value::Mapping(out)
}

/// The directory of an environment's manifests, relative to release.yaml.
pub fn manifests_dir(env: &str) -> String {
    format!("kubernetes/{env}")
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ConfigDoc<'a> {
    api_version: &'a str,
    kind: &'a str,
    app: &'a str,
    image: &'a str,
    environments: Vec<EnvDoc<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EnvDoc<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    context: Option<&'a str>,
    namespace: &'a str,
    manifests: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    promote_from: Option<&'a str>,
}

/// release.yaml for the adopted app: every environment with its manifests, each promoted from
/// the one before, in the order given.
pub fn release_config_text(
    api_version: &str,
    kind: &str,
    app: &str,
    image: &str,
    envs: &[EnvArg],
) -> Result<String, serde_yaml_ng::Error> {
    let environments = envs
        .iter()
        .enumerate()
        .map(|(i, env)| EnvDoc {
            name: &env.name,
            context: env.context.as_deref(),
            namespace: &env.namespace,
            manifests: manifests_dir(&env.name),
            promote_from: i.checked_sub(1).map(|p| envs[p].name.as_str()),
        })
        .collect();
    let doc = ConfigDoc {
        api_version,
        kind,
        app,
        image,
        environments,
    };
    Ok(format!(
        "# Written by `kubectl release init`.\n{}",
        serde_yaml_ng::to_string(&doc)?
    ))
}

fn string_map(value: Option<&Value>) -> BTreeMap<String, String> {
    value
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
        .collect()
}

fn array(value: Option<&Value>) -> impl Iterator<Item = &Value> {
    value.and_then(Value::as_array).into_iter().flatten()
}

fn array_mut(value: Option<&mut Value>) -> impl Iterator<Item = &mut Value> {
    value.and_then(Value::as_array_mut).into_iter().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Kind;
    use crate::domain::workload::fixtures::workload;

    /// A Deployment as the API server returns it: bookkeeping, defaults and status.
    fn live_deployment() -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": "web",
                "namespace": "web-qa",
                "uid": "0d4c",
                "resourceVersion": "42",
                "generation": 3,
                "creationTimestamp": "2024-01-01T00:00:00Z",
                "selfLink": "/apis/apps/v1/namespaces/web-qa/deployments/web",
                "managedFields": [{"manager": "kubectl"}],
                "ownerReferences": [{"kind": "Thing", "name": "x"}],
                "labels": {
                    "team": "payments",
                    "kubectl-release.io/app": "web",
                    "app.kubernetes.io/managed-by": "kubectl-release",
                    "applyset.kubernetes.io/part-of": "applyset-abc-v1"
                },
                "annotations": {
                    "owner": "payments@example.com",
                    "kubectl.kubernetes.io/last-applied-configuration": "{}",
                    "deployment.kubernetes.io/revision": "3",
                    "kubectl-release.io/commit": "abc"
                }
            },
            "spec": {
                "replicas": 3,
                "progressDeadlineSeconds": 600,
                "revisionHistoryLimit": 10,
                "selector": {"matchLabels": {"app": "web"}},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
                "template": {
                    "metadata": {"creationTimestamp": null, "labels": {"app": "web"}},
                    "spec": {
                        "dnsPolicy": "ClusterFirst",
                        "restartPolicy": "Always",
                        "schedulerName": "default-scheduler",
                        "securityContext": {},
                        "terminationGracePeriodSeconds": 30,
                        "containers": [
                            {
                                "name": "web",
                                "image": "registry/acme/web@sha256:1",
                                "imagePullPolicy": "IfNotPresent",
                                "resources": {},
                                "terminationMessagePath": "/dev/termination-log",
                                "terminationMessagePolicy": "File",
                                "envFrom": [{"configMapRef": {"name": "web-config"}}]
                            },
                            {"name": "proxy", "image": "envoy:latest", "imagePullPolicy": "IfNotPresent"}
                        ],
                        "volumes": [{"name": "c", "configMap": {"name": "files", "defaultMode": 420}}]
                    }
                }
            },
            "status": {"replicas": 3}
        })
    }

    #[test]
    fn a_deployment_keeps_what_the_team_wrote_and_nothing_else() {
        let cleaned = clean(&live_deployment());
        assert_eq!(
            cleaned,
            json!({
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {
                    "name": "web",
                    "labels": {"team": "payments"},
                    "annotations": {"owner": "payments@example.com"}
                },
                "spec": {
                    "replicas": 3,
                    "selector": {"matchLabels": {"app": "web"}},
                    "template": {
                        "metadata": {"labels": {"app": "web"}},
                        "spec": {
                            "containers": [
                                {
                                    "name": "web",
                                    "image": "registry/acme/web@sha256:1",
                                    "envFrom": [{"configMapRef": {"name": "web-config"}}]
                                },
                                // `:latest` defaults to Always: IfNotPresent was chosen.
                                {"name": "proxy", "image": "envoy:latest", "imagePullPolicy": "IfNotPresent"}
                            ],
                            "volumes": [{"name": "c", "configMap": {"name": "files"}}]
                        }
                    }
                }
            })
        );
    }

    #[test]
    fn values_other_than_the_defaults_stay() {
        let mut live = live_deployment();
        live["spec"]["revisionHistoryLimit"] = json!(3);
        live["spec"]["strategy"] = json!({"type": "Recreate"});
        live["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = json!(60);
        live["metadata"]["labels"]["app.kubernetes.io/managed-by"] = json!("helm");
        let cleaned = clean(&live);
        assert_eq!(cleaned["spec"]["revisionHistoryLimit"], 3);
        assert_eq!(cleaned["spec"]["strategy"], json!({"type": "Recreate"}));
        assert_eq!(
            cleaned["spec"]["template"]["spec"]["terminationGracePeriodSeconds"],
            60
        );
        assert_eq!(
            cleaned["metadata"]["labels"]["app.kubernetes.io/managed-by"],
            "helm"
        );
    }

    #[test]
    fn a_statefulset_loses_its_default_policies() {
        let live = json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "cache"},
            "spec": {
                "podManagementPolicy": "OrderedReady",
                "revisionHistoryLimit": 10,
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
                "serviceName": "cache",
                "template": {"metadata": {"creationTimestamp": null}, "spec": {"containers": []}}
            }
        });
        assert_eq!(
            clean(&live)["spec"],
            json!({"serviceName": "cache", "template": {"spec": {"containers": []}}})
        );
        let mut partitioned = live.clone();
        partitioned["spec"]["updateStrategy"]["rollingUpdate"]["partition"] = json!(2);
        assert!(clean(&partitioned)["spec"].get("updateStrategy").is_some());
    }

    #[test]
    fn a_service_loses_its_addresses_and_defaults_but_keeps_its_protocol() {
        let live = json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "qa", "uid": "1"},
            "spec": {
                "clusterIP": "10.0.0.7", "clusterIPs": ["10.0.0.7"],
                "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
                "sessionAffinity": "None", "type": "ClusterIP", "internalTrafficPolicy": "Cluster",
                "selector": {"app": "web"},
                "ports": [
                    {"port": 80, "targetPort": 80, "protocol": "TCP"},
                    {"name": "admin", "port": 81, "targetPort": 9090, "protocol": "TCP"}
                ]
            },
            "status": {"loadBalancer": {}}
        });
        assert_eq!(
            clean(&live),
            json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "web"},
                "spec": {
                    "selector": {"app": "web"},
                    "ports": [
                        {"port": 80, "protocol": "TCP"},
                        {"name": "admin", "port": 81, "targetPort": 9090, "protocol": "TCP"}
                    ]
                }
            })
        );
    }

    #[test]
    fn a_headless_service_stays_headless() {
        let live = json!({"kind": "Service", "metadata": {"name": "db"},
            "spec": {"clusterIP": "None", "clusterIPs": ["None"], "type": "ClusterIP"}});
        assert_eq!(
            clean(&live)["spec"],
            json!({"clusterIP": "None", "clusterIPs": ["None"]})
        );
    }

    #[test]
    fn a_config_map_keeps_its_data() {
        let live = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "web-config", "namespace": "qa", "resourceVersion": "9"},
            "data": {"greeting": "hello"}});
        assert_eq!(
            clean(&live),
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "web-config"}, "data": {"greeting": "hello"}})
        );
    }

    #[test]
    fn image_pull_policy_default_depends_on_the_tag() {
        assert!(pulled_if_not_present_by_default("r/web@sha256:1"));
        assert!(pulled_if_not_present_by_default("r:5000/web:1.2"));
        assert!(!pulled_if_not_present_by_default("r:5000/web"));
        assert!(!pulled_if_not_present_by_default("web:latest"));
    }

    #[test]
    fn references_are_found_everywhere_a_pod_reads_them() {
        let spec = json!({
            "containers": [{
                "name": "web",
                "env": [
                    {"name": "A", "valueFrom": {"configMapKeyRef": {"name": "cm-key", "key": "a"}}},
                    {"name": "B", "valueFrom": {"secretKeyRef": {"name": "s-key", "key": "b"}}},
                    {"name": "C", "value": "c"}
                ],
                "envFrom": [{"configMapRef": {"name": "cm-from"}}, {"secretRef": {"name": "s-from"}}]
            }],
            "initContainers": [{"name": "m", "envFrom": [{"configMapRef": {"name": "cm-init"}}]}],
            "volumes": [
                {"name": "v1", "configMap": {"name": "cm-vol"}},
                {"name": "v2", "secret": {"secretName": "s-vol"}},
                {"name": "v3", "projected": {"sources": [
                    {"configMap": {"name": "cm-proj"}}, {"secret": {"name": "s-proj"}}
                ]}}
            ],
            "imagePullSecrets": [{"name": "pull"}]
        });
        let refs = references(&spec);
        let names = |s: &BTreeSet<String>| s.iter().cloned().collect::<Vec<_>>();
        assert_eq!(
            names(&refs.config_maps),
            ["cm-from", "cm-init", "cm-key", "cm-proj", "cm-vol"]
        );
        assert_eq!(
            names(&refs.secrets),
            ["pull", "s-from", "s-key", "s-proj", "s-vol"]
        );
    }

    #[test]
    fn services_are_the_apps_when_they_select_its_pods() {
        let web = workload(Kind::Deployment, "web", &[("web", "r/web:1")]);
        let services = vec![
            json!({"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}}}),
            json!({"metadata": {"name": "other"}, "spec": {"selector": {"app": "other"}}}),
            json!({"metadata": {"name": "manual"}, "spec": {}}),
            json!({"metadata": {"name": "narrower"}, "spec": {"selector": {"app": "web", "tier": "x"}}}),
        ];
        let names: Vec<_> = app_services(&services, &[web])
            .iter()
            .map(|s| s["metadata"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["web"]);
    }

    #[test]
    fn a_cronjobs_pod_labels_are_in_its_job_template() {
        let mut nightly = workload(Kind::CronJob, "nightly", &[("job", "r/web:1")]);
        assert_eq!(pod_template_labels(&nightly)["app"], "nightly");
        nightly.object.data = json!({});
        assert!(pod_template_labels(&nightly).is_empty());
    }

    #[test]
    fn env_arguments_name_a_namespace_and_maybe_a_context() {
        assert_eq!(
            parse_env_arg("production=web-prod@prod-context").unwrap(),
            EnvArg {
                name: "production".into(),
                namespace: "web-prod".into(),
                context: Some("prod-context".into())
            }
        );
        assert_eq!(parse_env_arg("qa=web-qa").unwrap().context, None);
        for bad in ["qa", "QA=web", "qa=Web", "qa=", "=ns", "qa=ns@", "qa=-ns"] {
            let err = parse_env_arg(bad).unwrap_err();
            assert!(err.message.contains(bad), "{bad}: {}", err.message);
        }
    }

    #[test]
    fn manifests_are_named_by_kind_and_name_and_start_with_their_identity() {
        let object = clean(&live_deployment());
        assert_eq!(file_name(&object), "deployment-web.yaml");
        let text = manifest_text(&object, "web-qa").unwrap();
        let mut lines = text.lines();
        assert_eq!(
            lines.next(),
            Some("# Exported by `kubectl release init` from namespace web-qa.")
        );
        assert_eq!(lines.next(), Some("apiVersion: apps/v1"));
        assert_eq!(lines.next(), Some("kind: Deployment"));
        assert_eq!(lines.next(), Some("metadata:"));
        let back: Value = serde_yaml_ng::from_str(&text).unwrap();
        assert_eq!(back, object);
    }

    #[test]
    fn release_config_promotes_each_environment_from_the_one_before() {
        let envs = [
            parse_env_arg("qa=web-qa").unwrap(),
            parse_env_arg("staging=web-staging").unwrap(),
            parse_env_arg("production=web-prod@prod").unwrap(),
        ];
        let text = release_config_text("v", "K", "web", "r/web", &envs).unwrap();
        let doc: Value = serde_yaml_ng::from_str(&text).unwrap();
        assert_eq!(
            doc,
            json!({
                "apiVersion": "v", "kind": "K", "app": "web", "image": "r/web",
                "environments": [
                    {"name": "qa", "namespace": "web-qa", "manifests": "kubernetes/qa"},
                    {"name": "staging", "namespace": "web-staging", "manifests": "kubernetes/staging", "promoteFrom": "qa"},
                    {"name": "production", "context": "prod", "namespace": "web-prod", "manifests": "kubernetes/production", "promoteFrom": "staging"}
                ]
            })
        );
    }
}
