//! "Two approvals from people other than the deployer, and nothing over the holidays."
//!
//! Settings:
//!
//! ```json
//! { "required": 2, "excludeDeployer": true,
//!   "freezeWindows": [{ "start": "2025-12-20T00:00:00Z", "end": "2026-01-05T00:00:00Z" }] }
//! ```
//!
//! An approval counts when it is for the target environment, names exactly the digests being
//! released (`release.containers[].digestAfter`: a rebuilt image needs a new approval), was
//! given no later than `now` and expires after it; each person counts once, and with
//! `excludeDeployer` (the default) the actor's own approval does not count. While `now` is in a
//! freeze window (`start` inclusive, `end` exclusive) every release is denied.

use hooks_sdk::helpers::{Timestamp, valid_approvals};
use hooks_sdk::{HookRequest, HookResponse, Violation};
use serde::Deserialize;

/// The hook's settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Settings {
    /// How many approvals from distinct people are needed (0: only freeze windows apply).
    #[serde(default = "one")]
    pub required: u32,
    /// Leave out the actor's own approval.
    #[serde(default = "yes")]
    pub exclude_deployer: bool,
    /// Periods in which nothing is released.
    #[serde(default)]
    pub freeze_windows: Vec<FreezeWindow>,
    /// Count only approvals whose approver the API server vouched for (`verified`): with the
    /// admission webhook registered, every approval it admitted is.
    #[serde(default)]
    pub verified_only: bool,
}

fn one() -> u32 {
    1
}

fn yes() -> bool {
    true
}

/// A period in which nothing is released: from `start` (inclusive) to `end` (exclusive).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FreezeWindow {
    /// RFC 3339.
    pub start: String,
    /// RFC 3339.
    pub end: String,
    /// Shown in the denial, e.g. "year-end freeze".
    #[serde(default)]
    pub reason: Option<String>,
}

/// Settings are valid when every window has readable times and ends after it starts.
pub fn validate(settings: &Settings) -> Result<(), String> {
    for (i, window) in settings.freeze_windows.iter().enumerate() {
        let (start, end) = window_times(window).map_err(|e| format!("freezeWindows[{i}]: {e}"))?;
        if end <= start {
            return Err(format!(
                "freezeWindows[{i}]: end {} is not after start {}",
                window.end, window.start
            ));
        }
    }
    Ok(())
}

fn window_times(window: &FreezeWindow) -> Result<(Timestamp, Timestamp), String> {
    let parse = |name: &str, text: &str| {
        Timestamp::parse(text).ok_or_else(|| {
            format!("{name} `{text}` is not an RFC 3339 time such as 2025-12-20T00:00:00Z")
        })
    };
    Ok((parse("start", &window.start)?, parse("end", &window.end)?))
}

/// The rule.
pub fn check(req: &HookRequest, settings: &Settings) -> HookResponse {
    let env = &req.release.target_environment;
    let Some(now) = Timestamp::parse(&req.now) else {
        return HookResponse::deny(format!(
            "cannot check: `now` ({}) is not an RFC 3339 time",
            req.now
        ))
        .with_violation(Violation::new("the request's time is unreadable").at("now"));
    };
    let mut violations = Vec::new();

    for (i, window) in settings.freeze_windows.iter().enumerate() {
        let Ok((start, end)) = window_times(window) else {
            continue;
        };
        if start <= now && now < end {
            let why = window
                .reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default();
            violations.push(
                Violation::new(format!(
                    "releases are frozen from {} until {}{why}",
                    window.start, window.end
                ))
                .at(format!("settings.freezeWindows[{i}]")),
            );
        }
    }

    let mut warnings = Vec::new();
    let required = usize::try_from(settings.required).unwrap_or(usize::MAX);
    if required > 0 {
        let digests = req.release.digests();
        let excluded = settings.exclude_deployer.then_some(req.actor.user.as_str());
        let considered: Vec<hooks_sdk::Approval> = req
            .approvals
            .iter()
            .filter(|a| a.verified || !settings.verified_only)
            .cloned()
            .collect();
        let valid = valid_approvals(&considered, env, &digests, &req.now, excluded);
        if valid.len() < required {
            let counted: Vec<&str> = valid.iter().map(|a| a.user.as_str()).collect();
            let mut message = format!(
                "needs {required} {}approvals of exactly these digests for `{env}`{}, has {}",
                if settings.verified_only {
                    "verified "
                } else {
                    ""
                },
                if settings.exclude_deployer {
                    format!(" from people other than {}", req.actor.user)
                } else {
                    String::new()
                },
                if counted.is_empty() {
                    "none".to_string()
                } else {
                    format!("{} ({})", counted.len(), counted.join(", "))
                }
            );
            let stale = req
                .approvals
                .iter()
                .filter(|a| a.environment == *env && !counted.contains(&a.user.as_str()))
                .count();
            if stale > 0 {
                message.push_str(&format!(
                    "; {stale} other approvals for `{env}` do not count (expired, for other digests, duplicate or by the deployer)"
                ));
            }
            violations.push(Violation::new(message).at("approvals"));
        }
        warnings.extend(valid.iter().filter(|a| !a.verified).map(|a| {
            format!(
                "the approval by {} was recorded without a verified identity",
                a.user
            )
        }));
    }

    let mut response = HookResponse::from_violations(
        format!("the release into `{env}` is not approved"),
        violations,
    );
    for warning in warnings {
        response = response.with_warning(warning);
    }
    response
}
