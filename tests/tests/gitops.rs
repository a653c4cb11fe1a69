//! GitOps environments end to end: releases written as one commit into a real deployment
//! repository (a bare git repository), the cluster changed only when a stand-in controller
//! applies the repository's path with `kubectl apply -k`, against the real control plane.

use std::sync::Arc;

use kubectl_release_tests::deploy_repo::DeployRepo;
use kubectl_release_tests::{App, apply, deployment, hook_entry};
use serde_json::Value;

const PATH: &str = "apps/web/production";

fn kustomization(namespace: &str, image: &str, tag: &str) -> String {
    format!(
        "# Production of web: the controller applies this directory.\n\
         apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: {namespace}\n\
         resources:\n  - deployment.yaml   # the app\n\
         images:\n  # kubectl-release pins the digest here\n  - name: {image}\n    newTag: {tag}\n"
    )
}

fn deployment_yaml(image: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {{app: web}}\n  template:\n    metadata:\n      labels: {{app: web}}\n    spec:\n      containers:\n        - name: web\n          image: {image}\n"
    )
}

/// An app whose production is a GitOps environment in `repo`'s `path`, synced once so the
/// cluster runs the first commit; qa is a direct environment. `extra` is appended to
/// release.yaml.
async fn gitops_app(prefix: &str, path: &str, extra: &str) -> (App, Arc<DeployRepo>) {
    gitops_app_of(prefix, path, extra, 2).await
}

/// [`gitops_app`] with `commits` commits, every image pushed.
async fn gitops_app_of(
    prefix: &str,
    path: &str,
    extra: &str,
    commits: usize,
) -> (App, Arc<DeployRepo>) {
    let mut app = App::new(prefix, commits).await;
    for commit in app.commits() {
        app.push(&commit).await;
    }
    let first = app.commits()[0].clone();
    let repo = Arc::new(DeployRepo::new(&[
        (
            &format!("{path}/kustomization.yaml"),
            kustomization(app.production.name(), &app.image, &first),
        ),
        (
            &format!("{path}/deployment.yaml"),
            deployment_yaml(&format!("{}:bootstrap", app.image)),
        ),
    ]));
    write_config(&app, &repo, path, extra);
    repo.sync(app.env, "main", path).await;
    (app, repo)
}

fn write_config(app: &App, repo: &DeployRepo, path: &str, extra: &str) {
    let config = format!(
        "apiVersion: kubectl-release.io/v1alpha1\nkind: ReleaseConfig\napp: {name}\nimage: {image}\n\
         environments:\n  - name: qa\n    context: qa\n    namespace: {qa}\n\
         \x20 - name: production\n    context: production\n    namespace: {prod}\n    promoteFrom: qa\n\
         \x20   gitops:\n      repo: {url}\n      branch: main\n      path: {path}\n\
         \x20     author: {{name: Release Bot, email: release-bot@example.com}}\n{extra}",
        name = app.name,
        image = app.image,
        qa = app.qa.name(),
        prod = app.production.name(),
        url = repo.url(),
    );
    std::fs::write(app.repo.path().join("release.yaml"), config).expect("write release.yaml");
}

async fn live_image(app: &App) -> String {
    let d = app.deployment(app.production.name(), "web").await;
    d.spec.template.spec.unwrap().containers[0]
        .image
        .clone()
        .unwrap()
}

fn json(out: &kubectl_release_tests::CmdOutput) -> Value {
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deploy_is_one_commit_with_trailers_and_changes_nothing_until_applied() {
    let (app, repo) = gitops_app("gitops-deploy", PATH, "").await;
    let second = app.commits()[1].clone();
    let before = live_image(&app).await;
    assert_eq!(before, format!("{}:{}", app.image, app.commits()[0]));

    let out = app
        .release(&["deploy", "production", &second, "-o", "json"])
        .await;
    assert!(out.success(), "{out}");
    let report = json(&out);
    assert_eq!(report["outcome"], "committed", "{out}");
    let pushed = report["gitops"]["commit"].as_str().unwrap().to_string();
    assert_eq!(repo.head("main"), pushed);
    assert_eq!(repo.count("main"), 2, "one commit per release");

    let message = repo.git(&["log", "-1", "--format=%B", "main"]);
    let pinned = app.pinned(&second);
    for trailer in [
        "Release-App: web".to_string(),
        "Release-Environment: production".into(),
        "Release-Revision: 1".into(),
        "Release-Kind: deploy".into(),
        format!("Release-Commit: {second}"),
        format!("Release-Digest: {pinned}"),
    ] {
        assert!(
            message.contains(&trailer),
            "{trailer} missing in:\n{message}"
        );
    }
    let author = repo.git(&["log", "-1", "--format=%an <%ae>", "main"]);
    assert_eq!(author, "Release Bot <release-bot@example.com>");

    let k = repo.show("main", &format!("{PATH}/kustomization.yaml"));
    let digest = &app.digests[&second];
    assert!(k.contains(&format!("digest: {digest}")), "{k}");
    assert!(
        !k.contains("newTag"),
        "the tag beside a digest is gone: {k}"
    );
    for comment in [
        "# Production of web: the controller applies this directory.",
        "- deployment.yaml   # the app",
        "# kubectl-release pins the digest here",
    ] {
        assert!(k.contains(comment), "comment `{comment}` lost:\n{k}");
    }
    assert_eq!(
        live_image(&app).await,
        before,
        "nothing in the cluster changed"
    );

    let status = json(&app.release(&["status", "production", "-o", "json"]).await);
    assert_eq!(status[0]["gitImages"][0], pinned.as_str(), "{status}");
    assert_eq!(status[0]["drift"], true, "{status}");

    // The controller applies it; Git and the cluster agree, and a second deploy has nothing to do.
    repo.sync(app.env, "main", PATH).await;
    assert_eq!(live_image(&app).await, pinned);
    let status = json(&app.release(&["status", "production", "-o", "json"]).await);
    let details = status[0]["driftDetails"].to_string();
    assert!(!details.contains("Git pins"), "{status}");
    // The controller's workloads carry no commit annotation (only the digest is in Git); they
    // run the recorded commit because they run exactly what Git pins and that record wrote.
    assert_eq!(status[0]["drift"], false, "{status}");
    assert_eq!(status[0]["liveCommit"], second.as_str(), "{status}");
    let placed = app.release(&["where", &second]).await;
    assert!(placed.success(), "{placed}");
    assert!(placed.stdout.contains("runs in: production"), "{placed}");
    let again = app
        .release(&["deploy", "production", &second, "-o", "json"])
        .await;
    assert_eq!(json(&again)["outcome"], "unchanged", "{again}");
    assert_eq!(repo.count("main"), 2);

    let history = json(&app.release(&["history", "production", "-o", "json"]).await);
    assert_eq!(history.as_array().unwrap().len(), 1, "{history}");
    assert_eq!(history[0]["revision"], 1);
    assert_eq!(history[0]["commit"], second.as_str());
    assert_eq!(history[0]["gitCommit"], pushed.as_str());
    assert_eq!(history[0]["digests"][0], pinned.as_str());
}

#[tokio::test(flavor = "multi_thread")]
async fn wait_follows_the_controller_until_the_cluster_runs_the_commit() {
    let (app, repo) = gitops_app("gitops-wait", PATH, "").await;
    let second = app.commits()[1].clone();
    let _controller = repo.sync_loop(app.env, PATH);
    let out = app
        .release(&[
            "deploy",
            "production",
            &second,
            "--wait",
            "--timeout",
            "90s",
            "-o",
            "json",
        ])
        .await;
    assert!(out.success(), "{out}");
    assert_eq!(json(&out)["outcome"], "succeeded", "{out}");
    assert_eq!(live_image(&app).await, app.pinned(&second));
    let d = app.deployment(app.production.name(), "web").await;
    assert_eq!(d.status.unwrap().ready_replicas, Some(1), "rolled out");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_controller_wait_times_out_with_exit_6_and_the_commit_stays() {
    let (app, repo) = gitops_app("gitops-timeout", PATH, "").await;
    let second = app.commits()[1].clone();
    let out = app
        .release(&["deploy", "production", &second, "--wait", "--timeout", "3s"])
        .await;
    assert_eq!(out.code(), Some(6), "{out}");
    assert!(out.stderr.contains("not applied it"), "{out}");
    assert_eq!(repo.count("main"), 2, "the commit is in the repository");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_promotions_into_one_repository_at_once_both_land() {
    let shared_paths = ["apps/a/production", "apps/b/production"];
    let (mut a, repo) = gitops_app("gitops-pa", shared_paths[0], "").await;
    let mut b = App::new("gitops-pb", 2).await;
    for commit in b.commits() {
        b.push(&commit).await;
    }
    // b's directory joins the same repository, as another team's commit.
    let b_first = b.commits()[0].clone();
    repo.commit_as_someone_else(
        &format!("{}/kustomization.yaml", shared_paths[1]),
        &kustomization(b.production.name(), &b.image, &b_first),
    );
    repo.commit_as_someone_else(
        &format!("{}/deployment.yaml", shared_paths[1]),
        &deployment_yaml(&format!("{}:bootstrap", b.image)),
    );
    write_config(&b, &repo, shared_paths[1], "");
    let base = repo.count("main");

    // Both apps run their second commit in qa.
    let client = a.env.client("admin").await;
    for app in [&mut a, &mut b] {
        let first = app.commits()[0].clone();
        apply(
            &client,
            app.qa.name(),
            &deployment("web")
                .image(format!("{}:{first}", app.image))
                .build(),
        )
        .await
        .unwrap();
        let second = app.commits()[1].clone();
        app.release(&["deploy", "qa", &second])
            .await
            .assert_success();
    }
    let (pa, pb) = tokio::join!(
        a.release(&["promote", "qa", "production", "-o", "json"]),
        b.release(&["promote", "qa", "production", "-o", "json"])
    );
    assert_eq!(json(&pa)["outcome"], "committed", "{pa}");
    assert_eq!(json(&pb)["outcome"], "committed", "{pb}");
    assert_eq!(repo.count("main"), base + 2, "both landed");
    for (app, path) in [(&a, shared_paths[0]), (&b, shared_paths[1])] {
        let k = repo.show("main", &format!("{path}/kustomization.yaml"));
        let digest = &app.digests[&app.commits()[1]];
        assert!(k.contains(digest.as_str()), "{path}: {k}");
    }
    let message = repo.git(&["log", "-1", "--format=%B", "main"]);
    assert!(
        message.contains("Release-Source-Environment: qa"),
        "{message}"
    );
    assert!(message.contains("Release-Kind: promote"), "{message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_denied_release_pushes_nothing() {
    let hooks = format!(
        "hooks:\n{}",
        hook_entry(
            "labels",
            "required-labels",
            "settings: {labels: {cost-center: \".+\"}}"
        )
    );
    let (app, repo) = gitops_app("gitops-deny", PATH, &hooks).await;
    let out = app
        .release(&["deploy", "production", &app.commits()[1]])
        .await;
    assert_eq!(out.code(), Some(3), "{out}");
    assert!(out.stderr.contains("cost-center"), "{out}");
    assert_eq!(repo.count("main"), 1, "nothing pushed");
    assert_eq!(repo.branches(), ["main"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn pull_request_pushes_a_branch_and_leaves_the_environment_branch_alone() {
    let (app, repo) = gitops_app("gitops-pr", PATH, "").await;
    let main_before = repo.head("main");
    let said = app.repo.path().join("pr.txt");
    let command = format!(
        "echo \"$RELEASE_BRANCH -> $RELEASE_BASE: $RELEASE_TITLE\" > {}",
        said.display()
    );
    let out = app
        .release(&[
            "deploy",
            "production",
            &app.commits()[1],
            "--pull-request",
            "--pr-command",
            &command,
            "-o",
            "json",
        ])
        .await;
    assert!(out.success(), "{out}");
    let report = json(&out);
    let branch = "kubectl-release/web/production/revision-1";
    assert_eq!(report["gitops"]["reviewBranch"], branch, "{out}");
    assert_eq!(repo.head("main"), main_before, "main untouched");
    assert_eq!(
        repo.head(branch),
        report["gitops"]["commit"].as_str().unwrap()
    );
    let said = std::fs::read_to_string(&said).unwrap();
    assert!(
        said.starts_with(&format!("{branch} -> main: deploy web to production")),
        "{said}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_repositories_are_clear_errors_and_nothing_is_pushed() {
    let (app, repo) = gitops_app("gitops-bad", PATH, "").await;
    let second = app.commits()[1].clone();

    // A repository that cannot be cloned.
    let gone = format!("{}-gone", repo.url());
    let text = std::fs::read_to_string(app.repo.path().join("release.yaml")).unwrap();
    std::fs::write(
        app.repo.path().join("release.yaml"),
        text.replace(&repo.url(), &gone),
    )
    .unwrap();
    let out = app.release(&["deploy", "production", &second]).await;
    assert_eq!(out.code(), Some(2), "{out}");
    assert!(out.stderr.contains("cannot clone"), "{out}");

    // A path with no kustomization or manifests.
    write_config(&app, &repo, "apps/nothing/here", "");
    let out = app.release(&["deploy", "production", &second]).await;
    assert_eq!(out.code(), Some(2), "{out}");
    assert!(out.stderr.contains("is not a directory"), "{out}");

    // A directory whose workloads do not use the app's image.
    repo.commit_as_someone_else(
        "apps/other/production/kustomization.yaml",
        "resources: [deployment.yaml]\n",
    );
    repo.commit_as_someone_else(
        "apps/other/production/deployment.yaml",
        &deployment_yaml("nginx:1.27"),
    );
    let commits = repo.count("main");
    write_config(&app, &repo, "apps/other/production", "");
    let out = app.release(&["deploy", "production", &second]).await;
    assert_eq!(out.code(), Some(2), "{out}");
    assert!(out.stderr.contains("with a container from"), "{out}");
    assert_eq!(repo.count("main"), commits, "nothing pushed");

    // A branch protected against pushes: the release fails, nothing is pushed.
    write_config(&app, &repo, PATH, "");
    let hook = std::path::Path::new(&repo.url()).join("hooks/pre-receive");
    std::fs::write(
        &hook,
        "#!/bin/sh\necho 'main is protected: open a pull request' >&2\nexit 1\n",
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let out = app
        .release(&["deploy", "production", &second, "-o", "json"])
        .await;
    assert_eq!(out.code(), Some(5), "{out}");
    assert!(out.stderr.contains("main is protected"), "{out}");
    assert!(out.stderr.contains("nothing was pushed"), "{out}");
    assert_eq!(json(&out)["outcome"], "failed");
    assert_eq!(repo.count("main"), commits);
}

/// A run killed after its push landed but before it finished its record: the next release
/// finds the commit by its trailers and records the dead run's release as `committed`.
#[tokio::test(flavor = "multi_thread")]
async fn a_run_killed_after_its_push_is_recorded_committed_by_the_next_release() {
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::Api;
    use kube::api::{Patch, PatchParams};

    let (app, repo) = gitops_app("gitops-kill", PATH, "").await;
    let (first, second) = (app.commits()[0].clone(), app.commits()[1].clone());
    app.release(&["deploy", "production", &second])
        .await
        .assert_success();
    let pushed = repo.head("main");
    // What the dead run left: its record in progress, without the commit it pushed.
    let client = app.env.client("admin").await;
    let name = kubectl_release_tests::record_name("web", "production", 1);
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), app.production.name());
    let mut record =
        kubectl_release_tests::records(&client, app.production.name(), "web", "production").await
            [0]
        .clone();
    record["outcome"] = "in-progress".into();
    record["lockHolder"] = "a run that was killed".into();
    record["gitops"].as_object_mut().unwrap().remove("commit");
    let patch = serde_json::json!({"data": {"release.json": record.to_string()}});
    api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();

    let out = app
        .release(&["deploy", "production", &first, "-o", "json"])
        .await;
    assert!(out.success(), "{out}");
    assert!(
        out.stdout.contains("recorded it as committed"),
        "the dead run's release is settled: {out}"
    );
    let records =
        kubectl_release_tests::records(&client, app.production.name(), "web", "production").await;
    assert_eq!(records[0]["outcome"], "committed", "{records:?}");
    assert_eq!(records[0]["gitops"]["commit"], pushed.as_str());
    assert_eq!(records[1]["revision"], 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn rollback_writes_the_restored_revisions_digest_as_a_commit() {
    let (app, repo) = gitops_app("gitops-rollback", PATH, "").await;
    let (first, second) = (app.commits()[0].clone(), app.commits()[1].clone());
    app.release(&["deploy", "production", &second])
        .await
        .assert_success();
    app.release(&["deploy", "production", &first])
        .await
        .assert_success();
    let out = app.release(&["rollback", "production", "-o", "json"]).await;
    assert!(out.success(), "{out}");
    assert_eq!(json(&out)["outcome"], "committed", "{out}");
    let k = repo.show("main", &format!("{PATH}/kustomization.yaml"));
    assert!(k.contains(app.digests[&second].as_str()), "{k}");
    let message = repo.git(&["log", "-1", "--format=%B", "main"]);
    assert!(message.contains("Release-Kind: rollback"), "{message}");
    assert!(message.contains("Release-Revision: 3"), "{message}");
    assert_eq!(repo.count("main"), 4);
}

/// One `promote --all` process writes every app through one clone of the deployment
/// repository. The repository refuses pushes that touch b's directory: a and c land, each
/// commit carrying only its own app's file, and b's directory stays as it was — first one app
/// after another (so c pushes right after b's refusal, from the same clone), then all at once.
#[tokio::test(flavor = "multi_thread")]
async fn promote_all_lands_one_commit_per_app_and_a_refused_push_leaves_the_others_alone() {
    let paths = [
        "apps/a/production",
        "apps/b/production",
        "apps/c/production",
    ];
    let (first, repo) = gitops_app_of("gitops-all-a", paths[0], "", 3).await;
    let mut apps = vec![first];
    for (prefix, path) in [("gitops-all-b", paths[1]), ("gitops-all-c", paths[2])] {
        let mut app = App::new(prefix, 3).await;
        for commit in app.commits() {
            app.push(&commit).await;
        }
        let first = app.commits()[0].clone();
        repo.commit_as_someone_else(
            &format!("{path}/kustomization.yaml"),
            &kustomization(app.production.name(), &app.image, &first),
        );
        repo.commit_as_someone_else(
            &format!("{path}/deployment.yaml"),
            &deployment_yaml(&format!("{}:bootstrap", app.image)),
        );
        write_config(&app, &repo, path, "");
        apps.push(app);
    }
    let client = apps[0].env.client("admin").await;
    let monorepo = tempfile::tempdir().unwrap();
    for (app, name) in apps.iter().zip(["a", "b", "c"]) {
        let first = app.commits()[0].clone();
        let web = deployment("web").image(format!("{}:{first}", app.image));
        apply(&client, app.qa.name(), &web.build()).await.unwrap();
        let dir = monorepo.path().join("services").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(
            app.repo.path().join("release.yaml"),
            dir.join("release.yaml"),
        )
        .unwrap();
    }
    let b_before = repo.show("main", &format!("{}/kustomization.yaml", paths[1]));
    let hook = std::path::Path::new(&repo.url()).join("hooks/pre-receive");
    std::fs::write(
        &hook,
        "#!/bin/sh\nwhile read old new ref; do\n  if git diff --name-only \"$old\" \"$new\" | grep -q '^apps/b/'; then\n    \
         echo 'apps/b is frozen' >&2; exit 1\n  fi\ndone\n",
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    for (round, concurrency) in [(1, "1"), (2, "3")] {
        for app in &apps {
            let commit = app.commits()[round].clone();
            app.release(&["deploy", "qa", &commit])
                .await
                .assert_success();
        }
        let base = repo.count("main");
        let dir = monorepo.path().to_str().unwrap();
        let out = apps[0]
            .release(&[
                "promote",
                "--all",
                "qa",
                "production",
                "-f",
                dir,
                "--concurrency",
                concurrency,
                "-o",
                "json",
            ])
            .await;
        assert_eq!(out.code(), Some(5), "b failed: {out}");
        let results = json(&out);
        let results = results.as_array().expect("a list");
        // Every app is called web: each is known by its config's directory.
        let outcome = |name: &str| {
            let config = format!("services/{name}/release.yaml");
            results
                .iter()
                .find(|r| r["config"].as_str().is_some_and(|c| c.ends_with(&config)))
                .unwrap_or_else(|| panic!("no result for {config}: {out}"))
                .clone()
        };
        assert_eq!(outcome("a")["outcome"], "committed", "{out}");
        assert_eq!(outcome("c")["outcome"], "committed", "{out}");
        let b = outcome("b");
        assert_eq!(b["outcome"], "failed", "{out}");
        assert!(b.to_string().contains("apps/b is frozen"), "{b}");

        assert_eq!(
            repo.count("main"),
            base + 2,
            "round {round}: a and c landed"
        );
        let mut changed: Vec<String> = ["main", "main~1"]
            .iter()
            .map(|rev| {
                repo.git(&["show", "--name-only", "--format=", rev])
                    .trim()
                    .to_string()
            })
            .collect();
        changed.sort();
        assert_eq!(
            changed,
            [
                format!("{}/kustomization.yaml", paths[0]),
                format!("{}/kustomization.yaml", paths[2])
            ],
            "round {round}: one file per commit, each its own app's"
        );
        for (app, path) in [(&apps[0], paths[0]), (&apps[2], paths[2])] {
            let k = repo.show("main", &format!("{path}/kustomization.yaml"));
            let digest = &app.digests[&app.commits()[round]];
            assert!(k.contains(digest.as_str()), "round {round}, {path}: {k}");
        }
        assert_eq!(
            repo.show("main", &format!("{}/kustomization.yaml", paths[1])),
            b_before,
            "round {round}: b's directory is as it was"
        );
    }
}

/// A later `images:` entry renames another image onto the app's: kustomize applies entries in
/// order, so pinning the app's own entry does not reach the container. The edit is rendered
/// again, refused (exit 2) and nothing is pushed.
#[tokio::test(flavor = "multi_thread")]
async fn an_edit_that_would_not_pin_the_apps_containers_is_refused_and_nothing_is_pushed() {
    let (app, repo) = gitops_app("gitops-unpinned", PATH, "").await;
    let first = app.commits()[0].clone();
    let renamed = format!(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: {ns}\n\
         resources:\n  - deployment.yaml\nimages:\n  - name: {image}\n    newTag: {first}\n  \
         - name: legacy/web\n    newName: {image}\n    newTag: {first}\n",
        ns = app.production.name(),
        image = app.image,
    );
    repo.commit_as_someone_else(&format!("{PATH}/kustomization.yaml"), &renamed);
    repo.commit_as_someone_else(
        &format!("{PATH}/deployment.yaml"),
        &deployment_yaml("legacy/web:old"),
    );
    let base = repo.count("main");

    let out = app
        .release(&["deploy", "production", &app.commits()[1], "-o", "json"])
        .await;

    assert_eq!(out.code(), Some(2), "{out}");
    let report = json(&out);
    let message = report["message"].as_str().unwrap_or_default();
    assert!(message.contains("still run another image"), "{out}");
    assert!(message.contains("Deployment/web"), "{out}");
    assert_eq!(repo.count("main"), base, "nothing pushed");
}
