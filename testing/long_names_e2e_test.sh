#!/usr/bin/env bash
# End-to-end check of the longest names Kubernetes allows, on the local cluster with the
# aggregator: a pod with a 221-character name (dots included) in a 63-character namespace is
# made by the harness, captured by its node's agent and uploaded to the aggregator, while
# another pod of the same node keeps uploading. (Seen before: the capture id of such a pod
# did not fit a directory name; the agent could not capture it, and the aggregator's
# rejection of its status stopped every upload of the node.) Needs root.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
E2E_SUITE=long_names_e2e
source "$here/e2e_lib.sh"

CLUSTER=${CLUSTER:-$here/cluster.sh}
export CLUSTER_STATE=${CLUSTER_STATE:-$(mktemp -d /tmp/pc-long-names-e2e.XXXXXX)}
work=$(mktemp -d /tmp/pc-long-names-e2e-work.XXXXXX)
trap '"$CLUSTER" down >/dev/null 2>&1; rm -rf "$work"' EXIT

"$CLUSTER" down >/dev/null 2>&1
if ! "$CLUSTER" up --nodes 1; then
  fail "cluster comes up" "see $CLUSTER_STATE/logs"
  e2e_finish
  exit 1
fi
eval "$("$CLUSTER" env)"
export PATH="$CLUSTER_TOOLS:$PATH"
agent=$(tr ' ' '\n' <<< "$AGENTS" | sed -n 's/^node-a=//p')
agg=$AGGREGATOR
caps=$CLUSTER_STATE/nodes/node-a/captures
CAPTURECTL=$(readlink -f "${CAPTURECTL_BIN:-$here/../bazel-bin/cli/capturectl}")

repeat() { printf "%$2s" "" | tr ' ' "$1"; }  # CHAR COUNT
# A namespace is a DNS label (at most 63 chars), a pod name a DNS subdomain (at most 253).
ns=long-namespace-$(repeat n 48)
long=$(repeat a 63).$(repeat b 63).$(repeat c 63).web-$(repeat d 25)
e2e_log "namespace (${#ns} chars) $ns"
e2e_log "pod (${#long} chars) $long"

# ns_field ADDR NS POD FIELD: a field of the pod's capture in ListCaptures.
ns_field() {
  grpc "$1" ListCaptures "{\"namespace\":\"$2\",\"pod\":\"$3\"}" 2>/dev/null |
    jq -r ".captures[0].$4 // empty"
}
running_on_agent() { [ "$(ns_field "$agent" "$1" "$2" state)" = RUNNING ]; }
uploaded_more_than() {  # NS POD BYTES: the aggregator holds more than BYTES of it
  local got
  got=$(ns_field "$agg" "$1" "$2" bytes_uploaded)
  [ "${got:-0}" -gt "$3" ]
}

# --- the harness takes the names ---
ip_long=$("$CLUSTER" pod add node-a "$ns" "$long") || ip_long=
check "pod add takes a ${#long}-char pod name in a ${#ns}-char namespace (IP '$ip_long')" \
  test -n "$ip_long"
check "the pod is Running in the API with that IP" \
  test "$(kubectl get pod -n "$ns" "$long" -o 'jsonpath={.status.podIP}' 2>/dev/null)" = "$ip_long"
ip_web=$("$CLUSTER" pod add node-a other web-1)
ip_client=$("$CLUSTER" pod add node-a other client-1)
e2e_log "pods: long=$ip_long web-1=$ip_web client-1=$ip_client"

# --- another pod of the node is uploading; then the long-named pod is captured too ---
kubectl annotate pod -n other web-1 tcpdump.antrea.io=2 >/dev/null
"$CLUSTER" traffic other client-1 90 >/dev/null  # pings web-1 and the long-named pod
check_eventually "web-1's capture reaches the aggregator" 30 uploaded_more_than other web-1 0
kubectl annotate pod -n "$ns" "$long" tcpdump.antrea.io=2 >/dev/null
check_eventually "the long-named pod's capture is RUNNING on its node" 15 running_on_agent "$ns" "$long"
id=$(ns_field "$agent" "$ns" "$long" id)
e2e_log "capture id (${#id} bytes) $id"
check "its id is at most 200 bytes and starts with the namespace and the pod name" \
  bash -c "[ ${#id} -le 200 ] && [[ '$id' == '${ns}_${long:0:100}'* ]]"
check "the agent keeps its files in a directory of that name" test -d "$caps/$id"
check_eventually "the aggregator lists it with bytes_uploaded > 0" 30 uploaded_more_than "$ns" "$long" 0
pings_in_download() {
  download "$agg" "$id" "$work/long.pcap" &&
    tcpdump -r "$work/long.pcap" -n 2>/dev/null > "$work/long.txt" &&
    grep -q "IP $ip_client > $ip_long: ICMP echo request" "$work/long.txt"
}
check_eventually "the aggregator's download holds the pings to the long-named pod" 20 pings_in_download
web_bytes=$(ns_field "$agg" other web-1 bytes_uploaded)
check_eventually "web-1 keeps uploading ($web_bytes bytes so far)" 20 \
  uploaded_more_than other web-1 "${web_bytes:-0}"
check "capturectl download names the file after the id" bash -c \
  "cd '$work' && '$CAPTURECTL' --server $agg download '$id' && tcpdump -r '$id.pcap' -n -c 1 >/dev/null 2>&1"
check_eventually "CaptureStarted Event on the long-named pod" 10 bash -c \
  "kubectl get events -n $ns --field-selector involvedObject.name=$long,reason=CaptureStarted -o name | grep -q ."

# --- pod del: the pod, its network namespace and the node's files go ---
netns=$("$CLUSTER" pod netns "$ns" "$long")
check "pod del of the long-named pod" "$CLUSTER" pod del "$ns" "$long"
check "its network namespace $netns is gone" test ! -e "/run/netns/$netns"
check_eventually "the node deleted its capture files" 10 test ! -e "$caps/$id"
check_eventually "the aggregator keeps it STOPPED" 15 \
  bash -c "[ \"\$(grpcurl -plaintext -d '{\"id\":\"$id\"}' $agg packetcapture.v1.CaptureService/GetCapture | jq -r .state)\" = STOPPED ]"

e2e_finish
