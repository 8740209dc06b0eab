#!/usr/bin/env bash
# The harness's object store (testing/cluster.sh up --object-store): a real versitygw on a
# loopback port with generated keys and the bucket packet-capture, reachable with SigV4
# and those keys only; restart-object-store (with and without --kill, and after a crash)
# keeps its port, keys and objects; `up` again changes nothing; `down` leaves nothing.
# The aggregator replicas start too when their binary is at hand (outside Bazel, or once
# this test is given them); testing/object_store_e2e_test.sh tests them. Needs root.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
E2E_SUITE=cluster_object_store
source "$here/e2e_lib.sh"
cluster=${CLUSTER:-$here/cluster.sh}

if ip link show dev pcbr-fabric > /dev/null 2>&1; then
  echo "FAIL: another cluster is up (pcbr-fabric exists); run 'testing/cluster.sh down' first"
  exit 1
fi
# /var/tmp: the store's POSIX backend needs user xattrs (a tmpfs /tmp may lack them).
own_state=
if [ -z "${CLUSTER_STATE:-}" ]; then
  CLUSTER_STATE=$(mktemp -d /var/tmp/cluster-object-store-test.XXXXXX)
  own_state=$CLUSTER_STATE
fi
export CLUSTER_STATE
# The state dir (its logs) stays only after a failure.
cleanup() {
  "$cluster" down > /dev/null 2>&1
  if [ -n "$own_state" ] && [ "$E2E_FAILED" -eq 0 ]; then rm -rf "$own_state"; fi
}
trap cleanup EXIT

if ! "$cluster" up --nodes 1 --object-store --aggregators 2; then
  fail "up --nodes 1 --object-store --aggregators 2" "see $CLUSTER_STATE/logs"
  e2e_finish
  exit 1
fi
pass "up --nodes 1 --object-store --aggregators 2"
eval "$("$cluster" env)"
export PATH="$CLUSTER_TOOLS:$PATH"
store_pid() { cat "$CLUSTER_STATE/pids/object-store.pid" 2> /dev/null; }
key() { sed -n "s/^$1=//p" "$OBJECT_STORE_CREDENTIALS"; }
pid0=$(store_pid)
e2e_log "object store $OBJECT_STORE (pid $pid0), keys in $OBJECT_STORE_CREDENTIALS; replicas: '$AGGREGATORS'"

check "env: OBJECT_STORE is a loopback address (got '$OBJECT_STORE')" \
  eval '[[ "$OBJECT_STORE" =~ ^127\.0\.0\.1:[0-9]+$ ]]'
check "the key file is mode 600 with an access key id and a secret" bash -c \
  "[ \"\$(stat -c %a '$OBJECT_STORE_CREDENTIALS')\" = 600 ] &&
   grep -qE '^access_key_id=[A-Z0-9]{16,}$' '$OBJECT_STORE_CREDENTIALS' &&
   grep -qE '^secret_access_key=[A-Za-z0-9]{30,}$' '$OBJECT_STORE_CREDENTIALS'"
check "the secret is not on the object store's command line" \
  eval '! tr "\0" " " < /proc/$pid0/cmdline | grep -qF -- "$(key secret_access_key)"'

# s3 SECRET ARGS... PATH: a SigV4 request with the file's key id and SECRET; prints the
# HTTP status (the body goes to $CLUSTER_STATE/s3.out).
s3() {
  local secret=$1 path=${*: -1}
  local args=("${@:2:$#-2}")
  printf 'user = "%s:%s"\n' "$(key access_key_id)" "$secret" |
    curl -sS -K - --max-time 10 --aws-sigv4 aws:amz:us-east-1:s3 -o "$CLUSTER_STATE/s3.out" \
      -w '%{http_code}' -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" "${args[@]}" "http://$OBJECT_STORE$path"
}
object=/packet-capture/cluster-object-store-test/hello
check "a signed PUT with the generated keys stores an object" \
  test "$(s3 "$(key secret_access_key)" -X PUT --data-binary hello-object-store "$object")" = 200
get_back() {
  [ "$(s3 "$(key secret_access_key)" "$object")" = 200 ] && [ "$(cat "$CLUSTER_STATE/s3.out")" = hello-object-store ]
}
check "a signed GET returns it" get_back
check "a wrong secret is refused (403)" test "$(s3 not-the-secret "$object")" = 403
check "an unsigned request is refused (403)" \
  test "$(curl -s -o /dev/null -w '%{http_code}' "http://$OBJECT_STORE$object")" = 403
check "the bucket is a directory of the POSIX backend in the state dir" \
  test -d "$(dirname "$(objects_dir)")"

check "up again is a no-op (same object store process)" bash -c \
  "'$cluster' up --object-store > /dev/null 2>&1 && [ \"\$(cat '$CLUSTER_STATE/pids/object-store.pid')\" = $pid0 ]"

# still_serves: same address and keys, the object still there.
still_serves() {
  get_back && [ "$("$cluster" env | sed -n "s/^export OBJECT_STORE='\(.*\)'$/\1/p")" = "$OBJECT_STORE" ]
}
"$cluster" restart-object-store > /dev/null 2>&1
check "restart-object-store: a new process" test "$(store_pid)" != "$pid0" -a -n "$(store_pid)"
check "  ... same address, keys and object" still_serves
pid1=$(store_pid)
"$cluster" restart-object-store --kill > /dev/null 2>&1
check "restart-object-store --kill: a new process" test "$(store_pid)" != "$pid1" -a -n "$(store_pid)"
check "  ... same address, keys and object" still_serves
pid2=$(store_pid)
kill -KILL "$pid2"
sleep 0.5
check "after a crash the store is down" test "$(s3 "$(key secret_access_key)" "$object" 2> /dev/null)" = 000
"$cluster" restart-object-store > /dev/null 2>&1
check "restart-object-store starts a crashed store" test "$(store_pid)" != "$pid2" -a -n "$(store_pid)"
check "  ... same address, keys and object" still_serves
pid3=$(store_pid)

if [ -n "$AGGREGATORS" ]; then
  replica1_pid=$(cat "$CLUSTER_STATE/pids/aggregator-1.pid")
  check "restart-aggregator needs --replica with two replicas" \
    eval '! "$cluster" restart-aggregator > /dev/null 2>&1'
  "$cluster" restart-aggregator --kill --replica 1 > /dev/null 2>&1
  check "restart-aggregator --kill --replica 1 restarts aggregator-1" \
    test "$(cat "$CLUSTER_STATE/pids/aggregator-1.pid")" != "$replica1_pid"
else
  e2e_log "no capture-aggregator binary here: replicas not started"
fi

"$cluster" down > /dev/null 2>&1
check "down stops the object store" eval '! kill -0 "$pid3" 2> /dev/null || [ "$(awk "{print \$3}" /proc/$pid3/stat)" = Z ]'
check "down frees its port" test -z "$(ss -Hltn "sport = :${OBJECT_STORE##*:}")"
check "down removes its data and keys" test ! -e "$CLUSTER_STATE/object-store"
check "down keeps its log" test -s "$CLUSTER_STATE/logs/object-store.log"

e2e_finish
