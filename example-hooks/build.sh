#!/usr/bin/env bash
# Builds every example hook to target/hooks/<name>.wasm (under $CARGO_TARGET_DIR if set) and
# prints its sha256, the value to pin in release.yaml.
# Usage: example-hooks/build.sh [hook…]   (default: all of them)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

target=wasm32-wasip1
if ! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
  echo "installing the $target target" >&2
  rustup target add "$target"
fi

hooks=("$@")
if [ ${#hooks[@]} -eq 0 ]; then
  hooks=(same-image-across-envs required-labels approval-rules web-service-generator)
fi

packages=()
for hook in "${hooks[@]}"; do packages+=(-p "$hook"); done

# 1 MiB of stack and 1 MiB of heap from the start: a hook that has to grow its memory pays for
# changing page protections on every run (the sandbox resets each instance to its initial size).
initial_memory=$((2 * 1024 * 1024))

# A profile of its own, so hook modules are small (opt-level "s") without touching the release
# profile of the plugin; it inherits lto, codegen-units = 1 and strip from [profile.release].
cargo build --target "$target" \
  --config 'profile.hook-release.inherits="release"' \
  --config 'profile.hook-release.opt-level="s"' \
  --config 'profile.hook-release.panic="abort"' \
  --config "target.$target.rustflags=[\"-C\", \"link-arg=--initial-memory=$initial_memory\"]" \
  --profile hook-release "${packages[@]}"

target_dir="${CARGO_TARGET_DIR:-$root/target}"
out="$target_dir/hooks"
mkdir -p "$out"
for hook in "${hooks[@]}"; do
  cp "$target_dir/$target/hook-release/$hook.wasm" "$out/$hook.wasm.tmp"
  mv "$out/$hook.wasm.tmp" "$out/$hook.wasm"
done
(cd "$out" && for hook in "${hooks[@]}"; do sha256sum "$hook.wasm"; done)
