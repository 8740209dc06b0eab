#!/usr/bin/env bash
# The runtime image of the Dockerfile, checked without a container engine:
# the runtime stage's package list (read from the Dockerfile itself, so the
# two can never disagree) must be exactly the packages that provide the
# shared libraries both binaries link, plus tcpdump; a Debian bookworm root
# filesystem holding only minbase and that list (debootstrap) must load and
# run capture-agent, capture-aggregator and tcpdump under chroot, the
# aggregator as the non-root user of k8s/aggregator/aggregator.yaml, and
# the DaemonSet's bash /dev/tcp probe must work there. Needs root.
#
# The root filesystem is cached under $ROOTFS_CACHE/<sha256 of the sorted
# package list> and rebuilt only when the list changes (debootstrap takes a
# few minutes). The Debian mirror is the machine's own apt source.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
E2E_SUITE=runtime_image
source "$here/e2e_lib.sh"

repo=$(cd "$here/.." && pwd)
export PATH="/usr/sbin:/sbin:$PATH"  # chroot, debootstrap
DOCKERFILE=${DOCKERFILE:-$here/../Dockerfile}  # a runfile under Bazel
# Bazel passes runfiles paths (relative to the test's working directory).
AGENT_BIN=$(readlink -f "${CAPTURE_AGENT_BIN:-$repo/bazel-bin/node_agent/capture-agent}")
AGGREGATOR_BIN=$(readlink -f "${CAPTURE_AGGREGATOR_BIN:-$repo/bazel-bin/aggregator/capture-aggregator}")
ROOTFS_CACHE=${ROOTFS_CACHE:-/var/cache/packet-capture/rootfs}
APT_SOURCES=${APT_SOURCES:-/etc/apt/sources.list.d/debian.sources}
SUITE=bookworm
# The aggregator's user in k8s/aggregator/aggregator.yaml (runAsUser/fsGroup).
AGGREGATOR_UID=65532

# stop NAME DETAIL: a failure that makes the remaining checks meaningless.
stop() {
  fail "$1" "${2:-}"
  e2e_finish
  exit 1
}

for bin in "$AGENT_BIN" "$AGGREGATOR_BIN"; do
  [ -x "$bin" ] || stop "binaries are built" "$bin is not an executable file"
done
# Work on copies: a concurrent build (bazel-bin follows the last
# configuration) must not swap a binary halfway through the checks.
snapshot=$(mktemp -d /tmp/pc-runtime-bin.XXXXXX)
cp "$AGENT_BIN" "$snapshot/capture-agent" && cp "$AGGREGATOR_BIN" "$snapshot/capture-aggregator" ||
  stop "binaries can be copied" "to $snapshot"
AGENT_BIN=$snapshot/capture-agent
AGGREGATOR_BIN=$snapshot/capture-aggregator
[ -f "$DOCKERFILE" ] || stop "Dockerfile is readable" "$DOCKERFILE not found"

# runtime_packages DOCKERFILE: the packages of the one `apt-get install` in
# the last stage, one per line. The list ends at the first line starting
# with `&&`; options (-y, --no-install-recommends) are skipped.
runtime_packages() {
  awk '
    /^FROM[ \t]/ { text = ""; next }           # keep only the last stage
    { text = text $0 "\n" }
    END { printf "%s", text }
  ' "$1" | awk '
    /apt-get[ \t]+install/ {
      installs++
      sub(/.*apt-get[ \t]+install/, "")
      inlist = 1
    }
    inlist && /^[ \t]*&&/ { inlist = 0; next }
    inlist {
      sub(/\\[ \t]*$/, "")
      for (i = 1; i <= NF; i++) if ($i !~ /^-/) print $i
    }
    END { if (installs != 1) exit 1 }
  '
}

if ! packages_text=$(runtime_packages "$DOCKERFILE"); then
  stop "the Dockerfile's runtime stage has one apt-get install" "see $DOCKERFILE"
fi
mapfile -t PACKAGES < <(printf '%s\n' "$packages_text" | sed '/^$/d' | sort -u)
e2e_log "runtime packages: ${PACKAGES[*]}"
valid_names() {
  [ ${#PACKAGES[@]} -gt 0 ] || return 1
  local p
  for p in "${PACKAGES[@]}"; do
    [[ $p =~ ^[a-z0-9][a-z0-9.+-]+$ ]] || { echo "not a package name: $p" >&2; return 1; }
  done
}
check "the runtime stage lists valid package names" valid_names

# needed_packages BIN...: the Debian packages owning the files the host's
# loader resolves for the binaries' NEEDED entries (the image's build stage
# is Debian bookworm like this machine, so the same packages). Each file is
# asked for under both usrmerge spellings (/lib/... and /usr/lib/...).
needed_packages() {
  local bin lib lddout path rest candidates=() libs=()
  for bin in "$@"; do
    lddout=$(ldd "$bin") || return 1
    for lib in $(readelf -d "$bin" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
      path=$(awk -v l="$lib" '$1 == l && $2 == "=>" { print $3 }' <<< "$lddout")
      # The loader is listed under its full path.
      [ -n "$path" ] || path=$(awk -v l="/$lib" 'substr($1, length($1) - length(l) + 1) == l { print $1 }' <<< "$lddout")
      [ -n "$path" ] && [ "$path" != "not" ] || { echo "unresolved: $lib" >&2; return 1; }
      rest=$(readlink -f "$path")
      rest=${rest#/usr}
      libs+=("$rest")
      candidates+=("$rest" "/usr$rest")
    done
  done
  local owners owned
  owners=$(dpkg -S "${candidates[@]}" 2>/dev/null)
  owned=$(sed 's/^.*: //' <<< "$owners")
  for rest in "${libs[@]}"; do
    grep -qxF -e "$rest" -e "/usr$rest" <<< "$owned" || { echo "no package owns $rest" >&2; return 1; }
  done
  sed -e 's/: \/.*//' <<< "$owners" | tr ',' '\n' | sed -e 's/^ *//' -e 's/:.*//' | sort -u
}
list_is_exact() {
  local want got
  # ca-certificates: the aggregator's https object-store endpoints are verified against
  # the system's CAs (libcurl's default bundle); no library links it.
  want=$( { needed_packages "$AGENT_BIN" "$AGGREGATOR_BIN" || echo "<dpkg -S failed>"; echo tcpdump; echo ca-certificates; } | sort -u)
  got=$(printf '%s\n' "${PACKAGES[@]}")
  if [ "$want" != "$got" ]; then
    echo "runtime packages differ from NEEDED owners + tcpdump + ca-certificates:" >&2
    diff <(echo "$want") <(echo "$got") >&2
    return 1
  fi
}
check "the runtime packages are exactly the NEEDED libraries' packages plus tcpdump and ca-certificates" list_is_exact

# mirror_uri: the first URI of the machine's apt source for the suite
# (deb822 .sources file; a one-line sources.list as a fallback).
mirror_uri() {
  local uri=""
  if [ -f "$APT_SOURCES" ]; then
    uri=$(awk -v suite="$SUITE" '
      function flush() {
        if (uris != "" && (" " suites " ") ~ (" " suite " ") && types ~ /(^| )deb( |$)/) { print uris; found = 1; exit }
        uris = ""; suites = ""; types = ""
      }
      /^[ \t]*$/ { flush(); next }
      /^URIs:/ { sub(/^URIs:[ \t]*/, ""); split($0, u, /[ \t]+/); uris = u[1] }
      /^Suites:/ { sub(/^Suites:[ \t]*/, ""); suites = $0 }
      /^Types:/ { sub(/^Types:[ \t]*/, ""); types = $0 }
      END { if (!found) flush() }
    ' "$APT_SOURCES")
  fi
  if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
    uri=$(awk -v suite="$SUITE" '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i !~ /^\[/ && $i !~ /=/ && $i !~ /\]$/) break; if ($(i + 1) == suite) { print $i; exit } }' /etc/apt/sources.list)
  fi
  [ -n "$uri" ] && echo "$uri"
}

key=$(printf '%s\n' "$SUITE" "${PACKAGES[@]}" | sha256sum | cut -d' ' -f1)
ROOTFS="$ROOTFS_CACHE/$key"
# Each build attempt gets its own directory; failed ones are removed, and a
# finished one is renamed into place atomically, so $ROOTFS is always whole.
build_rootfs() {
  command -v debootstrap >/dev/null || { echo "debootstrap is not installed (testing/setup.sh)" >&2; return 1; }
  local mirror tmp start
  mirror=$(mirror_uri) || { echo "no apt source for $SUITE in $APT_SOURCES" >&2; return 1; }
  mkdir -p "$ROOTFS_CACHE"
  tmp=$(mktemp -d "$ROOTFS_CACHE/.build.XXXXXX")
  chmod 0755 "$tmp"  # it becomes / (mktemp makes it 0700)
  start=$(date +%s)
  e2e_log "debootstrap --variant=minbase $SUITE into $tmp from the machine's apt source"
  local includes
  includes=$(IFS=,; echo "${PACKAGES[*]}")
  if ! debootstrap --variant=minbase --include="$includes" "$SUITE" "$tmp" "$mirror" \
    > "$tmp.log" 2>&1; then
    tail -20 "$tmp.log" >&2
    remove_tree "$tmp"
    return 1
  fi
  e2e_log "debootstrap done in $(($(date +%s) - start)) s"
  rm -rf "$tmp/var/cache/apt/archives/"*.deb
  mv -T "$tmp" "$ROOTFS" 2>/dev/null || remove_tree "$tmp"  # another run won the race
  rm -f "$tmp.log"
}
# remove_tree DIR: unmounts anything debootstrap left mounted below DIR first
# and never crosses into another file system.
remove_tree() {
  local m
  for m in $(findmnt -rn -o TARGET | grep -F "$1/" | sort -r); do umount -l "$m" 2>/dev/null; done
  rm -rf --one-file-system "$1" "$1.log"
}

rootfs_available() {
  if [ -d "$ROOTFS" ]; then
    e2e_log "using the cached root filesystem $ROOTFS"
  else
    build_rootfs || return 1
  fi
  [ -d "$ROOTFS" ]
}
check "debootstrap: a $SUITE minbase root filesystem with the runtime packages" rootfs_available
[ -d "$ROOTFS" ] || stop "root filesystem is available" "$ROOTFS missing"
# Keep only the current root filesystem; builds of crashed runs (over an
# hour old) go too.
for old in "$ROOTFS_CACHE"/*; do
  [ "$old" = "$ROOTFS" ] || [ ! -d "$old" ] || remove_tree "$old"
done
find "$ROOTFS_CACHE" -mindepth 1 -maxdepth 1 -name '.build.*' -mmin +60 |
  while read -r old; do remove_tree "$old"; done

# Each package really is installed in the root filesystem.
installed() {
  local p missing=0
  for p in "${PACKAGES[@]}"; do
    [ "$(chroot "$ROOTFS" dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" = "install ok installed" ] ||
      { echo "not installed: $p" >&2; missing=1; }
  done
  [ "$missing" -eq 0 ]
}
check "every runtime package is installed in the root filesystem" installed

# The binaries go in as the image's COPY puts them; removed again at exit so
# the cached root filesystem stays as debootstrap left it.
work=/tmp/pc-runtime-test
cleanup() {
  [ -n "${aggregator_pid:-}" ] && kill -KILL "$aggregator_pid" 2>/dev/null
  [ -n "${agent_pid:-}" ] && kill -KILL "$agent_pid" 2>/dev/null
  wait 2>/dev/null
  rm -f "$ROOTFS/usr/local/bin/capture-agent" "$ROOTFS/usr/local/bin/capture-aggregator"
  rm -rf --one-file-system "$ROOTFS$work"
  rm -rf "$snapshot"
}
trap cleanup EXIT
install -m 0755 "$AGENT_BIN" "$ROOTFS/usr/local/bin/capture-agent"
install -m 0755 "$AGGREGATOR_BIN" "$ROOTFS/usr/local/bin/capture-aggregator"
rm -rf --one-file-system "$ROOTFS$work"
mkdir -p "$ROOTFS$work"

# loader_resolves BIN: the root filesystem's own loader finds every library.
loader_resolves() {
  local out
  out=$(chroot "$ROOTFS" /lib64/ld-linux-x86-64.so.2 --list "$1" 2>&1) || { echo "$out" >&2; return 1; }
  if grep -q "not found" <<< "$out"; then grep "not found" <<< "$out" >&2; return 1; fi
}
# runs_version BIN NAME: absl's --version prints the program name, exit 0.
runs_version() {
  local out
  out=$(chroot "$ROOTFS" "$1" --version 2>&1) || { echo "$out" >&2; return 1; }
  [ "$(head -1 <<< "$out")" = "$2" ] || { echo "$out" >&2; return 1; }
}
# rejects BIN EXPECTED-MESSAGE ARGS...: main() runs its own validation and
# exits 2 with that message (not a loader error, which exits 127).
rejects() {
  local bin=$1 want=$2 out rc
  shift 2
  out=$(chroot "$ROOTFS" "$bin" "$@" 2>&1)
  rc=$?
  [ "$rc" -eq 2 ] && grep -qF -e "$want" <<< "$out" || { echo "rc=$rc: $out" >&2; return 1; }
}
for bin in capture-agent capture-aggregator; do
  check "$bin: every shared library resolves in the runtime root filesystem" \
    loader_resolves "/usr/local/bin/$bin"
  check "$bin --version runs in the runtime root filesystem" \
    runs_version "/usr/local/bin/$bin" "$bin"
done
check "capture-agent validates its config in the runtime root filesystem" \
  rejects /usr/local/bin/capture-agent "node_name: required"
check "capture-aggregator validates its flags in the runtime root filesystem" \
  rejects /usr/local/bin/capture-aggregator "--retention must be positive" --retention=0s

tcpdump_runs() {
  local out
  out=$(chroot "$ROOTFS" /usr/bin/tcpdump --version 2>&1) || { echo "$out" >&2; return 1; }
  grep -q "^tcpdump version" <<< "$out" && grep -q "^libpcap version" <<< "$out" ||
    { echo "$out" >&2; return 1; }
}
check "tcpdump --version runs in the runtime root filesystem" tcpdump_runs

# Both servers start in the root filesystem and listen on loopback; their
# API server is a closed loopback port (they retry, never exit).
cat > "$ROOTFS$work/kubeconfig" <<'EOF'
apiVersion: v1
kind: Config
clusters:
- name: none
  cluster:
    server: https://127.0.0.1:1
    insecure-skip-tls-verify: true
users:
- name: none
  user:
    token: unused
contexts:
- name: none
  context: {cluster: none, user: none}
current-context: none
EOF
chmod 0644 "$ROOTFS$work/kubeconfig"
mkdir -p "$ROOTFS$work/data" "$ROOTFS$work/captures"
chown "$AGGREGATOR_UID:$AGGREGATOR_UID" "$ROOTFS$work/data"

# port_of LOG EVENT: the port a server logged in its start line.
port_of() {
  sed -n "s/.*event=$2 .*port=\"\([0-9]*\)\".*/\1/p" "$1" | head -1
}
started() { [ -n "$(port_of "$1" "$2")" ]; }

chroot --userspec="$AGGREGATOR_UID:$AGGREGATOR_UID" "$ROOTFS" /usr/local/bin/capture-aggregator \
  --listen=127.0.0.1:0 --data_dir="$work/data" --kubeconfig="$work/kubeconfig" \
  --metrics_address=127.0.0.1:0 \
  > "$ROOTFS$work/aggregator.log" 2>&1 &
aggregator_pid=$!
check_eventually "capture-aggregator starts as uid $AGGREGATOR_UID in the runtime root filesystem" 10 \
  started "$ROOTFS$work/aggregator.log" aggregator_started
aggregator_port=$(port_of "$ROOTFS$work/aggregator.log" aggregator_started)

chroot "$ROOTFS" /usr/local/bin/capture-agent --node_name=node-a --listen=127.0.0.1:0 \
  --capture_dir="$work/captures" --kubeconfig="$work/kubeconfig" --metrics_address=127.0.0.1:0 \
  > "$ROOTFS$work/agent.log" 2>&1 &
agent_pid=$!
check_eventually "capture-agent starts in the runtime root filesystem" 10 \
  started "$ROOTFS$work/agent.log" agent_started
agent_port=$(port_of "$ROOTFS$work/agent.log" agent_started)

# The DaemonSet's exec probe, run with the root filesystem's bash.
probe() { [ -n "$1" ] && chroot "$ROOTFS" /bin/bash -c "exec 3<>/dev/tcp/127.0.0.1/$1"; }
check "the DaemonSet's bash /dev/tcp probe works in the runtime root filesystem" probe "${agent_port:-}"
check "the probe fails on a closed port" bash -c "! chroot '$ROOTFS' /bin/bash -c 'exec 3<>/dev/tcp/127.0.0.1/1' 2>/dev/null"

# serves_metrics LOG METRIC: the daemon's /metrics (prometheus-cpp and civetweb loaded from
# the root filesystem) answers in the text format with METRIC.
serves_metrics() {
  local port
  port=$(port_of "$1" metrics_started)
  [ -n "$port" ] && curl -sf --max-time 5 "http://127.0.0.1:$port/metrics" | grep -q "^$2"
}
check_eventually "capture-aggregator serves /metrics in the runtime root filesystem" 10 \
  serves_metrics "$ROOTFS$work/aggregator.log" "packetcapture_aggregator_stored_bytes 0"
check_eventually "capture-agent serves /metrics in the runtime root filesystem" 10 \
  serves_metrics "$ROOTFS$work/agent.log" 'packetcapture_agent_captures{state="running"} 0'

# stops PID NAME: SIGTERM ends the server cleanly (exit 0).
stops() {
  kill -TERM "$1" 2>/dev/null || return 1
  local rc=0
  wait "$1" || rc=$?
  [ "$rc" -eq 0 ] || { echo "$2 exited $rc" >&2; return 1; }
}
check "capture-aggregator stops cleanly on SIGTERM" stops "$aggregator_pid" capture-aggregator
aggregator_pid=""
check "capture-agent stops cleanly on SIGTERM" stops "$agent_pid" capture-agent
agent_pid=""
if [ "$E2E_FAILED" -gt 0 ]; then
  for log in aggregator.log agent.log; do
    [ -f "$ROOTFS$work/$log" ] && { echo "--- $log"; tail -20 "$ROOTFS$work/$log"; } >&2
  done
fi

e2e_finish
