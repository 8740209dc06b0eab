#include "node_agent/config.h"

#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/kube/names.h"
#include "node_agent/aggregator_targets.h"
#include "yaml-cpp/yaml.h"

namespace pc::agent {
namespace {

template <typename T>
absl::Status Get(const YAML::Node& node, const std::string& key, T* out) {
  try {
    *out = node.as<T>();
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("config key ", key, ": ", e.what()));
  }
  return absl::OkStatus();
}

bool ValidHostPort(const std::string& s) {
  const size_t colon = s.rfind(':');
  if (colon == std::string::npos || colon == 0) return false;
  int port;
  return absl::SimpleAtoi(s.substr(colon + 1), &port) && port >= 0 &&
         port <= 65535;
}

}  // namespace

absl::StatusOr<AgentConfig> ParseAgentConfig(const std::string& yaml_text) {
  AgentConfig c;
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("config is not valid YAML: ", e.what()));
  }
  if (root.IsNull()) return c;
  if (!root.IsMap()) {
    return absl::InvalidArgumentError("config must be a YAML mapping");
  }
  for (const auto& kv : root) {
    std::string key;
    try {
      key = kv.first.as<std::string>();
    } catch (const YAML::Exception&) {
      return absl::InvalidArgumentError("config keys must be strings");
    }
    const YAML::Node& v = kv.second;
    absl::Status s;
    if (key == "node_name")
      s = Get(v, key, &c.node_name);
    else if (key == "kubeconfig")
      s = Get(v, key, &c.kubeconfig);
    else if (key == "capture_dir")
      s = Get(v, key, &c.capture_dir);
    else if (key == "listen")
      s = Get(v, key, &c.listen);
    else if (key == "max_files")
      s = Get(v, key, &c.max_files);
    else if (key == "max_captures")
      s = Get(v, key, &c.max_captures);
    else if (key == "max_bytes")
      s = Get(v, key, &c.max_bytes);
    else if (key == "netns_dirs")
      s = Get(v, key, &c.netns_dirs);
    else if (key == "scan_proc")
      s = Get(v, key, &c.scan_proc);
    else if (key == "allow_host_network")
      s = Get(v, key, &c.allow_host_network);
    else if (key == "tcpdump_binary")
      s = Get(v, key, &c.tcpdump_binary);
    else if (key == "snaplen")
      s = Get(v, key, &c.snaplen);
    else if (key == "buffer_kib")
      s = Get(v, key, &c.buffer_kib);
    else if (key == "immediate_mode")
      s = Get(v, key, &c.immediate_mode);
    else if (key == "stop_grace_seconds")
      s = Get(v, key, &c.stop_grace_seconds);
    else if (key == "watch_timeout_seconds")
      s = Get(v, key, &c.watch_timeout_seconds);
    else if (key == "aggregator")
      s = Get(v, key, &c.aggregator);
    else if (key == "aggregator_token_file")
      s = Get(v, key, &c.aggregator_token_file);
    else
      return absl::InvalidArgumentError(
          absl::StrCat("unknown config key \"", key, "\""));
    if (!s.ok()) return s;
  }
  return c;
}

absl::StatusOr<AgentConfig> LoadAgentConfig(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    return absl::NotFoundError(absl::StrCat("cannot read config file ", path));
  }
  std::stringstream text;
  text << in.rdbuf();
  auto config = ParseAgentConfig(text.str());
  if (!config.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": ", config.status().message()));
  }
  return config;
}

absl::Status ValidateAgentConfig(const AgentConfig& c) {
  auto bad = [](const std::string& key, const std::string& want) {
    return absl::InvalidArgumentError(absl::StrCat(key, ": ", want));
  };
  if (c.node_name.empty()) {
    return bad("node_name",
               "required (set NODE_NAME from the Downward API or --node_name)");
  }
  if (!kube::IsDns1123Subdomain(c.node_name)) {
    return bad("node_name",
               absl::StrCat("\"", c.node_name, "\" is not a valid node name"));
  }
  if (c.capture_dir.empty() || c.capture_dir[0] != '/') {
    return bad("capture_dir", "must be an absolute path");
  }
  if (!ValidHostPort(c.listen)) return bad("listen", "expected host:port");
  if (c.max_files < 1 || c.max_files > 10000) {
    return bad("max_files", "expected 1..10000");
  }
  if (c.max_captures < 1) return bad("max_captures", "expected at least 1");
  if (c.max_bytes < 2000000)
    return bad("max_bytes", "expected at least 2000000");
  for (const auto& dir : c.netns_dirs) {
    if (dir.empty() || dir[0] != '/') {
      return bad("netns_dirs",
                 absl::StrCat("\"", dir, "\" is not an absolute path"));
    }
  }
  if (c.tcpdump_binary.empty() || c.tcpdump_binary[0] != '/') {
    return bad("tcpdump_binary", "must be an absolute path");
  }
  if (c.snaplen < 0 || c.snaplen > 262144)
    return bad("snaplen", "expected 0..262144");
  if (c.buffer_kib < 0) return bad("buffer_kib", "expected 0 or more");
  if (c.stop_grace_seconds <= 0 || c.stop_grace_seconds > 60) {
    return bad("stop_grace_seconds", "expected more than 0, at most 60");
  }
  if (c.watch_timeout_seconds < 10 || c.watch_timeout_seconds > 3600) {
    return bad("watch_timeout_seconds", "expected 10..3600");
  }
  if (!c.aggregator.empty()) {
    absl::StatusOr<std::vector<std::string>> list =
        ParseAggregatorList(c.aggregator);
    if (!list.ok()) {
      return bad("aggregator",
                 absl::StrCat("expected host:port[,host:port...] (",
                              list.status().message(), ")"));
    }
  }
  if (!c.aggregator.empty() &&
      (c.aggregator_token_file.empty() || c.aggregator_token_file[0] != '/')) {
    return bad("aggregator_token_file",
               "must be an absolute path when aggregator is set");
  }
  return absl::OkStatus();
}

}  // namespace pc::agent
