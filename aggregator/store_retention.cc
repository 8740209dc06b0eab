// Store's retention and byte budget: which stopped captures go, and their
// removal from disk outside the index lock.
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "aggregator/store.h"
#include "aggregator/store_internal.h"
#include "common/log.h"

namespace pc::aggregator {

void Store::DeleteCapture(const std::string& id, Removal* removal) {
  auto it = captures_.find(id);
  if (it == captures_.end()) return;
  StoredCapture& c = *it->second;
  for (auto& [key, f] : c.files) {
    f->deleted = true;
    total_bytes_ -= f->summary.physical_len;
    removal->files.push_back(f->io);
  }
  total_bytes_ -= c.unreadable_bytes;
  removal->dirs.push_back(c.dir);
  removal->ids.push_back(id);
  removing_.insert(id);
  captures_.erase(it);
  ++file_set_version_;
  registry_->Remove(id);
}

std::vector<std::string> Store::Maintain() {
  std::vector<std::string> deleted;
  Removal removal;
  {
    absl::MutexLock lock(&mu_);
    const absl::Time now = Now();
    // Stopped captures with the time their retention started.
    std::vector<std::pair<absl::Time, std::string>> stopped;
    for (auto& [id, c] : captures_) {
      if (!Stopped(c->meta.status)) continue;
      if (!c->meta.retention_start) c->meta.retention_start = now;
      stopped.emplace_back(*c->meta.retention_start, id);
    }
    std::sort(stopped.begin(), stopped.end());
    size_t next = 0;
    for (; next < stopped.size(); ++next) {
      if (now < stopped[next].first + options_.retention) break;
      LogLine("capture_expired", {{"capture", stopped[next].second}});
      DeleteCapture(stopped[next].second, &removal);
      deleted.push_back(stopped[next].second);
      ++stats_.expired;
    }
    while (options_.max_bytes > 0 && total_bytes_ > options_.max_bytes &&
           next < stopped.size()) {
      LogLine("capture_evicted",
              {{"capture", stopped[next].second},
               {"total_bytes", absl::StrCat(total_bytes_)},
               {"max_bytes", absl::StrCat(options_.max_bytes)}});
      DeleteCapture(stopped[next].second, &removal);
      deleted.push_back(stopped[next].second);
      ++stats_.evicted_for_budget;
      ++next;
    }
    if (options_.max_bytes > 0 && total_bytes_ > options_.max_bytes) {
      if (!over_budget_logged_) {
        LogLine("store_over_budget",
                {{"total_bytes", absl::StrCat(total_bytes_)},
                 {"max_bytes", absl::StrCat(options_.max_bytes)},
                 {"reason", "only running captures left"}});
      }
      over_budget_logged_ = true;
    } else {
      over_budget_logged_ = false;
    }
  }
  removal.Run();
  absl::MutexLock lock(&mu_);
  for (const std::string& id : removal.ids) removing_.erase(id);
  return deleted;
}

}  // namespace pc::aggregator
