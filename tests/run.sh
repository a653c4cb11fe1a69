#!/usr/bin/env bash
# The README's test command: installs what the tests need (idempotent), builds the example
# hooks to WASM, and runs every unit and end-to-end test against a real control plane.
set -euo pipefail
cd "$(dirname "$0")/.."

bash tests/testenv/install.sh >/dev/null
bash example-hooks/build.sh
# The same required-labels contract in Go and in Zig, run against the shared fixtures.
bash example-hooks/required-labels-go/build.sh
bash example-hooks/web-service-generator-go/build.sh
bash example-hooks/required-labels-zig/build.sh
# The code stays formatted and lint-free: CI fails on either before any test runs.
cargo fmt --all --check
cargo clippy --locked --workspace --all-targets -- -D warnings
# The e2e tests run the plugin and fake-kubelet binaries: build them before any test starts.
cargo build --locked --workspace --bins
cargo test --locked --workspace "$@"
