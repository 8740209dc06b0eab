#include "common/capture_streams.h"

#include <chrono>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/grpc_status.h"

namespace pc {
namespace {

using packetcapture::v1::CaptureEvent;

constexpr size_t kDownloadChunk = 64 * 1024;
constexpr auto kFollowPoll = std::chrono::milliseconds(100);
// A watcher this far behind is cut off rather than buffered without bound.
constexpr size_t kMaxQueuedEvents = 4096;

}  // namespace

bool MatchesFilter(const packetcapture::v1::Capture& c, const std::string& node,
                   const std::string& ns, const std::string& pod) {
  return (node.empty() || c.node() == node) &&
         (ns.empty() || c.namespace_() == ns) &&
         (pod.empty() || c.pod() == pod);
}

// ---- DownloadReactor ----

void DownloadReactor::Begin(
    absl::StatusOr<std::unique_ptr<PcapSource>> source) {
  {
    absl::MutexLock lock(&mu_);
    if (finished_) return;  // cancelled while waiting
    begun_ = true;
    next_recheck_ = absl::Now() + recheck_interval_;
    if (source.ok()) {
      source_ = std::move(*source);
    } else {
      finished_ = true;
    }
  }
  if (!source.ok()) {
    Finish(ToGrpcStatus(source.status()));
    return;
  }
  Step();
}

void DownloadReactor::OnWriteDone(bool ok) {
  {
    absl::MutexLock lock(&mu_);
    if (!ok) cancelled_ = true;
  }
  Step();
}

void DownloadReactor::OnCancel() {
  bool finish_now = false;
  {
    absl::MutexLock lock(&mu_);
    cancelled_ = true;
    if ((!begun_ || recheck_pending_) && !finished_) {
      // Waiting for Begin or a recheck: nothing in flight, finish at once.
      finished_ = true;
      finish_now = true;
    }
    // The pending alarm then fires at once (ok=false) and finishes the call.
    if (alarm_pending_) alarm_.Cancel();
  }
  if (finish_now)
    Finish(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled"));
}

void DownloadReactor::Step() {
  grpc::Status finish;
  {
    absl::MutexLock lock(&mu_);
    if (finished_) return;
    if (cancelled_) {
      finish = grpc::Status(grpc::StatusCode::CANCELLED, "cancelled");
    } else if (end_) {
      finish = *end_;
    } else {
      response_.Clear();
      auto n = source_->Read(response_.mutable_data(), kDownloadChunk);
      if (!n.ok()) {
        finish = ToGrpcStatus(n.status());
      } else if (*n > 0) {
        response_.set_offset(offset_);
        offset_ += *n;
        StartWrite(&response_);
        return;
      } else if (follow_ && !source_->Done()) {
        alarm_pending_ = true;
        alarm_.Set(std::chrono::system_clock::now() + kFollowPoll,
                   [this](bool ok) { OnPoll(ok); });
        return;
      }
    }
    finished_ = true;
  }
  Finish(finish);
}

void DownloadReactor::OnPoll(bool ok) {
  bool recheck = false;
  {
    absl::MutexLock lock(&mu_);
    alarm_pending_ = false;
    if (ok && recheck_ && !cancelled_ && absl::Now() >= next_recheck_) {
      recheck = true;
      recheck_pending_ = true;
      next_recheck_ = absl::Now() + recheck_interval_;
    }
  }
  if (!recheck) {
    Step();
    return;
  }
  Hold();  // for the answer
  recheck_([this](const grpc::Status& status) {
    {
      absl::MutexLock lock(&mu_);
      recheck_pending_ = false;
      if (!status.ok() && !end_) end_ = status;
    }
    Step();
    Release();
  });
}

// ---- WatchReactor ----

WatchReactor::WatchReactor(
    CaptureRegistry* registry,
    const packetcapture::v1::WatchCapturesRequest& request,
    LabelSelector selector, ReadAuthorizer* authorizer, std::string token)
    : registry_(registry),
      node_(request.node()),
      ns_(request.namespace_()),
      pod_(request.pod()),
      selector_(std::move(selector)),
      initial_(!request.skip_initial()),
      authorizer_(authorizer),
      token_(std::move(token)) {}

void WatchReactor::Begin(const grpc::Status& status) {
  if (!status.ok()) {
    std::optional<grpc::Status> finish;
    {
      absl::MutexLock lock(&mu_);
      finish = MarkFinished(status);
    }
    if (finish) Finish(*finish);
    return;
  }
  absl::MutexLock subscription(&subscription_mu_);
  if (done_) return;
  {
    absl::MutexLock lock(&mu_);
    if (finished_) return;
  }
  handle_ = registry_->Subscribe(
      [this](const CaptureEvent& event) { OnEvent(event); }, initial_);
}

void WatchReactor::OnEvent(const CaptureEvent& event) {
  if (event.type() != CaptureEvent::SYNCED &&
      (!MatchesFilter(event.capture(), node_, ns_, pod_) ||
       !selector_.Matches(event.capture().pod_labels()))) {
    return;
  }
  uint64_t seq = 0;
  std::optional<grpc::Status> finish;
  {
    absl::MutexLock lock(&mu_);
    if (finished_ || end_) return;
    if (queue_.size() >= kMaxQueuedEvents) {
      end_ = grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                          "watcher fell too far behind; watch again");
      finish = Advance();
    } else {
      seq = next_seq_++;
      const bool ask =
          authorizer_ != nullptr && event.type() != CaptureEvent::SYNCED;
      queue_.push_back(
          Item{seq, ask ? Access::kPending : Access::kAllowed, event});
      if (!ask) {
        finish = Advance();
      } else {
        Hold();  // for the callback below
      }
    }
  }
  if (finish) {
    Finish(*finish);
    return;
  }
  if (authorizer_ == nullptr || event.type() == CaptureEvent::SYNCED) return;
  // Outside mu_: the answer may come inline.
  authorizer_->CanRead(token_, {event.capture().namespace_()},
                       [this, seq](absl::StatusOr<std::vector<bool>> answer) {
                         OnDecision(seq, answer);
                         Release();
                       });
}

void WatchReactor::OnDecision(uint64_t seq,
                              const absl::StatusOr<std::vector<bool>>& answer) {
  std::optional<grpc::Status> finish;
  {
    absl::MutexLock lock(&mu_);
    if (finished_) return;
    if (!answer.ok()) {
      if (!end_) end_ = ToGrpcStatus(answer.status());
    } else {
      for (Item& item : queue_) {
        if (item.seq == seq) {
          item.access = !answer->empty() && answer->front() ? Access::kAllowed
                                                            : Access::kDenied;
          break;
        }
      }
    }
    finish = Advance();
  }
  if (finish) Finish(*finish);
}

std::optional<grpc::Status> WatchReactor::Advance() {
  if (finished_ || writing_) return std::nullopt;
  if (end_) return MarkFinished(*end_);
  if (cancelled_) {
    return MarkFinished(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled"));
  }
  while (!queue_.empty() && queue_.front().access == Access::kDenied) {
    queue_.pop_front();
  }
  if (queue_.empty() || queue_.front().access == Access::kPending) {
    return std::nullopt;
  }
  writing_ = true;
  StartWrite(&queue_.front().event);
  return std::nullopt;
}

void WatchReactor::OnWriteDone(bool ok) {
  std::optional<grpc::Status> finish;
  {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    if (!ok) {
      finish = MarkFinished(
          grpc::Status(grpc::StatusCode::CANCELLED, "client went away"));
    } else {
      queue_.pop_front();
      finish = Advance();
    }
  }
  if (finish) Finish(*finish);
}

void WatchReactor::OnCancel() {
  std::optional<grpc::Status> finish;
  {
    absl::MutexLock lock(&mu_);
    cancelled_ = true;
    if (!writing_) {
      finish =
          MarkFinished(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled"));
    }
  }
  if (finish) Finish(*finish);
}

void WatchReactor::OnDone() {
  {
    absl::MutexLock subscription(&subscription_mu_);
    done_ = true;
    // No listener call is in progress or will come after this returns.
    if (handle_ != 0) registry_->Unsubscribe(handle_);
  }
  Release();
}

std::optional<grpc::Status> WatchReactor::MarkFinished(
    const grpc::Status& status) {
  if (finished_) return std::nullopt;
  finished_ = true;
  return status;
}

}  // namespace pc
