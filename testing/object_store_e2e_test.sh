#!/usr/bin/env bash
# Aggregator replicas over a real S3-compatible object store (versitygw) on the local
# cluster: testing/cluster.sh up --object-store --aggregators 3 --nodes 3 (issue 12).
# - every replica lists the same captures of the three nodes;
# - the replica holding node-a's Lease is SIGKILLed while node-a's pod is flooded: the
#   agent reconnects to another replica within 10 s (the Lease changes hands), nothing
#   acknowledged is lost (packets compared with the node's own files) and the downloads
#   from the three replicas are byte-identical;
# - the object store is killed mid-flood and started again: acknowledgements stop while
#   it is down, the agent does not storm it, nothing is lost, and ingest resumes.
# Every check prints what it compared. Needs root.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
E2E_SUITE=object_store_e2e
source "$here/e2e_lib.sh"

CLUSTER=${CLUSTER:-$here/cluster.sh}
# /var/tmp: the object store's POSIX backend needs user xattrs (a tmpfs /tmp may lack them).
own_state=
if [ -z "${CLUSTER_STATE:-}" ]; then
  CLUSTER_STATE=$(mktemp -d /var/tmp/pc-object-store-e2e.XXXXXX)
  own_state=$CLUSTER_STATE
fi
export CLUSTER_STATE
work=$(mktemp -d /tmp/pc-object-store-e2e-work.XXXXXX)
floods=()
# The state dir (its logs) stays only after a failure.
cleanup() {
  local pid
  for pid in "${floods[@]}"; do kill "$pid" 2>/dev/null; done
  "$CLUSTER" down > /dev/null 2>&1
  rm -rf "$work"
  if [ -n "$own_state" ] && [ "$E2E_FAILED" -eq 0 ]; then rm -rf "$own_state"; fi
}
trap cleanup EXIT

"$CLUSTER" down > /dev/null 2>&1
if ! "$CLUSTER" up --object-store --aggregators 3 --nodes 3; then
  fail "cluster comes up with the object store and 3 replicas" "see $CLUSTER_STATE/logs"
  e2e_finish
  exit 1
fi
eval "$("$CLUSTER" env)"
export PATH="$CLUSTER_TOOLS:$PATH"
agent_of() { tr ' ' '\n' <<< "$AGENTS" | sed -n "s/^$1=//p"; }
agent_a=$(agent_of node-a)
declare -A replica
for entry in $AGGREGATORS; do replica[${entry%%=*}]=${entry#*=}; done
e2e_log "object store $OBJECT_STORE; replicas: $AGGREGATORS; agents: $AGENTS"
check "env: three replicas (AGGREGATORS='$AGGREGATORS'), AGGREGATOR is the first" \
  test "${#replica[@]}" = 3 -a "$AGGREGATOR" = "${replica[0]:-}"
check "env: the object store's address and its 0600 key file" bash -c \
  "[ -n '$OBJECT_STORE' ] && [ \"\$(stat -c %a '$OBJECT_STORE_CREDENTIALS')\" = 600 ] &&
   grep -q '^access_key_id=.' '$OBJECT_STORE_CREDENTIALS' && grep -q '^secret_access_key=.' '$OBJECT_STORE_CREDENTIALS'"
for i in 0 1 2; do
  check_eventually "replica $i serves gRPC health" 20 \
    grpcurl -plaintext -max-time 2 "${replica[$i]}" grpc.health.v1.Health/Check
done

ns=objstore
for n in a b c; do "$CLUSTER" pod add "node-$n" $ns "web-$n" > /dev/null; done
ip_a=$(kubectl get pod -n $ns web-a -o jsonpath='{.status.podIP}')
"$CLUSTER" pod add node-c $ns client-c > /dev/null  # the flood's source, not captured
netns_client=$("$CLUSTER" pod netns $ns client-c)

# ---- helpers ------------------------------------------------------------------------
now_ms() { echo $(($(date +%s%N) / 1000000)); }
# check_within NAME T0_MS SECONDS CMD...: CMD succeeds, tried at most SECONDS after T0 (a
# moment in the past, e.g. a kill); prints when.
check_within() {
  local name=$1 t0=$2 seconds=$3 t
  shift 3
  while true; do
    t=$(now_ms)
    if [ $((t - t0)) -gt $((seconds * 1000)) ]; then
      fail "$name" "not true ${seconds}s after the event: $*"
      return
    fi
    if "$@"; then
      pass "$name"
      e2e_log "$name: after $((t - t0)) ms"
      return
    fi
    sleep 0.1
  done
}
# check_delay NAME T0_MS SECONDS T_MS: the event at T_MS (from a log line or an object)
# happened within SECONDS after T0_MS.
check_delay() {
  [ -n "$4" ] || { fail "$1" "did not happen"; return; }
  local delay=$(($4 - $2))
  e2e_log "$1: $delay ms"
  if [ "$delay" -ge 0 ] && [ "$delay" -le $(($3 * 1000)) ]; then pass "$1 ($delay ms)"; else
    fail "$1" "after $delay ms"; fi
}
rfc3339_ms() { [ -n "$1" ] && date -d "$1" +%s%3N; }
# flood SECONDS: ping web-a quickly from client-c, in the background, bounded in time.
flood() {
  ip netns exec "$netns_client" timeout "$1" ping -q -i 0.002 -s 200 "$ip_a" > /dev/null 2>&1 &
  floods+=($!)
}
# listing ADDR: "id node state" of the namespace's captures, sorted.
listing() {
  grpc "$1" ListCaptures "{\"namespace\":\"$ns\",\"page_size\":100}" 2> /dev/null |
    jq -r '.captures[]? | "\(.id) \(.node) \(.state)"' | sort
}
# same_listings: the three replicas list the same captures, one RUNNING per node.
same_listings() {
  local first i
  first=$(listing "${replica[0]}")
  [ "$(awk '$3 == "RUNNING" {print $2}' <<< "$first" | sort | tr '\n' ' ')" = "node-a node-b node-c " ] || {
    e2e_log "replica 0 lists: $(echo $first)"; return 1; }
  for i in 1 2; do
    [ "$(listing "${replica[$i]}")" = "$first" ] || {
      e2e_log "replica $i lists: $(listing "${replica[$i]}" | tr '\n' ' ') / replica 0: $(echo $first)"; return 1; }
  done
  e2e_log "all three list: $(echo $first)"
}
# holder NODE: the replica index holding NODE's Lease ("" if none).
lease_holder() {
  kubectl get lease -n kube-system "capture-node-$1" -o jsonpath='{.spec.holderIdentity}' 2>/dev/null |
    sed -n 's/^aggregator-\([0-9]\)$/\1/p'
}
# requests_of I OPERATION: replica I's packetcapture_aggregator_object_requests_total for
# that operation (0 when it has sent none).
requests_of() {
  local metrics
  metrics=$(tr ' ' '\n' <<< "$AGGREGATORS_METRICS" | sed -n "s/^$1=//p")
  curl -s --max-time 5 "http://$metrics/metrics" |
    awk -v series="packetcapture_aggregator_object_requests_total{operation=\"$2\"}" \
      '$1 == series { n = $2 } END { printf "%d\n", n }'
}
lease_address() {
  kubectl get lease -n kube-system "capture-node-$1" \
    -o jsonpath='{.metadata.annotations.packetcapture\.antrea\.io/address}' 2>/dev/null
}
# attempts: the agent's stream starts and ends so far (a reconnect storm shows here).
attempts() { grep -cE 'event=uplink_(connected|disconnected)' "$CLUSTER_STATE/logs/agent-node-a.log"; }
# first_connect_after T0_MS: "<ms> <address>" of node-a's agent's first connection after T0.
first_connect_after() {
  local ts address t
  while read -r ts address; do
    t=$(rfc3339_ms "$ts") || continue
    [ "$t" -lt "$1" ] || { echo "$t $address"; return 0; }
  done < <(sed -n 's/^ts=\([^ ]*\) event=uplink_connected aggregator="\([^"]*\)".*/\1 \2/p' \
    "$CLUSTER_STATE/logs/agent-node-a.log")
  return 1
}
acked() { field "$agent_a" web-a bytes_uploaded; }  # what the agent had acknowledged
# snapshot NAME ADDR: ADDR's pcap of web-a's capture, as packet lines, in $work/NAME.txt.
snapshot() {
  download "$2" "$id_a" "$work/$1.pcap"
  packets "$work/$1.pcap" > "$work/$1.txt"
  e2e_log "snapshot $1 from $2: $(wc -l < "$work/$1.txt") packets, $(stat -c %s "$work/$1.pcap") bytes"
}
# kept BEFORE AFTER: every packet of snapshot BEFORE is in snapshot AFTER.
kept() {
  local missing
  missing=$(comm -23 <(sort -u "$work/$1.txt") <(sort -u "$work/$2.txt") | wc -l)
  e2e_log "$1: $(wc -l < "$work/$1.txt") packets; $2: $(wc -l < "$work/$2.txt"); missing from $2: $missing"
  [ "$missing" -eq 0 ] && [ -s "$work/$1.txt" ]
}
# same_as_node ADDR: ADDR's pcap of web-a has exactly the packets of node-a's own files.
# Packets keep arriving after a flood (IPv6 router solicitations, ever further apart), so
# ADDR may lack the newest one for the agent's batch delay (1 s) plus a poll: retried.
same_as_node() {
  snapshot node "$agent_a" 2> /dev/null
  snapshot replica "$1" 2> /dev/null
  e2e_log "node-a's files: $(wc -l < "$work/node.txt") packets; $1: $(wc -l < "$work/replica.txt")"
  [ -s "$work/node.txt" ] && cmp -s "$work/node.txt" "$work/replica.txt" && return 0
  diff "$work/node.txt" "$work/replica.txt" | head -4 >&2
  return 1
}
# explain_difference ADDR: after same_as_node failed for good, what tells why (kept in the
# log and in $CLUSTER_STATE/logs, which stay after a failure): the differing packet lines
# with their places, the node's files and ADDR's catalog view of them (size, packets), the
# capture's data objects in the store, the agent's uplink counters and the log lines of
# the agent's stream and of the replicas about web-a's capture.
explain_difference() {
  local keep="$CLUSTER_STATE/logs/same-as-node" agent_metrics
  mkdir -p "$keep"
  cp "$work/node.txt" "$work/replica.txt" "$work/node.pcap" "$work/replica.pcap" "$keep/" 2> /dev/null
  e2e_log "difference node-a (<) / $1 (>), $(wc -l < "$work/node.txt") / $(wc -l < "$work/replica.txt") packets:"
  diff "$work/node.txt" "$work/replica.txt" | head -20 >&2
  e2e_log "node-a's files (name generation size packets):"
  grpc "$agent_a" ListCaptures '{"pod":"web-a"}' 2> /dev/null |
    jq -r '.captures[0].files[]? | "  \(.name) \(.generation) \(.size) \(.packets)"' >&2
  e2e_log "$1's catalog view (name generation size packets):"
  grpc "$1" ListCaptures '{"pod":"web-a"}' 2> /dev/null |
    jq -r '.captures[0] | "  state \(.state) bytes \(.bytes) packets \(.packets)", (.files[]? | "  \(.name) \(.generation) \(.size) \(.packets)")' >&2
  e2e_log "data objects of $id_a (path bytes):"
  find "$(objects_dir)/data/$id_a" -type f -printf '  %P %s\n' 2> /dev/null | sort -V >&2
  agent_metrics=$(tr ' ' '\n' <<< "$AGENT_METRICS" | sed -n 's/^node-a=//p')
  e2e_log "node-a's Lease: $(kubectl get lease -n kube-system capture-node-node-a -o jsonpath='{.spec.holderIdentity} since {.spec.acquireTime}')"
  e2e_log "node-a's agent's uplink counters:"
  curl -s --max-time 5 "http://$agent_metrics/metrics" | grep '^packetcapture_agent_uplink' | sed 's/^/  /' >&2
  e2e_log "node-a's agent's stream (last 30 uplink lines):"
  grep 'event=uplink_' "$CLUSTER_STATE/logs/agent-node-a.log" | tail -30 | sed 's/^/  /' >&2
  e2e_log "the replicas' lines about $id_a (last 40):"
  grep -F -- "$id_a" "$CLUSTER_STATE"/logs/aggregator-*.log | tail -40 | sed 's/^/  /' >&2
}
# check_same_as_node NAME ADDR: same_as_node within 10 s, explained when it fails.
check_same_as_node() {
  if eventually 10 same_as_node "$2"; then pass "$1"; else
    fail "$1" "not true within 10s: same_as_node $2"
    explain_difference "$2"
  fi
}
# downloads_agree MODE: the three replicas' downloads of web-a (fetched at once) are the
# same bytes (MODE identical), or, while the capture still runs, each a prefix of the
# longest (MODE prefix: a replica may be up to the listing-freshness bound behind).
downloads_agree() {
  local i longest=0 pids=()
  for i in 0 1 2; do
    download "${replica[$i]}" "$id_a" "$work/r$i.pcap" &
    pids+=($!)
  done
  wait "${pids[@]}"
  for i in 1 2; do [ "$(stat -c %s "$work/r$i.pcap")" -gt "$(stat -c %s "$work/r$longest.pcap")" ] && longest=$i; done
  e2e_log "downloads ($1): $(for i in 0 1 2; do printf 'replica %s %s bytes %s; ' "$i" \
    "$(stat -c %s "$work/r$i.pcap")" "$(sha256sum < "$work/r$i.pcap" | cut -c1-12)"; done)"
  [ -s "$work/r0.pcap" ] || return 1
  for i in 0 1 2; do
    if [ "$1" = identical ]; then
      cmp -s "$work/r0.pcap" "$work/r$i.pcap" || return 1
    else
      cmp -s -n "$(stat -c %s "$work/r$i.pcap")" "$work/r$i.pcap" "$work/r$longest.pcap" || return 1
    fi
  done
}

# ---- a capture on a pod of each node, listed alike by every replica --------------------
for n in a b c; do kubectl annotate pod -n $ns "web-$n" tcpdump.antrea.io=20 > /dev/null; done
"$CLUSTER" traffic $ns client-c 4 > /dev/null
check_eventually "replica 0 lists a RUNNING capture on each of node-a, node-b, node-c" 30 bash -c \
  "[ \"\$(grpcurl -plaintext -d '{\"namespace\":\"$ns\"}' ${replica[0]} packetcapture.v1.CaptureService/ListCaptures |
      jq -r '[.captures[] | select(.state == \"RUNNING\") | .node] | sort | join(\" \")')\" = 'node-a node-b node-c' ]"
# Replicas learn another's captures from the catalog (polled every 2 s).
check_eventually "the three replicas list the same captures (id, node, state)" 10 same_listings
id_a=$(field "${replica[0]}" web-a id)
e2e_log "web-a's capture: $id_a"
# The README's lines (section "Replicas over an object store"), as typed there.
readme_ids=$(for r in $AGGREGATORS; do grpcurl -plaintext ${r#*=} packetcapture.v1.CaptureService/ListCaptures | jq -r '.captures[].id'; done)
check "the README's listing loop prints web-a's capture once per replica ($(grep -c -x "$id_a" <<< "$readme_ids"))" \
  test "$(grep -c -x "$id_a" <<< "$readme_ids")" = 3
readme_holder=$(kubectl -n kube-system get lease capture-node-node-a -o jsonpath='{.spec.holderIdentity}{"\n"}')
check "the README's Lease one-liner names a replica ($readme_holder)" \
  grep -qx 'aggregator-[012]' <<< "$readme_holder"

# ---- a slow capture: batches of about a second, not one object per agent poll ----------
# The replicas ask agents (Welcome) to hold a growing file's new bytes up to 256 KiB or 1 s.
# node-b's agent runs tcpdump in immediate mode (its agent.yaml), so its file grows with
# every packet: a 5-per-second ping of web-b for 6 s is new bytes at each of ~30 agent polls
# (one object each without batching); batched, it is about one object per second.
# (Without immediate mode libpcap hands packets over about once a second anyway.)
agent_b=$(agent_of node-b)
ip_b=$(kubectl get pod -n $ns web-b -o jsonpath='{.status.podIP}')
id_b0=$(field "$agent_b" web-b id)  # the capture started before the agent.yaml
echo "immediate_mode: true" > "$CLUSTER_STATE/nodes/node-b/agent.yaml"
"$CLUSTER" restart-agent node-b > /dev/null
kubectl annotate pod -n $ns web-b tcpdump.antrea.io- > /dev/null
kubectl annotate pod -n $ns web-b tcpdump.antrea.io=20 > /dev/null
b_immediate() {
  local id
  id=$(field "$agent_b" web-b id)
  [ -n "$id" ] && [ "$(field "$agent_b" web-b state)" = RUNNING ] && [ "$id" != "$id_b0" ] &&
    pgrep -af tcpdump | grep -F -- "$id" | grep -q -- --immediate-mode
}
check_eventually "node-b's agent runs web-b's new capture's tcpdump in immediate mode" 30 b_immediate
id_b=$(field "$agent_b" web-b id)
objects_b() {
  find "$(objects_dir)/data/$id_b" -type f 2> /dev/null | wc -l
}
check_eventually "the holder caught up with web-b before the trickle" 30 caught_up web-b "$agent_b" "${replica[0]}"
objects_before=$(objects_b)
holder_b=$(lease_holder node-b)
holder_b=${holder_b:-0}
puts_before=$(requests_of "$holder_b" PUT)
ip netns exec "$netns_client" timeout 6 ping -q -i 0.2 -s 200 "$ip_b" > /dev/null 2>&1
check_eventually "web-b's trickle reached the replicas" 15 caught_up web-b "$agent_b" "${replica[0]}"
objects_after=$(objects_b)
puts_after=$(requests_of "$holder_b" PUT)
check "node-b's holder aggregator-$holder_b counted a PUT for each new data object (PUTs +$((puts_after - puts_before)), objects +$((objects_after - objects_before)))" \
  test $((puts_after - puts_before)) -ge $((objects_after - objects_before))
e2e_log "web-b's data objects: $objects_before before a 6 s trickle, $objects_after after; packets $(field "$agent_b" web-b packets)"
check "a 6 s trickle of web-b became at most 10 data objects ($((objects_after - objects_before)))" \
  test $((objects_after - objects_before)) -ge 1 -a $((objects_after - objects_before)) -le 10
# A running capture's counts go out on its holder's counts board (one object for all the
# captures it holds), which the other replicas read with the catalog.
on_board() {
  protoc --decode_raw < "$(objects_dir)/catalog/counts/aggregator-$holder_b.pb" 2> /dev/null |
    grep -qF "\"$id_b\""
}
check_eventually "aggregator-$holder_b's counts board names web-b's running capture" 10 on_board
# Stopped, the capture's files are sealed: the holder compacts each into one object, and
# the download is the same bytes as before.
download "${replica[1]}" "$id_b" "$work/b-running.pcap"
kubectl annotate pod -n $ns web-b tcpdump.antrea.io- > /dev/null
one_object_per_file() {  # ID
  local dirs files
  files=$(find "$(objects_dir)/data/$1" -type f 2> /dev/null | wc -l)
  dirs=$(find "$(objects_dir)/data/$1" -type f -printf '%h\n' 2> /dev/null |
    sort -u | wc -l)
  [ "$files" -ge 1 ] && [ "$files" = "$dirs" ]
}
check_eventually "web-b's stopped capture is compacted to one object per file (from $objects_after)" 20 \
  one_object_per_file "$id_b"
e2e_log "web-b's data objects after compaction: $(objects_b)"
download "${replica[2]}" "$id_b" "$work/b-compacted.pcap"
# The capture took packets until it stopped (a neighbour probe after the ping, say): the
# earlier download is a prefix, and the packets are those the capture's status counts.
b_size=$(stat -c %s "$work/b-running.pcap")
e2e_log "web-b's download: $b_size bytes running, $(stat -c %s "$work/b-compacted.pcap") compacted"
check "web-b's download after compaction starts with the $b_size bytes downloaded before" \
  cmp -s -n "$b_size" "$work/b-running.pcap" "$work/b-compacted.pcap"
stopped_b() { [ "$(field "${replica[2]}" web-b state)" = STOPPED ]; }
check_eventually "replica 2 lists web-b's capture STOPPED" 15 stopped_b
# The last packets may reach the holder after the STOPPED status (tcpdump's flush): their
# counts are written at once, so replica 2 lists them within a catalog poll (2 s).
b_packets=$(packets "$work/b-compacted.pcap" | wc -l)
b_counted() { [ "$(field "${replica[2]}" web-b packets)" = "$b_packets" ]; }
check_eventually "replica 2 lists the $b_packets packets of web-b's compacted download" 5 b_counted
kubectl annotate pod -n $ns web-b tcpdump.antrea.io=20 > /dev/null
check_eventually "the three replicas list the same captures again" 20 same_listings

# ---- the replica holding node-a's Lease SIGKILLed mid-flood ----------------------------
check_eventually "node-a's Lease is held by one of the replicas" 10 bash -c \
  "$(declare -f lease_holder); [ -n \"\$(lease_holder node-a)\" ]"
holder=$(lease_holder node-a)
holder=${holder:-0}
e2e_log "node-a's Lease: aggregator-$holder at $(lease_address node-a)"
check "node-a's Lease carries its holder's address (${replica[$holder]})" \
  test "$(lease_address node-a)" = "${replica[$holder]}"
flood 12
sleep 3
snapshot prekill "${replica[$holder]}"
acked_before=$(acked)
kill -KILL "$(cat "$CLUSTER_STATE/pids/aggregator-$holder.pid")"
t_kill=$(now_ms)
e2e_log "SIGKILLed aggregator-$holder; the agent had $acked_before bytes acknowledged"
other_holder() { local h; h=$(lease_holder node-a); [ -n "$h" ] && [ "$h" != "$holder" ]; }
# When things happened comes from the Lease's acquireTime and the agent's log, so a slow
# check does not count against the system.
eventually 15 other_holder
check_delay "within 10 s of the SIGKILL another replica acquired node-a's Lease" "$t_kill" 10 \
  "$(other_holder && rfc3339_ms "$(kubectl get lease -n kube-system capture-node-node-a -o jsonpath='{.spec.acquireTime}')")"
eventually 15 first_connect_after "$t_kill" > /dev/null
reconnect=$(first_connect_after "$t_kill")
check_delay "within 10 s of the SIGKILL node-a's agent connected again" "$t_kill" 10 "${reconnect%% *}"
new_holder=$(lease_holder node-a)
# Still the dead one (the Lease never moved): go on with a live replica.
[ -n "$new_holder" ] && [ "$new_holder" != "$holder" ] || new_holder=$(((holder + 1) % 3))
e2e_log "node-a's Lease now: $(kubectl get lease -n kube-system capture-node-node-a -o jsonpath='{.spec.holderIdentity}'); the agent's first connection after the kill: ${reconnect:-none}"
check "node-a's agent reconnected to the Lease's new holder aggregator-$new_holder (${replica[$new_holder]}; got '${reconnect#* }')" \
  test "${reconnect#* }" = "${replica[$new_holder]}"
wait "${floods[@]}" 2> /dev/null
check_eventually "aggregator-$new_holder caught up with node-a after the SIGKILL" 30 \
  caught_up web-a "$agent_a" "${replica[$new_holder]}"
snapshot postkill "${replica[$new_holder]}"
check "nothing stored before the SIGKILL was lost (prekill packets all in postkill)" kept prekill postkill
check "the agent's acknowledged bytes did not go back ($acked_before -> $(acked))" \
  test "$(acked)" -ge "$acked_before"
"$CLUSTER" restart-aggregator --replica "$holder" > /dev/null 2>&1
check_eventually "aggregator-$holder is back" 20 grpcurl -plaintext -max-time 2 "${replica[$holder]}" grpc.health.v1.Health/Check
check_same_as_node "aggregator-$new_holder's pcap of web-a has node-a's packets exactly" \
  "${replica[$new_holder]}"
check_eventually "DownloadCapture of web-a from each replica is a prefix of the others' (running capture)" 10 \
  downloads_agree prefix

# ---- the object store down mid-flood, then back ----------------------------------------
flood 14
sleep 2
kill -KILL "$(cat "$CLUSTER_STATE/pids/object-store.pid")"
t_down=$(now_ms)
sleep 2  # what was in flight settles
acked1=$(acked) node1=$(field "$agent_a" web-a bytes) attempts1=$(attempts)
sleep 5
acked2=$(acked) node2=$(field "$agent_a" web-a bytes) attempts2=$(attempts)
e2e_log "store down: acknowledged $acked1 -> $acked2, node-a's capture $node1 -> $node2 bytes, stream starts/ends $((attempts2 - attempts1))"
check "with the object store down nothing more is acknowledged ($acked1 -> $acked2) while node-a captures ($node1 -> $node2)" \
  test -n "$acked1" -a "$acked1" = "$acked2" -a "${node2:-0}" -gt "${node1:-0}"
check "with the object store down the agent backs off (at most 6 stream starts/ends in 5 s: $((attempts2 - attempts1)))" \
  test $((attempts2 - attempts1)) -le 6
check "with the object store down web-a's capture still runs on node-a" \
  test "$(field "$agent_a" web-a state)" = RUNNING
"$CLUSTER" restart-object-store > /dev/null 2>&1
t_up=$(now_ms)
e2e_log "object store back after $((t_up - t_down)) ms"
check_within "once the store is back acknowledgements resume (beyond $acked2)" "$t_up" 30 \
  bash -c "$(declare -f field grpc acked); agent_a=$agent_a; [ \"\$(acked)\" -gt $acked2 ]"
wait "${floods[@]}" 2> /dev/null
# The Lease may have moved during the outage (a replica that takes node-a while the store
# is down cannot load it and lets it go again): the checks below still ask
# aggregator-$new_holder, which serves every acknowledged byte whether it holds node-a or not.
e2e_log "after the outage node-a's Lease: $(kubectl get lease -n kube-system capture-node-node-a -o jsonpath='{.spec.holderIdentity}')"
check_eventually "after the store's outage aggregator-$new_holder caught up with node-a" 60 \
  caught_up web-a "$agent_a" "${replica[$new_holder]}"
snapshot postoutage "${replica[$new_holder]}"
check "nothing stored before the outage was lost" kept postkill postoutage
check_same_as_node "after the outage aggregator-$new_holder's pcap has node-a's packets exactly" \
  "${replica[$new_holder]}"
# How the agent's stream went through the outage (a reconnection wait after it shows here).
e2e_log "node-a's agent's stream since the store's outage:"
sed -n 's/^ts=\([^ ]*\) event=\(uplink_[a-z_]*\)/\1 \2/p' "$CLUSTER_STATE/logs/agent-node-a.log" |
  awk -v t0="$(date -u -d "@$((t_down / 1000))" +%FT%T)" '$1 >= t0' | tail -20 | sed 's/^/  /' >&2
check_eventually "after it all the three replicas still list the same captures" 10 same_listings

# ---- the capture stopped: its final bytes, the same from every replica -------------------
kubectl annotate pod -n $ns web-a tcpdump.antrea.io- > /dev/null
stopped_everywhere() {
  local i
  for i in 0 1 2; do [ "$(field "${replica[$i]}" web-a state)" = STOPPED ] || return 1; done
}
check_eventually "every replica lists web-a's capture STOPPED" 20 stopped_everywhere
# Once the agent has uploaded and deleted its files it reports the capture off the node; the
# holder then writes the entry as final (field 5, files_final), which a later takeover of
# node-a takes as written instead of listing its objects again.
entry_final() {
  protoc --decode_raw < "$(objects_dir)/catalog/$id_a.pb" 2> /dev/null | grep -qx '5: 1'
}
check_eventually "web-a's catalog entry says files_final once its agent reported it drained" 20 \
  entry_final
check_eventually "DownloadCapture of the stopped capture is byte-identical from all three replicas" 10 \
  downloads_agree identical

# ---- what the object store bills: every replica's requests, by operation ----------------
e2e_log "object store requests by replica (PUT GET LIST DELETE), from packetcapture_aggregator_object_requests_total:"
for i in 0 1 2; do
  e2e_log "  aggregator-$i: $(requests_of $i PUT) $(requests_of $i GET) $(requests_of $i LIST) $(requests_of $i DELETE)"
done
lists_everywhere() {  # every replica lists the catalog every poll interval
  local i
  for i in 0 1 2; do [ "$(requests_of $i LIST)" -gt 0 ] || return 1; done
}
check "every replica's /metrics counts the LISTs of its catalog polls" lists_everywhere

# ---- the README's restart line: replica 0 killed and started again -----------------------
testing_readme_restart() { "$CLUSTER" restart-aggregator --kill --replica 0; }
check "the README's restart-aggregator --kill --replica 0 succeeds" testing_readme_restart
check_eventually "replica 0 serves again after the README's restart" 20 \
  grpcurl -plaintext -max-time 2 "${replica[0]}" grpc.health.v1.Health/Check
listed_alike() {
  local first
  first=$(listing "${replica[0]}")
  [ -n "$first" ] && [ "$(listing "${replica[1]}")" = "$first" ] &&
    [ "$(listing "${replica[2]}")" = "$first" ]
}
check_eventually "after the restart the three replicas list the same captures" 15 listed_alike

e2e_finish
