//! End-to-end test harness of kubectl-release: a real control plane (v1.20 apiserver, controller
//! manager, scheduler, etcd), a real OCI registry and a fake kubelet on loopback, plus the fixtures
//! tests build on (namespaces, workloads, git repositories, pushed images) and watch-driven waits.
//!
//! ```no_run
//! use kubectl_release_tests::{TestEnv, apply, deployment, push_image};
//! # async fn example() -> anyhow::Result<()> {
//! let env = TestEnv::shared();
//! let ns = env.namespace("deploy").await;
//! let digest = push_image(env.registry(), "web", "v1").await?;
//! let image = format!("{}/web:v1", env.registry());
//! apply(&env.client("admin").await, ns.name(), &deployment("web").image(image).build()).await?;
//! env.kubectl(&["-n", ns.name(), "rollout", "status", "deployment/web"]).await.assert_success();
//! # let _ = digest; Ok(()) }
//! ```
//!
//! Start and stop the same environment by hand with `tests/testenv/testenv.sh up|down DIR`;
//! `testenv.sh stop|start DIR kube-apiserver|registry` takes one component down and back up
//! (from a test: [`TestEnv::stop`], then [`Outage::end`]).

pub mod app;
pub mod bench;
pub mod deploy_repo;
pub mod env;
pub mod git;
pub mod kubelet;
pub mod pods;
pub mod process;
pub mod rbac;
pub mod records;
pub mod registry;
pub mod report;
pub mod scenarios;
pub mod tls;
pub mod wait;
pub mod webhook;
pub mod workloads;

pub use app::{App, example_hook, hook_entry, setup_approvals_rbac};
pub use env::{
    CONTEXTS, CmdOutput, Component, Namespace, Outage, TestEnv, fake_kubelet_bin, plugin_bin, run,
};
pub use git::GitRepo;
pub use pods::wait_for_pods_on;
pub use process::{Signal, Spawned};
pub use rbac::{
    deployer_rules, ensure_namespace, grant, may, rule, setup_policy_rbac, wait_until_denied,
};
pub use records::{
    delete_lease, has_applied, lease, lease_name, record_name, records, wait_for_records,
};
pub use registry::{image_digest, push_crashing_image, push_image};
pub use report::{
    REPORT_SCHEMA, assert_report, assert_valid_report, one_json_document, report_schema,
};
pub use scenarios::{
    app_with_a_slow_rollout, entries, history, mid_rollout, pretty, spawn_release, template_image,
};
pub use tls::{TestCa, TlsFiles};
pub use wait::{
    DEFAULT_TIMEOUT, daemonset_rolled_out, deployment_rolled_out, image_ids,
    statefulset_rolled_out, wait_for, wait_for_all, waiting_reasons,
};
pub use webhook::{
    APPROVAL_LABEL, APPROVALS_NAMESPACE, APPROVALS_WEBHOOK, GOVERNED_LABEL, WORKLOADS_WEBHOOK,
    Webhook, eventually, govern, metric, push_hook_module, write_cluster_policy,
    write_cluster_policy_sections,
};
pub use workloads::{WorkloadBuilder, apply, cronjob, daemonset, deployment, statefulset};

/// Installs ring as rustls' process-wide crypto provider, which oci-client (built without a
/// provider of its own) needs before its first client. Idempotent.
pub fn install_crypto_provider() {
    // Err means some provider is already installed, which is all we need.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
