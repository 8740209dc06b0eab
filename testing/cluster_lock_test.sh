#!/usr/bin/env bash
# Regression test for the harness's state lock: a tool that testing/cluster.sh runs while it
# holds the lock and that leaves a server behind (Bazel's server lives for hours) must not
# keep the lock, or every later cluster.sh command waits for it (seen: `up` with no Bazel
# server running, then `pod add` hung for the 300 s lock timeout).
# Runs build_and_copy, as `up` does, with a stand-in `bazel` that leaves a server behind.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=e2e_lib.sh
source "$here/e2e_lib.sh"
E2E_SUITE=cluster_lock

tmp=$(mktemp -d /tmp/cluster-lock-test.XXXXXX)
server_pid=
cleanup() {
  [ -z "$server_pid" ] || kill "$server_pid" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

# What cluster.sh defines before sourcing its parts.
STATE=$tmp/state
repo=$tmp/repo
LOCK_TIMEOUT=5
mkdir -p "$repo/node_agent" "$tmp/bin"
echo 'cc_binary(name = "capture-agent")' > "$repo/node_agent/BUILD.bazel"
cat > "$tmp/bin/bazel" <<STUB
#!/bin/sh
# Like Bazel: start a server in its own session that outlives this command, then build.
setsid sleep 120 < /dev/null > /dev/null 2>&1 &
echo \$! > "$tmp/server.pid"
mkdir -p bazel-bin/node_agent
printf '#!/bin/sh\n' > bazel-bin/node_agent/capture-agent
chmod 755 bazel-bin/node_agent/capture-agent
STUB
chmod 755 "$tmp/bin/bazel"
PATH="$tmp/bin:$PATH"

# shellcheck source=cluster/common.sh
source "$here/cluster/common.sh"
# shellcheck source=cluster/sim_nodes.sh
source "$here/cluster/sim_nodes.sh"

take_lock
build_and_copy node_agent capture-agent 2> "$tmp/build.log"
server_pid=$(cat "$tmp/server.pid")
check "the stand-in Bazel server is still running after the build" kill -0 "$server_pid"
check "the built binary was installed into the state dir" test -x "$STATE/bin/capture-agent"
check "lock_leak_check finds no other holder of the lock" eval "(lock_leak_check)"
exec 9>&-  # what the end of a cluster.sh command does
check "the next command takes the lock at once" flock -n "$STATE/.lock" true
e2e_finish
