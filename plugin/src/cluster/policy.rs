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
    let api: Api<ConfigMap> = Api::namespaced(target.client.clone(), namespace);
    match api.get_opt(name).await {
        Ok(Some(cm)) => Ok(Some(
            cm.data.and_then(|mut d| d.remove(key)).unwrap_or_default(),
        )),
        Ok(None) => Ok(None),
        Err(kube::Error::Api(s)) if s.code == 403 => Err(Failure::invalid(format!(
            "cannot read the cluster policy {namespace}/{name} of {}: {}; everyone who releases \
             must be able to read it (plugin/rbac/policy.yaml)",
            target.env.name, s.message
        ))
        .into()),
        Err(e) => {
            Err(anyhow::Error::new(e)
                .context(format!("cannot read the cluster policy of {target}")))
        }
    }
}

/// The labels of `target`'s namespace (none when it does not exist).
pub async fn namespace_labels(target: &EnvTarget) -> Result<BTreeMap<String, String>> {
    let namespaces: Api<Namespace> = Api::all(target.client.clone());
    let ns = namespaces
        .get_opt(&target.namespace)
        .await
        .with_context(|| format!("cannot read namespace {}", target.namespace))?;
    Ok(ns.and_then(|n| n.metadata.labels).unwrap_or_default())
}
