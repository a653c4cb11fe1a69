//! Release records: one ConfigMap per revision in the environment's namespace, so history lives
//! with the cluster, is readable with kubectl, and is bounded (oldest pruned first).

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, PostParams};
use serde::{Deserialize, Serialize};

use crate::git::CommitSha;
use crate::names;
use crate::plan::{ContainerChange, ReleaseKind};

const DATA_KEY: &str = "release.json";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Succeeded,
    Failed,
    RolledBack,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
            Outcome::RolledBack => "rolled-back",
        })
    }
}

/// Who released: the identity, and whether the API server vouched for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Actor {
    pub user: String,
    #[serde(default)]
    pub groups: Vec<String>,
    pub verified: bool,
}

/// One release of an app into an environment. This is also the `-o json` shape of a release.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Release {
    pub revision: u64,
    pub app: String,
    pub environment: String,
    pub kind: ReleaseKind,
    pub commit: Option<CommitSha>,
    /// Every changed container, pinned by digest.
    pub containers: Vec<ContainerChange>,
    pub actor: Actor,
    /// RFC 3339.
    pub started_at: String,
    pub finished_at: String,
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_environment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_revision: Option<u64>,
    /// For rollbacks: the revision whose images were restored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored_revision: Option<u64>,
    /// Hook verdicts, as the hook runtime reports them.
    #[serde(default)]
    pub hooks: Vec<serde_json::Value>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

impl Release {
    /// `(workload, container) → image` after this release.
    pub fn images(&self) -> BTreeMap<(crate::workloads::WorkloadRef, String), String> {
        self.containers
            .iter()
            .map(|c| ((c.workload.clone(), c.container.clone()), c.after.clone()))
            .collect()
    }
}

/// The records of one app in one environment.
pub struct Records {
    api: Api<ConfigMap>,
    app: String,
    env: String,
}

impl Records {
    pub fn new(client: &kube::Client, namespace: &str, app: &str, env: &str) -> Records {
        Records {
            api: Api::namespaced(client.clone(), namespace),
            app: app.into(),
            env: env.into(),
        }
    }

    /// Every record, newest first. Unreadable records are skipped with a warning.
    pub async fn list(&self) -> Result<Vec<Release>> {
        let list = self
            .api
            .list(&ListParams::default().labels(&names::records_selector(&self.app, &self.env)))
            .await
            .context("cannot list release records")?;
        let mut releases: Vec<Release> = list
            .items
            .into_iter()
            .filter_map(|cm| {
                let name = cm.metadata.name.clone().unwrap_or_default();
                let text = cm.data.as_ref()?.get(DATA_KEY)?.clone();
                serde_json::from_str(&text)
                    .map_err(|e| tracing::warn!(record = %name, "skipping unreadable release record: {e}"))
                    .ok()
            })
            .collect();
        releases.sort_by_key(|r| std::cmp::Reverse(r.revision));
        Ok(releases)
    }

    /// The newest record, whatever its outcome.
    pub async fn latest(&self) -> Result<Option<Release>> {
        Ok(self.list().await?.into_iter().next())
    }

    /// Writes `release` as a new record, then prunes the oldest beyond `keep`.
    pub async fn write(&self, release: &Release, keep: usize) -> Result<()> {
        let name = names::record_name(&self.app, &self.env, release.revision);
        let labels = BTreeMap::from([
            (
                names::LABEL_MANAGED_BY.to_string(),
                names::MANAGER.to_string(),
            ),
            (names::LABEL_RECORD.to_string(), "true".to_string()),
            (names::LABEL_APP.to_string(), self.app.clone()),
            (names::LABEL_ENVIRONMENT.to_string(), self.env.clone()),
            (
                names::LABEL_REVISION.to_string(),
                release.revision.to_string(),
            ),
        ]);
        let cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some(labels),
                ..Default::default()
            },
            data: Some(BTreeMap::from([(
                DATA_KEY.to_string(),
                serde_json::to_string_pretty(release)?,
            )])),
            ..Default::default()
        };
        self.api
            .create(
                &PostParams {
                    field_manager: Some(names::MANAGER.into()),
                    ..Default::default()
                },
                &cm,
            )
            .await
            .with_context(|| format!("cannot write release record {name}"))?;
        self.prune(keep).await
    }

    async fn prune(&self, keep: usize) -> Result<()> {
        for old in self.list().await?.into_iter().skip(keep.max(1)) {
            let name = names::record_name(&self.app, &self.env, old.revision);
            if let Err(e) = self.api.delete(&name, &DeleteParams::default()).await {
                tracing::warn!(record = %name, "cannot prune old release record: {e}");
            }
        }
        Ok(())
    }
}

/// The revision a new release gets: one more than the newest recorded.
pub fn next_revision(history: &[Release]) -> u64 {
    history.iter().map(|r| r.revision).max().unwrap_or(0) + 1
}

/// The revision `rollback` restores by default: the newest succeeded one before the current.
pub fn previous_good(history: &[Release]) -> Option<&Release> {
    let current = history.first()?;
    history
        .iter()
        .skip(1)
        .find(|r| r.outcome == Outcome::Succeeded && r.images() != current.images())
}

#[cfg(test)]
pub mod fixtures {
    //! Release records for unit tests.
    use super::*;
    use crate::workloads::{Kind, WorkloadRef};

    /// Revision `revision` of web in qa, which left `Deployment/web` on `image`.
    pub fn release(revision: u64, outcome: Outcome, image: &str) -> Release {
        Release {
            revision,
            app: "web".into(),
            environment: "qa".into(),
            kind: ReleaseKind::Deploy,
            commit: None,
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
            hooks: vec![],
            message: String::new(),
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
            release(1, Outcome::Succeeded, "a"),
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
}
