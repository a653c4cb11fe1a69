#!/usr/bin/env bash
# Scale benchmark: `kubectl-release promote qa --all` over hundreds of apps against `kubectl set
# image` on every Deployment, on one control plane in one run (tests/benches/promote_scale.rs).
# Prints wall times, their ratio, the plugin's peak RSS and requests per workload.
#
#   bash tests/bench-promote-scale.sh [APPS] [CONCURRENCY,...]   # default 300 and 16
#
# Other knobs are environment variables, listed at the top of tests/benches/promote_scale.rs
# (BENCH_BASELINE_WAIT, BENCH_HOOKS, BENCH_PLUGIN_LOG, ...). 300 apps take about 10 minutes,
# most of it the control plane rolling out 300 Deployments several times.
#
# Measures the release build of the plugin ($KUBECTL_RELEASE_BIN to pick another). The bench
# binary itself only starts commands and waits for them, so it is built with the dev profile.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -gt 0 ]; then export BENCH_APPS=$1; fi
if [ $# -gt 1 ]; then export BENCH_CONCURRENCY=$2; fi
bash tests/testenv/install.sh >/dev/null
command -v /usr/bin/time >/dev/null || echo "note: no /usr/bin/time, so no peak RSS (apt-get install -y time)" >&2
if [ -z "${KUBECTL_RELEASE_BIN:-}" ]; then
  cargo build --locked --release -p kubectl-release
  export KUBECTL_RELEASE_BIN=$PWD/target/release/kubectl-release
fi
cargo build --locked -p kubectl-release-tests --bins
if [ "${BENCH_HOOKS:-1}" != 0 ] && { [ ! -f target/hooks/required-labels.wasm ] || [ ! -f target/hooks/same-image-across-envs.wasm ]; }; then
  example-hooks/build.sh required-labels same-image-across-envs
fi
exec cargo bench --locked -p kubectl-release-tests --bench promote_scale --profile dev
