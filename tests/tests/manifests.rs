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

// ---------------------------------------------------------------------------------------------
// Helpers of the tests below

/// The app's records in qa (`namespace`), oldest first.
async fn qa_records(app: &App, namespace: &str) -> Vec<Value> {
    let client = app.env.client("admin").await;
    kubectl_release_tests::records(&client, namespace, &app.name, "qa").await
}

/// The first container's image and env values of Deployment/web, with its replicas and
/// generation: what a release changes.
async fn web_state(app: &App, namespace: &str) -> (Option<i64>, Option<i32>, Vec<Option<String>>) {
    let d = app.deployment(namespace, "web").await;
    let images = d
        .spec
        .template
        .spec
        .as_ref()
        .map(|p| p.containers.iter().map(|c| c.image.clone()).collect())
        .unwrap_or_default();
    (d.metadata.generation, d.spec.replicas, images)
}

/// The value of `LOG_LEVEL` in the live Deployment/web's first container.
async fn log_level(app: &App, namespace: &str) -> String {
    let d = app.deployment(namespace, "web").await;
    let container = &d.spec.template.spec.unwrap().containers[0];
    container
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "LOG_LEVEL")
        .and_then(|e| e.value.clone())
        .expect("LOG_LEVEL is set")
}

async fn greeting(app: &App, namespace: &str, name: &str) -> String {
    let cms: Api<ConfigMap> = Api::namespaced(app.env.client("admin").await, namespace);
    cms.get(name).await.unwrap().data.unwrap()["greeting"].clone()
}

/// An `applyset.kubernetes.io/` annotation of the app's ApplySet parent in `namespace`.
async fn parent_annotation(app: &App, namespace: &str, name: &str) -> String {
    let cms: Api<ConfigMap> = Api::namespaced(app.env.client("admin").await, namespace);
    let parent = cms.get("applyset-web").await.expect("the ApplySet parent");
    parent.metadata.annotations.unwrap_or_default()[&format!("applyset.kubernetes.io/{name}")]
        .clone()
}

/// The report's entry for `kind/name`.
fn object<'a>(report: &'a Value, kind: &str, name: &str) -> &'a Value {
    report["objects"]
        .as_array()
        .unwrap_or_else(|| panic!("no objects in the report: {report}"))
        .iter()
        .find(|o| o["object"]["kind"] == kind && o["object"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind}/{name} in the report's objects: {report}"))
}

/// An app whose qa (its own namespace) has `kubernetes/qa/web.yaml` (2 replicas, `info`) and
/// any `extra` files, committed, pushed and deployed; returns the commit.
async fn deployed(app: &mut App, extra: &[(&str, String)]) -> String {
    let namespace = app.qa.name().to_string();
    write_config(app, &namespace, "");
    app.repo.write(
        "kubernetes/qa/web.yaml",
        &web_manifests(&app.image, 2, "info"),
    );
    for (path, text) in extra {
        app.repo.write(path, text);
    }
    let commit = commit_and_push(app, "manifests").await;
    let out = app.release(&["deploy", "qa", "-o", "json"]).await;
    assert!(out.success(), "{out}");
    assert_eq!(report(&out)["outcome"], "succeeded", "{out}");
    commit
}

// ---------------------------------------------------------------------------------------------

/// Tags commit `from`'s image as `to` too (as CI does when a commit changes no code), so both
/// commits run the same digest: what differs between them is config only.
async fn retag(app: &mut App, from: &str, to: &str) {
    use oci_client::client::{ClientConfig, ClientProtocol};
    use oci_client::manifest::OCI_IMAGE_MEDIA_TYPE;
    use oci_client::secrets::RegistryAuth;
    use oci_client::{Client, Reference};

    kubectl_release_tests::install_crypto_provider();
    let registry = app.env.registry().to_string();
    let client = Client::new(ClientConfig {
        protocol: ClientProtocol::HttpsExcept(vec![registry.clone()]),
        ..Default::default()
    });
    let source = Reference::with_tag(registry.clone(), app.repository.clone(), from.into());
    let (manifest, digest) = client
        .pull_manifest_raw(&source, &RegistryAuth::Anonymous, &[OCI_IMAGE_MEDIA_TYPE])
        .await
        .expect("pull the image manifest");
    let target = Reference::with_tag(registry, app.repository.clone(), to.into());
    client
        .push_manifest_raw(
            &target,
            manifest,
            http::HeaderValue::from_static(OCI_IMAGE_MEDIA_TYPE),
        )
        .await
        .expect("tag the image");
    app.digests.insert(to.to_string(), digest);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_config_only_commit_is_a_release() {
    let mut app = App::new("man-config", 0).await;
    let ns = app.qa.name().to_string();
    let first = deployed(&mut app, &[]).await;
    assert_eq!(qa_records(&app, &ns).await.len(), 1);

    // A commit that changes replicas and LOG_LEVEL only, with the very same image.
    app.repo.write(
        "kubernetes/qa/web.yaml",
        &web_manifests(&app.image, 3, "debug"),
    );
    let second = app.repo.commit("more replicas, more logs");
    retag(&mut app, &first, &second).await;
    assert_eq!(app.digests[&first], app.digests[&second]);
    let out = app.release(&["deploy", "qa", "-o", "json"]).await;
    assert!(out.success(), "{out}");
    let rep = report(&out);
    assert_eq!(
        rep["outcome"], "succeeded",
        "same image, new config: a release: {out}"
    );
    let web = object(&rep, "Deployment", "web");
    assert_eq!(web["action"], "update", "{out}");
    let diff = web["diff"].as_str().unwrap_or_default();
    let changed = |sign: char, text: &str| {
        diff.lines()
            .any(|l| l.starts_with(sign) && l[1..].trim() == text)
    };
    assert!(
        diff.contains("LOG_LEVEL") && changed('-', "value: info") && changed('+', "value: debug"),
        "the diff shows the config change: {diff}"
    );
    assert!(
        changed('-', "replicas: 2") && changed('+', "replicas: 3"),
        "{diff}"
    );
    assert!(
        !diff
            .lines()
            .any(|l| l.starts_with(['-', '+']) && l.contains("image:")),
        "the image is the same: {diff}"
    );
    assert_eq!(
        object(&rep, "Service", "web")["action"],
        "unchanged",
        "{out}"
    );

    let d = app.deployment(&ns, "web").await;
    assert_eq!(d.spec.replicas, Some(3));
    assert_eq!(d.status.as_ref().unwrap().ready_replicas, Some(3), "waited");
    assert_eq!(
        d.spec.template.spec.as_ref().unwrap().containers[0]
            .image
            .as_deref(),
        Some(app.pinned(&first).as_str())
    );
    assert_eq!(log_level(&app, &ns).await, "debug");
    let recs = qa_records(&app, &ns).await;
    assert_eq!(recs.len(), 2, "{recs:?}");
    assert_eq!(recs[1]["commit"], second.as_str());
    assert_eq!(recs[1]["manifests"]["path"], "kubernetes/qa");
    assert_eq!(recs[1]["manifests"]["digest"], rep["manifestsDigest"]);
    assert_ne!(
        recs[1]["manifests"]["digest"],
        recs[0]["manifests"]["digest"]
    );

    // The same commit again: images and config unchanged, nothing recorded.
    let generation = d.metadata.generation;
    let out = app.release(&["deploy", "qa", "-o", "json"]).await;
    assert_eq!(out.code(), Some(0), "{out}");
    assert_eq!(report(&out)["outcome"], "unchanged", "{out}");
    assert_eq!(
        app.deployment(&ns, "web").await.metadata.generation,
        generation
    );
    assert_eq!(qa_records(&app, &ns).await.len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_object_removed_from_the_manifests_is_pruned_and_others_are_untouched() {
    let mut app = App::new("man-prune", 0).await;
    let ns = app.qa.name().to_string();
    deployed(
        &mut app,
        &[
            (
                "kubernetes/qa/config.yaml",
                config_map("web-config", "hello"),
            ),
            ("kubernetes/qa/old.yaml", config_map("old-config", "old")),
        ],
    )
    .await;
    let client = app.env.client("admin").await;
    let cms: Api<ConfigMap> = Api::namespaced(client, &ns);
    let theirs: ConfigMap = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "someone-elses"},
        "data": {"owner": "another team"},
    }))
    .unwrap();
    cms.create(&Default::default(), &theirs).await.unwrap();
    assert!(cms.get_opt("old-config").await.unwrap().is_some());

    std::fs::remove_file(app.repo.path().join("kubernetes/qa/old.yaml")).unwrap();
    commit_and_push(&mut app, "old-config is no more").await;
    // The plan says so, and deletes nothing.
    let out = app.release(&["plan", "qa"]).await;
    assert!(out.success(), "{out}");
    let line = out
        .stdout
        .lines()
        .find(|l| l.contains("ConfigMap/old-config"))
        .unwrap_or_else(|| panic!("no ConfigMap/old-config in {out}"));
    assert!(line.contains("prune"), "{out}");
    assert!(!out.stdout.contains("someone-elses"), "{out}");
    assert!(cms.get_opt("old-config").await.unwrap().is_some());

    let out = app.release(&["deploy", "qa", "-o", "json"]).await;
    assert!(out.success(), "{out}");
    let rep = report(&out);
    assert_eq!(
        object(&rep, "ConfigMap", "old-config")["action"],
        "prune",
        "{out}"
    );
    let pruned: Vec<&Value> = rep["objects"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["action"] == "prune")
        .collect();
    assert_eq!(pruned.len(), 1, "only old-config is pruned: {out}");

    kubectl_release_tests::wait_for(
        &cms,
        "old-config",
        kubectl_release_tests::DEFAULT_TIMEOUT,
        |o| o.is_none(),
    )
    .await
    .expect("old-config is deleted");
    assert_eq!(
        cms.get("someone-elses").await.unwrap().data.unwrap()["owner"],
        "another team",
        "an object that is not the app's is left alone"
    );
    assert_eq!(greeting(&app, &ns, "web-config").await, "hello");
    assert_eq!(
        parent_annotation(&app, &ns, "contains-group-kinds").await,
        "ConfigMap,Deployment.apps,Service"
    );
    assert!(
        parent_annotation(&app, &ns, "tooling")
            .await
            .starts_with("kubectl/v1.32.0+kubectl-release.")
    );

    let recs = qa_records(&app, &ns).await;
    let last = recs.last().unwrap();
    let names: Vec<&str> = last["manifests"]["pruned"]
        .as_array()
        .unwrap_or_else(|| panic!("no manifests.pruned in {last}"))
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["old-config"], "{last}");

    // Again: nothing left to prune, nothing to apply.
    let out = app.release(&["deploy", "qa", "-o", "json"]).await;
    assert_eq!(out.code(), Some(0), "{out}");
    assert_eq!(report(&out)["outcome"], "unchanged", "{out}");
    assert_eq!(qa_records(&app, &ns).await.len(), recs.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kustomize_overlay_per_environment() {
    let mut app = App::new("man-kustomize", 0).await;
    let ns = app.qa.name().to_string();
    write_config(&app, &ns, "");
    app.repo.write(
        "kubernetes/base/web.yaml",
        &web_manifests(&app.image, 2, "info"),
    );
    app.repo.write(
        "kubernetes/base/kustomization.yaml",
        "resources:\n  - web.yaml\n",
    );
    for (env, replicas) in [("qa", 1), ("production", 3)] {
        app.repo.write(
            &format!("kubernetes/{env}/kustomization.yaml"),
            &format!(
                "resources:\n  - ../base\npatches:\n  - target: {{kind: Deployment, name: web}}\n    patch: |-\n      - op: replace\n        path: /spec/replicas\n        value: {replicas}\n"
            ),
        );
    }
    let commit = commit_and_push(&mut app, "overlays").await;

    let out = app.release(&["deploy", "qa", "-o", "json"]).await;
    assert!(out.success(), "{out}");
    let out = app
        .release(&["promote", "qa", "production", "-o", "json"])
        .await;
    assert!(out.success(), "{out}");
    assert_eq!(report(&out)["outcome"], "succeeded", "{out}");

    for (namespace, replicas) in [(ns.as_str(), 1), (app.production.name(), 3)] {
        let d = app.deployment(namespace, "web").await;
        assert_eq!(d.spec.replicas, Some(replicas), "{namespace}");
        assert_eq!(
            d.status.as_ref().unwrap().ready_replicas,
            Some(replicas),
            "{namespace}: waited"
        );
        let containers = d.spec.template.spec.unwrap().containers;
        assert_eq!(
            containers[0].image.as_deref(),
            Some(app.pinned(&commit).as_str()),
            "{namespace}"
        );
        assert_eq!(containers[1].image.as_deref(), Some("envoy:1.30"));
    }
    let client = app.env.client("admin").await;
    let recs =
        kubectl_release_tests::records(&client, app.production.name(), &app.name, "production")
            .await;
    assert_eq!(recs.len(), 1, "{recs:?}");
    assert_eq!(recs[0]["commit"], commit.as_str());
    assert_eq!(recs[0]["manifests"]["path"], "kubernetes/production");
    let qa = qa_records(&app, &ns).await;
    assert_ne!(
        recs[0]["manifests"]["digest"], qa[0]["manifests"]["digest"],
        "each environment renders its own overlay"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_manifests_change_nothing_and_name_file_and_line() {
    let mut app = App::new("man-bad", 0).await;
    let ns = app.qa.name().to_string();
    deployed(&mut app, &[]).await;
    let before = web_state(&app, &ns).await;

    let good = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n";
    let cases: [(&str, String, &[&str]); 4] = [
        (
            "invalid YAML in the middle document",
            // Line 11, in document 2, is not YAML.
            format!(
                "{good}---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\ndata:\n  key: value: other\n---\n{}",
                good.replace("name: a", "name: c")
            ),
            &["kubernetes/qa/extra.yaml:11", "(document 2)"],
        ),
        (
            "another namespace",
            format!(
                "{good}---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\n  namespace: kube-system\n"
            ),
            &[
                "kubernetes/qa/extra.yaml:6 (document 2)",
                "metadata.namespace",
                "kube-system",
            ],
        ),
        (
            "a kind the server does not know",
            format!("{good}---\napiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: b\n"),
            &[
                "kubernetes/qa/extra.yaml:6 (document 2)",
                "the server does not know Widget",
            ],
        ),
        (
            "an object the server refuses in its dry run",
            format!(
                "{good}---\napiVersion: v1\nkind: Service\nmetadata:\n  name: b\nspec:\n  ports:\n    - port: 99999\n      protocol: TCP\n"
            ),
            &[
                "Service/b",
                "kubernetes/qa/extra.yaml:6 (document 2)",
                "99999",
            ],
        ),
    ];
    for (case, text, expected) in cases {
        app.repo.write("kubernetes/qa/extra.yaml", &text);
        commit_and_push(&mut app, case).await;
        let out = app.release(&["deploy", "qa"]).await;
        assert_eq!(out.code(), Some(2), "{case}: {out}");
        for e in expected {
            assert!(out.stderr.contains(e), "{case}: no {e:?} in {out}");
        }
        assert_eq!(
            web_state(&app, &ns).await,
            before,
            "{case}: nothing changed"
        );
        let cms: Api<ConfigMap> = Api::namespaced(app.env.client("admin").await, &ns);
        assert!(
            cms.get_opt("a").await.unwrap().is_none(),
            "{case}: nothing applied"
        );
        assert_eq!(
            qa_records(&app, &ns).await.len(),
            1,
            "{case}: no new record"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deployer_who_may_not_read_namespaces_releases_into_one_that_exists() {
    use kubectl_release_tests::{deployer_rules, grant, rule, setup_policy_rbac};
    let mut app = App::new("man-nsrights", 0).await;
    let ns = app.qa.name().to_string();
    // createNamespace for an environment whose namespace exists: the release only has to know
    // that, and a user whose rights end at the namespace cannot read Namespace objects.
    write_config(&app, &ns, "    createNamespace: true\n");
    app.repo.write(
        "kubernetes/qa/web.yaml",
        &web_manifests(&app.image, 1, "info"),
    );
    let commit = commit_and_push(&mut app, "manifests").await;
    setup_policy_rbac(app.env).await;
    let mut rules = deployer_rules(&["deployments"]);
    let write = [
        "get", "list", "watch", "create", "update", "patch", "delete",
    ];
    rules.push(rule("", &["services"], &write));
    rules.push(rule("apps", &["deployments"], &write));
    grant(app.env, &ns, "developer", "deployer", rules).await;

    let out = app
        .release_as("developer", &["deploy", "qa", "-o", "json"])
        .await;
    assert!(out.success(), "{out}");
    let rep = report(&out);
    assert_eq!(rep["outcome"], "succeeded", "{out}");
    assert_eq!(rep["commit"], commit.as_str(), "{out}");
    assert!(
        !rep["warnings"].to_string().contains("created namespace"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn uncommitted_manifest_edits_are_not_deployed() {
    let mut app = App::new("man-dirty", 0).await;
    let ns = app.qa.name().to_string();
    write_config(&app, &ns, "");
    app.repo.write(
        "kubernetes/qa/web.yaml",
        &web_manifests(&app.image, 2, "info"),
    );
    let commit = commit_and_push(&mut app, "manifests").await;
    // Edited, not committed.
    app.repo.write(
        "kubernetes/qa/web.yaml",
        &web_manifests(&app.image, 2, "debug"),
    );
    // Added, not committed.
    app.repo
        .write("kubernetes/qa/new.yaml", &config_map("new-config", "draft"));

    let out = app.release(&["deploy", "qa", "-o", "json"]).await;
    assert!(out.success(), "{out}");
    let rep = report(&out);
    assert_eq!(rep["commit"], commit.as_str(), "{out}");
    let warnings = rep["warnings"].to_string();
    assert!(
        warnings.contains("kubernetes/qa/web.yaml"),
        "the warning names the file: {out}"
    );
    assert!(
        warnings.contains("kubernetes/qa/new.yaml"),
        "the warning names the new file: {out}"
    );
    assert_eq!(log_level(&app, &ns).await, "info", "the committed value");
    let cms: Api<ConfigMap> = Api::namespaced(app.env.client("admin").await, &ns);
    assert!(
        cms.get_opt("new-config").await.unwrap().is_none(),
        "an uncommitted file is not deployed"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rollback_restores_the_old_config() {
    let mut app = App::new("man-rollback", 0).await;
    let ns = app.qa.name().to_string();
    let a = deployed(
        &mut app,
        &[
            (
                "kubernetes/qa/config.yaml",
                config_map("web-config", "hello"),
            ),
            ("kubernetes/qa/old.yaml", config_map("old-config", "old")),
        ],
    )
    .await;
    app.repo.write(
        "kubernetes/qa/web.yaml",
        &web_manifests(&app.image, 2, "debug"),
    );
    app.repo.write(
        "kubernetes/qa/config.yaml",
        &config_map("web-config", "bye"),
    );
    std::fs::remove_file(app.repo.path().join("kubernetes/qa/old.yaml")).unwrap();
    app.repo
        .write("kubernetes/qa/new.yaml", &config_map("new-config", "new"));
    let b = commit_and_push(&mut app, "B").await;
    app.release(&["deploy", "qa"]).await.assert_success();
    assert_eq!(log_level(&app, &ns).await, "debug");
    assert_eq!(greeting(&app, &ns, "web-config").await, "bye");
    let cms: Api<ConfigMap> = Api::namespaced(app.env.client("admin").await, &ns);
    kubectl_release_tests::wait_for(
        &cms,
        "old-config",
        kubectl_release_tests::DEFAULT_TIMEOUT,
        |o| o.is_none(),
    )
    .await
    .expect("B prunes old-config");
    assert_ne!(app.digests[&a], app.digests[&b]);

    let out = app.release(&["rollback", "qa", "-o", "json"]).await;
    assert!(out.success(), "{out}");
    // The checkout is at B, which differs from A by what B committed: nothing to warn about.
    assert!(
        !report(&out)["warnings"]
            .to_string()
            .contains("not in commit"),
        "{out}"
    );
    assert_eq!(log_level(&app, &ns).await, "info");
    assert_eq!(greeting(&app, &ns, "web-config").await, "hello");
    let d = app.deployment(&ns, "web").await;
    assert_eq!(
        d.spec.template.spec.unwrap().containers[0].image.as_deref(),
        Some(app.pinned(&a).as_str())
    );
    let recs = qa_records(&app, &ns).await;
    assert_eq!(recs.len(), 3, "{recs:?}");
    assert_eq!(recs[2]["commit"], a.as_str());
    // A's set, whole: what B pruned is back, what B added goes.
    assert_eq!(greeting(&app, &ns, "old-config").await, "old");
    kubectl_release_tests::wait_for(
        &cms,
        "new-config",
        kubectl_release_tests::DEFAULT_TIMEOUT,
        |o| o.is_none(),
    )
    .await
    .expect("the rollback prunes what A did not have");
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_sees_the_same_applyset() {
    let mut app = App::new("man-kubectl", 0).await;
    let ns = app.qa.name().to_string();
    let commit = deployed(
        &mut app,
        &[
            (
                "kubernetes/qa/config.yaml",
                config_map("web-config", "hello"),
            ),
            ("kubernetes/qa/old.yaml", config_map("old-config", "old")),
        ],
    )
    .await;

    // The same objects as committed, the image pinned as the release pinned it, old-config left out.
    let dir = tempfile::tempdir().unwrap();
    let pinned = web_manifests(&app.image, 2, "info")
        .replace(&format!("{}:latest", app.image), &app.pinned(&commit));
    std::fs::write(dir.path().join("web.yaml"), pinned).unwrap();
    std::fs::write(
        dir.path().join("config.yaml"),
        config_map("web-config", "hello"),
    )
    .unwrap();

    let mut cmd = tokio::process::Command::new("kubectl");
    cmd.env("KUBECONFIG", app.env.kubeconfig())
        .env("KUBECTL_APPLYSET", "true")
        .args([
            "--context",
            "qa",
            "apply",
            "--server-side",
            "--field-manager",
            "kubectl-release",
        ])
        .args([
            "--prune",
            "--applyset=configmap/applyset-web",
            "-n",
            &ns,
            "--dry-run=server",
            "-f",
        ])
        .arg(dir.path());
    let out = kubectl_release_tests::run(&mut cmd).await;
    assert!(
        out.success(),
        "kubectl refused the set: {}\n{out}",
        out.stderr
    );
    let pruned: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.contains("pruned"))
        .collect();
    assert_eq!(pruned.len(), 1, "{out}");
    assert!(pruned[0].contains("configmap/old-config"), "{out}");
    // Nothing was changed for real.
    let cms: Api<ConfigMap> = Api::namespaced(app.env.client("admin").await, &ns);
    assert!(cms.get_opt("old-config").await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_conflict_with_another_field_manager_is_refused_unless_forced() {
    use k8s_openapi::api::apps::v1::Deployment;
    use kube::api::{Patch, PatchParams};

    let mut app = App::new("man-conflict", 0).await;
    let ns = app.qa.name().to_string();
    deployed(&mut app, &[]).await;
    let deployments: Api<Deployment> = Api::namespaced(app.env.client("admin").await, &ns);
    let scale = serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web"}, "spec": {"replicas": 4},
    });
    deployments
        .patch(
            "web",
            &PatchParams::apply("other-tool").force(),
            &Patch::Apply(&scale),
        )
        .await
        .unwrap();

    app.repo.write(
        "kubernetes/qa/web.yaml",
        &web_manifests(&app.image, 3, "info"),
    );
    commit_and_push(&mut app, "3 replicas").await;
    let before = web_state(&app, &ns).await;
    let out = app.release(&["deploy", "qa"]).await;
    assert_eq!(out.code(), Some(2), "{out}");
    for e in ["other-tool", "--force-conflicts", "spec.replicas"] {
        assert!(out.stderr.contains(e), "no {e:?} in {out}");
    }
    assert_eq!(web_state(&app, &ns).await, before, "nothing applied");
    assert_eq!(before.1, Some(4));
    assert_eq!(qa_records(&app, &ns).await.len(), 1);

    let out = app.release(&["deploy", "qa", "--force-conflicts"]).await;
    assert!(out.success(), "{out}");
    let d = app.deployment(&ns, "web").await;
    assert_eq!(d.spec.replicas, Some(3));
    assert_eq!(d.status.unwrap().ready_replicas, Some(3));
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_shows_diffs_with_secret_values_masked() {
    use k8s_openapi::api::core::v1::Secret;

    let secret = |password: &str| {
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: web-secret\nstringData:\n  password: {password}\n"
        )
    };
    let mut app = App::new("man-plan", 0).await;
    let ns = app.qa.name().to_string();
    deployed(&mut app, &[("kubernetes/qa/secret.yaml", secret("one"))]).await;
    app.repo.write("kubernetes/qa/secret.yaml", &secret("two"));
    commit_and_push(&mut app, "new password").await;
    let before = web_state(&app, &ns).await;

    let out = app.release(&["plan", "qa"]).await;
    assert!(out.success(), "{out}");
    let secret_line = out
        .stdout
        .lines()
        .find(|l| l.contains("Secret/web-secret"))
        .unwrap_or_else(|| panic!("no Secret/web-secret in {out}"));
    assert!(secret_line.contains("~ update"), "{out}");
    let lines: Vec<&str> = out.stdout.lines().map(str::trim_end).collect();
    assert!(
        lines
            .iter()
            .any(|l| l.trim_start() == "-  password: '*** (before)'")
            && lines
                .iter()
                .any(|l| l.trim_start() == "+  password: '*** (after)'"),
        "the password's change shows, masked: {out}"
    );
    // Neither the values nor their base64 (`b25l`, `dHdv`) are printed.
    for value in ["one", "two", "b25l", "dHdv"] {
        assert!(
            !lines
                .iter()
                .any(|l| l.contains(&format!(": {value}")) || l.contains(&format!("'{value}'"))),
            "{value} printed: {out}"
        );
        assert!(
            !out.stdout.contains("b25l") && !out.stdout.contains("dHdv"),
            "{out}"
        );
    }
    // `deploy --dry-run` says the same in its report, and changes nothing either.
    let out = app
        .release(&["deploy", "qa", "--dry-run", "-o", "json"])
        .await;
    assert!(out.success(), "{out}");
    let rep = report(&out);
    let entry = object(&rep, "Secret", "web-secret");
    assert_eq!(entry["action"], "update", "{out}");
    let diff = entry["diff"].as_str().unwrap_or_default();
    assert!(diff.contains("+  password: '*** (after)'"), "{diff}");
    for value in ["one", "two", "b25l", "dHdv"] {
        assert!(!diff.contains(value), "{value} in {diff}");
    }

    let secrets: Api<Secret> = Api::namespaced(app.env.client("admin").await, &ns);
    let live = secrets.get("web-secret").await.unwrap();
    assert_eq!(live.data.unwrap()["password"].0, b"one");
    assert_eq!(web_state(&app, &ns).await, before, "plan changes nothing");
    assert_eq!(qa_records(&app, &ns).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_object_in_another_allowed_namespace_is_pruned_too() {
    let mut app = App::new("man-otherns", 0).await;
    let ns = app.qa.name().to_string();
    let other = app.production.name().to_string();
    write_config(&app, &ns, "    allow: [otherNamespaces]\n");
    app.repo.write(
        "kubernetes/qa/web.yaml",
        &web_manifests(&app.image, 1, "info"),
    );
    app.repo.write(
        "kubernetes/qa/shared.yaml",
        &config_map("shared", "hi").replace(
            "name: shared",
            &format!("name: shared\n  namespace: {other}"),
        ),
    );
    commit_and_push(&mut app, "with shared").await;
    let out = app.release(&["deploy", "qa", "-o", "json"]).await;
    assert!(out.success(), "{out}");
    assert_eq!(greeting(&app, &other, "shared").await, "hi");
    assert_eq!(
        parent_annotation(&app, &ns, "additional-namespaces").await,
        other,
        "the ApplySet parent names the other namespace"
    );

    std::fs::remove_file(app.repo.path().join("kubernetes/qa/shared.yaml")).unwrap();
    commit_and_push(&mut app, "without shared").await;
    let out = app.release(&["deploy", "qa", "-o", "json"]).await;
    assert!(out.success(), "{out}");
    let rep = report(&out);
    let entry = object(&rep, "ConfigMap", "shared");
    assert_eq!(entry["action"], "prune", "{out}");
    assert_eq!(entry["object"]["namespace"], other.as_str(), "{out}");
    let cms: Api<ConfigMap> = Api::namespaced(app.env.client("admin").await, &other);
    kubectl_release_tests::wait_for(
        &cms,
        "shared",
        kubectl_release_tests::DEFAULT_TIMEOUT,
        |o| o.is_none(),
    )
    .await
    .expect("shared is deleted from the other namespace");
    assert_eq!(
        parent_annotation(&app, &ns, "additional-namespaces").await,
        "",
        "no member is left there"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_atomic_release_puts_the_previous_objects_back() {
    let mut app = App::new("man-atomic", 0).await;
    let ns = app.qa.name().to_string();
    let first = deployed(
        &mut app,
        &[(
            "kubernetes/qa/config.yaml",
            config_map("web-config", "hello"),
        )],
    )
    .await;
    app.repo.write(
        "kubernetes/qa/web.yaml",
        &web_manifests(&app.image, 2, "debug"),
    );
    app.repo.write(
        "kubernetes/qa/config.yaml",
        &config_map("web-config", "bye"),
    );
    app.repo
        .write("kubernetes/qa/new.yaml", &config_map("new-config", "new"));
    let second = app.repo.commit("crashes");
    app.push_crashing(&second).await;

    let out = app
        .release(&["deploy", "qa", "--atomic", "-o", "json"])
        .await;
    assert_eq!(out.code(), Some(5), "{out}");
    assert_eq!(report(&out)["outcome"], "rolled-back", "{out}");
    assert_eq!(log_level(&app, &ns).await, "info");
    assert_eq!(greeting(&app, &ns, "web-config").await, "hello");
    let cms: Api<ConfigMap> = Api::namespaced(app.env.client("admin").await, &ns);
    kubectl_release_tests::wait_for(
        &cms,
        "new-config",
        kubectl_release_tests::DEFAULT_TIMEOUT,
        |o| o.is_none(),
    )
    .await
    .expect("what the failed release created is removed");
    let d = app.deployment(&ns, "web").await;
    assert_eq!(
        d.spec.template.spec.as_ref().unwrap().containers[0]
            .image
            .as_deref(),
        Some(app.pinned(&first).as_str())
    );
    assert_eq!(d.spec.replicas, Some(2));

    // The next release starts from the restored state: the first commit again is unchanged.
    let out = app.release(&["deploy", "qa", &first, "-o", "json"]).await;
    assert_eq!(out.code(), Some(0), "{out}");
    assert_eq!(report(&out)["outcome"], "unchanged", "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_scoped_object_needs_allowing_and_is_pruned_like_the_rest() {
    let mut app = App::new("man-cluster", 0).await;
    let ns = app.qa.name().to_string();
    let role_name = format!("{ns}-reader");
    let role = format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: {role_name}\nrules:\n  - apiGroups: [\"\"]\n    resources: [configmaps]\n    verbs: [get]\n"
    );
    write_config(&app, &ns, "");
    app.repo.write(
        "kubernetes/qa/web.yaml",
        &web_manifests(&app.image, 1, "info"),
    );
    app.repo.write("kubernetes/qa/role.yaml", &role);
    commit_and_push(&mut app, "a cluster role").await;
    let out = app.release(&["deploy", "qa"]).await;
    assert_eq!(out.code(), Some(2), "{out}");
    assert!(
        out.stderr
            .contains("kubernetes/qa/role.yaml:1 (document 1)")
            && out.stderr.contains("clusterScoped"),
        "{out}"
    );

    write_config(&app, &ns, "    allow: [clusterScoped]\n");
    commit_and_push(&mut app, "allowed").await;
    let out = app.release(&["deploy", "qa", "-o", "json"]).await;
    assert!(out.success(), "{out}");
    let roles: Api<k8s_openapi::api::rbac::v1::ClusterRole> =
        Api::all(app.env.client("admin").await);
    let live = roles.get(&role_name).await.unwrap();
    assert_eq!(
        live.metadata.labels.unwrap()["kubectl-release.io/app"],
        "web"
    );

    std::fs::remove_file(app.repo.path().join("kubernetes/qa/role.yaml")).unwrap();
    commit_and_push(&mut app, "no role").await;
    let out = app.release(&["deploy", "qa", "-o", "json"]).await;
    assert!(out.success(), "{out}");
    let rep = report(&out);
    let entry = object(&rep, "ClusterRole", &role_name);
    assert_eq!(entry["action"], "prune", "{out}");
    assert!(entry["object"].get("namespace").is_none(), "{out}");
    kubectl_release_tests::wait_for(
        &roles,
        &role_name,
        kubectl_release_tests::DEFAULT_TIMEOUT,
        |o| o.is_none(),
    )
    .await
    .expect("the ClusterRole is pruned");
}

#[tokio::test(flavor = "multi_thread")]
async fn status_reports_config_drift_beside_image_drift() {
    let mut app = App::new("man-drift", 0).await;
    let namespace = app.qa.name().to_string();
    write_config(&app, &namespace, "");
    app.repo.write(
        "kubernetes/qa/web.yaml",
        &web_manifests(&app.image, 2, "info"),
    );
    app.repo.write(
        "kubernetes/production/web.yaml",
        &web_manifests(&app.image, 2, "info"),
    );
    commit_and_push(&mut app, "manifests").await;
    let out = app.release(&["deploy", "qa"]).await;
    assert!(out.success(), "{out}");

    let status = app.release(&["status", "qa", "-o", "json"]).await;
    assert!(status.success(), "{status}");
    let before: Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(before[0]["drift"], false, "{status}");
    assert_eq!(before[0]["configDrift"], serde_json::json!([]), "{status}");

    // Someone scales by hand: the config no longer is what the release applied.
    let client = app.env.client("admin").await;
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(client, &namespace);
    deployments
        .patch(
            "web",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(serde_json::json!({"spec": {"replicas": 4}})),
        )
        .await
        .unwrap();
    let status = app.release(&["status", "qa", "-o", "json"]).await;
    assert!(status.success(), "{status}");
    let after: Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(after[0]["drift"], true, "{status}");
    let drift = after[0]["configDrift"].to_string();
    assert!(
        drift.contains("Deployment/web") && drift.contains("spec.replicas"),
        "{status}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_first_release_the_server_refuses_leaves_no_namespace_behind() {
    let mut app = App::new("man-refused", 0).await;
    let namespace = format!("{}-new", app.qa.name());
    write_config(&app, &namespace, "    createNamespace: true\n");
    // Port 99999 is no port: the server's dry run refuses the Service.
    let broken = web_manifests(&app.image, 1, "info").replace("port: 80", "port: 99999");
    app.repo.write("kubernetes/qa/web.yaml", &broken);
    commit_and_push(&mut app, "broken service").await;

    let out = app.release(&["deploy", "qa", "-o", "json"]).await;
    assert_eq!(out.code(), Some(2), "{out}");
    assert!(
        out.stdout.contains("Service/web") && out.stdout.contains("kubernetes/qa/web.yaml"),
        "{out}"
    );
    let client = app.env.client("admin").await;
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client);
    kubectl_release_tests::wait_for(
        &namespaces,
        &namespace,
        std::time::Duration::from_secs(60),
        |ns| ns.is_none_or(|ns| ns.metadata.deletion_timestamp.is_some()),
    )
    .await
    .expect("the namespace the refused release created is deleted again");
}

/// A hook that reads its whole request and denies when `value` is in it; when the masked key
/// (`"password":"***"`) is, it allows with a warning saying so; otherwise it allows.
fn looks_for(value: &str, masked_key: &str) -> String {
    let escaped = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
    let found_value = r#"{"allowed":false,"message":"the request holds the Secret's value"}"#;
    let found_key = r#"{"allowed":true,"warnings":["saw the key `password`, masked"]}"#;
    let neither = r#"{"allowed":true}"#;
    let segments = [
        (64, value),
        (128, masked_key),
        (256, found_value),
        (512, found_key),
        (768, neither),
    ];
    let data: String = segments
        .iter()
        .map(|(at, text)| format!("  (data (i32.const {at}) \"{}\")\n", escaped(text)))
        .collect();
    format!(
        r#"(module
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 8)
{data}  (global $len (mut i32) (i32.const 0))
  ;; Whether the `n` bytes at `needle` occur in the request (read into memory at 4096).
  (func $find (param $needle i32) (param $n i32) (result i32)
    (local $i i32) (local $j i32)
    (block $absent
      (loop $next
        (br_if $absent (i32.gt_u (i32.add (local.get $i) (local.get $n)) (global.get $len)))
        (local.set $j (i32.const 0))
        (block $differs
          (loop $compare
            (if (i32.eq (local.get $j) (local.get $n)) (then (return (i32.const 1))))
            (br_if $differs (i32.ne
              (i32.load8_u (i32.add (i32.const 4096) (i32.add (local.get $i) (local.get $j))))
              (i32.load8_u (i32.add (local.get $needle) (local.get $j)))))
            (local.set $j (i32.add (local.get $j) (i32.const 1)))
            (br $compare)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (i32.const 0))
  (func $answer (param $at i32) (param $n i32)
    (i32.store (i32.const 0) (local.get $at))
    (i32.store (i32.const 4) (local.get $n))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))))
  (func (export "_start")
    (block $eof (loop $more
      (i32.store (i32.const 16) (i32.add (i32.const 4096) (global.get $len)))
      (i32.store (i32.const 20) (i32.sub (i32.const 500000) (global.get $len)))
      (br_if $eof (call $fd_read (i32.const 0) (i32.const 16) (i32.const 1) (i32.const 24)))
      (br_if $eof (i32.eqz (i32.load (i32.const 24))))
      (global.set $len (i32.add (global.get $len) (i32.load (i32.const 24))))
      (br $more)))
    (if (call $find (i32.const 64) (i32.const {value_len}))
      (then (call $answer (i32.const 256) (i32.const {found_value_len})) (return)))
    (if (call $find (i32.const 128) (i32.const {key_len}))
      (then (call $answer (i32.const 512) (i32.const {found_key_len})) (return)))
    (call $answer (i32.const 768) (i32.const {neither_len}))))
"#,
        value_len = value.len(),
        key_len = masked_key.len(),
        found_value_len = found_value.len(),
        found_key_len = found_key.len(),
        neither_len = neither.len(),
    )
}

/// Hooks see a Secret's keys, never its values: what a hook says is stored in release records
/// and printed in CI logs, so a hook that looks for the password in its request finds only
/// `***`, while the Secret applied holds the real value.
#[tokio::test(flavor = "multi_thread")]
async fn hooks_see_a_secrets_keys_but_never_its_values() {
    use k8s_openapi::api::core::v1::Secret;
    use sha2::Digest as _;

    let mut app = App::new("man-hook-secret", 0).await;
    let ns = app.qa.name().to_string();
    write_config(&app, &ns, "");
    let wasm = wat::parse_str(looks_for("hunter2", r#""password":"***""#)).expect("valid WAT");
    let dir = tempfile::tempdir().expect("a temp dir");
    let module = dir.path().join("looks-for-the-password.wasm");
    std::fs::write(&module, &wasm).expect("write the module");
    let hooks = format!(
        "hooks:\n  - name: looks-for-the-password\n    module: {}\n    sha256: {}\n",
        module.display(),
        hex::encode(sha2::Sha256::digest(&wasm))
    );
    let config = app.repo.path().join("release.yaml");
    let text = std::fs::read_to_string(&config).expect("read release.yaml");
    std::fs::write(&config, text + &hooks).expect("write release.yaml");
    app.repo.write(
        "kubernetes/qa/web.yaml",
        &web_manifests(&app.image, 2, "info"),
    );
    app.repo.write(
        "kubernetes/qa/secret.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: web-db\nstringData:\n  password: hunter2\n",
    );
    commit_and_push(&mut app, "a secret").await;

    let out = app.release(&["deploy", "qa", "-o", "json"]).await;
    assert!(out.success(), "the hook found the value: {out}");
    assert_eq!(report(&out)["outcome"], "succeeded", "{out}");
    assert!(
        out.stdout.contains("saw the key `password`, masked"),
        "the hook saw the Secret, masked: {out}"
    );
    assert!(
        !out.stdout.contains("hunter2") && !out.stderr.contains("hunter2"),
        "{out}"
    );
    let secrets: Api<Secret> = Api::namespaced(app.env.client("admin").await, &ns);
    let live = secrets.get("web-db").await.expect("the Secret applied");
    assert_eq!(live.data.unwrap()["password"].0, b"hunter2");
}
