// Fuzzes the path from a Pod's JSON to what its node's agent does about it:
// kube_json parses the Pod, ToPodView picks the facts, DecideCapture decides.
// The first three bytes choose the options (max_files in 1..10000 as the
// config allows, allow_host_network); the rest is the Pod JSON.
//
// Checked for every decision: names that reach a path (kCapture, kWait,
// kInvalid) are valid Kubernetes names and a uid; a capture runs only for a
// Running, annotated, undeleted pod with an IP, a valid count and a network
// policy that allows it; kNone exactly when nothing may run.
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/kube/kube_json.h"
#include "common/kube/kube_types.pb.h"
#include "common/kube/names.h"
#include "node_agent/agent.h"
#include "node_agent/annotation.h"
#include "node_agent/capture_options.h"
#include "node_agent/desired_capture.h"
#include "testing/fuzz/fuzz_util.h"

namespace {

using pc::agent::Decision;

void CheckNamesValid(const pc::agent::PodView& pod, const std::string& what) {
  FUZZ_CHECK(pc::kube::IsDns1123Label(pod.ns), what + " ns=" + pod.ns);
  FUZZ_CHECK(pc::kube::IsDns1123Subdomain(pod.name),
             what + " name=" + pod.name);
  FUZZ_CHECK(pc::agent::IsPodUid(pod.uid), what + " uid=" + pod.uid);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  pc::fuzz::FuzzInput in(data, size);
  pc::agent::DecideOptions options;
  options.max_files = 1 + in.U16() % 10000;
  options.allow_host_network = in.Bool();
  const std::string json = in.Rest();

  pc::kube::Pod pod;
  if (!pc::kube::ParseJson(json, &pod).ok()) return 0;
  const pc::agent::PodView view = pc::agent::ToPodView(pod);
  const pc::agent::Desired d = pc::agent::DecideCapture(view, options);

  const bool wants_nothing = !view.annotation.has_value() || view.deleting ||
                             view.phase == "Succeeded" ||
                             view.phase == "Failed";
  FUZZ_CHECK((d.decision == Decision::kNone) == wants_nothing,
             absl::StrCat(static_cast<int>(d.decision)));
  if (d.decision != Decision::kNone && d.decision != Decision::kCapture) {
    FUZZ_CHECK(!d.reason.empty(), "no reason");
  }
  switch (d.decision) {
    case Decision::kNone:
      break;
    case Decision::kInvalid:
      CheckNamesValid(view, "invalid");
      // The count or an option annotation is wrong (no filter checker is
      // set here, so the filter's syntax is never the reason).
      FUZZ_CHECK(
          !pc::agent::ParseMaxFiles(*view.annotation, options.max_files).ok() ||
              !pc::agent::ParseCaptureOptions(view.option_annotations).ok(),
          *view.annotation);
      break;
    case Decision::kWait:
      CheckNamesValid(view, "wait");
      FUZZ_CHECK(view.phase != "Running" || view.ip.empty(), view.phase);
      break;
    case Decision::kRefused:
      // Either a name that must not reach a path, or hostNetwork.
      break;
    case Decision::kCapture: {
      CheckNamesValid(view, "capture");
      FUZZ_CHECK(view.phase == "Running", view.phase);
      FUZZ_CHECK(!view.ip.empty(), "no ip");
      FUZZ_CHECK(!view.host_network || options.allow_host_network,
                 "hostNetwork");
      auto n = pc::agent::ParseMaxFiles(*view.annotation, options.max_files);
      FUZZ_CHECK(n.ok() && *n == d.spec.max_files, *view.annotation);
      FUZZ_CHECK(d.spec.max_files >= 1 && d.spec.max_files <= options.max_files,
                 absl::StrCat(d.spec.max_files));
      FUZZ_CHECK(d.spec.ns == view.ns && d.spec.pod == view.name &&
                     d.spec.uid == view.uid && d.spec.ip == view.ip,
                 "spec differs from the pod");
      // Options: exactly what the parser makes of the tcpdump.antrea.io/*
      // annotations, each within its bounds.
      auto o = pc::agent::ParseCaptureOptions(view.option_annotations);
      FUZZ_CHECK(o.ok() && *o == d.spec.options, "options differ");
      const auto& opt = d.spec.options;
      FUZZ_CHECK(opt.filter.size() <= pc::agent::kMaxFilterBytes, "filter");
      FUZZ_CHECK(opt.filter.find('\0') == std::string::npos, "NUL in filter");
      FUZZ_CHECK(opt.snaplen == 0 || (opt.snaplen >= pc::agent::kMinSnaplen &&
                                      opt.snaplen <= pc::agent::kMaxSnaplen),
                 absl::StrCat(opt.snaplen));
      FUZZ_CHECK(opt.duration == absl::ZeroDuration() ||
                     (opt.duration >= pc::agent::kMinDuration &&
                      opt.duration <= pc::agent::kMaxDuration),
                 absl::FormatDuration(opt.duration));
      FUZZ_CHECK(opt.max_packets <= pc::agent::kMaxMaxPackets, "max-packets");
      break;
    }
  }
  return 0;
}
