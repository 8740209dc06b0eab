// One capture's directory in the store: its metadata file (capture.pb, see
// capture_meta.proto; bounded in size and replaced atomically) and the
// creation of entries in it, serialized with the directory's removal so
// that nothing is created in a directory being removed.
//
// Thread-safe. Writes of one capture's metadata are serialized; different
// captures never wait for each other.
#ifndef AGGREGATOR_CAPTURE_DIR_H_
#define AGGREGATOR_CAPTURE_DIR_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/optional.h"
#include "aggregator/file_io.h"
#include "proto/packetcapture.pb.h"

namespace pc::aggregator {

// The largest status (serialized Capture) the store persists. The ingest
// service rejects larger ones before they get here.
inline constexpr size_t kMaxStatusBytes = 64 << 10;
// The largest capture.pb written: a status of kMaxStatusBytes plus what the
// store adds to it, with room to spare.
inline constexpr size_t kMaxMetaFileBytes = kMaxStatusBytes + 4096;
// The largest capture.pb read back: more than is ever written (earlier
// versions wrote statuses of any size and read back 1 MiB of them).
inline constexpr size_t kMaxMetaReadBytes = 1 << 20;
static_assert(kMaxMetaFileBytes <= kMaxMetaReadBytes,
              "whatever is written must read back");

inline constexpr char kMetaFile[] = "capture.pb";

struct CaptureMeta {
  packetcapture::v1::Capture status;
  // When the store first saw the capture stopped or gone (its own clock).
  absl::optional<absl::Time> retention_start;
};

std::string EncodeCaptureMeta(const CaptureMeta& meta);
// Either format of capture.pb; *legacy (optional) tells the old one (a bare
// Capture, no retention start). InvalidArgument if it does not parse.
absl::StatusOr<CaptureMeta> DecodeCaptureMeta(absl::string_view data,
                                              bool* legacy = nullptr);

class CaptureDir {
 public:
  // `path`: the directory; `id`: the capture id, which names it in errors.
  CaptureDir(std::string path, std::string id, FsyncFn fsync);

  // Creates the directory if it does not exist, and flushes its parent.
  // Errors are IoError()s naming the capture id, not the path.
  static absl::Status Create(const std::string& path, const std::string& id,
                             const FsyncFn& fsync);

  // Reads `path`/capture.pb (at most kMaxMetaReadBytes).
  static absl::StatusOr<CaptureMeta> ReadMeta(const std::string& path,
                                              bool* legacy = nullptr);

  // Durably replaces capture.pb with `meta`, unless a write of a later
  // `version` already happened (then OK: that one holds newer data).
  // InvalidArgument if it would exceed kMaxMetaFileBytes; FailedPrecondition
  // once the directory was removed.
  absl::Status WriteMeta(const CaptureMeta& meta, uint64_t version);

  // Unless the directory was removed (FailedPrecondition then): creates its
  // subdirectory `subdir` if needed, runs `create` (which adds entries to
  // the subdirectory) and flushes the subdirectory, so that those entries
  // are durable. The subdirectory's own entry is flushed the first time
  // only: after that, this object knows it is durable.
  absl::Status CreateIn(const std::string& subdir,
                        const std::function<absl::Status()>& create);

  // Removes the directory and everything in it; later writes fail.
  void Remove();

  const std::string& path() const { return path_; }
  const std::string& id() const { return id_; }

 private:
  absl::Status RemovedError() const;

  const std::string path_;
  const std::string id_;
  const FsyncFn fsync_;
  absl::Mutex mu_;
  bool removed_ ABSL_GUARDED_BY(mu_) = false;
  // Subdirectories whose entries here were flushed.
  absl::flat_hash_set<std::string> durable_subdirs_ ABSL_GUARDED_BY(mu_);
  uint64_t written_version_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace pc::aggregator

#endif  // AGGREGATOR_CAPTURE_DIR_H_
