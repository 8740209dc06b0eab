#!/usr/bin/env bash
# testing/summarize_tests.py, which decides CI's "N passed, N failed", against summary lines
# as Bazel prints them. (Seen before: a target whose line read "(1/2 cached) FLAKY" was
# skipped, its cases not counted; a "(1/2 cached) FAILED" one would have hidden a failure.)
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
E2E_SUITE=summarize_tests
source "$here/e2e_lib.sh"

dir=$(mktemp -d "${TEST_TMPDIR:-/tmp}/summarize.XXXXXX")
trap 'rm -rf "$dir"' EXIT

# xml TARGET-DIR PASSED FAILED: a test.xml with that many passing and failing cases.
xml() {
  mkdir -p "$dir/testlogs/$1"
  {
    echo '<?xml version="1.0" encoding="UTF-8"?><testsuites><testsuite>'
    for ((i = 0; i < $2; i++)); do echo "<testcase name=\"p$i\"/>"; done
    for ((i = 0; i < $3; i++)); do echo "<testcase name=\"f$i\"><failure/></testcase>"; done
    echo '</testsuite></testsuites>'
  } > "$dir/testlogs/$1/test.xml"
}

summary() {  # runs the summarizer on $dir/bazel.log; prints its last line and exit code
  local out rc=0
  out=$(python3 "$here/summarize_tests.py" "$dir/bazel.log" "$dir/testlogs" 2> /dev/null) || rc=$?
  echo "$(tail -1 <<< "$out") rc=$rc"
}

xml a/plain 1 0
xml a/cached 2 0
xml a/flaky 3 0
cat > "$dir/bazel.log" <<'LOG'
//a:plain                                                                PASSED in 0.1s
//a:cached                                                      (cached) PASSED in 0.1s
//a:flaky                                                  (1/2 cached) FLAKY, failed in 1 out of 2 in 2.5s
LOG
check "plain, cached and partly cached targets all count" test "$(summary)" = "6 passed, 0 failed rc=0"

xml a/bad 0 1
echo "//a:bad                                                    (1/2 cached) FAILED in 2 out of 2 in 1.0s" \
  >> "$dir/bazel.log"
check "a partly cached failing target counts as failed" test "$(summary)" = "6 passed, 1 failed rc=1"

echo "//a:sharded                                                (2/4 cached) TIMEOUT in 60.0s" \
  >> "$dir/bazel.log"
check "a target without a test.xml counts as one case with its status" \
  test "$(summary)" = "6 passed, 2 failed rc=1"
e2e_finish
