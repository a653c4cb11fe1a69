//! `fake-kubelet`: runs the pods of a test control plane without a container runtime.
//! See `kubectl_release_tests::kubelet` for what it does; `testenv.sh up` starts it.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kubectl_release_tests::kubelet::{self, Timing};

/// Stands in for the kubelet on a test control plane: registers Ready nodes and gives their pods
/// a status, pulling images from the test registry.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Kubeconfig with a user allowed to manage nodes, leases and pods.
    #[arg(long)]
    kubeconfig: PathBuf,
    /// Context of the kubeconfig to use (default: its current context).
    #[arg(long)]
    context: Option<String>,
    /// `host:port` of the test registry, whose images are looked up for real.
    #[arg(long)]
    registry: String,
    /// Number of nodes, named fake-node-1 … fake-node-N.
    #[arg(long, default_value_t = 1)]
    nodes: usize,
    /// Time from image pull to ready container (or to completion, in pods of Jobs).
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    ready_delay: Duration,
    /// Time between two restarts of a crash-looping container.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    crash_interval: Duration,
    /// API calls (and registry requests) in flight at most.
    #[arg(long, default_value_t = 32)]
    max_concurrent_requests: usize,
    /// Port of the kubelet API (container logs) on 127.0.0.1; 0 picks a free one. Every node
    /// registers it in its status, which is where the API server's log proxy looks.
    #[arg(long, default_value_t = 0)]
    kubelet_port: u16,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Args::parse();
    kubectl_release_tests::install_crypto_provider();

    let kubeconfig = Kubeconfig::read_from(&args.kubeconfig)
        .with_context(|| format!("Failed to read {}", args.kubeconfig.display()))?;
    let options = KubeConfigOptions {
        context: args.context.clone(),
        ..Default::default()
    };
    let client_config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .context("Failed to load the kubeconfig")?;
    let client = kube::Client::try_from(client_config).context("Failed to build a client")?;

    let config = kubelet::Config {
        registry: args.registry,
        nodes: args.nodes,
        timing: Timing {
            ready_delay: args.ready_delay,
            crash_interval: args.crash_interval,
            ..Timing::default()
        },
        max_concurrent_requests: args.max_concurrent_requests.max(1),
        kubelet_port: args.kubelet_port,
    };
    kubelet::run(client, config).await
}
