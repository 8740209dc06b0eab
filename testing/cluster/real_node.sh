# shellcheck shell=bash
# Sourced by testing/cluster.sh: the real node "real-a" (`up --real-node`). containerd and a
# kubelet run BusyBox Pods and the project's own image; kube-proxy and CoreDNS give them
# Services and cluster DNS; k8s/with-aggregator is applied unchanged (through the overlay
# testing/real-node, which only pins it to real nodes). Every address is inside
# 198.18.0.0/15 and nothing is routed off the machine.
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
# The node's mount namespace, containerd, images
# ---------------------------------------------------------------------------------------

# The kubelet writes vm.overcommit_memory, kernel.panic and kernel.panic_on_oops at start.
# containerd and the kubelet run in one private mount namespace in which files holding the
# VM's current values are bind-mounted over those three entries, so the VM keeps its own.
# /run/netns is a shared mount, so the pods' network namespaces (cni-*) show on the host,
# where the capture-agent's hostPath finds them.
real_node_mount_namespace() {
  alive real-a-mounts && return
  mkdir -p /run/netns
  if [ "$(findmnt -n -o PROPAGATION --mountpoint /run/netns 2>/dev/null)" != shared ]; then
    findmnt --mountpoint /run/netns > /dev/null || mount --bind /run/netns /run/netns
    mount --make-shared /run/netns
  fi
  local d
  d="$(real_dir)/sysctl"
  mkdir -p "$d"
  cat /proc/sys/vm/overcommit_memory > "$d/overcommit_memory"
  cat /proc/sys/kernel/panic > "$d/panic"
  cat /proc/sys/kernel/panic_on_oops > "$d/panic_on_oops"
  rm -f "$d/.ready"
  start_daemon real-a-mounts "$STATE/logs/real-a-mounts.log" \
    unshare --mount --propagation unchanged "$self" __mount-namespace "$STATE/"
  wait_until real-a-mounts "$STATE/logs/real-a-mounts.log" 10 test -f "$d/.ready"
}

# Runs inside the new mount namespace (its own session, started by start_daemon).
cmd_mount_namespace_run() {  # STATE/
  local d
  d="$(real_dir)/sysctl"
  # As on a systemd host, every mount is shared here (a new peer group of this namespace;
  # the host's mounts stay private): containerd refuses HostToContainer volumes (the agent's
  # /var/run/netns) whose mount is neither shared nor a slave. /run/netns stays in the
  # host's peer group.
  mount --make-rshared /
  mount --bind "$d/overcommit_memory" /proc/sys/vm/overcommit_memory
  mount --bind "$d/panic" /proc/sys/kernel/panic
  mount --bind "$d/panic_on_oops" /proc/sys/kernel/panic_on_oops
  touch "$d/.ready"
  trap 'exit 0' TERM INT
  while :; do sleep 3600 & wait $! || true; done
}

# The real node's mount namespace, for `nsenter --mount=`.
node_mount_ns() { printf '/proc/%s/ns/mnt' "$(cat "$(pid_file real-a-mounts)")"; }

write_containerd_config() {
  local d
  d="$(real_dir)"
  mkdir -p "$d/containerd" "$d/cni/net.d" "$d/cni/ipam"
  cat > "$d/containerd/config.toml" <<EOF
# containerd for the real node $REAL_NODE_NAME (testing/cluster/real_node.sh).
version = 2
root = "$d/containerd/root"
state = "$d/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs"]

[grpc]
  address = "$(containerd_socket)"

[plugins."io.containerd.internal.v1.opt"]
  path = "$d/containerd/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$SANDBOX_IMAGE"
  # Without CAP_SYS_RESOURCE (this VM) runc cannot write a negative oom_score_adj.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$d/cni/net.d"
EOF
  # The pods' network: the node's bridge (already carrying the gateway address), host-local
  # addresses from REAL_POD_CIDR, a default route to the node; no masquerade, since nothing
  # leaves the machine.
  jq -n --arg bridge "$REAL_BRIDGE" --arg subnet "$REAL_POD_CIDR" --arg gw "$REAL_NODE_IP" \
    --arg ipam "$d/cni/ipam" '{
    cniVersion: "0.4.0", name: "pc-real-a",
    plugins: [{type: "bridge", bridge: $bridge, isGateway: true, ipMasq: false, hairpinMode: true,
               ipam: {type: "host-local", dataDir: $ipam,
                      ranges: [[{subnet: $subnet, gateway: $gw}]],
                      routes: [{dst: "0.0.0.0/0"}]}}]}' > "$d/cni/net.d/10-pc-real-a.conflist"
}

ensure_containerd() {
  alive containerd && return
  write_containerd_config
  start_daemon containerd "$STATE/logs/containerd.log" \
    nsenter --mount="$(node_mount_ns)" -- \
    containerd --config "$(real_dir)/containerd/config.toml"
  wait_until containerd "$STATE/logs/containerd.log" "$START_TIMEOUT" ctr_k8s version
  log "containerd ready on $(containerd_socket)"
}

# Imports the images (testing/cluster/images.sh) that containerd does not have yet.
ensure_node_images() {
  images_ensure
  local archive stamp
  for archive in "${IMAGE_ARCHIVES[@]}"; do
    stamp="$(real_dir)/containerd/imported.$(basename "$archive")"
    [ -f "$stamp" ] && continue
    ctr_k8s images import "$archive" > /dev/null 2>> "$STATE/logs/containerd.log" ||
      die "ctr images import $archive failed (log: $STATE/logs/containerd.log)"
    touch "$stamp"
    log "imported $(basename "$archive") into the node's containerd"
  done
}

# ---------------------------------------------------------------------------------------
# kubelet
# ---------------------------------------------------------------------------------------

# cgroup v1: the kubelet needs its cgroupRoot in every hierarchy before it starts.
cgroup_dirs() {
  local h
  for h in /sys/fs/cgroup/*/; do
    [ -d "$h" ] && printf '%s%s\n' "$h" "$CGROUP_ROOT"
  done
}

ensure_cgroup_root() {
  local dir
  for dir in $(cgroup_dirs); do
    mkdir -p "$dir"
    if [ -f "$dir/cpuset.cpus" ] && [ -z "$(cat "$dir/cpuset.cpus")" ]; then
      cat "$(dirname "$dir")/cpuset.cpus" > "$dir/cpuset.cpus"
      cat "$(dirname "$dir")/cpuset.mems" > "$dir/cpuset.mems"
    fi
  done
}

write_kubelet_config() {
  local d
  d="$(real_dir)/kubelet"
  mkdir -p "$d"
  echo "nameserver $DNS_SERVICE_IP" > "$d/resolv.conf"  # no DNS server off the machine
  cat > "$d/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
containerRuntimeEndpoint: unix://$(containerd_socket)
address: $REAL_NODE_IP
port: $KUBELET_PORT
readOnlyPort: 0
healthzPort: 0
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $STATE/pki/kubelet-client-ca.crt}
authorization: {mode: Webhook}
clusterDNS: [$DNS_SERVICE_IP]
clusterDomain: $CLUSTER_DOMAIN
resolvConf: $d/resolv.conf
podLogsDir: $STATE/logs/pods  # kept by down, for post-mortems
# This VM: cgroup v1, no swap, no CAP_SYS_RESOURCE, and containerd 1.6 does not report
# its cgroup driver.
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: /$CGROUP_ROOT
oomScoreAdj: 0
failSwapOn: false
# No registry is reachable: images are imported, and must never be garbage-collected.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%}
EOF
}

ensure_kubelet() {
  alive kubelet && return
  ensure_cgroup_root
  write_kubelet_config
  local kubeconfig="$(real_dir)/kubelet.kubeconfig"
  ensure_static_kubeconfig "$kubeconfig" "system:node:$REAL_NODE_NAME"
  start_daemon kubelet "$STATE/logs/kubelet.log" \
    nsenter --mount="$(node_mount_ns)" -- \
    "$TOOLS_BIN/kubelet" \
    --config="$(real_dir)/kubelet/config.yaml" \
    --kubeconfig="$kubeconfig" \
    --root-dir="$(real_dir)/kubelet/root" \
    --cert-dir="$(real_dir)/kubelet/pki" \
    --node-ip="$REAL_NODE_IP" \
    --hostname-override="$REAL_NODE_NAME" \
    --node-labels="$REAL_NODE_LABEL=true" \
    --v=1
  wait_until kubelet "$STATE/logs/kubelet.log" 120 node_ready "$REAL_NODE_NAME"
  log "kubelet: node $REAL_NODE_NAME is Ready"
}

node_ready() {  # NODE
  [ "$(kc get node "$1" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]
}

# ---------------------------------------------------------------------------------------
# Services and DNS: kube-proxy, CoreDNS
# ---------------------------------------------------------------------------------------

kube_proxy_config() {
  cat <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $(real_dir)/kube-proxy.kubeconfig}
hostnameOverride: $REAL_NODE_NAME
mode: iptables
clusterCIDR: $REAL_POD_CIDR
# Pod -> Service -> pod on the same bridge: the reply must come back through the host to
# be un-NATed; masquerading every Service connection does that without br_netfilter.
iptables: {masqueradeAll: true}
nodePortAddresses: ["$REAL_NODE_IP/32"]
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
# Leave the VM's conntrack sysctls alone.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF
}

ensure_kube_proxy() {
  alive kube-proxy && return
  ensure_static_kubeconfig "$(real_dir)/kube-proxy.kubeconfig" system:kube-proxy
  kube_proxy_config > "$(real_dir)/kube-proxy.yaml"
  start_daemon kube-proxy "$STATE/logs/kube-proxy.log" \
    "$TOOLS_BIN/kube-proxy" --config="$(real_dir)/kube-proxy.yaml"
  wait_until kube-proxy "$STATE/logs/kube-proxy.log" "$START_TIMEOUT" \
    curl -fsS --max-time 2 http://127.0.0.1:10256/healthz
  log "kube-proxy ready"
}

# CoreDNS runs on the node's bridge address and serves cluster.local from the API (as the
# ServiceAccount kube-system/coredns, testing/real-node/coredns.yaml); the kube-dns Service
# points at it. It has no upstream: no query leaves the machine.
ensure_coredns() {
  kc apply -f "$here/real-node/coredns.yaml" > /dev/null || die "kubectl apply coredns.yaml failed"
  # An EndpointSlice by hand: the Service has no selector, its endpoint is this host.
  jq -n --arg ip "$REAL_NODE_IP" '{apiVersion: "discovery.k8s.io/v1", kind: "EndpointSlice",
      metadata: {name: "kube-dns-host", namespace: "kube-system",
                 labels: {"kubernetes.io/service-name": "kube-dns"}},
      addressType: "IPv4",
      endpoints: [{addresses: [$ip], conditions: {ready: true}}],
      ports: [{name: "dns", port: 53, protocol: "UDP"}, {name: "dns-tcp", port: 53, protocol: "TCP"}]}' |
    kc apply -f - > /dev/null || die "could not create the kube-dns EndpointSlice"
  alive coredns && return
  local d
  d="$(real_dir)/coredns"
  mkdir -p "$d"
  credential_fresh "$d/kubeconfig" || {
    write_kubeconfig "$d/kubeconfig" coredns "$(sa_token coredns)"
    credential_made "$d/kubeconfig"
  }
  cat > "$d/Corefile" <<EOF
.:53 {
    bind $REAL_NODE_IP
    errors
    kubernetes $CLUSTER_DOMAIN in-addr.arpa {
        kubeconfig $d/kubeconfig packet-capture
        pods insecure
    }
    cache 5
}
EOF
  start_daemon coredns "$STATE/logs/coredns.log" "$TOOLS_BIN/coredns" -conf "$d/Corefile"
  wait_until coredns "$STATE/logs/coredns.log" "$START_TIMEOUT" dns_answers
  log "CoreDNS ready on $REAL_NODE_IP:53 (Service kube-dns, $DNS_SERVICE_IP)"
}

# True when the cluster DNS resolves the API server's Service name through its Service IP.
dns_answers() {
  local answer
  answer=$(dig +short +time=1 +tries=1 "@$DNS_SERVICE_IP" "kubernetes.default.svc.$CLUSTER_DOMAIN" 2>/dev/null)
  [ "$answer" = "${SERVICE_CIDR%.0/*}.1" ]
}

# ---------------------------------------------------------------------------------------
# The project's manifests
# ---------------------------------------------------------------------------------------

# The aggregator's claim (k8s/aggregator) asks the default StorageClass for 10Gi; there is no
# provisioner here, so a local PersistentVolume on the real node is there for it to bind.
ensure_aggregator_volume() {
  local dir
  dir="$(real_dir)/volumes/aggregator-data"
  mkdir -p "$dir"
  jq -n --arg path "$dir" --arg node "$REAL_NODE_NAME" '{apiVersion: "v1", kind: "PersistentVolume",
      metadata: {name: "packet-capture-aggregator-data"},
      spec: {capacity: {storage: "10Gi"}, accessModes: ["ReadWriteOnce"],
             persistentVolumeReclaimPolicy: "Retain", volumeMode: "Filesystem",
             local: {path: $path},
             nodeAffinity: {required: {nodeSelectorTerms: [{matchExpressions: [
               {key: "kubernetes.io/hostname", operator: "In", values: [$node]}]}]}}}}' |
    kc apply -f - > /dev/null || die "could not create the aggregator's PersistentVolume"
}

ensure_manifests() {
  ensure_aggregator_volume
  # Kustomize does not follow a symlinked kustomization.yaml (a Bazel runfiles tree): apply
  # the overlay where its file lives, the bases beside it.
  local overlay
  overlay=$(dirname "$(readlink -f "$here/real-node/kustomization.yaml")")
  kc apply -k "$overlay" > /dev/null || die "kubectl apply -k $overlay failed"
  kc -n kube-system rollout status daemonset/capture-agent --timeout=180s >&2 ||
    die "the capture-agent DaemonSet did not become ready (kubectl -n kube-system describe pods)"
  kc -n kube-system rollout status deployment/capture-aggregator --timeout=180s >&2 ||
    die "the capture-aggregator Deployment did not become ready (kubectl -n kube-system describe pods)"
}

# The ClusterIP of the aggregator Service: simulated nodes' agents (host processes) stream to
# it through kube-proxy, like the real node's agent does through cluster DNS.
aggregator_service_ip() {
  kc -n kube-system get service capture-aggregator -o 'jsonpath={.spec.clusterIP}' 2>/dev/null
}

# ---------------------------------------------------------------------------------------
# Port-forwards: AGGREGATOR and the real node's agent, as a user reaches them
# ---------------------------------------------------------------------------------------

# A kubectl port-forward that is started again whenever it ends (the aggregator or agent pod
# was replaced), until `down`.
ensure_port_forward() {  # NAME LOCAL-PORT PORT-ENV-VAR TARGET-KIND TARGET REMOTE-PORT
  alive "$1" && return
  require_port_free "$2" "$1" "$3"
  start_daemon "$1" "$STATE/logs/$1.log" "$self" __port-forward "$STATE/" "$2" "$4" "$5" "$6"
  wait_until "$1" "$STATE/logs/$1.log" 60 listening "$2"
  log "$1: 127.0.0.1:$2 -> $5:$6"
}

cmd_port_forward_run() {  # STATE/ LOCAL-PORT KIND TARGET REMOTE-PORT
  local port=$2 kind=$3 target=$4 remote=$5 pod
  trap 'kill $! 2>/dev/null; exit 0' TERM INT
  while :; do
    if [ "$kind" = agent ]; then  # the DaemonSet's pod on that node, whatever its name now
      pod=$(kc -n kube-system get pods -l app.kubernetes.io/name=capture-agent \
        --field-selector "spec.nodeName=$target,status.phase=Running" -o name 2>/dev/null | head -1)
    else
      pod=$target
    fi
    if [ -n "$pod" ]; then
      echo "$(now_rfc3339) port-forward 127.0.0.1:$port -> $pod:$remote"
      kc -n kube-system port-forward --address 127.0.0.1 "$pod" "$port:$remote" &
      wait $! || true
    fi
    sleep 1
  done
}

ensure_real_port_forwards() {
  ensure_port_forward port-forward-aggregator "$AGGREGATOR_PORT" CLUSTER_AGGREGATOR_PORT \
    service svc/capture-aggregator 9090
  ensure_port_forward port-forward-agent-real-a "$REAL_AGENT_PORT" CLUSTER_REAL_AGENT_PORT \
    agent "$REAL_NODE_NAME" 9091
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
  jq -n --arg ns "$1" --arg name "$2" --arg node "$REAL_NODE_NAME" '{
    apiVersion: "v1", kind: "Pod",
    metadata: {name: $name, namespace: $ns, labels: {app: $name}},
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
