#!/usr/bin/env bash
# Node Leases (aggregator/node_lease.h) against a real kube-apiserver from the local cluster
# harness, as the aggregator's own ServiceAccount with k8s/with-object-store/lease-rbac.yaml
# applied: the RBAC grants what the leases need and no more; two "replicas" (the
# node_lease_tool binary) contend for one node: the holder keeps it past its duration by
# renewing, the other is refused and told the holder's address; once the holder dies
# without releasing, the other takes over after expiry with the next epoch; a release lets
# the first take it back at once, with the next epoch again; a holder whose Lease someone
# else writes notices it ("lost") at its next renewal; the holder's liveness is a replica
# Lease of its own that the node Lease names by incarnation, and a holder whose replica Lease
# someone else writes drops its nodes; a 253-character node name works.
# Needs root.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
E2E_SUITE=node_lease_e2e
source "$here/e2e_lib.sh"

CLUSTER=${CLUSTER:-$here/cluster.sh}
RBAC=${LEASE_RBAC:-$here/../k8s/with-object-store/lease-rbac.yaml}
TOOL=$(readlink -f "${NODE_LEASE_TOOL_BIN:-$here/../bazel-bin/aggregator/node_lease_tool}")
export CLUSTER_STATE=${CLUSTER_STATE:-$(mktemp -d /tmp/pc-node-lease-e2e.XXXXXX)}
work=$(mktemp -d /tmp/pc-node-lease-e2e-work.XXXXXX)
trap 'for p in $(jobs -p); do kill "$p" 2>/dev/null; done; "$CLUSTER" down >/dev/null 2>&1; rm -rf "$work"' EXIT

"$CLUSTER" down >/dev/null 2>&1
if ! "$CLUSTER" up --nodes 1 --no-aggregator; then
  fail "cluster comes up" "see $CLUSTER_STATE/logs"
  e2e_finish
  exit 1
fi
eval "$("$CLUSTER" env)"
export PATH="$CLUSTER_TOOLS:$PATH"

# --- RBAC: exactly get/create/update/patch on Leases in kube-system ---
check "lease-rbac.yaml applies" bash -c "kubectl apply -f '$RBAC' >&2"
sa=system:serviceaccount:kube-system:capture-aggregator
can() { [ "$(kubectl auth can-i "$@" --as "$sa" 2>/dev/null)" = yes ]; }
for verb in get create update patch; do
  check "the aggregator may $verb leases in kube-system" can "$verb" leases.coordination.k8s.io -n kube-system
done
for denied in "delete leases.coordination.k8s.io -n kube-system" "list leases.coordination.k8s.io -n kube-system" \
  "update leases.coordination.k8s.io -n default"; do
  # shellcheck disable=SC2086
  check "the aggregator may not $denied" bash -c "! kubectl auth can-i $denied --as $sa 2>/dev/null | grep -qx yes"
done

# replica ID ADDR NODE [FLAGS...]: the tool as that replica, with the aggregator's identity.
replica() {
  local id=$1 addr=$2 node=$3
  shift 3
  "$TOOL" --kubeconfig="$CLUSTER_STATE/aggregator.kubeconfig" --namespace_name=kube-system \
    --identity="$id" --address="$addr" --node="$node" --lease_duration=2s "$@"
}
lease_field() {  # NODE JSONPATH
  kubectl get lease -n kube-system "capture-node-$1" -o "jsonpath=$2" 2>/dev/null
}
A=198.18.0.1:9090
B=198.18.0.2:9090

# --- a creates the Lease and keeps it past its duration ---
replica a "$A" node-x --hold=5s > "$work/a1" 2>"$work/a1.err" &
a1=$!
check_eventually "a acquires node-x first, epoch 0" 10 grep -qx "acquired epoch=0" "$work/a1"
out=$(replica b "$B" node-x 2>/dev/null); rc=$?
check "b is refused and told a's address (exit $rc: $out)" \
  test "$rc $out" = "3 held holder=a address=$A"
sleep 3  # past the 2 s duration: only renewals keep it
out=$(replica b "$B" node-x 2>/dev/null); rc=$?
check "a still holds node-x after its lease duration, by renewing (b: $out)" test "$rc" = 3
# Node Leases last 5 x --lease_duration; a's liveness is its own Lease, renewed every third
# of 2 s, which the node Lease names by incarnation.
check "the Lease records a as holder, its address, 10 s, epoch 0" \
  test "$(lease_field node-x '{.spec.holderIdentity} {.metadata.annotations.packetcapture\.antrea\.io/address} {.spec.leaseDurationSeconds} {.spec.leaseTransitions}')" = "a $A 10 0"
incarnation=$(lease_field node-x '{.metadata.annotations.packetcapture\.antrea\.io/incarnation}')
check "a's replica Lease names the same incarnation ($incarnation), 2 s" \
  test "$(kubectl get lease -n kube-system capture-replica-a -o 'jsonpath={.spec.holderIdentity} {.metadata.annotations.packetcapture\.antrea\.io/incarnation} {.spec.leaseDurationSeconds}')" = "a $incarnation 2"
check "renewTime is a MicroTime" \
  bash -c "[[ '$(lease_field node-x '{.spec.renewTime}')' =~ ^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}\.[0-9]{6}Z$ ]]"
wait "$a1"
check "a held it for its whole hold time" grep -qx "done holds=1" "$work/a1"

# --- a died without releasing: b takes over once a's replica Lease has expired ---
# (b waits, as the aggregator does: it takes a lease only once it has also read it unchanged
# for half its duration by its own clock, so a replica whose clock runs ahead takes nothing.)
died=$(date +%s%N)
b_takes() { replica b "$B" node-x --wait --hold=2s --release > "$work/b1" 2>/dev/null; }
check_eventually "b takes node-x over after a's replica lease expired" 8 b_takes
# b's acquireTime stays in the Lease after its release.
acquired=$(lease_field node-x '{.spec.acquireTime}')
took_ms=$((($(date -d "$acquired" +%s%N) - died) / 1000000))
e2e_log "takeover ${took_ms} ms after a stopped renewing (acquireTime $acquired)"
check "b's epoch is 1" grep -qx "acquired epoch=1" "$work/b1"
check "not before a's lease expired: 1000 ms <= ${took_ms} ms <= 4000 ms" \
  test "$took_ms" -ge 1000 -a "$took_ms" -le 4000
check "b released it at the end (holder and address cleared, epoch kept)" \
  test "$(lease_field node-x '{.spec.holderIdentity}/{.metadata.annotations.packetcapture\.antrea\.io/address}/{.spec.leaseTransitions}')" = "//1"

# --- a release lets another replica take the node at once ---
replica a "$A" node-x --hold=4s > "$work/a2" 2>/dev/null &
a2=$!
# One attempt, no retry: it succeeds only if the Lease is free now (b's would expire in 2 s).
check_eventually "a takes node-x again at once after b's release, epoch 2" 5 grep -qx "acquired epoch=2" "$work/a2"
check "the Lease counts 2 transitions" test "$(lease_field node-x '{.spec.leaseTransitions}')" = 2

# --- someone else writes the Lease: a notices at its next renewal ---
patch="{\"spec\":{\"holderIdentity\":\"c\",\"renewTime\":\"$(date -u +%Y-%m-%dT%H:%M:%S.000000Z)\"}}"
check "c (the admin) writes the Lease" \
  bash -c "kubectl patch lease -n kube-system capture-node-node-x --type=merge -p '$patch' >&2"
# (its next renewal of the node Lease: every third of 10 s)
check_eventually "a reports the lease lost" 6 grep -qx lost "$work/a2"
wait "$a2"
check "a no longer holds it" grep -qx "done holds=0" "$work/a2"
check "a did not write over c" test "$(lease_field node-x '{.spec.holderIdentity}')" = c

# --- another process writes a's replica Lease: a drops its nodes at its next renewal ---
replica a "$A" node-y --hold=6s > "$work/a3" 2>/dev/null &
a3=$!
check_eventually "a takes node-y" 5 grep -q "^acquired" "$work/a3"
check "someone writes a's replica Lease with another incarnation" \
  bash -c "kubectl annotate lease -n kube-system capture-replica-a --overwrite packetcapture.antrea.io/incarnation=another >&2"
# (the replica Lease is renewed every third of 2 s)
check_eventually "a reports node-y lost" 3 grep -qx lost "$work/a3"
wait "$a3"
check "a no longer holds node-y" grep -qx "done holds=0" "$work/a3"

# --- the longest node name ---
long=$(printf '%063d' 0 | tr 0 a).$(printf '%063d' 0 | tr 0 b).$(printf '%063d' 0 | tr 0 c).$(printf '%061d' 0 | tr 0 d)
out=$(replica a "$A" "$long" --release 2>&1)
check "a ${#long}-character node name gets a Lease ($out)" grep -q "acquired epoch=0" <<< "$out"
check "its Lease name is at most 253 characters and found by prefix" \
  bash -c "kubectl get lease -n kube-system -o name | grep -E '^lease.coordination.k8s.io/capture-node-aaa.{1,240}$' >/dev/null"

e2e_finish
