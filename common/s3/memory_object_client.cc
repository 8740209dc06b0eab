#include "common/s3/memory_object_client.h"

#include <algorithm>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace pc::s3 {

absl::Status MemoryObjectClient::TakeFault(const std::string& method,
                                           const std::string& key,
                                           bool* after) {
  std::function<void(const std::string&, const std::string&)> hook;
  {
    absl::MutexLock lock(&mu_);
    hook = hook_;
  }
  if (hook) hook(method, key);
  absl::MutexLock lock(&mu_);
  ++calls_[method];
  *after = false;
  const absl::Status unavailable = absl::UnavailableError(
      absl::StrCat(method, " ", key, ": 503 ServiceUnavailable (injected)"));
  if (down_) return unavailable;
  if (fail_next_ > 0) {
    --fail_next_;
    *after = fault_ == Fault::kAfter;
    return unavailable;
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> MemoryObjectClient::Put(absl::string_view key,
                                                    absl::string_view body,
                                                    const PutOptions& options) {
  bool after;
  absl::Status fault = TakeFault("PUT", std::string(key), &after);
  if (!fault.ok() && !after) return fault;
  absl::MutexLock lock(&mu_);
  auto it = objects_.find(key);
  if (options.if_none_match_any && it != objects_.end()) {
    return absl::FailedPreconditionError(
        absl::StrCat("PUT ", key, ": 412 PreconditionFailed (If-None-Match)"));
  }
  if (!options.if_match.empty() &&
      (it == objects_.end() || it->second.etag != options.if_match)) {
    return absl::FailedPreconditionError(
        absl::StrCat("PUT ", key, ": 412 PreconditionFailed (If-Match)"));
  }
  Object& o = objects_[std::string(key)];
  o.body = std::string(body);
  o.metadata = options.metadata;
  o.etag = absl::StrCat("\"etag-", next_etag_++, "\"");
  if (!fault.ok()) return fault;
  return o.etag;
}

absl::StatusOr<GetResult> MemoryObjectClient::Get(absl::string_view key,
                                                  uint64_t offset,
                                                  uint64_t length) {
  bool after;
  absl::Status fault = TakeFault("GET", std::string(key), &after);
  if (!fault.ok()) return fault;
  absl::MutexLock lock(&mu_);
  auto it = objects_.find(key);
  if (it == objects_.end()) {
    return absl::NotFoundError(absl::StrCat("GET ", key, ": NoSuchKey"));
  }
  const Object& o = it->second;
  if ((offset > 0 || length > 0) && offset >= o.body.size()) {
    return absl::OutOfRangeError(
        absl::StrCat("GET ", key, ": 416 InvalidRange"));
  }
  GetResult r;
  r.body = length == 0 ? o.body.substr(offset) : o.body.substr(offset, length);
  r.etag = o.etag;
  r.metadata = o.metadata;
  r.object_size = o.body.size();
  return r;
}

absl::StatusOr<ObjectInfo> MemoryObjectClient::Head(absl::string_view key) {
  bool after;
  absl::Status fault = TakeFault("HEAD", std::string(key), &after);
  if (!fault.ok()) return fault;
  absl::MutexLock lock(&mu_);
  auto it = objects_.find(key);
  if (it == objects_.end()) {
    return absl::NotFoundError(absl::StrCat("HEAD ", key, ": 404"));
  }
  ObjectInfo info;
  info.key = it->first;
  info.size = it->second.body.size();
  info.etag = it->second.etag;
  return info;
}

absl::StatusOr<ListPage> MemoryObjectClient::List(
    absl::string_view prefix, absl::string_view delimiter,
    absl::string_view continuation, int max_keys) {
  bool after;
  absl::Status fault = TakeFault("LIST", std::string(prefix), &after);
  if (!fault.ok()) return fault;
  absl::MutexLock lock(&mu_);
  max_keys = std::min(std::max(max_keys, 1), max_keys_);
  ListPage page;
  // The continuation token is the last key (or common prefix) returned.
  auto it = continuation.empty() ? objects_.lower_bound(prefix)
                                 : objects_.upper_bound(continuation);
  int n = 0;
  std::string last;
  for (; it != objects_.end() && absl::StartsWith(it->first, prefix); ++it) {
    if (n == max_keys) {
      page.next_token = last;
      break;
    }
    const absl::string_view rest =
        absl::string_view(it->first).substr(prefix.size());
    size_t cut;
    if (!delimiter.empty() &&
        (cut = rest.find(delimiter)) != absl::string_view::npos) {
      std::string common =
          it->first.substr(0, prefix.size() + cut + delimiter.size());
      if (!page.common_prefixes.empty() &&
          page.common_prefixes.back() == common) {
        continue;
      }
      page.common_prefixes.push_back(common);
      // Skip every key under this common prefix.
      last = common + std::string(1, '\xff');
      ++n;
      continue;
    }
    ObjectInfo info;
    info.key = it->first;
    info.size = it->second.body.size();
    info.etag = it->second.etag;
    page.objects.push_back(std::move(info));
    last = it->first;
    ++n;
  }
  return page;
}

absl::Status MemoryObjectClient::Delete(absl::string_view key) {
  bool after;
  absl::Status fault = TakeFault("DELETE", std::string(key), &after);
  if (!fault.ok() && !after) return fault;
  absl::MutexLock lock(&mu_);
  auto it = objects_.find(key);
  if (it != objects_.end()) objects_.erase(it);
  return fault;
}

void MemoryObjectClient::FailNext(int calls, Fault fault) {
  absl::MutexLock lock(&mu_);
  fail_next_ = calls;
  fault_ = fault;
}

void MemoryObjectClient::SetDown(bool down) {
  absl::MutexLock lock(&mu_);
  down_ = down;
}

void MemoryObjectClient::SetHook(
    std::function<void(const std::string&, const std::string&)> hook) {
  absl::MutexLock lock(&mu_);
  hook_ = std::move(hook);
}

std::map<std::string, std::string> MemoryObjectClient::Objects() const {
  absl::MutexLock lock(&mu_);
  std::map<std::string, std::string> out;
  for (const auto& [key, o] : objects_) out[key] = o.body;
  return out;
}

std::map<std::string, uint64_t> MemoryObjectClient::RequestCounts() const {
  absl::MutexLock lock(&mu_);
  std::map<std::string, uint64_t> out;
  for (const auto& [method, n] : calls_) out[method] = n;
  return out;
}

int MemoryObjectClient::calls(const std::string& method) const {
  absl::MutexLock lock(&mu_);
  auto it = calls_.find(method);
  return it == calls_.end() ? 0 : it->second;
}

void MemoryObjectClient::SetMaxKeysPerPage(int n) {
  absl::MutexLock lock(&mu_);
  max_keys_ = n;
}

}  // namespace pc::s3
