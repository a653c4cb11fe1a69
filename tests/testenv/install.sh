#!/usr/bin/env bash
# Installs everything the end-to-end tests and the demo need on a fresh Debian bookworm machine,
# and builds the Kubernetes control plane once into a cache outside the repo.
#
# Idempotent: a second run only checks. The control-plane binaries are keyed by version under
# $KUBECTL_RELEASE_CACHE (default ~/.cache/kubectl-release), so CI and later runs reuse them.
set -euo pipefail

K8S_VERSION=1.20.2
# The build's own revision, part of the cache key: r2 carries reflect2 1.0.2 (see below), so a
# cache of the first build is never reused.
K8S_BUILD=r2
CACHE=${KUBECTL_RELEASE_CACHE:-$HOME/.cache/kubectl-release}
K8S_BIN=$CACHE/kubernetes-$K8S_VERSION-$K8S_BUILD/bin
# curl, openssl and iproute2 (ss) are what testenv.sh uses besides the daemons.
APT_PACKAGES=(etcd-server docker-registry apache2-utils golang-go golang-1.23-go rsync git dpkg-dev curl openssl iproute2)

log() { echo "install: $*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

ensure_apt_sources() {
  # deb-src for the kubernetes source package, backports for Go 1.23 (GOOS=wasip1 hooks).
  local list=/etc/apt/sources.list.d/kubectl-release.sources
  if [ ! -f "$list" ]; then
    log "adding deb-src and bookworm-backports to apt's sources"
    as_root tee "$list" >/dev/null <<'SRC'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    as_root apt-get update -qq
  fi
}

ensure_packages() {
  local missing=()
  for p in "${APT_PACKAGES[@]}" "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    log "apt-get install ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

build_control_plane() {
  if [ -x "$K8S_BIN/kube-apiserver" ] && [ -x "$K8S_BIN/kube-controller-manager" ] && [ -x "$K8S_BIN/kube-scheduler" ]; then
    return
  fi
  log "building kube-apiserver, kube-controller-manager, kube-scheduler $K8S_VERSION (once; about 6-10 minutes)"
  local work=$CACHE/kubernetes-$K8S_VERSION-$K8S_BUILD/src
  rm -rf "$work" && mkdir -p "$work"
  (cd "$work" && apt-get source --download-only "kubernetes=$K8S_VERSION*" >/dev/null 2>&1 \
     || apt-get source --download-only kubernetes >/dev/null)
  (cd "$work" && dpkg-source -x --skip-patches ./*.dsc tree >/dev/null)
  local tree=$work/tree
  patch_reflect2 "$work" "$tree"
  mkdir -p "$work/.go/src/k8s.io"
  ln -sfn "$tree" "$work/.go/src/k8s.io/kubernetes"
  (cd "$work/.go/src/k8s.io/kubernetes" &&
    GOPATH=$work/.go GO111MODULE=off CGO_ENABLED=0 GOFLAGS= GOCACHE=$CACHE/go-build \
      make WHAT="cmd/kube-apiserver cmd/kube-controller-manager cmd/kube-scheduler" >"$work/build.log" 2>&1) || {
    tail -30 "$work/build.log" >&2
    log "control-plane build failed; full log in $work/build.log"
    exit 1
  }
  mkdir -p "$K8S_BIN"
  for b in kube-apiserver kube-controller-manager kube-scheduler; do
    cp "$tree/_output/bin/$b" "$K8S_BIN/$b.tmp" && mv "$K8S_BIN/$b.tmp" "$K8S_BIN/$b"
  done
  rm -rf "$work"
  log "control plane cached in $K8S_BIN"
}

# Kubernetes 1.20 vendors modern-go/reflect2 1.0.1, whose map iteration faults under Go 1.18 and
# later (the Go Debian ships): kube-apiserver segfaults the first time a mutating webhook returns
# a JSON patch (mutating.jsonPatchAnnotationValue). reflect2 1.0.2 fixes it; Debian packages it.
patch_reflect2() {
  local work=$1 tree=$2
  (cd "$work" && apt-get download golang-github-modern-go-reflect2-dev >/dev/null)
  dpkg-deb -x "$work"/golang-github-modern-go-reflect2-dev_*.deb "$work/reflect2"
  local vendored=$tree/vendor/github.com/modern-go/reflect2
  [ -d "$vendored" ] || { log "no vendored reflect2 in the kubernetes tree"; exit 1; }
  rm -f "$vendored"/*.go "$vendored"/*.s
  cp "$work"/reflect2/usr/share/gocode/src/github.com/modern-go/reflect2/*.go "$vendored/"
  find "$work"/reflect2/usr/share/gocode/src/github.com/modern-go/reflect2 -maxdepth 1 -name '*.s' -exec cp {} "$vendored/" \;
  rm -f "$vendored"/*_test.go
}

main() {
  ensure_apt_sources
  ensure_packages "$@"
  build_control_plane
  echo "$K8S_BIN"
}

main "$@"
