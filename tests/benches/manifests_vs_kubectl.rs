//! Manifests, side by side: `kubectl-release deploy qa <sha>` of an app whose release.yaml says
//! `manifests: kubernetes/qa` against what a user would do instead, `kubectl apply --server-side
//! -f DIR` + `kubectl rollout status` for each Deployment; and `kubectl-release plan qa <sha>`
//! against `kubectl diff --server-side -f DIR`. Same control plane, same run (issue #14).
//!
//! Not a test: it prints medians, minimums and the ratios kubectl-release / kubectl of the
//! medians against the goals (deploy ≤ 0.5, plan ≤ 1.5), then a summary block to paste into the
//! README. What is timed is the wall time of the command(s), from start to the rollout being
//! complete (deploy) or the diff printed (plan), as a user waits for it. The methods take turns
//! (which goes first alternates per round), so noise from the shared machine hits both.
//!
//! The app: 10 Deployments `web-0..9` (2 replicas each), a Service and a ConfigMap each, in
//! `kubernetes/qa/` at two commits A and B (the ConfigMaps' data differs; the image is written
//! unpinned, `<image>:latest`, and the plugin pins it to each commit's digest, so the pods change
//! too). kubectl gets two plain directories with the very objects the plugin applies, images
//! pinned to A's and B's digests, and works in a namespace of its own (so the two field managers
//! never meet). Each round deploys the other commit with both methods, then plans (diffs) the
//! commit after that, which differs from what runs.
//!
//! ```sh
//! cargo build --release -p kubectl-release     # the binary measured ($KUBECTL_RELEASE_BIN)
//! cargo bench -p kubectl-release-tests --bench manifests_vs_kubectl
//! bash tests/bench-manifests.sh [ROUNDS]         # the same, building what it needs
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
use kube::Api;
use kube::runtime::watcher;
use kubectl_release_tests::{
    App, CmdOutput, Namespace, TestEnv, deployment_rolled_out, run, wait_for_all,
};
use tempfile::TempDir;

/// Upper bound of one command (the plugin's own rollout timeout is 5 minutes).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(300);
/// Pause between timed steps (not timed), so one method's tail does not land in the next one.
const SETTLE: Duration = Duration::from_millis(500);
/// Deployments (each with a Service and a ConfigMap) in the app's manifests.
const COUNT: usize = 10;
const REPLICAS: u32 = 2;
/// The field manager of the kubectl side (the plugin has its own).
const FIELD_MANAGER: &str = "kubectl-bench";
/// The kubeconfig context both methods use (the admin on the test cluster).
const CONTEXT: &str = "qa";
/// The issue's goals: kubectl-release / kubectl of the medians, at most.
const DEPLOY_GOAL: f64 = 0.5;
const PLAN_GOAL: f64 = 1.5;
const RERUN: &str = "cargo build --release -p kubectl-release && cargo bench -p kubectl-release-tests --bench manifests_vs_kubectl";

fn main() -> Result<()> {
    // `cargo bench` passes --bench; `cargo test --benches` does not: then only say what this is,
    // rather than start a control plane for minutes.
    if !std::env::args().any(|a| a == "--bench") {
        println!("manifests_vs_kubectl: a benchmark; run it with `{RERUN}`");
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

/// One way of deploying (or planning) a commit's manifests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Method {
    /// `kubectl-release deploy qa <sha>` / `kubectl-release plan qa <sha>`.
    Plugin,
    /// `kubectl apply --server-side -f DIR`, then `kubectl rollout status` per Deployment, one
    /// after another / `kubectl diff --server-side -f DIR`.
    Kubectl,
}

impl Method {
    fn label(self, plan: bool) -> &'static str {
        match (self, plan) {
            (Method::Plugin, false) => "kubectl-release deploy",
            (Method::Kubectl, false) => "kubectl apply + rollout status",
            (Method::Plugin, true) => "kubectl-release plan",
            (Method::Kubectl, true) => "kubectl diff",
        }
    }
}

/// The app, its two commits, and the kubectl side's copy of what each commit deploys.
struct Bench {
    app: App,
    /// Commits A and B.
    commits: [String; 2],
    /// A's and B's manifests as the plugin applies them (images pinned), for kubectl.
    dirs: [TempDir; 2],
    /// The plugin's namespace (qa's) and kubectl's.
    plugin_ns: String,
    kubectl_ns: String,
    /// Kept alive: kubectl's namespace.
    _kubectl_namespace: Namespace,
}

/// Timings of one method at one task.
#[derive(Default)]
struct Samples {
    deploy: Vec<Duration>,
    plan: Vec<Duration>,
}

fn names() -> Vec<String> {
    (0..COUNT).map(|i| format!("web-{i}")).collect()
}

/// The manifests of one commit: per `web-i`, a Deployment on `image`, its Service and its
/// ConfigMap (data `VERSION: version`). With `namespace`, every object names it.
fn manifests(image: &str, version: &str, namespace: Option<&str>) -> Vec<(String, String)> {
    let ns = namespace.map_or(String::new(), |n| format!("\n  namespace: {n}"));
    names()
        .into_iter()
        .map(|name| {
            let text = format!(
                r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: {name}-config{ns}
  labels: {{app: {name}}}
data:
  VERSION: "{version}"
---
apiVersion: v1
kind: Service
metadata:
  name: {name}{ns}
  labels: {{app: {name}}}
spec:
  selector: {{app: {name}}}
  ports:
    # Kubernetes before 1.21 cannot server-side apply a port without its protocol.
    - port: 80
      targetPort: 8080
      protocol: TCP
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}{ns}
  labels: {{app: {name}}}
spec:
  replicas: {REPLICAS}
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      containers:
        - name: web
          image: {image}
          ports:
            - containerPort: 8080
              protocol: TCP
"#
            );
            (format!("{name}.yaml"), text)
        })
        .collect()
}

/// release.yaml: qa, in `namespace`, deploys the manifests of `kubernetes/qa`.
fn write_config(app: &App, namespace: &str) {
    let config = format!(
        "apiVersion: kubectl-release.io/v1alpha1\nkind: ReleaseConfig\napp: {name}\nimage: {image}\n\
         environments:\n  - name: qa\n    context: {CONTEXT}\n    namespace: {namespace}\n    manifests: kubernetes/qa\n",
        name = app.name,
        image = app.image,
    );
    app.repo.write("release.yaml", &config);
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
        "manifests benchmark: kubectl-release deploy/plan vs kubectl apply --server-side + rollout status / kubectl diff"
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
        "  app             {COUNT} Deployments x{REPLICAS}, a Service and a ConfigMap each ({} objects)",
        COUNT * 3
    );
    println!(
        "  rounds          {rounds} (BENCH_ROUNDS), after a first deploy and one warm-up round; {cpus} CPUs"
    );
    println!("  load at start   {load_at_start} (/proc/loadavg)");
    println!();

    let bench = Bench::new(env, tools).await?;
    let mut plugin = Samples::default();
    let mut kubectl = Samples::default();
    bench
        .run(env, tools, rounds, &mut plugin, &mut kubectl)
        .await?;

    let load_at_end = loadavg();
    let deploy = report(
        "deploy",
        &plugin.deploy,
        &kubectl.deploy,
        false,
        DEPLOY_GOAL,
    );
    let plan = report("plan", &plugin.plan, &kubectl.plan, true, PLAN_GOAL);
    println!("  load at end     {load_at_end} (/proc/loadavg)");
    println!();

    println!(
        "== summary (kubectl-release / kubectl of the medians; N={rounds} rounds each, same control plane, methods interleaved)"
    );
    println!(
        "manifests, {COUNT} Deployments x{REPLICAS} + {COUNT} Services + {COUNT} ConfigMaps ({}):",
        if tools.plugin.components().any(|c| c.as_os_str() == "debug") {
            "DEBUG build of the plugin"
        } else {
            "release build of the plugin"
        }
    );
    println!("{deploy}");
    println!("{plan}");
    println!("load {load_at_start} at start, {load_at_end} at end");
    println!("rerun: {RERUN}   (or: bash tests/bench-manifests.sh [ROUNDS])");
    Ok(())
}

/// Prints a task's figures; returns its summary line.
fn report(task: &str, plugin: &[Duration], kubectl: &[Duration], plan: bool, goal: f64) -> String {
    let (p, k) = (median(plugin), median(kubectl));
    let ratio = p / k;
    let met = if ratio <= goal { "met" } else { "not met" };
    println!("  {task} (N={}):", plugin.len());
    for (method, samples) in [(Method::Plugin, plugin), (Method::Kubectl, kubectl)] {
        println!(
            "    {:<32} median {:>6.2} s  min {:>6.2} s  max {:>6.2} s",
            method.label(plan),
            median(samples),
            min(samples),
            max(samples)
        );
    }
    println!("    ratio kubectl-release / kubectl: {ratio:.2} (goal <= {goal}: {met})");
    println!();
    format!(
        "{task}: {} median {p:.2} s (min {:.2}), {} median {k:.2} s (min {:.2}), ratio {ratio:.2} (goal <= {goal}: {met})",
        Method::Plugin.label(plan),
        min(plugin),
        Method::Kubectl.label(plan),
        min(kubectl),
    )
}

impl Bench {
    /// The app with commits A and B pushed, kubectl's directories and namespace, and both
    /// sides at commit A (not timed).
    async fn new(env: &'static TestEnv, tools: &Tools) -> Result<Bench> {
        let setup = Instant::now();
        let mut app = App::new("bench-man", 0).await;
        let plugin_ns = app.qa.name().to_string();
        let kubectl_namespace = env.namespace("bench-man-kubectl").await;
        let kubectl_ns = kubectl_namespace.name().to_string();
        write_config(&app, &plugin_ns);
        let unpinned = format!("{}:latest", app.image);
        let mut commits = Vec::new();
        for version in ["a", "b"] {
            // Every file is rewritten, so a commit holds exactly its version's set.
            for (file, text) in manifests(&unpinned, version, None) {
                app.repo.write(&format!("kubernetes/qa/{file}"), &text);
            }
            let commit = app.repo.commit(&format!("manifests, VERSION {version}"));
            app.push(&commit).await;
            commits.push(commit);
        }
        let commits: [String; 2] = [commits[0].clone(), commits[1].clone()];
        ensure!(
            app.digests[&commits[0]] != app.digests[&commits[1]],
            "A and B have the same image digest: the pods would not change"
        );
        let mut dirs = Vec::new();
        for (commit, version) in commits.iter().zip(["a", "b"]) {
            let dir = tempfile::Builder::new()
                .prefix(&format!("bench-manifests-{version}-"))
                .tempdir()?;
            for (file, text) in manifests(&app.pinned(commit), version, Some(&kubectl_ns)) {
                std::fs::write(dir.path().join(file), text)?;
            }
            dirs.push(dir);
        }
        let mut dirs = dirs.into_iter();
        let dirs = [
            dirs.next().context("A's dir")?,
            dirs.next().context("B's dir")?,
        ];
        let bench = Bench {
            app,
            commits,
            dirs,
            plugin_ns,
            kubectl_ns,
            _kubectl_namespace: kubectl_namespace,
        };

        // Both sides create the app at A: the first deploy, not what is compared.
        let first = Instant::now();
        bench.deploy(tools, Method::Plugin, 0, "first").await?;
        let plugin_first = first.elapsed();
        let first = Instant::now();
        bench.deploy(tools, Method::Kubectl, 0, "first").await?;
        let kubectl_first = first.elapsed();
        for method in [Method::Plugin, Method::Kubectl] {
            bench.check(env, method, 0).await?;
        }
        println!(
            "== set up in {:.1?} (namespaces {} for kubectl-release, {} for kubectl; commits A {} B {})",
            setup.elapsed(),
            bench.plugin_ns,
            bench.kubectl_ns,
            &bench.commits[0][..7],
            &bench.commits[1][..7],
        );
        println!(
            "  first deploy (creates {} objects, not counted): kubectl-release {:.2} s, kubectl {:.2} s",
            COUNT * 3,
            plugin_first.as_secs_f64(),
            kubectl_first.as_secs_f64()
        );
        Ok(bench)
    }

    /// A warm-up round to commit B, then `rounds` timed rounds alternating A, B, A, … Each round
    /// deploys its commit with both methods, then plans the other commit with both.
    async fn run(
        &self,
        env: &'static TestEnv,
        tools: &Tools,
        rounds: usize,
        plugin: &mut Samples,
        kubectl: &mut Samples,
    ) -> Result<()> {
        let short = |c: &str| c[..7].to_string();
        for round in 0..=rounds {
            let target = if round % 2 == 0 { 1 } else { 0 };
            let other = 1 - target;
            let order = if round % 2 == 0 {
                [Method::Plugin, Method::Kubectl]
            } else {
                [Method::Kubectl, Method::Plugin]
            };
            let mut line = if round == 0 {
                format!("  warm-up  {}:", short(&self.commits[target]))
            } else {
                format!("  round {round:<2} {}:", short(&self.commits[target]))
            };
            for method in order {
                tokio::time::sleep(SETTLE).await;
                let took = self
                    .deploy(tools, method, target, &format!("deploy-r{round}"))
                    .await?;
                self.check(env, method, target).await?;
                let _ = write!(
                    line,
                    "  {} {:.2} s",
                    method.label(false),
                    took.as_secs_f64()
                );
                if round > 0 {
                    match method {
                        Method::Plugin => plugin.deploy.push(took),
                        Method::Kubectl => kubectl.deploy.push(took),
                    }
                }
            }
            let _ = write!(line, "  | plan {}:", short(&self.commits[other]));
            for method in order {
                tokio::time::sleep(SETTLE).await;
                let took = self
                    .plan(tools, method, other, &format!("plan-r{round}"))
                    .await?;
                let _ = write!(line, "  {} {:.2} s", method.label(true), took.as_secs_f64());
                if round > 0 {
                    match method {
                        Method::Plugin => plugin.plan.push(took),
                        Method::Kubectl => kubectl.plan.push(took),
                    }
                }
            }
            println!("{line}");
        }
        println!();
        Ok(())
    }

    /// One timed deploy of commit `which` (0: A, 1: B) by `method`: the wall time of its
    /// command(s).
    async fn deploy(
        &self,
        tools: &Tools,
        method: Method,
        which: usize,
        tag: &str,
    ) -> Result<Duration> {
        let started = Instant::now();
        match method {
            Method::Plugin => {
                let out = self
                    .plugin(
                        tools,
                        &["deploy", "qa", &self.commits[which], "-o", "json"],
                        tag,
                    )
                    .await?;
                ensure!(out.success(), "the plugin did not deploy: {out}");
                let report: serde_json::Value = serde_json::from_str(&out.stdout)
                    .with_context(|| format!("the plugin's report is not JSON: {out}"))?;
                ensure!(
                    report["outcome"] == "succeeded",
                    "the plugin did not deploy (outcome {}): {out}",
                    report["outcome"]
                );
            }
            Method::Kubectl => {
                let dir = self.dirs[which].path();
                let mut args: Vec<&str> = vec![
                    "apply",
                    "--server-side",
                    "--field-manager",
                    FIELD_MANAGER,
                    "-f",
                ];
                let dir_arg = dir.to_string_lossy();
                args.push(&dir_arg);
                let out = self.kubectl(tools, &args).await?;
                ensure!(out.success(), "kubectl apply failed: {out}");
                for name in names() {
                    let out = self
                        .kubectl(
                            tools,
                            &[
                                "rollout",
                                "status",
                                &format!("deployment/{name}"),
                                "--timeout=300s",
                            ],
                        )
                        .await?;
                    ensure!(out.success(), "kubectl rollout status failed: {out}");
                }
            }
        }
        Ok(started.elapsed())
    }

    /// One timed plan of commit `which` (which differs from what runs) by `method`.
    async fn plan(
        &self,
        tools: &Tools,
        method: Method,
        which: usize,
        tag: &str,
    ) -> Result<Duration> {
        let started = Instant::now();
        match method {
            Method::Plugin => {
                let out = self
                    .plugin(tools, &["plan", "qa", &self.commits[which]], tag)
                    .await?;
                let took = started.elapsed();
                ensure!(out.success(), "the plugin's plan failed: {out}");
                ensure!(
                    out.stdout.contains("Deployment/web-0") && out.stdout.contains("update"),
                    "the plan does not show Deployment/web-0 updated: {out}"
                );
                Ok(took)
            }
            Method::Kubectl => {
                let dir = self.dirs[which].path().to_string_lossy().into_owned();
                let out = self
                    .kubectl(
                        tools,
                        &[
                            "diff",
                            "--server-side",
                            "--field-manager",
                            FIELD_MANAGER,
                            "-f",
                            &dir,
                        ],
                    )
                    .await?;
                let took = started.elapsed();
                // 1: there are differences (what is expected); 0: none; more: an error.
                ensure!(
                    out.code() == Some(1),
                    "kubectl diff found no differences or failed: {out}"
                );
                ensure!(
                    out.stdout.contains("VERSION") && out.stdout.contains("image:"),
                    "kubectl diff does not show the ConfigMaps' and images' change: {out}"
                );
                Ok(took)
            }
        }
    }

    /// Every Deployment of `method`'s namespace runs commit `which`'s pinned image, rolled out.
    /// Not timed.
    async fn check(&self, env: &'static TestEnv, method: Method, which: usize) -> Result<()> {
        let namespace = match method {
            Method::Plugin => &self.plugin_ns,
            Method::Kubectl => &self.kubectl_ns,
        };
        let image = self.app.pinned(&self.commits[which]);
        let api: Api<Deployment> = Api::namespaced(env.client("admin").await, namespace);
        wait_for_all(
            &api,
            watcher::Config::default(),
            COMMAND_TIMEOUT,
            |ds: &[Deployment]| {
                ds.len() == COUNT
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
        .with_context(|| format!("the Deployments of {namespace} never all ran {image}"))?;
        Ok(())
    }

    /// Runs the plugin in the app's repository; its stderr goes to `BENCH_PLUGIN_LOG`.
    async fn plugin(&self, tools: &Tools, args: &[&str], tag: &str) -> Result<CmdOutput> {
        let mut cmd = tokio::process::Command::new(&tools.plugin);
        cmd.args(args)
            .current_dir(self.app.repo.path())
            .env("KUBECONFIG", self.app.env.kubeconfig())
            .env("NO_COLOR", "1");
        let out = bounded(&mut cmd).await?;
        if let Some(dir) = &tools.log_dir {
            std::fs::write(dir.join(format!("{tag}.log")), &out.stderr)?;
        }
        Ok(out)
    }

    /// Runs kubectl in kubectl's namespace, with the plugin's kubeconfig and context.
    async fn kubectl(&self, tools: &Tools, args: &[&str]) -> Result<CmdOutput> {
        let mut cmd = tokio::process::Command::new(&tools.kubectl);
        cmd.arg("--kubeconfig")
            .arg(self.app.env.kubeconfig())
            .args(["--context", CONTEXT, "-n", &self.kubectl_ns])
            .args(args);
        bounded(&mut cmd).await
    }
}

/// Runs a command to completion within [`COMMAND_TIMEOUT`]; the caller judges its exit code
/// (`kubectl diff` exits 1 when it finds differences).
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
