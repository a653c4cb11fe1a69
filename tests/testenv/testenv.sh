#!/usr/bin/env bash
# Starts and stops a throw-away Kubernetes control plane, an OCI registry and the fake kubelet on
# loopback, everything under one directory. See /work/shared/TESTENV.md for why each piece is here.
#
#   testenv.sh up DIR         start everything, write DIR/kubeconfig and DIR/env, touch DIR/ready
#   testenv.sh down DIR       stop everything `up` started (idempotent)
#   testenv.sh supervise DIR  up, then wait for EOF on stdin, then down; a test process owns the
#                             environment by holding the write end of that pipe, so the environment
#                             goes away with it however it ends (panic, SIGKILL, ...)
#   testenv.sh stop DIR NAME  stop one component of a running environment, for fault injection:
#                             NAME is kube-apiserver or registry (RESTARTABLE below)
#   testenv.sh start DIR NAME start it again with the flags and ports `up` gave it, and wait until
#                             it is healthy (kube-apiserver: /readyz, registry: /v2/); `down`
#                             stops it as it stops everything else
#
# Environment:
#   KUBECTL_RELEASE_K8S_BIN   dir with kube-apiserver, kube-controller-manager, kube-scheduler
#                             (default: where install.sh caches them)
#   FAKE_KUBELET              fake-kubelet binary (default: target/debug/fake-kubelet of this repo)
#   FAKE_NODES                number of fake nodes (default 1)
#   TESTENV_TIMEOUT           seconds each component gets to come up (default 90)
#   CONTROLLER_QPS            the controller-manager's API rate limit in requests/s (burst twice
#                             that); default: its own, 20 (burst 30), which paces rollouts of many
#                             workloads at once. Benchmarks raise it to see the clients' share.
set -euo pipefail

K8S_VERSION=1.20.2
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/../.." && pwd)
# The build install.sh makes (its K8S_BUILD): keep the two in step.
K8S_BIN=${KUBECTL_RELEASE_K8S_BIN:-${KUBECTL_RELEASE_CACHE:-$HOME/.cache/kubectl-release}/kubernetes-$K8S_VERSION-r2/bin}
FAKE_KUBELET=${FAKE_KUBELET:-${CARGO_TARGET_DIR:-$REPO_ROOT/target}/debug/fake-kubelet}
FAKE_NODES=${FAKE_NODES:-1}
TIMEOUT=${TESTENV_TIMEOUT:-90}
CONTROLLER_QPS=${CONTROLLER_QPS:-}
# Stop order: clients of the apiserver first so they do not log a storm of connection errors,
# the apiserver before etcd so it can close its watches.
COMPONENTS=(fake-kubelet kube-scheduler kube-controller-manager kube-apiserver registry etcd)
# What `stop` and `start` act on: the components `start` knows how to health-check.
RESTARTABLE=(kube-apiserver registry)

log() { echo "testenv: $*" >&2; }
die() { log "error: $*"; exit 1; }

usage() {
  echo "usage: $0 up|down|supervise DIR" >&2
  echo "       $0 stop|start DIR $(IFS='|' && echo "${RESTARTABLE[*]}")" >&2
  exit 2
}

# --- ports ----------------------------------------------------------------------------------

# Ports already handed out by this run: two components must not race for the same one.
TAKEN_PORTS=" "

# A random port below Linux's ephemeral range (32768+), so outgoing connections of other
# processes cannot grab it between our check and the daemon's bind. Not race-free against other
# test environments starting at the same instant; a daemon that loses the race fails its health
# check and `up` says so.
free_port() {
  local port
  for _ in $(seq 200); do
    port=$((20000 + RANDOM % 12000))
    [[ $TAKEN_PORTS == *" $port "* ]] && continue
    if [ -z "$(ss -Htln "sport = :$port")" ]; then
      TAKEN_PORTS+="$port "
      echo "$port"
      return
    fi
  done
  die "no free loopback port found"
}

# --- processes ------------------------------------------------------------------------------

# start NAME CMD...: runs CMD in the background, stdout+stderr to DIR/logs/NAME.log.
# stdin is /dev/null so no daemon ever holds supervise's stdin pipe. The command line is kept in
# DIR/cmds/NAME (shell-quoted) so that `start DIR NAME` can run it again, same flags and ports.
start() {
  local name=$1
  shift
  printf '%q ' "$@" >"$DIR/cmds/$name"
  "$@" </dev/null >"$DIR/logs/$name.log" 2>&1 &
  echo $! >"$DIR/pids/$name"
}

# pid of a component if it is still one of ours; every command line we start names DIR, which
# keeps a stale pid file (after a reboot, say) from pointing us at someone else's process.
live_pid() {
  local file=$DIR/pids/$1 pid
  [ -f "$file" ] || return 1
  pid=$(<"$file")
  local cmdline
  cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  [[ $cmdline == *"$DIR"* ]] || return 1
  echo "$pid"
}

fail_component() {
  local name=$1 what=$2
  log "error: $name: $what"
  if [ -f "$DIR/logs/$name.log" ]; then
    log "last lines of $DIR/logs/$name.log:"
    tail -n 40 "$DIR/logs/$name.log" | sed 's/^/    /' >&2
  fi
  return 1
}

# wait_for NAME DESCRIPTION CMD...: polls CMD until it succeeds, failing early when NAME died.
wait_for() {
  local name=$1 what=$2
  shift 2
  local deadline=$((SECONDS + TIMEOUT))
  until "$@" >/dev/null 2>&1; do
    live_pid "$name" >/dev/null || { fail_component "$name" "exited while waiting for $what"; return 1; }
    [ $SECONDS -lt $deadline ] || { fail_component "$name" "$what not reached within ${TIMEOUT}s"; return 1; }
    sleep 0.2
  done
}

# --- checks ---------------------------------------------------------------------------------

kubectl_admin() { kubectl --kubeconfig "$DIR/kubeconfig" --request-timeout=5s "$@"; }

default_sa_has_token() {
  # v1.20 only admits pods once the service account's token secret exists.
  [ -n "$(kubectl_admin -n default get serviceaccount default -o 'jsonpath={.secrets[0].name}')" ]
}

nodes_ready() {
  # Ready and no taints: the node lifecycle controller lifts the not-ready taint that admission
  # puts on new nodes only a few seconds after it sees Ready, and pods do not schedule until then.
  local out
  out=$(kubectl_admin get nodes -o 'jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Ready")].status}/{.spec.taints}{"\n"}{end}')
  [ "$(grep -c '=True/$' <<<"$out")" -ge "$FAKE_NODES" ]
}

# --- up -------------------------------------------------------------------------------------

write_kubeconfig() {
  local server=$1
  {
    echo "apiVersion: v1"
    echo "kind: Config"
    echo "clusters:"
    echo "- name: testenv"
    echo "  cluster:"
    echo "    server: $server"
    echo "    insecure-skip-tls-verify: true"
    echo "users:"
    for user in admin developer approver approver2 platform-admin; do
      echo "- name: $user"
      echo "  user:"
      echo "    token: ${TOKENS[$user]}"
    done
    echo "contexts:"
    # qa and production are the admin on the same server: the plugin's tests use them as
    # "one cluster per environment".
    for ctx in admin:admin developer:developer approver:approver approver2:approver2 platform-admin:platform-admin \
      qa:admin production:admin; do
      echo "- name: ${ctx%%:*}"
      echo "  context:"
      echo "    cluster: testenv"
      echo "    user: ${ctx#*:}"
    done
    echo "current-context: admin"
  } >"$DIR/kubeconfig.tmp"
  mv "$DIR/kubeconfig.tmp" "$DIR/kubeconfig"
}

up() {
  local bin
  for bin in kube-apiserver kube-controller-manager kube-scheduler; do
    [ -x "$K8S_BIN/$bin" ] || die "$K8S_BIN/$bin not found: run tests/testenv/install.sh first"
  done
  for bin in etcd docker-registry openssl kubectl ss; do
    command -v "$bin" >/dev/null || die "$bin not found: run tests/testenv/install.sh first"
  done
  [[ -z $CONTROLLER_QPS || $CONTROLLER_QPS =~ ^[1-9][0-9]{0,4}$ ]] ||
    die "CONTROLLER_QPS must be a whole number of requests per second (1 to 99999), not '$CONTROLLER_QPS'"
  [ -x "$FAKE_KUBELET" ] || die "fake kubelet $FAKE_KUBELET not found: cargo build -p kubectl-release-tests --bin fake-kubelet, or set FAKE_KUBELET"
  if [ -f "$DIR/pids/kube-apiserver" ] && live_pid kube-apiserver >/dev/null; then
    die "$DIR already has a running environment; run '$0 down $DIR' first"
  fi

  local started=$SECONDS
  rm -f "$DIR/ready"
  mkdir -p "$DIR/logs" "$DIR/pids" "$DIR/cmds" "$DIR/pki" "$DIR/etcd" "$DIR/registry"

  local etcd_port etcd_peer_port apiserver_port registry_port
  etcd_port=$(free_port)
  etcd_peer_port=$(free_port)
  apiserver_port=$(free_port)
  registry_port=$(free_port)
  local apiserver=https://127.0.0.1:$apiserver_port registry=127.0.0.1:$registry_port

  openssl genrsa -out "$DIR/pki/sa.key" 2048 2>/dev/null
  openssl rsa -in "$DIR/pki/sa.key" -pubout -out "$DIR/pki/sa.pub" 2>/dev/null

  declare -gA TOKENS
  local user
  for user in admin developer approver approver2 platform-admin; do
    TOKENS[$user]=$(openssl rand -hex 24)
  done
  {
    echo "${TOKENS[admin]},admin,uid-admin,\"system:masters\""
    echo "${TOKENS[developer]},developer,uid-developer,\"developers\""
    echo "${TOKENS[approver]},approver,uid-approver,\"approvers\""
    echo "${TOKENS[approver2]},approver2,uid-approver2,\"approvers\""
    echo "${TOKENS[platform-admin]},platform-admin,uid-platform-admin,\"platform-admins\""
  } >"$DIR/pki/tokens.csv"
  write_kubeconfig "$apiserver"

  cat >"$DIR/registry.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $DIR/registry
  delete:
    enabled: true
http:
  addr: $registry
EOF

  log "starting etcd, registry in $DIR"
  start etcd etcd --name testenv --data-dir "$DIR/etcd" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$etcd_peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer_port" \
    --initial-cluster "testenv=http://127.0.0.1:$etcd_peer_port" --log-level warn
  start registry docker-registry serve "$DIR/registry.yml"
  wait_for etcd "etcd health" curl -fsS "http://127.0.0.1:$etcd_port/health"

  log "starting kube-apiserver"
  start kube-apiserver "$K8S_BIN/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$etcd_port" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$apiserver_port" \
    --cert-dir "$DIR/pki" \
    --token-auth-file "$DIR/pki/tokens.csv" \
    --authorization-mode Node,RBAC \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$DIR/pki/sa.pub" \
    --service-account-signing-key-file "$DIR/pki/sa.key" \
    --service-cluster-ip-range 10.0.0.0/24 \
    --kubelet-preferred-address-types InternalIP
  wait_for registry "registry on $registry" curl -fsS "http://$registry/v2/"
  wait_for kube-apiserver "apiserver /readyz" kubectl_admin get --raw /readyz

  log "starting controller-manager, scheduler, fake kubelet"
  start kube-controller-manager "$K8S_BIN/kube-controller-manager" \
    --kubeconfig "$DIR/kubeconfig" --leader-elect=false \
    --service-account-private-key-file "$DIR/pki/sa.key" \
    --root-ca-file "$DIR/pki/apiserver.crt" \
    ${CONTROLLER_QPS:+--kube-api-qps="$CONTROLLER_QPS" --kube-api-burst="$((CONTROLLER_QPS * 2))"} \
    --port=0 --secure-port=0
  start kube-scheduler "$K8S_BIN/kube-scheduler" \
    --kubeconfig "$DIR/kubeconfig" --leader-elect=false --port=0 --secure-port=0
  start fake-kubelet env RUST_LOG="${RUST_LOG:-info}" "$FAKE_KUBELET" \
    --kubeconfig "$DIR/kubeconfig" --registry "$registry" --nodes "$FAKE_NODES"

  cat >"$DIR/env.tmp" <<EOF
export KUBECONFIG=$DIR/kubeconfig
export REGISTRY=$registry
export APISERVER=$apiserver
EOF
  mv "$DIR/env.tmp" "$DIR/env"

  wait_for kube-controller-manager "default service account with its token" default_sa_has_token
  wait_for fake-kubelet "$FAKE_NODES node(s) Ready and untainted" nodes_ready
  # The scheduler has no health endpoint with --port=0; at least make sure it did not exit.
  live_pid kube-scheduler >/dev/null || { fail_component kube-scheduler "exited"; return 1; }

  touch "$DIR/ready"
  log "ready in $((SECONDS - started))s: source $DIR/env"
}

# --- down -----------------------------------------------------------------------------------

# Whether PID still runs. A zombie does not: it holds no ports any more, and its parent (the
# `supervise` shell, busy waiting for its stdin) may only reap it later.
running() {
  local state
  state=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
  [ -n "$state" ] && [ "$state" != Z ]
}

# await_exit PID...: waits until every PID has exited, killing those still there after 15 s.
# Not our children when run from another shell than `up`, so poll instead of `wait`.
await_exit() {
  local pid deadline=$((SECONDS + 15))
  for pid in "$@"; do
    while running "$pid"; do
      if [ $SECONDS -ge $deadline ]; then
        kill -KILL "$pid" 2>/dev/null || true
        break
      fi
      sleep 0.1
    done
  done
}

down() {
  [ -d "$DIR/pids" ] || return 0
  local name pid pids=()
  rm -f "$DIR/ready"
  for name in "${COMPONENTS[@]}"; do
    if pid=$(live_pid "$name"); then
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$pid")
    fi
  done
  await_exit "${pids[@]}"
  rm -f "$DIR"/pids/*
  [ ${#pids[@]} -eq 0 ] || log "stopped ${#pids[@]} process(es) in $DIR"
}

# --- stop / start one component -------------------------------------------------------------

restartable() {
  local name
  for name in "${RESTARTABLE[@]}"; do
    [ "$name" = "$1" ] && return 0
  done
  die "cannot stop or start '$1': only ${RESTARTABLE[*]}"
}

# stop_component NAME: kills it, waits until it has exited (its ports are free), forgets its pid.
# KILL, not TERM: on TERM the apiserver stops listening but goes on serving the watches it has
# open while it drains them (15 s and more here), so it would not be down; a kill is down at
# once, like a crash or an OOM kill, for every client alike.
stop_component() {
  local name=$1 pid
  restartable "$name"
  pid=$(live_pid "$name") || die "$name is not running in $DIR"
  kill -KILL "$pid" 2>/dev/null || true
  await_exit "$pid"
  rm -f "$DIR/pids/$name"
  log "stopped $name (pid $pid) in $DIR"
}

# start_component NAME: the command line `up` ran, again; its log is appended to, so it tells
# the whole story of the environment. Returns once the component is healthy.
start_component() {
  local name=$1 started=$SECONDS
  restartable "$name"
  [ -f "$DIR/cmds/$name" ] || die "$DIR has no command line for $name: was it started by '$0 up'?"
  if live_pid "$name" >/dev/null; then
    die "$name is already running in $DIR"
  fi
  local -a cmd
  eval "cmd=($(<"$DIR/cmds/$name"))"
  echo "--- testenv: started again at $(date -u +%FT%TZ)" >>"$DIR/logs/$name.log"
  "${cmd[@]}" </dev/null >>"$DIR/logs/$name.log" 2>&1 &
  echo $! >"$DIR/pids/$name"
  # shellcheck source=/dev/null
  source "$DIR/env"
  case $name in
    kube-apiserver) wait_for "$name" "apiserver /readyz" kubectl_admin get --raw /readyz ;;
    registry) wait_for "$name" "registry on $REGISTRY" curl -fsS "http://$REGISTRY/v2/" ;;
  esac
  log "started $name again in $((SECONDS - started))s"
}

# --- supervise ------------------------------------------------------------------------------

supervise() {
  up
  # Without job control a background command's stdin is /dev/null unless redirected explicitly,
  # so hand `cat` our stdin through another descriptor. In the background because `wait` is
  # interruptible by the signal traps, a foreground `cat` would not be.
  exec 3<&0
  cat <&3 >/dev/null &
  wait $! || true
}

# `up` relies on `set -e` to stop at the first failure, so it must never run in an `if` or `||`
# (bash ignores `set -e` there); cleaning up after a failure happens here instead.
on_exit() {
  local rc=$?
  if [ "$rc" -ne 0 ] || [ "$MODE" = supervise ]; then
    down
  fi
  # A failed start keeps its directory: the logs are the only account of what went wrong.
  if [ "$MODE" = supervise ] && [ "$rc" -eq 0 ] && [ "${TESTENV_REMOVE_DIR:-}" = 1 ]; then
    rm -rf "$DIR"
  fi
  exit "$rc"
}

MODE=${1:-}
case $MODE in
  up | down | supervise) [ $# -eq 2 ] || usage ;;
  stop | start) [ $# -eq 3 ] || usage ;;
  *) usage ;;
esac
case $MODE in
  up | down | supervise) DIR=$(mkdir -p "$2" && cd "$2" && pwd) ;;
  *) DIR=$(cd "$2" 2>/dev/null && pwd) || die "no environment in $2" ;;
esac
case $MODE in
  up | supervise)
    trap on_exit EXIT
    # Ctrl-C in a terminal or a TERM from a CI runner also ends in `down`, through on_exit.
    trap 'exit 130' INT
    trap 'exit 143' TERM HUP
    "$MODE"
    ;;
  down) down ;;
  stop) stop_component "$3" ;;
  start) start_component "$3" ;;
esac
