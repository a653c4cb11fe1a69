//! An app to release in end-to-end tests: a git repository with commits, images pushed for
//! them, a release.yaml, and namespaces for its `qa` and `production` environments (the
//! `qa` and `production` kubeconfig contexts, one "cluster" each).

use std::collections::HashMap;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use kube::Api;

use crate::{
    CmdOutput, GitRepo, Namespace, TestEnv, apply, cronjob, deployment, push_crashing_image,
    push_image, run, statefulset,
};

pub struct App {
    pub env: &'static TestEnv,
    pub repo: GitRepo,
    pub name: String,
    /// Repository path inside the test registry.
    pub repository: String,
    /// `<registry>/<repository>`: the config's `image`.
    pub image: String,
    pub qa: Namespace,
    pub production: Namespace,
    /// Commit → the digest the registry serves for `<image>:<commit>`.
    pub digests: HashMap<String, String>,
}

impl App {
    /// A repository with `commits` commits and namespaces for qa and production; no images yet.
    pub async fn new(prefix: &str, commits: usize) -> App {
        let env = TestEnv::shared();
        let qa = env.namespace(&format!("{prefix}-qa")).await;
        let production = env.namespace(&format!("{prefix}-prod")).await;
        // The qa namespace name is unique, so it makes the image repository unique too.
        let repository = format!("e2e/{}", qa.name());
        let app = App {
            env,
            repo: GitRepo::new(commits),
            name: "web".into(),
            image: format!("{}/{repository}", env.registry()),
            repository,
            qa,
            production,
            digests: HashMap::new(),
        };
        app.write_config("");
        app
    }

    pub fn commits(&self) -> Vec<String> {
        self.repo.commits()
    }

    /// Pushes the image of `commit` (as CI would) and remembers its digest.
    pub async fn push(&mut self, commit: &str) -> String {
        let digest = push_image(self.env.registry(), &self.repository, commit)
            .await
            .expect("push image");
        self.digests.insert(commit.to_string(), digest.clone());
        digest
    }

    /// Pushes an image for `commit` that crash-loops when run.
    pub async fn push_crashing(&mut self, commit: &str) -> String {
        let digest = push_crashing_image(self.env.registry(), &self.repository, commit)
            .await
            .expect("push image");
        self.digests.insert(commit.to_string(), digest.clone());
        digest
    }

    pub fn pinned(&self, commit: &str) -> String {
        format!("{}@{}", self.image, self.digests[commit])
    }

    /// Writes release.yaml with `extra` appended (e.g. a `hooks:` section).
    pub fn write_config(&self, extra: &str) {
        let config = format!(
            "apiVersion: kubectl-release.io/v1alpha1\nkind: ReleaseConfig\napp: {name}\nimage: {image}\n\
             environments:\n  - name: qa\n    context: qa\n    namespace: {qa}\n  - name: production\n    context: production\n    namespace: {prod}\n    promoteFrom: qa\n{extra}",
            name = self.name,
            image = self.image,
            qa = self.qa.name(),
            prod = self.production.name(),
        );
        std::fs::write(self.repo.path().join("release.yaml"), config).expect("write release.yaml");
    }

    /// A 3-replica Deployment `web`, a StatefulSet `cache` and a CronJob `nightly`, all on
    /// `image`, plus a `proxy` sidecar from another repository the plugin must not touch.
    pub async fn create_workloads(&self, namespace: &str, image: &str) {
        let client = self.env.client("admin").await;
        apply(
            &client,
            namespace,
            &deployment("web")
                .image(image)
                .container("proxy", "envoy:1.30")
                .replicas(3)
                .label("team", "payments")
                .build(),
        )
        .await
        .expect("create deployment");
        apply(
            &client,
            namespace,
            &statefulset("cache").image(image).replicas(1).build(),
        )
        .await
        .expect("create statefulset");
        apply(
            &client,
            namespace,
            &cronjob("nightly")
                .image(image)
                .schedule("0 3 * * *")
                .build(),
        )
        .await
        .expect("create cronjob");
    }

    /// Runs `kubectl-release ARGS` in the app's repository.
    pub async fn release(&self, args: &[&str]) -> CmdOutput {
        let mut cmd = self.env.plugin();
        cmd.args(args).current_dir(self.repo.path());
        run(&mut cmd).await
    }

    pub async fn deployment(&self, namespace: &str, name: &str) -> Deployment {
        let api: Api<Deployment> = Api::namespaced(self.env.client("admin").await, namespace);
        api.get(name).await.expect("get deployment")
    }

    pub async fn statefulset(&self, namespace: &str, name: &str) -> StatefulSet {
        let api: Api<StatefulSet> = Api::namespaced(self.env.client("admin").await, namespace);
        api.get(name).await.expect("get statefulset")
    }
}

/// A built example hook: `target/hooks/<name>.wasm` and its sha256, for a release.yaml pin.
/// Panics with the fix when it has not been built: a hooks test never skips silently.
pub fn example_hook(name: &str) -> (std::path::PathBuf, String) {
    use sha2::Digest as _;
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/hooks")
        .join(format!("{name}.wasm"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e}; build the example hooks first: example-hooks/build.sh",
            path.display()
        )
    });
    (path, hex::encode(sha2::Sha256::digest(bytes)))
}

/// A `hooks:` entry for release.yaml running the example hook `module` as `name`.
pub fn hook_entry(name: &str, module: &str, extra: &str) -> String {
    let (path, sha) = example_hook(module);
    let mut entry = format!(
        "  - name: {name}\n    module: {}\n    sha256: {sha}\n",
        path.display()
    );
    for line in extra.lines().filter(|l| !l.trim().is_empty()) {
        entry.push_str("    ");
        entry.push_str(line);
        entry.push('\n');
    }
    entry
}

impl App {
    /// Runs `kubectl-release ARGS` as the user of kubeconfig context `context` (`--context`
    /// applies to every environment, as it does for kubectl).
    pub async fn release_as(&self, context: &str, args: &[&str]) -> CmdOutput {
        let mut all = vec!["--context", context];
        all.extend_from_slice(args);
        self.release(&all).await
    }
}

/// Applies `plugin/rbac/approvals.yaml` once per test process, as a cluster admin would.
pub async fn setup_approvals_rbac(env: &TestEnv) {
    static DONE: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    DONE.get_or_init(|| async {
        let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../plugin/rbac/approvals.yaml");
        env.kubectl(&["apply", "-f", manifest])
            .await
            .assert_success();
    })
    .await;
}
