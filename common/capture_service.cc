#include "common/capture_service.h"

#include <algorithm>
#include <chrono>
#include <deque>
#include <optional>
#include <tuple>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "common/grpc_status.h"
#include "common/log.h"
#include "grpcpp/alarm.h"

namespace pc {
namespace {

using packetcapture::v1::Capture;
using packetcapture::v1::CaptureEvent;
using packetcapture::v1::DownloadCaptureRequest;
using packetcapture::v1::DownloadCaptureResponse;
using packetcapture::v1::ListCapturesRequest;
using packetcapture::v1::ListCapturesResponse;

constexpr int kDefaultPageSize = 100;
constexpr int kMaxPageSize = 1000;
constexpr size_t kDownloadChunk = 64 * 1024;
constexpr auto kFollowPoll = std::chrono::milliseconds(100);
// A watcher this far behind is cut off rather than buffered without bound.
constexpr size_t kMaxQueuedEvents = 4096;

// Newest first, then by id: a total order, so paging is stable.
using SortKey = std::tuple<int64_t, int32_t, std::string>;

SortKey KeyOf(const Capture& c) {
  return {c.start_time().seconds(), c.start_time().nanos(), c.id()};
}

bool Before(const SortKey& a, const SortKey& b) {
  if (std::get<0>(a) != std::get<0>(b)) return std::get<0>(a) > std::get<0>(b);
  if (std::get<1>(a) != std::get<1>(b)) return std::get<1>(a) > std::get<1>(b);
  return std::get<2>(a) < std::get<2>(b);
}

std::string EncodeToken(const SortKey& key) {
  return absl::WebSafeBase64Escape(absl::StrCat(
      "v1:", std::get<0>(key), ":", std::get<1>(key), ":", std::get<2>(key)));
}

absl::StatusOr<SortKey> DecodeToken(const std::string& token) {
  std::string raw;
  const auto bad = absl::InvalidArgumentError(
      "page_token is not a token returned by ListCaptures");
  if (!absl::WebSafeBase64Unescape(token, &raw)) return bad;
  std::vector<std::string> parts = absl::StrSplit(raw, absl::MaxSplits(':', 3));
  int64_t seconds;
  int32_t nanos;
  if (parts.size() != 4 || parts[0] != "v1" ||
      !absl::SimpleAtoi(parts[1], &seconds) ||
      !absl::SimpleAtoi(parts[2], &nanos)) {
    return bad;
  }
  return SortKey{seconds, nanos, parts[3]};
}

bool Matches(const Capture& c, const std::string& node, const std::string& ns,
             const std::string& pod) {
  return (node.empty() || c.node() == node) &&
         (ns.empty() || c.namespace_() == ns) &&
         (pod.empty() || c.pod() == pod);
}

// ---- DownloadCapture ----

// Finish() is always called with mu_ released: OnDone (which deletes the
// reactor) may run on another thread as soon as Finish is called.
class DownloadReactor final
    : public grpc::ServerWriteReactor<DownloadCaptureResponse> {
 public:
  DownloadReactor(std::unique_ptr<PcapSource> source, bool follow)
      : source_(std::move(source)), follow_(follow) {
    Step();
  }

  void OnWriteDone(bool ok) override {
    {
      absl::MutexLock lock(&mu_);
      if (!ok) cancelled_ = true;
    }
    Step();
  }

  void OnCancel() override {
    absl::MutexLock lock(&mu_);
    cancelled_ = true;
    // The pending alarm then fires at once (ok=false) and finishes the call.
    if (alarm_pending_) alarm_.Cancel();
  }

  void OnDone() override { delete this; }

 private:
  // Writes the next chunk, or waits for more (follow), or finishes.
  void Step() {
    grpc::Status finish;
    {
      absl::MutexLock lock(&mu_);
      if (cancelled_) {
        finish = grpc::Status(grpc::StatusCode::CANCELLED, "cancelled");
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
                     [this](bool) {
                       {
                         absl::MutexLock lock(&mu_);
                         alarm_pending_ = false;
                       }
                       Step();
                     });
          return;
        }
      }
    }
    Finish(finish);
  }

  absl::Mutex mu_;
  std::unique_ptr<PcapSource> source_ ABSL_GUARDED_BY(mu_);
  const bool follow_;
  DownloadCaptureResponse response_ ABSL_GUARDED_BY(mu_);
  uint64_t offset_ ABSL_GUARDED_BY(mu_) = 0;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool alarm_pending_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Alarm alarm_;
};

// ---- WatchCaptures ----

class WatchReactor final : public grpc::ServerWriteReactor<CaptureEvent> {
 public:
  WatchReactor(CaptureRegistry* registry,
               const packetcapture::v1::WatchCapturesRequest& request)
      : registry_(registry),
        node_(request.node()),
        ns_(request.namespace_()),
        pod_(request.pod()) {
    handle_ = registry_->Subscribe(
        [this](const CaptureEvent& event) { OnEvent(event); },
        !request.skip_initial());
  }

  void OnWriteDone(bool ok) override {
    std::optional<grpc::Status> finish;
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      if (!ok) {
        finish = MarkFinished(
            grpc::Status(grpc::StatusCode::CANCELLED, "client went away"));
      } else {
        queue_.pop_front();
        if (cancelled_) {
          // OnCancel came while this write was in flight and left the
          // finishing to us: no later write or reaction will.
          finish = MarkFinished(
              grpc::Status(grpc::StatusCode::CANCELLED, "cancelled"));
        } else if (overflow_) {
          finish = MarkFinished(
              grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                           "watcher fell too far behind; watch again"));
        } else {
          WriteNext();
        }
      }
    }
    if (finish) Finish(*finish);
  }

  void OnCancel() override {
    std::optional<grpc::Status> finish;
    {
      absl::MutexLock lock(&mu_);
      cancelled_ = true;
      if (!writing_) {
        finish = MarkFinished(
            grpc::Status(grpc::StatusCode::CANCELLED, "cancelled"));
      }
    }
    if (finish) Finish(*finish);
  }

  void OnDone() override {
    registry_->Unsubscribe(handle_);
    delete this;
  }

 private:
  void OnEvent(const CaptureEvent& event) {
    if (event.type() != CaptureEvent::SYNCED &&
        !Matches(event.capture(), node_, ns_, pod_)) {
      return;
    }
    absl::MutexLock lock(&mu_);
    if (finished_ || overflow_) return;
    if (queue_.size() >= kMaxQueuedEvents) {
      // Finished from OnWriteDone once the write in flight completes.
      overflow_ = true;
      return;
    }
    queue_.push_back(event);
    WriteNext();
  }

  void WriteNext() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (writing_ || finished_ || cancelled_ || queue_.empty()) return;
    writing_ = true;
    StartWrite(&queue_.front());
  }

  std::optional<grpc::Status> MarkFinished(const grpc::Status& status)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_) return std::nullopt;
    finished_ = true;
    return status;
  }

  CaptureRegistry* registry_;
  const std::string node_, ns_, pod_;
  int handle_ = 0;
  absl::Mutex mu_;
  std::deque<CaptureEvent> queue_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool overflow_ ABSL_GUARDED_BY(mu_) = false;
};

template <typename Response>
class FinishedWriter final : public grpc::ServerWriteReactor<Response> {
 public:
  explicit FinishedWriter(const grpc::Status& status) { this->Finish(status); }
  void OnDone() override { delete this; }
};

}  // namespace

CaptureServiceImpl::CaptureServiceImpl(CaptureRegistry* registry,
                                       PcapSourceOpener opener,
                                       PeerFilter allow_peer)
    : registry_(registry),
      opener_(std::move(opener)),
      allow_peer_(std::move(allow_peer)) {}

std::optional<grpc::Status> CaptureServiceImpl::Refuse(
    const grpc::CallbackServerContext& context) const {
  std::string peer = context.peer();
  if (allow_peer_(peer)) return std::nullopt;
  LogLine("query_refused", {{"peer", peer}, {"reason", "not a loopback peer"}});
  return grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                      "CaptureService answers loopback peers only; "
                      "reach it with kubectl port-forward");
}

absl::StatusOr<ListCapturesResponse> CaptureServiceImpl::ListPage(
    std::vector<Capture> captures, const ListCapturesRequest& request) {
  if (request.page_size() < 0) {
    return absl::InvalidArgumentError("page_size must not be negative");
  }
  if (!Capture::State_IsValid(request.state())) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown state ", request.state()));
  }
  int page_size = request.page_size() == 0
                      ? kDefaultPageSize
                      : std::min(request.page_size(), kMaxPageSize);
  std::optional<SortKey> after;
  if (!request.page_token().empty()) {
    auto key = DecodeToken(request.page_token());
    if (!key.ok()) return key.status();
    after = *key;
  }
  std::vector<Capture> matching;
  for (auto& c : captures) {
    if (!Matches(c, request.node(), request.namespace_(), request.pod())) {
      continue;
    }
    if (request.state() != Capture::STATE_UNSPECIFIED &&
        c.state() != request.state()) {
      continue;
    }
    matching.push_back(std::move(c));
  }
  std::sort(matching.begin(), matching.end(),
            [](const Capture& a, const Capture& b) {
              return Before(KeyOf(a), KeyOf(b));
            });
  ListCapturesResponse response;
  response.set_total_size(static_cast<int32_t>(matching.size()));
  for (const auto& c : matching) {
    if (after && !Before(*after, KeyOf(c))) continue;
    if (response.captures_size() == page_size) {
      response.set_next_page_token(
          EncodeToken(KeyOf(response.captures(response.captures_size() - 1))));
      break;
    }
    *response.add_captures() = c;
  }
  return response;
}

grpc::ServerUnaryReactor* CaptureServiceImpl::ListCaptures(
    grpc::CallbackServerContext* context, const ListCapturesRequest* request,
    ListCapturesResponse* response) {
  auto* reactor = context->DefaultReactor();
  if (auto refused = Refuse(*context)) {
    reactor->Finish(*refused);
    return reactor;
  }
  auto page = ListPage(registry_->List(), *request);
  if (!page.ok()) {
    reactor->Finish(ToGrpcStatus(page.status()));
  } else {
    *response = std::move(*page);
    reactor->Finish(grpc::Status::OK);
  }
  return reactor;
}

grpc::ServerUnaryReactor* CaptureServiceImpl::GetCapture(
    grpc::CallbackServerContext* context,
    const packetcapture::v1::GetCaptureRequest* request, Capture* response) {
  auto* reactor = context->DefaultReactor();
  if (auto refused = Refuse(*context)) {
    reactor->Finish(*refused);
    return reactor;
  }
  if (request->id().empty()) {
    reactor->Finish(
        grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "id is required"));
    return reactor;
  }
  auto capture = registry_->Get(request->id());
  if (!capture) {
    reactor->Finish(
        grpc::Status(grpc::StatusCode::NOT_FOUND,
                     absl::StrCat("no capture with id \"",
                                  request->id().substr(0, 256), "\"")));
    return reactor;
  }
  *response = std::move(*capture);
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerWriteReactor<DownloadCaptureResponse>*
CaptureServiceImpl::DownloadCapture(grpc::CallbackServerContext* context,
                                    const DownloadCaptureRequest* request) {
  if (auto refused = Refuse(*context)) {
    return new FinishedWriter<DownloadCaptureResponse>(*refused);
  }
  if (request->id().empty()) {
    return new FinishedWriter<DownloadCaptureResponse>(
        grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "id is required"));
  }
  auto capture = registry_->Get(request->id());
  if (!capture) {
    return new FinishedWriter<DownloadCaptureResponse>(
        grpc::Status(grpc::StatusCode::NOT_FOUND,
                     absl::StrCat("no capture with id \"",
                                  request->id().substr(0, 256), "\"")));
  }
  auto source = opener_(*capture, request->follow());
  if (!source.ok()) {
    return new FinishedWriter<DownloadCaptureResponse>(
        ToGrpcStatus(source.status()));
  }
  return new DownloadReactor(std::move(*source), request->follow());
}

grpc::ServerWriteReactor<CaptureEvent>* CaptureServiceImpl::WatchCaptures(
    grpc::CallbackServerContext* context,
    const packetcapture::v1::WatchCapturesRequest* request) {
  if (auto refused = Refuse(*context)) {
    return new FinishedWriter<CaptureEvent>(*refused);
  }
  return new WatchReactor(registry_, *request);
}

}  // namespace pc
