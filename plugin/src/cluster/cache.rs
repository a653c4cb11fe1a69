//! Watched caches of what the admission webhook judges by — the approval and release-record
//! ConfigMaps, and the labels of namespaces — so that a review reads memory, not the API server
//! (kube-runtime's reflector, with backoff).

use std::collections::BTreeMap;

use futures::StreamExt as _;
use hooks_sdk::Approval;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, ObjectRef, Store};
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

/// The labels of the cluster's namespaces, watched (metadata only), for the policy hooks that
/// select namespaces by label: without it every review in such a policy waited for a GET of its
/// namespace.
#[derive(Clone)]
pub struct NamespaceLabels {
    namespaces: Store<PartialObjectMeta<Namespace>>,
}

impl NamespaceLabels {
    /// Starts the watch on the runtime; the cache fills as it lists.
    pub fn start(client: &kube::Client) -> NamespaceLabels {
        let (store, writer) = reflector::store();
        // An Api of PartialObjectMeta asks for metadata only: labels, not specs.
        let api: Api<PartialObjectMeta<Namespace>> = Api::all(client.clone());
        let stream = watcher::watcher(api, watcher::Config::default())
            .default_backoff()
            .reflect(writer)
            .applied_objects();
        drain(stream, "namespaces");
        NamespaceLabels { namespaces: store }
    }

    /// The labels of `namespace` as last watched; `None` when the cache does not hold it (not
    /// listed yet, created a moment ago, or the watch is refused): ask the API server then.
    pub fn get(&self, namespace: &str) -> Option<BTreeMap<String, String>> {
        self.namespaces
            .get(&ObjectRef::new(namespace))
            .map(|ns| ns.metadata.labels.clone().unwrap_or_default())
    }
}

/// A store of the ConfigMaps `api` lists with `selector`, kept by a spawned watch.
fn follow(api: Api<ConfigMap>, selector: &str) -> Store<ConfigMap> {
    let (store, writer) = reflector::store();
    let stream = watcher::watcher(api, watcher::Config::default().labels(selector))
        .default_backoff()
        .reflect(writer)
        .applied_objects();
    drain(stream, "approvals or records");
    store
}

/// Runs a reflecting watch on the runtime until it ends, logging its failures (it retries).
fn drain<T, E: std::fmt::Display>(
    stream: impl futures::Stream<Item = Result<T, E>> + Send + 'static,
    what: &'static str,
) {
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            if let Err(e) = event {
                tracing::warn!("watch of {what} failed (retrying): {e}");
            }
        }
    });
}
