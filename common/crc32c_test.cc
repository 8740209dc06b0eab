#include "common/crc32c.h"

#include <cstdint>
#include <random>
#include <string>

#include "absl/strings/string_view.h"
#include "gtest/gtest.h"

namespace pc {
namespace {

using crc32c_internal::ExtendHardware;
using crc32c_internal::ExtendSoftware;
using crc32c_internal::HardwareAvailable;

TEST(Crc32cTest, KnownVectors) {
  EXPECT_EQ(Crc32c(""), 0u);
  EXPECT_EQ(Crc32c("123456789"), 0xE3069283u);
  EXPECT_EQ(Crc32c(std::string(32, '\0')), 0x8A9136AAu);
  // RFC 3720 (iSCSI) B.4: 32 bytes of 0xff, and 0..31 ascending.
  EXPECT_EQ(Crc32c(std::string(32, '\xff')), 0x62A8AB43u);
  std::string ascending;
  for (int i = 0; i < 32; ++i) ascending.push_back(static_cast<char>(i));
  EXPECT_EQ(Crc32c(ascending), 0x46DD794Eu);
}

TEST(Crc32cTest, SoftwarePathMatchesVectors) {
  const std::string digits = "123456789";
  EXPECT_EQ(ExtendSoftware(0, digits.data(), digits.size()), 0xE3069283u);
  const std::string zeros(32, '\0');
  EXPECT_EQ(ExtendSoftware(0, zeros.data(), zeros.size()), 0x8A9136AAu);
}

TEST(Crc32cTest, ExtendIsConcatenation) {
  const std::string data = "The quick brown fox jumps over the lazy dog";
  for (size_t cut = 0; cut <= data.size(); ++cut) {
    const uint32_t head = Crc32c(absl::string_view(data).substr(0, cut));
    EXPECT_EQ(Crc32cExtend(head, data.data() + cut, data.size() - cut),
              Crc32c(data))
        << "cut at " << cut;
  }
}

TEST(Crc32cTest, HardwareAndSoftwareAgree) {
  if (!HardwareAvailable()) GTEST_SKIP() << "no SSE4.2 on this CPU";
  std::mt19937 rng(42);
  std::string buf(4096 + 16, '\0');
  for (char& c : buf) c = static_cast<char>(rng());
  // Every alignment and every length around the 8-byte steps, plus long runs.
  for (size_t align = 0; align < 8; ++align) {
    for (size_t len = 0; len <= 300; ++len) {
      const uint32_t seed = static_cast<uint32_t>(rng());
      ASSERT_EQ(ExtendHardware(seed, buf.data() + align, len),
                ExtendSoftware(seed, buf.data() + align, len))
          << "align " << align << " len " << len;
    }
    const size_t long_len = 4096 + 7 - align;
    ASSERT_EQ(ExtendHardware(0, buf.data() + align, long_len),
              ExtendSoftware(0, buf.data() + align, long_len));
  }
}

// The three-lane loop takes 3 KiB blocks: lengths around whole blocks, with
// the rest on either side, from every alignment.
TEST(Crc32cTest, HardwareAndSoftwareAgreeAcrossLaneBlocks) {
  if (!HardwareAvailable()) GTEST_SKIP() << "no SSE4.2 on this CPU";
  std::mt19937 rng(7);
  std::string buf(100000 + 16, '\0');
  for (char& c : buf) c = static_cast<char>(rng());
  for (size_t align = 0; align < 8; ++align) {
    for (size_t blocks : {1, 2, 5, 32}) {
      for (int delta = -9; delta <= 9; ++delta) {
        const size_t len = blocks * 3072 + delta;
        const uint32_t seed = static_cast<uint32_t>(rng());
        ASSERT_EQ(ExtendHardware(seed, buf.data() + align, len),
                  ExtendSoftware(seed, buf.data() + align, len))
            << "align " << align << " len " << len;
      }
    }
    ASSERT_EQ(ExtendHardware(0, buf.data() + align, 100000),
              ExtendSoftware(0, buf.data() + align, 100000));
  }
}

}  // namespace
}  // namespace pc
