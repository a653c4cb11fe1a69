//! `kubectl-release generate --all --check` over a monorepo of hundreds of apps (issue #18): the
//! CI gate that every app's generated manifests are what its spec renders to. Goal: under 2 s in
//! all for 300 apps, with the generator's compiled module cached.
//!
//! Not a test: it prints every run, the median, minimum and maximum, whether the goal is met, and
//! a summary block to paste into the README. What is timed is the wall time of the plugin's
//! command, from start to exit, as CI waits for it. No cluster: every run passes `--offline`, so
//! `generate` reads no cluster policy and talks to no API server (with a policy to read, each
//! context costs one GET more, once per run).
//!
//! Setup (not timed): a git repository with `services/app-NNN/release.yaml` for `BENCH_APPS`
//! apps, each with qa and production generated into `kubernetes/<env>` by the example module
//! `web-service-generator` (one module for every app, named by the same absolute path, pinned by
//! its sha256), and one `generate --all` that writes the manifests (3 files per environment) and
//! fills the compiled-module cache. The plugin's cache of compiled modules
//! (`HookEngine::new(None)`: `$KUBECTL_RELEASE_CACHE_DIR`, else the user's cache directory) is
//! pointed at a directory of this run, so the first timed run finds the module compiled there and
//! the user's own cache is neither used nor touched.
//!
//! Timed: `BENCH_ROUNDS` runs of `generate --all --check -f ROOT` (each must exit 0). For
//! completeness, once each (not in the median): after a hand edit of one app's file (must exit 1
//! with its diff), with an empty cache directory (the module compiled in the run), and with every
//! app naming the module by its own relative path (`../../generators/…`, so the paths differ).
//!
//! ```sh
//! bash example-hooks/build.sh web-service-generator   # target/hooks/web-service-generator.wasm
//! cargo build --release -p kubectl-release           # the binary measured ($KUBECTL_RELEASE_BIN)
//! cargo bench -p kubectl-release-tests --bench generate_all
//! bash tests/bench-generate.sh [ROUNDS]               # the same, building what it needs
//! ```
//!
//! Environment: `BENCH_ROUNDS` (default 7), `BENCH_APPS` (default 300), `KUBECTL_RELEASE_BIN`
//! (default: target/release, else target/debug).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, ensure};
use kubectl_release_tests::GitRepo;

/// The issue's goal for the whole `generate --all --check`, in seconds.
const GOAL: f64 = 2.0;
const MODULE: &str = "web-service-generator";
/// Files `web-service-generator` writes per environment for [`SPEC`]: Deployment, Service, PDB.
const FILES_PER_ENV: usize = 3;
const ENVS: [&str; 2] = ["qa", "production"];
/// The app edited by hand for the run that must fail (clamped to the apps there are).
const EDITED: usize = 150;
const RERUN: &str = "cargo build --release -p kubectl-release && cargo bench -p kubectl-release-tests --bench generate_all";

/// A small spec, as in tests/tests/generate.rs; `{replicas}` differs from app to app.
fn spec(replicas: usize) -> String {
    format!(
        "spec:\n  containers:\n    web:\n      args: [--listen, \":8080\"]\n      ports: [{{name: http, port: 8080}}]\n      variables: {{LOG_LEVEL: info}}\n      resources: {{requests: {{cpu: 10m, memory: 16Mi}}}}\n  replicas: {replicas}\n  service: {{port: 80}}\n  environments:\n    qa: {{replicas: 2, variables: {{LOG_LEVEL: debug}}}}\n"
    )
}

fn main() -> Result<()> {
    // `cargo bench` passes --bench; `cargo test --benches` does not: then only say what this is,
    // rather than write hundreds of apps.
    if !std::env::args().any(|a| a == "--bench") {
        println!("generate_all: a benchmark; run it with `{RERUN}`");
        return Ok(());
    }
    let rounds = env_number("BENCH_ROUNDS", 7)?;
    ensure!(rounds >= 1, "BENCH_ROUNDS must be at least 1");
    let apps = env_number("BENCH_APPS", 300)?;
    ensure!(apps >= 1, "BENCH_APPS must be at least 1");
    let plugin = kubectl_release_tests::bench::measured_plugin()?;
    let module = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/hooks")
        .join(format!("{MODULE}.wasm"));
    let module = module.canonicalize().with_context(|| {
        format!(
            "cannot find {}: build it with `bash example-hooks/build.sh {MODULE}`",
            module.display()
        )
    })?;
    let bytes = std::fs::read(&module)?;
    let sha = {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(&bytes))
    };
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load_at_start = loadavg();

    println!("generate benchmark: kubectl-release generate --all --check over a monorepo");
    println!(
        "  kubectl-release {}",
        kubectl_release_tests::bench::describe_binary(&plugin)
    );
    println!(
        "  generator       {} ({} KiB, sha256 {})",
        module.display(),
        bytes.len() / 1024,
        &sha[..12]
    );
    println!(
        "  apps            {apps} (BENCH_APPS), {} environments each, {FILES_PER_ENV} files per environment ({} files)",
        ENVS.len(),
        apps * ENVS.len() * FILES_PER_ENV
    );
    println!("  rounds          {rounds} (BENCH_ROUNDS); {cpus} CPUs");
    println!("  load at start   {load_at_start} (/proc/loadavg)");
    println!();

    let bench = Bench::new(plugin, apps, &module, &sha)?;

    let mut samples = Vec::new();
    for round in 1..=rounds {
        let (took, out) = bench.check(&bench.cache)?;
        ensure!(
            out.status.code() == Some(0),
            "round {round}: generate --all --check did not exit 0 on fresh files: {}",
            show(&out)
        );
        println!("  round {round:<2} {:.3} s", took.as_secs_f64());
        samples.push(took);
    }
    println!();

    // Once each, not in the median.
    let edited = bench.hand_edit()?;
    let (edit_took, out) = bench.check(&bench.cache)?;
    bench.undo_hand_edit(&edited)?;
    ensure!(
        out.status.code() == Some(1),
        "after a hand edit of {}, generate --all --check did not exit 1: {}",
        edited.path.display(),
        show(&out)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(
        stdout.contains("-  replicas: 7") && stdout.contains("+  replicas: 2"),
        "the diff does not show the hand edit: {}",
        show(&out)
    );
    let cold_cache = bench.dir.path().join("cache-cold");
    let (cold_took, out) = bench.check(&cold_cache)?;
    ensure!(
        out.status.code() == Some(0),
        "with an empty cache, generate --all --check did not exit 0: {}",
        show(&out)
    );
    ensure!(
        dir_has_files(&cold_cache),
        "the plugin cached no compiled module in {}",
        cold_cache.display()
    );
    let relative = bench.relative_module_paths(&module, &sha)?;
    let (relative_took, out) = bench.check(&bench.cache)?;
    ensure!(
        out.status.code() == Some(0),
        "with relative module paths, generate --all --check did not exit 0: {}",
        show(&out)
    );
    let load_at_end = loadavg();

    let (med, lo, hi) = (median(&samples), min(&samples), max(&samples));
    let met = if med < GOAL { "met" } else { "NOT met" };
    println!("  generate --all --check, fresh files, module cached (N={rounds}):");
    println!("    median {med:.3} s  min {lo:.3} s  max {hi:.3} s  (goal < {GOAL} s: {met})");
    println!("  once each, not in the median:");
    println!(
        "    after a hand edit of one file (exit 1, diff shown)  {:.3} s",
        edit_took.as_secs_f64()
    );
    println!(
        "    empty compiled-module cache (compiles the module)  {:.3} s",
        cold_took.as_secs_f64()
    );
    println!(
        "    every app naming the module `{relative}` (cached)  {:.3} s",
        relative_took.as_secs_f64()
    );
    println!("  load at end     {load_at_end} (/proc/loadavg)");
    println!();

    println!(
        "== summary (wall time of the command, N={rounds} runs, {apps} apps, no cluster, compiled module cached)"
    );
    let build = if bench.plugin.components().any(|c| c.as_os_str() == "debug") {
        "DEBUG build of the plugin"
    } else {
        "release build of the plugin"
    };
    println!(
        "generate --all --check, {apps} apps x {} environments ({} files), {build}:",
        ENVS.len(),
        apps * ENVS.len() * FILES_PER_ENV
    );
    println!(
        "median {med:.2} s (min {lo:.2}, max {hi:.2}); goal < {GOAL} s: {met}; after a hand edit (exit 1) {:.2} s; empty module cache {:.2} s; per-app relative module paths {:.2} s",
        edit_took.as_secs_f64(),
        cold_took.as_secs_f64(),
        relative_took.as_secs_f64()
    );
    println!("{cpus} CPUs, load {load_at_start} at start, {load_at_end} at end");
    println!("rerun: {RERUN}   (or: bash tests/bench-generate.sh [ROUNDS])");
    Ok(())
}

fn env_number(name: &str, default: usize) -> Result<usize> {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .with_context(|| format!("{name}={v} is not a number")),
        Err(_) => Ok(default),
    }
}

/// `/proc/loadavg` (1, 5 and 15 minute load, runnable/all tasks): the machine is shared.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg").map_or_else(
        |e| format!("? ({e})"),
        |s| s.split_whitespace().take(4).collect::<Vec<_>>().join(" "),
    )
}

/// The monorepo, the plugin and the compiled-module cache directory of this run.
struct Bench {
    plugin: PathBuf,
    repo: GitRepo,
    apps: usize,
    /// Holds the cache directories (removed at the end).
    dir: tempfile::TempDir,
    /// `$KUBECTL_RELEASE_CACHE_DIR` of every run but the cold one.
    cache: PathBuf,
}

/// A generated file changed by hand, and its text before.
struct Edited {
    path: PathBuf,
    text: String,
}

fn app_name(i: usize) -> String {
    format!("app-{i:03}")
}

/// release.yaml of app `i`: qa and production generated by `module` into `kubernetes/<env>`.
fn release_yaml(i: usize, module: &str, sha: &str) -> String {
    let name = app_name(i);
    format!(
        "apiVersion: kubectl-release.io/v1alpha1\nkind: ReleaseConfig\napp: {name}\nimage: registry.example.com/{name}\n\
         environments:\n  - name: qa\n    context: qa\n    namespace: {name}-qa\n    manifests: kubernetes/qa\n\
         \x20 - name: production\n    context: production\n    namespace: {name}\n    promoteFrom: qa\n    manifests: kubernetes/production\n\
         {spec}generator:\n  module: {module}\n  sha256: {sha}\n  settings:\n    labels: {{team: payments}}\n",
        spec = spec(3 + i % 4),
    )
}

impl Bench {
    /// Writes the apps and generates their manifests once (not timed).
    fn new(plugin: PathBuf, apps: usize, module: &Path, sha: &str) -> Result<Bench> {
        let setup = Instant::now();
        let repo = GitRepo::new(0);
        let dir = tempfile::Builder::new()
            .prefix("bench-generate-")
            .tempdir()?;
        let cache = dir.path().join("cache");
        let module = module.to_string_lossy();
        for i in 0..apps {
            repo.write(
                &format!("services/{}/release.yaml", app_name(i)),
                &release_yaml(i, &module, sha),
            );
        }
        let bench = Bench {
            plugin,
            repo,
            apps,
            dir,
            cache,
        };
        let started = Instant::now();
        let out = bench.plugin(&["generate", "--all"], &bench.cache)?;
        let first = started.elapsed();
        ensure!(
            out.status.success(),
            "generate --all failed: {}",
            show(&out)
        );
        let mut files = 0;
        for i in 0..apps {
            for env in ENVS {
                let d = bench
                    .repo
                    .path()
                    .join(format!("services/{}/kubernetes/{env}", app_name(i)));
                files += std::fs::read_dir(&d)
                    .with_context(|| format!("generate --all wrote no {}", d.display()))?
                    .count();
            }
        }
        ensure!(
            files == apps * ENVS.len() * FILES_PER_ENV,
            "generate --all wrote {files} files, not {}",
            apps * ENVS.len() * FILES_PER_ENV
        );
        ensure!(
            dir_has_files(&bench.cache),
            "the plugin cached no compiled module in {} ($KUBECTL_RELEASE_CACHE_DIR)",
            bench.cache.display()
        );
        println!(
            "== set up in {:.1?} ({}); the first generate --all (writes {files} files, compiles and caches the module, not counted): {:.3} s",
            setup.elapsed(),
            bench.repo.path().display(),
            first.as_secs_f64()
        );
        println!();
        Ok(bench)
    }

    /// Runs the plugin at the repository's root with `cache` as its compiled-module cache.
    fn plugin(&self, args: &[&str], cache: &Path) -> Result<Output> {
        Command::new(&self.plugin)
            .args(args)
            .arg("--offline")
            .arg("-f")
            .arg(self.repo.path())
            .current_dir(self.repo.path())
            .env("KUBECTL_RELEASE_CACHE_DIR", cache)
            .env("NO_COLOR", "1")
            .output()
            .with_context(|| format!("cannot run {}", self.plugin.display()))
    }

    /// One timed `generate --all --check -f ROOT`.
    fn check(&self, cache: &Path) -> Result<(Duration, Output)> {
        let started = Instant::now();
        let out = self.plugin(&["generate", "--all", "--check"], cache)?;
        Ok((started.elapsed(), out))
    }

    /// qa's Deployment of one app (named after the app), `replicas: 2` changed to 7.
    fn hand_edit(&self) -> Result<Edited> {
        let name = app_name(EDITED.min(self.apps - 1));
        let path = self.repo.path().join(format!(
            "services/{name}/kubernetes/qa/deployment-{name}.yaml"
        ));
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        ensure!(
            text.contains("replicas: 2"),
            "{} has no `replicas: 2`",
            path.display()
        );
        std::fs::write(&path, text.replace("replicas: 2", "replicas: 7"))?;
        Ok(Edited { path, text })
    }

    fn undo_hand_edit(&self, edited: &Edited) -> Result<()> {
        std::fs::write(&edited.path, &edited.text)
            .with_context(|| format!("cannot restore {}", edited.path.display()))
    }

    /// Copies the module into the repository and has every app name it relative to its own
    /// release.yaml; returns that path.
    fn relative_module_paths(&self, module: &Path, sha: &str) -> Result<String> {
        let dir = self.repo.path().join("generators");
        std::fs::create_dir_all(&dir)?;
        std::fs::copy(module, dir.join(format!("{MODULE}.wasm")))?;
        let relative = format!("../../generators/{MODULE}.wasm");
        for i in 0..self.apps {
            self.repo.write(
                &format!("services/{}/release.yaml", app_name(i)),
                &release_yaml(i, &relative, sha),
            );
        }
        Ok(relative)
    }
}

fn dir_has_files(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some())
}

/// A command's exit status and output, for an error message.
fn show(out: &Output) -> String {
    let tail = |b: &[u8]| {
        let s = String::from_utf8_lossy(b);
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    };
    format!(
        "{}\n--- stdout (last 30 lines)\n{}\n--- stderr (last 30 lines)\n{}",
        out.status,
        tail(&out.stdout),
        tail(&out.stderr)
    )
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
