//! A stand-in for the kubelet, so pods on the test control plane get a realistic life without a
//! container runtime: nodes that stay Ready, images "pulled" from the real test registry (so
//! `imageID` carries the registry's digest), readiness after a delay, failures on purpose, and
//! prompt deletion. The `fake-kubelet` binary is a thin CLI over [`run`].
//!
//! How images are treated:
//! - in the test registry (`--registry`): a HEAD on the manifest; present → the container runs
//!   with `imageID: docker-pullable://<registry>/<repo>@<digest>`; absent → `ErrImagePull`, then
//!   `ImagePullBackOff` (retried every few seconds, so pushing the image later heals the pod);
//! - in any other registry: treated as pulled, with a digest that is the sha256 of the
//!   reference as written (there is no network to ask);
//! - repository or tag containing `crashloop`: pulled as above, then `CrashLoopBackOff` with a
//!   growing restart count, never ready.
//!
//! Pods with restartPolicy `Never`/`OnFailure` (those of Jobs and CronJobs) run for the ready
//! delay and succeed.

pub mod image;
pub mod node;
pub mod pods;
pub mod status;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use kube::Client;
use tokio::sync::Semaphore;

pub use status::Timing;

/// How the fake kubelet runs.
#[derive(Clone, Debug)]
pub struct Config {
    /// `host:port` of the test registry.
    pub registry: String,
    /// Number of nodes, named `fake-node-1` … `fake-node-N`.
    pub nodes: usize,
    pub timing: Timing,
    /// API calls in flight at most.
    pub max_concurrent_requests: usize,
}

/// How long registration keeps retrying an API server that is not answering yet.
const REGISTRATION_DEADLINE: Duration = Duration::from_secs(60);

/// Registers the nodes and runs their pods until the process ends.
///
/// # Errors
/// When a node cannot be registered within a minute.
pub async fn run(client: Client, config: Config) -> anyhow::Result<()> {
    crate::install_crypto_provider();
    let shared = Arc::new(pods::Shared {
        client: client.clone(),
        puller: image::Puller::new(&config.registry),
        timing: config.timing,
        api_calls: Semaphore::new(config.max_concurrent_requests),
        pulls: Semaphore::new(config.max_concurrent_requests),
    });

    let mut tasks = tokio::task::JoinSet::new();
    for index in 1..=config.nodes {
        let name = node::node_name(index);
        let uid = register_with_retries(&client, index).await?;
        tracing::info!(node = %name, "registered");
        tasks.spawn(node::heartbeat(client.clone(), name.clone(), uid));
        tasks.spawn(pods::run_node(shared.clone(), name, node::node_ip(index)));
    }
    // The tasks loop forever; one ending means a bug, and the process should say so and exit.
    if let Some(ended) = tasks.join_next().await {
        ended.context("a fake kubelet task panicked")?;
    }
    anyhow::bail!("a fake kubelet task ended unexpectedly")
}

async fn register_with_retries(client: &Client, index: usize) -> anyhow::Result<String> {
    let deadline = tokio::time::Instant::now() + REGISTRATION_DEADLINE;
    loop {
        match node::register(client, index).await {
            Ok(uid) => return Ok(uid),
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::warn!(
                    error = format!("{e:#}"),
                    "node registration failed; retrying"
                );
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e),
        }
    }
}
