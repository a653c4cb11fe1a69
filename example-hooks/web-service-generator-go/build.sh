#!/usr/bin/env bash
# Builds the Go implementation of the web-service generator to
# target/hooks/web-service-generator-go.wasm (under $CARGO_TARGET_DIR if set) and prints the
# sha256 to pin in release.yaml (`generator.sha256`).
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
# -trimpath and -buildvcs=false keep local paths and the repository's HEAD out of the module, so
# the sha256 depends on the source and the toolchain only; -s -w drop the symbols and DWARF.
"$go" build -trimpath -buildvcs=false -ldflags="-s -w" -o "$out/web-service-generator-go.wasm.tmp" .
mv "$out/web-service-generator-go.wasm.tmp" "$out/web-service-generator-go.wasm"
(cd "$out" && sha256sum web-service-generator-go.wasm)
