//! The error a user must act on, named by the outcome it gives the release.
//!
//! Library code returns typed errors; where one is an answer rather than a bug (an unknown
//! environment, a denial, a held lock) it becomes a [`Failure`] carrying the [`Outcome`] the
//! report and the record will show. Turning outcomes into process exit codes is the command
//! line's business (`cli::exit`), not the domain's.

use std::fmt;

use super::Outcome;

/// An error the user must act on, with the outcome that says which kind it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub outcome: Outcome,
    pub message: String,
}

impl Failure {
    pub fn new(outcome: Outcome, message: impl Into<String>) -> Self {
        Failure {
            outcome,
            message: message.into(),
        }
    }

    /// Bad arguments, config or cluster state: nothing was changed, the fix is the user's.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(Outcome::Invalid, message)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// The outcome an error that reached the top stands for: the first [`Failure`] in its chain
/// decides; anything else is unexpected.
pub fn outcome_of(err: &anyhow::Error) -> Outcome {
    err.chain()
        .find_map(|e| e.downcast_ref::<Failure>())
        .map_or(Outcome::Error, |f| f.outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_deep_in_a_chain_decides_the_outcome() {
        let err = anyhow::Error::new(Failure::new(Outcome::Locked, "held by ci"))
            .context("cannot deploy web to qa");
        assert_eq!(outcome_of(&err), Outcome::Locked);
    }

    #[test]
    fn any_other_error_is_unexpected() {
        assert_eq!(outcome_of(&anyhow::anyhow!("boom")), Outcome::Error);
    }
}
