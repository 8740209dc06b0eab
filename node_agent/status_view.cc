#include "node_agent/status_view.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace pc::agent {

void StatusView::Merge(const Counters& counters, bool generations,
                       packetcapture::v1::Capture* status) {
  status->set_bytes_uploaded(counters.uploaded);
  status->set_bytes_lost(status->bytes_lost() + counters.lost);
  if (!counters.note.empty()) {
    status->set_message(
        status->message().empty()
            ? counters.note
            : absl::StrCat(status->message(), " (", counters.note, ")"));
  }
  if (!generations) return;
  for (auto& file : *status->mutable_files()) {
    auto it = counters.generations.find(file.name());
    if (it != counters.generations.end()) {
      file.set_generation(std::max(file.generation(), it->second));
    }
  }
}

void StatusView::OnSourceEvent(const CaptureRegistry::Event& event) {
  const std::string& id = event.capture().id();
  absl::MutexLock lock(&mu_);
  switch (event.type()) {
    case packetcapture::v1::CaptureEvent::ADDED:
    case packetcapture::v1::CaptureEvent::MODIFIED: {
      base_[id] = event.capture();
      packetcapture::v1::Capture merged = event.capture();
      auto c = counters_.find(id);
      if (c != counters_.end()) Merge(c->second, true, &merged);
      served_->Put(merged);
      return;
    }
    case packetcapture::v1::CaptureEvent::DELETED:
      base_.erase(id);
      served_->Remove(id);
      return;
    default:
      return;
  }
}

void StatusView::SetCounters(const std::string& id, const Counters& counters) {
  absl::MutexLock lock(&mu_);
  counters_[id] = counters;
  auto b = base_.find(id);
  if (b == base_.end()) return;
  packetcapture::v1::Capture merged = b->second;
  Merge(counters, true, &merged);
  served_->Put(merged);
}

void StatusView::Forget(const std::string& id) {
  absl::MutexLock lock(&mu_);
  counters_.erase(id);
}

}  // namespace pc::agent
