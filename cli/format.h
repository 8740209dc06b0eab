// How capturectl shows captures to a person: a table for `list`, one line
// per event for `watch`. Pure functions of the messages and the current time.
// Every string from the server is made printable first, so a pod name or a
// tcpdump message cannot move the cursor or forge a line.
#ifndef CLI_FORMAT_H_
#define CLI_FORMAT_H_

#include <string>
#include <vector>

#include "absl/time/time.h"
#include "proto/packetcapture.pb.h"

namespace pc::cli {

// "512 B", "1.5 KiB", "12.0 MiB", ...
std::string HumanBytes(uint64_t bytes);

// "45s", "12m", "3h", "2d"; "-" when `since` is unset or in the future.
std::string HumanAge(absl::Time since, absl::Time now);

// Control and non-ASCII bytes as \xNN, at most max_chars characters kept
// (then "...").
std::string Printable(const std::string& text, size_t max_chars);

// "5m ago", "45s ago"; "-" as HumanAge.
std::string HumanAgo(absl::Time since, absl::Time now);

// The capture's options as flags would say them: `filter="tcp port 80"
// snaplen=96 duration=1m30s max-packets=1000`; "-" when there are none.
std::string FormatCaptureOptions(const packetcapture::v1::CaptureOptions& o);

// "DURATION_REACHED" etc.; "-" when unspecified.
std::string StopReasonName(packetcapture::v1::StopReason reason);

absl::Time ToTime(const google::protobuf::Timestamp& t);

// The table of `capturectl list`, header first, aligned columns:
// ID NODE NAMESPACE/POD STATE FILES BYTES PACKETS DROPPED AGE MESSAGE.
// `wide` (list -o wide) adds POD-IP, STOP-REASON, UPLOADED, RESTARTS and
// OPTIONS before MESSAGE.
std::string FormatCaptureTable(
    const std::vector<packetcapture::v1::Capture>& captures, absl::Time now,
    bool wide = false);

// One line of `capturectl watch`: TIME TYPE ID NODE NAMESPACE/POD STATE
// PACKETS.
std::string FormatEvent(const packetcapture::v1::CaptureEvent& event);

}  // namespace pc::cli

#endif  // CLI_FORMAT_H_
