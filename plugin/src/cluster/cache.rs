//! Watched caches of the ConfigMaps the admission webhook judges by — approvals and release
//! records — so that a review reads memory, not the API server (kube-runtime's reflector,
//! with backoff).

use std::collections::BTreeMap;

use futures::StreamExt as _;
use hooks_sdk::Approval;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt as _, watcher};

use super::{approvals, records};
use crate::domain::{Release, names};

/// The cluster's approvals and release records, kept current by two watches.
#[derive(Clone)]
pub struct Judged {
    approvals: Store<ConfigMap>,
    records: Store<ConfigMap>,
}

impl Judged {
    /// Starts both watches on the runtime; the caches fill as they list.
    pub fn start(client: &kube::Client) -> Judged {
        let approvals_api: Api<ConfigMap> = Api::namespaced(client.clone(), approvals::NAMESPACE);
        let records_api: Api<ConfigMap> = Api::all(client.clone());
        Judged {
            approvals: follow(
                approvals_api,
                &format!("{}=true", approvals::LABEL_APPROVAL),
            ),
            records: follow(records_api, &format!("{}=true", names::LABEL_RECORD)),
        }
    }

    /// Until both caches have listed once.
    pub async fn ready(&self) {
        let _ = self.approvals.wait_until_ready().await;
        let _ = self.records.wait_until_ready().await;
    }

    /// The approvals of `app` in `env`, newest first.
    pub fn approvals(&self, app: &str, env: &str) -> Vec<Approval> {
        let mut found: Vec<Approval> = self
            .approvals
            .state()
            .iter()
            .filter(|cm| labelled(cm, app, env))
            .filter_map(|cm| approvals::read(cm))
            .collect();
        found.sort_by(|a, b| b.approved_at.cmp(&a.approved_at));
        found
    }

    /// The records of `app` in `env` in `namespace`, newest first.
    pub fn history(&self, namespace: &str, app: &str, env: &str) -> Vec<Release> {
        let mut found: Vec<Release> = self
            .records
            .state()
            .iter()
            .filter(|cm| {
                cm.metadata.namespace.as_deref() == Some(namespace) && labelled(cm, app, env)
            })
            .filter_map(|cm| records::read((**cm).clone()))
            .collect();
        found.sort_by_key(|r| std::cmp::Reverse(r.revision));
        found
    }
}

fn labelled(cm: &ConfigMap, app: &str, env: &str) -> bool {
    let empty = BTreeMap::new();
    let labels = cm.metadata.labels.as_ref().unwrap_or(&empty);
    labels.get(names::LABEL_APP).map(String::as_str) == Some(app)
        && labels.get(names::LABEL_ENVIRONMENT).map(String::as_str) == Some(env)
}

/// A store of the ConfigMaps `api` lists with `selector`, kept by a spawned watch.
fn follow(api: Api<ConfigMap>, selector: &str) -> Store<ConfigMap> {
    let (store, writer) = reflector::store();
    let stream = watcher::watcher(api, watcher::Config::default().labels(selector))
        .default_backoff()
        .reflect(writer)
        .applied_objects();
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            if let Err(e) = event {
                tracing::warn!("watch of approvals or records failed (retrying): {e}");
            }
        }
    });
    store
}
