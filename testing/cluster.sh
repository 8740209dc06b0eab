#!/usr/bin/env bash
# Local Kubernetes cluster harness: a real etcd and kube-apiserver on loopback, simulated
# nodes (Node objects + Linux bridges), "pods" made of a network namespace plus a Pod object
# whose status is patched to Running, one capture-agent per node and the aggregator.
# No Docker, kind or kubelet. Must run as root (network namespaces, bridges).
#
# See usage() below, and DESIGN.md "Local cluster harness" (the interface is fixed).
set -euo pipefail

usage() {
  cat <<'EOF'
usage: testing/cluster.sh COMMAND ...

  up [--nodes N] [--no-aggregator]   start the cluster (idempotent; installs what it needs)
  env                                print export lines: KUBECONFIG, CLUSTER_STATE,
                                     AGGREGATOR (host:port), AGENTS ("node-a=host:port ...")
  pod add NODE NAMESPACE NAME        create a pod on NODE; prints its IP (only that) on stdout
  pod del NAMESPACE NAME             delete the pod and its network namespace
  pod netns NAMESPACE NAME           print the pod's network namespace name
  pod list                           print "namespace name node ip netns" per pod
  traffic NAMESPACE NAME [SECONDS]   ping every other pod from this pod, in the background
                                     (default 10 s, at most 3600)
  restart-agent NODE [--kill] [--rebuild]
                                     stop (SIGTERM, or SIGKILL to the agent alone with --kill)
                                     and start NODE's agent again; --rebuild re-runs bazel and
                                     re-copies the binary first
  restart-aggregator [--kill] [--rebuild]
  restart-apiserver [--kill]         stop and start kube-apiserver (same flags, same etcd)
  down                               stop everything started here, delete the pods' network
                                     namespaces, links and the cluster state (logs are kept)

Environment:
  CLUSTER_STATE               state dir (default /var/tmp/packet-capture-cluster)
  CLUSTER_APISERVER_PORT      kube-apiserver secure port (default 16443)
  CLUSTER_ETCD_CLIENT_PORT    etcd client port (default 12379)
  CLUSTER_ETCD_PEER_PORT      etcd peer port (default 12380)
  CLUSTER_AGENT_BASE_PORT     first agent port; node-a gets it, node-b the next (default 19101)
  CLUSTER_AGGREGATOR_PORT     aggregator gRPC port (default 19090)
  CLUSTER_START_TIMEOUT       seconds to wait for a component to become ready (default 60)
Ports are fixed at the first `up`; later commands read them from the state dir.
Bridge and link names (pcbr-*, pcv-*, pcf*-*) and pc-* netns names are machine-wide, so
only one cluster runs per machine at a time.
EOF
}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
self="$here/$(basename "${BASH_SOURCE[0]}")"

STATE=${CLUSTER_STATE:-/var/tmp/packet-capture-cluster}
case "$STATE" in
  /*) ;;
  *) STATE="$PWD/$STATE" ;;  # processes keep it across cd; make it absolute
esac
STATE=${STATE%/}
case "$STATE" in
  "" | *[\'\ ]*) echo "cluster: error: CLUSTER_STATE must be a directory path without quotes or spaces" >&2; exit 1 ;;
esac

# Addressing. Pods live in 198.18.0.0/16 (node index i -> 198.18.<i+1>.<n>); the service
# range 198.19.0.0/16 is only ever a number in the API. Both are inside 198.18.0.0/15
# (RFC 2544 benchmarking space), which nothing on a real network uses.
readonly POD_PREFIX=198.18
readonly POD_PREFIX_LEN=16
readonly SERVICE_CIDR=198.19.0.0/16
readonly FABRIC_BRIDGE=pcbr-fabric
readonly MAX_NODES=26            # node-a .. node-z
readonly LOCK_TIMEOUT=300

log() { echo "cluster: $*" >&2; }
die() { echo "cluster: error: $*" >&2; exit 1; }
now_rfc3339() { date -u +%Y-%m-%dT%H:%M:%SZ; }

# ---------------------------------------------------------------------------------------
# State and configuration
# ---------------------------------------------------------------------------------------

# Settings fixed by the first `up`, stored in $STATE/cluster.env so every later command
# (env, pod, restart-*, down) talks to the same ports even if the environment changed.
load_config() {
  TOOLS_BIN= NODES=0 WITH_AGGREGATOR=0
  APISERVER_PORT=${CLUSTER_APISERVER_PORT:-16443}
  ETCD_CLIENT_PORT=${CLUSTER_ETCD_CLIENT_PORT:-12379}
  ETCD_PEER_PORT=${CLUSTER_ETCD_PEER_PORT:-12380}
  AGENT_BASE_PORT=${CLUSTER_AGENT_BASE_PORT:-19101}
  AGGREGATOR_PORT=${CLUSTER_AGGREGATOR_PORT:-19090}
  START_TIMEOUT=${CLUSTER_START_TIMEOUT:-60}
  local key value
  if [ -f "$STATE/cluster.env" ]; then
    while IFS='=' read -r key value; do
      case "$key" in
        TOOLS_BIN | NODES | WITH_AGGREGATOR | APISERVER_PORT | ETCD_CLIENT_PORT | \
          ETCD_PEER_PORT | AGENT_BASE_PORT | AGGREGATOR_PORT)
          printf -v "$key" '%s' "$value" ;;
      esac
    done < "$STATE/cluster.env"
  fi
  KUBECTL=${TOOLS_BIN:+$TOOLS_BIN/kubectl}
}

save_config() {
  local tmp="$STATE/cluster.env.tmp"
  cat > "$tmp" <<EOF
TOOLS_BIN=$TOOLS_BIN
NODES=$NODES
WITH_AGGREGATOR=$WITH_AGGREGATOR
APISERVER_PORT=$APISERVER_PORT
ETCD_CLIENT_PORT=$ETCD_CLIENT_PORT
ETCD_PEER_PORT=$ETCD_PEER_PORT
AGENT_BASE_PORT=$AGENT_BASE_PORT
AGGREGATOR_PORT=$AGGREGATOR_PORT
EOF
  mv "$tmp" "$STATE/cluster.env"
}

require_up() {
  [ -f "$STATE/cluster.env" ] && [ -n "$TOOLS_BIN" ] ||
    die "no cluster in $STATE; run 'testing/cluster.sh up' first"
}

# One command at a time mutates the state (IP allocation, pid files). fd 9 holds the lock;
# every background process is started with 9>&- so it never inherits it.
take_lock() {
  mkdir -p "$STATE"
  exec 9> "$STATE/.lock"
  flock -w "$LOCK_TIMEOUT" 9 || die "another cluster.sh holds $STATE/.lock for ${LOCK_TIMEOUT}s"
  load_config  # whoever held the lock may have changed it
}

require_root() {
  [ "$(id -u)" = 0 ] || die "must run as root (network namespaces, bridges)"
}

kc() { "$KUBECTL" --kubeconfig="$STATE/kubeconfig" "$@"; }

# ---------------------------------------------------------------------------------------
# Names and validation
# ---------------------------------------------------------------------------------------

is_dns_label() {
  [ "${#1}" -le 63 ] && [[ "$1" =~ ^[a-z0-9]([-a-z0-9]*[a-z0-9])?$ ]]
}

validate_label() {  # WHAT VALUE
  is_dns_label "$2" ||
    die "invalid $1 '$2': must be a DNS-1123 label (lowercase a-z, 0-9, '-', at most 63 chars, alphanumeric at both ends)"
}

node_name() { printf 'node-%s' "$(printf "\\$(printf '%03o' $((97 + $1)))")"; }  # 0 -> node-a
node_index() { printf '%d' $(($(printf '%d' "'${1#node-}") - 97)); }              # node-a -> 0
node_letter() { printf '%s' "${1#node-}"; }
node_bridge() { printf 'pcbr-%s' "$1"; }       # pcbr-node-a: 11 chars, limit is 15
agent_port() { echo $((AGENT_BASE_PORT + $(node_index "$1"))); }

all_nodes() {
  local i
  for ((i = 0; i < NODES; i++)); do node_name "$i"; echo; done
}

validate_node() {
  [[ "$1" =~ ^node-[a-z]$ ]] && [ "$(node_index "$1")" -lt "$NODES" ] ||
    die "unknown node '$1' (this cluster has: $(all_nodes | tr '\n' ' '))"
}

# The netns name keeps node, namespace and pod readable. Dots cannot occur in DNS labels, so
# the name is unambiguous; at most 3+1+6+1+63+1+63 = 138 chars, well inside NAME_MAX.
pod_netns() { printf 'pc-%s.%s.%s' "$1" "$2" "$3"; }   # NODE NS NAME
pod_record() { printf '%s/pods/%s.%s' "$STATE" "$1" "$2"; }

# Reads a pod record (key=value lines written by pod_add) into REC_* variables.
read_pod_record() {  # FILE
  REC_NODE= REC_NAMESPACE= REC_NAME= REC_IP= REC_NETNS= REC_VETH=
  local key value
  while IFS='=' read -r key value; do
    case "$key" in
      node) REC_NODE=$value ;; namespace) REC_NAMESPACE=$value ;; name) REC_NAME=$value ;;
      ip) REC_IP=$value ;; netns) REC_NETNS=$value ;; veth) REC_VETH=$value ;;
    esac
  done < "$1"
}

# ---------------------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------------------

pid_file() { printf '%s/pids/%s.pid' "$STATE" "$1"; }

# A pid counts as ours only if the process is alive, not a zombie, and its command line
# mentions a path inside this state dir (every daemon gets one), so a recycled pid is never
# mistaken for one of ours.
pid_is_ours() {  # PID
  local pid=$1 stat
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [ "${stat%% *}" != Z ] || return 1
  # No `| grep -q` here or below: with pipefail an early grep exit can SIGPIPE the writer.
  local cmdline
  cmdline=$(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null) || return 1
  [[ "$cmdline" == *"$STATE/"* ]]
}

alive() {  # NAME
  local f
  f=$(pid_file "$1")
  [ -f "$f" ] && pid_is_ours "$(cat "$f")"
}

# Starts a daemon in its own session (so it survives this shell and its group can be
# signalled as a whole), detached from our stdio and from the lock fd.
start_daemon() {  # NAME LOGFILE CMD...
  local name=$1 logfile=$2
  shift 2
  mkdir -p "$STATE/pids" "$(dirname "$logfile")"
  echo "=== $(now_rfc3339) starting: $*" >> "$logfile"
  setsid "$@" < /dev/null >> "$logfile" 2>&1 9>&- &
  local pid=$!
  echo "$pid" > "$(pid_file "$name")"
  # Until the forked shell has exec'd, its command line is still ours, not the daemon's, and
  # pid_is_ours would call it dead; on a busy machine that window is long enough to see.
  local deadline=$((SECONDS + 10))
  local stat
  while ! pid_is_ours "$pid" && [ "$SECONDS" -lt "$deadline" ]; do
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || break  # gone
    stat=${stat##*) }
    [ "${stat%% *}" != Z ] || break  # exited, not yet reaped
    sleep 0.02
  done
}

wait_gone() {  # PID SECONDS
  local pid=$1 deadline=$((SECONDS + $2))
  while pid_is_ours "$pid"; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.1
  done
}

# stop_daemon NAME [--kill]: SIGTERM, bounded wait, then SIGKILL to the whole session group
# so children (tcpdump) cannot outlive it. --kill sends SIGKILL to the process alone, like a
# crash: whatever it started must die by its own means (PR_SET_PDEATHSIG).
stop_daemon() {
  local name=$1 mode=${2:-} f pid
  f=$(pid_file "$name")
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  if pid_is_ours "$pid"; then
    if [ "$mode" = --kill ]; then
      log "SIGKILL $name (pid $pid)"
      kill -KILL "$pid" 2>/dev/null || true
      wait_gone "$pid" 10 || die "$name (pid $pid) survived SIGKILL for 10 s"
    else
      log "stopping $name (pid $pid)"
      kill -TERM "$pid" 2>/dev/null || true
      if ! wait_gone "$pid" 15; then
        log "$name (pid $pid) ignored SIGTERM for 15 s; SIGKILL"
        kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
        wait_gone "$pid" 10 || die "$name (pid $pid) survived SIGKILL for 10 s"
      fi
      # Leftover members of its session group (it is the group leader: see start_daemon).
      kill -KILL -- "-$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$f"
}

# Removes pid files whose process is gone (after a crash or a reboot).
clean_stale_pids() {
  local f name
  for f in "$STATE"/pids/*.pid; do
    [ -e "$f" ] || continue
    name=$(basename "$f" .pid)
    if ! alive "$name"; then
      log "removing stale pid file $name.pid"
      rm -f "$f"
    fi
  done
}

log_tail() {  # LOGFILE
  echo "----- last lines of $1 -----" >&2
  tail -n 30 "$1" >&2 2>/dev/null || true
  echo "-----" >&2
}

port_in_use() { [ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]; }

require_port_free() {  # PORT WHAT ENVVAR
  if port_in_use "$1"; then
    ss -Hltnp "sport = :$1" >&2 || true
    die "port $1 for $2 is already in use (another cluster? set $3 to another port, or run 'testing/cluster.sh down')"
  fi
}

# Waits until CHECK succeeds; fails with the log tail if the process dies or time runs out.
wait_until() {  # NAME LOGFILE SECONDS CHECK...
  local name=$1 logfile=$2 deadline=$((SECONDS + $3))
  shift 3
  until "$@" 2>/dev/null; do
    if ! alive "$name"; then
      log_tail "$logfile"
      die "$name exited during startup (log: $logfile)"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      log_tail "$logfile"
      die "$name not ready after ${START_TIMEOUT}s (log: $logfile)"
    fi
    sleep 0.2
  done
}

# ---------------------------------------------------------------------------------------
# Installation
# ---------------------------------------------------------------------------------------

# command -> Debian package. Install only what is missing.
ensure_packages() {
  local -A pkg_of=([ip]=iproute2 [ss]=iproute2 [ping]=iputils-ping [jq]=jq [tcpdump]=tcpdump
    [openssl]=openssl [curl]=curl [flock]=util-linux [setsid]=util-linux)
  local cmd missing=()
  for cmd in "${!pkg_of[@]}"; do
    command -v "$cmd" > /dev/null || missing+=("${pkg_of[$cmd]}")
  done
  [ "${#missing[@]}" -eq 0 ] && return
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  log "installing missing packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends "${missing[@]}" >&2 ||
    { apt-get update >&2 && apt-get install -y --no-install-recommends "${missing[@]}" >&2; } ||
    die "could not install ${missing[*]}"
}

ensure_tools() {
  TOOLS_BIN=$("$here/tools/install.sh") || die "testing/tools/install.sh failed"
  local t
  for t in etcd kube-apiserver kubectl; do
    [ -x "$TOOLS_BIN/$t" ] || die "testing/tools/install.sh did not provide $TOOLS_BIN/$t"
  done
  KUBECTL="$TOOLS_BIN/kubectl"
}

# ---------------------------------------------------------------------------------------
# Control plane
# ---------------------------------------------------------------------------------------

# Service-account signing keypair and the static admin token (group system:masters).
ensure_pki() {
  local pki="$STATE/pki"
  mkdir -p "$pki" "$STATE/certs"
  chmod 700 "$pki"
  if [ ! -f "$pki/sa.key" ] || [ ! -f "$pki/sa.pub" ]; then
    openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null
    openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
  fi
  if [ ! -f "$pki/tokens.csv" ]; then
    openssl rand -hex 32 > "$pki/admin.token"
    printf '%s,admin,admin,"system:masters"\n' "$(cat "$pki/admin.token")" > "$pki/tokens.csv"
  fi
}

etcd_command() {
  ETCD_CMD=(
    "$TOOLS_BIN/etcd"
    --name=packet-capture
    --data-dir="$STATE/etcd"
    --listen-client-urls="http://127.0.0.1:$ETCD_CLIENT_PORT"
    --advertise-client-urls="http://127.0.0.1:$ETCD_CLIENT_PORT"
    --listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT"
    --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT"
    --initial-cluster="packet-capture=http://127.0.0.1:$ETCD_PEER_PORT"
    --initial-cluster-state=new
    --unsafe-no-fsync  # throwaway data: speed over durability
    --log-level=warn
  )
}

etcd_healthy() {
  local health
  health=$(curl -fsS --max-time 2 "http://127.0.0.1:$ETCD_CLIENT_PORT/health") &&
    [[ "$health" == *'"health":"true"'* ]]
}

ensure_etcd() {
  if alive etcd; then return; fi
  require_port_free "$ETCD_CLIENT_PORT" "etcd clients" CLUSTER_ETCD_CLIENT_PORT
  require_port_free "$ETCD_PEER_PORT" "etcd peers" CLUSTER_ETCD_PEER_PORT
  etcd_command
  start_daemon etcd "$STATE/logs/etcd.log" "${ETCD_CMD[@]}"
  wait_until etcd "$STATE/logs/etcd.log" "$START_TIMEOUT" etcd_healthy
  log "etcd ready on 127.0.0.1:$ETCD_CLIENT_PORT"
}

apiserver_command() {
  APISERVER_CMD=(
    "$TOOLS_BIN/kube-apiserver"
    --etcd-servers="http://127.0.0.1:$ETCD_CLIENT_PORT"
    --bind-address=127.0.0.1
    --secure-port="$APISERVER_PORT"
    --cert-dir="$STATE/certs"  # self-signed; certs/apiserver.crt is the clients' CA
    --service-cluster-ip-range="$SERVICE_CIDR"
    --authorization-mode=RBAC
    --token-auth-file="$STATE/pki/tokens.csv"
    --service-account-issuer=https://kubernetes.default.svc
    --service-account-key-file="$STATE/pki/sa.pub"
    --service-account-signing-key-file="$STATE/pki/sa.key"
    # No controller-manager creates default ServiceAccounts; no kubelet or Endpoints.
    --disable-admission-plugins=ServiceAccount
    --endpoint-reconciler-type=none
    # Open watches (the agents') otherwise hold a graceful shutdown until the SIGKILL.
    --shutdown-watch-termination-grace-period=2s
  )
}

apiserver_ready() {
  [ "$(curl -ksS --max-time 2 "https://127.0.0.1:$APISERVER_PORT/readyz")" = ok ]
}

start_apiserver() {
  require_port_free "$APISERVER_PORT" kube-apiserver CLUSTER_APISERVER_PORT
  apiserver_command
  start_daemon kube-apiserver "$STATE/logs/kube-apiserver.log" "${APISERVER_CMD[@]}"
  wait_until kube-apiserver "$STATE/logs/kube-apiserver.log" "$START_TIMEOUT" apiserver_ready
  log "kube-apiserver ready on https://127.0.0.1:$APISERVER_PORT"
}

ensure_apiserver() {
  alive kube-apiserver || start_apiserver
}

# write_kubeconfig FILE USER TOKEN: atomically, so a running agent never reads half a file.
write_kubeconfig() {
  local file=$1 user=$2 token=$3 tmp="$1.tmp"
  rm -f "$tmp"
  "$KUBECTL" config --kubeconfig="$tmp" set-cluster packet-capture \
    --server="https://127.0.0.1:$APISERVER_PORT" \
    --certificate-authority="$STATE/certs/apiserver.crt" --embed-certs=true > /dev/null
  "$KUBECTL" config --kubeconfig="$tmp" set-credentials "$user" --token="$token" > /dev/null
  "$KUBECTL" config --kubeconfig="$tmp" set-context packet-capture \
    --cluster=packet-capture --user="$user" > /dev/null
  "$KUBECTL" config --kubeconfig="$tmp" use-context packet-capture > /dev/null
  chmod 600 "$tmp"
  mv "$tmp" "$file"
}

has_namespace() { kc get namespace "$1" > /dev/null 2>&1; }

# A ServiceAccount token via the TokenRequest API (the real, least-privileged identity).
sa_token() {  # NAME
  kc create token "$1" -n kube-system --duration=24h 2>/dev/null ||
    kc create token "$1" -n kube-system ||
    die "could not mint a token for ServiceAccount kube-system/$1"
}

# Tokens live 24 h; renew the kubeconfig when older than 12 h so a long-lived state dir
# keeps working (a running daemon keeps its old file contents until restarted).
kubeconfig_fresh() { [ -f "$1" ] && [ -n "$(find "$1" -mmin -720)" ]; }

ensure_cluster_objects() {
  write_kubeconfig "$STATE/kubeconfig" admin "$(cat "$STATE/pki/admin.token")"
  # kube-system is created by the apiserver itself shortly after it turns ready.
  local deadline=$((SECONDS + START_TIMEOUT))
  until has_namespace kube-system; do
    [ "$SECONDS" -lt "$deadline" ] || die "namespace kube-system did not appear in ${START_TIMEOUT}s"
    sleep 0.2
  done
  kc apply -f "$repo/k8s/base/rbac.yaml" > /dev/null || die "kubectl apply -f k8s/base/rbac.yaml failed"
  kubeconfig_fresh "$STATE/agent.kubeconfig" ||
    write_kubeconfig "$STATE/agent.kubeconfig" capture-agent "$(sa_token capture-agent)"
  kubeconfig_fresh "$STATE/aggregator.kubeconfig" ||
    write_kubeconfig "$STATE/aggregator.kubeconfig" capture-aggregator "$(sa_token capture-aggregator)"
}

# ---------------------------------------------------------------------------------------
# Nodes: Node objects and the L2 network
# ---------------------------------------------------------------------------------------

link_exists() { ip link show dev "$1" > /dev/null 2>&1; }

# The host side carries no address at all, not even IPv6 link-local.
no_ipv6() { echo 1 > "/proc/sys/net/ipv6/conf/$1/disable_ipv6" 2>/dev/null || true; }

ensure_bridge() {  # NAME
  if ! link_exists "$1"; then
    ip link add name "$1" type bridge
  fi
  no_ipv6 "$1"
  ip link set dev "$1" up
}

# Node bridge pcbr-node-a, joined to pcbr-fabric by the veth pair pcfa-node-a/pcfb-node-a,
# so every pod reaches every other pod at L2 and nothing is routed.
ensure_node_network() {  # NODE
  local node=$1 br up_end=pcfa-$1 fabric_end=pcfb-$1
  br=$(node_bridge "$node")
  ensure_bridge "$FABRIC_BRIDGE"
  ensure_bridge "$br"
  if ! link_exists "$up_end"; then
    ip link del dev "$fabric_end" 2>/dev/null || true
    ip link add name "$up_end" type veth peer name "$fabric_end"
  fi
  no_ipv6 "$up_end"
  no_ipv6 "$fabric_end"
  ip link set dev "$up_end" master "$br" up
  ip link set dev "$fabric_end" master "$FABRIC_BRIDGE" up
}

ensure_node_object() {  # NODE
  local node=$1
  jq -n --arg n "$node" '{apiVersion: "v1", kind: "Node",
      metadata: {name: $n, labels: {"kubernetes.io/hostname": $n, "kubernetes.io/os": "linux"}}}' |
    kc apply -f - > /dev/null || die "could not create Node $node"
  # No kubelet: report Ready once; no node-lifecycle controller will ever flip it.
  jq -n --arg t "$(now_rfc3339)" '{status: {conditions: [{type: "Ready", status: "True",
      reason: "KubeletReady", message: "simulated by testing/cluster.sh",
      lastHeartbeatTime: $t, lastTransitionTime: $t}]}}' |
    kc patch node "$node" --subresource=status --type=merge --patch-file=/dev/stdin > /dev/null ||
    die "could not mark Node $node Ready"
}

# ---------------------------------------------------------------------------------------
# Agents and aggregator (C++ binaries built by Bazel)
# ---------------------------------------------------------------------------------------

# The command line of node NODE's agent. The one place to adjust agent flags.
agent_command() {  # NODE
  local node=$1
  AGENT_CMD=(
    "$STATE/bin/capture-agent"
    --node_name="$node"
    --kubeconfig="$STATE/agent.kubeconfig"
    --capture_dir="$STATE/nodes/$node/captures"
    --listen="127.0.0.1:$(agent_port "$node")"
    --netns_dir=/run/netns
  )
  if alive aggregator; then
    # The agent authenticates to the aggregator with its ServiceAccount's token
    # for the aggregator's audience (in Kubernetes: a projected token volume).
    local token_file="$STATE/agent-aggregator.token"
    if ! kubeconfig_fresh "$token_file"; then
      kc create token capture-agent -n kube-system --audience packet-capture-aggregator \
        --duration 24h > "$token_file.new" ||
        die "could not mint the agent's aggregator token"
      chmod 600 "$token_file.new"
      mv -f "$token_file.new" "$token_file"
    fi
    AGENT_CMD+=(--aggregator="127.0.0.1:$AGGREGATOR_PORT" --aggregator_token_file="$token_file")
  fi
}

# The command line of the aggregator. The one place to adjust aggregator flags.
aggregator_command() {
  AGGREGATOR_CMD=(
    "$STATE/bin/capture-aggregator"
    --listen="127.0.0.1:$AGGREGATOR_PORT"
    --data_dir="$STATE/aggregator"
    --kubeconfig="$STATE/aggregator.kubeconfig"
  )
}

# True when //PKG:BINARY is declared (a cheap look at the BUILD file, not a bazel query).
has_target() {  # PKG BINARY
  [ -f "$repo/$1/BUILD.bazel" ] && grep -qE "name = \"$2\"" "$repo/$1/BUILD.bazel"
}

# build_and_copy TARGET_PKG BINARY: bazel build //PKG:BINARY, then copy it into the state dir
# (copy + rename) so a later build never swaps the file under a running process.
# Returns 1 (with a note) when there is nothing to build yet.
# CAPTURE_AGENT_BIN / CAPTURE_AGGREGATOR_BIN name a prebuilt binary instead
# (Bazel tests pass theirs this way: a bazel build inside a bazel test would
# wait forever on the server lock).
build_and_copy() {
  local pkg=$1 binary=$2 out
  local var=CAPTURE_AGENT_BIN
  [ "$binary" = capture-aggregator ] && var=CAPTURE_AGGREGATOR_BIN
  if [ -n "${!var:-}" ]; then
    out=$(readlink -f "${!var}")
    [ -x "$out" ] || die "$var=${!var} is not an executable file"
    install_binary "$out" "$binary"
    return 0
  fi
  if ! has_target "$pkg" "$binary"; then
    log "note: $pkg/BUILD.bazel has no $binary target yet; not starting $binary"
    return 1
  fi
  if ! command -v bazel > /dev/null; then
    log "note: bazel is not installed; not starting $binary"
    return 1
  fi
  log "bazel build //$pkg:$binary"
  (cd "$repo" && bazel build "//$pkg:$binary") >&2 || die "bazel build //$pkg:$binary failed"
  out="$repo/bazel-bin/$pkg/$binary"
  [ -x "$out" ] || die "bazel built //$pkg:$binary but $out is missing"
  install_binary "$out" "$binary"
}

install_binary() {  # SOURCE NAME
  mkdir -p "$STATE/bin"
  cp "$1" "$STATE/bin/.$2.new"
  chmod 755 "$STATE/bin/.$2.new"
  mv -f "$STATE/bin/.$2.new" "$STATE/bin/$2"
}

# True once HOST:PORT accepts TCP connections.
listening() { port_in_use "$1"; }

start_aggregator() {
  require_port_free "$AGGREGATOR_PORT" capture-aggregator CLUSTER_AGGREGATOR_PORT
  mkdir -p "$STATE/aggregator"
  aggregator_command
  start_daemon aggregator "$STATE/logs/aggregator.log" "${AGGREGATOR_CMD[@]}"
  wait_until aggregator "$STATE/logs/aggregator.log" "$START_TIMEOUT" listening "$AGGREGATOR_PORT"
  log "aggregator listening on 127.0.0.1:$AGGREGATOR_PORT"
}

start_agent() {  # NODE
  local node=$1 port
  port=$(agent_port "$node")
  require_port_free "$port" "capture-agent on $node" CLUSTER_AGENT_BASE_PORT
  mkdir -p "$STATE/nodes/$node/captures"
  agent_command "$node"
  start_daemon "agent-$node" "$STATE/logs/agent-$node.log" "${AGENT_CMD[@]}"
  wait_until "agent-$node" "$STATE/logs/agent-$node.log" "$START_TIMEOUT" listening "$port"
  log "agent for $node listening on 127.0.0.1:$port"
}

ensure_daemons() {
  local node need_agents=0 need_aggregator=0
  for node in $(all_nodes); do alive "agent-$node" || need_agents=1; done
  if [ "$WITH_AGGREGATOR" = 1 ] && ! alive aggregator; then need_aggregator=1; fi
  [ "$need_agents" = 1 ] || [ "$need_aggregator" = 1 ] || return 0

  # Build only when something has to start, so a healthy `up` stays fast.
  if [ "$need_aggregator" = 1 ] && build_and_copy aggregator capture-aggregator; then
    start_aggregator
  fi
  if [ "$need_agents" = 1 ]; then
    build_and_copy node_agent capture-agent || return 0
    for node in $(all_nodes); do
      alive "agent-$node" || start_agent "$node"
    done
  fi
}

# ---------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------

# True when the `up` requested is already fully in place, so `up` can return at once.
# A daemon that cannot be built yet (no BUILD target) does not count as missing.
already_up() {  # WANT_NODES WANT_AGGREGATOR
  [ -n "$TOOLS_BIN" ] && [ "$NODES" -ge "$1" ] || return 1
  alive etcd && alive kube-apiserver && apiserver_ready || return 1
  kubeconfig_fresh "$STATE/agent.kubeconfig" && kubeconfig_fresh "$STATE/aggregator.kubeconfig" ||
    return 1
  local node
  for node in $(all_nodes); do
    link_exists "$(node_bridge "$node")" && link_exists "pcfa-$node" || return 1
    if ! alive "agent-$node" && has_target node_agent capture-agent; then return 1; fi
  done
  if [ "$2" = 1 ] && ! alive aggregator && has_target aggregator capture-aggregator; then
    return 1
  fi
  [ "$(kc get nodes -o name 2>/dev/null | wc -l)" -ge "$NODES" ]
}

cmd_up() {
  local want_nodes=2 want_aggregator=1
  while [ $# -gt 0 ]; do
    case "$1" in
      --nodes) [ $# -ge 2 ] || die "--nodes needs a number"; want_nodes=$2; shift 2 ;;
      --nodes=*) want_nodes=${1#--nodes=}; shift ;;
      --no-aggregator) want_aggregator=0; shift ;;
      *) usage >&2; die "unknown option for up: $1" ;;
    esac
  done
  [[ "$want_nodes" =~ ^[0-9]+$ ]] && [ "$want_nodes" -ge 1 ] && [ "$want_nodes" -le "$MAX_NODES" ] ||
    die "--nodes must be a number from 1 to $MAX_NODES"
  require_root
  local started=$SECONDS
  take_lock
  mkdir -p "$STATE"/{pids,logs,pods,ipam,nodes}
  clean_stale_pids
  # A cluster that is partly running keeps its ports; a fresh one takes them from the env.
  load_config
  if ! alive etcd && ! alive kube-apiserver; then
    local keep_nodes=$NODES
    rm -f "$STATE/cluster.env"
    load_config
    NODES=$keep_nodes
  fi
  if already_up "$want_nodes" "$want_aggregator"; then
    log "already up and healthy ($NODES nodes); nothing to do"
    return
  fi
  # Nodes are only ever added by a later `up`, never removed while pods may use them.
  [ "$NODES" -ge "$want_nodes" ] || NODES=$want_nodes
  [ "$want_aggregator" = 0 ] || WITH_AGGREGATOR=1

  ensure_packages
  ensure_tools
  save_config
  ensure_pki
  ensure_etcd
  ensure_apiserver
  ensure_cluster_objects
  local node
  for node in $(all_nodes); do
    ensure_node_network "$node"
    ensure_node_object "$node"
  done
  ensure_daemons
  log "up in $((SECONDS - started))s; state in $STATE (eval \"\$(testing/cluster.sh env)\")"
}

cmd_env() {
  require_up
  local agents=() node
  for node in $(all_nodes); do
    alive "agent-$node" && agents+=("$node=127.0.0.1:$(agent_port "$node")")
  done
  local aggregator=
  alive aggregator && aggregator="127.0.0.1:$AGGREGATOR_PORT"
  alive kube-apiserver || log "warning: kube-apiserver is not running"
  # Values are paths and host:port lists; single quotes keep them readable (and eval-safe,
  # since a path with a quote is refused at startup).
  echo "export KUBECONFIG='$STATE/kubeconfig'"
  echo "export CLUSTER_STATE='$STATE'"
  echo "export AGGREGATOR='$aggregator'"
  echo "export AGENTS='${agents[*]:-}'"
  echo "export CLUSTER_TOOLS='$TOOLS_BIN'"
}

# Next free address on NODE: a per-node counter that wraps, skipping addresses still held by
# a pod, so a deleted pod's IP is not handed out again right away.
allocate_ip() {  # NODE
  local node=$1 octet counter_file n tries ip used
  octet=$(($(node_index "$node") + 1))
  counter_file="$STATE/ipam/$node"
  n=$(cat "$counter_file" 2>/dev/null || echo 0)
  used=$(cat "$STATE"/pods/* 2>/dev/null | sed -n 's/^ip=//p')
  for ((tries = 0; tries < 254; tries++)); do
    n=$((n % 254 + 1))
    ip="$POD_PREFIX.$octet.$n"
    if ! grep -qxF "$ip" <<< "$used"; then
      echo "$n" > "$counter_file"
      echo "$ip"
      return
    fi
  done
  die "no free pod address left on $node (254 pods)"
}

# Chained with && because it runs where set -e does not apply (the caller tests it).
create_pod_network() {  # NETNS VETH IP BRIDGE
  local netns=$1 veth=$2 ip=$3 br=$4
  ip netns add "$netns" &&
    ip link add name "$veth" type veth peer name eth0 netns "$netns" &&
    ip -n "$netns" addr add "$ip/$POD_PREFIX_LEN" dev eth0 &&
    ip -n "$netns" link set dev lo up &&
    ip -n "$netns" link set dev eth0 up &&
    { no_ipv6 "$veth"; ip link set dev "$veth" master "$br" up; }
}

delete_pod_network() {  # NETNS VETH
  if [ -e "/run/netns/$1" ]; then
    ip netns del "$1" || log "warning: ip netns del $1 failed"
  fi
  # Deleting the netns destroys the veth pair; this covers a half-created pod.
  if link_exists "$2"; then ip link del dev "$2" 2>/dev/null || true; fi
}

pod_manifest() {  # NODE NS NAME NETNS
  jq -n --arg node "$1" --arg ns "$2" --arg name "$3" --arg netns "$4" '{
    apiVersion: "v1", kind: "Pod",
    metadata: {name: $name, namespace: $ns, labels: {app: $name},
               annotations: {"testing.packet-capture/netns": $netns}},
    spec: {nodeName: $node, terminationGracePeriodSeconds: 0,
           containers: [{name: "app", image: "busybox", command: ["sleep", "infinity"]}]}}'
}

# What a kubelet would report for a started pod.
pod_running_status() {  # IP NETNS
  jq -n --arg ip "$1" --arg netns "$2" --arg t "$(now_rfc3339)" '{status: {
    phase: "Running", podIP: $ip, podIPs: [{ip: $ip}], startTime: $t,
    conditions: (["PodScheduled", "Initialized", "ContainersReady", "Ready"] |
                 map({type: ., status: "True", lastTransitionTime: $t})),
    containerStatuses: [{name: "app", image: "busybox", imageID: "", containerID: ("netns://" + $netns),
                         ready: true, started: true, restartCount: 0,
                         state: {running: {startedAt: $t}}}]}}'
}

cmd_pod_add() {
  [ $# -eq 3 ] || die "usage: pod add NODE NAMESPACE NAME"
  local node=$1 ns=$2 name=$3
  validate_label node "$node"
  validate_label namespace "$ns"
  validate_label "pod name" "$name"
  require_root
  take_lock
  require_up
  validate_node "$node"
  alive kube-apiserver || die "kube-apiserver is not running; run 'testing/cluster.sh up'"

  local record
  record=$(pod_record "$ns" "$name")
  if [ -f "$record" ]; then
    read_pod_record "$record"
    if [ "$REC_NODE" = "$node" ] && [ -e "/run/netns/$REC_NETNS" ] &&
      [ "$(kc get pod -n "$ns" "$name" -o 'jsonpath={.status.podIP}' 2>/dev/null)" = "$REC_IP" ]; then
      echo "$REC_IP"  # already there: idempotent
      return
    fi
    die "pod $ns/$name already exists (on $REC_NODE, $REC_IP); delete it first"
  fi

  local ip netns veth br
  ip=$(allocate_ip "$node")
  netns=$(pod_netns "$node" "$ns" "$name")
  veth="pcv-$(node_letter "$node")-${ip##*.}"   # pcv-a-254: at most 9 chars
  br=$(node_bridge "$node")
  link_exists "$br" || die "bridge $br is missing; run 'testing/cluster.sh up'"
  [ ! -e "/run/netns/$netns" ] || die "network namespace $netns exists without a pod record; run 'testing/cluster.sh down'"

  # Record first, so down/del can clean up whatever a failure below leaves behind.
  printf 'node=%s\nnamespace=%s\nname=%s\nip=%s\nnetns=%s\nveth=%s\n' \
    "$node" "$ns" "$name" "$ip" "$netns" "$veth" > "$record"
  if ! create_pod_network "$netns" "$veth" "$ip" "$br"; then
    delete_pod_network "$netns" "$veth"
    rm -f "$record"
    die "could not create the network of pod $ns/$name"
  fi
  has_namespace "$ns" || kc create namespace "$ns" > /dev/null 2>&1 || has_namespace "$ns" ||
    { delete_pod_network "$netns" "$veth"; rm -f "$record"; die "could not create namespace $ns"; }
  if ! pod_manifest "$node" "$ns" "$name" "$netns" | kc create -f - > /dev/null; then
    delete_pod_network "$netns" "$veth"
    rm -f "$record"
    die "could not create Pod $ns/$name"
  fi
  if ! pod_running_status "$ip" "$netns" |
    kc patch pod -n "$ns" "$name" --subresource=status --type=merge --patch-file=/dev/stdin > /dev/null; then
    kc delete pod -n "$ns" "$name" --grace-period=0 --force --ignore-not-found > /dev/null 2>&1 || true
    delete_pod_network "$netns" "$veth"
    rm -f "$record"
    die "could not set the status of Pod $ns/$name"
  fi
  log "pod $ns/$name on $node: $ip (netns $netns)"
  echo "$ip"
}

stop_traffic_of() {  # NS NAME
  local f
  for f in "$STATE"/pids/traffic-"$1.$2".*.pid; do
    [ -e "$f" ] && stop_daemon "$(basename "$f" .pid)"
  done
  return 0
}

cmd_pod_del() {
  [ $# -eq 2 ] || die "usage: pod del NAMESPACE NAME"
  local ns=$1 name=$2
  validate_label namespace "$ns"
  validate_label "pod name" "$name"
  require_root
  take_lock
  require_up
  stop_traffic_of "$ns" "$name"
  # Without a kubelet a graceful delete never completes.
  if alive kube-apiserver; then
    kc delete pod -n "$ns" "$name" --grace-period=0 --force --ignore-not-found --timeout=30s \
      > /dev/null 2> >(grep -v 'Immediate deletion does not wait' >&2) ||
      die "could not delete Pod $ns/$name"
  else
    log "warning: kube-apiserver is not running; only removing the network of $ns/$name"
  fi
  local record
  record=$(pod_record "$ns" "$name")
  if [ -f "$record" ]; then
    read_pod_record "$record"
    delete_pod_network "$REC_NETNS" "$REC_VETH"
    [ ! -e "/run/netns/$REC_NETNS" ] || die "network namespace $REC_NETNS is still there"
    rm -f "$record"
    log "pod $ns/$name deleted"
  else
    log "no pod $ns/$name created by this harness (nothing else to delete)"
  fi
}

cmd_pod_netns() {
  [ $# -eq 2 ] || die "usage: pod netns NAMESPACE NAME"
  local record
  record=$(pod_record "$1" "$2")
  [ -f "$record" ] || die "no pod $1/$2"
  read_pod_record "$record"
  echo "$REC_NETNS"
}

cmd_pod_list() {
  local f
  for f in "$STATE"/pods/*; do
    [ -f "$f" ] || continue
    read_pod_record "$f"
    echo "$REC_NAMESPACE $REC_NAME $REC_NODE $REC_IP $REC_NETNS"
  done
}

cmd_pod() {
  [ $# -ge 1 ] || { usage >&2; exit 2; }
  local sub=$1
  shift
  case "$sub" in
    add) cmd_pod_add "$@" ;;
    del | delete) cmd_pod_del "$@" ;;
    netns) cmd_pod_netns "$@" ;;
    list | ls) cmd_pod_list "$@" ;;
    *) usage >&2; die "unknown pod command: $sub" ;;
  esac
}

cmd_traffic() {
  [ $# -ge 2 ] && [ $# -le 3 ] || die "usage: traffic NAMESPACE NAME [SECONDS]"
  local ns=$1 name=$2 secs=${3:-10}
  validate_label namespace "$ns"
  validate_label "pod name" "$name"
  [[ "$secs" =~ ^[0-9]+$ ]] && [ "$secs" -ge 1 ] && [ "$secs" -le 3600 ] ||
    die "SECONDS must be a whole number from 1 to 3600"
  require_root
  take_lock
  require_up
  local record
  record=$(pod_record "$ns" "$name")
  [ -f "$record" ] || die "no pod $ns/$name (create it with 'pod add')"
  # Dots never occur in DNS labels: traffic-<ns>.<name>.<ns-clock> names one pod's runs.
  local id="traffic-$ns.$name.$(date +%s%N)"
  # The state dir is an argument so pid_is_ours recognises the runner.
  start_daemon "$id" "$STATE/logs/traffic.log" "$self" __traffic "$STATE/" "$ns" "$name" "$secs" "$id"
  log "traffic from $ns/$name for ${secs}s in the background (pid $(cat "$(pid_file "$id")"))"
}

# Runs in the background (its own session): one bounded ping per other pod, in parallel.
cmd_traffic_run() {  # STATE NS NAME SECONDS ID
  local ns=$2 name=$3 secs=$4 id=$5 f
  # Expanded now: locals are gone when the EXIT trap runs. The path has no quotes (checked).
  trap "rm -f '$(pid_file "$id")'" EXIT
  read_pod_record "$(pod_record "$ns" "$name")"
  local netns=$REC_NETNS self_ip=$REC_IP targets=()
  for f in "$STATE"/pods/*; do
    [ -f "$f" ] || continue
    read_pod_record "$f"
    [ "$REC_IP" = "$self_ip" ] || targets+=("$REC_IP")
  done
  echo "$(now_rfc3339) $ns/$name ($self_ip) -> ${targets[*]:-nobody} for ${secs}s"
  local ip
  for ip in "${targets[@]}"; do
    ip netns exec "$netns" ping -q -n -i 0.2 -c $((secs * 5)) -w "$secs" "$ip" &
  done
  wait || true
}

cmd_restart_agent() {
  [ $# -ge 1 ] || die "usage: restart-agent NODE [--kill] [--rebuild]"
  local node=$1 kill= rebuild=0
  shift
  while [ $# -gt 0 ]; do
    case "$1" in
      --kill) kill=--kill ;; --rebuild) rebuild=1 ;; *) die "unknown option: $1" ;;
    esac
    shift
  done
  validate_label node "$node"
  require_root
  take_lock
  require_up
  validate_node "$node"
  if [ "$rebuild" = 1 ] || [ ! -x "$STATE/bin/capture-agent" ]; then
    build_and_copy node_agent capture-agent || die "no capture-agent to start"
  fi
  stop_daemon "agent-$node" $kill
  start_agent "$node"
}

cmd_restart_aggregator() {
  local kill= rebuild=0
  while [ $# -gt 0 ]; do
    case "$1" in
      --kill) kill=--kill ;; --rebuild) rebuild=1 ;; *) die "unknown option: $1" ;;
    esac
    shift
  done
  require_root
  take_lock
  require_up
  if [ "$rebuild" = 1 ] || [ ! -x "$STATE/bin/capture-aggregator" ]; then
    build_and_copy aggregator capture-aggregator || die "no capture-aggregator to start"
  fi
  stop_daemon aggregator $kill
  start_aggregator
  WITH_AGGREGATOR=1
  save_config
}

cmd_restart_apiserver() {
  local kill=
  case "${1:-}" in
    --kill) kill=--kill ;; "") ;; *) die "usage: restart-apiserver [--kill]" ;;
  esac
  require_root
  take_lock
  require_up
  alive etcd || die "etcd is not running; run 'testing/cluster.sh up'"
  stop_daemon kube-apiserver $kill
  # The listening socket goes with the process; wait for it so the new one can bind.
  local deadline=$((SECONDS + 10))
  while port_in_use "$APISERVER_PORT" && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
  start_apiserver
}

# Every netns and link this harness creates is named pc-* / pcbr-* / pcv-* / pcfa-* / pcfb-*.
our_netns() { ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^pc-' || true; }
our_links() {
  ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | sed 's/@.*//' |
    grep -E '^(pcbr-|pcv-|pcfa-|pcfb-)' || true
}

cmd_down() {
  require_root
  take_lock
  local f name
  # Traffic first (it lives in pod namespaces), then the daemons that use the apiserver.
  for f in "$STATE"/pids/traffic-*.pid "$STATE"/pids/agent-*.pid \
    "$STATE"/pids/aggregator.pid "$STATE"/pids/kube-apiserver.pid "$STATE"/pids/etcd.pid; do
    [ -e "$f" ] || continue
    stop_daemon "$(basename "$f" .pid)"
  done
  for f in "$STATE"/pids/*.pid; do   # anything else that was recorded
    [ -e "$f" ] && stop_daemon "$(basename "$f" .pid)"
  done

  for name in $(our_netns); do
    ip netns del "$name" || log "warning: could not delete netns $name"
  done
  # Bridges last: deleting a bridge detaches its ports; veths die with either end.
  for name in $(our_links | grep -v '^pcbr-'); do ip link del dev "$name" 2>/dev/null || true; done
  for name in $(our_links); do ip link del dev "$name" 2>/dev/null || true; done

  # Cluster state goes (a fresh etcd means fresh tokens, captures and pods); logs stay for
  # post-mortems; the tool cache is outside the state dir.
  rm -rf "${STATE:?}"/{etcd,pids,pods,ipam,pki,certs,bin,nodes,aggregator} \
    "$STATE"/{kubeconfig,agent.kubeconfig,aggregator.kubeconfig,cluster.env}

  local left_netns left_links
  left_netns=$(our_netns)
  left_links=$(our_links)
  [ -z "$left_netns" ] || die "network namespaces left behind: $left_netns"
  [ -z "$left_links" ] || die "links left behind: $left_links"
  if grep -qE ' /run/netns/pc-' /proc/self/mountinfo; then
    die "netns mounts left behind under /run/netns"
  fi
  log "down: nothing of ours is running in $STATE"
}

main() {
  [ $# -ge 1 ] || { usage >&2; exit 2; }
  local cmd=$1
  shift
  load_config
  case "$cmd" in
    up) cmd_up "$@" ;;
    env) cmd_env "$@" ;;
    pod) cmd_pod "$@" ;;
    traffic) cmd_traffic "$@" ;;
    __traffic) cmd_traffic_run "$@" ;;
    restart-agent) cmd_restart_agent "$@" ;;
    restart-aggregator) cmd_restart_aggregator "$@" ;;
    restart-apiserver) cmd_restart_apiserver "$@" ;;
    down) cmd_down "$@" ;;
    -h | --help | help) usage ;;
    *) usage >&2; die "unknown command: $cmd" ;;
  esac
}

main "$@"
