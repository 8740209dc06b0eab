// The server-streaming calls of CaptureService: a download (one pcap, or a
// followed capture) and a watch. Both may start before the caller's read
// access is known: they wait, without blocking any thread, for Begin().
//
// Lifetime: gRPC holds one reference until OnDone, and every pending
// authorizer callback holds one (Hold/Release); the last release deletes the
// reactor. Finish is called only with the reactor's mutex released, once.
//
// Thread-safe.
#ifndef COMMON_CAPTURE_STREAMS_H_
#define COMMON_CAPTURE_STREAMS_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/capture_registry.h"
#include "common/label_selector.h"
#include "common/pcap/byte_source.h"
#include "common/read_access.h"
#include "grpcpp/alarm.h"
#include "proto/packetcapture.grpc.pb.h"

namespace pc {

// One download: a pcap stream made of complete records (or a pcapng stream
// made by pcap::PcapngMerger).
using PcapSource = pcap::ByteSource;

// True when `c` passes the node, namespace and pod filters (empty = any).
bool MatchesFilter(const packetcapture::v1::Capture& c, const std::string& node,
                   const std::string& ns, const std::string& pod);

// Counts the owners of a reactor; the last Release deletes it.
class RefCounted {
 public:
  virtual ~RefCounted() = default;
  void Hold() { refs_.fetch_add(1, std::memory_order_relaxed); }
  void Release() {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }

 private:
  std::atomic<int> refs_{1};  // gRPC's, released in OnDone
};

class DownloadReactor final : public grpc::ServerWriteReactor<
                                  packetcapture::v1::DownloadCaptureResponse>,
                              public RefCounted {
 public:
  // Asks whether the caller may still read; calls its argument once, on any
  // thread, with OK or the status to end the download with.
  using Recheck =
      std::function<void(std::function<void(const grpc::Status&)> answer)>;

  explicit DownloadReactor(bool follow) : follow_(follow) {}

  // Follow mode: while waiting for new data, ask `recheck` every `interval`
  // and end the download with its answer when that is not OK. Call before
  // Begin.
  void SetRecheck(Recheck recheck, absl::Duration interval) {
    recheck_ = std::move(recheck);
    recheck_interval_ = interval;
  }

  // Streams `source`, or finishes with its error; does nothing once the call
  // was cancelled. Call once.
  void Begin(absl::StatusOr<std::unique_ptr<PcapSource>> source);

  void OnWriteDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override { Release(); }

 private:
  // Writes the next chunk, or waits for more (follow), or finishes.
  void Step();
  // The follow poll's alarm fired: recheck if due, then Step.
  void OnPoll(bool ok);

  const bool follow_;
  Recheck recheck_;
  absl::Duration recheck_interval_;
  absl::Mutex mu_;
  std::unique_ptr<PcapSource> source_ ABSL_GUARDED_BY(mu_);
  packetcapture::v1::DownloadCaptureResponse response_ ABSL_GUARDED_BY(mu_);
  uint64_t offset_ ABSL_GUARDED_BY(mu_) = 0;
  bool begun_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool alarm_pending_ ABSL_GUARDED_BY(mu_) = false;
  bool recheck_pending_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time next_recheck_ ABSL_GUARDED_BY(mu_);
  std::optional<grpc::Status> end_ ABSL_GUARDED_BY(mu_);
  grpc::Alarm alarm_;
};

// Sends the registry's changes that match the request's filters and label
// selector. With an
// authorizer, each capture event is sent only if `token` may read its
// namespace, asked per event (the authorizer caches), in registry order: an
// event waits for its answer and every event behind it waits too. A token
// that stops being valid ends the watch with the authorizer's error.
class WatchReactor final
    : public grpc::ServerWriteReactor<packetcapture::v1::CaptureEvent>,
      public RefCounted {
 public:
  // `authorizer` null: every event is sent.
  WatchReactor(CaptureRegistry* registry,
               const packetcapture::v1::WatchCapturesRequest& request,
               LabelSelector selector, ReadAuthorizer* authorizer,
               std::string token);

  // OK: subscribes (initial listing unless skip_initial) and starts sending;
  // otherwise finishes with `status`. Does nothing once cancelled. Call once.
  void Begin(const grpc::Status& status);

  void OnWriteDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override;

 private:
  enum class Access { kPending, kAllowed, kDenied };
  struct Item {
    uint64_t seq;
    Access access;
    packetcapture::v1::CaptureEvent event;
  };

  void OnEvent(const packetcapture::v1::CaptureEvent& event);
  void OnDecision(uint64_t seq,
                  const absl::StatusOr<std::vector<bool>>& answer);
  // Drops denied events at the head, writes the next allowed one, or returns
  // the status to finish with once nothing is in flight.
  std::optional<grpc::Status> Advance() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::optional<grpc::Status> MarkFinished(const grpc::Status& status)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  CaptureRegistry* const registry_;
  const std::string node_, ns_, pod_;
  const LabelSelector selector_;
  const bool initial_;
  ReadAuthorizer* const authorizer_;
  const std::string token_;

  // Orders Subscribe (Begin) against Unsubscribe (OnDone). Taken before the
  // registry's locks (Subscribe delivers the initial events under them).
  absl::Mutex subscription_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  bool done_ ABSL_GUARDED_BY(subscription_mu_) = false;
  int handle_ ABSL_GUARDED_BY(subscription_mu_) = 0;

  absl::Mutex mu_;
  std::deque<Item> queue_ ABSL_GUARDED_BY(mu_);
  uint64_t next_seq_ ABSL_GUARDED_BY(mu_) = 0;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  // Set when the watch must end (overflow, lost access); sent once the write
  // in flight completes.
  std::optional<grpc::Status> end_ ABSL_GUARDED_BY(mu_);
};

}  // namespace pc

#endif  // COMMON_CAPTURE_STREAMS_H_
