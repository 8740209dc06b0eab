// Parses the optional tcpdump.antrea.io/* Pod annotations that refine a
// capture (filter, snaplen, duration, max-packets) and describes them for
// Events and the Capture status. Pure functions, thread-safe. The filter's
// syntax is checked elsewhere (filter_check.h: it needs libpcap).
#ifndef NODE_AGENT_CAPTURE_OPTIONS_H_
#define NODE_AGENT_CAPTURE_OPTIONS_H_

#include <cstdint>
#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "proto/packetcapture.pb.h"

namespace pc::agent {

// Every option annotation starts with this; any other name with it is an
// error (a typo must not silently capture without the intended limit).
inline constexpr char kOptionPrefix[] = "tcpdump.antrea.io/";
inline constexpr char kFilterAnnotation[] = "tcpdump.antrea.io/filter";
inline constexpr char kSnaplenAnnotation[] = "tcpdump.antrea.io/snaplen";
inline constexpr char kDurationAnnotation[] = "tcpdump.antrea.io/duration";
inline constexpr char kMaxPacketsAnnotation[] = "tcpdump.antrea.io/max-packets";

// Bounds. The filter bound keeps Events, statuses and argv small; snaplen
// from one Ethernet header to tcpdump's own maximum; the duration from the
// agent's timer granularity to a week; max-packets to what tcpdump's -c
// takes (an int).
inline constexpr size_t kMaxFilterBytes = 4096;
inline constexpr int kMinSnaplen = 14;
inline constexpr int kMaxSnaplen = 262144;
inline constexpr absl::Duration kMinDuration = absl::Seconds(1);
inline constexpr absl::Duration kMaxDuration = absl::Hours(24 * 7);
inline constexpr uint64_t kMaxMaxPackets = 2147483647;

// Unset fields are zero: no filter, tcpdump's (or the agent's) snaplen, no
// time limit, no packet limit.
struct CaptureOptionsSpec {
  std::string filter;
  int snaplen = 0;
  absl::Duration duration = absl::ZeroDuration();
  uint64_t max_packets = 0;

  bool empty() const {
    return filter.empty() && snaplen == 0 && duration == absl::ZeroDuration() &&
           max_packets == 0;
  }
  bool operator==(const CaptureOptionsSpec& o) const {
    return filter == o.filter && snaplen == o.snaplen &&
           duration == o.duration && max_packets == o.max_packets;
  }
  bool operator!=(const CaptureOptionsSpec& o) const { return !(*this == o); }
};

// `annotations` holds the Pod's annotations whose names start with
// kOptionPrefix (others are ignored). InvalidArgument names the annotation
// and quotes the value, for FAILED status and a Warning Event.
absl::StatusOr<CaptureOptionsSpec> ParseCaptureOptions(
    const std::map<std::string, std::string>& annotations);

// Go-style duration ("90s", "10m", "1h30m", "1.5h"): digits first, no sign,
// no spaces, no "inf"; within [kMinDuration, kMaxDuration].
absl::StatusOr<absl::Duration> ParseOptionDuration(absl::string_view value);

// Go-style spelling of a duration without zero parts ("1h30m", "1m30s",
// "168h"), which ParseOptionDuration reads back.
std::string FormatOptionDuration(absl::Duration d);

// For Events and logs: "filter \"tcp port 80\", snaplen 96, duration 1m30s,
// max-packets 100"; "no options" when empty.
std::string DescribeOptions(const CaptureOptionsSpec& options);

packetcapture::v1::CaptureOptions OptionsToProto(
    const CaptureOptionsSpec& options);
CaptureOptionsSpec OptionsFromProto(
    const packetcapture::v1::CaptureOptions& proto);

}  // namespace pc::agent

#endif  // NODE_AGENT_CAPTURE_OPTIONS_H_
