//! The admission webhook end to end: `kubectl-release webhook serve` on loopback, with a
//! certificate from a CA made here, registered with the real API server by URL and CA bundle.
//! Approvals carry the identity the API server authenticated, and workload changes in governed
//! namespaces are judged by the cluster policy's `admission` hooks, whoever makes them.
//!
//! The webhook configurations and the cluster policy are cluster-wide, and each test registers
//! its own webhook and writes its own policy: the tests take [`ONE_WEBHOOK_AT_A_TIME`] for that
//! part, so that none judges another's changes or kills the webhook another is using. What is
//! the test's alone (namespaces, images, releases into namespaces not yet governed) is set up
//! before, in parallel. Independent tests rather than one ordered scenario: each says what it
//! needs (its policy, its webhook), and a failure in one leaves the others' verdicts standing.

use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::ListParams;
use kubectl_release_tests::{
    APPROVAL_LABEL, APPROVALS_NAMESPACE, APPROVALS_WEBHOOK, App, CmdOutput, TestCa, TestEnv,
    WORKLOADS_WEBHOOK, Webhook, apply, assert_report, deployer_rules, deployment, eventually,
    example_hook, govern, grant, metric, push_hook_module, template_image, write_cluster_policy,
};
use serde_json::{Value, json};
use tokio::sync::Mutex;

/// Held from writing the policy and registering the webhook to the end of the test.
static ONE_WEBHOOK_AT_A_TIME: Mutex<()> = Mutex::const_new(());
/// How long the webhook may take to act on a policy change (a watch event, modules compiled
/// once) or the API server on a namespace's new label (an informer).
const PICKED_UP: Duration = Duration::from_secs(30);

const APPROVALS_ALLOWED: &str =
    r#"kubectl_release_webhook_requests_total{kind="approval",verdict="allowed"}"#;
const APPROVALS_DENIED: &str =
    r#"kubectl_release_webhook_requests_total{kind="approval",verdict="denied"}"#;
const WORKLOADS_ALLOWED: &str =
    r#"kubectl_release_webhook_requests_total{kind="workload",verdict="allowed"}"#;
const WORKLOADS_DENIED: &str =
    r#"kubectl_release_webhook_requests_total{kind="workload",verdict="denied"}"#;
const FRESH_READS: &str = "kubectl_release_webhook_fresh_reads_total";
const ENDLESS_ERRORS: &str = r#"kubectl_release_webhook_hook_errors_total{hook="endless"}"#;

/// An app called `name` with `commits` commits, all their images pushed (nothing deployed).
async fn app(prefix: &str, name: &str, commits: usize) -> App {
    let mut app = App::new(prefix, commits).await;
    app.name = name.into();
    app.write_config("");
    for commit in app.commits() {
        app.push(&commit).await;
    }
    app
}

/// `approval-rules` as a cluster-policy hook of the `admission` and `pre-promote` phases for
/// `namespace`: `required` verified approvals from people other than the one making the change.
fn approvals_hook(module: &str, namespace: &str, required: u32) -> String {
    format!(
        "  - name: org-approvals\n    module: {module}\n    phases: [admission, pre-promote]\n    \
         namespaces: [{namespace}]\n    \
         settings: {{required: {required}, excludeDeployer: true, verifiedOnly: true}}\n"
    )
}

/// Pushes the example `approval-rules` module for this app; its pinned reference.
async fn push_approval_rules(app: &App) -> String {
    let (module, _) = example_hook("approval-rules");
    let repository = format!("policies/{}-approvals", app.qa.name());
    push_hook_module(app.env, &module, &repository).await
}

/// `kubectl -n NAMESPACE set image WORKLOAD CONTAINER=IMAGE` as the admin, for real or as a
/// server-side dry run (which the API server sends to the webhooks too).
async fn set_image(
    app: &App,
    namespace: &str,
    workload: &str,
    image: &str,
    dry_run: bool,
) -> CmdOutput {
    let container = workload.rsplit('/').next().expect("KIND/NAME");
    let assignment = format!("{container}={image}");
    let mut args = vec!["-n", namespace, "set", "image", workload, &assignment];
    if dry_run {
        args.push("--dry-run=server");
    }
    app.env.kubectl(&args).await
}

/// Whether kubectl's answer is this webhook's refusal (not its absence, not a timeout).
fn denied_by(out: &CmdOutput, webhook: &str) -> bool {
    !out.success()
        && out.stderr.contains(&format!(
            "admission webhook \"{webhook}\" denied the request"
        ))
}

/// Waits until the API server sends changes in a namespace just labelled as governed to the
/// webhook (its namespace informer sees the label a moment later): a server-side dry run of a
/// change the policy refuses is refused by the webhook. Returns that refusal.
async fn await_governed(app: &App, namespace: &str, workload: &str, image: &str) -> CmdOutput {
    eventually(
        &format!("the webhook judges changes in {namespace}"),
        PICKED_UP,
        || async {
            let out = set_image(app, namespace, workload, image, true).await;
            if denied_by(&out, WORKLOADS_WEBHOOK) {
                Ok(out)
            } else {
                Err(out.to_string())
            }
        },
    )
    .await
}

/// The image of the first container of `namespace`'s Deployment `web`.
async fn web_image(app: &App, namespace: &str) -> Option<String> {
    template_image(&app.deployment(namespace, "web").await)
}

/// An approval ConfigMap of `app` for production, as `kubectl release approve` writes one,
/// holding `approval` (its `approval.json`).
fn approval_configmap(app: &App, name: &str, approval: &Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": APPROVALS_NAMESPACE,
            "labels": {
                "app.kubernetes.io/managed-by": "kubectl-release",
                APPROVAL_LABEL: "true",
                "kubectl-release.io/app": app.name,
                "kubectl-release.io/environment": "production",
            },
        },
        "data": {"approval.json": approval.to_string()},
    })
}

/// The `approval.json` of an approval of `commit`'s image for production by `user`, claiming
/// `verified` and `groups`.
fn approval(app: &App, user: &str, commit: &str, verified: bool, groups: &[&str]) -> Value {
    let now = jiff::Timestamp::now();
    json!({
        "user": user,
        "environment": "production",
        "commit": commit,
        "digests": [app.digests[commit]],
        "approvedAt": now.to_string(),
        "expiresAt": (now + jiff::SignedDuration::from_hours(24)).to_string(),
        "verified": verified,
        "groups": groups,
    })
}

/// `kubectl --context CONTEXT create -f` of `manifest`.
async fn create_as(app: &App, context: &str, manifest: &Value) -> CmdOutput {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), manifest.to_string()).unwrap();
    let path = file.path().to_str().unwrap();
    app.env
        .kubectl(&["--context", context, "create", "-f", path])
        .await
}

/// The app's approvals as stored: ConfigMap name and `approval.json`, oldest first.
async fn stored_approvals(app: &App) -> Vec<(String, Value)> {
    let api: Api<ConfigMap> = Api::namespaced(app.env.client("admin").await, APPROVALS_NAMESPACE);
    let selector = format!("{APPROVAL_LABEL}=true,kubectl-release.io/app={}", app.name);
    let mut approvals: Vec<(String, Value)> = api
        .list(&ListParams::default().labels(&selector))
        .await
        .expect("list approvals")
        .items
        .into_iter()
        .map(|cm| {
            let name = cm.metadata.name.clone().unwrap_or_default();
            let text = cm.data.as_ref().and_then(|d| d.get("approval.json"));
            let text = text.unwrap_or_else(|| panic!("approval {name} has no approval.json"));
            (
                name,
                serde_json::from_str(text).expect("approval.json is JSON"),
            )
        })
        .collect();
    approvals.sort_by(|a, b| a.1["approvedAt"].as_str().cmp(&b.1["approvedAt"].as_str()));
    approvals
}

/// The stored approval by `user`; panics showing them all unless there is exactly one.
async fn stored_approval_by(app: &App, user: &str) -> (String, Value) {
    let approvals = stored_approvals(app).await;
    let mine: Vec<_> = approvals
        .iter()
        .filter(|(_, a)| a["user"] == user)
        .collect();
    assert_eq!(mine.len(), 1, "one approval by {user}: {approvals:#?}");
    mine[0].clone()
}

fn groups(approval: &Value) -> Vec<&str> {
    approval["groups"]
        .as_array()
        .map(|g| g.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn approvals_carry_the_identity_the_api_server_authenticated() {
    let app = app("wh-attest", "attested", 2).await;
    let [first, second] = <[String; 2]>::try_from(app.commits()).unwrap();
    let tagged = format!("{}:{first}", app.image);
    app.create_workloads(app.qa.name(), &tagged).await;
    app.release(&["deploy", "qa", "--commit", &first])
        .await
        .assert_success();
    // Later, the approver deploys into qa too: what they released they may not approve.
    let rules = deployer_rules(&["deployments", "statefulsets", "cronjobs"]);
    grant(app.env, app.qa.name(), "approver", "qa-deployer", rules).await;

    let _alone = ONE_WEBHOOK_AT_A_TIME.lock().await;
    write_cluster_policy(app.env, "").await;
    let webhook = Webhook::start(app.env).await;
    webhook.register().await;
    assert_eq!(webhook.get("/healthz").await, (200, "ok\n".to_string()));
    assert_eq!(webhook.get("/readyz").await.0, 200);
    let allowed_before = webhook.metric(APPROVALS_ALLOWED).await;
    let denied_before = webhook.metric(APPROVALS_DENIED).await;

    // One approver writes approvals in other people's names, claiming `verified`: refused,
    // naming both the claimed and the real user.
    for claimed in ["alice", "bob"] {
        let forged = approval(&app, claimed, &first, true, &["approvers"]);
        let name = format!("attested.production.forged-{claimed}");
        let out = create_as(&app, "approver", &approval_configmap(&app, &name, &forged)).await;
        assert!(denied_by(&out, APPROVALS_WEBHOOK), "{out}");
        assert!(
            out.stderr.contains(&format!("`{claimed}`")) && out.stderr.contains("`approver`"),
            "{out}"
        );
    }
    assert_eq!(stored_approvals(&app).await, [], "forged approvals stored");

    // `kubectl release approve` by an approver: stored with the API server's name and groups.
    app.release_as("approver", &["approve", "production"])
        .await
        .assert_success();
    let (name, stamped) = stored_approval_by(&app, "approver").await;
    assert_eq!(stamped["verified"], true, "{stamped:#}");
    assert!(groups(&stamped).contains(&"approvers"), "{stamped:#}");
    assert_eq!(stamped["deployer"], "admin", "{stamped:#}");
    assert_eq!(
        stamped["digests"],
        json!([app.digests[&first]]),
        "{stamped:#}"
    );

    // Written with kubectl under one's own name, unverified, in a group one is not in: stamped
    // with what the API server authenticated instead.
    let claimed = approval(&app, "approver2", &first, false, &["platform-admins"]);
    let own = approval_configmap(&app, "attested.production.by-hand", &claimed);
    create_as(&app, "approver2", &own).await.assert_success();
    let (_, by_hand) = stored_approval_by(&app, "approver2").await;
    assert_eq!(by_hand["verified"], true, "{by_hand:#}");
    let by_hand_groups = groups(&by_hand);
    assert!(
        by_hand_groups.contains(&"approvers") && !by_hand_groups.contains(&"platform-admins"),
        "{by_hand:#}"
    );

    // Once recorded, an approval is not changed, not even by a cluster admin.
    let rewritten = approval(&app, "approver", &second, true, &["approvers"]);
    let patch = json!({"data": {"approval.json": rewritten.to_string()}}).to_string();
    let out = app
        .env
        .kubectl(&[
            "-n",
            APPROVALS_NAMESPACE,
            "patch",
            "configmap",
            &name,
            "--type",
            "merge",
            "-p",
            &patch,
        ])
        .await;
    assert!(denied_by(&out, APPROVALS_WEBHOOK), "{out}");
    assert!(
        out.stderr
            .contains("approvals cannot be changed once recorded"),
        "{out}"
    );
    assert_eq!(stored_approval_by(&app, "approver").await.1, stamped);

    // The approver releases the next build into qa; their approval of it is refused, someone
    // else's is stamped with who released it.
    app.release_as("approver", &["deploy", "qa"])
        .await
        .assert_success();
    let out = app
        .release_as("approver", &["approve", "production"])
        .await
        .assert_failure();
    assert!(
        out.stderr
            .contains("`approver` released what this approval is for"),
        "{out}"
    );
    app.release_as("approver2", &["approve", "production"])
        .await
        .assert_success();
    let of_second: Vec<Value> = stored_approvals(&app)
        .await
        .into_iter()
        .map(|(_, a)| a)
        .filter(|a| a["digests"] == json!([app.digests[&second]]))
        .collect();
    assert_eq!(of_second.len(), 1, "{of_second:#?}");
    assert_eq!(of_second[0]["user"], "approver2");
    assert_eq!(of_second[0]["deployer"], "approver");
    assert_eq!(of_second[0]["verified"], true);

    // Every answer was counted: three approvals stamped; three creations refused, and the
    // update once or twice (the API server judges a refused update again when it first judged
    // it against its cached copy of the object).
    let metrics = webhook.metrics().await;
    let allowed = metric(&metrics, APPROVALS_ALLOWED) - allowed_before;
    let denied = metric(&metrics, APPROVALS_DENIED) - denied_before;
    assert_eq!(allowed, 3.0, "{metrics}");
    assert!((4.0..=5.0).contains(&denied), "{metrics}");
}

#[tokio::test]
async fn workload_changes_in_a_governed_namespace_are_judged_by_the_cluster_policy() {
    let app = app("wh-governed", "governed", 2).await;
    let [first, second] = <[String; 2]>::try_from(app.commits()).unwrap();
    let tagged = format!("{}:{first}", app.image);
    app.create_workloads(app.qa.name(), &tagged).await;
    app.create_workloads(app.production.name(), &tagged).await;
    // Production runs the first build as released by the plugin (its workloads say which app
    // and environment they belong to); qa has the second.
    app.release(&["deploy", "qa", "--commit", &first])
        .await
        .assert_success();
    app.release(&["promote", "qa", "production"])
        .await
        .assert_success();
    app.release(&["deploy", "qa"]).await.assert_success();
    let module = push_approval_rules(&app).await;
    let production = app.production.name();
    let (old, new) = (app.pinned(&first), app.pinned(&second));

    let _alone = ONE_WEBHOOK_AT_A_TIME.lock().await;
    write_cluster_policy(app.env, &approvals_hook(&module, production, 2)).await;
    let webhook = Webhook::start(app.env).await;
    webhook.register().await;
    govern(app.env, production).await;
    await_governed(&app, production, "deployment/web", &new).await;

    // No approvals: `kubectl set image` around the plugin is denied with the hook's reasons.
    let out = set_image(&app, production, "deployment/web", &new, false).await;
    assert!(denied_by(&out, WORKLOADS_WEBHOOK), "{out}");
    for words in [
        "org-approvals (cluster-policy)",
        "needs 2 verified approvals of exactly these digests for `production` from people other than admin, has none",
    ] {
        assert!(out.stderr.contains(words), "{words:?} not in: {out}");
    }
    assert_eq!(web_image(&app, production).await.as_deref(), Some(&*old));

    // Two approvers approve what runs in qa: the same change is allowed.
    for approver in ["approver", "approver2"] {
        app.release_as(approver, &["approve", "production"])
            .await
            .assert_success();
    }
    set_image(&app, production, "deployment/web", &new, false)
        .await
        .assert_success();
    assert_eq!(web_image(&app, production).await.as_deref(), Some(&*new));
    // Once its watches have delivered the approvals, a change they allow is judged from the
    // webhook's caches alone: no read of the API server (kept for what the caches would deny).
    let cache = "statefulset/cache";
    eventually("the caches alone allow the change", PICKED_UP, || async {
        let before = webhook.metric(FRESH_READS).await;
        let out = set_image(&app, production, cache, &new, true).await;
        match (out.success(), webhook.metric(FRESH_READS).await - before) {
            (true, 0.0) => Ok(()),
            (allowed, reads) => Err(format!("allowed: {allowed}, fresh reads: {reads}: {out}")),
        }
    })
    .await;

    // The platform team asks for three: the running webhook follows, no restart.
    set_image(&app, production, cache, &new, true)
        .await
        .assert_success();
    write_cluster_policy(app.env, &approvals_hook(&module, production, 3)).await;
    let out = eventually("the webhook applies `required: 3`", PICKED_UP, || async {
        let out = set_image(&app, production, cache, &new, true).await;
        if denied_by(&out, WORKLOADS_WEBHOOK) {
            Ok(out)
        } else {
            Err(out.to_string())
        }
    })
    .await;
    assert!(
        out.stderr
            .contains("needs 3 verified approvals of exactly these digests for `production`")
            && out.stderr.contains("has 2 (approver"),
        "{out}"
    );
    write_cluster_policy(app.env, &approvals_hook(&module, production, 2)).await;
    eventually(
        "the webhook applies `required: 2` again",
        PICKED_UP,
        || async {
            let out = set_image(&app, production, cache, &new, true).await;
            if out.success() {
                Ok(())
            } else {
                Err(out.to_string())
            }
        },
    )
    .await;

    // The plugin's own promotion passes the same check, client-side and in the webhook.
    let out = app
        .release(&["promote", "qa", "production", "-o", "json"])
        .await;
    let report = assert_report(&out, 0, "succeeded");
    let policy_verdicts: Vec<&Value> = report["hooks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["hook"] == "org-approvals")
        .collect();
    assert!(
        !policy_verdicts.is_empty()
            && policy_verdicts
                .iter()
                .all(|h| h["source"] == "cluster-policy" && h["outcome"]["verdict"] == "allowed"),
        "{}",
        report["hooks"]
    );
    let cache = app.statefulset(production, "cache").await;
    let cache_image = cache.spec.template.spec.unwrap().containers[0]
        .image
        .clone();
    assert_eq!(cache_image.as_deref(), Some(&*new));

    // Back to the first build, by hand: nobody approved it, so production refuses; qa, which
    // no hook governs, takes it.
    let out = set_image(&app, production, "deployment/web", &old, false).await;
    assert!(denied_by(&out, WORKLOADS_WEBHOOK), "{out}");
    assert!(out.stderr.contains("has none"), "{out}");
    assert_eq!(web_image(&app, production).await.as_deref(), Some(&*new));
    set_image(&app, app.qa.name(), "deployment/web", &old, false)
        .await
        .assert_success();
    assert_eq!(web_image(&app, app.qa.name()).await.as_deref(), Some(&*old));

    let metrics = webhook.metrics().await;
    assert!(metric(&metrics, WORKLOADS_DENIED) >= 3.0, "{metrics}");
    assert_eq!(
        metric(&metrics, "kubectl_release_webhook_policy_hooks"),
        1.0,
        "{metrics}"
    );
}

#[tokio::test]
async fn with_the_webhook_down_governed_changes_are_refused_and_others_go_through() {
    let app = app("wh-down", "outage", 2).await;
    let [first, second] = <[String; 2]>::try_from(app.commits()).unwrap();
    let client = app.env.client("admin").await;
    for namespace in [app.qa.name(), app.production.name()] {
        let web = deployment("web").image(app.pinned(&first)).build();
        apply(&client, namespace, &web).await.expect("create web");
    }
    let module = push_approval_rules(&app).await;
    let production = app.production.name();
    let new = app.pinned(&second);

    let _alone = ONE_WEBHOOK_AT_A_TIME.lock().await;
    write_cluster_policy(app.env, &approvals_hook(&module, production, 2)).await;
    let webhook = Webhook::start(app.env).await;
    webhook.register().await;
    govern(app.env, production).await;
    await_governed(&app, production, "deployment/web", &new).await;

    let stopped = webhook.kill().await;
    assert!(!stopped.success(), "{stopped}");

    // Fail closed where the policy governs, with the API server saying why.
    let out = set_image(&app, production, "deployment/web", &new, false).await;
    assert!(!out.success(), "{out}");
    assert!(
        out.stderr
            .contains(&format!("failed calling webhook \"{WORKLOADS_WEBHOOK}\"")),
        "{out}"
    );
    assert_eq!(web_image(&app, production).await, Some(app.pinned(&first)));
    let unattested = approval(&app, "approver", &first, false, &[]);
    let manifest = approval_configmap(&app, "outage.production.while-down", &unattested);
    let out = create_as(&app, "approver", &manifest).await;
    assert!(
        !out.success()
            && out
                .stderr
                .contains(&format!("failed calling webhook \"{APPROVALS_WEBHOOK}\"")),
        "{out}"
    );

    // Elsewhere nothing changes.
    set_image(&app, app.qa.name(), "deployment/web", &new, false)
        .await
        .assert_success();
    assert_eq!(web_image(&app, app.qa.name()).await, Some(new));
}

/// A hook that answers `validate-settings` (the webhook asks when it loads the policy) and
/// never returns from `check`: `_start` loops forever unless `argv[1]` starts with `v`.
const LOOPS_ON_CHECK: &str = r#"(module
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $sizes (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_get" (func $args (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 2048) "{\"allowed\":true}")
  (func (export "_start")
    (drop (call $sizes (i32.const 0) (i32.const 4)))
    (drop (call $args (i32.const 64) (i32.const 1024)))
    (if (i32.eq (i32.load8_u (i32.load (i32.const 68))) (i32.const 118))
      (then
        (i32.store (i32.const 16) (i32.const 2048))
        (i32.store (i32.const 20) (i32.const 16))
        (drop (call $fd_write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 32)))
        (return)))
    (loop $forever (br $forever))))"#;

#[tokio::test]
async fn a_hook_that_loops_is_cut_off_and_the_api_server_gets_the_webhooks_answer() {
    let app = app("wh-loop", "looping", 2).await;
    let [first, second] = <[String; 2]>::try_from(app.commits()).unwrap();
    let production = app.production.name();
    let web = deployment("web").image(app.pinned(&first)).build();
    apply(&app.env.client("admin").await, production, &web)
        .await
        .expect("create web");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("endless.wasm");
    std::fs::write(&path, wat::parse_str(LOOPS_ON_CHECK).unwrap()).unwrap();
    let repository = format!("policies/{}-endless", app.qa.name());
    let module = push_hook_module(app.env, &path, &repository).await;
    let new = app.pinned(&second);

    let _alone = ONE_WEBHOOK_AT_A_TIME.lock().await;
    let hook = format!(
        "  - name: endless\n    module: {module}\n    phases: [admission]\n    \
         namespaces: [{production}]\n    timeout: 1s\n"
    );
    write_cluster_policy(app.env, &hook).await;
    let webhook = Webhook::start(app.env).await;
    webhook.register().await;
    govern(app.env, production).await;
    await_governed(&app, production, "deployment/web", &new).await;
    let errors_before = webhook.metric(ENDLESS_ERRORS).await;
    let denied_before = webhook.metric(WORKLOADS_DENIED).await;

    // kubectl gets the webhook's own verdict: the hook stopped at its timeout, the change
    // refused (failurePolicy Fail), and not the API server giving up on the webhook.
    let out = set_image(&app, production, "deployment/web", &new, false).await;
    assert!(denied_by(&out, WORKLOADS_WEBHOOK), "{out}");
    assert!(
        out.stderr
            .contains("hook `endless` did not finish within its timeout of 1s"),
        "{out}"
    );
    assert!(!out.stderr.contains("failed calling webhook"), "{out}");
    assert_eq!(web_image(&app, production).await, Some(app.pinned(&first)));

    let metrics = webhook.metrics().await;
    // The hook error is counted, once per review: each refusal the webhook sent is the hook's
    // error (the API server may ask twice about one refused update, see above).
    let errors = metric(&metrics, ENDLESS_ERRORS) - errors_before;
    let denied = metric(&metrics, WORKLOADS_DENIED) - denied_before;
    assert!(errors >= 1.0 && errors == denied, "{metrics}");
    // By the webhook's own clock, every workload review was answered within the deadline the
    // API server was given (the configuration's timeoutSeconds).
    let deadline = app
        .env
        .kubectl(&[
            "get",
            "validatingwebhookconfiguration",
            "kubectl-release-workloads",
            "-o",
            "jsonpath={.webhooks[0].timeoutSeconds}",
        ])
        .await
        .assert_success()
        .stdout;
    let count = metric(
        &metrics,
        r#"kubectl_release_webhook_request_duration_seconds_count{kind="workload"}"#,
    );
    let within = metric(
        &metrics,
        &format!(
            r#"kubectl_release_webhook_request_duration_seconds_bucket{{le="{}.0",kind="workload"}}"#,
            deadline.trim()
        ),
    );
    assert!(count > 0.0 && within == count, "{metrics}");
}

/// A label that puts a namespace under the test's policy hook (its `namespaceSelector`).
const VAULT_LABEL: &str = "kubectl-release-test/tier";

/// `kubectl label namespace NAMESPACE LABEL` (`key=value`, or `key-` to remove it).
async fn label_namespace(app: &App, namespace: &str, label: &str) {
    app.env
        .kubectl(&["label", "namespace", namespace, label, "--overwrite"])
        .await
        .assert_success();
}

#[tokio::test]
async fn a_hook_that_selects_namespaces_by_label_follows_their_labels() {
    let app = app("wh-labels", "labelled", 1).await;
    let [commit] = <[String; 1]>::try_from(app.commits()).unwrap();
    let production = app.production.name();
    let web = deployment("web").image(app.pinned(&commit)).build();
    apply(&app.env.client("admin").await, production, &web)
        .await
        .expect("create web");
    let module = push_approval_rules(&app).await;
    let unapproved = format!("{}:{commit}", app.image);

    let _alone = ONE_WEBHOOK_AT_A_TIME.lock().await;
    let hook = format!(
        "  - name: org-approvals\n    module: {module}\n    phases: [admission]\n    \
         namespaceSelector: \"{VAULT_LABEL}=vault\"\n    \
         settings: {{required: 1, verifiedOnly: true}}\n"
    );
    write_cluster_policy(app.env, &hook).await;
    let webhook = Webhook::start(app.env).await;
    webhook.register().await;
    govern(app.env, production).await;

    // The webhook learns the label from its watch of namespaces, set after it started: the
    // namespace is judged by the hook, and the unapproved change refused.
    label_namespace(&app, production, &format!("{VAULT_LABEL}=vault")).await;
    let out = await_governed(&app, production, "deployment/web", &unapproved).await;
    assert!(
        out.stderr.contains("org-approvals (cluster-policy)"),
        "{out}"
    );

    // Without the label the hook no longer governs it: the webhook is asked and allows.
    label_namespace(&app, production, &format!("{VAULT_LABEL}-")).await;
    let allowed_before = webhook.metric(WORKLOADS_ALLOWED).await;
    eventually(
        "the hook stops governing the unlabelled namespace",
        PICKED_UP,
        || async {
            let out = set_image(&app, production, "deployment/web", &unapproved, true).await;
            if out.success() {
                Ok(())
            } else {
                Err(out.to_string())
            }
        },
    )
    .await;
    assert!(webhook.metric(WORKLOADS_ALLOWED).await > allowed_before);

    // And labelled again, governed again.
    label_namespace(&app, production, &format!("{VAULT_LABEL}=vault")).await;
    await_governed(&app, production, "deployment/web", &unapproved).await;
    let out = set_image(&app, production, "deployment/web", &unapproved, false).await;
    assert!(denied_by(&out, WORKLOADS_WEBHOOK), "{out}");
    assert_eq!(web_image(&app, production).await, Some(app.pinned(&commit)));
}

/// Flags that could never work are refused at once, exit 2, naming the flag and the fix:
/// `webhook config` prints nothing to apply, and `webhook serve` stops before it connects to
/// anything (the API server would accept an http URL or any CA bytes and then fail every call).
#[tokio::test]
async fn webhook_flags_that_could_never_work_exit_2_naming_the_fix() {
    let env = TestEnv::shared();
    let dir = tempfile::tempdir().expect("a temp dir");
    let files = TestCa::new().write_serving_files(dir.path());
    let not_pem = dir.path().join("not-pem.txt");
    std::fs::write(&not_pem, "web-1\n").expect("write a file that is not PEM");
    let missing = dir.path().join("missing.pem");
    let path = |p: &std::path::Path| p.to_str().expect("a UTF-8 temp path").to_string();
    let (ca, cert, key) = (path(&files.ca), path(&files.cert), path(&files.key));
    let (not_pem, missing) = (path(&not_pem), path(&missing));
    let config = |url: &str, bundle: &str| {
        ["webhook", "config", "--url", url, "--ca-bundle", bundle]
            .map(String::from)
            .to_vec()
    };
    let serve = |cert: &str, key: &str| {
        [
            "webhook",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            cert,
            "--tls-key",
            key,
        ]
        .map(String::from)
        .to_vec()
    };
    let cases = [
        (config("http://127.0.0.1:9443", &ca), "https only"),
        (config("https://u@127.0.0.1:9443", &ca), "a user in the URL"),
        (
            config("https://127.0.0.1:9443", &not_pem),
            "holds no PEM `BEGIN CERTIFICATE`",
        ),
        (
            config("https://127.0.0.1:9443", &missing),
            "--ca-bundle: cannot read",
        ),
        (
            serve(&missing, &key),
            "(--tls-cert, --tls-key): cannot read",
        ),
        (serve(&cert, &not_pem), "cannot read a private key"),
        (serve(&ca, &key), "cannot serve the certificate"),
    ];
    for (args, says) in cases {
        let out = kubectl_release_tests::run(env.plugin().args(&args)).await;
        assert_eq!(out.code(), Some(2), "{args:?}: {out}");
        assert!(
            out.stderr.contains(says),
            "{args:?}: expected {says:?}: {out}"
        );
        assert!(out.stdout.is_empty(), "{args:?}: nothing to apply: {out}");
    }
    // The same flags with good values work: the checks refuse only what is wrong.
    let out = kubectl_release_tests::run(env.plugin().args(config("https://127.0.0.1:9443", &ca)))
        .await
        .assert_success();
    assert!(out.stdout.contains("caBundle"), "{out}");
}
