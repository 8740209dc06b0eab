#!/usr/bin/env bash
# Signs randomized S3 requests with our SigV4 code (sigv4_request_gen) and
# checks every signature and URL against botocore's own signer
# (sigv4_botocore_check.py), with the Python venv testing/setup.sh installs
# into the tools cache. Fails (never skips) when that venv or botocore is
# missing. SIGV4_SEED / SIGV4_COUNT override the fixed seed and the count.
#
#   sigv4_botocore_test.sh GENERATOR CHECK_SCRIPT
set -euo pipefail

gen=$1
check=$2
cache=${PACKET_CAPTURE_CACHE:-/var/cache/packet-capture}
python="$cache/venv/bin/python"
seed=${SIGV4_SEED:-20261202}
count=${SIGV4_COUNT:-500}

if [ ! -x "$python" ]; then
  echo "FAIL: no Python venv at $cache/venv: run testing/setup.sh (it installs botocore there)" >&2
  exit 1
fi
if ! "$python" -c 'import botocore' 2>/dev/null; then
  echo "FAIL: botocore is not installed in $cache/venv: run testing/setup.sh" >&2
  exit 1
fi

out=${TEST_TMPDIR:-$(mktemp -d)}/requests.jsonl
"$gen" "$seed" "$count" > "$out"
lines=$(wc -l < "$out")
[ "$lines" -eq "$count" ] || { echo "FAIL: the generator printed $lines of $count requests" >&2; exit 1; }
echo "seed $seed, $count requests"
"$python" "$check" < "$out"
