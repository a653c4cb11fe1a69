//! One clone of a deployment repository's branch for all the releases of one process
//! (`promote --all` writing dozens of apps into one repository): cloning is most of a GitOps
//! release's cost, so the releases share a work tree and each one only fetches.
//!
//! Sharing a work tree is safe because of two rules:
//! - **A directory is claimed by one release at a time.** A release edits only files of its
//!   environment's directory, and claims it from reading to pushing; a second release of the
//!   same directory in the same process gets a private clone instead (two apps in one
//!   kustomization, say), so no commit ever carries another release's edit.
//! - **Reading and writing the tree take turns.** Renders and edits of claimed files read;
//!   whatever moves `HEAD`, the index or the files of others (fetch and fast-forward, commit,
//!   push, rebase, restoring an edit) writes. Commits name their paths, and a rebase stashes the
//!   other releases' edits and puts them back.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::gitops::{GitError, Workdir};

/// The shared clones of one process, by repository and branch. Cloning this handle shares
/// them; the clones are removed when the last handle is dropped.
#[derive(Debug, Clone, Default)]
pub struct Clones {
    slots: Arc<Mutex<HashMap<String, Arc<Slot>>>>,
}

/// Where one repository's and branch's clone is made once.
#[derive(Debug, Default)]
struct Slot {
    clone: Mutex<Option<Arc<SharedClone>>>,
}

impl Clones {
    /// The branch's shared clone as the remote has it now (blocking): cloned on first use,
    /// fetched and fast-forwarded after that. A failed clone is not kept: the next call tries
    /// again.
    pub fn checkout(&self, url: &str, branch: &str) -> Result<Arc<SharedClone>, GitError> {
        let slot = lock(&self.slots)
            .entry(format!("{url}#{branch}"))
            .or_default()
            .clone();
        let mut clone = lock(&slot.clone);
        if let Some(shared) = clone.as_ref() {
            let shared = shared.clone();
            drop(clone);
            {
                let _turn = shared.writing();
                shared.workdir.sync()?;
            }
            return Ok(shared);
        }
        let shared = SharedClone::new(Workdir::clone(url, branch)?);
        *clone = Some(shared.clone());
        Ok(shared)
    }
}

/// A clone that several releases of this process read, edit and push through.
#[derive(Debug)]
pub struct SharedClone {
    workdir: Workdir,
    /// Renders and claimed edits read; changes of `HEAD`, the index or others' files write.
    tree: RwLock<()>,
    /// The directories releases are editing.
    claimed: Mutex<HashSet<PathBuf>>,
}

impl SharedClone {
    /// A clone of its own (for one release, or one that cannot share).
    pub fn new(workdir: Workdir) -> Arc<SharedClone> {
        Arc::new(SharedClone {
            workdir,
            tree: RwLock::new(()),
            claimed: Mutex::default(),
        })
    }

    pub fn workdir(&self) -> &Workdir {
        &self.workdir
    }

    /// Held while the tree is read, or claimed files are edited.
    pub fn reading(&self) -> RwLockReadGuard<'_, ()> {
        self.tree.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Held while `HEAD`, the index or unclaimed files change.
    pub fn writing(&self) -> RwLockWriteGuard<'_, ()> {
        self.tree.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Claims `dir` for one release until the claim is dropped; `None` when another release
    /// of this process holds it.
    pub fn claim(self: &Arc<Self>, dir: &Path) -> Option<Claim> {
        let fresh = lock(&self.claimed).insert(dir.to_path_buf());
        fresh.then(|| Claim {
            clone: self.clone(),
            dir: dir.to_path_buf(),
        })
    }
}

/// One release's hold on its directory of a shared clone (and the clone itself).
#[derive(Debug)]
pub struct Claim {
    clone: Arc<SharedClone>,
    dir: PathBuf,
}

impl Claim {
    pub fn shared(&self) -> &Arc<SharedClone> {
        &self.clone
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        lock(&self.clone.claimed).remove(&self.dir);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::artifacts::gitops::tests::{API, Remote, WEB, author, deployment, git, release};

    #[test]
    fn the_branch_is_cloned_once_and_caught_up_on_every_checkout() {
        let remote = Remote::new();
        let clones = Clones::default();
        let first = clones.checkout(&remote.url(), "main").unwrap();
        // Someone else pushes meanwhile.
        let other = Workdir::clone(&remote.url(), "main").unwrap();
        release(&other, "api", "2222");
        other.push(1).unwrap();

        let second = clones.checkout(&remote.url(), "main").unwrap();

        assert!(Arc::ptr_eq(&first, &second), "one clone for the process");
        assert_eq!(
            second.workdir().read(Path::new(API)).unwrap().unwrap(),
            deployment("api", "2222")
        );
        assert_eq!(second.workdir().head().unwrap(), remote.rev("main"));
        // Another branch is another clone.
        remote.git(&["branch", "staging", "main"]);
        let staging = clones.checkout(&remote.url(), "staging").unwrap();
        assert!(!Arc::ptr_eq(&first, &staging));
    }

    #[test]
    fn a_directory_is_claimed_by_one_release_at_a_time() {
        let remote = Remote::new();
        let shared = Clones::default().checkout(&remote.url(), "main").unwrap();
        let api = shared.claim(Path::new("apps/api")).expect("free");
        assert!(shared.claim(Path::new("apps/api")).is_none(), "taken");
        let web = shared.claim(Path::new("apps/web"));
        assert!(web.is_some(), "another directory is free");
        drop(api);
        assert!(shared.claim(Path::new("apps/api")).is_some(), "freed");
    }

    #[test]
    fn a_pending_edit_survives_another_releases_rebase_and_push_and_then_lands_alone() {
        let remote = Remote::new();
        let shared = Clones::default().checkout(&remote.url(), "main").unwrap();
        let work = shared.workdir();
        // Release 1 has staged its edit of web and waits (hooks, the journal).
        work.write(Path::new(WEB), &deployment("web", "5555"))
            .unwrap();
        // Another process pushes a new file, so release 2's push must rebase.
        let outside = Workdir::clone(&remote.url(), "main").unwrap();
        outside
            .write(Path::new("README.md"), "deployment repository\n")
            .unwrap();
        outside
            .commit(&[PathBuf::from("README.md")], "docs", &author())
            .unwrap();
        outside.push(1).unwrap();

        // Release 2 commits and pushes api through the same clone.
        let pushed = {
            let _turn = shared.writing();
            release(work, "api", "4444");
            work.push(3).unwrap()
        };

        assert_eq!(pushed.attempts, 2, "rebased onto the outside push");
        assert_eq!(
            work.read(Path::new(WEB)).unwrap().unwrap(),
            deployment("web", "5555"),
            "release 1's edit is still in the tree"
        );
        let changed = remote.git(&["show", "--name-only", "--format=", "main"]);
        assert_eq!(
            changed.trim(),
            API,
            "release 2's commit carries only its file"
        );

        // Release 1 lands on top, with only its own file.
        {
            let _turn = shared.writing();
            work.commit(&[PathBuf::from(WEB)], "release web 5555", &author())
                .unwrap();
            work.push(1).unwrap();
        }
        let changed = remote.git(&["show", "--name-only", "--format=", "main"]);
        assert_eq!(changed.trim(), WEB);
        assert_eq!(
            remote.subjects(),
            ["release web 5555", "release api 4444", "docs", "seed"]
        );
        let status = git(work.root(), &["status", "--porcelain"]);
        assert_eq!(status, "", "nothing left over in the shared tree");
    }

    #[test]
    fn a_push_that_failed_leaves_neither_commit_nor_edit_behind() {
        let remote = Remote::new();
        let shared = Clones::default().checkout(&remote.url(), "main").unwrap();
        let work = shared.workdir();
        let before = work.head().unwrap();
        release(work, "api", "6666");
        // The remote refuses every push.
        let hook = remote.bare().join("hooks/pre-receive");
        fs::write(&hook, "#!/bin/sh\necho frozen >&2\nexit 1\n").unwrap();
        let mut perms = fs::metadata(&hook).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
        fs::set_permissions(&hook, perms).unwrap();
        assert!(work.push(1).is_err());

        work.uncommit().unwrap();
        work.restore(&[PathBuf::from(API)]).unwrap();

        assert_eq!(work.head().unwrap(), before);
        let status = git(work.root(), &["status", "--porcelain"]);
        assert_eq!(status, "", "the tree is the branch again");
    }
}
