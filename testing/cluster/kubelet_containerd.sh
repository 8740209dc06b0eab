# shellcheck shell=bash
# Sourced by testing/cluster.sh: the real node's container runtime and kubelet. containerd
# and the kubelet run in one private mount namespace (real_node_mount_namespace says why);
# containerd's configuration and the CNI bridge network (write_containerd_config), the
# images imported into it, and the kubelet's configuration (write_kubelet_config).
# Names and addresses come from real_node.sh.

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

