//! Running a generator module: the hook sandbox (same pin, limits and store) under the
//! generator contract of `hooks_sdk::generator` — argv `["generator", "generate"]` or
//! `validate-settings`, a `GenerateRequest` on stdin, a `GenerateResponse` on stdout.

use hooks_sdk::generator::{GenerateRequest, GenerateResponse, GeneratorCommand};
use serde_json::Value;

use super::engine::LoadedHook;
use super::error::HookError;

/// Why a generator produced no objects.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// The sandbox stopped it, or it answered something that is not a `GenerateResponse`.
    #[error(transparent)]
    Run(#[from] HookError),
    /// It answered with `error`: it refuses the spec or its settings.
    #[error("generator refused to generate: {0}")]
    Refused(String),
}

/// Runs `generate` on `request` and returns the objects. Blocks the calling thread for at most
/// about the generator's timeout (call it in `spawn_blocking` from async code).
///
/// # Errors
///
/// A [`HookError`] of the run (timeout, memory, output limit, trap, non-zero exit, a response
/// that is not JSON), or [`GenerateError::Refused`].
pub fn generate(
    generator: &LoadedHook,
    request: &GenerateRequest,
) -> Result<Vec<Value>, GenerateError> {
    call(generator, GeneratorCommand::Generate, request)
}

/// Asks the generator whether `settings` (an app's: one loaded module serves every app of a
/// monorepo) are acceptable.
///
/// # Errors
///
/// As [`generate`]; rejected settings are [`GenerateError::Refused`].
pub fn validate_settings(generator: &LoadedHook, settings: &Value) -> Result<(), GenerateError> {
    let request = GenerateRequest {
        settings: settings.clone(),
        ..GenerateRequest::default()
    };
    call(generator, GeneratorCommand::ValidateSettings, &request).map(|_| ())
}

fn call(
    generator: &LoadedHook,
    command: GeneratorCommand,
    request: &GenerateRequest,
) -> Result<Vec<Value>, GenerateError> {
    let name = generator.name().to_string();
    let stdin = serde_json::to_vec(request).map_err(|e| HookError::Sandbox {
        hook: name.clone(),
        message: format!("cannot serialize the request: {e}"),
    })?;
    let output = generator.run_raw(["generator", command.as_str()], stdin)?;
    for line in String::from_utf8_lossy(&output.stderr).lines() {
        if !line.trim().is_empty() {
            tracing::info!(generator = %name, "{line}");
        }
    }
    let response = parse_response(&name, &output.stdout)?;
    match response.error {
        Some(message) => Err(GenerateError::Refused(message)),
        None => Ok(response.objects),
    }
}

fn parse_response(name: &str, stdout: &[u8]) -> Result<GenerateResponse, HookError> {
    super::engine::parse_document(name, stdout, "GenerateResponse")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::HookLimits;
    use crate::hooks::HookEngine;

    /// A WASI command that writes `stdout` and exits 0.
    fn echo_module(dir: &std::path::Path, stdout: &str) -> std::path::PathBuf {
        let escaped: String = stdout.bytes().map(|b| format!("\\{b:02x}")).collect();
        let wat = format!(
            r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "{escaped}")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 64))
    (i32.store (i32.const 4) (i32.const {len}))
    (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 16)))))"#,
            len = stdout.len()
        );
        let path = dir.join("gen.wasm");
        std::fs::write(&path, wat::parse_str(&wat).unwrap()).unwrap();
        path
    }

    fn load(path: &std::path::Path, timeout: Duration) -> LoadedHook {
        let engine = HookEngine::without_cache().unwrap();
        let limits = HookLimits {
            timeout,
            ..HookLimits::default()
        };
        engine.load_unpinned("generator", path, limits).unwrap()
    }

    fn run_blocking(hook: LoadedHook) -> Result<Vec<Value>, GenerateError> {
        // WASI blocks on a Tokio runtime: run as the CLI does, off the async threads.
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            tokio::task::spawn_blocking(move || generate(&hook, &GenerateRequest::default()))
                .await
                .unwrap()
        })
    }

    #[test]
    fn generator_objects_and_refusals_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let ok = echo_module(dir.path(), r#"{"objects":[{"kind":"Service"}]}"#);
        let objects = run_blocking(load(&ok, Duration::from_secs(2))).unwrap();
        assert_eq!(objects[0]["kind"], "Service");

        let refused = echo_module(dir.path(), r#"{"error":"no containers"}"#);
        let err = run_blocking(load(&refused, Duration::from_secs(2))).unwrap_err();
        assert!(
            matches!(&err, GenerateError::Refused(m) if m == "no containers"),
            "{err}"
        );

        let garbage = echo_module(dir.path(), "hello");
        let err = run_blocking(load(&garbage, Duration::from_secs(2))).unwrap_err();
        assert!(err.to_string().contains("invalid response"), "{err}");
    }

    #[test]
    fn generator_that_floods_stdout_is_stopped_at_its_output_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flood.wasm");
        let wat = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 64))
    (i32.store (i32.const 4) (i32.const 1024))
    (loop (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 16))) (br 0))))"#;
        std::fs::write(&path, wat::parse_str(wat).unwrap()).unwrap();
        let engine = HookEngine::without_cache().unwrap();
        let limits = HookLimits {
            max_output_bytes: 4096,
            ..HookLimits::default()
        };
        let hook = engine.load_unpinned("generator", &path, limits).unwrap();
        let err = run_blocking(hook).unwrap_err();
        assert!(
            matches!(err, GenerateError::Run(HookError::OutputTooLarge { .. })),
            "{err}"
        );
    }

    #[test]
    fn generator_that_loops_is_stopped_by_its_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("loop.wasm");
        let wat = r#"(module (memory (export "memory") 1) (func (export "_start") (loop (br 0))))"#;
        std::fs::write(&path, wat::parse_str(wat).unwrap()).unwrap();
        let err = run_blocking(load(&path, Duration::from_millis(200))).unwrap_err();
        assert!(
            matches!(err, GenerateError::Run(HookError::Timeout { .. })),
            "{err}"
        );
    }
}
