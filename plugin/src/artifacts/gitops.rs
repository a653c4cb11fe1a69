//! GitOps environments' git I/O: a deployment repository's branch, cloned into a private
//! temporary directory, edited, committed and pushed — with rebase-and-retry when the branch
//! moved meanwhile.
//!
//! Everything goes through the `git` program rather than a library, so that git's own
//! credential handling applies (credential helpers, the SSH agent, `insteadOf` rewrites in
//! `~/.gitconfig`) and no credential ever passes through this code or gets written by it.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Output, Stdio};

use tempfile::TempDir;
use thiserror::Error;

/// The name `git clone` gives the deployment repository in the clone.
const REMOTE: &str = "origin";

/// Variables that would point git at another repository than our clone: set when we run
/// inside a git hook or under a tool that exports them.
const FOREIGN_REPOSITORY: [&str; 8] = [
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
    "GIT_PREFIX",
];

/// Who commits a release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Author {
    /// The name git records (`GIT_AUTHOR_NAME`, `GIT_COMMITTER_NAME`).
    pub name: String,
    /// The email git records (`GIT_AUTHOR_EMAIL`, `GIT_COMMITTER_EMAIL`).
    pub email: String,
}

/// What a push left on the remote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    /// The commit the remote branch now points at (hex commit id).
    pub commit: String,
    /// How many pushes it took (1 when the branch had not moved).
    pub attempts: u32,
}

/// One commit of a deployment repository's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitInfo {
    /// The full hex commit id.
    pub id: String,
    /// The author's name.
    pub author: String,
    /// The author's email.
    pub email: String,
    /// When it was authored, RFC 3339 with the author's offset (`2025-01-31T12:00:00+01:00`).
    pub time: String,
    /// The whole message (subject, body, trailers), without trailing newlines.
    pub message: String,
}

/// Why the git I/O of a GitOps release failed. Every message names the repository (its URL
/// with any password replaced by `***`) and says what to do next.
#[derive(Debug, Error)]
pub enum GitError {
    /// `git clone` failed for another reason than a missing branch.
    #[error(
        "cannot clone branch `{branch}` of {url}: {reason}; check that `git ls-remote {url}` \
         works here (git's credential helpers and SSH agent are used)"
    )]
    CannotClone {
        url: String,
        branch: String,
        reason: String,
    },
    /// The repository has no branch of that name.
    #[error(
        "{url} has no branch `{branch}`; check the branch name, or create the branch in the \
         repository first"
    )]
    NoBranch { url: String, branch: String },
    /// The remote could not be talked to (network, authentication, authorisation).
    #[error(
        "cannot {action} {url}: {reason}; check that `git ls-remote {url}` works here and that \
         your credentials allow it (git's credential helpers and SSH agent are used)"
    )]
    Unreachable {
        url: String,
        action: String,
        reason: String,
    },
    /// The remote refused the push for another reason than the branch having moved.
    #[error(
        "{url} refused the push to `{branch}`: {reason}; the branch may be protected — use \
         --pull-request to push a branch instead"
    )]
    Rejected {
        url: String,
        branch: String,
        reason: String,
    },
    /// Rebasing onto commits pushed meanwhile conflicted; the rebase was aborted.
    #[error(
        "the release's change to {} conflicts with a commit pushed to `{branch}` of {url} \
         meanwhile; nothing was pushed: release again",
        .files.join(", ")
    )]
    Conflict {
        url: String,
        branch: String,
        files: Vec<String>,
    },
    /// Every attempt was overtaken by another push.
    #[error(
        "`{branch}` of {url} kept moving: other commits landed before each of {attempts} \
         pushes; nothing was pushed: release again"
    )]
    KeptMoving {
        url: String,
        branch: String,
        attempts: u32,
    },
    /// The files to commit already say what the release would write.
    #[error(
        "the release changes nothing in `{branch}` of {url}: its files already say this; \
         there is nothing to commit or push"
    )]
    NothingToCommit { url: String, branch: String },
    /// `push_new_branch` named a branch the remote already has.
    #[error(
        "{url} already has a branch `{branch}`; nothing was pushed: delete that branch or \
         choose another name"
    )]
    BranchExists { url: String, branch: String },
    /// A path that is absolute, climbs out of the work tree, or reaches into `.git`.
    #[error(
        "`{path}` is not a path inside {url}: it must be relative to the repository's root, \
         must not lead out of it (`..`, a symbolic link) and must not be inside `.git`; fix \
         the path"
    )]
    PathOutside { url: String, path: String },
    /// A file or directory of the clone could not be read or written, or git not started.
    #[error("cannot {action} for the clone of {url}: {source}")]
    Io {
        url: String,
        action: String,
        #[source]
        source: io::Error,
    },
    /// Any other git failure.
    #[error(
        "`git {command}` failed in the clone of {url}: {stderr}; run it by hand in a clone of \
         {url} to see why"
    )]
    Git {
        url: String,
        command: String,
        stderr: String,
    },
}

/// A deployment repository's branch, cloned into a private temporary directory that is
/// removed when this is dropped.
#[derive(Debug)]
pub struct Workdir {
    dir: TempDir,
    /// The work tree, canonical so that symbolic links can be checked against it.
    root: PathBuf,
    /// The URL as shown in messages, password redacted: the real one lives only in the
    /// clone's own `.git/config`, where git put it.
    url: String,
    branch: String,
}

impl Workdir {
    /// Clones `branch` of `url` (a URL, or a local path) with its history, and nothing of the
    /// repository's other branches.
    pub fn clone(url: &str, branch: &str) -> Result<Workdir, GitError> {
        let shown = redact(url);
        let io = |action: &str, source| GitError::Io {
            url: shown.clone(),
            action: action.to_string(),
            source,
        };
        let dir = tempfile::Builder::new()
            .prefix("kubectl-release-gitops-")
            .tempdir()
            .map_err(|e| io("create a temporary directory", e))?;
        let target = dir.path().join("repo");
        let out = command(None)
            .args([
                "clone",
                "--quiet",
                "--branch",
                branch,
                "--single-branch",
                // A local path is cloned over git's own protocol too: copying its object
                // directory (git's default for local paths) races with pushes into it, whose
                // quarantine directories vanish mid-copy, and creates a file per object.
                "--no-local",
                "--",
            ])
            .arg(url)
            .arg(&target)
            .output()
            .map_err(|e| io(RUN_GIT, e))?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            return Err(if stderr.contains("not found in upstream") {
                GitError::NoBranch {
                    url: shown,
                    branch: branch.to_string(),
                }
            } else {
                GitError::CannotClone {
                    url: shown,
                    branch: branch.to_string(),
                    reason: last_lines(&stderr),
                }
            });
        }
        let root = target
            .canonicalize()
            .map_err(|e| io("find the cloned work tree", e))?;
        Ok(Workdir {
            dir,
            root,
            url: shown,
            branch: branch.to_string(),
        })
    }

    /// The work tree.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The repository's URL, password redacted.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The branch that was cloned, and that [`Workdir::push`] pushes to.
    pub fn branch(&self) -> &str {
        &self.branch
    }

    /// The commit id of `HEAD`.
    pub fn head(&self) -> Result<String, GitError> {
        let args = ["rev-parse", "--verify", "HEAD^{commit}"];
        let id = self.ok(args, &[])?.trim().to_string();
        if is_commit_id(&id) {
            Ok(id)
        } else {
            Err(self.unexpected(args, &id))
        }
    }

    /// The text of `relative` in the work tree; `None` when there is no such file.
    pub fn read(&self, relative: &Path) -> Result<Option<String>, GitError> {
        let path = self.root.join(self.inside(relative)?);
        match fs::read_to_string(&path) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.io(&format!("read {}", relative.display()), e)),
        }
    }

    /// Writes `text` to `relative` in the work tree, creating its directories.
    pub fn write(&self, relative: &Path, text: &str) -> Result<(), GitError> {
        let path = self.root.join(self.inside(relative)?);
        let action = format!("write {}", relative.display());
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(|e| self.io(&action, e))?;
        }
        fs::write(&path, text).map_err(|e| self.io(&action, e))
    }

    /// Whether `relative` is a directory of the work tree (false for paths outside it).
    pub fn is_dir(&self, relative: &Path) -> bool {
        self.inside(relative)
            .is_ok_and(|path| self.root.join(path).is_dir())
    }

    /// Stages exactly `paths` (changes, new files and deletions) and commits only them with
    /// `message`, kept verbatim. `author` is author and committer, set through git's
    /// environment so that no configuration is written. Returns the new commit id.
    pub fn commit(
        &self,
        paths: &[PathBuf],
        message: &str,
        author: &Author,
    ) -> Result<String, GitError> {
        let paths = paths
            .iter()
            .map(|path| self.inside(path))
            .collect::<Result<Vec<_>, _>>()?;
        // `git commit --` without paths would commit whatever else is staged.
        if paths.is_empty() {
            return Err(self.nothing_to_commit());
        }
        let with_paths = |args: &'static [&'static str]| {
            let paths = paths.iter().map(|path| path.as_os_str());
            args.iter().map(OsStr::new).chain(paths)
        };
        self.ok(with_paths(&["add", "--all", "--"]), &[])?;
        // From a file, so that the message is neither an argument shown in errors nor limited
        // by the command line; the trailing newline is what git itself would store.
        let file = self.dir.path().join("message");
        let mut text = message.to_string();
        if !text.ends_with('\n') {
            text.push('\n');
        }
        fs::write(&file, text).map_err(|e| self.io("write the commit message", e))?;
        let options = ["commit", "--quiet", "--cleanup=verbatim", "--file"].map(OsStr::new);
        let args = options
            .into_iter()
            .chain([file.as_os_str(), OsStr::new("--")])
            .chain(with_paths(&[]));
        let out = self.run(args.clone(), &identity(&author.name, &author.email))?;
        if !out.status.success() {
            // Most likely the files already say this: ask the index, only then.
            let staged_args = with_paths(&["diff", "--cached", "--quiet", "--"]);
            let staged = self.run(staged_args, &[])?;
            return Err(match staged.status.code() {
                Some(0) => self.nothing_to_commit(),
                _ => self.failed(args, &out),
            });
        }
        self.head()
    }

    /// Pushes `HEAD` to the cloned branch. When the push is refused because the branch moved
    /// (someone pushed meanwhile), fetches it, rebases the local commits onto it and pushes
    /// again: at most `attempts` pushes in all (at least one). A conflicting rebase is aborted
    /// and is [`GitError::Conflict`]; a refusal for another reason (protected branch, hook,
    /// permission) is [`GitError::Rejected`] at once.
    pub fn push(&self, attempts: u32) -> Result<Pushed, GitError> {
        let attempts = attempts.max(1);
        let refspec = format!("HEAD:refs/heads/{}", self.branch);
        for attempt in 1..=attempts {
            match self.push_once(&[&refspec], &self.branch)? {
                Verdict::Updated | Verdict::UpToDate => {
                    return Ok(Pushed {
                        commit: self.head()?,
                        attempts: attempt,
                    });
                }
                Verdict::Refused {
                    ref summary,
                    ref remote,
                } if moved(summary) || moved(remote) => {
                    if attempt < attempts {
                        tracing::debug!(url = %self.url, branch = %self.branch, attempt,
                            "the branch moved; rebasing onto it");
                        self.rebase_onto_remote()?;
                    }
                }
                refused => return Err(self.rejected(&self.branch, refused)),
            }
        }
        Err(GitError::KeptMoving {
            url: self.url.clone(),
            branch: self.branch.clone(),
            attempts,
        })
    }

    /// Pushes `HEAD` to a new branch `name` of the remote (for a pull request), leaving the
    /// cloned branch alone. A branch of that name already on the remote is
    /// [`GitError::BranchExists`] and is not touched.
    pub fn push_new_branch(&self, name: &str) -> Result<Pushed, GitError> {
        let target = format!("refs/heads/{name}");
        // An empty lease means "only if it does not exist yet". git checks it against what the
        // remote advertised, and the remote's own check of the ref's old value closes the race.
        let lease = format!("--force-with-lease={target}:");
        let refspec = format!("HEAD:{target}");
        let exists = || GitError::BranchExists {
            url: self.url.clone(),
            branch: name.to_string(),
        };
        match self.push_once(&[&lease, &refspec], name)? {
            Verdict::Updated => Ok(Pushed {
                commit: self.head()?,
                attempts: 1,
            }),
            // Already there with this very commit: it exists all the same.
            Verdict::UpToDate => Err(exists()),
            Verdict::Refused { summary, .. } if summary.contains("(stale info)") => Err(exists()),
            refused => Err(self.rejected(name, refused)),
        }
    }

    /// The commits of the cloned branch (as `HEAD` has it, local commits included) that
    /// touched `relative`, newest first, at most `limit`.
    pub fn log(&self, relative: &Path, limit: usize) -> Result<Vec<CommitInfo>, GitError> {
        let path = self.inside(relative)?;
        if limit == 0 {
            return Ok(Vec::new());
        }
        // With `-z` every field and every record ends in NUL, which no field can contain.
        let mut args: Vec<OsString> = [
            "log",
            "-z",
            "--no-show-signature",
            &format!("--max-count={limit}"),
            "--format=%H%x00%an%x00%ae%x00%aI%x00%B",
            "HEAD",
            "--",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        args.push(path.into_os_string());
        let out = self.ok(&args, &[])?;
        parse_log(&out).ok_or_else(|| self.unexpected(&args, &out))
    }

    /// Makes the work tree the remote branch as it is now (fetch, hard reset, clean): before
    /// a whole release edit is tried again.
    pub fn refresh(&self) -> Result<(), GitError> {
        self.fetch()?;
        self.ok(["reset", "--quiet", "--hard", &self.tracking()], &[])?;
        self.ok(["clean", "--quiet", "-ffdx"], &[])?;
        Ok(())
    }

    /// Fetches the branch and fast-forwards the work tree to it, keeping uncommitted edits of
    /// other files: how a clone shared by several releases catches up before each one reads.
    /// A fast-forward that is not possible (the branch was rewritten, or it changes a file
    /// edited here) leaves the tree as it was: the push rebases then.
    pub fn sync(&self) -> Result<(), GitError> {
        self.fetch()?;
        let tracking = self.tracking();
        if let Err(e) = self.ok(["merge", "--quiet", "--ff-only", &tracking], &[]) {
            tracing::debug!(url = %self.url, error = %e, "cannot fast-forward; the push rebases");
        }
        Ok(())
    }

    /// Takes the last commit back, leaving its changes in the work tree: a release whose push
    /// failed must not leave a commit that never landed on the branch of a shared clone.
    pub fn uncommit(&self) -> Result<(), GitError> {
        self.ok(["reset", "--quiet", "HEAD~1"], &[]).map(drop)
    }

    /// Makes `paths` what `HEAD` has, dropping their uncommitted edits.
    pub fn restore(&self, paths: &[PathBuf]) -> Result<(), GitError> {
        let paths = paths
            .iter()
            .map(|path| self.inside(path))
            .collect::<Result<Vec<_>, _>>()?;
        if paths.is_empty() {
            return Ok(());
        }
        let args = ["checkout", "--quiet", "HEAD", "--"]
            .map(OsStr::new)
            .into_iter()
            .chain(paths.iter().map(|p| p.as_os_str()));
        self.ok(args, &[]).map(drop)
    }

    /// One `git push --porcelain` of one ref, and git's verdict on it.
    fn push_once(&self, args: &[&str], branch: &str) -> Result<Verdict, GitError> {
        let mut all = vec!["push", "--porcelain", "--no-follow-tags", REMOTE];
        all.extend_from_slice(args);
        let out = self.run(&all, &[])?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        // Porcelain status lines are `<flag>\t<from>:<to>\t<summary>`; we push one ref.
        let status = stdout.lines().find_map(|line| {
            let mut fields = line.splitn(3, '\t');
            let flag = fields.next().filter(|f| f.len() == 1)?;
            let _refs = fields.next()?;
            Some((flag.to_string(), fields.next().unwrap_or("").to_string()))
        });
        match status {
            Some((flag, _)) if flag == "=" => Ok(Verdict::UpToDate),
            Some((flag, summary)) if flag == "!" => Ok(Verdict::Refused {
                summary,
                remote: remote_lines(&stderr),
            }),
            Some(_) if out.status.success() => Ok(Verdict::Updated),
            _ => Err(GitError::Unreachable {
                url: self.url.clone(),
                action: format!("push to `{branch}` of"),
                reason: last_lines(&stderr),
            }),
        }
    }

    /// Fetches the branch and replays the local commits onto it, so that the next push is a
    /// fast-forward unless someone pushes in between; a conflict aborts the rebase, leaving the
    /// local commits as they were, and is [`GitError::Conflict`].
    fn rebase_onto_remote(&self) -> Result<(), GitError> {
        self.fetch()?;
        // Rebasing commits anew needs a committer: the one of our own commit, so that this
        // works without any `user.name` configured.
        let who = self.ok(
            ["log", "-1", "--no-show-signature", "--format=%cn%x00%ce"],
            &[],
        )?;
        let (name, email) = who
            .trim_end()
            .split_once('\0')
            .unwrap_or((who.as_str(), ""));
        let onto = self.tracking();
        // Autostash: a shared clone carries other releases' uncommitted edits (of other
        // files), which come back after the rebase.
        let args = ["rebase", "--quiet", "--autostash", &onto];
        let out = self.run(args, &identity(name, email))?;
        if out.status.success() {
            return Ok(());
        }
        let unmerged = self.ok(["diff", "--name-only", "--diff-filter=U", "-z"], &[]);
        if let Err(e) = self.ok(["rebase", "--abort"], &[]) {
            tracing::warn!(error = %e, "could not abort the rebase");
        }
        let files: Vec<String> = unmerged
            .unwrap_or_default()
            .split('\0')
            .filter(|f| !f.is_empty())
            .map(str::to_string)
            .collect();
        if files.is_empty() {
            return Err(self.failed(args, &out));
        }
        Err(GitError::Conflict {
            url: self.url.clone(),
            branch: self.branch.clone(),
            files,
        })
    }

    /// Updates the remote-tracking branch (the clone fetches only the cloned branch).
    fn fetch(&self) -> Result<(), GitError> {
        let out = self.run(["fetch", "--quiet", "--no-tags", REMOTE], &[])?;
        if out.status.success() {
            return Ok(());
        }
        Err(GitError::Unreachable {
            url: self.url.clone(),
            action: format!("fetch `{}` from", self.branch),
            reason: last_lines(&String::from_utf8_lossy(&out.stderr)),
        })
    }

    /// The remote-tracking ref of the cloned branch.
    fn tracking(&self) -> String {
        format!("refs/remotes/{REMOTE}/{}", self.branch)
    }

    /// `relative`, checked to lead to the work tree and cleaned of `.` and inner `..`.
    fn inside(&self, relative: &Path) -> Result<PathBuf, GitError> {
        let outside = || GitError::PathOutside {
            url: self.url.clone(),
            path: relative.display().to_string(),
        };
        let mut clean = PathBuf::new();
        for part in relative.components() {
            match part {
                // Writing into `.git` (hooks, config) would make git run anything.
                Component::Normal(name) if name.eq_ignore_ascii_case(".git") => {
                    return Err(outside());
                }
                Component::Normal(name) => clean.push(name),
                Component::CurDir => {}
                Component::ParentDir => {
                    if !clean.pop() {
                        return Err(outside());
                    }
                }
                Component::RootDir | Component::Prefix(_) => return Err(outside()),
            }
        }
        // A symbolic link of the repository could still lead out of it: the nearest part of the
        // path that exists (even as a dangling link) must resolve inside the work tree.
        let full = self.root.join(&clean);
        let real = full
            .ancestors()
            .find(|p| p.symlink_metadata().is_ok())
            .and_then(|p| p.canonicalize().ok());
        match real {
            Some(real) if real.starts_with(&self.root) => Ok(clean),
            _ => Err(outside()),
        }
    }

    /// Runs git in the work tree.
    fn run<I, S>(&self, args: I, env: &[(&str, &str)]) -> Result<Output, GitError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        command(Some(&self.root))
            .args(args)
            .envs(env.iter().copied())
            .output()
            .map_err(|e| self.io(RUN_GIT, e))
    }

    /// Runs git in the work tree; its output when it succeeds, [`GitError::Git`] when not.
    fn ok<I, S>(&self, args: I, env: &[(&str, &str)]) -> Result<String, GitError>
    where
        I: IntoIterator<Item = S> + Clone,
        S: AsRef<OsStr>,
    {
        let out = self.run(args.clone(), env)?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(self.failed(args, &out))
        }
    }

    fn failed<I, S>(&self, args: I, out: &Output) -> GitError
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        GitError::Git {
            url: self.url.clone(),
            command: shown_command(args),
            stderr: last_lines(&String::from_utf8_lossy(&out.stderr)),
        }
    }

    fn unexpected<I, S>(&self, args: I, stdout: &str) -> GitError
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        GitError::Git {
            url: self.url.clone(),
            command: shown_command(args),
            stderr: format!("unexpected output {:?}", last_lines(stdout)),
        }
    }

    fn rejected(&self, branch: &str, verdict: Verdict) -> GitError {
        let reason = match verdict {
            Verdict::Refused { summary, remote } => {
                // `[remote rejected] (pre-receive hook declined)` → `pre-receive hook declined`.
                let why = summary
                    .split_once('(')
                    .map_or(summary.as_str(), |(_, why)| why.trim_end_matches(')'));
                if remote.is_empty() {
                    why.to_string()
                } else {
                    format!("{remote} ({why})")
                }
            }
            Verdict::Updated | Verdict::UpToDate => "no reason given".to_string(),
        };
        GitError::Rejected {
            url: self.url.clone(),
            branch: branch.to_string(),
            reason,
        }
    }

    fn nothing_to_commit(&self) -> GitError {
        GitError::NothingToCommit {
            url: self.url.clone(),
            branch: self.branch.clone(),
        }
    }

    fn io(&self, action: &str, source: io::Error) -> GitError {
        GitError::Io {
            url: self.url.clone(),
            action: action.to_string(),
            source,
        }
    }
}

/// Whether `url` can be listed and has `branch`: false when it can be listed but has no such
/// branch, [`GitError::Unreachable`] when it cannot be listed.
pub fn branch_exists(url: &str, branch: &str) -> Result<bool, GitError> {
    // Full ref names: a bare `main` pattern would also match `refs/heads/team/main`.
    let target = format!("refs/heads/{branch}");
    let shown = redact(url);
    let out = command(None)
        .args(["ls-remote", "--heads", "--", url, &target])
        .output()
        .map_err(|source| GitError::Io {
            url: shown.clone(),
            action: RUN_GIT.to_string(),
            source,
        })?;
    if !out.status.success() {
        return Err(GitError::Unreachable {
            url: shown,
            action: "list the branches of".to_string(),
            reason: last_lines(&String::from_utf8_lossy(&out.stderr)),
        });
    }
    let listed = String::from_utf8_lossy(&out.stdout);
    Ok(listed
        .lines()
        .any(|line| line.split('\t').nth(1) == Some(target.as_str())))
}

/// git's verdict on the one ref a push sent.
enum Verdict {
    Updated,
    UpToDate,
    /// `summary` is git's (`[rejected] (fetch first)`), `remote` what the server said.
    Refused {
        summary: String,
        remote: String,
    },
}

/// What [`GitError::Io`] says when git could not be started.
const RUN_GIT: &str = "run `git` (is git installed and on the PATH?)";

/// `git`, made safe to run unattended: a missing credential fails instead of prompting,
/// messages are in English so that they can be recognised, nothing waits for an editor or
/// stdin, paths are never patterns, and no repository of the environment is used instead
/// of ours.
fn command(dir: Option<&Path>) -> Command {
    let mut git = Command::new("git");
    // A clone lives for one run: git's automatic housekeeping after commits and fetches (a
    // process each time, and now and then a repack) is only cost here.
    git.args(["-c", "maintenance.auto=false", "-c", "gc.auto=0"]);
    git.env("GIT_TERMINAL_PROMPT", "0")
        .env("LC_ALL", "C")
        .env("GIT_EDITOR", ":")
        .env("GIT_LITERAL_PATHSPECS", "1")
        .env_remove("GIT_ASKPASS")
        .stdin(Stdio::null());
    for variable in FOREIGN_REPOSITORY {
        git.env_remove(variable);
    }
    // Tests must pass whatever the developer's own configuration, and prove that nothing here
    // needs one (such as `user.name`).
    if cfg!(test) {
        git.env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1");
    }
    if let Some(dir) = dir {
        git.current_dir(dir);
    }
    git
}

/// Author and committer, for git's environment.
fn identity<'a>(name: &'a str, email: &'a str) -> [(&'static str, &'a str); 4] {
    [
        ("GIT_AUTHOR_NAME", name),
        ("GIT_AUTHOR_EMAIL", email),
        ("GIT_COMMITTER_NAME", name),
        ("GIT_COMMITTER_EMAIL", email),
    ]
}

/// Whether a push was refused only because the branch has commits we do not have — or was
/// updated by another push while ours was being received (the server could not lock the ref
/// at the value our push expected).
fn moved(summary: &str) -> bool {
    summary.contains("(fetch first)")
        || summary.contains("(non-fast-forward)")
        || summary.contains("cannot lock ref")
        || summary.contains("(failed to update ref)")
}

/// A hex commit id: SHA-1 or SHA-256.
fn is_commit_id(id: &str) -> bool {
    matches!(id.len(), 40 | 64) && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `git log -z` output of `%H %an %ae %aI %B` records; `None` if it is not that.
fn parse_log(text: &str) -> Option<Vec<CommitInfo>> {
    let Some(text) = text.strip_suffix('\0') else {
        return text.is_empty().then(Vec::new);
    };
    let fields: Vec<&str> = text.split('\0').collect();
    fields
        .chunks(5)
        .map(|record| match record {
            [id, author, email, time, message] if is_commit_id(id) => Some(CommitInfo {
                id: id.to_string(),
                author: author.to_string(),
                email: email.to_string(),
                time: time.to_string(),
                message: message.trim_end_matches('\n').to_string(),
            }),
            _ => None,
        })
        .collect()
}

/// The lines the remote sent back (`remote: …`), where hooks and servers say why.
fn remote_lines(stderr: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .filter_map(|line| line.strip_prefix("remote:"))
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect();
    redact(&lines[lines.len().saturating_sub(6)..].join("; "))
}

/// The last few meaningful lines of git's stderr, on one line and without credentials.
fn last_lines(stderr: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with("hint:"))
        .collect();
    match &lines[lines.len().saturating_sub(4)..] {
        [] => "git gave no reason".to_string(),
        last => redact(&last.join("; ")),
    }
}

/// A command line for messages.
fn shown_command<I, S>(args: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<String> = args
        .into_iter()
        .map(|a| a.as_ref().to_string_lossy().into_owned())
        .collect();
    redact(&args.join(" "))
}

/// `text` with the password of every `scheme://user:password@host` in it replaced by `***`.
fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c == '/' || c == '\'' || c == '"' || c.is_whitespace())
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        let secret = authority
            .rfind('@')
            .and_then(|at| authority[..at].find(':').map(|colon| (colon, at)));
        match secret {
            Some((colon, at)) => {
                out.push_str(&authority[..=colon]);
                out.push_str("***");
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) const API: &str = "apps/api/deployment.yaml";
    pub(crate) const WEB: &str = "apps/web/deployment.yaml";

    /// git for seeding and inspecting, blind to the developer's configuration.
    pub(crate) fn git(dir: &Path, args: &[&str]) -> String {
        let out = Command::new("git")
            .current_dir(dir)
            .args(args)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .envs(identity("Seeder", "seeder@example.com"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "git {args:?}: {stderr}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub(crate) fn deployment(app: &str, digest: &str) -> String {
        format!("kind: Deployment\nname: {app}\nimage: registry.example/{app}@sha256:{digest}\n")
    }

    /// A bare deployment repository whose `main` has a kustomization and two apps.
    pub(crate) struct Remote {
        dir: TempDir,
    }

    impl Remote {
        pub(crate) fn new() -> Remote {
            let dir = tempfile::tempdir().unwrap();
            git(
                dir.path(),
                &["init", "--quiet", "--bare", "--initial-branch=main", "bare"],
            );
            git(dir.path(), &["clone", "--quiet", "bare", "seed"]);
            let seed = dir.path().join("seed");
            let files = [
                (
                    "kustomization.yaml",
                    "resources:\n  - apps/api\n  - apps/web\n".to_string(),
                ),
                (API, deployment("api", "1111")),
                (WEB, deployment("web", "1111")),
            ];
            for (path, text) in files {
                fs::create_dir_all(seed.join(path).parent().unwrap()).unwrap();
                fs::write(seed.join(path), text).unwrap();
            }
            git(&seed, &["add", "."]);
            git(&seed, &["commit", "--quiet", "-m", "seed"]);
            git(
                &seed,
                &["push", "--quiet", "origin", "HEAD:refs/heads/main"],
            );
            Remote { dir }
        }

        pub(crate) fn bare(&self) -> PathBuf {
            self.dir.path().join("bare")
        }

        pub(crate) fn url(&self) -> String {
            self.bare().to_str().unwrap().to_string()
        }

        /// git on the bare repository.
        pub(crate) fn git(&self, args: &[&str]) -> String {
            git(&self.bare(), args)
        }

        pub(crate) fn rev(&self, rev: &str) -> String {
            self.git(&["rev-parse", rev]).trim().to_string()
        }

        pub(crate) fn subjects(&self) -> Vec<String> {
            let log = self.git(&["log", "--format=%s", "main"]);
            log.lines().map(str::to_string).collect()
        }
    }

    pub(crate) fn author() -> Author {
        Author {
            name: "Release Bot".to_string(),
            email: "release-bot@example.com".to_string(),
        }
    }

    /// Sets `app`'s digest in `work` and commits it.
    pub(crate) fn release(work: &Workdir, app: &str, digest: &str) -> String {
        let path = PathBuf::from(format!("apps/{app}/deployment.yaml"));
        work.write(&path, &deployment(app, digest)).unwrap();
        let message = format!("release {app} {digest}");
        work.commit(&[path], &message, &author()).unwrap()
    }

    #[test]
    fn a_push_that_lost_a_race_for_the_ref_counts_as_the_branch_having_moved() {
        assert!(moved("[rejected] (fetch first)"));
        assert!(moved("[remote rejected] (failed to update ref)"));
        assert!(moved(
            "error: cannot lock ref 'refs/heads/main': is at a but expected b"
        ));
        assert!(!moved("[remote rejected] (pre-receive hook declined)"));
    }

    #[test]
    fn a_committed_release_lands_on_the_remote_with_its_author() {
        let remote = Remote::new();
        let seed = remote.rev("main");
        let work = Workdir::clone(&remote.url(), "main").unwrap();
        assert_eq!(work.head().unwrap(), seed);
        assert_eq!(
            work.read(Path::new(API)).unwrap(),
            Some(deployment("api", "1111"))
        );
        assert_eq!(work.read(Path::new("apps/none.yaml")).unwrap(), None);
        assert!(work.is_dir(Path::new("apps/web")));
        assert!(!work.is_dir(Path::new(API)));

        // Only the named path is committed, whatever else changed.
        work.write(Path::new(WEB), "changed but not released\n")
            .unwrap();
        let commit = release(&work, "api", "2222");
        let pushed = work.push(3).unwrap();

        assert_eq!(
            pushed,
            Pushed {
                commit: commit.clone(),
                attempts: 1
            }
        );
        assert_eq!(remote.rev("main"), commit);
        assert_eq!(remote.rev("main~1"), seed);
        assert_eq!(
            remote.git(&["show", &format!("main:{API}")]),
            deployment("api", "2222")
        );
        assert_eq!(
            remote.git(&["show", &format!("main:{WEB}")]),
            deployment("web", "1111")
        );
        let who = remote.git(&["log", "-1", "--format=%an <%ae>|%cn <%ce>|%B", "main"]);
        let bot = "Release Bot <release-bot@example.com>";
        assert_eq!(who.trim_end(), format!("{bot}|{bot}|release api 2222"));
    }

    #[test]
    fn an_unchanged_file_is_nothing_to_commit() {
        let remote = Remote::new();
        let work = Workdir::clone(&remote.url(), "main").unwrap();
        work.write(Path::new(API), &deployment("api", "1111"))
            .unwrap();
        let same = work.commit(&[PathBuf::from(API)], "again", &author());
        assert!(
            matches!(same, Err(GitError::NothingToCommit { .. })),
            "{same:?}"
        );
        let none = work.commit(&[], "nothing", &author());
        assert!(
            matches!(none, Err(GitError::NothingToCommit { .. })),
            "{none:?}"
        );
    }

    #[test]
    fn a_push_overtaken_by_another_rebases_and_lands() {
        let remote = Remote::new();
        let first = Workdir::clone(&remote.url(), "main").unwrap();
        let second = Workdir::clone(&remote.url(), "main").unwrap();
        let landed = release(&first, "api", "2222");
        release(&second, "web", "3333");
        assert_eq!(first.push(3).unwrap().attempts, 1);

        let pushed = second.push(3).unwrap();

        assert_eq!(pushed.attempts, 2);
        assert_eq!(remote.rev("main"), pushed.commit);
        assert_eq!(remote.rev("main~1"), landed);
        assert_eq!(
            remote.subjects(),
            ["release web 3333", "release api 2222", "seed"]
        );
        assert_eq!(
            remote.git(&["show", &format!("main:{API}")]),
            deployment("api", "2222")
        );
        assert_eq!(
            remote.git(&["show", &format!("main:{WEB}")]),
            deployment("web", "3333")
        );
        // The rebased commit is still entirely the release's.
        let who = remote.git(&["log", "-1", "--format=%an %ce", "main"]);
        assert_eq!(who.trim_end(), "Release Bot release-bot@example.com");
    }

    #[test]
    fn a_branch_that_keeps_moving_exhausts_the_attempts() {
        let remote = Remote::new();
        let first = Workdir::clone(&remote.url(), "main").unwrap();
        let second = Workdir::clone(&remote.url(), "main").unwrap();
        let landed = release(&first, "api", "2222");
        release(&second, "web", "3333");
        first.push(1).unwrap();

        let pushed = second.push(1);

        assert!(
            matches!(pushed, Err(GitError::KeptMoving { attempts: 1, .. })),
            "{pushed:?}"
        );
        assert_eq!(remote.rev("main"), landed);
    }

    #[test]
    fn same_line_edits_conflict_and_leave_the_remote_alone() {
        let remote = Remote::new();
        let first = Workdir::clone(&remote.url(), "main").unwrap();
        let second = Workdir::clone(&remote.url(), "main").unwrap();
        let landed = release(&first, "api", "2222");
        let mine = release(&second, "api", "3333");
        first.push(3).unwrap();

        let err = second.push(3).unwrap_err();

        match &err {
            GitError::Conflict { files, branch, .. } => {
                assert_eq!(files, &[API.to_string()]);
                assert_eq!(branch, "main");
            }
            other => panic!("expected a conflict, got {other:?}"),
        }
        assert!(err.to_string().contains(API), "{err}");
        assert_eq!(remote.rev("main"), landed);
        // The rebase was aborted: the clone is back on its own commit, clean.
        assert_eq!(second.head().unwrap(), mine);
        assert!(!second.root().join(".git/rebase-merge").exists());
        assert_eq!(git(second.root(), &["status", "--porcelain"]), "");
    }

    #[cfg(unix)]
    #[test]
    fn a_hook_refusal_is_rejected_with_its_words_and_not_retried() {
        use std::os::unix::fs::PermissionsExt;
        let remote = Remote::new();
        let seed = remote.rev("main");
        let hook = remote.bare().join("hooks/pre-receive");
        let script = "#!/bin/sh\necho push >> pushes.log\n\
                      echo 'main is protected: open a pull request' >&2\nexit 1\n";
        fs::write(&hook, script).unwrap();
        fs::set_permissions(&hook, fs::Permissions::from_mode(0o755)).unwrap();
        let work = Workdir::clone(&remote.url(), "main").unwrap();
        release(&work, "api", "2222");

        let err = work.push(3).unwrap_err();

        match &err {
            GitError::Rejected { reason, branch, .. } => {
                assert!(
                    reason.contains("main is protected: open a pull request"),
                    "{reason}"
                );
                assert_eq!(branch, "main");
            }
            other => panic!("expected a rejection, got {other:?}"),
        }
        assert!(
            err.to_string().contains("refused the push to `main`"),
            "{err}"
        );
        assert_eq!(remote.rev("main"), seed);
        assert_eq!(
            fs::read_to_string(remote.bare().join("pushes.log")).unwrap(),
            "push\n"
        );
    }

    #[test]
    fn a_new_branch_is_pushed_beside_main_and_only_once() {
        let remote = Remote::new();
        let seed = remote.rev("main");
        let work = Workdir::clone(&remote.url(), "main").unwrap();
        let commit = release(&work, "api", "2222");

        let pushed = work.push_new_branch("release/api-2222").unwrap();

        assert_eq!(
            pushed,
            Pushed {
                commit: commit.clone(),
                attempts: 1
            }
        );
        assert_eq!(remote.rev("release/api-2222"), commit);
        assert_eq!(remote.rev("main"), seed);
        let again = work.push_new_branch("release/api-2222");
        assert!(
            matches!(again, Err(GitError::BranchExists { .. })),
            "{again:?}"
        );
        release(&work, "api", "3333");
        let other = work.push_new_branch("release/api-2222");
        assert!(
            matches!(other, Err(GitError::BranchExists { .. })),
            "{other:?}"
        );
        assert_eq!(remote.rev("release/api-2222"), commit);
        let main = work.push_new_branch("main");
        assert!(
            matches!(main, Err(GitError::BranchExists { .. })),
            "{main:?}"
        );
        assert_eq!(remote.rev("main"), seed);
    }

    #[test]
    fn log_lists_a_paths_commits_newest_first_with_whole_messages() {
        let remote = Remote::new();
        let work = Workdir::clone(&remote.url(), "main").unwrap();
        let first = release(&work, "api", "2222");
        release(&work, "web", "2222");
        let odd = "release api@sha256:3333 — ünïcode \"quotes\" | %x00 \u{1e} \t tab\n\n\
                   # not a comment\n\n\nbody after blank lines\n\n\
                   Release-Id: 42\nSigned-off-by: Release Bot <release-bot@example.com>";
        work.write(Path::new(API), &deployment("api", "3333"))
            .unwrap();
        let last = work.commit(&[PathBuf::from(API)], odd, &author()).unwrap();

        let log = work.log(Path::new(API), 10).unwrap();

        let ids: Vec<&str> = log.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, [last.as_str(), first.as_str(), &remote.rev("main")]);
        assert_eq!(log[0].message, odd);
        assert_eq!(log[1].message, "release api 2222");
        assert_eq!(log[2].message, "seed");
        assert_eq!(
            (log[0].author.as_str(), log[0].email.as_str()),
            ("Release Bot", "release-bot@example.com")
        );
        assert_eq!(log[2].author, "Seeder");
        for commit in &log {
            commit.time.parse::<jiff::Timestamp>().unwrap();
        }
        assert_eq!(work.log(Path::new(API), 1).unwrap().len(), 1);
        assert_eq!(work.log(Path::new(WEB), 10).unwrap().len(), 2);
        assert_eq!(work.log(Path::new("apps/none"), 10).unwrap(), []);
    }

    #[test]
    fn refresh_takes_the_remote_branch_as_it_is_now() {
        let remote = Remote::new();
        let first = Workdir::clone(&remote.url(), "main").unwrap();
        let second = Workdir::clone(&remote.url(), "main").unwrap();
        let landed = release(&first, "api", "2222");
        first.push(1).unwrap();
        release(&second, "api", "3333");
        second.write(Path::new(WEB), "half-done edit\n").unwrap();
        second
            .write(Path::new("apps/new/x.yaml"), "untracked\n")
            .unwrap();

        second.refresh().unwrap();

        assert_eq!(second.head().unwrap(), landed);
        assert_eq!(
            second.read(Path::new(API)).unwrap(),
            Some(deployment("api", "2222"))
        );
        assert_eq!(
            second.read(Path::new(WEB)).unwrap(),
            Some(deployment("web", "1111"))
        );
        assert_eq!(second.read(Path::new("apps/new/x.yaml")).unwrap(), None);
    }

    #[test]
    fn a_local_repository_is_cloned_over_gits_protocol_not_by_copying_its_objects() {
        // Copying (or hard-linking) a local repository's object directory races with pushes
        // into it: an in-flight push's quarantine directory vanishes mid-copy and the clone
        // fails ("failed to copy file ... tmp_objdir-incoming-..."). Over git's protocol the
        // clone receives a pack and never walks the remote's directory.
        let remote = Remote::new();
        let loose = remote.bare().join("objects");
        let work = Workdir::clone(&remote.url(), "main").unwrap();

        let objects = work.root().join(".git/objects");
        let mut linked = Vec::new();
        let mut packs = 0;
        for entry in walk(&objects) {
            let meta = fs::metadata(&entry).unwrap();
            if std::os::unix::fs::MetadataExt::nlink(&meta) > 1 {
                linked.push(entry.clone());
            }
            if entry.extension().is_some_and(|e| e == "pack") {
                packs += 1;
            }
        }
        assert!(walk(&loose).len() > 3, "the remote keeps loose objects");
        assert!(linked.is_empty(), "hard-linked from the remote: {linked:?}");
        assert_eq!(packs, 1, "the objects came as one pack");
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut files = Vec::new();
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                files.extend(walk(&path));
            } else {
                files.push(path);
            }
        }
        files
    }

    #[test]
    fn clone_failures_say_what_is_missing() {
        let remote = Remote::new();
        let nowhere = remote.dir.path().join("nowhere");
        let err = Workdir::clone(nowhere.to_str().unwrap(), "main").unwrap_err();
        assert!(matches!(err, GitError::CannotClone { .. }), "{err:?}");
        let text = err.to_string();
        assert!(
            text.contains("nowhere") && text.contains("git ls-remote"),
            "{text}"
        );

        let err = Workdir::clone(&remote.url(), "nope").unwrap_err();
        assert!(matches!(err, GitError::NoBranch { .. }), "{err:?}");
        assert!(err.to_string().contains("has no branch `nope`"), "{err}");
    }

    #[test]
    fn branch_exists_lists_the_remote() {
        let remote = Remote::new();
        assert!(branch_exists(&remote.url(), "main").unwrap());
        // `main` must not match `team/main`.
        remote.git(&["branch", "team/api", "main"]);
        assert!(!branch_exists(&remote.url(), "api").unwrap());
        assert!(!branch_exists(&remote.url(), "nope").unwrap());
        let nowhere = remote.dir.path().join("nowhere");
        let err = branch_exists(nowhere.to_str().unwrap(), "main").unwrap_err();
        assert!(matches!(err, GitError::Unreachable { .. }), "{err:?}");
    }

    #[test]
    fn paths_must_stay_inside_the_work_tree() {
        let remote = Remote::new();
        let work = Workdir::clone(&remote.url(), "main").unwrap();
        for path in [
            "../x",
            "apps/../../x",
            "/etc/passwd",
            ".git/config",
            "apps/.GIT/hooks",
        ] {
            let path = Path::new(path);
            let outside = |r: Result<(), GitError>| matches!(r, Err(GitError::PathOutside { .. }));
            assert!(outside(work.read(path).map(drop)), "read {path:?}");
            assert!(outside(work.write(path, "x")), "write {path:?}");
            assert!(
                outside(work.commit(&[path.into()], "x", &author()).map(drop)),
                "{path:?}"
            );
            assert!(outside(work.log(path, 1).map(drop)), "log {path:?}");
            assert!(!work.is_dir(path));
        }
        assert!(!work.root().parent().unwrap().join("x").exists());
        let inner = Path::new("apps/./api/../web/deployment.yaml");
        assert_eq!(work.read(inner).unwrap(), Some(deployment("web", "1111")));
        let err = work.read(Path::new("../x")).unwrap_err();
        assert!(
            err.to_string().contains("`../x` is not a path inside"),
            "{err}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn symbolic_links_cannot_lead_out_of_the_work_tree() {
        let remote = Remote::new();
        let work = Workdir::clone(&remote.url(), "main").unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let gone = elsewhere.path().join("gone");
        std::os::unix::fs::symlink(elsewhere.path(), work.root().join("escape")).unwrap();
        std::os::unix::fs::symlink(&gone, work.root().join("dangling")).unwrap();
        std::os::unix::fs::symlink("apps", work.root().join("alias")).unwrap();

        for path in ["escape/x", "dangling", "dangling/x"] {
            let written = work.write(Path::new(path), "x");
            assert!(
                matches!(written, Err(GitError::PathOutside { .. })),
                "{path}: {written:?}"
            );
        }
        assert!(!elsewhere.path().join("x").exists() && !gone.exists());
        let inside = work.read(Path::new("alias/web/deployment.yaml")).unwrap();
        assert_eq!(inside, Some(deployment("web", "1111")));
    }

    #[test]
    fn passwords_never_show() {
        assert_eq!(
            redact("https://bot:s3cret@git.example/d.git"),
            "https://bot:***@git.example/d.git"
        );
        assert_eq!(
            redact("fatal: 'https://u:p@h:8443/x' x"),
            "fatal: 'https://u:***@h:8443/x' x"
        );
        for kept in [
            "git@github.com:org/d.git",
            "https://git.example/d.git",
            "ssh://git@h/d",
            "/srv/d",
        ] {
            assert_eq!(redact(kept), kept);
        }
        // Nothing listens on port 1: git fails at once, naming the URL.
        let err = Workdir::clone("https://bot:s3cret@127.0.0.1:1/d.git", "main").unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, GitError::CannotClone { .. }), "{err:?}");
        assert!(
            text.contains("https://bot:***@127.0.0.1:1/d.git") && !text.contains("s3cret"),
            "{text}"
        );
    }
}
