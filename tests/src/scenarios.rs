//! Situations several test binaries start from or look at: an app whose rollout is slow enough
//! to act in the middle of it, the wait for that middle, a release run in the background, and
//! the history as the plugin tells it.

use k8s_openapi::api::apps::v1::{Deployment, DeploymentStrategy, RollingUpdateDeployment};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Api;
use serde_json::Value;

use crate::{
    App, DEFAULT_TIMEOUT, Spawned, apply, deployment, has_applied, wait_for, wait_for_pods_on,
    wait_for_records,
};

/// An app with two commits, both images pushed, and a 12-replica Deployment `web` in qa running
/// commit 0 by tag. At most two new pods at a time and no old one down before a new one is
/// ready: a rollout of several seconds, long enough to act in the middle of it.
pub async fn app_with_a_slow_rollout(prefix: &str) -> App {
    let mut app = App::new(prefix, 2).await;
    for commit in app.commits() {
        app.push(&commit).await;
    }
    let first = app.commits()[0].clone();
    let mut web = deployment("web")
        .image(format!("{}:{first}", app.image))
        .replicas(12)
        .build();
    web.spec.strategy = Some(DeploymentStrategy {
        type_: Some("RollingUpdate".into()),
        rolling_update: Some(RollingUpdateDeployment {
            max_surge: Some(IntOrString::Int(2)),
            max_unavailable: Some(IntOrString::Int(0)),
        }),
    });
    apply(&app.env.client("admin").await, app.qa.name(), &web)
        .await
        .expect("create the 12-replica deployment");
    wait_for_pods_on(&app, app.qa.name(), "web", 12, &app.digests[&first]).await;
    app
}

/// The image of the first container of a Deployment's pod template.
pub fn template_image(d: &Deployment) -> Option<String> {
    d.spec
        .template
        .spec
        .as_ref()?
        .containers
        .first()?
        .image
        .clone()
}

/// Starts `kubectl-release ARGS` in the app's repository, in the background.
pub fn spawn_release(app: &App, args: &[&str]) -> Spawned {
    let mut command = app.env.plugin();
    command.args(args).current_dir(app.repo.path());
    Spawned::spawn(&mut command)
}

/// Waits until a running deploy of `commit` into qa is mid-rollout: the Deployment `web`'s pod
/// template is on the commit's digest and the release's record says `in-progress`, having
/// applied it. Returns that record.
pub async fn mid_rollout(app: &App, commit: &str) -> Value {
    let admin = app.env.client("admin").await;
    let namespace = app.qa.name();
    let pinned = app.pinned(commit);
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), namespace);
    wait_for(&deployments, "web", DEFAULT_TIMEOUT, |d| {
        d.and_then(template_image).as_deref() == Some(pinned.as_str())
    })
    .await
    .unwrap_or_else(|e| panic!("the deploy never patched web to {pinned}: {e:#}"));
    let running = |r: &Value| r["outcome"] == "in-progress" && has_applied(r, "Deployment", "web");
    let found = wait_for_records(
        &admin,
        namespace,
        &app.name,
        "qa",
        DEFAULT_TIMEOUT,
        |recs| recs.iter().any(running),
    )
    .await
    .unwrap_or_else(|e| panic!("no in-progress record that applied Deployment/web: {e:#}"));
    found
        .into_iter()
        .find(running)
        .expect("the condition found one")
}

/// `history ENV -o json`: the environment's releases as the plugin tells them (an in-progress
/// record whose lock is gone shows as `interrupted`), newest first.
pub async fn history(app: &App, env: &str) -> Vec<Value> {
    let out = app
        .release(&["history", env, "-o", "json"])
        .await
        .assert_success();
    match serde_json::from_str(&out.stdout) {
        Ok(Value::Array(releases)) => releases,
        _ => panic!("history -o json is not a JSON list: {out}"),
    }
}

/// The entries of a history (or list of records) with `revision`.
pub fn entries(history: &[Value], revision: &Value) -> Vec<Value> {
    history
        .iter()
        .filter(|r| r["revision"] == *revision)
        .cloned()
        .collect()
}

/// Records or history entries as JSON, for assertion messages.
pub fn pretty(values: &[Value]) -> String {
    serde_json::to_string_pretty(values).unwrap_or_default()
}
