// What both capture stores (Store, one directory; ObjectStore, an object
// store) agree on: which file names an agent may upload, when a capture's
// retention applies, and which status changes are worth a durable write.
// Pure functions; thread-safe.
#ifndef AGGREGATOR_STORE_RULES_H_
#define AGGREGATOR_STORE_RULES_H_

#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "aggregator/capture_dir.h"
#include "proto/packetcapture.pb.h"

namespace pc::aggregator {

// "run-<k>-w<N>/ring<i>" exactly as the agent names it (ring index below N,
// zero-padded the way tcpdump does). Sets *run_dir and *ring when valid.
bool ParseStoredFileName(const std::string& name, std::string* run_dir,
                         std::string* ring);

// Whether retention applies: the capture ended or its node no longer has it.
bool Stopped(const packetcapture::v1::Capture& c);

// The metadata without the fields that change with every scan: a change in
// the rest is worth a durable write of the capture's metadata.
std::string Significant(const CaptureMeta& meta);

// A capture its node no longer reports: off the node, STOPPED with reason
// NOT_ON_NODE and `reason` as its message if it was running or pending,
// stopped and updated `now`, retention from `now` unless it started before.
// False (and unchanged) if it was off the node already.
bool MarkOffNode(const std::string& reason, absl::Time now, CaptureMeta* meta);

// The checks of a status `node` reports, before either store looks it up:
// InvalidArgument for an invalid id or a status over kMaxStatusBytes,
// PermissionDenied when it names another node.
absl::Status CheckReportedStatus(const std::string& node,
                                 const packetcapture::v1::Capture& status);

}  // namespace pc::aggregator

#endif  // AGGREGATOR_STORE_RULES_H_
