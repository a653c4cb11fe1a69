//! Watched caches of what the admission webhook judges by — the approval and release-record
//! ConfigMaps, and the labels of namespaces — so that a review reads memory, not the API server
//! (kube-runtime's watcher, with backoff: approvals and records parsed into an index by app and
//! environment, namespace labels in a reflector's store).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, PoisonError, RwLock};

use futures::StreamExt as _;
use hooks_sdk::Approval;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::WatchStreamExt as _;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, Event};
use tokio::sync::watch;

use super::{approvals, records};
use crate::domain::{Release, names};

/// The cluster's approvals and release records, kept current by two watches.
#[derive(Clone)]
pub struct Judged {
    approvals: Index<Approval>,
    records: Index<Release>,
}

impl Judged {
    /// Starts both watches on the runtime; the caches fill as they list.
    pub fn start(client: &kube::Client) -> Judged {
        let approvals_api: Api<ConfigMap> = Api::namespaced(client.clone(), approvals::NAMESPACE);
        let records_api: Api<ConfigMap> = Api::all(client.clone());
        Judged {
            approvals: Index::follow(
                approvals_api,
                &format!("{}=true", approvals::LABEL_APPROVAL),
                approvals::read,
                "approvals",
            ),
            records: Index::follow(
                records_api,
                &format!("{}=true", names::LABEL_RECORD),
                records::read,
                "release records",
            ),
        }
    }

    /// Until both caches have listed once.
    pub async fn ready(&self) {
        self.approvals.ready().await;
        self.records.ready().await;
    }

    /// The approvals of `app` in `env`, newest first.
    pub fn approvals(&self, app: &str, env: &str) -> Vec<Approval> {
        let mut found = self.approvals.get(approvals::NAMESPACE, app, env);
        found.sort_by(|a, b| b.approved_at.cmp(&a.approved_at));
        found
    }

    /// The records of `app` in `env` in `namespace`, newest first.
    pub fn history(&self, namespace: &str, app: &str, env: &str) -> Vec<Release> {
        let mut found = self.records.get(namespace, app, env);
        found.sort_by_key(|r| std::cmp::Reverse(r.revision));
        found
    }
}

/// The namespace, app and environment an object belongs to: what a review looks up.
type Group = (String, String, String);
/// An object's namespace and name: what stays the same across its versions.
type Name = (String, String);

/// ConfigMaps of one kind as the plugin reads them, grouped by app and environment, kept
/// current by a watch. Each version is read once, when it arrives: a review parses nothing
/// and looks at its own app's objects, not at every one in the cluster, and a hand-broken
/// object is warned about once per version rather than on every review.
#[derive(Clone)]
struct Index<T> {
    groups: Arc<RwLock<Groups<T>>>,
    listed: watch::Receiver<bool>,
}

struct Groups<T> {
    members: HashMap<Group, HashMap<Name, T>>,
    /// Where each object is filed, so a version whose labels moved it leaves its old group.
    filed: HashMap<Name, Group>,
}

impl<T> Default for Groups<T> {
    fn default() -> Self {
        Groups {
            members: HashMap::new(),
            filed: HashMap::new(),
        }
    }
}

impl<T> Groups<T> {
    /// Files the version `cm` (replacing the previous one), or drops the object when it is
    /// unreadable or no longer labelled with an app and environment.
    fn apply(&mut self, cm: &ConfigMap, read: fn(&ConfigMap) -> Option<T>) {
        let name = name_of(cm);
        self.remove(&name);
        let (Some(group), Some(value)) = (group_of(cm), read(cm)) else {
            return;
        };
        self.filed.insert(name.clone(), group.clone());
        self.members.entry(group).or_default().insert(name, value);
    }

    fn remove(&mut self, name: &Name) {
        let Some(group) = self.filed.remove(name) else {
            return;
        };
        if let Some(members) = self.members.get_mut(&group) {
            members.remove(name);
            if members.is_empty() {
                self.members.remove(&group);
            }
        }
    }
}

impl<T: Clone + Send + Sync + 'static> Index<T> {
    /// Follows the ConfigMaps `api` lists with `selector`, reading each version with `read`.
    fn follow(
        api: Api<ConfigMap>,
        selector: &str,
        read: fn(&ConfigMap) -> Option<T>,
        what: &'static str,
    ) -> Index<T> {
        let groups = Arc::new(RwLock::new(Groups::default()));
        let (listed_tx, listed) = watch::channel(false);
        let stream =
            watcher::watcher(api, watcher::Config::default().labels(selector)).default_backoff();
        let state = Arc::clone(&groups);
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            // A (re)list is read aside and swapped in whole, as a reflector does: a review
            // never sees half a list.
            let mut relisting: Option<Groups<T>> = None;
            while let Some(event) = stream.next().await {
                let write = || state.write().unwrap_or_else(PoisonError::into_inner);
                match event {
                    Ok(Event::Init) => relisting = Some(Groups::default()),
                    Ok(Event::InitApply(cm)) => {
                        relisting
                            .get_or_insert_with(Groups::default)
                            .apply(&cm, read);
                    }
                    Ok(Event::InitDone) => {
                        *write() = relisting.take().unwrap_or_default();
                        listed_tx.send_replace(true);
                    }
                    Ok(Event::Apply(cm)) => write().apply(&cm, read),
                    Ok(Event::Delete(cm)) => write().remove(&name_of(&cm)),
                    Err(e) => tracing::warn!("watch of {what} failed (retrying): {e}"),
                }
            }
        });
        Index { groups, listed }
    }

    /// Until the first list is in.
    async fn ready(&self) {
        let _ = self.listed.clone().wait_for(|listed| *listed).await;
    }

    fn get(&self, namespace: &str, app: &str, env: &str) -> Vec<T> {
        let groups = self.groups.read().unwrap_or_else(PoisonError::into_inner);
        let group = (namespace.to_string(), app.to_string(), env.to_string());
        groups
            .members
            .get(&group)
            .map(|members| members.values().cloned().collect())
            .unwrap_or_default()
    }
}

fn name_of(cm: &ConfigMap) -> Name {
    let namespace = cm.metadata.namespace.clone().unwrap_or_default();
    (namespace, cm.metadata.name.clone().unwrap_or_default())
}

fn group_of(cm: &ConfigMap) -> Option<Group> {
    let labels = cm.metadata.labels.as_ref()?;
    Some((
        cm.metadata.namespace.clone().unwrap_or_default(),
        labels.get(names::LABEL_APP)?.clone(),
        labels.get(names::LABEL_ENVIRONMENT)?.clone(),
    ))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn cm(name: &str, app: &str, env: &str, data: &str) -> ConfigMap {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "web-qa", "labels": {
                names::LABEL_APP: app, names::LABEL_ENVIRONMENT: env}},
            "data": {"n": data},
        }))
        .unwrap()
    }

    /// A number, or nothing for what is not one: an unreadable object.
    fn read(cm: &ConfigMap) -> Option<u32> {
        cm.data.as_ref()?.get("n")?.parse().ok()
    }

    fn values(groups: &Groups<u32>, app: &str, env: &str) -> Vec<u32> {
        let group = ("web-qa".to_string(), app.to_string(), env.to_string());
        let mut found: Vec<u32> = groups
            .members
            .get(&group)
            .map(|m| m.values().copied().collect())
            .unwrap_or_default();
        found.sort_unstable();
        found
    }

    #[test]
    fn each_version_replaces_the_last_wherever_its_labels_file_it() {
        let mut groups = Groups::default();
        groups.apply(&cm("a", "web", "qa", "1"), read);
        groups.apply(&cm("b", "web", "qa", "2"), read);
        groups.apply(&cm("c", "api", "qa", "3"), read);
        assert_eq!(values(&groups, "web", "qa"), [1, 2]);

        // A new version of `a`, then `a` relabelled into another app: it leaves web's group.
        groups.apply(&cm("a", "web", "qa", "10"), read);
        assert_eq!(values(&groups, "web", "qa"), [2, 10]);
        groups.apply(&cm("a", "api", "qa", "11"), read);
        assert_eq!(values(&groups, "web", "qa"), [2]);
        assert_eq!(values(&groups, "api", "qa"), [3, 11]);

        // A version that cannot be read drops the object: the readable one before it is gone.
        groups.apply(&cm("b", "web", "qa", "not a number"), read);
        assert!(values(&groups, "web", "qa").is_empty());
        assert!(
            !groups
                .members
                .contains_key(&("web-qa".into(), "web".into(), "qa".into()))
        );

        groups.remove(&("web-qa".into(), "c".into()));
        assert_eq!(values(&groups, "api", "qa"), [11]);
        groups.remove(&("web-qa".into(), "never-filed".into()));
        assert_eq!(groups.filed.len(), 1);
    }
}
