#!/usr/bin/env bash
# Admission webhook benchmark (tests/benches/webhook_latency.rs): AdmissionReviews POSTed
# directly to `webhook serve` with three Rust hooks that allow, three that deny, and an empty
# policy, and the API server's added latency for server-side dry-run patches with the webhook
# registered (allowing, denying) vs. not. Prints percentiles, differences and a summary block
# for the README.
#
#   bash tests/bench-webhook.sh [REQUESTS] [APPLIES]   # defaults 500 (BENCH_REQUESTS), 100 (BENCH_APPLIES)
#
# Measures the release build of the plugin, target/release/kubectl-release (built here; several
# minutes with LTO), or $KUBECTL_RELEASE_BIN (e.g. target/debug/kubectl-release), and the example
# hooks of target/hooks. The bench harness itself (the client) is the dev profile.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -gt 0 ]; then export BENCH_REQUESTS=$1; fi
if [ $# -gt 1 ]; then export BENCH_APPLIES=$2; fi
bash tests/testenv/install.sh >/dev/null
if [ -z "${KUBECTL_RELEASE_BIN:-}" ]; then
  cargo build --locked --release -p kubectl-release
  export KUBECTL_RELEASE_BIN="$PWD/target/release/kubectl-release"
fi
for hook in required-labels same-image-across-envs approval-rules; do
  [ -f "target/hooks/$hook.wasm" ] || bash example-hooks/build.sh
done
exec cargo bench --locked -p kubectl-release-tests --bench webhook_latency --profile dev
