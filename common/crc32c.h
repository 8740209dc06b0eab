// CRC32C (Castagnoli; reflected polynomial 0x82F63B78), the checksum of
// iSCSI, ext4 and gRPC/Envoy tooling, for checking captured data end to end.
// Uses the SSE4.2 crc32 instruction when the CPU has it (checked at run time)
// and a slicing-by-8 table otherwise. Stateless; thread-safe.
#ifndef COMMON_CRC32C_H_
#define COMMON_CRC32C_H_

#include <cstddef>
#include <cstdint>

#include "absl/strings/string_view.h"

namespace pc {

// Returns the CRC32C of `data` followed by `n` more bytes, given `crc`, the
// CRC32C of `data` (0 for empty data). So
// Crc32cExtend(Crc32c(a), b.data(), b.size()) == Crc32c(a + b).
uint32_t Crc32cExtend(uint32_t crc, const char* data, size_t n);

// Crc32c("123456789") == 0xE3069283.
inline uint32_t Crc32c(absl::string_view data) {
  return Crc32cExtend(0, data.data(), data.size());
}

// The two implementations behind Crc32cExtend(), exposed so tests can check
// that they agree. Same contract as Crc32cExtend().
namespace crc32c_internal {
uint32_t ExtendSoftware(uint32_t crc, const char* data, size_t n);
// True if this CPU supports the SSE4.2 crc32 instruction.
bool HardwareAvailable();
// Requires HardwareAvailable(); falls back to software otherwise.
uint32_t ExtendHardware(uint32_t crc, const char* data, size_t n);
}  // namespace crc32c_internal

}  // namespace pc

#endif  // COMMON_CRC32C_H_
