#!/usr/bin/env bash
# Builds the pinned Go test tools (etcd, kube-apiserver, kubectl, grpcurl, versitygw)
# once into a cache outside the repository and prints the directory holding them;
# also a Python venv with botocore ($cache/venv) for the SigV4 check.
# Idempotent: a tool already built at its pinned version is not rebuilt.
#
#   testing/tools/install.sh              # build what is missing, print the bin dir
#   testing/tools/install.sh --real-node  # also what a real node needs: kubelet,
#                                         # kube-proxy, kube-scheduler,
#                                         # kube-controller-manager (same module tree)
#                                         # and CoreDNS
#
# Cache: $PACKET_CAPTURE_CACHE (default /var/cache/packet-capture: a fixed
# path, because Bazel points HOME at a temporary directory inside tests).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"

# The k8s.io/kubernetes commands to build.
kube_tools=(kube-apiserver kubectl)
real_node=0
case "${1:-}" in
  "") ;;
  --real-node) real_node=1; kube_tools+=(kubelet kube-proxy kube-scheduler kube-controller-manager) ;;
  *) echo "usage: testing/tools/install.sh [--real-node]" >&2; exit 2 ;;
esac

cache=${PACKET_CAPTURE_CACHE:-/var/cache/packet-capture}
bin="$cache/bin"
mkdir -p "$bin" "$cache/src"
log() { echo "tools: $*" >&2; }

# -s -w: no symbol table or DWARF in the tools (they are run, not debugged here), which
# makes each link shorter and each binary about a third smaller.
GO_LDFLAGS="-s -w"

# Go is needed only when something must be built.
need_go() {
  if ! command -v go >/dev/null && [ -x /usr/local/go/bin/go ]; then
    export PATH=$PATH:/usr/local/go/bin
  fi
  command -v go >/dev/null || { log "go is required (Go 1.26 or newer)"; exit 1; }
  export GOFLAGS=-mod=mod
  export CGO_ENABLED=0
}

# stamp NAME VERSION: true when bin/NAME was built at VERSION.
built() { [ -x "$bin/$1" ] && [ "$(cat "$bin/.$1.version" 2>/dev/null)" = "$2" ]; }
mark() { echo "$2" > "$bin/.$1.version"; }

build_kubernetes() {
  local missing=() t
  for t in "${kube_tools[@]}"; do
    built "$t" "$KUBERNETES_VERSION" || missing+=("$t")
  done
  [ ${#missing[@]} -gt 0 ] || return 0
  need_go
  local dir="$cache/src/kubernetes-$KUBERNETES_VERSION" staging
  staging="v0.${KUBERNETES_VERSION#v1.}"
  mkdir -p "$dir"
  log "building ${missing[*]} $KUBERNETES_VERSION (staging $staging); kube-apiserver and kubectl take 10-25 min cold, each further one a few minutes"
  (
    cd "$dir"
    [ -f go.mod ] || go mod init local/kubetools >/dev/null 2>&1
    local modfile
    modfile=$(go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')
    # Every k8s.io module kubernetes requires at v0.0.0 lives in its staging tree.
    local replaces=()
    while read -r mod; do
      replaces+=("-replace=$mod=$mod@$staging")
    done < <(awk '$1 ~ /^k8s\.io\// && $2 == "v0.0.0" {print $1}' "$modfile")
    go mod edit "${replaces[@]}" "-require=k8s.io/kubernetes@$KUBERNETES_VERSION"
    {
      printf '//go:build tools\n\npackage tools\n\nimport (\n'
      for t in "${kube_tools[@]}"; do printf '\t_ "k8s.io/kubernetes/cmd/%s"\n' "$t"; done
      printf ')\n'
    } > tools.go
    go mod tidy >&2
    # One invocation: the commands share most packages, and their links run side by side.
    local pkgs=()
    for t in "${missing[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$t"); done
    go build -trimpath -ldflags="$GO_LDFLAGS" -o "$bin/" "${pkgs[@]}"
  )
  for t in "${missing[@]}"; do mark "$t" "$KUBERNETES_VERSION"; done
}

build_etcd() {
  built etcd "$ETCD_VERSION" && return
  need_go
  local dir="$cache/src/etcd-$ETCD_VERSION"
  mkdir -p "$dir"
  log "building etcd $ETCD_VERSION"
  (
    cd "$dir"
    # `go install ...@v` refuses modules with replace directives: build from our own module.
    [ -f go.mod ] || go mod init local/etcdtool >/dev/null 2>&1
    go mod edit "-require=go.etcd.io/etcd/server/v3@$ETCD_VERSION"
    cat > tools.go <<'GO'
//go:build tools

package tools

import _ "go.etcd.io/etcd/server/v3"
GO
    go mod tidy >&2
    go build -trimpath -ldflags="$GO_LDFLAGS" -o "$bin/etcd" go.etcd.io/etcd/server/v3
  )
  mark etcd "$ETCD_VERSION"
}

build_grpcurl() {
  built grpcurl "$GRPCURL_VERSION" && return
  need_go
  log "building grpcurl $GRPCURL_VERSION"
  GOBIN="$bin" go install -trimpath -ldflags="$GO_LDFLAGS" "github.com/fullstorydev/grpcurl/cmd/grpcurl@$GRPCURL_VERSION"
  mark grpcurl "$GRPCURL_VERSION"
}

# versitygw: the S3-compatible server of the object-store tests (POSIX backend).
build_versitygw() {
  built versitygw "$VERSITYGW_VERSION" && return
  need_go
  log "building versitygw $VERSITYGW_VERSION (about 2 min cold)"
  GOBIN="$bin" go install -trimpath -ldflags="$GO_LDFLAGS" "github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION"
  mark versitygw "$VERSITYGW_VERSION"
}

# botocore in its own venv (not the system Python's packages): its SigV4 signer
# is the reference common/s3:sigv4_botocore_test compares ours with.
install_botocore() {
  local venv="$cache/venv" stamp="$cache/venv/.botocore.version"
  [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$BOTOCORE_VERSION" ] && return
  command -v python3 >/dev/null || { log "python3 is required (testing/setup.sh installs python3-venv)"; exit 1; }
  log "installing botocore $BOTOCORE_VERSION into $venv"
  python3 -m venv "$venv" >&2 || { log "python3 -m venv failed (Debian: apt-get install python3-venv)"; exit 1; }
  "$venv/bin/pip" install --quiet --disable-pip-version-check "botocore==$BOTOCORE_VERSION" >&2
  "$venv/bin/python" -c 'import botocore' >&2
  echo "$BOTOCORE_VERSION" > "$stamp"
}

# CoreDNS serves the real node's cluster DNS (testing/cluster/real_node.sh). Built with
# only the plugins that node's Corefile uses (testing/cluster/real_node_services.sh):
# the release's main links every plugin (cloud DNS providers and their SDKs), which
# took 5 of setup's 23 minutes on a fresh machine.
COREDNS_PLUGINS=(bind cache errors kubernetes)
build_coredns() {
  local stamp="$COREDNS_VERSION+${COREDNS_PLUGINS[*]}"
  stamp=${stamp// /,}
  built coredns "$stamp" && return
  need_go
  local dir="$cache/src/coredns-$COREDNS_VERSION" p
  mkdir -p "$dir"
  log "building coredns $COREDNS_VERSION with the plugins ${COREDNS_PLUGINS[*]}"
  (
    cd "$dir"
    [ -f go.mod ] || go mod init local/corednstool >/dev/null 2>&1
    go mod edit "-require=github.com/coredns/coredns@$COREDNS_VERSION"
    {
      printf 'package main\n\nimport (\n'
      for p in "${COREDNS_PLUGINS[@]}"; do printf '\t_ "github.com/coredns/coredns/plugin/%s"\n' "$p"; done
      printf '\n\t"github.com/coredns/coredns/coremain"\n)\n\nfunc main() { coremain.Run() }\n'
    } > main.go
    go mod tidy >&2
    go build -trimpath -ldflags="$GO_LDFLAGS" -o "$bin/coredns" .
  )
  mark coredns "$stamp"
}

# Two chains side by side: Kubernetes (the longest build) and the rest. Each go build
# already uses every core for compiling; the other chain fills the time one spends
# downloading modules or linking on one core. Each chain is a background subshell, where
# set -e still stops it at its first failure.
( build_kubernetes ) &
kube=$!
(
  build_grpcurl
  build_versitygw
  install_botocore
  build_etcd
  [ "$real_node" = 0 ] || build_coredns
) &
others=$!
kube_rc=0 others_rc=0
wait "$kube" || kube_rc=$?
wait "$others" || others_rc=$?
[ "$kube_rc" -eq 0 ] && [ "$others_rc" -eq 0 ] || { log "a build failed (see above)"; exit 1; }
echo "$bin"
