// What one uploaded chunk adds to a stored file, decided from the file's
// stored end and pcap header alone: both stores (Store's StoredFile and
// ObjectStore) check and cut chunks with it, so they keep the same bytes.
// Pure function; thread-safe.
#ifndef AGGREGATOR_CHUNK_CUT_H_
#define AGGREGATOR_CHUNK_CUT_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/optional.h"
#include "aggregator/append_result.h"
#include "common/pcap/pcap_format.h"
#include "proto/packetcapture.pb.h"

namespace pc::aggregator {

struct ChunkCut {
  // offset: the chunk's end (or the stored end for a duplicate).
  AppendResult result;
  // The bytes to store, a part of the chunk's data; empty for a duplicate.
  // For a file's first chunk they begin with the pcap global header.
  absl::string_view data;
  // The file's header: the chunk's own for a file's first chunk.
  pcap::GlobalHeader header;
  // The records in `data` (the global header excluded).
  pcap::ScanResult scan;
};

// `stored`: the file's stored end in agent offsets; `header`: its global
// header (set whenever stored > 0). InvalidArgument for an empty chunk, an
// offset + size that overflows, a first chunk not at offset 0 or without a
// pcap header, data that is not whole records, or a partly stored chunk
// whose new part does not start at one of its record boundaries.
absl::StatusOr<ChunkCut> CutChunk(
    const packetcapture::v1::Chunk& chunk, uint64_t stored,
    const absl::optional<pcap::GlobalHeader>& header);

}  // namespace pc::aggregator

#endif  // AGGREGATOR_CHUNK_CUT_H_
