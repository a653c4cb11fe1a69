//! The exit codes CI scripts rely on, and the error that carries one.
//!
//! Library code returns typed errors; the command layer turns the ones a user must react to
//! into a [`Failure`] with the documented code. Anything else is an unexpected error (exit 1).

use std::fmt;

/// The documented exit codes. Keep in sync with `EXIT_CODES_HELP` and the README.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExitCode {
    /// Done, or nothing to do.
    Ok = 0,
    /// An unexpected error: a bug, or a failure we could not classify.
    Unexpected = 1,
    /// Usage or configuration error: fix the command line or release.yaml.
    Usage = 2,
    /// A hook denied the release.
    Denied = 3,
    /// Approvals are missing.
    WaitingForApproval = 4,
    /// The rollout failed (the message says whether it was rolled back).
    RolloutFailed = 5,
    /// A wait ran out of time.
    TimedOut = 6,
    /// Another release of the same app and environment holds the lock.
    Locked = 7,
}

impl ExitCode {
    pub fn code(self) -> i32 {
        self as i32
    }
}

/// The exit-code table shown at the end of `--help`.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  done (or nothing to do)
  1  unexpected error
  2  usage or config error (bad flags, invalid release.yaml, unknown environment, no image for the commit)
  3  denied by a hook
  4  waiting for approval
  5  rollout failed (the message says whether it was rolled back)
  6  timed out
  7  locked by another release in progress";

/// An error the user must act on, with the exit code that tells CI which kind it is.
#[derive(Debug)]
pub struct Failure {
    pub code: ExitCode,
    pub message: String,
}

impl Failure {
    pub fn new(code: ExitCode, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
        }
    }

    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(ExitCode::Usage, message)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// The exit code for an error that reached `main`: the first [`Failure`] in its chain decides,
/// anything else is unexpected.
pub fn exit_code_of(err: &anyhow::Error) -> ExitCode {
    err.chain()
        .find_map(|e| e.downcast_ref::<Failure>())
        .map_or(ExitCode::Unexpected, |f| f.code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_deep_in_a_chain_decides_the_exit_code() {
        let err = anyhow::Error::new(Failure::new(ExitCode::Locked, "held by ci"))
            .context("cannot deploy web to qa");
        assert_eq!(exit_code_of(&err), ExitCode::Locked);
        assert_eq!(exit_code_of(&err).code(), 7);
    }

    #[test]
    fn any_other_error_is_unexpected() {
        let err = anyhow::anyhow!("boom");
        assert_eq!(exit_code_of(&err), ExitCode::Unexpected);
    }
}
