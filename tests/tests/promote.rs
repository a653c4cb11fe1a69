//! `promote`, `approve` and `approvals` end to end: qa → production with the example hooks
//! `same-image-across-envs` and `approval-rules`, approvals guarded by RBAC.

use kubectl_release_tests::{App, DEFAULT_TIMEOUT, hook_entry, setup_approvals_rbac};
use serde_json::Value;

/// An app running its HEAD commit in qa (deployed by admin) and commit 0 in production, with
/// production guarded by same-image and two approvals from people other than the deployer.
async fn app_ready_to_promote(prefix: &str) -> App {
    let mut app = App::new(prefix, 2).await;
    setup_approvals_rbac(app.env).await;
    for commit in app.commits() {
        app.push(&commit).await;
    }
    let first = format!("{}:{}", app.image, app.commits()[0]);
    app.create_workloads(app.qa.name(), &first).await;
    app.create_workloads(app.production.name(), &first).await;
    let hooks = format!(
        "hooks:\n{}{}",
        hook_entry(
            "same-image",
            "same-image-across-envs",
            "environments: [production]"
        ),
        hook_entry(
            "two-approvals",
            "approval-rules",
            "environments: [production]\nphases: [pre-promote]\nsettings: {required: 2, excludeDeployer: true}"
        ),
    );
    app.write_config(&hooks);
    app.release(&["deploy", "qa"]).await.assert_success();
    app
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[tokio::test]
async fn promotion_waits_for_two_approvals_from_others_then_ships_qa_digests() {
    let app = app_ready_to_promote("approve").await;
    let head = app.repo.head();
    let qa_image = app.pinned(&head);

    // No approvals: waiting (exit 4), nothing changed, one JSON document for CI.
    let out = app
        .release(&["promote", "qa", "production", "--wait", "-o", "json"])
        .await;
    assert_eq!(out.code(), Some(4), "{out:?}");
    assert!(
        out.stderr.contains("waiting for approval"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("needs 2 approvals"), "{}", out.stderr);
    assert_eq!(json(&out.stdout)["outcome"], "waiting-for-approval");

    // The developer may not approve: RBAC says no.
    let out = app
        .release_as("developer", &["approve", "production"])
        .await;
    assert_eq!(out.code(), Some(2), "{out:?}");
    assert!(
        out.stderr
            .contains("developer may not approve releases into production"),
        "{}",
        out.stderr
    );

    // One approver: still waiting, "1 of 2".
    let first = app
        .release_as("approver", &["approve", "production"])
        .await
        .assert_success();
    assert!(!first.stderr.contains("exclude the deployer"), "{first}");
    let out = app.release(&["promote", "qa"]).await;
    assert_eq!(out.code(), Some(4), "{out:?}");
    assert!(out.stderr.contains("has 1 (approver)"), "{}", out.stderr);

    // The deployer's own approval does not count, and approving says so.
    let own = app
        .release_as("admin", &["approve", "production"])
        .await
        .assert_success();
    assert!(
        own.stderr
            .contains("admin released what runs in qa: if admin also runs the promotion"),
        "{own}"
    );
    assert_eq!(app.release(&["promote", "qa"]).await.code(), Some(4));

    // A second approver: the promotion goes, with exactly qa's digests.
    app.release_as("approver2", &["approve", "production"])
        .await
        .assert_success();
    let listed = json(
        &app.release(&["approvals", "production", "-o", "json"])
            .await
            .assert_success()
            .stdout,
    );
    assert_eq!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["standing"] == "valid")
            .count(),
        3
    );

    let out = app
        .release(&["promote", "qa", "production", "--wait", "-o", "json"])
        .await
        .assert_success();
    let report = json(&out.stdout);
    assert_eq!(report["outcome"], "succeeded");
    assert_eq!(report["kind"], "promote");
    assert_eq!(report["commit"], head.as_str());
    let users: Vec<&str> = report["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["user"].as_str().unwrap())
        .collect();
    assert!(
        users.contains(&"approver") && users.contains(&"approver2"),
        "{users:?}"
    );
    assert!(
        report["hooks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["outcome"]["verdict"] == "allowed"),
        "{}",
        report["hooks"]
    );
    let deployment = app.deployment(app.production.name(), "web").await;
    assert_eq!(
        deployment.spec.template.spec.unwrap().containers[0]
            .image
            .as_deref(),
        Some(qa_image.as_str())
    );
}

#[tokio::test]
async fn an_approval_of_older_digests_does_not_count() {
    let mut app = app_ready_to_promote("stale").await;
    app.release_as("approver", &["approve", "production"])
        .await
        .assert_success();
    app.release_as("approver2", &["approve", "production"])
        .await
        .assert_success();

    // qa moves on to a new build: the approvals were for the old digests.
    let newer = app.repo.commit("third version");
    app.push(&newer).await;
    app.release(&["deploy", "qa"]).await.assert_success();

    let out = app.release(&["promote", "qa"]).await;
    assert_eq!(out.code(), Some(4), "{out:?}");
    assert!(out.stderr.contains("has none"), "{}", out.stderr);
    let listed = app
        .release(&["approvals", "production"])
        .await
        .assert_success()
        .stdout;
    assert_eq!(listed.matches("other digests").count(), 2, "{listed}");
}

#[tokio::test]
async fn wait_for_approval_blocks_until_they_arrive() {
    let app = app_ready_to_promote("waitappr").await;
    let mut cmd = app.env.plugin();
    cmd.args(["promote", "qa", "--wait-for-approval", "2m"])
        .current_dir(app.repo.path());
    let promote = kubectl_release_tests::Spawned::spawn(&mut cmd);
    // The approvals must come while the promotion waits, not before it looked.
    promote
        .wait_for_stderr("the wait for approvals", DEFAULT_TIMEOUT, |err| {
            err.contains("waiting up to")
        })
        .await
        .expect("the promotion begins to wait for approvals");
    app.release_as("approver", &["approve", "production"])
        .await
        .assert_success();
    app.release_as("approver2", &["approve", "production"])
        .await
        .assert_success();
    let out = promote.finish(DEFAULT_TIMEOUT).await.assert_success();
    assert!(
        out.stdout.contains("to production: succeeded"),
        "{}",
        out.stdout
    );
}

#[tokio::test]
async fn promotion_is_refused_while_qa_pods_disagree() {
    let mut app = app_ready_to_promote("disagree").await;
    // A crash-looping build left half rolled out (no --atomic): old and new pods side by side.
    let broken = app.repo.commit("broken build");
    app.push_crashing(&broken).await;
    assert_eq!(app.release(&["deploy", "qa"]).await.code(), Some(5));

    let out = app.release(&["promote", "qa"]).await;
    assert_eq!(out.code(), Some(2), "{out:?}");
    assert!(
        out.stderr
            .contains("cannot promote from qa: Deployment/web"),
        "{}",
        out.stderr
    );
}

#[tokio::test]
async fn promoting_from_outside_the_promotion_order_needs_force() {
    let app = app_ready_to_promote("order").await;
    let out = app.release(&["promote", "production", "qa"]).await;
    assert_eq!(out.code(), Some(2), "{out:?}");
    assert!(out.stderr.contains("pass --force-source"), "{}", out.stderr);
}

#[tokio::test]
async fn promote_all_promotes_every_app_of_a_monorepo_with_one_summary() {
    // Two apps, each with its own release.yaml, gathered under one directory.
    let mut apps = Vec::new();
    for prefix in ["mono-a", "mono-b"] {
        let mut app = App::new(prefix, 1).await;
        let head = app.repo.head();
        app.push(&head).await;
        app.create_workloads(app.qa.name(), &format!("{}:{head}", app.image))
            .await;
        app.create_workloads(app.production.name(), &format!("{}:{head}", app.image))
            .await;
        app.release(&["deploy", "qa"]).await.assert_success();
        apps.push(app);
    }
    let monorepo = tempfile::tempdir().unwrap();
    for (i, app) in apps.iter().enumerate() {
        let dir = monorepo.path().join(format!("services/app{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(
            app.repo.path().join("release.yaml"),
            dir.join("release.yaml"),
        )
        .unwrap();
    }

    let dir = monorepo.path().to_str().unwrap();
    let out = apps[0]
        .release(&[
            "promote",
            "qa",
            "--all",
            "-f",
            dir,
            "--concurrency",
            "2",
            "-o",
            "json",
        ])
        .await
        .assert_success();
    let summary = json(&out.stdout);
    let results = summary.as_array().unwrap();
    assert_eq!(results.len(), 2, "{summary}");
    assert!(
        results
            .iter()
            .all(|r| r["exitCode"] == 0 && r["outcome"] == "succeeded"),
        "{summary}"
    );
    for app in &apps {
        let image = app
            .deployment(app.production.name(), "web")
            .await
            .spec
            .template
            .spec
            .unwrap()
            .containers[0]
            .image
            .clone();
        assert_eq!(
            image.as_deref(),
            Some(app.pinned(&app.repo.head()).as_str())
        );
    }

    // Again: nothing to do for either, still exit 0, and a table for people.
    let out = apps[0]
        .release(&["promote", "qa", "--all", "-f", dir])
        .await
        .assert_success();
    assert_eq!(out.stdout.matches("unchanged").count(), 2, "{}", out.stdout);
}
