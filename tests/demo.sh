#!/usr/bin/env bash
# The README's first command: sets up a real control plane and registry on this machine and runs
# the main job — a commit-hash deploy to qa and a promotion to production, with WASM hooks
# deciding — then leaves everything running for you to try by hand.
#
#   tests/demo.sh                       # environment in /tmp/kubectl-release-demo
#   tests/testenv/testenv.sh down /tmp/kubectl-release-demo     # stop it
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DEMO=${KUBECTL_RELEASE_DEMO_DIR:-/tmp/kubectl-release-demo}
cd "$ROOT"

say() { printf '\n\033[1m== %s\033[0m\n' "$*" >&2; }
run() { printf '\n$ %s\n' "$*" >&2; "$@"; }
# Runs a command that must fail with exit code $1, showing that it did.
expect_exit() {
  local want=$1; shift
  printf '\n$ %s\n' "$*" >&2
  set +e; "$@"; local got=$?; set -e
  if [ "$got" != "$want" ]; then echo "demo: expected exit $want, got $got" >&2; exit 1; fi
  echo "(exit $got, as expected)" >&2
}

say "Installing what the demo needs (Debian packages; the control plane is built once and cached)"
bash tests/testenv/install.sh >/dev/null
bash example-hooks/build.sh >/dev/null
cargo build --locked --workspace --bins
export PATH="$ROOT/target/debug:$PATH"   # kubectl finds plugins on PATH: `kubectl release`

say "Starting etcd, kube-apiserver, controller-manager, scheduler, a registry and a fake kubelet"
bash tests/testenv/testenv.sh down "$DEMO" >/dev/null 2>&1 || true
rm -rf "$DEMO"
bash tests/testenv/testenv.sh up "$DEMO"
# shellcheck disable=SC1091
source "$DEMO/env"   # KUBECONFIG, REGISTRY
export KUBECONFIG

say "An app repository with two commits; CI has pushed an image tagged with each commit"
APP=$DEMO/app
mkdir -p "$APP" && cd "$APP"
git init -q -b main
git config user.name "Demo Developer" && git config user.email dev@example.com
sha() { sha256sum "$1" | cut -d' ' -f1; }
HOOKS=$ROOT/target/hooks
cat >release.yaml <<YAML
apiVersion: kubectl-release.io/v1alpha1
kind: ReleaseConfig
app: web
image: $REGISTRY/acme/web
environments:
  - name: qa
    context: qa
    namespace: web-qa
    manifests: kubernetes/qa       # the app's config ships with its image
    createNamespace: true
  - name: production
    context: production
    namespace: web-prod
    manifests: kubernetes/production
    promoteFrom: qa
    atomic: true
  - name: eu                       # a GitOps environment: releases are commits to deploy.git
    context: production
    namespace: web-eu
    promoteFrom: qa
    gitops:
      repo: $DEMO/deploy.git
      path: apps/web/eu
      author: {name: Release Bot, email: release-bot@example.com}
hooks:
  - name: required-labels
    module: $HOOKS/required-labels.wasm
    sha256: $(sha "$HOOKS/required-labels.wasm")
    settings:
      labels: {team: "^[a-z-]+\$", owner: ".+"}
  - name: same-image
    module: $HOOKS/same-image-across-envs.wasm
    sha256: $(sha "$HOOKS/same-image-across-envs.wasm")
    environments: [production]
    needs: [environments]        # it compares production with qa, also on a direct deploy
  - name: two-approvals
    module: $HOOKS/approval-rules.wasm
    sha256: $(sha "$HOOKS/approval-rules.wasm")
    environments: [production]
    phases: [pre-promote]
    settings: {required: 2, excludeDeployer: true}
jobs:
  - name: migrate                # runs on the release's digest before the rollout, its log streamed
    phase: pre-deploy
    environments: [qa, production]  # Jobs run in the cluster: not in the GitOps environment
    command: [sh, -c, "echo migrating the database; echo 2 migrations applied"]
YAML
# The app's manifests, one directory per environment: qa runs 2 replicas, production 3.
manifests() { # DIR REPLICAS LOG_LEVEL
  mkdir -p "$1"
  cat >"$1/web.yaml" <<YAML
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {team: payments, owner: alice}
spec:
  replicas: $2
  selector: {matchLabels: {app: web}}
  template:
    metadata:
      labels: {app: web, team: payments, owner: alice}
    spec:
      containers:
      - name: web
        image: $REGISTRY/acme/web     # the release pins it to the commit's digest
        envFrom: [{configMapRef: {name: web-config}}]
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports: [{port: 80, protocol: TCP}]
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: web-config
data:
  LOG_LEVEL: $3
YAML
}
manifests kubernetes/qa 2 debug
manifests kubernetes/production 3 info
echo "v1" >app.txt && git add app.txt release.yaml kubernetes && git commit -qm "first version"
FIRST=$(git rev-parse HEAD)
echo "v2" >app.txt && git commit -qam "second version"
SECOND=$(git rev-parse HEAD)
git tag v2
for sha in "$FIRST" "$SECOND"; do
  echo "pushed $REGISTRY/acme/web:$sha -> $(push-image "$REGISTRY" acme/web "$sha")" >&2
done

say "The platform team has provisioned production's namespace; qa's is created by the first release"
kubectl create namespace web-prod >/dev/null

# The deployment repository a GitOps controller (Argo CD, Flux) would apply: eu's directory is a
# kustomization on the first commit's image. `sync_eu` stands in for the controller.
kubectl create namespace web-eu >/dev/null
git init -q --bare -b main "$DEMO/deploy.git"
git clone -q "$DEMO/deploy.git" "$DEMO/deploy-seed" 2>/dev/null
mkdir -p "$DEMO/deploy-seed/apps/web/eu"
manifests "$DEMO/deploy-seed/apps/web/eu" 2 info
cat >"$DEMO/deploy-seed/apps/web/eu/kustomization.yaml" <<YAML
# eu: applied by the GitOps controller from branch main.
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: web-eu
resources:
  - web.yaml
images:
  - name: $REGISTRY/acme/web   # kubectl-release pins the digest here
    newTag: $FIRST
YAML
git -C "$DEMO/deploy-seed" add -A
git -C "$DEMO/deploy-seed" -c user.name=Platform -c user.email=platform@example.com commit -qm "eu: first layout"
git -C "$DEMO/deploy-seed" push -q origin main
sync_eu() {
  rm -rf "$DEMO/deploy-sync" && git clone -q "$DEMO/deploy.git" "$DEMO/deploy-sync"
  kubectl --context admin apply -k "$DEMO/deploy-sync/apps/web/eu" >&2
}
sync_eu

run cat release.yaml
run kubectl release hooks verify

say "Deploy the commit we are on to qa: the migration Job runs, the manifests are applied with the image pinned by digest, the rollout is waited for"
run kubectl release deploy qa
run kubectl -n web-qa get deploy,svc,configmap -l kubectl-release.io/app=web
run kubectl -n web-qa get pods -o 'custom-columns=POD:.metadata.name,IMAGE-ID:.status.containerStatuses[0].imageID'

say "Deploying what already runs is a no-op"
run kubectl release deploy qa


say "Production only gets what runs in qa: deploying another commit there is denied by a hook"
expect_exit 3 kubectl release deploy production "$FIRST"

say "Approvals are RBAC-guarded: approvers may record them, developers may not"
run kubectl apply -f "$ROOT/plugin/rbac/approvals.yaml"
expect_exit 2 kubectl release approve production --context developer

say "Promoting qa to production waits for two approvals from people other than the deployer"
expect_exit 4 kubectl release promote qa production
run kubectl release approve production --context approver
run kubectl release approve production --context approver2
run kubectl release approvals production

say "Promote exactly the digests running in qa to production (as CI would: one JSON document)"
run kubectl release promote qa production --wait -o json

say "Into a GitOps environment the same promotion is one commit to the deployment repository, with trailers"
run kubectl release promote qa eu -o json
run git -C "$DEMO/deploy.git" log -1 --format=%B main
run git -C "$DEMO/deploy.git" show --format= main
say "Until the controller applies it, status shows Git ahead of the cluster; then they agree"
run kubectl release status eu
sync_eu
run kubectl release status eu

say "A commit that changes the manifests: plan shows each object's diff, deploy ships config and image together"
manifests kubernetes/qa 3 debug
git commit -qam "qa: three replicas"
THIRD=$(git rev-parse HEAD)
echo "pushed $REGISTRY/acme/web:$THIRD -> $(push-image "$REGISTRY" acme/web "$THIRD")" >&2
run kubectl release plan qa
run kubectl release deploy qa

say "Where things stand"
run kubectl release status
run kubectl release history production
run kubectl release where v2

cat >&2 <<MSG

The environment is still running. Go on by hand:
  export KUBECONFIG=$DEMO/kubeconfig PATH=$ROOT/target/debug:\$PATH
  cd $APP && kubectl release status
Stop it with:
  tests/testenv/testenv.sh down $DEMO
MSG
