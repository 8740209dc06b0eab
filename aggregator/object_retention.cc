// ObjectStore's retention and byte budget, decided from the listing every
// replica shares (the catalog), so any replica may run it; deleting twice
// is harmless.
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "aggregator/object_store.h"
#include "aggregator/store_rules.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "common/time_proto.h"

namespace pc::aggregator {

using packetcapture::v1::Capture;

absl::Status ObjectStore::DeleteCapture(const std::string& id) {
  // Data first: an entry left without data is harmless, data without an
  // entry would be invisible.
  RETURN_IF_ERROR(DeleteObjects(layout_.DataPrefix(id)));
  RETURN_IF_ERROR(options_.client->Delete(layout_.CatalogKey(id)));
  catalog_->Forget(id);
  OnCatalogVanished(id);
  // Then the data again: a compaction (on the node's holder) that read the
  // objects before they were deleted may have written its object after the
  // first listing; one written after this one finds the entry gone and
  // deletes its object itself (object_compaction.cc).
  return DeleteObjects(layout_.DataPrefix(id));
}

std::vector<std::string> ObjectStore::Maintain() {
  const absl::Time now = Now();
  // Stopped captures with the time their retention started, and sizes.
  std::vector<std::pair<absl::Time, std::string>> stopped;
  std::map<std::string, uint64_t> bytes;
  uint64_t total = 0;
  {
    absl::MutexLock lock(&mu_);
    std::map<std::string, absl::Time> first_stopped;
    for (const Capture& c : registry_->List()) {
      total += c.bytes();
      bytes[c.id()] = c.bytes();
      if (!Stopped(c)) continue;
      absl::Time start;
      if (c.has_expire_time()) {
        start = FromProto(c.expire_time()) - options_.retention;
      } else {
        auto it = first_stopped_.find(c.id());
        start = it == first_stopped_.end() ? now : it->second;
        first_stopped[c.id()] = start;
      }
      stopped.emplace_back(start, c.id());
    }
    first_stopped_ = std::move(first_stopped);
  }
  std::sort(stopped.begin(), stopped.end());
  std::vector<std::string> deleted;
  uint64_t expired = 0, evicted = 0;
  auto remove = [&](const std::string& id) {
    const absl::Status removed = DeleteCapture(id);
    if (!removed.ok()) {
      LogLine("store_delete_error",
              {{"capture", id}, {"error", removed.ToString()}});
      return false;
    }
    deleted.push_back(id);
    total -= bytes[id];
    return true;
  };
  size_t next = 0;
  for (; next < stopped.size(); ++next) {
    if (now < stopped[next].first + options_.retention) break;
    LogLine("capture_expired", {{"capture", stopped[next].second}});
    if (remove(stopped[next].second)) ++expired;
  }
  for (; options_.max_bytes > 0 && total > options_.max_bytes &&
         next < stopped.size();
       ++next) {
    LogLine("capture_evicted",
            {{"capture", stopped[next].second},
             {"total_bytes", absl::StrCat(total)},
             {"max_bytes", absl::StrCat(options_.max_bytes)}});
    if (remove(stopped[next].second)) ++evicted;
  }
  DeleteUnusedBoards();
  absl::MutexLock lock(&mu_);
  stats_.expired += expired;
  stats_.evicted_for_budget += evicted;
  if (options_.max_bytes > 0 && total > options_.max_bytes) {
    if (!over_budget_logged_) {
      LogLine("store_over_budget",
              {{"total_bytes", absl::StrCat(total)},
               {"max_bytes", absl::StrCat(options_.max_bytes)},
               {"reason", "only running captures left"}});
    }
    over_budget_logged_ = true;
  } else {
    over_budget_logged_ = false;
  }
  return deleted;
}

}  // namespace pc::aggregator
