//! The `web-service-generator` module: see the crate's README.

fn main() {
    hooks_sdk::generator::run(web_service_generator::generate);
}
