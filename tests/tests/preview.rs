//! Preview environments: one namespace per pull request, made from qa's manifests and released
//! by the same engine — against the real control plane, registry and git repositories.

use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::{Patch, PatchParams};
use kubectl_release_tests::{App, CmdOutput};
use serde_json::{Value, json};

const EXPIRES_AT: &str = "kubectl-release.io/expires-at";

/// A Deployment `web` of one replica and its Service, in `kubernetes/qa/`.
fn web_manifests(image: &str) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      containers:
        - name: web
          image: {image}:latest
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

/// An app of its own name (previews are found by the app's label, cluster-wide), whose qa has
/// manifests, with `previews:` from qa; one commit pushed. Returns the app and the commit.
async fn app_with_previews(prefix: &str, previews: &str) -> (App, String) {
    let mut app = App::new(prefix, 0).await;
    app.name = app.qa.name().chars().take(40).collect::<String>();
    let config = format!(
        "apiVersion: kubectl-release.io/v1alpha1\nkind: ReleaseConfig\napp: {name}\nimage: {image}\n\
         environments:\n  - name: qa\n    context: qa\n    namespace: {qa}\n    manifests: kubernetes/qa\n\
         previews:\n  from: qa\n{previews}",
        name = app.name,
        image = app.image,
        qa = app.qa.name(),
    );
    app.repo.write("release.yaml", &config);
    app.repo
        .write("kubernetes/qa/web.yaml", &web_manifests(&app.image));
    let commit = app.repo.commit("manifests and previews");
    app.push(&commit).await;
    (app, commit)
}

fn preview_ns(app: &App, pr: u64) -> String {
    format!("{}-pr-{pr}", app.name)
}

fn json_of(out: &CmdOutput) -> Value {
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

async fn namespace(app: &App, name: &str) -> Option<Namespace> {
    let api: Api<Namespace> = Api::all(app.env.client("admin").await);
    api.get_opt(name).await.expect("read namespace")
}

fn web_image(d: &k8s_openapi::api::apps::v1::Deployment) -> Option<String> {
    d.spec.template.spec.as_ref()?.containers[0].image.clone()
}

fn expiry(ns: &Namespace) -> jiff::Timestamp {
    ns.metadata.annotations.as_ref().expect("annotations")[EXPIRES_AT]
        .parse()
        .expect("an RFC 3339 expiry")
}

async fn up(app: &App, pr: &str) -> CmdOutput {
    app.release(&["preview", "up", "--pr", pr, "-o", "json"])
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn up_creates_updates_in_place_and_down_removes_everything() {
    let (mut app, first) = app_with_previews("pv-up", "  ttl: 2h\n").await;
    let ns42 = preview_ns(&app, 42);

    let out = up(&app, "42").await;
    assert!(out.success(), "{out}");
    let report = json_of(&out);
    assert_eq!(report["outcome"], "succeeded", "{out}");
    assert_eq!(report["environment"], "preview", "{out}");
    assert_eq!(report["preview"]["namespace"], ns42.as_str(), "{out}");
    let services = report["preview"]["services"].as_array().unwrap();
    assert!(
        services
            .iter()
            .any(|s| s.as_str().unwrap().starts_with("web ")
                && s.as_str().unwrap().ends_with(":80/TCP")),
        "{out}"
    );
    let created = namespace(&app, &ns42)
        .await
        .expect("the preview's namespace");
    let labels = created.metadata.labels.clone().unwrap();
    assert_eq!(labels["kubectl-release.io/preview"], "true");
    assert_eq!(labels["kubectl-release.io/pr"], "42");
    assert_eq!(labels["kubectl-release.io/app"], app.name);
    let annotations = created.metadata.annotations.clone().unwrap();
    assert_eq!(annotations["kubectl-release.io/commit"], first);
    assert_eq!(annotations["kubectl-release.io/creator"], "admin");
    let d = app.deployment(&ns42, "web").await;
    assert_eq!(web_image(&d), Some(app.pinned(&first)));
    assert_eq!(
        d.status.unwrap().ready_replicas,
        Some(1),
        "waited for the rollout"
    );

    // A newer commit of the pull request: the same namespace, the new digest, a later expiry.
    let second = app.repo.commit("a fix");
    app.push(&second).await;
    let out = up(&app, "42").await;
    assert!(out.success(), "{out}");
    let updated = namespace(&app, &ns42).await.expect("still there");
    assert_eq!(
        updated.metadata.uid, created.metadata.uid,
        "updated in place"
    );
    assert_eq!(
        updated.metadata.annotations.as_ref().unwrap()["kubectl-release.io/commit"],
        second
    );
    assert!(expiry(&updated) > expiry(&created), "expiry extended");
    let d = app.deployment(&ns42, "web").await;
    assert_eq!(web_image(&d), Some(app.pinned(&second)));

    two_previews_live_at_once(&app, &first, &second).await;

    // Down removes the namespace and everything in it, and waits until it is gone.
    let out = app.release(&["preview", "down", "--pr", "42"]).await;
    assert!(out.success(), "{out}");
    assert!(
        namespace(&app, &ns42).await.is_none(),
        "gone when down returns"
    );
    let again = app.release(&["preview", "down", "--pr", "42"]).await;
    assert!(again.success(), "a second down succeeds: {again}");
    assert!(again.stdout.contains("nothing to delete"), "{again}");
    assert!(
        namespace(&app, &preview_ns(&app, 7)).await.is_some(),
        "the other preview stays"
    );
    app.release(&["preview", "down", "--pr", "7"])
        .await
        .assert_success();
}

/// Sets a preview's expiry to an hour ago, as time would.
async fn expire(app: &App, namespace: &str) {
    let api: Api<Namespace> = Api::all(app.env.client("admin").await);
    let past = (jiff::Timestamp::now() - jiff::SignedDuration::from_hours(1)).to_string();
    let patch = json!({"metadata": {"annotations": {EXPIRES_AT: past}}});
    api.patch(namespace, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch the expiry");
}

#[tokio::test(flavor = "multi_thread")]
async fn gc_deletes_the_expired_and_those_not_kept_and_the_limit_refuses() {
    let (app, _) = app_with_previews("pv-gc", "  max: 3\n").await;
    for pr in ["1", "2", "3"] {
        let out = up(&app, pr).await;
        assert!(out.success(), "{out}");
    }
    expire(&app, &preview_ns(&app, 1)).await;

    let out = app.release(&["preview", "gc", "-o", "json"]).await;
    assert!(out.success(), "{out}");
    let deleted = json_of(&out);
    assert_eq!(deleted.as_array().unwrap().len(), 1, "{out}");
    assert_eq!(deleted[0]["pr"], 1, "{out}");
    assert_eq!(deleted[0]["reason"], "expired", "{out}");
    assert!(namespace(&app, &preview_ns(&app, 1)).await.is_none());
    assert!(namespace(&app, &preview_ns(&app, 2)).await.is_some());

    let out = app.release(&["preview", "gc", "--keep", "2,5"]).await;
    assert!(out.success(), "{out}");
    assert!(out.stdout.contains("#3"), "{out}");
    assert!(
        namespace(&app, &preview_ns(&app, 3)).await.is_none(),
        "closed: deleted"
    );
    assert!(
        namespace(&app, &preview_ns(&app, 2)).await.is_some(),
        "kept"
    );

    // Over the limit: refused with the oldest named, nothing created.
    let config = std::fs::read_to_string(app.repo.path().join("release.yaml")).unwrap();
    app.repo
        .write("release.yaml", &config.replace("max: 3", "max: 1"));
    let out = app.release(&["preview", "up", "--pr", "9"]).await;
    assert_eq!(out.code(), Some(2), "{out}");
    assert!(
        out.stderr.contains("#2") || out.stdout.contains("#2"),
        "names the oldest: {out}"
    );
    assert!(namespace(&app, &preview_ns(&app, 9)).await.is_none());
    // Updating the live one is no new preview.
    let out = up(&app, "2").await;
    assert!(out.success(), "{out}");
    app.release(&["preview", "down", "--pr", "2"])
        .await
        .assert_success();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_pull_request_number_is_a_usage_error_and_creates_nothing() {
    let (app, _) = app_with_previews("pv-bad", "").await;
    let out = app.release(&["preview", "up", "--pr", "abc"]).await;
    assert_eq!(out.code(), Some(2), "{out}");
    assert!(
        format!("{}{}", out.stdout, out.stderr).contains("positive integer"),
        "{out}"
    );
    let api: Api<Namespace> = Api::all(app.env.client("admin").await);
    let selector = format!("kubectl-release.io/app={}", app.name);
    let found = api
        .list(&kube::api::ListParams::default().labels(&selector))
        .await
        .unwrap();
    assert!(found.items.is_empty(), "nothing created");
    let out = app.release(&["preview", "down", "--pr", "0"]).await;
    assert_eq!(out.code(), Some(2), "{out}");
}

/// Previews of #7 (at `first`) and #42 (at `second`) live side by side; `list` shows both.
async fn two_previews_live_at_once(app: &App, first: &str, second: &str) {
    let ns42 = preview_ns(app, 42);
    // A second preview lives beside it; each keeps its own commit.
    let out = app
        .release(&[
            "preview", "up", "--pr", "7", "--commit", first, "-o", "json",
        ])
        .await;
    assert!(out.success(), "{out}");
    let d7 = app.deployment(&preview_ns(app, 7), "web").await;
    assert_eq!(web_image(&d7), Some(app.pinned(first)));
    let d42 = app.deployment(&ns42, "web").await;
    assert_eq!(web_image(&d42), Some(app.pinned(second)));
    let out = app.release(&["preview", "list", "-o", "json"]).await;
    assert!(out.success(), "{out}");
    let listed = json_of(&out);
    let prs: Vec<u64> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["pr"].as_u64().unwrap())
        .collect();
    assert_eq!(prs, [42, 7], "sorted by namespace: {out}");
    assert_eq!(listed[0]["ready"]["ready"], 1, "{out}");
    let table = app.release(&["preview", "list"]).await.assert_success();
    assert!(
        table.stdout.contains("#42") && table.stdout.contains("1/1"),
        "{table}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_long_namespace_pattern_yields_a_valid_63_character_name() {
    let pattern = format!("  namespace: \"{{app}}-{}-{{pr}}\"\n", "feature".repeat(7));
    let (app, _) = app_with_previews("pv-long", &pattern).await;
    let out = up(&app, "5").await;
    assert!(out.success(), "{out}");
    let name = json_of(&out)["preview"]["namespace"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(name.len(), 63, "{name}");
    assert!(name.starts_with(&app.name), "{name}");
    assert!(namespace(&app, &name).await.is_some(), "{name}");
    app.release(&["preview", "down", "--pr", "5"])
        .await
        .assert_success();
    assert!(namespace(&app, &name).await.is_none(), "{name}");
}
