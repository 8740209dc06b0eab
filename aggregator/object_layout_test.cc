#include "aggregator/object_layout.h"

#include "gtest/gtest.h"

namespace pc::aggregator {
namespace {

TEST(ObjectLayout, KeysRoundTrip) {
  ObjectLayout layout("cluster");
  const std::string id = "default_web-1_0123abcd_1700000000000";
  EXPECT_EQ(layout.CatalogKey(id), "cluster/catalog/" + id + ".pb");
  std::string parsed;
  ASSERT_TRUE(layout.ParseCatalogKey(layout.CatalogKey(id), &parsed));
  EXPECT_EQ(parsed, id);
  const std::string key = layout.DataKey(id, "run-1-w5/ring3", 7, 4096);
  EXPECT_EQ(key, "cluster/data/" + id +
                     "/run-1-w5/ring3/00000000000000000007/"
                     "00000000000000004096");
  DataKeyParts parts;
  ASSERT_TRUE(layout.ParseDataKey(id, key, &parts));
  EXPECT_EQ(parts.file, "run-1-w5/ring3");
  EXPECT_EQ(parts.generation, 7u);
  EXPECT_EQ(parts.offset, 4096u);
  EXPECT_EQ(ObjectLayout("").CatalogKey(id), "catalog/" + id + ".pb");
  const uint64_t max = UINT64_MAX;
  ASSERT_TRUE(layout.ParseDataKey(
      id, layout.DataKey(id, "run-2-w1/ring", max, max), &parts));
  EXPECT_EQ(parts.offset, max);
  EXPECT_EQ(parts.end, 0u);
}

TEST(ObjectLayout, CompactedKeysRoundTrip) {
  ObjectLayout layout("cluster");
  const std::string id = "default_web-1_0123abcd_1700000000000";
  const std::string key =
      layout.CompactedKey(id, "run-1-w5/ring3", 7, 0, 1000000);
  EXPECT_EQ(key, "cluster/data/" + id +
                     "/run-1-w5/ring3/00000000000000000007/"
                     "00000000000000000000-00000000000001000000");
  DataKeyParts parts;
  ASSERT_TRUE(layout.ParseDataKey(id, key, &parts));
  EXPECT_EQ(parts.file, "run-1-w5/ring3");
  EXPECT_EQ(parts.generation, 7u);
  EXPECT_EQ(parts.offset, 0u);
  EXPECT_EQ(parts.end, 1000000u);
  // A batch's object and the compacted one of the same file share its
  // prefix (ring drops and retention delete both).
  EXPECT_EQ(key.rfind(layout.FilePrefix(id, "run-1-w5/ring3", 7), 0), 0u);
}

TEST(ObjectLayout, ParsesOnlyWhatItWrites) {
  ObjectLayout layout("p");
  const std::string id = "default_web-1_0123abcd_1700000000000";
  std::string parsed;
  DataKeyParts parts;
  for (const char* bad :
       {"p/catalog/../x.pb", "p/catalog/.pb", "p/catalog/a/b.pb",
        "q/catalog/default_web-1_0123abcd_1700000000000.pb",
        "p/catalog/default_web-1_0123abcd_1700000000000.pbx"}) {
    EXPECT_FALSE(layout.ParseCatalogKey(bad, &parsed)) << bad;
  }
  const std::string base = "p/data/" + id + "/";
  for (const std::string& bad :
       {base + "run-1-w5/ring5/00000000000000000000/00000000000000000000",
        base + "run-1-w5/ring1/0/00000000000000000000",
        base + "run-1-w5/ring1/00000000000000000000/0000000000000000000x",
        base + "run-1-w5/ring1/00000000000000000000",
        base + "../ring1/00000000000000000000/00000000000000000000",
        base + "run-1-w5/ring1/99999999999999999999/00000000000000000000",
        // Compacted: end after the offset, both 20 digits, one '-'.
        base + "run-1-w5/ring1/00000000000000000000/"
               "00000000000000000005-00000000000000000005",
        base + "run-1-w5/ring1/00000000000000000000/"
               "00000000000000000005-00000000000000000004",
        base + "run-1-w5/ring1/00000000000000000000/"
               "00000000000000000000-0000000000000000005",
        base + "run-1-w5/ring1/00000000000000000000/"
               "00000000000000000000_00000000000000000005",
        base + "run-1-w5/ring1/00000000000000000000/"
               "00000000000000000000-00000000000000000005-",
        base + "run-1-w5/ring1/00000000000000000000/"
               "00000000000000000000--0000000000000000005",
        base + "run-1-w5/ring1/00000000000000000000/"
               "-0000000000000000000-00000000000000000005",
        base + "run-1-w5/ring1/00000000000000000000/"
               "00000000000000000000-99999999999999999999",
        std::string("p/data/other/run-1-w5/ring1/00000000000000000000/"
                    "00000000000000000000")}) {
    EXPECT_FALSE(layout.ParseDataKey(id, bad, &parts)) << bad;
  }
}

TEST(ObjectLayout, CountsBoardsAreNotCatalogEntries) {
  const ObjectLayout layout("p");
  const std::string key = layout.CountsKey("aggregator-7c9f-x2");
  EXPECT_EQ(key, "p/catalog/counts/aggregator-7c9f-x2.pb");
  std::string replica, id;
  ASSERT_TRUE(layout.ParseCountsKey(key, &replica));
  EXPECT_EQ(replica, "aggregator-7c9f-x2");
  // One listing of the catalog holds both; neither parses as the other.
  EXPECT_FALSE(layout.ParseCatalogKey(key, &id));
  EXPECT_FALSE(layout.ParseCountsKey(
      layout.CatalogKey("web-1_demo_0123abcd_1700000000000"), &replica));
  for (const std::string& bad : {std::string("p/catalog/counts/.pb"),
                                 std::string("p/catalog/counts/A.pb"),
                                 std::string("p/catalog/counts/a/b.pb"),
                                 std::string("p/catalog/counts/../x.pb"),
                                 std::string("p/catalog/counts/a.pbx"),
                                 std::string("q/catalog/counts/a.pb")}) {
    EXPECT_FALSE(layout.ParseCountsKey(bad, &replica)) << bad;
  }
  EXPECT_TRUE(IsValidReplicaId("aggregator-0.example"));
  EXPECT_FALSE(IsValidReplicaId(""));
  EXPECT_FALSE(IsValidReplicaId("Agg_0"));
  EXPECT_FALSE(IsValidReplicaId("../x"));
}

}  // namespace
}  // namespace pc::aggregator
