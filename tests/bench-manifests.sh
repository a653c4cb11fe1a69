#!/usr/bin/env bash
# Manifests benchmark: `kubectl-release deploy` of an app's manifests (10 Deployments, a Service
# and a ConfigMap each) against `kubectl apply --server-side -f DIR` + `kubectl rollout status`
# per Deployment, and `kubectl-release plan` against `kubectl diff --server-side`, on one control
# plane in one run (tests/benches/manifests_vs_kubectl.rs). Prints medians, ratios against the
# goals (deploy <= 0.5, plan <= 1.5) and a summary block for the README.
#
#   bash tests/bench-manifests.sh [ROUNDS]   # default 7 (BENCH_ROUNDS)
#   CONTROLLER_QPS=500 bash tests/bench-manifests.sh
#       the same with the test controller-manager's API rate limit raised from its default
#       (20/s): at the default, both rollouts queue behind it (tests/testenv/testenv.sh)
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
exec cargo bench --locked -p kubectl-release-tests --bench manifests_vs_kubectl --profile dev
