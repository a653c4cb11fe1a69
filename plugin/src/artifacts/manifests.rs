//! An environment's manifests at the commit being released.
//!
//! A release deploys a commit, so its manifests are read from git's object database at that
//! commit, never from the working tree: an edit not yet committed (or a checkout of another
//! branch) must not reach the cluster under the commit's name. What the working tree has that
//! the commit has not is reported instead, for the caller to warn about.
//!
//! A directory holding a `kustomization.yaml` is built with `kubectl kustomize` from a copy of
//! the commit's tree (bases in `../base` included); any other directory is read like
//! `kubectl apply -f DIR` reads it: its own `.yaml`, `.yml` and `.json` files, not recursively.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};
use std::process::Command;

use gix::objs::tree::EntryKind;

use crate::domain::{CommitSha, Failure, Outcome};

/// The names `kubectl kustomize` accepts for a directory's kustomization.
const KUSTOMIZATION_FILES: [&str; 3] = ["kustomization.yaml", "kustomization.yml", "Kustomization"];

/// The extensions `kubectl apply -f DIR` reads.
const MANIFEST_EXTENSIONS: [&str; 3] = [".yaml", ".yml", ".json"];

/// One file of manifests as text, named as errors should name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub file: String,
    pub text: String,
}

/// An environment's manifests at a commit.
#[derive(Debug, Clone)]
pub struct AtCommit {
    pub sources: Vec<Source>,
    /// Whether `sources` is a kustomization's build (one source) rather than the directory's
    /// own files.
    pub kustomized: bool,
    /// When the commit is the checkout's HEAD: paths (relative to the release.yaml directory)
    /// under the manifests directory whose working-tree content differs from it (added, changed
    /// or deleted), edits that are not deployed; the caller warns. Releasing another commit
    /// (a tag, a rollback, a promotion) leaves it empty: the working tree differs from that
    /// commit by what was committed since, which is no mistake to warn about.
    pub uncommitted: Vec<String>,
}

/// Reads `manifests` (relative to `config_dir`, the directory holding release.yaml) at `commit`.
pub fn read_at_commit(
    config_dir: &Path,
    commit: &CommitSha,
    manifests: &Path,
) -> Result<AtCommit, Failure> {
    let relative = manifests_components(manifests)?;
    let label = join_or_dot(&relative);
    let repo = gix::discover(config_dir).map_err(|e| {
        Failure::invalid(format!(
            "cannot read the manifests: {} is not inside a git repository ({e}); \
             keep release.yaml in the app's git checkout",
            config_dir.display()
        ))
    })?;
    let prefix = config_prefix(&repo, config_dir)?;
    let full = normalize(prefix.iter().chain(&relative)).ok_or_else(|| {
        Failure::invalid(format!(
            "manifests directory {label} points outside the git repository: \
             fix `manifests` in release.yaml"
        ))
    })?;
    let root = commit_tree(&repo, commit)?;
    let dir = manifests_dir(&root, &full, &label, commit)?;
    let mut files = Vec::new();
    list_tree(&dir, "", &mut files).map_err(|e| repo_error(&label, commit, &e))?;

    let kustomized = files.iter().any(is_kustomization);
    let sources = if kustomized {
        vec![kustomize_build(&root, &prefix, &full, &label, commit)?]
    } else {
        plain_sources(&repo, &files, &label, commit)?
    };
    let at_head = gix::ObjectId::from_hex(commit.as_str().as_bytes())
        .is_ok_and(|id| repo.head_id().is_ok_and(|head| head.detach() == id));
    let uncommitted = if at_head {
        uncommitted(&repo, &files, &config_dir.join(manifests), &label)
    } else {
        Vec::new()
    };
    Ok(AtCommit {
        sources,
        kustomized,
        uncommitted,
    })
}

/// A file (or symlink, or submodule) of a tree, named relative to the tree walked.
#[derive(Debug, Clone)]
struct TreeFile {
    path: String,
    kind: EntryKind,
    id: gix::ObjectId,
}

/// `manifests` as path components relative to the config directory, `..` kept only where it
/// leads out of it: `./kubernetes/qa/` and `kubernetes/qa` name the same directory.
fn manifests_components(manifests: &Path) -> Result<Vec<String>, Failure> {
    let mut parts: Vec<String> = Vec::new();
    for component in manifests.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir if parts.last().is_some_and(|p| p != "..") => {
                parts.pop();
            }
            Component::ParentDir => parts.push("..".to_string()),
            Component::Normal(name) => parts.push(
                name.to_str()
                    .ok_or_else(|| {
                        Failure::invalid(format!(
                            "manifests directory {} is not valid UTF-8: rename it, \
                             or fix `manifests` in release.yaml",
                            manifests.display()
                        ))
                    })?
                    .to_string(),
            ),
            Component::RootDir | Component::Prefix(_) => {
                return Err(Failure::invalid(format!(
                    "manifests directory {} is absolute: give it relative to the directory \
                     of release.yaml in `manifests` of release.yaml",
                    manifests.display()
                )));
            }
        }
    }
    Ok(parts)
}

/// Resolves `..` lexically; `None` if the path climbs above where it starts (the repository
/// root), since nothing there is in the commit.
fn normalize<'a>(parts: impl IntoIterator<Item = &'a String>) -> Option<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for part in parts {
        if part == ".." {
            out.pop()?;
        } else {
            out.push(part.clone());
        }
    }
    Some(out)
}

fn join_or_dot(parts: &[String]) -> String {
    if parts.is_empty() {
        ".".to_string()
    } else {
        parts.join("/")
    }
}

/// Where the config directory sits inside the repository, as tree path components; both sides
/// are canonicalized so symlinked temp dirs and `..` in the argument don't matter.
fn config_prefix(repo: &gix::Repository, config_dir: &Path) -> Result<Vec<String>, Failure> {
    let work_dir = repo.workdir().ok_or_else(|| {
        Failure::invalid(format!(
            "cannot read the manifests: the git repository of {} has no working tree; \
             run from a checkout of the app",
            config_dir.display()
        ))
    })?;
    let canonical = |path: &Path| {
        path.canonicalize()
            .map_err(|e| Failure::invalid(format!("cannot read directory {}: {e}", path.display())))
    };
    let (config, work) = (canonical(config_dir)?, canonical(work_dir)?);
    let inside = config.strip_prefix(&work).map_err(|_| {
        Failure::invalid(format!(
            "{} is not inside the working tree {} of its git repository",
            config.display(),
            work.display()
        ))
    })?;
    inside
        .components()
        .map(|c| {
            c.as_os_str()
                .to_str()
                .map(str::to_string)
                .ok_or_else(|| Failure::invalid(format!("{} is not valid UTF-8", inside.display())))
        })
        .collect()
}

/// The tree of the released commit, which must be in the local object database.
fn commit_tree<'repo>(
    repo: &'repo gix::Repository,
    commit: &CommitSha,
) -> Result<gix::Tree<'repo>, Failure> {
    let short = commit.short();
    let id = gix::ObjectId::from_hex(commit.as_str().as_bytes())
        .map_err(|e| Failure::invalid(format!("`{commit}` is not a commit hash: {e}")))?;
    let found = repo.find_commit(id).map_err(|e| {
        Failure::invalid(format!(
            "commit {short} is not in the local git repository ({e}): \
             `git fetch` it, or release a commit that is"
        ))
    })?;
    found.tree().map_err(|e| {
        Failure::new(
            Outcome::Error,
            format!("cannot read the tree of commit {short}: {e}"),
        )
    })
}

/// Looks up the tree at `path` (repository-relative), explaining a missing one as the user's to
/// fix: the directory was not committed, or release.yaml names it wrongly.
fn manifests_dir<'repo>(
    root: &gix::Tree<'repo>,
    path: &[String],
    label: &str,
    commit: &CommitSha,
) -> Result<gix::Tree<'repo>, Failure> {
    let short = commit.short();
    match subtree(root, path).map_err(|e| repo_error(label, commit, &e))? {
        Lookup::Dir(tree) => Ok(tree),
        Lookup::Missing => Err(Failure::invalid(format!(
            "{label} is not in commit {short}: commit the manifests, \
             or fix `manifests` in release.yaml"
        ))),
        Lookup::NotDir => Err(Failure::invalid(format!(
            "{label} is not a directory in commit {short}: `manifests` names a directory; \
             fix `manifests` in release.yaml"
        ))),
    }
}

enum Lookup<'repo> {
    Dir(gix::Tree<'repo>),
    NotDir,
    Missing,
}

fn subtree<'repo>(root: &gix::Tree<'repo>, path: &[String]) -> Result<Lookup<'repo>, gix::Error> {
    if path.is_empty() {
        return Ok(Lookup::Dir(root.id().object()?.try_into_tree()?));
    }
    let Some(entry) = root.lookup_entry(path.iter().map(|p| p.as_bytes()))? else {
        return Ok(Lookup::Missing);
    };
    if !entry.mode().is_tree() {
        return Ok(Lookup::NotDir);
    }
    Ok(Lookup::Dir(entry.object()?.try_into_tree()?))
}

/// Every non-directory entry under `tree`, recursively, with `/`-joined paths below `base`.
/// Names that could not be a path on disk (`..`, separators, non-UTF-8, `.git`) are skipped,
/// so a crafted tree cannot write outside the directory it is extracted to.
fn list_tree(tree: &gix::Tree<'_>, base: &str, out: &mut Vec<TreeFile>) -> Result<(), gix::Error> {
    for entry in tree.iter() {
        let entry = entry?;
        let Ok(name) = std::str::from_utf8(entry.filename()) else {
            continue;
        };
        if matches!(name, "" | "." | ".." | ".git") || name.contains(['/', '\\']) {
            continue;
        }
        let path = if base.is_empty() {
            name.to_string()
        } else {
            format!("{base}/{name}")
        };
        match entry.kind() {
            EntryKind::Tree => list_tree(&entry.object()?.try_into_tree()?, &path, out)?,
            kind => out.push(TreeFile {
                path,
                kind,
                id: entry.object_id(),
            }),
        }
    }
    Ok(())
}

fn is_blob(file: &TreeFile) -> bool {
    matches!(file.kind, EntryKind::Blob | EntryKind::BlobExecutable)
}

/// A kustomization directly in the manifests directory (not in a subdirectory of it).
fn is_kustomization(file: &TreeFile) -> bool {
    is_blob(file) && KUSTOMIZATION_FILES.contains(&file.path.as_str())
}

/// The directory's own manifest files, by name, as `kubectl apply -f DIR` would take them.
fn plain_sources(
    repo: &gix::Repository,
    files: &[TreeFile],
    label: &str,
    commit: &CommitSha,
) -> Result<Vec<Source>, Failure> {
    let short = commit.short();
    let mut chosen: Vec<&TreeFile> = files
        .iter()
        .filter(|f| is_blob(f) && !f.path.contains('/'))
        .filter(|f| MANIFEST_EXTENSIONS.iter().any(|ext| f.path.ends_with(ext)))
        .collect();
    if chosen.is_empty() {
        return Err(Failure::invalid(format!(
            "{label} has no manifests (.yaml/.yml/.json) in commit {short}: \
             commit them, or fix `manifests` in release.yaml"
        )));
    }
    chosen.sort_by(|a, b| a.path.cmp(&b.path));
    chosen
        .into_iter()
        .map(|f| {
            let file = format!("{label}/{}", f.path);
            let data = repo
                .find_object(f.id)
                .map_err(|e| repo_error(&file, commit, &e))?
                .detach()
                .data;
            let text = String::from_utf8(data).map_err(|_| {
                Failure::invalid(format!(
                    "{file} in commit {short} is not UTF-8 text; manifests must be YAML or JSON"
                ))
            })?;
            Ok(Source { file, text })
        })
        .collect()
}

/// Builds the kustomization at `full` from a copy of the commit's tree. The copy holds the
/// config directory (widened to hold the manifests, should `manifests` climb out of it), so
/// bases beside the overlay, as in `resources: [../base]`, are there too.
fn kustomize_build(
    root: &gix::Tree<'_>,
    prefix: &[String],
    full: &[String],
    label: &str,
    commit: &CommitSha,
) -> Result<Source, Failure> {
    let shared = prefix.iter().zip(full).take_while(|(a, b)| a == b).count();
    let base = match subtree(root, &full[..shared]).map_err(|e| repo_error(label, commit, &e))? {
        Lookup::Dir(tree) => tree,
        Lookup::NotDir | Lookup::Missing => {
            return Err(repo_error(label, commit, &"the directory vanished"));
        }
    };
    let mut files = Vec::new();
    list_tree(&base, "", &mut files).map_err(|e| repo_error(label, commit, &e))?;
    let tmp = tempfile::Builder::new()
        .prefix("kubectl-release-manifests-")
        .tempdir()
        .map_err(|e| io_error("create a temporary directory for the kustomize build", &e))?;
    extract(root.repo, &files, tmp.path(), label, commit)?;
    let target = full[shared..]
        .iter()
        .fold(tmp.path().to_path_buf(), |dir, part| dir.join(part));
    run_kustomize(&target, label, commit)
}

/// Writes the blobs of `files` under `dir`; symlinks and submodules are left out, as what they
/// point to is not in the commit's tree.
fn extract(
    repo: &gix::Repository,
    files: &[TreeFile],
    dir: &Path,
    label: &str,
    commit: &CommitSha,
) -> Result<(), Failure> {
    for file in files.iter().filter(|f| is_blob(f)) {
        let path = file
            .path
            .split('/')
            .fold(dir.to_path_buf(), |p, c| p.join(c));
        let data = repo
            .find_object(file.id)
            .map_err(|e| repo_error(label, commit, &e))?
            .detach()
            .data;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| io_error(&format!("create {}", parent.display()), &e))?;
        }
        std::fs::write(&path, data)
            .map_err(|e| io_error(&format!("write {}", path.display()), &e))?;
    }
    Ok(())
}

/// The kustomize build of `target` (extracted from `commit`) as one source.
fn run_kustomize(target: &Path, label: &str, commit: &CommitSha) -> Result<Source, Failure> {
    let text = build_kustomization(target, &format!("{label} at {}", commit.short()))?;
    Ok(Source {
        file: format!("{label} (kustomize build)"),
        text,
    })
}

/// Runs `kubectl kustomize DIR` (or `$KUBECTL`), passing its complaint on unchanged: it names
/// the file and field to fix better than any summary would. `what` names the directory in
/// messages.
///
/// # Errors
///
/// kubectl cannot be run, or the build fails (an `invalid` failure with kustomize's words).
pub fn build_kustomization(target: &Path, what: &str) -> Result<String, Failure> {
    let kubectl = std::env::var_os("KUBECTL")
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| OsString::from("kubectl"));
    let output = Command::new(&kubectl)
        .arg("kustomize")
        .arg(target)
        .output()
        .map_err(|e| {
            Failure::invalid(format!(
                "cannot run kubectl (`{}`) for the kustomize build of {what}: {e}; \
                 install kubectl, or set KUBECTL to its path",
                kubectl.to_string_lossy()
            ))
        })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(Failure::invalid(format!(
            "kustomize build of {what} failed:\n{}",
            stderr.trim()
        )));
    }
    String::from_utf8(output.stdout).map_err(|_| {
        Failure::invalid(format!(
            "kustomize build of {what} printed text that is not UTF-8"
        ))
    })
}

/// What the working tree under `work_dir` has that differs from `committed`, as paths relative
/// to the config directory. Only a warning depends on it, so any error reading the working tree
/// gives an empty list rather than a failed release; a missing directory is all deleted.
fn uncommitted(
    repo: &gix::Repository,
    committed: &[TreeFile],
    work_dir: &Path,
    label: &str,
) -> Vec<String> {
    let submodules: BTreeSet<&str> = committed
        .iter()
        .filter(|f| f.kind == EntryKind::Commit)
        .map(|f| f.path.as_str())
        .collect();
    let mut working = BTreeMap::new();
    match read_work_tree(work_dir, "", &submodules, &mut working) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !work_dir.exists() => {}
        Err(_) => return Vec::new(),
    }
    let mut differing = BTreeSet::new();
    for file in committed.iter().filter(|f| f.kind != EntryKind::Commit) {
        match working.get(&file.path) {
            None => {
                differing.insert(file.path.clone());
            }
            Some(bytes) => match repo.find_object(file.id) {
                Ok(object) if object.data == *bytes => {}
                Ok(_) => {
                    differing.insert(file.path.clone());
                }
                Err(_) => return Vec::new(),
            },
        }
    }
    let in_commit: BTreeSet<&str> = committed.iter().map(|f| f.path.as_str()).collect();
    differing.extend(
        working
            .keys()
            .filter(|p| !in_commit.contains(p.as_str()))
            .cloned(),
    );
    differing
        .into_iter()
        .map(|p| {
            if label == "." {
                p
            } else {
                format!("{label}/{p}")
            }
        })
        .collect()
}

/// Reads every file under `dir` (a symlink as its target, as git stores it), skipping `.git`
/// and submodule checkouts, whose files are not the commit's.
fn read_work_tree(
    dir: &Path,
    base: &str,
    submodules: &BTreeSet<&str>,
    out: &mut BTreeMap<String, Vec<u8>>,
) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        let path = if base.is_empty() {
            name.to_string()
        } else {
            format!("{base}/{name}")
        };
        if name == ".git" || submodules.contains(path.as_str()) {
            continue;
        }
        let kind = entry.file_type()?;
        let disk: PathBuf = entry.path();
        if kind.is_dir() {
            read_work_tree(&disk, &path, submodules, out)?;
        } else if kind.is_symlink() {
            let target = std::fs::read_link(&disk)?;
            let target = gix::path::into_bstr(target)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
            out.insert(path, target.to_vec());
        } else if kind.is_file() {
            out.insert(path, std::fs::read(&disk)?);
        }
    }
    Ok(())
}

/// The object database could not be read: not the user's configuration, so not `Invalid`.
fn repo_error(what: &str, commit: &CommitSha, err: &dyn std::fmt::Display) -> Failure {
    Failure::new(
        Outcome::Error,
        format!(
            "cannot read {what} at commit {} from git: {err}",
            commit.short()
        ),
    )
}

fn io_error(action: &str, err: &std::io::Error) -> Failure {
    Failure::new(Outcome::Error, format!("cannot {action}: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real repository made by the `git` CLI, so the tests read what git writes.
    struct Repo {
        dir: tempfile::TempDir,
    }

    impl Repo {
        fn new() -> Repo {
            let repo = Repo {
                dir: tempfile::tempdir().unwrap(),
            };
            repo.git(&["init", "-q", "-b", "main"]);
            repo
        }

        fn path(&self) -> &Path {
            self.dir.path()
        }

        fn git(&self, args: &[&str]) -> String {
            let out = Command::new("git")
                .args(args)
                .current_dir(self.path())
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
        }

        fn write(&self, file: &str, text: &str) {
            let path = self.path().join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }

        fn remove(&self, file: &str) {
            std::fs::remove_file(self.path().join(file)).unwrap();
        }

        /// Commits everything and returns the commit.
        fn commit(&self, message: &str) -> CommitSha {
            self.git(&["add", "-A"]);
            self.git(&["commit", "-q", "-m", message]);
            CommitSha::parse_full(&self.git(&["rev-parse", "HEAD"])).unwrap()
        }
    }

    fn files(read: &AtCommit) -> Vec<&str> {
        read.sources.iter().map(|s| s.file.as_str()).collect()
    }

    #[test]
    fn plain_directory_is_read_at_the_older_commit_not_the_working_tree() {
        let repo = Repo::new();
        repo.write("release.yaml", "app: web\n");
        repo.write("kubernetes/qa/b.yaml", "kind: B\nversion: old\n");
        repo.write("kubernetes/qa/a.yml", "kind: A\n");
        repo.write("kubernetes/qa/c.json", "{\"kind\": \"C\"}\n");
        repo.write("kubernetes/qa/README.md", "not a manifest\n");
        repo.write("kubernetes/qa/nested/d.yaml", "kind: D\n");
        let old = repo.commit("one");
        repo.write("kubernetes/qa/b.yaml", "kind: B\nversion: new\n");
        let head = repo.commit("two");
        repo.write("kubernetes/qa/a.yml", "kind: A\nversion: dirty\n");

        let read = read_at_commit(repo.path(), &old, Path::new("kubernetes/qa")).unwrap();
        assert_eq!(
            files(&read),
            [
                "kubernetes/qa/a.yml",
                "kubernetes/qa/b.yaml",
                "kubernetes/qa/c.json"
            ]
        );
        assert_eq!(read.sources[0].text, "kind: A\n");
        assert_eq!(read.sources[1].text, "kind: B\nversion: old\n");
        assert_eq!(read.sources[2].text, "{\"kind\": \"C\"}\n");
        assert!(
            read.uncommitted.is_empty(),
            "b.yaml changed in a later commit and a.yml is an edit of HEAD, neither missing from \
             the older commit by mistake: {:?}",
            read.uncommitted
        );
        let at_head = read_at_commit(repo.path(), &head, Path::new("kubernetes/qa")).unwrap();
        assert_eq!(at_head.uncommitted, ["kubernetes/qa/a.yml"]);

        let spelled = read_at_commit(repo.path(), &old, Path::new("./kubernetes/qa/")).unwrap();
        assert_eq!(spelled.sources, read.sources);
    }

    #[test]
    fn release_yaml_in_a_subdirectory_names_manifests_from_there() {
        let repo = Repo::new();
        repo.write("app/release.yaml", "app: web\n");
        repo.write("app/kubernetes/qa/deploy.yaml", "kind: Deployment\n");
        repo.write("kubernetes/qa/other.yaml", "kind: NotThisOne\n");
        let commit = repo.commit("one");

        let config_dir = repo.path().join("app/../app");
        let read = read_at_commit(&config_dir, &commit, Path::new("kubernetes/qa")).unwrap();
        assert_eq!(
            read.sources,
            [Source {
                file: "kubernetes/qa/deploy.yaml".to_string(),
                text: "kind: Deployment\n".to_string(),
            }]
        );
        assert!(read.uncommitted.is_empty(), "{:?}", read.uncommitted);
    }

    #[test]
    fn dirty_working_tree_lists_modified_untracked_and_deleted_files() {
        let repo = Repo::new();
        repo.write("release.yaml", "app: web\n");
        repo.write("kubernetes/qa/kept.yaml", "kind: Kept\n");
        repo.write("kubernetes/qa/modified.yaml", "kind: Modified\n");
        repo.write("kubernetes/qa/deleted.yaml", "kind: Deleted\n");
        repo.write("elsewhere.yaml", "kind: Elsewhere\n");
        let commit = repo.commit("one");
        repo.write(
            "kubernetes/qa/modified.yaml",
            "kind: Modified\nagain: true\n",
        );
        repo.write("kubernetes/qa/new.yaml", "kind: New\n");
        repo.write("kubernetes/qa/sub/added.yaml", "kind: Added\n");
        repo.remove("kubernetes/qa/deleted.yaml");
        repo.write("elsewhere.yaml", "kind: ChangedButNotManifests\n");
        repo.git(&["add", "kubernetes/qa/sub/added.yaml"]);

        let read = read_at_commit(repo.path(), &commit, Path::new("kubernetes/qa")).unwrap();
        assert_eq!(
            read.uncommitted,
            [
                "kubernetes/qa/deleted.yaml",
                "kubernetes/qa/modified.yaml",
                "kubernetes/qa/new.yaml",
                "kubernetes/qa/sub/added.yaml",
            ]
        );
        assert_eq!(
            files(&read),
            [
                "kubernetes/qa/deleted.yaml",
                "kubernetes/qa/kept.yaml",
                "kubernetes/qa/modified.yaml"
            ]
        );
    }

    #[test]
    fn missing_or_empty_manifests_directory_is_a_usage_error_naming_it() {
        let repo = Repo::new();
        repo.write("release.yaml", "app: web\n");
        repo.write("kubernetes/qa/README.md", "no manifests here\n");
        repo.write("kubernetes/file.yaml", "kind: File\n");
        let commit = repo.commit("one");
        repo.write("kubernetes/prod/deploy.yaml", "kind: NotCommitted\n");

        let err = read_at_commit(repo.path(), &commit, Path::new("kubernetes/prod")).unwrap_err();
        assert_eq!(err.outcome, Outcome::Invalid);
        for part in ["kubernetes/prod", commit.short(), "release.yaml"] {
            assert!(err.message.contains(part), "{part}: {}", err.message);
        }

        let err =
            read_at_commit(repo.path(), &commit, Path::new("kubernetes/file.yaml")).unwrap_err();
        assert!(err.message.contains("not a directory"), "{}", err.message);

        let err = read_at_commit(repo.path(), &commit, Path::new("kubernetes/qa")).unwrap_err();
        assert_eq!(err.outcome, Outcome::Invalid);
        assert!(err.message.contains("has no manifests"), "{}", err.message);

        let err = read_at_commit(repo.path(), &commit, Path::new("../../x")).unwrap_err();
        assert!(err.message.contains("outside"), "{}", err.message);
    }

    #[test]
    fn kustomization_with_a_base_and_a_patch_is_built_at_the_commit() {
        let repo = Repo::new();
        repo.write("app/release.yaml", "app: web\n");
        repo.write(
            "app/kubernetes/base/kustomization.yaml",
            "resources:\n- configmap.yaml\n",
        );
        repo.write(
            "app/kubernetes/base/configmap.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\ndata:\n  level: base\n",
        );
        repo.write(
            "app/kubernetes/qa/kustomization.yaml",
            "resources:\n- ../base\npatches:\n- path: level.yaml\n",
        );
        repo.write(
            "app/kubernetes/qa/level.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\ndata:\n  level: qa-patched\n",
        );
        let commit = repo.commit("one");
        repo.write(
            "app/kubernetes/qa/level.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\ndata:\n  level: dirty\n",
        );

        let config_dir = repo.path().join("app");
        let read = read_at_commit(&config_dir, &commit, Path::new("kubernetes/qa")).unwrap();
        assert_eq!(files(&read), ["kubernetes/qa (kustomize build)"]);
        let text = &read.sources[0].text;
        assert!(text.contains("level: qa-patched"), "{text}");
        assert!(
            !text.contains("level: base") && !text.contains("dirty"),
            "{text}"
        );
        assert_eq!(read.uncommitted, ["kubernetes/qa/level.yaml"]);
    }

    #[test]
    fn broken_kustomization_fails_with_kustomize_s_own_error() {
        let repo = Repo::new();
        repo.write("release.yaml", "app: web\n");
        repo.write(
            "kubernetes/qa/kustomization.yml",
            "resources:\n- missing.yaml\n",
        );
        let commit = repo.commit("one");

        let err = read_at_commit(repo.path(), &commit, Path::new("kubernetes/qa")).unwrap_err();
        assert_eq!(err.outcome, Outcome::Invalid);
        let expected = format!(
            "kustomize build of kubernetes/qa at {} failed:\n",
            commit.short()
        );
        assert!(err.message.starts_with(&expected), "{}", err.message);
        assert!(err.message.contains("missing.yaml"), "{}", err.message);
        assert!(
            err.message.contains("no such file or directory"),
            "{}",
            err.message
        );
    }
}
