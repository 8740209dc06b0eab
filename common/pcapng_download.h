// What a pcapng download (DownloadCapture with FORMAT_PCAPNG, and
// DownloadCaptures) is made of: the choice of captures from a
// DownloadCapturesRequest, the Section Header and Interface Description
// metadata that names each capture (namespace/pod, node, pod IP, capture id),
// and the merger over their pcap sources. No I/O of its own; thread-safe.
#ifndef COMMON_PCAPNG_DOWNLOAD_H_
#define COMMON_PCAPNG_DOWNLOAD_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/pcap/byte_source.h"
#include "common/pcap/pcapng_writer.h"
#include "proto/packetcapture.pb.h"

namespace pc {

// Most captures one DownloadCaptures call merges.
inline constexpr int kMaxMergedCaptures = 256;

// Server-wide facts written into every pcapng Section Header Block.
struct PcapngInfo {
  std::string cluster_name;  // empty: not mentioned
  std::string application;   // shb_userappl, e.g. "capture-aggregator"
};

// The captures a DownloadCapturesRequest names, from `all`: by ids (in the
// given order, duplicates dropped; NOT_FOUND naming the first unknown id),
// or else by the filters and label selector (ordered by namespace, pod,
// start time). InvalidArgument for more than kMaxMergedCaptures ids, an
// unknown state or a bad label selector. May return none.
absl::StatusOr<std::vector<packetcapture::v1::Capture>> SelectCaptures(
    std::vector<packetcapture::v1::Capture> all,
    const packetcapture::v1::DownloadCapturesRequest& request);

// NOT_FOUND (saying which filters) when `chosen` is empty, InvalidArgument
// above kMaxMergedCaptures; OK otherwise.
absl::Status CheckChosen(
    size_t chosen, const packetcapture::v1::DownloadCapturesRequest& request);

// SHB: the cluster (when named) and the captures' time range in its comment.
pcapng::SectionHeader SectionFor(
    const std::vector<packetcapture::v1::Capture>& captures,
    const PcapngInfo& info, bool follow);

// IDB strings: if_name "namespace/pod", if_description with node, pod IP,
// interface and capture id, if_filter the capture's filter.
pcapng::InterfaceDescription InterfaceFor(
    const packetcapture::v1::Capture& capture);

// One pcapng stream of `captures`, sources[i] being captures[i]'s pcap
// stream or why it has none (that capture then gets an interface without
// packets whose comment says why).
std::unique_ptr<pcap::ByteSource> MakePcapngStream(
    const std::vector<packetcapture::v1::Capture>& captures,
    std::vector<absl::StatusOr<std::unique_ptr<pcap::ByteSource>>> sources,
    const PcapngInfo& info, bool follow);

}  // namespace pc

#endif  // COMMON_PCAPNG_DOWNLOAD_H_
