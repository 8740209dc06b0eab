#include "common/capture_layout.h"

#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/kube/names.h"

namespace pc {

std::string MakeCaptureId(const std::string& ns, const std::string& pod,
                          const std::string& uid, int64_t start_ms) {
  return absl::StrCat(ns, "_", pod, "_", uid.substr(0, 8), "_", start_ms);
}

bool IsValidCaptureId(const std::string& id) {
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
