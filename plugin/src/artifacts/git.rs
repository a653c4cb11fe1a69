//! Commits: what the user names (branch, tag, short or full SHA) → the full 40-hex commit.

use std::path::Path;

use crate::domain::{CommitSha, Failure};

/// Resolves `rev` (default `HEAD`) in the git repository containing `dir`.
pub fn resolve(dir: &Path, rev: Option<&str>) -> Result<CommitSha, Failure> {
    let rev = rev.unwrap_or("HEAD");
    let repo = gix::discover(dir).map_err(|e| {
        Failure::invalid(format!(
            "cannot resolve `{rev}`: {} is not inside a git repository ({e}); \
             run from the app's checkout or pass --commit <40-hex sha>",
            dir.display()
        ))
    })?;
    // gix says "the rev-spec is malformed and misses a ref name" for HEAD of a new repository.
    if rev == "HEAD" && repo.head().is_ok_and(|head| head.is_unborn()) {
        return Err(Failure::invalid(format!(
            "the repository at {} has no commits yet: a release ships a commit, so commit the \
             app first",
            repo.workdir().unwrap_or(repo.git_dir()).display()
        )));
    }
    let id = repo
        .rev_parse_single(rev)
        .map_err(|e| Failure::invalid(describe_rev_error(rev, &e.to_string())))?;
    let commit = id
        .object()
        .and_then(|o| o.peel_to_kind(gix::object::Kind::Commit))
        .map_err(|e| Failure::invalid(format!("`{rev}` does not name a commit: {e}")))?;
    CommitSha::parse_full(&commit.id.to_string())
}

/// The branch `rev` names, when it names one: a local branch (`feature-x`) or a remote-tracking
/// one (`origin/feature-x`). Records keep it, so `history` and `status` say where a release of
/// a branch head came from.
pub fn branch_name(dir: &Path, rev: &str) -> Option<String> {
    let repo = gix::discover(dir).ok()?;
    let rev = rev.strip_prefix("refs/heads/").unwrap_or(rev);
    ["refs/heads/", "refs/remotes/"]
        .iter()
        .any(|prefix| repo.find_reference(&format!("{prefix}{rev}")).is_ok())
        .then(|| rev.to_string())
}

/// Turns gix's error into advice: an ambiguous short SHA wants more digits.
fn describe_rev_error(rev: &str, err: &str) -> String {
    if err.contains("ambiguous") || err.contains("Ambiguous") {
        format!(
            "`{rev}` is ambiguous: more than one object starts with it; give more digits of the SHA ({err})"
        )
    } else {
        format!(
            "cannot find commit `{rev}` in this repository (a branch, tag, or SHA of at least 4 digits): {err}"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_branch_tag_and_short_sha_in_a_real_repo() {
        let dir = tempfile::tempdir().unwrap();
        let git = |args: &[&str]| {
            let out = std::process::Command::new("git")
                .args(args)
                .current_dir(dir.path())
                .env("GIT_AUTHOR_NAME", "t")
                .env("GIT_AUTHOR_EMAIL", "t@example.com")
                .env("GIT_COMMITTER_NAME", "t")
                .env("GIT_COMMITTER_EMAIL", "t@example.com")
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "git {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap().trim().to_string()
        };
        git(&["init", "-q", "-b", "main"]);
        let err = resolve(dir.path(), None).unwrap_err();
        assert!(
            err.message.contains("has no commits yet"),
            "{}",
            err.message
        );
        git(&["commit", "-q", "--allow-empty", "-m", "one"]);
        let first = git(&["rev-parse", "HEAD"]);
        git(&["tag", "v1"]);
        git(&["commit", "-q", "--allow-empty", "-m", "two"]);
        let second = git(&["rev-parse", "HEAD"]);

        assert_eq!(resolve(dir.path(), None).unwrap().as_str(), second);
        assert_eq!(resolve(dir.path(), Some("main")).unwrap().as_str(), second);
        assert_eq!(resolve(dir.path(), Some("v1")).unwrap().as_str(), first);
        assert_eq!(
            resolve(dir.path(), Some(&first[..8])).unwrap().as_str(),
            first
        );
        // A remote-tracking branch, as CI's checkouts have them.
        git(&["update-ref", "refs/remotes/origin/feature-x", &first]);
        assert_eq!(
            resolve(dir.path(), Some("origin/feature-x"))
                .unwrap()
                .as_str(),
            first
        );
        assert_eq!(
            branch_name(dir.path(), "origin/feature-x").as_deref(),
            Some("origin/feature-x")
        );
        assert_eq!(branch_name(dir.path(), "main").as_deref(), Some("main"));
        assert_eq!(branch_name(dir.path(), "v1"), None, "a tag is no branch");
        assert_eq!(branch_name(dir.path(), &first[..8]), None);
        let err = resolve(dir.path(), Some("no-such-branch")).unwrap_err();
        assert!(
            err.message.contains("cannot find commit `no-such-branch`"),
            "{}",
            err.message
        );
    }
}
