//! Jobs as phases of a release, end to end: migrations before the rollout and verification
//! after it, run by the real Job controller, their pods' logs read through the API server's
//! log proxy from the test kubelet (whose containers act out `sh -c` scripts: `echo`, `sleep`,
//! `exit`).

use k8s_openapi::api::batch::v1::Job;
use kube::Api;
use kube::api::ListParams;
use kubectl_release_tests::{App, CmdOutput, records};
use serde_json::Value;

/// release.yaml with `jobs` (YAML list items) and production requiring qa's verification.
fn write_config(app: &App, jobs: &str) {
    let config = format!(
        "apiVersion: kubectl-release.io/v1alpha1\nkind: ReleaseConfig\napp: {name}\nimage: {image}\n\
         environments:\n  - name: qa\n    context: qa\n    namespace: {qa}\n  - name: production\n    context: production\n    namespace: {prod}\n    promoteFrom: qa\n    requireVerification: true\n\
         jobs:\n{jobs}",
        name = app.name,
        image = app.image,
        qa = app.qa.name(),
        prod = app.production.name(),
    );
    std::fs::write(app.repo.path().join("release.yaml"), config).expect("write release.yaml");
}

/// A Job entry whose container runs `script` (the test kubelet acts it out).
fn job(name: &str, phase: &str, script: &str, extra: &str) -> String {
    format!("  - name: {name}\n    phase: {phase}\n    command: [sh, -c, \"{script}\"]\n{extra}")
}

/// An app whose workloads run commit 0 in qa and production; commits 1 and 2 have images too.
async fn app(prefix: &str) -> App {
    let mut app = App::new(prefix, 3).await;
    for commit in app.commits() {
        app.push(&commit).await;
    }
    let first = app.pinned(&app.commits()[0]);
    app.create_workloads(app.qa.name(), &first).await;
    app.create_workloads(app.production.name(), &first).await;
    app
}

fn report(out: &CmdOutput) -> Value {
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

async fn web_image(app: &App, ns: &str) -> String {
    let d = app.deployment(ns, "web").await;
    d.spec.template.spec.unwrap().containers[0]
        .image
        .clone()
        .unwrap()
}

async fn jobs_of(app: &App, ns: &str) -> Vec<String> {
    let api: Api<Job> = Api::namespaced(app.env.client("admin").await, ns);
    let mut names: Vec<String> = api
        .list(&ListParams::default().labels("kubectl-release.io/job"))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|j| j.metadata.name)
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread")]
async fn a_migration_that_succeeds_shows_its_log_and_the_rollout_follows() {
    let app = app("jobs-ok").await;
    write_config(
        &app,
        &job(
            "migrate",
            "pre-deploy",
            "echo applying 0042_add_index; echo migrated",
            "",
        ),
    );
    let second = app.commits()[1].clone();
    let out = app.release(&["deploy", "qa", &second, "-o", "json"]).await;
    assert!(out.success(), "{out}");
    // Streamed live to stderr, prefixed with the Job's name.
    assert!(
        out.stderr.contains("migrate: applying 0042_add_index"),
        "{out}"
    );
    let report = report(&out);
    let migrate = &report["jobs"][0];
    assert_eq!(migrate["outcome"], "succeeded", "{out}");
    assert_eq!(migrate["job"], "web-migrate-r1");
    assert_eq!(
        migrate["logTail"],
        serde_json::json!(["applying 0042_add_index", "migrated"])
    );
    assert_eq!(web_image(&app, app.qa.name()).await, app.pinned(&second));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_migration_changes_no_workload_and_says_why() {
    let app = app("jobs-fail").await;
    write_config(
        &app,
        &job(
            "migrate",
            "pre-deploy",
            "echo relation users does not exist; exit 3",
            "",
        ),
    );
    let first = app.pinned(&app.commits()[0]);
    let out = app
        .release(&["deploy", "qa", &app.commits()[1], "-o", "json"])
        .await;
    assert_eq!(out.code(), Some(5), "{out}");
    assert!(
        out.stderr.contains("relation users does not exist"),
        "{out}"
    );
    let report = report(&out);
    assert_eq!(report["jobs"][0]["outcome"], "failed", "{out}");
    let message = report["message"].as_str().unwrap();
    assert!(
        message.contains("pre-deploy Job `migrate` (web-migrate-r1) failed")
            && message.contains("relation users does not exist"),
        "{message}"
    );
    assert_eq!(web_image(&app, app.qa.name()).await, first, "untouched");
    let client = app.env.client("admin").await;
    let recorded = records(&client, app.qa.name(), "web", "qa").await;
    assert_eq!(recorded[0]["outcome"], "failed");
    assert_eq!(
        recorded[0]["jobs"][0]["logTail"][0],
        "relation users does not exist"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_migration_past_its_timeout_is_exit_6_and_rolls_nothing_out() {
    let app = app("jobs-slow").await;
    write_config(
        &app,
        &job(
            "migrate",
            "pre-deploy",
            "echo locking; sleep 60",
            "    timeout: 2s\n",
        ),
    );
    let first = app.pinned(&app.commits()[0]);
    let out = app
        .release(&["deploy", "qa", &app.commits()[1], "-o", "json"])
        .await;
    assert_eq!(out.code(), Some(6), "{out}");
    let report = report(&out);
    assert_eq!(report["jobs"][0]["outcome"], "timed-out", "{out}");
    assert!(
        report["jobs"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("DeadlineExceeded"),
        "{out}"
    );
    assert_eq!(web_image(&app, app.qa.name()).await, first);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_verification_with_atomic_restores_the_previous_release() {
    let app = app("jobs-verify").await;
    write_config(
        &app,
        &job("smoke", "post-deploy", "echo GET /healthz 503; exit 1", ""),
    );
    let first = app.pinned(&app.commits()[0]);
    let out = app
        .release(&["deploy", "qa", &app.commits()[1], "--atomic", "-o", "json"])
        .await;
    assert_eq!(out.code(), Some(5), "{out}");
    let report = report(&out);
    assert_eq!(report["outcome"], "rolled-back", "{out}");
    assert_eq!(report["jobs"][0]["name"], "smoke");
    assert_eq!(report["jobs"][0]["outcome"], "failed");
    kubectl_release_tests::wait_for_pods_on(
        &app,
        app.qa.name(),
        "web",
        3,
        &app.digests[&app.commits()[0]],
    )
    .await;
    assert_eq!(web_image(&app, app.qa.name()).await, first, "restored");
}

#[tokio::test(flavor = "multi_thread")]
async fn promotion_needs_the_source_to_have_passed_its_verification() {
    let app = app("jobs-promote").await;
    write_config(
        &app,
        &job(
            "smoke",
            "post-deploy",
            "echo smoke failed; exit 1",
            "    environments: [qa]\n",
        ),
    );
    let second = app.commits()[1].clone();
    let out = app.release(&["deploy", "qa", &second]).await;
    assert_eq!(out.code(), Some(5), "the verification failed: {out}");

    let refused = app
        .release(&["promote", "qa", "production", "-o", "json"])
        .await;
    assert_eq!(refused.code(), Some(2), "{refused}");
    assert!(
        refused
            .stdout
            .contains("production only receives releases whose verification passed in qa"),
        "{refused}"
    );
    assert_eq!(
        web_image(&app, app.production.name()).await,
        app.pinned(&app.commits()[0])
    );

    // The next commit passes its verification: now it may go.
    write_config(
        &app,
        &job(
            "smoke",
            "post-deploy",
            "echo smoke ok",
            "    environments: [qa]\n",
        ),
    );
    let third = app.commits()[2].clone();
    let out = app.release(&["deploy", "qa", &third]).await;
    assert!(out.success(), "{out}");
    let promoted = app
        .release(&["promote", "qa", "production", "-o", "json"])
        .await;
    assert!(promoted.success(), "{promoted}");
    assert_eq!(
        web_image(&app, app.production.name()).await,
        app.pinned(&third)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_succeeded_migration_is_not_rerun_for_the_same_digests_and_jobs_are_named_per_release() {
    let app = app("jobs-rerun").await;
    write_config(&app, &job("migrate", "pre-deploy", "echo migrated", ""));
    let (first, second) = (app.commits()[0].clone(), app.commits()[1].clone());
    let out = app.release(&["deploy", "qa", &second]).await;
    assert!(out.success(), "{out}");
    let out = app.release(&["deploy", "qa", &first]).await;
    assert!(out.success(), "{out}");
    // Two releases, two Jobs: a rerun never meets an immutable Job.
    assert_eq!(
        jobs_of(&app, app.qa.name()).await,
        ["web-migrate-r1", "web-migrate-r2"]
    );

    // Back to the second commit: its migration already succeeded for these digests.
    let plan = app.release(&["plan", "qa", &second, "-o", "json"]).await;
    assert!(plan.success(), "{plan}");
    assert_eq!(report(&plan)["jobs"][0]["outcome"], "skipped", "{plan}");
    let out = app.release(&["deploy", "qa", &second, "-o", "json"]).await;
    assert!(out.success(), "{out}");
    let migrate = &report(&out)["jobs"][0];
    assert_eq!(migrate["outcome"], "skipped", "{out}");
    assert_eq!(migrate["ranIn"], 1);
    assert_eq!(jobs_of(&app, app.qa.name()).await.len(), 2, "no third Job");
    // Unless asked.
    let out = app.release(&["deploy", "qa", &first, "--rerun-jobs"]).await;
    assert!(out.success(), "{out}");
    assert_eq!(jobs_of(&app, app.qa.name()).await.len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signal_during_a_migration_records_interrupted_and_leaves_the_job_running() {
    let app = app("jobs-signal").await;
    write_config(
        &app,
        &job("migrate", "pre-deploy", "echo step 1 of 2; sleep 60", ""),
    );
    let first = app.pinned(&app.commits()[0]);
    let mut command = app.env.plugin();
    command
        .args(["deploy", "qa", &app.commits()[1], "-o", "json"])
        .current_dir(app.repo.path());
    let deploy = kubectl_release_tests::Spawned::spawn(&mut command);
    deploy
        .wait_for_stderr(
            "the migration's first log line",
            std::time::Duration::from_secs(60),
            |s| s.contains("migrate: step 1 of 2"),
        )
        .await
        .unwrap();
    deploy.signal(kubectl_release_tests::Signal::SIGTERM);
    let out = deploy.finish(std::time::Duration::from_secs(30)).await;
    assert_eq!(out.code(), Some(143), "{out}");
    let report = report(&out);
    assert_eq!(report["outcome"], "interrupted", "{out}");
    assert!(
        report["jobs"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("left running"),
        "{out}"
    );
    assert_eq!(
        web_image(&app, app.qa.name()).await,
        first,
        "no workload changed"
    );
    let client = app.env.client("admin").await;
    let recorded = records(&client, app.qa.name(), "web", "qa").await;
    assert_eq!(recorded[0]["outcome"], "interrupted");
    // The migration goes on: a half-done migration is not ours to kill.
    let jobs: Api<Job> = Api::namespaced(client, app.qa.name());
    let job = jobs
        .get("web-migrate-r1")
        .await
        .expect("the Job is still there");
    assert!(
        job.status.and_then(|s| s.active).unwrap_or(0) >= 1,
        "still running"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_template_in_the_manifests_runs_as_the_release_job() {
    let mut app = App::new("jobs-template", 0).await;
    let ns = app.qa.name().to_string();
    let config = format!(
        "apiVersion: kubectl-release.io/v1alpha1\nkind: ReleaseConfig\napp: web\nimage: {image}\nhistoryLimit: 1\n\
         environments:\n  - name: qa\n    context: qa\n    namespace: {ns}\n    manifests: kubernetes/qa\n",
        image = app.image,
    );
    std::fs::write(app.repo.path().join("release.yaml"), config).unwrap();
    let deployment = format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {{app: web}}\n  template:\n    metadata:\n      labels: {{app: web}}\n    spec:\n      containers:\n        - name: web\n          image: {image}\n",
        image = app.image
    );
    let migration = format!(
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: migrate\n  annotations:\n    kubectl-release.io/job-phase: pre-deploy\nspec:\n  backoffLimit: 0\n  template:\n    spec:\n      containers:\n        - name: migrate\n          image: {image}\n          command: [sh, -c, \"echo from the template\"]\n",
        image = app.image
    );
    app.repo.write("kubernetes/qa/web.yaml", &deployment);
    app.repo.write("kubernetes/qa/migrate.yaml", &migration);
    let first = app.repo.commit("manifests with a migration");
    app.push(&first).await;
    let out = app.release(&["deploy", "qa", "-o", "json"]).await;
    assert!(out.success(), "{out}");
    let report = report(&out);
    assert_eq!(report["jobs"][0]["name"], "migrate", "{out}");
    assert_eq!(
        report["jobs"][0]["logTail"][0], "from the template",
        "{out}"
    );
    // It ran as the release's Job, on the release's digest; it is not part of the applied set.
    assert!(
        !report["objects"].to_string().contains("\"Job\""),
        "{}",
        report["objects"]
    );
    let client = app.env.client("admin").await;
    let jobs: Api<Job> = Api::namespaced(client, &ns);
    let job = jobs.get("web-migrate-r1").await.unwrap();
    let image = job.spec.unwrap().template.spec.unwrap().containers[0]
        .image
        .clone();
    assert_eq!(image, Some(app.pinned(&first)));

    // historyLimit 1: the next release's records keep only itself, and its Jobs only its own.
    let second = app.repo.commit("again");
    app.push(&second).await;
    let out = app.release(&["deploy", "qa"]).await;
    assert!(out.success(), "{out}");
    kubectl_release_tests::wait_for(
        &jobs,
        "web-migrate-r1",
        std::time::Duration::from_secs(60),
        |j| j.is_none_or(|j| j.metadata.deletion_timestamp.is_some()),
    )
    .await
    .expect("the Job of the pruned record is deleted");
    assert!(jobs.get("web-migrate-r2").await.is_ok());
}
