#include "common/capture_registry.h"

#include <set>

#include "absl/time/clock.h"
#include "common/time_proto.h"

namespace pc {
namespace {

using packetcapture::v1::CaptureEvent;

CaptureEvent MakeEvent(CaptureEvent::Type type,
                       const packetcapture::v1::Capture* capture) {
  CaptureEvent event;
  event.set_type(type);
  if (capture != nullptr) *event.mutable_capture() = *capture;
  *event.mutable_time() = ToProto(absl::Now());
  return event;
}

bool Same(const packetcapture::v1::Capture& a,
          const packetcapture::v1::Capture& b) {
  // Most changes are an acknowledged chunk, which moves the byte count: seen
  // here without serializing a listing of maybe thousands of files twice.
  if (a.bytes() != b.bytes() || a.packets() != b.packets() ||
      a.state() != b.state() || a.files_size() != b.files_size()) {
    return false;
  }
  return a.SerializeAsString() == b.SerializeAsString();
}

}  // namespace

void CaptureRegistry::Upsert(Capture capture, std::vector<Event>* events) {
  auto it = captures_.find(capture.id());
  CaptureEvent::Type type = CaptureEvent::ADDED;
  if (it == captures_.end()) {
    const std::string id = capture.id();
    it = captures_.emplace(id, std::move(capture)).first;
  } else if (Same(it->second, capture)) {
    return;
  } else {
    it->second = std::move(capture);
    type = CaptureEvent::MODIFIED;
  }
  // Listeners change only under notify_mu_, which the caller holds: with none
  // the event (a copy of the whole capture) is not made at all.
  if (!listeners_.empty()) events->push_back(MakeEvent(type, &it->second));
}

void CaptureRegistry::Put(Capture capture) {
  absl::MutexLock notify(&notify_mu_);
  std::vector<Event> events;
  {
    absl::MutexLock lock(&mu_);
    Upsert(std::move(capture), &events);
  }
  Notify(events);
}

void CaptureRegistry::ReplaceAll(const std::vector<Capture>& all) {
  absl::MutexLock notify(&notify_mu_);
  std::vector<Event> events;
  {
    absl::MutexLock lock(&mu_);
    std::set<std::string> keep;
    for (const auto& capture : all) {
      keep.insert(capture.id());
      Upsert(capture, &events);
    }
    for (auto it = captures_.begin(); it != captures_.end();) {
      if (keep.count(it->first) == 0) {
        if (!listeners_.empty()) {
          events.push_back(MakeEvent(CaptureEvent::DELETED, &it->second));
        }
        it = captures_.erase(it);
      } else {
        ++it;
      }
    }
  }
  Notify(events);
}

void CaptureRegistry::Remove(const std::string& id) {
  absl::MutexLock notify(&notify_mu_);
  std::vector<Event> events;
  {
    absl::MutexLock lock(&mu_);
    auto it = captures_.find(id);
    if (it == captures_.end()) return;
    events.push_back(MakeEvent(CaptureEvent::DELETED, &it->second));
    captures_.erase(it);
  }
  Notify(events);
}

std::optional<packetcapture::v1::Capture> CaptureRegistry::Get(
    const std::string& id) const {
  absl::MutexLock lock(&mu_);
  auto it = captures_.find(id);
  if (it == captures_.end()) return std::nullopt;
  return it->second;
}

std::vector<packetcapture::v1::Capture> CaptureRegistry::List() const {
  absl::MutexLock lock(&mu_);
  std::vector<Capture> out;
  out.reserve(captures_.size());
  for (const auto& [id, capture] : captures_) out.push_back(capture);
  return out;
}

int CaptureRegistry::Subscribe(Listener listener, bool initial) {
  absl::MutexLock notify(&notify_mu_);
  std::vector<Event> first;
  int handle;
  {
    absl::MutexLock lock(&mu_);
    handle = next_handle_++;
    listeners_[handle] = listener;
    if (initial) {
      for (const auto& [id, capture] : captures_) {
        first.push_back(MakeEvent(CaptureEvent::ADDED, &capture));
      }
      first.push_back(MakeEvent(CaptureEvent::SYNCED, nullptr));
    }
  }
  for (const auto& event : first) listener(event);
  return handle;
}

void CaptureRegistry::Unsubscribe(int handle) {
  // Waits for a notification in flight, so the listener is never called
  // after Unsubscribe returns (its owner may be gone then).
  absl::MutexLock notify(&notify_mu_);
  absl::MutexLock lock(&mu_);
  listeners_.erase(handle);
}

void CaptureRegistry::Notify(const std::vector<Event>& events) {
  if (events.empty()) return;
  std::vector<Listener> listeners;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [handle, listener] : listeners_) {
      listeners.push_back(listener);
    }
  }
  for (const auto& event : events) {
    for (const auto& listener : listeners) listener(event);
  }
}

}  // namespace pc
