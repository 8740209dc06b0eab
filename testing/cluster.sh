#!/usr/bin/env bash
# Local Kubernetes cluster harness: a real etcd and kube-apiserver on loopback, simulated
# nodes (Node objects + Linux bridges), "pods" made of a network namespace plus a Pod object
# whose status is patched to Running, one capture-agent per node and the aggregator.
# No Docker, kind or kubelet by default. With --real-node it adds a real node: containerd,
# a kubelet, kube-proxy, CoreDNS, the controller-manager and scheduler, running the image
# built from the Dockerfile with k8s/with-aggregator. Must run as root.
#
# This file is the one entry point: usage, the commands, and their order. Each part lives
# in a sourced file under testing/cluster/: common.sh (state, lock, daemons),
# control_plane.sh, sim_nodes.sh (simulated nodes and pods, host agents), real_node.sh
# (the real node: its network, up and down, its pods), kubelet_containerd.sh,
# real_node_services.sh (kube-proxy, CoreDNS, manifests, port-forwards), images.sh and
# object_store.sh (the S3-compatible server and the aggregator replicas using it).
# See usage() below, and DESIGN.md "Local cluster harness" (the interface is fixed).
set -euo pipefail

usage() {
  cat <<'EOF'
usage: testing/cluster.sh COMMAND ...

  up [--nodes N] [--no-aggregator] [--real-node] [--object-store [--aggregators N]]
                                     start the cluster (idempotent; installs what it needs).
                                     --real-node: also the real node real-a (containerd +
                                     kubelet) running k8s/with-aggregator from the image
                                     built from the Dockerfile; AGGREGATOR is then a
                                     port-forward to its Service.
                                     --object-store: an S3-compatible server (versitygw,
                                     bucket packet-capture) and N aggregator replicas
                                     (default 1, at most 8) storing into it under the
                                     prefix cluster/, each taking node Leases in
                                     kube-system; the agents get every replica's address.
                                     Stays until down; a later --aggregators N adds or
                                     stops replicas
  env                                print export lines: KUBECONFIG, CLUSTER_STATE,
                                     AGGREGATOR (host:port), AGENTS ("node-a=host:port ..."),
                                     REAL_NODES ("real-a" or empty), and the Prometheus
                                     /metrics addresses of the host daemons:
                                     AGGREGATOR_METRICS (host:port), AGENT_METRICS
                                     ("node-a=host:port ..."); with --object-store also
                                     OBJECT_STORE (host:port), OBJECT_STORE_CREDENTIALS
                                     (its key file), AGGREGATORS ("0=host:port ..." per
                                     running replica; AGGREGATOR is the first) and
                                     AGGREGATORS_METRICS ("0=host:port ...")
  pod add NODE NAMESPACE NAME [--label KEY=VALUE]...
                                     create a pod on NODE; prints its IP (only that) on stdout
                                     (on real-a: a real BusyBox Pod, once Ready); labelled
                                     app=NAME plus every --label (a later one wins)
  pod del NAMESPACE NAME             delete the pod and its network namespace
  pod netns NAMESPACE NAME           print the pod's network namespace name
  pod list                           print "namespace name node ip netns" per pod
  traffic NAMESPACE NAME [SECONDS]   ping every other pod from this pod, in the background
                                     (default 10 s, at most 3600)
  restart-agent NODE [--kill] [--rebuild]
                                     stop (SIGTERM, or SIGKILL to the agent alone with --kill)
                                     and start NODE's agent again; --rebuild re-runs bazel and
                                     re-copies the binary first
  restart-aggregator [--kill] [--rebuild] [--replica I]
                                     the same for the aggregator; with --object-store for
                                     replica I (needed when there are several), as its pod
                                     would restart; a stopped one is just started
  restart-object-store [--kill]      stop and start the object store (same port, keys and
                                     data); a stopped one is just started
  restart-apiserver [--kill]         stop and start kube-apiserver (same flags, same etcd)
  images                             build the real node's images (cached by content)
  down                               stop everything started here, delete the pods' network
                                     namespaces, links, mounts, cgroups, firewall rules and
                                     the cluster state (logs are kept)

Environment:
  CLUSTER_STATE               state dir (default /var/tmp/packet-capture-cluster)
  CLUSTER_APISERVER_PORT      kube-apiserver secure port (default 16443)
  CLUSTER_ETCD_CLIENT_PORT    etcd client port (default 12379)
  CLUSTER_ETCD_PEER_PORT      etcd peer port (default 12380)
  CLUSTER_AGENT_BASE_PORT     first agent port; node-a gets it, node-b the next (default 19101)
  CLUSTER_AGGREGATOR_PORT     aggregator gRPC port (default 19090; with --real-node the
                              local end of the port-forward to svc/capture-aggregator;
                              with --object-store replica i's is this + i)
  CLUSTER_METRICS_BASE_PORT   /metrics of the host aggregator (replica 0); node-a's agent
                              gets the next port, node-b's the one after (default 19400);
                              replica i > 0 gets this + 26 + i
  CLUSTER_OBJECT_STORE_PORT   the object store's port (default: the first free from 19500)
  CLUSTER_REAL_AGENT_PORT     local end of the port-forward to real-a's agent (default 19200)
  CLUSTER_KUBELET_PORT        the real node's kubelet port (default 10250)
  CLUSTER_START_TIMEOUT       seconds to wait for a component to become ready (default 60)
Ports are fixed at the first `up`; later commands read them from the state dir.
Bridge and link names (pcbr-*, pcv-*, pcf*-*), pc-* netns names and the real node's
cgroups and firewall chain are machine-wide, so only one cluster runs per machine at a time.
EOF
}

# Bazel runs tests with a minimal PATH; ip, iptables, runc and debootstrap live in sbin.
case ":$PATH:" in *:/usr/sbin:*) ;; *) PATH="/usr/sbin:/sbin:$PATH" ;; esac
export PATH

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
readonly STATE_MARKER=.packet-capture-cluster  # `down` empties only a dir that has it


# shellcheck source=cluster/common.sh
source "$here/cluster/common.sh"
# shellcheck source=cluster/control_plane.sh
source "$here/cluster/control_plane.sh"
# shellcheck source=cluster/sim_nodes.sh
source "$here/cluster/sim_nodes.sh"
# shellcheck source=cluster/real_node.sh
source "$here/cluster/real_node.sh"
# shellcheck source=cluster/kubelet_containerd.sh
source "$here/cluster/kubelet_containerd.sh"
# shellcheck source=cluster/real_node_services.sh
source "$here/cluster/real_node_services.sh"
# shellcheck source=cluster/images.sh
source "$here/cluster/images.sh"
# shellcheck source=cluster/object_store.sh
source "$here/cluster/object_store.sh"

# ---------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------
# True when the `up` requested is already fully in place, so `up` can return at once.
# A daemon that cannot be built yet (no BUILD target) does not count as missing.
already_up() {  # WANT_NODES WANT_AGGREGATOR WANT_REAL_NODE WANT_OBJECT_STORE WANT_REPLICAS
  [ -n "$TOOLS_BIN" ] && [ "$NODES" -ge "$1" ] || return 1
  [ "$4" = 0 ] || [ "$OBJECT_STORE" = 1 ] || return 1
  [ -z "$5" ] || [ "$REPLICAS" = "$5" ] || return 1
  [ "$OBJECT_STORE" = 0 ] || object_store_up || return 1
  [ "$3" = 0 ] || { [ "$REAL_NODE" = 1 ] && real_node_healthy; } || return 1
  alive etcd && alive kube-apiserver && apiserver_ready || return 1
  credential_fresh "$STATE/agent.kubeconfig" && credential_fresh "$STATE/aggregator.kubeconfig" ||
    return 1
  local node
  for node in $(all_nodes); do
    link_exists "$(node_bridge "$node")" && link_exists "pcfa-$node" || return 1
    if ! alive "agent-$node" && has_target node_agent capture-agent; then return 1; fi
  done
  if [ "$2" = 1 ] && [ "$REAL_NODE" = 0 ] && [ "$OBJECT_STORE" = 0 ] && ! alive aggregator &&
    has_target aggregator capture-aggregator; then
    return 1
  fi
  [ "$(kc get nodes -o name 2>/dev/null | wc -l)" -ge "$NODES" ]
}

cmd_up() {
  local want_nodes=2 want_aggregator=1 want_real_node=0 want_object_store=0 want_replicas=
  while [ $# -gt 0 ]; do
    case "$1" in
      --real-node) want_real_node=1; shift ;;
      --object-store) want_object_store=1; shift ;;
      --aggregators) [ $# -ge 2 ] || die "--aggregators needs a number"; want_replicas=$2; shift 2 ;;
      --aggregators=*) want_replicas=${1#--aggregators=}; shift ;;
      --nodes) [ $# -ge 2 ] || die "--nodes needs a number"; want_nodes=$2; shift 2 ;;
      --nodes=*) want_nodes=${1#--nodes=}; shift ;;
      --no-aggregator) want_aggregator=0; shift ;;
      *) usage >&2; die "unknown option for up: $1" ;;
    esac
  done
  [[ "$want_nodes" =~ ^[0-9]+$ ]] && [ "$want_nodes" -ge 1 ] && [ "$want_nodes" -le "$MAX_NODES" ] ||
    die "--nodes must be a number from 1 to $MAX_NODES"
  if [ -n "$want_replicas" ]; then
    [[ "$want_replicas" =~ ^[0-9]+$ ]] && [ "$want_replicas" -ge 1 ] &&
      [ "$want_replicas" -le "$MAX_REPLICAS" ] ||
      die "--aggregators must be a number from 1 to $MAX_REPLICAS"
  fi
  require_root
  local started=$SECONDS
  take_lock
  mkdir -p "$STATE"/{pids,logs,pods,ipam,nodes}
  touch "$STATE/$STATE_MARKER"
  clean_stale_pids
  # A cluster that is partly running keeps its ports; a fresh one takes them from the env.
  load_config
  if ! alive etcd && ! alive kube-apiserver; then
    local keep_nodes=$NODES
    rm -f "$STATE/cluster.env"
    load_config
    NODES=$keep_nodes
  fi
  # Replicas need the object store; the object store stays until `down`, like a real node.
  if [ -n "$want_replicas" ] && [ "$want_object_store" = 0 ] && [ "$OBJECT_STORE" = 0 ]; then
    die "--aggregators needs --object-store (replicas share their captures through it)"
  fi
  if [ "$want_object_store" = 1 ] || [ "$OBJECT_STORE" = 1 ]; then
    [ "$want_aggregator" = 1 ] || die "--object-store runs aggregator replicas: drop --no-aggregator"
    [ "$want_real_node" = 0 ] && [ "$REAL_NODE" = 0 ] ||
      die "--object-store and --real-node do not go together (the real node runs k8s/with-aggregator)"
  fi
  if already_up "$want_nodes" "$want_aggregator" "$want_real_node" "$want_object_store" "$want_replicas"; then
    log "already up and healthy ($NODES nodes); nothing to do"
    return
  fi
  # Nodes are only ever added by a later `up`, never removed while pods may use them.
  [ "$NODES" -ge "$want_nodes" ] || NODES=$want_nodes
  [ "$want_aggregator" = 0 ] || WITH_AGGREGATOR=1
  # A real node stays until `down`; its aggregator replaces the host process.
  [ "$want_real_node" = 0 ] || REAL_NODE=1
  if [ "$want_object_store" = 1 ] || [ "$OBJECT_STORE" = 1 ]; then
    OBJECT_STORE=1
    [ -n "$want_replicas" ] && REPLICAS=$want_replicas
    [ "$REPLICAS" -ge 1 ] || REPLICAS=1
    choose_object_store_port
  fi

  ensure_packages
  ensure_tools
  save_config
  ensure_pki
  ensure_etcd
  ensure_apiserver
  ensure_cluster_objects
  [ "$OBJECT_STORE" = 0 ] || ensure_lease_rbac
  local node
  for node in $(all_nodes); do
    ensure_node_network "$node"
    ensure_node_object "$node"
  done
  [ "$REAL_NODE" = 0 ] || ensure_real_node
  ensure_daemons
  lock_leak_check
  log "up in $((SECONDS - started))s; state in $STATE (eval \"\$(testing/cluster.sh env)\")"
}

cmd_env() {
  require_up
  local agents=() agent_metrics=() node
  for node in $(all_nodes); do
    alive "agent-$node" || continue
    agents+=("$node=127.0.0.1:$(agent_port "$node")")
    agent_metrics+=("$node=127.0.0.1:$(agent_metrics_port "$node")")
  done
  local aggregator= real_nodes= aggregator_metrics=
  if alive aggregator; then
    aggregator="127.0.0.1:$AGGREGATOR_PORT"
    aggregator_metrics="127.0.0.1:$(aggregator_metrics_port)"
  fi
  # Object-store mode: every running replica; AGGREGATOR is the first of them.
  local replicas=() replicas_metrics=() object_store= i
  if [ "$OBJECT_STORE" = 1 ]; then
    for i in $(all_replicas); do
      alive "$(replica_name "$i")" || continue
      replicas+=("$i=127.0.0.1:$(replica_port "$i")")
      replicas_metrics+=("$i=127.0.0.1:$(replica_metrics_port "$i")")
      [ -n "$aggregator" ] && continue
      aggregator="127.0.0.1:$(replica_port "$i")"
      aggregator_metrics="127.0.0.1:$(replica_metrics_port "$i")"
    done
    alive object-store && object_store="127.0.0.1:$OBJECT_STORE_PORT"
  fi
  if [ "$REAL_NODE" = 1 ]; then
    real_nodes=$REAL_NODE_NAME
    alive port-forward-aggregator && aggregator="127.0.0.1:$AGGREGATOR_PORT"
    alive port-forward-agent-real-a && agents+=("$REAL_NODE_NAME=127.0.0.1:$REAL_AGENT_PORT")
  fi
  alive kube-apiserver || log "warning: kube-apiserver is not running"
  # Values are paths and host:port lists; single quotes keep them readable (and eval-safe,
  # since a path with a quote is refused at startup).
  echo "export KUBECONFIG='$STATE/kubeconfig'"
  echo "export CLUSTER_STATE='$STATE'"
  echo "export AGGREGATOR='$aggregator'"
  echo "export AGENTS='${agents[*]:-}'"
  echo "export REAL_NODES='$real_nodes'"
  echo "export CLUSTER_TOOLS='$TOOLS_BIN'"
  echo "export AGGREGATOR_METRICS='$aggregator_metrics'"
  echo "export AGENT_METRICS='${agent_metrics[*]:-}'"
  echo "export OBJECT_STORE='$object_store'"
  echo "export OBJECT_STORE_CREDENTIALS='$([ "$OBJECT_STORE" = 0 ] || object_store_credentials)'"
  echo "export AGGREGATORS='${replicas[*]:-}'"
  echo "export AGGREGATORS_METRICS='${replicas_metrics[*]:-}'"
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
  local kill= rebuild=0 replica=
  while [ $# -gt 0 ]; do
    case "$1" in
      --kill) kill=--kill ;; --rebuild) rebuild=1 ;;
      --replica) [ $# -ge 2 ] || die "--replica needs a number"; replica=$2; shift ;;
      --replica=*) replica=${1#--replica=} ;;
      *) die "unknown option: $1" ;;
    esac
    shift
  done
  require_root
  take_lock
  require_up
  [ "$REAL_NODE" = 0 ] ||
    die "with a real node the aggregator is a Deployment: kubectl -n kube-system rollout restart deploy/capture-aggregator"
  if [ "$OBJECT_STORE" = 1 ]; then
    [ -n "$replica" ] || [ "$REPLICAS" = 1 ] || die "which one? restart-aggregator --replica I (0..$((REPLICAS - 1)))"
    replica=${replica:-0}
    validate_replica "$replica"
  elif [ -n "$replica" ] && [ "$replica" != 0 ]; then
    die "this cluster has one aggregator (replicas come with up --object-store --aggregators N)"
  fi
  if [ "$rebuild" = 1 ] || [ ! -x "$STATE/bin/capture-aggregator" ]; then
    build_and_copy aggregator capture-aggregator || die "no capture-aggregator to start"
  fi
  if [ "$OBJECT_STORE" = 1 ]; then
    stop_daemon "$(replica_name "$replica")" $kill
    start_replica "$replica"
    return
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
  # The real node first: its pods live in network namespaces and cgroups of the host.
  if [ "$REAL_NODE" = 1 ] || [ -d "$(real_dir)" ]; then real_node_down; fi
  # Then traffic (it lives in pod namespaces), and the daemons that use the apiserver.
  for f in "$STATE"/pids/traffic-*.pid "$STATE"/pids/agent-*.pid "$STATE"/pids/aggregator.pid \
    "$STATE"/pids/aggregator-*.pid "$STATE"/pids/object-store.pid \
    "$STATE"/pids/kube-apiserver.pid "$STATE"/pids/etcd.pid; do
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

  # All cluster state goes, whatever its name: a fresh etcd means fresh keys, so nothing
  # made with the old ones (tokens, kubeconfigs, captures, pods) may survive into the next
  # `up`. Logs stay for post-mortems; the tool cache is outside the state dir. Only a
  # directory that `up` marked as a state dir is emptied, never one set by mistake.
  if [ -f "$STATE/$STATE_MARKER" ]; then
    find "$STATE" -mindepth 1 -maxdepth 1 ! -name logs ! -name .lock ! -name "$STATE_MARKER" \
      -exec rm -rf {} +
  fi

  local left_netns left_links
  left_netns=$(our_netns)
  left_links=$(our_links)
  [ -z "$left_netns" ] || die "network namespaces left behind: $left_netns"
  [ -z "$left_links" ] || die "links left behind: $left_links"
  if grep -qE ' /run/netns/pc-' /proc/self/mountinfo; then
    die "netns mounts left behind under /run/netns"
  fi
  local left
  left=$(real_node_leftovers)
  [ -z "$left" ] || die "left behind by the real node: $left"
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
    __mount-namespace) cmd_mount_namespace_run "$@" ;;
    __port-forward) cmd_port_forward_run "$@" ;;
    images) require_root; images_ensure; printf '%s\n' "${IMAGE_ARCHIVES[@]}" ;;
    restart-agent) cmd_restart_agent "$@" ;;
    restart-aggregator) cmd_restart_aggregator "$@" ;;
    restart-apiserver) cmd_restart_apiserver "$@" ;;
    restart-object-store) cmd_restart_object_store "$@" ;;
    down) cmd_down "$@" ;;
    -h | --help | help) usage ;;
    *) usage >&2; die "unknown command: $cmd" ;;
  esac
}

main "$@"
