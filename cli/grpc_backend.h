// CaptureBackend over gRPC: WatchCaptures to wait for RUNNING, and
// DownloadCapture (one capture, pcap) or DownloadCaptures (several, merged
// pcapng) with follow=true to stream. Errors carry FormatRpcError's text.
// Cancel() is thread-safe; the other methods are called from one thread.
#ifndef CLI_GRPC_BACKEND_H_
#define CLI_GRPC_BACKEND_H_

#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "cli/capture_session.h"
#include "grpcpp/grpcpp.h"
#include "proto/packetcapture.grpc.pb.h"

namespace pc::cli {

// The gRPC status as an absl::Status with the same code and a message for a
// person (FormatRpcError).
absl::Status FromGrpc(const std::string& server, const grpc::Status& status);

class GrpcCaptureBackend : public CaptureBackend {
 public:
  // `token`: sent as a bearer token when not empty.
  GrpcCaptureBackend(packetcapture::v1::CaptureService::Stub& stub,
                     std::string server, std::string token)
      : stub_(stub), server_(std::move(server)), token_(std::move(token)) {}
  ~GrpcCaptureBackend() override { StopWatch(); }

  absl::StatusOr<std::vector<packetcapture::v1::Capture>> StartWatch(
      const std::string& ns, absl::Time deadline) override;
  absl::StatusOr<packetcapture::v1::Capture> NextChange() override;
  void StopWatch() override;
  absl::Status Stream(
      const std::vector<std::string>& ids,
      const std::function<absl::Status(absl::string_view)>& write) override;
  void Cancel() override;

 private:
  // A new context, registered so Cancel() reaches it; nullptr once
  // cancelled.
  std::shared_ptr<grpc::ClientContext> NewContext() ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status WatchEnded();

  packetcapture::v1::CaptureService::Stub& stub_;
  const std::string server_;
  const std::string token_;

  std::shared_ptr<grpc::ClientContext> watch_context_;
  std::unique_ptr<grpc::ClientReader<packetcapture::v1::CaptureEvent>> watch_;

  absl::Mutex mu_;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::weak_ptr<grpc::ClientContext>> contexts_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace pc::cli

#endif  // CLI_GRPC_BACKEND_H_
