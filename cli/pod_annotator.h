// The Kubernetes side of `capturectl capture`: finds the Pods (by name or
// label selector), starts a capture by setting the tcpdump.antrea.io
// annotations with a JSON merge patch, and removes them again. Uses the
// project's libcurl client, configured from a kubeconfig like kubectl.
// Thread-safe (HttpClient is; the class holds no other state).
#ifndef CLI_POD_ANNOTATOR_H_
#define CLI_POD_ANNOTATOR_H_

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/kube/http_client.h"
#include "common/kube/kube_types.pb.h"

namespace pc::cli {

inline constexpr char kAnnotation[] = "tcpdump.antrea.io";
// The option annotations beside it, in the order patches list them.
inline constexpr const char* kOptionAnnotations[] = {
    "tcpdump.antrea.io/filter", "tcpdump.antrea.io/snaplen",
    "tcpdump.antrea.io/duration", "tcpdump.antrea.io/max-packets"};

// What the annotations say.
struct CaptureSpec {
  uint32_t files = 5;
  std::string filter;
  uint32_t snaplen = 0;      // 0: not set
  std::string duration;      // "90s"; empty: not set
  uint64_t max_packets = 0;  // 0: not set
};

// The merge patch that starts the capture: tcpdump.antrea.io=<files> and
// each option given; options not given are removed (null) so the capture
// runs with exactly these. With a resource_version the patch applies only to
// that version of the Pod (409 Conflict if it changed since it was read).
std::string AnnotatePatch(const CaptureSpec& spec,
                          const std::string& resource_version);

// The merge patch that removes the annotation and every option.
std::string RemovePatch();

// OK when the Pod carries no tcpdump.antrea.io annotation, or `force`;
// otherwise FailedPrecondition naming the Pod and the value, saying why
// (someone's capture would be stopped by our cleanup) and --force.
absl::Status CheckNotAnnotated(const kube::Pod& pod, bool force);

// "kubectl annotate pod -n NS NAME tcpdump.antrea.io- ..." for a person to
// run when capturectl could not remove the annotations itself.
std::string ManualRemoveCommand(const std::string& ns, const std::string& name);

class PodAnnotator {
 public:
  explicit PodAnnotator(kube::HttpClient& client) : client_(client) {}

  absl::StatusOr<kube::Pod> Get(const std::string& ns, const std::string& name);
  // Every Pod of the namespace matching the label selector (all pages).
  absl::StatusOr<std::vector<kube::Pod>> List(const std::string& ns,
                                              const std::string& selector);
  // PATCHes AnnotatePatch onto the Pod as it was read (its
  // resourceVersion). Errors: HttpError (409 when the Pod changed meanwhile,
  // 403 without patch rights, ...), UnavailableError.
  absl::Status Annotate(const kube::Pod& pod, const CaptureSpec& spec);
  // PATCHes RemovePatch. A Pod that is gone (404) counts as done. Never
  // cancelled: it runs on the way out, also after Ctrl-C.
  absl::Status Remove(const std::string& ns, const std::string& name);

 private:
  absl::Status Patch(const std::string& ns, const std::string& name,
                     const std::string& patch);

  kube::HttpClient& client_;
};

}  // namespace pc::cli

#endif  // CLI_POD_ANNOTATOR_H_
