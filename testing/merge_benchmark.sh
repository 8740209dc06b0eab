#!/usr/bin/env bash
# Builds testing/bench:merge_bench (-c opt) and runs it: our pcapng merger
# against `mergecap -F pcapng -w` on the same generated pcap files, in the
# same run. Prints figures; fails only when the packet counts (capinfos)
# disagree. No cluster, no root.
#
#   testing/merge_benchmark.sh                  # 8 files x 64 MB, 3 runs
#   testing/merge_benchmark.sh --files 16 --mb 32 --runs 5
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
for tool in mergecap capinfos; do
  command -v "$tool" >/dev/null || {
    echo "merge_benchmark: $tool missing (Debian package tshark)" >&2
    exit 1
  }
done
bazel build -c opt //testing/bench:merge_bench
bin=$(bazel info -c opt bazel-bin)/testing/bench/merge_bench
exec "$bin" "$@"
