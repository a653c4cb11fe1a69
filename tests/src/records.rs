//! What a release leaves in the cluster, as a test reads it: its record (a ConfigMap per
//! revision, `release.json` inside) and its lock (a Lease), by the names the plugin gives them.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{DeleteParams, ListParams};
use kube::runtime::watcher;
use kube::{Api, Client};
use serde_json::Value;

use crate::wait::wait_for_all;

/// The label every release record carries.
pub const RECORD_LABEL: &str = "kubectl-release.io/record";
/// The record's key holding the release as JSON.
pub const RECORD_KEY: &str = "release.json";

/// `kubectl-release.<app>.<env>.v<revision>`: the ConfigMap of one revision.
pub fn record_name(app: &str, env: &str, revision: u64) -> String {
    format!("kubectl-release.{app}.{env}.v{revision}")
}

/// `kubectl-release.<app>.<env>`: the Lease that is the release lock.
pub fn lease_name(app: &str, env: &str) -> String {
    format!("kubectl-release.{app}.{env}")
}

/// The label selector of `app`'s records in `env`.
pub fn records_selector(app: &str, env: &str) -> String {
    format!("{RECORD_LABEL}=true,kubectl-release.io/app={app},kubectl-release.io/environment={env}")
}

/// The `release.json` of a record ConfigMap. Panics, naming the ConfigMap, when it has none or
/// it is not JSON: a record is written by the plugin and must always be readable.
pub fn record_json(cm: &ConfigMap) -> Value {
    let name = cm.metadata.name.as_deref().unwrap_or("?");
    let text = cm
        .data
        .as_ref()
        .and_then(|d| d.get(RECORD_KEY))
        .unwrap_or_else(|| panic!("record {name} has no {RECORD_KEY}: {cm:?}"));
    serde_json::from_str(text)
        .unwrap_or_else(|e| panic!("record {name}'s {RECORD_KEY} is not JSON ({e}): {text}"))
}

/// `app`'s records in `env` (in `namespace`), oldest revision first.
pub async fn records(client: &Client, namespace: &str, app: &str, env: &str) -> Vec<Value> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let list = api
        .list(&ListParams::default().labels(&records_selector(app, env)))
        .await
        .unwrap_or_else(|e| panic!("cannot list the release records in {namespace}: {e}"));
    sorted(list.items.iter().map(record_json).collect())
}

/// Waits until `condition` holds for `app`'s records in `env` (oldest revision first, as
/// [`records`] returns them), and returns them as they were then.
///
/// # Errors
/// On timeout, with the records as last seen.
pub async fn wait_for_records(
    client: &Client,
    namespace: &str,
    app: &str,
    env: &str,
    timeout: Duration,
    condition: impl Fn(&[Value]) -> bool,
) -> anyhow::Result<Vec<Value>> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let config = watcher::Config::default().labels(&records_selector(app, env));
    let found = wait_for_all(&api, config, timeout, |cms: &[ConfigMap]| {
        condition(&sorted(cms.iter().map(record_json).collect()))
    })
    .await?;
    Ok(sorted(found.iter().map(record_json).collect()))
}

fn sorted(mut records: Vec<Value>) -> Vec<Value> {
    records.sort_by_key(|r| r["revision"].as_u64());
    records
}

/// Whether a record says it patched `kind`/`name` (its `applied` list, kept while it runs).
pub fn has_applied(record: &Value, kind: &str, name: &str) -> bool {
    record["applied"].as_array().is_some_and(|applied| {
        applied
            .iter()
            .any(|w| w["kind"] == kind && w["name"] == name)
    })
}

/// The release lock of `app` in `env`, if any.
pub async fn lease(client: &Client, namespace: &str, app: &str, env: &str) -> Option<Lease> {
    let api: Api<Lease> = Api::namespaced(client.clone(), namespace);
    api.get_opt(&lease_name(app, env))
        .await
        .unwrap_or_else(|e| panic!("cannot read the release lock in {namespace}: {e}"))
}

/// Deletes the release lock of `app` in `env`, as an operator does once sure its holder is
/// dead. Panics unless it existed.
pub async fn delete_lease(client: &Client, namespace: &str, app: &str, env: &str) {
    let api: Api<Lease> = Api::namespaced(client.clone(), namespace);
    let name = lease_name(app, env);
    api.delete(&name, &DeleteParams::default())
        .await
        .unwrap_or_else(|e| panic!("cannot delete the release lock {namespace}/{name}: {e}"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_plugins_scheme() {
        assert_eq!(record_name("web", "qa", 3), "kubectl-release.web.qa.v3");
        assert_eq!(lease_name("web", "qa"), "kubectl-release.web.qa");
        assert_eq!(
            records_selector("web", "qa"),
            "kubectl-release.io/record=true,kubectl-release.io/app=web,kubectl-release.io/environment=qa"
        );
    }

    #[test]
    fn applied_lists_kind_and_name() {
        let record = serde_json::json!({"applied": [{"kind": "Deployment", "name": "web"}]});
        assert!(has_applied(&record, "Deployment", "web"));
        assert!(!has_applied(&record, "StatefulSet", "web"));
        assert!(!has_applied(&serde_json::json!({}), "Deployment", "web"));
    }
}
