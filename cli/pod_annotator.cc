#include "cli/pod_annotator.h"

#include <map>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/types/optional.h"
#include "common/kube/kube_json.h"
#include "common/kube/names.h"
#include "common/kube/pod_lookup.h"

namespace pc::cli {
namespace {

// A JSON string literal. Annotation values are the user's (a filter may hold
// quotes and backslashes); control bytes are escaped, UTF-8 passes through.
std::string JsonString(const std::string& text) {
  std::string out = "\"";
  for (unsigned char c : text) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20) {
      absl::StrAppendFormat(&out, "\\u%04x", c);
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

// {"metadata":{"annotations":{...},"resourceVersion":...}} with the keys in
// a fixed order (absent value: null).
std::string MetadataPatch(
    const std::map<std::string, absl::optional<std::string>>& annotations,
    const std::string& resource_version) {
  std::vector<std::string> fields;
  for (const auto& [key, value] : annotations) {
    fields.push_back(absl::StrCat(JsonString(key), ":",
                                  value ? JsonString(*value) : "null"));
  }
  std::string patch = absl::StrCat(R"({"metadata":{"annotations":{)",
                                   absl::StrJoin(fields, ","), "}");
  if (!resource_version.empty()) {
    absl::StrAppend(&patch, R"(,"resourceVersion":)",
                    JsonString(resource_version));
  }
  return patch + "}}";
}

// Query-string encoding of a label selector ("app in (a,b)" has spaces,
// parentheses and commas).
std::string UrlEncode(const std::string& text) {
  std::string out;
  for (unsigned char c : text) {
    if (absl::ascii_isalnum(c) || c == '-' || c == '_' || c == '.' ||
        c == '~') {
      out += static_cast<char>(c);
    } else {
      absl::StrAppendFormat(&out, "%%%02X", c);
    }
  }
  return out;
}

}  // namespace

std::string AnnotatePatch(const CaptureSpec& spec,
                          const std::string& resource_version) {
  std::map<std::string, absl::optional<std::string>> annotations;
  annotations[kAnnotation] = absl::StrCat(spec.files);
  for (const char* key : kOptionAnnotations) annotations[key] = absl::nullopt;
  if (!spec.filter.empty()) {
    annotations["tcpdump.antrea.io/filter"] = spec.filter;
  }
  if (spec.snaplen > 0) {
    annotations["tcpdump.antrea.io/snaplen"] = absl::StrCat(spec.snaplen);
  }
  if (!spec.duration.empty()) {
    annotations["tcpdump.antrea.io/duration"] = spec.duration;
  }
  if (spec.max_packets > 0) {
    annotations["tcpdump.antrea.io/max-packets"] =
        absl::StrCat(spec.max_packets);
  }
  return MetadataPatch(annotations, resource_version);
}

std::string RemovePatch() {
  std::map<std::string, absl::optional<std::string>> annotations;
  annotations[kAnnotation] = absl::nullopt;
  for (const char* key : kOptionAnnotations) annotations[key] = absl::nullopt;
  return MetadataPatch(annotations, "");
}

absl::Status CheckNotAnnotated(const kube::Pod& pod, bool force) {
  const auto& annotations = pod.metadata().annotations();
  auto it = annotations.find(kAnnotation);
  if (it == annotations.end() || force) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      "pod ", pod.metadata().namespace_(), "/", pod.metadata().name(),
      " already has ", kAnnotation, "=\"", kube::SanitizeUtf8(it->second, 64),
      "\": someone's capture is running there and capturectl's cleanup "
      "would stop it and delete its files; --force takes it over"));
}

std::string ManualRemoveCommand(const std::string& ns,
                                const std::string& name) {
  std::string command = absl::StrCat("kubectl annotate pod -n ", ns, " ", name,
                                     " ", kAnnotation, "-");
  for (const char* key : kOptionAnnotations) {
    absl::StrAppend(&command, " ", key, "-");
  }
  return command;
}

absl::StatusOr<kube::Pod> PodAnnotator::Get(const std::string& ns,
                                            const std::string& name) {
  return kube::GetPod(client_, ns, name);
}

absl::StatusOr<std::vector<kube::Pod>> PodAnnotator::List(
    const std::string& ns, const std::string& selector) {
  if (!kube::IsDns1123Label(ns)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "not a valid namespace: \"", kube::SanitizeUtf8(ns, 64), "\""));
  }
  std::vector<kube::Pod> pods;
  std::string continue_token;
  for (int page = 0; page < 1000; ++page) {
    std::string path =
        absl::StrCat("/api/v1/namespaces/", ns,
                     "/pods?limit=500&labelSelector=", UrlEncode(selector));
    if (!continue_token.empty()) {
      absl::StrAppend(&path, "&continue=", UrlEncode(continue_token));
    }
    absl::StatusOr<kube::HttpResponse> response = client_.Do("GET", path);
    if (!response.ok()) return response.status();
    if (response->status_code != 200) {
      return kube::HttpError(response->status_code, response->body);
    }
    kube::PodList list;
    absl::Status parsed = kube::ParseJson(response->body, &list);
    if (!parsed.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "pods of ", ns, ": unreadable answer: ", parsed.message()));
    }
    pods.insert(pods.end(), list.items().begin(), list.items().end());
    continue_token = list.metadata().continue_();
    if (continue_token.empty()) break;
  }
  return pods;
}

absl::Status PodAnnotator::Patch(const std::string& ns, const std::string& name,
                                 const std::string& patch) {
  if (!kube::IsDns1123Label(ns) || !kube::IsDns1123Subdomain(name)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "not a valid pod reference: \"", kube::SanitizeUtf8(ns, 64), "/",
        kube::SanitizeUtf8(name, 253), "\""));
  }
  absl::StatusOr<kube::HttpResponse> response = client_.Do(
      "PATCH", absl::StrCat("/api/v1/namespaces/", ns, "/pods/", name), patch,
      "application/merge-patch+json");
  if (!response.ok()) return response.status();
  if (response->status_code != 200) {
    return kube::HttpError(response->status_code, response->body);
  }
  return absl::OkStatus();
}

absl::Status PodAnnotator::Annotate(const kube::Pod& pod,
                                    const CaptureSpec& spec) {
  return Patch(pod.metadata().namespace_(), pod.metadata().name(),
               AnnotatePatch(spec, pod.metadata().resource_version()));
}

absl::Status PodAnnotator::Remove(const std::string& ns,
                                  const std::string& name) {
  absl::Status status = Patch(ns, name, RemovePatch());
  if (kube::HttpCodeFromStatus(status) == 404) return absl::OkStatus();
  return status;
}

}  // namespace pc::cli
