// Upload accounting of one ring file (one slot of a tcpdump ring): which
// generation the uplink is uploading, how much of it the aggregator has
// acknowledged, and how many bytes of generations that left the disk were
// never acknowledged (lost). Pure logic, no I/O; thread-compatible.
//
// Generations of the slot are numbered by the ring watch's reuse count
// (RingWatch::Reuses): 0 is the content found when the watch began, n the
// content after n reuses. Two sources feed the ledger and either may be
// ahead: the watch's count (exact, even for generations no read ever saw)
// and reads of the file (Observe), which name a generation by its identity
// (the pcap header and first record header, unique per generation).
//
// What counts as lost, per generation that left the disk unacknowledged:
// - overwritten by tcpdump (the watch counted a reuse after it): tcpdump
//   rotates only once a file exceeds -C bytes, so it held at least
//   max(rotate_bytes, bytes seen); lost = that - acknowledged. A generation
//   no read ever saw counts rotate_bytes.
// - replaced without the watch seeing it (its events were lost), or deleted
//   (pruned, capture stopped): only what was seen is known; lost = seen -
//   acknowledged.
#ifndef NODE_AGENT_SLOT_LEDGER_H_
#define NODE_AGENT_SLOT_LEDGER_H_

#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"

namespace pc::agent {

class SlotLedger {
 public:
  explicit SlotLedger(uint64_t rotate_bytes) : rotate_bytes_(rotate_bytes) {}

  // The watch counted `reuses` reuses of the slot: every generation before
  // number `reuses` is gone from the disk. Settles them; returns the bytes
  // this call counted as lost.
  uint64_t Settle(uint64_t reuses);

  // A read found generation `ident` holding `size` bytes while the watch's
  // count stood at `reuses` (the same before and after the read). Settles
  // first. Returns true if this generation was not the one tracked: the
  // caller sets its upload offsets with Start().
  bool Observe(absl::string_view ident, uint64_t reuses, uint64_t size);
  // Upload offsets of the tracked generation (0, or the aggregator's resume
  // point).
  void Start(uint64_t acked);

  // Progress of the tracked generation.
  void Sent(uint64_t offset);
  void Ack(uint64_t offset);
  // Unacknowledged bytes are sent again (a new connection, a rejection).
  void Rewind() { sent_ = acked_; }

  // The file left the disk (pruned, capture stopped and drained): the
  // tracked generation's unacknowledged bytes are lost. Settle() first.
  // Returns the bytes this call counted as lost.
  uint64_t Retire();

  bool tracking() const { return tracking_; }
  const std::string& ident() const { return ident_; }
  uint64_t acked() const { return acked_; }
  uint64_t sent() const { return sent_; }
  uint64_t seen() const { return seen_; }
  // Number of the generation on disk now, as far as known.
  uint64_t generation() const { return tracking_ ? index_ : base_; }

  // Totals over every generation of the slot.
  uint64_t lost() const { return lost_; }
  uint64_t uploaded() const { return done_ + (tracking_ ? acked_ : 0); }
  // Acknowledged bytes of generations no longer on disk.
  uint64_t uploaded_gone() const { return done_; }
  // Generations that left the disk before any read saw them.
  uint64_t unseen() const { return unseen_; }
  // Replacements only a read noticed (the watch missed them).
  uint64_t unwatched() const { return unwatched_; }

 private:
  // Ends the tracked generation; `least_size` is what it held at least.
  uint64_t Drop(uint64_t least_size);

  const uint64_t rotate_bytes_;
  bool tracking_ = false;
  std::string ident_;
  uint64_t index_ = 0;  // the tracked generation's number
  // Generations before this one are settled (when not tracking, the next
  // one a read can find).
  uint64_t base_ = 0;
  uint64_t acked_ = 0, sent_ = 0, seen_ = 0;
  uint64_t lost_ = 0, done_ = 0, unseen_ = 0, unwatched_ = 0;
  // Replacements the watch missed: its counts plus this are generation
  // numbers.
  uint64_t lag_ = 0;
};

}  // namespace pc::agent

#endif  // NODE_AGENT_SLOT_LEDGER_H_
