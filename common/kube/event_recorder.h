// Posts core/v1 Events about pods (so `kubectl describe pod` shows what the
// capture agent did) without ever blocking the caller: Record() only queues,
// a worker thread posts. Best effort by design: a full queue drops, a failed
// post is logged once to stderr and not retried.
//
// Thread safety: Record(), counters() and Stop() may be called from any
// thread concurrently.
#ifndef COMMON_KUBE_EVENT_RECORDER_H_
#define COMMON_KUBE_EVENT_RECORDER_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/kube/http_client.h"

namespace pc {
namespace kube {

// The pod an event is about.
struct PodRef {
  std::string ns;    // DNS-1123 label
  std::string name;  // DNS-1123 subdomain
  std::string uid;   // may be empty
};

enum class EventLevel { kNormal, kWarning };

struct EventReporter {
  std::string component;  // source.component and reportingComponent
  std::string host;       // source.host: the node name
  std::string instance;   // reportingInstance; empty means "<component>-<host>"
};

// The JSON body of one core/v1 Event, POSTed to
// /api/v1/namespaces/<pod.ns>/events. `message` is cut to `max_message_bytes`
// on a UTF-8 boundary (invalid bytes become '?'); all strings are JSON-escaped.
// InvalidArgumentError for a bad pod reference or reason (1..128 characters of
// [A-Za-z0-9]).
absl::StatusOr<std::string> BuildEventJson(const PodRef& pod, EventLevel level,
                                           absl::string_view reason,
                                           absl::string_view message,
                                           const EventReporter& source,
                                           absl::Time now,
                                           size_t max_message_bytes = 1024);

class EventRecorder {
 public:
  struct Options {
    EventReporter source;
    size_t queue_capacity = 256;
    size_t max_message_bytes = 1024;
    // Identical (pod uid, reason, message) within this window are recorded
    // once; zero disables deduplication.
    absl::Duration dedup_window = absl::Seconds(60);
    // Stop() keeps posting queued events for at most this long.
    absl::Duration drain_timeout = absl::Seconds(2);
  };

  struct Counters {
    uint64_t posted = 0;        // accepted by the API server
    uint64_t failed = 0;        // post failed (logged, not retried)
    uint64_t dropped = 0;       // queue full, or still queued at Stop()
    uint64_t deduplicated = 0;  // suppressed repeats
  };

  // `client` must outlive the recorder. Starts the worker thread.
  static absl::StatusOr<std::unique_ptr<EventRecorder>> Create(
      HttpClient* client, Options options);
  ~EventRecorder();  // Stop()s.

  EventRecorder(const EventRecorder&) = delete;
  EventRecorder& operator=(const EventRecorder&) = delete;

  // Queues an event; never blocks on the network. OK when queued or
  // suppressed as a recent duplicate; ResourceExhaustedError when the queue is
  // full; InvalidArgumentError for a bad pod reference or reason;
  // FailedPreconditionError after Stop().
  absl::Status Record(const PodRef& pod, EventLevel level,
                      absl::string_view reason, absl::string_view message);

  // Posts what is queued for up to drain_timeout, drops the rest, joins the
  // worker. Idempotent.
  void Stop();

  Counters counters() const;

 private:
  struct Pending {
    std::string ns;
    std::string pod_name;
    std::string reason;
    std::string body;  // JSON
  };

  EventRecorder(HttpClient* client, Options options);
  void Run();
  void Post(const Pending& event);

  HttpClient* const client_;
  const Options options_;

  absl::Mutex mu_;
  std::deque<Pending> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time drain_deadline_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();
  bool worker_done_ ABSL_GUARDED_BY(mu_) = false;
  absl::flat_hash_map<std::string, absl::Time> recent_ ABSL_GUARDED_BY(mu_);

  std::atomic<bool> cancel_{
      false};  // aborts the in-flight post after the drain
  absl::Mutex join_mu_;
  std::thread thread_ ABSL_GUARDED_BY(join_mu_);

  std::atomic<uint64_t> posted_{0}, failed_{0}, dropped_{0}, deduplicated_{0};
};

}  // namespace kube
}  // namespace pc

#endif  // COMMON_KUBE_EVENT_RECORDER_H_
