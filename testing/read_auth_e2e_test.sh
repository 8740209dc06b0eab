#!/usr/bin/env bash
# End-to-end test of read authorization on the aggregator's CaptureService, on
# the local cluster (real kube-apiserver doing the TokenReviews and
# SubjectAccessReviews, real RBAC, real agents and tcpdump), from a peer that
# is not on loopback: a network namespace of this test whose connections to
# 198.18.250.1:<port> are DNAT'ed to the aggregator's 127.0.0.1 listener, so
# the aggregator sees the peer 198.18.250.2, as it would see a pod through its
# Service. A ServiceAccount bound to packet-capture-reader in team-a can list,
# watch and download team-a's captures and nothing of team-b's; one with no
# binding sees nothing; no token is UNAUTHENTICATED; loopback without a token
# still reads everything. grpcurl and capturectl, as in the README. Needs root.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
E2E_SUITE=read_auth_e2e
source "$here/e2e_lib.sh"

CLUSTER=${CLUSTER:-$here/cluster.sh}
export CLUSTER_STATE=${CLUSTER_STATE:-$(mktemp -d /tmp/pc-read-auth-e2e.XXXXXX)}
work=$(mktemp -d /tmp/pc-read-auth-e2e-work.XXXXXX)

# The test's own client network: netns $client_ns, veth $host_if <-> $client_if.
client_ns=pcauthz-client
host_if=authzh0
client_if=authzc0
host_ip=198.18.250.1
client_ip=198.18.250.2
dnat_rule=()
cleanup_client_net() {
  [ ${#dnat_rule[@]} -eq 0 ] || iptables -t nat -D "${dnat_rule[@]}" 2>/dev/null
  ip netns del "$client_ns" 2>/dev/null
  ip link del dev "$host_if" 2>/dev/null
  return 0
}
trap 'cleanup_client_net; "$CLUSTER" down >/dev/null 2>&1; rm -rf "$work"' EXIT

"$CLUSTER" down >/dev/null 2>&1
cleanup_client_net
if ! "$CLUSTER" up --nodes 2; then
  fail "cluster comes up" "see $CLUSTER_STATE/logs"
  e2e_finish
  exit 1
fi
eval "$("$CLUSTER" env)"
export PATH="$CLUSTER_TOOLS:$PATH"
agg=$AGGREGATOR                      # 127.0.0.1:<port>, loopback
port=${agg##*:}
remote=$host_ip:$port                # the same server, seen from the client netns
CAPTURECTL=$(readlink -f "${CAPTURECTL_BIN:-$here/../bazel-bin/cli/capturectl}")
e2e_log "aggregator=$agg, from the client namespace: $remote"

# --- the non-loopback client ---
ip netns add "$client_ns" &&
  ip link add "$host_if" type veth peer name "$client_if" netns "$client_ns" &&
  ip addr add "$host_ip/30" dev "$host_if" &&
  ip link set "$host_if" up &&
  ip -n "$client_ns" addr add "$client_ip/30" dev "$client_if" &&
  ip -n "$client_ns" link set "$client_if" up &&
  ip -n "$client_ns" link set lo up &&
  echo 1 > "/proc/sys/net/ipv4/conf/$host_if/route_localnet" &&
  dnat_rule=(PREROUTING -i "$host_if" -p tcp -d "$host_ip" --dport "$port"
    -j DNAT --to-destination "127.0.0.1:$port") &&
  iptables -t nat -A "${dnat_rule[@]}" ||
  { fail "the client network namespace is set up"; e2e_finish; exit 1; }
# in_client CMD...: CMD run inside the client's network namespace.
in_client() { ip netns exec "$client_ns" "$@"; }
check_eventually "the aggregator answers the client namespace (health, no token needed)" 20 \
  in_client grpcurl -plaintext -max-time 2 "$remote" grpc.health.v1.Health/Check

# --- two namespaces with a capture each; readers ---
ip_a=$("$CLUSTER" pod add node-a team-a web-a)
ip_b=$("$CLUSTER" pod add node-b team-b web-b)
e2e_log "pods: team-a/web-a=$ip_a team-b/web-b=$ip_b"
kubectl annotate pod -n team-a web-a tcpdump.antrea.io=2 > /dev/null
kubectl annotate pod -n team-b web-b tcpdump.antrea.io=2 > /dev/null
"$CLUSTER" traffic team-a web-a 4 > /dev/null
# loopback_field POD FIELD: from the loopback listing (no token: everything).
loopback_field() {
  grpcurl -plaintext -max-time 10 -d "{\"pod\":\"$1\"}" "$agg" \
    packetcapture.v1.CaptureService/ListCaptures 2>/dev/null | jq -r ".captures[0].$2 // empty"
}
has_packets() { [ "$(loopback_field "$1" packets)" -gt 0 ] 2>/dev/null; }
check_eventually "the aggregator holds packets of team-a/web-a" 30 has_packets web-a
check_eventually "the aggregator holds packets of team-b/web-b" 30 has_packets web-b
id_a=$(loopback_field web-a id)
id_b=$(loopback_field web-b id)
e2e_log "captures: $id_a $id_b"

kubectl create serviceaccount reader -n team-a > /dev/null
kubectl create serviceaccount nobody -n team-a > /dev/null
# The README's RoleBinding: packet-capture-reader (k8s/base/rbac.yaml) in team-a only.
kubectl -n team-a create rolebinding capture-readers \
  --clusterrole=packet-capture-reader --serviceaccount=team-a:reader > /dev/null
# may_read USER NS: the API server's own answer (kubectl auth can-i cannot name
# a resource that discovery does not know), as the aggregator asks it.
may_read() {
  jq -n --arg user "$1" --arg ns "$2" '{apiVersion: "authorization.k8s.io/v1",
    kind: "SubjectAccessReview", spec: {user: $user,
    groups: ["system:serviceaccounts", "system:authenticated"],
    resourceAttributes: {namespace: $ns, verb: "get",
      group: "packetcapture.antrea.io", resource: "captures"}}}' |
    kubectl create -f - -o jsonpath='{.status.allowed}'
}
check "RBAC: the reader may get captures in team-a, not in team-b" bash -c \
  "$(declare -f may_read); [ \"\$(may_read system:serviceaccount:team-a:reader team-a)\" = true ] &&
   [ \"\$(may_read system:serviceaccount:team-a:reader team-b)\" != true ]"
kubectl create token reader -n team-a --duration 10m > "$work/reader.token"
kubectl create token nobody -n team-a --duration 10m > "$work/nobody.token"
chmod 600 "$work"/*.token
# Exported and named as $TOKEN in check commands, so logs show no token.
TOKEN=$(cat "$work/reader.token")
NOBODY=$(cat "$work/nobody.token")
export TOKEN NOBODY

# g TOKEN METHOD [JSON]: grpcurl from the client namespace with a bearer token
# ("" = none), its errors on stdout too; gj: its messages only (JSON).
# $max_time bounds watches.
g() { gj "$@" 2>&1; }
gj() {
  local token=$1 method=$2 data=${3:-'{}'} auth=()
  [ -z "$token" ] || auth=(-H "authorization: Bearer $token")
  in_client grpcurl -plaintext -max-time "${max_time:-10}" "${auth[@]}" -d "$data" "$remote" \
    "packetcapture.v1.CaptureService/$method"
}
# code OUTPUT: the gRPC code grpcurl printed, "OK" when none.
code() { sed -n 's/^ *Code: //p' <<< "$1" | head -1 | grep . || echo OK; }
expect_code() {  # NAME WANT TOKEN METHOD [JSON]
  local name=$1 want=$2 out got
  shift 2
  out=$(max_time=5 g "$@")
  got=$(code "$out")
  if [ "$got" = "$want" ]; then pass "$name"; else fail "$name" "got $got: $(head -c 300 <<< "$out")"; fi
}
export -f in_client g gj
export client_ns remote CAPTURECTL

# --- no token, a bad token ---
expect_code "no token from the network: ListCaptures is UNAUTHENTICATED" Unauthenticated "" ListCaptures
check "  ... and the message says how to get a token" bash -c \
  "g '' ListCaptures | grep -q 'kubectl create token'"
expect_code "no token: GetCapture is UNAUTHENTICATED" Unauthenticated "" GetCapture "{\"id\":\"$id_a\"}"
expect_code "no token: DownloadCapture is UNAUTHENTICATED" Unauthenticated "" DownloadCapture "{\"id\":\"$id_a\"}"
expect_code "no token: WatchCaptures is UNAUTHENTICATED" Unauthenticated "" WatchCaptures
expect_code "a forged token is UNAUTHENTICATED" Unauthenticated "$TOKEN.forged" ListCaptures
# The agents' token (audience packet-capture-aggregator) is no reader token.
agent_token=$(kubectl create token capture-agent -n kube-system --audience packet-capture-aggregator --duration 10m)
expect_code "the agents' aggregator-audience token cannot read" Unauthenticated "$agent_token" ListCaptures

# --- the reader of team-a ---
namespaces_listed() {  # TOKEN -> "<namespaces of ListCaptures> <total_size>"
  gj "$1" ListCaptures | jq -r '"\([.captures[]?.namespace] | unique | join(",")) \(.total_size // 0)"'
}
export -f namespaces_listed
check "the reader's ListCaptures shows team-a only, total_size counts it only" bash -c \
  "[ \"\$(namespaces_listed \"\$TOKEN\")\" = 'team-a 1' ]"
expect_code "the reader's ListCaptures of namespace team-b is PERMISSION_DENIED" PermissionDenied \
  "$TOKEN" ListCaptures '{"namespace":"team-b"}'
check "the reader's ListCaptures of namespace team-a lists web-a" bash -c \
  "gj \"\$TOKEN\" ListCaptures '{\"namespace\":\"team-a\"}' | jq -e '[.captures[].pod] == [\"web-a\"]' > /dev/null"
expect_code "the reader's GetCapture of team-a's capture is OK" OK "$TOKEN" GetCapture "{\"id\":\"$id_a\"}"
expect_code "the reader's GetCapture of team-b's capture is PERMISSION_DENIED" PermissionDenied \
  "$TOKEN" GetCapture "{\"id\":\"$id_b\"}"
# The README's download one-liner, with the token, from the client namespace.
download_as() {  # TOKEN ID OUT
  in_client grpcurl -plaintext -max-time 20 -H "authorization: Bearer $1" -d "{\"id\":\"$2\"}" "$remote" \
    packetcapture.v1.CaptureService/DownloadCapture |
    jq -r .data | while read -r chunk; do printf %s "$chunk" | base64 -d; done > "$3"
}
download_as "$TOKEN" "$id_a" "$work/a.pcap"
check "the reader downloads team-a's capture: a pcap with web-a's pings" bash -c \
  "tcpdump -r '$work/a.pcap' -n 2>/dev/null | grep -q 'ICMP echo'"
download_as "$TOKEN" "$id_b" "$work/b.pcap" 2> "$work/b.err"
check "the reader's download of team-b's capture is PERMISSION_DENIED and empty" bash -c \
  "grep -q 'Code: PermissionDenied' '$work/b.err' && [ ! -s '$work/b.pcap' ]"
watch_namespaces() {  # TOKEN -> "TYPE NAMESPACE" of each event of a 3 s watch, sorted
  max_time=3 gj "$1" WatchCaptures 2>/dev/null | jq -r '"\(.type) \(.capture.namespace // "")"' | sort -u
}
export -f watch_namespaces
watch_namespaces "$TOKEN" > "$work/watch.txt"
check "the reader's WatchCaptures streams team-a's capture and SYNCED, nothing of team-b" bash -c \
  "grep -qx 'ADDED team-a' '$work/watch.txt' && grep -qx 'SYNCED ' '$work/watch.txt' &&
   ! grep -q team-b '$work/watch.txt'"
expect_code "the reader's WatchCaptures of namespace team-b is PERMISSION_DENIED" PermissionDenied \
  "$TOKEN" WatchCaptures '{"namespace":"team-b"}'
# A capture that starts while the reader watches: team-b's is left out.
watch_new() {
  max_time=12 gj "$TOKEN" WatchCaptures '{"skip_initial":true}' > "$work/watch-new.txt" 2> "$work/watch-new.err" &
  local pid=$!
  sleep 1
  "$CLUSTER" pod add node-a team-b late-b > /dev/null
  "$CLUSTER" pod add node-b team-a late-a > /dev/null
  kubectl annotate pod -n team-b late-b tcpdump.antrea.io=1 > /dev/null
  kubectl annotate pod -n team-a late-a tcpdump.antrea.io=1 > /dev/null
  wait "$pid"
}
watch_new
has_capture() { [ -n "$(loopback_field "$1" id)" ]; }
check_eventually "team-b's new capture did reach the aggregator (loopback lists it)" 10 has_capture late-b
# Events of web-a (its counters move) may come too; nothing of team-b may.
new_pods=$(jq -r '.capture | "\(.namespace)/\(.pod)"' "$work/watch-new.txt" | sort -u | tr '\n' ' ')
if grep -q 'team-a/late-a' <<< "$new_pods" && ! grep -q 'team-b' <<< "$new_pods"; then
  pass "a watching reader sees team-a's new capture, not team-b's"
else
  fail "a watching reader sees team-a's new capture, not team-b's" \
    "pods in events: '$new_pods'; $(head -c 300 "$work/watch-new.err")"
fi

# --- a token with no RoleBinding ---
check "a user with no Role lists nothing (total_size 0)" bash -c \
  "[ \"\$(namespaces_listed \"\$NOBODY\")\" = ' 0' ]"
check "a user with no Role watches nothing but SYNCED" bash -c \
  "[ \"\$(watch_namespaces \"\$NOBODY\")\" = 'SYNCED ' ]"
expect_code "a user with no Role cannot get team-a's capture" PermissionDenied "$NOBODY" GetCapture "{\"id\":\"$id_a\"}"
expect_code "a user with no Role cannot download team-a's capture" PermissionDenied \
  "$NOBODY" DownloadCapture "{\"id\":\"$id_a\"}"

# --- capturectl with --token-file, from the client namespace ---
ctl() { in_client "$CAPTURECTL" --server "$remote" "$@"; }
export -f ctl
check "capturectl --token-file list shows team-a's captures only" bash -c \
  "ctl --token-file '$work/reader.token' list > '$work/ctl-list.txt' 2> '$work/ctl-list.err' &&
   grep -qE '^$id_a +node-a +team-a/web-a ' '$work/ctl-list.txt' && ! grep -q team-b '$work/ctl-list.txt'"
check "  ... and warns that the token went in plaintext" \
  grep -q "warning: the token goes to $remote in plaintext" "$work/ctl-list.err"
check "capturectl --token-file download of team-a's capture writes a pcap" bash -c \
  "ctl --token-file '$work/reader.token' download $id_a -o '$work/ctl-a.pcap' 2>/dev/null &&
   tcpdump -r '$work/ctl-a.pcap' -n 2>/dev/null | grep -q 'ICMP echo'"
check "capturectl download of team-b's capture: PERMISSION_DENIED, exit 1, no file" bash -c \
  "ctl --token-file '$work/reader.token' download $id_b -o '$work/ctl-b.pcap' 2> '$work/ctl-b.err';
   [ \$? -eq 1 ] && grep -q PERMISSION_DENIED '$work/ctl-b.err' && [ ! -e '$work/ctl-b.pcap' ]"
check "capturectl --token watch prints team-a's capture only" bash -c \
  "timeout 3 ip netns exec $client_ns $CAPTURECTL --server $remote --token \"\$TOKEN\" watch 2>/dev/null > '$work/ctl-watch.txt';
   grep -qE 'ADDED $id_a node-a team-a/web-a' '$work/ctl-watch.txt' && ! grep -q team-b '$work/ctl-watch.txt'"
check "capturectl without a token: UNAUTHENTICATED, exit 1" bash -c \
  "ctl list 2> '$work/ctl-none.err'; [ \$? -eq 1 ] && grep -q UNAUTHENTICATED '$work/ctl-none.err'"

# --- loopback (kubectl port-forward's path) ---
check "loopback without a token still lists both namespaces" bash -c \
  "grpcurl -plaintext $agg packetcapture.v1.CaptureService/ListCaptures |
   jq -e '[.captures[].namespace] | unique == [\"team-a\",\"team-b\"]' > /dev/null"
check "loopback, the README's capturectl --token-file list: team-a only, no warning" bash -c \
  "'$CAPTURECTL' --server $agg --token-file '$work/reader.token' list > '$work/lo-list.txt' 2> '$work/lo-list.err' &&
   grep -q ' team-a/web-a ' '$work/lo-list.txt' && ! grep -q team-b '$work/lo-list.txt' &&
   ! grep -q warning '$work/lo-list.err'"
check "loopback with the reader's token: the token decides (team-a only)" bash -c \
  "grpcurl -plaintext -H \"authorization: Bearer \$TOKEN\" $agg packetcapture.v1.CaptureService/ListCaptures |
   jq -e '[.captures[].namespace] | unique == [\"team-a\"]' > /dev/null"

# --- revoking the RoleBinding takes effect once the cached answer expires ---
# A follow that runs across the revocation ends with it (it asks again every 10 s).
in_client "$CAPTURECTL" --server "$remote" --token-file "$work/reader.token" follow "$id_a" \
  > "$work/follow.pcap" 2> "$work/follow.err" &
follow_pid=$!
sleep 2
kubectl -n team-a delete rolebinding capture-readers > /dev/null
revoked=$(date +%s)
revoked_now() {
  [ "$(g "$TOKEN" ListCaptures '{"namespace":"team-a"}' | sed -n 's/^ *Code: //p')" = PermissionDenied ]
}
check_eventually "after the RoleBinding is deleted the reader is refused within the 10 s cache" 15 revoked_now
e2e_log "refused $(( $(date +%s) - revoked )) s after the RoleBinding was deleted"
follow_ended() { ! kill -0 "$follow_pid" 2> /dev/null; }
check_eventually "a follow download running across the revocation ends within 25 s" 25 follow_ended
kill "$follow_pid" 2> /dev/null
wait "$follow_pid" 2> /dev/null
check "  ... with PERMISSION_DENIED, after streaming team-a's pcap until then" bash -c \
  "grep -q PERMISSION_DENIED '$work/follow.err' && tcpdump -r '$work/follow.pcap' -n 2>/dev/null | grep -q ICMP"

# --- what the aggregator logged ---
check "the aggregator logged read decisions" \
  grep -q 'event=read_access.*user="system:serviceaccount:team-a:reader".*namespace="team-b".*allowed="false"' \
  "$CLUSTER_STATE/logs/aggregator.log"
check "the aggregator never logged a token" bash -c \
  "! grep -qF -e \"\$TOKEN\" -e \"\$NOBODY\" '$CLUSTER_STATE/logs/aggregator.log'"

e2e_finish
