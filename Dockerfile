# One image for both packet-capture binaries: capture-agent (the per-node
# DaemonSet) and capture-aggregator (the optional Deployment). It has no
# ENTRYPOINT: each manifest in k8s/ chooses its binary with `command`.
# Built from Debian's packages only.
#   docker build -t packet-capture:latest .

# --- build: Debian's Bazel 4.2.3 and the system gRPC/Protobuf/Abseil ---
# (linked from their static archives, see third_party/BUILD.bazel)
FROM debian:bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      bazel-bootstrap g++ \
      libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc \
      libabsl-dev libcurl4-openssl-dev libssl-dev libyaml-cpp-dev libgtest-dev libgmock-dev \
      libpcap-dev prometheus-cpp-dev \
      ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN bazel build -c opt //node_agent:capture-agent //aggregator:capture-aggregator \
 && install -D -m 0755 bazel-bin/node_agent/capture-agent /out/capture-agent \
 && install -D -m 0755 bazel-bin/aggregator/capture-aggregator /out/capture-aggregator \
 && bazel shutdown

# --- runtime: tcpdump and exactly the packages that provide the shared
# libraries both binaries link (their `readelf -d` NEEDED entries mapped to
# packages with `dpkg -S`): libc6 (libc, libm, the loader), libgcc-s1,
# libstdc++6, libcurl4, libyaml-cpp0.7, zlib1g, libssl3 (libcrypto: the
# object store's SigV4 signatures) and prometheus-cpp's
# libprometheus-cpp-core1.0 and libprometheus-cpp-pull1.0 (/metrics; the
# latter brings civetweb's libcivetweb1 as its own dependency); gRPC,
# Protobuf and Abseil are linked in statically. ca-certificates: an https
# object-store endpoint (AWS S3, ...) is verified against the system's CAs
# (--s3_ca_file replaces them); the API server is verified with the
# ServiceAccount's ca.crt alone.
# testing/runtime_image_test.sh reads the list below (one package per line,
# no comments inside the command), installs exactly it into a bookworm
# root filesystem with debootstrap and runs both binaries and tcpdump there.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      tcpdump \
      libc6 \
      libgcc-s1 \
      libstdc++6 \
      libcurl4 \
      libyaml-cpp0.7 \
      zlib1g \
      libprometheus-cpp-core1.0 \
      libprometheus-cpp-pull1.0 \
      libpcap0.8 \
      libssl3 \
      ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/capture-agent /out/capture-aggregator /usr/local/bin/
