#include "common/crc32c.h"

#include <cstddef>
#include <cstdint>
#include <cstring>

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

namespace pc {
namespace crc32c_internal {
namespace {

constexpr uint32_t kPolynomial = 0x82F63B78;  // reflected Castagnoli

// table[0] is the classic byte-at-a-time table; table[s][b] is the CRC
// contribution of byte b followed by s zero bytes, which lets the loop fold
// 8 input bytes with 8 independent lookups (slicing-by-8).
struct Tables {
  uint32_t t[8][256];
};

constexpr Tables MakeTables() {
  Tables tables{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ ((c & 1) ? kPolynomial : 0);
    tables.t[0][i] = c;
  }
  for (int s = 1; s < 8; ++s) {
    for (uint32_t i = 0; i < 256; ++i) {
      const uint32_t prev = tables.t[s - 1][i];
      tables.t[s][i] = (prev >> 8) ^ tables.t[0][prev & 0xff];
    }
  }
  return tables;
}

// Computed by the compiler: no static initialisation order concerns.
constexpr Tables kTables = MakeTables();

// Little-endian load, independent of host byte order and alignment.
inline uint32_t LoadLe32(const unsigned char* p) {
  return uint32_t{p[0]} | (uint32_t{p[1]} << 8) | (uint32_t{p[2]} << 16) |
         (uint32_t{p[3]} << 24);
}

#if defined(__x86_64__)
// Bytes per lane of the three-lane loop. The crc32 instruction takes three
// cycles and can start one every cycle, so one chain of them runs at a third
// of the CPU's rate; three chains over three adjacent lanes run at all of
// it. The register is linear in its start and its data, so
//   crc(s, A B) = zeros(crc(s, A), |B|) ^ crc(0, B),
// and the lanes are joined by shifting one over kLane zero bytes: a table
// lookup per byte of the register.
constexpr size_t kLane = 1024;

struct LaneShift {
  // t[k][v]: the register v << 8k after kLane zero bytes; the shift is
  // linear, so a register's is the XOR of its four bytes'.
  uint32_t t[4][256];

  uint32_t operator()(uint32_t s) const {
    return t[0][s & 0xff] ^ t[1][(s >> 8) & 0xff] ^ t[2][(s >> 16) & 0xff] ^
           t[3][s >> 24];
  }
};

const LaneShift& Shift() {
  static const LaneShift* const shift = [] {
    // Each bit of the register over kLane zeros, by the software loop:
    // ExtendSoftware inverts the register before and after.
    static const char kZeros[kLane] = {};
    uint32_t bit[32];
    for (int i = 0; i < 32; ++i) {
      bit[i] = ~ExtendSoftware(~(uint32_t{1} << i), kZeros, kLane);
    }
    auto* out = new LaneShift();
    for (int k = 0; k < 4; ++k) {
      for (uint32_t v = 0; v < 256; ++v) {
        uint32_t x = 0;
        for (int j = 0; j < 8; ++j) {
          if ((v >> j) & 1) x ^= bit[8 * k + j];
        }
        out->t[k][v] = x;
      }
    }
    return out;
  }();
  return *shift;
}

inline uint64_t Load64(const unsigned char* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

__attribute__((target("sse4.2"))) uint32_t ExtendSse42(uint32_t crc,
                                                       const char* data,
                                                       size_t n) {
  const auto* p = reinterpret_cast<const unsigned char*>(data);
  uint64_t c = ~crc;
  // Aligned 8-byte loads are the fast path; reach alignment byte by byte.
  while (n > 0 && (reinterpret_cast<uintptr_t>(p) & 7) != 0) {
    c = _mm_crc32_u8(static_cast<uint32_t>(c), *p++);
    --n;
  }
  if (n >= 3 * kLane) {
    const LaneShift& shift = Shift();
    while (n >= 3 * kLane) {
      uint64_t b = 0;
      uint64_t d = 0;
      for (size_t i = 0; i < kLane; i += 8) {
        c = _mm_crc32_u64(c, Load64(p + i));
        b = _mm_crc32_u64(b, Load64(p + kLane + i));
        d = _mm_crc32_u64(d, Load64(p + 2 * kLane + i));
      }
      c = shift(shift(static_cast<uint32_t>(c)) ^ static_cast<uint32_t>(b)) ^
          static_cast<uint32_t>(d);
      p += 3 * kLane;
      n -= 3 * kLane;
    }
  }
  while (n >= 8) {
    c = _mm_crc32_u64(c, Load64(p));
    p += 8;
    n -= 8;
  }
  while (n > 0) {
    c = _mm_crc32_u8(static_cast<uint32_t>(c), *p++);
    --n;
  }
  return ~static_cast<uint32_t>(c);
}
#endif

}  // namespace

uint32_t ExtendSoftware(uint32_t crc, const char* data, size_t n) {
  const auto* p = reinterpret_cast<const unsigned char*>(data);
  const auto& t = kTables.t;
  uint32_t c = ~crc;
  while (n >= 8) {
    const uint32_t lo = LoadLe32(p) ^ c;
    const uint32_t hi = LoadLe32(p + 4);
    c = t[7][lo & 0xff] ^ t[6][(lo >> 8) & 0xff] ^ t[5][(lo >> 16) & 0xff] ^
        t[4][lo >> 24] ^ t[3][hi & 0xff] ^ t[2][(hi >> 8) & 0xff] ^
        t[1][(hi >> 16) & 0xff] ^ t[0][hi >> 24];
    p += 8;
    n -= 8;
  }
  while (n > 0) {
    c = t[0][(c ^ *p++) & 0xff] ^ (c >> 8);
    --n;
  }
  return ~c;
}

bool HardwareAvailable() {
#if defined(__x86_64__)
  // Evaluated once; the function-local static is initialised thread-safely.
  static const bool available = __builtin_cpu_supports("sse4.2");
  return available;
#else
  return false;
#endif
}

uint32_t ExtendHardware(uint32_t crc, const char* data, size_t n) {
#if defined(__x86_64__)
  if (HardwareAvailable()) return ExtendSse42(crc, data, n);
#endif
  return ExtendSoftware(crc, data, n);
}

}  // namespace crc32c_internal

uint32_t Crc32cExtend(uint32_t crc, const char* data, size_t n) {
  return crc32c_internal::HardwareAvailable()
             ? crc32c_internal::ExtendHardware(crc, data, n)
             : crc32c_internal::ExtendSoftware(crc, data, n);
}

}  // namespace pc
