#!/usr/bin/env bash
# Runs testing/agent_benchmark.py on a fresh one-node local cluster and tears
# it down afterwards. Needs root; prints figures beside their peers.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
tools=$(testing/setup.sh | tail -1)
export PATH="$tools:$PATH"
bazel build //node_agent:capture-agent //testing/bench:all
bench=$(mktemp -d /tmp/pc-bench-bin.XXXXXX)
cp bazel-bin/node_agent/capture-agent bazel-bin/testing/bench/bare_grpc_client \
  bazel-bin/testing/bench/udp_flood "$bench/"
export CLUSTER_STATE=$(mktemp -d /tmp/pc-bench-state.XXXXXX)
export CLUSTER="$root/testing/cluster.sh" BENCH_BIN="$bench" CAPTURE_AGENT_BIN="$bench/capture-agent"
trap '"$CLUSTER" down >/dev/null 2>&1; rm -rf "$bench"' EXIT
"$CLUSTER" up --nodes 1 --no-aggregator
eval "$("$CLUSTER" env)"
python3 testing/agent_benchmark.py
