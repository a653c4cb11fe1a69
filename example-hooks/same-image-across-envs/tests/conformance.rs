//! The shared conformance fixtures, through the same code path as the wasm module.

use hooks_sdk::testing::{self, conformance_cases};

#[test]
fn conformance_fixtures() {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../conformance/same-image-across-envs"
    );
    let cases = conformance_cases(dir).unwrap();
    testing::assert_all(
        &cases,
        testing::with_settings(
            same_image_across_envs::validate,
            same_image_across_envs::check,
        ),
    );
}

#[test]
fn settings_must_be_empty() {
    let request = hooks_sdk::HookRequest {
        settings: serde_json::json!({"strict": true}),
        ..Default::default()
    };
    let response = hooks_sdk::guest::evaluate_with_settings(
        hooks_sdk::guest::Command::ValidateSettings,
        &request,
        same_image_across_envs::validate,
        same_image_across_envs::check,
    )
    .unwrap();
    assert!(!response.allowed);
    assert!(response.message.unwrap().contains("strict"));
}
