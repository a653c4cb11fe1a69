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
//! What a container does is chosen by the test through its command line: `sh -c SCRIPT` with
//! `echo`, `sleep` and `exit` (see [`script`] for the language, [`status`] for the timeline):
//! - in pods with restartPolicy `Never`/`OnFailure` (Jobs, CronJobs) the script runs to its end:
//!   falling off it or `exit 0` → terminated `Completed`, pod `Succeeded`; `exit N` → terminated
//!   `Error` with exit code N, and with `Never` the pod is `Failed`, with `OnFailure` the
//!   container is restarted (every [`Timing::crash_interval`] after it ended, `CrashLoopBackOff`
//!   in between, the pod stays `Running`) as a real kubelet does;
//! - in `Always` pods the container is ready after the ready delay; it restarts in a crash loop
//!   when the script reaches `exit N` (any N), and runs forever when it falls off its end;
//! - without a script: `Always` containers run forever, run-to-completion ones succeed after the
//!   ready delay;
//! - a pod with `activeDeadlineSeconds` still running past it is `Failed` with reason
//!   `DeadlineExceeded`, its running containers terminated with exit code 137.
//!
//! Logs: every `echo` is a log line at the moment it runs; a crash-looping image logs its
//! script's lines each run, or `fake crash: exit 1` without a script. The last two runs of every
//! container are kept ([`logs`]) and served over the kubelet API ([`server`]):
//! `/containerLogs/{namespace}/{pod}/{container}` on 127.0.0.1, the nodes' `InternalIP`, and the
//! port in their `daemonEndpoints`, so `kubectl logs` (with `-f`, `--previous`, `--tail`,
//! `--timestamps`, `--limit-bytes`, `--since`) goes through the API server's log proxy.

pub mod image;
pub mod logs;
pub mod node;
pub mod pods;
pub mod script;
pub mod server;
pub mod status;

use std::net::{Ipv4Addr, SocketAddr};
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
    /// Port of the kubelet API on 127.0.0.1; 0: any free port.
    pub kubelet_port: u16,
}

/// How long registration keeps retrying an API server that is not answering yet.
const REGISTRATION_DEADLINE: Duration = Duration::from_secs(60);

/// Registers the nodes and runs their pods until the process ends.
///
/// # Errors
/// When a node cannot be registered within a minute.
pub async fn run(client: Client, config: Config) -> anyhow::Result<()> {
    crate::install_crypto_provider();
    let server =
        server::KubeletServer::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, config.kubelet_port)))
            .await?;
    let kubelet_port = server.port();
    tracing::info!(port = kubelet_port, "kubelet API listening on 127.0.0.1");
    let logs = Arc::new(logs::LogStore::default());
    let shared = Arc::new(pods::Shared {
        client: client.clone(),
        puller: image::Puller::new(&config.registry),
        timing: config.timing,
        api_calls: Semaphore::new(config.max_concurrent_requests),
        pulls: Semaphore::new(config.max_concurrent_requests),
        logs: logs.clone(),
    });

    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(server.serve(logs));
    for index in 1..=config.nodes {
        let name = node::node_name(index);
        let uid = register_with_retries(&client, index, kubelet_port).await?;
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

async fn register_with_retries(
    client: &Client,
    index: usize,
    kubelet_port: u16,
) -> anyhow::Result<String> {
    let deadline = tokio::time::Instant::now() + REGISTRATION_DEADLINE;
    loop {
        match node::register(client, index, kubelet_port).await {
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
