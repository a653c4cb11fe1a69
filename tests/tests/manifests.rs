//! Releases that carry the app's manifests: read at the commit from git, images pinned, applied
//! server-side in dependency order, pruned as an ApplySet, waited for — against the real
//! control plane, registry and git repositories.

use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::Api;
use kubectl_release_tests::App;
use serde_json::Value;

/// A Deployment `web` (replicas and LOG_LEVEL given), its Service and its ConfigMap, as a
/// team keeps them in `kubernetes/<env>/`.
fn web_manifests(image: &str, replicas: u32, log_level: &str) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      containers:
        - name: web
          image: {image}:latest
          env:
            - name: LOG_LEVEL
              value: "{log_level}"
        - name: proxy
          image: envoy:1.30
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {{app: web}}
  ports:
    # Kubernetes before 1.21 cannot server-side apply a port without its protocol.
    - port: 80
      protocol: TCP
"#
    )
}

fn config_map(name: &str, value: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  greeting: \"{value}\"\n"
    )
}

/// release.yaml with qa's manifests in `kubernetes/qa`, qa in `namespace`.
fn write_config(app: &App, namespace: &str, qa_extra: &str) {
    let config = format!(
        "apiVersion: kubectl-release.io/v1alpha1\nkind: ReleaseConfig\napp: {name}\nimage: {image}\n\
         environments:\n  - name: qa\n    context: qa\n    namespace: {namespace}\n    manifests: kubernetes/qa\n{qa_extra}\
         \x20 - name: production\n    context: production\n    namespace: {prod}\n    promoteFrom: qa\n    manifests: kubernetes/production\n",
        name = app.name,
        image = app.image,
        prod = app.production.name(),
    );
    std::fs::write(app.repo.path().join("release.yaml"), config).expect("write release.yaml");
}

/// Commits the working tree and pushes that commit's image; returns the commit.
async fn commit_and_push(app: &mut App, message: &str) -> String {
    let commit = app.repo.commit(message);
    app.push(&commit).await;
    commit
}

fn report(out: &kubectl_release_tests::CmdOutput) -> Value {
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn first_deploy_into_an_empty_namespace_creates_the_app_and_waits() {
    let mut app = App::new("man-first", 0).await;
    // A namespace nobody created yet: the release creates it.
    let namespace = format!("{}-new", app.qa.name());
    write_config(&app, &namespace, "    createNamespace: true\n");
    app.repo.write(
        "kubernetes/qa/web.yaml",
        &web_manifests(&app.image, 2, "info"),
    );
    app.repo.write(
        "kubernetes/qa/config.yaml",
        &config_map("web-config", "hello"),
    );
    let commit = commit_and_push(&mut app, "manifests").await;

    let out = app.release(&["deploy", "qa", "-o", "json"]).await;
    assert!(out.success(), "{out}");
    let report = report(&out);
    assert_eq!(report["outcome"], "succeeded", "{out}");
    let created: Vec<&str> = report["objects"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["action"] == "create")
        .map(|o| o["object"]["kind"].as_str().unwrap())
        .collect();
    // Dependency order: config before services before workloads.
    assert_eq!(created, ["ConfigMap", "Service", "Deployment"], "{out}");

    let d = app.deployment(&namespace, "web").await;
    let containers = d.spec.template.spec.unwrap().containers;
    assert_eq!(
        containers[0].image.as_deref(),
        Some(app.pinned(&commit).as_str())
    );
    assert_eq!(containers[1].image.as_deref(), Some("envoy:1.30"));
    let status = d.status.unwrap();
    assert_eq!(status.ready_replicas, Some(2), "waited for the rollout");
    let client = app.env.client("admin").await;
    let svc: Api<Service> = Api::namespaced(client.clone(), &namespace);
    let svc = svc.get("web").await.unwrap();
    assert_eq!(
        svc.metadata.labels.unwrap()["kubectl-release.io/app"],
        "web"
    );
    let cms: Api<ConfigMap> = Api::namespaced(client, &namespace);
    assert_eq!(
        cms.get("web-config").await.unwrap().data.unwrap()["greeting"],
        "hello"
    );
}
