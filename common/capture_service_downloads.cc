// CaptureServiceImpl::DownloadCaptures: several captures merged into one
// pcapng stream (selection and metadata in common/pcapng_download.h).
#include <functional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/capture_service.h"
#include "common/grpc_status.h"
#include "common/pcapng_download.h"

namespace pc {
namespace {

using packetcapture::v1::Capture;
using packetcapture::v1::DownloadCaptureResponse;
using packetcapture::v1::DownloadCapturesRequest;

absl::Status MayNotRead(const std::string& ns) {
  return absl::PermissionDeniedError(absl::StrCat(
      "this token may not read captures in namespace \"", ns, "\" (it needs ",
      kReadVerb, " on ", kCaptureResource, ".", kCaptureApiGroup, " there)"));
}

std::vector<std::string> NamespacesOf(const std::vector<Capture>& captures) {
  std::set<std::string> distinct;
  for (const Capture& c : captures) distinct.insert(c.namespace_());
  return {distinct.begin(), distinct.end()};
}

// Asks whether `token` may still read every one of `namespaces`.
std::function<void(const std::vector<std::string>&,
                   std::function<void(const grpc::Status&)>)>
FollowRecheck(ReadAuthorizer* authorizer, std::string token) {
  return [authorizer, token](const std::vector<std::string>& namespaces,
                             std::function<void(const grpc::Status&)> answer) {
    authorizer->CanRead(token, namespaces,
                        [answer = std::move(answer), namespaces](
                            absl::StatusOr<std::vector<bool>> allowed) {
                          if (!allowed.ok()) {
                            answer(ToGrpcStatus(allowed.status()));
                            return;
                          }
                          for (size_t i = 0; i < namespaces.size(); ++i) {
                            if (i >= allowed->size() || !(*allowed)[i]) {
                              answer(ToGrpcStatus(MayNotRead(namespaces[i])));
                              return;
                            }
                          }
                          answer(grpc::Status::OK);
                        });
  };
}

}  // namespace

grpc::ServerWriteReactor<DownloadCaptureResponse>*
CaptureServiceImpl::DownloadCaptures(grpc::CallbackServerContext* context,
                                     const DownloadCapturesRequest* request) {
  auto* reactor = new DownloadReactor(request->follow());
  Admission admission = Admit(*context);
  if (!admission.refused.ok()) {
    reactor->Begin(absl::Status(
        static_cast<absl::StatusCode>(admission.refused.error_code()),
        admission.refused.error_message()));
    return reactor;
  }
  absl::StatusOr<std::vector<Capture>> selected =
      SelectCaptures(registry_->List(), *request);
  const bool follow = request->follow();
  const bool by_ids = request->ids_size() > 0;
  // Opens every chosen capture once the caller may read them all.
  auto open = [this, follow,
               request_copy = *request](std::vector<Capture> chosen)
      -> absl::StatusOr<std::unique_ptr<PcapSource>> {
    absl::Status checked = CheckChosen(chosen.size(), request_copy);
    if (!checked.ok()) return checked;
    std::vector<absl::StatusOr<std::unique_ptr<PcapSource>>> sources;
    for (const Capture& c : chosen) {
      auto source = opener_(c, follow);
      // A capture without data (failed before writing, its files gone)
      // still gets its interface; anything else ends the download.
      if (!source.ok() &&
          source.status().code() != absl::StatusCode::kFailedPrecondition &&
          source.status().code() != absl::StatusCode::kNotFound) {
        return absl::Status(
            source.status().code(),
            absl::StrCat("capture ", c.id(), ": ", source.status().message()));
      }
      sources.push_back(std::move(source));
    }
    return MakePcapngStream(chosen, std::move(sources), pcapng_info_, follow);
  };
  if (admission.everything ||
      (!selected.ok() &&
       selected.status().code() == absl::StatusCode::kInvalidArgument)) {
    reactor->Begin(selected.ok() ? open(std::move(*selected))
                                 : selected.status());
    return reactor;
  }
  // By token: authenticated first (also for unknown ids, as GetCapture), then
  // each chosen capture's namespace is asked as for DownloadCapture. By ids,
  // every one must be readable; by filters, the unreadable ones are left out
  // as ListCaptures leaves them out, but an explicit namespace filter the
  // token may not read is refused.
  std::vector<std::string> namespaces;
  if (selected.ok()) namespaces = NamespacesOf(*selected);
  const std::string explicit_ns = by_ids ? "" : request->namespace_();
  if (!explicit_ns.empty() && namespaces.empty()) {
    namespaces.push_back(explicit_ns);
  }
  reactor->Hold();
  authorizer_->CanRead(
      admission.token, namespaces,
      [reactor, open, namespaces, explicit_ns, by_ids, follow,
       recheck = FollowRecheck(authorizer_, admission.token),
       interval = follow_recheck_, selected = std::move(selected)](
          absl::StatusOr<std::vector<bool>> allowed) mutable {
        if (!allowed.ok()) {
          reactor->Begin(allowed.status());
          reactor->Release();
          return;
        }
        if (!selected.ok()) {
          reactor->Begin(selected.status());
          reactor->Release();
          return;
        }
        std::set<std::string> readable;
        for (size_t i = 0; i < namespaces.size() && i < allowed->size(); ++i) {
          if ((*allowed)[i]) readable.insert(namespaces[i]);
        }
        std::vector<Capture> chosen;
        absl::Status denied;
        for (Capture& c : *selected) {
          if (readable.count(c.namespace_()) > 0) {
            chosen.push_back(std::move(c));
          } else if (by_ids && denied.ok()) {
            denied = MayNotRead(c.namespace_());
          }
        }
        if (!explicit_ns.empty() && readable.count(explicit_ns) == 0) {
          denied = MayNotRead(explicit_ns);
        }
        if (denied.ok() && follow && !chosen.empty()) {
          // A follow may last hours: the token and the bindings are asked
          // again; losing any chosen namespace ends the download.
          reactor->SetRecheck(
              [recheck, chosen_ns = NamespacesOf(chosen)](
                  std::function<void(const grpc::Status&)> answer) {
                recheck(chosen_ns, std::move(answer));
              },
              interval);
        }
        reactor->Begin(denied.ok() ? open(std::move(chosen)) : denied);
        reactor->Release();
      });
  return reactor;
}

}  // namespace pc
