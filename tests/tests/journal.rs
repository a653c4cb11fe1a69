//! The release journal end to end: a release records what it is about to do before its first
//! change and how it ended on every way out — killed, stopped by a signal, refused halfway,
//! judged after the fact — and prints one report CI can read whatever its exit code.
//!
//! Nothing in this binary may apply `plugin/rbac/approvals.yaml` (`setup_approvals_rbac`): it
//! lets the `developers` group read workloads in every namespace, and the access tests below
//! need a developer who cannot read production at all.

use std::os::unix::process::ExitStatusExt as _;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::Api;
use kube::api::{ObjectMeta, PostParams};
use kubectl_release_tests::{
    App, CmdOutput, DEFAULT_TIMEOUT, Signal, app_with_a_slow_rollout, apply, assert_report,
    assert_valid_report, delete_lease, deployer_rules, deployment, deployment_rolled_out,
    ensure_namespace, entries, grant, history, hook_entry, lease, lease_name, may, mid_rollout,
    pretty, records, rule, setup_policy_rbac, spawn_release, statefulset, template_image,
    wait_for_pods_on,
};
use serde_json::Value;

/// The app every test releases (`App::new` names it so) and the environment it goes to.
const APP: &str = "web";
const QA: &str = "qa";
/// Where approvals live (plugin/rbac/approvals.yaml).
const APPROVALS_NAMESPACE: &str = "kubectl-release-approvals";
/// A signalled release may still be putting the previous images back: give it time for that.
const SIGNALLED_EXIT_TIMEOUT: Duration = Duration::from_secs(120);

/// An app with `commits` commits, every image pushed, and `App::create_workloads` in qa on
/// commit 0 by tag, its `web` pods running.
async fn app_in_qa(prefix: &str, commits: usize) -> App {
    let mut app = App::new(prefix, commits).await;
    for commit in app.commits() {
        app.push(&commit).await;
    }
    let first = app.commits()[0].clone();
    app.create_workloads(app.qa.name(), &format!("{}:{first}", app.image))
        .await;
    wait_for_pods_on(&app, app.qa.name(), "web", 3, &app.digests[&first]).await;
    app
}

#[tokio::test]
async fn sigkill_mid_rollout_then_next_deploy_finishes_and_records_it_once() {
    let app = app_with_a_slow_rollout("sigkill").await;
    let qa = app.qa.name();
    let head = app.repo.head();
    let admin = app.env.client("admin").await;

    let deploy = spawn_release(&app, &["deploy", QA]);
    let record = mid_rollout(&app, &head).await;
    let revision = record["revision"].clone();
    assert!(revision.is_u64(), "{record}");
    assert!(record["lockHolder"].is_string(), "{record}");
    deploy.signal(Signal::SIGKILL);
    let killed = deploy.finish(DEFAULT_TIMEOUT).await;
    assert_eq!(killed.status.signal(), Some(9), "{killed}");

    // Nothing could finish the record: it stays as the dead run left it.
    let recs = records(&admin, qa, APP, QA).await;
    assert_eq!(recs.len(), 1, "{}", pretty(&recs));
    assert_eq!(recs[0]["outcome"], "in-progress", "{}", pretty(&recs));

    // The dead run's lock would block the next run until it expires, 30 s after its last
    // renewal. An operator who knows the run is dead deletes it rather than wait; so does this
    // test (the takeover of an expired lock is deploy.rs' a_lock_whose_holder_died_…).
    assert!(
        lease(&admin, qa, APP, QA).await.is_some(),
        "the lock is left"
    );
    delete_lease(&admin, qa, APP, QA).await;

    let before = history(&app, QA).await;
    let listed = entries(&before, &revision);
    assert_eq!(listed.len(), 1, "{}", pretty(&before));
    assert_eq!(listed[0]["outcome"], "interrupted", "{}", pretty(&before));

    // The next deploy of the same commit completes that revision rather than starting another.
    let out = app.release(&["deploy", QA, "-o", "json"]).await;
    let report = assert_report(&out, 0, "succeeded");
    assert_eq!(report["revision"], revision, "{out}");
    let recs = records(&admin, qa, APP, QA).await;
    assert_eq!(
        recs.len(),
        1,
        "one record, revision {revision}: {}",
        pretty(&recs)
    );
    assert_eq!(recs[0]["revision"], revision);
    assert_eq!(recs[0]["outcome"], "succeeded", "{}", pretty(&recs));
    let after = history(&app, QA).await;
    assert_eq!(after.len(), 1, "{}", pretty(&after));
    assert_eq!(entries(&after, &revision)[0]["outcome"], "succeeded");

    wait_for_pods_on(&app, qa, "web", 12, &app.digests[&head]).await;
}

#[tokio::test]
async fn sigterm_mid_rollout_with_atomic_restores_and_records_rolled_back() {
    let app = app_with_a_slow_rollout("sigterm").await;
    let qa = app.qa.name();
    let [first, head] = <[String; 2]>::try_from(app.commits()).unwrap();
    let previous = format!("{}:{first}", app.image);
    let admin = app.env.client("admin").await;

    let deploy = spawn_release(&app, &["deploy", QA, "--atomic", "-o", "json"]);
    let record = mid_rollout(&app, &head).await;
    deploy.signal(Signal::SIGTERM);
    let out = deploy.finish(SIGNALLED_EXIT_TIMEOUT).await;
    let report = assert_report(&out, 143, "rolled-back");
    assert_eq!(report["revision"], record["revision"], "{out}");

    // It waited for the previous images before it exited.
    let web = app.deployment(qa, "web").await;
    assert_eq!(template_image(&web), Some(previous), "{web:?}");
    assert!(deployment_rolled_out(&web), "{:?}", web.status);
    let recs = records(&admin, qa, APP, QA).await;
    assert_eq!(recs.len(), 1, "{}", pretty(&recs));
    assert_eq!(recs[0]["revision"], record["revision"]);
    assert_eq!(recs[0]["outcome"], "rolled-back", "{}", pretty(&recs));
    assert!(
        lease(&admin, qa, APP, QA).await.is_none(),
        "the lock is released"
    );
    wait_for_pods_on(&app, qa, "web", 12, &app.digests[&first]).await;
}

#[tokio::test]
async fn sigint_mid_rollout_without_atomic_records_interrupted_and_keeps_the_new_images() {
    let app = app_with_a_slow_rollout("sigint").await;
    let qa = app.qa.name();
    let head = app.repo.head();
    let admin = app.env.client("admin").await;

    let deploy = spawn_release(&app, &["deploy", QA, "-o", "json"]);
    let record = mid_rollout(&app, &head).await;
    deploy.signal(Signal::SIGINT);
    let out = deploy.finish(SIGNALLED_EXIT_TIMEOUT).await;
    let report = assert_report(&out, 130, "interrupted");
    assert_eq!(report["revision"], record["revision"], "{out}");

    let recs = records(&admin, qa, APP, QA).await;
    assert_eq!(recs.len(), 1, "{}", pretty(&recs));
    assert_eq!(
        recs[0]["outcome"],
        "interrupted",
        "written by the run itself: {}",
        pretty(&recs)
    );
    assert!(
        lease(&admin, qa, APP, QA).await.is_none(),
        "the lock is released"
    );
    let web = app.deployment(qa, "web").await;
    assert_eq!(template_image(&web), Some(app.pinned(&head)), "not undone");
}

#[tokio::test]
async fn patch_refused_on_the_second_workload_restores_the_first_and_exits_5() {
    let app = app_in_qa("refused", 2).await;
    let env = app.env;
    let qa = app.qa.name();
    let first = app.commits()[0].clone();
    let previous = format!("{}:{first}", app.image);
    setup_policy_rbac(env).await;
    grant(
        env,
        qa,
        "developer",
        "deployer",
        deployer_rules(&["deployments"]),
    )
    .await;
    assert!(!may(env, "developer", qa, "apps", "statefulsets", "patch").await);

    // Deployments are patched before StatefulSets: web is changed, then cache is refused.
    let out = app
        .release_as("developer", &["deploy", QA, "-o", "json"])
        .await;
    let report = assert_report(&out, 5, "rolled-back");
    let names_the_refusal = |message: &str| {
        let lower = message.to_lowercase();
        message.contains("StatefulSet/cache")
            && ["forbidden", "cannot patch", "may not", "not allowed"]
                .iter()
                .any(|reason| lower.contains(reason))
    };
    assert!(
        names_the_refusal(report["message"].as_str().unwrap_or_default()),
        "{out}"
    );

    // web is back on its previous image and rolled out (the plugin waited for it); cache was
    // never changed.
    let web = app.deployment(qa, "web").await;
    assert_eq!(template_image(&web), Some(previous.clone()), "{web:?}");
    assert!(deployment_rolled_out(&web), "{:?}", web.status);
    let cache = app.statefulset(qa, "cache").await;
    let cache_image = cache.spec.template.spec.unwrap().containers[0]
        .image
        .clone();
    assert_eq!(cache_image, Some(previous));

    let recs = records(&env.client("admin").await, qa, APP, QA).await;
    let last = recs.last().unwrap_or_else(|| panic!("no record: {out}"));
    assert_eq!(last["outcome"], "rolled-back", "{}", pretty(&recs));
    assert!(
        names_the_refusal(last["message"].as_str().unwrap_or_default()),
        "{last:#}"
    );
    wait_for_pods_on(&app, qa, "web", 3, &app.digests[&first]).await;
}

#[tokio::test]
async fn post_deploy_hook_error_still_records_the_succeeded_rollout() {
    let app = app_in_qa("postdeploy", 2).await;
    let head = app.repo.head();
    // required-labels after the deploy: the workloads lack `owner`, so it denies — when the
    // rollout is already done, which a post-deploy verdict cannot undo.
    app.write_config(&format!(
        "hooks:\n{}",
        hook_entry(
            "post-check",
            "required-labels",
            "phases: [post-deploy]\nsettings: {labels: {owner: \".+\"}}",
        )
    ));

    let out = app.release(&["deploy", QA, "-o", "json"]).await;
    let report = assert_report(&out, 0, "succeeded");
    let verdict_of = |hooks: &Value| {
        hooks
            .as_array()
            .and_then(|hooks| hooks.iter().find(|h| h["hook"] == "post-check"))
            .cloned()
            .unwrap_or_else(|| panic!("no verdict of post-check in {hooks}"))
    };
    let verdict = verdict_of(&report["hooks"]);
    assert_eq!(verdict["phase"], "post-deploy", "{verdict}");
    assert_eq!(verdict["outcome"]["verdict"], "denied", "{verdict}");
    let warnings = report["warnings"].as_array().cloned().unwrap_or_default();
    assert!(
        warnings
            .iter()
            .any(|w| w.as_str().is_some_and(|w| w.contains("post-check"))),
        "a warning names the hook: {out}"
    );

    let recs = records(&app.env.client("admin").await, app.qa.name(), APP, QA).await;
    assert_eq!(recs.len(), 1, "{}", pretty(&recs));
    assert_eq!(recs[0]["outcome"], "succeeded", "{}", pretty(&recs));
    assert_eq!(verdict_of(&recs[0]["hooks"])["outcome"], verdict["outcome"]);
    wait_for_pods_on(&app, app.qa.name(), "web", 3, &app.digests[&head]).await;
}

/// `deploy`, `plan`, `promote` and `rollback` with `-o json`: for each exit code, exactly one
/// JSON document on stdout, valid against `hooks-sdk/schema/release-report.schema.json`, with
/// the outcome the code stands for.
mod every_exit_code_prints_one_report_valid_against_the_schema {
    use super::*;

    #[tokio::test]
    async fn exit_0_succeeded_unchanged_planned_for_every_verb() {
        let app = app_in_qa("exit0", 2).await;
        let [first, head] = <[String; 2]>::try_from(app.commits()).unwrap();
        app.create_workloads(app.production.name(), &format!("{}:{first}", app.image))
            .await;

        let report = assert_report(
            &app.release(&["deploy", QA, &first, "-o", "json"]).await,
            0,
            "succeeded",
        );
        assert_eq!(report["kind"], "deploy");
        assert_eq!(report["commit"], first.as_str());
        assert_report(
            &app.release(&["deploy", QA, &first, "-o", "json"]).await,
            0,
            "unchanged",
        );
        assert_report(
            &app.release(&["plan", QA, "-o", "json"]).await,
            0,
            "planned",
        );
        let report = assert_report(
            &app.release(&["deploy", QA, "-o", "json"]).await,
            0,
            "succeeded",
        );
        assert_eq!(report["commit"], head.as_str());
        let report = assert_report(
            &app.release(&["rollback", QA, "-o", "json"]).await,
            0,
            "succeeded",
        );
        assert_eq!(report["kind"], "rollback");
        let report = assert_report(
            &app.release(&["promote", QA, "production", "-o", "json"])
                .await,
            0,
            "succeeded",
        );
        assert_eq!(report["kind"], "promote");
        assert_eq!(report["environment"], "production");
    }

    /// A copy of the test kubeconfig with a context `unreachable`: the admin at a loopback port
    /// nothing listens on, so every request fails to connect.
    fn kubeconfig_with_an_unreachable_context(app: &App) -> tempfile::NamedTempFile {
        let text = std::fs::read_to_string(app.env.kubeconfig()).expect("read the kubeconfig");
        let mut config: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(&text).expect("the kubeconfig is YAML");
        // Bound then closed: connections to it are refused at once.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let cluster: serde_yaml_ng::Value = serde_yaml_ng::from_str(&format!(
            "{{name: unreachable, cluster: {{server: 'https://127.0.0.1:{port}', insecure-skip-tls-verify: true}}}}"
        ))
        .unwrap();
        let context: serde_yaml_ng::Value = serde_yaml_ng::from_str(
            "{name: unreachable, context: {cluster: unreachable, user: admin}}",
        )
        .unwrap();
        for (list, item) in [("clusters", cluster), ("contexts", context)] {
            config[list]
                .as_sequence_mut()
                .unwrap_or_else(|| panic!("the kubeconfig has no {list}"))
                .push(item);
        }
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), serde_yaml_ng::to_string(&config).unwrap()).unwrap();
        file
    }

    #[tokio::test]
    async fn exit_1_error_when_the_cluster_cannot_be_reached() {
        let app = app_in_qa("exit1", 2).await;
        let kubeconfig = kubeconfig_with_an_unreachable_context(&app);
        let path = kubeconfig.path().to_str().unwrap();
        let out = app
            .release(&[
                "--kubeconfig",
                path,
                "--context",
                "unreachable",
                "deploy",
                QA,
                "-o",
                "json",
            ])
            .await;
        assert_report(&out, 1, "error");
    }

    #[tokio::test]
    async fn exit_2_invalid_without_workloads() {
        let mut app = App::new("exit2", 1).await;
        let head = app.repo.head();
        app.push(&head).await;
        let out = app.release(&["deploy", QA, "-o", "json"]).await;
        assert_report(&out, 2, "invalid");
    }

    #[tokio::test]
    async fn exit_2_invalid_for_an_unknown_environment() {
        let app = App::new("exit2env", 1).await;
        let out = app.release(&["deploy", "nosuchenv", "-o", "json"]).await;
        assert_report(&out, 2, "invalid");
    }

    #[tokio::test]
    async fn exit_3_denied_by_a_hook() {
        let app = app_in_qa("exit3", 2).await;
        app.write_config(&format!(
            "hooks:\n{}",
            hook_entry(
                "labels",
                "required-labels",
                "settings: {labels: {owner: \".+\"}}"
            )
        ));
        let out = app.release(&["deploy", QA, "-o", "json"]).await;
        let report = assert_report(&out, 3, "denied");
        assert_eq!(report["hooks"][0]["outcome"]["verdict"], "denied");
    }

    #[tokio::test]
    async fn exit_4_waiting_for_approval() {
        let app = app_in_qa("exit4", 2).await;
        let first = app.commits()[0].clone();
        app.create_workloads(app.production.name(), &format!("{}:{first}", app.image))
            .await;
        // No approvals recorded (nor their namespace, perhaps): the promotion waits for two.
        app.write_config(&format!(
            "hooks:\n{}",
            hook_entry(
                "two-approvals",
                "approval-rules",
                "environments: [production]\nphases: [pre-promote]\nsettings: {required: 2, excludeDeployer: true}",
            )
        ));
        app.release(&["deploy", QA]).await.assert_success();
        let out = app
            .release(&["promote", QA, "production", "-o", "json"])
            .await;
        assert_report(&out, 4, "waiting-for-approval");
    }

    #[tokio::test]
    async fn exit_5_failed_rollout() {
        let mut app = App::new("exit5", 2).await;
        let [first, second] = <[String; 2]>::try_from(app.commits()).unwrap();
        let good = app.push(&first).await;
        app.push_crashing(&second).await;
        app.create_workloads(app.qa.name(), &format!("{}:{first}", app.image))
            .await;
        wait_for_pods_on(&app, app.qa.name(), "web", 3, &good).await;
        let out = app.release(&["deploy", QA, "-o", "json"]).await;
        assert_report(&out, 5, "failed");
    }

    #[tokio::test]
    async fn exit_6_timed_out() {
        let app = app_in_qa("exit6", 2).await;
        let out = app
            .release(&["deploy", QA, "--timeout", "1s", "-o", "json"])
            .await;
        assert_report(&out, 6, "timed-out");
    }

    #[tokio::test]
    async fn exit_7_locked() {
        let app = app_in_qa("exit7", 2).await;
        let leases: Api<Lease> = Api::namespaced(app.env.client("admin").await, app.qa.name());
        let now = jiff::Timestamp::now();
        let held = Lease {
            metadata: ObjectMeta {
                name: Some(lease_name(APP, QA)),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some("ci-runner-7".into()),
                lease_duration_seconds: Some(30),
                acquire_time: Some(MicroTime(now)),
                renew_time: Some(MicroTime(now)),
                ..Default::default()
            }),
        };
        leases
            .create(&PostParams::default(), &held)
            .await
            .expect("create the lock");
        let out = app.release(&["deploy", QA, "-o", "json"]).await;
        assert_report(&out, 7, "locked");
    }
}

/// An app whose qa and production both run commit 0 (web and cache, labelled and without
/// sidecars, so `required-labels` allows them), a `required-labels` hook for qa only with
/// `extra` in its entry, and a `developer` who may release into qa and may not even read
/// production.
async fn app_for_a_qa_only_developer(prefix: &str, extra: &str) -> App {
    let mut app = App::new(prefix, 2).await;
    for commit in app.commits() {
        app.push(&commit).await;
    }
    let env = app.env;
    let admin = env.client("admin").await;
    let first = format!("{}:{}", app.image, app.commits()[0]);
    for ns in [app.qa.name(), app.production.name()] {
        apply(
            &admin,
            ns,
            &deployment("web")
                .image(&first)
                .label("team", "payments")
                .build(),
        )
        .await
        .expect("create deployment");
        apply(
            &admin,
            ns,
            &statefulset("cache")
                .image(&first)
                .label("team", "payments")
                .build(),
        )
        .await
        .expect("create statefulset");
    }
    app.write_config(&format!(
        "hooks:\n{}",
        hook_entry(
            "labels",
            "required-labels",
            &format!("environments: [qa]\nsettings: {{labels: {{team: \".+\"}}}}\n{extra}"),
        )
    ));

    setup_policy_rbac(env).await;
    let qa = app.qa.name();
    grant(
        env,
        qa,
        "developer",
        "deployer",
        deployer_rules(&["deployments", "statefulsets"]),
    )
    .await;
    // Hooks are shown the recorded approvals. plugin/rbac/approvals.yaml would let developers
    // read them — along with every namespace's workloads, which this test must not grant — so
    // only the approvals are granted here.
    ensure_namespace(env, APPROVALS_NAMESPACE).await;
    grant(
        env,
        APPROVALS_NAMESPACE,
        "developer",
        "journal-approvals-reader",
        vec![rule("", &["configmaps"], &["get", "list", "watch"])],
    )
    .await;

    let production = app.production.name();
    for (group, resource) in [
        ("", "pods"),
        ("", "configmaps"),
        ("apps", "deployments"),
        ("apps", "statefulsets"),
    ] {
        assert!(
            !may(env, "developer", production, group, resource, "list").await,
            "the developer must not be able to list {resource} in {production}"
        );
    }
    app
}

#[tokio::test]
async fn deploy_into_qa_needs_no_access_to_production() {
    let app = app_for_a_qa_only_developer("qaonly", "").await;
    let out = app
        .release_as("developer", &["deploy", QA, "-o", "json"])
        .await;
    let report = assert_report(&out, 0, "succeeded");
    assert_eq!(report["hooks"][0]["hook"], "labels", "{out}");
    assert_eq!(report["hooks"][0]["outcome"]["verdict"], "allowed", "{out}");
    wait_for_pods_on(
        &app,
        app.qa.name(),
        "web",
        1,
        &app.digests[&app.repo.head()],
    )
    .await;
}

#[tokio::test]
async fn a_hook_that_needs_every_environment_fails_without_access_to_production() {
    let app = app_for_a_qa_only_developer("qaneeds", "needs: [environments]").await;
    let out: CmdOutput = app
        .release_as("developer", &["deploy", QA, "-o", "json"])
        .await;
    assert!(
        !out.success() && out.code().is_some(),
        "it must fail, with an exit code: {out}"
    );
    let report = assert_valid_report(&out);
    let message = report["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(app.production.name()),
        "the message names the namespace it could not read ({}): {out}",
        app.production.name()
    );
}
