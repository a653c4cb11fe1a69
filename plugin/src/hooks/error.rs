//! What can go wrong loading or running a hook.
//!
//! A hook error is never a denial: it says the hook could not give a verdict, and the hook's
//! `failurePolicy` decides what that means for the release. Each variant names the hook and the
//! step that failed, so that the message alone tells the user where to look.

use std::path::PathBuf;
use std::time::Duration;

use serde::ser::SerializeStruct;

/// Why a hook could not be loaded or could not give a verdict.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// The module's bytes do not have the pinned sha256; nothing was compiled or run.
    #[error(
        "hook `{hook}`: module {} has sha256 {actual}, but the hook is pinned to {expected}; \
         if the new module is intended, update the hook's sha256 pin (in release.yaml, or in \
         the cluster policy for its hooks)",
        path.display()
    )]
    PinMismatch {
        hook: String,
        path: PathBuf,
        expected: String,
        actual: String,
    },

    /// The module file cannot be read.
    #[error("hook `{hook}`: cannot read module {}: {source}", path.display())]
    UnreadableModule {
        hook: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The bytes are not a WebAssembly module wasmtime can compile.
    #[error("hook `{hook}`: cannot compile module {}: {message}", path.display())]
    Compile {
        hook: String,
        path: PathBuf,
        message: String,
    },

    /// The module compiles but is not a WASI preview 1 command the sandbox can run: no `_start`,
    /// or imports other than `wasi_snapshot_preview1`.
    #[error("hook `{hook}`: module {} is not a WASI preview 1 command module: {message}", path.display())]
    NotACommand {
        hook: String,
        path: PathBuf,
        message: String,
    },

    /// The module trapped (e.g. `unreachable`, a Rust panic, an out-of-bounds access).
    #[error("hook `{hook}` crashed (wasm trap): {message}{}", stderr_suffix(.stderr_tail))]
    Trap {
        hook: String,
        message: String,
        stderr_tail: String,
    },

    /// The module ran past its wall-time limit and was stopped.
    #[error("hook `{hook}` did not finish within its timeout of {}", duration(.limit))]
    Timeout { hook: String, limit: Duration },

    /// The module needed more memory than its limit and failed.
    #[error("hook `{hook}` exceeded its memory limit of {} (raise the hook's `memory` in release.yaml if it really needs more)", bytes_ref(.limit))]
    MemoryLimit { hook: String, limit: u64 },

    /// The module exited with a non-zero status.
    #[error("hook `{hook}` exited with status {code}{}", stderr_suffix(.stderr_tail))]
    NonZeroExit {
        hook: String,
        code: i32,
        stderr_tail: String,
    },

    /// The module wrote more to stdout than allowed; it was stopped there.
    #[error("hook `{hook}` wrote more than {} to stdout and was stopped", bytes_ref(.limit))]
    OutputTooLarge { hook: String, limit: u64 },

    /// The module exited 0 but stdout is not one `HookResponse`.
    #[error(
        "hook `{hook}` returned an invalid response: {reason}; stdout starts with: {excerpt:?}"
    )]
    InvalidResponse {
        hook: String,
        reason: String,
        excerpt: String,
    },

    /// The host could not set up or run the sandbox (not the hook's fault).
    #[error("hook `{hook}`: cannot run the sandbox: {message}")]
    Sandbox { hook: String, message: String },
}

impl HookError {
    /// A short stable name of the variant, for JSON output and tests.
    pub fn kind(&self) -> &'static str {
        match self {
            HookError::PinMismatch { .. } => "pin-mismatch",
            HookError::UnreadableModule { .. } => "unreadable-module",
            HookError::Compile { .. } => "compile",
            HookError::NotACommand { .. } => "not-a-command",
            HookError::Trap { .. } => "trap",
            HookError::Timeout { .. } => "timeout",
            HookError::MemoryLimit { .. } => "memory-limit",
            HookError::NonZeroExit { .. } => "non-zero-exit",
            HookError::OutputTooLarge { .. } => "output-too-large",
            HookError::InvalidResponse { .. } => "invalid-response",
            HookError::Sandbox { .. } => "sandbox",
        }
    }

    /// The name of the hook the error is about.
    pub fn hook(&self) -> &str {
        match self {
            HookError::PinMismatch { hook, .. }
            | HookError::UnreadableModule { hook, .. }
            | HookError::Compile { hook, .. }
            | HookError::NotACommand { hook, .. }
            | HookError::Trap { hook, .. }
            | HookError::Timeout { hook, .. }
            | HookError::MemoryLimit { hook, .. }
            | HookError::NonZeroExit { hook, .. }
            | HookError::OutputTooLarge { hook, .. }
            | HookError::InvalidResponse { hook, .. }
            | HookError::Sandbox { hook, .. } => hook,
        }
    }

    /// Whether the error happened while loading (before anything ran).
    pub fn is_load_error(&self) -> bool {
        matches!(
            self,
            HookError::PinMismatch { .. }
                | HookError::UnreadableModule { .. }
                | HookError::Compile { .. }
                | HookError::NotACommand { .. }
        )
    }
}

/// Serialized as `{ "kind": "timeout", "message": "…" }` for `-o json` reports.
impl serde::Serialize for HookError {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("HookError", 2)?;
        s.serialize_field("kind", self.kind())?;
        s.serialize_field("message", &self.to_string())?;
        s.end()
    }
}

fn duration(d: &Duration) -> String {
    humantime::format_duration(*d).to_string()
}

fn bytes_ref(n: &u64) -> String {
    bytes(*n)
}

fn stderr_suffix(tail: &str) -> String {
    if tail.is_empty() {
        String::new()
    } else {
        format!("; its last log lines:\n{tail}")
    }
}

/// A byte count as people read limits: `64 MiB`, `1 MiB`, `512 KiB`, `100 bytes`.
pub(crate) fn bytes(n: u64) -> String {
    const MIB: u64 = 1 << 20;
    const KIB: u64 = 1 << 10;
    if n >= MIB && n.is_multiple_of(MIB) {
        format!("{} MiB", n / MIB)
    } else if n >= KIB && n.is_multiple_of(KIB) {
        format!("{} KiB", n / KIB)
    } else {
        format!("{n} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_hook_and_the_limit() {
        let err = HookError::Timeout {
            hook: "slow".into(),
            limit: Duration::from_millis(1500),
        };
        assert_eq!(
            err.to_string(),
            "hook `slow` did not finish within its timeout of 1s 500ms"
        );
        let err = HookError::MemoryLimit {
            hook: "big".into(),
            limit: 64 << 20,
        };
        assert!(err.to_string().contains("64 MiB"), "{err}");
        let json = serde_json::to_value(&err).unwrap();
        assert_eq!(json["kind"], "memory-limit");
    }

    #[test]
    fn exit_errors_carry_the_logs() {
        let err = HookError::NonZeroExit {
            hook: "h".into(),
            code: 1,
            stderr_tail: "error: bad request".into(),
        };
        assert!(
            err.to_string()
                .ends_with("last log lines:\nerror: bad request"),
            "{err}"
        );
    }
}
