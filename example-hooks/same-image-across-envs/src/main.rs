//! The `same-image-across-envs` hook module: see the crate's README.

fn main() {
    hooks_sdk::guest::run_with_settings(
        same_image_across_envs::validate,
        same_image_across_envs::check,
    );
}
