#!/usr/bin/env bash
# Builds the Go implementation of the required-labels hook to
# target/hooks/required-labels-go.wasm (under $CARGO_TARGET_DIR if set), plus a copy named
# required-labels.go.wasm, the `<hook>.<impl>.wasm` name the plugin's conformance test picks up,
# and prints the sha256 to pin in release.yaml.
#
# Needs Go >= 1.21 for GOOS=wasip1; uses Debian's golang-1.23-go from bookworm-backports and
# installs it when missing. Standard library only, no network: GOPROXY=off, GOTOOLCHAIN=local.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
go_pkg=golang-1.23-go
go="${GO:-/usr/lib/go-1.23/bin/go}"

if [ ! -x "$go" ]; then
  echo "installing $go_pkg (bookworm-backports, see tests/testenv/install.sh)" >&2
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  if ! DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$go_pkg" >/dev/null; then
    echo "cannot install $go_pkg: is bookworm-backports in apt's sources? run tests/testenv/install.sh" >&2
    exit 1
  fi
fi

cache="${XDG_CACHE_HOME:-$HOME/.cache}/kubectl-release/go"
export GOCACHE="$cache/build" GOPATH="$cache/path" GOMODCACHE="$cache/path/pkg/mod"
export GOPROXY=off GOTOOLCHAIN=local GOFLAGS= GOWORK=off CGO_ENABLED=0
export GOOS=wasip1 GOARCH=wasm

target_dir="${CARGO_TARGET_DIR:-$root/target}"
out="$target_dir/hooks"
mkdir -p "$out"

cd "$here"
# The sha256 must depend on the source and the toolchain only: -trimpath keeps local paths out,
# -buildvcs=false keeps out the repository's HEAD commit and time (else every commit of the repo
# would change the pin). -s -w drop the symbol table and DWARF (a third of the size).
"$go" build -trimpath -buildvcs=false -ldflags="-s -w" -o "$out/required-labels-go.wasm.tmp" .
mv "$out/required-labels-go.wasm.tmp" "$out/required-labels-go.wasm"
cp "$out/required-labels-go.wasm" "$out/required-labels.go.wasm.tmp"
mv "$out/required-labels.go.wasm.tmp" "$out/required-labels.go.wasm"
(cd "$out" && sha256sum required-labels-go.wasm)
