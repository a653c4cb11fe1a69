//! Real git repositories in temporary directories, made with the git CLI.

use std::path::Path;
use std::process::Command;

use tempfile::TempDir;

/// A git repository with a `main` branch, removed when dropped.
///
/// Helpers panic when git fails: a broken fixture should stop the test at the line that built it.
#[derive(Debug)]
pub struct GitRepo {
    dir: TempDir,
}

impl GitRepo {
    /// A repository with `n_commits` commits on `main`, each changing a file.
    pub fn new(n_commits: usize) -> GitRepo {
        let dir = tempfile::Builder::new()
            .prefix("kubectl-release-git-")
            .tempdir()
            .expect("a temporary directory for a git repository");
        let repo = GitRepo { dir };
        repo.git(&["init", "--quiet", "--initial-branch", "main"]);
        repo.git(&["config", "user.name", "Test Author"]);
        repo.git(&["config", "user.email", "author@example.com"]);
        repo.git(&["config", "commit.gpgsign", "false"]);
        repo.git(&["config", "tag.gpgsign", "false"]);
        for i in 1..=n_commits {
            repo.commit(&format!("commit {i}"));
        }
        repo
    }

    /// The working tree.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Runs git in the repository and returns its trimmed stdout.
    pub fn git(&self, args: &[&str]) -> String {
        git_in(self.path(), args, &[])
    }

    /// The full 40-hex commit of HEAD.
    pub fn head(&self) -> String {
        self.rev_parse("HEAD")
    }

    /// The full commit a revision (branch, tag, short SHA, `HEAD~1`, …) names.
    pub fn rev_parse(&self, rev: &str) -> String {
        self.git(&["rev-parse", "--verify", &format!("{rev}^{{commit}}")])
    }

    /// The commits reachable from HEAD, oldest first.
    pub fn commits(&self) -> Vec<String> {
        let out = self.git(&["rev-list", "--reverse", "HEAD"]);
        out.lines().map(str::to_string).collect()
    }

    /// Writes a file (relative to the working tree) without committing it.
    pub fn write(&self, path: &str, contents: &str) {
        let full = self.path().join(path);
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent).expect("create the file's directory");
        }
        std::fs::write(&full, contents)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", full.display()));
    }

    /// Commits everything in the working tree plus a change of its own (so every commit differs)
    /// and returns the new commit.
    pub fn commit(&self, message: &str) -> String {
        let log = self.path().join("CHANGES");
        let mut changes = std::fs::read_to_string(&log).unwrap_or_default();
        changes.push_str(message);
        changes.push('\n');
        std::fs::write(&log, changes).expect("write CHANGES");
        self.git(&["add", "--all"]);
        self.git(&["commit", "--quiet", "--message", message]);
        self.head()
    }

    /// An annotated tag at HEAD.
    pub fn tag(&self, name: &str) {
        self.git(&["tag", "--annotate", "--message", name, name]);
    }

    /// A branch at HEAD (HEAD stays where it is).
    pub fn branch(&self, name: &str) {
        self.git(&["branch", name]);
    }

    /// Checks out a branch, tag or commit.
    pub fn checkout(&self, rev: &str) {
        self.git(&["checkout", "--quiet", rev]);
    }
}

/// Runs git in `dir` with `env` set and returns its trimmed stdout; panics when git fails.
/// The user's and the machine's settings (hooks, signing, templates) stay out.
pub fn git_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let output = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .envs(env.iter().copied())
        .output()
        .expect("git is installed");
    assert!(
        output.status.success(),
        "git {} failed in {}: {}",
        args.join(" "),
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_has_the_commits_asked_for_and_more_on_demand() {
        let repo = GitRepo::new(3);
        let commits = repo.commits();
        assert_eq!(commits.len(), 3);
        assert!(
            commits
                .iter()
                .all(|c| c.len() == 40 && c.chars().all(|ch| ch.is_ascii_hexdigit()))
        );
        assert_eq!(repo.head(), commits[2]);

        repo.tag("v1.0.0");
        repo.branch("release");
        repo.write("release.yaml", "app: web\n");
        let fourth = repo.commit("add config");
        assert_eq!(repo.head(), fourth);
        assert_eq!(repo.rev_parse("v1.0.0"), commits[2]);
        assert_eq!(repo.rev_parse("release"), commits[2]);
        assert_eq!(repo.rev_parse(&fourth[..8]), fourth);
        assert_eq!(repo.git(&["show", "HEAD:release.yaml"]), "app: web");

        repo.checkout("release");
        assert_eq!(repo.head(), commits[2]);
    }
}
