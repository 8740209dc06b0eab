#!/usr/bin/env bash
# Builds every libFuzzer target (cc_fuzz_test in bazel/fuzz.bzl) with clang
# (bazel --config=fuzz: ASan, UBSan, coverage) and runs each for a bounded
# time, starting from its committed seed corpus. A crash, a sanitizer report,
# a leak, a FUZZ_CHECK failure, a timeout (one input > 10 s) or running out of
# memory fails the target; libFuzzer saves the input that did it.
#
#   testing/fuzz.sh [SECONDS_PER_TARGET] [//pkg:name_fuzz ...]
#
# Default 45 s per target, all targets. Needs clang-14 and libclang-rt-14-dev
# (testing/setup.sh installs them). Work files go to $PC_FUZZ_OUT (default
# /tmp/pc-fuzz): <target>/corpus (seeds + what this run found, not committed),
# <target>/artifacts (crash-*, leak-*, timeout-*, oom-*), <target>/log.
# Runs PC_FUZZ_JOBS targets at a time (default: the number of cores).
# Prints one line per target with libFuzzer's execution count and ends with
# "N passed, N failed" (a target is one test case); exit 0 only if all passed.
#
# The fuzz build shares the output base of the normal build: --config=fuzz
# re-runs cc_configure for clang and writes to bazel-out/k8-fastbuild-fuzz,
# and the next gcc build re-runs it back (measured: about 5 s each way).
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

seconds=${1:-45}
shift || true
case "$seconds" in
  '' | *[!0-9]*) echo "usage: testing/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]" >&2; exit 2 ;;
esac
out=${PC_FUZZ_OUT:-/tmp/pc-fuzz}
mkdir -p "$out"

if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t tests < <(bazel query 'attr(tags, "\bfuzz-corpus\b", tests(//...))' 2>/dev/null | sort)
  targets=("${tests[@]}")
fi
if [ ${#targets[@]} -eq 0 ]; then
  echo "fuzz: no fuzz targets found"
  echo "0 passed, 1 failed"
  exit 1
fi

fuzzers=()
for t in "${targets[@]}"; do fuzzers+=("${t}_fuzzer"); done
echo "== fuzz: building ${#fuzzers[@]} fuzzers (bazel build --config=fuzz)" >&2
if ! bazel build --config=fuzz "${fuzzers[@]}" > "$out/build.log" 2>&1; then
  grep -v "Cannot export local symbol" "$out/build.log" | tail -30 >&2
  echo "fuzz: build failed (log: $out/build.log)"
  echo "0 passed, ${#targets[@]} failed"
  exit 1
fi
bin_dir=$(bazel info --config=fuzz bazel-bin 2>/dev/null)

# fuzz_one TARGET: runs one fuzzer; its report (the lines printed below) goes to
# $work/report, and $work/passed exists if it passed.
fuzz_one() {
  local t=$1 pkg name work seeds rc execs rate units artifacts a
  pkg=${t#//}
  pkg=${pkg%%:*}
  name=${t##*:}
  work="$out/$name"
  rm -rf "$work/artifacts" "$work/passed" "$work/report"
  mkdir -p "$work/corpus" "$work/artifacts"
  seeds="$pkg/testdata/fuzz/$name"
  # -close_fd_mask=2: the code under test logs to stderr; libFuzzer and the
  # sanitizers keep reporting on a copy of it.
  "$bin_dir/$pkg/${name}_fuzzer" \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2560 -max_len=8192 \
    -print_final_stats=1 -close_fd_mask=2 \
    -artifact_prefix="$work/artifacts/" "$work/corpus" "$seeds" \
    > "$work/log" 2>&1
  rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$work/log" | tail -1)
  units=$(find "$work/corpus" -type f | wc -l)
  artifacts=$(find "$work/artifacts" -type f | sort)
  if [ "$rc" -eq 0 ] && [ -z "$artifacts" ]; then
    touch "$work/passed"
    echo "fuzz $name: PASSED, ${execs:-?} executions in ${seconds}s (${rate:-?}/s), corpus $units" \
      > "$work/report"
  else
    {
      echo "fuzz $name: FAILED (exit $rc) after ${execs:-?} executions; log: $work/log"
      grep -E "ERROR: |SUMMARY: |FUZZ_CHECK|^    #[0-9]+ " "$work/log" | head -40
      for a in $artifacts; do
        echo "  input: $a ($(stat -c %s "$a") bytes), base64:"
        head -c 4096 "$a" | base64 | sed 's/^/    /'
      done
    } > "$work/report"
  fi
}

# PC_FUZZ_JOBS fuzzers at a time (default: one per core); each fuzzer is one process.
jobs=${PC_FUZZ_JOBS:-$(nproc)}
case "$jobs" in
  '' | *[!0-9]* | 0) echo "fuzz: PC_FUZZ_JOBS must be a positive number" >&2; exit 2 ;;
esac
running=0
for t in "${targets[@]}"; do
  if [ "$running" -ge "$jobs" ]; then
    wait -n
    running=$((running - 1))
  fi
  fuzz_one "$t" &
  running=$((running + 1))
done
wait

passed=0
failed=0
for t in "${targets[@]}"; do
  work="$out/${t##*:}"
  cat "$work/report" 2>/dev/null || echo "fuzz ${t##*:}: FAILED (no report; log: $work/log)"
  if [ -e "$work/passed" ]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
