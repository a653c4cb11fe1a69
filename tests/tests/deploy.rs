//! `kubectl release deploy`, `status`, `where`, `history` and `rollback` end to end, against the
//! real control plane, registry and git repositories of the harness.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, DynamicObject, ListParams, ObjectMeta, PostParams};
use kube::discovery::ApiResource;
use kubectl_release_tests::App;
use serde_json::Value;

/// Waits until every live pod of `workload` reports exactly `digest`, `count` of them.
async fn pods_run(app: &App, ns: &str, workload: &str, count: usize, digest: &str) -> Vec<Pod> {
    kubectl_release_tests::wait_for_pods_on(app, ns, workload, count, digest).await
}

fn annotations(meta: &ObjectMeta) -> std::collections::BTreeMap<String, String> {
    meta.annotations.clone().unwrap_or_default()
}

async fn cronjob_image(app: &App, ns: &str) -> String {
    let client = app.env.client("admin").await;
    // The harness's control plane is 1.20: CronJobs are batch/v1beta1 there.
    let ar = ApiResource {
        group: "batch".into(),
        version: "v1beta1".into(),
        api_version: "batch/v1beta1".into(),
        kind: "CronJob".into(),
        plural: "cronjobs".into(),
    };
    let api: Api<DynamicObject> = Api::namespaced_with(client, ns, &ar);
    let cj = api.get("nightly").await.unwrap();
    cj.data
        .pointer("/spec/jobTemplate/spec/template/spec/containers/0/image")
        .and_then(Value::as_str)
        .unwrap()
        .to_string()
}

/// What a release would change: generation and images of the Deployment and StatefulSet specs.
/// (resourceVersion is no measure: it moves with every status update while pods come up.)
async fn spec_states(app: &App, ns: &str) -> Vec<(Option<i64>, Vec<Option<String>>)> {
    let d = app.deployment(ns, "web").await;
    let s = app.statefulset(ns, "cache").await;
    let images = |spec: Option<k8s_openapi::api::core::v1::PodSpec>| {
        spec.map(|p| p.containers.into_iter().map(|c| c.image).collect())
            .unwrap_or_default()
    };
    vec![
        (d.metadata.generation, images(d.spec.template.spec)),
        (s.metadata.generation, images(s.spec.template.spec)),
    ]
}

async fn records(app: &App, ns: &str) -> Vec<Value> {
    let api: Api<ConfigMap> = Api::namespaced(app.env.client("admin").await, ns);
    let list = api
        .list(&ListParams::default().labels("kubectl-release.io/record=true"))
        .await
        .unwrap();
    let mut out: Vec<Value> = list
        .items
        .iter()
        .map(|cm| serde_json::from_str(&cm.data.as_ref().unwrap()["release.json"]).unwrap())
        .collect();
    out.sort_by_key(|r| r["revision"].as_u64());
    out
}

/// An app whose workloads run commit 0's image in qa; commits 1 and 2 have images too.
async fn app_on_first_commit(prefix: &str) -> App {
    let mut app = App::new(prefix, 3).await;
    for commit in app.commits() {
        app.push(&commit).await;
    }
    let first = app.commits()[0].clone();
    app.create_workloads(app.qa.name(), &format!("{}:{first}", app.image))
        .await;
    pods_run(&app, app.qa.name(), "web", 3, &app.digests[&first].clone()).await;
    app
}

#[tokio::test]
async fn deploy_pins_every_workload_to_the_commit_digest_records_it_and_is_idempotent() {
    let app = app_on_first_commit("deploy").await;
    let head = app.repo.head();
    let digest = app.digests[&head].clone();
    let qa = app.qa.name();

    let out = app.release(&["deploy", "qa"]).await.assert_success();
    assert!(
        out.stdout.contains("deploy web ") && out.stdout.contains("to qa: succeeded (revision 1)"),
        "{}",
        out.stdout
    );

    pods_run(&app, qa, "web", 3, &digest).await;
    pods_run(&app, qa, "cache", 1, &digest).await;
    let deployment = app.deployment(qa, "web").await;
    let containers = &deployment.spec.template.spec.as_ref().unwrap().containers;
    assert_eq!(
        containers[0].image.as_deref(),
        Some(app.pinned(&head).as_str())
    );
    assert_eq!(
        containers[1].image.as_deref(),
        Some("envoy:1.30"),
        "the sidecar is not ours to change"
    );
    let a = annotations(&deployment.metadata);
    assert_eq!(a["kubectl-release.io/revision"], "1");
    assert_eq!(a["kubectl-release.io/commit"], head);
    assert_eq!(
        a["kubectl-release.io/image-tag"],
        format!("{}:{head}", app.image)
    );
    assert_eq!(
        cronjob_image(&app, qa).await,
        app.pinned(&head),
        "CronJobs get the new image without a wait"
    );

    let recs = records(&app, qa).await;
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0]["outcome"], "succeeded");
    assert_eq!(recs[0]["commit"], head.as_str());
    assert_eq!(
        recs[0]["containers"].as_array().unwrap().len(),
        3,
        "web, cache and nightly"
    );

    // Again: a no-op, not a restart.
    let generation = deployment.metadata.generation;
    let out = app.release(&["deploy", "qa"]).await.assert_success();
    assert!(out.stdout.contains("already deployed"), "{}", out.stdout);
    assert_eq!(
        app.deployment(qa, "web").await.metadata.generation,
        generation
    );
    assert_eq!(records(&app, qa).await.len(), 1);
}

#[tokio::test]
async fn a_commit_without_an_image_changes_nothing() {
    let mut app = App::new("noimage", 2).await;
    let [first, second] = <[String; 2]>::try_from(app.commits()).unwrap();
    app.push(&first).await;
    app.create_workloads(app.qa.name(), &format!("{}:{first}", app.image))
        .await;
    pods_run(&app, app.qa.name(), "web", 3, &app.digests[&first].clone()).await;
    let before = spec_states(&app, app.qa.name()).await;

    let out = app.release(&["deploy", "qa"]).await;
    assert_eq!(out.code(), Some(2), "{out:?}");
    assert!(
        out.stderr.contains(&format!(
            "no image for commit {second} in {}; has CI built it?",
            app.image
        )),
        "{}",
        out.stderr
    );
    assert_eq!(spec_states(&app, app.qa.name()).await, before);
    assert!(records(&app, app.qa.name()).await.is_empty());
}

#[tokio::test]
async fn wait_for_image_waits_for_ci_to_push_it() {
    let mut app = App::new("waitimg", 2).await;
    let [first, second] = <[String; 2]>::try_from(app.commits()).unwrap();
    app.push(&first).await;
    app.create_workloads(app.qa.name(), &format!("{}:{first}", app.image))
        .await;

    let mut cmd = app.env.plugin();
    cmd.args(["deploy", "qa", "--wait-for-image", "2m", "-v"])
        .current_dir(app.repo.path());
    let deploy = kubectl_release_tests::Spawned::spawn(&mut cmd);
    // The image is pushed only once the deploy has seen it missing: the wait is what is tested.
    deploy
        .wait_for_stderr(
            "the image missing",
            kubectl_release_tests::DEFAULT_TIMEOUT,
            |err| err.contains("not pushed yet"),
        )
        .await
        .expect("the deploy finds the image missing and waits");
    let digest = app.push(&second).await;
    deploy
        .finish(kubectl_release_tests::DEFAULT_TIMEOUT)
        .await
        .assert_success();
    pods_run(&app, app.qa.name(), "web", 3, &digest).await;
}

#[tokio::test]
async fn a_crash_looping_release_fails_fast_and_atomic_restores_the_previous_digest() {
    let mut app = App::new("crash", 2).await;
    let [first, second] = <[String; 2]>::try_from(app.commits()).unwrap();
    let good = app.push(&first).await;
    app.push_crashing(&second).await;
    app.create_workloads(app.qa.name(), &format!("{}:{first}", app.image))
        .await;
    pods_run(&app, app.qa.name(), "web", 3, &good).await;
    app.release(&["deploy", "qa", &first])
        .await
        .assert_success();

    let started = std::time::Instant::now();
    let out = app
        .release(&["deploy", "qa", "--atomic", "-o", "json"])
        .await;
    assert_eq!(out.code(), Some(5), "{out:?}");
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "fails fast, not at the deadline"
    );
    assert!(out.stderr.contains("CrashLoopBackOff"), "{}", out.stderr);
    assert!(out.stderr.contains("rolled back"), "{}", out.stderr);
    let report: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(report["outcome"], "rolled-back");

    pods_run(&app, app.qa.name(), "web", 3, &good).await;
    let recs = records(&app, app.qa.name()).await;
    assert_eq!(recs.last().unwrap()["outcome"], "rolled-back");
    assert_eq!(
        annotations(&app.deployment(app.qa.name(), "web").await.metadata)["kubectl-release.io/commit"],
        first
    );
}

#[tokio::test]
async fn two_concurrent_deploys_one_is_locked_out() {
    let app = app_on_first_commit("lock").await;
    let run = |app: &App| {
        let mut cmd = app.env.plugin();
        cmd.args(["deploy", "qa"]).current_dir(app.repo.path());
        async move { kubectl_release_tests::run(&mut cmd).await }
    };
    let (a, b) = tokio::join!(run(&app), run(&app));
    let mut codes = vec![a.code(), b.code()];
    codes.sort();
    assert_eq!(
        codes,
        [Some(0), Some(7)],
        "one deploys, one is locked out: {a:?} {b:?}"
    );
    let locked = if a.code() == Some(7) { a } else { b };
    assert!(
        locked
            .stderr
            .contains("another release of web to qa is in progress: locked by"),
        "{}",
        locked.stderr
    );
}

#[tokio::test]
async fn a_lock_whose_holder_died_expires_and_is_taken_over() {
    let app = app_on_first_commit("stale").await;
    let leases: Api<Lease> = Api::namespaced(app.env.client("admin").await, app.qa.name());
    let long_ago = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(600);
    let lease = |holder: &str, renewed: jiff::Timestamp| Lease {
        metadata: ObjectMeta {
            name: Some("kubectl-release.web.qa".into()),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(30),
            acquire_time: Some(MicroTime(renewed)),
            renew_time: Some(MicroTime(renewed)),
            ..Default::default()
        }),
    };
    // A live holder: locked out, named.
    leases
        .create(
            &PostParams::default(),
            &lease("ci-runner-7", jiff::Timestamp::now()),
        )
        .await
        .unwrap();
    let out = app.release(&["deploy", "qa"]).await;
    assert_eq!(out.code(), Some(7), "{out:?}");
    assert!(
        out.stderr.contains("locked by ci-runner-7"),
        "{}",
        out.stderr
    );

    // A holder that stopped renewing ten minutes ago: taken over.
    leases
        .delete("kubectl-release.web.qa", &Default::default())
        .await
        .unwrap();
    leases
        .create(&PostParams::default(), &lease("crashed-run", long_ago))
        .await
        .unwrap();
    app.release(&["deploy", "qa"]).await.assert_success();
    assert!(
        leases
            .get_opt("kubectl-release.web.qa")
            .await
            .unwrap()
            .is_none(),
        "the lock is released after the deploy"
    );
}

#[tokio::test]
async fn rollback_to_revision_restores_that_revisions_images() {
    let app = app_on_first_commit("rollback").await;
    let commits = app.commits();
    for commit in &commits {
        app.release(&["deploy", "qa", commit])
            .await
            .assert_success();
    }
    let qa = app.qa.name();
    pods_run(&app, qa, "web", 3, &app.digests[&commits[2]]).await;

    app.release(&["rollback", "qa", "--to-revision", "1"])
        .await
        .assert_success();
    pods_run(&app, qa, "web", 3, &app.digests[&commits[0]]).await;
    let recs = records(&app, qa).await;
    assert_eq!(recs.last().unwrap()["kind"], "rollback");
    assert_eq!(recs.last().unwrap()["restoredRevision"], 1);

    // Without --to-revision: the newest successful revision with other images (revision 3).
    app.release(&["rollback", "qa"]).await.assert_success();
    pods_run(&app, qa, "web", 3, &app.digests[&commits[2]]).await;

    let out = app
        .release(&["rollback", "qa", "--to-revision", "99"])
        .await;
    assert_eq!(out.code(), Some(2));
    assert!(
        out.stderr.contains("has no revision 99 in qa"),
        "{}",
        out.stderr
    );
}

#[tokio::test]
async fn status_where_and_history_in_table_and_json() {
    let app = app_on_first_commit("status").await;
    let head = app.repo.head();
    app.release(&["deploy", "qa"]).await.assert_success();

    let out = app.release(&["status"]).await.assert_success();
    // Production has nothing released, but its namespace exists: nothing to warn about.
    assert!(!out.stderr.contains("does not exist"), "{out}");
    // A misspelled namespace is named, not shown as an environment nobody released to.
    let missing = format!("{}-typo", app.qa.name());
    let typo = app
        .release(&["status", "qa", "-n", &missing])
        .await
        .assert_success();
    assert!(
        typo.stderr
            .contains(&format!("namespace {missing} does not exist")),
        "{typo}"
    );
    let typo = app
        .release(&["history", "qa", "-n", &missing])
        .await
        .assert_success();
    assert!(
        typo.stderr
            .contains(&format!("namespace {missing} does not exist")),
        "{typo}"
    );
    let table = out.stdout;
    let qa_line = table
        .lines()
        .find(|l| l.starts_with("qa "))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(
        qa_line.contains(&head[..7]) && qa_line.contains("4/4") && qa_line.ends_with("no"),
        "{table}"
    );
    let json: Value = serde_json::from_str(
        &app.release(&["status", "-o", "json"])
            .await
            .assert_success()
            .stdout,
    )
    .unwrap();
    assert_eq!(json[0]["environment"], "qa");
    assert_eq!(json[0]["revision"], 1);
    assert_eq!(json[0]["liveCommit"], head.as_str());
    assert_eq!(json[0]["drift"], false);
    assert_eq!(json[1]["environment"], "production");
    assert_eq!(json[1]["revision"], Value::Null);

    let out = app
        .release(&["where", &head[..10]])
        .await
        .assert_success()
        .stdout;
    assert_eq!(out, format!("{} runs in: qa\n", &head[..7]));
    let json: Value = serde_json::from_str(
        &app.release(&["where", &head, "-o", "json"])
            .await
            .assert_success()
            .stdout,
    )
    .unwrap();
    assert_eq!(json[0]["running"], true);
    assert_eq!(json[1]["running"], false);

    let history = app
        .release(&["history", "qa"])
        .await
        .assert_success()
        .stdout;
    assert!(history.starts_with("REVISION"), "{history}");
    assert!(
        history.lines().nth(1).unwrap().starts_with("1 ") && history.contains("succeeded"),
        "{history}"
    );
    let json: Value = serde_json::from_str(
        &app.release(&["history", "qa", "-o", "json"])
            .await
            .assert_success()
            .stdout,
    )
    .unwrap();
    assert_eq!(json[0]["revision"], 1);
    assert_eq!(json[0]["commit"], head.as_str());

    // A hand edit shows as drift.
    let client = app.env.client("admin").await;
    let deployments: Api<Deployment> = Api::namespaced(client, app.qa.name());
    let patch = serde_json::json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": format!("{}:{}", app.image, app.commits()[0])}]}}}});
    deployments
        .patch(
            "web",
            &Default::default(),
            &kube::api::Patch::Strategic(&patch),
        )
        .await
        .unwrap();
    let json: Value = serde_json::from_str(
        &app.release(&["status", "qa", "-o", "json"])
            .await
            .assert_success()
            .stdout,
    )
    .unwrap();
    assert_eq!(json[0]["drift"], true, "{json}");
}

#[tokio::test]
async fn dry_run_and_plan_change_nothing() {
    let app = app_on_first_commit("dryrun").await;
    let before = spec_states(&app, app.qa.name()).await;
    let head = app.repo.head();

    let out = app
        .release(&["deploy", "qa", "--dry-run", "-o", "json"])
        .await
        .assert_success();
    let plan: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(plan["outcome"], "planned");
    assert_eq!(plan["changes"].as_array().unwrap().len(), 3);
    assert!(
        plan["changes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["after"] == app.pinned(&head).as_str())
    );
    let out = app.release(&["plan", "qa"]).await.assert_success();
    assert!(
        out.stdout.contains("dry run, nothing changed"),
        "{}",
        out.stdout
    );

    assert_eq!(spec_states(&app, app.qa.name()).await, before);
    assert!(records(&app, app.qa.name()).await.is_empty());
}

#[tokio::test]
async fn an_unknown_environment_is_a_usage_error() {
    let app = App::new("unknown", 1).await;
    let out = app.release(&["deploy", "staging"]).await;
    assert_eq!(out.code(), Some(2));
    assert!(
        out.stderr.contains("unknown environment `staging`")
            && out.stderr.contains("known: qa, production"),
        "{}",
        out.stderr
    );
}

#[tokio::test]
async fn kubectl_finds_the_plugin_and_shows_every_verb_and_the_exit_codes() {
    let plugin_dir = kubectl_release_tests::plugin_bin()
        .parent()
        .unwrap()
        .to_path_buf();
    let path = format!(
        "{}:{}",
        plugin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = tokio::process::Command::new("kubectl");
    cmd.args(["release", "--help"]).env("PATH", path);
    let out = kubectl_release_tests::run(&mut cmd).await.assert_success();
    for verb in [
        "deploy",
        "promote",
        "approve",
        "approvals",
        "status",
        "where",
        "history",
        "rollback",
        "plan",
        "hooks",
        "policy",
    ] {
        assert!(
            out.stdout.lines().any(|l| l.trim_start().starts_with(verb)),
            "no `{verb}` in:\n{}",
            out.stdout
        );
    }
    assert!(
        out.stdout.contains("Usage: kubectl release"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("7  locked by another release in progress"),
        "{}",
        out.stdout
    );
}

#[tokio::test]
async fn a_branch_deploy_ships_the_remote_branch_head_and_says_so() {
    let mut app = App::new("branch", 3).await;
    let commits = app.commits();
    for commit in &commits {
        app.push(commit).await;
    }
    app.create_workloads(app.qa.name(), &app.pinned(&commits[0]))
        .await;
    // A fetched branch of a colleague, as CI's checkout has it: a remote-tracking ref.
    let feature = commits[1].clone();
    app.repo
        .git(&["update-ref", "refs/remotes/origin/feature-x", &feature]);

    let out = app
        .release(&["deploy", "qa", "origin/feature-x", "-o", "json"])
        .await;
    assert!(out.success(), "{out}");
    let report: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(report["commit"], feature.as_str(), "{out}");
    let web = app.deployment(app.qa.name(), "web").await;
    let image = web.spec.template.spec.unwrap().containers[0].image.clone();
    assert_eq!(image, Some(app.pinned(&feature)));

    let recs = records(&app, app.qa.name()).await;
    assert_eq!(recs.last().unwrap()["branch"], "origin/feature-x");
    let status = app.release(&["status", "qa"]).await;
    assert!(
        status
            .stdout
            .contains(&format!("{} (origin/feature-x)", &feature[..7])),
        "{status}"
    );
    // By SHA, no branch is claimed.
    let out = app.release(&["deploy", "qa", &commits[2][..10]]).await;
    assert!(out.success(), "{out}");
    let recs = records(&app, app.qa.name()).await;
    assert!(
        recs.last().unwrap().get("branch").is_none(),
        "{:?}",
        recs.last()
    );
}

/// The requests one run of the plugin made, from its `requesting` debug lines: (method, path).
fn requests(stderr: &str) -> Vec<(String, String)> {
    stderr
        .lines()
        .filter(|l| l.contains(" requesting "))
        .filter_map(|l| {
            let method = l.split("http.method=").nth(1)?.split(' ').next()?;
            let url = l.split("http.url=").nth(1)?.split(' ').next()?;
            let path = url.splitn(4, '/').nth(3).unwrap_or(url);
            Some((method.to_string(), format!("/{path}")))
        })
        .collect()
}

#[tokio::test]
async fn workload_kinds_narrow_what_is_read_and_changed_and_watches_start_from_the_patch() {
    let app = app_on_first_commit("kinds").await;
    let (first, head) = (app.commits()[0].clone(), app.repo.head());
    let qa = app.qa.name();
    app.write_config("workloads:\n  kinds: [Deployment]\n");
    let stateful_before = spec_states(&app, qa).await[1].clone();

    let mut cmd = app.env.plugin();
    cmd.args(["deploy", "qa", "-o", "json"])
        .current_dir(app.repo.path())
        .env("RUST_LOG", "warn,kubectl_release::cluster::clients=debug");
    let out = kubectl_release_tests::run(&mut cmd).await.assert_success();
    pods_run(&app, qa, "web", 3, &app.digests[&head].clone()).await;

    // Only the Deployment is the app's: the StatefulSet and the CronJob keep the first commit.
    let report: Value = serde_json::from_str(&out.stdout).unwrap();
    let changed: Vec<String> = report["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| format!("{}/{}", c["workload"]["kind"], c["workload"]["name"]))
        .collect();
    assert_eq!(changed, [r#""Deployment"/"web""#], "{}", out.stdout);
    assert_eq!(spec_states(&app, qa).await[1], stateful_before);
    assert_eq!(
        cronjob_image(&app, qa).await,
        format!("{}:{first}", app.image)
    );

    let made = requests(&out.stderr);
    let gets = |needle: &str| {
        made.iter()
            .filter(|(m, p)| m == "GET" && p.contains(needle))
            .count()
    };
    for kind in ["/statefulsets", "/daemonsets", "/cronjobs"] {
        assert_eq!(gets(kind), 0, "{kind} listed: {made:#?}");
    }
    // One read of the environment, then watches from the patch: no second list of either. The
    // pods are read because the template named a tag: only they can say which bytes run.
    let lists = |made: &[(String, String)], what: &str| {
        made.iter()
            .filter(|(m, p)| {
                m == "GET" && p.contains(&format!("/{what}?")) && !p.contains("watch=")
            })
            .count()
    };
    let watches = |made: &[(String, String)], what: &str| {
        made.iter()
            .filter(|(_, p)| p.contains(&format!("/{what}?")) && p.contains("watch=true"))
            .count()
    };
    assert_eq!(lists(&made, "deployments"), 1, "{made:#?}");
    assert_eq!(lists(&made, "pods"), 1, "{made:#?}");
    assert_eq!(watches(&made, "deployments"), 1, "{made:#?}");
    assert_eq!(watches(&made, "pods"), 1, "{made:#?}");
    let patch = made
        .iter()
        .position(|(m, p)| m == "PATCH" && p.contains("/deployments/web"))
        .expect("the Deployment was patched");
    let watch = made
        .iter()
        .position(|(_, p)| p.contains("/deployments?") && p.contains("watch=true"))
        .unwrap();
    assert!(watch > patch, "{made:#?}");
    assert!(
        made[watch].1.contains("resourceVersion="),
        "the watch starts from a version: {}",
        made[watch].1
    );

    // Now the template pins a digest and its rollout is finished: the Deployment's status says
    // what every pod runs, so the next release lists no pods (and still watches them after).
    let mut again = app.env.plugin();
    again
        .args(["deploy", "qa", &first, "-o", "json"])
        .current_dir(app.repo.path())
        .env("RUST_LOG", "warn,kubectl_release::cluster::clients=debug");
    let out = kubectl_release_tests::run(&mut again)
        .await
        .assert_success();
    pods_run(&app, qa, "web", 3, &app.digests[&first].clone()).await;
    let made = requests(&out.stderr);
    assert_eq!(lists(&made, "deployments"), 1, "{made:#?}");
    assert_eq!(lists(&made, "pods"), 0, "{made:#?}");
    assert_eq!(watches(&made, "pods"), 1, "{made:#?}");
}
