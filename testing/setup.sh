#!/usr/bin/env bash
# Installs everything the build, the demo and the tests need on a fresh Debian
# bookworm machine, idempotently: Debian packages (Bazel, gRPC, Protobuf, Abseil,
# libcurl, yaml-cpp, GoogleTest, tcpdump, iproute2, clang for the fuzzers) and
# the pinned Go-built tools (etcd, kube-apiserver, kubectl, grpcurl, versitygw; see
# testing/tools/versions.env) with a Python venv holding botocore.
#
#   testing/setup.sh              # what the local cluster needs
#   testing/setup.sh --real-node  # also what a real node needs: containerd, runc, the
#                                 # CNI plugins, buildah, ...; kubelet, kube-proxy,
#                                 # kube-scheduler, kube-controller-manager, CoreDNS;
#                                 # and the node's images (testing/cluster.sh images)
#
# Package-manager output goes to $PACKET_CAPTURE_CACHE/setup.log (default
# /var/cache/packet-capture); one line on stderr says what is being installed.
# Prints the directory of the Go-built tools on its last line.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

APT_PACKAGES=(
  bazel-bootstrap
  g++
  libgrpc++-dev
  libprotobuf-dev
  protobuf-compiler
  protobuf-compiler-grpc
  libabsl-dev
  libcurl4-openssl-dev
  # libcrypto (SHA-256, HMAC) for the S3 client's SigV4 signatures.
  libssl-dev
  libyaml-cpp-dev
  libgtest-dev
  libgmock-dev
  tcpdump
  iproute2
  iputils-ping
  openssl
  jq
  procps
  debootstrap
  clang-format
  # Capture filters (pcap_compile), metrics, capturectl's parser.
  libpcap-dev
  prometheus-cpp-dev
  libcli11-dev
  # Checks of pcapng output and the merge benchmark's peer (capinfos,
  # tshark, mergecap), and a real Prometheus scraping the daemons.
  tshark
  prometheus
  # The fuzz targets (testing/fuzz.sh): clang and its libFuzzer runtime.
  clang-14
  libclang-rt-14-dev
  # The venv holding botocore (testing/tools/install.sh), the S3 signature check.
  python3-venv
)
# A real node (testing/cluster.sh up --real-node).
REAL_NODE_PACKAGES=(
  containerd
  runc
  containernetworking-plugins
  busybox-static
  buildah
  skopeo
  fuse-overlayfs
  iptables
  conntrack
  bind9-dnsutils
  util-linux
  gcc
  libc6-dev
)

real_node=0
case "${1:-}" in
  "") ;;
  --real-node) real_node=1; APT_PACKAGES+=("${REAL_NODE_PACKAGES[@]}") ;;
  *) echo "usage: testing/setup.sh [--real-node]" >&2; exit 2 ;;
esac
cache=${PACKET_CAPTURE_CACHE:-/var/cache/packet-capture}
mkdir -p "$cache"
log="$cache/setup.log"

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" ||
    missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]} (log: $log)" >&2
  export DEBIAN_FRONTEND=noninteractive
  { apt-get update -qq && apt-get install -y -qq "${missing[@]}"; } >> "$log" 2>&1 ||
    { tail -20 "$log" >&2; echo "setup: apt-get failed (log: $log)" >&2; exit 1; }
fi

if [ "$real_node" = 1 ]; then
  # The images and the tools are built side by side: the image build spends minutes
  # downloading (debootstrap, apt-get inside the build), the Go builds compiling.
  echo "setup: building the real node's images (cached by content; log: $cache/images/build.log)" >&2
  "$here/cluster.sh" images > /dev/null &
  images=$!
  tools_rc=0 images_rc=0
  bin=$("$here/tools/install.sh" --real-node) || tools_rc=$?
  wait "$images" || images_rc=$?
  [ "$images_rc" -eq 0 ] || echo "setup: testing/cluster.sh images failed (exit $images_rc)" >&2
  [ "$tools_rc" -eq 0 ] || echo "setup: testing/tools/install.sh failed (exit $tools_rc)" >&2
  [ "$tools_rc" -eq 0 ] && [ "$images_rc" -eq 0 ] || exit 1
  echo "$bin"
else
  "$here/tools/install.sh"
fi
