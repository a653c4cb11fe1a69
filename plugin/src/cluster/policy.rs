//! Reading the cluster policy's document and the labels of the namespace it is judged for.

use std::collections::BTreeMap;

use anyhow::{Context as _, Result};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::Api;

use super::EnvTarget;
use crate::domain::Failure;

/// The text under `key` of ConfigMap `namespace/name` in `target`'s cluster; `None` when the
/// ConfigMap does not exist (a cluster without a policy).
pub async fn document(
    target: &EnvTarget,
    namespace: &str,
    name: &str,
    key: &str,
) -> Result<Option<String>> {
    document_at(
        &target.client,
        namespace,
        name,
        key,
        &target.env.name,
        &target.to_string(),
    )
    .await
}

/// [`document`] for a client of any cluster; `cluster` names it in messages.
pub async fn document_at(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    key: &str,
    cluster_name: &str,
    cluster: &str,
) -> Result<Option<String>> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    match api.get_opt(name).await {
        Ok(Some(cm)) => Ok(Some(
            cm.data.and_then(|mut d| d.remove(key)).unwrap_or_default(),
        )),
        Ok(None) => Ok(None),
        Err(kube::Error::Api(s)) if s.code == 403 => Err(Failure::invalid(format!(
            "cannot read the cluster policy {namespace}/{name} of {cluster_name}: {}; everyone who releases \
             must be able to read it (plugin/rbac/policy.yaml)",
            s.message
        ))
        .into()),
        Err(e) => Err(anyhow::Error::new(e)
            .context(format!("cannot read the cluster policy of {cluster}"))),
    }
}

/// Every change of ConfigMap `namespace/name` (and the first listing), as a stream of ticks;
/// the watch resumes with backoff after errors.
pub fn changes(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> impl futures::Stream<Item = ()> + Send + 'static {
    use futures::StreamExt as _;
    use kube::runtime::{WatchStreamExt as _, watcher};
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    watcher::watcher(api, config)
        .default_backoff()
        .filter_map(|event| async move {
            match event {
                Ok(
                    watcher::Event::Apply(_) | watcher::Event::Delete(_) | watcher::Event::InitDone,
                ) => Some(()),
                Ok(_) => None,
                Err(e) => {
                    tracing::warn!("watch of the cluster policy failed (retrying): {e}");
                    None
                }
            }
        })
}

/// The labels of `namespace` in the cluster of `client` (none when it does not exist).
pub async fn labels_of(client: &kube::Client, namespace: &str) -> Result<BTreeMap<String, String>> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns = namespaces
        .get_opt(namespace)
        .await
        .with_context(|| format!("cannot read namespace {namespace}"))?;
    Ok(ns.and_then(|n| n.metadata.labels).unwrap_or_default())
}

/// The labels of `target`'s namespace (none when it does not exist).
pub async fn namespace_labels(target: &EnvTarget) -> Result<BTreeMap<String, String>> {
    labels_of(&target.client, &target.namespace).await
}
