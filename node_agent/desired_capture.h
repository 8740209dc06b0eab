// Decides what a Pod wants from its node's agent: nothing, a capture, or a
// visible refusal. Pure logic, thread-safe.
#ifndef NODE_AGENT_DESIRED_CAPTURE_H_
#define NODE_AGENT_DESIRED_CAPTURE_H_

#include <string>

#include "node_agent/pod_view.h"

namespace pc::agent {

struct CaptureSpec {
  std::string ns;
  std::string pod;
  std::string uid;
  std::string ip;
  int max_files = 0;
  std::string annotation;
  bool host_network = false;

  bool operator==(const CaptureSpec& o) const {
    return ns == o.ns && pod == o.pod && uid == o.uid && ip == o.ip &&
           max_files == o.max_files && host_network == o.host_network;
  }
};

enum class Decision {
  kNone,     // no annotation, pod deleted or finished: nothing may run
  kWait,     // annotated but not Running with an IP yet: PENDING
  kInvalid,  // the annotation value is not valid: FAILED + Warning Event
  kRefused,  // valid, but policy forbids it (hostNetwork): FAILED + Warning
  kCapture,  // run tcpdump
};

struct Desired {
  Decision decision = Decision::kNone;
  std::string reason;  // for kWait, kInvalid, kRefused
  CaptureSpec spec;    // filled as far as known for every decision but kNone
};

struct DecideOptions {
  int max_files = 100;  // the largest N an annotation may ask for
  bool allow_host_network = false;
};

Desired DecideCapture(const PodView& pod, const DecideOptions& options);

// A pod uid as the API server writes it: 8-4-4-4-12 lowercase hex. Checked
// (with the DNS-1123 rules of common/kube/names.h for namespace and name)
// before any of them becomes part of a path.
bool IsPodUid(const std::string& s);

}  // namespace pc::agent

#endif  // NODE_AGENT_DESIRED_CAPTURE_H_
