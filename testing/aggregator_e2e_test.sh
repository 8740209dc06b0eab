#!/usr/bin/env bash
# End-to-end test of capture-aggregator on the local cluster: three simulated
# nodes with their agents streaming to the aggregator over IngestService, real
# kube-apiserver (TokenReview), real tcpdump, grpcurl against the aggregator's
# CaptureService. Needs root.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
E2E_SUITE=aggregator_e2e
source "$here/e2e_lib.sh"

CLUSTER=${CLUSTER:-$here/cluster.sh}
export CLUSTER_STATE=${CLUSTER_STATE:-$(mktemp -d /tmp/pc-aggregator-e2e.XXXXXX)}
work=$(mktemp -d /tmp/pc-aggregator-e2e-work.XXXXXX)
trap '"$CLUSTER" down >/dev/null 2>&1; rm -rf "$work"' EXIT

"$CLUSTER" down >/dev/null 2>&1
if ! "$CLUSTER" up --nodes 3; then
  fail "cluster comes up" "see $CLUSTER_STATE/logs"
  e2e_finish
  exit 1
fi
eval "$("$CLUSTER" env)"
export PATH="$CLUSTER_TOOLS:$PATH"
agent_a=$(tr ' ' '\n' <<< "$AGENTS" | sed -n 's/^node-a=//p')
agent_b=$(tr ' ' '\n' <<< "$AGENTS" | sed -n 's/^node-b=//p')
agg=$AGGREGATOR
agg_data=$CLUSTER_STATE/aggregator
CAPTURECTL=$(readlink -f "${CAPTURECTL_BIN:-$here/../bazel-bin/cli/capturectl}")
e2e_log "aggregator=$agg agents: $AGENTS"

check_eventually "aggregator serves gRPC health" 20 \
  grpcurl -plaintext -max-time 2 "$agg" grpc.health.v1.Health/Check
check "aggregator lists CaptureService and IngestService by reflection" bash -c \
  "grpcurl -plaintext $agg list | grep -qx packetcapture.v1.CaptureService &&
   grpcurl -plaintext $agg list | grep -qx packetcapture.v1.IngestService"

ns=agg
ip_a=$("$CLUSTER" pod add node-a $ns web-a)
ip_b=$("$CLUSTER" pod add node-b $ns web-b)
ip_c=$("$CLUSTER" pod add node-c $ns client-c)
e2e_log "pods: web-a=$ip_a web-b=$ip_b client-c=$ip_c"

# same_pcap POD ID ADDR: the aggregator's download equals the agent's.
# The two downloads are not one snapshot: a late packet (an ARP refresh) can
# land between them, so callers retry for a few seconds; a real divergence
# stays and is printed.
same_packets() {
  download "$agent_of" "$2" "$work/$1.node.pcap"
  download "$agg" "$2" "$work/$1.agg.pcap"
  packets "$work/$1.node.pcap" > "$work/$1.node.txt"
  packets "$work/$1.agg.pcap" > "$work/$1.agg.txt"
  [ -s "$work/$1.node.txt" ] && cmp -s "$work/$1.node.txt" "$work/$1.agg.txt" && return 0
  e2e_log "$1: node $(wc -l < "$work/$1.node.txt") packets, aggregator $(wc -l < "$work/$1.agg.txt"); first difference:"
  diff "$work/$1.node.txt" "$work/$1.agg.txt" | head -4 >&2
  return 1
}
no_duplicates() { [ -z "$(sort "$1" | uniq -d)" ]; }

# --- captures on two nodes at once, listed by the aggregator ---
kubectl annotate pod -n $ns web-a tcpdump.antrea.io=3 >/dev/null
kubectl annotate pod -n $ns web-b tcpdump.antrea.io=3 >/dev/null
"$CLUSTER" traffic $ns client-c 8 >/dev/null
check_eventually "aggregator lists web-a's capture on node-a" 15 \
  bash -c "[ \"\$(grpcurl -plaintext -d '{\"pod\":\"web-a\"}' $agg packetcapture.v1.CaptureService/ListCaptures | jq -r '.captures[0].node')\" = node-a ]"
check_eventually "aggregator lists web-b's capture on node-b" 15 \
  bash -c "[ \"\$(grpcurl -plaintext -d '{\"pod\":\"web-b\"}' $agg packetcapture.v1.CaptureService/ListCaptures | jq -r '.captures[0].node')\" = node-b ]"
check "the README's ListCaptures one-liner shows both nodes" bash -c \
  "grpcurl -plaintext -d '{\"namespace\":\"$ns\"}' $agg packetcapture.v1.CaptureService/ListCaptures |
   jq -e '[.captures[].node] | sort == [\"node-a\",\"node-b\"]' >/dev/null"
id_a=$(field "$agg" web-a id)
id_b=$(field "$agg" web-b id)
e2e_log "captures: $id_a $id_b"
sleep 10  # traffic ends; tcpdump flushes within ~1 s

# --- the README's grpcurl download equals the node's files ---
agent_of=$agent_a
check_eventually "aggregator caught up with node-a" 20 caught_up web-a "$agent_of"
check_eventually "download from the aggregator has the same packets as node-a's files" 10 same_packets web-a "$id_a"
check "the downloaded pcap holds pings from client-c to web-a" \
  grep -q "IP $ip_c > $ip_a: ICMP echo request" "$work/web-a.agg.txt"
agent_of=$agent_b
check_eventually "aggregator caught up with node-b" 20 caught_up web-b "$agent_of"
check_eventually "download from the aggregator has the same packets as node-b's files" 10 same_packets web-b "$id_b"

# --- aggregator SIGKILLed while agents stream, then restarted ---
"$CLUSTER" traffic $ns client-c 12 >/dev/null
sleep 4
kill -KILL "$(cat "$CLUSTER_STATE/pids/aggregator.pid")"
sleep 0.5
cp -a "$agg_data" "$work/agg-before"
e2e_log "aggregator killed; $(find "$work/agg-before" -name '*.pcap' | wc -l) stored files"
"$CLUSTER" restart-aggregator >/dev/null 2>&1
check_eventually "restarted aggregator serves health" 20 \
  grpcurl -plaintext -max-time 2 "$agg" grpc.health.v1.Health/Check
# Every byte stored before the kill (a superset of what was acknowledged) is
# still there, unchanged, except an unacknowledged tail cut at recovery.
prefix_kept() {
  local f new size newsize
  for f in $(cd "$work/agg-before" && find . -name '*.pcap'); do
    new=$agg_data/$f
    [ -f "$new" ] || { e2e_log "missing after restart: $f"; return 1; }
    size=$(stat -c %s "$work/agg-before/$f")
    newsize=$(stat -c %s "$new")
    [ "$newsize" -lt "$size" ] && size=$newsize
    [ "$(head -c "$size" "$work/agg-before/$f" | sha256sum)" = "$(head -c "$size" "$new" | sha256sum)" ] ||
      { e2e_log "content changed: $f"; return 1; }
  done
}
sleep 12
agent_of=$agent_a
check_eventually "streaming resumed: aggregator caught up with node-a after the kill" 30 caught_up web-a "$agent_of"
check "stored bytes before the kill are unchanged after it (sha256)" prefix_kept
check_eventually "after the kill, the aggregator's pcap equals node-a's" 10 same_packets web-a "$id_a"
check "no duplicate packets after the aggregator restart" no_duplicates "$work/web-a.agg.txt"
agent_of=$agent_b
check_eventually "aggregator caught up with node-b after the kill" 30 caught_up web-b "$agent_of"
check_eventually "after the kill, the aggregator's pcap equals node-b's" 10 same_packets web-b "$id_b"

# --- agent restarted: resumes without duplicates ---
"$CLUSTER" restart-agent node-a --kill >/dev/null 2>&1
"$CLUSTER" traffic $ns client-c 5 >/dev/null
sleep 8
agent_of=$agent_a
check_eventually "aggregator caught up with node-a after the agent restart" 30 caught_up web-a "$agent_of"
check_eventually "after the agent restart, the aggregator's pcap equals node-a's" 10 same_packets web-a "$id_a"
check "no duplicate packets after the agent restart" no_duplicates "$work/web-a.agg.txt"
check "the capture reports bytes uploaded" \
  test "$(field "$agg" web-a bytes_uploaded)" -gt 0

# --- the README's other aggregator one-liners ---
check "the README's node filter lists only node-b's capture" bash -c \
  "grpcurl -plaintext -d '{\"node\":\"node-b\"}' $agg packetcapture.v1.CaptureService/ListCaptures |
   jq -e '[.captures[].pod] == [\"web-b\"]' >/dev/null"
check "the README's WatchCaptures one-liner streams node-b's capture" bash -c \
  "grpcurl -plaintext -max-time 3 -d '{\"node\":\"node-b\"}' $agg packetcapture.v1.CaptureService/WatchCaptures |
   jq -s -e 'any(.[]; .type == \"ADDED\" and .capture.pod == \"web-b\") and all(.[]; (.capture.node // \"node-b\") == \"node-b\")' >/dev/null"
# follows_live NAME SOURCE: SOURCE (a command that follows web-a's capture as
# a pcap stream) piped into `tcpdump -r -` shows pings sent after it started.
follows_live() {
  local name=$1 source=$2 out=$work/$2.txt start pid
  start=$(date +%s)
  "$source" | tcpdump -r - -n -l -tt > "$out" 2>/dev/null &
  pid=$!
  sleep 1
  "$CLUSTER" traffic $ns client-c 5 >/dev/null
  wait "$pid"
  check "$name" bash -c "grep 'IP $ip_c > $ip_a: ICMP echo request' '$out' |
    awk -v t=$start '\$1 > t { n++ } END { exit !(n >= 3) }'"
}
grpcurl_follow() {  # the README's one-liner
  grpcurl -plaintext -max-time 12 -d "{\"id\":\"$id_a\",\"follow\":true}" "$agg" \
    packetcapture.v1.CaptureService/DownloadCapture 2>/dev/null |
    jq -r .data | while read -r chunk; do printf %s "$chunk" | base64 -d; done
}
follows_live "the README's follow one-liner streams new packets from the aggregator" grpcurl_follow

# --- capturectl, the README's client ---
capturectl() { "$CAPTURECTL" --server "$agg" "$@"; }
check "capturectl list shows both captures with their nodes" bash -c \
  "$(declare -f capturectl); CAPTURECTL=$CAPTURECTL agg=$agg; capturectl list --namespace $ns > '$work/list.txt' &&
   grep -E '^$id_a +node-a +$ns/web-a +RUNNING ' '$work/list.txt' &&
   grep -E '^$id_b +node-b +$ns/web-b +RUNNING ' '$work/list.txt'"
check "capturectl get prints the capture as JSON" bash -c \
  "$(declare -f capturectl); CAPTURECTL=$CAPTURECTL agg=$agg; capturectl get $id_b | jq -e '.node == \"node-b\" and .pod == \"web-b\"'"
check_eventually "capturectl download gives the node's packets" 10 bash -c \
  "$(declare -f capturectl packets); CAPTURECTL=$CAPTURECTL agg=$agg; cd '$work' && rm -f $id_b.pcap &&
   capturectl download $id_b && packets $id_b.pcap > ctl.txt &&
   $(declare -f download); download $agent_b $id_b node-b.pcap && packets node-b.pcap | cmp -s - ctl.txt"
check "capturectl download of an unknown id fails with NOT_FOUND and leaves no file" bash -c \
  "$(declare -f capturectl); CAPTURECTL=$CAPTURECTL agg=$agg; cd '$work' && mkdir nf && cd nf &&
   ! capturectl download nope -o nope.pcap 2> err.txt && grep -q NOT_FOUND err.txt && [ \"\$(ls)\" = err.txt ]"
ctl_follow() { timeout -s INT 10 "$CAPTURECTL" --server "$agg" follow "$id_a"; }
follows_live "capturectl follow | tcpdump -r - shows new packets live" ctl_follow
check "capturectl watch prints node-b's capture" bash -c \
  "timeout 3 $CAPTURECTL --server $agg watch --node node-b | grep -E 'ADDED $id_b node-b $ns/web-b RUNNING'"

# --- a client with no or a wrong token is rejected ---
report() {  # JSON -> grpcurl output (the Report stream with one hello)
  grpcurl -plaintext -max-time 10 -d "$1" "$agg" packetcapture.v1.IngestService/Report 2>&1
}
check "Report without a token is UNAUTHENTICATED" bash -c \
  "$(declare -f report); agg=$agg; report '{\"hello\":{\"node\":\"node-a\"}}' | grep -q 'Code: Unauthenticated'"
check "Report with a garbage token is UNAUTHENTICATED" bash -c \
  "$(declare -f report); agg=$agg; report '{\"hello\":{\"node\":\"node-a\",\"token\":\"not-a-token\"}}' | grep -q 'Code: Unauthenticated'"
wrong_aud=$(kubectl create token capture-agent -n kube-system --duration 10m)
check "Report with the agent's token for another audience is UNAUTHENTICATED" bash -c \
  "$(declare -f report); agg=$agg; report '{\"hello\":{\"node\":\"node-a\",\"token\":\"$wrong_aud\"}}' | grep -q 'Code: Unauthenticated'"
other_sa=$(kubectl create token capture-aggregator -n kube-system --audience packet-capture-aggregator --duration 10m)
check "Report with another ServiceAccount's token is PERMISSION_DENIED" bash -c \
  "$(declare -f report); agg=$agg; report '{\"hello\":{\"node\":\"node-a\",\"token\":\"$other_sa\"}}' | grep -q 'Code: PermissionDenied'"
# Each simulated node's agent has a token bound to a Pod on that node (the harness's
# stand-in kube-system/capture-agent-<node>); it may report for that node only.
good=$(cat "$CLUSTER_STATE/nodes/node-c/aggregator.token")
check "Report with node-c's agent token is welcomed as node-c" bash -c \
  "$(declare -f report); agg=$agg; report '{\"hello\":{\"node\":\"node-c\",\"token\":\"$good\"}}' | grep -q 'welcome'"
check "Report as node-a with node-c's agent token is PERMISSION_DENIED" bash -c \
  "$(declare -f report); agg=$agg; report '{\"hello\":{\"node\":\"node-a\",\"token\":\"$good\"}}' | grep -q 'Code: PermissionDenied'"
unbound=$(kubectl create token capture-agent -n kube-system --audience packet-capture-aggregator --duration 10m)
check "Report with an agent token bound to no Pod is PERMISSION_DENIED, saying how to bind one" bash -c \
  "$(declare -f report); agg=$agg; report '{\"hello\":{\"node\":\"node-a\",\"token\":\"$unbound\"}}' > '$work/unbound.txt';
   grep -q 'Code: PermissionDenied' '$work/unbound.txt' && grep -q 'bound-object-kind Pod' '$work/unbound.txt'"

# --- pcap data only for loopback peers; agents may come from anywhere ---
# A second aggregator listens on a veth address; callers in a network
# namespace of our own reach it from another address, as a pod would.
far_host=198.18.255.1 far_peer=198.18.255.2
far=$far_host:19099
ip netns add pc-e2e-far &&
  ip link add pc-e2e-far type veth peer name eth0 netns pc-e2e-far &&
  ip addr add "$far_host/30" dev pc-e2e-far && ip link set pc-e2e-far up &&
  ip -n pc-e2e-far addr add "$far_peer/30" dev eth0 &&
  ip -n pc-e2e-far link set eth0 up && ip -n pc-e2e-far link set lo up
trap '"$CLUSTER" down >/dev/null 2>&1; ip netns del pc-e2e-far 2>/dev/null; rm -rf "$work"' EXIT
"$CLUSTER_STATE/bin/capture-aggregator" --listen="$far" --data_dir="$work/far-data" \
  --kubeconfig="$CLUSTER_STATE/aggregator.kubeconfig" > "$work/far.log" 2>&1 &
far_pid=$!
far_grpcurl() { ip netns exec pc-e2e-far grpcurl -plaintext -max-time 10 "$@" 2>&1; }
check_eventually "a second aggregator on $far answers health from $far_peer" 20 \
  far_grpcurl "$far" grpc.health.v1.Health/Check
check "ListCaptures from a non-loopback peer without a token is UNAUTHENTICATED" bash -c \
  "$(declare -f far_grpcurl); far_grpcurl -d '{}' $far packetcapture.v1.CaptureService/ListCaptures | grep -q 'Code: Unauthenticated'"
check "DownloadCapture from a non-loopback peer without a token is UNAUTHENTICATED" bash -c \
  "$(declare -f far_grpcurl); far_grpcurl -d '{\"id\":\"$id_a\"}' $far packetcapture.v1.CaptureService/DownloadCapture | grep -q 'Code: Unauthenticated'"
check "Report with the agent's token from a non-loopback peer is welcomed" bash -c \
  "$(declare -f far_grpcurl); far_grpcurl -d '{\"hello\":{\"node\":\"node-c\",\"token\":\"$good\"}}' $far packetcapture.v1.IngestService/Report | grep -q welcome"
check "capturectl from a non-loopback peer without a token fails with UNAUTHENTICATED" bash -c \
  "ip netns exec pc-e2e-far $CAPTURECTL --server $far list 2>&1 >/dev/null | grep -q UNAUTHENTICATED"
kill "$far_pid"; wait "$far_pid" 2>/dev/null
[ "$E2E_FAILED" -eq 0 ] || { e2e_log "second aggregator's log:"; tail -5 "$work/far.log" >&2; }
ip netns del pc-e2e-far

# --- annotation removed: node files gone, the aggregator keeps the capture ---
# Traffic still flows when the annotation goes: the agent uploads tcpdump's
# last packets from the deleted files (the uplink's drain).
"$CLUSTER" traffic $ns client-c 6 >/dev/null
sleep 3
download "$agg" "$id_a" "$work/final.agg.pcap"
packets "$work/final.agg.pcap" > "$work/final.agg.txt"
kubectl annotate pod -n $ns web-a tcpdump.antrea.io- >/dev/null
node_last=$(grep -c . "$work/final.agg.txt")
check_eventually "node-a's files are gone" 10 bash -c "[ ! -e '$CLUSTER_STATE/nodes/node-a/captures/$id_a' ]"
check_eventually "aggregator shows web-a STOPPED, no longer on the node, with an expiry" 15 bash -c \
  "grpcurl -plaintext -d '{\"id\":\"$id_a\"}' $agg packetcapture.v1.CaptureService/GetCapture |
   jq -e '.state == \"STOPPED\" and (.on_node // false) == false and .expire_time != null' >/dev/null"
download "$agg" "$id_a" "$work/after.agg.pcap"
packets "$work/after.agg.pcap" > "$work/after.agg.txt"
check "capturectl list marks the stopped capture as kept by the aggregator only" bash -c \
  "$CAPTURECTL --server $agg list --pod web-a | grep -E '^$id_a +node-a +$ns/web-a +STOPPED\\* '"
check "the stopped capture is still downloadable, with every packet it had before" \
  bash -c "[ -s '$work/after.agg.txt' ] && head -n $node_last '$work/after.agg.txt' | cmp -s '$work/final.agg.txt' -"
check "the agent uploaded the stopped capture's last bytes from its deleted files" \
  grep -qE "event=uplink_drained capture=\"?$id_a\"? complete=\"?true" "$CLUSTER_STATE/logs/agent-node-a.log"
check "nothing was lost at the stop: bytes_lost is 0" bash -c \
  "grpcurl -plaintext -d '{\"id\":\"$id_a\"}' $agg packetcapture.v1.CaptureService/GetCapture |
   jq -e '(.bytes_lost // \"0\") == \"0\"' >/dev/null"
check "tcpdump reads the downloaded pcap" tcpdump -r "$work/after.agg.pcap" -c 1 -n
check "GetCapture of an unknown id is NOT_FOUND" bash -c \
  "grpcurl -plaintext -d '{\"id\":\"nope\"}' $agg packetcapture.v1.CaptureService/GetCapture 2>&1 | grep -q 'Code: NotFound'"

e2e_finish
