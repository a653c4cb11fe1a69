//! Previews, side by side: `kubectl-release preview up --pr N` of an app of 5 objects, from
//! nothing, against what the control plane itself needs for the same result, `kubectl create
//! namespace X` + `kubectl apply --server-side -f DIR -n X` + `kubectl rollout status
//! deployment/web -n X`. Same control plane, same run (issue #16).
//!
//! Not a test: it prints medians, minimums and the ratio kubectl-release / kubectl of the
//! medians against the goal (≤ 1.2), then a summary block to paste into the README. What is timed
//! is the wall time of the command(s), from start to the rollout being complete, as a user (or
//! CI) waits for it. The methods take turns (which goes first alternates per round), so noise
//! from the shared machine hits both.
//!
//! The app: a Deployment `web` (2 replicas), its Service, a ConfigMap, a ServiceAccount and a
//! Secret in `kubernetes/qa/`, one commit; release.yaml has `previews: {from: qa}`. The image is
//! written unpinned, `<image>:latest`, and the plugin pins it to the commit's digest; kubectl gets
//! a plain directory with the very objects, the image pinned to the same digest. Every round
//! uses a fresh pull request number and a fresh kubectl namespace; after the round both are
//! deleted (`preview down --pr N`, `kubectl delete namespace X --wait`), not timed, so each round
//! starts from nothing on a cluster in the same state.
//!
//! ```sh
//! cargo build --release -p kubectl-release     # the binary measured ($KUBECTL_RELEASE_BIN)
//! cargo bench -p kubectl-release-tests --bench preview_vs_kubectl
//! bash tests/bench-preview.sh [ROUNDS]           # the same, building what it needs
//! ```
//!
//! Environment: `BENCH_ROUNDS` (default 7), `KUBECTL_RELEASE_BIN` (default: target/release,
//! else target/debug), `KUBECTL` (default /usr/bin/kubectl), `BENCH_PLUGIN_LOG=DIR` (keeps
//! every plugin run's stderr there; combine with `RUST_LOG` for timings of its phases).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace as CoreNamespace;
use kube::Api;
use kube::runtime::watcher;
use kubectl_release_tests::{App, CmdOutput, TestEnv, deployment_rolled_out, run, wait_for_all};
use tempfile::TempDir;

/// Upper bound of one command (the plugin's own rollout timeout is 5 minutes).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(300);
/// Pause between timed steps (not timed), so one method's tail does not land in the next one.
const SETTLE: Duration = Duration::from_millis(500);
/// Objects in the app's manifests: Deployment, Service, ConfigMap, ServiceAccount, Secret.
const OBJECTS: usize = 5;
const REPLICAS: u32 = 2;
/// The field manager of the kubectl side (the plugin has its own).
const FIELD_MANAGER: &str = "kubectl-bench";
/// The kubeconfig context both methods use (the admin on the test cluster).
const CONTEXT: &str = "qa";
/// The first pull request number; round r (0: the warm-up) previews PR `FIRST_PR + r`.
const FIRST_PR: usize = 100;
/// The issue's goal: kubectl-release / kubectl of the medians, at most.
const GOAL: f64 = 1.2;
const RERUN: &str = "cargo build --release -p kubectl-release && cargo bench -p kubectl-release-tests --bench preview_vs_kubectl";

fn main() -> Result<()> {
    // `cargo bench` passes --bench; `cargo test --benches` does not: then only say what this is,
    // rather than start a control plane for minutes.
    if !std::env::args().any(|a| a == "--bench") {
        println!("preview_vs_kubectl: a benchmark; run it with `{RERUN}`");
        return Ok(());
    }
    let rounds: usize = match std::env::var("BENCH_ROUNDS") {
        Ok(v) => v
            .parse()
            .with_context(|| format!("BENCH_ROUNDS={v} is not a number"))?,
        Err(_) => 7,
    };
    ensure!(rounds >= 1, "BENCH_ROUNDS must be at least 1");
    let tools = Tools::find()?;
    let load_at_start = loadavg();

    // Started outside the runtime: it blocks until the control plane is ready.
    let env = TestEnv::shared();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(bench(env, &tools, rounds, &load_at_start))
}

/// The binaries under comparison.
struct Tools {
    plugin: PathBuf,
    kubectl: PathBuf,
    log_dir: Option<PathBuf>,
}

impl Tools {
    fn find() -> Result<Tools> {
        let plugin = kubectl_release_tests::bench::measured_plugin()?;
        let kubectl = kubectl_release_tests::bench::kubectl_bin()?;
        let log_dir = std::env::var_os("BENCH_PLUGIN_LOG").map(PathBuf::from);
        if let Some(dir) = &log_dir {
            std::fs::create_dir_all(dir)?;
        }
        Ok(Tools {
            plugin,
            kubectl,
            log_dir,
        })
    }

    fn describe(&self) -> String {
        kubectl_release_tests::bench::describe_binary(&self.plugin)
    }
}

/// `/proc/loadavg` (1, 5 and 15 minute load, runnable/all tasks): the machine is shared.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg").map_or_else(
        |e| format!("? ({e})"),
        |s| s.split_whitespace().take(4).collect::<Vec<_>>().join(" "),
    )
}

/// One way of bringing the app up in a new namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Method {
    /// `kubectl-release preview up --pr N -o json`.
    Plugin,
    /// `kubectl create namespace X`, `kubectl apply --server-side -f DIR -n X`, `kubectl rollout
    /// status deployment/web -n X`, one after another.
    Kubectl,
}

impl Method {
    fn label(self) -> &'static str {
        match self {
            Method::Plugin => "kubectl-release preview up",
            Method::Kubectl => "kubectl create ns + apply + rollout",
        }
    }
}

/// The app, its commit, and the kubectl side's copy of what the commit deploys.
struct Bench {
    app: App,
    commit: String,
    /// The manifests as the plugin applies them (image pinned), for kubectl.
    dir: TempDir,
}

/// The manifests: a Deployment `web` on `image`, its Service, a ConfigMap, a ServiceAccount and
/// a Secret, one file each (no namespace: the plugin and `kubectl -n` set it).
fn manifests(image: &str) -> Vec<(&'static str, String)> {
    vec![
        (
            "deployment.yaml",
            format!(
                r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {{app: web}}
spec:
  replicas: {REPLICAS}
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      containers:
        - name: web
          image: {image}
          ports:
            - containerPort: 8080
              protocol: TCP
          envFrom:
            - configMapRef: {{name: web-config}}
            - secretRef: {{name: web-secret}}
"#
            ),
        ),
        (
            "service.yaml",
            r#"apiVersion: v1
kind: Service
metadata:
  name: web
  labels: {app: web}
spec:
  selector: {app: web}
  ports:
    # Kubernetes before 1.21 cannot server-side apply a port without its protocol.
    - port: 80
      targetPort: 8080
      protocol: TCP
"#
            .to_string(),
        ),
        (
            "configmap.yaml",
            r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: web-config
  labels: {app: web}
data:
  GREETING: "hello from a preview"
"#
            .to_string(),
        ),
        (
            "serviceaccount.yaml",
            r#"apiVersion: v1
kind: ServiceAccount
metadata:
  name: web
  labels: {app: web}
"#
            .to_string(),
        ),
        (
            "secret.yaml",
            r#"apiVersion: v1
kind: Secret
metadata:
  name: web-secret
  labels: {app: web}
type: Opaque
stringData:
  TOKEN: not-a-real-token
"#
            .to_string(),
        ),
    ]
}

async fn bench(
    env: &'static TestEnv,
    tools: &Tools,
    rounds: usize,
    load_at_start: &str,
) -> Result<()> {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kubectl_version =
        run(tokio::process::Command::new(&tools.kubectl).args(["version", "--client"])).await;
    println!(
        "preview benchmark: kubectl-release preview up vs kubectl create namespace + apply --server-side + rollout status"
    );
    println!(
        "  control plane   {} (v1.20.2, fake kubelet: pods ready 1 s after start), up in {:.1?}",
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
        "  app             {OBJECTS} objects: a Deployment x{REPLICAS}, a Service, a ConfigMap, a ServiceAccount, a Secret"
    );
    println!(
        "  rounds          {rounds} (BENCH_ROUNDS), after one warm-up round; each from nothing (new namespaces); {cpus} CPUs"
    );
    println!("  load at start   {load_at_start} (/proc/loadavg)");
    println!();

    let bench = Bench::new(tools).await?;
    let mut plugin = Vec::new();
    let mut kubectl = Vec::new();
    bench
        .run(env, tools, rounds, &mut plugin, &mut kubectl)
        .await?;

    let load_at_end = loadavg();
    let up = report(&plugin, &kubectl);
    println!("  load at end     {load_at_end} (/proc/loadavg)");
    println!();

    println!(
        "== summary (kubectl-release / kubectl of the medians; N={rounds} rounds each, same control plane, methods interleaved)"
    );
    println!(
        "preview up from nothing, {OBJECTS} objects (Deployment x{REPLICAS}, Service, ConfigMap, ServiceAccount, Secret) ({}):",
        if tools.plugin.components().any(|c| c.as_os_str() == "debug") {
            "DEBUG build of the plugin"
        } else {
            "release build of the plugin"
        }
    );
    println!("{up}");
    println!("load {load_at_start} at start, {load_at_end} at end");
    println!("rerun: {RERUN}   (or: bash tests/bench-preview.sh [ROUNDS])");
    Ok(())
}

/// Prints the figures; returns the summary line.
fn report(plugin: &[Duration], kubectl: &[Duration]) -> String {
    let (p, k) = (median(plugin), median(kubectl));
    let ratio = p / k;
    let met = if ratio <= GOAL { "met" } else { "not met" };
    println!("  preview up (N={}):", plugin.len());
    for (method, samples) in [(Method::Plugin, plugin), (Method::Kubectl, kubectl)] {
        println!(
            "    {:<36} median {:>6.2} s  min {:>6.2} s  max {:>6.2} s",
            method.label(),
            median(samples),
            min(samples),
            max(samples)
        );
    }
    println!("    ratio kubectl-release / kubectl: {ratio:.2} (goal <= {GOAL}: {met})");
    println!();
    format!(
        "preview up: {} median {p:.2} s (min {:.2}), {} median {k:.2} s (min {:.2}), ratio {ratio:.2} (goal <= {GOAL}: {met})",
        Method::Plugin.label(),
        min(plugin),
        Method::Kubectl.label(),
        min(kubectl),
    )
}

impl Bench {
    /// The app with its commit pushed and kubectl's directory (not timed).
    async fn new(tools: &Tools) -> Result<Bench> {
        let setup = Instant::now();
        let mut app = App::new("bench-pv", 0).await;
        // Previews are found by the app's label, cluster-wide: a name of its own.
        app.name = app.qa.name().chars().take(40).collect::<String>();
        let config = format!(
            "apiVersion: kubectl-release.io/v1alpha1\nkind: ReleaseConfig\napp: {name}\nimage: {image}\n\
             environments:\n  - name: qa\n    context: {CONTEXT}\n    namespace: {qa}\n    manifests: kubernetes/qa\n\
             previews:\n  from: qa\n",
            name = app.name,
            image = app.image,
            qa = app.qa.name(),
        );
        app.repo.write("release.yaml", &config);
        for (file, text) in manifests(&format!("{}:latest", app.image)) {
            app.repo.write(&format!("kubernetes/qa/{file}"), &text);
        }
        let commit = app.repo.commit("manifests and previews");
        app.push(&commit).await;
        let dir = tempfile::Builder::new()
            .prefix("bench-preview-")
            .tempdir()?;
        for (file, text) in manifests(&app.pinned(&commit)) {
            std::fs::write(dir.path().join(file), text)?;
        }
        // Nothing of this app may be left over: every preview starts from nothing.
        let out = Bench::plugin_in(&app, tools, &["preview", "list"], "setup").await?;
        ensure!(out.success(), "preview list failed: {out}");
        println!(
            "== set up in {:.1?} (app {}, commit {}, image {})",
            setup.elapsed(),
            app.name,
            &commit[..7],
            app.pinned(&commit),
        );
        Ok(Bench { app, commit, dir })
    }

    fn plugin_ns(&self, round: usize) -> String {
        format!("{}-pr-{}", self.app.name, FIRST_PR + round)
    }

    fn kubectl_ns(&self, round: usize) -> String {
        format!("{}-kubectl-{}", self.app.name, FIRST_PR + round)
    }

    /// A warm-up round, then `rounds` timed rounds. Each round brings the app up in two new
    /// namespaces, one per method, checks both, and deletes both (not timed).
    async fn run(
        &self,
        env: &'static TestEnv,
        tools: &Tools,
        rounds: usize,
        plugin: &mut Vec<Duration>,
        kubectl: &mut Vec<Duration>,
    ) -> Result<()> {
        for round in 0..=rounds {
            let order = if round % 2 == 0 {
                [Method::Plugin, Method::Kubectl]
            } else {
                [Method::Kubectl, Method::Plugin]
            };
            let mut line = if round == 0 {
                format!("  warm-up  PR {}:", FIRST_PR + round)
            } else {
                format!("  round {round:<2} PR {}:", FIRST_PR + round)
            };
            for method in order {
                tokio::time::sleep(SETTLE).await;
                let took = self.up(tools, method, round).await?;
                self.check(env, method, round).await?;
                let _ = write!(line, "  {} {:.2} s", method.label(), took.as_secs_f64());
                if round > 0 {
                    match method {
                        Method::Plugin => plugin.push(took),
                        Method::Kubectl => kubectl.push(took),
                    }
                }
            }
            let (plugin_down, kubectl_down) = self.down(env, tools, round).await?;
            let _ = write!(
                line,
                "  | deleted (not timed): preview down {:.2} s, kubectl delete ns {:.2} s",
                plugin_down.as_secs_f64(),
                kubectl_down.as_secs_f64()
            );
            println!("{line}");
        }
        println!();
        Ok(())
    }

    /// One timed bring-up by `method` in round `round`'s namespace: the wall time of its
    /// command(s).
    async fn up(&self, tools: &Tools, method: Method, round: usize) -> Result<Duration> {
        let started = Instant::now();
        match method {
            Method::Plugin => {
                let pr = (FIRST_PR + round).to_string();
                let out = self
                    .plugin(
                        tools,
                        &["preview", "up", "--pr", &pr, "-o", "json"],
                        &format!("up-r{round}"),
                    )
                    .await?;
                let took = started.elapsed();
                ensure!(
                    out.success(),
                    "the plugin did not bring the preview up: {out}"
                );
                let report: serde_json::Value = serde_json::from_str(&out.stdout)
                    .with_context(|| format!("the plugin's report is not JSON: {out}"))?;
                ensure!(
                    report["outcome"] == "succeeded",
                    "the plugin did not bring the preview up (outcome {}): {out}",
                    report["outcome"]
                );
                ensure!(
                    report["preview"]["namespace"] == self.plugin_ns(round).as_str(),
                    "the preview is not in {}: {out}",
                    self.plugin_ns(round)
                );
                Ok(took)
            }
            Method::Kubectl => {
                let ns = self.kubectl_ns(round);
                let out = self.kubectl(tools, &["create", "namespace", &ns]).await?;
                ensure!(out.success(), "kubectl create namespace failed: {out}");
                let dir = self.dir.path().to_string_lossy().into_owned();
                let out = self
                    .kubectl(
                        tools,
                        &[
                            "apply",
                            "--server-side",
                            "--field-manager",
                            FIELD_MANAGER,
                            "-f",
                            &dir,
                            "-n",
                            &ns,
                        ],
                    )
                    .await?;
                ensure!(out.success(), "kubectl apply failed: {out}");
                let out = self
                    .kubectl(
                        tools,
                        &[
                            "rollout",
                            "status",
                            "deployment/web",
                            "-n",
                            &ns,
                            "--timeout=300s",
                        ],
                    )
                    .await?;
                ensure!(out.success(), "kubectl rollout status failed: {out}");
                Ok(started.elapsed())
            }
        }
    }

    /// `web` in `method`'s namespace of `round` runs the commit's pinned image, rolled out.
    /// Not timed.
    async fn check(&self, env: &'static TestEnv, method: Method, round: usize) -> Result<()> {
        let namespace = match method {
            Method::Plugin => self.plugin_ns(round),
            Method::Kubectl => self.kubectl_ns(round),
        };
        let image = self.app.pinned(&self.commit);
        let api: Api<Deployment> = Api::namespaced(env.client("admin").await, &namespace);
        wait_for_all(
            &api,
            watcher::Config::default(),
            COMMAND_TIMEOUT,
            |ds: &[Deployment]| {
                ds.len() == 1
                    && ds.iter().all(|d| {
                        deployment_rolled_out(d)
                            && d.spec
                                .template
                                .spec
                                .as_ref()
                                .and_then(|s| s.containers.first())
                                .and_then(|c| c.image.as_deref())
                                == Some(image.as_str())
                    })
            },
        )
        .await
        .with_context(|| format!("web in {namespace} never ran {image}"))?;
        Ok(())
    }

    /// Deletes both namespaces of `round` and waits until they are gone (not timed):
    /// `preview down --pr N` and `kubectl delete namespace X --wait`, one after the other.
    /// Returns how long each took.
    async fn down(
        &self,
        env: &'static TestEnv,
        tools: &Tools,
        round: usize,
    ) -> Result<(Duration, Duration)> {
        let pr = (FIRST_PR + round).to_string();
        let started = Instant::now();
        let out = self
            .plugin(
                tools,
                &["preview", "down", "--pr", &pr],
                &format!("down-r{round}"),
            )
            .await?;
        ensure!(out.success(), "preview down failed: {out}");
        let plugin_down = started.elapsed();
        let ns = self.kubectl_ns(round);
        let started = Instant::now();
        let out = self
            .kubectl(
                tools,
                &["delete", "namespace", &ns, "--wait", "--timeout=300s"],
            )
            .await?;
        ensure!(out.success(), "kubectl delete namespace failed: {out}");
        let kubectl_down = started.elapsed();
        let api: Api<CoreNamespace> = Api::all(env.client("admin").await);
        for name in [self.plugin_ns(round), ns] {
            ensure!(
                api.get_opt(&name).await?.is_none(),
                "namespace {name} still there after its deletion"
            );
        }
        Ok((plugin_down, kubectl_down))
    }

    async fn plugin(&self, tools: &Tools, args: &[&str], tag: &str) -> Result<CmdOutput> {
        Bench::plugin_in(&self.app, tools, args, tag).await
    }

    /// Runs the plugin in the app's repository; its stderr goes to `BENCH_PLUGIN_LOG`.
    async fn plugin_in(app: &App, tools: &Tools, args: &[&str], tag: &str) -> Result<CmdOutput> {
        let mut cmd = tokio::process::Command::new(&tools.plugin);
        cmd.args(args)
            .current_dir(app.repo.path())
            .env("KUBECONFIG", app.env.kubeconfig())
            .env("NO_COLOR", "1");
        let out = bounded(&mut cmd).await?;
        if let Some(dir) = &tools.log_dir {
            std::fs::write(dir.join(format!("{tag}.log")), &out.stderr)?;
        }
        Ok(out)
    }

    /// Runs kubectl with the plugin's kubeconfig and context (the namespace is in `args`).
    async fn kubectl(&self, tools: &Tools, args: &[&str]) -> Result<CmdOutput> {
        let mut cmd = tokio::process::Command::new(&tools.kubectl);
        cmd.arg("--kubeconfig")
            .arg(self.app.env.kubeconfig())
            .args(["--context", CONTEXT])
            .args(args);
        bounded(&mut cmd).await
    }
}

/// Runs a command to completion within [`COMMAND_TIMEOUT`]; the caller judges its exit code.
async fn bounded(cmd: &mut tokio::process::Command) -> Result<CmdOutput> {
    cmd.kill_on_drop(true);
    let program = Path::new(cmd.as_std().get_program()).display().to_string();
    match tokio::time::timeout(COMMAND_TIMEOUT, run(cmd)).await {
        Ok(out) => Ok(out),
        Err(_) => bail!("{program} did not finish within {COMMAND_TIMEOUT:?}"),
    }
}

fn secs(samples: &[Duration]) -> Vec<f64> {
    let mut v: Vec<f64> = samples.iter().map(Duration::as_secs_f64).collect();
    v.sort_by(f64::total_cmp);
    v
}

fn median(samples: &[Duration]) -> f64 {
    let v = secs(samples);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn min(samples: &[Duration]) -> f64 {
    secs(samples).first().copied().unwrap_or(f64::NAN)
}

fn max(samples: &[Duration]) -> f64 {
    secs(samples).last().copied().unwrap_or(f64::NAN)
}
