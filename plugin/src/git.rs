//! Commits: what the user names (branch, tag, short or full SHA) → the full 40-hex commit.

use std::path::Path;

use crate::exit::Failure;

/// A full commit hash, 40 lower-case hex digits; the tag of the commit's image.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct CommitSha(String);

impl CommitSha {
    /// Accepts exactly 40 hex digits (any case), for `--commit` in CI without a checkout.
    pub fn parse_full(text: &str) -> Result<CommitSha, Failure> {
        let t = text.trim();
        if t.len() == 40 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(CommitSha(t.to_ascii_lowercase()))
        } else {
            Err(Failure::usage(format!(
                "`{text}` is not a full commit hash: --commit takes all 40 hex digits \
                 (run `git rev-parse {text}` where the repository is checked out)"
            )))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 7 digits, for tables.
    pub fn short(&self) -> &str {
        &self.0[..7]
    }
}

impl std::fmt::Display for CommitSha {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Resolves `rev` (default `HEAD`) in the git repository containing `dir`.
pub fn resolve(dir: &Path, rev: Option<&str>) -> Result<CommitSha, Failure> {
    let rev = rev.unwrap_or("HEAD");
    let repo = gix::discover(dir).map_err(|e| {
        Failure::usage(format!(
            "cannot resolve `{rev}`: {} is not inside a git repository ({e}); \
             run from the app's checkout or pass --commit <40-hex sha>",
            dir.display()
        ))
    })?;
    let id = repo
        .rev_parse_single(rev)
        .map_err(|e| Failure::usage(describe_rev_error(rev, &e.to_string())))?;
    let commit = id
        .object()
        .and_then(|o| o.peel_to_kind(gix::object::Kind::Commit))
        .map_err(|e| Failure::usage(format!("`{rev}` does not name a commit: {e}")))?;
    Ok(CommitSha(commit.id.to_string()))
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
    fn full_sha_is_normalised() {
        let sha = CommitSha::parse_full("3F2A9C1E0B7D4A5F8E6C2B1A0D9F8E7C6B5A4D3E").unwrap();
        assert_eq!(sha.as_str(), "3f2a9c1e0b7d4a5f8e6c2b1a0d9f8e7c6b5a4d3e");
        assert_eq!(sha.short(), "3f2a9c1");
    }

    #[test]
    fn short_sha_is_refused_for_commit_flag() {
        let err = CommitSha::parse_full("3f2a9c1").unwrap_err();
        assert!(
            err.message.contains("not a full commit hash"),
            "{}",
            err.message
        );
    }

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
        let err = resolve(dir.path(), Some("no-such-branch")).unwrap_err();
        assert!(
            err.message.contains("cannot find commit `no-such-branch`"),
            "{}",
            err.message
        );
    }
}
