// Helpers shared by the store's source files (store.cc, store_recovery.cc,
// store_reader.cc); not part of its interface.
#ifndef AGGREGATOR_STORE_INTERNAL_H_
#define AGGREGATOR_STORE_INTERNAL_H_

#include <string>

#include "aggregator/capture_dir.h"
#include "proto/packetcapture.pb.h"

namespace pc::aggregator {

inline constexpr char kCapturesDir[] = "captures";

// Whether retention applies: the capture ended or its node no longer has it.
bool Stopped(const packetcapture::v1::Capture& c);

// The metadata without the fields that change with every scan: a change in
// the rest is worth a durable write of capture.pb.
std::string Significant(const CaptureMeta& meta);

}  // namespace pc::aggregator

#endif  // AGGREGATOR_STORE_INTERNAL_H_
