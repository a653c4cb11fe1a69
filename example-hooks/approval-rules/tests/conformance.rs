//! The shared conformance fixtures, through the same code path as the wasm module.

use hooks_sdk::HookRequest;
use hooks_sdk::guest::{Command, evaluate_with_settings};
use hooks_sdk::testing::{self, conformance_cases};

#[test]
fn conformance_fixtures() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../conformance/approval-rules");
    let cases = conformance_cases(dir).unwrap();
    testing::assert_all(
        &cases,
        testing::with_settings(approval_rules::validate, approval_rules::check),
    );
}

#[test]
fn bad_windows_are_refused_by_validate_settings() {
    for (settings, mentions) in [
        (
            serde_json::json!({"freezeWindows": [{"start": "soon", "end": "2026-01-01T00:00:00Z"}]}),
            "freezeWindows[0]: start",
        ),
        (
            serde_json::json!({"freezeWindows": [{"start": "2026-01-02T00:00:00Z", "end": "2026-01-01T00:00:00Z"}]}),
            "not after start",
        ),
        (serde_json::json!({"requried": 2}), "requried"),
    ] {
        let request = HookRequest {
            settings,
            ..Default::default()
        };
        let response = evaluate_with_settings(
            Command::ValidateSettings,
            &request,
            approval_rules::validate,
            approval_rules::check,
        )
        .unwrap();
        assert!(!response.allowed);
        let message = response.message.unwrap();
        assert!(message.contains(mentions), "{message}");
    }
}

#[test]
fn denial_says_who_approved() {
    let cases = conformance_cases(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../conformance/approval-rules"
    ))
    .unwrap();
    let case = cases
        .iter()
        .find(|c| c.name.contains("deployer-approval-excluded"))
        .unwrap();
    let response = case
        .run(testing::with_settings(
            approval_rules::validate,
            approval_rules::check,
        ))
        .unwrap();
    let message = &response.violations[0].message;
    assert!(
        message.contains("has 1 (bob)") && message.contains("other than alice"),
        "{message}"
    );
}
