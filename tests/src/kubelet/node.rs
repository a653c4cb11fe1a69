//! The fake nodes: registration, and the heartbeats that keep the node lifecycle controller from
//! marking them NotReady (and evicting their pods).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context as _;
use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus,
    NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference, Time};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt as _};
use serde_json::json;

/// The namespace the kubelet's heartbeat Leases live in.
const LEASE_NAMESPACE: &str = "kube-node-lease";
/// The node lifecycle controller marks a node NotReady 40 s after its last heartbeat.
const LEASE_DURATION_SECONDS: i32 = 40;
/// Lease renewal period, as the real kubelet's (a quarter of the lease duration).
pub const LEASE_RENEW_INTERVAL: Duration = Duration::from_secs(10);
/// Node status is refreshed less often: the Lease is what counts as the heartbeat, the status
/// refresh only repairs a NotReady set while the fake kubelet was not running.
const STATUS_EVERY_N_RENEWALS: u32 = 6;

/// Name of the `index`-th fake node (1-based).
pub fn node_name(index: usize) -> String {
    format!("fake-node-{index}")
}

/// Address of the fake nodes (their `InternalIP`): loopback, where the fake kubelet serves the
/// kubelet API for all of them (the API server proxies `kubectl logs` there).
pub const NODE_IP: &str = "127.0.0.1";

/// Address of the `index`-th fake node: [`NODE_IP`], for every node.
pub fn node_ip(_index: usize) -> String {
    NODE_IP.to_string()
}

/// The conditions of a healthy node, heartbeat `now`.
fn conditions(now: Timestamp) -> Vec<NodeCondition> {
    let condition = |type_: &str, status: &str, reason: &str, message: &str| NodeCondition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: Some(reason.to_string()),
        message: Some(message.to_string()),
        last_heartbeat_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    };
    vec![
        condition(
            "MemoryPressure",
            "False",
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available",
        ),
        condition(
            "DiskPressure",
            "False",
            "KubeletHasNoDiskPressure",
            "kubelet has no disk pressure",
        ),
        condition(
            "PIDPressure",
            "False",
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available",
        ),
        condition(
            "Ready",
            "True",
            "KubeletReady",
            "fake kubelet is posting ready status",
        ),
    ]
}

/// A Ready node with room for hundreds of pods, its kubelet API on `kubelet_port`.
pub fn node_object(index: usize, now: Timestamp, kubelet_port: u16) -> Node {
    let name = node_name(index);
    let capacity: BTreeMap<String, Quantity> = [
        ("cpu", "64"),
        ("memory", "256Gi"),
        ("pods", "500"),
        ("ephemeral-storage", "1Ti"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
    .collect();
    Node {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            labels: Some(
                [
                    ("kubernetes.io/hostname", name.as_str()),
                    ("kubernetes.io/os", "linux"),
                    ("kubernetes.io/arch", "amd64"),
                    ("kubectl-release.io/fake-node", "true"),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ),
            ..Default::default()
        },
        spec: Some(NodeSpec::default()),
        status: Some(NodeStatus {
            allocatable: Some(capacity.clone()),
            capacity: Some(capacity),
            conditions: Some(conditions(now)),
            addresses: Some(vec![
                NodeAddress {
                    type_: "InternalIP".into(),
                    address: node_ip(index),
                },
                NodeAddress {
                    type_: "Hostname".into(),
                    address: name,
                },
            ]),
            daemon_endpoints: Some(NodeDaemonEndpoints {
                kubelet_endpoint: Some(DaemonEndpoint {
                    port: i32::from(kubelet_port),
                }),
            }),
            node_info: Some(NodeSystemInfo {
                architecture: "amd64".into(),
                operating_system: "linux".into(),
                kubelet_version: "v1.20.2-fake".into(),
                kube_proxy_version: "v1.20.2-fake".into(),
                container_runtime_version: "fake://1.0".into(),
                os_image: "kubectl-release fake kubelet".into(),
                kernel_version: "fake".into(),
                machine_id: format!("fake-{index}"),
                system_uuid: format!("fake-{index}"),
                boot_id: format!("fake-{index}"),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

/// Creates the node, or refreshes its status if it already exists (a restarted fake kubelet).
/// Returns the node's uid, which its Lease is owned by.
///
/// # Errors
/// When the API server refuses the node or cannot be reached.
pub async fn register(client: &Client, index: usize, kubelet_port: u16) -> anyhow::Result<String> {
    let api: Api<Node> = Api::all(client.clone());
    let node = node_object(index, Timestamp::now(), kubelet_port);
    let name = node_name(index);
    match api.create(&PostParams::default(), &node).await {
        Ok(created) => Ok(created.uid().unwrap_or_default()),
        Err(kube::Error::Api(e)) if e.code == 409 => {
            // The status of a node is only settable on create, later through the subresource.
            let patched = api
                .patch_status(
                    &name,
                    &PatchParams::default(),
                    &Patch::Strategic(json!({ "status": node.status })),
                )
                .await
                .with_context(|| format!("Failed to refresh the status of node {name}"))?;
            Ok(patched.uid().unwrap_or_default())
        }
        Err(e) => Err(e).with_context(|| format!("Failed to register node {name}")),
    }
}

/// Renews the node's Lease, creating it when missing (first start, or deleted by someone).
///
/// # Errors
/// When the API server cannot be reached or refuses the Lease.
pub async fn renew_lease(client: &Client, name: &str, node_uid: &str) -> anyhow::Result<()> {
    let api: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
    let spec = LeaseSpec {
        holder_identity: Some(name.to_string()),
        lease_duration_seconds: Some(LEASE_DURATION_SECONDS),
        renew_time: Some(MicroTime(Timestamp::now())),
        ..Default::default()
    };
    let patch = Patch::Merge(json!({ "spec": spec }));
    match api.patch(name, &PatchParams::default(), &patch).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(name.to_string()),
                    namespace: Some(LEASE_NAMESPACE.to_string()),
                    // As the kubelet does: the Lease goes away with its Node.
                    owner_references: Some(vec![OwnerReference {
                        api_version: "v1".into(),
                        kind: "Node".into(),
                        name: name.to_string(),
                        uid: node_uid.to_string(),
                        ..Default::default()
                    }]),
                    ..Default::default()
                },
                spec: Some(spec),
            };
            api.create(&PostParams::default(), &lease)
                .await
                .with_context(|| format!("Failed to create the lease of node {name}"))?;
            Ok(())
        }
        Err(e) => Err(e).with_context(|| format!("Failed to renew the lease of node {name}")),
    }
}

/// Posts fresh heartbeats in the node's Ready condition (and the other conditions).
///
/// # Errors
/// When the API server cannot be reached or refuses the patch.
pub async fn refresh_status(client: &Client, name: &str) -> anyhow::Result<()> {
    let api: Api<Node> = Api::all(client.clone());
    // Without transition times the merge keeps the ones already there: nothing transitioned.
    let conditions: Vec<NodeCondition> = conditions(Timestamp::now())
        .into_iter()
        .map(|c| NodeCondition {
            last_transition_time: None,
            ..c
        })
        .collect();
    let patch = json!({ "status": { "conditions": conditions } });
    api.patch_status(name, &PatchParams::default(), &Patch::Strategic(patch))
        .await
        .with_context(|| format!("Failed to refresh the status of node {name}"))?;
    Ok(())
}

/// Heartbeats of one node, forever: the Lease every [`LEASE_RENEW_INTERVAL`], the status every
/// few renewals. Failures are logged and retried at the next tick; a missed beat or two is
/// harmless within the Lease's 40 s.
pub async fn heartbeat(client: Client, name: String, node_uid: String) {
    let mut ticks = tokio::time::interval(LEASE_RENEW_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for round in 0u32.. {
        ticks.tick().await;
        if let Err(e) = renew_lease(&client, &name, &node_uid).await {
            tracing::warn!(node = %name, error = format!("{e:#}"), "lease renewal failed");
        }
        if round % STATUS_EVERY_N_RENEWALS == STATUS_EVERY_N_RENEWALS - 1
            && let Err(e) = refresh_status(&client, &name).await
        {
            tracing::warn!(node = %name, error = format!("{e:#}"), "node status refresh failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_are_ready_with_generous_capacity() {
        let node = node_object(2, Timestamp::UNIX_EPOCH, 31_250);
        assert_eq!(node.metadata.name.as_deref(), Some("fake-node-2"));
        let status = node.status.unwrap();
        let ready = status
            .conditions
            .unwrap()
            .into_iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert_eq!(ready.status, "True");
        let capacity = status.capacity.unwrap();
        assert_eq!(capacity["cpu"].0, "64");
        assert_eq!(capacity["memory"].0, "256Gi");
        assert_eq!(capacity["pods"].0, "500");
        let addresses = status.addresses.unwrap();
        assert_eq!(addresses[0].type_, "InternalIP");
        assert_eq!(
            addresses[0].address, "127.0.0.1",
            "where the kubelet API is"
        );
        let endpoint = status.daemon_endpoints.unwrap().kubelet_endpoint.unwrap();
        assert_eq!(endpoint.port, 31_250);
    }
}
