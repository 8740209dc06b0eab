// Helpers for the aggregator's tests: capture statuses and chunks built from
// synthetic pcap data. Test-only; thread-compatible.
#ifndef AGGREGATOR_TEST_UTIL_H_
#define AGGREGATOR_TEST_UTIL_H_

#include <cstdint>
#include <string>

#include "proto/packetcapture.pb.h"

namespace pc::aggregator::testutil {

// A valid capture id for pod `pod` in namespace "default".
std::string CaptureId(const std::string& pod, int64_t start_ms = 1700000000000);

packetcapture::v1::Capture Status(const std::string& id,
                                  const std::string& node,
                                  packetcapture::v1::Capture::State state =
                                      packetcapture::v1::Capture::RUNNING,
                                  uint32_t max_files = 5);

// A chunk over `data` with its CRC32C and packet count filled in.
packetcapture::v1::Chunk MakeChunk(const std::string& id,
                                   const std::string& file, uint64_t generation,
                                   uint64_t offset, const std::string& data);

// Header + records [first, first + count) of 60-byte packets.
std::string PcapFile(uint32_t first, uint32_t count);
// Records only.
std::string Records(uint32_t first, uint32_t count);

}  // namespace pc::aggregator::testutil

#endif  // AGGREGATOR_TEST_UTIL_H_
