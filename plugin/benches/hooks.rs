//! What a hook costs, per example hook: compiling its module (first run on a machine), loading
//! it from the compiled-module cache (every later run), and one warm evaluation (fresh store,
//! WASI context, instantiation, `check`, parsing the response). `sandbox/empty-module` is the
//! floor: the same run of a module that does nothing, i.e. the sandbox's own cost.
//!
//! Needs the modules: `example-hooks/build.sh`, then
//! `cargo bench -p kubectl-release --bench hooks -- --quick`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use hooks_sdk::HookRequest;
use hooks_sdk::testing::{ConformanceCase, conformance_files};
use kubectl_release::config::HookLimits;
use kubectl_release::hooks::HookEngine;

const HOOKS: [&str; 3] = [
    "same-image-across-envs",
    "required-labels",
    "approval-rules",
];

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn module_path(hook: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace_root().join("target"), PathBuf::from);
    let path = target.join("hooks").join(format!("{hook}.wasm"));
    assert!(
        path.is_file(),
        "{} is missing: run example-hooks/build.sh first",
        path.display()
    );
    path
}

/// The first fixture of the hook that it allows: a realistic request that runs the whole rule.
fn request(hook: &str) -> HookRequest {
    let dir = workspace_root()
        .join("example-hooks/conformance")
        .join(hook);
    let case = conformance_files(&dir)
        .unwrap()
        .iter()
        .map(|p| ConformanceCase::load(p).unwrap())
        .find(|c| c.expected.allowed)
        .unwrap_or_else(|| panic!("no allowed fixture for {hook}"));
    hooks_sdk::guest::read_request(&serde_json::to_vec(&case.request_document()).unwrap()).unwrap()
}

fn hooks(c: &mut Criterion) {
    let uncached = HookEngine::without_cache().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let cached = HookEngine::new(Some(cache.path().to_path_buf())).unwrap();
    let limits = HookLimits::default();

    for hook in HOOKS {
        let module = module_path(hook);
        let mut group = c.benchmark_group(hook);
        group
            .sample_size(10)
            .measurement_time(Duration::from_secs(5));

        group.bench_function("compile", |b| {
            b.iter(|| uncached.load_unpinned(hook, &module, limits).unwrap())
        });

        cached.load_unpinned(hook, &module, limits).unwrap(); // fills the cache
        group.bench_function("load-from-cache", |b| {
            b.iter(|| {
                let loaded = cached.load_unpinned(hook, &module, limits).unwrap();
                assert!(loaded.load_info().from_cache);
                loaded
            });
        });

        let loaded = cached.load_unpinned(hook, &module, limits).unwrap();
        let req = request(hook);
        assert!(loaded.check(&req).unwrap().allowed);
        group.sample_size(50);
        group.bench_function("evaluate-warm", |b| b.iter(|| loaded.check(&req).unwrap()));
        group.finish();
    }

    // What three hooks add to a release with a warm cache: each loaded from the cache, its
    // settings validated (as a release does when it loads its hooks), then its check run.
    let mut group = c.benchmark_group("release");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(5));
    let requests: Vec<HookRequest> = HOOKS.iter().map(|h| request(h)).collect();
    group.bench_function("three-hooks-warm-cache", |b| {
        b.iter(|| {
            for (hook, req) in HOOKS.iter().zip(&requests) {
                let loaded = cached
                    .load_unpinned(hook, &module_path(hook), limits)
                    .unwrap();
                loaded.validate_settings(&req.settings).unwrap();
                assert!(loaded.check(req).unwrap().allowed);
            }
        })
    });
    group.finish();

    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.wasm");
    std::fs::write(
        &empty,
        wat::parse_str(r#"(module (memory (export "memory") 1) (func (export "_start")))"#)
            .unwrap(),
    )
    .unwrap();
    let loaded = cached.load_unpinned("empty", &empty, limits).unwrap();
    let req = HookRequest::default();
    let mut group = c.benchmark_group("sandbox");
    group.sample_size(50);
    // The empty module writes no response: the error is the expected outcome, its cost the floor.
    group.bench_function("empty-module", |b| {
        b.iter(|| loaded.check(&req).unwrap_err())
    });
    group.finish();
}

criterion_group!(benches, hooks);
criterion_main!(benches);
