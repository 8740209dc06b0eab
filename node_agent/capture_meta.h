// Reads and writes a capture's metadata file (capture_meta.proto) so a
// restarted agent continues the capture with its spec, options and limits.
// Thread-compatible; plain file I/O.
#ifndef NODE_AGENT_CAPTURE_META_H_
#define NODE_AGENT_CAPTURE_META_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "proto/packetcapture.pb.h"

namespace pc::agent {

struct CaptureMeta {
  packetcapture::v1::Capture status;
  absl::Time limits_start = absl::UnixEpoch();
  uint64_t packets_before_run = 0;
  int counted_through_run = 0;
};

// <dir>/capture.pb, replaced atomically (temp file, fsync, rename).
absl::Status WriteCaptureMeta(const std::string& dir, const CaptureMeta& meta);
// DataLoss if missing or unreadable. A file from before options existed
// (a bare Capture) reads with limits_start = the capture's start_time.
absl::StatusOr<CaptureMeta> ReadCaptureMeta(const std::string& dir);

}  // namespace pc::agent

#endif  // NODE_AGENT_CAPTURE_META_H_
