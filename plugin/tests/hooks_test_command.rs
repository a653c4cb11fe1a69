//! `kubectl release hooks test`, run as a hook author runs it: the real binary, the real
//! sandbox, a built example hook and its conformance fixtures. Its exit codes are its contract
//! (0 allowed, 3 denied, 2 when the module or the input cannot be read), and a bad input must
//! name the file and what is wrong with it.

use std::path::{Path, PathBuf};
use std::process::Output;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// `target/hooks/required-labels.wasm`, built by `example-hooks/build.sh`; missing fails the test.
fn required_labels() -> PathBuf {
    let module = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace_root().join("target"), PathBuf::from)
        .join("hooks/required-labels.wasm");
    assert!(
        module.is_file(),
        "{} is missing: run example-hooks/build.sh",
        module.display()
    );
    module
}

fn fixture(name: &str) -> PathBuf {
    workspace_root().join(format!(
        "example-hooks/conformance/required-labels/{name}.json"
    ))
}

fn hooks_test(module: &Path, input: &Path) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_kubectl-release"))
        .args(["hooks", "test"])
        .arg(module)
        .arg("--input")
        .arg(input)
        .args(["-o", "json"])
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn a_fixture_is_judged_in_the_sandbox_with_the_verdict_as_exit_code() {
    let module = required_labels();
    let allowed = hooks_test(&module, &fixture("labelled-and-pinned"));
    assert_eq!(allowed.status.code(), Some(0), "{}", text(&allowed));
    let verdict: serde_json::Value = serde_json::from_slice(&allowed.stdout).unwrap();
    assert_eq!(verdict["allowed"], true, "{}", text(&allowed));

    let denied = hooks_test(&module, &fixture("latest-image"));
    assert_eq!(denied.status.code(), Some(3), "{}", text(&denied));
    let verdict: serde_json::Value = serde_json::from_slice(&denied.stdout).unwrap();
    assert_eq!(verdict["allowed"], false, "{}", text(&denied));
    assert_eq!(
        verdict["violations"].as_array().map(Vec::len),
        Some(1),
        "{}",
        text(&denied)
    );
}

#[test]
fn an_input_that_is_no_hook_request_is_named_with_its_problem_and_exits_2() {
    let module = required_labels();
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("garbage.json", "not json", "is not JSON"),
        (
            "empty-object.json",
            "{}",
            "is not a HookRequest: missing field `apiVersion`",
        ),
        (
            "v2.json",
            r#"{"apiVersion": "kubectl-release.io/hooks/v2", "kind": "HookRequest"}"#,
            "unsupported apiVersion",
        ),
    ];
    for (name, content, says) in cases {
        let input = dir.path().join(name);
        std::fs::write(&input, content).unwrap();
        let out = hooks_test(&module, &input);
        assert_eq!(out.status.code(), Some(2), "{name}: {}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&input.display().to_string()),
            "{name}: {}",
            text(&out)
        );
        assert!(stderr.contains(says), "{name}: {}", text(&out));
        assert!(
            !stderr.contains("stdin"),
            "the file is not stdin: {}",
            text(&out)
        );
    }
}

#[test]
fn a_module_that_is_no_wasm_exits_2_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let module = dir.path().join("hook.wasm");
    std::fs::write(&module, "not a module").unwrap();
    let out = hooks_test(&module, &fixture("labelled-and-pinned"));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&module.display().to_string()),
        "{}",
        text(&out)
    );
}
