// packetcapture.v1.CaptureService over a CaptureRegistry, shared by the agent
// (its node) and the aggregator (the cluster). Downloads read through a
// PcapSource that each server opens its own way. Callback API: no thread per
// stream; follow-mode downloads poll their source on a grpc::Alarm.
//
// Thread-safe.
#ifndef COMMON_CAPTURE_SERVICE_H_
#define COMMON_CAPTURE_SERVICE_H_

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/capture_registry.h"
#include "common/peer.h"
#include "proto/packetcapture.grpc.pb.h"

namespace pc {

// One download: a pcap stream made of complete records.
class PcapSource {
 public:
  virtual ~PcapSource() = default;
  // Appends at most max_bytes to *out (complete records only; the global
  // header first). Returns the bytes appended; 0 means nothing new right now.
  virtual absl::StatusOr<size_t> Read(std::string* out, size_t max_bytes) = 0;
  // True once no more data will come (the capture stopped and was drained).
  virtual bool Done() = 0;
};

using PcapSourceOpener =
    std::function<absl::StatusOr<std::unique_ptr<PcapSource>>(
        const packetcapture::v1::Capture& capture, bool follow)>;

// Decides from ServerContext::peer() whether a caller may use the service.
using PeerFilter = std::function<bool(absl::string_view peer)>;

class CaptureServiceImpl final
    : public packetcapture::v1::CaptureService::CallbackService {
 public:
  // Callers that `allow_peer` refuses get PERMISSION_DENIED on every method;
  // the default admits loopback only (see common/peer.h).
  CaptureServiceImpl(CaptureRegistry* registry, PcapSourceOpener opener,
                     PeerFilter allow_peer = IsLoopbackPeer);

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
  grpc::ServerWriteReactor<packetcapture::v1::CaptureEvent>* WatchCaptures(
      grpc::CallbackServerContext* context,
      const packetcapture::v1::WatchCapturesRequest* request) override;

  // Pure listing logic, exposed for tests: filter, newest first, keyset
  // paging with an opaque token.
  static absl::StatusOr<packetcapture::v1::ListCapturesResponse> ListPage(
      std::vector<packetcapture::v1::Capture> captures,
      const packetcapture::v1::ListCapturesRequest& request);

 private:
  // The refusal for a peer `allow_peer_` rejects, or nullopt.
  std::optional<grpc::Status> Refuse(
      const grpc::CallbackServerContext& context) const;

  CaptureRegistry* registry_;
  PcapSourceOpener opener_;
  PeerFilter allow_peer_;
};

}  // namespace pc

#endif  // COMMON_CAPTURE_SERVICE_H_
