//! The cluster policy end to end: mandatory hooks whose modules are OCI artifacts in the test
//! registry, loaded for every release into the cluster, guarded by RBAC.
//!
//! There is one policy per cluster, so the policy scenarios run as one test, in order; each
//! policy is scoped to the test's namespaces.

use kubectl_release_tests::{App, example_hook};
use serde_json::Value;

const POLICY_RBAC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../plugin/rbac/policy.yaml");

/// Writes the cluster policy as the platform admin, with `hooks` (YAML list items).
async fn write_policy(app: &App, hooks: &str) {
    let policy =
        format!("apiVersion: kubectl-release.io/v1alpha1\nkind: ClusterPolicy\nhooks:\n{hooks}");
    let manifest = serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "kubectl-release-policy", "namespace": "kubectl-release-system"},
        "data": {"policy.yaml": policy},
    });
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), manifest.to_string()).unwrap();
    app.env
        .kubectl(&[
            "--context",
            "platform-admin",
            "apply",
            "-f",
            file.path().to_str().unwrap(),
        ])
        .await
        .assert_success();
}

fn labels_hook(module: &str, namespace: &str, required: &str) -> String {
    format!(
        "  - name: org-labels\n    module: {module}\n    namespaces: [{namespace}]\n    settings: {{labels: {{{required}: \".+\"}}}}\n"
    )
}

fn same_image_hook(module: &str, namespace: &str) -> String {
    format!("  - name: org-same-image\n    module: {module}\n    namespaces: [{namespace}]\n")
}

/// The blob file of `digest` in the test registry's storage.
fn registry_blob(app: &App, digest: &str) -> std::path::PathBuf {
    let hex = digest.trim_start_matches("sha256:");
    app.env
        .dir()
        .join("registry/docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .join("data")
}

/// What a release would change: the generation and the image of the Deployment's spec.
/// (Its resourceVersion moves on with every status update while the pods come up.)
async fn spec_state(app: &App) -> (Option<i64>, Option<String>) {
    let d = app.deployment(app.qa.name(), "web").await;
    (
        d.metadata.generation,
        d.spec.template.spec.unwrap().containers[0].image.clone(),
    )
}

#[tokio::test]
async fn the_cluster_policy_applies_to_apps_that_have_no_hooks_of_their_own() {
    let mut app = App::new("policy", 1).await;
    let head = app.repo.head();
    app.push(&head).await;
    // Workloads labelled with `team` only; release.yaml has no hooks at all.
    app.create_workloads(app.qa.name(), &format!("{}:{head}", app.image))
        .await;
    app.env
        .kubectl(&["apply", "-f", POLICY_RBAC])
        .await
        .assert_success();
    let cache = tempfile::tempdir().unwrap();
    let release = |args: &'static [&'static str]| {
        let mut cmd = app.env.plugin();
        cmd.args(args)
            .current_dir(app.repo.path())
            .env("KUBECTL_RELEASE_CACHE_DIR", cache.path());
        async move { kubectl_release_tests::run(&mut cmd).await }
    };

    // The platform team publishes its rule as an OCI artifact.
    let (module, sha) = example_hook("required-labels");
    let repo = format!("oci://{}/policies/{}:v1", app.env.registry(), app.qa.name());
    let out = app
        .release(&[
            "hooks",
            "push",
            module.to_str().unwrap(),
            &repo,
            "-o",
            "json",
        ])
        .await
        .assert_success();
    let pushed: Value = serde_json::from_str(&out.stdout).unwrap();
    let pinned = pushed["reference"].as_str().unwrap().to_string();
    assert!(pinned.contains("@sha256:"), "{pinned}");
    assert_eq!(pushed["sha256"], sha.as_str());

    // Pulled by digest, it is byte for byte the module.
    let pulled = app
        .release(&["hooks", "pull", &pinned, "-o", "json"])
        .await
        .assert_success();
    let pulled: Value = serde_json::from_str(&pulled.stdout).unwrap();
    assert_eq!(pulled["sha256"], sha.as_str());

    // A developer cannot write the policy; the platform admin can.
    let out = app
        .env
        .kubectl(&[
            "--context",
            "developer",
            "-n",
            "kubectl-release-system",
            "create",
            "configmap",
            "kubectl-release-policy",
            "--from-literal=policy.yaml=hooks: []",
        ])
        .await;
    assert!(
        !out.success() && out.stderr.contains("forbidden"),
        "{out:?}"
    );
    write_policy(&app, &labels_hook(&pinned, app.qa.name(), "owner")).await;
    let out = app
        .env
        .kubectl(&[
            "--context",
            "developer",
            "-n",
            "kubectl-release-system",
            "delete",
            "configmap",
            "kubectl-release-policy",
        ])
        .await;
    assert!(
        !out.success() && out.stderr.contains("forbidden"),
        "{out:?}"
    );

    // The policy's rule denies: no owner label. Exit 3, nothing changed, marked as the cluster's.
    let before = spec_state(&app).await;
    let out = release(&["deploy", "qa", "-o", "json"]).await;
    assert_eq!(out.code(), Some(3), "{out:?}");
    let report: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(report["hooks"][0]["source"], "cluster-policy", "{report}");
    assert_eq!(
        report["hooks"][0]["outcome"]["verdict"], "denied",
        "{report}"
    );
    assert!(
        out.stderr.contains("org-labels (cluster-policy)"),
        "{}",
        out.stderr
    );
    assert_eq!(spec_state(&app).await, before);

    let shown = release(&["policy", "show", "qa"])
        .await
        .assert_success()
        .stdout;
    assert!(
        shown.lines().any(|l| l.starts_with("qa ")
            && l.contains("cluster-policy")
            && l.contains("org-labels")),
        "{shown}"
    );

    // A policy hook that allows (same-image: qa takes no promotions, so it has nothing to
    // compare): the deploy goes through, and the record names the policy hook's verdict.
    let (allowing, _) = example_hook("same-image-across-envs");
    let repo = format!(
        "oci://{}/policies/{}-same-image:v1",
        app.env.registry(),
        app.qa.name()
    );
    let out = app
        .release(&[
            "hooks",
            "push",
            allowing.to_str().unwrap(),
            &repo,
            "-o",
            "json",
        ])
        .await
        .assert_success();
    let allowing = serde_json::from_str::<Value>(&out.stdout).unwrap()["reference"]
        .as_str()
        .unwrap()
        .to_string();
    write_policy(&app, &same_image_hook(&allowing, app.qa.name())).await;
    let out = release(&["deploy", "qa", "-o", "json"])
        .await
        .assert_success();
    let report: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(report["hooks"][0]["source"], "cluster-policy");
    assert_eq!(report["hooks"][0]["outcome"]["verdict"], "allowed");
    let history: Value = serde_json::from_str(
        &release(&["history", "qa", "-o", "json"])
            .await
            .assert_success()
            .stdout,
    )
    .unwrap();
    assert_eq!(history[0]["hooks"][0]["hook"], "org-same-image");
    assert_eq!(history[0]["hooks"][0]["source"], "cluster-policy");

    // Once cached, a module is used offline: the same digest behind an unreachable registry.
    let offline = allowing.replace(app.env.registry(), "127.0.0.1:1");
    write_policy(&app, &same_image_hook(&offline, app.qa.name())).await;
    let out = release(&["rollback", "qa", "--to-revision", "1", "--dry-run"]).await;
    assert_eq!(out.code(), Some(0), "{out:?}");

    // An uncached module behind an unreachable registry denies rather than skips the rule.
    let missing = format!("oci://127.0.0.1:1/policies/none@sha256:{}", "0".repeat(64));
    write_policy(&app, &labels_hook(&missing, app.qa.name(), "team")).await;
    let out = release(&["rollback", "qa", "--to-revision", "1", "--dry-run"]).await;
    assert_eq!(out.code(), Some(3), "{out:?}");
    assert!(
        out.stderr.contains("cluster policy hook `org-labels`")
            && out.stderr.contains("the release is denied"),
        "{}",
        out.stderr
    );

    // A tampered artifact: another module pushed, then its bytes changed in the registry's
    // storage. The digest no longer matches: refused, before anything compiles it.
    let (other, _) = example_hook("approval-rules");
    let repo = format!(
        "oci://{}/policies/{}-tampered:v1",
        app.env.registry(),
        app.qa.name()
    );
    let out = app
        .release(&[
            "hooks",
            "push",
            other.to_str().unwrap(),
            &repo,
            "-o",
            "json",
        ])
        .await
        .assert_success();
    let tampered = serde_json::from_str::<Value>(&out.stdout).unwrap()["reference"]
        .as_str()
        .unwrap()
        .to_string();
    let layer = serde_json::from_str::<Value>(&out.stdout).unwrap()["sha256"]
        .as_str()
        .unwrap()
        .to_string();
    std::fs::write(registry_blob(&app, &layer), b"\0asm tampered bytes").unwrap();
    write_policy(&app, &labels_hook(&tampered, app.qa.name(), "team")).await;
    let out = release(&["rollback", "qa", "--to-revision", "1", "--dry-run"]).await;
    assert_eq!(out.code(), Some(3), "{out:?}");
    assert!(
        out.stderr.to_lowercase().contains("digest"),
        "{}",
        out.stderr
    );

    // A malformed policy is a config error naming cluster, object and field; nothing deploys.
    write_policy(&app, "  - name: broken\n    module: oci://x/y:latest\n").await;
    let out = release(&["deploy", "qa"]).await;
    assert_eq!(out.code(), Some(2), "{out:?}");
    assert!(out.stderr.contains("ConfigMap kubectl-release-system/kubectl-release-policy key policy.yaml:5: hooks[0].module"), "{}", out.stderr);
    write_policy(&app, "").await;
}
