#!/usr/bin/env bash
# End-to-end test of capture-agent on the local cluster: a real etcd and
# kube-apiserver, real tcpdump, network-namespace pods on two simulated nodes,
# and grpcurl against the agents' CaptureService. Needs root.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
E2E_SUITE=agent_e2e
source "$here/e2e_lib.sh"

CLUSTER=${CLUSTER:-$here/cluster.sh}
export CLUSTER_STATE=${CLUSTER_STATE:-$(mktemp -d /tmp/pc-agent-e2e.XXXXXX)}
work=$(mktemp -d /tmp/pc-agent-e2e-work.XXXXXX)
trap '"$CLUSTER" down >/dev/null 2>&1; rm -rf "$work"' EXIT

"$CLUSTER" down >/dev/null 2>&1
if ! "$CLUSTER" up --nodes 2 --no-aggregator; then
  fail "cluster comes up" "see $CLUSTER_STATE/logs"
  e2e_finish
  exit 1
fi
eval "$("$CLUSTER" env)"
# kubectl and grpcurl at the pinned versions (Bazel tests get a minimal PATH).
export PATH="$CLUSTER_TOOLS:$PATH"
agent_a=$(tr ' ' '\n' <<< "$AGENTS" | sed -n 's/^node-a=//p')
agent_b=$(tr ' ' '\n' <<< "$AGENTS" | sed -n 's/^node-b=//p')
caps_a=$CLUSTER_STATE/nodes/node-a/captures
caps_b=$CLUSTER_STATE/nodes/node-b/captures
e2e_log "agents: node-a=$agent_a node-b=$agent_b"

check_eventually "agent node-a serves gRPC health" 20 \
  grpcurl -plaintext -max-time 2 "$agent_a" grpc.health.v1.Health/Check

ns=e2e
ip_web=$("$CLUSTER" pod add node-a $ns web-1)
ip_client=$("$CLUSTER" pod add node-a $ns client-1)
ip_b=$("$CLUSTER" pod add node-b $ns web-b)
e2e_log "pods: web-1=$ip_web client-1=$ip_client web-b=$ip_b"

# capture_field ADDR POD FIELD: a field of the pod's capture in ListCaptures.
capture_field() {
  grpc "$1" ListCaptures "{\"pod\":\"$2\"}" 2>/dev/null |
    jq -r ".captures[0].$3 // empty"
}
state_is() { [ "$(capture_field "$1" "$2" state)" = "$3" ]; }
# tcpdump processes writing under a directory.
tcpdumps_under() { pgrep -f -- "-w $1/" | wc -l; }
no_tcpdump_under() { [ "$(tcpdumps_under "$1")" -eq 0 ]; }
ring_header_written() { compgen -G "$caps_a/$1/run-*/ring0" >/dev/null && [ "$(stat -c %s "$(compgen -G "$caps_a/$1/run-*/ring0" | head -1)")" -ge 24 ]; }

# --- annotate: capture running within 2 s, pings in the downloaded pcap ---
kubectl annotate pod -n $ns web-1 tcpdump.antrea.io=3 >/dev/null
check_eventually "annotated pod's capture is RUNNING within 2 s" 2 state_is "$agent_a" web-1 RUNNING
id_web=$(capture_field "$agent_a" web-1 id)
check_eventually "tcpdump wrote the pcap header within 2 s" 2 ring_header_written "$id_web"
check "capture reports the pod's IP and interface" \
  test "$(capture_field "$agent_a" web-1 pod_ip)" = "$ip_web" -a "$(capture_field "$agent_a" web-1 interface)" = eth0
check_eventually "CaptureStarted Event on the pod" 10 bash -c \
  "kubectl get events -n $ns --field-selector involvedObject.name=web-1,reason=CaptureStarted -o name | grep -q ."

"$CLUSTER" traffic $ns client-1 3 >/dev/null
# Waits for the packets, not for the traffic: tcpdump writes up to ~1 s late,
# and later on a busy machine.
pings_downloaded() {
  download "$agent_a" "$id_web" "$work/web-1.pcap" &&
    tcpdump -r "$work/web-1.pcap" -n 2>/dev/null > "$work/web-1.txt" &&
    grep -q "IP $ip_client > $ip_web: ICMP echo request" "$work/web-1.txt" &&
    grep -q "IP $ip_web > $ip_client: ICMP echo reply" "$work/web-1.txt"
}
check_eventually "downloaded pcap holds the pings from client-1 to web-1" 15 pings_downloaded
check "downloaded pcap holds web-1's replies" \
  grep -q "IP $ip_web > $ip_client: ICMP echo reply" "$work/web-1.txt"
packets_counted() { [ "$(capture_field "$agent_a" web-1 packets)" -gt 0 ] 2>/dev/null; }
check_eventually "ListCaptures counts packets" 5 packets_counted

# --- the README's grpcurl one-liners ---
check "grpcurl list shows CaptureService and health" bash -c \
  "grpcurl -plaintext $agent_a list | grep -qx packetcapture.v1.CaptureService &&
   grpcurl -plaintext $agent_a list | grep -qx grpc.health.v1.Health"
check "ListCaptures filters by namespace and state" bash -c \
  "grpcurl -plaintext -d '{\"namespace\":\"$ns\",\"state\":\"RUNNING\"}' $agent_a packetcapture.v1.CaptureService/ListCaptures |
   jq -e '[.captures[].pod] == [\"web-1\"]' >/dev/null &&
   [ -z \"\$(grpcurl -plaintext -d '{\"namespace\":\"other\"}' $agent_a packetcapture.v1.CaptureService/ListCaptures | jq -r '.captures[]?.id')\" ]"
check "GetCapture by id" bash -c \
  "grpcurl -plaintext -d '{\"id\":\"$id_web\"}' $agent_a packetcapture.v1.CaptureService/GetCapture | jq -e '.pod == \"web-1\" and .node == \"node-a\"' >/dev/null"
check "GetCapture of an unknown id is NotFound" bash -c \
  "grpcurl -plaintext -d '{\"id\":\"nope\"}' $agent_a packetcapture.v1.CaptureService/GetCapture 2>&1 | grep -q 'Code: NotFound'"
check "a bad page_token is InvalidArgument" bash -c \
  "grpcurl -plaintext -d '{\"page_token\":\"garbage\"}' $agent_a packetcapture.v1.CaptureService/ListCaptures 2>&1 | grep -q 'Code: InvalidArgument'"
check "WatchCaptures streams the current captures then SYNCED" bash -c \
  "grpcurl -plaintext -max-time 2 $agent_a packetcapture.v1.CaptureService/WatchCaptures 2>/dev/null > $work/watch.json;
   jq -s -e '(map(select(.type == \"ADDED\" and .capture.pod == \"web-1\")) | length) == 1 and (map(select(.type == \"SYNCED\")) | length) == 1' $work/watch.json >/dev/null"
# follow: a download that stays open receives packets sent after it started.
# It ends when such a packet has arrived (or after 30 s), not at a fixed time.
follow_web() {
  grpcurl -plaintext -max-time 40 -d "{\"id\":\"$id_web\",\"follow\":true}" "$agent_a" \
    packetcapture.v1.CaptureService/DownloadCapture 2>/dev/null |
    jq --unbuffered -r .data | while read -r chunk; do printf %s "$chunk" | base64 -d; done
}
follow_start=
new_request_followed() {
  # The stream is open (the capture so far arrived): now start the traffic.
  if [ -z "$follow_start" ]; then
    [ -s "$work/follow.pcap" ] || return 1
    follow_start=$(date +%s)
    "$CLUSTER" traffic $ns client-1 2 >/dev/null
  fi
  tcpdump -r "$work/follow.pcap" -n --time-stamp-precision=micro -tt 2>/dev/null |
    awk -v t="$follow_start" '$1 >= t && /ICMP echo request/ {n++} END {exit !(n > 0)}'
}
if stream_until 30 "$work/follow.pcap" follow_web new_request_followed; then
  pass "follow download receives packets sent after it started"
else
  fail "follow download receives packets sent after it started" "none within 30 s (traffic from ${follow_start:-never})"
fi

# --- more than N MB of traffic: never more than N files of about 1 MB ---
ip_bulk=$("$CLUSTER" pod add node-a $ns bulk-1)
kubectl annotate pod -n $ns bulk-1 tcpdump.antrea.io=2 >/dev/null
check_eventually "second capture RUNNING" 3 state_is "$agent_a" bulk-1 RUNNING
id_bulk=$(capture_field "$agent_a" bulk-1 id)
max_files_seen=0
# tcpdump has opened the interface once it wrote the file header: only then
# does the flood go through the ring.
check_eventually "bulk-1's tcpdump wrote the pcap header" 5 ring_header_written "$id_bulk"
# ~4000 x 1442-byte requests + replies = ~11 MB through the 2-file ring.
client_ns=$("$CLUSTER" pod netns $ns client-1)
ip netns exec "$client_ns" ping -q -f -s 1400 -c 4000 -w 30 "$ip_bulk" >/dev/null 2>&1 &
flood=$!
sample_ring() {
  local n
  n=$(compgen -G "$caps_a/$id_bulk/run-*/ring*" | wc -l)
  [ "$n" -gt "$max_files_seen" ] && max_files_seen=$n
  return 0
}
# Sampled until the ring has held N=2 files (tcpdump writes up to ~1 s after
# the packets, so the second file may appear after the flood ended), and for
# as long as the flood runs and 2 s after: never a third file.
deadline=$((SECONDS + 60))
while { kill -0 $flood 2>/dev/null || [ "$max_files_seen" -lt 2 ]; } && [ "$SECONDS" -lt "$deadline" ]; do
  sample_ring
  sleep 0.05
done
settle=$((SECONDS + 2))
while [ "$SECONDS" -lt "$settle" ]; do
  sample_ring
  sleep 0.05
done
kill $flood 2>/dev/null
sizes=$(stat -c %s "$caps_a/$id_bulk"/run-*/ring* 2>/dev/null)
check "ring never held more than N=2 files (max seen $max_files_seen)" test "$max_files_seen" -le 2 -a "$max_files_seen" -ge 2
check "every file at most ~1 MB: $(echo $sizes)" bash -c \
  "[ -n '$(echo $sizes)' ] && for s in $(echo $sizes); do [ \$s -le 1001600 ] || exit 1; done"
check "the full file is about 1 MB" bash -c \
  "for s in $(echo $sizes); do [ \$s -ge 990000 ] && exit 0; done; exit 1"

# --- invalid values: FAILED + Warning Event, nothing started ---
"$CLUSTER" pod add node-a $ns bad-1 >/dev/null
for value in abc 0 -1 5.0 1000000; do
  kubectl annotate pod -n $ns bad-1 --overwrite tcpdump.antrea.io="$value" >/dev/null
  check_eventually "invalid value '$value' shows FAILED with the value quoted" 3 bash -c \
    "[ \"\$(grpcurl -plaintext -d '{\"pod\":\"bad-1\"}' $agent_a packetcapture.v1.CaptureService/ListCaptures | jq -r '.captures[0].state + \" \" + .captures[0].message')\" != '' ] &&
     grpcurl -plaintext -d '{\"pod\":\"bad-1\"}' $agent_a packetcapture.v1.CaptureService/ListCaptures | jq -e '.captures[0].state == \"FAILED\" and (.captures[0].message | contains(\"\\\"$value\\\"\"))' >/dev/null"
done
check_eventually "Warning Event CaptureRejected on the pod" 10 bash -c \
  "kubectl get events -n $ns --field-selector involvedObject.name=bad-1,type=Warning,reason=CaptureRejected -o name | grep -q ."
check "no tcpdump for the invalid pod" bash -c "! compgen -G '$caps_a/${ns}_bad-1_*' >/dev/null"

# --- node-b's pod is never captured by node-a's agent ---
kubectl annotate pod -n $ns web-b tcpdump.antrea.io=1 >/dev/null
check_eventually "node-b's agent captures its pod" 3 state_is "$agent_b" web-b RUNNING
check "node-a's agent does not list node-b's pod" test -z "$(capture_field "$agent_a" web-b id)"
check "node-a has no files for node-b's pod" bash -c "! compgen -G '$caps_a/${ns}_web-b_*' >/dev/null"

# --- annotation removed: tcpdump gone and no file left ---
kubectl annotate pod -n $ns web-1 tcpdump.antrea.io- >/dev/null
check_eventually "annotation removed: tcpdump gone within 2 s" 2 no_tcpdump_under "$caps_a/$id_web"
check_eventually "annotation removed: capture directory deleted within 2 s" 2 test ! -e "$caps_a/$id_web"
check_eventually "annotation removed: capture no longer listed" 2 test -z "$(capture_field "$agent_a" web-1 id)"

# --- pod deleted: cleanup ---
"$CLUSTER" pod del $ns bulk-1
check_eventually "pod deleted: tcpdump gone" 3 no_tcpdump_under "$caps_a/$id_bulk"
check_eventually "pod deleted: files deleted" 3 test ! -e "$caps_a/$id_bulk"

# --- kube-apiserver restarted mid-watch: later annotations still work ---
"$CLUSTER" restart-apiserver
"$CLUSTER" pod add node-a $ns late-1 >/dev/null
"$CLUSTER" pod add node-a $ns gone-1 >/dev/null
kubectl annotate pod -n $ns late-1 tcpdump.antrea.io=2 >/dev/null
check_eventually "annotation after an apiserver restart starts a capture" 40 state_is "$agent_a" late-1 RUNNING
id_late=$(capture_field "$agent_a" late-1 id)
kubectl annotate pod -n $ns gone-1 tcpdump.antrea.io=1 >/dev/null
eventually 5 state_is "$agent_a" gone-1 RUNNING
id_gone=$(capture_field "$agent_a" gone-1 id)

# --- agent SIGKILLed and restarted: no orphan tcpdump, capture continues ---
"$CLUSTER" traffic $ns client-1 2 >/dev/null
late_bytes() { cat "$caps_a/$id_late"/run-1-w2/ring* 2>/dev/null | wc -c; }
# Packets in the file (more than its 24-byte header), not a fixed wait.
late_has_packets() { [ "$(late_bytes)" -gt 24 ]; }
eventually 15 late_has_packets
before=$(late_bytes)
agent_pid=$(cat "$CLUSTER_STATE/pids/agent-node-a.pid")
kill -9 "$agent_pid"
check_eventually "agent killed: its tcpdumps die with it" 2 no_tcpdump_under "$caps_a"
# While the agent is down, one capture stops being wanted.
kubectl annotate pod -n $ns gone-1 tcpdump.antrea.io- >/dev/null
check "the unwanted capture's files are still there while the agent is down" test -d "$caps_a/$id_gone"
"$CLUSTER" restart-agent node-a >/dev/null
check_eventually "restarted agent resumes the capture" 20 state_is "$agent_a" late-1 RUNNING
check "capture keeps its id across the agent restart" test "$(capture_field "$agent_a" late-1 id)" = "$id_late"
after=$(cat "$caps_a/$id_late"/run-1-w2/ring* 2>/dev/null | wc -c)
check "data written before the restart is kept ($before bytes)" test "$before" -gt 24 -a "$after" -ge "$before"
one_tcpdump() { [ "$(tcpdumps_under "$caps_a/$id_late")" -eq 1 ]; }
check_eventually "exactly one tcpdump for the capture after restart" 5 one_tcpdump
check_eventually "capture unannotated while the agent was down is deleted" 10 test ! -e "$caps_a/$id_gone"

e2e_finish
