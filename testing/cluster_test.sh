#!/usr/bin/env bash
# Test of the local cluster harness (testing/cluster.sh) with the real etcd, kube-apiserver,
# network namespaces and bridges. Prints PASS/FAIL per check; exits non-zero on any failure.
# Runs as root. Uses its own CLUSTER_STATE, but ports, bridges and pc-* netns names are
# machine-wide: it refuses to start when another cluster is up, and always runs `down`.
#
#   testing/cluster_test.sh
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cluster="$here/cluster.sh"

failures=0
pass() { echo "PASS: $*"; }
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
# check DESCRIPTION CMD...: PASS when CMD succeeds.
check() {
  local what=$1
  shift
  if "$@"; then pass "$what"; else fail "$what"; fi
}
# Fatal: later checks make no sense without this one.
require() {
  local what=$1
  shift
  if "$@"; then pass "$what"; else fail "$what"; echo "FAIL: stopping early"; exit 1; fi
}

[ "$(id -u)" = 0 ] || { echo "FAIL: must run as root"; exit 1; }
if ip link show dev pcbr-fabric > /dev/null 2>&1; then
  echo "FAIL: another cluster is up (pcbr-fabric exists); run 'testing/cluster.sh down' first"
  exit 1
fi

CLUSTER_STATE=$(mktemp -d /tmp/cluster-test.XXXXXX)
export CLUSTER_STATE

cleanup() {
  local rc=$?
  if ! "$cluster" down > "$CLUSTER_STATE.down.log" 2>&1; then
    echo "FAIL: cleanup down"; cat "$CLUSTER_STATE.down.log"; rc=1
  fi
  if [ "$rc" != 0 ] || [ "$failures" != 0 ]; then
    echo "logs kept in $CLUSTER_STATE/logs"
  else
    rm -rf "$CLUSTER_STATE"
  fi
  rm -f "$CLUSTER_STATE.down.log"
  exit "$rc"
}
trap cleanup EXIT

pidof_state() { cat "$CLUSTER_STATE/pids/$1.pid" 2>/dev/null; }
in_pod_range() {  # 198.18.0.0/15 = 198.18.x.y or 198.19.x.y
  [[ "$1" =~ ^198\.1[89]\.([0-9]{1,3})\.([0-9]{1,3})$ ]] &&
    [ "${BASH_REMATCH[1]}" -le 255 ] && [ "${BASH_REMATCH[2]}" -le 255 ]
}
netns_exists() { [ -e "/run/netns/$1" ]; }
no_netns() { ! netns_exists "$1"; }
no_pod() { ! kubectl get pod -n "$1" "$2" > /dev/null 2>&1; }
# Gone or a zombie (pid 1 here may reap orphans late; a zombie holds no resources).
pid_dead() {
  [ -n "$1" ] || return 1
  ! kill -0 "$1" 2>/dev/null || [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" = Z ] ||
    ! [ -e "/proc/$1" ]
}
port_free() { [ -z "$(ss -Hltn "sport = :$1")" ]; }
no_links() { [ -z "$(ip -o link show | awk -F': ' '{print $2}' | grep -E '^pcbr-|^pcv-|^pcf[ab]-')" ]; }
no_pc_netns() { [ -z "$(ip netns list | awk '{print $1}' | grep -E '^pc-')" ]; }
rx_packets() { ip netns exec "$1" cat /sys/class/net/eth0/statistics/rx_packets; }
jsonpath() { kubectl get "$@" 2>/dev/null; }
fails() { ! "$@"; }

# --- up, twice -------------------------------------------------------------------------
t0=$SECONDS
require "up --nodes 2 --no-aggregator" "$cluster" up --nodes 2 --no-aggregator
echo "  (first up: $((SECONDS - t0))s)"
etcd_pid=$(pidof_state etcd)
apiserver_pid=$(pidof_state kube-apiserver)
t0=$SECONDS
require "second up succeeds" "$cluster" up --nodes 2 --no-aggregator
echo "  (second up: $((SECONDS - t0))s)"
check "second up kept the same etcd and kube-apiserver processes" \
  test "$(pidof_state etcd):$(pidof_state kube-apiserver)" = "$etcd_pid:$apiserver_pid"
check "exactly one etcd and one kube-apiserver pid file" \
  test "$(ls "$CLUSTER_STATE/pids" | grep -cE '^(etcd|kube-apiserver)\.pid$')" = 2

eval "$("$cluster" env)"
export PATH="$CLUSTER_TOOLS:$PATH"   # the pinned kubectl, not a system one
check "env points KUBECONFIG into the state dir" test "$KUBECONFIG" = "$CLUSTER_STATE/kubeconfig"
check "env: no aggregator with --no-aggregator" test -z "$AGGREGATOR"
if grep -q 'name = "capture-agent"' "$here/../node_agent/BUILD.bazel" 2> /dev/null; then
  check "env: an agent per node (AGENTS='$AGENTS')" \
    test "$AGENTS" = "node-a=127.0.0.1:19101 node-b=127.0.0.1:19102"
else
  echo "  (no //node_agent:capture-agent target yet: agents not started)"
fi

# --- nodes ---------------------------------------------------------------------------
nodes=$(kubectl get nodes -o 'jsonpath={.items[*].metadata.name}' 2>&1 || true)
check "kubectl get nodes lists node-a and node-b (got: $nodes)" \
  test "$nodes" = "node-a node-b"

# --- pods ----------------------------------------------------------------------------
check "pod add rejects a namespace that is not a DNS label" \
  fails "$cluster" pod add node-a Bad_NS p0 2> /dev/null
check "pod add rejects an unknown node" fails "$cluster" pod add node-z ns1 p0 2> /dev/null

ip1=$("$cluster" pod add node-a ns1 p1) || ip1=
check "pod add node-a ns1 p1 prints an IP in 198.18.0.0/15 (got '$ip1')" in_pod_range "$ip1"
check "p1 is Running in the API" test "$(jsonpath pod -n ns1 p1 -o 'jsonpath={.status.phase}')" = Running
check "p1's podIP in the API is $ip1" test "$(jsonpath pod -n ns1 p1 -o 'jsonpath={.status.podIP}')" = "$ip1"
check "p1 is bound to node-a" test "$(jsonpath pod -n ns1 p1 -o 'jsonpath={.spec.nodeName}')" = node-a
check "p1 is Ready" \
  test "$(jsonpath pod -n ns1 p1 -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}')" = True
check "pod add is idempotent (same IP again)" test "$("$cluster" pod add node-a ns1 p1 2> /dev/null)" = "$ip1"

ip2=$("$cluster" pod add node-b ns1 p2) || ip2=
check "pod add node-b ns1 p2 prints another IP in 198.18.0.0/15 (got '$ip2')" \
  eval 'in_pod_range "$ip2" && [ "$ip2" != "$ip1" ]'
netns1=$("$cluster" pod netns ns1 p1)
netns2=$("$cluster" pod netns ns1 p2)
check "p1's network namespace $netns1 exists" netns_exists "$netns1"
# Output is captured before matching: `cmd | grep -q` fails under pipefail when grep exits
# early and cmd dies of SIGPIPE.
check "p1's eth0 holds $ip1" eval '[[ "$(ip -n "$netns1" -o -4 addr show dev eth0)" == *" $ip1/"* ]]'
check "p2 on node-b pings p1 on node-a" \
  ip netns exec "$netns2" ping -n -q -c 3 -W 1 "$ip1" > /dev/null

before=$(rx_packets "$netns2")
"$cluster" traffic ns1 p1 2
check "traffic records its pid" eval 'ls "$CLUSTER_STATE"/pids/traffic-ns1.p1.*.pid > /dev/null 2>&1'
# Until the packets arrived (or 15 s), not for as long as the traffic runs.
deadline=$((SECONDS + 15))
while [ "$(rx_packets "$netns2")" -lt $((before + 5)) ] && [ "$SECONDS" -lt "$deadline" ]; do
  sleep 0.2
done
check "traffic reached p2 (rx packets $before -> $(rx_packets "$netns2"))" \
  test "$(rx_packets "$netns2")" -ge $((before + 5))
deadline=$((SECONDS + 5))
while ls "$CLUSTER_STATE"/pids/traffic-*.pid > /dev/null 2>&1 && [ "$SECONDS" -lt "$deadline" ]; do
  sleep 0.2
done
check "traffic stopped by itself" fails eval 'ls "$CLUSTER_STATE"/pids/traffic-*.pid > /dev/null 2>&1'

# --- RBAC of the agent identity --------------------------------------------------------
agent=system:serviceaccount:kube-system:capture-agent
can() { test "$(kubectl auth can-i --as="$agent" "$@" 2> /dev/null)" = yes; }
check "capture-agent can list pods" can list pods --all-namespaces
check "capture-agent can watch pods" can watch pods --all-namespaces
check "capture-agent can create events" can create events -n ns1
check "capture-agent cannot delete pods" fails can delete pods -n ns1
check "capture-agent cannot read secrets" fails can get secrets -n kube-system
agent_kc="$CLUSTER_STATE/agent.kubeconfig"
check "agent.kubeconfig's token lists pods for real" \
  eval 'kubectl --kubeconfig="$agent_kc" get pods -n ns1 -o name > "$CLUSTER_STATE/agent-pods" &&
    grep -qx pod/p1 "$CLUSTER_STATE/agent-pods"'
check "agent.kubeconfig's token is refused secrets" \
  fails kubectl --kubeconfig="$agent_kc" get secrets -n kube-system
check "aggregator.kubeconfig's token may create TokenReviews" \
  test "$(kubectl --kubeconfig="$CLUSTER_STATE/aggregator.kubeconfig" auth can-i create tokenreviews.authentication.k8s.io 2> /dev/null)" = yes

# --- restart-apiserver ---------------------------------------------------------------
check "restart-apiserver" "$cluster" restart-apiserver
check "kube-apiserver has a new pid" test "$(pidof_state kube-apiserver)" != "$apiserver_pid"
check "p1 survives an apiserver restart" test "$(jsonpath pod -n ns1 p1 -o 'jsonpath={.status.podIP}')" = "$ip1"

# --- pod del -------------------------------------------------------------------------
check "pod del ns1 p1" "$cluster" pod del ns1 p1
check "p1 is gone from the API" no_pod ns1 p1
check "p1's network namespace is gone" no_netns "$netns1"
check "pod del of a missing pod succeeds" "$cluster" pod del ns1 p1

# --- down ----------------------------------------------------------------------------
"$cluster" traffic ns1 p2 30  # down must stop it
traffic_pid=$(cat "$CLUSTER_STATE"/pids/traffic-ns1.p2.*.pid)
apiserver_pid=$(pidof_state kube-apiserver)
require "down" "$cluster" down
check "etcd process $etcd_pid is gone" pid_dead "$etcd_pid"
check "kube-apiserver process $apiserver_pid is gone" pid_dead "$apiserver_pid"
check "traffic process $traffic_pid is gone" pid_dead "$traffic_pid"
check "apiserver and etcd ports are free" eval 'port_free "${CLUSTER_APISERVER_PORT:-16443}" &&
  port_free "${CLUSTER_ETCD_CLIENT_PORT:-12379}" && port_free "${CLUSTER_ETCD_PEER_PORT:-12380}"'
check "no pcbr-*/pcv-*/pcf*- link remains" no_links
check "no pc-* network namespace remains" no_pc_netns
check "no netns mount of ours remains" fails grep -q ' /run/netns/pc-' /proc/self/mountinfo
check "down again (nothing up) succeeds" "$cluster" down

echo
if [ "$failures" = 0 ]; then
  echo "PASS: cluster_test ($((SECONDS))s)"
else
  echo "FAIL: cluster_test: $failures check(s) failed"
  exit 1
fi
