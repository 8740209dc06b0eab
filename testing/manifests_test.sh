#!/usr/bin/env bash
# The Kubernetes manifests (k8s/) against a real kube-apiserver from the local
# cluster harness: every manifest and the kustomization pass a server-side
# dry run (schema, defaulting and validation, e.g. allowPrivilegeEscalation
# with CAP_SYS_ADMIN), and the RBAC grants exactly what the agent and the
# aggregator need (kubectl auth can-i as their ServiceAccounts). Needs root.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
E2E_SUITE=manifests
source "$here/e2e_lib.sh"

CLUSTER=${CLUSTER:-$here/cluster.sh}
K8S=${K8S_DIR:-$(cd "$here/../k8s" && pwd)}
export CLUSTER_STATE=${CLUSTER_STATE:-$(mktemp -d /tmp/pc-manifests.XXXXXX)}
trap '"$CLUSTER" down >/dev/null 2>&1' EXIT

# Only one local cluster can run on a machine (its bridge is pcbr-fabric):
# wait for another test's cluster to go away rather than tearing it down.
waited=0
while ip link show pcbr-fabric >/dev/null 2>&1; do
  if [ "$waited" -ge 600 ]; then
    fail "no other local cluster is running" "pcbr-fabric still exists after 600 s"
    e2e_finish
    exit 1
  fi
  [ "$waited" -eq 0 ] && e2e_log "another local cluster is up; waiting up to 10 min"
  sleep 5
  waited=$((waited + 5))
done

if ! "$CLUSTER" up --nodes 1 --no-aggregator; then
  fail "cluster comes up" "see $CLUSTER_STATE/logs"
  e2e_finish
  exit 1
fi
eval "$("$CLUSTER" env)"
export PATH="$CLUSTER_TOOLS:$PATH"

dry_run() { kubectl apply --dry-run=server -f "$1" >&2; }
for f in rbac.yaml daemonset.yaml test-pod.yaml; do
  check "k8s/$f passes a server-side dry run" dry_run "$K8S/$f"
done
# kustomize does not follow Bazel's runfiles symlinks: use a plain copy.
kdir=$(mktemp -d /tmp/pc-manifests-k8s.XXXXXX)
cp -L "$K8S"/*.yaml "$kdir/"
check "kubectl apply -k k8s/ passes a server-side dry run" \
  bash -c "kubectl apply -k '$kdir' --dry-run=server >&2"
rm -rf "$kdir"
# The harness applied rbac.yaml already; applying it again is a no-op.
check "k8s/rbac.yaml applies for real" bash -c "kubectl apply -f '$K8S/rbac.yaml' >&2"
check "kind-config.yaml is a 3-node kind cluster without the default CNI" bash -c \
  "grep -q 'disableDefaultCNI: true' '$K8S/kind-config.yaml' &&
   [ \$(grep -c 'role: control-plane' '$K8S/kind-config.yaml') -eq 1 ] &&
   [ \$(grep -c 'role: worker' '$K8S/kind-config.yaml') -eq 2 ]"

# can_i SA ANSWER VERB RESOURCE [ARGS...]: kubectl auth can-i as the
# ServiceAccount kube-system/SA prints ANSWER.
can_i() {
  local sa=$1 want=$2
  shift 2
  local got
  got=$(kubectl auth can-i --as="system:serviceaccount:kube-system:$sa" "$@" 2>/dev/null)
  [ "$got" = "$want" ]
}
for v in list watch get; do
  check "capture-agent can $v pods" can_i capture-agent yes "$v" pods -A
done
for v in create patch; do
  check "capture-agent can $v events" can_i capture-agent yes "$v" events -n default
done
check "capture-agent cannot delete pods" can_i capture-agent no delete pods -A
check "capture-agent cannot get secrets" can_i capture-agent no get secrets -A
check "capture-agent cannot create pods" can_i capture-agent no create pods -n default
check "capture-agent cannot update pods" can_i capture-agent no update pods -n default
check "capture-agent cannot list nodes" can_i capture-agent no list nodes
check "capture-aggregator can create tokenreviews" \
  can_i capture-aggregator yes create tokenreviews.authentication.k8s.io
check "capture-aggregator cannot list pods" can_i capture-aggregator no list pods -A
check "capture-aggregator cannot get secrets" can_i capture-aggregator no get secrets -A

e2e_finish
