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
use kube::runtime::{WatchStreamExt as _, watcher};

use crate::cluster::EnvTarget;
use crate::domain::names;
use crate::domain::{Failure, Outcome};

/// Where approvals live in every cluster.
pub const NAMESPACE: &str = "kubectl-release-approvals";
pub const DATA_KEY: &str = "approval.json";
pub const LABEL_APPROVAL: &str = "kubectl-release.io/approval";

/// The approvals of one app in one environment's cluster.
pub struct Approvals {
    api: Api<ConfigMap>,
    app: String,
    env: String,
}

impl Approvals {
    pub fn new(target: &EnvTarget, app: &str) -> Approvals {
        Self::in_cluster(&target.client, app, &target.env.name)
    }

    /// The approvals of `app` in `env` in the cluster of `client`.
    pub fn in_cluster(client: &kube::Client, app: &str, env: &str) -> Approvals {
        Approvals {
            api: Api::namespaced(client.clone(), NAMESPACE),
            app: app.into(),
            env: env.into(),
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
                    Outcome::Invalid,
                    format!("you may not read approvals in namespace {NAMESPACE}: {}; see plugin/rbac/approvals.yaml", s.message),
                )
                .into());
            }
            Err(e) => return Err(e).context("cannot list approvals"),
        };
        let mut approvals: Vec<Approval> = list.items.iter().filter_map(read).collect();
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
                Outcome::Invalid,
                format!(
                    "{} may not approve releases into {}: the API server refused ({}); approvals are for members of the approvers group (plugin/rbac/approvals.yaml)",
                    approval.user, self.env, s.message
                ),
            )
            .into()),
            Err(kube::Error::Api(s)) if s.code == 404 => Err(Failure::invalid(format!(
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
        let mut events = watcher::watcher(self.api.clone(), config)
            .default_backoff()
            .boxed();
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

/// One approval from its ConfigMap, or `None` with a warning naming the object and the fault:
/// approvals are written by people, and a bad one must neither count nor crash anything.
pub fn read(cm: &ConfigMap) -> Option<Approval> {
    let name = cm.metadata.name.as_deref().unwrap_or_default();
    let Some(text) = cm.data.as_ref().and_then(|d| d.get(DATA_KEY)) else {
        tracing::warn!(approval = %name, "skipping approval without key {DATA_KEY}");
        return None;
    };
    match serde_json::from_str::<Approval>(text) {
        Ok(approval) => Some(approval),
        Err(e) => {
            tracing::warn!(approval = %name, "skipping unreadable approval: {e}");
            None
        }
    }
}

fn version_of(cm: &ConfigMap) -> (String, String) {
    (
        cm.metadata.name.clone().unwrap_or_default(),
        cm.metadata.resource_version.clone().unwrap_or_default(),
    )
}
