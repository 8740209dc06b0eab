// Encodes pcapng blocks (draft-ietf-opsawg-pcapng): the Section Header Block,
// Interface Description Blocks and Enhanced Packet Blocks converted from
// classic pcap records. Pure encoder, no I/O: every function appends to a
// string in the host's byte order (a pcapng reader learns it from the SHB's
// byte-order magic). Thread-safe (no state).
#ifndef COMMON_PCAP_PCAPNG_WRITER_H_
#define COMMON_PCAP_PCAPNG_WRITER_H_

#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "common/pcap/pcap_format.h"

namespace pc::pcapng {

inline constexpr uint32_t kSectionHeaderType = 0x0A0D0D0A;
inline constexpr uint32_t kInterfaceDescriptionType = 0x00000001;
inline constexpr uint32_t kEnhancedPacketType = 0x00000006;
inline constexpr uint32_t kByteOrderMagic = 0x1A2B3C4D;
// Fixed bytes of an EPB: type, length, interface, 2 × timestamp, caplen,
// orig_len, trailing length.
inline constexpr size_t kEnhancedPacketOverhead = 32;

// SHB options; empty strings are left out.
struct SectionHeader {
  std::string comment;   // opt_comment: e.g. the cluster and time range
  std::string hardware;  // shb_hardware
  std::string os;        // shb_os
  std::string userappl;  // shb_userappl
};

// One capture as an interface; empty strings are left out.
struct InterfaceDescription {
  // From the capture's pcap global header (low 16 bits of its linktype).
  uint16_t linktype = pcap::kLinktypeEthernet;
  uint32_t snaplen = 0;
  // if_tsresol: 6 (µs) or 9 (ns), as the pcap magic said.
  pcap::TimestampPrecision precision = pcap::TimestampPrecision::kMicro;
  std::string name;         // if_name: "namespace/pod"
  std::string description;  // if_description: node, pod IP, capture id
  std::string filter;       // if_filter (libpcap string form)
  std::string comment;      // opt_comment
};

// The interface a capture with pcap global header `header` becomes
// (linktype, snaplen and timestamp resolution; strings left empty).
InterfaceDescription InterfaceFor(const pcap::GlobalHeader& header);

void AppendSectionHeader(const SectionHeader& shb, std::string* out);
void AppendInterfaceDescription(const InterfaceDescription& idb,
                                std::string* out);

// One packet: `timestamp` counts units of the interface's if_tsresol since
// the epoch (µs or ns, as in the pcap record). `data` is the captured bytes
// (caplen), `orig_len` the length on the wire.
void AppendEnhancedPacket(uint32_t interface_id, uint64_t timestamp,
                          absl::string_view data, uint32_t orig_len,
                          std::string* out);

// Bytes AppendEnhancedPacket adds for `caplen` captured bytes.
inline size_t EnhancedPacketSize(uint32_t caplen) {
  return kEnhancedPacketOverhead + ((caplen + 3u) & ~size_t{3});
}

// The pcapng timestamp of a classic pcap record (units of if_tsresol).
inline uint64_t PcapngTimestamp(const pcap::RecordHeader& record,
                                pcap::TimestampPrecision precision) {
  const uint64_t scale =
      precision == pcap::TimestampPrecision::kNano ? 1000000000u : 1000000u;
  return uint64_t{record.ts_sec} * scale + record.ts_frac;
}

}  // namespace pc::pcapng

#endif  // COMMON_PCAP_PCAPNG_WRITER_H_
