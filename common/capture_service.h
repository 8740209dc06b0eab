// packetcapture.v1.CaptureService over a CaptureRegistry, shared by the agent
// (its node) and the aggregator (the cluster). Downloads read through a
// PcapSource that each server opens its own way; who may read what is decided
// per call from the peer address and, on the aggregator, a bearer token
// checked by a ReadAuthorizer. Callback API: no thread per stream, and no
// reaction ever waits for the authorizer (its answers arrive as callbacks);
// follow-mode downloads poll their source on a grpc::Alarm. pcapng downloads
// (FORMAT_PCAPNG, DownloadCaptures) merge the same sources, see
// common/pcapng_download.h.
//
// Thread-safe.
#ifndef COMMON_CAPTURE_SERVICE_H_
#define COMMON_CAPTURE_SERVICE_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/capture_registry.h"
#include "common/capture_streams.h"
#include "common/pcapng_download.h"
#include "common/peer.h"
#include "common/read_access.h"
#include "proto/packetcapture.grpc.pb.h"

namespace pc {

using PcapSourceOpener =
    std::function<absl::StatusOr<std::unique_ptr<PcapSource>>(
        const packetcapture::v1::Capture& capture, bool follow)>;

// Decides from ServerContext::peer() whether a caller may read everything
// without a token.
using PeerFilter = std::function<bool(absl::string_view peer)>;

class CaptureServiceImpl final
    : public packetcapture::v1::CaptureService::CallbackService {
 public:
  // Who may read, per call:
  //  - with an `authorizer`, a caller that sends "authorization: Bearer
  //    <token>" metadata, from any address: the captures of the namespaces
  //    the authorizer allows (ListCaptures and WatchCaptures leave the others
  //    out, GetCapture and DownloadCapture of them are PERMISSION_DENIED, and
  //    so is an explicit namespace filter the token may not read);
  //  - otherwise a peer `allow_peer` admits (default: loopback, see
  //    common/peer.h): every capture; without an authorizer tokens are
  //    ignored;
  //  - anyone else: UNAUTHENTICATED (with an authorizer: it says how to get a
  //    token) or PERMISSION_DENIED (without) on every method.
  // `authorizer`, if set, must outlive the server's last call.
  CaptureServiceImpl(CaptureRegistry* registry, PcapSourceOpener opener,
                     PeerFilter allow_peer = IsLoopbackPeer,
                     ReadAuthorizer* authorizer = nullptr);

  grpc::ServerUnaryReactor* ListCaptures(
      grpc::CallbackServerContext* context,
      const packetcapture::v1::ListCapturesRequest* request,
      packetcapture::v1::ListCapturesResponse* response) override;
  grpc::ServerUnaryReactor* GetCapture(
      grpc::CallbackServerContext* context,
      const packetcapture::v1::GetCaptureRequest* request,
      packetcapture::v1::Capture* response) override;
  grpc::ServerWriteReactor<packetcapture::v1::DownloadCaptureResponse>*
  DownloadCapture(
      grpc::CallbackServerContext* context,
      const packetcapture::v1::DownloadCaptureRequest* request) override;
  grpc::ServerWriteReactor<packetcapture::v1::DownloadCaptureResponse>*
  DownloadCaptures(
      grpc::CallbackServerContext* context,
      const packetcapture::v1::DownloadCapturesRequest* request) override;
  grpc::ServerWriteReactor<packetcapture::v1::CaptureEvent>* WatchCaptures(
      grpc::CallbackServerContext* context,
      const packetcapture::v1::WatchCapturesRequest* request) override;

  // How often a follow-mode download by token asks the authorizer again
  // (default 10 s); an answer other than "may read" ends it. Call before
  // serving.
  void SetFollowRecheckInterval(absl::Duration interval) {
    follow_recheck_ = interval;
  }

  // What pcapng downloads say about this server (cluster name, program).
  // Call before serving.
  void SetPcapngInfo(PcapngInfo info) { pcapng_info_ = std::move(info); }

  // Pure listing logic, exposed for tests: filter, newest first, keyset
  // paging with an opaque token.
  static absl::StatusOr<packetcapture::v1::ListCapturesResponse> ListPage(
      std::vector<packetcapture::v1::Capture> captures,
      const packetcapture::v1::ListCapturesRequest& request);

 private:
  // How a call was admitted: refused, everything, or by token.
  struct Admission {
    grpc::Status refused;  // not OK: answer this and stop
    bool everything = false;
    std::string token;  // when !everything: ask authorizer_
  };
  Admission Admit(const grpc::CallbackServerContext& context) const;

  CaptureRegistry* registry_;
  PcapSourceOpener opener_;
  PeerFilter allow_peer_;
  ReadAuthorizer* authorizer_;
  absl::Duration follow_recheck_ = absl::Seconds(10);
  PcapngInfo pcapng_info_;
};

}  // namespace pc

#endif  // COMMON_CAPTURE_SERVICE_H_
