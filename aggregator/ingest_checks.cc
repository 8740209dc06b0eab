#include "aggregator/ingest_checks.h"

#include "absl/strings/str_cat.h"

namespace pc::aggregator {

absl::Status CheckStatusSize(const packetcapture::v1::Capture& status,
                             size_t max_bytes) {
  const size_t size = status.ByteSizeLong();
  if (size <= max_bytes) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "status of ", size, " bytes is larger than ", max_bytes, " bytes"));
}

absl::Status CheckChunkBounds(const packetcapture::v1::Chunk& chunk,
                              uint32_t max_chunk_bytes,
                              uint64_t max_file_bytes) {
  const uint64_t size = chunk.data().size();
  if (size > max_chunk_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("chunk of ", size,
                                                   " bytes exceeds "
                                                   "max_chunk_bytes ",
                                                   max_chunk_bytes));
  }
  if (chunk.offset() > max_file_bytes ||
      size > max_file_bytes - chunk.offset()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "chunk of ", size, " bytes at offset ", chunk.offset(),
        " ends beyond the largest file accepted (", max_file_bytes, " bytes)"));
  }
  return absl::OkStatus();
}

bool IsCaptureSpecific(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kPermissionDenied:
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kOutOfRange:
      return true;
    default:
      return false;
  }
}

std::string CaptureKey(const std::string& id) { return id.substr(0, 256); }

}  // namespace pc::aggregator
