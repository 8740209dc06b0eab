// Helpers shared by the store's source files (store.cc, store_recovery.cc,
// store_reader.cc); not part of its interface.
#ifndef AGGREGATOR_STORE_INTERNAL_H_
#define AGGREGATOR_STORE_INTERNAL_H_

#include <string>

#include "aggregator/capture_dir.h"
#include "aggregator/store_rules.h"  // Stopped, Significant
#include "proto/packetcapture.pb.h"

namespace pc::aggregator {

inline constexpr char kCapturesDir[] = "captures";

}  // namespace pc::aggregator

#endif  // AGGREGATOR_STORE_INTERNAL_H_
