//! Deploy, side by side: `kubectl-release deploy qa <sha>` against what a user would do instead,
//! `kubectl set image` + `kubectl rollout status`, on the same control plane in the same run.
//!
//! Not a test: it prints medians, minimums and the ratio kubectl-release / kubectl of the
//! medians, then a summary block to paste into the README. What is timed is the wall time of the
//! command(s) of one full round trip, from start to the rollout being complete, as a user waits
//! for it. The methods take turns (which goes first alternates per round), so noise from the
//! shared machine hits both.
//!
//! 1. One Deployment (3 replicas): alternates between the images of commits A and B.
//! 2. Ten Deployments (3 replicas each) in one namespace: the plugin deploys all ten in one
//!    command; the kubectl script does `set image` + `rollout status` per Deployment, one after
//!    another. A second kubectl script (`set image` all, then `rollout status` each) shows what
//!    a script that does not wait in between gets.
//! 3. Fixed cost: the same deploy again when nothing changes (plugin: "already deployed";
//!    kubectl: `set image` to the running image + `rollout status`).
//!
//! ```sh
//! cargo build --release -p kubectl-release     # the binary measured ($KUBECTL_RELEASE_BIN)
//! cargo bench -p kubectl-release-tests --bench deploy_vs_kubectl
//! bash tests/bench-deploy.sh [ROUNDS]            # the same, building what it needs
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
    App, CmdOutput, Namespace, TestEnv, apply, deployment, deployment_rolled_out, run, wait_for_all,
};

/// Upper bound of one command (the plugin's own rollout timeout is 5 minutes).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(300);
/// Pause between timed steps (not timed), so one method's tail does not land in the next one.
const SETTLE: Duration = Duration::from_millis(500);
const REPLICAS: i32 = 3;
const RERUN: &str = "cargo build --release -p kubectl-release && cargo bench -p kubectl-release-tests --bench deploy_vs_kubectl";

fn main() -> Result<()> {
    // `cargo bench` passes --bench; `cargo test --benches` does not: then only say what this is,
    // rather than start a control plane for minutes.
    if !std::env::args().any(|a| a == "--bench") {
        println!("deploy_vs_kubectl: a benchmark; run it with `{RERUN}`");
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

    // Started outside the runtime: it blocks until the control plane is ready.
    let env = TestEnv::shared();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(bench(env, &tools, rounds))
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

/// One way of deploying a commit to a set of Deployments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Method {
    /// `kubectl-release deploy qa <sha>`.
    Plugin,
    /// Per Deployment: `kubectl set image` then `kubectl rollout status`.
    Kubectl,
    /// `kubectl set image` on every Deployment, then `kubectl rollout status` on each.
    KubectlBatched,
}

impl Method {
    fn label(self) -> &'static str {
        match self {
            Method::Plugin => "kubectl-release",
            Method::Kubectl => "kubectl",
            Method::KubectlBatched => "kubectl, set all then wait",
        }
    }
}

/// A method with its own namespace of identical Deployments, and its timings.
struct Side {
    method: Method,
    namespace: String,
    samples: Vec<Duration>,
}

/// The Deployments of one scenario, one namespace per method, all on the app's images.
struct Scenario {
    title: String,
    app: App,
    names: Vec<String>,
    sides: Vec<Side>,
    /// Kept alive: the namespaces the kubectl sides use.
    _namespaces: Vec<Namespace>,
}

async fn bench(env: &'static TestEnv, tools: &Tools, rounds: usize) -> Result<()> {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kubectl_version =
        run(tokio::process::Command::new(&tools.kubectl).args(["version", "--client"])).await;
    println!("deploy benchmark: kubectl-release vs kubectl set image + rollout status");
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
        "  rounds          {rounds} per scenario (BENCH_ROUNDS), after one warm-up round; {cpus} CPUs"
    );
    println!();

    let mut summary = Vec::new();

    let mut single = Scenario::new(
        env,
        "bench-one",
        "1 Deployment x3",
        1,
        &[Method::Plugin, Method::Kubectl],
    )
    .await?;
    single.run(env, tools, rounds).await?;
    summary.extend(single.summary());
    let fixed = fixed_cost(env, tools, &single, rounds).await?;
    summary.push(fixed);

    let mut ten = Scenario::new(
        env,
        "bench-ten",
        "10 Deployments x3",
        10,
        &[Method::Plugin, Method::Kubectl, Method::KubectlBatched],
    )
    .await?;
    ten.run(env, tools, rounds).await?;
    summary.extend(ten.summary());

    println!(
        "== summary (kubectl-release / kubectl of the medians; N={rounds} rounds each, same control plane, methods interleaved)"
    );
    for line in &summary {
        println!("{line}");
    }
    println!("rerun: {RERUN}   (or: bash tests/bench-deploy.sh [ROUNDS])");
    Ok(())
}

impl Scenario {
    async fn new(
        env: &'static TestEnv,
        prefix: &str,
        title: &str,
        count: usize,
        methods: &[Method],
    ) -> Result<Scenario> {
        let setup = Instant::now();
        let mut app = App::new(prefix, 2).await;
        for commit in app.commits() {
            app.push(&commit).await;
        }
        let start_image = app.pinned(&app.commits()[0]);
        let names: Vec<String> = if count == 1 {
            vec!["web".into()]
        } else {
            (0..count).map(|i| format!("web-{i:02}")).collect()
        };

        let client = env.client("admin").await;
        let mut sides = Vec::new();
        let mut namespaces = Vec::new();
        for &method in methods {
            let namespace = match method {
                Method::Plugin => app.qa.name().to_string(),
                _ => {
                    let ns = env
                        .namespace(&format!(
                            "{prefix}-{}",
                            if method == Method::Kubectl {
                                "kubectl"
                            } else {
                                "batched"
                            }
                        ))
                        .await;
                    let name = ns.name().to_string();
                    namespaces.push(ns);
                    name
                }
            };
            for name in &names {
                apply(
                    &client,
                    &namespace,
                    &deployment(name)
                        .image(&start_image)
                        .replicas(REPLICAS)
                        .build(),
                )
                .await
                .with_context(|| format!("create deployment {name} in {namespace}"))?;
            }
            sides.push(Side {
                method,
                namespace,
                samples: Vec::new(),
            });
        }
        let scenario = Scenario {
            title: title.into(),
            app,
            names,
            sides,
            _namespaces: namespaces,
        };
        for side in &scenario.sides {
            scenario.check(env, &side.namespace, &start_image).await?;
        }
        println!(
            "== deploy, {title}: set up in {:.1?} (namespaces {})",
            setup.elapsed(),
            scenario
                .sides
                .iter()
                .map(|s| s.namespace.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        Ok(scenario)
    }

    /// A warm-up round to commit B, then `rounds` timed rounds alternating A, B, A, …
    async fn run(&mut self, env: &'static TestEnv, tools: &Tools, rounds: usize) -> Result<()> {
        let commits = self.app.commits();
        let short = |c: &str| c[..7].to_string();
        for round in 0..=rounds {
            let commit = &commits[if round % 2 == 0 { 1 } else { 0 }];
            let image = self.app.pinned(commit);
            let mut order: Vec<usize> = (0..self.sides.len()).collect();
            order.rotate_left(round % self.sides.len());
            let mut line = if round == 0 {
                format!("  warm-up  {}:", short(commit))
            } else {
                format!("  round {round:<2} {}:", short(commit))
            };
            for i in order {
                tokio::time::sleep(SETTLE).await;
                let side = &self.sides[i];
                let tag = format!(
                    "{}-r{round}",
                    self.title.split_whitespace().next().unwrap_or("x")
                );
                let took = deploy(
                    tools,
                    &self.app,
                    &side.namespace,
                    &self.names,
                    side.method,
                    commit,
                    &image,
                    &tag,
                )
                .await?;
                self.check(env, &side.namespace, &image).await?;
                let _ = write!(
                    line,
                    "  {} {:.2} s",
                    side.method.label(),
                    took.as_secs_f64()
                );
                if round > 0 {
                    self.sides[i].samples.push(took);
                }
            }
            println!("{line}");
        }
        Ok(())
    }

    /// Every Deployment of `namespace` runs `image`, rolled out. Not timed.
    async fn check(&self, env: &'static TestEnv, namespace: &str, image: &str) -> Result<()> {
        let api: Api<Deployment> = Api::namespaced(env.client("admin").await, namespace);
        let want = self.names.len();
        wait_for_all(
            &api,
            watcher::Config::default(),
            COMMAND_TIMEOUT,
            |ds: &[Deployment]| {
                ds.len() == want
                    && ds.iter().all(|d| {
                        deployment_rolled_out(d)
                            && d.spec
                                .template
                                .spec
                                .as_ref()
                                .and_then(|s| s.containers.first())
                                .and_then(|c| c.image.as_deref())
                                == Some(image)
                    })
            },
        )
        .await
        .with_context(|| format!("the Deployments of {namespace} never all ran {image}"))?;
        Ok(())
    }

    fn summary(&self) -> Vec<String> {
        let plugin = median(&self.sides[0].samples);
        let mut lines = Vec::new();
        println!("  {} (N={}):", self.title, self.sides[0].samples.len());
        for side in &self.sides {
            println!(
                "    {:<28} median {:>6.2} s  min {:>6.2} s  max {:>6.2} s",
                side.method.label(),
                median(&side.samples),
                min(&side.samples),
                max(&side.samples)
            );
        }
        for side in &self.sides[1..] {
            let other = median(&side.samples);
            println!(
                "    ratio kubectl-release / {}: {:.2}",
                side.method.label(),
                plugin / other
            );
            lines.push(match side.method {
                Method::Kubectl => format!(
                    "deploy, {}: kubectl-release median {:.2} s, kubectl median {:.2} s, ratio {:.2}",
                    self.title,
                    plugin,
                    other,
                    plugin / other
                ),
                _ => format!(
                    "  (same, kubectl script that sets every image first, then waits for each: median {:.2} s, ratio {:.2})",
                    other,
                    plugin / other
                ),
            });
        }
        println!();
        lines
    }
}

/// One timed deploy of `commit` (`image`) by `method`; the wall time of its command(s).
#[allow(clippy::too_many_arguments)]
async fn deploy(
    tools: &Tools,
    app: &App,
    namespace: &str,
    names: &[String],
    method: Method,
    commit: &str,
    image: &str,
    tag: &str,
) -> Result<Duration> {
    let started = Instant::now();
    match method {
        Method::Plugin => {
            let out = plugin(tools, app, commit, tag).await?;
            ensure!(
                out.stdout.contains(": succeeded"),
                "the plugin did not deploy: {out}"
            );
        }
        Method::Kubectl => {
            for name in names {
                set_image(tools, app, namespace, name, image).await?;
                rollout_status(tools, app, namespace, name).await?;
            }
        }
        Method::KubectlBatched => {
            for name in names {
                set_image(tools, app, namespace, name, image).await?;
            }
            for name in names {
                rollout_status(tools, app, namespace, name).await?;
            }
        }
    }
    Ok(started.elapsed())
}

/// The fixed cost of a deploy that changes nothing, against its kubectl counterpart: what the
/// plugin spends besides the rollout itself (config, git, registry, discovery, lock, records).
async fn fixed_cost(
    env: &'static TestEnv,
    tools: &Tools,
    scenario: &Scenario,
    rounds: usize,
) -> Result<String> {
    let (plugin_side, kubectl_side) = (&scenario.sides[0], &scenario.sides[1]);
    let app = &scenario.app;
    // Both sides run the commit of the last round.
    let commit = &app.commits()[if rounds % 2 == 1 { 0 } else { 1 }];
    let image = app.pinned(commit);
    let (mut plugin_samples, mut kubectl_samples) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let started = Instant::now();
        let out = plugin(tools, app, commit, &format!("noop-r{round}")).await?;
        plugin_samples.push(started.elapsed());
        ensure!(
            out.stdout.contains("already deployed"),
            "expected a no-op: {out}"
        );
        let started = Instant::now();
        set_image(tools, app, &kubectl_side.namespace, "web", &image).await?;
        rollout_status(tools, app, &kubectl_side.namespace, "web").await?;
        kubectl_samples.push(started.elapsed());
    }
    scenario.check(env, &plugin_side.namespace, &image).await?;
    let (p, k) = (median(&plugin_samples), median(&kubectl_samples));
    println!(
        "  no-op deploy, 1 Deployment (N={rounds}): kubectl-release median {p:.2} s (min {:.2}), kubectl set image + rollout status median {k:.2} s (min {:.2}), ratio {:.2}",
        min(&plugin_samples),
        min(&kubectl_samples),
        p / k
    );
    println!();
    Ok(format!(
        "no-op deploy (fixed cost), 1 Deployment: kubectl-release median {p:.2} s, kubectl median {k:.2} s, ratio {:.2}",
        p / k
    ))
}

async fn plugin(tools: &Tools, app: &App, commit: &str, tag: &str) -> Result<CmdOutput> {
    let mut cmd = tokio::process::Command::new(&tools.plugin);
    cmd.args(["deploy", "qa", commit])
        .current_dir(app.repo.path())
        .env("KUBECONFIG", app.env.kubeconfig())
        .env("NO_COLOR", "1");
    let out = bounded(&mut cmd).await?;
    if let Some(dir) = &tools.log_dir {
        std::fs::write(dir.join(format!("{tag}.log")), &out.stderr)?;
    }
    Ok(out)
}

async fn set_image(
    tools: &Tools,
    app: &App,
    namespace: &str,
    name: &str,
    image: &str,
) -> Result<CmdOutput> {
    kubectl(
        tools,
        app,
        namespace,
        &[
            "set",
            "image",
            &format!("deployment/{name}"),
            &format!("{name}={image}"),
        ],
    )
    .await
}

async fn rollout_status(
    tools: &Tools,
    app: &App,
    namespace: &str,
    name: &str,
) -> Result<CmdOutput> {
    kubectl(
        tools,
        app,
        namespace,
        &[
            "rollout",
            "status",
            &format!("deployment/{name}"),
            "--timeout=5m",
        ],
    )
    .await
}

async fn kubectl(tools: &Tools, app: &App, namespace: &str, args: &[&str]) -> Result<CmdOutput> {
    let mut cmd = tokio::process::Command::new(&tools.kubectl);
    cmd.arg("--kubeconfig")
        .arg(app.env.kubeconfig())
        .args(["--context", "admin", "-n", namespace])
        .args(args);
    bounded(&mut cmd).await
}

/// Runs a command to completion within [`COMMAND_TIMEOUT`]; fails unless it succeeds.
async fn bounded(cmd: &mut tokio::process::Command) -> Result<CmdOutput> {
    cmd.kill_on_drop(true);
    let program = Path::new(cmd.as_std().get_program()).display().to_string();
    let out = match tokio::time::timeout(COMMAND_TIMEOUT, run(cmd)).await {
        Ok(out) => out,
        Err(_) => bail!("{program} did not finish within {COMMAND_TIMEOUT:?}"),
    };
    ensure!(out.success(), "command failed: {out}");
    Ok(out)
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
