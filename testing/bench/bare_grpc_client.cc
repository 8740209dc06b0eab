// The peer for the agent's idle RSS: a bare gRPC C++ client that makes one
// health check against ADDRESS and then idles for SECONDS, so its resident
// memory can be read from /proc while it waits.
//
//   bare_grpc_client ADDRESS SECONDS
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <memory>

#include "grpcpp/grpcpp.h"
#include "proto/health.grpc.pb.h"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s ADDRESS SECONDS\n", argv[0]);
    return 2;
  }
  auto channel =
      grpc::CreateChannel(argv[1], grpc::InsecureChannelCredentials());
  auto stub = grpc::health::v1::Health::NewStub(channel);
  grpc::ClientContext context;
  grpc::health::v1::HealthCheckRequest request;
  grpc::health::v1::HealthCheckResponse response;
  grpc::Status status = stub->Check(&context, request, &response);
  std::printf("health: %s\n",
              status.ok() ? "SERVING" : status.error_message().c_str());
  std::fflush(stdout);
  sleep(static_cast<unsigned>(std::atoi(argv[2])));
  return status.ok() ? 0 : 1;
}
