//! The registry goes away: before a deploy, the deploy fails naming it and changes nothing;
//! while `--wait-for-image` waits for CI, the wait goes on through the outage.
//!
//! These tests stop the registry of the environment this binary shares between its tests
//! (`TestEnv::shared`), which every other test of the binary needs to resolve and pull images:
//! they run one at a time behind [`ONE_OUTAGE_AT_A_TIME`], and no test that does not stop it
//! belongs in this binary.

use std::time::Duration;

use kubectl_release_tests::{
    App, Component, assert_report, records, spawn_release, wait_for_pods_on,
};
use tokio::sync::Mutex;

const APP: &str = "web";
const QA: &str = "qa";
/// Held by each test for its whole run: another test's registry outage would fail it.
static ONE_OUTAGE_AT_A_TIME: Mutex<()> = Mutex::const_new(());
/// Long enough for the plugin's registry polls (2 s, backing off to 10 s) to come round.
const POLL_TIMEOUT: Duration = Duration::from_secs(60);

/// An app with `commits` commits whose qa runs `App::create_workloads` on commit 0 by tag,
/// only commit 0's image pushed.
async fn app_on_its_first_commit(prefix: &str, commits: usize) -> App {
    let mut app = App::new(prefix, commits).await;
    let first = app.commits()[0].clone();
    let digest = app.push(&first).await;
    app.create_workloads(app.qa.name(), &format!("{}:{first}", app.image))
        .await;
    wait_for_pods_on(&app, app.qa.name(), "web", 3, &digest).await;
    app
}

/// What a release would change: generation and images of the Deployment's and StatefulSet's
/// specs. (resourceVersion is no measure: it moves with every status update of the pods.)
async fn spec_states(app: &App) -> Vec<(Option<i64>, Vec<Option<String>>)> {
    let qa = app.qa.name();
    let d = app.deployment(qa, "web").await;
    let s = app.statefulset(qa, "cache").await;
    let images = |spec: Option<k8s_openapi::api::core::v1::PodSpec>| {
        spec.map(|p| p.containers.into_iter().map(|c| c.image).collect())
            .unwrap_or_default()
    };
    vec![
        (d.metadata.generation, images(d.spec.template.spec)),
        (s.metadata.generation, images(s.spec.template.spec)),
    ]
}

#[tokio::test]
async fn a_registry_that_is_down_fails_the_deploy_naming_it_and_changes_nothing() {
    let _alone = ONE_OUTAGE_AT_A_TIME.lock().await;
    let mut app = app_on_its_first_commit("regdown", 2).await;
    let head = app.repo.head();
    app.push(&head).await;
    let before = spec_states(&app).await;

    let outage = app.env.stop(Component::Registry).await;
    let out = app.release(&["deploy", QA, "-o", "json"]).await;
    outage.end().await;

    let report = assert_report(&out, 1, "error");
    let message = report["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(app.env.registry()),
        "the message names the registry's endpoint {}: {out}",
        app.env.registry()
    );
    assert_eq!(spec_states(&app).await, before, "nothing changed: {out}");
    let admin = app.env.client("admin").await;
    let recs = records(&admin, app.qa.name(), APP, QA).await;
    assert!(recs.is_empty(), "no record: {recs:?}");
}

#[tokio::test]
async fn wait_for_image_keeps_waiting_through_a_registry_outage() {
    let _alone = ONE_OUTAGE_AT_A_TIME.lock().await;
    let mut app = app_on_its_first_commit("regwait", 2).await;
    let head = app.repo.head();
    let registry = app.env.registry().to_string();

    // -v: it says on stderr each time it has looked and found no image yet.
    let deploy = spawn_release(
        &app,
        &[
            "deploy",
            QA,
            &head,
            "--wait-for-image",
            "2m",
            "-v",
            "-o",
            "json",
        ],
    );
    let stderr = deploy
        .wait_for_stderr("that the image is not pushed yet", POLL_TIMEOUT, |e| {
            e.contains("not pushed yet")
        })
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let mentions = stderr.matches(&registry).count();

    // Down until the plugin has looked again and said something about the registry (by its
    // endpoint), so that the outage cannot fall between two of its looks.
    let outage = app.env.stop(Component::Registry).await;
    let looked = deploy
        .wait_for_stderr(
            &format!("that it cannot reach {registry}"),
            POLL_TIMEOUT,
            |e| e.matches(&registry).count() > mentions,
        )
        .await;
    outage.end().await;
    let looked = looked.unwrap_or_else(|e| panic!("{e:#}"));
    let digest = app.push(&head).await;

    let out = deploy.finish(Duration::from_secs(180)).await;
    assert!(
        out.success(),
        "--wait-for-image 2m gave up when the registry could not be reached for a moment \
         instead of waiting on; that is a bug of the plugin. Stderr when the registry was \
         down:\n{looked}\n{out}"
    );
    let report = assert_report(&out, 0, "succeeded");
    assert_eq!(report["commit"], head.as_str(), "{out}");
    wait_for_pods_on(&app, app.qa.name(), "web", 3, &digest).await;
}
