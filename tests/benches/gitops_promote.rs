//! GitOps promotion latency (issue #17): the time from `kubectl-release promote qa production`
//! starting to its commit being on the deployment repository's remote, for one app and for
//! `BENCH_APPS` apps promoted into one repository at once, against the polling anchors: Argo CD
//! Image Updater's default 2-minute interval and Argo CD's own 3-minute Git poll. Goal: under
//! 1 s for one app, under 10 s for 50.
//!
//! Not a test: it prints every run, medians, minimums and maximums, whether the goal is met,
//! the ratio to the 120 s anchor, and a summary block to paste into the README. What is timed is
//! the wall time of the plugin's process, from start to exit; without `--wait` it exits
//! (outcome `committed`) as soon as the commit is on the remote, so exit = the commit pushed.
//! After every run the bench checks that the remote got exactly one new commit per app and that
//! each app's kustomization pins the digest qa ran. Nothing waits for the cluster: a GitOps
//! controller would apply the commit later (that is what the anchors measure).
//!
//! The setup (not timed), on one control plane:
//! - one app: an app repository with two commits A and B, both images pushed, qa a direct
//!   environment (a Deployment `web`), production a GitOps environment in a bare deployment
//!   repository of its own (`apps/web/production/`: a kustomization pinning A and a
//!   deployment.yaml), synced once with `kubectl apply -k` so the cluster runs A.
//! - `BENCH_APPS` apps (default 50): a monorepo `ROOT/services/app-NNN/release.yaml`, each app
//!   with its own image repository (commits A and B pushed), its own qa and production
//!   namespaces and a Deployment `web` in qa; production of every app is a GitOps environment in
//!   ONE shared deployment repository, `apps/app-NNN/production/` each, synced once so the
//!   cluster runs A.
//!
//! Every round has something to promote: before it (not timed) qa is moved to the commit that
//! the repository does not pin yet — by `kubectl-release deploy qa <commit>` for the one app, by
//! patching the qa Deployments to the pinned digest (and waiting for the rollouts) for the many
//! — so each timed promotion really writes a commit. The one-app case has one untimed warm-up
//! round first. The many-app case runs `promote --all qa production -f ROOT` once per
//! `BENCH_CONCURRENCY` value per round (interleaved, so noise hits each), and counts the pushes
//! that had to rebase (the report's warning "rebased and pushed on attempt N") and the highest
//! attempt seen; pushes that kept racing until the plugin gave up are reported, not hidden.
//!
//! ```sh
//! cargo build --release -p kubectl-release     # the binary measured ($KUBECTL_RELEASE_BIN)
//! cargo bench -p kubectl-release-tests --bench gitops_promote --profile dev
//! bash tests/bench-gitops.sh [ROUNDS]           # the same, building what it needs
//! ```
//!
//! Environment: `BENCH_ROUNDS` (default 5: one-app rounds), `BENCH_ROUNDS_50` (default 3: rounds
//! of the many-app case), `BENCH_APPS` (default 50), `BENCH_CONCURRENCY` (default `default,50`:
//! a comma-separated list of `--concurrency` values, `default` passing none), `BENCH_PLUGIN_LOG=DIR`
//! (keeps every plugin run's stderr there), `KUBECTL_RELEASE_BIN` (default: target/release,
//! else target/debug).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use futures::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt as _};
use kubectl_release_tests::deploy_repo::DeployRepo;
use kubectl_release_tests::{
    App, CmdOutput, Namespace, TestEnv, apply, deployment, deployment_rolled_out, push_image, run,
};
use serde_json::Value;
use sha2::Digest as _;

const RERUN: &str = "cargo build --release -p kubectl-release && cargo bench -p kubectl-release-tests --bench gitops_promote --profile dev";
/// Upper bound of one plugin command.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(600);
/// Pause before each timed run (not timed), so the setup's tail does not land in it.
const SETTLE: Duration = Duration::from_millis(500);
/// The issue's goals: one app, and the many-app case (stated for 50 apps).
const GOAL_ONE: f64 = 1.0;
const GOAL_MANY: f64 = 10.0;
/// Argo CD Image Updater's default interval between registry polls, and Argo CD's Git poll.
const IMAGE_UPDATER_INTERVAL: f64 = 120.0;
const ARGO_CD_POLL: f64 = 180.0;
/// Label on every Deployment of the many-app case, and the environment label.
const BENCH_LABEL: &str = "kubectl-release.io/bench";
const ENV_LABEL: &str = "kubectl-release.io/bench-env";
const SETUP_CONCURRENCY: usize = 8;
/// What the plugin's GitOps commits are authored as.
const AUTHOR: &str = "{name: Release Bot, email: release-bot@example.com}";

fn main() -> Result<()> {
    // `cargo bench` passes --bench; `cargo test --benches` does not: then only say what this is,
    // rather than start a control plane for minutes.
    if !std::env::args().any(|a| a == "--bench") {
        println!("gitops_promote: a benchmark; run it with `{RERUN}`");
        return Ok(());
    }
    let cfg = Config::from_env()?;
    let tools = Tools::find()?;
    let load_at_start = loadavg();

    // Started outside the runtime: it blocks until the control plane is ready.
    let env = TestEnv::shared();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(bench(env, &tools, &cfg, &load_at_start))
}

#[derive(Debug, Clone)]
struct Config {
    rounds_one: usize,
    rounds_many: usize,
    apps: usize,
    /// `--concurrency` values of the many-app case; `None` passes no flag (the plugin's default).
    concurrency: Vec<Option<u16>>,
}

fn env_num(name: &str, default: usize) -> Result<usize> {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .with_context(|| format!("{name}={v} is not a number")),
        Err(_) => Ok(default),
    }
}

impl Config {
    fn from_env() -> Result<Config> {
        let concurrency =
            std::env::var("BENCH_CONCURRENCY").unwrap_or_else(|_| "default,50".into());
        let concurrency = concurrency
            .split(',')
            .map(|c| match c.trim() {
                "default" => Ok(None),
                c => c
                    .parse::<u16>()
                    .ok()
                    .filter(|&c| c > 0)
                    .map(Some)
                    .with_context(|| {
                        format!(
                            "BENCH_CONCURRENCY: {c:?} is neither `default` nor a positive number"
                        )
                    }),
            })
            .collect::<Result<Vec<_>>>()?;
        let cfg = Config {
            rounds_one: env_num("BENCH_ROUNDS", 5)?,
            rounds_many: env_num("BENCH_ROUNDS_50", 3)?,
            apps: env_num("BENCH_APPS", 50)?,
            concurrency,
        };
        ensure!(
            cfg.rounds_one >= 1 && cfg.apps >= 1,
            "BENCH_ROUNDS and BENCH_APPS must be at least 1"
        );
        Ok(cfg)
    }
}

/// The binary under test.
struct Tools {
    plugin: PathBuf,
    log_dir: Option<PathBuf>,
    /// `--concurrency`'s default, as `promote --help` states it.
    default_concurrency: String,
}

impl Tools {
    fn find() -> Result<Tools> {
        let plugin = kubectl_release_tests::bench::measured_plugin()?;
        let log_dir = std::env::var_os("BENCH_PLUGIN_LOG").map(PathBuf::from);
        if let Some(dir) = &log_dir {
            std::fs::create_dir_all(dir)?;
        }
        let help = std::process::Command::new(&plugin)
            .args(["promote", "--help"])
            .output()
            .with_context(|| format!("cannot run {} promote --help", plugin.display()))?;
        let help = String::from_utf8_lossy(&help.stdout);
        let default_concurrency = help
            .lines()
            .find(|l| l.contains("--concurrency"))
            .and_then(|l| l.split_once("[default: "))
            .and_then(|(_, rest)| rest.split_once(']'))
            .map_or_else(|| "?".to_string(), |(d, _)| d.to_string());
        Ok(Tools {
            plugin,
            log_dir,
            default_concurrency,
        })
    }

    fn describe(&self) -> String {
        kubectl_release_tests::bench::describe_binary(&self.plugin)
    }

    fn label(&self, concurrency: Option<u16>) -> String {
        match concurrency {
            Some(c) => format!("--concurrency {c}"),
            None => format!("default --concurrency ({})", self.default_concurrency),
        }
    }

    /// Runs the plugin in `dir` within [`COMMAND_TIMEOUT`]; its stderr goes to
    /// `BENCH_PLUGIN_LOG`. The caller judges the exit code.
    async fn plugin(
        &self,
        env: &TestEnv,
        dir: &Path,
        args: &[&str],
        tag: &str,
    ) -> Result<CmdOutput> {
        let mut cmd = tokio::process::Command::new(&self.plugin);
        cmd.args(args)
            .current_dir(dir)
            .env("KUBECONFIG", env.kubeconfig())
            .env("NO_COLOR", "1")
            .kill_on_drop(true);
        let out = match tokio::time::timeout(COMMAND_TIMEOUT, run(&mut cmd)).await {
            Ok(out) => out,
            Err(_) => bail!(
                "kubectl-release {} did not finish within {COMMAND_TIMEOUT:?}",
                args.join(" ")
            ),
        };
        if let Some(dir) = &self.log_dir {
            std::fs::write(dir.join(format!("{tag}.log")), &out.stderr)?;
        }
        Ok(out)
    }
}

/// `/proc/loadavg` (1, 5 and 15 minute load, runnable/all tasks): the machine is shared.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg").map_or_else(
        |e| format!("? ({e})"),
        |s| s.split_whitespace().take(4).collect::<Vec<_>>().join(" "),
    )
}

fn kustomization(namespace: &str, image: &str, tag: &str) -> String {
    format!(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: {namespace}\n\
         resources:\n  - deployment.yaml\n\
         images:\n  # kubectl-release pins the digest here\n  - name: {image}\n    newTag: {tag}\n"
    )
}

fn deployment_yaml(image: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  labels:\n    {BENCH_LABEL}: gitops-promote\n    {ENV_LABEL}: production\n\
         spec:\n  replicas: 1\n  selector:\n    matchLabels: {{app: web}}\n  template:\n    metadata:\n      labels: {{app: web}}\n    spec:\n      containers:\n        - name: web\n          image: {image}\n"
    )
}

/// release.yaml of an app: qa direct, production a GitOps environment at `path` of `repo`.
fn release_yaml(
    app: &str,
    image: &str,
    qa: &str,
    production: &str,
    repo: &str,
    path: &str,
) -> String {
    format!(
        "apiVersion: kubectl-release.io/v1alpha1\nkind: ReleaseConfig\napp: {app}\nimage: {image}\n\
         environments:\n  - name: qa\n    context: qa\n    namespace: {qa}\n\
         \x20 - name: production\n    context: production\n    namespace: {production}\n    promoteFrom: qa\n\
         \x20   gitops:\n      repo: {repo}\n      branch: main\n      path: {path}\n\
         \x20     author: {AUTHOR}\n"
    )
}

/// A fake 40-hex commit, as CI would tag images with.
fn commit(app: &str, which: &str) -> String {
    hex::encode(sha2::Sha256::digest(format!("{app}/{which}").as_bytes()))[..40].to_string()
}

const WHICH: [&str; 2] = ["A", "B"];

async fn bench(
    env: &'static TestEnv,
    tools: &Tools,
    cfg: &Config,
    load_at_start: &str,
) -> Result<()> {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let git = run(tokio::process::Command::new("git").arg("--version")).await;
    println!(
        "GitOps promote benchmark: kubectl-release promote qa production, process start → commit on the remote"
    );
    println!(
        "  control plane   {} (v1.20.2, fake kubelet: pods ready 1 s after start), up in {:.1?}",
        env.apiserver(),
        env.started_in()
    );
    println!("  kubectl-release {}", tools.describe());
    println!(
        "  git             {} (the plugin's git; the remote is a bare repository on local disk)",
        git.stdout.trim()
    );
    println!(
        "  one app         {} rounds (BENCH_ROUNDS) after one warm-up round; its own deployment repository",
        cfg.rounds_one
    );
    println!(
        "  many apps       {} apps (BENCH_APPS) into ONE deployment repository, {} rounds (BENCH_ROUNDS_50) x [{}] (BENCH_CONCURRENCY); {cpus} CPUs",
        cfg.apps,
        cfg.rounds_many,
        cfg.concurrency
            .iter()
            .map(|c| tools.label(*c))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "  anchors         Argo CD Image Updater polls the registry every {IMAGE_UPDATER_INTERVAL:.0} s: a new digest waits {:.0} s on average (worst {IMAGE_UPDATER_INTERVAL:.0} s) before its commit; Argo CD then polls Git every {ARGO_CD_POLL:.0} s ({:.0} s on average)",
        IMAGE_UPDATER_INTERVAL / 2.0,
        ARGO_CD_POLL / 2.0
    );
    println!("  load at start   {load_at_start} (/proc/loadavg)");
    println!();

    let admin = env.client("admin").await;
    let one = one_app(env, tools, cfg.rounds_one).await?;
    let many = many_apps(env, tools, &admin, cfg).await?;

    let load_at_end = loadavg();
    println!("  load at end     {load_at_end} (/proc/loadavg)");
    println!();

    let build = if tools.plugin.components().any(|c| c.as_os_str() == "debug") {
        "DEBUG build of the plugin"
    } else {
        "release build of the plugin"
    };
    println!(
        "== summary (wall time of kubectl-release promote qa production, process start → exit = commit(s) on the remote, no --wait; {build}; local bare repository)"
    );
    println!(
        "{}",
        one.summary(1, GOAL_ONE, &format!("N={}", cfg.rounds_one))
    );
    for run in &many {
        println!(
            "{}",
            run.summary(cfg.apps, GOAL_MANY, &format!("N={}", cfg.rounds_many))
        );
    }
    println!(
        "anchors: Image Updater polls every {IMAGE_UPDATER_INTERVAL:.0} s, so a digest waits {:.0} s on average (worst {IMAGE_UPDATER_INTERVAL:.0} s) before its commit; Argo CD then polls Git every {ARGO_CD_POLL:.0} s (a commit waits {:.0} s on average, worst {ARGO_CD_POLL:.0} s, unless a webhook tells it)",
        IMAGE_UPDATER_INTERVAL / 2.0,
        ARGO_CD_POLL / 2.0
    );
    println!("load {load_at_start} at start, {load_at_end} at end; {cpus} CPUs");
    println!(
        "rerun: BENCH_ROUNDS={} BENCH_ROUNDS_50={} BENCH_APPS={} {RERUN}   (or: bash tests/bench-gitops.sh [ROUNDS])",
        cfg.rounds_one, cfg.rounds_many, cfg.apps
    );
    Ok(())
}

/// The timed runs of one case.
struct Series {
    label: String,
    walls: Vec<Duration>,
    /// Promotions that ended `committed`, and all promotions.
    committed: usize,
    promotions: usize,
    /// Pushes that had to rebase, and the highest attempt seen (1: none did).
    rebased: usize,
    max_attempt: u32,
    /// Promotions that did not end `committed`, by their first line.
    failures: Vec<String>,
}

impl Series {
    fn new(label: String) -> Series {
        Series {
            label,
            walls: Vec::new(),
            committed: 0,
            promotions: 0,
            rebased: 0,
            max_attempt: 1,
            failures: Vec::new(),
        }
    }

    fn print(&self, goal: f64) {
        let m = median(&self.walls);
        println!(
            "  {} (N={}): median {m:.2} s  min {:.2} s  max {:.2} s; goal < {goal:.0} s: {}; {:.4} of the {IMAGE_UPDATER_INTERVAL:.0} s anchor ({:.0}x sooner)",
            self.label,
            self.walls.len(),
            min(&self.walls),
            max(&self.walls),
            self.met(goal),
            m / IMAGE_UPDATER_INTERVAL,
            IMAGE_UPDATER_INTERVAL / m
        );
        println!(
            "    {} of {} promotions committed; {} of the landed pushes rebased first, max attempt {}",
            self.committed, self.promotions, self.rebased, self.max_attempt
        );
        for (why, n) in self.reasons() {
            println!("    FAILED x{n}: {why}");
        }
    }

    /// The distinct reasons of the failures, each with how many promotions it ended.
    fn reasons(&self) -> Vec<(&str, usize)> {
        let mut counted: Vec<(&str, usize)> = Vec::new();
        for f in &self.failures {
            match counted.iter_mut().find(|(why, _)| why == f) {
                Some((_, n)) => *n += 1,
                None => counted.push((f.as_str(), 1)),
            }
        }
        counted.sort_by_key(|c| std::cmp::Reverse(c.1));
        counted
    }

    fn met(&self, goal: f64) -> &'static str {
        if !self.failures.is_empty() {
            "NOT met (promotions failed)"
        } else if median(&self.walls) < goal {
            "met"
        } else {
            "not met"
        }
    }

    fn summary(&self, apps: usize, goal: f64, n: &str) -> String {
        let m = median(&self.walls);
        let mut line = format!(
            "{apps} app{}, {}: median {m:.2} s (min {:.2}, max {:.2}; {n}), goal < {goal:.0} s: {}; {:.4} of Image Updater's {IMAGE_UPDATER_INTERVAL:.0} s interval ({:.0}x sooner than one interval, {:.0}x than its {:.0} s average wait)",
            if apps == 1 { "" } else { "s" },
            self.label,
            min(&self.walls),
            max(&self.walls),
            self.met(goal),
            m / IMAGE_UPDATER_INTERVAL,
            IMAGE_UPDATER_INTERVAL / m,
            IMAGE_UPDATER_INTERVAL / 2.0 / m,
            IMAGE_UPDATER_INTERVAL / 2.0,
        );
        if apps > 1 {
            let _ = write!(
                line,
                "; {} of {} landed pushes rebased first, max attempt {}",
                self.rebased, self.promotions, self.max_attempt
            );
        }
        if !self.failures.is_empty() {
            let reasons: Vec<String> = self
                .reasons()
                .iter()
                .map(|(why, n)| format!("{n} x {why}"))
                .collect();
            let _ = write!(
                line,
                "; {} of {} promotions FAILED: {}",
                self.failures.len(),
                self.promotions,
                reasons.join(" | ")
            );
        }
        line
    }
}

/// The attempt a report's warning says the push took (`rebased and pushed on attempt N`).
fn push_attempt(report: &Value) -> Option<u32> {
    report["warnings"]
        .as_array()?
        .iter()
        .filter_map(Value::as_str)
        .find_map(|w| {
            let rest = w.split_once("rebased and pushed on attempt ")?.1;
            rest.trim_end_matches(|c: char| !c.is_ascii_digit())
                .parse()
                .ok()
        })
}

/// A failure's first line without what makes it unique (`promoting app-007 to production
/// revision 4: `, the repository's path), so equal failures count together.
fn gist(message: &str, repo: &str) -> String {
    let first = message.lines().next().unwrap_or_default();
    let first = match first.split_once(" revision ") {
        Some((head, rest)) if head.starts_with("promoting ") => {
            rest.split_once(": ").map_or(first, |(_, why)| why)
        }
        _ => first,
    };
    first.replace(repo, "<deploy repo>")
}

// --- one app -------------------------------------------------------------------------------

async fn one_app(env: &'static TestEnv, tools: &Tools, rounds: usize) -> Result<Series> {
    const PATH: &str = "apps/web/production";
    let started = Instant::now();
    let mut app = App::new("bench-go1", 2).await;
    let commits = app.commits();
    for c in &commits {
        app.push(c).await;
    }
    let repo = DeployRepo::new(&[
        (
            &format!("{PATH}/kustomization.yaml"),
            kustomization(app.production.name(), &app.image, &commits[0]),
        ),
        (
            &format!("{PATH}/deployment.yaml"),
            deployment_yaml(&format!("{}:bootstrap", app.image)),
        ),
    ]);
    std::fs::write(
        app.repo.path().join("release.yaml"),
        release_yaml(
            &app.name,
            &app.image,
            app.qa.name(),
            app.production.name(),
            &repo.url(),
            PATH,
        ),
    )?;
    repo.sync(env, "main", PATH).await;
    let client = env.client("admin").await;
    apply(
        &client,
        app.qa.name(),
        &deployment("web")
            .image(format!("{}:{}", app.image, commits[0]))
            .build(),
    )
    .await
    .context("create qa's Deployment")?;
    println!(
        "== one app: set up in {:.1?} (app {}, qa {}, production {} synced on commit A {})",
        started.elapsed(),
        app.name,
        app.qa.name(),
        app.production.name(),
        &commits[0][..7]
    );

    let mut series = Series::new("promote qa production".into());
    // What the repository pins (0: A, 1: B).
    let mut pinned = 0;
    for round in 0..=rounds {
        let target = 1 - pinned;
        let moved = Instant::now();
        let out = tools
            .plugin(
                env,
                app.repo.path(),
                &["deploy", "qa", &commits[target]],
                &format!("one-deploy-r{round}"),
            )
            .await?;
        ensure!(out.success(), "deploy qa {} failed: {out}", WHICH[target]);
        let moved = moved.elapsed();
        tokio::time::sleep(SETTLE).await;

        let before = repo.count("main");
        let started = Instant::now();
        let out = tools
            .plugin(
                env,
                app.repo.path(),
                &["promote", "qa", "production", "-o", "json"],
                &format!("one-promote-r{round}"),
            )
            .await?;
        let wall = started.elapsed();
        let report: Value = serde_json::from_str(&out.stdout)
            .with_context(|| format!("the plugin's report is not JSON: {out}"))?;
        ensure!(
            out.success() && report["outcome"] == "committed",
            "promote ended {} (exit {:?}): {out}",
            report["outcome"],
            out.code()
        );
        let after = repo.count("main");
        ensure!(
            after == before + 1,
            "the remote got {} new commits, not 1",
            after - before
        );
        let head = repo.head("main");
        ensure!(
            report["gitops"]["commit"] == head.as_str(),
            "the report's commit {} is not main's head {head}",
            report["gitops"]["commit"]
        );
        let digest = &app.digests[&commits[target]];
        let k = repo.show("main", &format!("{PATH}/kustomization.yaml"));
        ensure!(
            k.contains(digest.as_str()),
            "the kustomization does not pin {digest}:\n{k}"
        );
        pinned = target;
        let attempt = push_attempt(&report).unwrap_or(1);
        let name = if round == 0 {
            "warm-up ".to_string()
        } else {
            format!("round {round:<2}")
        };
        println!(
            "  {name} qa → {} (deploy qa {:.2} s, not timed); promote {:.3} s, committed {} (push attempt {attempt})",
            WHICH[target],
            moved.as_secs_f64(),
            wall.as_secs_f64(),
            &head[..7]
        );
        if round > 0 {
            series.walls.push(wall);
            series.promotions += 1;
            series.committed += 1;
            if attempt > 1 {
                series.rebased += 1;
            }
            series.max_attempt = series.max_attempt.max(attempt);
        }
    }
    series.print(GOAL_ONE);
    println!();
    Ok(series)
}

// --- many apps -----------------------------------------------------------------------------

/// One app of the monorepo.
struct ManyApp {
    name: String,
    image: String,
    qa: Namespace,
    production: Namespace,
    /// `<image>@<digest>` of commits A and B, and the bare digests.
    pinned: [String; 2],
    digests: [String; 2],
    path: String,
    /// What qa runs, and what the repository pins (0: A, 1: B).
    qa_on: usize,
    git_on: usize,
}

async fn many_apps(
    env: &'static TestEnv,
    tools: &Tools,
    admin: &Client,
    cfg: &Config,
) -> Result<Vec<Series>> {
    let started = Instant::now();
    let root = tempfile::Builder::new().prefix("bench-gitops-").tempdir()?;
    let seeded: Vec<ManyApp> = futures::stream::iter(0..cfg.apps)
        .map(|i| async move {
            let name = format!("app-{i:03}");
            let (qa_prefix, production_prefix) = (format!("gp{i:03}-qa"), format!("gp{i:03}-prod"));
            let (qa, production) =
                futures::join!(env.namespace(&qa_prefix), env.namespace(&production_prefix));
            let repository = format!("bench/gitops/{name}");
            let image = format!("{}/{repository}", env.registry());
            let mut digests = [String::new(), String::new()];
            for (slot, which) in digests.iter_mut().zip(WHICH) {
                *slot = push_image(env.registry(), &repository, &commit(&name, which)).await?;
            }
            Ok::<_, anyhow::Error>(ManyApp {
                pinned: [
                    format!("{image}@{}", digests[0]),
                    format!("{image}@{}", digests[1]),
                ],
                digests,
                path: format!("apps/{name}/production"),
                name,
                image,
                qa,
                production,
                qa_on: 0,
                git_on: 0,
            })
        })
        .buffer_unordered(SETUP_CONCURRENCY)
        .try_collect()
        .await?;
    let mut apps = seeded;
    apps.sort_by(|a, b| a.name.cmp(&b.name));

    let mut files = Vec::new();
    for app in &apps {
        files.push((
            format!("{}/kustomization.yaml", app.path),
            kustomization(app.production.name(), &app.image, &commit(&app.name, "A")),
        ));
        files.push((
            format!("{}/deployment.yaml", app.path),
            deployment_yaml(&format!("{}:bootstrap", app.image)),
        ));
    }
    let file_refs: Vec<(&str, String)> =
        files.iter().map(|(p, t)| (p.as_str(), t.clone())).collect();
    let repo = DeployRepo::new(&file_refs);
    for app in &apps {
        let dir = root.path().join("services").join(&app.name);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(
            dir.join("release.yaml"),
            release_yaml(
                &app.name,
                &app.image,
                app.qa.name(),
                app.production.name(),
                &repo.url(),
                &app.path,
            ),
        )?;
    }
    futures::stream::iter(&apps)
        .map(|app| async {
            let web = deployment("web")
                .image(&app.pinned[0])
                .replicas(1)
                .labels([(BENCH_LABEL, "gitops-promote"), (ENV_LABEL, "qa")])
                .build();
            apply(admin, app.qa.name(), &web)
                .await
                .with_context(|| format!("create qa's Deployment in {}", app.qa.name()))?;
            repo.sync(env, "main", &app.path).await;
            Ok::<_, anyhow::Error>(())
        })
        .buffer_unordered(SETUP_CONCURRENCY)
        .try_collect::<Vec<_>>()
        .await?;
    let mut want: HashMap<String, String> = HashMap::new();
    for app in &apps {
        want.insert(app.qa.name().to_string(), app.pinned[0].clone());
        want.insert(
            app.production.name().to_string(),
            format!("{}:{}", app.image, commit(&app.name, "A")),
        );
    }
    wait_images(
        admin,
        &format!("{BENCH_LABEL}=gitops-promote"),
        &want,
        Duration::from_secs(120 + 2 * cfg.apps as u64),
    )
    .await
    .context("the benchmark's Deployments never all became available")?;
    println!(
        "== {} apps: set up in {:.1?} ({} namespaces, {} images, one deployment repository of {} files synced with kubectl apply -k: production runs A); configs in {}",
        apps.len(),
        started.elapsed(),
        apps.len() * 2,
        apps.len() * 2,
        files.len(),
        root.path().display()
    );

    let mut series: Vec<Series> = cfg
        .concurrency
        .iter()
        .map(|c| Series::new(format!("promote --all, {}", tools.label(*c))))
        .collect();
    let root_arg = root.path().to_string_lossy().into_owned();
    for round in 1..=cfg.rounds_many {
        for (s, &concurrency) in series.iter_mut().zip(&cfg.concurrency) {
            let moved = move_qa(admin, &mut apps).await?;
            tokio::time::sleep(SETTLE).await;

            let mut args = vec![
                "promote",
                "--all",
                "qa",
                "production",
                "-f",
                &root_arg,
                "-o",
                "json",
            ];
            let c = concurrency.map(|c| c.to_string());
            if let Some(c) = &c {
                args.extend(["--concurrency", c.as_str()]);
            }
            let before = repo.count("main");
            let started = Instant::now();
            let out = tools
                .plugin(
                    env,
                    root.path(),
                    &args,
                    &format!(
                        "many-promote-r{round}-c{}",
                        c.as_deref().unwrap_or("default")
                    ),
                )
                .await?;
            let wall = started.elapsed();
            let after = repo.count("main");
            let results: Value = serde_json::from_str(&out.stdout)
                .with_context(|| format!("promote --all's output is not JSON: {out}"))?;
            let results = results
                .as_array()
                .context("promote --all -o json is not a list")?;
            ensure!(
                results.len() == apps.len(),
                "promote --all: {} results for {} apps: {out}",
                results.len(),
                apps.len()
            );
            let by_name: HashMap<&str, usize> = apps
                .iter()
                .enumerate()
                .map(|(i, a)| (a.name.as_str(), i))
                .collect();
            let (mut committed, mut rebased, mut max_attempt) = (0, 0, 1);
            let mut failures = Vec::new();
            let mut landed = Vec::new();
            for r in results {
                let name = r["app"].as_str().unwrap_or("?");
                if r["outcome"] == "committed" && r["exitCode"] == 0 {
                    committed += 1;
                    let attempt = push_attempt(&r["report"]).unwrap_or(1);
                    if attempt > 1 {
                        rebased += 1;
                    }
                    max_attempt = max_attempt.max(attempt);
                    let i = *by_name
                        .get(name)
                        .with_context(|| format!("promote --all reported an unknown app {name}"))?;
                    landed.push(i);
                } else {
                    let message = r["message"].as_str().unwrap_or_default();
                    failures.push(format!(
                        "{} ({})",
                        gist(message, &repo.url()),
                        r["outcome"].as_str().unwrap_or("?")
                    ));
                }
            }
            ensure!(
                after - before == committed,
                "the remote got {} new commits, but {committed} promotions say they committed",
                after - before
            );
            for &i in &landed {
                let app = &mut apps[i];
                let k = repo.show("main", &format!("{}/kustomization.yaml", app.path));
                ensure!(
                    k.contains(app.digests[app.qa_on].as_str()),
                    "{}'s kustomization does not pin qa's digest {}:\n{k}",
                    app.name,
                    app.digests[app.qa_on]
                );
                app.git_on = app.qa_on;
            }
            println!(
                "  round {round:<2} {:<42} {:>6.2} s  {committed}/{} committed, {} new commits on main, {rebased} of them rebased first (max attempt {max_attempt}) | qa moved in {:.1} s (not timed){}",
                s.label,
                wall.as_secs_f64(),
                apps.len(),
                after - before,
                moved.as_secs_f64(),
                if failures.is_empty() {
                    String::new()
                } else {
                    format!(" | {} FAILED, e.g. {}", failures.len(), failures[0])
                }
            );
            s.walls.push(wall);
            s.promotions += apps.len();
            s.committed += committed;
            s.rebased += rebased;
            s.max_attempt = s.max_attempt.max(max_attempt);
            s.failures.extend(failures);
        }
    }
    for s in &series {
        s.print(GOAL_MANY);
    }
    println!();
    drop(repo);
    drop(root);
    Ok(series)
}

/// Moves every app's qa to the commit its repository does not pin (not timed): the qa
/// Deployments are patched to that digest, then waited for. Returns how long it took.
async fn move_qa(admin: &Client, apps: &mut [ManyApp]) -> Result<Duration> {
    let started = Instant::now();
    for app in apps.iter_mut() {
        app.qa_on = 1 - app.git_on;
    }
    futures::stream::iter(apps.iter())
        .map(|app| async move {
            let api: Api<Deployment> = Api::namespaced(admin.clone(), app.qa.name());
            let patch = serde_json::json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": app.pinned[app.qa_on]}]}}}});
            api.patch("web", &PatchParams::default(), &Patch::Strategic(&patch))
                .await
                .with_context(|| format!("move qa in {}", app.qa.name()))
        })
        .buffer_unordered(SETUP_CONCURRENCY)
        .try_collect::<Vec<_>>()
        .await?;
    let want: HashMap<String, String> = apps
        .iter()
        .map(|a| (a.qa.name().to_string(), a.pinned[a.qa_on].clone()))
        .collect();
    wait_images(
        admin,
        &format!("{ENV_LABEL}=qa"),
        &want,
        Duration::from_secs(120 + 2 * apps.len() as u64),
    )
    .await
    .context("qa never ran the commits to promote")?;
    Ok(started.elapsed())
}

/// Waits until every Deployment the label `selector` picks in a namespace of `want` has rolled
/// out the image `want` says for its namespace: one LIST every 300 ms.
async fn wait_images(
    client: &Client,
    selector: &str,
    want: &HashMap<String, String>,
    timeout: Duration,
) -> Result<()> {
    let api: Api<Deployment> = Api::all(client.clone());
    let deadline = Instant::now() + timeout;
    loop {
        let list = api.list(&ListParams::default().labels(selector)).await?;
        let done: HashMap<String, bool> = list
            .items
            .iter()
            .map(|d| {
                let image = d
                    .spec
                    .template
                    .spec
                    .as_ref()
                    .and_then(|s| s.containers.first())
                    .and_then(|c| c.image.as_deref());
                let ns = d.namespace().unwrap_or_default();
                let ok = deployment_rolled_out(d)
                    && image.is_some()
                    && image == want.get(&ns).map(String::as_str);
                (ns, ok)
            })
            .collect();
        let pending: Vec<&String> = want
            .keys()
            .filter(|ns| done.get(*ns) != Some(&true))
            .collect();
        if pending.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "timed out after {timeout:?}; {} of {} Deployments not rolled out, e.g. in {:?}",
                pending.len(),
                want.len(),
                pending.iter().take(5).collect::<Vec<_>>()
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
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
