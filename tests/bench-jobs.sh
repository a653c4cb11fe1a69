#!/usr/bin/env bash
# Jobs benchmark: a `kubectl-release deploy` with one pre-deploy Job (`sleep 1`) against the same
# deploy without Jobs, on one control plane in one run (tests/benches/jobs_overhead.rs). Prints
# the pod finished → rollout start latency, the overhead besides the Job's run against the goal
# (<= 100 ms), and a summary block for the README.
#
#   bash tests/bench-jobs.sh [ROUNDS]        # default 7 (BENCH_ROUNDS)
#
# Measures the release build of the plugin ($KUBECTL_RELEASE_BIN to pick another). The bench
# binary itself only starts commands, watches and waits, so it is built with the dev profile:
# that spares a second LTO build and changes nothing that is measured.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -gt 0 ]; then export BENCH_ROUNDS=$1; fi
bash tests/testenv/install.sh >/dev/null
if [ -z "${KUBECTL_RELEASE_BIN:-}" ]; then
  cargo build --locked --release -p kubectl-release
  export KUBECTL_RELEASE_BIN=$PWD/target/release/kubectl-release
fi
exec cargo bench --locked -p kubectl-release-tests --bench jobs_overhead --profile dev
