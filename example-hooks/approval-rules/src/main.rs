//! The `approval-rules` hook module: see the crate's README.

fn main() {
    hooks_sdk::guest::run_with_settings(approval_rules::validate, approval_rules::check);
}
