# shellcheck shell=bash
# Sourced by testing/cluster.sh: `up --object-store [--aggregators N]`. A real S3-compatible
# server (versitygw, POSIX backend) as a host process, the bucket and its credentials, and N
# capture-aggregator replicas storing into it (aggregator-0 .. aggregator-<N-1>), each on its
# own port, taking node Leases in kube-system. Without --object-store none of this runs and
# the single host aggregator of sim_nodes.sh is used.

# The tests find the replicas' objects by the bucket, the prefix and the backend's
# directory (object_store_dir, then data/): objects_dir in testing/e2e_lib.sh. Change
# them together.
readonly OBJECT_STORE_BUCKET=packet-capture
readonly OBJECT_STORE_PREFIX=cluster
readonly OBJECT_STORE_REGION=us-east-1
readonly MAX_REPLICAS=8               # ports AGGREGATOR_PORT+i stay below the agents' (19101)
readonly LEASE_NAMESPACE=kube-system  # the aggregator ServiceAccount's namespace

object_store_dir() { printf '%s/object-store' "$STATE"; }
object_store_credentials() { printf '%s/object-store/credentials' "$STATE"; }
object_store_endpoint() { printf 'http://127.0.0.1:%s' "$OBJECT_STORE_PORT"; }

# Replica i serves CaptureService and IngestService on AGGREGATOR_PORT+i. Its /metrics: the
# first replica's is where the single aggregator's is (METRICS_BASE_PORT), the others' after
# the agents' (METRICS_BASE_PORT+1 .. +MAX_NODES).
replica_port() { echo $((AGGREGATOR_PORT + $1)); }
replica_metrics_port() {
  if [ "$1" = 0 ]; then echo "$METRICS_BASE_PORT"; else echo $((METRICS_BASE_PORT + MAX_NODES + $1)); fi
}
replica_name() { printf 'aggregator-%s' "$1"; }
all_replicas() { seq 0 $((REPLICAS - 1)); }
# "127.0.0.1:19090,127.0.0.1:19091,...": every replica, running or not (the agents' list).
replica_addresses() {
  local i out=()
  for i in $(all_replicas); do out+=("127.0.0.1:$(replica_port "$i")"); done
  (IFS=,; printf '%s' "${out[*]}")
}

validate_replica() {  # I
  [[ "$1" =~ ^[0-9]+$ ]] && [ "$1" -lt "$REPLICAS" ] ||
    die "unknown replica '$1' (this cluster has $REPLICAS: 0..$((REPLICAS - 1)))"
}

# Part of cmd_up: refuses what does not go together. Replicas need the object store; the
# object store stays until `down`, like a real node.
validate_object_store_options() {  # WANT_OBJECT_STORE WANT_REPLICAS WANT_AGGREGATOR WANT_REAL_NODE
  if [ -n "$2" ]; then
    [[ "$2" =~ ^[0-9]+$ ]] && [ "$2" -ge 1 ] && [ "$2" -le "$MAX_REPLICAS" ] ||
      die "--aggregators must be a number from 1 to $MAX_REPLICAS"
    [ "$1" = 1 ] || [ "$OBJECT_STORE" = 1 ] ||
      die "--aggregators needs --object-store (replicas share their captures through it)"
  fi
  [ "$1" = 1 ] || [ "$OBJECT_STORE" = 1 ] || return 0
  [ "$3" = 1 ] || die "--object-store runs aggregator replicas: drop --no-aggregator"
  [ "$4" = 0 ] && [ "$REAL_NODE" = 0 ] ||
    die "--object-store and --real-node do not go together (the real node runs k8s/with-aggregator)"
}

# Part of cmd_up: object-store mode from now on, with WANT_REPLICAS replicas (empty: as
# many as before, at least 1).
plan_object_store() {  # WANT_REPLICAS
  OBJECT_STORE=1
  [ -z "$1" ] || REPLICAS=$1
  [ "$REPLICAS" -ge 1 ] || REPLICAS=1
  choose_object_store_port
}

# Part of cmd_env: ENV_OBJECT_STORE_LINES (its export lines), ENV_FIRST_REPLICA and
# ENV_FIRST_REPLICA_METRICS (the first running replica's addresses).
object_store_env() {
  local replicas=() metrics=() store= credentials= i
  ENV_FIRST_REPLICA= ENV_FIRST_REPLICA_METRICS=
  if [ "$OBJECT_STORE" = 1 ]; then
    for i in $(all_replicas); do
      alive "$(replica_name "$i")" || continue
      replicas+=("$i=127.0.0.1:$(replica_port "$i")")
      metrics+=("$i=127.0.0.1:$(replica_metrics_port "$i")")
      [ -n "$ENV_FIRST_REPLICA" ] && continue
      ENV_FIRST_REPLICA="127.0.0.1:$(replica_port "$i")"
      ENV_FIRST_REPLICA_METRICS="127.0.0.1:$(replica_metrics_port "$i")"
    done
    alive object-store && store="127.0.0.1:$OBJECT_STORE_PORT"
    credentials=$(object_store_credentials)
  fi
  ENV_OBJECT_STORE_LINES=(
    "export OBJECT_STORE='$store'"
    "export OBJECT_STORE_CREDENTIALS='$credentials'"
    "export AGGREGATORS='${replicas[*]:-}'"
    "export AGGREGATORS_METRICS='${metrics[*]:-}'"
  )
}

# ---------------------------------------------------------------------------------------
# The object store
# ---------------------------------------------------------------------------------------

# The first free port from 19500 (CLUSTER_OBJECT_STORE_PORT wins); kept in cluster.env, so
# a restarted store comes back where the replicas look for it.
choose_object_store_port() {
  [ -z "$OBJECT_STORE_PORT" ] || return 0
  if [ -n "${CLUSTER_OBJECT_STORE_PORT:-}" ]; then
    OBJECT_STORE_PORT=$CLUSTER_OBJECT_STORE_PORT
    return
  fi
  local port
  for port in $(seq 19500 19599); do
    if ! port_in_use "$port"; then
      OBJECT_STORE_PORT=$port
      return
    fi
  done
  die "no free port for the object store in 19500-19599 (set CLUSTER_OBJECT_STORE_PORT)"
}

# Random root credentials, made once per cluster (down removes them), in the format the
# aggregator's --s3_credentials reads (and a mounted Secret gives).
ensure_object_store_credentials() {
  local file
  file=$(object_store_credentials)
  [ -s "$file" ] && return
  mkdir -p "$(dirname "$file")"
  (
    umask 077
    printf 'access_key_id=PC%s\nsecret_access_key=%s\n' \
      "$(openssl rand -hex 9 | tr a-f A-F)" "$(openssl rand -base64 30 | tr -d '/+=\n')" > "$file.new"
  )
  chmod 600 "$file.new"
  mv -f "$file.new" "$file"
}

credential_value() {  # KEY
  sed -n "s/^$1=//p" "$(object_store_credentials)"
}

# s3_curl ARGS... URL-PATH: a SigV4-signed request to the object store (path-style). The
# key pair goes to curl on stdin, never on a command line.
s3_curl() {
  local path=${*: -1}
  local args=("${@:1:$#-1}")
  printf 'user = "%s:%s"\n' "$(credential_value access_key_id)" "$(credential_value secret_access_key)" |
    curl -sS -K - --max-time 10 --aws-sigv4 "aws:amz:$OBJECT_STORE_REGION:s3" \
      -H "x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" \
      "${args[@]}" "$(object_store_endpoint)$path"
}

# HTTP status of a signed HEAD of the bucket: 200 once the store serves it.
bucket_status() { s3_curl -o /dev/null -w '%{http_code}' -I "/$OBJECT_STORE_BUCKET" 2>/dev/null; }
bucket_ready() { [ "$(bucket_status)" = 200 ]; }

# versitygw's POSIX backend keeps ownership and ACLs in user.* extended attributes.
require_xattrs() {  # DIR
  command -v python3 > /dev/null || return 0
  python3 -c 'import os, sys; os.setxattr(sys.argv[1], "user.packet-capture-probe", b"1"); os.removexattr(sys.argv[1], "user.packet-capture-probe")' "$1" 2>/dev/null ||
    die "$1 has no user extended attributes, which the object store needs: put CLUSTER_STATE on ext4 or xfs (for example under /var/tmp)"
}

start_object_store() {
  local dir data logfile="$STATE/logs/object-store.log" versitygw="$TOOLS_BIN/versitygw"
  dir=$(object_store_dir)
  data="$dir/data"
  [ -x "$versitygw" ] || die "testing/tools/install.sh did not provide $versitygw"
  require_port_free "$OBJECT_STORE_PORT" "the object store" CLUSTER_OBJECT_STORE_PORT
  mkdir -p "$data"
  require_xattrs "$data"
  ensure_object_store_credentials
  # The root key pair through versitygw's environment variables, not its command line.
  ROOT_ACCESS_KEY_ID=$(credential_value access_key_id) \
    ROOT_SECRET_ACCESS_KEY=$(credential_value secret_access_key) \
    start_daemon object-store "$logfile" "$versitygw" --port "127.0.0.1:$OBJECT_STORE_PORT" \
    --region "$OBJECT_STORE_REGION" --keep-alive --quiet posix "$data"
  wait_until object-store "$logfile" "$START_TIMEOUT" listening "$OBJECT_STORE_PORT"
  # Signed PUT of the bucket: 200 when made, 409 BucketAlreadyOwnedByYou on a restart.
  local code
  code=$(s3_curl -o "$dir/create-bucket.out" -w '%{http_code}' -X PUT "/$OBJECT_STORE_BUCKET") || true
  case "$code" in
    200 | 409) ;;
    *) cat "$dir/create-bucket.out" >&2 2>/dev/null; log_tail "$logfile"
       die "could not create bucket $OBJECT_STORE_BUCKET (HTTP $code)" ;;
  esac
  rm -f "$dir/create-bucket.out"
  wait_until object-store "$logfile" "$START_TIMEOUT" bucket_ready
  log "object store (versitygw) on 127.0.0.1:$OBJECT_STORE_PORT, bucket $OBJECT_STORE_BUCKET, data in $data"
}

# ---------------------------------------------------------------------------------------
# Aggregator replicas
# ---------------------------------------------------------------------------------------

# The command line of replica I. The one place to adjust the replicas' flags (the object
# store's are ISSUE 12 §6's; the rest as the single aggregator's in sim_nodes.sh).
replica_command() {  # I
  local i=$1 port
  port=$(replica_port "$i")
  REPLICA_CMD=(
    "$STATE/bin/capture-aggregator"
    --listen="127.0.0.1:$port"
    --kubeconfig="$STATE/aggregator.kubeconfig"
    --metrics_address="127.0.0.1:$(replica_metrics_port "$i")"
    --store="s3://$OBJECT_STORE_BUCKET/$OBJECT_STORE_PREFIX"
    --s3_endpoint="$(object_store_endpoint)"
    --s3_region="$OBJECT_STORE_REGION"
    --s3_credentials="$(object_store_credentials)"
    --replica_id="$(replica_name "$i")"
    --advertise_address="127.0.0.1:$port"
    --lease_namespace="$LEASE_NAMESPACE"
  )
}

start_replica() {  # I
  local i=$1 name port logfile
  name=$(replica_name "$i")
  port=$(replica_port "$i")
  logfile="$STATE/logs/$name.log"
  require_port_free "$port" "capture-aggregator $name" CLUSTER_AGGREGATOR_PORT
  require_port_free "$(replica_metrics_port "$i")" "capture-aggregator $name metrics" CLUSTER_METRICS_BASE_PORT
  replica_command "$i"
  start_daemon "$name" "$logfile" "${REPLICA_CMD[@]}"
  wait_until "$name" "$logfile" "$START_TIMEOUT" listening "$port"
  log "$name listening on 127.0.0.1:$port"
}

# Replicas past REPLICAS (a later `up --aggregators` asked for fewer) are stopped.
stop_extra_replicas() {
  local f name i
  for f in "$STATE"/pids/aggregator-*.pid; do
    [ -e "$f" ] || continue
    name=$(basename "$f" .pid)
    i=${name#aggregator-}
    [[ "$i" =~ ^[0-9]+$ ]] && [ "$i" -lt "$REPLICAS" ] || stop_daemon "$name"
  done
}

# The Leases' RBAC (k8s/with-object-store) for the replicas' ServiceAccount.
ensure_lease_rbac() {
  kc apply -f "$repo/k8s/with-object-store/lease-rbac.yaml" > /dev/null ||
    die "kubectl apply -f k8s/with-object-store/lease-rbac.yaml failed"
}

# True when the object store and every replica run (a replica that cannot be built yet
# does not count as missing).
object_store_up() {
  alive object-store && bucket_ready || return 1
  local i
  for i in $(all_replicas); do
    if ! alive "$(replica_name "$i")" && has_target aggregator capture-aggregator; then return 1; fi
  done
}

# Part of ensure_daemons in object-store mode: the store, then the replicas (before the
# agents, which are given their addresses).
ensure_object_store_daemons() {
  # The single host aggregator gives way to the replicas (its port is replica 0's).
  alive aggregator && stop_daemon aggregator
  stop_extra_replicas
  alive object-store && bucket_ready || { stop_daemon object-store; start_object_store; }
  local i need=0
  for i in $(all_replicas); do alive "$(replica_name "$i")" || need=1; done
  [ "$need" = 1 ] || return 0
  build_and_copy aggregator capture-aggregator || return 0
  for i in $(all_replicas); do
    alive "$(replica_name "$i")" || start_replica "$i"
  done
}

cmd_restart_object_store() {
  local kill=
  case "${1:-}" in
    --kill) kill=--kill ;; "") ;; *) die "usage: restart-object-store [--kill]" ;;
  esac
  require_root
  take_lock
  require_up
  [ "$OBJECT_STORE" = 1 ] || die "this cluster has no object store (up --object-store)"
  stop_daemon object-store $kill
  start_object_store
}
