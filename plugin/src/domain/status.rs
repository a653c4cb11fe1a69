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
    /// The commit the workloads are annotated with, when they all agree.
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
