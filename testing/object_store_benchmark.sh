#!/usr/bin/env bash
# Builds the aggregator, agent and ingest_bench (-c opt unless BENCH_BAZEL_FLAGS
# says otherwise), brings up a one-node local cluster with the object store and
# one aggregator replica (`up --object-store --aggregators 1`), runs
# testing/object_store_benchmark.py against it (which grows it to 3 replicas for
# the scaling figure) and always tears the cluster down. Needs root and
# botocore (BENCH_PYTHON, default the tools' venv). Prints figures beside their
# peers; never fails on speed. The cluster is machine-wide, so it waits for
# /tmp/pc-cluster.lock. It does not shut Bazel down: others use the same server.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

[ "$(id -u)" -eq 0 ] || { echo "object_store_benchmark: needs root" >&2; exit 1; }
python=${BENCH_PYTHON:-/var/cache/packet-capture/venv/bin/python}
"$python" -c 'import botocore' 2>/dev/null ||
  { echo "object_store_benchmark: $python has no botocore (set BENCH_PYTHON)" >&2; exit 1; }
tools=$(testing/tools/install.sh | tail -1)
export PATH="$tools:$PATH"

# shellcheck disable=SC2086  # BENCH_BAZEL_FLAGS is a list of flags
flags=(${BENCH_BAZEL_FLAGS:--c opt --disk_cache=/tmp/pc-disk-cache})
bazel build "${flags[@]}" //aggregator:capture-aggregator //node_agent:capture-agent \
  //testing/bench:ingest_bench
out=$(bazel info "${flags[@]}" bazel-bin)
# Copies, so a concurrent rebuild never swaps a binary under the benchmark.
bench=$(mktemp -d /tmp/pc-bench-bin.XXXXXX)
cp "$out/aggregator/capture-aggregator" "$out/node_agent/capture-agent" \
  "$out/testing/bench/ingest_bench" "$bench/"

# shellcheck source=bench_lib.sh
source "$root/testing/bench_lib.sh"
bench_take_cluster object_store_benchmark || { rm -rf "$bench"; exit 1; }

# versitygw's POSIX backend needs user xattrs: /var/tmp, not a tmpfs /tmp.
export CLUSTER_STATE=$(mktemp -d /var/tmp/pc-objbench-state.XXXXXX)
export CLUSTER="$root/testing/cluster.sh" BENCH_BIN="$bench"
export CAPTURE_AGENT_BIN="$bench/capture-agent" CAPTURE_AGGREGATOR_BIN="$bench/capture-aggregator"
status=1
cleanup() {
  if ! "$CLUSTER" down >/dev/null 2>&1; then
    echo "object_store_benchmark: cluster down failed; see $CLUSTER_STATE/logs" >&2
  elif [ "$status" -eq 0 ]; then
    rm -rf "$CLUSTER_STATE"
  else
    rm -rf "$CLUSTER_STATE/object-store" "$CLUSTER_STATE/bench-scratch"
    echo "object_store_benchmark: failed; logs in $CLUSTER_STATE/logs" >&2
  fi
  rm -rf "$bench"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
"$CLUSTER" up --object-store --aggregators 1 --nodes 1
eval "$("$CLUSTER" env)"
echo "build: bazel ${flags[*]}; aggregator sha256 $(sha256sum "$bench/capture-aggregator" | cut -c1-12)"
"$python" testing/object_store_benchmark.py
status=0
