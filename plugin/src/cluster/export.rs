//! Reading what `init` exports of a namespace: its Services and the ConfigMaps the app's
//! workloads reference, as the server returns them (cleaning them is the domain's business).

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::api::{Api, ListParams};
use serde_json::Value;

/// Every Service of `namespace`: which of them are the app's depends on their selectors,
/// which no list query can express.
pub async fn services(client: &kube::Client, namespace: &str) -> Result<Vec<Value>> {
    let api: Api<Service> = Api::namespaced(client.clone(), namespace);
    let list = api
        .list(&ListParams::default())
        .await
        .with_context(|| format!("cannot list the Services of namespace `{namespace}`"))?;
    list.items
        .iter()
        .map(|s| serde_json::to_value(s).context("cannot read a Service"))
        .collect()
}

/// The ConfigMaps called `names`, and the names of those that do not exist (a reference may
/// be optional, or the ConfigMap simply missing: either way there is nothing to export).
pub async fn config_maps<'a>(
    client: &kube::Client,
    namespace: &str,
    names: impl IntoIterator<Item = &'a String>,
) -> Result<(Vec<Value>, Vec<String>)> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for name in names {
        let got = api.get_opt(name).await.with_context(|| {
            format!("cannot read ConfigMap `{name}` of namespace `{namespace}`")
        })?;
        match got {
            Some(cm) => found.push(serde_json::to_value(&cm).context("cannot read a ConfigMap")?),
            None => missing.push(name.clone()),
        }
    }
    Ok((found, missing))
}
