//! The exit codes CI scripts rely on: the one place outcomes become process exit codes.

use crate::domain::Outcome;

/// The documented exit codes. Keep in sync with `EXIT_CODES_HELP` and the README.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    /// Done, or nothing to do.
    Ok,
    /// An unexpected error: a bug, or a failure we could not classify.
    Unexpected,
    /// Usage or configuration error: fix the command line or release.yaml.
    Usage,
    /// A hook denied the release.
    Denied,
    /// Approvals are missing.
    WaitingForApproval,
    /// The rollout failed (the message says whether it was rolled back).
    RolloutFailed,
    /// A wait ran out of time.
    TimedOut,
    /// Another release of the same app and environment holds the lock.
    Locked,
    /// Stopped by this signal (SIGINT 2, SIGTERM 15): exits 128 + the signal's number, as a
    /// shell reports a process the signal ended.
    Interrupted(i32),
}

impl ExitCode {
    pub fn code(self) -> i32 {
        match self {
            ExitCode::Ok => 0,
            ExitCode::Unexpected => 1,
            ExitCode::Usage => 2,
            ExitCode::Denied => 3,
            ExitCode::WaitingForApproval => 4,
            ExitCode::RolloutFailed => 5,
            ExitCode::TimedOut => 6,
            ExitCode::Locked => 7,
            ExitCode::Interrupted(signal) => 128 + signal,
        }
    }

    /// The code of a command that ended with `outcome`; `signal` is the signal that stopped the
    /// process, if one did.
    pub fn of(outcome: Outcome, signal: Option<i32>) -> ExitCode {
        match outcome {
            Outcome::Succeeded | Outcome::Committed | Outcome::Unchanged | Outcome::Planned => {
                ExitCode::Ok
            }
            Outcome::Invalid => ExitCode::Usage,
            Outcome::Denied => ExitCode::Denied,
            Outcome::WaitingForApproval => ExitCode::WaitingForApproval,
            Outcome::Failed | Outcome::RolledBack if signal.is_none() => ExitCode::RolloutFailed,
            Outcome::TimedOut => ExitCode::TimedOut,
            Outcome::Locked => ExitCode::Locked,
            // Interrupted without a signal: the run stopped itself (it lost its lock).
            Outcome::Interrupted if signal.is_none() => ExitCode::RolloutFailed,
            Outcome::Interrupted | Outcome::Failed | Outcome::RolledBack => {
                ExitCode::Interrupted(signal.unwrap_or(SIGTERM))
            }
            Outcome::InProgress | Outcome::Error => ExitCode::Unexpected,
        }
    }
}

const SIGTERM: i32 = 15;

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
  7  locked by another release in progress
  130, 143  interrupted by SIGINT, SIGTERM (the release is recorded interrupted or rolled-back)";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_outcome_has_its_documented_code() {
        let cases = [
            (Outcome::Succeeded, 0),
            (Outcome::Unchanged, 0),
            (Outcome::Planned, 0),
            (Outcome::Committed, 0),
            (Outcome::Error, 1),
            (Outcome::Invalid, 2),
            (Outcome::Denied, 3),
            (Outcome::WaitingForApproval, 4),
            (Outcome::Failed, 5),
            (Outcome::RolledBack, 5),
            (Outcome::TimedOut, 6),
            (Outcome::Locked, 7),
            // Without a signal an interrupted release stopped itself (it lost its lock).
            (Outcome::Interrupted, 5),
        ];
        for (outcome, code) in cases {
            assert_eq!(ExitCode::of(outcome, None).code(), code, "{outcome}");
        }
    }

    #[test]
    fn a_signal_gives_128_plus_its_number_whatever_the_undo_did() {
        for outcome in [Outcome::Interrupted, Outcome::RolledBack, Outcome::Failed] {
            assert_eq!(ExitCode::of(outcome, Some(15)).code(), 143);
            assert_eq!(ExitCode::of(outcome, Some(2)).code(), 130);
        }
    }
}
