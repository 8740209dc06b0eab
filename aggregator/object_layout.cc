#include "aggregator/object_layout.h"

#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "aggregator/store_rules.h"
#include "common/capture_layout.h"
#include "common/kube/names.h"

namespace pc::aggregator {
namespace {

constexpr char kCatalog[] = "catalog/";
constexpr char kData[] = "data/";
constexpr char kCounts[] = "counts/";
constexpr char kCatalogSuffix[] = ".pb";
constexpr size_t kNumberDigits = 20;

std::string Number(uint64_t v) { return absl::StrFormat("%020u", v); }

bool ParseNumber(const std::string& s, uint64_t* v) {
  if (s.size() != kNumberDigits) return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  return absl::SimpleAtoi(s, v);
}

// "<prefix><name>.pb" with a name `valid` accepts.
bool ParseNamed(const std::string& key, const std::string& prefix,
                bool (*valid)(const std::string&), std::string* name) {
  if (!absl::StartsWith(key, prefix) || !absl::EndsWith(key, kCatalogSuffix)) {
    return false;
  }
  std::string candidate = key.substr(
      prefix.size(), key.size() - prefix.size() - (sizeof(kCatalogSuffix) - 1));
  if (!valid(candidate)) return false;
  *name = std::move(candidate);
  return true;
}

}  // namespace

ObjectLayout::ObjectLayout(std::string prefix)
    : root_(prefix.empty() ? "" : absl::StrCat(prefix, "/")) {}

std::string ObjectLayout::CatalogPrefix() const {
  return absl::StrCat(root_, kCatalog);
}

std::string ObjectLayout::CatalogKey(const std::string& id) const {
  return absl::StrCat(root_, kCatalog, id, kCatalogSuffix);
}

bool ObjectLayout::ParseCatalogKey(const std::string& key,
                                   std::string* id) const {
  return ParseNamed(key, CatalogPrefix(), IsValidCaptureId, id);
}

bool IsValidReplicaId(const std::string& replica) {
  return kube::IsDns1123Subdomain(replica);
}

std::string ObjectLayout::CountsKey(const std::string& replica) const {
  return absl::StrCat(root_, kCatalog, kCounts, replica, kCatalogSuffix);
}

bool ObjectLayout::ParseCountsKey(const std::string& key,
                                  std::string* replica) const {
  return ParseNamed(key, absl::StrCat(root_, kCatalog, kCounts),
                    IsValidReplicaId, replica);
}

std::string ObjectLayout::DataPrefix(const std::string& id) const {
  return absl::StrCat(root_, kData, id, "/");
}

std::string ObjectLayout::FilePrefix(const std::string& id,
                                     const std::string& file,
                                     uint64_t generation) const {
  return absl::StrCat(DataPrefix(id), file, "/", Number(generation), "/");
}

std::string ObjectLayout::DataKey(const std::string& id,
                                  const std::string& file, uint64_t generation,
                                  uint64_t offset) const {
  return absl::StrCat(FilePrefix(id, file, generation), Number(offset));
}

std::string ObjectLayout::CompactedKey(const std::string& id,
                                       const std::string& file,
                                       uint64_t generation, uint64_t offset,
                                       uint64_t end) const {
  return absl::StrCat(FilePrefix(id, file, generation), Number(offset), "-",
                      Number(end));
}

bool ObjectLayout::ParseDataKey(const std::string& id, const std::string& key,
                                DataKeyParts* parts) const {
  const std::string prefix = DataPrefix(id);
  if (!absl::StartsWith(key, prefix)) return false;
  std::vector<std::string> p =
      absl::StrSplit(absl::string_view(key).substr(prefix.size()), '/');
  if (p.size() != 4) return false;
  std::string run, ring;
  const std::string file = absl::StrCat(p[0], "/", p[1]);
  DataKeyParts out;
  // "<offset>" or "<offset>-<end>", each exactly 20 digits.
  const std::string& last = p[3];
  const bool compacted = last.size() == 2 * kNumberDigits + 1;
  if (compacted && last[kNumberDigits] != '-') return false;
  if (!ParseStoredFileName(file, &run, &ring) ||
      !ParseNumber(p[2], &out.generation) ||
      !ParseNumber(last.substr(0, compacted ? kNumberDigits : last.size()),
                   &out.offset)) {
    return false;
  }
  if (compacted && (!ParseNumber(last.substr(kNumberDigits + 1), &out.end) ||
                    out.end <= out.offset)) {
    return false;
  }
  out.file = file;
  *parts = std::move(out);
  return true;
}

}  // namespace pc::aggregator
