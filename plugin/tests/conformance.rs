//! Every built example hook module, run through the real sandbox against the conformance
//! fixtures of its hook: the same fixtures the hook crates' own unit tests use, and that every
//! other implementation of the hook (another language) must pass.
//!
//! For each `example-hooks/conformance/<hook>/`, `target/hooks/<hook>.wasm` (built by
//! `example-hooks/build.sh`) is required, and any `target/hooks/<hook>.<impl>.wasm` (e.g.
//! `required-labels.go.wasm`) is run too. A missing module fails the test rather than skipping
//! it, so a green run always means the modules were checked.

use std::path::{Path, PathBuf};

use hooks_sdk::testing::{ConformanceCase, conformance_files};
use kubectl_release::config::HookLimits;
use kubectl_release::hooks::HookEngine;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn hooks_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace_root().join("target"), PathBuf::from)
        .join("hooks")
}

/// The modules implementing `hook`: the Rust one first, then any other implementation.
fn modules_of(hook: &str) -> Vec<PathBuf> {
    let dir = hooks_dir();
    let rust = dir.join(format!("{hook}.wasm"));
    assert!(
        rust.is_file(),
        "{} is missing: run example-hooks/build.sh (it builds every example hook to {})",
        rust.display(),
        dir.display()
    );
    let mut others: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with(&format!("{hook}."))
                && name.ends_with(".wasm")
                && name.matches('.').count() == 2
        })
        .collect();
    others.sort();
    let mut all = vec![rust];
    all.extend(others);
    all
}

#[test]
fn example_hook_modules_pass_their_conformance_fixtures() {
    let conformance = workspace_root().join("example-hooks/conformance");
    let mut hooks: Vec<String> = std::fs::read_dir(&conformance)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        // The generators' fixtures follow another contract: tests/generator_conformance.rs.
        .filter(|name| name != "generator")
        .collect();
    hooks.sort();
    assert!(
        hooks.len() >= 3,
        "expected the fixtures of the three example hooks in {}",
        conformance.display()
    );

    let cache = tempfile::tempdir().unwrap();
    let engine = HookEngine::new(Some(cache.path().to_path_buf())).unwrap();
    let mut failures = Vec::new();
    let mut ran = 0;
    for hook in &hooks {
        let cases = conformance_files(&conformance.join(hook)).unwrap();
        assert!(!cases.is_empty(), "no fixtures for {hook}");
        for module in modules_of(hook) {
            let loaded = engine
                .load_unpinned(hook, &module, HookLimits::default())
                .unwrap_or_else(|e| panic!("{e}"));
            for path in &cases {
                let case = ConformanceCase::load(path).unwrap();
                let request = hooks_sdk::guest::read_request(
                    &serde_json::to_vec(&case.request_document()).unwrap(),
                )
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                ran += 1;
                let outcome = loaded
                    .check(&request)
                    .map_err(|e| format!("hook error: {e}"))
                    .and_then(|response| case.expected.check(&response));
                if let Err(problem) = outcome {
                    failures.push(format!(
                        "{} on {} ({}):\n{problem}",
                        module.display(),
                        path.display(),
                        case.description
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {ran} runs failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn example_hook_modules_validate_their_settings() {
    let engine = HookEngine::without_cache().unwrap();
    let module = hooks_dir().join("approval-rules.wasm");
    assert!(
        module.is_file(),
        "{} is missing: run example-hooks/build.sh",
        module.display()
    );
    let hook = engine
        .load_unpinned("approval-rules", &module, HookLimits::default())
        .unwrap();
    assert!(
        hook.validate_settings(&serde_json::json!({"required": 2}))
            .unwrap()
            .allowed
    );
    let refused = hook
        .validate_settings(&serde_json::json!({"requird": 2}))
        .unwrap();
    assert!(!refused.allowed);
    assert!(refused.message.unwrap().contains("requird"));
    // During `check`, settings the hook refuses are a hook error, not a verdict.
    let request = hooks_sdk::HookRequest {
        settings: serde_json::json!({"freezeWindows": [{"start": "soon", "end": "later"}]}),
        ..Default::default()
    };
    let err = hook.check(&request).unwrap_err();
    assert!(err.to_string().contains("freezeWindows[0]"), "{err}");
}
