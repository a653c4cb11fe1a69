//! What runs in an environment compared with what was recorded: the data behind `status` and
//! `where`. Pure functions over the live workloads and the newest record.

use serde::Serialize;
use serde_json::Value;

use crate::domain::Release;
use crate::domain::names;
use crate::domain::{Kind, Workload, workload};

/// One environment's state. This is the stable `-o json` shape of `status`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvStatus {
    pub environment: String,
    pub namespace: String,
    /// Newest recorded release.
    pub revision: Option<u64>,
    pub outcome: Option<String>,
    pub commit: Option<String>,
    /// The branch the newest release was deployed by, when it was asked for by branch name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// The app's distinct images running now (by the workloads' specs).
    pub images: Vec<String>,
    pub ready: i64,
    pub desired: i64,
    pub released_at: Option<String>,
    pub released_by: Option<String>,
    /// The commit the workloads are annotated with, when they all agree; in a GitOps
    /// environment, the one [`gitops_live_commit`] infers.
    pub live_commit: Option<String>,
    /// Live images differ from the newest record (someone changed them by hand, or a release failed).
    pub drift: bool,
    pub drift_details: Vec<String>,
    pub workloads: usize,
    /// For an environment with manifests: objects whose live fields differ from what the
    /// newest release applied (`Deployment/web: spec.replicas changed since revision 4`).
    pub config_drift: Vec<String>,
    /// Why config drift could not be checked (the commit is not in this checkout, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_unchecked: Option<String>,
    /// A GitOps environment: the app's images its directory on the branch pins.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub git_images: Option<Vec<String>>,
}

/// Where a GitOps environment's cluster runs other images than its repository pins: the
/// controller has not applied the newest commit yet, or someone changed the cluster.
pub fn git_drift(git: &[String], live: &[String]) -> Option<String> {
    let (mut g, mut l) = (git.to_vec(), live.to_vec());
    g.sort();
    l.sort();
    (g != l).then(|| {
        format!(
            "Git pins {}, the cluster runs {}",
            if g.is_empty() {
                "nothing".into()
            } else {
                g.join(",")
            },
            if l.is_empty() {
                "nothing".into()
            } else {
                l.join(",")
            }
        )
    })
}

/// The commit a GitOps environment runs. Its controller applies the repository, which pins
/// digests but carries no commit annotation, so the workloads cannot say (and an annotation left
/// from before the environment moved to Git would name an older commit). They run the newest
/// record's commit when the cluster runs exactly the images Git pins and that record wrote:
/// `status` has been filled in with the Git images and every drift check.
pub fn gitops_live_commit(status: &EnvStatus, newest: Option<&Release>) -> Option<String> {
    let git = status.git_images.as_ref()?;
    let agree = !status.drift && !git.is_empty() && git_drift(git, &status.images).is_none();
    agree
        .then(|| newest?.commit.as_ref().map(ToString::to_string))
        .flatten()
}

/// Ready and desired pods of one workload (CronJobs count as 0/0: nothing runs between jobs).
pub fn readiness(workload: &Workload) -> (i64, i64) {
    let d = &workload.object.data;
    let n = |p: &str| d.pointer(p).and_then(Value::as_i64).unwrap_or(0);
    match workload.id.kind {
        Kind::Deployment | Kind::StatefulSet => (
            n("/status/readyReplicas"),
            d.pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1),
        ),
        Kind::DaemonSet => (
            n("/status/numberReady"),
            n("/status/desiredNumberScheduled"),
        ),
        Kind::CronJob => (0, 0),
    }
}

pub fn env_status(
    environment: &str,
    namespace: &str,
    repository: &str,
    live: &[Workload],
    newest: Option<&Release>,
) -> EnvStatus {
    let current = workload::current_images(live, repository);
    let mut images: Vec<String> = current.values().cloned().collect();
    images.sort();
    images.dedup();
    let (ready, desired) = live
        .iter()
        .map(readiness)
        .fold((0, 0), |(r, d), (a, b)| (r + a, d + b));

    let mut drift_details = Vec::new();
    if let Some(record) = newest {
        let recorded = record.images();
        for ((workload, container), image) in &current {
            match recorded.get(&(workload.clone(), container.clone())) {
                Some(want) if want == image => {}
                Some(want) => drift_details.push(format!(
                    "{workload} {container}: runs {image}, recorded {want}"
                )),
                None => drift_details.push(format!(
                    "{workload} {container}: not in revision {}",
                    record.revision
                )),
            }
        }
        for (workload, container) in recorded.keys() {
            if !current.contains_key(&(workload.clone(), container.clone())) {
                drift_details.push(format!("{workload} {container}: recorded but not found"));
            }
        }
    }

    let mut commits: Vec<Option<&str>> = live
        .iter()
        .filter(|w| !w.app_containers(repository).is_empty())
        .map(|w| w.annotation(names::ANNOTATION_COMMIT))
        .collect();
    commits.dedup();
    let live_commit = match commits.as_slice() {
        [Some(c)] => Some(c.to_string()),
        _ => None,
    };

    EnvStatus {
        environment: environment.into(),
        namespace: namespace.into(),
        revision: newest.map(|r| r.revision),
        outcome: newest.map(|r| r.outcome.to_string()),
        commit: newest.and_then(|r| r.commit.as_ref().map(ToString::to_string)),
        branch: newest.and_then(|r| r.branch.clone()),
        images,
        ready,
        desired,
        released_at: newest.map(|r| r.finished_at.clone()),
        released_by: newest.map(|r| r.actor.user.clone()),
        live_commit,
        drift: !drift_details.is_empty(),
        drift_details,
        workloads: live.len(),
        config_drift: Vec::new(),
        config_unchecked: None,
        git_images: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Outcome;
    use crate::domain::workload::fixtures::workload;

    const REPO: &str = "r/web";

    fn record(image: &str) -> Release {
        crate::domain::record::fixtures::release(3, Outcome::Succeeded, image)
    }

    #[test]
    fn no_drift_when_live_matches_the_record() {
        let live = vec![workload(
            Kind::Deployment,
            "web",
            &[("web", "r/web@sha256:a")],
        )];
        let s = env_status("qa", "ns", REPO, &live, Some(&record("r/web@sha256:a")));
        assert!(!s.drift, "{:?}", s.drift_details);
        assert_eq!(s.revision, Some(3));
    }

    #[test]
    fn a_gitops_environment_runs_the_records_commit_only_when_cluster_git_and_record_agree() {
        let pinned = "r/web@sha256:a";
        let sha = "3727737a469c40ec6fa6d9cb52d5f38c08d0d37b";
        let release = Release {
            commit: Some(crate::domain::CommitSha::parse_full(sha).unwrap()),
            ..record(pinned)
        };
        let commit = Some(sha.to_string());
        let status = |live: &str, git: &[&str]| {
            let live = vec![workload(Kind::Deployment, "web", &[("web", live)])];
            let mut s = env_status("eu", "ns", REPO, &live, Some(&release));
            s.git_images = Some(git.iter().map(ToString::to_string).collect());
            if let Some(d) = git_drift(s.git_images.as_ref().unwrap(), &s.images) {
                s.drift = true;
                s.drift_details.push(d);
            }
            s
        };
        assert_eq!(
            gitops_live_commit(&status(pinned, &[pinned]), Some(&release)),
            commit
        );
        // The controller has not applied the release yet, or someone changed the cluster.
        let behind = status("r/web@sha256:old", &[pinned]);
        assert_eq!(gitops_live_commit(&behind, Some(&release)), None);
        // Git was edited by hand past the record.
        let edited = status(pinned, &["r/web@sha256:b"]);
        assert_eq!(gitops_live_commit(&edited, Some(&release)), None);
        assert_eq!(gitops_live_commit(&status(pinned, &[pinned]), None), None);
        let mut not_gitops = status(pinned, &[pinned]);
        not_gitops.git_images = None;
        assert_eq!(gitops_live_commit(&not_gitops, Some(&release)), None);
    }

    #[test]
    fn hand_edited_image_is_drift() {
        let live = vec![workload(
            Kind::Deployment,
            "web",
            &[("web", "r/web:hotfix")],
        )];
        let s = env_status("qa", "ns", REPO, &live, Some(&record("r/web@sha256:a")));
        assert!(s.drift);
        assert_eq!(
            s.drift_details,
            ["Deployment/web web: runs r/web:hotfix, recorded r/web@sha256:a"]
        );
    }
}
