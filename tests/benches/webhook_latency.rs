//! The admission webhook's latency, in one run on the real test environment.
//!
//! ```sh
//! bash tests/bench-webhook.sh [REQUESTS] [APPLIES]     # defaults 500 and 100; release build
//! cargo bench -p kubectl-release-tests --bench webhook_latency --profile dev
//! ```
//!
//! Not a test: it prints percentiles and differences, then a summary block for the README.
//!
//! 1. Direct: `BENCH_REQUESTS` (500) AdmissionReviews POSTed over HTTPS to `/workloads`,
//!    `BENCH_IN_FLIGHT` (50) at a time: one tokio task per in-flight slot, each with its own
//!    keep-alive HTTP/1.1 connection over tokio-rustls (so 50 connections, each carrying
//!    REQUESTS / IN_FLIGHT reviews one after another; every connection is opened before the
//!    tasks start together, and the run's throughput and mean number in flight are printed).
//!    Each review is a Deployment UPDATE in a
//!    governed namespace changing a digest-pinned image. Measured three times against the same
//!    webhook process, each after `IN_FLIGHT` warm-up reviews, with three cluster policies:
//!    - **allow**: three Rust hooks in phase `admission` that admit the change, the policy the
//!      README recommends for `admission`: `required-labels` (`team` and `owner`, both present),
//!      `approval-rules` (two verified approvals of exactly the new digest from people other than
//!      the requester: two approval ConfigMaps the bench creates, read from the webhook's
//!      watched cache) and `approval-rules` again as `freeze-windows` (`required: 0`, a freeze
//!      window that has ended);
//!    - **deny**: the three example hooks `required-labels`, `same-image-across-envs` and
//!      `approval-rules` (`required: 0`, the ended window). `same-image-across-envs` refuses every
//!      change in `admission` ("the request does not describe the target environment": an
//!      admission request carries no environments; the README says that hook belongs in the
//!      `pre-*` phases), so every review is denied by it alone, which the bench checks. A denial
//!      is confirmed on a fresh read of the app's approvals and records from the API server (one
//!      read shared by the denials waiting at the same time), so this is the slow path;
//!    - **empty hooks**: three hooks of a module that reads the request and allows without
//!      parsing it (WAT, below): what the sandbox and the webhook cost per hook, the floor under
//!      the allow path whatever the hooks decide;
//!    - **no-op**: an empty policy (what the server, TLS and JSON cost).
//!
//!    What is timed is one request, from sending it to having read the whole answer.
//! 2. Through the API server: `BENCH_APPLIES` (100) sequential server-side dry-run patches of
//!    the Deployment's image (kube-rs `patch` with `dry_run`), with the webhook registered
//!    (`webhook config | kubectl apply`) and the allow policy, then the deny policy (the API
//!    server answers with the webhook's refusal), then with the configurations deleted.
//!
//! The webhook logs as in plugin/deploy/webhook.yaml (no `-v`; the plugin's own info lines
//! only), and the client runs on the same machine, sharing its cores.
//!
//! Environment: `BENCH_REQUESTS`, `BENCH_IN_FLIGHT`, `BENCH_APPLIES`, `KUBECTL_RELEASE_BIN`
//! (the webhook measured; default: `target/<profile>/kubectl-release` of this build; the script
//! sets the release build).

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty, Full};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kubectl_release_tests::{
    APPROVAL_LABEL, APPROVALS_NAMESPACE, Spawned, TestCa, TestEnv, TlsFiles, apply, deployment,
    example_hook, govern, metric, push_hook_module, run, setup_approvals_rbac,
    write_cluster_policy,
};
use rustls::pki_types::ServerName;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

const RERUN: &str = "bash tests/bench-webhook.sh [REQUESTS] [APPLIES]";
/// The name [`EMPTY_HOOK`] is pushed under, beside the example hooks.
const EMPTY_MODULE: &str = "empty";
const MODULES: [&str; 3] = [
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
const APPROVERS: [&str; 2] = ["alice", "bob"];
const LABELS: &str = r#"{labels: {team: "^[a-z-]+$", owner: ".*"}}"#;
/// A hook that reads its whole request from stdin and allows without looking at it.
const EMPTY_HOOK: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (data (i32.const 256) "{\"apiVersion\":\"kubectl-release.io/hooks/v1\",\"kind\":\"HookResponse\",\"allowed\":true}")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 1024))
    (i32.store (i32.const 4) (i32.const 65536))
    (block $eof (loop $more
      (br_if $eof (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 16)))
      (br_if $eof (i32.eqz (i32.load (i32.const 16))))
      (br $more)))
    (i32.store (i32.const 32) (i32.const 256))
    (i32.store (i32.const 36) (i32.const 81))
    (drop (call $fd_write (i32.const 1) (i32.const 32) (i32.const 1) (i32.const 48)))))"#;
const ENDED_FREEZE: &str = r#"freezeWindows: [{start: "2025-12-20T00:00:00Z", end: "2026-01-05T00:00:00Z", reason: year-end}]"#;

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

/// The cluster policies measured, as `hooks:` entries.
struct Policies {
    allow: String,
    deny: String,
    empty: String,
}

impl Policies {
    fn new(modules: &[(&str, String)], namespace: &str) -> Policies {
        let module = |name: &str| {
            modules
                .iter()
                .find(|(m, _)| *m == name)
                .map(|(_, pinned)| pinned.clone())
                .expect("pushed")
        };
        let hook = |name: &str, module_name: &str, settings: &str| {
            format!(
                "  - name: {name}\n    module: {}\n    phases: [admission]\n    namespaces: [{namespace}]\n    settings: {settings}\n",
                module(module_name)
            )
        };
        let allow = [
            hook("required-labels", "required-labels", LABELS),
            hook(
                "approval-rules",
                "approval-rules",
                "{required: 2, excludeDeployer: true, verifiedOnly: true}",
            ),
            hook(
                "freeze-windows",
                "approval-rules",
                &format!("{{required: 0, {ENDED_FREEZE}}}"),
            ),
        ]
        .concat();
        let deny = [
            hook("required-labels", "required-labels", LABELS),
            hook("same-image-across-envs", "same-image-across-envs", "{}"),
            hook(
                "approval-rules",
                "approval-rules",
                &format!("{{required: 0, excludeDeployer: true, {ENDED_FREEZE}}}"),
            ),
        ]
        .concat();
        let empty = ["first", "second", "third"]
            .map(|name| hook(name, EMPTY_MODULE, "{}"))
            .concat();
        Policies { allow, deny, empty }
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
    println!("  loadavg         {}", loadavg());
    println!();

    // The governed namespace, its Deployment, two verified approvals of the new digest, and the
    // policies' modules.
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
    setup_approvals_rbac(env).await;
    let approvals = create_approvals(&client, &namespace).await?;
    let mut modules = Vec::new();
    for name in MODULES {
        let (module, _) = example_hook(name);
        let pinned =
            push_hook_module(env, &module, &format!("policies/bench-webhook/{name}")).await;
        modules.push((name, pinned));
    }
    let empty = tempfile::Builder::new().suffix(".wasm").tempfile()?;
    std::fs::write(empty.path(), wat::parse_str(EMPTY_HOOK)?)?;
    let pinned = push_hook_module(env, empty.path(), "policies/bench-webhook/empty").await;
    modules.push((EMPTY_MODULE, pinned));
    let policies = Policies::new(&modules, &namespace);
    let review = review_body(&namespace, &web, &image_a, &image_b)?;
    write_cluster_policy(env, &policies.allow).await;
    let webhook = Server::start(env, plugin).await?;
    webhook.await_policy(3, &review, Verdict::Allowed).await?;
    println!(
        "== set up in {:.1?}: namespace {namespace}, webhook on {}; each review {} bytes",
        setup.elapsed(),
        webhook.https,
        review.len()
    );

    // 1. Direct reviews: the allow policy, the deny policy, none.
    println!(
        "== direct: POST /workloads, Deployment UPDATE of a pinned image (after {in_flight} warm-up reviews each)"
    );
    let warmup = in_flight.min(requests);
    let mut direct = Vec::new();
    for (label, policy, hooks, verdict) in [
        ("allow, 3 Rust hooks", &policies.allow, 3, Verdict::Allowed),
        (
            "deny, 3 Rust hooks",
            &policies.deny,
            3,
            Verdict::DeniedBySameImage,
        ),
        ("allow, 3 empty hooks", &policies.empty, 3, Verdict::Allowed),
        ("no-op (empty policy)", &String::new(), 0, Verdict::Allowed),
    ] {
        write_cluster_policy(env, policy).await;
        webhook.await_policy(hooks, &review, verdict).await?;
        webhook.load(&review, warmup, in_flight, verdict).await?;
        let before = webhook.cpu()?;
        let load = webhook.load(&review, requests, in_flight, verdict).await?;
        let cpu = webhook.cpu()?.since(&before);
        let percentiles = Percentiles::of(&load.samples);
        percentiles.print(label);
        load.print();
        cpu.print(requests);
        direct.push(percentiles);
    }
    let [allow, deny, empty, noop] =
        <[Percentiles; 4]>::try_from(direct).map_err(|_| anyhow::anyhow!("four direct runs"))?;
    for (label, measured) in [("allow", &allow), ("deny", &deny), ("empty hooks", &empty)] {
        println!(
            "  {label} - no-op: p50 {:+.2} ms  p90 {:+.2} ms  p99 {:+.2} ms  max {:+.2} ms",
            measured.p50 - noop.p50,
            measured.p90 - noop.p90,
            measured.p99 - noop.p99,
            measured.max - noop.max,
        );
    }
    println!("  loadavg {}", loadavg());
    println!();

    // 2. Through the API server: allow policy, deny policy, not registered.
    let api: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
    write_cluster_policy(env, &policies.allow).await;
    webhook.await_policy(3, &review, Verdict::Allowed).await?;
    let manifests = webhook.register(env).await?;
    webhook.await_consulted(&api, &image_b).await?;
    let mut through = Vec::new();
    for (policy, verdict) in [
        (&policies.allow, Verdict::Allowed),
        (&policies.deny, Verdict::DeniedBySameImage),
    ] {
        write_cluster_policy(env, policy).await;
        webhook.await_policy(3, &review, verdict).await?;
        let reviews_before = webhook.workload_reviews().await?;
        let samples = dry_runs(&api, &image_b, applies, verdict).await?;
        let consulted = webhook.workload_reviews().await? - reviews_before;
        ensure!(
            consulted >= (applies + 5) as f64,
            "the webhook judged {consulted} of {} dry runs",
            applies + 5
        );
        through.push(Percentiles::of(&samples));
    }
    let path = manifests.path().to_str().context("a UTF-8 temp path")?;
    env.kubectl(&["delete", "-f", path]).await.assert_success();
    webhook.await_not_consulted(&api, &image_b).await?;
    let reviews_before = webhook.workload_reviews().await?;
    let unregistered = dry_runs(&api, &image_b, applies, Verdict::Allowed).await?;
    let consulted = webhook.workload_reviews().await? - reviews_before;
    ensure!(
        consulted == 0.0,
        "the webhook judged {consulted} dry runs after it was unregistered"
    );
    let [with_allow, with_deny] = <[Percentiles; 2]>::try_from(through)
        .map_err(|_| anyhow::anyhow!("two registered runs"))?;
    let without = Percentiles::of(&unregistered);
    println!(
        "== API server: server-side dry-run patch of the Deployment's image (N={applies}, sequential)"
    );
    with_allow.print("registered, allow");
    with_deny.print("registered, deny");
    without.print("not registered");
    println!(
        "  added by the webhook: p50 {:+.2} ms allowed, {:+.2} ms denied",
        with_allow.p50 - without.p50,
        with_deny.p50 - without.p50,
    );
    println!("  loadavg {}", loadavg());
    println!();

    let goal = |ok: bool| if ok { "met" } else { "NOT met" };
    println!("== summary (milliseconds; one run, same control plane and webhook process)");
    for (label, measured) in [
        ("allow, 3 Rust hooks", &allow),
        ("deny, 3 Rust hooks", &deny),
        ("allow, 3 empty hooks", &empty),
        ("no-op (no hooks)", &noop),
    ] {
        println!(
            "webhook direct, {label:<20} (N={requests}, {in_flight} in flight): p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
            measured.p50, measured.p90, measured.p99, measured.max
        );
    }
    println!(
        "  goal p99 <= 5 ms with three Rust hooks: allow path {}, deny path {}",
        goal(allow.p99 <= 5.0),
        goal(deny.p99 <= 5.0)
    );
    for (label, measured) in [("allow", &with_allow), ("deny ", &with_deny)] {
        let added = measured.p50 - without.p50;
        println!(
            "API server dry-run patch (N={applies}), {label}: p50 {:.2}  p90 {:.2}  p99 {:.2} registered; {:.2} not; added {added:+.2}; goal <= 10 ms added: {}",
            measured.p50,
            measured.p90,
            measured.p99,
            without.p50,
            goal(added <= 10.0)
        );
    }
    println!("rerun: {RERUN}");
    drop(webhook);
    delete_approvals(&client, &approvals).await;
    Ok(())
}

/// One load run: each review's latency and how long the whole run took.
struct Load {
    samples: Vec<Duration>,
    wall: Duration,
}

impl Load {
    /// Throughput, and how many reviews were outstanding on average (Little's law: the sum of
    /// the latencies over the run's duration), which says whether the load was what it claims.
    fn print(&self) {
        let wall = self.wall.as_secs_f64();
        let busy: f64 = self.samples.iter().map(Duration::as_secs_f64).sum();
        println!(
            "                         {:.0} reviews/s, {:.1} in flight on average over {:.0} ms",
            self.samples.len() as f64 / wall,
            busy / wall,
            wall * 1000.0
        );
    }
}

/// `/proc/loadavg`'s first three fields: how busy the machine was.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// Two verified approvals of the new digest for the app in `namespace` (its environment), by
/// people other than the requester, as the webhook stamps them. Their names, to delete them.
async fn create_approvals(client: &kube::Client, namespace: &str) -> Result<Vec<String>> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), APPROVALS_NAMESPACE);
    let now = jiff::Timestamp::now();
    let mut names = Vec::new();
    for user in APPROVERS {
        let approval = json!({
            "user": user,
            "environment": namespace,
            "commit": "bench",
            "digests": [DIGEST_B],
            "approvedAt": (now - jiff::SignedDuration::from_mins(1)).to_string(),
            "expiresAt": (now + jiff::SignedDuration::from_hours(24)).to_string(),
            "verified": true,
            "groups": ["approvers", "system:authenticated"],
        });
        let name = format!("{namespace}.{user}");
        let cm: ConfigMap = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {
                "name": name,
                "labels": {
                    "app.kubernetes.io/managed-by": "kubectl-release",
                    APPROVAL_LABEL: "true",
                    "kubectl-release.io/app": APP,
                    "kubectl-release.io/environment": namespace,
                },
            },
            "data": {"approval.json": approval.to_string()},
        }))?;
        api.create(&PostParams::default(), &cm)
            .await
            .with_context(|| format!("create approval {name}"))?;
        names.push(name);
    }
    Ok(names)
}

async fn delete_approvals(client: &kube::Client, names: &[String]) {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), APPROVALS_NAMESPACE);
    for name in names {
        if let Err(e) = api.delete(name, &DeleteParams::default()).await {
            eprintln!("could not delete approval {name}: {e}");
        }
    }
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

/// One server-side dry-run patch of the image, timed; `Ok(true)` when admitted, `Ok(false)`
/// when the webhook refused it through `same-image-across-envs`.
async fn dry_run(api: &Api<Deployment>, image: &str) -> Result<(Duration, bool)> {
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
        Ok(_) => Ok((took, true)),
        Err(kube::Error::Api(s)) if s.message.contains("same-image-across-envs") => {
            Ok((took, false))
        }
        Err(e) => Err(e).context("a dry-run patch"),
    }
}

/// Five warm-up dry runs, then `n` timed ones; each must get `expect`.
async fn dry_runs(
    api: &Api<Deployment>,
    image: &str,
    n: usize,
    expect: Verdict,
) -> Result<Vec<Duration>> {
    let mut samples = Vec::with_capacity(n);
    for i in 0..n + 5 {
        let (took, allowed) = dry_run(api, image).await?;
        ensure!(
            allowed == matches!(expect, Verdict::Allowed),
            "dry run {i}: expected {expect:?}, allowed: {allowed}"
        );
        if i >= 5 {
            samples.push(took);
        }
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
            // The plugin's own info lines (the bench waits for "webhook serving"), everything
            // else at warn as in plugin/deploy/webhook.yaml: with `-v`, wasmtime-wasi opens an
            // info span on every WASI call of every hook run (about 4% of the webhook's CPU).
            .env("RUST_LOG", "kubectl_release=info,warn")
            .args(["--context", "admin", "webhook", "serve"])
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
    ) -> Result<Load> {
        // Every connection is open (its TLS handshake done) before any review is sent, and all
        // tasks start together: otherwise the handshakes stagger them and far fewer than
        // `in_flight` reviews are ever outstanding at once.
        let mut senders = Vec::with_capacity(in_flight);
        for slot in 0..in_flight {
            let count = requests / in_flight + usize::from(slot < requests % in_flight);
            if count > 0 {
                senders.push((count, self.connect().await?));
            }
        }
        let start = Arc::new(tokio::sync::Barrier::new(senders.len() + 1));
        let mut tasks = tokio::task::JoinSet::new();
        for (count, mut sender) in senders {
            let review = review.clone();
            let start = start.clone();
            tasks.spawn(async move {
                sender.ready().await?;
                start.wait().await;
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
        start.wait().await;
        let started = Instant::now();
        let mut samples = Vec::with_capacity(requests);
        while let Some(done) = tasks.join_next().await {
            samples.extend(done??);
        }
        Ok(Load {
            samples,
            wall: started.elapsed(),
        })
    }

    /// The CPU time used so far by the webhook process and by this one (the client).
    fn cpu(&self) -> Result<Cpu> {
        let pid = self.process.id().context("the webhook has exited")?;
        Ok(Cpu {
            webhook: cpu_time(&format!("/proc/{pid}/stat"))?,
            client: cpu_time("/proc/self/stat")?,
        })
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

    /// Waits until the webhook has loaded a policy of `hooks` admission hooks and answers
    /// `review` with `verdict` (two policies of three hooks differ only in their answers).
    async fn await_policy(&self, hooks: usize, review: &Bytes, verdict: Verdict) -> Result<()> {
        let started = Instant::now();
        loop {
            let text = self.metrics_text().await?;
            if metric(&text, POLICY_HOOKS) == hooks as f64
                && self.load(review, 1, 1, verdict).await.is_ok()
            {
                return Ok(());
            }
            if started.elapsed() > PICKED_UP {
                bail!(
                    "the webhook never loaded the policy of {hooks} hooks answering {verdict:?}; stderr:\n{}",
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
    /// The allow policy, or no hooks: allowed.
    Allowed,
    /// The deny policy: `required-labels` and `approval-rules` pass; `same-image-across-envs`
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

/// CPU time (user + system, all threads) of the webhook and of the bench's own process.
struct Cpu {
    webhook: Duration,
    client: Duration,
}

impl Cpu {
    fn since(&self, before: &Cpu) -> Cpu {
        Cpu {
            webhook: self.webhook.saturating_sub(before.webhook),
            client: self.client.saturating_sub(before.client),
        }
    }

    /// Per review: what the cores spend, which is what 50 reviews in flight on 2 cores wait for.
    /// The kernel counts in clock ticks, so over N reviews each figure is within one tick / N.
    fn print(&self, reviews: usize) {
        let per = |d: Duration| d.as_secs_f64() * 1e6 / reviews.max(1) as f64;
        println!(
            "  {:<22} CPU per review: webhook {:.0} µs, client {:.0} µs (±{:.0} µs: one clock tick over N)",
            "",
            per(self.webhook),
            per(self.client),
            per(tick()),
        );
    }
}

/// The kernel's clock tick, the unit of `/proc/PID/stat`'s CPU times.
fn tick() -> Duration {
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|hz| *hz > 0)
        .unwrap_or(100);
    Duration::from_secs(1) / u32::try_from(hz).unwrap_or(100)
}

/// utime + stime of the process whose `stat` file is `path`.
fn cpu_time(path: &str) -> Result<Duration> {
    let stat = std::fs::read_to_string(path).with_context(|| format!("read {path}"))?;
    // The command name (field 2) may hold spaces; the fields after it are plain numbers.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // utime and stime are fields 14 and 15; `fields` starts at field 3.
    let ticks = |i: usize| -> Result<u32> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .with_context(|| format!("{path}: no CPU time in field {}", i + 3))
    };
    Ok(tick() * (ticks(11)? + ticks(12)?))
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
