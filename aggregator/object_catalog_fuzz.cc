// Fuzzes what a replica reads from the bucket's catalog, which any writer
// of the bucket controls: DecodeCatalogEntry, DecodeCountsBoard, the overlay
// of a board on an entry and the listing built from the result. The input
// is a length-prefixed entry, a length-prefixed capture id, then a board.
//
// Checked: a refused object gets InvalidArgument with a message; a decoded
// entry keeps its contract (files_final only off the node, no file with more
// bytes stored than covered) and so does a decoded board (valid capture
// ids); both survive encoding again unchanged in what readers use; a board
// is taken only under the overlay rules, and then wholly; the listing's
// totals are the sums of its files.
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "aggregator/object_catalog.h"
#include "common/capture_layout.h"
#include "testing/fuzz/fuzz_util.h"

namespace {

using pc::aggregator::CatalogEntry;
using pc::aggregator::CountsBoard;

void CheckRefusal(const absl::Status& s) {
  FUZZ_CHECK(absl::IsInvalidArgument(s), s.ToString());
  FUZZ_CHECK(!s.message().empty(), "empty message");
}

void CheckView(const CatalogEntry& entry) {
  const auto view =
      pc::aggregator::CatalogView(entry.meta, entry.files, absl::Hours(1));
  uint64_t bytes = 0, packets = 0;
  for (const auto& f : view.files()) {
    bytes += f.size();
    packets += f.packets();
  }
  FUZZ_CHECK(view.bytes() == bytes, absl::StrCat(view.bytes(), " ", bytes));
  FUZZ_CHECK(view.packets() == packets, "packets");
}

void CheckEntry(const CatalogEntry& entry) {
  FUZZ_CHECK(!entry.files_final || !entry.meta.status.on_node(),
             "final on the node");
  for (const auto& [key, f] : entry.files) {
    FUZZ_CHECK(f.physical_len <= f.logical_len, key.first);
  }
  auto again = pc::aggregator::DecodeCatalogEntry(
      pc::aggregator::EncodeCatalogEntry(entry));
  FUZZ_CHECK(again.ok(), again.status().ToString());
  FUZZ_CHECK(again->files.size() == entry.files.size(), "files");
  FUZZ_CHECK(again->counts_seq == entry.counts_seq, "counts_seq");
  FUZZ_CHECK(again->epoch == entry.epoch && again->replica == entry.replica,
             "writer");
  CheckView(entry);
}

void CheckBoard(const CountsBoard& board) {
  for (const auto& [id, b] : board.captures) {
    FUZZ_CHECK(pc::IsValidCaptureId(id), id);
  }
  auto again = pc::aggregator::DecodeCountsBoard(
      pc::aggregator::EncodeCountsBoard(board));
  FUZZ_CHECK(again.ok(), again.status().ToString());
  FUZZ_CHECK(again->replica == board.replica, "replica");
  FUZZ_CHECK(again->captures.size() == board.captures.size(), "captures");
  for (const auto& [id, b] : board.captures) {
    const auto& c = again->captures.at(id);
    FUZZ_CHECK(c.epoch == b.epoch && c.counts_seq == b.counts_seq &&
                   c.files.size() == b.files.size(),
               id);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  pc::fuzz::FuzzInput in(data, size);
  const std::string entry_bytes = in.LengthPrefixed();
  const std::string id = in.LengthPrefixed();
  const std::string board_bytes = in.Rest();

  auto entry = pc::aggregator::DecodeCatalogEntry(entry_bytes);
  if (!entry.ok()) {
    CheckRefusal(entry.status());
  } else {
    CheckEntry(*entry);
  }
  auto board = pc::aggregator::DecodeCountsBoard(board_bytes);
  if (!board.ok()) {
    CheckRefusal(board.status());
    return 0;
  }
  CheckBoard(*board);
  if (!entry.ok()) return 0;

  CatalogEntry overlaid = *entry;
  const bool taken = pc::aggregator::OverlayBoard(*board, id, &overlaid);
  auto it = board->captures.find(id);
  const bool allowed =
      !entry->files_final && entry->replica == board->replica &&
      it != board->captures.end() && it->second.epoch == entry->epoch &&
      it->second.counts_seq > entry->counts_seq;
  FUZZ_CHECK(taken == allowed, "overlay rule");
  if (taken) {
    FUZZ_CHECK(overlaid.counts_seq == it->second.counts_seq, "counts_seq");
    FUZZ_CHECK(overlaid.files.size() == it->second.files.size(), "files");
    FUZZ_CHECK(
        overlaid.meta.status.dropped_packets() == it->second.dropped_packets,
        "dropped");
    CheckView(overlaid);
  } else {
    FUZZ_CHECK(overlaid.counts_seq == entry->counts_seq, "untouched");
  }
  return 0;
}
