// Checks of one agent message before it reaches the store, and which errors
// concern one capture only. Pure functions; thread-safe.
#ifndef AGGREGATOR_INGEST_CHECKS_H_
#define AGGREGATOR_INGEST_CHECKS_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "proto/packetcapture.pb.h"

namespace pc::aggregator {

// InvalidArgument for a status larger than `max_bytes` encoded (the store
// keeps statuses on disk and reads back at most 1 MiB of each).
absl::Status CheckStatusSize(const packetcapture::v1::Capture& status,
                             size_t max_bytes);

// InvalidArgument for a chunk larger than `max_chunk_bytes`, or one whose
// end (offset + size, checked without overflow) lies beyond
// `max_file_bytes`: no ring file is that large, and any gap before it is
// bounded by it too.
absl::Status CheckChunkBounds(const packetcapture::v1::Chunk& chunk,
                              uint32_t max_chunk_bytes,
                              uint64_t max_file_bytes);

// True for errors about one capture (invalid id or content, over a limit,
// unknown or another node's capture, its directory cannot be made): the
// capture is refused and the stream goes on. False for errors of the store
// as a whole (disk full, I/O errors) or of the stream: it ends, and the
// agent backs off.
bool IsCaptureSpecific(absl::StatusCode code);

// A capture id as quoted back to the agent and kept in per-stream sets: at
// most 256 bytes.
std::string CaptureKey(const std::string& id);

}  // namespace pc::aggregator

#endif  // AGGREGATOR_INGEST_CHECKS_H_
