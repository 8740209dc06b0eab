// Decides what a Pod wants from its node's agent: nothing, a capture, or a
// visible refusal. Pure logic, thread-safe.
#ifndef NODE_AGENT_DESIRED_CAPTURE_H_
#define NODE_AGENT_DESIRED_CAPTURE_H_

#include <functional>
#include <map>
#include <string>

#include "absl/status/status.h"
#include "node_agent/capture_options.h"
#include "node_agent/pod_view.h"

namespace pc::agent {

// Pod labels recorded in a capture: at most this many, this many bytes.
inline constexpr size_t kMaxRecordedLabels = 64;
inline constexpr size_t kMaxRecordedLabelBytes = 8192;

struct CaptureSpec {
  std::string ns;
  std::string pod;
  std::string uid;
  std::string ip;
  int max_files = 0;
  std::string annotation;
  bool host_network = false;
  // A changed option is a new run, as a changed N is.
  CaptureOptionsSpec options;
  // The Pod's labels, recorded when a run starts; not part of the identity
  // (relabelling a Pod does not restart its capture).
  std::map<std::string, std::string> labels;

  bool operator==(const CaptureSpec& o) const {
    return ns == o.ns && pod == o.pod && uid == o.uid && ip == o.ip &&
           max_files == o.max_files && host_network == o.host_network &&
           options == o.options;
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
  // kNone only: the Pod is deleted or finished (not just unannotated).
  bool pod_gone = false;
};

struct DecideOptions {
  int max_files = 100;  // the largest N an annotation may ask for
  bool allow_host_network = false;
  // Checks a filter for a snaplen (filter_check.h); null: not checked.
  std::function<absl::Status(const std::string& filter, int snaplen)>
      check_filter;
};

Desired DecideCapture(const PodView& pod, const DecideOptions& options);

// A pod uid as the API server writes it: 8-4-4-4-12 lowercase hex. Checked
// (with the DNS-1123 rules of common/kube/names.h for namespace and name)
// before any of them becomes part of a path.
bool IsPodUid(const std::string& s);

}  // namespace pc::agent

#endif  // NODE_AGENT_DESIRED_CAPTURE_H_
