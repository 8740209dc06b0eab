#include "cli/packet_counter.h"

#include <algorithm>

namespace pc::cli {
namespace {

constexpr size_t kPcapFileHeader = 24;
constexpr size_t kPcapRecordHeader = 16;
constexpr size_t kBlockHeader = 8;  // pcapng: type, total length
constexpr uint32_t kSectionHeaderBlock = 0x0a0d0d0a;
constexpr uint32_t kByteOrderMagic = 0x1a2b3c4d;

uint32_t Load32(const std::string& b, size_t at, bool big_endian) {
  auto u = [&](size_t i) {
    return static_cast<uint32_t>(static_cast<unsigned char>(b[at + i]));
  };
  return big_endian ? (u(0) << 24 | u(1) << 16 | u(2) << 8 | u(3))
                    : (u(3) << 24 | u(2) << 16 | u(1) << 8 | u(0));
}

}  // namespace

bool PacketCounter::Fill(absl::string_view* data, size_t size) {
  size_t take = std::min(size - pending_.size(), data->size());
  pending_.append(data->data(), take);
  data->remove_prefix(take);
  return pending_.size() == size;
}

uint32_t PacketCounter::Read32(size_t at) const {
  return Load32(pending_, at, big_endian_);
}

void PacketCounter::Add(absl::string_view data) {
  bytes_ += data.size();
  while (!data.empty() && !unknown_) {
    if (skip_ > 0) {
      size_t n = static_cast<size_t>(std::min<uint64_t>(skip_, data.size()));
      data.remove_prefix(n);
      skip_ -= n;
      continue;
    }
    if (format_ == Format::kUnknownYet) {
      if (!Fill(&data, 4)) return;
      uint32_t magic = Load32(pending_, 0, /*big_endian=*/true);
      if (magic == 0xa1b2c3d4 || magic == 0xa1b23c4d) {
        format_ = Format::kPcap;
        big_endian_ = true;
      } else if (magic == 0xd4c3b2a1 || magic == 0x4d3cb2a1) {
        format_ = Format::kPcap;
        big_endian_ = false;
      } else if (magic == kSectionHeaderBlock) {
        format_ = Format::kPcapng;
      } else {
        unknown_ = true;
        return;
      }
      continue;  // pending_ keeps the 4 bytes: they begin the first header
    }
    if (format_ == Format::kPcap) {
      if (in_file_header_) {
        if (!Fill(&data, kPcapFileHeader)) return;
        in_file_header_ = false;
        pending_.clear();
        continue;
      }
      if (!Fill(&data, kPcapRecordHeader)) return;
      skip_ = Read32(8);  // caplen
      ++packets_;
      pending_.clear();
      continue;
    }
    // pcapng: every block starts with type and total length; a Section
    // Header Block's byte-order magic (after those) sets the byte order of
    // its section.
    if (pending_.size() < 4 ||
        Load32(pending_, 0, true) != kSectionHeaderBlock) {
      if (!Fill(&data, kBlockHeader)) return;
    } else if (!Fill(&data, kBlockHeader + 4)) {
      return;
    }
    if (Load32(pending_, 0, true) == kSectionHeaderBlock) {
      if (pending_.size() < kBlockHeader + 4) continue;  // read the magic too
      big_endian_ = Load32(pending_, 8, true) == kByteOrderMagic;
    }
    uint32_t type = Read32(0);
    uint32_t length = Read32(4);
    if (length < pending_.size() || length % 4 != 0) {
      unknown_ = true;
      return;
    }
    if (type == 6 || type == 3 || type == 2) ++packets_;
    skip_ = length - pending_.size();
    pending_.clear();
  }
}

}  // namespace pc::cli
