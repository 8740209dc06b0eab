#include "cli/grpc_backend.h"

#include "absl/strings/str_cat.h"
#include "cli/rpc_error.h"

namespace pc::cli {

using packetcapture::v1::Capture;
using packetcapture::v1::CaptureEvent;

absl::Status FromGrpc(const std::string& server, const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(
      static_cast<absl::StatusCode>(status.error_code()),
      FormatRpcError(server, status.error_code(), status.error_message()));
}

std::shared_ptr<grpc::ClientContext> GrpcCaptureBackend::NewContext() {
  absl::MutexLock lock(&mu_);
  if (cancelled_) return nullptr;
  auto context = std::make_shared<grpc::ClientContext>();
  if (!token_.empty()) {
    context->AddMetadata("authorization", "Bearer " + token_);
  }
  contexts_.push_back(context);
  return context;
}

void GrpcCaptureBackend::Cancel() {
  absl::MutexLock lock(&mu_);
  cancelled_ = true;
  for (const auto& weak : contexts_) {
    if (auto context = weak.lock()) context->TryCancel();
  }
}

absl::StatusOr<std::vector<Capture>> GrpcCaptureBackend::StartWatch(
    const std::string& ns, absl::Time deadline) {
  StopWatch();
  watch_context_ = NewContext();
  if (watch_context_ == nullptr) return absl::CancelledError("cancelled");
  watch_context_->set_deadline(absl::ToChronoTime(deadline));
  packetcapture::v1::WatchCapturesRequest request;
  request.set_namespace_(ns);
  watch_ = stub_.WatchCaptures(watch_context_.get(), request);
  std::vector<Capture> now;
  CaptureEvent event;
  while (watch_->Read(&event)) {
    if (event.type() == CaptureEvent::SYNCED) return now;
    if (event.type() != CaptureEvent::DELETED) now.push_back(event.capture());
  }
  return WatchEnded();
}

absl::Status GrpcCaptureBackend::WatchEnded() {
  grpc::Status status = watch_->Finish();
  watch_.reset();
  if (status.ok()) {
    return absl::UnavailableError(
        absl::StrCat(server_, ": the server ended the watch"));
  }
  return FromGrpc(server_, status);
}

absl::StatusOr<Capture> GrpcCaptureBackend::NextChange() {
  if (watch_ == nullptr) return absl::FailedPreconditionError("no watch");
  CaptureEvent event;
  while (watch_->Read(&event)) {
    if (event.type() == CaptureEvent::ADDED ||
        event.type() == CaptureEvent::MODIFIED) {
      return event.capture();
    }
  }
  return WatchEnded();
}

void GrpcCaptureBackend::StopWatch() {
  if (watch_ != nullptr) {
    watch_context_->TryCancel();
    watch_->Finish().ok();
    watch_.reset();
  }
  watch_context_.reset();
}

absl::Status GrpcCaptureBackend::Stream(
    const std::vector<std::string>& ids,
    const std::function<absl::Status(absl::string_view)>& write) {
  std::shared_ptr<grpc::ClientContext> context = NewContext();
  if (context == nullptr) return absl::CancelledError("cancelled");
  std::unique_ptr<
      grpc::ClientReader<packetcapture::v1::DownloadCaptureResponse>>
      reader;
  if (ids.size() == 1) {
    packetcapture::v1::DownloadCaptureRequest request;
    request.set_id(ids[0]);
    request.set_follow(true);
    reader = stub_.DownloadCapture(context.get(), request);
  } else {
    packetcapture::v1::DownloadCapturesRequest request;
    for (const std::string& id : ids) request.add_ids(id);
    request.set_follow(true);
    reader = stub_.DownloadCaptures(context.get(), request);
  }
  packetcapture::v1::DownloadCaptureResponse message;
  while (reader->Read(&message)) {
    absl::Status written = write(message.data());
    if (!written.ok()) {
      context->TryCancel();
      reader->Finish().ok();
      return written;
    }
  }
  grpc::Status status = reader->Finish();
  if (status.error_code() == grpc::StatusCode::CANCELLED) {
    return absl::CancelledError("stopped");
  }
  return FromGrpc(server_, status);
}

}  // namespace pc::cli
