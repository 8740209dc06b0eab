# shellcheck shell=bash
# Sourced by testing/cluster.sh: logging, the state dir's configuration and lock, name
# rules, and the daemons it starts (pid files, start/stop, readiness waits), installation.
log() { echo "cluster: $*" >&2; }
die() { echo "cluster: error: $*" >&2; exit 1; }
now_rfc3339() { date -u +%Y-%m-%dT%H:%M:%SZ; }
# ---------------------------------------------------------------------------------------
# State and configuration
# ---------------------------------------------------------------------------------------

# Settings fixed by the first `up`, stored in $STATE/cluster.env so every later command
# (env, pod, restart-*, down) talks to the same ports even if the environment changed.
load_config() {
  TOOLS_BIN= NODES=0 WITH_AGGREGATOR=0 REAL_NODE=0 OBJECT_STORE=0 REPLICAS=0 OBJECT_STORE_PORT=
  APISERVER_PORT=${CLUSTER_APISERVER_PORT:-16443}
  ETCD_CLIENT_PORT=${CLUSTER_ETCD_CLIENT_PORT:-12379}
  ETCD_PEER_PORT=${CLUSTER_ETCD_PEER_PORT:-12380}
  AGENT_BASE_PORT=${CLUSTER_AGENT_BASE_PORT:-19101}
  AGGREGATOR_PORT=${CLUSTER_AGGREGATOR_PORT:-19090}
  METRICS_BASE_PORT=${CLUSTER_METRICS_BASE_PORT:-19400}
  REAL_AGENT_PORT=${CLUSTER_REAL_AGENT_PORT:-19200}
  KUBELET_PORT=${CLUSTER_KUBELET_PORT:-10250}
  START_TIMEOUT=${CLUSTER_START_TIMEOUT:-60}
  local key value
  if [ -f "$STATE/cluster.env" ]; then
    while IFS='=' read -r key value; do
      case "$key" in
        TOOLS_BIN | NODES | WITH_AGGREGATOR | REAL_NODE | APISERVER_PORT | ETCD_CLIENT_PORT | \
          ETCD_PEER_PORT | AGENT_BASE_PORT | AGGREGATOR_PORT | REAL_AGENT_PORT | KUBELET_PORT | \
          METRICS_BASE_PORT | OBJECT_STORE | REPLICAS | OBJECT_STORE_PORT)
          printf -v "$key" '%s' "$value" ;;
      esac
    done < "$STATE/cluster.env"
  fi
  KUBECTL=${TOOLS_BIN:+$TOOLS_BIN/kubectl}
}

save_config() {
  local tmp="$STATE/cluster.env.tmp"
  cat > "$tmp" <<EOF
TOOLS_BIN=$TOOLS_BIN
NODES=$NODES
WITH_AGGREGATOR=$WITH_AGGREGATOR
REAL_NODE=$REAL_NODE
APISERVER_PORT=$APISERVER_PORT
ETCD_CLIENT_PORT=$ETCD_CLIENT_PORT
ETCD_PEER_PORT=$ETCD_PEER_PORT
AGENT_BASE_PORT=$AGENT_BASE_PORT
AGGREGATOR_PORT=$AGGREGATOR_PORT
METRICS_BASE_PORT=$METRICS_BASE_PORT
REAL_AGENT_PORT=$REAL_AGENT_PORT
KUBELET_PORT=$KUBELET_PORT
OBJECT_STORE=$OBJECT_STORE
REPLICAS=$REPLICAS
OBJECT_STORE_PORT=$OBJECT_STORE_PORT
EOF
  mv "$tmp" "$STATE/cluster.env"
}

require_up() {
  [ -f "$STATE/cluster.env" ] && [ -n "$TOOLS_BIN" ] ||
    die "no cluster in $STATE; run 'testing/cluster.sh up' first"
}

# One command at a time mutates the state (IP allocation, pid files). fd 9 holds the lock,
# and any process that inherits fd 9 holds it too, for as long as it lives: every child that
# may outlive this command (daemons, and tools that leave a server behind, like Bazel) is
# started with 9>&-. lock_leak_check finds one that was not.
take_lock() {
  mkdir -p "$STATE"
  exec 9> "$STATE/.lock"
  flock -w "$LOCK_TIMEOUT" 9 || {
    lock_holders >&2
    die "another process holds $STATE/.lock for ${LOCK_TIMEOUT}s (see above)"
  }
  load_config  # whoever held the lock may have changed it
}

# True when PID is this shell, one of its ancestors or one of its (running) descendants.
in_our_process_tree() {  # PID
  local p stat fields
  for p in "$1" $$; do  # walk up from each side
    local other=$$
    [ "$p" = $$ ] && other=$1
    while [ -n "$p" ] && [ "$p" -gt 1 ]; do
      [ "$p" = "$other" ] && return 0
      stat=$(cat "/proc/$p/stat" 2>/dev/null) || break
      read -r -a fields <<< "${stat##*) }"  # after "pid (comm) ": state, ppid, ...
      p=${fields[1]:-}
    done
  done
  return 1
}

# Prints "pid command" for every process outside this command's own process tree that has
# the lock file open: a child that inherited fd 9 and outlived its parent's wait.
lock_holders() {
  local fd pid
  for fd in /proc/[0-9]*/fd/*; do
    [ "$(readlink "$fd" 2>/dev/null)" = "$STATE/.lock" ] || continue
    pid=${fd#/proc/}
    pid=${pid%%/*}
    in_our_process_tree "$pid" && continue
    echo "$pid $(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | cut -c1-120)"
  done | sort -u
}

# Called before a command that took the lock returns: a child that kept fd 9 would block
# every later command for its whole life.
lock_leak_check() {
  local holders
  holders=$(lock_holders)
  [ -z "$holders" ] || die "these processes inherited the state lock (start them with 9>&-): $holders"
}

require_root() {
  [ "$(id -u)" = 0 ] || die "must run as root (network namespaces, bridges)"
}

kc() { "$KUBECTL" --kubeconfig="$STATE/kubeconfig" "$@"; }

# ---------------------------------------------------------------------------------------
# Names and validation
# ---------------------------------------------------------------------------------------

is_dns_label() {
  [ "${#1}" -le 63 ] && [[ "$1" =~ ^[a-z0-9]([-a-z0-9]*[a-z0-9])?$ ]]
}

validate_label() {  # WHAT VALUE
  is_dns_label "$2" ||
    die "invalid $1 '$2': must be a DNS-1123 label (lowercase a-z, 0-9, '-', at most 63 chars, alphanumeric at both ends)"
}

# ---------------------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------------------

pid_file() { printf '%s/pids/%s.pid' "$STATE" "$1"; }

# A pid counts as ours only if the process is alive, not a zombie, and its command line
# mentions a path inside this state dir (every daemon gets one), so a recycled pid is never
# mistaken for one of ours.
pid_is_ours() {  # PID
  local pid=$1 stat
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [ "${stat%% *}" != Z ] || return 1
  # No `| grep -q` here or below: with pipefail an early grep exit can SIGPIPE the writer.
  local cmdline
  cmdline=$(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null) || return 1
  [[ "$cmdline" == *"$STATE/"* ]]
}

alive() {  # NAME
  local f
  f=$(pid_file "$1")
  [ -f "$f" ] && pid_is_ours "$(cat "$f")"
}

# Starts a daemon in its own session (so it survives this shell and its group can be
# signalled as a whole), detached from our stdio and from the lock fd.
start_daemon() {  # NAME LOGFILE CMD...
  local name=$1 logfile=$2
  shift 2
  mkdir -p "$STATE/pids" "$(dirname "$logfile")"
  echo "=== $(now_rfc3339) starting: $*" >> "$logfile"
  setsid "$@" < /dev/null >> "$logfile" 2>&1 9>&- &
  local pid=$!
  echo "$pid" > "$(pid_file "$name")"
  # Until the forked shell has exec'd, its command line is still ours, not the daemon's, and
  # pid_is_ours would call it dead; on a busy machine that window is long enough to see.
  local deadline=$((SECONDS + 10))
  local stat
  while ! pid_is_ours "$pid" && [ "$SECONDS" -lt "$deadline" ]; do
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || break  # gone
    stat=${stat##*) }
    [ "${stat%% *}" != Z ] || break  # exited, not yet reaped
    sleep 0.02
  done
}

wait_gone() {  # PID SECONDS
  local pid=$1 deadline=$((SECONDS + $2))
  while pid_is_ours "$pid"; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.1
  done
}

# stop_daemon NAME [--kill]: SIGTERM, bounded wait, then SIGKILL to the whole session group
# so children (tcpdump) cannot outlive it. --kill sends SIGKILL to the process alone, like a
# crash: whatever it started must die by its own means (PR_SET_PDEATHSIG).
stop_daemon() {
  local name=$1 mode=${2:-} f pid
  f=$(pid_file "$name")
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  if pid_is_ours "$pid"; then
    if [ "$mode" = --kill ]; then
      log "SIGKILL $name (pid $pid)"
      kill -KILL "$pid" 2>/dev/null || true
      wait_gone "$pid" 10 || die "$name (pid $pid) survived SIGKILL for 10 s"
    else
      log "stopping $name (pid $pid)"
      kill -TERM "$pid" 2>/dev/null || true
      if ! wait_gone "$pid" 15; then
        log "$name (pid $pid) ignored SIGTERM for 15 s; SIGKILL"
        kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
        wait_gone "$pid" 10 || die "$name (pid $pid) survived SIGKILL for 10 s"
      fi
      # Leftover members of its session group (it is the group leader: see start_daemon).
      kill -KILL -- "-$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$f"
}

# Removes pid files whose process is gone (after a crash or a reboot).
clean_stale_pids() {
  local f name
  for f in "$STATE"/pids/*.pid; do
    [ -e "$f" ] || continue
    name=$(basename "$f" .pid)
    if ! alive "$name"; then
      log "removing stale pid file $name.pid"
      rm -f "$f"
    fi
  done
}

log_tail() {  # LOGFILE
  echo "----- last lines of $1 -----" >&2
  tail -n 30 "$1" >&2 2>/dev/null || true
  echo "-----" >&2
}

port_in_use() { [ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]; }

# A daemon just stopped may hold its port a moment longer than its pid looks alive: its
# memory (and so /proc/PID/cmdline, which pid_is_ours reads) goes before its descriptors.
# So a port in use is looked at again for up to 5 s before it counts as taken.
require_port_free() {  # PORT WHAT ENVVAR
  local tries=50
  while port_in_use "$1" && [ "$tries" -gt 0 ]; do
    sleep 0.1
    tries=$((tries - 1))
  done
  if port_in_use "$1"; then
    ss -Hltnp "sport = :$1" >&2 || true
    die "port $1 for $2 is already in use (another cluster? set $3 to another port, or run 'testing/cluster.sh down')"
  fi
}

# Waits until CHECK succeeds; fails with the log tail if the process dies or time runs out.
# What became of daemon NAME that `alive` calls dead, for the log: its exit status when it
# was started by this shell and is gone (a signal shows as 128+N), else what /proc says of
# the pid (a live process whose command line did not name $STATE: a misread, not an exit).
describe_exit() {  # NAME
  local pid stat cmdline code
  pid=$(cat "$(pid_file "$1")" 2>/dev/null) || { log "$1: no pid file"; return 0; }
  if stat=$(cat "/proc/$pid/stat" 2>/dev/null); then
    cmdline=$(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null)
    stat=${stat##*) }
    log "$1: pid $pid still in /proc: state ${stat:0:40}"
    log "$1: pid $pid command line: ${cmdline:0:400}"
    return 0
  fi
  code=0
  wait "$pid" 2>/dev/null || code=$?
  if [ "$code" -eq 127 ]; then
    log "$1: pid $pid is gone (not this shell's child: no exit status)"
  elif [ "$code" -gt 128 ]; then
    log "$1: pid $pid was killed by signal $((code - 128))"
  else
    log "$1: pid $pid exited with status $code"
  fi
  # A kill by the kernel (out of memory) leaves a line here.
  dmesg 2>/dev/null | tail -3 | sed "s/^/$1: dmesg: /" >&2 || true
}

wait_until() {  # NAME LOGFILE SECONDS CHECK...
  local name=$1 logfile=$2 seconds=$3 deadline=$((SECONDS + $3))
  shift 3
  until "$@" > /dev/null 2>&1; do
    # Twice, a moment apart: while a wrapper (unshare, nsenter) execs the daemon, its
    # /proc/PID/cmdline is briefly unreadable and the pid looks like someone else's.
    if ! alive "$name" && ! { sleep 0.2; alive "$name"; }; then
      log_tail "$logfile"
      describe_exit "$name"
      die "$name exited during startup (log: $logfile)"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      log_tail "$logfile"
      die "$name not ready after ${seconds}s (log: $logfile)"
    fi
    sleep 0.2
  done
}

# ---------------------------------------------------------------------------------------
# Installation
# ---------------------------------------------------------------------------------------

# command -> Debian package. Install only what is missing.
ensure_packages() {
  local -A pkg_of=([ip]=iproute2 [ss]=iproute2 [ping]=iputils-ping [jq]=jq [tcpdump]=tcpdump
    [openssl]=openssl [curl]=curl [flock]=util-linux [setsid]=util-linux)
  if [ "$REAL_NODE" = 1 ]; then
    pkg_of+=([containerd]=containerd [runc]=runc [/usr/lib/cni/bridge]=containernetworking-plugins
      [/bin/busybox]=busybox-static [buildah]=buildah [skopeo]=skopeo [iptables]=iptables [conntrack]=conntrack
      [dig]=bind9-dnsutils [debootstrap]=debootstrap [gcc]=gcc [nsenter]=util-linux)
  fi
  local cmd missing=()
  for cmd in "${!pkg_of[@]}"; do
    command -v "$cmd" > /dev/null || missing+=("${pkg_of[$cmd]}")
  done
  [ "${#missing[@]}" -eq 0 ] && return
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  log "installing missing packages: ${missing[*]} (log: $STATE/logs/apt.log)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends "${missing[@]}" >> "$STATE/logs/apt.log" 2>&1 ||
    { apt-get update >> "$STATE/logs/apt.log" 2>&1 &&
      apt-get install -y --no-install-recommends "${missing[@]}" >> "$STATE/logs/apt.log" 2>&1; } ||
    die "could not install ${missing[*]} (log: $STATE/logs/apt.log)"
}

ensure_tools() {
  local flags=() t tools=(etcd kube-apiserver kubectl)
  if [ "$REAL_NODE" = 1 ]; then
    flags=(--real-node)
    tools+=(kubelet kube-proxy kube-scheduler kube-controller-manager coredns)
  fi
  [ "$OBJECT_STORE" = 0 ] || tools+=(versitygw)
  TOOLS_BIN=$("$here/tools/install.sh" "${flags[@]}") || die "testing/tools/install.sh failed"
  for t in "${tools[@]}"; do
    [ -x "$TOOLS_BIN/$t" ] || die "testing/tools/install.sh did not provide $TOOLS_BIN/$t"
  done
  KUBECTL="$TOOLS_BIN/kubectl"
}

