# shellcheck shell=bash
# Sourced by testing/cluster.sh: what the real node's pods reach and what users reach them
# by: kube-proxy, CoreDNS, the project's manifests (k8s/with-aggregator through
# testing/real-node) and the kubectl port-forwards behind AGGREGATOR and real-a's agent.
# Names and addresses come from real_node.sh.

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
  ensure_kubeconfig "$d/kubeconfig" coredns sa_token coredns
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

