// The few facts about a Pod that capture decisions depend on, decoupled from
// the Kubernetes JSON types so the decision logic is tested with plain values.
#ifndef NODE_AGENT_POD_VIEW_H_
#define NODE_AGENT_POD_VIEW_H_

#include <map>
#include <optional>
#include <string>

namespace pc::agent {

struct PodView {
  std::string ns;
  std::string name;
  std::string uid;
  std::string node;
  std::string phase;  // Pending, Running, Succeeded, Failed, Unknown
  std::string ip;     // status.podIP; empty until assigned
  bool host_network = false;
  bool deleting = false;                  // metadata.deletionTimestamp is set
  std::optional<std::string> annotation;  // tcpdump.antrea.io, if present
  // Annotations named tcpdump.antrea.io/* (the capture options).
  std::map<std::string, std::string> option_annotations;
  std::map<std::string, std::string> labels;
};

}  // namespace pc::agent

#endif  // NODE_AGENT_POD_VIEW_H_
