# Helpers for the end-to-end tests: named checks, bounded waits, a JUnit
# report for Bazel (so each check counts as a test case) and the summary line.
# Source it; call e2e_finish at the end.

E2E_PASSED=0
E2E_FAILED=0
E2E_CASES=()
E2E_SUITE=${E2E_SUITE:-e2e}

e2e_log() { echo "[$(date +%T.%3N)] $*" >&2; }

# pass NAME / fail NAME DETAIL
pass() {
  E2E_PASSED=$((E2E_PASSED + 1))
  E2E_CASES+=("<testcase classname=\"$E2E_SUITE\" name=\"$(e2e_xml "$1")\"/>")
  echo "PASS: $1"
}
fail() {
  E2E_FAILED=$((E2E_FAILED + 1))
  E2E_CASES+=("<testcase classname=\"$E2E_SUITE\" name=\"$(e2e_xml "$1")\"><failure message=\"$(e2e_xml "${2:-}")\"/></testcase>")
  echo "FAIL: $1${2:+ -- $2}"
}
e2e_xml() { printf '%s' "$1" | sed -e 's/&/\&amp;/g' -e 's/</\&lt;/g' -e 's/>/\&gt;/g' -e 's/"/\&quot;/g'; }

# check NAME CMD...: passes when CMD succeeds now.
check() {
  local name=$1
  shift
  if "$@"; then pass "$name"; else fail "$name" "command failed: $*"; fi
}

# eventually SECONDS CMD...: retries CMD every 0.1 s until it succeeds or the
# time is up. Returns CMD's last status.
eventually() {
  local seconds=$1
  shift
  local deadline=$(($(date +%s%N) + seconds * 1000000000))
  while true; do
    if "$@"; then return 0; fi
    [ "$(date +%s%N)" -ge "$deadline" ] && return 1
    sleep 0.1
  done
}

# check_eventually NAME SECONDS CMD...
check_eventually() {
  local name=$1 seconds=$2
  shift 2
  if eventually "$seconds" "$@"; then pass "$name"; else fail "$name" "not true within ${seconds}s: $*"; fi
}

# kill_tree PID: PID and every process below it (a background pipeline of a
# function: killing the subshell alone would leave grpcurl running).
kill_tree() {
  local _kt_child
  for _kt_child in $(pgrep -P "$1" 2>/dev/null); do kill_tree "$_kt_child"; done
  kill "$1" 2>/dev/null || true
}

# stream_until SECONDS OUT PRODUCER CHECK...: runs PRODUCER (a command or
# function writing a stream, e.g. a follow download) into OUT in the
# background until CHECK... succeeds or SECONDS pass, then stops it. So a
# check of a live stream ends when what it waits for has arrived, not after a
# fixed time that a slow machine may need more of. Returns CHECK's status.
# (Locals are prefixed: CHECK runs inside this function and sees its locals
# in place of the caller's variables of the same name.)
stream_until() {
  local _su_seconds=$1 _su_file=$2 _su_producer=$3
  shift 3
  "$_su_producer" > "$_su_file" 2>/dev/null &
  local _su_pid=$! _su_rc=0
  eventually "$_su_seconds" "$@" || _su_rc=1
  kill_tree "$_su_pid"
  wait "$_su_pid" 2>/dev/null
  return "$_su_rc"
}

e2e_finish() {
  if [ -n "${XML_OUTPUT_FILE:-}" ]; then
    {
      echo '<?xml version="1.0" encoding="UTF-8"?>'
      echo "<testsuites><testsuite name=\"$E2E_SUITE\" tests=\"$((E2E_PASSED + E2E_FAILED))\" failures=\"$E2E_FAILED\">"
      printf '%s\n' "${E2E_CASES[@]}"
      echo '</testsuite></testsuites>'
    } > "$XML_OUTPUT_FILE"
  fi
  echo "$E2E_SUITE: $E2E_PASSED passed, $E2E_FAILED failed"
  [ "$E2E_FAILED" -eq 0 ]
}

# grpc ADDR METHOD [JSON]: grpcurl against a plaintext server, via reflection.
grpc() {
  local addr=$1 method=$2 data=${3:-'{}'}
  grpcurl -plaintext -max-time 20 -d "$data" "$addr" "packetcapture.v1.CaptureService/$method"
}

# field ADDR POD FIELD: a field of the pod's newest capture in ListCaptures.
field() {
  grpc "$1" ListCaptures "{\"pod\":\"$2\"}" 2> /dev/null | jq -r ".captures[0].$3 // empty"
}

# packets PCAP: its packets, one line each, as tcpdump prints them.
packets() { tcpdump -r "$1" -n -tt 2> /dev/null; }

# caught_up POD AGENT [AGG]: the aggregator (default $agg) holds every packet
# the node's agent counts.
caught_up() {
  local node_n agg_n
  node_n=$(field "$2" "$1" packets)
  agg_n=$(field "${3:-$agg}" "$1" packets)
  [ -n "$node_n" ] && [ "$node_n" = "$agg_n" ]
}

# objects_dir: the directory of the replicas' objects in the harness's object store
# (cluster.sh up --object-store): versitygw's POSIX backend under $CLUSTER_STATE, then the
# bucket and the replicas' prefix (OBJECT_STORE_BUCKET and OBJECT_STORE_PREFIX of
# testing/cluster/object_store.sh). A capture's data objects are under data/ID; the
# bucket's directory is its parent.
objects_dir() { printf '%s/object-store/data/packet-capture/cluster' "$CLUSTER_STATE"; }

# download ADDR ID OUT [follow-seconds]: the README's grpcurl download.
download() {
  local addr=$1 id=$2 out=$3
  grpcurl -plaintext -max-time 60 -d "{\"id\":\"$id\"}" "$addr" \
    packetcapture.v1.CaptureService/DownloadCapture |
    jq -r '.data' | while read -r chunk; do printf %s "$chunk" | base64 -d; done > "$out"
}
