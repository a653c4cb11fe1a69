//! Hooks inside real releases: the example modules in the wasmtime sandbox, deciding deploys
//! against the real control plane.

use kubectl_release_tests::{App, hook_entry};
use serde_json::Value;

/// An app on its first commit in qa (workloads labelled `team` only), HEAD's image pushed.
async fn app(prefix: &str, hooks: &str) -> App {
    let mut app = App::new(prefix, 2).await;
    for commit in app.commits() {
        app.push(&commit).await;
    }
    app.create_workloads(
        app.qa.name(),
        &format!("{}:{}", app.image, app.commits()[0]),
    )
    .await;
    app.write_config(&format!("hooks:\n{hooks}"));
    app
}

async fn spec_state(app: &App) -> (Option<i64>, Option<String>) {
    let d = app.deployment(app.qa.name(), "web").await;
    (
        d.metadata.generation,
        d.spec.template.spec.unwrap().containers[0].image.clone(),
    )
}

#[tokio::test]
async fn a_deploy_denied_by_required_labels_exits_3_and_changes_nothing() {
    let app = app(
        "labels",
        &hook_entry(
            "labels",
            "required-labels",
            "settings: {labels: {owner: \".+\"}}",
        ),
    )
    .await;
    let before = spec_state(&app).await;

    let out = app.release(&["deploy", "qa", "-o", "json"]).await;
    assert_eq!(out.code(), Some(3), "{out:?}");
    // Every violation is listed: the missing owner label on each workload and its template,
    // and the unpinned sidecar.
    assert!(out.stderr.contains("labels (app)"), "{}", out.stderr);
    assert!(
        out.stderr.contains("missing label `owner`"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("envoy:1.30"), "{}", out.stderr);
    let report: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(report["outcome"], "denied");
    assert_eq!(report["hooks"][0]["outcome"]["verdict"], "denied");
    assert_eq!(spec_state(&app).await, before);
}

#[tokio::test]
async fn failure_policy_ignore_lets_a_broken_hook_warn_and_the_deploy_go_on() {
    // A 4-byte stdout cap: the hook cannot answer anything, so every call is a hook error.
    let broken = "failurePolicy: Ignore\nmaxOutput: \"4\"";
    let app = app("ignore", &hook_entry("broken", "required-labels", broken)).await;
    let out = app
        .release(&["deploy", "qa", "-o", "json"])
        .await
        .assert_success();
    let report: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(report["outcome"], "succeeded");
    let verdict = &report["hooks"][0]["outcome"];
    assert_eq!(verdict["verdict"], "error", "{report}");
    assert_eq!(verdict["ignored"], true, "{report}");

    // The same hook under failurePolicy: Fail stops the release before anything changes.
    app.write_config(&format!(
        "hooks:\n{}",
        hook_entry("broken", "required-labels", "maxOutput: \"4\"")
    ));
    let before = spec_state(&app).await;
    let out = app.release(&["deploy", "qa", &app.commits()[0]]).await;
    assert_eq!(out.code(), Some(2), "{out:?}");
    assert!(out.stderr.contains("hook `broken`"), "{}", out.stderr);
    assert_eq!(spec_state(&app).await, before);
}

#[tokio::test]
async fn invalid_settings_and_a_wrong_pin_are_config_errors() {
    let app = app(
        "settings",
        &hook_entry(
            "labels",
            "required-labels",
            "settings: {labels: {team: \"([\"}}",
        ),
    )
    .await;
    let out = app.release(&["deploy", "qa"]).await;
    assert_eq!(out.code(), Some(2), "{out:?}");
    assert!(
        out.stderr.contains("hook `labels`") && out.stderr.contains("settings are invalid"),
        "{}",
        out.stderr
    );
    // Each line names the hook once, not once per layer the error passed through.
    let names_hook_once = |stderr: &str| {
        stderr.lines().all(|line| {
            line.matches("hook `labels`").count() == 1 || !line.contains("hook `labels`")
        })
    };
    assert!(names_hook_once(&out.stderr), "{}", out.stderr);
    let out = app.release(&["hooks", "verify"]).await;
    assert_eq!(out.code(), Some(2), "{out:?}");

    // A pin that is well formed but not the module's.
    let (_, sha) = kubectl_release_tests::example_hook("required-labels");
    let other = format!(
        "{}{}",
        if sha.starts_with('0') { '1' } else { '0' },
        &sha[1..]
    );
    let entry = hook_entry("labels", "required-labels", "").replace(&sha, &other);
    app.write_config(&format!("hooks:\n{entry}"));
    let out = app.release(&["deploy", "qa"]).await;
    assert_eq!(out.code(), Some(2), "{out:?}");
    assert!(
        out.stderr.contains(&sha) && out.stderr.contains(&other),
        "names both hashes: {}",
        out.stderr
    );
    assert!(
        out.stderr.contains("hook `labels`") && names_hook_once(&out.stderr),
        "{}",
        out.stderr
    );
}
