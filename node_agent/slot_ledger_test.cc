#include "node_agent/slot_ledger.h"

#include "gtest/gtest.h"

namespace pc::agent {
namespace {

constexpr uint64_t kRotate = 1000;  // tcpdump's -C in these tests

TEST(SlotLedgerTest, AGenerationUploadedWholeLosesNothingWhenReused) {
  SlotLedger ledger(kRotate);
  EXPECT_TRUE(ledger.Observe("A", 0, 1100));
  ledger.Start(0);
  ledger.Sent(1100);
  ledger.Ack(1100);
  EXPECT_EQ(ledger.Settle(1), 0u);
  EXPECT_EQ(ledger.lost(), 0u);
  EXPECT_EQ(ledger.uploaded(), 1100u);
  EXPECT_FALSE(ledger.tracking());
  EXPECT_EQ(ledger.generation(), 1u);
}

TEST(SlotLedgerTest, AnOverwrittenGenerationHeldAtLeastTheRotationSize) {
  SlotLedger ledger(kRotate);
  EXPECT_TRUE(ledger.Observe("A", 0, 300));
  ledger.Start(0);
  ledger.Ack(100);
  // Only 300 bytes were seen, but tcpdump rotates only past -C.
  EXPECT_EQ(ledger.Settle(1), 900u);
  EXPECT_EQ(ledger.uploaded(), 100u);
  // More seen than -C: what was seen counts.
  EXPECT_TRUE(ledger.Observe("B", 1, 1500));
  ledger.Start(0);
  ledger.Ack(200);
  EXPECT_EQ(ledger.Settle(2), 1300u);
  EXPECT_EQ(ledger.lost(), 2200u);
}

TEST(SlotLedgerTest, GenerationsNoReadSawCountTheRotationSizeEach) {
  SlotLedger ledger(kRotate);
  EXPECT_TRUE(ledger.Observe("A", 0, 300));
  ledger.Start(0);
  ledger.Ack(300);
  EXPECT_EQ(ledger.Settle(40), 700u + 39 * kRotate);
  EXPECT_EQ(ledger.unseen(), 39u);
  EXPECT_EQ(ledger.generation(), 40u);
  // The next read finds generation 40 and tracks it.
  EXPECT_TRUE(ledger.Observe("Z", 40, 50));
  EXPECT_EQ(ledger.generation(), 40u);
  EXPECT_EQ(ledger.Settle(40), 0u);
  // Before any read at all: every generation before the current one.
  SlotLedger fresh(kRotate);
  EXPECT_EQ(fresh.Settle(3), 3 * kRotate);
  EXPECT_EQ(fresh.unseen(), 3u);
}

TEST(SlotLedgerTest, TheSameGenerationReadAgainIsNotNew) {
  SlotLedger ledger(kRotate);
  EXPECT_TRUE(ledger.Observe("A", 0, 100));
  ledger.Start(24);  // the aggregator's resume point
  EXPECT_EQ(ledger.acked(), 24u);
  EXPECT_EQ(ledger.sent(), 24u);
  EXPECT_FALSE(ledger.Observe("A", 0, 500));
  EXPECT_EQ(ledger.seen(), 500u);
  EXPECT_EQ(ledger.uploaded(), 24u);
}

TEST(SlotLedgerTest, AReplacementTheWatchMissedCountsWhatWasSeenOnly) {
  SlotLedger ledger(kRotate);
  EXPECT_TRUE(ledger.Observe("A", 0, 300));
  ledger.Start(0);
  ledger.Ack(100);
  // The watch still says 0 reuses, but the slot holds another generation.
  EXPECT_TRUE(ledger.Observe("B", 0, 40));
  EXPECT_EQ(ledger.lost(), 200u);
  EXPECT_EQ(ledger.unwatched(), 1u);
  EXPECT_EQ(ledger.generation(), 1u);
  ledger.Start(0);
  // The watch's next count (1) is one behind from now on: B is overwritten.
  EXPECT_EQ(ledger.Settle(1), kRotate);
  EXPECT_EQ(ledger.generation(), 2u);
}

TEST(SlotLedgerTest, RetiringCountsTheUnacknowledgedRest) {
  SlotLedger ledger(kRotate);
  EXPECT_TRUE(ledger.Observe("A", 0, 500));
  ledger.Start(0);
  ledger.Sent(500);
  ledger.Ack(200);
  ledger.Rewind();
  EXPECT_EQ(ledger.sent(), 200u);
  EXPECT_EQ(ledger.Retire(), 300u);
  EXPECT_EQ(ledger.uploaded(), 200u);
  EXPECT_EQ(ledger.Retire(), 0u);
}

TEST(SlotLedgerTest, AcksOfNothingTrackedAreIgnored) {
  SlotLedger ledger(kRotate);
  ledger.Ack(100);
  EXPECT_EQ(ledger.uploaded(), 0u);
  EXPECT_EQ(ledger.Settle(0), 0u);
}

}  // namespace
}  // namespace pc::agent
