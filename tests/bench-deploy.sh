#!/usr/bin/env bash
# Deploy benchmark: `kubectl-release deploy` against `kubectl set image` + `kubectl rollout status`
# on one control plane in one run (tests/benches/deploy_vs_kubectl.rs). Prints medians, ratios
# and a summary block for the README.
#
#   bash tests/bench-deploy.sh [ROUNDS]      # default 7 (BENCH_ROUNDS)
#
# Measures the release build of the plugin ($KUBECTL_RELEASE_BIN to pick another). The bench
# binary itself only starts commands and waits for them, so it is built with the dev profile:
# that spares a second LTO build and changes nothing that is measured.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -gt 0 ]; then export BENCH_ROUNDS=$1; fi
bash tests/testenv/install.sh >/dev/null
if [ -z "${KUBECTL_RELEASE_BIN:-}" ]; then
  cargo build --locked --release -p kubectl-release
  export KUBECTL_RELEASE_BIN=$PWD/target/release/kubectl-release
fi
exec cargo bench --locked -p kubectl-release-tests --bench deploy_vs_kubectl --profile dev
