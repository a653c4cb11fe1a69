//! "Every workload carries team/owner labels, and every image is immutable."
//!
//! Settings: `{ "labels": { "team": "^[a-z-]+$", "owner": ".*" } }`, label key → regular
//! expression its value must match (unanchored unless written with `^…$`; `.*` only requires the
//! label to exist). The labels are checked on each workload's `metadata.labels` and on its pod
//! template (`spec.template`, or `spec.jobTemplate.spec.template` for CronJobs), since the pods
//! are what cost reports and alerts see.
//!
//! Every container and init container image must be pinned by digest (`@sha256:…`) or tagged
//! with a full 40-hex commit: `latest`, other tags and untagged references can change under a
//! running workload.

use std::collections::BTreeMap;

use hooks_sdk::helpers::{
    Labels, image_digest, image_tag, is_immutable_reference, pod_containers, pod_template_labels,
    pod_template_path, workload_labels, workload_ref,
};
use hooks_sdk::{HookRequest, HookResponse, Violation, WorkloadRef};
use regex_lite::Regex;
use serde::Deserialize;

/// The hook's settings.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Label key → regular expression its value must match.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// Settings are valid when every pattern compiles.
pub fn validate(settings: &Settings) -> Result<(), String> {
    compile(settings).map(|_| ())
}

fn compile(settings: &Settings) -> Result<Vec<(&str, Regex)>, String> {
    settings
        .labels
        .iter()
        .map(|(key, pattern)| {
            Regex::new(pattern)
                .map(|re| (key.as_str(), re))
                .map_err(|e| {
                    format!("labels.{key}: `{pattern}` is not a valid regular expression: {e}")
                })
        })
        .collect()
}

/// The rule.
pub fn check(req: &HookRequest, settings: &Settings) -> HookResponse {
    let rules = match compile(settings) {
        Ok(rules) => rules,
        // Settings are validated before `check` runs; this only guards direct callers.
        Err(reason) => return HookResponse::deny(reason),
    };
    let mut violations = Vec::new();
    for workload in &req.workloads {
        let at = workload_ref(workload);
        check_labels(
            &rules,
            &at,
            "metadata.labels",
            &workload_labels(workload),
            &mut violations,
        );
        if let Some(template) = pod_template_path(workload) {
            let field = format!("{template}.metadata.labels");
            check_labels(
                &rules,
                &at,
                &field,
                &pod_template_labels(workload),
                &mut violations,
            );
        }
        for container in pod_containers(workload) {
            if !is_immutable_reference(container.image) {
                violations.push(
                    Violation::new(format!(
                        "container `{}`: {}",
                        container.name,
                        image_problem(container.image)
                    ))
                    .on(at.clone())
                    .at(format!("{}.image", container.field)),
                );
            }
        }
    }
    HookResponse::from_violations(
        format!(
            "{} problems with labels or images; fix the manifests and release again",
            violations.len()
        ),
        violations,
    )
}

fn check_labels(
    rules: &[(&str, Regex)],
    at: &WorkloadRef,
    field: &str,
    labels: &Labels,
    violations: &mut Vec<Violation>,
) {
    for (key, pattern) in rules {
        let violation = match labels.get(*key) {
            None => format!("missing label `{key}`"),
            Some(value) if !pattern.is_match(value) => {
                format!(
                    "label `{key}={value}` does not match `{}`",
                    pattern.as_str()
                )
            }
            Some(_) => continue,
        };
        violations.push(
            Violation::new(violation)
                .on(at.clone())
                .at(format!("{field}.{key}")),
        );
    }
}

fn image_problem(image: &str) -> String {
    let pin = "pin it by digest (@sha256:…) or tag it with the full commit hash";
    if image.is_empty() {
        return "has no image".to_string();
    }
    match (image_tag(image), image_digest(image)) {
        (None, None) => format!("image `{image}` has no tag, which means `latest`; {pin}"),
        (Some("latest"), _) => {
            format!("image `{image}` uses `latest`, which changes under running pods; {pin}")
        }
        _ => format!("image `{image}` uses a tag that can be moved; {pin}"),
    }
}
