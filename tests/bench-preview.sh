#!/usr/bin/env bash
# Preview benchmark: `kubectl-release preview up --pr N` of an app of 5 objects (a Deployment of
# 2 replicas, a Service, a ConfigMap, a ServiceAccount, a Secret) from nothing, against what the
# control plane itself needs, `kubectl create namespace` + `kubectl apply --server-side` +
# `kubectl rollout status`, on one control plane in one run (tests/benches/preview_vs_kubectl.rs).
# Prints medians, the ratio against the goal (<= 1.2) and a summary block for the README.
#
#   bash tests/bench-preview.sh [ROUNDS]     # default 7 (BENCH_ROUNDS)
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
exec cargo bench --locked -p kubectl-release-tests --bench preview_vs_kubectl --profile dev
