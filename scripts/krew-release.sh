#!/usr/bin/env bash
# Builds the release archives for every platform krew serves, computes their sha256 and writes
# krew-manifest.yaml — one command for a release:
#
#   scripts/krew-release.sh                # all platforms, version from plugin/Cargo.toml
#   PLATFORMS="linux/amd64" scripts/krew-release.sh   # a subset (for a local try)
#
# Archives land in dist/ as kubectl-release_<version>_<os>_<arch>.tar.gz, holding the binary
# `kubectl-release` and LICENSE. Linux targets use the Rust toolchain (plus gcc-aarch64-linux-gnu
# for arm64); darwin targets need cargo-zigbuild and zig (`pip install ziglang`).
set -euo pipefail
shopt -s inherit_errexit   # a failed build inside $(build …) must stop the release
cd "$(dirname "$0")/.."

VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
BASE_URL=${BASE_URL:-https://github.com/kubectl-release/kubectl-release/releases/download/v$VERSION}
PLATFORMS=${PLATFORMS:-"linux/amd64 linux/arm64 darwin/amd64 darwin/arm64"}
mkdir -p dist

rust_target() {
  case "$1" in
    linux/amd64) echo x86_64-unknown-linux-gnu ;;
    linux/arm64) echo aarch64-unknown-linux-gnu ;;
    darwin/amd64) echo x86_64-apple-darwin ;;
    darwin/arm64) echo aarch64-apple-darwin ;;
    *) echo "unknown platform $1" >&2; exit 2 ;;
  esac
}

build() {
  local platform=$1 target
  target=$(rust_target "$platform")
  rustup target add "$target" >/dev/null
  case "$platform" in
    linux/amd64) cargo build --locked --release -p kubectl-release --target "$target" ;;
    linux/arm64)
      CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
        cargo build --locked --release -p kubectl-release --target "$target" ;;
    darwin/*) cargo zigbuild --locked --release -p kubectl-release --target "$target" ;;
  esac
  local binary="target/$target/release/kubectl-release"
  [ -x "$binary" ] || { echo "krew-release: $binary was not built" >&2; exit 1; }
  local os=${platform%/*} arch=${platform#*/}
  local archive=dist/kubectl-release_${VERSION}_${os}_${arch}.tar.gz
  local stage
  stage=$(mktemp -d)
  cp "$binary" LICENSE "$stage/"
  # Reproducible archives: fixed order, owner and time, so the same binary gives the same sha256.
  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$stage" -cf - kubectl-release LICENSE | gzip -n >"$archive"
  rm -rf "$stage"
  echo "$platform $(sha256sum "$archive" | cut -d' ' -f1) $(basename "$archive")"
}

entries=()
for platform in $PLATFORMS; do
  entries+=("$(build "$platform")")
done

{
  cat <<YAML
apiVersion: krew.googlecontainertools.github.com/v1alpha2
kind: Plugin
metadata:
  name: release
spec:
  version: v$VERSION
  homepage: https://github.com/kubectl-release/kubectl-release
  shortDescription: Commit-hash deploys, promotion and WASM policy hooks
  description: |
    Deploys the image built for a commit, pinned by digest, waits for the rollout
    and records it; promotes exactly the digests running in one environment to the
    next; and runs organisation rules as sandboxed WASM hooks before every release.
  caveats: |
    Run it in the app's repository, next to its release.yaml:
      kubectl release deploy qa
      kubectl release promote qa production
  platforms:
YAML
  for entry in "${entries[@]}"; do
    read -r platform sha archive <<<"$entry"
    cat <<YAML
  - selector:
      matchLabels:
        os: ${platform%/*}
        arch: ${platform#*/}
    uri: $BASE_URL/$archive
    sha256: $sha
    bin: kubectl-release
    files:
    - from: kubectl-release
      to: .
    - from: LICENSE
      to: .
YAML
  done
} >krew-manifest.yaml
echo "wrote krew-manifest.yaml for: $PLATFORMS" >&2
