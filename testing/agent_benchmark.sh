#!/usr/bin/env bash
# Builds the agent and the benchmark helpers, brings up a one-node local
# cluster, runs testing/agent_benchmark.py against it and tears the cluster
# down afterwards. Needs root. Prints figures beside their peers; never fails
# on speed.
#
#   testing/agent_benchmark.sh                            # the agent as the image ships it
#   BENCH_BAZEL_FLAGS=" " testing/agent_benchmark.sh       # e.g. a fastbuild agent
#
# Only one local cluster can run per machine (bridge, link and netns names and
# ports are machine-wide), so this waits up to 10 minutes for
# /tmp/pc-cluster.lock. It does not shut Bazel down: others use the same
# server.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

[ "$(id -u)" -eq 0 ] || { echo "agent_benchmark: needs root" >&2; exit 1; }
tools=$(testing/tools/install.sh | tail -1)
export PATH="$tools:$PATH"

# shellcheck disable=SC2086  # BENCH_BAZEL_FLAGS is a list of flags
flags=(${BENCH_BAZEL_FLAGS:--c opt})
bazel build "${flags[@]}" //node_agent:capture-agent //testing/bench:bare_grpc_client \
  //testing/bench:udp_flood
out=$(bazel info "${flags[@]}" bazel-bin)
# Copies, so a concurrent rebuild never swaps a binary under the benchmark.
bench=$(mktemp -d /tmp/pc-bench-bin.XXXXXX)
cp "$out/node_agent/capture-agent" "$out/testing/bench/bare_grpc_client" \
  "$out/testing/bench/udp_flood" "$bench/"

# shellcheck source=bench_lib.sh
source "$root/testing/bench_lib.sh"
bench_take_cluster agent_benchmark || { rm -rf "$bench"; exit 1; }

export CLUSTER_STATE=$(mktemp -d /tmp/pc-bench-state.XXXXXX)
export CLUSTER="$root/testing/cluster.sh" BENCH_BIN="$bench" CAPTURE_AGENT_BIN="$bench/capture-agent"
# From here on the cluster is ours: always take it down.
# Logs (and the state dir) are kept when something failed.
status=1
cleanup() {
  if ! "$CLUSTER" down >/dev/null 2>&1; then
    echo "agent_benchmark: cluster down failed; see $CLUSTER_STATE/logs" >&2
  elif [ "$status" -eq 0 ]; then
    rm -rf "$CLUSTER_STATE"
  else
    echo "agent_benchmark: failed; logs in $CLUSTER_STATE/logs" >&2
  fi
  rm -rf "$bench"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
"$CLUSTER" up --nodes 1 --no-aggregator
eval "$("$CLUSTER" env)"
echo "agent: sha256 $(sha256sum "$bench/capture-agent" | cut -c1-12), bazel flags: ${flags[*]:-(none: fastbuild)}"
python3 testing/agent_benchmark.py
status=0
