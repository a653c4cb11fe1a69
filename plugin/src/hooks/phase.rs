//! Running every hook of a phase and turning their verdicts into one decision.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::panic::AssertUnwindSafe;

use futures::FutureExt as _;
use futures::StreamExt as _;
use futures::stream::FuturesUnordered;
use hooks_sdk::{HookRequest, Phase, Violation};
use serde::Serialize;

use super::engine::LoadedHook;
use super::error::HookError;
use super::phase_request::PhaseRequest;
use crate::config::FailurePolicy;

/// The hooks among `hooks` that run in `phase` for environment `env`, in their order.
pub fn select(hooks: &[LoadedHook], phase: Phase, env: &str) -> Vec<LoadedHook> {
    hooks
        .iter()
        .filter(|hook| hook.config().applies_to(phase, env))
        .cloned()
        .collect()
}

/// Every verdict of one phase, in the order the hooks were given.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PhaseReport {
    /// The phase that ran.
    pub phase: Phase,
    /// One per hook.
    pub verdicts: Vec<HookVerdict>,
}

impl Default for PhaseReport {
    /// An empty pre-deploy report: nothing ran, nothing denies. Prefer [`PhaseReport::empty`],
    /// which names the phase.
    fn default() -> PhaseReport {
        PhaseReport::empty(Phase::PreDeploy)
    }
}

/// What one hook said, or why it could not say anything.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HookVerdict {
    /// The hook's name.
    pub hook: String,
    /// Where the hook comes from: `app` (release.yaml), later `cluster-policy`.
    pub source: String,
    /// What an error of this hook means.
    pub failure_policy: FailurePolicy,
    /// The verdict.
    pub outcome: Outcome,
    /// The hook's warnings (empty when it failed).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Wall time of the run.
    pub duration_ms: u64,
}

/// A hook's verdict.
///
/// Serialized with a `verdict` tag, the error as its message (and its kind apart), so that
/// recorded verdicts read the same whatever happened:
/// `{"verdict": "denied", "message": "…", "violations": […]}`,
/// `{"verdict": "error", "error": "hook `x` did not finish…", "errorKind": "timeout", "ignored": false}`.
#[derive(Debug)]
pub enum Outcome {
    /// The hook allowed the release.
    Allowed {
        /// The hook's message, if it gave one.
        message: Option<String>,
    },
    /// The hook denied the release.
    Denied {
        /// The hook's summary.
        message: Option<String>,
        /// Each reason.
        violations: Vec<Violation>,
    },
    /// The hook could not give a verdict.
    Error {
        /// What went wrong.
        error: HookError,
        /// True under `failurePolicy: Ignore`: the error is a warning and does not deny.
        ignored: bool,
    },
}

impl Serialize for Outcome {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(None)?;
        match self {
            Outcome::Allowed { message } => {
                map.serialize_entry("verdict", "allowed")?;
                if let Some(message) = message {
                    map.serialize_entry("message", message)?;
                }
            }
            Outcome::Denied {
                message,
                violations,
            } => {
                map.serialize_entry("verdict", "denied")?;
                if let Some(message) = message {
                    map.serialize_entry("message", message)?;
                }
                map.serialize_entry("violations", violations)?;
            }
            Outcome::Error { error, ignored } => {
                map.serialize_entry("verdict", "error")?;
                map.serialize_entry("error", &error.to_string())?;
                map.serialize_entry("errorKind", error.kind())?;
                map.serialize_entry("ignored", ignored)?;
            }
        }
        map.end()
    }
}

impl HookVerdict {
    /// The verdict as reports and records keep it.
    pub fn recorded(&self, phase: Phase) -> crate::domain::Verdict {
        use crate::domain::VerdictOutcome;
        let outcome = match &self.outcome {
            Outcome::Allowed { message } => VerdictOutcome::Allowed {
                message: message.clone(),
            },
            Outcome::Denied {
                message,
                violations,
            } => VerdictOutcome::Denied {
                message: message.clone(),
                violations: violations.clone(),
            },
            Outcome::Error { error, ignored } => VerdictOutcome::Error {
                error: error.to_string(),
                error_kind: error.kind().into(),
                ignored: *ignored,
            },
        };
        crate::domain::Verdict {
            hook: self.hook.clone(),
            phase,
            source: self.source.clone(),
            failure_policy: self.failure_policy,
            outcome,
            warnings: self.warnings.clone(),
            duration_ms: self.duration_ms,
        }
    }

    /// Whether this verdict stops the release: a denial, or an error under `Fail`.
    pub fn denies(&self) -> bool {
        match &self.outcome {
            Outcome::Allowed { .. } => false,
            Outcome::Denied { .. } => true,
            Outcome::Error { ignored, .. } => !ignored,
        }
    }
}

impl PhaseReport {
    /// A report without verdicts, for a phase in which no hook runs.
    pub fn empty(phase: Phase) -> PhaseReport {
        PhaseReport {
            phase,
            verdicts: Vec::new(),
        }
    }

    /// Whether the release must stop: any hook denied, or failed under `failurePolicy: Fail`.
    pub fn denied(&self) -> bool {
        self.verdicts.iter().any(HookVerdict::denies)
    }

    /// Each verdict as JSON with the phase added (`{"hook", "phase", "source", "outcome", …}`),
    /// the form release records keep, where verdicts of several phases sit side by side.
    pub fn verdicts_json(&self) -> Vec<serde_json::Value> {
        self.verdicts
            .iter()
            .map(|verdict| {
                let mut value = serde_json::to_value(verdict).unwrap_or_default();
                if let Some(object) = value.as_object_mut() {
                    object.insert("phase".to_string(), self.phase.as_str().into());
                }
                value
            })
            .collect()
    }

    /// Every warning: the hooks' own and the ignored errors, prefixed with the hook's name.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        for verdict in &self.verdicts {
            warnings.extend(
                verdict
                    .warnings
                    .iter()
                    .map(|w| format!("hook `{}`: {w}", verdict.hook)),
            );
            if let Outcome::Error {
                error,
                ignored: true,
            } = &verdict.outcome
            {
                warnings.push(format!("{error} (ignored: failurePolicy is Ignore)"));
            }
        }
        warnings
    }

    /// A message listing every hook that stops the release and each of its violations, for the
    /// error the user sees:
    ///
    /// ```text
    /// pre-promote hooks denied the release:
    ///   required-labels (app): 2 workloads lack labels
    ///     - Deployment web/web: metadata.labels.team: missing
    ///   approvals (app): error: hook `approvals` did not finish within its timeout of 2s
    /// ```
    pub fn render(&self) -> String {
        let mut text = format!("{} hooks denied the release:", self.phase);
        for verdict in self.verdicts.iter().filter(|v| v.denies()) {
            let _ = write!(text, "\n  {} ({}): ", verdict.hook, verdict.source);
            match &verdict.outcome {
                Outcome::Denied {
                    message,
                    violations,
                } => {
                    text.push_str(message.as_deref().unwrap_or("denied"));
                    for violation in violations {
                        let _ = write!(text, "\n    - {violation}");
                    }
                }
                Outcome::Error { error, .. } => {
                    let _ = write!(
                        text,
                        "error: {}",
                        error.to_string().replace('\n', "\n      ")
                    );
                }
                Outcome::Allowed { .. } => {}
            }
        }
        text
    }
}

/// How long a hook may run before the next hook of its phase starts beside it.
///
/// A warm hook run takes well under a millisecond, so a phase's hooks run one after another;
/// a hook that is slow or loops until its timeout holds up the rest by this, not by its
/// timeout. (A running guest gives its thread back at every epoch tick, so the next one starts
/// at the first tick after this has passed.)
pub const OVERSTAY: std::time::Duration = std::time::Duration::from_millis(5);

/// Runs every hook in `hooks` for `phase` and collects their verdicts in order.
///
/// The hooks run one after another in the awaiting task, the guests on fibers of its thread
/// (no thread handoff: in the webhook, handing each review's hooks to a blocking thread and back
/// was a sixth of its CPU); each [`OVERSTAY`] that passes without a verdict while hooks still
/// wait starts the next one beside the others, so a phase of looping hooks takes about one
/// timeout, not their sum.
///
/// Every hook reads `request` with `phase`, `hook` and `settings` set from the hook itself, so
/// a request can never carry another hook's settings (serialized once for all of them).
/// A hook error becomes an [`Outcome::Error`], ignored under `failurePolicy: Ignore`.
pub async fn run_phase<'a>(
    hooks: &'a [LoadedHook],
    phase: Phase,
    request: &HookRequest,
) -> PhaseReport {
    let request = PhaseRequest::new(request, phase);
    let mut waiting: VecDeque<(usize, &LoadedHook)> = hooks.iter().enumerate().collect();
    let mut running = FuturesUnordered::new();
    let mut verdicts: Vec<Option<HookVerdict>> = hooks.iter().map(|_| None).collect();
    let request = &request;
    let run = |(index, hook): (usize, &'a LoadedHook)| async move {
        (index, run_one(hook, request.stdin_for(hook)).await)
    };
    loop {
        if running.is_empty() {
            match waiting.pop_front() {
                Some(next) => running.push(run(next)),
                None => break,
            }
        }
        tokio::select! {
            Some((index, verdict)) = running.next() => verdicts[index] = Some(verdict),
            () = tokio::time::sleep(OVERSTAY), if !waiting.is_empty() => {
                if let Some(next) = waiting.pop_front() {
                    running.push(run(next));
                }
            }
        }
    }
    let verdicts = verdicts
        .into_iter()
        .zip(hooks)
        .map(|(verdict, hook)| {
            verdict.unwrap_or_else(|| {
                let error = HookError::Sandbox {
                    hook: hook.name().to_string(),
                    message: "the hook ended without a verdict".into(),
                };
                self::verdict(hook, Err(error), std::time::Duration::ZERO)
            })
        })
        .collect();
    PhaseReport { phase, verdicts }
}

/// One hook's run on its request (or the reason it has none) into its verdict; a panic in the
/// run is the hook's error, not the caller's.
async fn run_one(hook: &LoadedHook, stdin: serde_json::Result<Vec<u8>>) -> HookVerdict {
    let started = std::time::Instant::now();
    let result = match stdin {
        Err(e) => Err(HookError::Sandbox {
            hook: hook.name().to_string(),
            message: format!("cannot serialize the request: {e}"),
        }),
        Ok(stdin) => AssertUnwindSafe(hook.check_json(stdin))
            .catch_unwind()
            .await
            .unwrap_or_else(|panic| {
                Err(HookError::Sandbox {
                    hook: hook.name().to_string(),
                    message: format!("running the hook panicked: {}", panic_message(&*panic)),
                })
            }),
    };
    verdict(hook, result, started.elapsed())
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("no message")
}

fn verdict(
    hook: &LoadedHook,
    result: Result<hooks_sdk::HookResponse, HookError>,
    elapsed: std::time::Duration,
) -> HookVerdict {
    let (outcome, warnings) = match result {
        Ok(response) if response.allowed => (
            Outcome::Allowed {
                message: response.message,
            },
            response.warnings,
        ),
        Ok(response) => (
            Outcome::Denied {
                message: response.message,
                violations: response.violations,
            },
            response.warnings,
        ),
        Err(error) => {
            let ignored = hook.failure_policy() == FailurePolicy::Ignore;
            tracing::warn!(hook = %hook.name(), ignored, "{error}");
            (Outcome::Error { error, ignored }, Vec::new())
        }
    };
    HookVerdict {
        hook: hook.name().to_string(),
        source: hook.source().to_string(),
        failure_policy: hook.failure_policy(),
        outcome,
        warnings,
        duration_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hooks_sdk::WorkloadRef;

    fn verdict(hook: &str, policy: FailurePolicy, outcome: Outcome) -> HookVerdict {
        HookVerdict {
            hook: hook.into(),
            source: "app".into(),
            failure_policy: policy,
            outcome,
            warnings: vec![],
            duration_ms: 1,
        }
    }

    fn timeout(hook: &str) -> HookError {
        HookError::Timeout {
            hook: hook.into(),
            limit: std::time::Duration::from_secs(2),
        }
    }

    #[test]
    fn errors_deny_under_fail_only() {
        let report = PhaseReport {
            phase: Phase::PreDeploy,
            verdicts: vec![
                verdict("a", FailurePolicy::Fail, Outcome::Allowed { message: None }),
                verdict(
                    "b",
                    FailurePolicy::Ignore,
                    Outcome::Error {
                        error: timeout("b"),
                        ignored: true,
                    },
                ),
            ],
        };
        assert!(!report.denied());
        assert_eq!(report.warnings().len(), 1);

        let report = PhaseReport {
            phase: Phase::PreDeploy,
            verdicts: vec![verdict(
                "c",
                FailurePolicy::Fail,
                Outcome::Error {
                    error: timeout("c"),
                    ignored: false,
                },
            )],
        };
        assert!(report.denied());
    }

    #[test]
    fn render_lists_every_violation_of_every_denying_hook() {
        let report = PhaseReport {
            phase: Phase::PrePromote,
            verdicts: vec![
                verdict(
                    "labels",
                    FailurePolicy::Fail,
                    Outcome::Denied {
                        message: Some("2 problems".into()),
                        violations: vec![
                            Violation::new("missing")
                                .on(WorkloadRef::new("Deployment", "web", "web"))
                                .at("metadata.labels.team"),
                            Violation::new("image web:latest is not pinned"),
                        ],
                    },
                ),
                verdict(
                    "fine",
                    FailurePolicy::Fail,
                    Outcome::Allowed { message: None },
                ),
                verdict(
                    "slow",
                    FailurePolicy::Fail,
                    Outcome::Error {
                        error: timeout("slow"),
                        ignored: false,
                    },
                ),
            ],
        };
        assert!(report.denied());
        let text = report.render();
        assert_eq!(
            text,
            "pre-promote hooks denied the release:\n  labels (app): 2 problems\n    - Deployment web/web: metadata.labels.team: missing\n    - image web:latest is not pinned\n  slow (app): error: hook `slow` did not finish within its timeout of 2s"
        );
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["verdicts"][0]["outcome"]["verdict"], "denied");
        assert_eq!(
            json["verdicts"][0]["outcome"]["violations"][0]["field"],
            "metadata.labels.team"
        );
        assert_eq!(
            json["verdicts"][1]["outcome"],
            serde_json::json!({"verdict": "allowed"})
        );
        assert_eq!(json["verdicts"][2]["outcome"]["errorKind"], "timeout");
        assert!(
            json["verdicts"][2]["outcome"]["error"]
                .as_str()
                .unwrap()
                .contains("timeout of 2s")
        );
        assert!(!PhaseReport::default().denied());
        let recorded = report.verdicts_json();
        assert_eq!(recorded[1]["phase"], "pre-promote");
        assert_eq!(recorded[1]["hook"], "fine");
    }
}
