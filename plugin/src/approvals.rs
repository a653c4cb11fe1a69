//! Approvals: who approved which digests for which environment, until when.
//!
//! They live as ConfigMaps in the namespace `kubectl-release-approvals` of the target
//! environment's cluster, where RBAC decides who may write them (`plugin/rbac/approvals.yaml`):
//! approvers can, deployers cannot. An approval is bound to the digests, not to a tag or a
//! commit: a rebuilt image needs a new approval.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{Context as _, Result};
use futures::StreamExt;
use hooks_sdk::Approval;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, ObjectMeta, PostParams};
use kube::runtime::watcher;
use serde::Serialize;

use crate::exit::{ExitCode, Failure};
use crate::kube_client::EnvTarget;
use crate::names;

/// Where approvals live in every cluster.
pub const NAMESPACE: &str = "kubectl-release-approvals";
const DATA_KEY: &str = "approval.json";
const LABEL_APPROVAL: &str = "kubectl-release.io/approval";

/// How an approval stands against what would be released now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Standing {
    Valid,
    Expired,
    /// Approved other digests (an older or rebuilt image).
    OtherDigests,
}

impl std::fmt::Display for Standing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Standing::Valid => "valid",
            Standing::Expired => "expired",
            Standing::OtherDigests => "other digests",
        })
    }
}

/// Judges `approval` against the digests that would be released, at `now`.
pub fn standing(approval: &Approval, digests: &[String], now: jiff::Timestamp) -> Standing {
    let expired = approval
        .expires_at
        .parse::<jiff::Timestamp>()
        .is_ok_and(|t| t <= now);
    let mut approved = approval.digests.clone();
    approved.sort();
    let mut wanted = digests.to_vec();
    wanted.sort();
    if expired {
        Standing::Expired
    } else if approved != wanted {
        Standing::OtherDigests
    } else {
        Standing::Valid
    }
}

/// The approvals of one app in one environment's cluster.
pub struct Approvals {
    api: Api<ConfigMap>,
    app: String,
    env: String,
}

impl Approvals {
    pub fn new(target: &EnvTarget, app: &str) -> Approvals {
        Approvals {
            api: Api::namespaced(target.client.clone(), NAMESPACE),
            app: app.into(),
            env: target.env.name.clone(),
        }
    }

    fn selector(&self) -> String {
        format!(
            "{LABEL_APPROVAL}=true,{}={},{}={}",
            names::LABEL_APP,
            self.app,
            names::LABEL_ENVIRONMENT,
            self.env
        )
    }

    /// Every recorded approval, newest first. A cluster without the approvals namespace has
    /// none; one where we may not read them is an error that says so.
    pub async fn list(&self) -> Result<Vec<Approval>> {
        let list = match self
            .api
            .list(&ListParams::default().labels(&self.selector()))
            .await
        {
            Ok(list) => list,
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(Vec::new()),
            Err(kube::Error::Api(s)) if s.code == 403 => {
                return Err(Failure::new(
                    ExitCode::Usage,
                    format!("you may not read approvals in namespace {NAMESPACE}: {}; see plugin/rbac/approvals.yaml", s.message),
                )
                .into());
            }
            Err(e) => return Err(e).context("cannot list approvals"),
        };
        let mut approvals: Vec<Approval> = list
            .items
            .iter()
            .filter_map(|cm| serde_json::from_str(cm.data.as_ref()?.get(DATA_KEY)?).ok())
            .collect();
        approvals.sort_by(|a, b| b.approved_at.cmp(&a.approved_at));
        Ok(approvals)
    }

    /// Records `approval`. Forbidden by RBAC is the expected answer for deployers: say so.
    pub async fn record(&self, approval: &Approval) -> Result<String> {
        let cm = ConfigMap {
            metadata: ObjectMeta {
                generate_name: Some(format!("{}.{}.approval-", self.app, self.env)),
                labels: Some(BTreeMap::from([
                    (
                        names::LABEL_MANAGED_BY.to_string(),
                        names::MANAGER.to_string(),
                    ),
                    (LABEL_APPROVAL.to_string(), "true".to_string()),
                    (names::LABEL_APP.to_string(), self.app.clone()),
                    (names::LABEL_ENVIRONMENT.to_string(), self.env.clone()),
                ])),
                ..Default::default()
            },
            data: Some(BTreeMap::from([(
                DATA_KEY.to_string(),
                serde_json::to_string_pretty(approval)?,
            )])),
            ..Default::default()
        };
        match self.api.create(&PostParams::default(), &cm).await {
            Ok(created) => Ok(created.metadata.name.unwrap_or_default()),
            Err(kube::Error::Api(s)) if s.code == 403 => Err(Failure::new(
                ExitCode::Usage,
                format!(
                    "{} may not approve releases into {}: the API server refused ({}); approvals are for members of the approvers group (plugin/rbac/approvals.yaml)",
                    approval.user, self.env, s.message
                ),
            )
            .into()),
            Err(kube::Error::Api(s)) if s.code == 404 => Err(Failure::usage(format!(
                "the cluster of {} has no namespace {NAMESPACE}; an admin sets up approvals with `kubectl apply -f plugin/rbac/approvals.yaml`",
                self.env
            ))
            .into()),
            Err(e) => Err(e).context("cannot record the approval"),
        }
    }

    /// The names and versions of the recorded approvals: what a later [`Approvals::wait_for_change`]
    /// compares with. Take it *before* judging the approvals, so that one recorded in between
    /// is not missed.
    pub async fn snapshot(&self) -> Result<BTreeSet<(String, String)>> {
        match self
            .api
            .list(&ListParams::default().labels(&self.selector()))
            .await
        {
            Ok(list) => Ok(list.items.iter().map(version_of).collect()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(BTreeSet::new()),
            Err(e) => Err(e).context("cannot list approvals"),
        }
    }

    /// Waits until the approvals differ from `seen` (one added, changed or removed), or
    /// `patience` runs out (returns false). Watch-driven.
    pub async fn wait_for_change(
        &self,
        seen: &BTreeSet<(String, String)>,
        patience: Duration,
    ) -> bool {
        let config = watcher::Config::default().labels(&self.selector());
        let mut events = watcher::watcher(self.api.clone(), config).boxed();
        let changed = async {
            let mut listing = BTreeSet::new();
            while let Some(event) = events.next().await {
                match event {
                    Ok(watcher::Event::Init) => listing.clear(),
                    Ok(watcher::Event::InitApply(cm)) => {
                        listing.insert(version_of(&cm));
                    }
                    // The first listing tells whether anything changed since the snapshot.
                    Ok(watcher::Event::InitDone) if listing != *seen => return,
                    Ok(watcher::Event::Apply(cm) | watcher::Event::Delete(cm))
                        if !seen.contains(&version_of(&cm)) =>
                    {
                        return;
                    }
                    _ => {}
                }
            }
            std::future::pending::<()>().await
        };
        tokio::time::timeout(patience, changed).await.is_ok()
    }
}

fn version_of(cm: &ConfigMap) -> (String, String) {
    (
        cm.metadata.name.clone().unwrap_or_default(),
        cm.metadata.resource_version.clone().unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn approval(digests: &[&str], expires_at: &str) -> Approval {
        Approval {
            user: "ann".into(),
            environment: "production".into(),
            commit: "c".repeat(40),
            digests: digests.iter().map(|d| d.to_string()).collect(),
            approved_at: "2026-01-01T00:00:00Z".into(),
            expires_at: expires_at.into(),
            verified: false,
        }
    }

    #[test]
    fn an_approval_is_bound_to_the_digests_and_expires() {
        let now: jiff::Timestamp = "2026-01-01T12:00:00Z".parse().unwrap();
        let wanted = vec!["sha256:b".to_string(), "sha256:a".to_string()];
        assert_eq!(
            standing(
                &approval(&["sha256:a", "sha256:b"], "2026-01-02T00:00:00Z"),
                &wanted,
                now
            ),
            Standing::Valid
        );
        assert_eq!(
            standing(
                &approval(&["sha256:a"], "2026-01-02T00:00:00Z"),
                &wanted,
                now
            ),
            Standing::OtherDigests
        );
        assert_eq!(
            standing(
                &approval(&["sha256:a", "sha256:b"], "2026-01-01T06:00:00Z"),
                &wanted,
                now
            ),
            Standing::Expired
        );
    }
}
