#include "aggregator/node_monitor.h"

#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/kube/kube_json.h"
#include "common/kube/names.h"
#include "common/log.h"
#include "google/protobuf/struct.pb.h"

namespace pc::aggregator {
namespace {

using google::protobuf::Struct;
using google::protobuf::Value;

// The field `name` of a JSON object, or nullptr.
const Value* Field(const Struct& object, const std::string& name) {
  auto it = object.fields().find(name);
  return it == object.fields().end() ? nullptr : &it->second;
}

}  // namespace

absl::StatusOr<NodeState> ParseNodeState(absl::string_view json) {
  Struct node;
  if (absl::Status parsed = kube::ParseJson(json, &node); !parsed.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("Node is not a JSON object: ", parsed.message()));
  }
  const Value* status = Field(node, "status");
  if (status == nullptr || !status->has_struct_value()) {
    return NodeState::kNotReady;
  }
  const Value* conditions = Field(status->struct_value(), "conditions");
  if (conditions == nullptr || !conditions->has_list_value()) {
    return NodeState::kNotReady;
  }
  for (const Value& condition : conditions->list_value().values()) {
    if (!condition.has_struct_value()) continue;
    const Value* type = Field(condition.struct_value(), "type");
    if (type == nullptr || type->string_value() != "Ready") continue;
    const Value* value = Field(condition.struct_value(), "status");
    return value != nullptr && value->string_value() == "True"
               ? NodeState::kReady
               : NodeState::kNotReady;
  }
  return NodeState::kNotReady;
}

absl::StatusOr<NodeState> LookUpNode(kube::HttpClient& client,
                                     const std::string& node) {
  if (!kube::IsDns1123Subdomain(node)) {
    return absl::InvalidArgumentError(
        absl::StrCat("not a node name: \"", node.substr(0, 256), "\""));
  }
  auto response = client.Do("GET", absl::StrCat("/api/v1/nodes/", node));
  if (!response.ok()) return response.status();
  if (response->status_code == 404) return NodeState::kGone;
  if (response->status_code != 200) {
    return kube::HttpError(response->status_code, response->body);
  }
  return ParseNodeState(response->body);
}

NodeMonitor::NodeMonitor(CaptureStore* store, NodeLookup lookup,
                         NodeMonitorOptions options)
    : store_(store),
      lookup_(std::move(lookup)),
      options_(std::move(options)),
      started_(Now()) {}

absl::Time NodeMonitor::Now() const {
  return options_.clock ? options_.clock() : absl::Now();
}

void NodeMonitor::Connected(const std::string& node) {
  absl::MutexLock lock(&mu_);
  Node& n = nodes_[node];
  ++n.streams;
  n.next_check = absl::InfinitePast();
}

void NodeMonitor::Disconnected(const std::string& node) {
  const absl::Time now = Now();
  absl::MutexLock lock(&mu_);
  Node& n = nodes_[node];
  if (n.streams > 0 && --n.streams == 0) n.away_since = now;
}

std::vector<std::string> NodeMonitor::Tick() {
  const absl::Time now = Now();
  // Only nodes with captures still on them have anything to lose.
  const std::set<std::string> with_captures = store_->NodesWithCaptures();
  std::vector<std::pair<std::string, absl::Time>> due;
  {
    absl::MutexLock lock(&mu_);
    for (const std::string& node : with_captures) {
      if (!nodes_.count(node)) nodes_[node].away_since = started_;
    }
    for (auto it = nodes_.begin(); it != nodes_.end();) {
      const Node& n = it->second;
      if (n.streams == 0 && !with_captures.count(it->first)) {
        it = nodes_.erase(it);
        continue;
      }
      if (n.streams == 0 && now - n.away_since >= options_.gone_after &&
          now >= n.next_check) {
        due.emplace_back(it->first, n.away_since);
      }
      ++it;
    }
  }
  std::vector<std::string> gone;
  for (const auto& [node, away_since] : due) {
    const absl::StatusOr<NodeState> state = lookup_(node);
    {
      absl::MutexLock lock(&mu_);
      auto it = nodes_.find(node);
      // Back meanwhile (maybe away again since): nothing to do now.
      if (it == nodes_.end() || it->second.streams > 0 ||
          it->second.away_since != away_since) {
        continue;
      }
      if (!state.ok() || *state == NodeState::kReady) {
        it->second.next_check = now + options_.recheck_every;
        if (!state.ok()) {
          LogLine("node_lookup_failed",
                  {{"node", node}, {"error", state.status().ToString()}});
        }
        continue;
      }
      nodes_.erase(it);
    }
    const std::string reason = absl::StrCat(
        "node ", node, " gone: agent disconnected ",
        absl::FormatDuration(absl::Trunc(now - away_since, absl::Seconds(1))),
        " ago and Node ", *state == NodeState::kGone ? "deleted" : "NotReady");
    LogLine("node_gone", {{"node", node}, {"reason", reason}});
    store_->MarkGone(node, {}, reason);
    gone.push_back(node);
  }
  return gone;
}

}  // namespace pc::aggregator
