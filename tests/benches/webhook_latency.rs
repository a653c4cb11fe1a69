//! The admission webhook's latency, in one run on the real test environment.
//!
//! ```sh
//! bash tests/bench-webhook.sh [REQUESTS] [APPLIES]     # defaults 500 and 100
//! cargo bench -p kubectl-release-tests --bench webhook_latency --profile dev
//! ```
//!
//! Not a test: it prints percentiles and differences, then a summary block for the README.
//!
//! 1. Direct: `BENCH_REQUESTS` (500) AdmissionReviews POSTed over HTTPS to `/workloads`,
//!    `BENCH_IN_FLIGHT` (50) at a time: one tokio task per in-flight slot, each with its own
//!    keep-alive HTTP/1.1 connection over tokio-rustls (so 50 connections, each carrying
//!    REQUESTS / IN_FLIGHT reviews one after another). Each review is a Deployment UPDATE in a
//!    governed namespace changing a digest-pinned image. Measured twice against the same webhook
//!    process: with the cluster policy holding the three example Rust hooks in phase `admission`
//!    (`required-labels`, `same-image-across-envs`, `approval-rules`, pushed as OCI modules), and
//!    with an empty policy (no hooks: what the server, TLS and JSON cost). What is timed is one
//!    request, from sending it to having read the whole answer.
//! 2. Through the API server: `BENCH_APPLIES` (100) sequential server-side dry-run patches of
//!    the Deployment's image (kube-rs `patch` with `dry_run`), with the webhook registered
//!    (`webhook config | kubectl apply`), then with its configurations deleted.
//!
//! The hooks' settings: `required-labels` requires `team` and `owner` (both present, images
//! pinned by digest: it passes); `approval-rules` has `required: 0` and a freeze window that has
//! ended (it reads the approvals and checks the windows, and passes); `same-image-across-envs`
//! has none, and refuses every change: the webhook's admission request describes no environments
//! ("the request does not describe the target environment"). So with hooks every review is
//! denied by that hook alone, which the bench checks, and the dry runs through the API server are
//! refused too. With hooks, each review also lists the app's approvals and release records from
//! the API server.
//!
//! Environment: `BENCH_REQUESTS`, `BENCH_IN_FLIGHT`, `BENCH_APPLIES`, `KUBECTL_RELEASE_BIN`
//! (the webhook measured; default: `target/<profile>/kubectl-release` of this build, the debug
//! build with the script).

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty, Full};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use kube::api::{Patch, PatchParams};
use kubectl_release_tests::{
    Spawned, TestCa, TestEnv, TlsFiles, apply, deployment, example_hook, govern, metric,
    push_hook_module, run, setup_approvals_rbac, write_cluster_policy,
};
use rustls::pki_types::ServerName;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

const RERUN: &str = "bash tests/bench-webhook.sh [REQUESTS] [APPLIES]";
const HOOKS: [&str; 3] = [
    "required-labels",
    "same-image-across-envs",
    "approval-rules",
];
const START_TIMEOUT: Duration = Duration::from_secs(60);
const PICKED_UP: Duration = Duration::from_secs(60);
const POLICY_HOOKS: &str = "kubectl_release_webhook_policy_hooks";
const WORKLOAD_SERIES: [&str; 3] = [
    r#"kubectl_release_webhook_requests_total{kind="workload",verdict="allowed"}"#,
    r#"kubectl_release_webhook_requests_total{kind="workload",verdict="denied"}"#,
    r#"kubectl_release_webhook_requests_total{kind="workload",verdict="error"}"#,
];
const DIGEST_A: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const DIGEST_B: &str = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const APP: &str = "web";

fn main() -> Result<()> {
    if !std::env::args().any(|a| a == "--bench") {
        println!("webhook_latency: a benchmark; run it with `{RERUN}`");
        return Ok(());
    }
    let requests = env_number("BENCH_REQUESTS", 500)?;
    let in_flight = env_number("BENCH_IN_FLIGHT", 50)?;
    let applies = env_number("BENCH_APPLIES", 100)?;
    ensure!(
        requests >= 1 && in_flight >= 1 && applies >= 1,
        "counts must be at least 1"
    );
    let plugin = match std::env::var_os("KUBECTL_RELEASE_BIN") {
        Some(p) => PathBuf::from(p),
        None => kubectl_release_tests::env::plugin_bin(),
    };
    ensure!(plugin.is_file(), "{} is not a file", plugin.display());
    let env = TestEnv::shared();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(bench(env, &plugin, requests, in_flight, applies))
}

fn env_number(name: &str, default: usize) -> Result<usize> {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .with_context(|| format!("{name}={v} is not a number")),
        Err(_) => Ok(default),
    }
}

async fn bench(
    env: &'static TestEnv,
    plugin: &Path,
    requests: usize,
    in_flight: usize,
    applies: usize,
) -> Result<()> {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("admission webhook benchmark: direct reviews and API server dry runs");
    println!(
        "  control plane   {} (v1.20.2), up in {:.1?}",
        env.apiserver(),
        env.started_in()
    );
    println!(
        "  webhook         {}",
        kubectl_release_tests::bench::describe_binary(plugin)
    );
    println!(
        "  load            {requests} reviews, {in_flight} in flight over {in_flight} keep-alive HTTP/1.1+TLS connections; {applies} dry-run patches each way; {cpus} CPUs"
    );
    println!();

    // The governed namespace, its Deployment, and the policy's modules.
    let setup = Instant::now();
    let ns = env.namespace("bench-webhook").await;
    let namespace = ns.name().to_string();
    govern(env, &namespace).await;
    let image_a = format!("{}/bench/web@{DIGEST_A}", env.registry());
    let image_b = format!("{}/bench/web@{DIGEST_B}", env.registry());
    let client = env.client("admin").await;
    let web = deployment(APP)
        .image(&image_a)
        .labels([("team", "payments"), ("owner", "alice")])
        .build();
    apply(&client, &namespace, &web)
        .await
        .context("create the Deployment")?;
    let mut policy = String::new();
    for hook in HOOKS {
        let (module, _) = example_hook(hook);
        let pinned =
            push_hook_module(env, &module, &format!("policies/bench-webhook/{hook}")).await;
        let settings = match hook {
            "required-labels" => r#"{labels: {team: "^[a-z-]+$", owner: ".*"}}"#,
            "same-image-across-envs" => "{}",
            _ => {
                r#"{required: 0, excludeDeployer: true, freezeWindows: [{start: "2025-12-20T00:00:00Z", end: "2026-01-05T00:00:00Z", reason: year-end}]}"#
            }
        };
        policy.push_str(&format!(
            "  - name: {hook}\n    module: {pinned}\n    phases: [admission]\n    namespaces: [{namespace}]\n    settings: {settings}\n"
        ));
    }
    write_cluster_policy(env, &policy).await;
    let webhook = Server::start(env, plugin).await?;
    webhook.await_policy_hooks(HOOKS.len()).await?;
    println!(
        "== set up in {:.1?}: namespace {namespace}, webhook on {}",
        setup.elapsed(),
        webhook.https
    );

    // 1. Direct reviews: three hooks, then none.
    println!(
        "== direct: POST /workloads, Deployment UPDATE of a pinned image (after {in_flight} warm-up reviews each)"
    );
    let review = review_body(&namespace, &web, &image_a, &image_b)?;
    let warmup = in_flight.min(requests);
    webhook
        .load(&review, warmup, in_flight, Verdict::DeniedBySameImage)
        .await?;
    let hooks = webhook
        .load(&review, requests, in_flight, Verdict::DeniedBySameImage)
        .await?;
    let hooks = Percentiles::of(&hooks);
    hooks.print("three Rust hooks");

    write_cluster_policy(env, "").await;
    webhook.await_policy_hooks(0).await?;
    webhook
        .load(&review, warmup, in_flight, Verdict::Allowed)
        .await?;
    let noop = webhook
        .load(&review, requests, in_flight, Verdict::Allowed)
        .await?;
    let noop = Percentiles::of(&noop);
    noop.print("no-op (empty policy)");
    println!(
        "  difference (hooks - no-op): p50 {:+.2} ms  p90 {:+.2} ms  p99 {:+.2} ms  max {:+.2} ms; ratio of p50 {:.2}",
        hooks.p50 - noop.p50,
        hooks.p90 - noop.p90,
        hooks.p99 - noop.p99,
        hooks.max - noop.max,
        hooks.p50 / noop.p50
    );
    println!();

    // 2. Through the API server, with the three hooks again.
    write_cluster_policy(env, &policy).await;
    webhook.await_policy_hooks(HOOKS.len()).await?;
    let api: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
    let manifests = webhook.register(env).await?;
    webhook.await_consulted(&api, &image_b).await?;
    let reviews_before = webhook.workload_reviews().await?;
    for _ in 0..5 {
        dry_run(&api, &image_b).await?;
    }
    let registered = dry_runs(&api, &image_b, applies).await?;
    let consulted = webhook.workload_reviews().await? - reviews_before;
    ensure!(
        consulted >= (applies + 5) as f64,
        "the webhook judged {consulted} of {} dry runs",
        applies + 5
    );
    let path = manifests.path().to_str().context("a UTF-8 temp path")?;
    env.kubectl(&["delete", "-f", path]).await.assert_success();
    webhook.await_not_consulted(&api, &image_b).await?;
    let reviews_before = webhook.workload_reviews().await?;
    for _ in 0..5 {
        dry_run(&api, &image_b).await?;
    }
    let unregistered = dry_runs(&api, &image_b, applies).await?;
    let consulted = webhook.workload_reviews().await? - reviews_before;
    ensure!(
        consulted == 0.0,
        "the webhook judged {consulted} dry runs after it was unregistered"
    );
    let with = Percentiles::of(&registered);
    let without = Percentiles::of(&unregistered);
    println!(
        "== API server: server-side dry-run patch of the Deployment's image (N={applies}, sequential)"
    );
    with.print("webhook registered");
    without.print("not registered");
    println!(
        "  added by the webhook: p50 {:+.2} ms (ratio {:.2})",
        with.p50 - without.p50,
        with.p50 / without.p50
    );
    println!();

    let p99_goal = if hooks.p99 <= 5.0 { "met" } else { "NOT met" };
    let added = with.p50 - without.p50;
    let added_goal = if added <= 10.0 { "met" } else { "NOT met" };
    println!("== summary (milliseconds; one run, same control plane and webhook process)");
    println!(
        "webhook direct, 3 Rust hooks (N={requests}, {in_flight} in flight): p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
        hooks.p50, hooks.p90, hooks.p99, hooks.max
    );
    println!(
        "webhook direct, no-op (empty policy):       p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
        noop.p50, noop.p90, noop.p99, noop.max
    );
    println!(
        "  hooks - no-op: p50 {:+.2}  p99 {:+.2}; goal p99 <= 5 ms with three Rust hooks: {p99_goal}",
        hooks.p50 - noop.p50,
        hooks.p99 - noop.p99
    );
    println!(
        "API server dry-run patch (N={applies}): p50 {:.2} registered, {:.2} not; added {added:+.2}; goal <= 10 ms added: {added_goal}",
        with.p50, without.p50
    );
    println!("rerun: {RERUN}");
    drop(webhook);
    Ok(())
}

/// A Deployment UPDATE from `old` to `new` as the API server sends it for review.
fn review_body(namespace: &str, web: &Deployment, old: &str, new: &str) -> Result<Bytes> {
    let mut old_object = serde_json::to_value(web)?;
    old_object["metadata"]["namespace"] = json!(namespace);
    let mut object = old_object.clone();
    object["spec"]["template"]["spec"]["containers"][0]["image"] = json!(new);
    ensure!(
        old_object["spec"]["template"]["spec"]["containers"][0]["image"] == json!(old),
        "the Deployment does not run {old}"
    );
    let review = json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "bench",
            "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
            "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
            "requestKind": {"group": "apps", "version": "v1", "kind": "Deployment"},
            "requestResource": {"group": "apps", "version": "v1", "resource": "deployments"},
            "name": APP,
            "namespace": namespace,
            "operation": "UPDATE",
            "userInfo": {"username": "admin", "groups": ["system:masters", "system:authenticated"]},
            "object": object,
            "oldObject": old_object,
            "dryRun": false,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "UpdateOptions"},
        }
    });
    Ok(Bytes::from(review.to_string()))
}

/// One server-side dry-run patch of the image, timed. With the webhook registered the API server
/// answers with the webhook's refusal (see [`Verdict::DeniedBySameImage`]), which is expected.
async fn dry_run(api: &Api<Deployment>, image: &str) -> Result<Duration> {
    let patch =
        json!({"spec": {"template": {"spec": {"containers": [{"name": APP, "image": image}]}}}});
    let params = PatchParams {
        dry_run: true,
        ..Default::default()
    };
    let started = Instant::now();
    let result = api.patch(APP, &params, &Patch::Strategic(&patch)).await;
    let took = started.elapsed();
    match result {
        Ok(_) => Ok(took),
        Err(kube::Error::Api(s)) if s.message.contains("same-image-across-envs") => Ok(took),
        Err(e) => Err(e).context("a dry-run patch"),
    }
}

async fn dry_runs(api: &Api<Deployment>, image: &str, n: usize) -> Result<Vec<Duration>> {
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        samples.push(dry_run(api, image).await?);
    }
    Ok(samples)
}

/// `kubectl-release webhook serve` on loopback, killed when dropped.
struct Server {
    plugin: PathBuf,
    process: Spawned,
    https: SocketAddr,
    metrics: SocketAddr,
    files: TlsFiles,
    tls: Arc<rustls::ClientConfig>,
    _dir: tempfile::TempDir,
}

impl Server {
    async fn start(env: &TestEnv, plugin: &Path) -> Result<Server> {
        let dir = tempfile::tempdir()?;
        let ca = TestCa::new();
        let files = ca.write_serving_files(dir.path());
        let (https, metrics) = (free_port()?, free_port()?);
        let mut command = tokio::process::Command::new(plugin);
        command
            .env("KUBECONFIG", env.kubeconfig())
            .env("NO_COLOR", "1")
            .env(
                "KUBECTL_RELEASE_CACHE_DIR",
                env.dir().join("webhook-module-cache"),
            )
            .args(["--context", "admin", "-v", "webhook", "serve"])
            .args(["--listen", &format!("127.0.0.1:{https}")])
            .args(["--metrics-listen", &format!("127.0.0.1:{metrics}")])
            .arg("--tls-cert")
            .arg(&files.cert)
            .arg("--tls-key")
            .arg(&files.key);
        let process = Spawned::spawn(&mut command);
        process
            .wait_for_stderr("\"webhook serving\"", START_TIMEOUT, |e| {
                e.contains("webhook serving")
            })
            .await
            .context("the webhook did not start")?;
        Ok(Server {
            plugin: plugin.to_path_buf(),
            process,
            https: SocketAddr::from((Ipv4Addr::LOCALHOST, https)),
            metrics: SocketAddr::from((Ipv4Addr::LOCALHOST, metrics)),
            files,
            tls: ca.client_config(),
            _dir: dir,
        })
    }

    async fn connect(&self) -> Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>> {
        let tcp = TcpStream::connect(self.https).await?;
        tcp.set_nodelay(true)?;
        let tls = TlsConnector::from(self.tls.clone())
            .connect(ServerName::IpAddress(Ipv4Addr::LOCALHOST.into()), tcp)
            .await
            .context("TLS handshake with the webhook")?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(connection);
        Ok(sender)
    }

    /// `requests` reviews, `in_flight` tasks each on its own connection; every answer must be
    /// `expect`. The latency of each request.
    async fn load(
        &self,
        review: &Bytes,
        requests: usize,
        in_flight: usize,
        expect: Verdict,
    ) -> Result<Vec<Duration>> {
        let mut tasks = tokio::task::JoinSet::new();
        for slot in 0..in_flight {
            let count = requests / in_flight + usize::from(slot < requests % in_flight);
            if count == 0 {
                continue;
            }
            let mut sender = self.connect().await?;
            let review = review.clone();
            tasks.spawn(async move {
                let mut samples = Vec::with_capacity(count);
                for _ in 0..count {
                    sender.ready().await?;
                    let request = http::Request::post("/workloads")
                        .header(http::header::HOST, "127.0.0.1")
                        .header(http::header::CONTENT_TYPE, "application/json")
                        .body(Full::new(review.clone()))?;
                    let started = Instant::now();
                    let response = sender.send_request(request).await?;
                    let status = response.status();
                    let body = response.into_body().collect().await?.to_bytes();
                    samples.push(started.elapsed());
                    ensure!(
                        status == http::StatusCode::OK,
                        "POST /workloads: {status}: {}",
                        String::from_utf8_lossy(&body)
                    );
                    let answer: Value = serde_json::from_slice(&body)?;
                    expect.check(&answer)?;
                }
                anyhow::Ok(samples)
            });
        }
        let mut samples = Vec::with_capacity(requests);
        while let Some(done) = tasks.join_next().await {
            samples.extend(done??);
        }
        Ok(samples)
    }

    async fn metrics_text(&self) -> Result<String> {
        let tcp = TcpStream::connect(self.metrics).await?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
        tokio::spawn(connection);
        let request = http::Request::get("/metrics")
            .header(http::header::HOST, "127.0.0.1")
            .body(Empty::<Bytes>::new())?;
        let response = sender.send_request(request).await?;
        let body = response.into_body().collect().await?.to_bytes();
        Ok(String::from_utf8_lossy(&body).into_owned())
    }

    async fn workload_reviews(&self) -> Result<f64> {
        let text = self.metrics_text().await?;
        Ok(WORKLOAD_SERIES.iter().map(|s| metric(&text, s)).sum())
    }

    /// Waits until the webhook has loaded a policy of `hooks` admission hooks.
    async fn await_policy_hooks(&self, hooks: usize) -> Result<()> {
        let started = Instant::now();
        loop {
            let text = self.metrics_text().await?;
            if metric(&text, POLICY_HOOKS) == hooks as f64 {
                return Ok(());
            }
            if started.elapsed() > PICKED_UP {
                bail!(
                    "the webhook never loaded {hooks} hooks; stderr:\n{}",
                    self.process.stderr_so_far()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `webhook config | kubectl apply`, then waits until the API server sends it workload
    /// changes. Returns the applied manifests (to delete them).
    async fn register(&self, env: &TestEnv) -> Result<tempfile::NamedTempFile> {
        setup_approvals_rbac(env).await;
        let mut config = tokio::process::Command::new(&self.plugin);
        config
            .env("KUBECONFIG", env.kubeconfig())
            .args([
                "webhook",
                "config",
                "--url",
                &format!("https://{}", self.https),
            ])
            .arg("--ca-bundle")
            .arg(&self.files.ca);
        let manifests = run(&mut config).await.assert_success().stdout;
        let file = tempfile::NamedTempFile::new()?;
        std::fs::write(file.path(), &manifests)?;
        let path = file.path().to_str().context("a UTF-8 temp path")?;
        env.kubectl(&["apply", "-f", path]).await.assert_success();
        Ok(file)
    }

    /// Until a dry run no longer reaches the webhook (the API server's informer has seen the
    /// configurations go).
    async fn await_not_consulted(&self, api: &Api<Deployment>, image: &str) -> Result<()> {
        let started = Instant::now();
        let mut quiet = 0;
        while quiet < 5 {
            let before = self.workload_reviews().await?;
            dry_run(api, image).await?;
            if self.workload_reviews().await? == before {
                quiet += 1;
            } else {
                quiet = 0;
            }
            ensure!(
                started.elapsed() < PICKED_UP,
                "the API server still calls the webhook"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    /// Until a dry run reaches the webhook.
    async fn await_consulted(&self, api: &Api<Deployment>, image: &str) -> Result<()> {
        let started = Instant::now();
        loop {
            let before = self.workload_reviews().await?;
            dry_run(api, image).await?;
            if self.workload_reviews().await? > before {
                return Ok(());
            }
            ensure!(
                started.elapsed() < PICKED_UP,
                "the API server never called the webhook"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// What every answer of a load must be.
#[derive(Clone, Copy, Debug)]
enum Verdict {
    /// No hooks: allowed.
    Allowed,
    /// The three hooks: `required-labels` and `approval-rules` pass; `same-image-across-envs`
    /// refuses, since an admission request describes no environments.
    DeniedBySameImage,
}

impl Verdict {
    fn check(self, answer: &Value) -> Result<()> {
        let response = &answer["response"];
        let message = response["status"]["message"].as_str().unwrap_or_default();
        let ok = match self {
            Verdict::Allowed => response["allowed"] == json!(true),
            Verdict::DeniedBySameImage => {
                response["allowed"] == json!(false)
                    && message.contains("same-image-across-envs")
                    && !message.contains("required-labels")
                    && !message.contains("approval-rules")
            }
        };
        ensure!(ok, "not the verdict expected ({self:?}): {answer}");
        Ok(())
    }
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Percentiles in milliseconds (nearest rank).
struct Percentiles {
    n: usize,
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
}

impl Percentiles {
    fn of(samples: &[Duration]) -> Percentiles {
        let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        ms.sort_by(f64::total_cmp);
        let rank = |p: f64| {
            if ms.is_empty() {
                return f64::NAN;
            }
            let i = ((p / 100.0) * ms.len() as f64).ceil() as usize;
            ms[i.clamp(1, ms.len()) - 1]
        };
        Percentiles {
            n: ms.len(),
            p50: rank(50.0),
            p90: rank(90.0),
            p99: rank(99.0),
            max: ms.last().copied().unwrap_or(f64::NAN),
        }
    }

    fn print(&self, label: &str) {
        println!(
            "  {label:<22} N={:<4} p50 {:>7.2} ms  p90 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms",
            self.n, self.p50, self.p90, self.p99, self.max
        );
    }
}
