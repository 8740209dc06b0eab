# shellcheck shell=bash
# Sourced by testing/cluster.sh: the real node "real-a" (`up --real-node`). containerd and a
# kubelet run BusyBox Pods and the project's own image; kube-proxy and CoreDNS give them
# Services and cluster DNS; k8s/with-aggregator is applied unchanged (through the overlay
# testing/real-node, which only pins it to real nodes). Every address is inside
# 198.18.0.0/15 and nothing is routed off the machine.
#
# The runtime and kubelet are in kubelet_containerd.sh, kube-proxy, CoreDNS, the manifests
# and the port-forwards in real_node_services.sh.
#
# Layout under $STATE/real-a: containerd/ (its config, root, state and socket), cni/ (the
# bridge network and its IP allocations), kubelet/ (root dir, config, serving cert),
# kube-proxy.yaml, coredns/Corefile, volumes/ (the aggregator's PersistentVolume), sysctl/
# (see real_node_mount_namespace). Container logs go to $STATE/logs/pods, which down keeps.

readonly REAL_NODE_NAME=real-a
readonly REAL_BRIDGE=pcbr-real-a
readonly REAL_POD_CIDR=198.18.128.0/24
readonly REAL_NODE_IP=198.18.128.1
readonly REAL_NODE_LABEL=packet-capture.test/real-node
readonly DNS_SERVICE_IP=198.19.0.10
readonly CLUSTER_DOMAIN=cluster.local
readonly CGROUP_ROOT=packet-capture-real-a
readonly SANDBOX_IMAGE=registry.k8s.io/pause:3.10
readonly FIREWALL_CHAIN=PC-APISERVER
# The whole test range: unreachable from the host unless a bridge route is more specific.
readonly TEST_RANGE=198.18.0.0/15

real_dir() { printf '%s/%s' "$STATE" "$REAL_NODE_NAME"; }
containerd_socket() { printf '%s/containerd/containerd.sock' "$(real_dir)"; }
ctr_k8s() { ctr --address "$(containerd_socket)" --namespace k8s.io "$@"; }

# ---------------------------------------------------------------------------------------
# Host network: the node's bridge, forwarding, the unreachable route, the API server guard
# ---------------------------------------------------------------------------------------

real_node_network() {
  ensure_bridge "$REAL_BRIDGE"
  ip addr replace "$REAL_NODE_IP/${REAL_POD_CIDR#*/}" dev "$REAL_BRIDGE"
  # A packet to an address of the range that no bridge owns (an unanswered Service IP, a
  # deleted pod) dies here instead of following the default route off the machine.
  ip route replace unreachable "$TEST_RANGE" metric 4000
  # Service IPs from the host (the hostNetwork agent, simulated nodes' agents, dig): the
  # route is looked up before kube-proxy's OUTPUT rules rewrite the destination, so the
  # Service range needs a route that is not `unreachable`. A Service IP nobody rewrites goes
  # to the node's bridge, where nobody answers it.
  ip route replace "$SERVICE_CIDR" dev "$REAL_BRIDGE" src "$REAL_NODE_IP"
  # Pod -> Service -> pod is routed through the host. The VM's old value is restored by down.
  [ -f "$(real_dir)/ip_forward.saved" ] || cat /proc/sys/net/ipv4/ip_forward > "$(real_dir)/ip_forward.saved"
  echo 1 > /proc/sys/net/ipv4/ip_forward
  real_node_firewall
}

# The API server listens on every address (pods reach it on the bridge): admit its port only
# from the loopback and the real node's bridge.
real_node_firewall() {
  iptables -w -N "$FIREWALL_CHAIN" 2>/dev/null || iptables -w -F "$FIREWALL_CHAIN"
  iptables -w -A "$FIREWALL_CHAIN" -i lo -j RETURN
  iptables -w -A "$FIREWALL_CHAIN" -i "$REAL_BRIDGE" -j RETURN
  iptables -w -A "$FIREWALL_CHAIN" -j DROP
  iptables -w -C INPUT -p tcp --dport "$APISERVER_PORT" -j "$FIREWALL_CHAIN" 2>/dev/null ||
    iptables -w -I INPUT -p tcp --dport "$APISERVER_PORT" -j "$FIREWALL_CHAIN"
}

# ---------------------------------------------------------------------------------------
# up --real-node
# ---------------------------------------------------------------------------------------

ensure_real_node() {
  mkdir -p "$(real_dir)"
  # The real node's aggregator replaces the host process (its port becomes the port-forward).
  stop_daemon aggregator
  ensure_controller_manager
  ensure_scheduler
  real_node_network
  real_node_mount_namespace
  ensure_containerd
  ensure_node_images
  ensure_kubelet
  ensure_kube_proxy
  ensure_coredns
  ensure_manifests
  ensure_real_port_forwards
}

real_node_healthy() {
  local name
  for name in kube-controller-manager kube-scheduler real-a-mounts containerd kubelet kube-proxy \
    coredns port-forward-aggregator port-forward-agent-real-a; do
    alive "$name" || return 1
  done
  node_ready "$REAL_NODE_NAME"
}

# ---------------------------------------------------------------------------------------
# Pods on the real node
# ---------------------------------------------------------------------------------------

real_pod_manifest() {  # NS NAME
  # A label value has at most 63 chars; a pod name up to 253 (short_name: sim_nodes.sh).
  jq -n --arg ns "$1" --arg name "$2" --arg node "$REAL_NODE_NAME" \
    --arg app "$(short_name 63 "$2")" '{
    apiVersion: "v1", kind: "Pod",
    metadata: {name: $name, namespace: $ns, labels: {app: $app}},
    spec: {nodeSelector: {"kubernetes.io/hostname": $node}, terminationGracePeriodSeconds: 1,
           containers: [{name: "app", image: "busybox:1.36", imagePullPolicy: "IfNotPresent",
                         command: ["sleep", "86400"]}]}}'
}

# A real BusyBox Pod, scheduled onto the real node; prints its IP once it is Ready.
real_pod_add() {  # NS NAME
  local ns=$1 name=$2 record ip
  record=$(pod_record "$ns" "$name")
  has_namespace "$ns" || kc create namespace "$ns" > /dev/null 2>&1 || has_namespace "$ns" ||
    die "could not create namespace $ns"
  # The ServiceAccount admission plugin needs the namespace's default ServiceAccount, which
  # the controller-manager creates a moment after the namespace.
  eventually_true 30 kc get serviceaccount -n "$ns" default || die "namespace $ns has no default ServiceAccount"
  real_pod_manifest "$ns" "$name" | kc create -f - > /dev/null || die "could not create Pod $ns/$name"
  kc wait -n "$ns" "pod/$name" --for=condition=Ready --timeout=120s > /dev/null ||
    die "Pod $ns/$name did not become Ready (kubectl describe pod -n $ns $name)"
  ip=$(kc get pod -n "$ns" "$name" -o 'jsonpath={.status.podIP}')
  printf 'node=%s\nnamespace=%s\nname=%s\nip=%s\nnetns=\nveth=\n' \
    "$REAL_NODE_NAME" "$ns" "$name" "$ip" > "$record"
  log "pod $ns/$name on $REAL_NODE_NAME: $ip"
  echo "$ip"
}

real_pod_del() {  # NS NAME
  kc delete pod -n "$1" "$2" --ignore-not-found --wait=true --timeout=60s > /dev/null ||
    die "could not delete Pod $1/$2"
  rm -f "$(pod_record "$1" "$2")"
  log "pod $1/$2 deleted"
}

# Traffic from a real pod: bounded pings to the node's bridge address and the other real pods.
real_traffic_run() {  # NS NAME SECONDS
  local ns=$1 name=$2 secs=$3 f targets=("$REAL_NODE_IP") self_ip
  self_ip=$(kc get pod -n "$ns" "$name" -o 'jsonpath={.status.podIP}')
  for f in "$STATE"/pods/*; do
    [ -f "$f" ] || continue
    read_pod_record "$f"
    [ "$REAL_NODE" = 1 ] && [ "$REC_NODE" = "$REAL_NODE_NAME" ] && [ "$REC_IP" != "$self_ip" ] &&
      targets+=("$REC_IP")
  done
  echo "$(now_rfc3339) $ns/$name ($self_ip) -> ${targets[*]} for ${secs}s"
  local ip
  for ip in "${targets[@]}"; do
    kc exec -n "$ns" "$name" -- ping -q -i 0.2 -c $((secs * 5)) -w "$secs" "$ip" &
  done
  wait || true
}

eventually_true() {  # SECONDS CMD...
  local deadline=$((SECONDS + $1))
  shift
  until "$@" > /dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.5
  done
}

# ---------------------------------------------------------------------------------------
# down
# ---------------------------------------------------------------------------------------

# Processes of the node: the kubelet first (it would restart containers), then every
# process in the node's cgroups (containers), the shims, containerd and the namespace.
real_node_down() {
  stop_daemon port-forward-aggregator
  stop_daemon port-forward-agent-real-a
  stop_daemon kubelet
  local dir pid round
  for round in 1 2 3 4 5; do
    for dir in $(cgroup_dirs); do
      [ -d "$dir" ] || continue
      find "$dir" -name tasks -exec cat {} + 2>/dev/null
    done | sort -u | while read -r pid; do kill -KILL "$pid" 2>/dev/null || true; done
    sleep 0.2
  done
  # Shims carry containerd's socket path (inside the state dir) on their command line.
  for pid in $(pgrep -f "containerd-shim.*$(containerd_socket)" || true); do
    kill -KILL "$pid" 2>/dev/null || true
  done
  stop_daemon containerd
  stop_daemon real-a-mounts
  stop_daemon kube-proxy
  if [ -x "${TOOLS_BIN:-}/kube-proxy" ] && [ -f "$(real_dir)/kube-proxy.yaml" ]; then
    "$TOOLS_BIN/kube-proxy" --cleanup --config="$(real_dir)/kube-proxy.yaml" \
      >> "$STATE/logs/kube-proxy.log" 2>&1 || log "warning: kube-proxy --cleanup failed"
  fi
  remove_kube_chains
  # The pods' network namespaces (cni-*, bind-mounted under /run/netns by containerd) hold
  # addresses of the node's pod range.
  local ns
  for ns in $(real_pod_netns); do
    ip netns del "$ns" || log "warning: could not delete netns $ns"
  done
  for dir in $(cgroup_dirs); do
    [ -d "$dir" ] && find "$dir" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
  rm -f /var/lib/cni/results/pc-real-a-* 2>/dev/null || true
  # containerd 1.6 keeps shim sockets and runc state under /run/containerd whatever its config.
  pgrep -x containerd > /dev/null || rm -rf /run/containerd
  stop_daemon kube-scheduler
  stop_daemon kube-controller-manager
  stop_daemon coredns
  if iptables -w -C INPUT -p tcp --dport "$APISERVER_PORT" -j "$FIREWALL_CHAIN" 2>/dev/null; then
    iptables -w -D INPUT -p tcp --dport "$APISERVER_PORT" -j "$FIREWALL_CHAIN"
  fi
  iptables -w -F "$FIREWALL_CHAIN" 2>/dev/null && iptables -w -X "$FIREWALL_CHAIN" 2>/dev/null || true
  ip route del unreachable "$TEST_RANGE" 2>/dev/null || true
  ip route del "$SERVICE_CIDR" dev "$REAL_BRIDGE" 2>/dev/null || true
  if [ -f "$(real_dir)/ip_forward.saved" ]; then
    cat "$(real_dir)/ip_forward.saved" > /proc/sys/net/ipv4/ip_forward
  fi
}

# kube-proxy's chains that --cleanup left and the kubelet's canary chains (KUBE-*, in every
# table, IPv4 and IPv6): the jumps to them from other chains first, then the chains.
# Nothing else on a machine running this harness makes KUBE-* chains.
remove_kube_chains() {
  local ipt table rule chain
  for ipt in iptables ip6tables; do
    command -v "$ipt" > /dev/null || continue
    for table in filter nat mangle; do
      "$ipt" -w -t "$table" -S 2>/dev/null | grep -E '^-A [^ ]+ .*-j KUBE-' | grep -v '^-A KUBE-' |
        while read -r rule; do
          # The rule as iptables printed it (quoted comments included), made a deletion.
          eval "$ipt -w -t $table -D ${rule#-A }" 2>/dev/null || true
        done || true
      for chain in $("$ipt" -w -t "$table" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^KUBE-/ {print $2}'); do
        "$ipt" -w -t "$table" -F "$chain" 2>/dev/null || true
      done
      for chain in $("$ipt" -w -t "$table" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^KUBE-/ {print $2}'); do
        "$ipt" -w -t "$table" -X "$chain" 2>/dev/null || true
      done
    done
  done
}

# Network namespaces under /run/netns whose interfaces carry an address of the node's range.
real_pod_netns() {
  local ns
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^cni-' || true); do
    ip -n "$ns" -4 -o addr show 2>/dev/null | grep -q " ${REAL_POD_CIDR%.*}\." && echo "$ns"
  done
  return 0
}

# What `down` verifies is gone (prints what is left).
real_node_leftovers() {
  local dir
  for dir in $(cgroup_dirs); do [ -d "$dir" ] && echo "cgroup $dir"; done
  real_pod_netns | sed 's/^/netns /'
  local ipt table
  for ipt in iptables ip6tables; do
    command -v "$ipt" > /dev/null || continue
    for table in filter nat mangle; do
      "$ipt" -w -t "$table" -S 2>/dev/null | grep -E -- "$FIREWALL_CHAIN|KUBE-" | sed "s/^/$ipt -t $table /" || true
    done
  done
  if ip route show "$TEST_RANGE" 2>/dev/null | grep -q unreachable; then echo "route unreachable $TEST_RANGE"; fi
  pgrep -af "$STATE/" | sed 's/^/process /' || true
  return 0
}
