#!/usr/bin/env bash
# Installs everything the build, the demo and the tests need on a fresh Debian
# bookworm machine, idempotently: Debian packages (Bazel, gRPC, Protobuf, Abseil,
# libcurl, yaml-cpp, GoogleTest, tcpdump, iproute2) and the pinned Go-built tools
# (etcd, kube-apiserver, kubectl, grpcurl; see testing/tools/versions.env).
#
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
)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" ||
    missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq "${missing[@]}" >&2
fi

"$here/tools/install.sh"
