#include "cli/packet_counter.h"

#include <string>

#include "gtest/gtest.h"

namespace pc::cli {
namespace {

void Put32(std::string* out, uint32_t v, bool big_endian) {
  for (int i = 0; i < 4; ++i) {
    *out += static_cast<char>(v >> (big_endian ? 8 * (3 - i) : 8 * i));
  }
}

std::string Pcap(int packets, bool big_endian) {
  std::string out;
  Put32(&out, 0xa1b23c4d, big_endian);  // nanosecond magic
  out += big_endian ? std::string("\x00\x02\x00\x04", 4)
                    : std::string("\x02\x00\x04\x00", 4);
  for (uint32_t v : {0u, 0u, 65535u, 1u}) Put32(&out, v, big_endian);
  for (int i = 0; i < packets; ++i) {
    uint32_t caplen = 60 + i;
    for (uint32_t v : {1u, 2u, caplen, caplen + 10}) Put32(&out, v, big_endian);
    out += std::string(caplen, 'p');
  }
  return out;
}

// A block of `type` with a body of `body` bytes (a multiple of 4).
void Block(std::string* out, uint32_t type, size_t body, bool big_endian) {
  Put32(out, type, big_endian);
  Put32(out, static_cast<uint32_t>(12 + body), big_endian);
  *out += std::string(body, '\0');
  Put32(out, static_cast<uint32_t>(12 + body), big_endian);
}

std::string Pcapng(bool big_endian) {
  std::string out;
  // Section Header Block: magic, version, section length.
  Put32(&out, 0x0a0d0d0a, big_endian);
  Put32(&out, 28, big_endian);
  Put32(&out, 0x1a2b3c4d, big_endian);
  out += std::string(12, '\xff');
  Put32(&out, 28, big_endian);
  Block(&out, 1, 8, big_endian);    // IDB
  Block(&out, 1, 8, big_endian);    // a second IDB (two pods)
  Block(&out, 6, 84, big_endian);   // EPB
  Block(&out, 5, 20, big_endian);   // Interface Statistics: no packet
  Block(&out, 6, 100, big_endian);  // EPB
  Block(&out, 3, 64, big_endian);   // SPB
  return out;
}

uint64_t CountInPieces(const std::string& stream, size_t piece) {
  PacketCounter counter;
  for (size_t at = 0; at < stream.size(); at += piece) {
    counter.Add(absl::string_view(stream).substr(at, piece));
  }
  EXPECT_EQ(counter.bytes(), stream.size());
  EXPECT_TRUE(counter.recognized());
  return counter.packets();
}

TEST(PacketCounter, PcapBothByteOrdersAnyCuts) {
  for (bool big_endian : {false, true}) {
    std::string pcap = Pcap(9, big_endian);
    for (size_t piece : {1, 3, 16, 17, 24, 1000}) {
      EXPECT_EQ(CountInPieces(pcap, piece), 9u) << big_endian << " " << piece;
    }
  }
}

TEST(PacketCounter, HeaderOnlyAndHalfRecord) {
  std::string pcap = Pcap(2, false);
  EXPECT_EQ(CountInPieces(pcap.substr(0, 24), 5), 0u);
  // A record counts once its header is complete.
  EXPECT_EQ(CountInPieces(pcap.substr(0, 24 + 15), 5), 0u);
  EXPECT_EQ(CountInPieces(pcap.substr(0, 24 + 16), 5), 1u);
}

TEST(PacketCounter, PcapngEnhancedAndSimplePacketBlocks) {
  for (bool big_endian : {false, true}) {
    std::string ng = Pcapng(big_endian);
    for (size_t piece : {1, 4, 5, 12, 13, 4096}) {
      EXPECT_EQ(CountInPieces(ng, piece), 3u) << big_endian << " " << piece;
    }
  }
}

TEST(PacketCounter, NeitherFormatStopsCounting) {
  PacketCounter counter;
  counter.Add("hello world, no pcap here");
  EXPECT_FALSE(counter.recognized());
  EXPECT_EQ(counter.packets(), 0u);
}

}  // namespace
}  // namespace pc::cli
