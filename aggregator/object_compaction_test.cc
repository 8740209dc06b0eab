// Compaction of sealed files in the object store (object_compaction.cc),
// over the in-memory client: what a slow capture leaves, what readers,
// takeovers, ring drops and retention see while it runs.
#include <atomic>
#include <memory>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "aggregator/fake_node_ownership.h"
#include "aggregator/object_store.h"
#include "aggregator/test_replica.h"
#include "aggregator/test_util.h"
#include "common/pcap/pcap_test_util.h"
#include "common/s3/memory_object_client.h"
#include "gtest/gtest.h"

namespace pc::aggregator {
namespace {

namespace tu = testutil;
using packetcapture::v1::Capture;
using packetcapture::v1::Chunk;
using packetcapture::v1::ResumePoint;
using testutil::Replica;

constexpr char kNode[] = "node-a";

class ObjectCompactionTest : public ::testing::Test {
 public:
  std::unique_ptr<Replica> OpenReplica(const std::string& name,
                                       bool background = false) {
    ObjectStoreOptions options;
    options.client = &client_;
    options.prefix = "cluster";
    options.retention = absl::Hours(1);
    options.catalog_poll_interval = absl::Hours(1);  // tests poll themselves
    options.catalog_write_interval = absl::Hours(1);
    options.compact_in_background = background;
    options.compact_below_bytes = compact_below_;
    options.clock = [this] {
      absl::MutexLock lock(&clock_mu_);
      return now_;
    };
    return tu::OpenReplica(&leases_, name, std::move(options));
  }

  // Replica A holding the node with a running capture `id_`.
  std::unique_ptr<Replica> Holder(uint32_t max_files = 5) {
    auto a = OpenReplica("replica-a");
    EXPECT_TRUE(a->store->AcquireNode(kNode, {}).ok());
    EXPECT_TRUE(a->store
                    ->PutStatus(kNode, tu::Status(id_, kNode, Capture::RUNNING,
                                                  max_files))
                    .ok());
    return a;
  }

  // Ring file `ring` as a trickle leaves it: the header and `batches`
  // batches of 3 records, each its own AppendBatch (its own object).
  void Trickle(CaptureStore* store, int ring, int batches) {
    const std::string file = absl::StrCat("run-1-w10/ring", ring);
    const uint32_t first = 1000 * ring;
    uint64_t offset = 0;
    for (int i = 0; i < batches; ++i) {
      const std::string data =
          i == 0 ? tu::PcapFile(first, 3) : tu::Records(first + 3 * i, 3);
      Append(store, tu::MakeChunk(id_, file, 0, offset, data));
      offset += data.size();
    }
  }

  // Ring0 in 5 batches (objects), sealed by ring1's first bytes, then
  // compacted as compact_below_ allows: the files compacted. The download
  // must not change.
  int SealFiveBatchesOfRing0() {
    auto a = Holder();
    Trickle(a->store.get(), 0, 5);
    Append(a->store.get(),
           tu::MakeChunk(id_, "run-1-w10/ring1", 0, 0, tu::PcapFile(1000, 2)));
    const std::string before = Download(a->store.get(), id_);
    const int compacted = a->store->CompactQueued();
    EXPECT_EQ(Download(a->store.get(), id_), before);
    return compacted;
  }

  void Append(CaptureStore* store, const Chunk& chunk) {
    BatchResult r = store->AppendBatch(kNode, {&chunk});
    EXPECT_TRUE(r.error.ok()) << r.error;
    EXPECT_EQ(r.results.size(), 1u);
  }

  static std::string Download(CaptureStore* store, const std::string& id,
                              size_t step = 1000) {
    auto reader = store->OpenReader(id, false);
    EXPECT_TRUE(reader.ok()) << reader.status();
    if (!reader.ok()) return "";
    std::string out;
    for (int i = 0; i < 100000; ++i) {
      auto n = (*reader)->Read(&out, step);
      EXPECT_TRUE(n.ok()) << n.status();
      if (!n.ok() || *n == 0) break;
    }
    return out;
  }

  // Data object keys of ring file `ring` (generation 0).
  std::vector<std::string> Keys(int ring) {
    const std::string prefix =
        absl::StrCat("cluster/data/", id_, "/run-1-w10/ring", ring, "/");
    std::vector<std::string> keys;
    for (const auto& [key, body] : client_.Objects()) {
      if (absl::StartsWith(key, prefix)) keys.push_back(key);
    }
    return keys;
  }

  std::string Points(CaptureStore* store) {
    std::string out;
    for (const ResumePoint& p : store->ResumePoints(kNode)) {
      absl::StrAppend(&out, p.file(), ".", p.file_generation(), "@", p.offset(),
                      " ");
    }
    return out;
  }

  void Advance(absl::Duration d) {
    absl::MutexLock lock(&clock_mu_);
    now_ += d;
  }

  const std::string id_ = tu::CaptureId("web-1");
  uint64_t compact_below_ = 64 << 10;  // for replicas opened from now on
  s3::MemoryObjectClient client_;
  tu::FakeLeases leases_;
  absl::Mutex clock_mu_;
  absl::Time now_ ABSL_GUARDED_BY(clock_mu_) =
      absl::FromUnixSeconds(1700000000);
};

// Only files of small objects are compacted: objects averaging
// compact_below_bytes or more stay as they are (rewriting them costs more
// requests than reading them saves); one byte less on average and they are
// compacted. Either way the download is the same.
TEST_F(ObjectCompactionTest, AFileOfLargeEnoughObjectsIsNotCompacted) {
  compact_below_ = tu::PcapFile(0, 15).size() / 5;  // ring0's mean, floored
  EXPECT_EQ(SealFiveBatchesOfRing0(), 0);
  EXPECT_EQ(Keys(0).size(), 5u);
}

TEST_F(ObjectCompactionTest, AFileOfSmallerObjectsIsCompacted) {
  compact_below_ = tu::PcapFile(0, 15).size() / 5 + 1;
  EXPECT_EQ(SealFiveBatchesOfRing0(), 1);
  EXPECT_EQ(Keys(0).size(), 1u);
}

// A slow capture leaves 40 objects in ring0; once ring1 has bytes, ring0
// becomes one object <0>-<end> with the same download, listing and resume
// points; a second replica taking the node over afterwards resumes at the
// same offsets and keeps appending.
TEST_F(ObjectCompactionTest, SealedFileBecomesOneObjectWithTheSameBytes) {
  auto a = Holder();
  Trickle(a->store.get(), 0, 40);
  ASSERT_EQ(Keys(0).size(), 40u);
  EXPECT_EQ(a->store->CompactQueued(), 0);  // not sealed yet: still written
  Append(a->store.get(),
         tu::MakeChunk(id_, "run-1-w10/ring1", 0, 0, tu::PcapFile(1000, 2)));
  const std::string before = Download(a->store.get(), id_);
  const std::string points = Points(a->store.get());
  const std::string listing = a->registry.Get(id_)->SerializeAsString();
  const uint64_t ring0_size = tu::PcapFile(0, 120).size();

  EXPECT_EQ(a->store->CompactQueued(), 1);
  EXPECT_EQ(Keys(0), std::vector<std::string>{
                         absl::StrCat("cluster/data/", id_,
                                      "/run-1-w10/ring0/00000000000000000000/"
                                      "00000000000000000000-",
                                      absl::StrFormat("%020u", ring0_size))});
  EXPECT_EQ(client_.Objects()[Keys(0)[0]], tu::PcapFile(0, 120));
  EXPECT_EQ(Keys(1).size(), 1u);
  EXPECT_EQ(Download(a->store.get(), id_), before);
  EXPECT_EQ(Points(a->store.get()), points);
  EXPECT_EQ(a->registry.Get(id_)->SerializeAsString(), listing);
  const StoreStats stats = a->store->stats();
  EXPECT_EQ(stats.compactions, 1u);
  EXPECT_EQ(stats.objects_compacted, 40u);
  EXPECT_EQ(a->store->CompactQueued(), 0);  // nothing left to do

  // Replica B takes the node from a silent A.
  auto b = OpenReplica("replica-b");
  a->ownership->Expire(kNode, /*tell=*/false);
  ASSERT_TRUE(b->store->AcquireNode(kNode, {}).ok());
  EXPECT_EQ(Points(b->store.get()), points);
  EXPECT_EQ(Download(b->store.get(), id_), before);
  EXPECT_EQ(b->store->CompactQueued(), 0);
  Append(b->store.get(),
         tu::MakeChunk(id_, "run-1-w10/ring1", 0, tu::PcapFile(1000, 2).size(),
                       tu::Records(1002, 3)));
  Append(b->store.get(),
         tu::MakeChunk(id_, "run-1-w10/ring2", 0, 0, tu::PcapFile(2000, 1)));
  EXPECT_EQ(b->store->CompactQueued(), 1);  // ring1 now
  EXPECT_EQ(Keys(1).size(), 1u);
  auto seqs = pcap::testutil::SequenceNumbers(Download(b->store.get(), id_));
  ASSERT_TRUE(seqs.ok()) << seqs.status();
  EXPECT_EQ(seqs->size(), 120u + 5 + 1);
}

// Stopping the capture seals its last file too.
TEST_F(ObjectCompactionTest, StoppingSealsEveryFile) {
  auto a = Holder();
  Trickle(a->store.get(), 0, 5);
  const std::string before = Download(a->store.get(), id_);
  ASSERT_TRUE(
      a->store->PutStatus(kNode, tu::Status(id_, kNode, Capture::STOPPED))
          .ok());
  EXPECT_EQ(a->store->CompactQueued(), 1);
  EXPECT_EQ(Keys(0).size(), 1u);
  EXPECT_EQ(Download(a->store.get(), id_), before);
}

// A node this replica lost is not compacted.
TEST_F(ObjectCompactionTest, NotOnALostNode) {
  auto a = Holder();
  Trickle(a->store.get(), 0, 5);
  Append(a->store.get(),
         tu::MakeChunk(id_, "run-1-w10/ring1", 0, 0, tu::PcapFile(1000, 2)));
  a->ownership->Expire(kNode, /*tell=*/true);
  EXPECT_EQ(a->store->CompactQueued(), 0);
  EXPECT_EQ(Keys(0).size(), 5u);
}

// A reader in the middle of ring0 whose next object is deleted under it
// lists again and gets every byte once.
TEST_F(ObjectCompactionTest, ReadersAcrossCompactionGetEveryByteOnce) {
  auto a = Holder();
  Trickle(a->store.get(), 0, 30);
  Append(a->store.get(),
         tu::MakeChunk(id_, "run-1-w10/ring1", 0, 0, tu::PcapFile(1000, 2)));
  const std::string expected = Download(a->store.get(), id_);

  auto reader = a->store->OpenReader(id_, false);
  ASSERT_TRUE(reader.ok());
  std::string got;
  for (int i = 0; i < 3; ++i) ASSERT_TRUE((*reader)->Read(&got, 100).ok());
  EXPECT_EQ(a->store->CompactQueued(), 1);
  const int lists = client_.calls("LIST");
  for (int i = 0; i < 10000; ++i) {
    auto n = (*reader)->Read(&got, 100);
    ASSERT_TRUE(n.ok()) << n.status();
    if (*n == 0) break;
  }
  EXPECT_EQ(got, expected);
  EXPECT_GT(client_.calls("LIST"), lists);  // it listed again
}

// A reader whose listing goes stale within its first Read, between its
// LIST and its first GET of the first file (the header probe), or between
// that and its first data GET, lists again and reads all of ring0, then
// ring1.
void ReadWhileCompactedAtGet(ObjectCompactionTest* t, int gets) {
  auto a = t->Holder();
  t->Trickle(a->store.get(), 0, 30);
  t->Append(a->store.get(), tu::MakeChunk(t->id_, "run-1-w10/ring1", 0, 0,
                                          tu::PcapFile(1000, 2)));
  const std::string expected = t->Download(a->store.get(), t->id_);
  std::atomic<int> seen{0};
  t->client_.SetHook([&](const std::string& method, const std::string& key) {
    if (method == "GET" && absl::StrContains(key, "/ring0/") &&
        ++seen == gets) {
      EXPECT_EQ(a->store->CompactQueued(), 1);
    }
  });
  auto reader = a->store->OpenReader(t->id_, false);
  ASSERT_TRUE(reader.ok());
  std::string got;
  auto n = (*reader)->Read(&got, 1 << 20);
  t->client_.SetHook(nullptr);
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_GE(seen.load(), gets);
  EXPECT_EQ(t->Keys(0).size(), 1u);
  for (int i = 0; i < 100 && *n > 0; ++i) {
    n = (*reader)->Read(&got, 1 << 20);
    ASSERT_TRUE(n.ok()) << n.status();
  }
  EXPECT_EQ(got, expected);
}

TEST_F(ObjectCompactionTest, ReaderListsAgainWhenProbedObjectVanished) {
  ReadWhileCompactedAtGet(this, 1);
}

TEST_F(ObjectCompactionTest, ReaderListsAgainWhenReadObjectVanished) {
  ReadWhileCompactedAtGet(this, 2);
}

// The previous holder, not yet aware that its lease ran out, compacts
// ring0 while the next holder scans its objects: the scan lists again and
// the new holder resumes at the same ends.
TEST_F(ObjectCompactionTest, TakeoverWhileThePreviousHolderCompacts) {
  auto a = Holder();
  Trickle(a->store.get(), 0, 10);
  Append(a->store.get(),
         tu::MakeChunk(id_, "run-1-w10/ring1", 0, 0, tu::PcapFile(1000, 2)));
  const std::string points = Points(a->store.get());
  const std::string expected = Download(a->store.get(), id_);
  auto b = OpenReplica("replica-b");
  a->ownership->Expire(kNode, /*tell=*/false);
  std::atomic<bool> fired{false};
  client_.SetHook([&](const std::string& method, const std::string& key) {
    if (method == "GET" && absl::StrContains(key, "/ring0/") &&
        !fired.exchange(true)) {
      EXPECT_EQ(a->store->CompactQueued(), 1);
    }
  });
  const absl::Status acquired = b->store->AcquireNode(kNode, {});
  client_.SetHook(nullptr);
  ASSERT_TRUE(acquired.ok()) << acquired;
  EXPECT_TRUE(fired.load());
  EXPECT_EQ(Keys(0).size(), 1u);
  EXPECT_EQ(Points(b->store.get()), points);
  EXPECT_EQ(Download(b->store.get(), id_), expected);
}

// The compacted object's PUT lands beside the objects it replaces when
// their deletes fail: downloads and a takeover read the overlap once, and
// the next holder finishes the job (deletes only).
TEST_F(ObjectCompactionTest, OverlapWhenDeletesFailIsReadOnce) {
  auto a = Holder();
  Trickle(a->store.get(), 0, 10);
  Append(a->store.get(),
         tu::MakeChunk(id_, "run-1-w10/ring1", 0, 0, tu::PcapFile(1000, 2)));
  const std::string expected = Download(a->store.get(), id_);
  const std::string points = Points(a->store.get());
  client_.SetHook([&](const std::string& method, const std::string&) {
    if (method == "DELETE") client_.FailNext(1);
  });
  EXPECT_EQ(a->store->CompactQueued(), 1);
  client_.SetHook(nullptr);
  EXPECT_EQ(Keys(0).size(), 11u);  // the compacted one and all ten
  EXPECT_EQ(Download(a->store.get(), id_), expected);

  auto b = OpenReplica("replica-b");
  a->ownership->Expire(kNode, /*tell=*/false);
  ASSERT_TRUE(b->store->AcquireNode(kNode, {}).ok());
  EXPECT_EQ(Points(b->store.get()), points);
  EXPECT_EQ(Download(b->store.get(), id_), expected);
  EXPECT_EQ(b->store->CompactQueued(), 1);
  EXPECT_EQ(Keys(0).size(), 1u);
  EXPECT_TRUE(absl::StrContains(Keys(0)[0], "-"));
  EXPECT_EQ(b->store->stats().compactions, 0u);  // nothing new written
  EXPECT_EQ(b->store->stats().objects_compacted, 10u);
  EXPECT_EQ(Download(b->store.get(), id_), expected);
}

// The ring drops ring0 while its compacted object is being written (after
// the compaction read the objects, before its PUT): nothing of ring0 stays.
TEST_F(ObjectCompactionTest, RingDropDuringCompactionLeavesNothing) {
  auto a = Holder(/*max_files=*/2);
  Trickle(a->store.get(), 0, 10);
  Append(a->store.get(),
         tu::MakeChunk(id_, "run-1-w10/ring1", 0, 0, tu::PcapFile(1000, 2)));
  std::atomic<bool> fired{false};
  client_.SetHook([&](const std::string& method, const std::string& key) {
    if (method == "PUT" && absl::StrContains(key, "/ring0/") &&
        !fired.exchange(true)) {
      Append(a->store.get(), tu::MakeChunk(id_, "run-1-w10/ring2", 0, 0,
                                           tu::PcapFile(2000, 2)));
    }
  });
  a->store->CompactQueued();
  client_.SetHook(nullptr);
  EXPECT_TRUE(fired.load());
  EXPECT_TRUE(Keys(0).empty());
  ASSERT_EQ(a->registry.Get(id_)->files_size(), 2);
  auto seqs = pcap::testutil::SequenceNumbers(Download(a->store.get(), id_));
  ASSERT_TRUE(seqs.ok()) << seqs.status();
  EXPECT_EQ(seqs->size(), 4u);
}

// Retention on another replica deletes the stopped capture while the
// holder compacts it, in both orders that could leave the compacted object
// behind: its PUT after the deletion, and its PUT between the deletion's
// listing and the catalog entry's removal.
TEST_F(ObjectCompactionTest, DeletionDuringCompactionLeavesNothing) {
  for (const std::string hook_on : {"PUT", "DELETE"}) {
    SCOPED_TRACE(hook_on);
    client_.SetHook(nullptr);
    auto a = Holder();
    auto b = OpenReplica("replica-b");
    Trickle(a->store.get(), 0, 10);
    ASSERT_TRUE(
        a->store->PutStatus(kNode, tu::Status(id_, kNode, Capture::STOPPED))
            .ok());
    ASSERT_TRUE(b->store->PollCatalog().ok());
    Advance(absl::Hours(2));
    std::atomic<bool> fired{false};
    client_.SetHook([&](const std::string& method, const std::string& key) {
      if (method != hook_on || !absl::StrContains(key, "/ring0/") ||
          fired.exchange(true)) {
        return;
      }
      if (method == "PUT") {  // the compaction's
        EXPECT_EQ(b->store->Maintain(), std::vector<std::string>{id_});
      } else {  // retention's first data delete
        EXPECT_EQ(a->store->CompactQueued(), 1);
      }
    });
    if (hook_on == "PUT") {
      a->store->CompactQueued();
    } else {
      EXPECT_EQ(b->store->Maintain(), std::vector<std::string>{id_});
    }
    EXPECT_TRUE(fired.load());
    client_.SetHook(nullptr);
    EXPECT_TRUE(client_.Objects().empty());
    a->ownership->Expire(kNode, /*tell=*/true);
  }
}

// With the background thread: a capture rotating quickly through a ring of
// two files while sealed files are compacted; every object left belongs to
// a listed file, each listed file downloads whole. (Runs under TSan.)
TEST_F(ObjectCompactionTest, BackgroundCompactionKeepsUpWithTheRing) {
  auto a = OpenReplica("replica-a", /*background=*/true);
  ASSERT_TRUE(a->store->AcquireNode(kNode, {}).ok());
  ASSERT_TRUE(
      a->store->PutStatus(kNode, tu::Status(id_, kNode, Capture::RUNNING, 2))
          .ok());
  for (int ring = 0; ring < 10; ++ring) Trickle(a->store.get(), ring, 6);
  ASSERT_TRUE(
      a->store->PutStatus(kNode, tu::Status(id_, kNode, Capture::STOPPED, 2))
          .ok());
  const std::string expected = Download(a->store.get(), id_);
  for (int i = 0; i < 500 && (Keys(8).size() > 1 || Keys(9).size() > 1); ++i) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  a->store.reset();  // joins the compactor
  for (int ring = 0; ring < 8; ++ring) EXPECT_TRUE(Keys(ring).empty()) << ring;
  EXPECT_EQ(Keys(8).size(), 1u);
  EXPECT_EQ(Keys(9).size(), 1u);
  auto b = OpenReplica("replica-b");
  EXPECT_EQ(Download(b->store.get(), id_), expected);
  auto seqs = pcap::testutil::SequenceNumbers(expected);
  ASSERT_TRUE(seqs.ok()) << seqs.status();
  EXPECT_EQ(seqs->size(), 2u * 18);
}

}  // namespace
}  // namespace pc::aggregator
