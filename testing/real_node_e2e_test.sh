#!/usr/bin/env bash
# The seed's walkthrough, for real: a real kubelet + containerd node ("real-a", from
# `testing/cluster.sh up --real-node`) runs the image built from the repository's
# Dockerfile and k8s/with-aggregator; this test does what the README's Kubernetes
# walkthrough says, command for command (kubectl apply/annotate/describe/exec,
# port-forward + grpcurl, download, tcpdump -r), plus: a second pod in another namespace
# captured at the same time, a simulated node's agent streaming to the same aggregator,
# the agent pod deleted (the DaemonSet replaces it; nothing acknowledged is lost), and
# `down` then `up --real-node` again on the same machine.
# Writes the seed's verification artifacts (pods.txt, pod-describe.txt, capture-files.txt,
# capture.pcap, capture-output.txt) into $TEST_UNDECLARED_OUTPUTS_DIR. Needs root.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
E2E_SUITE=real_node_e2e
source "$here/e2e_lib.sh"

CLUSTER=${CLUSTER:-$here/cluster.sh}
export CLUSTER_STATE=${CLUSTER_STATE:-$(mktemp -d /tmp/pc-real-node-e2e.XXXXXX)}
out=${TEST_UNDECLARED_OUTPUTS_DIR:-$(mktemp -d /tmp/pc-real-node-e2e-out.XXXXXX)}
mkdir -p "$out"
k8s=$(cd "$here/../k8s" && pwd)
CAPTURECTL=$(readlink -f "${CAPTURECTL_BIN:-$here/../bazel-bin/cli/capturectl}")
trap '"$CLUSTER" down > "$out/down.log" 2>&1' EXIT

bring_up() {
  local t0=$SECONDS
  if ! "$CLUSTER" up --real-node --nodes 1; then
    fail "testing/cluster.sh up --real-node --nodes 1" "see $CLUSTER_STATE/logs"
    cp -r "$CLUSTER_STATE/logs" "$out/" 2>/dev/null
    e2e_finish
    exit 1
  fi
  pass "testing/cluster.sh up --real-node --nodes 1 ($((SECONDS - t0)) s)"
  eval "$("$CLUSTER" env)"
  export PATH="$CLUSTER_TOOLS:$PATH"
}

"$CLUSTER" down > /dev/null 2>&1
bring_up
e2e_log "REAL_NODES=$REAL_NODES AGGREGATOR=$AGGREGATOR AGENTS=$AGENTS"
check "env: REAL_NODES is real-a" test "$REAL_NODES" = real-a
real_agent=$(tr ' ' '\n' <<< "$AGENTS" | sed -n 's/^real-a=//p')
check "env: AGENTS has a port-forward to real-a's agent" test -n "$real_agent"

# --- the node and the manifests, as a user would look at them ---
check "node real-a is Ready (a real kubelet)" bash -c \
  "kubectl get node real-a -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}' | grep -qx True"
check "the node runs containerd" bash -c \
  "kubectl get node real-a -o jsonpath='{.status.nodeInfo.containerRuntimeVersion}' | grep -q '^containerd://'"
check "rollout status deploy/capture-aggregator" \
  kubectl -n kube-system rollout status deploy/capture-aggregator --timeout=120s
check "rollout status ds/capture-agent" kubectl -n kube-system rollout status ds/capture-agent --timeout=120s
check "the aggregator's claim is Bound" bash -c \
  "kubectl -n kube-system get pvc capture-aggregator-data -o jsonpath='{.status.phase}' | grep -qx Bound"
check "the agent pod runs the image built from the Dockerfile" bash -c \
  "kubectl -n kube-system get pods -l app.kubernetes.io/name=capture-agent \
     -o jsonpath='{.items[0].status.containerStatuses[0].image}' | grep -q packet-capture:latest"

# --- kubectl apply -f k8s/test-pod.yaml ... annotate ---
check "kubectl apply -f k8s/test-pod.yaml" kubectl apply -f "$k8s/test-pod.yaml"
check "kubectl wait --for=condition=Ready pod/traffic-test" \
  kubectl wait --for=condition=Ready pod/traffic-test --timeout=120s
check "the test pod resolves cluster names through CoreDNS" \
  kubectl exec traffic-test -- nslookup kubernetes.default.svc.cluster.local
check "kubectl annotate pod traffic-test tcpdump.antrea.io=5" \
  kubectl annotate pod traffic-test tcpdump.antrea.io="5"
# A second pod, another namespace, the harness's interface; captured at the same time.
ip2=$("$CLUSTER" pod add real-a other web-2)
check "pod add real-a other web-2 prints an IP of the node's range" \
  bash -c "[[ '$ip2' =~ ^198\.18\.128\.[0-9]+$ ]]"
kubectl annotate pod -n other web-2 tcpdump.antrea.io=2 > /dev/null
"$CLUSTER" traffic other web-2 30 2> /dev/null
# A simulated node's pod, captured by its host agent, streamed to the same aggregator.
"$CLUSTER" pod add node-a sim web-sim > /dev/null
kubectl annotate pod -n sim web-sim tcpdump.antrea.io=1 > /dev/null

described() { kubectl describe pod traffic-test > "$out/pod-describe.txt" && grep -q CaptureStarted "$out/pod-describe.txt"; }
check_eventually "kubectl describe pod traffic-test shows CaptureStarted" 20 described

node=$(kubectl get pod traffic-test -o jsonpath='{.spec.nodeName}')
agent_pod() {
  kubectl -n kube-system get pod -l app.kubernetes.io/name=capture-agent \
    --field-selector "spec.nodeName=$node,status.phase=Running" -o name | head -1
}
agent=$(agent_pod)
check "the test pod is on real-a" test "$node" = real-a
# ring files in the agent pod: names end in a digit, sizes past the 24-byte pcap header.
ring_files() { kubectl -n kube-system exec "$(agent_pod)" -- ls -lR /captures; }
nonempty_ring() {
  ring_files > "$out/capture-files.txt" 2>&1 &&
    awk '$NF ~ /[0-9]$/ && $5 > 24 {n++} END {exit !(n > 0)}' "$out/capture-files.txt"
}
check_eventually "kubectl exec \$agent -- ls -lR /captures shows non-empty ring files" 30 nonempty_ring

# --- port-forward + grpcurl, as the README says ---
agg=$AGGREGATOR
check "grpcurl list through the port-forward shows CaptureService" bash -c \
  "grpcurl -plaintext $agg list | grep -qx packetcapture.v1.CaptureService"
capture() {  # NS POD FIELD
  grpc "$agg" ListCaptures "{\"namespace\":\"$1\",\"pod\":\"$2\"}" 2>/dev/null |
    jq -r ".captures[0].$3 // empty"
}
check_eventually "ListCaptures: traffic-test RUNNING on real-a" 30 \
  bash -c "$(declare -f capture grpc); agg=$agg; [ \"\$(capture default traffic-test state)\" = RUNNING ] &&
           [ \"\$(capture default traffic-test node)\" = real-a ]"
check_eventually "ListCaptures: other/web-2 RUNNING at the same time" 30 \
  bash -c "$(declare -f capture grpc); agg=$agg; [ \"\$(capture other web-2 state)\" = RUNNING ]"
check_eventually "ListCaptures: the simulated node's pod, through the same aggregator" 30 \
  bash -c "$(declare -f capture grpc); agg=$agg; [ \"\$(capture sim web-sim node)\" = node-a ]"
id=$(capture default traffic-test id)
check "the real node's agent serves the capture too (port-forward to the agent)" bash -c \
  "grpcurl -plaintext -d '{\"pod\":\"traffic-test\"}' $real_agent packetcapture.v1.CaptureService/ListCaptures | grep -q '$id'"

# DNS queries to the kube-dns Service and CoreDNS's answers, and pings the node answers.
has_dns_and_ping() {
  download "$agg" "$id" "$out/capture.pcap" &&
    tcpdump -r "$out/capture.pcap" -n > "$out/capture-output.txt" 2>/dev/null &&
    grep -q "> 198.19.0.10.53: .* A? kubernetes.default.svc.cluster.local" "$out/capture-output.txt" &&
    grep -q "198.19.0.10.53 > .* A 198.19.0.1" "$out/capture-output.txt" &&
    grep -q "198.18.128.1 > .* ICMP echo reply" "$out/capture-output.txt"
}
check_eventually "downloaded pcap (tcpdump -r) holds DNS queries, CoreDNS's answers, echo replies" 30 \
  has_dns_and_ping
# Until a packet arrived (or 30 s), not for a fixed 4 s.
follow_capture() {
  grpcurl -plaintext -max-time 40 -d "{\"id\":\"$id\",\"follow\":true}" "$agg" \
    packetcapture.v1.CaptureService/DownloadCapture | jq --unbuffered -r .data |
    while read -r c; do printf %s "$c" | base64 -d; done
}
# Output first, then the test: `tcpdump | grep -q` fails under pipefail when grep exits early.
followed_a_packet() { [ -n "$(tcpdump -r "$out/follow.pcap" -n -c 1 2>/dev/null)" ]; }
check "follow streams live packets" stream_until 30 "$out/follow.pcap" follow_capture followed_a_packet
check "capturectl download through the port-forward" bash -c \
  "'$CAPTURECTL' --server $agg download '$id' -o '$out/capturectl.pcap' && tcpdump -r '$out/capturectl.pcap' -n 2>/dev/null | grep -q ."

# --- the agent pod deleted: the DaemonSet recreates it, nothing acknowledged is lost ---
# What the aggregator holds before the restart has been acknowledged to the agent.
download "$agg" "$id" "$out/before-restart.pcap"
tcpdump -r "$out/before-restart.pcap" -n -tt 2> /dev/null > "$out/before-restart.txt"
acked=$(wc -l < "$out/before-restart.txt")
old_agent=$agent
kubectl -n kube-system delete "$old_agent" --wait=true --timeout=60s > /dev/null
new_agent_ready() { a=$(agent_pod); [ -n "$a" ] && [ "$a" != "$old_agent" ] &&
  kubectl -n kube-system wait "$a" --for=condition=Ready --timeout=5s > /dev/null 2>&1; }
check_eventually "the DaemonSet replaces the deleted agent pod" 90 new_agent_ready
# The new agent pod has a new captures emptyDir: it starts the capture afresh, as a new
# capture of the same pod, while the aggregator keeps the old one, STOPPED, with every
# packet it held before (in order, and possibly a few more acknowledged just before).
old_capture_kept() {
  download "$agg" "$id" "$out/after-restart.pcap" &&
    tcpdump -r "$out/after-restart.pcap" -n -tt 2> /dev/null > "$out/after-restart.txt" &&
    head -n "$acked" "$out/after-restart.txt" | cmp -s - "$out/before-restart.txt" &&
    grpc "$agg" GetCapture "{\"id\":\"$id\"}" 2> /dev/null | jq -e '.state == "STOPPED"' > /dev/null
}
new_capture_running() {
  grpc "$agg" ListCaptures '{"namespace":"default","pod":"traffic-test","state":"RUNNING"}' 2> /dev/null |
    jq -e --arg old "$id" '[.captures[] | select(.id != $old and .node == "real-a" and
                                               (.packets | tonumber) > 0)] | length == 1' > /dev/null
}
check "before the agent restart the aggregator held packets ($acked)" test "$acked" -gt 0
check_eventually "after the agent restart the old capture is STOPPED with all $acked packets held before" 60 \
  old_capture_kept
check_eventually "the new agent captures the pod again, uploading to the aggregator" 60 new_capture_running
id=$(grpc "$agg" ListCaptures '{"namespace":"default","pod":"traffic-test","state":"RUNNING"}' |
  jq -r '.captures[0].id')

# --- annotation removed: the node's files go, the aggregator keeps a copy ---
check "kubectl annotate pod traffic-test tcpdump.antrea.io-" kubectl annotate pod traffic-test tcpdump.antrea.io-
files_gone() { ! ring_files 2>/dev/null | grep -q 'traffic-test'; }
check_eventually "the ring files are deleted inside the agent pod" 20 files_gone
check_eventually "ListCaptures: traffic-test STOPPED" 20 \
  bash -c "$(declare -f capture grpc); agg=$agg; [ \"\$(capture default traffic-test state)\" = STOPPED ]"
stopped_download() {
  download "$agg" "$id" "$out/stopped.pcap" && tcpdump -r "$out/stopped.pcap" -n 2>/dev/null | grep -q .
}
check "the stopped capture is still downloadable from the aggregator" stopped_download
kubectl get pods -A -o wide > "$out/pods.txt"
check "pod del other web-2 deletes the real pod" "$CLUSTER" pod del other web-2
check "web-2 is gone from the API" bash -c "! kubectl get pod -n other web-2 2> /dev/null"

# --- down, then up --real-node again on the same machine ---
t0=$SECONDS
if "$CLUSTER" down > "$out/down-1.log" 2>&1; then
  pass "down removes everything the real node made ($((SECONDS - t0)) s)"
else
  fail "down removes everything the real node made" "$(tail -3 "$out/down-1.log")"
fi
# In this shell: a `bash -c` running pgrep would carry the pattern and match itself.
no_state_processes() { ! pgrep -f "$CLUSTER_STATE/" > /dev/null; }
check "no process of the state dir is left" no_state_processes
check "no cgroup of the real node is left" bash -c "! ls -d /sys/fs/cgroup/*/packet-capture-real-a 2>/dev/null"
bring_up
check "after down + up the node is Ready and the aggregator answers" bash -c \
  "kubectl get node real-a | grep -qw Ready && grpcurl -plaintext $AGGREGATOR list | grep -q CaptureService"
ip3=$("$CLUSTER" pod add real-a again web-3)
check "after down + up a real pod gets an IP" bash -c "[[ '$ip3' =~ ^198\.18\.128\. ]]"
e2e_finish
