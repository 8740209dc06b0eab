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

}  // namespace
}  // namespace pc::aggregator
