// Pure decoding of a Kubernetes watch stream: LineSplitter turns arbitrary
// network chunks into complete lines (one JSON event per line), and
// DecodeWatchEvent turns a line into a typed event. No I/O.
// LineSplitter is thread-compatible (one stream, one owner); DecodeWatchEvent
// is thread-safe.
#ifndef COMMON_KUBE_WATCH_DECODER_H_
#define COMMON_KUBE_WATCH_DECODER_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/kube/kube_types.pb.h"

namespace pc {
namespace kube {

class LineSplitter {
 public:
  static constexpr size_t kDefaultMaxLineBytes = size_t{16} << 20;

  explicit LineSplitter(size_t max_line_bytes = kDefaultMaxLineBytes)
      : max_line_bytes_(max_line_bytes) {}

  // Appends `chunk` and calls `on_line` for every line it completes, without
  // the '\n' (and without a trailing '\r'); blank lines are skipped. A line
  // longer than max_line_bytes is discarded up to and including its newline
  // (dropped_lines() counts it) so memory stays bounded by max_line_bytes.
  // The string_view passed to `on_line` is valid only during the call.
  void Feed(absl::string_view chunk,
            const std::function<void(absl::string_view line)>& on_line);

  // Forgets any partial line (e.g. when a new stream starts).
  void Reset();

  uint64_t dropped_lines() const { return dropped_lines_; }
  size_t buffered_bytes() const { return buffer_.size(); }

 private:
  void Emit(absl::string_view line,
            const std::function<void(absl::string_view line)>& on_line);

  const size_t max_line_bytes_;
  std::string buffer_;       // the incomplete line so far
  bool discarding_ = false;  // inside an over-long line, until its newline
  uint64_t dropped_lines_ = 0;
};

enum class EventType { kAdded, kModified, kDeleted, kBookmark, kError };

// "ADDED", "MODIFIED", ...
absl::string_view EventTypeName(EventType type);

struct WatchEvent {
  EventType type = EventType::kError;
  Pod pod;  // ADDED/MODIFIED/DELETED; BOOKMARK: only metadata.resource_version
  Status status;  // ERROR: the API's Status object (code 410 = expired)
};

// Decodes one watch line ({"type": ..., "object": ...}) of a pod watch.
// Unknown fields are ignored; malformed JSON, a missing object or an unknown
// type is InvalidArgumentError.
absl::StatusOr<WatchEvent> DecodeWatchEvent(absl::string_view line);

}  // namespace kube
}  // namespace pc

#endif  // COMMON_KUBE_WATCH_DECODER_H_
