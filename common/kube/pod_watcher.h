// Keeps a consumer's view of the pods bound to one node current: LIST (paged)
// then WATCH from the list's resourceVersion, re-watching after disconnects
// and relisting when the version has expired (410). Runs on its own thread so
// a slow or broken API server never blocks the caller; network errors are
// retried with backoff, never fatal.
//
// Thread safety: Start()/Stop()/counters() may be called from any thread.
// Handler methods run on the watcher's thread, one at a time.
#ifndef COMMON_KUBE_POD_WATCHER_H_
#define COMMON_KUBE_POD_WATCHER_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/kube/http_client.h"
#include "common/kube/kube_types.pb.h"
#include "common/kube/watch_decoder.h"

namespace pc {
namespace kube {

class PodWatcher {
 public:
  // Receives the node's pods. Called on the watcher thread; implementations
  // must return quickly and must not block (post to your own loop instead) —
  // while a callback runs, the watch stream is not read.
  class Handler {
   public:
    virtual ~Handler() = default;
    // The complete set of the node's pods after each (re)list; replace your
    // view with it (pods missing from it were deleted meanwhile).
    virtual void OnPodsListed(std::vector<Pod> pods) = 0;
    // ADDED / MODIFIED / DELETED for one pod, in server order.
    virtual void OnPodEvent(EventType type, const Pod& pod) = 0;
    // A failed list or watch (the watcher retries by itself); for logs and
    // metrics. A 410 (resource version expired, relisting) is reported too.
    virtual void OnWatchError(const absl::Status& status) { (void)status; }
  };

  struct Options {
    std::string node_name;  // required; must be a DNS-1123 subdomain
    // Each watch asks for timeoutSeconds drawn from [watch_timeout,
    // 2 * watch_timeout) (as client-go does), so agents that reconnected
    // together do not keep reconnecting together.
    absl::Duration watch_timeout = absl::Seconds(300);
    int list_page_size = 500;
    absl::Duration initial_backoff = absl::Milliseconds(800);
    absl::Duration max_backoff = absl::Seconds(30);
    double backoff_jitter = 0.2;
    // A watch that lasts this long (or delivers any event) resets the backoff.
    absl::Duration healthy_watch = absl::Minutes(2);
    // A watch that ends sooner than this without events counts as a failure.
    absl::Duration min_watch = absl::Seconds(1);
  };

  struct Counters {
    uint64_t lists = 0;    // completed full lists
    uint64_t watches = 0;  // watch requests started
    uint64_t events = 0;   // ADDED/MODIFIED/DELETED delivered
    uint64_t bookmarks = 0;
    uint64_t errors = 0;         // failed lists and watches (excluding 410)
    uint64_t expired = 0;        // 410s that forced a relist
    uint64_t decode_errors = 0;  // undecodable or over-long watch lines
  };

  // `client` and `handler` must outlive the watcher.
  static absl::StatusOr<std::unique_ptr<PodWatcher>> Create(HttpClient* client,
                                                            Options options,
                                                            Handler* handler);
  ~PodWatcher();  // Stop()s.

  PodWatcher(const PodWatcher&) = delete;
  PodWatcher& operator=(const PodWatcher&) = delete;

  // Starts the watcher thread. Calling it again, or after Stop(), does nothing.
  void Start();
  // Cancels the current request (within ~100 ms) or backoff sleep and joins
  // the thread; no handler call happens after it returns. Idempotent.
  void Stop();

  Counters counters() const;

 private:
  struct WatchOutcome {
    absl::Status status;     // why the watch ended (OK: server closed it)
    bool expired = false;    // 410: relist
    uint64_t delivered = 0;  // events + bookmarks
    absl::Duration duration;
  };

  PodWatcher(HttpClient* client, Options options, Handler* handler);

  void Run();
  absl::Status List(std::vector<Pod>* pods, std::string* resource_version);
  WatchOutcome Watch(std::string* resource_version, int64_t timeout_seconds);
  // Sleeps for `d` unless Stop() comes first; returns false when stopping.
  bool Sleep(absl::Duration d);
  bool stopping() const { return cancel_.load(); }

  HttpClient* const client_;
  const Options options_;
  Handler* const handler_;
  const std::string field_selector_;  // already URL-escaped

  std::atomic<bool> cancel_{false};
  absl::Mutex join_mu_
      ABSL_ACQUIRED_BEFORE(mu_);  // serializes thread_ start/join
  std::thread thread_ ABSL_GUARDED_BY(join_mu_);
  absl::Mutex mu_;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;  // mirrors cancel_ for Sleep()
  bool started_ ABSL_GUARDED_BY(mu_) = false;

  std::atomic<uint64_t> lists_{0}, watches_{0}, events_{0}, bookmarks_{0},
      errors_{0}, expired_{0}, decode_errors_{0};
};

}  // namespace kube
}  // namespace pc

#endif  // COMMON_KUBE_POD_WATCHER_H_
