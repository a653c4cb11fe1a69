//! Promotion at scale: `kubectl-release promote qa --all` over hundreds of apps, against what the
//! control plane itself needs to roll the same images out, on one control plane in one run.
//!
//! Not a test: it prints figures. The setup (not timed): `BENCH_APPS` apps (default 300), each
//! with its own image repository in the test registry holding two commits A and B, its own qa
//! and production namespaces (so 2 × N namespaces) with one Deployment `web` (1 replica, labels
//! `team`/`owner` on the object and the pod template) running B in qa and A in production, and
//! its own release.yaml in `ROOT/services/<app>/` with the hooks `required-labels` and
//! `same-image-across-envs` (from `target/hooks/`, built by `example-hooks/build.sh`).
//!
//! 1. For each `BENCH_CONCURRENCY` value C: production reset to A (not timed), then
//!    `kubectl-release promote qa --all -f ROOT --concurrency C -o json` is timed from start to
//!    exit, under GNU time (`/usr/bin/time`) for its peak RSS and CPU time; its threads and RSS
//!    are also sampled from `/proc` every 100 ms.
//! 2. Baseline, after production is reset to A again: `kubectl set image deployment/web
//!    web=<repo>@<digest B>` for every app, `BENCH_KUBECTL_PARALLEL` (32) at a time, then waiting
//!    for every rollout — by one watch on all the Deployments (default; the cheapest possible
//!    waiter, so the strictest baseline) or `BENCH_BASELINE_WAIT=kubectl` for `kubectl rollout
//!    status` per Deployment, also 32 at a time. Timed from the first `set image` until the
//!    last Deployment has rolled out.
//!
//! Requests are counted three ways (the output says which number is which):
//! - the plugin's own: its client logs one `requesting` debug event per HTTP request (target
//!   `kubectl_release::cluster::clients`, below the retry layer so retries count too); the plugin
//!   runs with that target at debug and its stderr is parsed by method and URL.
//!   The same log's timestamps give each app's timeline (first source read → PATCH → record
//!   written → lock deleted).
//! - kubectl's own in the baseline: `-v=6` logs one line per request.
//! - everything the API server served meanwhile: `apiserver_request_total` from `/metrics`
//!   before and after (a request counts when it ends, so open controller watches do not), minus
//!   the idle rate (controllers, fake kubelet heartbeats) scaled to the run's length. The idle
//!   rate is measured over `BENCH_IDLE_SECS` after setup and again at the end; the summary
//!   subtracts the lower one (right after a big setup the controllers may still be catching up)
//!   and also shows the uncorrected figures. This includes the controllers' and the fake
//!   kubelet's work for the rollouts, which is the same for both sides.
//!
//! ```sh
//! cargo build --release -p kubectl-release          # the binary measured ($KUBECTL_RELEASE_BIN)
//! cargo build -p kubectl-release-tests --bins       # fake-kubelet
//! example-hooks/build.sh                            # target/hooks/*.wasm
//! cargo bench -p kubectl-release-tests --bench promote_scale --profile dev
//! bash tests/bench-promote-scale.sh [APPS] [CONCURRENCY,...]   # the same, building what it needs
//! ```
//!
//! Environment: `BENCH_APPS` (300), `BENCH_CONCURRENCY` (16; a comma-separated list runs the
//! plugin once per value), `BENCH_SETUP_CONCURRENCY` (32), `BENCH_KUBECTL_PARALLEL` (32),
//! `BENCH_BASELINE_WAIT` (`watch` | `kubectl`), `BENCH_IDLE_SECS` (15), `BENCH_HOOKS` (1; 0 leaves
//! the hooks out of release.yaml, to see what they cost), `BENCH_KINDS` (unset: no
//! `workloads.kinds`, every kind listed; `Deployment` writes `workloads: {kinds: [Deployment]}`),
//! `BENCH_PLUGIN_LOG=DIR` (keeps the plugin's stderr), `BENCH_PLUGIN_RUST_LOG` (replaces the plugin's log filter; the
//! request count needs `kubectl_release::cluster::clients=debug` in it), `KUBECTL_RELEASE_BIN`,
//! `KUBECTL`, `FAKE_NODES` (default: enough nodes of 500 pods for 3 pods per app).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::str::FromStr as _;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use futures::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Patch, PatchParams};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt as _};
use kubectl_release_tests::{
    CmdOutput, TestEnv, apply, deployment, deployment_rolled_out, hook_entry, push_image, run,
};
use serde_json::Value;
use sha2::Digest as _;

const RERUN: &str = "cargo build --release -p kubectl-release && cargo bench -p kubectl-release-tests --bench promote_scale --profile dev";
/// Label on every Deployment of the benchmark (and its pods), and the environment label.
const BENCH_LABEL: &str = "kubectl-release.io/bench";
const ENV_LABEL: &str = "kubectl-release.io/bench-env";
/// Pods a fake node takes (tests/src/kubelet/node.rs), less some room.
const PODS_PER_NODE: usize = 450;
/// The plugin's log filter: warnings as usual, plus one line per HTTP request and hook loads.
const PLUGIN_RUST_LOG: &str = "warn,kube_client=error,kubectl_release::cluster::clients=debug,kubectl_release::hooks::engine=debug";
const SETTLE: Duration = Duration::from_secs(3);

fn main() -> Result<()> {
    if !std::env::args().any(|a| a == "--bench") {
        println!("promote_scale: a benchmark; run it with `{RERUN}`");
        return Ok(());
    }
    let cfg = BenchConfig::from_env()?;

    // Each app has 2 pods, 3 while production rolls; a fake node takes 500. The environment
    // reads FAKE_NODES from our environment, which safe Rust cannot change for ourselves: run
    // again with it set.
    if std::env::var_os("FAKE_NODES").is_none() {
        let nodes = (cfg.apps * 3 + 20).div_ceil(PODS_PER_NODE);
        if nodes > 1 {
            let status = std::process::Command::new(std::env::current_exe()?)
                .args(std::env::args_os().skip(1))
                .env("FAKE_NODES", nodes.to_string())
                .status()
                .context("cannot run the benchmark again with FAKE_NODES set")?;
            std::process::exit(status.code().unwrap_or(1));
        }
    }
    let tools = Tools::find()?;
    // Fail before starting anything when the hooks are not built.
    if cfg.hooks {
        let _ = hook_entry("labels", "required-labels", "");
        let _ = hook_entry("same-image", "same-image-across-envs", "");
    }

    let env = TestEnv::shared();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(bench(env, &tools, &cfg))
}

#[derive(Debug, Clone)]
struct BenchConfig {
    apps: usize,
    concurrency: Vec<u16>,
    setup_concurrency: usize,
    kubectl_parallel: usize,
    baseline_wait: BaselineWait,
    idle: Duration,
    /// Whether the release.yaml files configure the two hooks.
    hooks: bool,
    /// `workloads.kinds` in the release.yaml files (`BENCH_KINDS`, comma-separated); empty
    /// leaves it out, so every release lists all four workload kinds.
    kinds: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BaselineWait {
    Watch,
    Kubectl,
}

fn env_num<T: std::str::FromStr>(name: &str, default: T) -> Result<T> {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .map_err(|_| anyhow::anyhow!("{name}={v} is not a number")),
        Err(_) => Ok(default),
    }
}

impl BenchConfig {
    fn from_env() -> Result<BenchConfig> {
        let concurrency = std::env::var("BENCH_CONCURRENCY").unwrap_or_else(|_| "16".into());
        let concurrency = concurrency
            .split(',')
            .map(|c| {
                c.trim()
                    .parse::<u16>()
                    .ok()
                    .filter(|&c| c > 0)
                    .with_context(|| format!("BENCH_CONCURRENCY: {c:?} is not a positive number"))
            })
            .collect::<Result<Vec<_>>>()?;
        let baseline_wait = match std::env::var("BENCH_BASELINE_WAIT").as_deref() {
            Err(_) | Ok("watch") => BaselineWait::Watch,
            Ok("kubectl") => BaselineWait::Kubectl,
            Ok(other) => bail!("BENCH_BASELINE_WAIT={other}: use watch or kubectl"),
        };
        let cfg = BenchConfig {
            apps: env_num("BENCH_APPS", 300)?,
            concurrency,
            setup_concurrency: env_num("BENCH_SETUP_CONCURRENCY", 32)?,
            kubectl_parallel: env_num("BENCH_KUBECTL_PARALLEL", 32)?,
            baseline_wait,
            idle: Duration::from_secs(env_num("BENCH_IDLE_SECS", 15)?),
            hooks: env_num("BENCH_HOOKS", 1u8)? != 0,
            kinds: std::env::var("BENCH_KINDS")
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .map(String::from)
                .collect(),
        };
        ensure!(
            cfg.apps >= 1 && cfg.setup_concurrency >= 1 && cfg.kubectl_parallel >= 1,
            "BENCH_APPS and the parallelism knobs must be at least 1"
        );
        Ok(cfg)
    }
}

/// The binaries under test.
struct Tools {
    plugin: PathBuf,
    kubectl: PathBuf,
    /// GNU time, for the plugin's peak RSS.
    time: Option<PathBuf>,
    log_dir: Option<PathBuf>,
    rust_log: String,
}

impl Tools {
    fn find() -> Result<Tools> {
        let plugin = kubectl_release_tests::bench::measured_plugin()?;
        let kubectl = kubectl_release_tests::bench::kubectl_bin()?;
        let time = Some(PathBuf::from("/usr/bin/time")).filter(|p| p.is_file());
        let log_dir = std::env::var_os("BENCH_PLUGIN_LOG").map(PathBuf::from);
        if let Some(dir) = &log_dir {
            std::fs::create_dir_all(dir)?;
        }
        let rust_log =
            std::env::var("BENCH_PLUGIN_RUST_LOG").unwrap_or_else(|_| PLUGIN_RUST_LOG.into());
        Ok(Tools {
            plugin,
            kubectl,
            time,
            log_dir,
            rust_log,
        })
    }

    fn describe(&self) -> String {
        kubectl_release_tests::bench::describe_binary(&self.plugin)
    }
}

/// One app of the benchmark.
#[derive(Debug, Clone)]
struct BenchApp {
    name: String,
    /// `<registry>/<repository>`.
    image: String,
    qa: String,
    production: String,
    /// `<image>@<digest>` of commits A (production) and B (qa).
    pinned_a: String,
    pinned_b: String,
}

/// A fake 40-hex commit, as CI would tag images with.
fn commit(app: &str, which: &str) -> String {
    hex::encode(sha2::Sha256::digest(format!("{app}/{which}").as_bytes()))[..40].to_string()
}

async fn bench(env: &'static TestEnv, tools: &Tools, cfg: &BenchConfig) -> Result<()> {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kubectl_version =
        run(tokio::process::Command::new(&tools.kubectl).args(["version", "--client"])).await;
    let nodes = std::env::var("FAKE_NODES").unwrap_or_else(|_| "1".into());
    println!(
        "promote at scale: kubectl-release promote qa --all vs kubectl set image on every Deployment"
    );
    println!(
        "  control plane   {} (v1.20.2, {nodes} fake node(s), pods ready 1 s after start), up in {:.1?}",
        env.apiserver(),
        env.started_in()
    );
    println!("  kubectl-release {}", tools.describe());
    println!(
        "  kubectl         {} ({})",
        tools.kubectl.display(),
        kubectl_version.stdout.lines().next().unwrap_or("?")
    );
    println!(
        "  apps            {} (BENCH_APPS): {} namespaces, {} Deployments x1 replica; plugin --concurrency {:?} (BENCH_CONCURRENCY); {cpus} CPUs",
        cfg.apps,
        cfg.apps * 2,
        cfg.apps * 2,
        cfg.concurrency
    );
    if !cfg.hooks {
        println!(
            "  hooks           NONE (BENCH_HOOKS=0): the release.yaml files configure no hooks"
        );
    }
    match cfg.kinds.as_slice() {
        [] => println!(
            "  workloads       every kind (no `workloads.kinds`; BENCH_KINDS=Deployment narrows it)"
        ),
        kinds => println!(
            "  workloads       kinds: [{}] (BENCH_KINDS): one list per kind per environment read",
            kinds.join(", ")
        ),
    }
    if tools.time.is_none() {
        println!("  (no /usr/bin/time: peak RSS not measured; `apt-get install -y time`)");
    }
    println!();

    let admin = env.client("admin").await;
    let root = tempfile::Builder::new()
        .prefix("promote-scale-")
        .tempdir()?;
    let apps = setup(env, &admin, cfg, root.path()).await?;
    // Warm kubectl's discovery cache, as a user's would be, so the baseline is not charged for it.
    env.kubectl(&["api-resources", "-o", "name"])
        .await
        .assert_success();

    // What the cluster asks of itself with nothing going on (again at the end: right after a
    // big setup the controllers may still be catching up, which would inflate this one).
    tokio::time::sleep(SETTLE).await;
    let idle_rate = measure_idle(env, cfg.idle).await?;
    println!(
        "  idle: the API server served {idle_rate:.1} requests/s over {} s with nothing going on (controllers, fake kubelet); subtracted below",
        cfg.idle.as_secs()
    );
    println!();

    let mut runs = Vec::new();
    for (i, &concurrency) in cfg.concurrency.iter().enumerate() {
        if i > 0 {
            reset_production(&admin, &apps, cfg).await?;
        }
        tokio::time::sleep(SETTLE).await;
        runs.push(
            promote_all(
                env,
                tools,
                &admin,
                &apps,
                root.path(),
                concurrency,
                idle_rate,
            )
            .await?,
        );
    }

    reset_production(&admin, &apps, cfg).await?;
    tokio::time::sleep(SETTLE).await;
    let baseline = baseline(env, tools, &admin, &apps, cfg, idle_rate).await?;
    tokio::time::sleep(SETTLE).await;
    let idle_end = measure_idle(env, cfg.idle).await?;
    // The lower of the two is the better estimate of steady background traffic.
    let idle = idle_rate.min(idle_end);
    let corrected = |raw: f64, measured: Duration| raw - idle * measured.as_secs_f64();

    let n = apps.len() as f64;
    println!(
        "== summary ({} apps, one Deployment x1 each, qa → production; same control plane, same run)",
        apps.len()
    );
    for r in &runs {
        let rss = r
            .max_rss_kb
            .map_or("n/a".into(), |kb| format!("{:.1} MB", kb as f64 / 1024.0));
        println!(
            "promote --all --concurrency {:<3}: {:>7.1} s wall; baseline {:.1} s; ratio {:.2} (goal <= 1.05); peak RSS {rss} (goal <= 60 MB); CPU {}; \
             requests/workload: plugin's own {:.1}, API server total {:.1} (baseline total {:.1}, kubectl's own {:.1})",
            r.concurrency,
            r.wall.as_secs_f64(),
            baseline.wall.as_secs_f64(),
            r.wall.as_secs_f64() / baseline.wall.as_secs_f64(),
            r.cpu.map_or("n/a".into(), |c| format!("{c:.1} s")),
            r.own_requests as f64 / n,
            corrected(r.server_raw, r.measured) / n,
            corrected(baseline.server_raw, baseline.measured) / n,
            baseline.own_requests as f64 / n,
        );
    }
    println!(
        "baseline ({}): {:.1} s wall",
        match cfg.baseline_wait {
            BaselineWait::Watch => format!(
                "kubectl set image x{}, {} at a time, then one watch until every Deployment rolled out",
                apps.len(),
                cfg.kubectl_parallel
            ),
            BaselineWait::Kubectl => format!(
                "kubectl set image x{0}, then kubectl rollout status x{0}, {1} at a time",
                apps.len(),
                cfg.kubectl_parallel
            ),
        },
        baseline.wall.as_secs_f64()
    );
    println!(
        "requests: plugin's own = one kube-rs `requesting` debug line per HTTP request (retries included); kubectl's own = -v=6 lines;"
    );
    println!(
        "          API server total = apiserver_request_total delta minus {idle:.1}/s idle rate x duration (controllers + fake kubelet work included, same for both sides);"
    );
    println!(
        "          idle rate = the lower of {idle_rate:.1}/s (after setup) and {idle_end:.1}/s (at the end); uncorrected: plugin {}, baseline {:.1} per workload",
        runs.iter()
            .map(|r| format!("{:.1}", r.server_raw / n))
            .collect::<Vec<_>>()
            .join(" / "),
        baseline.server_raw / n
    );
    let kinds = match cfg.kinds.as_slice() {
        [] => String::new(),
        kinds => format!("BENCH_KINDS={} ", kinds.join(",")),
    };
    println!(
        "rerun: {kinds}BENCH_APPS={} BENCH_CONCURRENCY={} {RERUN}   (or: {kinds}bash tests/bench-promote-scale.sh {} {})",
        cfg.apps,
        cfg.concurrency
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(","),
        cfg.apps,
        cfg.concurrency
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(","),
    );
    drop(root);
    Ok(())
}

// --- setup ---------------------------------------------------------------------------------

async fn setup(
    env: &'static TestEnv,
    admin: &Client,
    cfg: &BenchConfig,
    root: &Path,
) -> Result<Vec<BenchApp>> {
    let started = Instant::now();
    let hooks = if cfg.hooks {
        format!(
            "hooks:\n{}{}",
            hook_entry(
                "labels",
                "required-labels",
                "environments: [production]\nsettings: {labels: {team: \"^[a-z-]+$\", owner: \".+\"}}"
            ),
            hook_entry(
                "same-image",
                "same-image-across-envs",
                "environments: [production]"
            ),
        )
    } else {
        String::new()
    };
    let workloads = match cfg.kinds.as_slice() {
        [] => String::new(),
        kinds => format!("workloads: {{kinds: [{}]}}\n", kinds.join(", ")),
    };
    let mut apps: Vec<BenchApp> = futures::stream::iter(0..cfg.apps)
        .map(|i| {
            let hooks = hooks.clone();
            let workloads = workloads.clone();
            async move {
                let name = format!("svc-{i:04}");
                let (qa_prefix, production_prefix) = (format!("ps{i:04}-qa"), format!("ps{i:04}-prod"));
                let (qa, production) = futures::join!(env.namespace(&qa_prefix), env.namespace(&production_prefix));
                let repository = format!("bench/{name}");
                let image = format!("{}/{repository}", env.registry());
                let digest_a = push_image(env.registry(), &repository, &commit(&name, "a")).await?;
                let digest_b = push_image(env.registry(), &repository, &commit(&name, "b")).await?;
                let app = BenchApp {
                    pinned_a: format!("{image}@{digest_a}"),
                    pinned_b: format!("{image}@{digest_b}"),
                    name,
                    image,
                    qa: qa.name().to_string(),
                    production: production.name().to_string(),
                };
                for (ns, pinned, env_name) in [(&app.qa, &app.pinned_b, "qa"), (&app.production, &app.pinned_a, "production")] {
                    let web = deployment("web")
                        .image(pinned)
                        .replicas(1)
                        .labels([("team", "payments"), ("owner", "bench"), (BENCH_LABEL, "promote-scale"), (ENV_LABEL, env_name)])
                        .build();
                    apply(admin, ns, &web).await.with_context(|| format!("create deployment web in {ns}"))?;
                }
                let config = format!(
                    "apiVersion: kubectl-release.io/v1alpha1\nkind: ReleaseConfig\napp: {name}\nimage: {image}\n{workloads}\
                     environments:\n  - name: qa\n    context: qa\n    namespace: {qa}\n  - name: production\n    context: production\n    namespace: {prod}\n    promoteFrom: qa\n{hooks}",
                    name = app.name,
                    image = app.image,
                    qa = app.qa,
                    prod = app.production,
                );
                let dir = root.join("services").join(&app.name);
                std::fs::create_dir_all(&dir)?;
                std::fs::write(dir.join("release.yaml"), config)?;
                Ok::<_, anyhow::Error>(app)
            }
        })
        .buffer_unordered(cfg.setup_concurrency)
        .try_collect()
        .await?;
    apps.sort_by(|a, b| a.name.cmp(&b.name));
    let created = started.elapsed();

    let mut want: HashMap<String, String> = HashMap::new();
    for app in &apps {
        want.insert(app.qa.clone(), app.pinned_b.clone());
        want.insert(app.production.clone(), app.pinned_a.clone());
    }
    let timeout = Duration::from_secs(120 + 2 * cfg.apps as u64);
    wait_rolled_out(
        admin,
        &format!("{BENCH_LABEL}=promote-scale"),
        &want,
        timeout,
    )
    .await
    .context("the benchmark's Deployments never all became available")?;
    println!(
        "== setup: {} apps ({} namespaces, {} images pushed, {} Deployments) created in {:.1?}, all available after {:.1?}; configs in {}",
        apps.len(),
        apps.len() * 2,
        apps.len() * 2,
        apps.len() * 2,
        created,
        started.elapsed(),
        root.display()
    );
    Ok(apps)
}

/// Waits until every Deployment the label `selector` picks is rolled out on the image `want`
/// says for its namespace. One watch, O(1) work per event: the harness's `wait_for_all` clones
/// every object on every event, which at hundreds of Deployments would cost the machine enough
/// CPU to slow down the very control plane being measured.
async fn wait_rolled_out(
    client: &Client,
    selector: &str,
    want: &HashMap<String, String>,
    timeout: Duration,
) -> Result<()> {
    let api: Api<Deployment> = Api::all(client.clone());
    let mut events = pin!(watcher(api, watcher::Config::default().labels(selector)));
    let mut done: HashMap<String, bool> = HashMap::new();
    let mut listing: HashMap<String, bool> = HashMap::new();
    let is_done = |d: &Deployment| {
        let image = d
            .spec
            .template
            .spec
            .as_ref()
            .and_then(|s| s.containers.first())
            .and_then(|c| c.image.as_deref());
        deployment_rolled_out(d)
            && image.is_some()
            && image
                == d.namespace()
                    .and_then(|ns| want.get(&ns))
                    .map(String::as_str)
    };
    let all_done = |done: &HashMap<String, bool>| want.keys().all(|ns| done.get(ns) == Some(&true));
    let watching = async {
        while let Some(event) = events.next().await {
            match event {
                Ok(watcher::Event::Init) => listing.clear(),
                Ok(watcher::Event::InitApply(d)) => {
                    listing.insert(d.namespace().unwrap_or_default(), is_done(&d));
                    continue;
                }
                Ok(watcher::Event::InitDone) => done = std::mem::take(&mut listing),
                Ok(watcher::Event::Apply(d)) => {
                    done.insert(d.namespace().unwrap_or_default(), is_done(&d));
                }
                Ok(watcher::Event::Delete(d)) => {
                    done.remove(&d.namespace().unwrap_or_default());
                }
                Err(e) => {
                    eprintln!("  (watch error, retrying: {e})");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            }
            if all_done(&done) {
                return;
            }
        }
    };
    if tokio::time::timeout(timeout, watching).await.is_err() {
        let pending: Vec<&String> = want
            .keys()
            .filter(|ns| done.get(*ns) != Some(&true))
            .take(10)
            .collect();
        bail!(
            "timed out after {timeout:?}; {} of {} Deployments not rolled out, e.g. in {pending:?}",
            want.keys()
                .filter(|ns| done.get(*ns) != Some(&true))
                .count(),
            want.len()
        );
    }
    Ok(())
}

/// Production back on commit A (not timed): patched concurrently, then waited for.
async fn reset_production(admin: &Client, apps: &[BenchApp], cfg: &BenchConfig) -> Result<()> {
    let started = Instant::now();
    futures::stream::iter(apps)
        .map(|app| async move {
            let api: Api<Deployment> = Api::namespaced(admin.clone(), &app.production);
            let patch = serde_json::json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": app.pinned_a}]}}}});
            api.patch("web", &PatchParams::default(), &Patch::Strategic(&patch)).await.with_context(|| format!("reset {}", app.production))
        })
        .buffer_unordered(cfg.setup_concurrency)
        .try_collect::<Vec<_>>()
        .await?;
    let want: HashMap<String, String> = apps
        .iter()
        .map(|a| (a.production.clone(), a.pinned_a.clone()))
        .collect();
    wait_rolled_out(
        admin,
        &format!("{ENV_LABEL}=production"),
        &want,
        Duration::from_secs(120 + 2 * apps.len() as u64),
    )
    .await
    .context("production never went back to commit A")?;
    println!(
        "  (production reset to commit A in {:.1?}, not timed)",
        started.elapsed()
    );
    Ok(())
}

// --- the plugin ----------------------------------------------------------------------------

struct PluginRun {
    concurrency: u16,
    wall: Duration,
    max_rss_kb: Option<u64>,
    cpu: Option<f64>,
    own_requests: usize,
    /// apiserver_request_total delta over `measured`, not corrected for idle traffic.
    server_raw: f64,
    measured: Duration,
}

async fn promote_all(
    env: &'static TestEnv,
    tools: &Tools,
    admin: &Client,
    apps: &[BenchApp],
    root: &Path,
    concurrency: u16,
    idle_rate: f64,
) -> Result<PluginRun> {
    let time_file = tempfile::NamedTempFile::new()?;
    let mut cmd = match &tools.time {
        Some(time) => {
            let mut cmd = tokio::process::Command::new(time);
            cmd.args(["-f", "%M %e %U %S", "-o"])
                .arg(time_file.path())
                .arg(&tools.plugin);
            cmd
        }
        None => tokio::process::Command::new(&tools.plugin),
    };
    let concurrency_arg = concurrency.to_string();
    cmd.args(["promote", "qa", "--all", "-f"])
        .arg(root)
        .args(["--concurrency", &concurrency_arg, "-o", "json"])
        .env("KUBECONFIG", env.kubeconfig())
        .env("NO_COLOR", "1")
        .env("RUST_LOG", &tools.rust_log)
        .kill_on_drop(true);

    let before = scrape(env).await?;
    let started_at = jiff::Timestamp::now();
    let started = Instant::now();
    let limit = Duration::from_secs(600 + 2 * apps.len() as u64);
    let (out, sampled) = tokio::time::timeout(limit, run_sampled(&mut cmd, tools.time.is_some()))
        .await
        .with_context(|| format!("the plugin did not finish within {limit:?}"))??;
    let wall = started.elapsed();
    let ended_at = jiff::Timestamp::now();
    // Watches count when they end: give the API server a moment to see the plugin's close.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = scrape(env).await?;
    let measured = wall + Duration::from_secs(1);
    let server_requests = total(&after) - total(&before) - idle_rate * measured.as_secs_f64();

    if let Some(dir) = &tools.log_dir {
        let path = dir.join(format!("promote-n{}-c{concurrency}.log", apps.len()));
        std::fs::write(&path, &out.stderr)?;
        println!("  (plugin stderr kept in {})", path.display());
    }
    let results: Value = serde_json::from_str(&out.stdout)
        .with_context(|| format!("the plugin's output is not JSON: {out}"))?;
    let results = results
        .as_array()
        .context("promote --all -o json is not a list")?;
    let failed: Vec<&Value> = results
        .iter()
        .filter(|r| r["exitCode"] != 0 || r["outcome"] != "succeeded")
        .collect();
    if results.len() != apps.len() || !failed.is_empty() || !out.success() {
        let first: Vec<String> = failed
            .iter()
            .take(5)
            .map(|r| format!("{} {}: {}", r["app"], r["outcome"], r["message"]))
            .collect();
        bail!(
            "promote --all: {} results for {} apps, {} not succeeded (exit {:?}); first: {first:#?}\nstderr tail:\n{}",
            results.len(),
            apps.len(),
            failed.len(),
            out.code(),
            tail(&out.stderr, 20)
        );
    }
    let want: HashMap<String, String> = apps
        .iter()
        .map(|a| (a.production.clone(), a.pinned_b.clone()))
        .collect();
    wait_rolled_out(
        admin,
        &format!("{ENV_LABEL}=production"),
        &want,
        Duration::from_secs(60),
    )
    .await
    .context("after promote --all, production does not run qa's digests")?;

    let (max_rss_kb, cpu) = read_time_file(time_file.path());
    let log = analyse_log(&out.stderr, apps, started_at, ended_at);
    let hooks = hook_times(results);

    println!(
        "== promote qa --all, {} apps, --concurrency {concurrency}: {:.1} s",
        apps.len(),
        wall.as_secs_f64()
    );
    println!(
        "  peak RSS {}, CPU {} (user+sys; the machine has {} CPUs shared with the control plane)",
        max_rss_kb.map_or("n/a".into(), |kb| format!("{:.1} MB", kb as f64 / 1024.0)),
        cpu.map_or("n/a".into(), |c| format!("{c:.1} s")),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "  sampled every 100 ms from /proc: at most {} threads, {:.1} MB RSS",
        sampled.threads,
        sampled.rss_kb as f64 / 1024.0
    );
    log.print(apps.len());
    println!(
        "  hooks: {} runs, {:.0} ms in total (sum of the reports' durationMs), longest {} ms",
        hooks.0, hooks.1, hooks.2
    );
    println!(
        "  API server: {:.0} requests beyond idle (rate after setup) during the run = {:.1} per workload (the plugin's {} plus the controllers' and the fake kubelet's for the rollouts)",
        server_requests,
        server_requests / apps.len() as f64,
        log.requests
    );
    print_top_delta(&before, &after, 8);
    println!();
    Ok(PluginRun {
        concurrency,
        wall,
        max_rss_kb,
        cpu,
        own_requests: log.requests,
        server_raw: total(&after) - total(&before),
        measured,
    })
}

/// What sampling `/proc/PID/status` saw of the plugin while it ran.
#[derive(Debug, Default, Clone, Copy)]
struct Sampled {
    threads: u64,
    rss_kb: u64,
}

/// Runs the command like the harness's `run`, sampling the plugin's threads and RSS meanwhile.
/// With `via_time` the command is GNU time and the plugin its child.
async fn run_sampled(
    cmd: &mut tokio::process::Command,
    via_time: bool,
) -> Result<(CmdOutput, Sampled)> {
    let std = cmd.as_std();
    let line = std::iter::once(std.get_program())
        .chain(std.get_args())
        .map(|s| s.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    let child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run `{line}`"))?;
    let pid = child.id().context("the child has no pid")?;
    let sampler = tokio::spawn(async move {
        let mut seen = Sampled::default();
        loop {
            let plugin = if via_time {
                std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
                    .ok()
                    .and_then(|c| {
                        c.split_whitespace()
                            .next()
                            .and_then(|p| p.parse::<u32>().ok())
                    })
            } else {
                Some(pid)
            };
            if !Path::new(&format!("/proc/{pid}")).exists() {
                return seen;
            }
            if let Some(status) =
                plugin.and_then(|p| std::fs::read_to_string(format!("/proc/{p}/status")).ok())
            {
                let value = |key: &str| {
                    status
                        .lines()
                        .find_map(|l| l.strip_prefix(key))
                        .and_then(|v| v.split_whitespace().next())
                        .and_then(|v| v.parse::<u64>().ok())
                };
                seen.threads = seen.threads.max(value("Threads:").unwrap_or(0));
                seen.rss_kb = seen.rss_kb.max(value("VmRSS:").unwrap_or(0));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let output = child
        .wait_with_output()
        .await
        .with_context(|| format!("cannot run `{line}`"))?;
    let sampled = sampler.await?;
    Ok((
        CmdOutput {
            command: line,
            status: output.status,
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        },
        sampled,
    ))
}

fn read_time_file(path: &Path) -> (Option<u64>, Option<f64>) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    // GNU time writes "Command exited with non-zero status N" first when it did.
    let Some(line) = text.lines().last() else {
        return (None, None);
    };
    let fields: Vec<&str> = line.split_whitespace().collect();
    if fields.len() != 4 {
        return (None, None);
    }
    let rss = fields[0].parse().ok();
    let cpu = fields[2]
        .parse::<f64>()
        .ok()
        .zip(fields[3].parse::<f64>().ok())
        .map(|(u, s)| u + s);
    (rss, cpu)
}

/// (runs, total ms, longest ms) of the hooks in the reports.
fn hook_times(results: &[Value]) -> (usize, f64, u64) {
    let durations: Vec<u64> = results
        .iter()
        .filter_map(|r| r["report"]["hooks"].as_array())
        .flatten()
        .filter_map(|h| h["durationMs"].as_u64())
        .collect();
    (
        durations.len(),
        durations.iter().sum::<u64>() as f64,
        durations.iter().copied().max().unwrap_or(0),
    )
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// What the plugin's debug log says: its requests and each app's timeline.
struct LogAnalysis {
    requests: usize,
    by_kind: BTreeMap<String, usize>,
    /// Requests in the apps' qa / production namespaces, and elsewhere (discovery, reviews,
    /// approvals).
    in_qa: usize,
    in_production: usize,
    elsewhere: usize,
    /// Per app, seconds: first qa request → PATCH, PATCH → record written, record → lock gone.
    prepare: Vec<f64>,
    rollout: Vec<f64>,
    finish: Vec<f64>,
    /// Process start → first request, last request → exit.
    startup: f64,
    shutdown: f64,
    hook_loads: Vec<f64>,
    hook_loads_cached: usize,
}

fn analyse_log(
    stderr: &str,
    apps: &[BenchApp],
    started: jiff::Timestamp,
    ended: jiff::Timestamp,
) -> LogAnalysis {
    let qa: HashMap<&str, usize> = apps
        .iter()
        .enumerate()
        .map(|(i, a)| (a.qa.as_str(), i))
        .collect();
    let production: HashMap<&str, usize> = apps
        .iter()
        .enumerate()
        .map(|(i, a)| (a.production.as_str(), i))
        .collect();
    let mut a = LogAnalysis {
        requests: 0,
        by_kind: BTreeMap::new(),
        in_qa: 0,
        in_production: 0,
        elsewhere: 0,
        prepare: Vec::new(),
        rollout: Vec::new(),
        finish: Vec::new(),
        startup: 0.0,
        shutdown: 0.0,
        hook_loads: Vec::new(),
        hook_loads_cached: 0,
    };
    // Per app: first request, PATCH of the Deployment, record created, lock deleted.
    let mut first: HashMap<usize, jiff::Timestamp> = HashMap::new();
    let mut patched: HashMap<usize, jiff::Timestamp> = HashMap::new();
    let mut recorded: HashMap<usize, jiff::Timestamp> = HashMap::new();
    let mut unlocked: HashMap<usize, jiff::Timestamp> = HashMap::new();
    let (mut earliest, mut latest): (Option<jiff::Timestamp>, Option<jiff::Timestamp>) =
        (None, None);

    for line in stderr.lines() {
        if line.contains("hook loaded") {
            if let Some(d) = field(line, "elapsed=").and_then(parse_debug_duration) {
                a.hook_loads.push(d);
            }
            if field(line, "from_cache=") == Some("true") {
                a.hook_loads_cached += 1;
            }
            continue;
        }
        if !line.contains(" requesting ") {
            continue;
        }
        let (Some(method), Some(url)) = (field(line, "http.method="), field(line, "http.url="))
        else {
            continue;
        };
        let at = line
            .split_whitespace()
            .next()
            .and_then(|t| jiff::Timestamp::from_str(t).ok());
        let req = classify(method, url);
        a.requests += 1;
        *a.by_kind
            .entry(format!("{} {}", req.verb, req.resource))
            .or_default() += 1;
        if let Some(at) = at {
            earliest = Some(earliest.map_or(at, |e| e.min(at)));
            latest = Some(latest.map_or(at, |l| l.max(at)));
        }
        let ns = req.namespace.as_deref().unwrap_or_default();
        if let Some(&i) = qa.get(ns) {
            a.in_qa += 1;
            if let Some(at) = at {
                first
                    .entry(i)
                    .and_modify(|t| *t = (*t).min(at))
                    .or_insert(at);
            }
        } else if let Some(&i) = production.get(ns) {
            a.in_production += 1;
            if let Some(at) = at {
                first
                    .entry(i)
                    .and_modify(|t| *t = (*t).min(at))
                    .or_insert(at);
                match (req.verb, req.resource.as_str()) {
                    ("PATCH", "deployments") => {
                        patched.insert(i, at);
                    }
                    ("CREATE", "configmaps") => {
                        recorded.insert(i, at);
                    }
                    ("DELETE", "leases") => {
                        unlocked.insert(i, at);
                    }
                    _ => {}
                }
            }
        } else {
            a.elsewhere += 1;
        }
    }
    let secs =
        |from: &jiff::Timestamp, to: &jiff::Timestamp| to.duration_since(*from).as_secs_f64();
    for i in 0..apps.len() {
        if let (Some(f), Some(p), Some(r), Some(u)) = (
            first.get(&i),
            patched.get(&i),
            recorded.get(&i),
            unlocked.get(&i),
        ) {
            a.prepare.push(secs(f, p));
            a.rollout.push(secs(p, r));
            a.finish.push(secs(r, u));
        }
    }
    if let (Some(e), Some(l)) = (earliest, latest) {
        a.startup = secs(&started, &e);
        a.shutdown = secs(&l, &ended);
    }
    a
}

impl LogAnalysis {
    fn print(&self, apps: usize) {
        let n = apps as f64;
        if self.requests == 0 {
            println!(
                "  plugin's own requests: none logged (BENCH_PLUGIN_RUST_LOG must enable kubectl_release::cluster::clients=debug)"
            );
            return;
        }
        println!(
            "  plugin's own requests: {} = {:.1} per workload ({:.1} in the qa namespace, {:.1} in production, {:.1} cluster-wide or elsewhere)",
            self.requests,
            self.requests as f64 / n,
            self.in_qa as f64 / n,
            self.in_production as f64 / n,
            self.elsewhere as f64 / n
        );
        let mut kinds: Vec<(&String, &usize)> = self.by_kind.iter().collect();
        kinds.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let listed: Vec<String> = kinds
            .iter()
            .map(|(k, c)| format!("{k} {:.1}", **c as f64 / n))
            .collect();
        println!("    per workload: {}", listed.join(", "));
        if !self.prepare.is_empty() {
            let sum = |v: &[f64]| v.iter().sum::<f64>();
            let total = sum(&self.prepare) + sum(&self.rollout) + sum(&self.finish);
            println!(
                "  per app ({} timelines from the log): prepare (first qa read → PATCH) median {:.2} s p95 {:.2} s | rollout (PATCH → record written) median {:.2} s p95 {:.2} s | finish (record → lock deleted) median {:.2} s",
                self.prepare.len(),
                percentile(&self.prepare, 0.5),
                percentile(&self.prepare, 0.95),
                percentile(&self.rollout, 0.5),
                percentile(&self.rollout, 0.95),
                percentile(&self.finish, 0.5),
            );
            println!(
                "    share of the apps' summed time: prepare {:.0} %, rollout wait {:.0} %, finish {:.0} %; process start → first request {:.2} s, last request → exit {:.2} s",
                100.0 * sum(&self.prepare) / total,
                100.0 * sum(&self.rollout) / total,
                100.0 * sum(&self.finish) / total,
                self.startup,
                self.shutdown
            );
        }
        if !self.hook_loads.is_empty() {
            println!(
                "  hook loads: {} ({} from the compiled-module cache), {:.2} s in total, median {:.1} ms",
                self.hook_loads.len(),
                self.hook_loads_cached,
                self.hook_loads.iter().sum::<f64>(),
                1000.0 * percentile(&self.hook_loads, 0.5)
            );
        }
    }
}

fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let i = ((v.len() - 1) as f64 * p).round() as usize;
    v[i]
}

/// `key=value` in a log line, up to the next space or closing brace.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let start = line.find(key)? + key.len();
    let rest = &line[start..];
    let end = rest.find([' ', '}']).unwrap_or(rest.len());
    Some(rest[..end].trim_matches('"'))
}

/// A `Duration`'s Debug form (`1.5ms`, `320µs`, `2.1s`, `15ns`) in seconds.
fn parse_debug_duration(text: &str) -> Option<f64> {
    let digits = text.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (value, unit) = text.split_at(digits);
    let value: f64 = value.parse().ok()?;
    let scale = match unit {
        "s" => 1.0,
        "ms" => 1e-3,
        "µs" | "us" => 1e-6,
        "ns" => 1e-9,
        _ => return None,
    };
    Some(value * scale)
}

/// A request as the API server sees it.
struct Request {
    verb: &'static str,
    resource: String,
    namespace: Option<String>,
}

fn classify(method: &str, url: &str) -> Request {
    let without_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let path_and_query = without_scheme
        .find('/')
        .map_or("", |i| &without_scheme[i..]);
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let rest: &[&str] = match segments.as_slice() {
        ["api", _version, rest @ ..] => rest,
        ["apis", _group, _version, rest @ ..] => rest,
        other => other,
    };
    let (namespace, resource, name) = match rest {
        [] => (None, format!("discovery {}", segments.join("/")), None),
        ["namespaces", ns, resource, rest @ ..] => (
            Some(ns.to_string()),
            resource.to_string(),
            rest.first().copied(),
        ),
        [resource, rest @ ..] => (None, resource.to_string(), rest.first().copied()),
    };
    let watch = query
        .split('&')
        .any(|p| p == "watch=true" || p == "watch=1");
    let verb = match (method, name.is_some()) {
        ("GET", _) if watch => "WATCH",
        ("GET", true) => "GET",
        ("GET", false) => "LIST",
        ("POST", _) => "CREATE",
        ("PATCH", _) => "PATCH",
        ("PUT", _) => "UPDATE",
        ("DELETE", _) => "DELETE",
        _ => "OTHER",
    };
    Request {
        verb,
        resource,
        namespace,
    }
}

// --- the baseline --------------------------------------------------------------------------

struct BaselineRun {
    wall: Duration,
    own_requests: usize,
    server_raw: f64,
    measured: Duration,
}

async fn baseline(
    env: &'static TestEnv,
    tools: &Tools,
    admin: &Client,
    apps: &[BenchApp],
    cfg: &BenchConfig,
    idle_rate: f64,
) -> Result<BaselineRun> {
    let want: HashMap<String, String> = apps
        .iter()
        .map(|a| (a.production.clone(), a.pinned_b.clone()))
        .collect();
    let before = scrape(env).await?;
    let started = Instant::now();
    let waiter = match cfg.baseline_wait {
        BaselineWait::Watch => {
            let (admin, want) = (admin.clone(), want.clone());
            let limit = Duration::from_secs(600 + 2 * apps.len() as u64);
            Some(tokio::spawn(async move {
                wait_rolled_out(&admin, &format!("{ENV_LABEL}=production"), &want, limit).await
            }))
        }
        BaselineWait::Kubectl => None,
    };
    let sets: Vec<CmdOutput> = futures::stream::iter(apps)
        .map(|app| {
            kubectl(
                tools,
                env,
                &app.production,
                vec![
                    "set".into(),
                    "image".into(),
                    "deployment/web".into(),
                    format!("web={}", app.pinned_b),
                ],
            )
        })
        .buffer_unordered(cfg.kubectl_parallel)
        .try_collect()
        .await?;
    let set_done = started.elapsed();
    let mut outputs = sets;
    match waiter {
        Some(waiter) => waiter
            .await?
            .context("the baseline's rollouts did not complete")?,
        None => {
            let statuses: Vec<CmdOutput> = futures::stream::iter(apps)
                .map(|app| {
                    kubectl(
                        tools,
                        env,
                        &app.production,
                        vec![
                            "rollout".into(),
                            "status".into(),
                            "deployment/web".into(),
                            "--timeout=10m".into(),
                        ],
                    )
                })
                .buffer_unordered(cfg.kubectl_parallel)
                .try_collect()
                .await?;
            outputs.extend(statuses);
        }
    }
    let wall = started.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = scrape(env).await?;
    let measured = wall + Duration::from_secs(1);
    let server_requests = total(&after) - total(&before) - idle_rate * measured.as_secs_f64();
    // Every rollout really is done (a no-op when the watch was the waiter).
    wait_rolled_out(
        admin,
        &format!("{ENV_LABEL}=production"),
        &want,
        Duration::from_secs(60),
    )
    .await?;
    let own_requests: usize = outputs.iter().map(|o| kubectl_requests(&o.stderr)).sum();

    let n = apps.len() as f64;
    println!(
        "== baseline, {} apps: kubectl set image ({} at a time), then {}: {:.1} s",
        apps.len(),
        cfg.kubectl_parallel,
        match cfg.baseline_wait {
            BaselineWait::Watch => "one watch until every Deployment rolled out".to_string(),
            BaselineWait::Kubectl => format!(
                "kubectl rollout status ({} at a time)",
                cfg.kubectl_parallel
            ),
        },
        wall.as_secs_f64()
    );
    println!(
        "  all set image calls done after {:.1} s",
        set_done.as_secs_f64()
    );
    println!(
        "  kubectl's own requests: {own_requests} = {:.1} per workload (-v=6 lines){}",
        own_requests as f64 / n,
        if cfg.baseline_wait == BaselineWait::Watch {
            "; the waiting watch adds 2 in all"
        } else {
            ""
        }
    );
    println!(
        "  API server: {server_requests:.0} requests beyond idle (rate after setup) during the run = {:.1} per workload",
        server_requests / n
    );
    print_top_delta(&before, &after, 8);
    println!();
    Ok(BaselineRun {
        wall,
        own_requests,
        server_raw: total(&after) - total(&before),
        measured,
    })
}

async fn kubectl(
    tools: &Tools,
    env: &TestEnv,
    namespace: &str,
    args: Vec<String>,
) -> Result<CmdOutput> {
    let mut cmd = tokio::process::Command::new(&tools.kubectl);
    cmd.arg("--kubeconfig")
        .arg(env.kubeconfig())
        .args(["--context", "admin", "-v=6", "-n", namespace])
        .args(args)
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(900), run(&mut cmd))
        .await
        .context("kubectl did not finish within 15 minutes")?;
    ensure!(out.success(), "kubectl failed: {out}");
    Ok(out)
}

/// Requests in kubectl's `-v=6` log: `"Response" verb="GET" url=…` (1.30+) or `GET https://… 200 OK`.
fn kubectl_requests(stderr: &str) -> usize {
    stderr
        .lines()
        .filter(|l| {
            l.contains("\"Response\" verb=")
                || ["GET", "POST", "PUT", "PATCH", "DELETE"]
                    .iter()
                    .any(|m| l.contains(&format!("] {m} http")))
        })
        .count()
}

// --- API server metrics --------------------------------------------------------------------

/// `apiserver_request_total`, summed over codes and scopes, by `VERB group/resource[/subresource]`.
async fn scrape(env: &TestEnv) -> Result<BTreeMap<String, f64>> {
    let out = env.kubectl(&["get", "--raw", "/metrics"]).await;
    ensure!(out.success(), "cannot read the API server's metrics: {out}");
    let mut counts = BTreeMap::new();
    for line in out.stdout.lines() {
        let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let Ok(value) = value.trim().parse::<f64>() else {
            continue;
        };
        let label = |name: &str| {
            labels
                .split(',')
                .find_map(|kv| {
                    kv.strip_prefix(name)?
                        .strip_prefix("=\"")?
                        .strip_suffix('"')
                })
                .unwrap_or_default()
                .to_string()
        };
        let (group, resource, sub) = (label("group"), label("resource"), label("subresource"));
        let mut key = format!(
            "{} {}",
            label("verb"),
            if group.is_empty() {
                resource
            } else {
                format!("{group}/{resource}")
            }
        );
        if !sub.is_empty() {
            key = format!("{key}/{sub}");
        }
        *counts.entry(key).or_default() += value;
    }
    Ok(counts)
}

/// Requests per second the API server serves while nothing is going on.
async fn measure_idle(env: &TestEnv, over: Duration) -> Result<f64> {
    let before = scrape(env).await?;
    tokio::time::sleep(over).await;
    let after = scrape(env).await?;
    Ok((total(&after) - total(&before)) / over.as_secs_f64().max(0.001))
}

fn total(counts: &BTreeMap<String, f64>) -> f64 {
    counts.values().sum()
}

fn print_top_delta(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>, top: usize) {
    let mut delta: Vec<(&String, f64)> = after
        .iter()
        .map(|(k, v)| (k, v - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, d)| *d > 0.0)
        .collect();
    delta.sort_by(|a, b| b.1.total_cmp(&a.1));
    let listed: Vec<String> = delta
        .iter()
        .take(top)
        .map(|(k, d)| format!("{k} {d:.0}"))
        .collect();
    println!("    largest (not idle-corrected): {}", listed.join(", "));
}
