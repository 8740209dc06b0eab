#!/usr/bin/env bash
# The Kubernetes manifests (k8s/) against a real kube-apiserver from the local
# cluster harness: every manifest and the three kustomize variants (k8s/:
# agents only; k8s/with-aggregator: agents + aggregator; k8s/with-object-store:
# agents + aggregator replicas over an object store) pass a server-side dry run
# (schema, defaulting and validation, e.g. allowPrivilegeEscalation with
# CAP_SYS_ADMIN); the variants hold the right objects and agent config; the
# pieces agree with each other (token audience and path, agent identity,
# Service address, image and binaries); the aggregator's pod passes the
# "restricted" Pod Security Standard; and the RBAC grants exactly what the
# agent and the aggregator need (kubectl auth can-i as their
# ServiceAccounts). The object-store variant's own checks are in
# testing/manifests_object_store.sh. Needs root.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
E2E_SUITE=manifests
source "$here/e2e_lib.sh"
source "$here/manifests_object_store.sh"

CLUSTER=${CLUSTER:-$here/cluster.sh}
K8S=${K8S_DIR:-$(cd "$here/../k8s" && pwd)}
DOCKERFILE=${DOCKERFILE:-$here/../Dockerfile}  # a runfile under Bazel
own_state=""
if [ -z "${CLUSTER_STATE:-}" ]; then
  CLUSTER_STATE=$(mktemp -d /tmp/pc-manifests.XXXXXX)
  own_state=$CLUSTER_STATE
fi
export CLUSTER_STATE
work=$(mktemp -d /tmp/pc-manifests-k8s.XXXXXX)
# The cluster goes down in any case; its state (logs) stays only after a failure.
cleanup() {
  "$CLUSTER" down >/dev/null 2>&1
  rm -rf "$work"
  if [ -n "$own_state" ] && [ "$E2E_FAILED" -eq 0 ]; then rm -rf "$own_state"; fi
}
trap cleanup EXIT

AGGREGATOR_ADDRESS=capture-aggregator.kube-system.svc:9090

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

# kustomize does not follow Bazel's runfiles symlinks: use a plain copy.
kdir="$work/k8s"
mkdir -p "$kdir"
cp -rL "$K8S"/. "$kdir/"

dry_run() { kubectl apply --dry-run=server -f "$1" >&2; }
for f in base/rbac.yaml base/daemonset.yaml aggregator/aggregator.yaml test-pod.yaml; do
  check "k8s/$f passes a server-side dry run" dry_run "$kdir/$f"
done

# The variants: kubectl kustomize renders them, the server accepts the
# result (its defaulted objects land in $work/<variant>.json), and so does
# kubectl apply -k as a user types it.
for variant in plain with-aggregator with-object-store; do
  dir=$kdir
  [ "$variant" = plain ] || dir="$kdir/$variant"
  name="k8s/"
  [ "$variant" = plain ] || name="k8s/$variant"
  check "kubectl kustomize $name renders" \
    bash -c "kubectl kustomize '$dir' > '$work/$variant.yaml'"
  check "kubectl kustomize $name output passes a server-side dry run" \
    bash -c "kubectl apply --dry-run=server -o json -f '$work/$variant.yaml' > '$work/$variant.json'"
  check "kubectl apply -k $name passes a server-side dry run" \
    bash -c "kubectl apply -k '$dir' --dry-run=server >&2"
done

# kinds VARIANT: "Kind/namespace/name" of every object, sorted.
kinds() {
  jq -r '(if .kind == "List" then .items[] else . end)
         | "\(.kind)/\(.metadata.namespace // "")/\(.metadata.name)"' "$work/$1.json" | sort
}
# obj VARIANT KIND NAME: one object of a variant's dry-run result.
obj() {
  jq --arg k "$2" --arg n "$3" \
    '(if .kind == "List" then .items[] else . end) | select(.kind == $k and .metadata.name == $n)' \
    "$work/$1.json"
}
# agent_config VARIANT: the agent's config.yaml, without comments.
agent_config() {
  obj "$1" ConfigMap capture-agent-config | jq -r '.data["config.yaml"]' |
    sed -e 's/[[:space:]]*#.*$//' -e '/^[[:space:]]*$/d' | sort
}
plain_objects="ClusterRole//packet-capture-agent
ClusterRole//packet-capture-aggregator
ClusterRole//packet-capture-reader
ClusterRoleBinding//packet-capture-agent
ClusterRoleBinding//packet-capture-aggregator
ConfigMap/kube-system/capture-agent-config
DaemonSet/kube-system/capture-agent
Role/kube-system/packet-capture-aggregator
RoleBinding/kube-system/packet-capture-aggregator
ServiceAccount/kube-system/capture-agent
ServiceAccount/kube-system/capture-aggregator"
aggregator_objects="Deployment/kube-system/capture-aggregator
PersistentVolumeClaim/kube-system/capture-aggregator-data
Service/kube-system/capture-aggregator"
same() { [ "$1" = "$2" ] || { diff <(echo "$1") <(echo "$2") >&2; return 1; }; }
check "k8s/ holds the agent DaemonSet, its ConfigMap and the RBAC only" \
  same "$plain_objects" "$(kinds plain)"
check "k8s/with-aggregator holds the same plus the aggregator Deployment, Service and claim" \
  same "$(printf '%s\n%s\n' "$plain_objects" "$aggregator_objects" | sort)" "$(kinds with-aggregator)"
config_text() { obj "$1" ConfigMap capture-agent-config | jq -r '.data["config.yaml"]'; }
has_address_line() { grep -qx "[[:space:]]*aggregator: $AGGREGATOR_ADDRESS"; }
plain_no_aggregator() {
  local c
  c=$(config_text plain) && [ -n "$c" ] || return 1
  ! grep -q '^[[:space:]]*aggregator' <<< "$c"
}
check "k8s/: the agent config has no aggregator address" plain_no_aggregator
with_aggregator_address() {
  local c
  c=$(config_text with-aggregator) && has_address_line <<< "$c"
}
check "k8s/with-aggregator: the agent config carries aggregator: $AGGREGATOR_ADDRESS" \
  with_aggregator_address
check "the two agent configs differ by exactly the aggregator key" \
  same "$( { agent_config plain; echo "aggregator: $AGGREGATOR_ADDRESS"; } | sort)" "$(agent_config with-aggregator)"
template_annotation() {
  obj "$1" DaemonSet capture-agent | jq -r '.spec.template.metadata.annotations["capture-agent/config-version"]'
}
annotations_differ() {
  local a b
  a=$(template_annotation plain) && b=$(template_annotation with-aggregator) &&
    [ -n "$a" ] && [ -n "$b" ] && [ "$a" != "$b" ]
}
check "switching variants changes the agents' pod template (rolls the DaemonSet)" annotations_differ

# The pieces agree: the aggregator address is its Service; the agent's token
# is where the agent reads it, for the audience and identity the aggregator
# checks; both run the binaries the Dockerfile installs.
W=with-aggregator
service_address() {
  local svc
  svc=$(obj $W Service capture-aggregator)
  same "$AGGREGATOR_ADDRESS" \
    "$(jq -r '"\(.metadata.name).\(.metadata.namespace).svc:\(.spec.ports[] | select(.name == "grpc") | .port)"' <<< "$svc")" &&
    same "$(obj $W Deployment capture-aggregator | jq -c '.spec.template.metadata.labels')" \
      "$(jq -c '.spec.selector' <<< "$svc")"
}
check "the agents' aggregator address is the aggregator Service's name, namespace and grpc port" service_address
# flag_value JSON-OBJECT FLAG: --FLAG=VALUE from the first container's command.
flag_value() {
  jq -r --arg f "--$2=" '.spec.template.spec.containers[0].command[] | select(startswith($f)) | ltrimstr($f)' <<< "$1"
}
token_matches() {
  local ds dep volume mount
  ds=$(obj $W DaemonSet capture-agent)
  dep=$(obj $W Deployment capture-aggregator)
  volume=$(jq -c '.spec.template.spec.volumes[] | select(.projected) | .projected.sources[] | select(.serviceAccountToken) | .serviceAccountToken' <<< "$ds")
  mount=$(jq -r '.spec.template.spec.containers[0].volumeMounts[] | select(.name == "aggregator-token") | .mountPath' <<< "$ds")
  same /var/run/secrets/tokens/aggregator-token "$mount/$(jq -r .path <<< "$volume")" &&
    same "$(jq -r .audience <<< "$volume")" "$(flag_value "$dep" audience)" &&
    same packet-capture-aggregator "$(flag_value "$dep" audience)" &&
    same 3600 "$(jq -r .expirationSeconds <<< "$volume")" &&
    same "system:serviceaccount:$(jq -r '.metadata.namespace' <<< "$ds"):$(jq -r '.spec.template.spec.serviceAccountName' <<< "$ds")" \
      "$(flag_value "$dep" agent_identity)"
}
check "the agents' projected token is at the agent's default path, for the aggregator's audience and agent identity" token_matches
aggregator_storage() {
  local dep pvc size
  dep=$(obj $W Deployment capture-aggregator)
  pvc=$(obj $W PersistentVolumeClaim capture-aggregator-data)
  size=$(jq -r '.spec.resources.requests.storage' <<< "$pvc")
  [ "$size" = 10Gi ] || { echo "claim size $size" >&2; return 1; }
  local max
  max=$(flag_value "$dep" max_bytes)
  [ "$max" -gt 0 ] && [ "$max" -lt $((10 * 1024 * 1024 * 1024)) ] || { echo "max_bytes $max" >&2; return 1; }
  same "$(flag_value "$dep" data_dir)" \
    "$(jq -r '.spec.template.spec.containers[0].volumeMounts[] | select(.name == "data") | .mountPath' <<< "$dep")" &&
    same capture-aggregator-data "$(jq -r '.spec.template.spec.volumes[] | select(.name == "data") | .persistentVolumeClaim.claimName' <<< "$dep")" &&
    same '1 Recreate capture-aggregator' \
      "$(jq -r '"\(.spec.replicas) \(.spec.strategy.type) \(.spec.template.spec.serviceAccountName)"' <<< "$dep")"
}
check "the aggregator: one replica, Recreate, its claim at --data_dir, --max_bytes below the 10Gi claim" aggregator_storage
# Metrics: the aggregator's /metrics port is declared, annotated for a Prometheus
# kubernetes-pods job and on its Service; the hostNetwork agent's stays on the node's
# loopback and is not annotated (a scrape of the node's address would fail).
aggregator_metrics_exposed() {
  local dep svc address port
  dep=$(obj $W Deployment capture-aggregator)
  svc=$(obj $W Service capture-aggregator)
  address=$(flag_value "$dep" metrics_address)
  port=${address##*:}
  same 0.0.0.0:9103 "$address" &&
    same "$port" "$(jq -r '.spec.template.spec.containers[0].ports[] | select(.name == "metrics") | .containerPort' <<< "$dep")" &&
    same "true $port /metrics" "$(jq -r '.spec.template.metadata.annotations | "\(.["prometheus.io/scrape"]) \(.["prometheus.io/port"]) \(.["prometheus.io/path"])"' <<< "$dep")" &&
    same "$port metrics" "$(jq -r '.spec.ports[] | select(.name == "metrics") | "\(.port) \(.targetPort)"' <<< "$svc")"
}
check "the aggregator's --metrics_address port is its metrics container port, Service port and prometheus.io annotations" \
  aggregator_metrics_exposed
agent_metrics_loopback() {
  local v ds
  for v in plain $W; do
    ds=$(obj $v DaemonSet capture-agent)
    same 127.0.0.1:9102 "$(flag_value "$ds" metrics_address)" &&
      same null "$(jq -r '.spec.template.metadata.annotations["prometheus.io/scrape"]' <<< "$ds")" || return 1
  done
}
check "the hostNetwork agent's --metrics_address is the node's loopback, not annotated for scraping" \
  agent_metrics_loopback
images_and_binaries() {
  local obj bin
  for obj in "$(obj $W DaemonSet capture-agent)" "$(obj $W Deployment capture-aggregator)"; do
    same packet-capture:latest "$(jq -r '.spec.template.spec.containers[0].image' <<< "$obj")" || return 1
    bin=$(jq -r '.spec.template.spec.containers[0].command[0]' <<< "$obj")
    [[ $bin == /usr/local/bin/* ]] || { echo "$bin" >&2; return 1; }
    # The runtime stage (after the last FROM) copies /out/<binary> to /usr/local/bin/.
    awk '/^FROM/ { s = "" } { s = s $0 "\n" } END { printf "%s", s }' "$DOCKERFILE" |
      grep -E "^COPY --from=build .*/out/${bin##*/} .*/usr/local/bin/$" >/dev/null ||
      { echo "the Dockerfile's runtime stage does not install $bin" >&2; return 1; }
  done
  ! grep -q '^ENTRYPOINT' "$DOCKERFILE" || { echo "the image has an ENTRYPOINT" >&2; return 1; }
}
check "both workloads run packet-capture:latest with a binary the Dockerfile installs" images_and_binaries

# Pod Security: the aggregator's pod is admitted in a namespace enforcing
# "restricted" (non-root, no capabilities, no privilege escalation, seccomp).
restricted_ok() {
  kubectl create namespace pc-restricted --dry-run=client -o yaml |
    kubectl label -f - --local -o yaml pod-security.kubernetes.io/enforce=restricted |
    kubectl apply -f - >&2 || return 1
  obj $W Deployment capture-aggregator |
    jq '{apiVersion: "v1", kind: "Pod", metadata: {name: "aggregator-psa", namespace: "pc-restricted"}, spec: .spec.template.spec}' |
    kubectl create --dry-run=server -f - >&2
}
check "the aggregator's pod passes the restricted Pod Security Standard" restricted_ok
agent_not_restricted() {
  # The check above has teeth: the agent's pod (hostNetwork, capabilities) is refused.
  obj $W DaemonSet capture-agent |
    jq '{apiVersion: "v1", kind: "Pod", metadata: {name: "agent-psa", namespace: "pc-restricted"}, spec: .spec.template.spec}' |
    kubectl create --dry-run=server -f - >/dev/null 2>&1 && return 1
  return 0
}
check "the agent's pod is refused by the same restricted namespace" agent_not_restricted
object_store_manifest_checks
runtime_default_seccomp() {
  local kind=$1 name=$2
  obj $W "$kind" "$name" | jq -e '.spec.template.spec as $p |
    [$p.containers[] | (.securityContext.seccompProfile.type // $p.securityContext.seccompProfile.type)] |
    all(. == "RuntimeDefault")' > /dev/null
}
check "the agent's containers run under the RuntimeDefault seccomp profile" \
  runtime_default_seccomp DaemonSet capture-agent
check "the aggregator's containers run under the RuntimeDefault seccomp profile" \
  runtime_default_seccomp Deployment capture-aggregator

# Switching variants for real: the agent ConfigMap follows the variant
# applied last (no controllers run here, so no pods start).
live_config() { kubectl -n kube-system get configmap capture-agent-config -o jsonpath='{.data.config\.yaml}'; }
live_has_address() {
  local c
  c=$(live_config) && has_address_line <<< "$c"
}
live_no_address() {
  local c
  c=$(live_config) && [ -n "$c" ] || return 1
  ! has_address_line <<< "$c"
}
check "kubectl apply -k k8s/ applies for real" bash -c "kubectl apply -k '$kdir' >&2"
check "  ... and the live agent config has no aggregator address" live_no_address
check "kubectl apply -k k8s/with-aggregator applies for real" bash -c "kubectl apply -k '$kdir/with-aggregator' >&2"
check "  ... and the live agent config points at the aggregator" live_has_address
check "kubectl apply -k k8s/with-object-store applies for real" bash -c "kubectl apply -k '$kdir/with-object-store' >&2"
check "  ... and the live agent config points at the aggregator Service" live_has_address
check "kubectl apply -k k8s/ again applies for real" bash -c "kubectl apply -k '$kdir' >&2"
check "  ... and the aggregator address is gone again" live_no_address

# The harness applied rbac.yaml already; applying it again is a no-op.
check "k8s/base/rbac.yaml applies for real" bash -c "kubectl apply -f '$K8S/base/rbac.yaml' >&2"
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
check "capture-agent cannot create tokenreviews" \
  can_i capture-agent no create tokenreviews.authentication.k8s.io
check "capture-agent cannot mint ServiceAccount tokens" \
  can_i capture-agent no create serviceaccounts/token -n kube-system
check "capture-aggregator can create tokenreviews" \
  can_i capture-aggregator yes create tokenreviews.authentication.k8s.io
check "capture-aggregator can get nodes" can_i capture-aggregator yes get nodes
check "capture-aggregator cannot list nodes" can_i capture-aggregator no list nodes
check "capture-aggregator can get pods in kube-system (the agents' pods)" \
  can_i capture-aggregator yes get pods -n kube-system
check "capture-aggregator cannot get pods elsewhere" can_i capture-aggregator no get pods -n default
check "capture-aggregator cannot get pods cluster-wide" can_i capture-aggregator no get pods -A
check "capture-aggregator cannot list pods" can_i capture-aggregator no list pods -n kube-system
check "capture-aggregator cannot watch pods" can_i capture-aggregator no watch pods -n kube-system
check "capture-aggregator cannot get secrets" can_i capture-aggregator no get secrets -A
check "capture-aggregator can create subjectaccessreviews" \
  can_i capture-aggregator yes create subjectaccessreviews.authorization.k8s.io
check "capture-aggregator cannot create localsubjectaccessreviews" \
  can_i capture-aggregator no create localsubjectaccessreviews.authorization.k8s.io -n default
# kubectl auth can-i cannot name a resource that discovery does not know.
may_read_captures() {  # USER NS -> the API server's "allowed"
  jq -n --arg user "$1" --arg ns "$2" '{apiVersion: "authorization.k8s.io/v1",
    kind: "SubjectAccessReview", spec: {user: $user, groups: ["system:authenticated"],
    resourceAttributes: {namespace: $ns, verb: "get",
      group: "packetcapture.antrea.io", resource: "captures"}}}' |
    kubectl create -f - -o jsonpath='{.status.allowed}'
}
check "capture-aggregator cannot read captures itself" bash -c \
  "$(declare -f may_read_captures); [ \"\$(may_read_captures system:serviceaccount:kube-system:capture-aggregator default)\" != true ]"
check "  ... while a RoleBinding to packet-capture-reader grants it in its namespace only" bash -c \
  "kubectl -n default create rolebinding pc-reader-check --clusterrole=packet-capture-reader --user=reader-check >&2 &&
   $(declare -f may_read_captures); ok=\$(may_read_captures reader-check default); other=\$(may_read_captures reader-check kube-system);
   kubectl -n default delete rolebinding pc-reader-check >&2; [ \"\$ok\" = true ] && [ \"\$other\" != true ]"
check "capture-aggregator cannot mint ServiceAccount tokens" \
  can_i capture-aggregator no create serviceaccounts/token -n kube-system
# The Lease RBAC that kubectl apply -k k8s/with-object-store (above) applied.
object_store_rbac_checks

e2e_finish
