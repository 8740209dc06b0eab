// The agent's configuration: a YAML file (yaml-cpp) overlaid by a few flags,
// validated as a whole at start so a mistake is one clear message.
#ifndef NODE_AGENT_CONFIG_H_
#define NODE_AGENT_CONFIG_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace pc::agent {

struct AgentConfig {
  std::string node_name;   // NODE_NAME (Downward API) or --node_name
  std::string kubeconfig;  // empty: in-cluster config
  std::string capture_dir = "/captures";
  std::string listen = "127.0.0.1:9091";  // CaptureService for this node
  int max_files = 100;                    // largest N an annotation may ask for
  int max_captures = 64;                  // node-wide budget: captures
  int64_t max_bytes = 1LL << 30;          // node-wide budget: bytes reserved
  std::vector<std::string> netns_dirs = {"/var/run/netns", "/run/netns"};
  bool scan_proc = false;  // also /proc/*/ns/net (needs hostPID)
  bool allow_host_network = false;
  std::string tcpdump_binary = "/usr/bin/tcpdump";
  int snaplen = 0;
  int buffer_kib = 0;
  bool immediate_mode = false;
  double stop_grace_seconds = 2;
  int watch_timeout_seconds = 300;
  // host:port[,host:port...] (replicas: tried in turn); empty: no uplink
  std::string aggregator;
  // Projected ServiceAccount token with the aggregator's audience (re-read at
  // every connection: the kubelet rotates it).
  std::string aggregator_token_file =
      "/var/run/secrets/tokens/aggregator-token";
};

// Parses YAML text over the defaults. Unknown keys are errors (a typo must not
// silently fall back to a default).
absl::StatusOr<AgentConfig> ParseAgentConfig(const std::string& yaml_text);
absl::StatusOr<AgentConfig> LoadAgentConfig(const std::string& path);

// Checks every value; the message names the key and what is expected.
absl::Status ValidateAgentConfig(const AgentConfig& config);

}  // namespace pc::agent

#endif  // NODE_AGENT_CONFIG_H_
