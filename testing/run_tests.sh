#!/usr/bin/env bash
# The test command: installs what the tests need, runs every test (the format
# check, unit tests, the same unit tests under AddressSanitizer + UBSan, the
# concurrent parts' tests under ThreadSanitizer, the end-to-end tests on the
# local cluster, a real kubelet node among them, and every fuzz target for
# PC_FUZZ_SECONDS, default 30, each), and ends with one line "N passed, N failed".
# Needs root (network namespaces, tcpdump, containerd). Exit status 0 only if all passed.
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

echo "== setup" >&2
# --real-node: the real node's tools and images are built here, outside any test's timeout
# (cold: the images take a debootstrap and a Bazel build inside buildah).
testing/setup.sh --real-node >/dev/null || { echo "setup failed"; echo "0 passed, 1 failed"; exit 1; }

logs=$(mktemp -d /tmp/pc-tests.XXXXXX)
total_passed=0
total_failed=0

# run NAME BAZEL-ARGS...: one bazel test invocation, counted from its test.xml.
run() {
  local name=$1
  shift
  echo "== $name: bazel test $*" >&2
  bazel test "$@" 2>&1 | tee "$logs/$name.log" >&2
  local bazel_rc=${PIPESTATUS[0]}
  # The convenience symlink follows the configuration of the last build.
  local testlogs
  testlogs=$(readlink -f bazel-testlogs)
  local line
  local summary_rc=0
  line=$(python3 testing/summarize_tests.py "$logs/$name.log" "$testlogs" 2>"$logs/$name.cases" | tail -1) ||
    summary_rc=$?
  cat "$logs/$name.cases" >&2
  echo "$name: $line" >&2
  local p f
  p=$(sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\1/p' <<< "$line")
  f=$(sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\2/p' <<< "$line")
  # A suite that ran nothing (Bazel failed before running tests) is a failure, and so is
  # one Bazel says failed where no failed case was counted (a summary line not understood).
  if { [ "$summary_rc" -ne 0 ] || [ "$bazel_rc" -ne 0 ]; } && [ "${f:-0}" -eq 0 ]; then
    echo "$name: bazel test exited $bazel_rc, the summary $summary_rc, but no failed case" \
      "was counted: one failure" >&2
    f=1
  fi
  total_passed=$((total_passed + ${p:-0}))
  total_failed=$((total_failed + ${f:-1}))
}

echo "== format: testing/format_check.sh" >&2
if testing/format_check.sh; then
  total_passed=$((total_passed + 1))
else
  total_failed=$((total_failed + 1))
fi

run unit //... --test_tag_filters=-e2e
# --build_tests_only: the benchmark tools and the gcc builds of the fuzz targets are
# compiled (and checked) by the plain stage above; under ASan they would only cost time.
run asan --config=asan //... --test_tag_filters=-e2e,-no-asan --build_tests_only
# ThreadSanitizer on the concurrent parts (third_party/tsan: lock annotations
# for the uninstrumented system libraries, documented suppressions). The
# gRPC-facing tests get 5 attempts: gRPC's internals still cause false
# reports in some attempts under load (see third_party/tsan/tsan.supp).
run tsan --config=tsan //third_party:tsan_probe_test \
  //aggregator:store_test //aggregator:sync_group_test \
  //aggregator:work_queue_test //aggregator:ingest_service_test \
  //node_agent:uplink_test //common/kube:pod_watcher_test //common:capture_service_test \
  //common:capture_service_downloads_test //aggregator:node_lease_test \
  //node_agent:uplink_redirect_test //aggregator:object_store_test \
  //aggregator:object_ingest_test //common/s3:s3_client_test //aggregator:store_pipeline_test \
  //aggregator:object_compaction_test //aggregator:ingest_ownership_test \
  //node_agent:uplink_batching_test //aggregator:object_catalog_test //common:capture_registry_test \
  --flaky_test_attempts=//aggregator:ingest_service_test,//aggregator:object_ingest_test,//aggregator:ingest_ownership_test,//node_agent:uplink_batching_test,//node_agent:uplink_test,//node_agent:uplink_redirect_test,//common:capture_service_test,//common:capture_service_downloads_test@5
run e2e //... --test_tag_filters=e2e

# Every fuzz target for a bounded time (testing/fuzz.sh; one test case each).
# Last: its clang build re-configures the C++ toolchain, which the gcc builds
# above would otherwise have to undo.
echo "== fuzz: testing/fuzz.sh ${PC_FUZZ_SECONDS:-30}" >&2
fuzz_line=$(testing/fuzz.sh "${PC_FUZZ_SECONDS:-30}" 2>&1 | tee "$logs/fuzz.log" >&2; tail -1 "$logs/fuzz.log")
fp=$(sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\1/p' <<< "$fuzz_line")
ff=$(sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\2/p' <<< "$fuzz_line")
echo "fuzz: ${fuzz_line}" >&2
total_passed=$((total_passed + ${fp:-0}))
total_failed=$((total_failed + ${ff:-1}))

bazel shutdown >/dev/null 2>&1
echo "$total_passed passed, $total_failed failed"
[ "$total_failed" -eq 0 ]
