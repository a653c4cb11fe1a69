//! What one hook said about a release, as reports and records keep it: typed, so a record read
//! back is the same verdict that was written.

use hooks_sdk::{Phase, Violation};
use serde::{Deserialize, Serialize};

/// What a hook error (trap, timeout, garbage output) means for the release.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
pub enum FailurePolicy {
    /// A hook error denies the release.
    #[default]
    Fail,
    /// A hook error is a warning; the release goes on.
    Ignore,
}

/// One hook's verdict in one phase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Verdict {
    pub hook: String,
    pub phase: Phase,
    /// `app` (release.yaml) or `cluster-policy`.
    pub source: String,
    #[serde(default = "default_policy")]
    #[schemars(with = "String")]
    pub failure_policy: FailurePolicy,
    pub outcome: VerdictOutcome,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    #[serde(default)]
    pub duration_ms: u64,
}

fn default_policy() -> FailurePolicy {
    FailurePolicy::Fail
}

/// `{"verdict": "allowed" | "denied" | "error", …}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "verdict", rename_all = "kebab-case")]
pub enum VerdictOutcome {
    Allowed {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    Denied {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
        #[serde(default)]
        violations: Vec<Violation>,
    },
    /// The hook gave no verdict; `ignored` under `failurePolicy: Ignore`.
    #[serde(rename_all = "camelCase")]
    Error {
        error: String,
        error_kind: String,
        ignored: bool,
    },
}

impl Verdict {
    /// Whether this verdict stops the release: a denial, or an error under `Fail`.
    pub fn denies(&self) -> bool {
        match &self.outcome {
            VerdictOutcome::Allowed { .. } => false,
            VerdictOutcome::Denied { .. } => true,
            VerdictOutcome::Error { ignored, .. } => !ignored,
        }
    }

    /// What the user should read about a verdict that did not simply allow: the hook's own
    /// warnings, and its denial or error when they cannot stop the release (post-deploy, or
    /// ignored), each prefixed with the hook's name.
    pub fn warnings(&self, may_stop: bool) -> Vec<String> {
        let mut out: Vec<String> = self
            .warnings
            .iter()
            .map(|w| format!("hook `{}` ({}): {w}", self.hook, self.phase))
            .collect();
        match &self.outcome {
            VerdictOutcome::Error { error, ignored, .. } if *ignored || !may_stop => out.push(
                format!("hook `{}` ({}) failed: {error}", self.hook, self.phase),
            ),
            VerdictOutcome::Denied { message, .. } if !may_stop => out.push(format!(
                "hook `{}` ({}) denied: {}",
                self.hook,
                self.phase,
                message.as_deref().unwrap_or("no message")
            )),
            _ => {}
        }
        out
    }

    /// The verdict's words for a table: its message, or its error.
    pub fn message(&self) -> &str {
        match &self.outcome {
            VerdictOutcome::Allowed { message } | VerdictOutcome::Denied { message, .. } => {
                message.as_deref().unwrap_or_default()
            }
            VerdictOutcome::Error { error, .. } => error,
        }
    }

    pub fn verdict_word(&self) -> &'static str {
        match &self.outcome {
            VerdictOutcome::Allowed { .. } => "allowed",
            VerdictOutcome::Denied { .. } => "denied",
            VerdictOutcome::Error { .. } => "error",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_verdicts_read_back_as_written() {
        let text = r#"{"hook":"labels","phase":"pre-deploy","source":"app","failurePolicy":"Fail",
            "outcome":{"verdict":"denied","message":"no team","violations":[{"message":"missing team"}]},
            "durationMs":3}"#;
        let verdict: Verdict = serde_json::from_str(text).unwrap();
        assert!(verdict.denies());
        let again: Verdict =
            serde_json::from_value(serde_json::to_value(&verdict).unwrap()).unwrap();
        assert_eq!(again, verdict);
    }

    #[test]
    fn a_post_deploy_error_is_a_warning_naming_the_hook() {
        let verdict = Verdict {
            hook: "smoke".into(),
            phase: Phase::PostDeploy,
            source: "app".into(),
            failure_policy: FailurePolicy::Fail,
            outcome: VerdictOutcome::Error {
                error: "trap".into(),
                error_kind: "trap".into(),
                ignored: false,
            },
            warnings: vec!["slow".into()],
            duration_ms: 1,
        };
        assert_eq!(
            verdict.warnings(false),
            [
                "hook `smoke` (post-deploy): slow",
                "hook `smoke` (post-deploy) failed: trap"
            ]
        );
        assert_eq!(verdict.warnings(true), ["hook `smoke` (post-deploy): slow"]);
    }
}
