//! The shared conformance fixtures, through the same code path as the wasm module.

use hooks_sdk::HookRequest;
use hooks_sdk::guest::{Command, evaluate_with_settings};
use hooks_sdk::testing::{self, conformance_cases};

#[test]
fn conformance_fixtures() {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../conformance/required-labels"
    );
    let cases = conformance_cases(dir).unwrap();
    testing::assert_all(
        &cases,
        testing::with_settings(required_labels::validate, required_labels::check),
    );
}

#[test]
fn invalid_patterns_are_refused_by_validate_settings() {
    let request = HookRequest {
        settings: serde_json::json!({"labels": {"team": "^[a-z"}}),
        ..Default::default()
    };
    let response = evaluate_with_settings(
        Command::ValidateSettings,
        &request,
        required_labels::validate,
        required_labels::check,
    )
    .unwrap();
    assert!(!response.allowed);
    assert!(response.message.unwrap().contains("labels.team"));
    assert!(
        evaluate_with_settings(
            Command::Check,
            &request,
            required_labels::validate,
            required_labels::check
        )
        .is_err()
    );
}

#[test]
fn violations_name_the_field() {
    let case = &conformance_cases(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../conformance/required-labels"
    ))
    .unwrap();
    let latest = case
        .iter()
        .find(|c| c.name.contains("latest-image"))
        .unwrap();
    let response = latest
        .run(testing::with_settings(
            required_labels::validate,
            required_labels::check,
        ))
        .unwrap();
    assert_eq!(
        response.violations[0].field.as_deref(),
        Some("spec.template.spec.containers[0].image")
    );
    assert!(response.violations[0].message.contains("latest"));
}
