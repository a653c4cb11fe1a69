//! A deployment repository for GitOps tests: a bare git repository (the "remote" Argo CD or
//! Flux would watch) seeded with environment directories, and a test-only sync loop that
//! stands in for the GitOps controller by applying a path of the branch with
//! `kubectl apply -k`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tempfile::TempDir;

use crate::TestEnv;

/// How often the stand-in controller looks at the branch (Argo CD polls every 3 minutes; the
/// tests cannot wait that long).
const SYNC_INTERVAL: Duration = Duration::from_millis(250);

/// A bare repository with a `main` branch, removed when dropped.
pub struct DeployRepo {
    dir: TempDir,
}

/// The identity of the platform team's own commits to the repository.
const PLATFORM: [(&str, &str); 4] = [
    ("GIT_AUTHOR_NAME", "Platform Team"),
    ("GIT_AUTHOR_EMAIL", "platform@example.com"),
    ("GIT_COMMITTER_NAME", "Platform Team"),
    ("GIT_COMMITTER_EMAIL", "platform@example.com"),
];

/// Runs git in `dir` as the platform team; panics on failure (a broken fixture stops the test
/// where it was built).
pub fn git_in(dir: &Path, args: &[&str]) -> String {
    crate::git::git_in(dir, args, &PLATFORM)
}

impl DeployRepo {
    /// A bare repository whose first commit on `main` holds `files` (path → text).
    pub fn new(files: &[(&str, String)]) -> DeployRepo {
        let dir = tempfile::Builder::new()
            .prefix("kubectl-release-deploy-")
            .tempdir()
            .expect("a temporary directory for the deployment repository");
        let repo = DeployRepo { dir };
        std::fs::create_dir_all(repo.bare()).unwrap();
        git_in(
            &repo.bare(),
            &["init", "--quiet", "--bare", "--initial-branch", "main"],
        );
        let seed = repo.dir.path().join("seed");
        git_in(
            repo.dir.path(),
            &["clone", "--quiet", repo.url().as_str(), "seed"],
        );
        for (path, text) in files {
            let full = seed.join(path);
            std::fs::create_dir_all(full.parent().unwrap()).unwrap();
            std::fs::write(&full, text).unwrap();
        }
        git_in(&seed, &["add", "--all"]);
        git_in(
            &seed,
            &[
                "commit",
                "--quiet",
                "--message",
                "the platform's first layout",
            ],
        );
        git_in(&seed, &["push", "--quiet", "origin", "HEAD:main"]);
        repo
    }

    fn bare(&self) -> PathBuf {
        self.dir.path().join("deploy.git")
    }

    /// What release.yaml's `gitops.repo` names: the bare repository's path.
    pub fn url(&self) -> String {
        self.bare().display().to_string()
    }

    /// Runs git against the bare repository.
    pub fn git(&self, args: &[&str]) -> String {
        git_in(&self.bare(), args)
    }

    /// The commit `branch` points at.
    pub fn head(&self, branch: &str) -> String {
        self.git(&["rev-parse", &format!("refs/heads/{branch}")])
    }

    /// The branches of the repository.
    pub fn branches(&self) -> Vec<String> {
        self.git(&["for-each-ref", "--format=%(refname:short)", "refs/heads"])
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// A file as `rev` has it.
    pub fn show(&self, rev: &str, path: &str) -> String {
        self.git(&["show", &format!("{rev}:{path}")])
    }

    /// The number of commits on `branch`.
    pub fn count(&self, branch: &str) -> usize {
        self.git(&["rev-list", "--count", branch]).parse().unwrap()
    }

    /// Commits to `main` as a person would (another team's change, landing meanwhile).
    pub fn commit_as_someone_else(&self, path: &str, text: &str) {
        let work = tempfile::tempdir().unwrap();
        git_in(work.path(), &["clone", "--quiet", self.url().as_str(), "w"]);
        let w = work.path().join("w");
        let full = w.join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(&full, text).unwrap();
        git_in(&w, &["add", "--all"]);
        git_in(
            &w,
            &["commit", "--quiet", "--message", "someone else's change"],
        );
        git_in(&w, &["push", "--quiet", "origin", "HEAD:main"]);
    }

    /// Applies `path` of `branch` once, as the controller would (`kubectl apply -k`).
    pub async fn sync(&self, env: &TestEnv, branch: &str, path: &str) {
        let work = tempfile::tempdir().unwrap();
        let archive = work.path().join("tree");
        std::fs::create_dir_all(&archive).unwrap();
        let tar = work.path().join("tree.tar");
        self.git(&[
            "archive",
            "--output",
            tar.to_str().unwrap(),
            &format!("refs/heads/{branch}"),
        ]);
        let status = Command::new("tar")
            .arg("-xf")
            .arg(&tar)
            .arg("-C")
            .arg(&archive)
            .status()
            .expect("tar is installed");
        assert!(status.success(), "cannot unpack the branch");
        let dir = archive.join(path);
        env.kubectl(&["--context", "admin", "apply", "-k", dir.to_str().unwrap()])
            .await
            .assert_success();
    }

    /// Starts the stand-in controller: applies `path` of `main` whenever the branch moves,
    /// until the returned guard is dropped.
    pub fn sync_loop(self: &Arc<Self>, env: &'static TestEnv, path: &str) -> SyncLoop {
        let stop = Arc::new(AtomicBool::new(false));
        let (repo, path, flag) = (self.clone(), path.to_string(), stop.clone());
        tokio::spawn(async move {
            let mut applied = String::new();
            while !flag.load(Ordering::SeqCst) {
                let head = repo.head("main");
                if head != applied {
                    repo.sync(env, "main", &path).await;
                    applied = head;
                }
                tokio::time::sleep(SYNC_INTERVAL).await;
            }
        });
        SyncLoop { stop }
    }
}

/// Stops the sync loop when dropped.
pub struct SyncLoop {
    stop: Arc<AtomicBool>,
}

impl Drop for SyncLoop {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}
