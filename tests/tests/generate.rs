//! `generate`: an app's manifests rendered from its spec by the `web-service-generator` module,
//! deployed on the real control plane; `--check` as the CI gate; determinism; a generator that
//! loops is stopped by the sandbox and nothing is written; a generator the cluster policy
//! mandates wins, and its new version is enforced at release.

use kubectl_release_tests::{App, example_hook, push_hook_module, write_cluster_policy_sections};

const SPEC: &str = "spec:\n  containers:\n    web:\n      args: [--listen, \":8080\"]\n      ports: [{name: http, port: 8080}]\n      variables: {LOG_LEVEL: info}\n      resources: {requests: {cpu: 10m, memory: 16Mi}}\n  replicas: 3\n  service: {port: 80}\n  environments:\n    qa: {replicas: 2, variables: {LOG_LEVEL: debug}}\n";

/// release.yaml with qa and production generated into `kubernetes/<env>` by `module`.
fn write_config(app: &App, module: &std::path::Path, sha: &str, extra: &str) {
    let config = format!(
        "apiVersion: kubectl-release.io/v1alpha1\nkind: ReleaseConfig\napp: {name}\nimage: {image}\n\
         environments:\n  - name: qa\n    context: qa\n    namespace: {qa}\n    manifests: kubernetes/qa\n\
         \x20 - name: production\n    context: production\n    namespace: {prod}\n    promoteFrom: qa\n    manifests: kubernetes/production\n\
         {SPEC}generator:\n  module: {module}\n  sha256: {sha}\n  settings:\n    labels: {{team: payments}}\n{extra}",
        name = app.name,
        image = app.image,
        qa = app.qa.name(),
        prod = app.production.name(),
        module = module.display(),
    );
    std::fs::write(app.repo.path().join("release.yaml"), config).expect("write release.yaml");
}

fn web_service_config(app: &App) {
    let (module, sha) = example_hook("web-service-generator");
    write_config(app, &module, &sha, "");
}

/// Every file of `kubernetes/<env>`, name → text.
fn files(app: &App, env: &str) -> Vec<(String, String)> {
    let dir = app.repo.path().join("kubernetes").join(env);
    let mut out: Vec<(String, String)> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().path())
                .map(|p| {
                    let name = p.file_name().unwrap().to_string_lossy().into_owned();
                    (name, std::fs::read_to_string(&p).unwrap())
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn generated_manifests_deploy_and_the_deployment_runs() {
    let mut app = App::new("gen-deploy", 0).await;
    web_service_config(&app);
    app.release(&["generate", "qa"]).await.assert_success();
    let qa = files(&app, "qa");
    let names: Vec<&str> = qa.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "deployment-web.yaml",
            "poddisruptionbudget-web.yaml",
            "service-web.yaml"
        ]
    );
    let (_, sha) = example_hook("web-service-generator");
    assert!(
        qa.iter()
            .all(|(_, t)| t.starts_with("# Generated") && t.contains(&sha))
    );
    assert!(
        files(&app, "production").is_empty(),
        "only qa was asked for"
    );

    let commit = app.repo.commit("generated manifests");
    app.push(&commit).await;
    let out = app.release(&["deploy", "qa"]).await;
    assert!(out.success(), "{out}");
    let d = app.deployment(app.qa.name(), "web").await;
    let labels = d.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels.get("team").map(String::as_str), Some("payments"));
    let spec = d.spec;
    assert_eq!(spec.replicas, Some(2), "qa's override");
    let container = &spec.template.spec.unwrap().containers[0];
    assert_eq!(
        container.image.as_deref(),
        Some(app.pinned(&commit).as_str())
    );
    let env = container.env.clone().unwrap_or_default();
    assert_eq!(env[0].value.as_deref(), Some("debug"));
    assert_eq!(
        d.status.unwrap().ready_replicas,
        Some(2),
        "the Deployment runs"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn check_passes_on_fresh_output_and_fails_with_a_diff_after_a_hand_edit() {
    let app = App::new("gen-check", 0).await;
    web_service_config(&app);
    app.release(&["generate"]).await.assert_success();
    let first = (files(&app, "qa"), files(&app, "production"));
    // Determinism: a second run writes the same bytes (and reports nothing written).
    let again = app.release(&["generate"]).await.assert_success();
    assert!(again.stdout.contains("0 written"), "{again}");
    assert_eq!(first, (files(&app, "qa"), files(&app, "production")));
    app.repo.commit("generated");

    let out = app.release(&["generate", "--check"]).await;
    assert!(out.success(), "{out}");

    let path = app.repo.path().join("kubernetes/qa/deployment-web.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("replicas: 2", "replicas: 7")).unwrap();
    let out = app.release(&["generate", "--check"]).await;
    assert_eq!(out.code(), Some(1), "{out}");
    assert!(out.stdout.contains("-  replicas: 7"), "{out}");
    assert!(out.stdout.contains("+  replicas: 2"), "{out}");
    assert!(out.stdout.contains("deployment-web.yaml"), "{out}");
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        text.replace("replicas: 2", "replicas: 7"),
        "--check writes nothing"
    );

    // A stale generated file is deleted by generate, reported by --check.
    std::fs::write(&path, &text).unwrap();
    let stale = app.repo.path().join("kubernetes/qa/configmap-old.yaml");
    std::fs::write(
        &stale,
        "# Generated by `kubectl release generate` by generator sha256:x\n",
    )
    .unwrap();
    let out = app.release(&["generate", "--check"]).await;
    assert_eq!(out.code(), Some(1), "{out}");
    app.release(&["generate"]).await.assert_success();
    assert!(!stale.exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_generator_that_loops_is_stopped_and_nothing_is_written() {
    let app = App::new("gen-loop", 0).await;
    let module = app.repo.path().join("loop.wasm");
    let wasm = wat::parse_str(
        r#"(module (memory (export "memory") 1) (func (export "_start") (loop (br 0))))"#,
    )
    .unwrap();
    std::fs::write(&module, &wasm).unwrap();
    let sha = {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(&wasm))
    };
    write_config(&app, &module, &sha, "  timeout: 300ms\n");
    let started = std::time::Instant::now();
    let out = app.release(&["generate"]).await;
    assert!(!out.success(), "{out}");
    assert!(out.stderr.contains("timeout"), "{out}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "{out}"
    );
    assert!(
        !app.repo.path().join("kubernetes").exists(),
        "nothing written"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_spec_error_names_the_file_line_and_field() {
    let app = App::new("gen-bad", 0).await;
    web_service_config(&app);
    let path = app.repo.path().join("release.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace(
            "variables: {LOG_LEVEL: info}",
            "variablez: {LOG_LEVEL: info}",
        ),
    )
    .unwrap();
    let out = app.release(&["generate"]).await;
    assert_eq!(out.code(), Some(2), "{out}");
    assert!(out.stderr.contains("release.yaml:"), "{out}");
    assert!(out.stderr.contains("spec.containers.web"), "{out}");
    assert!(out.stderr.contains("variablez"), "{out}");
}

/// The labels of the qa Deployment the release applied.
async fn deployed_labels(app: &App) -> std::collections::BTreeMap<String, String> {
    let d = app.deployment(app.qa.name(), "web").await;
    d.metadata.labels.unwrap_or_default()
}

/// The cluster policy mandates a generator for the app's namespaces: `generate` uses it (the
/// app names none), a new version in the policy changes the output and `--check` reports it,
/// and a release of manifests the mandated version did not produce is denied, the cluster left
/// as it was, until they are generated again.
#[tokio::test(flavor = "multi_thread")]
async fn a_generator_mandated_by_the_cluster_policy_is_used_and_its_new_version_enforced() {
    let mut app = App::new("gen-policy", 0).await;
    let (v1_module, v1_sha) = example_hook("web-service-generator");
    let (v2_module, v2_sha) = example_hook("web-service-generator-go");
    assert_ne!(v1_sha, v2_sha, "two versions of the generator");
    let v1 = push_hook_module(app.env, &v1_module, "generators/web-service").await;
    let v2 = push_hook_module(app.env, &v2_module, "generators/web-service-go").await;
    // release.yaml has a spec and no generator: the policy provides it.
    write_config(&app, &v1_module, &v1_sha, "");
    let path = app.repo.path().join("release.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let spec_only = &text[..text.find("generator:").unwrap()];
    std::fs::write(&path, spec_only).unwrap();
    let namespaces = format!("[{}, {}]", app.qa.name(), app.production.name());
    let policy = |module: &str, labels: &str| {
        format!(
            "generator:\n  module: {module}\n  namespaces: {namespaces}\n  settings:\n    labels: {labels}\n"
        )
    };
    write_cluster_policy_sections(app.env, &policy(&v1, "{team: platform}")).await;

    app.release(&["generate"]).await.assert_success();
    let qa = files(&app, "qa");
    assert!(qa.iter().all(|(_, t)| t.contains(&v1_sha)), "{qa:?}");
    let commit = app.repo.commit("generated by v1");
    app.push(&commit).await;
    app.release(&["deploy", "qa"]).await.assert_success();
    assert_eq!(
        deployed_labels(&app).await.get("team").map(String::as_str),
        Some("platform"),
        "the policy's settings"
    );

    // The platform team ships a new version: the committed files are now stale.
    write_cluster_policy_sections(app.env, &policy(&v2, "{team: platform, tier: web}")).await;
    let out = app.release(&["generate", "--check"]).await;
    assert_eq!(out.code(), Some(1), "{out}");
    assert!(
        out.stdout.contains(&format!(
            "+# Generated by `kubectl release generate` by generator sha256:{v2_sha}"
        )),
        "{out}"
    );
    assert!(out.stdout.contains("+    tier: web"), "{out}");
    assert!(out.stdout.contains("deployment-web.yaml"), "{out}");

    let out = app.release(&["deploy", "qa"]).await;
    assert_eq!(out.code(), Some(3), "denied: {out}");
    assert!(out.stderr.contains("mandates generator"), "{out}");
    assert!(
        out.stderr.contains("differs from what it produces"),
        "{out}"
    );
    assert!(
        !deployed_labels(&app).await.contains_key("tier"),
        "nothing changed"
    );

    app.release(&["generate"]).await.assert_success();
    app.release(&["generate", "--check"]).await.assert_success();
    let commit = app.repo.commit("generated by v2");
    app.push(&commit).await;
    app.release(&["deploy", "qa"]).await.assert_success();
    assert_eq!(
        deployed_labels(&app).await.get("tier").map(String::as_str),
        Some("web")
    );
    write_cluster_policy_sections(app.env, "hooks: []\n").await;
}
