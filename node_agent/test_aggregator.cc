#include "node_agent/test_aggregator.h"

#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"

namespace pc::agent::testutil {

absl::StatusOr<aggregator::AgentIdentity> AcceptToken::Authenticate(
    const std::string& token) {
  if (token != "agent-token") return absl::UnauthenticatedError("bad token");
  aggregator::AgentIdentity identity;
  identity.username = "agent";
  identity.node = "node-a";
  return identity;
}

TestAggregator::TestAggregator(const std::string& dir, int port,
                               const aggregator::IngestOptions& ingest) {
  aggregator::StoreOptions options;
  options.data_dir = dir;
  store_ = std::move(*aggregator::Store::Open(options, &registry_));
  service_ = std::make_unique<aggregator::IngestServiceImpl>(store_.get(),
                                                             &auth_, ingest);
  grpc::ServerBuilder builder;
  builder.AddListeningPort(absl::StrCat("127.0.0.1:", port),
                           grpc::InsecureServerCredentials(), &port_);
  builder.RegisterService(service_.get());
  server_ = builder.BuildAndStart();
}

TestAggregator::~TestAggregator() {
  server_->Shutdown(std::chrono::system_clock::now());
}

}  // namespace pc::agent::testutil
