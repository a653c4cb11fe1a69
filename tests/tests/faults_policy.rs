//! A cluster policy someone wrote wrong: every release into the cluster stops, before changing
//! anything, with an error naming the object and the field (exit 2) — never a panic, never a
//! release that runs without the organisation's rules.
//!
//! There is one policy per cluster (ConfigMap `kubectl-release-policy` in
//! `kubectl-release-system`), and a malformed one breaks every release into it: this test has
//! the environment of its own binary, and puts the policy back as it found it.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams};
use kubectl_release_tests::workloads::FIELD_MANAGER;
use kubectl_release_tests::{App, assert_report, ensure_namespace, records, wait_for_pods_on};

const NAMESPACE: &str = "kubectl-release-system";
const NAME: &str = "kubectl-release-policy";
const KEY: &str = "policy.yaml";
const HEADER: &str = "apiVersion: kubectl-release.io/v1alpha1\nkind: ClusterPolicy\n";

/// A module reference that parses and is pinned, so that the field under test is the one at
/// fault. Never fetched: the policy is refused before any module is.
fn pinned_module() -> String {
    format!("oci://127.0.0.1:1/hooks/labels@sha256:{}", "0".repeat(64))
}

/// Writes `text` as the cluster policy, as a platform admin would (server-side apply).
async fn write_policy(api: &Api<ConfigMap>, text: &str) {
    let body = serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": NAME, "namespace": NAMESPACE},
        "data": {KEY: text},
    });
    api.patch(
        NAME,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .unwrap_or_else(|e| panic!("cannot write the cluster policy: {e}"));
}

#[tokio::test]
async fn a_malformed_cluster_policy_stops_every_release_naming_the_object_and_the_field() {
    let mut app = App::new("badpolicy", 2).await;
    for commit in app.commits() {
        app.push(&commit).await;
    }
    let first = app.commits()[0].clone();
    app.create_workloads(app.qa.name(), &format!("{}:{first}", app.image))
        .await;
    wait_for_pods_on(&app, app.qa.name(), "web", 3, &app.digests[&first]).await;
    let env = app.env;
    ensure_namespace(env, NAMESPACE).await;
    let admin = env.client("admin").await;
    let policies: Api<ConfigMap> = Api::namespaced(admin.clone(), NAMESPACE);
    let found = policies
        .get_opt(NAME)
        .await
        .expect("read the cluster policy");

    let module = pinned_module();
    // (what is wrong, the policy, what the message must name besides the object)
    let cases = [
        (
            "a module not pinned by digest",
            format!(
                "{HEADER}hooks:\n  - name: org\n    module: oci://127.0.0.1:1/hooks/labels:latest\n"
            ),
            "hooks[0].module",
        ),
        (
            "a module that is a list",
            format!("{HEADER}hooks:\n  - name: org\n    module: [1, 2]\n"),
            "hooks[0].module",
        ),
        (
            "a timeout that is no duration",
            format!("{HEADER}hooks:\n  - name: org\n    module: {module}\n    timeout: bientôt\n"),
            "hooks[0].timeout",
        ),
        (
            "a misspelt field, not in ASCII",
            format!("{HEADER}hooks:\n  - name: ✓\n    modüle: {module}\n"),
            "modüle",
        ),
        (
            "hooks that are no list",
            format!("{HEADER}hooks: ja\n"),
            "hooks",
        ),
    ];
    for (what, policy, field) in cases {
        write_policy(&policies, &policy).await;
        let out = app.release(&["deploy", "qa", "-o", "json"]).await;
        let report = assert_report(&out, 2, "invalid");
        let message = report["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(&format!("{NAMESPACE}/{NAME}")) && message.contains(field),
            "{what}: the message names the policy object and `{field}`: {out}"
        );
        assert!(!out.stderr.contains("panicked at"), "{what}: {out}");
    }
    let recs = records(&admin, app.qa.name(), "web", "qa").await;
    assert!(recs.is_empty(), "no release ran: {recs:?}");

    // Back as it was: the environment had no policy unless some earlier test wrote one.
    match found {
        Some(previous) => {
            let text = previous
                .data
                .and_then(|mut d| d.remove(KEY))
                .unwrap_or_default();
            write_policy(&policies, &text).await;
        }
        None => {
            policies
                .delete(NAME, &DeleteParams::default())
                .await
                .expect("delete the malformed cluster policy");
        }
    }
    app.release(&["deploy", "qa"]).await.assert_success();
}
