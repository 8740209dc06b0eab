# shellcheck shell=bash
# Sourced by testing/manifests_test.sh: the checks of k8s/with-object-store (aggregator
# replicas over an object store, issue 12). Uses its helpers (check, obj, same, flag_value,
# can_i) and its rendered variants in $work.
OS=with-object-store

# What the variant adds to the agents-only one, and what it leaves out of with-aggregator
# (the data volume claim).
object_store_objects="ConfigMap/kube-system/capture-object-store
Deployment/kube-system/capture-aggregator
PodDisruptionBudget/kube-system/capture-aggregator
Role/kube-system/packet-capture-aggregator-leases
RoleBinding/kube-system/packet-capture-aggregator-leases
Service/kube-system/capture-aggregator"

# env_source DEPLOYMENT VAR: where the container's env var VAR comes from, as
# "field:<path>" or "configmap:<name>/<key>" ("" when it is not defined).
env_source() {
  jq -r --arg v "$2" '.spec.template.spec.containers[0].env[]? | select(.name == $v) | .valueFrom |
    if .fieldRef then "field:\(.fieldRef.fieldPath)"
    elif .configMapKeyRef then "configmap:\(.configMapKeyRef.name)/\(.configMapKeyRef.key)"
    else "other" end' <<< "$1"
}

replicas_without_volume() {
  local dep
  dep=$(obj $OS Deployment capture-aggregator)
  same '3 RollingUpdate 1 capture-aggregator' \
    "$(jq -r '"\(.spec.replicas) \(.spec.strategy.type) \(.spec.strategy.rollingUpdate.maxUnavailable) \(.spec.template.spec.serviceAccountName)"' <<< "$dep")" &&
    same '' "$(flag_value "$dep" data_dir)" &&
    same '' "$(jq -r '.spec.template.spec.volumes[]? | select(.persistentVolumeClaim) | .name' <<< "$dep")"
}

store_flags() {
  local dep
  dep=$(obj $OS Deployment capture-aggregator)
  same 's3://$(S3_BUCKET)/$(S3_PREFIX)' "$(flag_value "$dep" store)" &&
    same 'configmap:capture-object-store/bucket configmap:capture-object-store/prefix' \
      "$(env_source "$dep" S3_BUCKET) $(env_source "$dep" S3_PREFIX)" &&
    same 'configmap:capture-object-store/endpoint' "$(env_source "$dep" S3_ENDPOINT)" &&
    same '$(S3_ENDPOINT)' "$(flag_value "$dep" s3_endpoint)"
}

# Every $(VAR) in the command is a defined env var (Kubernetes leaves an undefined one as
# the literal text), and every ConfigMap key they read exists.
variables_defined() {
  local dep cm var vars src missing=0
  dep=$(obj $OS Deployment capture-aggregator)
  cm=$(obj $OS ConfigMap capture-object-store)
  vars=$(jq -r '.spec.template.spec.containers[0].command[]' <<< "$dep" | grep -o '\$([A-Z_]*)' | tr -d '$()' | sort -u)
  echo "variables in the command: $(echo $vars)" >&2
  [ -n "$vars" ] || return 1
  for var in $vars; do
    src=$(env_source "$dep" "$var")
    case "$src" in
      "") echo "\$($var) is not defined" >&2; missing=1 ;;
      configmap:capture-object-store/*)
        jq -e --arg k "${src#configmap:capture-object-store/}" '.data[$k] | length > 0' <<< "$cm" > /dev/null ||
          { echo "capture-object-store has no key for $var ($src)" >&2; missing=1; } ;;
    esac
  done
  [ "$missing" = 0 ]
}

replica_identity() {
  local dep port
  dep=$(obj $OS Deployment capture-aggregator)
  port=$(jq -r '.spec.template.spec.containers[0].ports[] | select(.name == "grpc") | .containerPort' <<< "$dep")
  same '$(POD_NAME) $(POD_IP):'"$port"' $(POD_NAMESPACE)' \
    "$(flag_value "$dep" replica_id) $(flag_value "$dep" advertise_address) $(flag_value "$dep" lease_namespace)" &&
    same 'field:metadata.name field:status.podIP field:metadata.namespace' \
      "$(env_source "$dep" POD_NAME) $(env_source "$dep" POD_IP) $(env_source "$dep" POD_NAMESPACE)" &&
    same "0.0.0.0:$port" "$(flag_value "$dep" listen)"
}

# The Secret mounted where --s3_credentials reads it, with the keys the example carries.
credentials_mounted() {
  local dep volume mount example
  dep=$(obj $OS Deployment capture-aggregator)
  volume=$(jq -r '.spec.template.spec.volumes[] | select(.secret) | "\(.name) \(.secret.secretName)"' <<< "$dep")
  same 'object-store capture-object-store' "$volume" || return 1
  mount=$(jq -r '.spec.template.spec.containers[0].volumeMounts[] | select(.name == "object-store") | "\(.mountPath) \(.readOnly)"' <<< "$dep")
  same "$(flag_value "$dep" s3_credentials) true" "$mount" || return 1
  example=$(kubectl create --dry-run=client -o json -f "$kdir/$OS/object-store-secret.example.yaml") || return 1
  same 'capture-object-store kube-system access_key_id secret_access_key' \
    "$(jq -r '"\(.metadata.name) \(.metadata.namespace) \(.stringData | keys | join(" "))"' <<< "$example")"
}

# The agents stream to the same Service as with-aggregator: the replicas redirect them.
same_agents_as_with_aggregator() {
  same "$(obj with-aggregator ConfigMap capture-agent-config | jq -S .data)" \
    "$(obj $OS ConfigMap capture-agent-config | jq -S .data)" &&
    same "$(obj with-aggregator Service capture-aggregator | jq -S .spec.ports)" \
      "$(obj $OS Service capture-aggregator | jq -S .spec.ports)"
}

budget_selects_replicas() {
  same "$(obj $OS Deployment capture-aggregator | jq -c .spec.selector.matchLabels)" \
    "$(obj $OS PodDisruptionBudget capture-aggregator | jq -c .spec.selector.matchLabels)"
}

replica_pod_restricted() {
  obj $OS Deployment capture-aggregator |
    jq '{apiVersion: "v1", kind: "Pod", metadata: {name: "replica-psa", namespace: "pc-restricted"}, spec: .spec.template.spec}' |
    kubectl create --dry-run=server -f - >&2
}

object_store_manifest_checks() {
  check "k8s/with-object-store holds the agents' objects plus the replicas, their Service, config, budget and Lease RBAC (no claim)" \
    same "$(printf '%s\n%s\n' "$plain_objects" "$object_store_objects" | sort)" "$(kinds $OS)"
  check "k8s/with-object-store: 3 replicas, rolling, no data volume or --data_dir" replicas_without_volume
  check "k8s/with-object-store: --store=s3://\$(S3_BUCKET)/\$(S3_PREFIX) and --s3_endpoint from the ConfigMap" store_flags
  check "k8s/with-object-store: every \$(VAR) of the command is defined, from existing ConfigMap keys" variables_defined
  check "k8s/with-object-store: --replica_id, --advertise_address (grpc port), --lease_namespace from the downward API" \
    replica_identity
  check "k8s/with-object-store: the Secret capture-object-store is mounted read-only at --s3_credentials, keys as in the example" \
    credentials_mounted
  check "k8s/with-object-store/object-store-secret.example.yaml passes a server-side dry run" \
    dry_run "$kdir/$OS/object-store-secret.example.yaml"
  check "k8s/with-object-store: the agents' config and the Service are with-aggregator's" same_agents_as_with_aggregator
  check "k8s/with-object-store: the disruption budget selects the replicas" budget_selects_replicas
  check "k8s/with-object-store: the replicas' pod passes the restricted Pod Security Standard" replica_pod_restricted
}

# After kubectl apply -k k8s/with-object-store for real: the Lease RBAC, exactly.
object_store_rbac_checks() {
  local v
  for v in get create update patch; do
    check "capture-aggregator can $v leases in kube-system" can_i capture-aggregator yes "$v" leases.coordination.k8s.io -n kube-system
  done
  for v in list watch delete; do
    check "capture-aggregator cannot $v leases" can_i capture-aggregator no "$v" leases.coordination.k8s.io -n kube-system
  done
  check "capture-aggregator cannot update leases elsewhere" \
    can_i capture-aggregator no update leases.coordination.k8s.io -n default
  check "capture-agent cannot update leases" can_i capture-agent no update leases.coordination.k8s.io -n kube-system
}
