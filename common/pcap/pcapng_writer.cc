#include "common/pcap/pcapng_writer.h"

#include <cstring>

namespace pc::pcapng {
namespace {

// Option codes.
constexpr uint16_t kOptEnd = 0;
constexpr uint16_t kOptComment = 1;
constexpr uint16_t kShbHardware = 2;
constexpr uint16_t kShbOs = 3;
constexpr uint16_t kShbUserappl = 4;
constexpr uint16_t kIfName = 2;
constexpr uint16_t kIfDescription = 3;
constexpr uint16_t kIfTsresol = 9;
constexpr uint16_t kIfFilter = 11;

// Host byte order: the SHB's magic tells readers which one it is.
void Put32(uint32_t v, std::string* out) {
  char b[4];
  std::memcpy(b, &v, 4);
  out->append(b, 4);
}

void Put16(uint16_t v, std::string* out) {
  char b[2];
  std::memcpy(b, &v, 2);
  out->append(b, 2);
}

void Pad(std::string* out) {
  static const char kZeros[4] = {0, 0, 0, 0};
  out->append(kZeros, (4 - out->size() % 4) % 4);
}

// Options longer than an option can say are cut (65535 bytes).
void PutOption(uint16_t code, absl::string_view value, std::string* out) {
  if (value.empty()) return;
  if (value.size() > 0xfffc) value = value.substr(0, 0xfffc);
  Put16(code, out);
  Put16(static_cast<uint16_t>(value.size()), out);
  out->append(value.data(), value.size());
  Pad(out);
}

// Writes the block length in both places once the body is known.
class Block {
 public:
  Block(uint32_t type, std::string* out) : out_(out), start_(out->size()) {
    Put32(type, out);
    Put32(0, out);  // length, patched in Close
  }
  void Close() {
    const uint32_t length = static_cast<uint32_t>(out_->size() - start_ + 4);
    Put32(length, out_);
    std::memcpy(&(*out_)[start_ + 4], &length, 4);
  }

 private:
  std::string* out_;
  size_t start_;
};

}  // namespace

InterfaceDescription InterfaceFor(const pcap::GlobalHeader& header) {
  InterfaceDescription idb;
  idb.linktype = static_cast<uint16_t>(header.linktype & 0xffff);
  idb.snaplen = header.snaplen;
  idb.precision = header.precision;
  return idb;
}

void AppendSectionHeader(const SectionHeader& shb, std::string* out) {
  Block block(kSectionHeaderType, out);
  Put32(kByteOrderMagic, out);
  Put16(1, out);           // major version
  Put16(0, out);           // minor version
  Put32(0xffffffff, out);  // section length: not specified
  Put32(0xffffffff, out);
  const size_t before = out->size();
  PutOption(kOptComment, shb.comment, out);
  PutOption(kShbHardware, shb.hardware, out);
  PutOption(kShbOs, shb.os, out);
  PutOption(kShbUserappl, shb.userappl, out);
  if (out->size() != before) Put32(kOptEnd, out);  // opt_endofopt
  block.Close();
}

void AppendInterfaceDescription(const InterfaceDescription& idb,
                                std::string* out) {
  Block block(kInterfaceDescriptionType, out);
  Put16(idb.linktype, out);
  Put16(0, out);  // reserved
  Put32(idb.snaplen, out);
  PutOption(kIfName, idb.name, out);
  PutOption(kIfDescription, idb.description, out);
  const char tsresol = idb.precision == pcap::TimestampPrecision::kNano ? 9 : 6;
  PutOption(kIfTsresol, absl::string_view(&tsresol, 1), out);
  if (!idb.filter.empty()) {
    // First byte 0: the filter is a libpcap filter string.
    std::string filter(1, '\0');
    filter += idb.filter;
    PutOption(kIfFilter, filter, out);
  }
  PutOption(kOptComment, idb.comment, out);
  Put32(kOptEnd, out);
  block.Close();
}

void AppendEnhancedPacket(uint32_t interface_id, uint64_t timestamp,
                          absl::string_view data, uint32_t orig_len,
                          std::string* out) {
  const uint32_t caplen = static_cast<uint32_t>(data.size());
  const uint32_t total = static_cast<uint32_t>(EnhancedPacketSize(caplen));
  const size_t at = out->size();
  out->resize(at + total);
  char* p = &(*out)[at];
  const uint32_t fields[7] = {kEnhancedPacketType,
                              total,
                              interface_id,
                              static_cast<uint32_t>(timestamp >> 32),
                              static_cast<uint32_t>(timestamp),
                              caplen,
                              orig_len};
  std::memcpy(p, fields, sizeof(fields));
  p += sizeof(fields);
  std::memcpy(p, data.data(), caplen);
  const size_t padded = (caplen + 3u) & ~size_t{3};
  std::memset(p + caplen, 0, padded - caplen);
  std::memcpy(p + padded, &total, 4);
}

}  // namespace pc::pcapng
