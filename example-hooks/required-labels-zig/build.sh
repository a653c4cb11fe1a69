#!/usr/bin/env bash
# Builds the Zig implementation of the required-labels hook to
# target/hooks/required-labels-zig.wasm (under $CARGO_TARGET_DIR if set), plus a copy named
# required-labels.zig.wasm, the `<hook>.<impl>.wasm` name the plugin's conformance test picks up,
# and prints the sha256 to pin in release.yaml.
#
# Zig comes from PyPI (the `ziglang` wheel bundles the compiler and its std); it is installed
# when missing or at another version. Standard library only; no network once installed.
# Usage: example-hooks/required-labels-zig/build.sh [--test]   (--test also runs the unit tests)
set -euo pipefail

zig_version=0.14.1

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
python="${PYTHON:-python3}"

if [ "$("$python" -m ziglang version 2>/dev/null || true)" != "$zig_version" ]; then
  echo "installing zig $zig_version (pip install ziglang==$zig_version)" >&2
  "$python" -m pip install --quiet --disable-pip-version-check "ziglang==$zig_version"
fi

# Zig's caches go under ~/.cache, never into the checkout.
cache="${XDG_CACHE_HOME:-$HOME/.cache}/kubectl-release/zig"
export ZIG_GLOBAL_CACHE_DIR="$cache/global" ZIG_LOCAL_CACHE_DIR="$cache/local"

target_dir="${CARGO_TARGET_DIR:-$root/target}"
out="$target_dir/hooks"
mkdir -p "$out"

cd "$here"
if [ "${1:-}" = "--test" ]; then
  "$python" -m ziglang test src/main.zig
fi
# ReleaseSmall also strips debug info; -fsingle-threaded: WASI preview 1 has no threads.
# Zig leaves an object file next to the module, hence a scratch directory.
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
"$python" -m ziglang build-exe src/main.zig -target wasm32-wasi -O ReleaseSmall -fsingle-threaded \
  --name required-labels-zig -femit-bin="$scratch/required-labels-zig.wasm"
cp "$scratch/required-labels-zig.wasm" "$out/required-labels-zig.wasm.tmp"
mv "$out/required-labels-zig.wasm.tmp" "$out/required-labels-zig.wasm"
cp "$out/required-labels-zig.wasm" "$out/required-labels.zig.wasm.tmp"
mv "$out/required-labels.zig.wasm.tmp" "$out/required-labels.zig.wasm"
(cd "$out" && sha256sum required-labels-zig.wasm)
