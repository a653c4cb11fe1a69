//! Release records: the journal of every release that changed (or set out to change) an
//! environment, and the pure decisions taken on them.
//!
//! A record is written `in-progress` before the first change and finished with a definite
//! outcome on every path. A record still `in-progress` when another run holds the lock belongs
//! to a process that died: it is shown as `interrupted`, and the next release finishes it.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::lock::LockState;
use super::manifest::ObjectRef;
use super::{CommitSha, ContainerChange, Outcome, ReleaseKind, Verdict, WorkloadRef};

/// Who released: the identity, and whether the API server vouched for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Actor {
    pub user: String,
    #[serde(default)]
    pub groups: Vec<String>,
    pub verified: bool,
}

/// One release of an app into an environment. This is also the `-o json` shape of `history`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Release {
    pub revision: u64,
    pub app: String,
    pub environment: String,
    pub kind: ReleaseKind,
    pub commit: Option<CommitSha>,
    /// `repo:<sha>` the digest was resolved from, when the release was a commit deploy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_tag: Option<String>,
    /// The branch the commit was the head of, when the release was asked for by branch name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// Every planned container change, pinned by digest.
    pub containers: Vec<ContainerChange>,
    pub actor: Actor,
    /// RFC 3339.
    pub started_at: String,
    /// RFC 3339; empty while in progress.
    #[serde(default)]
    pub finished_at: String,
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_environment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_revision: Option<u64>,
    /// For rollbacks: the revision whose images were restored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored_revision: Option<u64>,
    /// The holder of the release lock while it ran: who to blame for an `in-progress` record.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub lock_holder: String,
    /// The workloads this release has changed so far (in the order it changed them).
    #[serde(default)]
    pub applied: Vec<WorkloadRef>,
    #[serde(default)]
    pub hooks: Vec<Verdict>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// The manifests this release applies, for an environment that has them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifests: Option<RecordedManifests>,
    /// The objects of those manifests applied so far, in the order they were applied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub applied_objects: Vec<ObjectRef>,
    /// The release's Jobs (migrations, verification), as they ended.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub jobs: Vec<super::job::JobRun>,
    /// A GitOps environment's release: where it was written, and its commit once pushed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gitops: Option<RecordedGitops>,
}

/// Where a GitOps release was written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecordedGitops {
    /// The deployment repository (credentials in a URL are never written).
    pub repo: String,
    /// The branch the environment is applied from.
    pub branch: String,
    /// The environment's directory in the repository.
    pub path: String,
    /// The release's commit, once it is on the remote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// With `--pull-request`: the branch pushed for review instead of `branch`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review_branch: Option<String>,
}

/// What a release with manifests applies: enough to tell a config change from none, to prune,
/// and to render the same set again for a rollback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecordedManifests {
    /// The manifests directory, relative to release.yaml, read at the release's commit.
    pub path: String,
    /// `sha256:…` of the rendered objects (images pinned, labels added).
    pub digest: String,
    /// Every object of the set, in apply order.
    pub objects: Vec<ObjectRef>,
    /// Objects of the previous set deleted because the manifests no longer have them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pruned: Vec<ObjectRef>,
}

impl Release {
    /// `(workload, container) → image` after this release.
    pub fn images(&self) -> BTreeMap<(WorkloadRef, String), String> {
        self.containers
            .iter()
            .map(|c| ((c.workload.clone(), c.container.clone()), c.after.clone()))
            .collect()
    }

    /// Whether the release left its images in place: succeeded (the images recorded are live),
    /// or, in a GitOps environment, committed (they are what the repository pins).
    pub fn succeeded(&self) -> bool {
        matches!(self.outcome, Outcome::Succeeded | Outcome::Committed)
    }
}

/// The revision a new release gets: one more than the newest recorded. After a (hand-edited)
/// record at `u64::MAX` there is no next number: the new release gets that one again, and writing
/// its record fails because it exists, rather than the count overflowing.
pub fn next_revision(history: &[Release]) -> u64 {
    history
        .iter()
        .map(|r| r.revision)
        .max()
        .unwrap_or(0)
        .saturating_add(1)
}

/// The revision `rollback` restores by default: the newest succeeded one before the current.
pub fn previous_good(history: &[Release]) -> Option<&Release> {
    let current = history.first()?;
    history
        .iter()
        .skip(1)
        .find(|r| r.succeeded() && r.images() != current.images())
}

/// How a record stands for the reader: an `in-progress` record is `interrupted` unless its
/// holder still holds the release lock.
pub fn effective_outcome(record: &Release, lock: &LockState) -> Outcome {
    match (record.outcome, lock) {
        (Outcome::InProgress, LockState::Held { holder, .. }) if *holder == record.lock_holder => {
            Outcome::InProgress
        }
        (Outcome::InProgress, _) => Outcome::Interrupted,
        (outcome, _) => outcome,
    }
}

/// Records left `in-progress` by runs that died: a run holding the lock owns every other
/// in-progress record of its app and environment. Newest first.
pub fn abandoned<'a>(history: &'a [Release], holder: &str) -> Vec<&'a Release> {
    history
        .iter()
        .filter(|r| r.outcome == Outcome::InProgress && r.lock_holder != holder)
        .collect()
}

/// Whether a new release wanting `changes` is the same release as the abandoned `record`: the
/// same containers on the same images. Then it resumes that record instead of starting a new
/// revision over a change nobody recorded as finished.
pub fn resumes(record: &Release, changes: &[ContainerChange]) -> bool {
    let targets = |cs: &[ContainerChange]| -> BTreeSet<(WorkloadRef, String, String)> {
        cs.iter()
            .map(|c| (c.workload.clone(), c.container.clone(), c.after.clone()))
            .collect()
    };
    !changes.is_empty() && targets(&record.containers) == targets(changes)
}

/// What an abandoned record had changed, in words, for the message that finishes it.
pub fn describe_applied(record: &Release) -> String {
    if record.applied.is_empty() {
        "it had changed nothing".into()
    } else {
        let names: Vec<String> = record.applied.iter().map(ToString::to_string).collect();
        format!("it had changed {}", names.join(", "))
    }
}

#[cfg(test)]
pub mod fixtures {
    //! Release records for unit tests.
    use super::*;
    use crate::domain::Kind;

    /// Revision `revision` of web in qa, which left `Deployment/web` on `image`.
    pub fn release(revision: u64, outcome: Outcome, image: &str) -> Release {
        Release {
            revision,
            app: "web".into(),
            environment: "qa".into(),
            kind: ReleaseKind::Deploy,
            commit: None,
            image_tag: None,
            containers: vec![ContainerChange {
                workload: WorkloadRef {
                    kind: Kind::Deployment,
                    name: "web".into(),
                },
                container: "web".into(),
                before: String::new(),
                after: image.into(),
            }],
            actor: Actor {
                user: "dev".into(),
                groups: vec![],
                verified: false,
            },
            started_at: String::new(),
            finished_at: String::new(),
            outcome,
            source_environment: None,
            source_revision: None,
            restored_revision: None,
            lock_holder: String::new(),
            applied: vec![],
            hooks: vec![],
            warnings: vec![],
            message: String::new(),
            gitops: None,
            manifests: None,
            applied_objects: vec![],
            jobs: vec![],
            branch: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::release;
    use super::*;

    #[test]
    fn next_revision_follows_the_newest() {
        assert_eq!(next_revision(&[]), 1);
        assert_eq!(
            next_revision(&[
                release(7, Outcome::Failed, "a"),
                release(3, Outcome::Succeeded, "b")
            ]),
            8
        );
    }

    #[test]
    fn previous_good_skips_failures_and_identical_images() {
        let history = vec![
            release(4, Outcome::Succeeded, "d"),
            release(3, Outcome::RolledBack, "c"),
            release(2, Outcome::Succeeded, "d"),
            release(1, Outcome::Committed, "a"),
        ];
        assert_eq!(previous_good(&history).map(|r| r.revision), Some(1));
    }

    #[test]
    fn record_json_round_trips() {
        let r = release(1, Outcome::Succeeded, "sha256:a");
        let text = serde_json::to_string(&r).unwrap();
        assert!(text.contains("\"outcome\":\"succeeded\""), "{text}");
        assert_eq!(serde_json::from_str::<Release>(&text).unwrap(), r);
    }

    #[test]
    fn a_record_of_an_older_version_still_reads() {
        let text = r#"{"revision":2,"app":"web","environment":"qa","kind":"deploy","commit":null,
            "containers":[],"actor":{"user":"dev","verified":false},"startedAt":"","finishedAt":"",
            "outcome":"rolled-back","hooks":[]}"#;
        let r: Release = serde_json::from_str(text).unwrap();
        assert_eq!(r.outcome, Outcome::RolledBack);
        assert!(r.applied.is_empty());
    }

    #[test]
    fn in_progress_is_interrupted_unless_its_holder_still_holds_the_lock() {
        let mut r = release(3, Outcome::InProgress, "x");
        r.lock_holder = "ci on host (pid 7)".into();
        let held = |holder: &str| LockState::Held {
            holder: holder.into(),
            age_secs: 5,
        };
        assert_eq!(
            effective_outcome(&r, &held("ci on host (pid 7)")),
            Outcome::InProgress
        );
        assert_eq!(
            effective_outcome(&r, &held("someone else")),
            Outcome::Interrupted
        );
        assert_eq!(
            effective_outcome(&r, &LockState::Free),
            Outcome::Interrupted
        );
        assert_eq!(
            effective_outcome(
                &r,
                &LockState::Expired {
                    holder: "ci on host (pid 7)".into()
                }
            ),
            Outcome::Interrupted
        );
        let done = release(2, Outcome::Succeeded, "x");
        assert_eq!(
            effective_outcome(&done, &LockState::Free),
            Outcome::Succeeded
        );
    }

    #[test]
    fn abandoned_records_are_the_in_progress_ones_of_others() {
        let mut mine = release(5, Outcome::InProgress, "x");
        mine.lock_holder = "me".into();
        let mut theirs = release(4, Outcome::InProgress, "x");
        theirs.lock_holder = "them".into();
        let history = vec![mine, theirs, release(3, Outcome::Succeeded, "y")];
        let found: Vec<u64> = abandoned(&history, "me")
            .iter()
            .map(|r| r.revision)
            .collect();
        assert_eq!(found, [4]);
    }

    #[test]
    fn the_same_target_images_resume_an_abandoned_record() {
        let record = release(4, Outcome::InProgress, "r/web@sha256:b");
        let mut same = record.containers.clone();
        // Half-way, the live image is already the new one: `before` differs, the target not.
        same[0].before = "r/web@sha256:b".into();
        assert!(resumes(&record, &same));
        let mut other = record.containers.clone();
        other[0].after = "r/web@sha256:c".into();
        assert!(!resumes(&record, &other));
        assert!(!resumes(&record, &[]));
    }
}
