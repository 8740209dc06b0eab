#include "common/capture_layout.h"

#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/kube/names.h"

namespace pc {

namespace {

// A directory entry's name is at most NAME_MAX (255) bytes on Linux.
constexpr size_t kMaxDirName = 255;
constexpr size_t kDigestHex = 12;

// 64-bit FNV-1a: stable across processes, builds and machines (unlike
// absl::Hash), so an agent restarted with a new binary names alike.
uint64_t Fnv1a64(const std::string& text) {
  uint64_t h = 14695981039346656037ULL;
  for (unsigned char c : text) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  return h;
}

}  // namespace

std::string MakeCaptureId(const std::string& ns, const std::string& pod,
                          const std::string& uid, int64_t start_ms) {
  const std::string tail = absl::StrCat("_", uid.substr(0, 8), "_", start_ms);
  std::string id = absl::StrCat(ns, "_", pod, tail);
  if (id.size() <= kMaxCaptureIdBytes) return id;
  const std::string digest =
      absl::StrFormat("%016x", Fnv1a64(pod)).substr(0, kDigestHex);
  // Room for the pod part: what the namespace and the tail leave, less "-"
  // and the digest. Valid names always leave room (63 + 1 + 28 + 13 < 200).
  const size_t fixed = ns.size() + 1 + tail.size() + 1 + kDigestHex;
  const size_t keep =
      fixed < kMaxCaptureIdBytes ? kMaxCaptureIdBytes - fixed : 1;
  std::string prefix = pod.substr(0, keep);
  // A label ends with an alphanumeric: "web.-1a2b..." would not be a DNS
  // subdomain any more.
  while (prefix.size() > 1 && (prefix.back() == '.' || prefix.back() == '-')) {
    prefix.pop_back();
  }
  return absl::StrCat(ns, "_", prefix, "-", digest, tail);
}

bool IsValidCaptureId(const std::string& id) {
  if (id.size() > kMaxDirName) return false;
  std::vector<std::string> parts = absl::StrSplit(id, '_');
  if (parts.size() != 4) return false;
  int64_t ms;
  if (!kube::IsDns1123Label(parts[0]) || !kube::IsDns1123Subdomain(parts[1]) ||
      parts[2].size() != 8 || !absl::SimpleAtoi(parts[3], &ms) || ms <= 0) {
    return false;
  }
  for (char c : parts[2]) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

std::string RunDirName(int run, int max_files) {
  return absl::StrCat("run-", run, "-w", max_files);
}

bool ParseRunDirName(const std::string& name, int* run, int* max_files) {
  std::vector<std::string> parts = absl::StrSplit(name, '-');
  if (parts.size() != 3 || parts[0] != "run" || parts[2].size() < 2 ||
      parts[2][0] != 'w') {
    return false;
  }
  return absl::SimpleAtoi(parts[1], run) && *run > 0 &&
         absl::SimpleAtoi(parts[2].substr(1), max_files) && *max_files > 0 &&
         name == RunDirName(*run, *max_files);
}

}  // namespace pc
