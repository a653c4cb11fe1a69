#!/usr/bin/env bash
# GitOps promote benchmark (issue #17): the wall time of `kubectl-release promote qa production`
# from start to its commit being on the deployment repository's remote, for one app and for 50
# apps promoted into one repository at once (`promote --all`), against the polling anchors (Argo
# CD Image Updater's 2-minute interval, Argo CD's 3-minute Git poll), on one control plane in one
# run (tests/benches/gitops_promote.rs). Prints every run, medians, the goal (< 1 s for one app,
# < 10 s for 50) and a summary block for the README.
#
#   bash tests/bench-gitops.sh [ROUNDS]     # default 5 one-app rounds (BENCH_ROUNDS); 3 for 50 apps (BENCH_ROUNDS_50)
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
exec cargo bench --locked -p kubectl-release-tests --bench gitops_promote --profile dev
