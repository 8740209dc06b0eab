# Shared by the benchmark scripts. Source it.

# bench_take_cluster NAME: waits (at most 10 minutes each) for
# /tmp/pc-cluster.lock, which it then holds on descriptor 9 until the script
# exits, and for a local cluster started without the lock (an end-to-end
# test) to go away: the cluster's bridge, link and netns names and ports are
# machine-wide. Call it after any bazel command, so the Bazel server (a
# daemon) never inherits the lock. Returns 1, with a message naming NAME, if
# either wait runs out.
bench_take_cluster() {
  local name=$1 deadline
  exec 9>/tmp/pc-cluster.lock
  if ! flock -w 600 9; then
    echo "$name: /tmp/pc-cluster.lock still held after 10 minutes; giving up" >&2
    return 1
  fi
  deadline=$((SECONDS + 600))
  while ip link show pcbr-fabric >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "$name: another local cluster (pcbr-fabric) still up after 10 minutes" >&2
      return 1
    fi
    sleep 5
  done
}
