//! Deciding what a release changes: plain functions over plain data, no I/O.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{ImageRef, Workload, WorkloadRef};

fn pinned(repository: &str, digest: &str) -> String {
    ImageRef::pinned(repository, digest)
}

/// One container's image before and after the release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContainerChange {
    pub workload: WorkloadRef,
    pub container: String,
    /// The image in the workload now.
    pub before: String,
    /// `repo@sha256:…`
    pub after: String,
}

impl ContainerChange {
    pub fn changes(&self) -> bool {
        self.before != self.after
    }

    /// The digest being deployed.
    pub fn digest(&self) -> &str {
        self.after.rsplit_once('@').map_or("", |(_, d)| d)
    }
}

/// Every app container of every workload gets `repository@digest`: a commit-hash deploy.
pub fn deploy_all(workloads: &[Workload], repository: &str, digest: &str) -> Vec<ContainerChange> {
    let after = pinned(repository, digest);
    workloads
        .iter()
        .flat_map(|w| {
            let after = after.clone();
            w.app_containers(repository)
                .into_iter()
                .map(move |c| ContainerChange {
                    workload: w.id.clone(),
                    container: c.name,
                    before: c.image,
                    after: after.clone(),
                })
        })
        .collect()
}

/// Exactly the given images per container (a rollback or a promotion). A wanted container the
/// environment lacks is an error naming it; containers not in `wanted` are left alone.
pub fn exact(
    workloads: &[Workload],
    repository: &str,
    wanted: &BTreeMap<(WorkloadRef, String), String>,
) -> Result<Vec<ContainerChange>, String> {
    let current = super::workload::current_images(workloads, repository);
    wanted
        .iter()
        .map(|((workload, container), image)| {
            let before = current.get(&(workload.clone(), container.clone())).ok_or_else(|| {
                format!("{workload} has no container `{container}` using {repository} in this environment")
            })?;
            Ok(ContainerChange {
                workload: workload.clone(),
                container: container.clone(),
                before: before.clone(),
                after: image.clone(),
            })
        })
        .collect()
}

/// Nothing to do: every container already runs what the release wants.
pub fn is_noop(changes: &[ContainerChange]) -> bool {
    changes.iter().all(|c| !c.changes())
}

/// The distinct digests a release deploys, sorted.
pub fn digests(changes: &[ContainerChange]) -> Vec<String> {
    let mut d: Vec<String> = changes.iter().map(|c| c.digest().to_string()).collect();
    d.sort();
    d.dedup();
    d
}

/// Changes grouped by workload, for patching one object at a time.
pub fn by_workload(changes: &[ContainerChange]) -> BTreeMap<WorkloadRef, Vec<&ContainerChange>> {
    let mut map: BTreeMap<WorkloadRef, Vec<&ContainerChange>> = BTreeMap::new();
    for c in changes {
        map.entry(c.workload.clone()).or_default().push(c);
    }
    map
}

/// The inverse of a set of changes: what puts the previous images back.
pub fn inverse(changes: &[ContainerChange]) -> Vec<ContainerChange> {
    changes
        .iter()
        .map(|c| ContainerChange {
            workload: c.workload.clone(),
            container: c.container.clone(),
            before: c.after.clone(),
            after: c.before.clone(),
        })
        .collect()
}

/// The images each workload's new pods will have, to tell new pods from old ones.
pub fn new_images(changes: &[ContainerChange]) -> BTreeMap<WorkloadRef, Vec<String>> {
    let mut map: BTreeMap<WorkloadRef, Vec<String>> = BTreeMap::new();
    for c in changes {
        map.entry(c.workload.clone())
            .or_default()
            .push(c.after.clone());
    }
    map
}

/// The changes that touch one of `workloads`.
pub fn touching(changes: &[ContainerChange], workloads: &[WorkloadRef]) -> Vec<ContainerChange> {
    changes
        .iter()
        .filter(|c| workloads.contains(&c.workload))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Kind;
    use crate::domain::workload::fixtures::workload;

    const REPO: &str = "127.0.0.1:5000/acme/web";

    #[test]
    fn deploy_pins_every_app_container_and_leaves_sidecars() {
        let ws = vec![
            workload(
                Kind::Deployment,
                "web",
                &[("web", "127.0.0.1:5000/acme/web:old"), ("proxy", "envoy:1")],
            ),
            workload(
                Kind::CronJob,
                "nightly",
                &[("job", "127.0.0.1:5000/acme/web@sha256:aaa")],
            ),
        ];
        let changes = deploy_all(&ws, REPO, "sha256:bbb");
        assert_eq!(changes.len(), 2);
        assert!(
            changes
                .iter()
                .all(|c| c.after == "127.0.0.1:5000/acme/web@sha256:bbb")
        );
        assert!(!is_noop(&changes));
        assert_eq!(digests(&changes), ["sha256:bbb"]);
    }

    #[test]
    fn deploying_what_runs_is_a_noop() {
        let ws = vec![workload(
            Kind::Deployment,
            "web",
            &[("web", "127.0.0.1:5000/acme/web@sha256:aaa")],
        )];
        assert!(is_noop(&deploy_all(&ws, REPO, "sha256:aaa")));
    }

    #[test]
    fn exact_names_a_missing_container() {
        let ws = vec![workload(
            Kind::Deployment,
            "web",
            &[("web", "127.0.0.1:5000/acme/web@sha256:aaa")],
        )];
        let mut wanted = BTreeMap::new();
        wanted.insert(
            (
                WorkloadRef {
                    kind: Kind::Deployment,
                    name: "api".into(),
                },
                "api".into(),
            ),
            "x".into(),
        );
        let err = exact(&ws, REPO, &wanted).unwrap_err();
        assert_eq!(
            err,
            "Deployment/api has no container `api` using 127.0.0.1:5000/acme/web in this environment"
        );
    }

    #[test]
    fn inverse_swaps_before_and_after() {
        let ws = vec![workload(
            Kind::Deployment,
            "web",
            &[("web", "127.0.0.1:5000/acme/web@sha256:aaa")],
        )];
        let changes = deploy_all(&ws, REPO, "sha256:bbb");
        let back = inverse(&changes);
        assert_eq!(back[0].after, "127.0.0.1:5000/acme/web@sha256:aaa");
        assert_eq!(back[0].before, changes[0].after);
    }
}
