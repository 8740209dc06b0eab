#!/usr/bin/env bash
# End-to-end test of merged pcapng downloads on the local cluster: two pods on
# two nodes captured while pinged, then the README's grpcurl one-liners:
# DownloadCaptures on the aggregator (by namespace, label selector, ids; and
# follow=true while new pings flow) and DownloadCapture with FORMAT_PCAPNG on
# an agent, each decoded from grpcurl's base64 and checked with the real
# capinfos and tshark: a pcapng with one interface per pod naming it, every
# packet of the single downloads, timestamps in order. Needs root.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
E2E_SUITE=merge_e2e
source "$here/e2e_lib.sh"

CLUSTER=${CLUSTER:-$here/cluster.sh}
export CLUSTER_STATE=${CLUSTER_STATE:-$(mktemp -d /tmp/pc-merge-e2e.XXXXXX)}
work=$(mktemp -d /tmp/pc-merge-e2e-work.XXXXXX)
trap '"$CLUSTER" down >/dev/null 2>&1; rm -rf "$work"' EXIT

"$CLUSTER" down >/dev/null 2>&1
if ! "$CLUSTER" up --nodes 2; then
  fail "cluster comes up" "see $CLUSTER_STATE/logs"
  e2e_finish
  exit 1
fi
eval "$("$CLUSTER" env)"
export PATH="$CLUSTER_TOOLS:$PATH"
AGG=$AGGREGATOR
AGENT=$(tr ' ' '\n' <<< "$AGENTS" | sed -n 's/^node-a=//p')
e2e_log "aggregator=$AGG agents: $AGENTS"

ns=demo
ip_1=$("$CLUSTER" pod add node-a $ns web-1)
ip_2=$("$CLUSTER" pod add node-b $ns web-2)
ip_c=$("$CLUSTER" pod add node-a $ns client)
e2e_log "pods: web-1=$ip_1 (node-a) web-2=$ip_2 (node-b) client=$ip_c"
kubectl annotate pod -n $ns web-1 tcpdump.antrea.io=3 >/dev/null
kubectl annotate pod -n $ns web-2 tcpdump.antrea.io=3 >/dev/null

# m_field ADDR POD FIELD: a field of the pod's capture in ListCaptures.
m_field() {
  grpc "$1" ListCaptures "{\"namespace\":\"$ns\",\"pod\":\"$2\"}" 2>/dev/null |
    jq -r ".captures[0].$3 // empty"
}
running() { [ "$(m_field "$AGG" "$1" state)" = RUNNING ]; }
both_running() { running web-1 && running web-2; }
check_eventually "the aggregator lists both captures RUNNING" 20 both_running
id_1=$(m_field "$AGG" web-1 id)
id_2=$(m_field "$AGG" web-2 id)
e2e_log "captures: web-1=$id_1 web-2=$id_2"
"$CLUSTER" traffic $ns client 6 >/dev/null
sleep 8  # the pings end; tcpdump flushes within ~1 s
# The aggregator holds every packet each node's agent counts.
caught_up_with() {  # POD
  local node agg
  node=$(m_field "$AGENT_OF" "$1" packets)
  agg=$(m_field "$AGG" "$1" packets)
  [ -n "$node" ] && [ "$node" != 0 ] && [ "$node" = "$agg" ]
}
AGENT_OF=$AGENT
check_eventually "the aggregator caught up with node-a" 20 caught_up_with web-1
AGENT_OF=$(tr ' ' '\n' <<< "$AGENTS" | sed -n 's/^node-b=//p')
check_eventually "the aggregator caught up with node-b" 20 caught_up_with web-2

# The README's one-liners, with its placeholders filled in.
merged_by_namespace() {
  grpcurl -plaintext -d '{"namespace":"demo"}' $AGG packetcapture.v1.CaptureService/DownloadCaptures \
    | jq -r .data | while read -r chunk; do printf %s "$chunk" | base64 -d; done > demo.pcapng
}
pcapng_from_agent() {
  grpcurl -plaintext -d "{\"id\":\"$id_1\",\"format\":\"FORMAT_PCAPNG\"}" $AGENT packetcapture.v1.CaptureService/DownloadCapture \
    | jq -r .data | while read -r chunk; do printf %s "$chunk" | base64 -d; done > web-1.pcapng
}
# fields FILE: one line per packet: time, interface, length, addresses.
fields() {
  tshark -r "$1" -T fields -e frame.time_epoch -e frame.interface_name \
    -e frame.len -e ip.src -e ip.dst 2>/dev/null
}
as_interface() { awk -F'\t' -v OFS='\t' -v name="$1" '{ $2 = name; print }'; }
# The merged file holds exactly the packets of the two pcap downloads, and
# each packet's interface is its pod. (The downloads are not one snapshot: a
# late ARP refresh can land between them, so this is retried.)
same_packets_as_singles() {
  (cd "$work" && merged_by_namespace) || return 1
  download "$AGG" "$id_1" "$work/web-1.pcap"
  download "$AGG" "$id_2" "$work/web-2.pcap"
  fields "$work/demo.pcapng" | sort > "$work/merged.txt"
  { fields "$work/web-1.pcap" | as_interface demo/web-1
    fields "$work/web-2.pcap" | as_interface demo/web-2; } | sort > "$work/singles.txt"
  [ -s "$work/merged.txt" ] && cmp -s "$work/merged.txt" "$work/singles.txt" && return 0
  e2e_log "merged $(wc -l < "$work/merged.txt") packets, singles $(wc -l < "$work/singles.txt")"
  return 1
}
check_eventually "the merged pcapng holds exactly the packets of both pcap downloads" 15 same_packets_as_singles

info=$(capinfos "$work/demo.pcapng" 2>&1)
check "capinfos reads the merged download as pcapng" grep -q "File type: *Wireshark/... - pcapng" <<< "$info"
check "capinfos counts 2 interfaces" grep -q "Number of interfaces in file: 2" <<< "$info"
count() { capinfos -M -c "$1" 2>/dev/null | sed -n 's/^Number of packets: *//p'; }
n1=$(count "$work/web-1.pcap") n2=$(count "$work/web-2.pcap") nm=$(count "$work/demo.pcapng")
e2e_log "packets: web-1 $n1, web-2 $n2, merged $nm"
check "capinfos: packets of the merge = web-1's + web-2's ($n1 + $n2)" test "$nm" -eq $((n1 + n2))
check "the section header names the captures and their time range" \
  grep -qE "Capture comment: *2 captures, from 20[0-9-]+T[0-9:.]+Z to 20" <<< "$info"
tshark -r "$work/demo.pcapng" -T fields -e frame.interface_name -e frame.interface_description \
  2>/dev/null | sort -u > "$work/interfaces.txt"
check "interface demo/web-1 describes node-a, its pod IP and capture id" grep -qxF \
  "$(printf 'demo/web-1\tpod demo/web-1, node node-a, pod IP %s, interface eth0, capture %s' "$ip_1" "$id_1")" \
  "$work/interfaces.txt"
check "interface demo/web-2 describes node-b, its pod IP and capture id" grep -qxF \
  "$(printf 'demo/web-2\tpod demo/web-2, node node-b, pod IP %s, interface eth0, capture %s' "$ip_2" "$id_2")" \
  "$work/interfaces.txt"
check "pings to web-1 are on interface demo/web-1, to web-2 on demo/web-2" bash -c \
  "fields_out=\$(tshark -r '$work/demo.pcapng' -Y icmp.type==8 -T fields -e frame.interface_name -e ip.dst 2>/dev/null | sort -u);
   [ \"\$fields_out\" = \"\$(printf 'demo/web-1\t$ip_1\ndemo/web-2\t$ip_2')\" ]"
# Time order: a merge of inputs in time order is in time order. tcpdump's own
# file can hold a packet stamped a few microseconds before the one it wrote
# before (two CPUs stamp packets), and a merge cannot repair that; but then
# the step back is between two packets of that one capture, consecutive in
# its own download, never between two captures. So: every step back in the
# merge (tshark frame.time_epoch) must be such a pair of the capture's own.
steps_back() {  # prints "interface<TAB>t1<TAB>t2" for each decrease; stdin: time, interface
  awk -F'\t' 'NR > 1 && $1 < last { print $2 "\t" last "\t" $1 } { last = $1 }'
}
time_order_kept() {
  local own merged
  own=$({ tshark -r "$work/web-1.pcap" -T fields -e frame.time_epoch 2>/dev/null | sed 's/$/\tdemo\/web-1/'
          tshark -r "$work/web-2.pcap" -T fields -e frame.time_epoch 2>/dev/null | sed 's/$/\tdemo\/web-2/'; } |
        awk -F'\t' '$2 != iface { last = "" } { if (last != "" && $1 < last) print $2 "\t" last "\t" $1; last = $1; iface = $2 }' | sort)
  merged=$(tshark -r "$work/demo.pcapng" -T fields -e frame.time_epoch -e frame.interface_name 2>/dev/null | steps_back | sort)
  e2e_log "steps back in time: $(grep -c . <<< "$own") in the captures themselves, $(grep -c . <<< "$merged") in the merge"
  [ "$merged" = "$own" ] && return 0
  e2e_log "steps back in the merge only: $(comm -13 <(echo "$own") <(echo "$merged") | head -3 | tr '\n' ' ')"
  return 1
}
check "timestamps never decrease across the merge, except where a capture's own file steps back" time_order_kept
check "both pods' packets interleave in time" bash -c \
  "tshark -r '$work/demo.pcapng' -T fields -e frame.interface_id 2>/dev/null | uniq | awk 'END { exit !(NR > 4) }'"

# --- by label selector and by ids; errors ---
by_selector() {
  grpcurl -plaintext -d '{"label_selector":"app in (web-1,web-2)"}' $AGG packetcapture.v1.CaptureService/DownloadCaptures \
    | jq -r .data | while read -r chunk; do printf %s "$chunk" | base64 -d; done > web.pcapng
}
check "the capture records the pod's labels" \
  test "$(grpc "$AGG" GetCapture "{\"id\":\"$id_1\"}" | jq -r '.pod_labels.app // empty')" = web-1
(cd "$work" && by_selector)
check "the README's label-selector download merges both pods" bash -c \
  "capinfos '$work/web.pcapng' | grep -q 'Number of interfaces in file: 2'"
grpc "$AGG" DownloadCaptures "{\"ids\":[\"$id_2\",\"$id_1\"]}" | jq -r .data |
  while read -r chunk; do printf %s "$chunk" | base64 -d; done > "$work/ids.pcapng"
check "by ids: interfaces in the order asked" bash -c \
  "[ \"\$(capinfos '$work/ids.pcapng' | sed -n 's/^ *Name = //p' | paste -sd,)\" = demo/web-2,demo/web-1 ]"
check "a selector matching nothing is NOT_FOUND, saying so" bash -c \
  "grpcurl -plaintext -d '{\"label_selector\":\"app=nothing\"}' $AGG packetcapture.v1.CaptureService/DownloadCaptures 2>&1 |
   grep -q 'Code: NotFound' "
check "an invalid selector is INVALID_ARGUMENT on DownloadCaptures and ListCaptures" bash -c \
  "grpcurl -plaintext -d '{\"label_selector\":\"app in web\"}' $AGG packetcapture.v1.CaptureService/DownloadCaptures 2>&1 | grep -q 'Code: InvalidArgument' &&
   grpcurl -plaintext -d '{\"label_selector\":\"app in web\"}' $AGG packetcapture.v1.CaptureService/ListCaptures 2>&1 | grep -q 'Code: InvalidArgument'"

# --- one capture as pcapng from its agent ---
(cd "$work" && pcapng_from_agent)
download "$AGENT" "$id_1" "$work/web-1.agent.pcap"
check "the agent's pcapng download is pcapng with web-1's one interface" bash -c \
  "capinfos '$work/web-1.pcapng' | grep -q 'Number of interfaces in file: 1' &&
   capinfos '$work/web-1.pcapng' | grep -q 'Name = demo/web-1'"
agent_formats_agree() {  # both downloads again: a late packet may land between
  (cd "$work" && pcapng_from_agent) &&
    download "$AGENT" "$id_1" "$work/web-1.agent.pcap" &&
    fields "$work/web-1.pcapng" | cut -f1,3- > "$work/agent.pcapng.txt" &&
    fields "$work/web-1.agent.pcap" | cut -f1,3- > "$work/agent.pcap.txt" &&
    [ -s "$work/agent.pcap.txt" ] && cmp -s "$work/agent.pcapng.txt" "$work/agent.pcap.txt"
}
check_eventually "the agent's pcapng holds the same packets, times and lengths as its pcap" 10 \
  agent_formats_agree

# --- follow: new packets of both pods arrive in one live stream ---
follow_merged() {  # the README's one-liner, into tshark as a person would
  grpcurl -plaintext -max-time 30 -d '{"namespace":"demo","follow":true}' $AGG packetcapture.v1.CaptureService/DownloadCaptures \
    | jq -r .data | while read -r chunk; do printf %s "$chunk" | base64 -d; done \
    | tshark -r - -l -T fields -e frame.time_epoch -e frame.interface_name -e ip.dst -e icmp.type
}
start=$(date +%s)
new_pings_of_both() {
  for pod_ip in "demo/web-1	$ip_1" "demo/web-2	$ip_2"; do
    awk -F'\t' -v t="$start" -v want="$pod_ip" \
      '$1 > t && ($2 "\t" $3) == want && $4 == 8 { n++ } END { exit !(n >= 3) }' \
      "$work/follow.txt" || return 1
  done
}
( sleep 2; "$CLUSTER" traffic $ns client 5 >/dev/null ) &
if stream_until 25 "$work/follow.txt" follow_merged new_pings_of_both; then
  pass "a followed merge shows new pings to both pods, each on its interface"
else
  fail "a followed merge shows new pings to both pods, each on its interface" \
    "$(wc -l < "$work/follow.txt") lines; last: $(tail -2 "$work/follow.txt" | tr '\n' ' ')"
fi
wait

e2e_finish
