#!/usr/bin/env bash
# End-to-end test of the capture options (tcpdump.antrea.io/filter, /snaplen,
# /duration, /max-packets) and of annotating many pods at once, on the local
# cluster: real kube-apiserver, real tcpdump in network-namespace pods on two
# nodes, the aggregator, grpcurl, kubectl, tshark/capinfos. Checks what a user
# checks: what the downloaded pcap holds, the state and reason in
# ListCaptures, the Events, the files on the node. Runs the README's option
# lines as written there. Needs root.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
E2E_SUITE=options_e2e
source "$here/e2e_lib.sh"

CLUSTER=${CLUSTER:-$here/cluster.sh}
export CLUSTER_STATE=${CLUSTER_STATE:-$(mktemp -d /tmp/pc-options-e2e.XXXXXX)}
work=$(mktemp -d /tmp/pc-options-e2e-work.XXXXXX)
trap '"$CLUSTER" down >/dev/null 2>&1; rm -rf "$work"' EXIT

"$CLUSTER" down >/dev/null 2>&1
if ! "$CLUSTER" up --nodes 2; then
  fail "cluster comes up" "see $CLUSTER_STATE/logs"
  e2e_finish
  exit 1
fi
eval "$("$CLUSTER" env)"
export PATH="$CLUSTER_TOOLS:$PATH"
agent_a=$(tr ' ' '\n' <<< "$AGENTS" | sed -n 's/^node-a=//p')
agent_b=$(tr ' ' '\n' <<< "$AGENTS" | sed -n 's/^node-b=//p')
caps_a=$CLUSTER_STATE/nodes/node-a/captures
e2e_log "agents: node-a=$agent_a node-b=$agent_b aggregator=$AGGREGATOR"
check_eventually "agents and aggregator serve gRPC health" 20 bash -c \
  "grpcurl -plaintext -max-time 2 $agent_a grpc.health.v1.Health/Check >/dev/null &&
   grpcurl -plaintext -max-time 2 $agent_b grpc.health.v1.Health/Check >/dev/null &&
   grpcurl -plaintext -max-time 2 $AGGREGATOR grpc.health.v1.Health/Check >/dev/null"

# The checks below run grpc in `bash -c` subshells too.
export -f grpc
ns=demo
# field ADDR POD JQ: a jq expression over the pod's capture in ListCaptures.
field() {
  grpc "$1" ListCaptures "{\"namespace\":\"$ns\",\"pod\":\"$2\"}" 2>/dev/null |
    jq -r ".captures[0] | $3 // empty"
}
state_is() { [ "$(field "$1" "$2" .state)" = "$3" ]; }
tcpdumps_under() { pgrep -f -- "-w $1/" | wc -l; }
event_messages() {  # POD REASON
  kubectl get events -n $ns --field-selector "involvedObject.name=$1,reason=$2" \
    -o jsonpath='{range .items[*]}{.message}{"\n"}{end}' 2>/dev/null
}

# --- many pods at once, on two nodes, chosen by label (README) ---
ip_web1=$("$CLUSTER" pod add node-a $ns web-1)
ip_client=$("$CLUSTER" pod add node-a $ns client-1)
kubectl label pod -n demo web-1 --overwrite app=web >/dev/null
ip_web2=$("$CLUSTER" pod add node-b demo web-2 --label app=web)
ip_web3=$("$CLUSTER" pod add node-b demo web-3 --label app=web)
e2e_log "pods: web-1=$ip_web1 web-2=$ip_web2 web-3=$ip_web3 client-1=$ip_client"
check "pod add --label sets the label" test \
  "$(kubectl get pod -n $ns web-2 -o jsonpath='{.metadata.labels.app}')" = web
kubectl annotate pods -n demo -l app=web tcpdump.antrea.io=5 >/dev/null
check_eventually "-l app=web: web-1 RUNNING on node-a" 5 state_is "$agent_a" web-1 RUNNING
check_eventually "-l app=web: web-2 RUNNING on node-b" 5 state_is "$agent_b" web-2 RUNNING
check_eventually "-l app=web: web-3 RUNNING on node-b" 5 state_is "$agent_b" web-3 RUNNING
check "client-1 (app=client-1) is not captured" test -z "$(field "$agent_a" client-1 .id)"
check "the capture records the pod's labels" test "$(field "$agent_b" web-2 '.pod_labels.app')" = web
check "no options: today's capture, no options shown" bash -c \
  "[ \"\$(grpc $agent_a ListCaptures '{\"pod\":\"web-1\"}' | jq -c '.captures[0].options // {}')\" = '{}' ]"
aggregator_lists_web() {
  [ "$(grpc "$AGGREGATOR" ListCaptures "{\"namespace\":\"$ns\"}" 2>/dev/null |
    jq -r '[.captures[] | select(.pod_labels.app == "web") | .node] | sort | join(",")')" = node-a,node-b,node-b ]
}
check_eventually "the aggregator lists the three captures with their labels" 10 aggregator_lists_web

# --- changing an option: a new run of the same capture ---
id_web1=$(field "$agent_a" web-1 .id)
kubectl annotate pod -n $ns web-1 tcpdump.antrea.io/snaplen=128 >/dev/null
new_run() { [ -d "$(compgen -G "$caps_a/$id_web1/run-2-w5" | head -1)" ] && state_is "$agent_a" web-1 RUNNING; }
check_eventually "snaplen added: web-1 restarts as run 2 of the same capture" 5 new_run
check "same capture id, snaplen shown" test "$(field "$agent_a" web-1 '.id + " " + (.options.snaplen | tostring)')" = "$id_web1 128"

# --- filter and snaplen (README): only UDP port 53, at most 96 bytes each ---
"$CLUSTER" pod add node-a demo dns-1 >/dev/null
kubectl annotate pod -n demo dns-1 tcpdump.antrea.io=5 tcpdump.antrea.io/filter="udp port 53" tcpdump.antrea.io/snaplen=96 >/dev/null
check_eventually "filtered capture RUNNING" 5 state_is "$agent_a" dns-1 RUNNING
id_dns=$(field "$agent_a" dns-1 .id)
ip_dns=$(field "$agent_a" dns-1 .pod_ip)
check "options shown in the capture" test \
  "$(field "$agent_a" dns-1 '.options.filter + "|" + (.options.snaplen | tostring)')" = "udp port 53|96"
check_eventually "CaptureStarted Event names the options" 10 bash -c \
  "kubectl get events -n $ns --field-selector involvedObject.name=dns-1,reason=CaptureStarted -o jsonpath='{.items[*].message}' | grep -q 'filter \"udp port 53\", snaplen 96'"
header_written() { [ "$(stat -c %s "$caps_a/$id_dns"/run-1-w5/ring0 2>/dev/null || echo 0)" -ge 24 ]; }
check_eventually "tcpdump wrote the pcap header" 5 header_written
# Pings (ICMP, not wanted) and 500-byte UDP datagrams to port 53 (wanted).
"$CLUSTER" traffic $ns client-1 3 >/dev/null
client_ns=$("$CLUSTER" pod netns $ns client-1)
ip netns exec "$client_ns" bash -c \
  "for i in \$(seq 20); do printf '%500s' x > /dev/udp/$ip_dns/53; sleep 0.05; done" 2>/dev/null
udp_downloaded() {
  download "$agent_a" "$id_dns" "$work/dns.pcap" &&
    [ "$(tshark -r "$work/dns.pcap" -Y 'udp.dstport == 53' 2>/dev/null | wc -l)" -ge 20 ]
}
check_eventually "downloaded pcap holds the 20 UDP datagrams to port 53" 15 udp_downloaded
sleep 1  # the pings ran as long as the datagrams: any that passed would be written by now
download "$agent_a" "$id_dns" "$work/dns.pcap"
check "and nothing else: no ICMP, no other port (tcpdump -r)" bash -c \
  "[ \"\$(tcpdump -r $work/dns.pcap -n 'not (udp port 53)' 2>/dev/null | wc -l)\" -eq 0 ] &&
   [ \"\$(tcpdump -r $work/dns.pcap -n 2>/dev/null | wc -l)\" -ge 20 ]"
snap_hdr=$(capinfos -l -M "$work/dns.pcap" 2>/dev/null | sed -n 's/.*file hdr: *\([0-9]*\) bytes.*/\1/p')
lens=$(tshark -r "$work/dns.pcap" -T fields -e frame.cap_len -e frame.len 2>/dev/null)
check "snaplen 96: the file says 96 (capinfos: '$snap_hdr')" test "$snap_hdr" = 96
check "snaplen 96: every record at most 96 bytes, cut from longer packets" bash -c \
  "awk '\$1 > 96 {bad = 1} \$2 > 96 {cut = 1} END {exit bad || !cut || NR < 20}' <<< '$lens'"

# --- an invalid filter (README): FAILED with libpcap's words, Warning Event ---
"$CLUSTER" pod add node-a demo bad-1 >/dev/null
kubectl annotate pod -n demo bad-1 tcpdump.antrea.io=5 tcpdump.antrea.io/filter="tcp prot 80" >/dev/null
check_eventually "invalid filter: FAILED with libpcap's message" 5 bash -c \
  "[ \"\$(grpc $agent_a ListCaptures '{\"pod\":\"bad-1\"}' | jq -r '.captures[0].state + \"|\" + .captures[0].message')\" = \"FAILED|tcpdump.antrea.io/filter is not a valid pcap filter: can't parse filter expression: syntax error\" ]"
check_eventually "invalid filter: Warning Event CaptureRejected says why" 10 bash -c \
  "kubectl get events -n $ns --field-selector involvedObject.name=bad-1,type=Warning,reason=CaptureRejected -o jsonpath='{.items[*].message}' | grep -q 'not a valid pcap filter: .*syntax error'"
check "invalid filter: no tcpdump, no files" bash -c "! compgen -G '$caps_a/${ns}_bad-1_*' >/dev/null"
# A filter that looks like an option never reaches tcpdump as one.
kubectl annotate pod -n $ns bad-1 --overwrite tcpdump.antrea.io/filter="-w $work/escaped" >/dev/null
check_eventually "a filter starting with '-' is refused" 5 bash -c \
  "grpc $agent_a ListCaptures '{\"pod\":\"bad-1\"}' | jq -e '.captures[0].state == \"FAILED\" and (.captures[0].message | contains(\"not a valid pcap filter\"))' >/dev/null"
kubectl annotate pod -n $ns bad-1 --overwrite tcpdump.antrea.io/filter="$(printf 'icmp or %.0s' $(seq 600))icmp" >/dev/null
check_eventually "an over-long filter is refused with the bound" 5 bash -c \
  "grpc $agent_a ListCaptures '{\"pod\":\"bad-1\"}' | jq -e '.captures[0].state == \"FAILED\" and (.captures[0].message | contains(\"more than the 4096 bytes\"))' >/dev/null"
kubectl annotate pod -n $ns bad-1 --overwrite tcpdump.antrea.io/filter- tcpdump.antrea.io/duration=-5s >/dev/null
check_eventually "a bad duration is refused naming the annotation" 5 bash -c \
  "grpc $agent_a ListCaptures '{\"pod\":\"bad-1\"}' | jq -e '.captures[0].state == \"FAILED\" and (.captures[0].message | startswith(\"tcpdump.antrea.io/duration=\\\"-5s\\\" is not valid\"))' >/dev/null"
check "nothing was ever written for bad-1" bash -c "! compgen -G '$caps_a/${ns}_bad-1_*' >/dev/null && [ ! -e $work/escaped ]"

# --- max-packets: stops after exactly that many packets ---
"$CLUSTER" pod add node-b $ns mp-1 >/dev/null
kubectl annotate pod -n $ns mp-1 tcpdump.antrea.io=1 tcpdump.antrea.io/max-packets=10 tcpdump.antrea.io/filter=icmp >/dev/null
check_eventually "max-packets capture RUNNING" 5 state_is "$agent_b" mp-1 RUNNING
"$CLUSTER" traffic $ns client-1 4 >/dev/null
check_eventually "max-packets reached: STOPPED with MAX_PACKETS_REACHED" 15 bash -c \
  "[ \"\$(grpc $agent_b ListCaptures '{\"pod\":\"mp-1\"}' | jq -r '.captures[0].state + \" \" + .captures[0].stop_reason')\" = 'STOPPED MAX_PACKETS_REACHED' ]"
download "$agent_b" "$(field "$agent_b" mp-1 .id)" "$work/mp.pcap"
check "the downloaded pcap holds exactly 10 packets (capinfos)" test \
  "$(capinfos -c -M "$work/mp.pcap" 2>/dev/null | sed -n 's/^Number of packets: *//p')" = 10

# --- duration (README): STOPPED when reached, files kept, never restarted ---
"$CLUSTER" pod add node-a demo short-1 >/dev/null
kubectl annotate pod -n demo short-1 tcpdump.antrea.io=2 tcpdump.antrea.io/duration=5s >/dev/null
check_eventually "duration capture RUNNING" 5 state_is "$agent_a" short-1 RUNNING
id_short=$(field "$agent_a" short-1 .id)
"$CLUSTER" traffic $ns client-1 3 >/dev/null
check_eventually "duration reached: STOPPED with DURATION_REACHED within 5 s + 3 s" 9 bash -c \
  "[ \"\$(grpc $agent_a ListCaptures '{\"pod\":\"short-1\"}' | jq -r '.captures[0].state + \" \" + .captures[0].stop_reason')\" = 'STOPPED DURATION_REACHED' ]"
check "the message says which limit" bash -c \
  "grpc $agent_a ListCaptures '{\"pod\":\"short-1\"}' | jq -e '.captures[0].message | startswith(\"duration 5s reached\")' >/dev/null"
check "duration reached: tcpdump gone" test "$(tcpdumps_under "$caps_a/$id_short")" -eq 0
download "$agent_a" "$id_short" "$work/short.pcap"
check "duration reached: files still on the node and downloadable, with the pings" bash -c \
  "[ -d $caps_a/$id_short ] && tcpdump -r $work/short.pcap -n 2>/dev/null | grep -q 'ICMP echo request'"
check_eventually "CaptureStopped Event says the duration was reached" 5 bash -c \
  "kubectl get events -n $ns --field-selector involvedObject.name=short-1,reason=CaptureStopped -o jsonpath='{.items[*].message}' | grep -q 'duration 5s reached'"
aggregator_says_reached() {
  grpc "$AGGREGATOR" GetCapture "{\"id\":\"$id_short\"}" 2>/dev/null |
    jq -e '.state == "STOPPED" and .stop_reason == "DURATION_REACHED" and .options.duration == "5s"' >/dev/null
}
check_eventually "the aggregator shows it STOPPED, DURATION_REACHED, with its options" 10 aggregator_says_reached
sleep 2
# In this shell, not in `bash -c`: pgrep -f would find the subshell's own
# command line, which holds the pattern.
short_stays_stopped() {
  [ "$(field "$agent_a" short-1 '.state + " " + .stop_reason')" = "STOPPED DURATION_REACHED" ] &&
    [ ! -e "$caps_a/$id_short/run-2-w2" ] && [ "$(tcpdumps_under "$caps_a/$id_short")" -eq 0 ] &&
    [ -n "$(compgen -G "$caps_a/$id_short/run-1-w2/ring*")" ]
}
check "not restarted: still STOPPED, one run, no tcpdump, files kept" short_stays_stopped
"$CLUSTER" restart-agent node-a >/dev/null 2>&1
check_eventually "agent node-a back after a restart" 20 \
  grpcurl -plaintext -max-time 2 "$agent_a" grpc.health.v1.Health/Check
check_eventually "web-1 captured again after the agent restart" 10 state_is "$agent_a" web-1 RUNNING
check "after an agent restart: still STOPPED with its reason, not restarted, files kept" short_stays_stopped

# --- annotation removed (README): the node's files go, as always ---
kubectl annotate pod -n demo short-1 tcpdump.antrea.io- >/dev/null
check_eventually "annotation removed: the stopped capture's files are deleted" 3 test ! -e "$caps_a/$id_short"
check_eventually "annotation removed: no longer listed by the agent" 3 test -z "$(field "$agent_a" short-1 .id)"
kubectl annotate pod -n $ns dns-1 tcpdump.antrea.io- >/dev/null
aggregator_says_removed() {
  grpc "$AGGREGATOR" GetCapture "{\"id\":\"$id_dns\"}" 2>/dev/null |
    jq -e '.state == "STOPPED" and .stop_reason == "ANNOTATION_REMOVED"' >/dev/null
}
check_eventually "the aggregator shows a removed annotation as ANNOTATION_REMOVED" 15 aggregator_says_removed
id_web3=$(field "$agent_b" web-3 .id)
"$CLUSTER" pod del $ns web-3 >/dev/null
aggregator_says_gone() {
  grpc "$AGGREGATOR" GetCapture "{\"id\":\"$id_web3\"}" 2>/dev/null |
    jq -e '.state == "STOPPED" and .stop_reason == "POD_GONE"' >/dev/null
}
check_eventually "the aggregator shows a deleted pod's capture as POD_GONE" 15 aggregator_says_gone
id_web2=$(field "$agent_b" web-2 .id)
kubectl annotate pods -n demo -l app=web tcpdump.antrea.io- >/dev/null
check_eventually "-l app=web annotation removed: web-1 and web-2 no longer listed" 5 bash -c \
  "[ -z \"\$(grpc $agent_a ListCaptures '{\"pod\":\"web-1\"}' | jq -r '.captures[]?.id')\" ] &&
   [ -z \"\$(grpc $agent_b ListCaptures '{\"pod\":\"web-2\"}' | jq -r '.captures[]?.id')\" ]"
check_eventually "and their node files deleted" 5 bash -c \
  "[ ! -e $caps_a/$id_web1 ] && [ ! -e $CLUSTER_STATE/nodes/node-b/captures/$id_web2 ]"

e2e_finish
