//! Preview namespaces: listing an app's (by label), creating and refreshing one (server-side
//! apply of its labels and annotations), deleting one and waiting until it is gone, and what
//! runs in one (readiness, Services, Ingress hosts).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context as _, Result};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::wait::{await_condition, conditions};
use serde_json::json;

use crate::domain::names;
use crate::domain::preview::{self, PreviewMeta, Reachable, Readiness};
use crate::domain::{Failure, preview::Preview};

/// The previews' namespaces, through one client.
pub struct Previews {
    client: kube::Client,
    namespaces: Api<Namespace>,
}

impl Previews {
    pub fn new(client: &kube::Client) -> Previews {
        Previews {
            client: client.clone(),
            namespaces: Api::all(client.clone()),
        }
    }

    /// `app`'s previews, by namespace name.
    pub async fn list(&self, app: &str) -> Result<Vec<Preview>> {
        let listed = self
            .namespaces
            .list(&ListParams::default().labels(&preview::selector(app)))
            .await
            .with_context(|| format!("cannot list the previews of {app} (namespaces)"))?;
        let mut found: Vec<Preview> = listed.items.iter().map(preview_of).collect();
        found.sort_by(|a, b| a.namespace.cmp(&b.namespace));
        Ok(found)
    }

    /// Creates the namespace or refreshes its labels and annotations (server-side applied, so
    /// a second `up` only moves the commit, creator and expiry). A namespace being deleted
    /// cannot be reused yet: a usage error saying so.
    pub async fn apply(&self, name: &str, meta: &PreviewMeta) -> Result<()> {
        let existing = self.namespaces.get_opt(name).await?;
        if existing.is_some_and(|ns| ns.metadata.deletion_timestamp.is_some()) {
            return Err(Failure::invalid(format!(
                "namespace {name} is still being deleted; run `preview up` again once it is gone"
            ))
            .into());
        }
        let object = json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": meta.labels, "annotations": meta.annotations},
        });
        self.namespaces
            .patch(
                name,
                &PatchParams::apply(names::MANAGER).force(),
                &Patch::Apply(&object),
            )
            .await
            .with_context(|| format!("cannot create or label namespace {name}"))?;
        Ok(())
    }

    /// Deletes the namespace and everything in it, and waits (watching it) until it is gone;
    /// false when there was none.
    pub async fn delete(&self, name: &str, timeout: Duration) -> Result<bool> {
        let Some(ns) = self.namespaces.get_opt(name).await? else {
            return Ok(false);
        };
        let uid = ns.metadata.uid.clone().unwrap_or_default();
        match self
            .namespaces
            .delete(name, &DeleteParams::foreground())
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => return Ok(false),
            Err(e) => {
                return Err(
                    anyhow::Error::new(e).context(format!("cannot delete namespace {name}"))
                );
            }
        }
        let gone = await_condition(self.namespaces.clone(), name, conditions::is_deleted(&uid));
        match tokio::time::timeout(timeout, gone).await {
            Ok(Ok(_)) => Ok(true),
            Ok(Err(e)) => Err(anyhow::Error::new(e)
                .context(format!("cannot watch namespace {name} being deleted"))),
            Err(_) => Err(Failure::new(
                crate::domain::Outcome::TimedOut,
                format!(
                    "namespace {name} is still being deleted after {}s (finalizers?)",
                    timeout.as_secs()
                ),
            )
            .into()),
        }
    }

    /// Ready and desired replicas of `app`'s Deployments in `namespace`.
    pub async fn readiness(&self, namespace: &str, app: &str) -> Result<Readiness> {
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), namespace);
        let selector = format!("{}={app}", names::LABEL_APP);
        let listed = api
            .list(&ListParams::default().labels(&selector))
            .await
            .with_context(|| format!("cannot list the Deployments in {namespace}"))?;
        Ok(listed.items.iter().fold(Readiness::default(), |acc, d| {
            let desired = d.spec.replicas.unwrap_or(1);
            let ready = d
                .status
                .as_ref()
                .and_then(|s| s.ready_replicas)
                .unwrap_or(0);
            Readiness {
                ready: acc.ready + i64::from(ready),
                desired: acc.desired + i64::from(desired),
            }
        }))
    }

    /// The Services (`name ClusterIP:port/protocol`) and Ingress hosts in `namespace`.
    pub async fn reachable(&self, namespace: &str) -> Result<Reachable> {
        let services: Api<Service> = Api::namespaced(self.client.clone(), namespace);
        let services = services
            .list(&ListParams::default())
            .await
            .with_context(|| format!("cannot list the Services in {namespace}"))?;
        let ingresses: Api<Ingress> = Api::namespaced(self.client.clone(), namespace);
        // Ingresses are optional: a cluster without networking.k8s.io/v1 has none to show.
        let hosts = match ingresses.list(&ListParams::default()).await {
            Ok(list) => list.items.iter().flat_map(ingress_hosts).collect(),
            Err(e) => {
                tracing::debug!("cannot list the Ingresses in {namespace}: {e}");
                Vec::new()
            }
        };
        Ok(Reachable {
            services: services.items.iter().flat_map(service_addresses).collect(),
            hosts,
        })
    }
}

fn preview_of(ns: &Namespace) -> Preview {
    let meta = &ns.metadata;
    let empty = BTreeMap::new();
    Preview::from_namespace(
        meta.name.as_deref().unwrap_or_default(),
        meta.labels.as_ref().unwrap_or(&empty),
        meta.annotations.as_ref().unwrap_or(&empty),
        meta.creation_timestamp.as_ref().map(|t| t.0),
        meta.deletion_timestamp.is_some(),
    )
}

fn service_addresses(svc: &Service) -> Vec<String> {
    let name = svc.metadata.name.clone().unwrap_or_default();
    let Some(spec) = &svc.spec else {
        return Vec::new();
    };
    let ip = spec.cluster_ip.clone().unwrap_or_else(|| "None".into());
    spec.ports
        .iter()
        .flatten()
        .map(|p| {
            let protocol = p.protocol.as_deref().unwrap_or("TCP");
            format!("{name} {ip}:{}/{protocol}", p.port)
        })
        .collect()
}

fn ingress_hosts(ing: &Ingress) -> Vec<String> {
    ing.spec
        .iter()
        .flat_map(|s| s.rules.iter().flatten())
        .filter_map(|r| r.host.clone())
        .collect()
}
