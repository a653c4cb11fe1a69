//! Finding the app's workloads in a namespace, with the API versions the server serves.

use kube::api::{Api, DynamicObject, ListParams};

use crate::domain::{Kind, Workload, WorkloadRef, WorkloadScope};

/// What we learnt about the server, so later calls use the right API versions.
#[derive(Debug, Clone)]
pub struct ServerApis {
    pub cronjob_version: &'static str,
}

impl ServerApis {
    /// Asks the server which CronJob API it serves (batch/v1 from 1.21, batch/v1beta1 before).
    pub async fn discover(client: &kube::Client) -> kube::Result<ServerApis> {
        let served = client.list_api_group_resources("batch/v1").await?;
        let v1 = served.resources.iter().any(|r| r.name == "cronjobs");
        Ok(ServerApis {
            cronjob_version: if v1 { "v1" } else { "v1beta1" },
        })
    }

    pub fn api(&self, client: &kube::Client, namespace: &str, kind: Kind) -> Api<DynamicObject> {
        Api::namespaced_with(
            client.clone(),
            namespace,
            &kind.api_resource(self.cronjob_version),
        )
    }
}

/// Every workload of `scope` in `namespace` with at least one container from `repository`, in
/// kind and name order: one list per kind.
pub async fn discover(
    client: &kube::Client,
    apis: &ServerApis,
    namespace: &str,
    repository: &str,
    scope: &WorkloadScope,
) -> kube::Result<Vec<Workload>> {
    let params = match &scope.selector {
        Some(s) => ListParams::default().labels(s),
        None => ListParams::default(),
    };
    let lists = futures::future::try_join_all(scope.kinds.iter().map(|&kind| {
        let api = apis.api(client, namespace, kind);
        let params = params.clone();
        async move { Ok::<_, kube::Error>((kind, api.list(&params).await?)) }
    }))
    .await?;
    let mut found = Vec::new();
    for (kind, list) in lists {
        for object in list.items {
            let workload = Workload {
                id: WorkloadRef {
                    kind,
                    name: object.metadata.name.clone().unwrap_or_default(),
                },
                object,
            };
            if !workload.app_containers(repository).is_empty() {
                found.push(workload);
            }
        }
    }
    found.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(found)
}
