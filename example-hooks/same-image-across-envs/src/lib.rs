//! "Production only gets what ran in qa": a release into an environment with `promoteFrom` must
//! carry, container by container, exactly the digest running in the source environment.
//!
//! Containers are matched by workload kind and name and container name, not namespace, since
//! each environment usually has a namespace of its own. The source is the target's `promoteFrom`
//! as listed in the request's `environments`, whatever `--force-source` said: a forced promotion
//! from elsewhere still has to match what runs in the regular source.

use hooks_sdk::{ContainerChange, EnvironmentState, HookRequest, HookResponse, Violation};
use serde::Deserialize;

/// The hook takes no settings; unknown keys are refused so that a typo is not silently ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {}

/// Every settings object without keys is valid.
pub fn validate(_settings: &Settings) -> Result<(), String> {
    Ok(())
}

/// The rule.
pub fn check(req: &HookRequest, _settings: &Settings) -> HookResponse {
    let target = &req.release.target_environment;
    let Some(target_state) = req.environment(target) else {
        return HookResponse::deny(format!(
            "cannot check: the request does not describe the target environment `{target}`"
        ))
        .with_violation(Violation::new(format!(
            "environment `{target}` is missing from the request"
        )));
    };
    let Some(source) = target_state.promote_from.as_deref() else {
        return HookResponse::allow().with_message(format!(
            "`{target}` has no promoteFrom; any image may be deployed there"
        ));
    };
    let Some(source_state) = req.environment(source) else {
        return HookResponse::deny(format!(
            "cannot check: the request does not say what runs in `{source}`"
        ))
        .with_violation(Violation::new(format!(
            "environment `{source}` (promoteFrom of `{target}`) is missing from the request"
        )));
    };

    let violations: Vec<Violation> = req
        .release
        .containers
        .iter()
        .filter_map(|change| mismatch(change, source_state))
        .collect();
    let mut response = HookResponse::from_violations(
        format!(
            "{} of {} containers would not run in `{target}` what runs in `{source}`; promote from `{source}` instead",
            violations.len(),
            req.release.containers.len()
        ),
        violations,
    );
    if req.release.forced_source && req.release.source_environment.as_deref() != Some(source) {
        response = response.with_warning(format!(
            "the promotion's source was forced to `{}`; compared with `{source}`, the promoteFrom of `{target}`",
            req.release.source_environment.as_deref().unwrap_or("?")
        ));
    }
    response
}

/// Why `change` does not carry what runs in the source, if it does not.
fn mismatch(change: &ContainerChange, source: &EnvironmentState) -> Option<Violation> {
    let violation = |problem: String| {
        Some(
            Violation::new(format!("container `{}` {problem}", change.container))
                .on(change.workload.clone()),
        )
    };
    let Some(running) = source.container(&change.workload, &change.container) else {
        return violation(format!(
            "does not run in `{}`: no {} named {} with that container there",
            source.name, change.workload.kind, change.workload.name
        ));
    };
    match running.digests.as_slice() {
        [] => violation(format!(
            "has no digest reported in `{}`; are its pods running?",
            source.name
        )),
        [digest] if *digest == change.digest_after => None,
        [digest] => violation(format!(
            "would get {}, but `{}` runs {digest}",
            change.digest_after, source.name
        )),
        several => violation(format!(
            "runs {} different digests in `{}` ({}); wait for its rollout to finish",
            several.len(),
            source.name,
            several.join(", ")
        )),
    }
}
