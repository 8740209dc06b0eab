#include "node_agent/slot_ledger.h"

#include <algorithm>

namespace pc::agent {

uint64_t SlotLedger::Drop(uint64_t least_size) {
  const uint64_t size = std::max(least_size, seen_);
  const uint64_t lost = size > acked_ ? size - acked_ : 0;
  lost_ += lost;
  done_ += acked_;
  base_ = index_ + 1;
  tracking_ = false;
  ident_.clear();
  acked_ = sent_ = seen_ = 0;
  return lost;
}

uint64_t SlotLedger::Settle(uint64_t watch_reuses) {
  const uint64_t reuses = watch_reuses + lag_;
  uint64_t lost = 0;
  if (tracking_ && reuses > index_) lost += Drop(rotate_bytes_);
  if (!tracking_ && reuses > base_) {
    const uint64_t gone = reuses - base_;
    unseen_ += gone;
    lost_ += gone * rotate_bytes_;
    lost += gone * rotate_bytes_;
    base_ = reuses;
  }
  return lost;
}

bool SlotLedger::Observe(absl::string_view ident, uint64_t reuses,
                         uint64_t size) {
  Settle(reuses);
  if (tracking_ && ident == ident_) {
    seen_ = std::max(seen_, size);
    return false;
  }
  if (tracking_) {
    // Replaced, but the watch did not count it: only what was seen is known,
    // and the watch's later counts are one behind from now on.
    ++unwatched_;
    ++lag_;
    Drop(0);
  }
  tracking_ = true;
  index_ = base_;
  ident_ = std::string(ident);
  acked_ = sent_ = 0;
  seen_ = size;
  return true;
}

void SlotLedger::Start(uint64_t acked) {
  acked_ = sent_ = acked;
  seen_ = std::max(seen_, acked);
}

void SlotLedger::Sent(uint64_t offset) {
  sent_ = std::max(sent_, offset);
  seen_ = std::max(seen_, offset);
}

void SlotLedger::Ack(uint64_t offset) {
  if (!tracking_ || offset <= acked_) return;
  acked_ = offset;
  sent_ = std::max(sent_, acked_);
  seen_ = std::max(seen_, acked_);
}

uint64_t SlotLedger::Retire() { return tracking_ ? Drop(0) : 0; }

}  // namespace pc::agent
