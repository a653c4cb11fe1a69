//! Release records: one ConfigMap per revision in the environment's namespace, so history lives
//! with the cluster, is readable with kubectl, and is bounded (oldest pruned first).

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, PostParams};

use crate::domain::{Release, names};

const DATA_KEY: &str = "release.json";

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

    /// Every record, newest first. A record anyone edited into something unreadable is skipped
    /// with a warning naming the object and what is wrong, never a crash.
    pub async fn list(&self) -> Result<Vec<Release>> {
        let list = self
            .api
            .list(&ListParams::default().labels(&names::records_selector(&self.app, &self.env)))
            .await
            .context("cannot list release records")?;
        let mut releases: Vec<Release> = list.items.iter().filter_map(read).collect();
        releases.sort_by_key(|r| std::cmp::Reverse(r.revision));
        Ok(releases)
    }

    /// The newest record, whatever its outcome.
    pub async fn latest(&self) -> Result<Option<Release>> {
        Ok(self.list().await?.into_iter().next())
    }

    /// Writes `release` as a new record; its revision must not exist yet.
    pub async fn create(&self, release: &Release) -> Result<()> {
        let cm = self.config_map(release)?;
        let name = cm.metadata.name.clone().unwrap_or_default();
        match self.api.create(&params(), &cm).await {
            Ok(_) => Ok(()),
            // The lease rules out another release taking the number: the record in the way
            // was written or broken by hand (unreadable, so skipped, or at the last revision
            // there is, after which no number is free).
            Err(kube::Error::Api(status)) if status.code == 409 => Err(anyhow::anyhow!(
                "cannot write release record {name}: a record with that revision already \
                 exists, written or damaged by hand (see any warning above); repair it, or \
                 remove it with `kubectl delete configmap -n {ns} {name}`, then release again",
                ns = self.api.namespace().unwrap_or_default()
            )),
            Err(e) => Err(e).with_context(|| format!("cannot write release record {name}")),
        }
    }

    /// Overwrites the record of `release`'s revision.
    pub async fn update(&self, release: &Release) -> Result<()> {
        let cm = self.config_map(release)?;
        let name = cm.metadata.name.clone().unwrap_or_default();
        // Whoever holds the lock owns the record: no resourceVersion, the last write wins.
        self.api
            .replace(&name, &params(), &cm)
            .await
            .with_context(|| format!("cannot update release record {name}"))?;
        Ok(())
    }

    /// Deletes the records of `revisions` (newest first) beyond the newest `keep`.
    pub async fn prune(&self, revisions: &[u64], keep: usize) {
        for &old in revisions.iter().skip(keep.max(1)) {
            let name = names::record_name(&self.app, &self.env, old);
            if let Err(e) = self.api.delete(&name, &DeleteParams::default()).await {
                tracing::warn!(record = %name, "cannot prune old release record: {e}");
            }
        }
    }

    fn config_map(&self, release: &Release) -> Result<ConfigMap> {
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
        Ok(ConfigMap {
            metadata: ObjectMeta {
                name: Some(names::record_name(&self.app, &self.env, release.revision)),
                labels: Some(labels),
                ..Default::default()
            },
            data: Some(BTreeMap::from([(
                DATA_KEY.to_string(),
                serde_json::to_string_pretty(release)?,
            )])),
            ..Default::default()
        })
    }
}

fn params() -> PostParams {
    PostParams {
        field_manager: Some(names::MANAGER.into()),
        ..Default::default()
    }
}

/// One record from its ConfigMap, or `None` with a warning that names the object and the fault.
pub fn read(cm: &ConfigMap) -> Option<Release> {
    let name = cm.metadata.name.clone().unwrap_or_default();
    let namespace = cm.metadata.namespace.clone().unwrap_or_default();
    let fault = match cm.data.as_ref().and_then(|d| d.get(DATA_KEY)) {
        None => format!("it has no key {DATA_KEY}"),
        Some(text) => match serde_json::from_str::<Release>(text) {
            Ok(release) => return Some(release),
            Err(e) => format!("its {DATA_KEY} is not a release: {e}"),
        },
    };
    tracing::warn!(
        record = %name,
        "skipping release record {namespace}/{name}: {fault}; history and rollback do not see \
         it: repair it, or remove it with `kubectl delete configmap -n {namespace} {name}`"
    );
    None
}
