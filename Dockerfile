# One image for the packet-capture binaries (today: capture-agent; the
# aggregator joins it once it exists). Built from Debian's packages only.
#   docker build -t packet-capture:latest .

# --- build: Debian's Bazel 4.2.3 and the system gRPC/Protobuf/Abseil ---
FROM debian:bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      bazel-bootstrap g++ \
      libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc \
      libabsl-dev libcurl4-openssl-dev libyaml-cpp-dev libgtest-dev libgmock-dev \
      ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN bazel build //node_agent:capture-agent \
 && install -D -m 0755 bazel-bin/node_agent/capture-agent /out/capture-agent \
 && bazel shutdown

# --- runtime: tcpdump and exactly the shared libraries capture-agent links ---
# (`readelf -d` NEEDED entries mapped to packages with `dpkg -S`; libc6,
# libstdc++6 and libgcc-s1 are already in the base image.)
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      tcpdump \
      libcurl4 \
      libyaml-cpp0.7 \
      libgrpc++1.51 \
      libgrpc29 \
      libprotobuf32 \
      libabsl20220623 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/capture-agent /usr/local/bin/capture-agent
ENTRYPOINT ["/usr/local/bin/capture-agent"]
