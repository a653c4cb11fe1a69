//! Jobs: what a `pre-deploy` Job (a migration) adds to a release besides its own run time
//! (issue #15). Not a test: it prints medians, minimums and maximums against the goal (at most
//! 100 ms added), then a summary block to paste into the README.
//!
//! Two apps, each one Deployment `web` (3 replicas) in its own qa namespace, each with images
//! for commits A and B; one's release.yaml declares a `pre-deploy` Job `migrate` (`echo …;
//! sleep 1; echo …`, acted out by the test kubelet), the other's declares no Jobs. Each round
//! deploys the other commit to both (which goes first alternates per round, so noise from the
//! shared machine hits both); the Job side passes `--rerun-jobs` (both sides do, for the same
//! command line), since a migration that succeeded for the same digests is otherwise skipped.
//!
//! What is measured, per round, with watches of the bench's own on the cluster (started before
//! the plugin, so they see every change; local `Instant`s, not the seconds-resolution
//! timestamps of the objects):
//!
//! (a) pod finished → rollout started: from the Job's pod turning `Succeeded` to the
//!     Deployment's `metadata.generation` changing (the plugin's PATCH). Split at the Job's
//!     `Complete` condition: pod → Complete is the Job controller, Complete → PATCH the plugin
//!     (its watch of the Job, the logs' last lines, the journal, the patch).
//! (b) overhead: median wall time of the deploy with the Job − median without − the Job's run
//!     time (its pod `Running` → `Succeeded` as watched; also shown against the script's 1 s).
//!     Also start → PATCH on both sides, where the difference lives.
//!
//! ```sh
//! cargo build --release -p kubectl-release     # the binary measured ($KUBECTL_RELEASE_BIN)
//! cargo bench -p kubectl-release-tests --bench jobs_overhead
//! bash tests/bench-jobs.sh [ROUNDS]              # the same, building what it needs
//! ```
//!
//! Environment: `BENCH_ROUNDS` (default 7), `KUBECTL_RELEASE_BIN` (default: target/release,
//! else target/debug), `BENCH_PLUGIN_LOG=DIR` (keeps every plugin run's stderr there; combine
//! with `RUST_LOG` for timings of its phases).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use futures::StreamExt as _;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::watcher::{self, Event};
use kube::{Api, ResourceExt as _};
use kubectl_release_tests::{
    App, CmdOutput, TestEnv, apply, deployment, deployment_rolled_out, run, wait_for_all,
};

/// Upper bound of one command (the plugin's own rollout timeout is 5 minutes).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(300);
/// Pause between timed steps (not timed), so one side's tail does not land in the next one.
const SETTLE: Duration = Duration::from_millis(500);
const REPLICAS: i32 = 3;
/// The migration's own run time, as its script says.
const JOB_SLEEP: Duration = Duration::from_secs(1);
/// The issue's goal: time a release with one Job adds besides the Job's run, at most.
const GOAL: Duration = Duration::from_millis(100);
const RERUN: &str = "cargo build --release -p kubectl-release && cargo bench -p kubectl-release-tests --bench jobs_overhead";

fn main() -> Result<()> {
    // `cargo bench` passes --bench; `cargo test --benches` does not: then only say what this is,
    // rather than start a control plane for minutes.
    if !std::env::args().any(|a| a == "--bench") {
        println!("jobs_overhead: a benchmark; run it with `{RERUN}`");
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

/// The binary measured.
struct Tools {
    plugin: PathBuf,
    log_dir: Option<PathBuf>,
}

impl Tools {
    fn find() -> Result<Tools> {
        let plugin = kubectl_release_tests::bench::measured_plugin()?;
        let log_dir = std::env::var_os("BENCH_PLUGIN_LOG").map(PathBuf::from);
        if let Some(dir) = &log_dir {
            std::fs::create_dir_all(dir)?;
        }
        Ok(Tools { plugin, log_dir })
    }

    fn describe(&self) -> String {
        kubectl_release_tests::bench::describe_binary(&self.plugin)
    }

    fn is_debug(&self) -> bool {
        self.plugin.components().any(|c| c.as_os_str() == "debug")
    }
}

/// `/proc/loadavg` (1, 5 and 15 minute load, runnable/all tasks): the machine is shared.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg").map_or_else(
        |e| format!("? ({e})"),
        |s| s.split_whitespace().take(4).collect::<Vec<_>>().join(" "),
    )
}

/// One app of the comparison: with a `pre-deploy` Job, or without Jobs.
struct Side {
    with_job: bool,
    app: App,
    namespace: String,
    samples: Vec<Sample>,
}

/// What one timed deploy showed.
#[derive(Clone, Copy)]
struct Sample {
    /// Wall time of the command.
    wall: Duration,
    /// Start → the Deployment's generation changed (the PATCH).
    to_patch: Duration,
    /// With the Job only: what its watches saw.
    job: Option<JobTimes>,
}

#[derive(Clone, Copy)]
struct JobTimes {
    /// Start → the Job object appeared.
    to_created: Duration,
    /// The Job appeared → its pod `Running` (Job controller, scheduler, kubelet).
    created_to_running: Duration,
    /// The pod's `Running` → `Succeeded`: the Job's own run.
    run: Duration,
    /// The pod's `Succeeded` → the Job's `Complete` condition (the Job controller).
    succeeded_to_complete: Duration,
    /// The Job's `Complete` → the Deployment's generation changed (the plugin).
    complete_to_patch: Duration,
    /// The pod's `Succeeded` → the Deployment's generation changed: (a).
    succeeded_to_patch: Duration,
}

fn label(with_job: bool) -> &'static str {
    if with_job {
        "with a pre-deploy Job"
    } else {
        "without Jobs"
    }
}

/// release.yaml: qa in the app's qa namespace; `jobs` (YAML list items) when not empty.
fn write_config(app: &App, jobs: &str) {
    let jobs = if jobs.is_empty() {
        String::new()
    } else {
        format!("jobs:\n{jobs}")
    };
    let config = format!(
        "apiVersion: kubectl-release.io/v1alpha1\nkind: ReleaseConfig\napp: {name}\nimage: {image}\n\
         environments:\n  - name: qa\n    context: qa\n    namespace: {qa}\n{jobs}",
        name = app.name,
        image = app.image,
        qa = app.qa.name(),
    );
    std::fs::write(app.repo.path().join("release.yaml"), config).expect("write release.yaml");
}

fn migration() -> String {
    format!(
        "  - name: migrate\n    phase: pre-deploy\n    command: [sh, -c, \"echo applying 0042_add_index; sleep {}; echo migrated\"]\n",
        JOB_SLEEP.as_secs()
    )
}

async fn bench(
    env: &'static TestEnv,
    tools: &Tools,
    rounds: usize,
    load_at_start: &str,
) -> Result<()> {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("jobs benchmark: a release with one pre-deploy Job vs the same release without Jobs");
    println!(
        "  control plane   {} (v1.20.2, fake kubelet: pods ready 1 s after start), up in {:.1?}",
        env.apiserver(),
        env.started_in()
    );
    println!("  kubectl-release {}", tools.describe());
    println!(
        "  app             1 Deployment x{REPLICAS} per side; the Job: `echo; sleep {}; echo`",
        JOB_SLEEP.as_secs()
    );
    println!("  rounds          {rounds} (BENCH_ROUNDS), after a warm-up round; {cpus} CPUs");
    println!("  load at start   {load_at_start} (/proc/loadavg)");
    println!();

    let setup = Instant::now();
    let mut sides = [
        Side::new(env, "bench-jobs", true).await?,
        Side::new(env, "bench-nojobs", false).await?,
    ];
    println!(
        "== set up in {:.1?} (namespaces {} with the Job, {} without)",
        setup.elapsed(),
        sides[0].namespace,
        sides[1].namespace
    );

    for round in 0..=rounds {
        let which = if round % 2 == 0 { 1 } else { 0 };
        let mut order = [0, 1];
        order.rotate_left(round % 2);
        let mut line = if round == 0 {
            format!("  warm-up  {}:", if which == 0 { "A" } else { "B" })
        } else {
            format!("  round {round:<2} {}:", if which == 0 { "A" } else { "B" })
        };
        for i in order {
            tokio::time::sleep(SETTLE).await;
            let side = &sides[i];
            let sample = side.deploy(env, tools, which, &format!("r{round}")).await?;
            side.check(env, which).await?;
            let _ = write!(
                line,
                "  {} {:.2} s (PATCH at {:.2} s",
                label(side.with_job),
                sample.wall.as_secs_f64(),
                sample.to_patch.as_secs_f64()
            );
            if let Some(job) = sample.job {
                let _ = write!(
                    line,
                    ", Job run {:.2} s, pod Succeeded → PATCH {:.0} ms",
                    job.run.as_secs_f64(),
                    ms(job.succeeded_to_patch)
                );
            }
            line.push(')');
            if round > 0 {
                sides[i].samples.push(sample);
            }
        }
        println!("{line}");
    }
    println!();

    let load_at_end = loadavg();
    let summary = report(&sides[0].samples, &sides[1].samples);
    println!("  load at end     {load_at_end} (/proc/loadavg)");
    println!();
    println!(
        "== summary (N={rounds} rounds each, same control plane, sides interleaved; {})",
        if tools.is_debug() {
            "DEBUG build of the plugin"
        } else {
            "release build of the plugin"
        }
    );
    for line in summary {
        println!("{line}");
    }
    println!("load {load_at_start} at start, {load_at_end} at end");
    println!("rerun: {RERUN}   (or: bash tests/bench-jobs.sh [ROUNDS])");
    Ok(())
}

/// Prints the figures; returns the summary lines.
fn report(with: &[Sample], without: &[Sample]) -> Vec<String> {
    let jobs: Vec<JobTimes> = with.iter().filter_map(|s| s.job).collect();
    let pick = |f: fn(&JobTimes) -> Duration| jobs.iter().map(f).collect::<Vec<_>>();
    let latency = pick(|j| j.succeeded_to_patch);
    let controller = pick(|j| j.succeeded_to_complete);
    let plugin = pick(|j| j.complete_to_patch);
    let job_run = pick(|j| j.run);
    let created = pick(|j| j.to_created);
    let to_running = pick(|j| j.created_to_running);
    let tail_with: Vec<Duration> = with
        .iter()
        .map(|s| s.wall.saturating_sub(s.to_patch))
        .collect();
    let tail_without: Vec<Duration> = without
        .iter()
        .map(|s| s.wall.saturating_sub(s.to_patch))
        .collect();
    let wall_with: Vec<Duration> = with.iter().map(|s| s.wall).collect();
    let wall_without: Vec<Duration> = without.iter().map(|s| s.wall).collect();
    let patch_with: Vec<Duration> = with.iter().map(|s| s.to_patch).collect();
    let patch_without: Vec<Duration> = without.iter().map(|s| s.to_patch).collect();

    let row = |what: &str, v: &[Duration]| {
        println!(
            "    {what:<44} median {:>7.0} ms  min {:>7.0} ms  max {:>7.0} ms",
            median(v) * 1e3,
            min(v) * 1e3,
            max(v) * 1e3
        );
    };
    println!(
        "  (a) pod finished → rollout started (N={}):",
        latency.len()
    );
    row("pod Succeeded → Deployment generation changed", &latency);
    row("  pod Succeeded → Job Complete (controller)", &controller);
    row("  Job Complete → generation changed (plugin)", &plugin);
    println!();
    println!("  (b) deploy wall time (N={}):", with.len());
    row(label(true), &wall_with);
    row(label(false), &wall_without);
    row("start → PATCH, with the Job", &patch_with);
    row("start → PATCH, without Jobs", &patch_without);
    row("start → Job created", &created);
    row("Job created → its pod Running", &to_running);
    row("Job run (pod Running → Succeeded)", &job_run);
    row("PATCH → exit (the rollout), with the Job", &tail_with);
    row("PATCH → exit (the rollout), without Jobs", &tail_without);

    let added = median(&wall_with) - median(&wall_without);
    let over_watched = added - median(&job_run);
    let over_script = added - JOB_SLEEP.as_secs_f64();
    let goal = GOAL.as_secs_f64();
    let met = |x: f64| if x <= goal { "met" } else { "not met" };
    println!(
        "    added by the Job: {:.0} ms; minus its run as watched ({:.0} ms): overhead {:.0} ms (goal <= {:.0} ms: {}); minus the script's {} s: {:.0} ms ({})",
        added * 1e3,
        median(&job_run) * 1e3,
        over_watched * 1e3,
        goal * 1e3,
        met(over_watched),
        JOB_SLEEP.as_secs(),
        over_script * 1e3,
        met(over_script)
    );
    println!();
    vec![
        format!(
            "jobs, pod Succeeded → rollout start (Deployment generation changed): median {:.0} ms, min {:.0} ms, max {:.0} ms (Job controller {:.0} ms + plugin {:.0} ms, medians)",
            median(&latency) * 1e3,
            min(&latency) * 1e3,
            max(&latency) * 1e3,
            median(&controller) * 1e3,
            median(&plugin) * 1e3
        ),
        format!(
            "jobs, deploy with one pre-deploy Job median {:.2} s, without median {:.2} s, Job run {:.2} s: overhead {:.0} ms (goal <= {:.0} ms: {}); against the script's {} s: {:.0} ms",
            median(&wall_with),
            median(&wall_without),
            median(&job_run),
            over_watched * 1e3,
            goal * 1e3,
            met(over_watched),
            JOB_SLEEP.as_secs(),
            over_script * 1e3
        ),
    ]
}

impl Side {
    /// An app with commits A and B pushed, its release.yaml, and its Deployment on A (not
    /// timed).
    async fn new(env: &'static TestEnv, prefix: &str, with_job: bool) -> Result<Side> {
        let mut app = App::new(prefix, 2).await;
        for commit in app.commits() {
            app.push(&commit).await;
        }
        write_config(&app, &if with_job { migration() } else { String::new() });
        let namespace = app.qa.name().to_string();
        let client = env.client("admin").await;
        apply(
            &client,
            &namespace,
            &deployment("web")
                .image(app.pinned(&app.commits()[0]))
                .replicas(REPLICAS)
                .build(),
        )
        .await
        .with_context(|| format!("create deployment web in {namespace}"))?;
        let side = Side {
            with_job,
            app,
            namespace,
            samples: Vec::new(),
        };
        side.check(env, 0).await?;
        Ok(side)
    }

    /// One timed deploy of commit `which` (0: A, 1: B), watched.
    async fn deploy(
        &self,
        env: &'static TestEnv,
        tools: &Tools,
        which: usize,
        tag: &str,
    ) -> Result<Sample> {
        let client = env.client("admin").await;
        let marks = Arc::new(Mutex::new(Marks::default()));
        let watches = [
            watch(
                Api::<Deployment>::namespaced(client.clone(), &self.namespace),
                watcher::Config::default().fields("metadata.name=web"),
                marks.clone(),
                on_deployment,
            )
            .await?,
            watch(
                Api::<Job>::namespaced(client.clone(), &self.namespace),
                watcher::Config::default(),
                marks.clone(),
                on_job,
            )
            .await?,
            watch(
                Api::<Pod>::namespaced(client, &self.namespace),
                watcher::Config::default().labels("job-name"),
                marks.clone(),
                on_pod,
            )
            .await?,
        ];
        let commit = &self.app.commits()[which];
        let mut cmd = tokio::process::Command::new(&tools.plugin);
        cmd.args(["deploy", "qa", commit, "--rerun-jobs", "-o", "json"])
            .current_dir(self.app.repo.path())
            .env("KUBECONFIG", self.app.env.kubeconfig())
            .env("NO_COLOR", "1");
        let started = Instant::now();
        let out = bounded(&mut cmd).await;
        let wall = started.elapsed();
        // The generation changed before the plugin exits; the other marks too. A moment for
        // the watches' last events to arrive, then they stop.
        tokio::time::sleep(Duration::from_millis(200)).await;
        for w in &watches {
            w.abort();
        }
        let out = out?;
        if let Some(dir) = &tools.log_dir {
            let side = if self.with_job { "job" } else { "nojob" };
            std::fs::write(dir.join(format!("{side}-{tag}.log")), &out.stderr)?;
        }
        ensure!(out.success(), "the plugin did not deploy: {out}");
        let report: serde_json::Value = serde_json::from_str(&out.stdout)
            .with_context(|| format!("the plugin's report is not JSON: {out}"))?;
        ensure!(
            report["outcome"] == "succeeded",
            "the plugin did not deploy (outcome {}): {out}",
            report["outcome"]
        );
        let marks = *marks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let since = |t: Option<Instant>, what: &str| {
            t.map(|t| t.saturating_duration_since(started))
                .with_context(|| format!("{what} was not seen: {out}"))
        };
        let to_patch = since(marks.generation, "the Deployment's generation change")?;
        let job = if self.with_job {
            ensure!(
                report["jobs"][0]["outcome"] == "succeeded",
                "the migration did not run and succeed (outcome {}): {out}",
                report["jobs"][0]["outcome"]
            );
            let at = |t: Option<Instant>, what: &str| {
                t.with_context(|| format!("{what} was not seen: {out}"))
            };
            let running = at(marks.pod_running, "the Job's pod Running")?;
            let succeeded = at(marks.pod_succeeded, "the Job's pod Succeeded")?;
            let complete = at(marks.job_complete, "the Job's Complete condition")?;
            let generation = at(marks.generation, "the Deployment's generation change")?;
            ensure!(
                generation > succeeded,
                "the Deployment changed before the Job's pod finished: {out}"
            );
            Some(JobTimes {
                to_created: since(marks.job_created, "the Job's creation")?,
                created_to_running: running.saturating_duration_since(
                    marks
                        .job_created
                        .context("the Job's creation was not seen")?,
                ),
                run: succeeded.saturating_duration_since(running),
                succeeded_to_complete: complete.saturating_duration_since(succeeded),
                complete_to_patch: generation.saturating_duration_since(complete),
                succeeded_to_patch: generation - succeeded,
            })
        } else {
            ensure!(
                report["jobs"].as_array().is_none_or(Vec::is_empty),
                "the side without Jobs ran Jobs: {out}"
            );
            None
        };
        Ok(Sample {
            wall,
            to_patch,
            job,
        })
    }

    /// The Deployment runs commit `which`'s image, rolled out. Not timed.
    async fn check(&self, env: &'static TestEnv, which: usize) -> Result<()> {
        let image = self.app.pinned(&self.app.commits()[which]);
        let api: Api<Deployment> = Api::namespaced(env.client("admin").await, &self.namespace);
        wait_for_all(
            &api,
            watcher::Config::default().fields("metadata.name=web"),
            COMMAND_TIMEOUT,
            |ds: &[Deployment]| {
                ds.len() == 1
                    && deployment_rolled_out(&ds[0])
                    && ds[0]
                        .spec
                        .template
                        .spec
                        .as_ref()
                        .and_then(|s| s.containers.first())
                        .and_then(|c| c.image.as_deref())
                        == Some(image.as_str())
            },
        )
        .await
        .with_context(|| format!("web in {} never ran {image}", self.namespace))?;
        Ok(())
    }
}

/// When the watches saw what happened during one deploy (first time each).
#[derive(Default, Clone, Copy)]
struct Marks {
    generation: Option<Instant>,
    job_created: Option<Instant>,
    job_complete: Option<Instant>,
    pod_running: Option<Instant>,
    pod_succeeded: Option<Instant>,
}

/// What a watch remembers of the objects that were there before the deploy.
#[derive(Default)]
struct Before {
    names: BTreeSet<String>,
    generation: Option<i64>,
}

fn mark(slot: &mut Option<Instant>) {
    if slot.is_none() {
        *slot = Some(Instant::now());
    }
}

fn on_deployment(d: &Deployment, before: &Before, marks: &mut Marks) {
    if let (Some(was), Some(now)) = (before.generation, d.metadata.generation)
        && now > was
    {
        mark(&mut marks.generation);
    }
}

fn on_job(job: &Job, before: &Before, marks: &mut Marks) {
    if before.names.contains(&job.name_any()) {
        return;
    }
    mark(&mut marks.job_created);
    let complete = job
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c.type_ == "Complete" && c.status == "True")
        });
    if complete {
        mark(&mut marks.job_complete);
    }
}

fn on_pod(pod: &Pod, before: &Before, marks: &mut Marks) {
    if before.names.contains(&pod.name_any()) {
        return;
    }
    match pod.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Running") => mark(&mut marks.pod_running),
        Some("Succeeded") => mark(&mut marks.pod_succeeded),
        _ => {}
    }
}

/// Starts a watch that calls `on` for every change after its first listing (what it lists
/// first is `Before`); returns once that listing is done, so nothing later is missed.
async fn watch<K>(
    api: Api<K>,
    config: watcher::Config,
    marks: Arc<Mutex<Marks>>,
    on: fn(&K, &Before, &mut Marks),
) -> Result<tokio::task::JoinHandle<()>>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + 'static,
{
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let mut events = watcher::watcher(api, config).boxed();
        let mut before = Before::default();
        let mut ready = Some(ready_tx);
        while let Some(event) = events.next().await {
            match event {
                // The first listing: what was there before the deploy.
                Ok(Event::InitApply(o)) if ready.is_some() => {
                    before.names.insert(o.name_any());
                    if before.generation.is_none() {
                        before.generation = o.meta().generation;
                    }
                }
                Ok(Event::InitDone) => {
                    if let Some(tx) = ready.take() {
                        let _ = tx.send(());
                    }
                }
                // Changes, and relistings after a watch error.
                Ok(Event::Apply(o) | Event::InitApply(o)) => {
                    let mut m = marks
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    on(&o, &before, &mut m);
                }
                Ok(_) => {}
                Err(e) => eprintln!("jobs_overhead: watch error (retrying): {e}"),
            }
        }
    });
    match tokio::time::timeout(Duration::from_secs(30), ready_rx).await {
        Ok(Ok(())) => Ok(task),
        _ => {
            task.abort();
            bail!("a watch did not list within 30 s")
        }
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

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
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
