#include "common/capture_service.h"

#include <algorithm>
#include <functional>
#include <optional>
#include <set>
#include <tuple>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "common/grpc_status.h"
#include "common/label_selector.h"
#include "common/log.h"

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

// A unary call that may wait for the authorizer: gRPC holds it until OnDone,
// a pending authorizer callback holds it too (RefCounted). Complete() fills
// the response and finishes unless the call already finished (cancelled).
class UnaryCall final : public grpc::ServerUnaryReactor, public RefCounted {
 public:
  void Complete(const std::function<grpc::Status()>& produce) {
    grpc::Status status;
    {
      absl::MutexLock lock(&mu_);
      if (finished_) return;
      finished_ = true;
      status = produce();
    }
    Finish(status);
  }
  void OnCancel() override {
    Complete(
        [] { return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled"); });
  }
  void OnDone() override { Release(); }

 private:
  absl::Mutex mu_;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

grpc::Status NotFound(const std::string& id) {
  return grpc::Status(
      grpc::StatusCode::NOT_FOUND,
      absl::StrCat("no capture with id \"", id.substr(0, 256), "\""));
}

grpc::Status MayNotRead(const std::string& ns) {
  return grpc::Status(
      grpc::StatusCode::PERMISSION_DENIED,
      absl::StrCat("this token may not read captures in namespace \"", ns,
                   "\" (it needs ", kReadVerb, " on ", kCaptureResource, ".",
                   kCaptureApiGroup, " there)"));
}

}  // namespace

CaptureServiceImpl::CaptureServiceImpl(CaptureRegistry* registry,
                                       PcapSourceOpener opener,
                                       PeerFilter allow_peer,
                                       ReadAuthorizer* authorizer)
    : registry_(registry),
      opener_(std::move(opener)),
      allow_peer_(std::move(allow_peer)),
      authorizer_(authorizer) {}

CaptureServiceImpl::Admission CaptureServiceImpl::Admit(
    const grpc::CallbackServerContext& context) const {
  Admission admission;
  const std::string peer = context.peer();
  if (authorizer_ != nullptr) {
    const auto& metadata = context.client_metadata();
    auto [first, last] = metadata.equal_range("authorization");
    if (first != last) {
      absl::StatusOr<std::string> token =
          std::next(first) != last
              ? absl::UnauthenticatedError(
                    "more than one authorization metadata entry")
              : ParseBearerToken(absl::string_view(first->second.data(),
                                                   first->second.size()));
      if (!token.ok()) {
        LogLine("query_refused",
                {{"peer", peer}, {"reason", "malformed authorization"}});
        admission.refused = ToGrpcStatus(token.status());
      } else {
        admission.token = std::move(*token);
      }
      return admission;
    }
  }
  if (allow_peer_(peer)) {
    admission.everything = true;
    return admission;
  }
  if (authorizer_ != nullptr) {
    LogLine("query_refused", {{"peer", peer}, {"reason", "no token"}});
    admission.refused = grpc::Status(
        grpc::StatusCode::UNAUTHENTICATED,
        "CaptureService needs a bearer token from this address: send "
        "metadata \"authorization: Bearer <token>\" with a token from "
        "\"kubectl create token <serviceaccount>\" (capturectl --token-file), "
        "or connect through kubectl port-forward");
    return admission;
  }
  LogLine("query_refused", {{"peer", peer}, {"reason", "not a loopback peer"}});
  admission.refused =
      grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                   "CaptureService answers loopback peers only; "
                   "reach it with kubectl port-forward");
  return admission;
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
  auto selector = LabelSelector::Parse(request.label_selector());
  if (!selector.ok()) return selector.status();
  std::vector<Capture> matching;
  for (auto& c : captures) {
    if (!MatchesFilter(c, request.node(), request.namespace_(),
                       request.pod()) ||
        !selector->Matches(c.pod_labels())) {
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
  auto* call = new UnaryCall();
  Admission admission = Admit(*context);
  if (!admission.refused.ok()) {
    call->Complete([&] { return admission.refused; });
    return call;
  }
  std::vector<Capture> captures = registry_->List();
  auto page = [request, response](std::vector<Capture> visible) {
    auto page = ListPage(std::move(visible), *request);
    if (!page.ok()) return ToGrpcStatus(page.status());
    *response = std::move(*page);
    return grpc::Status::OK;
  };
  if (admission.everything) {
    call->Complete([&] { return page(std::move(captures)); });
    return call;
  }
  // An explicit namespace is asked even when it holds no capture, so the
  // answer never depends on what exists there.
  std::vector<std::string> namespaces;
  if (!request->namespace_().empty()) {
    namespaces.push_back(request->namespace_());
  } else {
    std::set<std::string> distinct;
    for (const Capture& c : captures) distinct.insert(c.namespace_());
    namespaces.assign(distinct.begin(), distinct.end());
  }
  call->Hold();
  authorizer_->CanRead(
      admission.token, namespaces,
      [call, request, namespaces, page, captures = std::move(captures)](
          absl::StatusOr<std::vector<bool>> allowed) mutable {
        call->Complete([&]() -> grpc::Status {
          if (!allowed.ok()) return ToGrpcStatus(allowed.status());
          std::set<std::string> readable;
          for (size_t i = 0; i < namespaces.size() && i < allowed->size();
               ++i) {
            if ((*allowed)[i]) readable.insert(namespaces[i]);
          }
          if (!request->namespace_().empty() &&
              readable.count(request->namespace_()) == 0) {
            return MayNotRead(request->namespace_());
          }
          std::vector<Capture> visible;
          for (Capture& c : captures) {
            if (readable.count(c.namespace_()) > 0) {
              visible.push_back(std::move(c));
            }
          }
          return page(std::move(visible));
        });
        call->Release();
      });
  return call;
}

grpc::ServerUnaryReactor* CaptureServiceImpl::GetCapture(
    grpc::CallbackServerContext* context,
    const packetcapture::v1::GetCaptureRequest* request, Capture* response) {
  auto* call = new UnaryCall();
  Admission admission = Admit(*context);
  if (!admission.refused.ok()) {
    call->Complete([&] { return admission.refused; });
    return call;
  }
  if (request->id().empty()) {
    call->Complete([] {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "id is required");
    });
    return call;
  }
  std::optional<Capture> capture = registry_->Get(request->id());
  auto answer = [request, response](std::optional<Capture> capture) {
    if (!capture) return NotFound(request->id());
    *response = std::move(*capture);
    return grpc::Status::OK;
  };
  if (admission.everything) {
    call->Complete([&] { return answer(std::move(capture)); });
    return call;
  }
  // Unknown ids still need a valid token (authenticate only).
  std::vector<std::string> namespaces;
  if (capture) namespaces.push_back(capture->namespace_());
  call->Hold();
  authorizer_->CanRead(
      admission.token, namespaces,
      [call, answer, capture = std::move(capture)](
          absl::StatusOr<std::vector<bool>> allowed) mutable {
        call->Complete([&]() -> grpc::Status {
          if (!allowed.ok()) return ToGrpcStatus(allowed.status());
          if (capture && (allowed->empty() || !allowed->front())) {
            return MayNotRead(capture->namespace_());
          }
          return answer(std::move(capture));
        });
        call->Release();
      });
  return call;
}

grpc::ServerWriteReactor<DownloadCaptureResponse>*
CaptureServiceImpl::DownloadCapture(grpc::CallbackServerContext* context,
                                    const DownloadCaptureRequest* request) {
  auto* reactor = new DownloadReactor(request->follow());
  Admission admission = Admit(*context);
  if (!admission.refused.ok()) {
    reactor->Begin(absl::Status(
        static_cast<absl::StatusCode>(admission.refused.error_code()),
        admission.refused.error_message()));
    return reactor;
  }
  if (request->id().empty()) {
    reactor->Begin(absl::InvalidArgumentError("id is required"));
    return reactor;
  }
  if (request->format() != packetcapture::v1::FORMAT_PCAP &&
      request->format() != packetcapture::v1::FORMAT_PCAPNG) {
    reactor->Begin(absl::InvalidArgumentError(
        absl::StrCat("unknown format ", request->format(),
                     " (FORMAT_PCAP or FORMAT_PCAPNG)")));
    return reactor;
  }
  std::optional<Capture> capture = registry_->Get(request->id());
  const std::string id = request->id();
  const bool follow = request->follow();
  const bool pcapng = request->format() == packetcapture::v1::FORMAT_PCAPNG;
  auto open = [this, id, follow, pcapng](const std::optional<Capture>& capture)
      -> absl::StatusOr<std::unique_ptr<PcapSource>> {
    if (!capture) {
      return absl::NotFoundError(NotFound(id).error_message());
    }
    auto source = opener_(*capture, follow);
    if (!pcapng || !source.ok()) return source;
    std::vector<absl::StatusOr<std::unique_ptr<PcapSource>>> sources;
    sources.push_back(std::move(source));
    return MakePcapngStream({*capture}, std::move(sources), pcapng_info_,
                            follow);
  };
  if (admission.everything) {
    reactor->Begin(open(capture));
    return reactor;
  }
  std::vector<std::string> namespaces;
  if (capture) namespaces.push_back(capture->namespace_());
  if (capture && follow) {
    // A follow may last hours: the token and the binding are asked again.
    reactor->SetRecheck(
        [authorizer = authorizer_, token = admission.token,
         ns = capture->namespace_()](
            std::function<void(const grpc::Status&)> answer) {
          authorizer->CanRead(
              token, {ns},
              [answer = std::move(answer),
               ns](absl::StatusOr<std::vector<bool>> allowed) {
                if (!allowed.ok()) {
                  answer(ToGrpcStatus(allowed.status()));
                } else if (allowed->empty() || !allowed->front()) {
                  answer(MayNotRead(ns));
                } else {
                  answer(grpc::Status::OK);
                }
              });
        },
        follow_recheck_);
  }
  reactor->Hold();
  authorizer_->CanRead(
      admission.token, namespaces,
      [reactor, open, capture = std::move(capture)](
          absl::StatusOr<std::vector<bool>> allowed) {
        if (!allowed.ok()) {
          reactor->Begin(allowed.status());
        } else if (capture && (allowed->empty() || !allowed->front())) {
          reactor->Begin(absl::PermissionDeniedError(
              MayNotRead(capture->namespace_()).error_message()));
        } else {
          reactor->Begin(open(capture));
        }
        reactor->Release();
      });
  return reactor;
}

grpc::ServerWriteReactor<CaptureEvent>* CaptureServiceImpl::WatchCaptures(
    grpc::CallbackServerContext* context,
    const packetcapture::v1::WatchCapturesRequest* request) {
  Admission admission = Admit(*context);
  auto selector = LabelSelector::Parse(request->label_selector());
  auto* reactor = new WatchReactor(
      registry_, *request, selector.ok() ? *selector : LabelSelector(),
      admission.everything ? nullptr : authorizer_, admission.token);
  if (admission.refused.ok() && !selector.ok()) {
    admission.refused = ToGrpcStatus(selector.status());
  }
  if (!admission.refused.ok() || admission.everything) {
    reactor->Begin(admission.refused);
    return reactor;
  }
  // The token is checked before anything is sent, and so is an explicit
  // namespace filter; each event's namespace is then asked as it comes.
  std::vector<std::string> namespaces;
  if (!request->namespace_().empty()) {
    namespaces.push_back(request->namespace_());
  }
  reactor->Hold();
  authorizer_->CanRead(
      admission.token, namespaces,
      [reactor, namespaces](absl::StatusOr<std::vector<bool>> allowed) {
        if (!allowed.ok()) {
          reactor->Begin(ToGrpcStatus(allowed.status()));
        } else if (!namespaces.empty() &&
                   (allowed->empty() || !allowed->front())) {
          reactor->Begin(MayNotRead(namespaces.front()));
        } else {
          reactor->Begin(grpc::Status::OK);
        }
        reactor->Release();
      });
  return reactor;
}

}  // namespace pc
