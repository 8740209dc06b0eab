#include "node_agent/desired_capture.h"

#include "absl/strings/str_cat.h"
#include "common/kube/names.h"
#include "node_agent/annotation.h"

namespace pc::agent {
bool IsPodUid(const std::string& s) {
  if (s.size() != 36) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    const bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? s[i] != '-'
             : !((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
      return false;
  }
  return true;
}

Desired DecideCapture(const PodView& pod, const DecideOptions& options) {
  Desired out;
  // Finished or deleted pods and pods without the annotation want nothing:
  // any capture of theirs stops and its files are deleted.
  if (!pod.annotation.has_value() || pod.deleting || pod.phase == "Succeeded" ||
      pod.phase == "Failed") {
    out.pod_gone =
        pod.deleting || pod.phase == "Succeeded" || pod.phase == "Failed";
    return out;
  }
  out.spec.ns = pod.ns;
  out.spec.pod = pod.name;
  out.spec.uid = pod.uid;
  out.spec.ip = pod.ip;
  out.spec.annotation = *pod.annotation;
  out.spec.host_network = pod.host_network;
  // Each label is bounded by the API server, their number is not: the
  // status (which the aggregator takes up to 64 KiB) keeps the first ones
  // by key that fit.
  size_t label_bytes = 0;
  for (const auto& [key, value] : pod.labels) {
    label_bytes += key.size() + value.size();
    if (out.spec.labels.size() >= kMaxRecordedLabels ||
        label_bytes > kMaxRecordedLabelBytes) {
      break;
    }
    out.spec.labels.emplace(key, value);
  }

  // Names become part of directory names: refuse anything the API server
  // itself would not have accepted rather than trusting it.
  if (!kube::IsDns1123Label(pod.ns) || !kube::IsDns1123Subdomain(pod.name) ||
      !IsPodUid(pod.uid)) {
    out.decision = Decision::kRefused;
    out.reason = "pod namespace, name or uid is not a valid Kubernetes name";
    return out;
  }
  auto n = ParseMaxFiles(*pod.annotation, options.max_files);
  if (!n.ok()) {
    out.decision = Decision::kInvalid;
    out.reason = std::string(n.status().message());
    return out;
  }
  out.spec.max_files = *n;
  auto parsed = ParseCaptureOptions(pod.option_annotations);
  if (!parsed.ok()) {
    out.decision = Decision::kInvalid;
    out.reason = std::string(parsed.status().message());
    return out;
  }
  out.spec.options = *parsed;
  if (!out.spec.options.filter.empty() && options.check_filter) {
    absl::Status checked =
        options.check_filter(out.spec.options.filter, out.spec.options.snaplen);
    if (!checked.ok()) {
      out.decision = Decision::kInvalid;
      out.reason = std::string(checked.message());
      return out;
    }
  }
  if (pod.host_network && !options.allow_host_network) {
    out.decision = Decision::kRefused;
    out.reason =
        "pod uses hostNetwork: capturing it would capture the node's traffic, "
        "which this agent's configuration does not allow "
        "(allow_host_network: false)";
    return out;
  }
  if (pod.phase != "Running") {
    out.decision = Decision::kWait;
    out.reason = absl::StrCat("waiting for the pod to run (phase ",
                              pod.phase.empty() ? "unknown" : pod.phase, ")");
    return out;
  }
  if (pod.ip.empty()) {
    out.decision = Decision::kWait;
    out.reason = "waiting for the pod to get an IP address";
    return out;
  }
  out.decision = Decision::kCapture;
  return out;
}

}  // namespace pc::agent
