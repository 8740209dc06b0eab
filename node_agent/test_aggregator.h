// A real aggregator (store + ingest service) on a loopback port, for tests of
// the agent's uplink. Tokens: "agent-token" is node-a's agent, anything else
// is refused. Not thread-safe to construct or destroy; the server itself
// serves from gRPC's threads.
#ifndef NODE_AGENT_TEST_AGGREGATOR_H_
#define NODE_AGENT_TEST_AGGREGATOR_H_

#include <memory>
#include <string>

#include "aggregator/authenticator.h"
#include "aggregator/ingest_service.h"
#include "aggregator/store.h"
#include "common/capture_registry.h"
#include "grpcpp/grpcpp.h"

namespace pc::agent::testutil {

// Accepts "agent-token" as node-a's agent.
class AcceptToken : public aggregator::Authenticator {
 public:
  absl::StatusOr<aggregator::AgentIdentity> Authenticate(
      const std::string& token) override;
};

class TestAggregator {
 public:
  // Stores under `dir`; listens on 127.0.0.1:`port` (0: any free port).
  TestAggregator(const std::string& dir, int port,
                 const aggregator::IngestOptions& ingest = {});
  ~TestAggregator();
  int port() const { return port_; }
  CaptureRegistry& registry() { return registry_; }
  aggregator::Store& store() { return *store_; }

 private:
  CaptureRegistry registry_;
  AcceptToken auth_;
  std::unique_ptr<aggregator::Store> store_;
  std::unique_ptr<aggregator::IngestServiceImpl> service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

}  // namespace pc::agent::testutil

#endif  // NODE_AGENT_TEST_AGGREGATOR_H_
