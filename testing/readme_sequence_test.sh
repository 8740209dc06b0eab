#!/usr/bin/env bash
# The README's local walkthrough in the order and state a person meets it, not on a fresh
# fixture: one state dir that outlives every run of this test (as the default
# /var/tmp/packet-capture-cluster outlives a person's sessions), the demo's sequence,
# `down`, `up` again in the same dir, `pod add`, annotate, and the capture listed by the
# aggregator. (Seen before: after `down` + `up` the aggregator rejected every agent,
# because a token minted with the deleted keys was reused.) Then, in the same dir, the
# README's object-store section as typed: `up --object-store --aggregators 3`, the capture
# listed by every replica, the node's Lease, and a SIGKILL of the replica holding it.
# Needs root.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
E2E_SUITE=readme_sequence
source "$here/e2e_lib.sh"

CLUSTER=${CLUSTER:-$here/cluster.sh}
# Reused on purpose: never deleted here, only `down`ed.
export CLUSTER_STATE=${README_TEST_STATE:-/var/tmp/packet-capture-readme-test}
trap '"$CLUSTER" down > /dev/null 2>&1' EXIT
[ -d "$CLUSTER_STATE" ] && e2e_log "reusing the state dir $CLUSTER_STATE of an earlier run"

up() {  # NAME [more arguments of up]
  local name=$1
  shift
  if ! "$CLUSTER" up --nodes 2 "$@"; then
    fail "$name" "see $CLUSTER_STATE/logs"
    e2e_finish
    exit 1
  fi
  pass "$name"
  eval "$("$CLUSTER" env)"
  export PATH="$CLUSTER_TOOLS:$PATH"
}

listed() {  # POD [ADDR]: the aggregator (at ADDR) lists the pod's capture RUNNING on node-a,
  # with data
  local json
  json=$(grpc "${2:-$AGGREGATOR}" ListCaptures "{\"namespace\":\"demo\",\"pod\":\"$1\"}" \
    2>/dev/null) &&
    [ "$(jq -r '.captures[0].state' <<< "$json")" = RUNNING ] &&
    [ "$(jq -r '.captures[0].node' <<< "$json")" = node-a ] &&
    [ "$(jq -r '.captures[0].bytes_uploaded // "0"' <<< "$json")" -gt 0 ]
}

walkthrough() {  # ROUND
  "$CLUSTER" pod add node-a demo web-1 > /dev/null
  "$CLUSTER" pod add node-a demo client-1 > /dev/null
  kubectl annotate pod -n demo web-1 tcpdump.antrea.io=3 > /dev/null
  "$CLUSTER" traffic demo client-1 20 2> /dev/null
  check_eventually "$1: the aggregator lists web-1's capture with uploaded bytes" 30 listed web-1
}

# Rejections logged by the aggregator since its last start (the log is appended across runs).
rejections() {
  awk '/^=== .* starting/ {n = 0} /invalid bearer token/ {n++} END {print n + 0}' \
    "$CLUSTER_STATE/logs/aggregator.log"
}

"$CLUSTER" down > /dev/null 2>&1  # whatever an earlier, interrupted run left
up "up --nodes 2 (the demo's cluster)"
walkthrough "the demo"
if "$CLUSTER" down > /dev/null; then pass "down"; else fail "down"; fi
up "up --nodes 2 again, in the same state dir"
walkthrough "after down + up"
check "the aggregator rejected no agent since the second up" test "$(rejections)" = 0

# The README's "Replicas over an object store", in the same state dir.
lease() {  # FIELD of node-a's Lease
  kubectl -n kube-system get lease capture-node-node-a -o jsonpath="{.spec.$1}" 2>/dev/null
}
every_replica_lists() {  # POD
  local r
  for r in $AGGREGATORS; do listed "$1" "${r#*=}" || return 1; done
}
epoch_above() { [ "$(lease leaseTransitions)" -gt "$1" ] 2>/dev/null; }

if "$CLUSTER" down > /dev/null; then pass "down"; else fail "down"; fi
up "up --object-store --aggregators 3, in the same state dir" --object-store --aggregators 3
check "env names three replicas and the object store" \
  test "$(wc -w <<< "$AGGREGATORS")" = 3 -a -n "$OBJECT_STORE"
walkthrough "over the object store"
check_eventually "every replica lists web-1's capture" 20 every_replica_lists web-1
holder=$(lease holderIdentity)
epoch=$(lease leaseTransitions)
if [[ "$holder" =~ ^aggregator-([0-2])$ ]]; then
  pass "node-a's Lease names its holder ($holder, epoch ${epoch:-0})"
  "$CLUSTER" traffic demo client-1 30 2> /dev/null
  if "$CLUSTER" restart-aggregator --kill --replica "${BASH_REMATCH[1]}" > /dev/null; then
    pass "restart-aggregator --kill --replica ${BASH_REMATCH[1]}"
  else
    fail "restart-aggregator --kill --replica ${BASH_REMATCH[1]}"
  fi
  # The Lease runs out in 8 s; the agent's next replica takes it over with a new epoch.
  check_eventually "another replica takes node-a over" 20 epoch_above "${epoch:-0}"
  check_eventually "every replica still lists web-1's capture" 20 every_replica_lists web-1
else
  fail "node-a's Lease names its holder" "holderIdentity '$holder'"
fi
e2e_finish
