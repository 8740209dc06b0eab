#include "aggregator/store_rules.h"

#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/capture_layout.h"
#include "common/pcap/ring_reader.h"
#include "common/time_proto.h"

namespace pc::aggregator {

using packetcapture::v1::Capture;

bool Stopped(const Capture& c) {
  return !c.on_node() || c.state() == Capture::STOPPED ||
         c.state() == Capture::FAILED;
}

bool MarkOffNode(const std::string& reason, absl::Time now, CaptureMeta* meta) {
  Capture& s = meta->status;
  if (!s.on_node()) return false;
  s.set_on_node(false);
  if (s.state() == Capture::RUNNING || s.state() == Capture::PENDING) {
    s.set_state(Capture::STOPPED);
    s.set_stop_reason(packetcapture::v1::NOT_ON_NODE);
    s.set_message(reason);
  }
  if (!s.has_stop_time()) *s.mutable_stop_time() = ToProto(now);
  *s.mutable_update_time() = ToProto(now);
  if (!meta->retention_start) meta->retention_start = now;
  return true;
}

std::string Significant(const CaptureMeta& meta) {
  CaptureMeta s = meta;
  s.status.clear_files();
  s.status.clear_bytes();
  s.status.clear_packets();
  s.status.clear_dropped_packets();
  s.status.clear_bytes_uploaded();
  s.status.clear_update_time();
  return EncodeCaptureMeta(s);
}

bool ParseStoredFileName(const std::string& name, std::string* run_dir,
                         std::string* ring) {
  std::vector<std::string> parts = absl::StrSplit(name, '/');
  if (parts.size() != 2) return false;
  int run, max_files;
  if (!ParseRunDirName(parts[0], &run, &max_files) ||
      max_files > pcap::kMaxRingFiles) {
    return false;
  }
  const std::string& r = parts[1];
  if (r.size() < 4 || r.compare(0, 4, "ring") != 0) return false;
  int index = 0;
  if (r.size() > 4 && !absl::SimpleAtoi(r.substr(4), &index)) return false;
  if (index < 0 || index >= max_files ||
      pcap::RingFileName("ring", index, max_files) != r) {
    return false;
  }
  *run_dir = parts[0];
  *ring = r;
  return true;
}

absl::Status CheckReportedStatus(const std::string& node,
                                 const packetcapture::v1::Capture& status) {
  const std::string& id = status.id();
  if (!IsValidCaptureId(id)) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid capture id \"", id.substr(0, 256), "\""));
  }
  if (status.node() != node) {
    return absl::PermissionDeniedError(absl::StrCat(
        "status of capture ", id, " names node \"",
        status.node().substr(0, 256), "\", not this agent's node ", node));
  }
  if (status.ByteSizeLong() > kMaxStatusBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "status of capture ", id, " is ", status.ByteSizeLong(),
        " bytes, more than the ", kMaxStatusBytes, " the store keeps"));
  }
  return absl::OkStatus();
}

}  // namespace pc::aggregator
