#include "aggregator/object_catalog.h"

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "aggregator/object_layout.h"
#include "aggregator/test_util.h"
#include "common/s3/memory_object_client.h"
#include "gtest/gtest.h"

namespace pc::aggregator {
namespace {

namespace tu = testutil;

void PutEntry(s3::ObjectClient* client, const ObjectLayout& layout,
              const std::string& id, const std::string& node) {
  CatalogEntry entry;
  entry.meta.status.set_id(id);
  entry.meta.status.set_node(node);
  ASSERT_TRUE(
      client->Put(layout.CatalogKey(id), EncodeCatalogEntry(entry), {}).ok());
}

TEST(ObjectCatalogTest, RefreshSeesWhatWasWrittenBeforeTheCall) {
  s3::MemoryObjectClient client;
  ObjectLayout layout("p");
  ObjectCatalog catalog(&client, &layout, {});
  ASSERT_TRUE(catalog.Refresh().ok());
  EXPECT_TRUE(catalog.Snapshot().empty());
  const std::string id = tu::CaptureId("web-1");
  PutEntry(&client, layout, id, "node-a");
  ASSERT_TRUE(catalog.Refresh().ok());
  ASSERT_EQ(catalog.Snapshot().count(id), 1u);
  EXPECT_EQ(catalog.Snapshot().at(id).entry.meta.status.node(), "node-a");
  // A node's entries only.
  PutEntry(&client, layout, tu::CaptureId("web-2"), "node-b");
  ASSERT_TRUE(catalog.Refresh().ok());
  EXPECT_EQ(catalog.Snapshot().size(), 2u);
  const auto of_a = catalog.OfNode("node-a");
  ASSERT_EQ(of_a.size(), 1u);
  EXPECT_EQ(of_a.begin()->first, id);
  EXPECT_TRUE(catalog.OfNode("node-c").empty());
}

TEST(ObjectCatalogTest, CallersDuringARoundShareTheNextOne) {
  // The first round is slow (its read of an entry hangs); eight callers
  // come while it runs. Each must get a round that started after its call
  // (one that sees the entry written just before it), and they share it.
  s3::MemoryObjectClient client;
  ObjectLayout layout("p");
  ObjectCatalog catalog(&client, &layout, {});
  PutEntry(&client, layout, tu::CaptureId("web-1"), "node-a");
  absl::Notification first_round_listed, callers_waiting;
  std::atomic<int> gets{0}, lists{0};
  client.SetHook([&](const std::string& method, const std::string&) {
    if (method == "LIST") ++lists;
    if (method != "GET" || ++gets != 1) return;
    first_round_listed.Notify();
    callers_waiting.WaitForNotificationWithTimeout(absl::Seconds(10));
  });
  std::thread first([&] { EXPECT_TRUE(catalog.Refresh().ok()); });
  first_round_listed.WaitForNotification();
  const std::string id = tu::CaptureId("web-2");
  PutEntry(&client, layout, id, "node-b");  // after the slow round listed
  std::vector<std::thread> callers;
  std::atomic<int> saw_entry{0};
  for (int i = 0; i < 8; ++i) {
    callers.emplace_back([&] {
      EXPECT_TRUE(catalog.Refresh().ok());
      if (catalog.Snapshot().count(id)) ++saw_entry;
    });
  }
  absl::SleepFor(absl::Milliseconds(200));  // all eight wait for the round
  callers_waiting.Notify();
  first.join();
  for (std::thread& t : callers) t.join();
  EXPECT_EQ(saw_entry, 8);
  // Two rounds; a third if a caller came only after the second started.
  EXPECT_LE(catalog.rounds(), 3u);
  EXPECT_LE(lists, 3);
}

TEST(ObjectCatalogTest, AFailedRoundIsNotALaterCallersOutcome) {
  s3::MemoryObjectClient client;
  ObjectLayout layout("p");
  ObjectCatalog catalog(&client, &layout, {});
  client.SetDown(true);
  EXPECT_TRUE(absl::IsUnavailable(catalog.Refresh()));
  client.SetDown(false);
  EXPECT_TRUE(catalog.Refresh().ok());  // a new round, not the old outcome
}

FileSummary Packets(uint64_t packets) {
  FileSummary f;
  f.logical_len = f.physical_len = 100 * packets;
  f.packets = packets;
  return f;
}

TEST(CountsBoardTest, OnlyTheWritersNewerCountsAtItsEpochAreTaken) {
  const std::string id = tu::CaptureId("web-1");
  CatalogEntry entry;
  entry.meta.status.set_id(id);
  entry.meta.status.set_on_node(true);
  entry.replica = "replica-a";
  entry.epoch = 3;
  entry.counts_seq = 7;
  entry.files[{"run-1-w5/ring0", 0}] = Packets(2);
  CountsBoard board;
  board.replica = "replica-a";
  BoardEntry& b = board.captures[id];
  b.epoch = 3;
  b.counts_seq = 9;
  b.files[{"run-1-w5/ring0", 0}] = Packets(5);
  b.files[{"run-1-w5/ring1", 0}] = Packets(1);
  b.dropped_packets = 4;
  b.update_time = absl::FromUnixSeconds(1700000100);
  // Through the encoding, as another replica reads it.
  auto decoded = DecodeCountsBoard(EncodeCountsBoard(board));
  ASSERT_TRUE(decoded.ok()) << decoded.status();

  CatalogEntry taken = entry;
  ASSERT_TRUE(OverlayBoard(*decoded, id, &taken));
  EXPECT_EQ(taken.files.size(), 2u);
  EXPECT_EQ(taken.files.at({"run-1-w5/ring0", 0}).packets, 5u);
  EXPECT_EQ(taken.counts_seq, 9u);
  EXPECT_EQ(taken.meta.status.dropped_packets(), 4u);
  EXPECT_EQ(taken.meta.status.update_time().seconds(), 1700000100);

  auto refused = [&](CatalogEntry e, const CountsBoard& with) {
    const CatalogEntry before = e;
    EXPECT_FALSE(OverlayBoard(with, id, &e));
    EXPECT_EQ(e.files.size(), before.files.size());
    EXPECT_EQ(e.counts_seq, before.counts_seq);
  };
  CatalogEntry other = entry;
  other.epoch = 4;  // a newer holder (or the same replica again)
  refused(other, *decoded);
  other = entry;
  other.replica = "replica-b";
  refused(other, *decoded);
  other = entry;
  other.counts_seq = 9;  // the entry has them already
  refused(other, *decoded);
  other = entry;
  other.meta.status.set_on_node(false);
  other.files_final = true;  // final counts
  refused(other, *decoded);
  refused(entry, CountsBoard{"replica-a", {}});
  EXPECT_FALSE(OverlayBoard(*decoded, tu::CaptureId("web-2"), &other));
}

TEST(CountsBoardTest, ABoardThatDoesNotParseIsRefused) {
  EXPECT_FALSE(DecodeCountsBoard("\xff\xff").ok());
  CountsBoard board;
  board.replica = "replica-a";
  board.captures["../etc"].counts_seq = 1;
  EXPECT_FALSE(DecodeCountsBoard(EncodeCountsBoard(board)).ok());
}

// A round whose only change is a board tells the listener of the entries
// it moves, overlaid; a board renamed to another replica's key is skipped.
TEST(ObjectCatalogTest, ABoardsChangeIsAChangeOfItsCaptures) {
  s3::MemoryObjectClient client;
  ObjectLayout layout("p");
  std::map<std::string, uint64_t> heard;  // id -> packets
  ObjectCatalog catalog(&client, &layout,
                        {[&](const std::string& id, const CatalogRecord& r) {
                           uint64_t packets = 0;
                           for (const auto& [key, f] : r.entry.files)
                             packets += f.packets;
                           heard[id] = packets;
                         },
                         nullptr});
  const std::string id = tu::CaptureId("web-1");
  CatalogEntry entry;
  entry.meta.status.set_id(id);
  entry.meta.status.set_node("node-a");
  entry.meta.status.set_on_node(true);
  entry.replica = "replica-a";
  entry.epoch = 1;
  entry.files[{"run-1-w5/ring0", 0}] = Packets(2);
  ASSERT_TRUE(
      client.Put(layout.CatalogKey(id), EncodeCatalogEntry(entry), {}).ok());
  ASSERT_TRUE(catalog.Refresh().ok());
  EXPECT_EQ(heard[id], 2u);

  CountsBoard board;
  board.replica = "replica-a";
  board.captures[id].epoch = 1;
  board.captures[id].counts_seq = 1;
  board.captures[id].files[{"run-1-w5/ring0", 0}] = Packets(6);
  // Under another replica's name: not taken.
  ASSERT_TRUE(
      client.Put(layout.CountsKey("replica-b"), EncodeCountsBoard(board), {})
          .ok());
  ASSERT_TRUE(catalog.Refresh().ok());
  EXPECT_EQ(heard[id], 2u);
  ASSERT_TRUE(
      client.Put(layout.CountsKey("replica-a"), EncodeCountsBoard(board), {})
          .ok());
  heard.clear();
  ASSERT_TRUE(catalog.Refresh().ok());
  EXPECT_EQ(heard[id], 6u);
  EXPECT_EQ(catalog.Get(id)->entry.files.begin()->second.packets, 6u);
  EXPECT_EQ(catalog.GetAsWritten(id)->entry.files.begin()->second.packets, 2u);
  EXPECT_EQ(catalog.OfNode("node-a").at(id).entry.counts_seq, 1u);
  // Unchanged: not heard again.
  heard.clear();
  ASSERT_TRUE(catalog.Refresh().ok());
  EXPECT_TRUE(heard.empty());
  // The board is gone: the entry's own counts again.
  ASSERT_TRUE(client.Delete(layout.CountsKey("replica-a")).ok());
  ASSERT_TRUE(catalog.Refresh().ok());
  EXPECT_EQ(heard[id], 2u);
  EXPECT_EQ(catalog.UnusedBoards().count("replica-b"), 1u);
}

}  // namespace
}  // namespace pc::aggregator
