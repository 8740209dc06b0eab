# shellcheck shell=bash
# Sourced by testing/cluster.sh: simulated nodes (a Node object + a Linux bridge each), their
# "pods" (a network namespace + a Pod object patched to Running), traffic between them, and
# the capture-agent / capture-aggregator host processes.
node_name() { printf 'node-%s' "$(printf "\\$(printf '%03o' $((97 + $1)))")"; }  # 0 -> node-a
node_index() { printf '%d' $(($(printf '%d' "'${1#node-}") - 97)); }              # node-a -> 0
node_letter() { printf '%s' "${1#node-}"; }
node_bridge() { printf 'pcbr-%s' "$1"; }       # pcbr-node-a: 11 chars, limit is 15
agent_port() { echo $((AGENT_BASE_PORT + $(node_index "$1"))); }
# Prometheus /metrics: the aggregator's on METRICS_BASE_PORT, node i's agent's on the next ones.
agent_metrics_port() { echo $((METRICS_BASE_PORT + 1 + $(node_index "$1"))); }
aggregator_metrics_port() { echo "$METRICS_BASE_PORT"; }

all_nodes() {
  local i
  for ((i = 0; i < NODES; i++)); do node_name "$i"; echo; done
}

validate_node() {
  [ "$REAL_NODE" = 1 ] && [ "$1" = "$REAL_NODE_NAME" ] && return
  [[ "$1" =~ ^node-[a-z]$ ]] && [ "$(node_index "$1")" -lt "$NODES" ] ||
    die "unknown node '$1' (this cluster has: $(all_nodes | tr '\n' ' ')$([ "$REAL_NODE" = 0 ] || echo "$REAL_NODE_NAME"))"
}

# Pod names are DNS-1123 subdomains: up to 253 chars, dots allowed (namespaces are labels).
is_dns_subdomain() {
  [ "${#1}" -le 253 ] && [[ "$1" =~ ^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$ ]]
}
validate_pod_name() {  # VALUE
  is_dns_subdomain "$1" ||
    die "invalid pod name '$1': must be a DNS-1123 subdomain (lowercase a-z, 0-9, '-', '.', at most 253 chars, alphanumeric around each dot and at both ends)"
}

# short_name MAX TEXT: TEXT itself when it has at most MAX chars; otherwise its start, '-'
# and 10 hex digits of its SHA-256, MAX chars in all (no '.' or '-' before the '-'), so
# names made from Kubernetes names fit NAME_MAX (255) and label values (63) and stay unique.
short_name() {
  local max=$1 text=$2 prefix
  if [ "${#text}" -le "$max" ]; then
    printf '%s' "$text"
    return
  fi
  prefix=${text:0:$((max - 11))}
  while [[ "$prefix" == *[.-] ]]; do prefix=${prefix%?}; done
  printf '%s-%s' "$prefix" "$(printf '%s' "$text" | sha256sum | cut -c1-10)"
}

# A pod's key in file and netns names: "<ns>.<name>", readable (a namespace has no dot, so
# the first dot ends it), shortened past 200 chars: a 63-char namespace and a 253-char pod
# name would not fit NAME_MAX.
pod_key() { short_name 200 "$1.$2"; }   # NS NAME
# The netns name keeps node, namespace and pod readable: at most 3+6+1+200 = 210 chars.
pod_netns() { printf 'pc-%s.%s' "$1" "$(pod_key "$2" "$3")"; }   # NODE NS NAME
pod_record() { printf '%s/pods/%s' "$STATE" "$(pod_key "$1" "$2")"; }

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
    --metrics_address="127.0.0.1:$(agent_metrics_port "$node")"
  )
  # A node's own agent config (README "Configuration"), if a test or a person wrote one;
  # the flags above override its keys. Read at the agent's start: restart-agent NODE.
  [ ! -f "$STATE/nodes/$node/agent.yaml" ] || AGENT_CMD+=(--config="$STATE/nodes/$node/agent.yaml")
  local aggregator_addr=
  if [ "$REAL_NODE" = 1 ]; then
    # The real node's aggregator (a Deployment), through its Service and kube-proxy.
    local service_ip
    service_ip=$(aggregator_service_ip)
    [ -z "$service_ip" ] || aggregator_addr="$service_ip:9090"
  elif [ "$OBJECT_STORE" = 1 ]; then
    # Every replica, running or not: the agent tries them in turn and follows redirects.
    aggregator_addr=$(replica_addresses)
  elif alive aggregator; then
    aggregator_addr="127.0.0.1:$AGGREGATOR_PORT"
  fi
  if [ -n "$aggregator_addr" ]; then
    # The agent authenticates to the aggregator with its ServiceAccount's token for the
    # aggregator's audience, bound to a Pod on its node (in Kubernetes: the DaemonSet pod's
    # projected token volume); the aggregator lets it report for that Pod's node only.
    local token_file="$STATE/nodes/$node/aggregator.token" pod_uid
    pod_uid=$(agent_pod_uid "$node") || die "could not create the stand-in Pod of $node's agent"
    if ! credential_fresh "$token_file" || [ "$(cat "$token_file.pod" 2>/dev/null)" != "$pod_uid" ]; then
      mkdir -p "$STATE/nodes/$node"
      kc create token capture-agent -n kube-system --audience packet-capture-aggregator \
        --bound-object-kind Pod --bound-object-name "$(agent_pod_name "$node")" \
        --bound-object-uid "$pod_uid" --duration 24h > "$token_file.new" ||
        die "could not mint the aggregator token of $node's agent"
      chmod 600 "$token_file.new"
      mv -f "$token_file.new" "$token_file"
      credential_made "$token_file"
      echo "$pod_uid" > "$token_file.pod"
    fi
    AGENT_CMD+=(--aggregator="$aggregator_addr" --aggregator_token_file="$token_file")
  fi
}

# A simulated node's agent is a host process, not a Pod; its aggregator token is bound to a
# stand-in Pod kube-system/capture-agent-<node> with spec.nodeName = the node (never
# started: no kubelet runs there), as a DaemonSet pod's token would be.
agent_pod_name() { printf 'capture-agent-%s' "$1"; }

# Creates NODE's stand-in agent Pod unless it exists; prints its uid.
agent_pod_uid() {  # NODE
  local node=$1 name uid
  name=$(agent_pod_name "$node")
  uid=$(kc get pod -n kube-system "$name" -o 'jsonpath={.metadata.uid}' 2>/dev/null)
  if [ -z "$uid" ]; then
    # Its own label: the agent DaemonSet (real node) must not adopt it.
    jq -n --arg node "$node" --arg name "$name" '{apiVersion: "v1", kind: "Pod",
        metadata: {name: $name, namespace: "kube-system",
                   labels: {"app.kubernetes.io/name": "capture-agent-stand-in"}},
        spec: {nodeName: $node, serviceAccountName: "capture-agent",
               automountServiceAccountToken: false, terminationGracePeriodSeconds: 0,
               containers: [{name: "agent", image: "packet-capture:latest"}]}}' |
      kc create -f - > /dev/null || return 1
    uid=$(kc get pod -n kube-system "$name" -o 'jsonpath={.metadata.uid}') || return 1
  fi
  [ -n "$uid" ] && echo "$uid"
}

# The command line of the aggregator. The one place to adjust aggregator flags.
aggregator_command() {
  AGGREGATOR_CMD=(
    "$STATE/bin/capture-aggregator"
    --listen="127.0.0.1:$AGGREGATOR_PORT"
    --data_dir="$STATE/aggregator"
    --kubeconfig="$STATE/aggregator.kubeconfig"
    --metrics_address="127.0.0.1:$(aggregator_metrics_port)"
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
  # 9>&-: the Bazel server this may start lives on (for hours) and must not hold the lock.
  (cd "$repo" && bazel build "//$pkg:$binary") >&2 9>&- || die "bazel build //$pkg:$binary failed"
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
  require_port_free "$(aggregator_metrics_port)" "capture-aggregator metrics" CLUSTER_METRICS_BASE_PORT
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
  require_port_free "$(agent_metrics_port "$node")" "capture-agent metrics on $node" CLUSTER_METRICS_BASE_PORT
  mkdir -p "$STATE/nodes/$node/captures"
  agent_command "$node"
  start_daemon "agent-$node" "$STATE/logs/agent-$node.log" "${AGENT_CMD[@]}"
  printf '%s\n' "${AGENT_CMD[@]}" > "$STATE/nodes/$node/agent.cmd"
  wait_until "agent-$node" "$STATE/logs/agent-$node.log" "$START_TIMEOUT" listening "$port"
  log "agent for $node listening on 127.0.0.1:$port"
}

# True when NODE's agent runs with the command line it would be started with now (it does
# not after a real node replaced the host aggregator, for instance).
agent_current() {  # NODE
  alive "agent-$1" || return 1
  agent_command "$1"
  [ "$(printf '%s\n' "${AGENT_CMD[@]}")" = "$(cat "$STATE/nodes/$1/agent.cmd" 2>/dev/null)" ]
}

ensure_daemons() {
  local node need_agents=0 need_aggregator=0
  for node in $(all_nodes); do
    if alive "agent-$node" && ! agent_current "$node"; then
      log "the agent of $node needs other flags now; restarting it"
      stop_daemon "agent-$node"
    fi
    alive "agent-$node" || need_agents=1
  done
  # With an object store: the store and its replicas (object_store.sh), not the single one.
  [ "$OBJECT_STORE" = 0 ] || ensure_object_store_daemons
  # With a real node the aggregator is its Deployment, not a host process.
  if [ "$WITH_AGGREGATOR" = 1 ] && [ "$REAL_NODE" = 0 ] && [ "$OBJECT_STORE" = 0 ] &&
    ! alive aggregator; then
    need_aggregator=1
  fi
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
# Pods: a network namespace on the node's bridge + a Pod object patched to Running
# ---------------------------------------------------------------------------------------

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

pod_manifest() {  # NODE NS NAME NETNS [LABELS_JSON]
  # A label value has at most 63 chars; a pod name up to 253.
  jq -n --arg node "$1" --arg ns "$2" --arg name "$3" --arg netns "$4" \
    --arg app "$(short_name 63 "$3")" --argjson extra "${5:-"{}"}" '{
    apiVersion: "v1", kind: "Pod",
    metadata: {name: $name, namespace: $ns, labels: ({app: $app} + $extra),
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

# --label KEY=VALUE arguments of 'pod add' as a JSON object (keys and values
# checked against Kubernetes' label syntax).
pod_labels_json() {
  local json='{}' kv key value
  while [ $# -gt 0 ]; do
    [ "$1" = --label ] && [ $# -ge 2 ] || die "usage: pod add NODE NAMESPACE NAME [--label KEY=VALUE]..."
    kv=$2
    shift 2
    key=${kv%%=*}
    value=${kv#*=}
    [ "$key" != "$kv" ] || die "--label $kv: expected KEY=VALUE"
    [[ "$key" =~ ^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$ ]] ||
      die "--label $kv: invalid label key"
    [[ "$value" =~ ^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$ ]] ||
      die "--label $kv: invalid label value"
    json=$(jq -c --arg k "$key" --arg v "$value" '. + {($k): $v}' <<< "$json")
  done
  printf '%s' "$json"
}

cmd_pod_add() {
  [ $# -ge 3 ] || die "usage: pod add NODE NAMESPACE NAME [--label KEY=VALUE]..."
  local node=$1 ns=$2 name=$3 labels
  shift 3
  labels=$(pod_labels_json "$@") || exit 2
  validate_label node "$node"
  validate_label namespace "$ns"
  validate_pod_name "$name"
  require_root
  take_lock
  require_up
  validate_node "$node"
  alive kube-apiserver || die "kube-apiserver is not running; run 'testing/cluster.sh up'"
  if [ "$node" = "$REAL_NODE_NAME" ]; then
    real_pod_add "$ns" "$name"
    if [ "$labels" != '{}' ]; then
      local pairs
      mapfile -t pairs < <(jq -r 'to_entries[] | "\(.key)=\(.value)"' <<< "$labels")
      kc label pod -n "$ns" "$name" --overwrite "${pairs[@]}" > /dev/null ||
        die "could not label Pod $ns/$name"
    fi
    return
  fi

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
  if ! pod_manifest "$node" "$ns" "$name" "$netns" "$labels" | kc create -f - > /dev/null; then
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

# Traffic runs are named traffic-<pod key>.<clock>: only an all-digit rest is this pod's
# (pod "web" must not stop the traffic of pod "web.1").
traffic_name() { printf 'traffic-%s.%s' "$(pod_key "$1" "$2")" "$3"; }   # NS NAME CLOCK
stop_traffic_of() {  # NS NAME
  local f run prefix
  prefix=$(traffic_name "$1" "$2" "")
  for f in "$STATE"/pids/"$prefix"*.pid; do
    [ -e "$f" ] || continue
    run=$(basename "$f" .pid)
    [[ "${run#"$prefix"}" =~ ^[0-9]+$ ]] && stop_daemon "$run"
  done
  return 0
}

cmd_pod_del() {
  [ $# -eq 2 ] || die "usage: pod del NAMESPACE NAME"
  local ns=$1 name=$2
  validate_label namespace "$ns"
  validate_pod_name "$name"
  require_root
  take_lock
  require_up
  stop_traffic_of "$ns" "$name"
  if [ -f "$(pod_record "$ns" "$name")" ]; then
    read_pod_record "$(pod_record "$ns" "$name")"
    if [ "$REC_NODE" = "$REAL_NODE_NAME" ]; then
      real_pod_del "$ns" "$name"
      return
    fi
  fi
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
  validate_label namespace "$1"
  validate_pod_name "$2"
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
  validate_pod_name "$name"
  [[ "$secs" =~ ^[0-9]+$ ]] && [ "$secs" -ge 1 ] && [ "$secs" -le 3600 ] ||
    die "SECONDS must be a whole number from 1 to 3600"
  require_root
  take_lock
  require_up
  local record
  record=$(pod_record "$ns" "$name")
  [ -f "$record" ] || die "no pod $ns/$name (create it with 'pod add')"
  local id
  id=$(traffic_name "$ns" "$name" "$(date +%s%N)")
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
  if [ "$REC_NODE" = "$REAL_NODE_NAME" ]; then
    real_traffic_run "$ns" "$name" "$secs"
    return
  fi
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

