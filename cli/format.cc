#include "cli/format.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/capture_layout.h"

namespace pc::cli {
namespace {

using packetcapture::v1::Capture;
using packetcapture::v1::CaptureEvent;

std::string StateName(Capture::State state) {
  return state == Capture::STATE_UNSPECIFIED ? "-" : Capture::State_Name(state);
}

std::string PodOf(const Capture& c) {
  return Printable(absl::StrCat(c.namespace_(), "/", c.pod()), 80);
}

}  // namespace

absl::Time ToTime(const google::protobuf::Timestamp& t) {
  return absl::FromUnixSeconds(t.seconds()) + absl::Nanoseconds(t.nanos());
}

std::string HumanAgo(absl::Time since, absl::Time now) {
  std::string age = HumanAge(since, now);
  return age == "-" ? age : absl::StrCat(age, " ago");
}

std::string FormatCaptureOptions(const packetcapture::v1::CaptureOptions& o) {
  std::vector<std::string> parts;
  if (!o.filter().empty()) {
    parts.push_back(
        absl::StrCat("filter=\"", Printable(o.filter(), 200), "\""));
  }
  if (o.snaplen() > 0) parts.push_back(absl::StrCat("snaplen=", o.snaplen()));
  if (o.has_duration()) {
    parts.push_back(absl::StrCat(
        "duration=",
        absl::FormatDuration(absl::Seconds(o.duration().seconds()) +
                             absl::Nanoseconds(o.duration().nanos()))));
  }
  if (o.max_packets() > 0) {
    parts.push_back(absl::StrCat("max-packets=", o.max_packets()));
  }
  return parts.empty() ? "-" : absl::StrJoin(parts, " ");
}

std::string StopReasonName(packetcapture::v1::StopReason reason) {
  return reason == packetcapture::v1::STOP_REASON_UNSPECIFIED
             ? "-"
             : packetcapture::v1::StopReason_Name(reason);
}

std::string HumanBytes(uint64_t bytes) {
  if (bytes < 1024) return absl::StrCat(bytes, " B");
  static const char* kUnits[] = {"KiB", "MiB", "GiB", "TiB", "PiB"};
  double value = static_cast<double>(bytes) / 1024;
  size_t unit = 0;
  while (value >= 1024 && unit + 1 < std::size(kUnits)) {
    value /= 1024;
    ++unit;
  }
  return absl::StrFormat("%.1f %s", value, kUnits[unit]);
}

std::string HumanAge(absl::Time since, absl::Time now) {
  if (since == absl::UnixEpoch() || since > now) return "-";
  int64_t s = absl::ToInt64Seconds(now - since);
  if (s < 120) return absl::StrCat(s, "s");
  if (s < 120 * 60) return absl::StrCat(s / 60, "m");
  if (s < 48 * 3600) return absl::StrCat(s / 3600, "h");
  return absl::StrCat(s / 86400, "d");
}

std::string Printable(const std::string& text, size_t max_chars) {
  std::string out;
  size_t kept = 0;
  for (unsigned char c : text) {
    if (kept == max_chars) {
      out += "...";
      break;
    }
    if (c < 0x20 || c >= 0x7f) {
      absl::StrAppendFormat(&out, "\\x%02x", c);
    } else {
      out += static_cast<char>(c);
    }
    ++kept;
  }
  return out;
}

std::string FormatCaptureTable(const std::vector<Capture>& captures,
                               absl::Time now, bool wide) {
  std::vector<std::vector<std::string>> rows;
  rows.push_back({"ID", "NODE", "NAMESPACE/POD", "STATE", "FILES", "BYTES",
                  "PACKETS", "DROPPED", "AGE"});
  if (wide) {
    rows[0].insert(rows[0].end(), {"POD-IP", "STOP-REASON", "UPLOADED",
                                   "RESTARTS", "OPTIONS"});
  }
  rows[0].push_back("MESSAGE");
  for (const Capture& c : captures) {
    std::string state = StateName(c.state());
    // The aggregator's copy of a capture its node no longer has.
    if (!c.on_node() && c.has_expire_time()) state += "*";
    std::string message = c.message();
    if (c.bytes_lost() > 0) {
      message = absl::StrCat(HumanBytes(c.bytes_lost()), " lost before upload",
                             message.empty() ? "" : "; ", message);
    }
    rows.push_back({Printable(c.id(), kMaxCaptureIdBytes),
                    Printable(c.node(), 63), PodOf(c), state,
                    absl::StrCat(c.files_size(), "/", c.max_files()),
                    HumanBytes(c.bytes()), absl::StrCat(c.packets()),
                    absl::StrCat(c.dropped_packets()),
                    HumanAge(c.has_start_time() ? ToTime(c.start_time())
                                                : absl::UnixEpoch(),
                             now)});
    if (wide) {
      rows.back().insert(
          rows.back().end(),
          {c.pod_ip().empty() ? "-" : Printable(c.pod_ip(), 45),
           StopReasonName(c.stop_reason()), HumanBytes(c.bytes_uploaded()),
           absl::StrCat(c.restarts()), FormatCaptureOptions(c.options())});
    }
    rows.back().push_back(Printable(message, 60));
  }
  std::vector<size_t> width(rows[0].size(), 0);
  for (const auto& row : rows) {
    for (size_t i = 0; i < row.size(); ++i)
      width[i] = std::max(width[i], row[i].size());
  }
  std::string out;
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size())
        line += std::string(width[i] - row[i].size() + 2, ' ');
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    absl::StrAppend(&out, line, "\n");
  }
  return out;
}

std::string FormatEvent(const CaptureEvent& event) {
  std::string when = event.has_time()
                         ? absl::FormatTime("%H:%M:%E3S", ToTime(event.time()),
                                            absl::LocalTimeZone())
                         : "-";
  std::string type = CaptureEvent::Type_Name(event.type());
  if (event.type() == CaptureEvent::SYNCED) {
    return absl::StrCat(when,
                        " SYNCED (the captures above are the current ones)");
  }
  const Capture& c = event.capture();
  return absl::StrJoin({when, type, Printable(c.id(), kMaxCaptureIdBytes),
                        Printable(c.node(), 63), PodOf(c), StateName(c.state()),
                        absl::StrCat(c.packets(), " packets")},
                       " ");
}

}  // namespace pc::cli
