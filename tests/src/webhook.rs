//! The admission webhook as the API server meets it: `kubectl-release webhook serve` on
//! loopback as a child process, serving a certificate signed by a CA made in the test, and
//! registered with the real API server by URL and CA bundle (`webhook config | kubectl apply`).
//!
//! The webhook configurations and the cluster policy are cluster-wide: a test binary that
//! registers a webhook runs the tests that do one at a time.
//!
//! ```no_run
//! use kubectl_release_tests::{TestEnv, Webhook, write_cluster_policy};
//! # async fn example() {
//! let env = TestEnv::shared();
//! write_cluster_policy(env, "").await;
//! let webhook = Webhook::start(env).await; // ready: its policy is loaded
//! webhook.register().await; // the API server now calls it
//! assert_eq!(webhook.get("/healthz").await.0, 200);
//! # }
//! ```

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace as CoreNamespace};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use rustls::pki_types::ServerName;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::tls::{TestCa, TlsFiles};
use crate::workloads::FIELD_MANAGER;
use crate::{CmdOutput, Signal, Spawned, TestEnv, deployment, run, setup_approvals_rbac};

/// Where approvals live; the approvals webhook judges this namespace only.
pub const APPROVALS_NAMESPACE: &str = "kubectl-release-approvals";
/// The label of an approval ConfigMap (the approvals webhook's object selector).
pub const APPROVAL_LABEL: &str = "kubectl-release.io/approval";
/// The label of the namespaces whose workload changes the webhook judges (`webhook config`'s
/// default `--governed`).
pub const GOVERNED_LABEL: &str = "kubectl-release.io/governed";
/// The webhooks' names, as the API server quotes them in its answers.
pub const APPROVALS_WEBHOOK: &str = "approvals.kubectl-release.io";
pub const WORKLOADS_WEBHOOK: &str = "workloads.kubectl-release.io";
/// A governed namespace no policy hook names: where a change shows the webhook is consulted.
const PROBE_NAMESPACE: &str = "kubectl-release-webhook-probe";
/// Generous bounds for a server on loopback starting, and for the API server's informers to
/// see a new webhook configuration; a stuck test fails within them.
const START_TIMEOUT: Duration = Duration::from_secs(60);
const REGISTER_TIMEOUT: Duration = Duration::from_secs(30);
/// How often to ask again for what cannot be watched (the API server's webhook informer).
const RETRY_PAUSE: Duration = Duration::from_millis(100);
/// How many times to pick new ports when another process took one between pick and bind.
const BIND_ATTEMPTS: usize = 3;

/// A running `kubectl-release webhook serve`, killed when dropped.
pub struct Webhook {
    env: &'static TestEnv,
    process: Spawned,
    https: SocketAddr,
    metrics: SocketAddr,
    files: TlsFiles,
    client_tls: Arc<rustls::ClientConfig>,
    /// Holds the certificate files.
    _dir: tempfile::TempDir,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("https", &self.https)
            .field("metrics", &self.metrics)
            .finish_non_exhaustive()
    }
}

impl Webhook {
    /// Makes a CA and a serving certificate for 127.0.0.1, starts the webhook as the admin of
    /// `env` on free loopback ports (HTTPS and metrics), and returns once it serves and
    /// `/readyz` says it is ready: its cluster policy is loaded. Its module cache is in the
    /// environment's directory, shared by the webhooks of the process.
    ///
    /// Panics, with the webhook's stderr, when it does not come up ready.
    pub async fn start(env: &'static TestEnv) -> Webhook {
        let dir = tempfile::tempdir().expect("a directory for the webhook's certificate");
        let ca = TestCa::new();
        let files = ca.write_serving_files(dir.path());
        let cache = env.dir().join("webhook-module-cache");
        let mut attempt = 1;
        let (process, https, metrics) = loop {
            let (https, metrics) = (free_port(), free_port());
            let process = spawn_serve(env, &files, &cache, https, metrics);
            match process
                .wait_for_stderr("\"webhook serving\"", START_TIMEOUT, |e| {
                    e.contains("webhook serving")
                })
                .await
            {
                Ok(_) => break (process, loopback(https), loopback(metrics)),
                // Another process took a port between our pick and its bind: pick again.
                Err(e) if e.to_string().contains("Failed to listen") && attempt < BIND_ATTEMPTS => {
                    attempt += 1;
                    process.finish(START_TIMEOUT).await;
                }
                Err(e) => panic!("the webhook did not start: {e:#}"),
            }
        };
        let webhook = Webhook {
            env,
            process,
            https,
            metrics,
            files,
            client_tls: ca.client_config(),
            _dir: dir,
        };
        // The policy is loaded before the server starts: ready at once, or never by itself.
        let (status, body) = webhook.get("/readyz").await;
        assert_eq!(
            status,
            200,
            "the webhook serves but is not ready: {body}\nstderr:\n{}",
            webhook.stderr()
        );
        webhook
    }

    /// `https://127.0.0.1:PORT`: where the API server reaches the webhook.
    pub fn url(&self) -> String {
        format!("https://{}", self.https)
    }

    /// Registers the webhook with the API server as the admin (`webhook config --url …
    /// --ca-bundle …`, applied; `plugin/rbac/approvals.yaml` first, which labels the approvals
    /// namespace), and returns once the API server calls it for approvals and for workloads.
    pub async fn register(&self) {
        setup_approvals_rbac(self.env).await;
        let mut config = self.env.plugin();
        config
            .args(["webhook", "config", "--url", &self.url(), "--ca-bundle"])
            .arg(&self.files.ca);
        let manifests = run(&mut config).await.assert_success().stdout;
        let file = tempfile::NamedTempFile::new().expect("a file for the configurations");
        std::fs::write(file.path(), &manifests).expect("write the webhook configurations");
        let path = file.path().to_str().expect("a UTF-8 temp path");
        self.env
            .kubectl(&["apply", "-f", path])
            .await
            .assert_success();
        self.await_consulted_for_approvals().await;
        self.await_consulted_for_workloads().await;
    }

    /// The API server picks a new webhook configuration up through an informer: until it has,
    /// it calls the previous URL or none. An approval without `approval.json` (a dry run) is
    /// refused by this webhook, and only by it, in the words it uses.
    async fn await_consulted_for_approvals(&self) {
        let api: Api<ConfigMap> =
            Api::namespaced(self.env.client("admin").await, APPROVALS_NAMESPACE);
        let probe: ConfigMap = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "webhook-probe", "labels": {APPROVAL_LABEL: "true"}},
            "data": {"note": "not an approval"},
        }))
        .expect("a ConfigMap");
        let dry_run = PostParams {
            dry_run: true,
            ..Default::default()
        };
        eventually(
            "the API server calls the approvals webhook",
            REGISTER_TIMEOUT,
            || {
                let (api, probe, dry_run) = (&api, &probe, &dry_run);
                async move {
                    match api.create(dry_run, probe).await {
                        Err(kube::Error::Api(s)) if s.message.contains("has no approval.json") => {
                            Ok(())
                        }
                        other => Err(format!("a probe approval got {other:?}")),
                    }
                }
            },
        )
        .await;
    }

    /// A change in a governed namespace that no policy hook names is allowed whether the webhook
    /// is consulted or not: its own count of workload reviews tells.
    async fn await_consulted_for_workloads(&self) {
        let client = self.env.client("admin").await;
        let namespaces: Api<CoreNamespace> = Api::all(client.clone());
        let governed = serde_json::json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": PROBE_NAMESPACE, "labels": {GOVERNED_LABEL: "true"}},
        });
        namespaces
            .patch(
                PROBE_NAMESPACE,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&governed),
            )
            .await
            .unwrap_or_else(|e| panic!("cannot create namespace {PROBE_NAMESPACE}: {e}"));
        let api: Api<Deployment> = Api::namespaced(client, PROBE_NAMESPACE);
        let probe = deployment("probe")
            .image("registry.invalid/probe:1")
            .build();
        let dry_run = PostParams {
            dry_run: true,
            ..Default::default()
        };
        eventually(
            "the API server calls the workloads webhook",
            REGISTER_TIMEOUT,
            || {
                let (api, probe, dry_run) = (&api, &probe, &dry_run);
                async move {
                    let created = api.create(dry_run, probe).await;
                    let reviews = self.workload_reviews().await;
                    if reviews > 0.0 {
                        Ok(())
                    } else {
                        Err(format!(
                            "no workload review counted; the probe got {created:?}"
                        ))
                    }
                }
            },
        )
        .await;
    }

    async fn workload_reviews(&self) -> f64 {
        let text = self.metrics().await;
        ["allowed", "denied", "error"]
            .iter()
            .map(|verdict| {
                metric(
                    &text,
                    &format!(
                        "kubectl_release_webhook_requests_total{{kind=\"workload\",verdict=\"{verdict}\"}}"
                    ),
                )
            })
            .sum()
    }

    /// `GET path` over HTTPS, trusting the test CA alone and checking the certificate's IP:
    /// the status and the body. Panics when the server cannot be reached.
    pub async fn get(&self, path: &str) -> (u16, String) {
        let tcp = TcpStream::connect(self.https)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to the webhook on {}: {e}", self.https));
        let name = ServerName::IpAddress(Ipv4Addr::LOCALHOST.into());
        let tls = TlsConnector::from(self.client_tls.clone())
            .connect(name, tcp)
            .await
            .unwrap_or_else(|e| panic!("TLS handshake with the webhook on {}: {e}", self.https));
        http_get(tls, path).await
    }

    /// What `GET /metrics` on the metrics port says (Prometheus text format).
    pub async fn metrics(&self) -> String {
        let tcp = TcpStream::connect(self.metrics).await.unwrap_or_else(|e| {
            panic!(
                "cannot connect to the webhook's metrics on {}: {e}",
                self.metrics
            )
        });
        let (status, text) = http_get(tcp, "/metrics").await;
        assert_eq!(status, 200, "GET /metrics: {text}");
        text
    }

    /// The value of one series of `GET /metrics`, e.g.
    /// `kubectl_release_webhook_hook_errors_total{hook="loop"}`; 0 when absent.
    pub async fn metric(&self, series: &str) -> f64 {
        metric(&self.metrics().await, series)
    }

    /// What the webhook has logged so far (it runs with `-v`).
    pub fn stderr(&self) -> String {
        self.process.stderr_so_far()
    }

    /// Kills the webhook at once (SIGKILL, as a crash or an evicted pod), leaving its
    /// configurations registered, and returns what it printed.
    pub async fn kill(self) -> CmdOutput {
        self.process.signal(Signal::SIGKILL);
        self.process.finish(START_TIMEOUT).await
    }
}

fn spawn_serve(env: &TestEnv, files: &TlsFiles, cache: &Path, https: u16, metrics: u16) -> Spawned {
    let mut command = env.plugin();
    command
        .args(["--context", "admin", "-v", "webhook", "serve"])
        .args(["--listen", &format!("127.0.0.1:{https}")])
        .args(["--metrics-listen", &format!("127.0.0.1:{metrics}")])
        .arg("--tls-cert")
        .arg(&files.cert)
        .arg("--tls-key")
        .arg(&files.key)
        .env("KUBECTL_RELEASE_CACHE_DIR", cache);
    Spawned::spawn(&mut command)
}

/// A loopback port free a moment ago (the listener is dropped before the port is passed on).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// One HTTP/1.1 `GET` on a connection of its own.
async fn http_get<I>(io: I, path: &str) -> (u16, String)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .expect("HTTP/1.1 handshake");
    tokio::spawn(connection);
    let request = http::Request::get(path)
        .header(http::header::HOST, "127.0.0.1")
        .body(Empty::<Bytes>::new())
        .expect("a GET request");
    let response = sender
        .send_request(request)
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .unwrap_or_else(|e| panic!("GET {path}: the body: {e}"))
        .to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// The value of `series` (name and labels exactly as exposed) in a Prometheus text exposition;
/// 0 when it is absent (a counter nothing has incremented yet).
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .filter_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .find_map(|value| value.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Runs `attempt` until it succeeds and returns what it returned; for states that cannot be
/// watched (an informer inside the API server, a policy the webhook reloads), asking again
/// every 100 ms. Panics with `what` and the last failure after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let started = Instant::now();
    loop {
        match attempt().await {
            Ok(value) => return value,
            Err(last) if started.elapsed() >= timeout => {
                panic!("{what}: still not so after {timeout:?}; last: {last}")
            }
            Err(_) => tokio::time::sleep(RETRY_PAUSE).await,
        }
    }
}

/// Writes the cluster policy (`kubectl-release-policy` in `kubectl-release-system`, key
/// `policy.yaml`) as the platform admin, with `hooks` as the YAML list items of its `hooks:`
/// (empty: no hooks). Applies `plugin/rbac/policy.yaml` first.
pub async fn write_cluster_policy(env: &TestEnv, hooks: &str) {
    let hooks = if hooks.trim().is_empty() {
        " []\n".to_string()
    } else {
        format!("\n{hooks}")
    };
    write_cluster_policy_sections(env, &format!("hooks:{hooks}")).await;
}

/// Writes the cluster policy with `sections` (YAML: `hooks:`, `generator:`) after its
/// apiVersion and kind, as [`write_cluster_policy`] does.
pub async fn write_cluster_policy_sections(env: &TestEnv, sections: &str) {
    crate::setup_policy_rbac(env).await;
    let policy =
        format!("apiVersion: kubectl-release.io/v1alpha1\nkind: ClusterPolicy\n{sections}");
    let manifest = serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "kubectl-release-policy", "namespace": "kubectl-release-system"},
        "data": {"policy.yaml": policy},
    });
    let file = tempfile::NamedTempFile::new().expect("a file for the policy");
    std::fs::write(file.path(), manifest.to_string()).expect("write the policy");
    let path = file.path().to_str().expect("a UTF-8 temp path");
    env.kubectl(&["--context", "platform-admin", "apply", "-f", path])
        .await
        .assert_success();
}

/// Pushes the hook module `module` to `oci://<registry>/<repository>:v1` with `hooks push` and
/// returns the reference pinned by digest, as a policy names it.
pub async fn push_hook_module(env: &TestEnv, module: &Path, repository: &str) -> String {
    let target = format!("oci://{}/{repository}:v1", env.registry());
    let mut push = env.plugin();
    push.args(["hooks", "push"])
        .arg(module)
        .args([&target, "-o", "json"]);
    let out = run(&mut push).await.assert_success();
    let pushed: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("hooks push -o json is not JSON ({e}): {out}"));
    let pinned = pushed["reference"]
        .as_str()
        .unwrap_or_else(|| panic!("hooks push names no reference: {out}"))
        .to_string();
    assert!(pinned.contains("@sha256:"), "not pinned by digest: {out}");
    pinned
}

/// Labels `namespace` as governed (`kubectl-release.io/governed=true`): the API server sends
/// its workload changes to the webhook from now on.
pub async fn govern(env: &TestEnv, namespace: &str) {
    env.kubectl(&[
        "label",
        "namespace",
        namespace,
        &format!("{GOVERNED_LABEL}=true"),
        "--overwrite",
    ])
    .await
    .assert_success();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_reads_one_series_exactly() {
        let text = "# HELP x\n\
                    kubectl_release_webhook_requests_total{kind=\"approval\",verdict=\"allowed\"} 3\n\
                    kubectl_release_webhook_requests_total{kind=\"approval\",verdict=\"denied\"} 12\n";
        let series = |v: &str| {
            format!("kubectl_release_webhook_requests_total{{kind=\"approval\",verdict=\"{v}\"}}")
        };
        assert_eq!(metric(text, &series("allowed")), 3.0);
        assert_eq!(metric(text, &series("denied")), 12.0);
        assert_eq!(metric(text, &series("error")), 0.0);
    }
}
