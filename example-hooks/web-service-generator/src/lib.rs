//! `web-service-generator`: the default generator of kubectl-release. From the app spec it
//! renders a Deployment, a Service (when `service` is set), a PodDisruptionBudget and, when
//! `autoscaling` is set, a HorizontalPodAutoscaler, all labelled with the organisation's
//! `labels` from its settings and `app.kubernetes.io/name`.
//!
//! The API versions of the PodDisruptionBudget and the HorizontalPodAutoscaler are settings,
//! defaulting to the ones every control plane from 1.19 to 1.24 serves (`policy/v1beta1`,
//! `autoscaling/v2beta2`); set `policy/v1` and `autoscaling/v2` on 1.23 and later.

use std::collections::BTreeMap;

use hooks_sdk::generator::{AppSpec, Container, GenerateRequest};
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// The generator's settings in release.yaml.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Settings {
    /// Labels on every object and pod (e.g. `team`, `owner`).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// `policy/v1beta1` (default) or `policy/v1`.
    #[serde(default = "default_pdb")]
    pub pod_disruption_budget_api_version: String,
    /// `autoscaling/v2beta2` (default) or `autoscaling/v2`.
    #[serde(default = "default_hpa")]
    pub autoscaling_api_version: String,
}

fn default_pdb() -> String {
    "policy/v1beta1".into()
}

fn default_hpa() -> String {
    "autoscaling/v2beta2".into()
}

const NAME_LABEL: &str = "app.kubernetes.io/name";

/// The objects for one environment, or why not.
pub fn generate(req: &GenerateRequest, settings: &Settings) -> Result<Vec<Value>, String> {
    if !matches!(
        settings.pod_disruption_budget_api_version.as_str(),
        "policy/v1beta1" | "policy/v1"
    ) {
        return Err(
            "settings.podDisruptionBudgetApiVersion must be policy/v1beta1 or policy/v1".into(),
        );
    }
    if !matches!(
        settings.autoscaling_api_version.as_str(),
        "autoscaling/v2beta2" | "autoscaling/v2"
    ) {
        return Err(
            "settings.autoscalingApiVersion must be autoscaling/v2beta2 or autoscaling/v2".into(),
        );
    }
    if req.spec.containers.is_empty() {
        return Err("the spec has no containers".into());
    }
    let mut labels = settings.labels.clone();
    labels.insert(NAME_LABEL.into(), req.app.clone());
    let selector = json!({ NAME_LABEL: req.app });
    let mut objects = vec![deployment(req, &labels, &selector)];
    if let Some(service) = &req.spec.service {
        let target = service
            .target_port
            .or_else(|| first_port(&req.spec))
            .unwrap_or(service.port);
        objects.push(json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": metadata(&req.app, &labels),
            "spec": {
                "selector": selector,
                "ports": [{"name": "http", "port": service.port, "targetPort": target, "protocol": "TCP"}],
            },
        }));
    }
    objects.push(json!({
        "apiVersion": settings.pod_disruption_budget_api_version,
        "kind": "PodDisruptionBudget",
        "metadata": metadata(&req.app, &labels),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector}},
    }));
    if let Some(a) = &req.spec.autoscaling {
        objects.push(json!({
            "apiVersion": settings.autoscaling_api_version,
            "kind": "HorizontalPodAutoscaler",
            "metadata": metadata(&req.app, &labels),
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": req.app},
                "minReplicas": a.min,
                "maxReplicas": a.max,
                "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                    "target": {"type": "Utilization", "averageUtilization": a.cpu}}}],
            },
        }));
    }
    Ok(objects)
}

fn first_port(spec: &AppSpec) -> Option<u16> {
    spec.containers
        .values()
        .find_map(|c| c.ports.first().map(|p| p.port))
}

fn metadata(name: &str, labels: &BTreeMap<String, String>) -> Value {
    json!({"name": name, "labels": labels})
}

fn deployment(req: &GenerateRequest, labels: &BTreeMap<String, String>, selector: &Value) -> Value {
    let containers: Vec<Value> = req
        .spec
        .containers
        .iter()
        .map(|(name, c)| container(name, c, &req.image))
        .collect();
    let mut spec = json!({
        "selector": {"matchLabels": selector},
        "template": {
            "metadata": {"labels": labels},
            "spec": {"containers": containers},
        },
    });
    // With an autoscaler the replicas are its business: a fixed count would fight it.
    if req.spec.autoscaling.is_none() {
        spec["replicas"] = json!(req.spec.replicas.unwrap_or(1));
    }
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(&req.app, labels),
        "spec": spec,
    })
}

fn container(name: &str, c: &Container, image: &str) -> Value {
    let mut out = Map::new();
    out.insert("name".into(), json!(name));
    out.insert("image".into(), json!(image));
    if !c.command.is_empty() {
        out.insert("command".into(), json!(c.command));
    }
    if !c.args.is_empty() {
        out.insert("args".into(), json!(c.args));
    }
    if !c.ports.is_empty() {
        let ports: Vec<Value> = c
            .ports
            .iter()
            .map(|p| json!({"name": p.name, "containerPort": p.port, "protocol": p.protocol}))
            .collect();
        out.insert("ports".into(), json!(ports));
    }
    if !c.variables.is_empty() {
        let env: Vec<Value> = c
            .variables
            .iter()
            .map(|(k, v)| json!({"name": k, "value": v}))
            .collect();
        out.insert("env".into(), json!(env));
    }
    if let Some(r) = &c.resources {
        out.insert("resources".into(), json!(r));
    }
    if let Some(p) = &c.readiness_probe {
        out.insert(
            "readinessProbe".into(),
            json!({"httpGet": {"path": p.http_get.path, "port": p.http_get.port}}),
        );
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(spec: &str) -> GenerateRequest {
        GenerateRequest {
            app: "web".into(),
            image: "registry.example/web".into(),
            environment: "qa".into(),
            namespace: "web-qa".into(),
            spec: serde_json::from_str(spec).unwrap(),
            ..GenerateRequest::default()
        }
    }

    fn settings(v: Value) -> Settings {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn renders_deployment_service_and_pdb_with_labels() {
        let req = request(
            r#"{"containers":{"web":{"ports":[{"name":"http","port":8080}],"variables":{"A":"1"}}},"replicas":2,"service":{"port":80}}"#,
        );
        let objects = generate(&req, &settings(json!({"labels": {"team": "payments"}}))).unwrap();
        let kinds: Vec<&str> = objects
            .iter()
            .map(|o| o["kind"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["Deployment", "Service", "PodDisruptionBudget"]);
        let d = &objects[0];
        assert_eq!(d["spec"]["replicas"], 2);
        assert_eq!(d["metadata"]["labels"]["team"], "payments");
        assert_eq!(
            d["spec"]["template"]["metadata"]["labels"][NAME_LABEL],
            "web"
        );
        let c = &d["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["image"], "registry.example/web");
        assert_eq!(c["ports"][0]["protocol"], "TCP");
        assert_eq!(objects[1]["spec"]["ports"][0]["targetPort"], 8080);
        assert_eq!(objects[1]["spec"]["ports"][0]["protocol"], "TCP");
        assert_eq!(objects[2]["apiVersion"], "policy/v1beta1");
    }

    #[test]
    fn autoscaling_adds_an_hpa_and_drops_replicas() {
        let req = request(r#"{"containers":{"web":{}},"autoscaling":{"min":2,"max":5,"cpu":70}}"#);
        let objects = generate(
            &req,
            &settings(json!({"autoscalingApiVersion": "autoscaling/v2"})),
        )
        .unwrap();
        assert!(objects[0]["spec"].get("replicas").is_none());
        let hpa = objects.last().unwrap();
        assert_eq!(hpa["apiVersion"], "autoscaling/v2");
        assert_eq!(hpa["spec"]["maxReplicas"], 5);
    }

    #[test]
    fn bad_settings_are_refused() {
        let req = request(r#"{"containers":{"web":{}}}"#);
        let err = generate(
            &req,
            &settings(json!({"podDisruptionBudgetApiVersion": "policy/v2"})),
        );
        assert!(err.unwrap_err().contains("podDisruptionBudgetApiVersion"));
    }
}
