#include "common/kube/watch_decoder.h"

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/kube/kube_json.h"

namespace pc {
namespace kube {

void LineSplitter::Feed(absl::string_view chunk,
                        const std::function<void(absl::string_view)>& on_line) {
  while (!chunk.empty()) {
    size_t newline = chunk.find('\n');
    if (newline == absl::string_view::npos) {
      // No line end in this chunk: keep it unless the line is already too long.
      if (discarding_) return;
      if (buffer_.size() + chunk.size() > max_line_bytes_) {
        buffer_.clear();
        buffer_.shrink_to_fit();
        discarding_ = true;
        ++dropped_lines_;
        return;
      }
      buffer_.append(chunk.data(), chunk.size());
      return;
    }
    absl::string_view piece = chunk.substr(0, newline);
    chunk.remove_prefix(newline + 1);
    if (discarding_) {
      discarding_ = false;  // resynchronized at this newline
      continue;
    }
    if (buffer_.empty()) {
      if (piece.size() > max_line_bytes_) {
        ++dropped_lines_;
      } else {
        Emit(piece, on_line);  // common case: no copy
      }
      continue;
    }
    if (buffer_.size() + piece.size() > max_line_bytes_) {
      ++dropped_lines_;
    } else {
      buffer_.append(piece.data(), piece.size());
      Emit(buffer_, on_line);
    }
    buffer_.clear();
  }
}

void LineSplitter::Emit(absl::string_view line,
                        const std::function<void(absl::string_view)>& on_line) {
  line = absl::StripSuffix(line, "\r");
  if (line.empty()) return;
  on_line(line);
}

void LineSplitter::Reset() {
  buffer_.clear();
  discarding_ = false;
}

absl::string_view EventTypeName(EventType type) {
  switch (type) {
    case EventType::kAdded:
      return "ADDED";
    case EventType::kModified:
      return "MODIFIED";
    case EventType::kDeleted:
      return "DELETED";
    case EventType::kBookmark:
      return "BOOKMARK";
    case EventType::kError:
      return "ERROR";
  }
  return "UNKNOWN";
}

absl::StatusOr<WatchEvent> DecodeWatchEvent(absl::string_view line) {
  WatchEvent event;
  // Pod events are the common case, so try that shape first. An ERROR event's
  // object is a Status whose string `status` does not fit a Pod, so it fails
  // here (or parses with the wrong meaning) and is decoded again below.
  PodWatchEvent pod_event;
  absl::Status pod_status = ParseJson(line, &pod_event);
  if (pod_status.ok() && pod_event.type() != "ERROR") {
    const std::string& type = pod_event.type();
    if (type == "ADDED") {
      event.type = EventType::kAdded;
    } else if (type == "MODIFIED") {
      event.type = EventType::kModified;
    } else if (type == "DELETED") {
      event.type = EventType::kDeleted;
    } else if (type == "BOOKMARK") {
      event.type = EventType::kBookmark;
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          "watch event has unknown type \"", type.substr(0, 64), "\""));
    }
    if (!pod_event.has_object()) {
      return absl::InvalidArgumentError(
          absl::StrCat("watch event ", type, " has no object"));
    }
    event.pod = std::move(*pod_event.mutable_object());
    return event;
  }
  StatusWatchEvent status_event;
  absl::Status status_status = ParseJson(line, &status_event);
  if (!status_status.ok()) return pod_status.ok() ? status_status : pod_status;
  if (status_event.type() != "ERROR") {
    // Valid as a Status event but not as a Pod event: a pod event whose object
    // does not look like a Pod.
    return pod_status.ok()
               ? absl::InvalidArgumentError("watch event does not hold a Pod")
               : pod_status;
  }
  if (!status_event.has_object()) {
    return absl::InvalidArgumentError("watch event ERROR has no object");
  }
  event.type = EventType::kError;
  event.status = std::move(*status_event.mutable_object());
  return event;
}

}  // namespace kube
}  // namespace pc
