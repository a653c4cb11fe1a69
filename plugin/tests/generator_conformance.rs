//! Both implementations of the web-service generator — the Rust one
//! (`example-hooks/web-service-generator`) and the Go one
//! (`example-hooks/web-service-generator-go`) — run through the plugin's generator runner (the
//! real wasmtime sandbox) against the shared fixtures in `example-hooks/conformance/generator/`.
//!
//! A fixture is `{"description", "command"?, "request": GenerateRequest, "expect": {"objects":
//! [...]} | {"error": "substring"}}`; `command` is `generate` (default) or `validate-settings`
//! (the runner sends the request's `settings` only). Objects are compared as JSON
//! values, so key order does not matter but the order of the objects does. A missing module
//! fails the test rather than skipping it: CI builds both.

use std::path::{Path, PathBuf};

use hooks_sdk::generator::GenerateRequest;
use kubectl_release::config::HookLimits;
use kubectl_release::hooks::generator::{self, GenerateError};
use kubectl_release::hooks::{HookEngine, LoadedHook};
use serde::Deserialize;
use serde_json::Value;

/// The modules under test and the script that builds each.
const MODULES: &[(&str, &str)] = &[
    (
        "web-service-generator.wasm",
        "bash example-hooks/build.sh web-service-generator",
    ),
    (
        "web-service-generator-go.wasm",
        "bash example-hooks/web-service-generator-go/build.sh",
    ),
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Fixture {
    description: String,
    #[serde(default)]
    command: Command,
    request: GenerateRequest,
    expect: Expect,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum Command {
    #[default]
    Generate,
    ValidateSettings,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
enum Expect {
    /// The objects, in order.
    Objects(Vec<Value>),
    /// A substring of the generator's refusal.
    Error(String),
}

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

fn fixtures() -> Vec<(PathBuf, Fixture)> {
    let dir = workspace_root().join("example-hooks/conformance/generator");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|ext| ext == "json"))
        .collect();
    paths.sort();
    assert!(
        paths.len() >= 3,
        "expected generator fixtures in {}",
        dir.display()
    );
    paths
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let fixture: Fixture =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (path, fixture)
        })
        .collect()
}

/// The outcome of one fixture on one module: the objects, or the refusal.
fn run(loaded: &LoadedHook, fixture: &Fixture) -> Result<Result<Vec<Value>, String>, String> {
    let outcome = match fixture.command {
        Command::Generate => generator::generate(loaded, &fixture.request),
        Command::ValidateSettings => {
            generator::validate_settings(loaded, &fixture.request.settings).map(|()| Vec::new())
        }
    };
    match outcome {
        Ok(objects) => Ok(Ok(objects)),
        Err(GenerateError::Refused(message)) => Ok(Err(message)),
        Err(e @ GenerateError::Run(_)) => Err(format!("generator error: {e}")),
    }
}

fn check(expect: &Expect, outcome: Result<Vec<Value>, String>) -> Result<(), String> {
    match (expect, outcome) {
        (Expect::Objects(want), Ok(got)) if *want == got => Ok(()),
        (Expect::Objects(want), Ok(got)) => Err(format!(
            "objects differ\nexpected: {}\nactual:   {}",
            serde_json::to_string(want).unwrap(),
            serde_json::to_string(&got).unwrap()
        )),
        (Expect::Objects(_), Err(message)) => Err(format!(
            "expected objects, the generator refused: {message}"
        )),
        (Expect::Error(want), Err(message)) if message.contains(want.as_str()) => Ok(()),
        (Expect::Error(want), Err(message)) => Err(format!(
            "expected a refusal mentioning {want:?}, got: {message}"
        )),
        (Expect::Error(want), Ok(got)) => Err(format!(
            "expected a refusal mentioning {want:?}, got objects: {}",
            serde_json::to_string(&got).unwrap()
        )),
    }
}

#[test]
fn web_service_generators_in_rust_and_go_pass_the_shared_fixtures() {
    let fixtures = fixtures();
    let cache = tempfile::tempdir().unwrap();
    let engine = HookEngine::new(Some(cache.path().to_path_buf())).unwrap();
    let dir = hooks_dir();
    let mut failures = Vec::new();
    let mut ran = 0;
    for (file, build) in MODULES {
        let module = dir.join(file);
        assert!(
            module.is_file(),
            "{} is missing: run `{build}` (it builds it to {})",
            module.display(),
            dir.display()
        );
        let loaded = engine
            .load_unpinned("generator", &module, HookLimits::default())
            .unwrap_or_else(|e| panic!("{e}"));
        for (path, fixture) in &fixtures {
            ran += 1;
            let outcome = run(&loaded, fixture).and_then(|outcome| check(&fixture.expect, outcome));
            if let Err(problem) = outcome {
                failures.push(format!(
                    "{file} on {} ({}):\n{problem}",
                    path.display(),
                    fixture.description
                ));
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
