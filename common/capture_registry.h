// The published state of every capture a server knows (the agent: its node;
// the aggregator: the cluster), with change notifications for WatchCaptures.
// Writers replace or remove captures by id; readers take copies.
//
// Thread-safe. Subscriber callbacks run on the writer's thread with no lock
// held and must not block (the gRPC watch reactor only queues).
#ifndef COMMON_CAPTURE_REGISTRY_H_
#define COMMON_CAPTURE_REGISTRY_H_

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "proto/packetcapture.pb.h"

namespace pc {

class CaptureRegistry {
 public:
  using Capture = packetcapture::v1::Capture;
  using Event = packetcapture::v1::CaptureEvent;
  using Listener = std::function<void(const Event&)>;

  // Adds or replaces; notifies only if something changed. By value: a
  // caller's temporary is moved in, not copied.
  void Put(Capture capture);
  // Replaces the whole set of captures (ids missing from `all` are removed).
  void ReplaceAll(const std::vector<Capture>& all);
  void Remove(const std::string& id);

  std::optional<Capture> Get(const std::string& id) const;
  std::vector<Capture> List() const;

  // Returns a handle for Unsubscribe. With `initial`, the listener first gets
  // ADDED for every current capture and then SYNCED, atomically with respect
  // to later changes (no change is lost or reordered between the two).
  int Subscribe(Listener listener, bool initial);
  void Unsubscribe(int handle);

 private:
  void Notify(const std::vector<Event>& events);
  // Adds or replaces one capture, recording ADDED/MODIFIED when it changed.
  // Events are recorded only while someone listens. Callers hold notify_mu_.
  void Upsert(Capture capture, std::vector<Event>* events)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  std::map<std::string, Capture> captures_ ABSL_GUARDED_BY(mu_);
  std::map<int, Listener> listeners_ ABSL_GUARDED_BY(mu_);
  int next_handle_ ABSL_GUARDED_BY(mu_) = 1;
  // Serializes notification so every listener sees events in one order.
  absl::Mutex notify_mu_ ABSL_ACQUIRED_BEFORE(mu_);
};

}  // namespace pc

#endif  // COMMON_CAPTURE_REGISTRY_H_
