#include "aggregator/chunk_cut.h"

#include <limits>
#include <string>

#include "absl/strings/str_cat.h"

namespace pc::aggregator {

absl::StatusOr<ChunkCut> CutChunk(
    const packetcapture::v1::Chunk& c, uint64_t stored,
    const absl::optional<pcap::GlobalHeader>& header) {
  const absl::string_view chunk_data = c.data();
  const std::string where = absl::StrCat(
      c.file(), " generation ", c.file_generation(), " offset ", c.offset());
  if (chunk_data.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": empty chunk"));
  }
  if (c.offset() > std::numeric_limits<uint64_t>::max() - chunk_data.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": offset + size overflows"));
  }
  const uint64_t end = c.offset() + chunk_data.size();
  ChunkCut cut;
  if (end <= stored) {
    cut.result.offset = stored;
    cut.result.duplicate = true;
    if (header) cut.header = *header;
    return cut;
  }
  // The chunk's records, from where they are new.
  absl::string_view data = chunk_data;  // to store
  absl::string_view records = data;
  if (stored == 0 || !header) {
    if (c.offset() != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": the first chunk of a file must start at offset 0"));
    }
    auto parsed = pcap::ParseGlobalHeader(data);
    if (!parsed.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": first chunk must begin with a pcap header: ",
                       parsed.status().message()));
    }
    cut.header = *parsed;
    records = data.substr(pcap::kGlobalHeaderSize);
  } else {
    cut.header = *header;
    if (c.offset() < stored) {
      // Partly stored (re-sent from an older acknowledgement): keep what
      // lies past the stored end, which must be a record boundary of the
      // chunk: the part already stored is whole records.
      const size_t begin = c.offset() == 0 ? pcap::kGlobalHeaderSize : 0;
      const size_t skip = static_cast<size_t>(stored - c.offset());
      bool valid = skip >= begin;
      if (valid && begin > 0) {
        auto parsed = pcap::ParseGlobalHeader(chunk_data);
        valid = parsed.ok() && pcap::SameStreamFormat(*parsed, *header);
      }
      if (valid) {
        const absl::string_view old = chunk_data.substr(begin, skip - begin);
        const pcap::ScanResult scan = pcap::ScanRecords(*header, old);
        valid = !scan.corrupt() && scan.complete_bytes == old.size();
      }
      if (!valid) {
        return absl::InvalidArgumentError(absl::StrCat(
            where, ": chunk overlaps the ", stored,
            " stored bytes, but not at one of its record boundaries"));
      }
      data = chunk_data.substr(skip);
      records = data;
    } else {
      cut.result.gap = c.offset() - stored;
    }
  }
  cut.scan = pcap::ScanRecords(cut.header, records);
  if (cut.scan.corrupt() || cut.scan.complete_bytes != records.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        where, ": chunk is not a sequence of whole pcap records",
        cut.scan.corrupt() ? absl::StrCat(" (", cut.scan.status.message(), ")")
                           : ""));
  }
  cut.data = data;
  cut.result.offset = end;
  return cut;
}

}  // namespace pc::aggregator
