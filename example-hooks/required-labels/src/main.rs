//! The `required-labels` hook module: see the crate's README.

fn main() {
    hooks_sdk::guest::run_with_settings(required_labels::validate, required_labels::check);
}
