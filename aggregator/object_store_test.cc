#include "aggregator/object_store.h"

#include <algorithm>
#include <atomic>
#include <map>
#include <memory>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "aggregator/fake_node_ownership.h"
#include "aggregator/store.h"
#include "aggregator/test_replica.h"
#include "aggregator/test_util.h"
#include "common/pcap/pcap_test_util.h"
#include "common/s3/memory_object_client.h"
#include "common/time_proto.h"
#include "gtest/gtest.h"

namespace pc::aggregator {
namespace {

namespace tu = testutil;
using testutil::FakeLeases;
using testutil::Replica;
namespace ptu = pcap::testutil;
using packetcapture::v1::Capture;
using packetcapture::v1::Chunk;
using s3::MemoryObjectClient;

class ObjectStoreTest : public ::testing::Test {
 protected:
  std::unique_ptr<Replica> OpenReplica(
      const std::string& name,
      absl::Duration poll = absl::Hours(1),     // tests poll themselves
      absl::Duration write = absl::Hours(1)) {  // and flush themselves
    ObjectStoreOptions options;
    options.client = &client_;
    options.prefix = "cluster";
    options.retention = absl::Hours(1);
    options.max_bytes = max_bytes_;
    options.catalog_poll_interval = poll;
    options.catalog_write_interval = write;
    options.clock = [this] {
      absl::MutexLock lock(&clock_mu_);
      return now_;
    };
    return tu::OpenReplica(&leases_, name, std::move(options));
  }

  std::unique_ptr<Store> OpenDirectoryStore(CaptureRegistry* registry) {
    StoreOptions options;
    options.data_dir = ptu::MakeTempDir();
    options.retention = absl::Hours(1);
    options.clock = [this] {
      absl::MutexLock lock(&clock_mu_);
      return now_;
    };
    options.fsync = [](int) { return 0; };
    options.sync_ops.sync_file = [](int) { return 0; };
    options.sync_ops.sync_fs = [](int) { return 0; };
    auto store = Store::Open(options, registry);
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? std::move(*store) : nullptr;
  }

  static std::string Download(CaptureStore* store, const std::string& id) {
    auto reader = store->OpenReader(id, false);
    EXPECT_TRUE(reader.ok()) << reader.status();
    if (!reader.ok()) return "";
    std::string out;
    for (int i = 0; i < 10000; ++i) {
      auto n = (*reader)->Read(&out, 1000);
      EXPECT_TRUE(n.ok()) << n.status();
      if (!n.ok() || *n == 0) break;
    }
    EXPECT_TRUE((*reader)->Done());
    return out;
  }

  // Keys of data objects under the capture's prefix.
  std::vector<std::string> DataKeys(const std::string& id) {
    std::vector<std::string> keys;
    for (const auto& [key, body] : client_.Objects()) {
      if (absl::StartsWith(key, absl::StrCat("cluster/data/", id, "/"))) {
        keys.push_back(key);
      }
    }
    return keys;
  }

  // A running capture of `node` (held by `r`) with a first file of
  // `packets` records.
  static void StartCapture(Replica* r, const std::string& node,
                           const std::string& id, int packets) {
    ASSERT_TRUE(r->store->PutStatus(node, tu::Status(id, node)).ok());
    const Chunk c =
        tu::MakeChunk(id, "run-1-w5/ring0", 0, 0, tu::PcapFile(0, packets));
    ASSERT_TRUE(r->store->AppendBatch(node, {&c}).error.ok());
  }

  // The capture's entry as stored, with its writer's counts board over it
  // (what another replica reads).
  absl::StatusOr<CatalogEntry> StoredEntry(const std::string& id) {
    const auto objects = client_.Objects();
    auto it = objects.find("cluster/catalog/" + id + ".pb");
    if (it == objects.end()) return absl::NotFoundError(id);
    auto entry = DecodeCatalogEntry(it->second);
    if (!entry.ok()) return entry.status();
    auto board =
        objects.find("cluster/catalog/counts/" + entry->replica + ".pb");
    if (board != objects.end()) {
      auto decoded = DecodeCountsBoard(board->second);
      if (!decoded.ok()) return decoded.status();
      OverlayBoard(*decoded, id, &*entry);
    }
    return entry;
  }

  void Advance(absl::Duration d) {
    absl::MutexLock lock(&clock_mu_);
    now_ += d;
  }

  MemoryObjectClient client_;
  FakeLeases leases_;
  uint64_t max_bytes_ = 0;
  absl::Mutex clock_mu_;
  absl::Time now_ ABSL_GUARDED_BY(clock_mu_) =
      absl::FromUnixSeconds(1700000000);
};

// The chunks of one capture: two files of a ring of 5, with a duplicate, a
// partly re-sent chunk and a gap of two records.
std::vector<Chunk> SampleChunks(const std::string& id) {
  const std::string head = tu::PcapFile(0, 4);
  const std::string more = tu::Records(4, 3);
  const uint64_t rec5 = head.size() + tu::Records(4, 1).size();
  const uint64_t end = tu::PcapFile(0, 9).size();  // after the re-sent part
  const uint64_t gap = tu::Records(9, 2).size();
  return {
      tu::MakeChunk(id, "run-1-w5/ring0", 0, 0, head),
      tu::MakeChunk(id, "run-1-w5/ring0", 0, head.size(), more),
      tu::MakeChunk(id, "run-1-w5/ring0", 0, 0, head),  // duplicate
      // Records 5..8: 5 and 6 are stored, 7 and 8 new.
      tu::MakeChunk(id, "run-1-w5/ring0", 0, rec5, tu::Records(5, 4)),
      tu::MakeChunk(id, "run-1-w5/ring0", 0, end + gap, tu::Records(11, 3)),
      tu::MakeChunk(id, "run-1-w5/ring1", 0, 0, tu::PcapFile(14, 5)),
      tu::MakeChunk(id, "run-1-w5/ring1", 0, tu::PcapFile(14, 5).size(),
                    tu::Records(19, 2)),
  };
}

// Appends the chunks one batch per file run, as the ingest service cuts
// them (consecutive chunks of one file).
void Feed(CaptureStore* store, const std::string& node,
          const std::vector<Chunk>& chunks, std::vector<uint64_t>* acks) {
  std::vector<const Chunk*> batch;
  auto flush = [&] {
    if (batch.empty()) return;
    BatchResult r = store->AppendBatch(node, batch);
    EXPECT_TRUE(r.error.ok()) << r.error;
    EXPECT_EQ(r.results.size(), batch.size());
    for (const auto& result : r.results) acks->push_back(result.offset);
    batch.clear();
  };
  for (const Chunk& c : chunks) {
    if (!batch.empty() && batch.front()->file() != c.file()) flush();
    batch.push_back(&c);
  }
  flush();
}

// Replica `r` takes node-a and stores capture `id`'s SampleChunks: the
// first two chunks' counts reach its catalog entry, the rest are
// acknowledged but not yet written there.
void FeedWithUnwrittenCounts(tu::Replica* r, const std::string& id) {
  const std::vector<Chunk> chunks = SampleChunks(id);
  ASSERT_TRUE(r->store->AcquireNode("node-a", {}).ok());
  ASSERT_TRUE(r->store->PutStatus("node-a", tu::Status(id, "node-a")).ok());
  std::vector<uint64_t> acks;
  Feed(r->store.get(), "node-a",
       std::vector<Chunk>(chunks.begin(), chunks.begin() + 2), &acks);
  r->store->FlushCatalog();
  Feed(r->store.get(), "node-a",
       std::vector<Chunk>(chunks.begin() + 2, chunks.end()), &acks);
}

void ExpectSameListing(const Capture& a, const Capture& b) {
  EXPECT_EQ(a.bytes(), b.bytes());
  EXPECT_EQ(a.packets(), b.packets());
  EXPECT_EQ(a.bytes_lost(), b.bytes_lost());
  EXPECT_EQ(a.state(), b.state());
  ASSERT_EQ(a.files_size(), b.files_size());
  for (int i = 0; i < a.files_size(); ++i) {
    EXPECT_EQ(a.files(i).SerializeAsString(), b.files(i).SerializeAsString())
        << i;
  }
}

// Status and chunks through one replica: the same acknowledgements, resume
// points, listing and download bytes as the directory store fed the same;
// a second replica over the same bucket lists the capture after a catalog
// round and downloads the very same bytes.
TEST_F(ObjectStoreTest,
       AnotherReplicaListsAndDownloadsWhatTheDirectoryStoreWould) {
  const std::string id = tu::CaptureId("web-1");
  const std::vector<Chunk> chunks = SampleChunks(id);

  CaptureRegistry dir_registry;
  auto dir = OpenDirectoryStore(&dir_registry);
  ASSERT_TRUE(dir->PutStatus("node-a", tu::Status(id, "node-a")).ok());
  std::vector<uint64_t> dir_acks;
  Feed(dir.get(), "node-a", chunks, &dir_acks);

  client_.SetMaxKeysPerPage(2);  // listings take several pages
  auto a = OpenReplica("replica-a");
  auto b = OpenReplica("replica-b");
  ASSERT_TRUE(a->store->AcquireNode("node-a", {}).ok());
  ASSERT_TRUE(a->store->PutStatus("node-a", tu::Status(id, "node-a")).ok());
  // Other captures in the catalog.
  for (int i = 0; i < 4; ++i) {
    const std::string other = tu::CaptureId(absl::StrCat("other-", i));
    ASSERT_TRUE(
        a->store->PutStatus("node-a", tu::Status(other, "node-a")).ok());
  }
  std::vector<uint64_t> acks;
  Feed(a->store.get(), "node-a", chunks, &acks);
  EXPECT_EQ(acks, dir_acks);
  // One object per batch (ring0's split where the agent skipped two
  // records).
  EXPECT_EQ(DataKeys(id).size(), 3u);

  auto points = a->store->ResumePoints("node-a");
  auto dir_points = dir->ResumePoints("node-a");
  ASSERT_EQ(points.size(), dir_points.size());
  for (size_t i = 0; i < points.size(); ++i) {
    EXPECT_EQ(points[i].SerializeAsString(), dir_points[i].SerializeAsString());
  }
  ExpectSameListing(*a->registry.Get(id), *dir_registry.Get(id));
  EXPECT_EQ(a->registry.Get(id)->bytes_lost(), tu::Records(9, 2).size());

  const std::string expected = Download(dir.get(), id);
  auto seqs = ptu::SequenceNumbers(expected);
  ASSERT_TRUE(seqs.ok()) << seqs.status();
  EXPECT_EQ(seqs->size(), 19u);
  EXPECT_EQ(Download(a->store.get(), id), expected);

  // Another replica: a download at once (the catalog entry is read on
  // demand), the listing after a catalog round.
  EXPECT_EQ(Download(b->store.get(), id), expected);
  a->store->FlushCatalog();
  ASSERT_TRUE(b->store->PollCatalog().ok());
  ASSERT_TRUE(b->registry.Get(id).has_value());
  EXPECT_EQ(b->registry.List().size(), 5u);
  ExpectSameListing(*b->registry.Get(id), *dir_registry.Get(id));
  EXPECT_EQ(b->store->NodesWithCaptures(), std::set<std::string>{"node-a"});
  EXPECT_EQ(b->store->total_bytes(), dir->total_bytes());
}

// A capture id another node's agent created through another replica, not
// yet listed here, stays that node's: refused, and our node is not harmed.
TEST_F(ObjectStoreTest, AnotherNodesCaptureIsRefusedBeforeItIsListed) {
  const std::string id = tu::CaptureId("web-1");
  auto a = OpenReplica("replica-a");
  auto b = OpenReplica("replica-b");
  ASSERT_TRUE(a->store->AcquireNode("node-a", {}).ok());  // node-a epoch 1
  a->store->ReleaseNode("node-a");
  ASSERT_TRUE(b->store->AcquireNode("node-a", {}).ok());  // node-a epoch 2
  ASSERT_TRUE(a->store->AcquireNode("node-b", {}).ok());  // node-b epoch 1
  ASSERT_TRUE(b->store->PutStatus("node-a", tu::Status(id, "node-a")).ok());
  const absl::Status refused =
      a->store->PutStatus("node-b", tu::Status(id, "node-b"));
  EXPECT_EQ(refused.code(), absl::StatusCode::kPermissionDenied) << refused;
  const std::string mine = tu::CaptureId("web-2");
  EXPECT_TRUE(a->store->PutStatus("node-b", tu::Status(mine, "node-b")).ok());
  const auto c = tu::MakeChunk(id, "run-1-w5/ring0", 0, 0, tu::PcapFile(0, 2));
  EXPECT_EQ(a->store->AppendBatch("node-b", {&c}).error.code(),
            absl::StatusCode::kFailedPrecondition);
}

// The second replica may not write the node while the first holds it: it
// names the holder for the agent's redirect.
TEST_F(ObjectStoreTest, AcquiringANodeHeldElsewhereNamesTheHolder) {
  auto a = OpenReplica("replica-a");
  auto b = OpenReplica("replica-b");
  ASSERT_TRUE(a->store->AcquireNode("node-a", {}).ok());
  const absl::Status refused = b->store->AcquireNode("node-a", {});
  EXPECT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition) << refused;
  EXPECT_TRUE(absl::StrContains(refused.message(), "replica-a")) << refused;
  auto to = refused.GetPayload(kRedirectPayload);
  ASSERT_TRUE(to.has_value());
  EXPECT_EQ(std::string(*to), a->ownership->address());
  // Writes of a node not held are refused as a lost node's.
  const std::string id = tu::CaptureId("web-1");
  EXPECT_EQ(b->store->PutStatus("node-a", tu::Status(id, "node-a")).code(),
            absl::StatusCode::kAborted);
  // Calls nest: the node is released with the last release.
  ASSERT_TRUE(a->store->AcquireNode("node-a", {}).ok());
  a->store->ReleaseNode("node-a");
  EXPECT_TRUE(a->ownership->Holds("node-a"));
  a->store->ReleaseNode("node-a");
  EXPECT_FALSE(a->ownership->Holds("node-a"));
  EXPECT_TRUE(b->store->AcquireNode("node-a", {}).ok());
}

// A replica taking a node over resumes at the stored ends of every file,
// including bytes acknowledged after the catalog entry was last written;
// the deposed replica's late catalog write is refused (Aborted).
TEST_F(ObjectStoreTest, TakeoverResumesAtTheStoredEndsAndFencesTheOldWriter) {
  const std::string id = tu::CaptureId("web-1");
  auto a = OpenReplica("replica-a");
  auto b = OpenReplica("replica-b");
  std::vector<std::string> lost;
  a->store->SetOnNodeLost(
      [&](const std::string& node) { lost.push_back(node); });
  FeedWithUnwrittenCounts(a.get(), id);
  const auto a_points = a->store->ResumePoints("node-a");
  const Capture a_listing = *a->registry.Get(id);
  auto entry = StoredEntry(id);
  ASSERT_TRUE(entry.ok()) << entry.status();
  EXPECT_EQ(entry->files.size(), 1u);  // ring1 is in the objects only

  // A's lease expires without A noticing (a long pause); B takes over.
  a->ownership->Expire("node-a", /*tell=*/false);
  ASSERT_TRUE(b->store->AcquireNode("node-a", {}).ok());
  auto b_points = b->store->ResumePoints("node-a");
  ASSERT_EQ(b_points.size(), a_points.size());
  for (size_t i = 0; i < b_points.size(); ++i) {
    EXPECT_EQ(b_points[i].SerializeAsString(), a_points[i].SerializeAsString());
  }
  ExpectSameListing(*b->registry.Get(id), a_listing);

  // A wakes up: its next catalog write finds B's epoch.
  Capture stopped = tu::Status(id, "node-a", Capture::STOPPED);
  const absl::Status late = a->store->PutStatus("node-a", stopped);
  EXPECT_EQ(late.code(), absl::StatusCode::kAborted) << late;
  EXPECT_EQ(lost, std::vector<std::string>{"node-a"});
  // And it writes nothing more for that node.
  const auto next = tu::MakeChunk(id, "run-1-w5/ring1", 0,
                                  a_points.back().offset(), tu::Records(21, 1));
  EXPECT_EQ(a->store->AppendBatch("node-a", {&next}).error.code(),
            absl::StatusCode::kAborted);
  ASSERT_TRUE(b->store->PollCatalog().ok());
  EXPECT_EQ(b->registry.Get(id)->state(), Capture::RUNNING);
  // B goes on where A stopped.
  BatchResult r = b->store->AppendBatch("node-a", {&next});
  ASSERT_TRUE(r.error.ok()) << r.error;
  EXPECT_EQ(r.results[0].offset,
            a_points.back().offset() + tu::Records(21, 1).size());
  // A lists what B writes from now on.
  ASSERT_TRUE(
      b->store->PutStatus("node-a", tu::Status(id, "node-a", Capture::STOPPED))
          .ok());
  ASSERT_TRUE(a->store->PollCatalog().ok());
  EXPECT_EQ(a->registry.Get(id)->state(), Capture::STOPPED);
}

// Losing the lease (the renewal noticed) ends the node's stream and fences
// every later write of that node.
TEST_F(ObjectStoreTest, ALostLeaseIsReportedAndFencesWrites) {
  const std::string id = tu::CaptureId("web-1");
  auto a = OpenReplica("replica-a");
  std::vector<std::string> lost;
  a->store->SetOnNodeLost(
      [&](const std::string& node) { lost.push_back(node); });
  ASSERT_TRUE(a->store->AcquireNode("node-a", {}).ok());
  ASSERT_TRUE(a->store->PutStatus("node-a", tu::Status(id, "node-a")).ok());
  a->ownership->Expire("node-a", /*tell=*/true);
  EXPECT_EQ(lost, std::vector<std::string>{"node-a"});
  EXPECT_EQ(a->store->PutStatus("node-a", tu::Status(id, "node-a")).code(),
            absl::StatusCode::kAborted);
  const auto c = tu::MakeChunk(id, "run-1-w5/ring0", 0, 0, tu::PcapFile(0, 2));
  EXPECT_EQ(a->store->AppendBatch("node-a", {&c}).error.code(),
            absl::StatusCode::kAborted);
  a->store->ReleaseNode("node-a");
  // Taken again: loaded afresh, writable.
  ASSERT_TRUE(a->store->AcquireNode("node-a", {}).ok());
  EXPECT_TRUE(a->store->AppendBatch("node-a", {&c}).error.ok());
}

// A batch whose PUT landed but whose reply was lost is retried: the object
// exists (412), covers the batch, and the bytes are stored once.
TEST_F(ObjectStoreTest, ARetriedBatchIsStoredOnce) {
  const std::string id = tu::CaptureId("web-1");
  auto a = OpenReplica("replica-a");
  ASSERT_TRUE(a->store->AcquireNode("node-a", {}).ok());
  ASSERT_TRUE(a->store->PutStatus("node-a", tu::Status(id, "node-a")).ok());
  const auto c0 = tu::MakeChunk(id, "run-1-w5/ring0", 0, 0, tu::PcapFile(0, 3));
  const auto c1 = tu::MakeChunk(id, "run-1-w5/ring0", 0,
                                tu::PcapFile(0, 3).size(), tu::Records(3, 2));
  client_.FailNext(1, MemoryObjectClient::Fault::kAfter);
  BatchResult r = a->store->AppendBatch("node-a", {&c0, &c1});
  EXPECT_EQ(r.error.code(), absl::StatusCode::kUnavailable) << r.error;
  EXPECT_TRUE(r.results.empty());  // nothing acknowledged
  EXPECT_EQ(DataKeys(id).size(), 1u);
  r = a->store->AppendBatch("node-a", {&c0, &c1});
  ASSERT_TRUE(r.error.ok()) << r.error;
  ASSERT_EQ(r.results.size(), 2u);
  EXPECT_EQ(r.results[1].offset, tu::PcapFile(0, 5).size());
  EXPECT_EQ(DataKeys(id).size(), 1u);
  // Known to be stored now: a third copy is a duplicate, no PUT.
  const int puts = client_.calls("PUT");
  r = a->store->AppendBatch("node-a", {&c1});
  ASSERT_TRUE(r.error.ok()) << r.error;
  EXPECT_TRUE(r.results[0].duplicate);
  EXPECT_EQ(client_.calls("PUT"), puts);
  auto seqs = ptu::SequenceNumbers(Download(a->store.get(), id));
  ASSERT_TRUE(seqs.ok()) << seqs.status();
  EXPECT_EQ(*seqs, ptu::Range(0, 5));
  EXPECT_EQ(a->registry.Get(id)->packets(), 5u);
}

// A batch of contiguous chunks is one object of their bytes in order; a
// batch of one chunk is that chunk's bytes.
TEST_F(ObjectStoreTest, ContiguousChunksOfABatchBecomeOneObject) {
  const std::string id = tu::CaptureId("web-1");
  auto a = OpenReplica("replica-a");
  ASSERT_TRUE(a->store->AcquireNode("node-a", {}).ok());
  ASSERT_TRUE(a->store->PutStatus("node-a", tu::Status(id, "node-a")).ok());
  const std::string file = "run-1-w5/ring0";
  const auto c0 = tu::MakeChunk(id, file, 0, 0, tu::PcapFile(0, 3));
  const auto c1 =
      tu::MakeChunk(id, file, 0, tu::PcapFile(0, 3).size(), tu::Records(3, 2));
  const auto c2 =
      tu::MakeChunk(id, file, 0, tu::PcapFile(0, 5).size(), tu::Records(5, 4));
  BatchResult r = a->store->AppendBatch("node-a", {&c0, &c1, &c2});
  ASSERT_TRUE(r.error.ok()) << r.error;
  ASSERT_EQ(r.results.size(), 3u);
  EXPECT_EQ(r.results[2].offset, tu::PcapFile(0, 9).size());
  EXPECT_EQ(DataKeys(id).size(), 1u);
  const auto c3 =
      tu::MakeChunk(id, file, 0, tu::PcapFile(0, 9).size(), tu::Records(9, 1));
  r = a->store->AppendBatch("node-a", {&c3});
  ASSERT_TRUE(r.error.ok()) << r.error;
  EXPECT_EQ(DataKeys(id).size(), 2u);
  auto seqs = ptu::SequenceNumbers(Download(a->store.get(), id));
  ASSERT_TRUE(seqs.ok()) << seqs.status();
  EXPECT_EQ(*seqs, ptu::Range(0, 10));
  EXPECT_EQ(a->registry.Get(id)->packets(), 10u);
}

// The same, retried with more bytes (the agent resends from its last
// acknowledged offset, and more had been written meanwhile): the shorter
// object already stored is kept and the rest goes into an object after it.
// Refusing it as "another writer" ended the stream, and every stream after.
TEST_F(ObjectStoreTest, ARetryWithMoreBytesKeepsTheStoredPrefix) {
  const std::string id = tu::CaptureId("web-1");
  auto a = OpenReplica("replica-a");
  ASSERT_TRUE(a->store->AcquireNode("node-a", {}).ok());
  ASSERT_TRUE(a->store->PutStatus("node-a", tu::Status(id, "node-a")).ok());
  const auto c0 = tu::MakeChunk(id, "run-1-w5/ring0", 0, 0, tu::PcapFile(0, 3));
  client_.FailNext(1, MemoryObjectClient::Fault::kAfter);
  BatchResult r = a->store->AppendBatch("node-a", {&c0});
  EXPECT_EQ(r.error.code(), absl::StatusCode::kUnavailable) << r.error;
  EXPECT_EQ(DataKeys(id).size(), 1u);  // stored, not acknowledged
  const auto more =
      tu::MakeChunk(id, "run-1-w5/ring0", 0, 0, tu::PcapFile(0, 7));
  r = a->store->AppendBatch("node-a", {&more});
  ASSERT_TRUE(r.error.ok()) << r.error;
  ASSERT_EQ(r.results.size(), 1u);
  EXPECT_EQ(r.results[0].offset, tu::PcapFile(0, 7).size());
  EXPECT_EQ(DataKeys(id).size(), 2u);  // the prefix, then the rest
  auto seqs = ptu::SequenceNumbers(Download(a->store.get(), id));
  ASSERT_TRUE(seqs.ok()) << seqs.status();
  EXPECT_EQ(*seqs, ptu::Range(0, 7));
  EXPECT_EQ(a->registry.Get(id)->packets(), 7u);
  // A new holder's scan finds the same end.
  a->store->ReleaseNode("node-a");
  auto b = OpenReplica("replica-b");
  ASSERT_TRUE(b->store->AcquireNode("node-a", {}).ok());
  ASSERT_EQ(b->store->ResumePoints("node-a").size(), 1u);
  EXPECT_EQ(b->store->ResumePoints("node-a")[0].offset(),
            tu::PcapFile(0, 7).size());
}

// Objects that overlap (a deposed writer's batches cut differently) are
// read once: sorted by offset, bytes already sent skipped; a takeover
// finds the stored end past them.
TEST_F(ObjectStoreTest, OverlappingObjectsAreReadOnce) {
  const std::string id = tu::CaptureId("web-1");
  auto a = OpenReplica("replica-a");
  ASSERT_TRUE(a->store->AcquireNode("node-a", {}).ok());
  ASSERT_TRUE(a->store->PutStatus("node-a", tu::Status(id, "node-a")).ok());
  const std::string file = tu::PcapFile(0, 10);
  const uint64_t rec3 = tu::PcapFile(0, 3).size();
  const uint64_t rec6 = tu::PcapFile(0, 6).size();
  const auto c0 =
      tu::MakeChunk(id, "run-1-w5/ring0", 0, 0, file.substr(0, rec6));
  ASSERT_TRUE(a->store->AppendBatch("node-a", {&c0}).error.ok());
  // Another writer's object: records 3..9 at the offset of record 3.
  ObjectLayout layout("cluster");
  ASSERT_TRUE(client_
                  .Put(layout.DataKey(id, "run-1-w5/ring0", 0, rec3),
                       file.substr(rec3), s3::PutOptions())
                  .ok());
  auto seqs = ptu::SequenceNumbers(Download(a->store.get(), id));
  ASSERT_TRUE(seqs.ok()) << seqs.status();
  EXPECT_EQ(*seqs, ptu::Range(0, 10));
  a->store->ReleaseNode("node-a");
  auto b = OpenReplica("replica-b");
  ASSERT_TRUE(b->store->AcquireNode("node-a", {}).ok());
  auto points = b->store->ResumePoints("node-a");
  ASSERT_EQ(points.size(), 1u);
  EXPECT_EQ(points[0].offset(), file.size());
  EXPECT_EQ(b->registry.Get(id)->packets(), 10u);
  EXPECT_EQ(b->registry.Get(id)->bytes(), file.size());
}

// The ring is mirrored: a file beyond the capture's max_files loses its
// objects, as the directory store deletes its file.
TEST_F(ObjectStoreTest, RunningCaptureMirrorsTheRing) {
  const std::string id = tu::CaptureId("web-1");
  auto a = OpenReplica("replica-a");
  ASSERT_TRUE(a->store->AcquireNode("node-a", {}).ok());
  ASSERT_TRUE(
      a->store
          ->PutStatus("node-a", tu::Status(id, "node-a", Capture::RUNNING, 2))
          .ok());
  const std::vector<Chunk> chunks = {
      tu::MakeChunk(id, "run-1-w2/ring0", 0, 0, tu::PcapFile(0, 3)),
      tu::MakeChunk(id, "run-1-w2/ring1", 0, 0, tu::PcapFile(3, 3)),
      tu::MakeChunk(id, "run-1-w2/ring0", 1, 0, tu::PcapFile(6, 3))};
  for (const Chunk& c : chunks) {
    ASSERT_TRUE(a->store->AppendBatch("node-a", {&c}).error.ok());
  }
  auto shown = a->registry.Get(id);
  ASSERT_EQ(shown->files_size(), 2);
  EXPECT_EQ(shown->files(0).name(), "run-1-w2/ring1");
  EXPECT_EQ(shown->files(1).generation(), 1u);
  for (const std::string& key : DataKeys(id)) {
    EXPECT_FALSE(absl::StrContains(key, "ring0/00000000000000000000/")) << key;
  }
  EXPECT_EQ(DataKeys(id).size(), 2u);
  auto seqs = ptu::SequenceNumbers(Download(a->store.get(), id));
  ASSERT_TRUE(seqs.ok());
  EXPECT_EQ(*seqs, ptu::Range(3, 6));
}

// Retention runs on any replica from the catalog: the data objects, then the
// entry, go; a second replica doing the same finds nothing left to do.
TEST_F(ObjectStoreTest, RetentionDeletesObjectsThenTheEntryOnAnyReplica) {
  const std::string id = tu::CaptureId("web-1");
  const std::string keep = tu::CaptureId("web-2");
  auto a = OpenReplica("replica-a");
  auto b = OpenReplica("replica-b");
  ASSERT_TRUE(a->store->AcquireNode("node-a", {}).ok());
  for (const auto& c : {id, keep}) {
    ASSERT_TRUE(a->store->PutStatus("node-a", tu::Status(c, "node-a")).ok());
    const auto chunk =
        tu::MakeChunk(c, "run-1-w5/ring0", 0, 0, tu::PcapFile(0, 3));
    ASSERT_TRUE(a->store->AppendBatch("node-a", {&chunk}).error.ok());
  }
  ASSERT_TRUE(
      a->store->PutStatus("node-a", tu::Status(id, "node-a", Capture::STOPPED))
          .ok());
  a->store->FlushCatalog();
  ASSERT_TRUE(b->store->PollCatalog().ok());
  EXPECT_EQ(FromProto(b->registry.Get(id)->expire_time()),
            FromProto(a->registry.Get(id)->expire_time()));
  Advance(absl::Minutes(59));
  EXPECT_TRUE(b->store->Maintain().empty());
  Advance(absl::Minutes(2));
  EXPECT_EQ(b->store->Maintain(), std::vector<std::string>{id});
  EXPECT_TRUE(DataKeys(id).empty());
  EXPECT_FALSE(client_.Objects().count("cluster/catalog/" + id + ".pb"));
  EXPECT_FALSE(b->registry.Get(id).has_value());
  EXPECT_EQ(b->store->stats().expired, 1u);
  // The holder learns it at its next catalog round; deleting again is
  // harmless.
  ASSERT_TRUE(a->store->PollCatalog().ok());
  EXPECT_FALSE(a->registry.Get(id).has_value());
  EXPECT_TRUE(a->store->Maintain().empty());
  EXPECT_TRUE(a->registry.Get(keep).has_value());
  EXPECT_EQ(DataKeys(keep).size(), 1u);
  EXPECT_EQ(a->store->OpenReader(id, false).status().code(),
            absl::StatusCode::kNotFound);
}

// Over the byte budget, the oldest stopped capture goes first; running
// ones never do.
TEST_F(ObjectStoreTest, ByteBudgetEvictsTheOldestStoppedCapture) {
  max_bytes_ = 2 * tu::PcapFile(0, 10).size();
  auto a = OpenReplica("replica-a");
  ASSERT_TRUE(a->store->AcquireNode("node-a", {}).ok());
  const std::string x = tu::CaptureId("x"), y = tu::CaptureId("y"),
                    z = tu::CaptureId("z");
  for (const auto& c : {x, y, z}) {
    ASSERT_TRUE(a->store->PutStatus("node-a", tu::Status(c, "node-a")).ok());
    const auto chunk =
        tu::MakeChunk(c, "run-1-w5/ring0", 0, 0, tu::PcapFile(0, 10));
    ASSERT_TRUE(a->store->AppendBatch("node-a", {&chunk}).error.ok());
  }
  ASSERT_TRUE(
      a->store->PutStatus("node-a", tu::Status(x, "node-a", Capture::STOPPED))
          .ok());
  Advance(absl::Minutes(1));
  ASSERT_TRUE(
      a->store->PutStatus("node-a", tu::Status(y, "node-a", Capture::STOPPED))
          .ok());
  EXPECT_EQ(a->store->Maintain(), std::vector<std::string>{x});
  EXPECT_EQ(a->store->stats().evicted_for_budget, 1u);
  EXPECT_TRUE(a->store->Maintain().empty());
  EXPECT_TRUE(DataKeys(x).empty());
  EXPECT_EQ(DataKeys(y).size(), 1u);
}

// An object store that fails: the batch is refused with Unavailable and
// nothing is acknowledged; once it is back the same batch is stored.
TEST_F(ObjectStoreTest, AnUnavailableObjectStoreAcknowledgesNothing) {
  const std::string id = tu::CaptureId("web-1");
  auto a = OpenReplica("replica-a");
  ASSERT_TRUE(a->store->AcquireNode("node-a", {}).ok());
  ASSERT_TRUE(a->store->PutStatus("node-a", tu::Status(id, "node-a")).ok());
  const auto c0 = tu::MakeChunk(id, "run-1-w5/ring0", 0, 0, tu::PcapFile(0, 3));
  client_.SetDown(true);
  BatchResult r = a->store->AppendBatch("node-a", {&c0});
  EXPECT_EQ(r.error.code(), absl::StatusCode::kUnavailable) << r.error;
  EXPECT_TRUE(r.results.empty());
  EXPECT_EQ(
      a->store->PutStatus("node-a", tu::Status(id, "node-a", Capture::STOPPED))
          .code(),
      absl::StatusCode::kUnavailable);
  EXPECT_TRUE(a->store->ResumePoints("node-a").empty());
  client_.SetDown(false);
  // A catalog write that landed although its reply was lost: the next
  // write finds its own epoch there and goes on.
  client_.FailNext(1, MemoryObjectClient::Fault::kAfter);
  Capture changed = tu::Status(id, "node-a");
  changed.set_message("first");
  EXPECT_EQ(a->store->PutStatus("node-a", changed).code(),
            absl::StatusCode::kUnavailable);
  changed.set_message("second");
  ASSERT_TRUE(a->store->PutStatus("node-a", changed).ok());
  EXPECT_EQ(a->registry.Get(id)->message(), "second");
  r = a->store->AppendBatch("node-a", {&c0});
  ASSERT_TRUE(r.error.ok()) << r.error;
  EXPECT_EQ(r.results[0].offset, tu::PcapFile(0, 3).size());
  auto seqs = ptu::SequenceNumbers(Download(a->store.get(), id));
  ASSERT_TRUE(seqs.ok());
  EXPECT_EQ(*seqs, ptu::Range(0, 3));
}

// A replica starting while the object store is down opens anyway (the
// aggregator keeps running), refuses to take nodes until it is back, and
// catches up at its next catalog round.
TEST_F(ObjectStoreTest, OpensWhileTheObjectStoreIsDownAndCatchesUp) {
  const std::string id = tu::CaptureId("web-1");
  auto a = OpenReplica("replica-a");
  ASSERT_TRUE(a->store->AcquireNode("node-a", {}).ok());
  ASSERT_TRUE(a->store->PutStatus("node-a", tu::Status(id, "node-a")).ok());
  client_.SetDown(true);
  auto b = OpenReplica("replica-b");
  ASSERT_NE(b, nullptr);
  EXPECT_FALSE(b->registry.Get(id).has_value());
  EXPECT_EQ(b->store->AcquireNode("node-b", {}).code(),
            absl::StatusCode::kUnavailable);
  EXPECT_FALSE(b->ownership->Holds("node-b"));  // not kept half-loaded
  client_.SetDown(false);
  ASSERT_TRUE(b->store->PollCatalog().ok());
  EXPECT_TRUE(b->registry.Get(id).has_value());
  EXPECT_TRUE(b->store->AcquireNode("node-b", {}).ok());
}

// A followed download on another replica sees new bytes and new files, and
// ends once the capture stopped and everything was read.
TEST_F(ObjectStoreTest, FollowSeesNewBytesAndEndsWhenStopped) {
  const std::string id = tu::CaptureId("web-1");
  auto a = OpenReplica("replica-a");
  auto b = OpenReplica("replica-b");
  ASSERT_TRUE(a->store->AcquireNode("node-a", {}).ok());
  ASSERT_TRUE(
      a->store
          ->PutStatus("node-a", tu::Status(id, "node-a", Capture::RUNNING, 3))
          .ok());
  const std::string first = tu::PcapFile(0, 2);
  const auto c0 = tu::MakeChunk(id, "run-1-w3/ring0", 0, 0, first);
  ASSERT_TRUE(a->store->AppendBatch("node-a", {&c0}).error.ok());
  ASSERT_TRUE(b->store->PollCatalog().ok());
  auto reader = b->store->OpenReader(id, /*follow=*/true);
  ASSERT_TRUE(reader.ok()) << reader.status();
  std::string out;
  // Reads until `want` bytes arrived (the reader lists again every second).
  auto read_until = [&](size_t want) {
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    while (out.size() < want && absl::Now() < deadline) {
      auto n = (*reader)->Read(&out, 50);
      ASSERT_TRUE(n.ok()) << n.status();
      if (*n == 0) absl::SleepFor(absl::Milliseconds(50));
    }
    EXPECT_EQ(out.size(), want);
  };
  read_until(first.size());
  EXPECT_EQ(out, first);
  EXPECT_FALSE((*reader)->Done());
  const auto c1 =
      tu::MakeChunk(id, "run-1-w3/ring0", 0, first.size(), tu::Records(2, 2));
  ASSERT_TRUE(a->store->AppendBatch("node-a", {&c1}).error.ok());
  read_until(first.size() + tu::Records(2, 2).size());
  const auto c2 = tu::MakeChunk(id, "run-1-w3/ring1", 0, 0, tu::PcapFile(4, 3));
  ASSERT_TRUE(a->store->AppendBatch("node-a", {&c2}).error.ok());
  read_until(first.size() + tu::Records(2, 5).size());
  EXPECT_FALSE((*reader)->Done());
  // Stopped, with a last chunk: Done only once that was read too.
  const auto c3 = tu::MakeChunk(id, "run-1-w3/ring1", 0,
                                tu::PcapFile(4, 3).size(), tu::Records(7, 1));
  ASSERT_TRUE(a->store->AppendBatch("node-a", {&c3}).error.ok());
  ASSERT_TRUE(
      a->store
          ->PutStatus("node-a", tu::Status(id, "node-a", Capture::STOPPED, 3))
          .ok());
  ASSERT_TRUE(b->store->PollCatalog().ok());
  EXPECT_FALSE((*reader)->Done());
  read_until(first.size() + tu::Records(2, 6).size());
  EXPECT_TRUE((*reader)->Done());
  auto seqs = ptu::SequenceNumbers(out);
  ASSERT_TRUE(seqs.ok()) << seqs.status();
  EXPECT_EQ(*seqs, ptu::Range(0, 8));
}

// A capture its node no longer reports stops and starts its retention,
// whether the replica holding the node says so (the agent's inventory) or
// any replica does for a node whose agent is gone (the node monitor).
TEST_F(ObjectStoreTest, MarkGoneOnTheHolderOrOnAnyReplica) {
  const std::string kept = tu::CaptureId("kept");
  const std::string gone = tu::CaptureId("gone");
  auto a = OpenReplica("replica-a");
  auto b = OpenReplica("replica-b");
  ASSERT_TRUE(a->store->AcquireNode("node-a", {}).ok());
  for (const auto& id : {kept, gone}) {
    ASSERT_TRUE(a->store->PutStatus("node-a", tu::Status(id, "node-a")).ok());
  }
  a->store->MarkGone("node-a", {kept}, "no longer reported by node node-a");
  auto shown = a->registry.Get(gone);
  EXPECT_EQ(shown->state(), Capture::STOPPED);
  EXPECT_EQ(shown->stop_reason(), packetcapture::v1::NOT_ON_NODE);
  EXPECT_EQ(shown->message(), "no longer reported by node node-a");
  EXPECT_TRUE(shown->has_expire_time());
  EXPECT_TRUE(a->registry.Get(kept)->on_node());
  ASSERT_TRUE(b->store->PollCatalog().ok());
  EXPECT_FALSE(b->registry.Get(gone)->on_node());
  EXPECT_EQ(b->store->NodesWithCaptures(), std::set<std::string>{"node-a"});

  // The agent goes away; another replica's node monitor marks the rest.
  a->store->ReleaseNode("node-a");
  b->store->MarkGone("node-a", {}, "node node-a was deleted");
  EXPECT_FALSE(b->registry.Get(kept)->on_node());
  EXPECT_EQ(b->registry.Get(kept)->message(), "node node-a was deleted");
  EXPECT_TRUE(b->store->NodesWithCaptures().empty());
  ASSERT_TRUE(a->store->PollCatalog().ok());
  EXPECT_FALSE(a->registry.Get(kept)->on_node());
  EXPECT_TRUE(a->store->NodesWithCaptures().empty());
  // The agent comes back to either replica: its status runs again.
  ASSERT_TRUE(a->store->AcquireNode("node-a", {}).ok());
  ASSERT_TRUE(a->store->PutStatus("node-a", tu::Status(kept, "node-a")).ok());
  EXPECT_TRUE(a->registry.Get(kept)->on_node());
  EXPECT_FALSE(a->registry.Get(kept)->has_expire_time());
}

// A takeover reads back and re-stamps the captures that can still grow,
// not every capture the node ever had: those its agent drained (reported
// off the node) and the holder wrote so are taken as written.
TEST_F(ObjectStoreTest, ATakeoverSkipsTheNodesDrainedCaptures) {
  const std::string running = tu::CaptureId("running");
  std::vector<std::string> drained;
  for (int i = 0; i < 3; ++i) {
    drained.push_back(tu::CaptureId(absl::StrCat("drained-", i)));
  }
  auto a = OpenReplica("replica-a");
  auto b = OpenReplica("replica-b");
  ASSERT_TRUE(a->store->AcquireNode("node-a", {}).ok());
  std::vector<uint64_t> acks;
  for (const auto& id : drained) {
    ASSERT_TRUE(a->store->PutStatus("node-a", tu::Status(id, "node-a")).ok());
    Feed(a->store.get(), "node-a", SampleChunks(id), &acks);
    // The agent's last word once the node's files are uploaded and deleted.
    Capture tomb = tu::Status(id, "node-a", Capture::STOPPED);
    tomb.set_on_node(false);
    ASSERT_TRUE(a->store->PutStatus("node-a", tomb).ok());
    auto entry =
        DecodeCatalogEntry(client_.Objects()["cluster/catalog/" + id + ".pb"]);
    ASSERT_TRUE(entry.ok()) << entry.status();
    EXPECT_TRUE(entry->files_final);
  }
  // Bytes after the agent's last word (an agent never sends them) still
  // reach the entry before they are acknowledged.
  const Chunk late =
      tu::MakeChunk(drained[0], "run-1-w5/ring1", 0, tu::PcapFile(14, 7).size(),
                    tu::Records(21, 1));
  ASSERT_TRUE(a->store->AppendBatch("node-a", {&late}).error.ok());
  ASSERT_TRUE(
      a->store->PutStatus("node-a", tu::Status(running, "node-a")).ok());
  Feed(a->store.get(), "node-a", SampleChunks(running), &acks);
  std::map<std::string, Capture> a_listings;
  for (const auto& id : drained) a_listings[id] = *a->registry.Get(id);
  const std::string a_download = Download(a->store.get(), drained[0]);

  a->ownership->Expire("node-a", /*tell=*/false);
  absl::Mutex mu;
  // "METHOD key" of the takeover (on this thread: not the replicas'
  // compaction threads).
  std::vector<std::string> calls;
  const std::thread::id self = std::this_thread::get_id();
  client_.SetHook([&](const std::string& method, const std::string& key) {
    if (std::this_thread::get_id() != self) return;
    absl::MutexLock lock(&mu);
    calls.push_back(absl::StrCat(method, " ", key));
  });
  ASSERT_TRUE(b->store->AcquireNode("node-a", {}).ok());
  client_.SetHook(nullptr);
  // The catalog listed and its entries read once; the running capture's
  // data objects listed (and read past its entry's counts) and its entry
  // re-stamped; nothing of the three drained ones.
  absl::MutexLock lock(&mu);
  const std::string all = absl::StrJoin(calls, "\n");
  EXPECT_EQ(std::count(calls.begin(), calls.end(), "LIST cluster/catalog/"), 1)
      << all;
  EXPECT_TRUE(absl::StrContains(all, "LIST cluster/data/" + running + "/"))
      << all;
  EXPECT_TRUE(absl::StrContains(all, "PUT cluster/catalog/" + running + ".pb"))
      << all;
  for (const std::string& call : calls) {
    for (const auto& id : drained) {
      EXPECT_FALSE(absl::StrContains(call, "data/" + id) ||
                   absl::StrContains(call, "PUT cluster/catalog/" + id))
          << call;
    }
  }
  for (const auto& id : drained) {
    ExpectSameListing(*b->registry.Get(id), a_listings[id]);
  }
  EXPECT_EQ(Download(b->store.get(), drained[0]), a_download);
  // The running one is b's now: a is fenced off it.
  EXPECT_EQ(
      a->store
          ->PutStatus("node-a", tu::Status(running, "node-a", Capture::STOPPED))
          .code(),
      absl::StatusCode::kAborted);
}

// An agent back after a disconnect no longer has a capture: the new
// holder stamps that capture's entry and marks it gone in one write, not
// a stamp and then a second write.
TEST_F(ObjectStoreTest, ATakeoverMarksWhatTheAgentNoLongerHasInOneWrite) {
  const std::string old_id = tu::CaptureId("old");
  const std::string kept = tu::CaptureId("kept");
  auto a = OpenReplica("replica-a");
  auto b = OpenReplica("replica-b");
  ASSERT_TRUE(a->store->AcquireNode("node-a", {}).ok());
  std::vector<uint64_t> acks;
  for (const auto& id : {old_id, kept}) {
    ASSERT_TRUE(a->store->PutStatus("node-a", tu::Status(id, "node-a")).ok());
    Feed(a->store.get(), "node-a", SampleChunks(id), &acks);
  }
  const Capture a_listing = *a->registry.Get(old_id);
  a->store->ReleaseNode("node-a");

  absl::Mutex mu;
  std::vector<std::string> puts;  // of the takeover, on this thread
  const std::thread::id self = std::this_thread::get_id();
  client_.SetHook([&](const std::string& method, const std::string& key) {
    if (std::this_thread::get_id() != self || method != "PUT") return;
    absl::MutexLock lock(&mu);
    puts.push_back(key);
  });
  CaptureStore::NodeReport report;
  report.present = std::set<std::string>{kept};
  report.gone_reason = "no longer reported by node node-a";
  ASSERT_TRUE(b->store->AcquireNode("node-a", report).ok());
  client_.SetHook(nullptr);
  {
    absl::MutexLock lock(&mu);
    const std::string old_key = "cluster/catalog/" + old_id + ".pb";
    EXPECT_EQ(std::count(puts.begin(), puts.end(), old_key), 1)
        << absl::StrJoin(puts, "\n");
  }
  auto entry = DecodeCatalogEntry(
      client_.Objects()["cluster/catalog/" + old_id + ".pb"]);
  ASSERT_TRUE(entry.ok()) << entry.status();
  EXPECT_EQ(entry->replica, "replica-b");
  EXPECT_FALSE(entry->meta.status.on_node());
  EXPECT_TRUE(entry->files_final);
  const Capture shown = *b->registry.Get(old_id);
  EXPECT_EQ(shown.state(), Capture::STOPPED);
  EXPECT_EQ(shown.stop_reason(), packetcapture::v1::NOT_ON_NODE);
  EXPECT_EQ(shown.message(), "no longer reported by node node-a");
  EXPECT_EQ(shown.bytes(), a_listing.bytes());
  EXPECT_TRUE(b->registry.Get(kept)->on_node());
  // The stamp fences the last holder as before.
  EXPECT_EQ(a->store->PutStatus("node-a", tu::Status(old_id, "node-a")).code(),
            absl::StatusCode::kAborted);
}

// An entry marked off the node by a replica that did not hold it carries
// the last holder's last counts, which may lag its objects: the next holder
// still reads those back.
TEST_F(ObjectStoreTest, ATakeoverRecountsCapturesMarkedGoneByANonHolder) {
  const std::string id = tu::CaptureId("web-1");
  auto a = OpenReplica("replica-a");
  auto b = OpenReplica("replica-b");
  FeedWithUnwrittenCounts(a.get(), id);  // then a dies
  const Capture a_listing = *a->registry.Get(id);
  a->ownership->Expire("node-a", /*tell=*/false);

  ASSERT_TRUE(b->store->PollCatalog().ok());
  b->store->MarkGone("node-a", {}, "node node-a was deleted");
  auto entry =
      DecodeCatalogEntry(client_.Objects()["cluster/catalog/" + id + ".pb"]);
  ASSERT_TRUE(entry.ok()) << entry.status();
  EXPECT_FALSE(entry->files_final);
  EXPECT_LT(b->registry.Get(id)->bytes(), a_listing.bytes());

  ASSERT_TRUE(b->store->AcquireNode("node-a", {}).ok());
  const Capture b_listing = *b->registry.Get(id);
  EXPECT_EQ(b_listing.bytes(), a_listing.bytes());
  EXPECT_EQ(b_listing.packets(), a_listing.packets());
  EXPECT_FALSE(b_listing.on_node());
  entry =
      DecodeCatalogEntry(client_.Objects()["cluster/catalog/" + id + ".pb"]);
  ASSERT_TRUE(entry.ok()) << entry.status();
  EXPECT_TRUE(entry->files_final);  // recounted by a holder
  EXPECT_EQ(entry->replica, "replica-b");
}

// How soon a capture made through one replica is listed by another that
// polls the catalog on its own (the listing-freshness bound).
TEST_F(ObjectStoreTest, AnotherReplicaListsANewCaptureWithinAPollInterval) {
  constexpr absl::Duration kPoll = absl::Milliseconds(200);
  auto a = OpenReplica("replica-a");
  auto b = OpenReplica("replica-b", kPoll);
  ASSERT_TRUE(a->store->AcquireNode("node-a", {}).ok());
  absl::Duration worst;
  for (int i = 0; i < 5; ++i) {
    const std::string id = tu::CaptureId(absl::StrCat("web-", i));
    const absl::Time put = absl::Now();
    ASSERT_TRUE(a->store->PutStatus("node-a", tu::Status(id, "node-a")).ok());
    while (!b->registry.Get(id) && absl::Now() - put < absl::Seconds(5)) {
      absl::SleepFor(absl::Milliseconds(5));
    }
    ASSERT_TRUE(b->registry.Get(id).has_value());
    worst = std::max(worst, absl::Now() - put);
  }
  std::cout << "listing freshness: poll interval " << kPoll
            << ", worst of 5: " << worst << std::endl;
  // Loose for loaded CI machines: a missed round would show as 2 x kPoll.
  EXPECT_LT(worst, 2 * kPoll + absl::Milliseconds(300));
}

// The flusher writes a running capture's counts once per write interval,
// not once per batch, but a new file of the listing within a second.
TEST_F(ObjectStoreTest, CountsReachTheStoreOncePerWriteInterval) {
  const std::string id = tu::CaptureId("web-1");
  // The flusher ticks every second of real time; the interval is measured
  // on the test's clock, which moves only when told.
  auto a = OpenReplica("replica-a", absl::Hours(1), absl::Seconds(5));
  ASSERT_TRUE(a->store->AcquireNode("node-a", {}).ok());
  ASSERT_TRUE(a->store->PutStatus("node-a", tu::Status(id, "node-a")).ok());
  std::map<std::string, uint64_t> offsets;
  auto append = [&](const std::string& file, int first, int n) {
    const std::string data =
        offsets[file] == 0 ? tu::PcapFile(first, n) : tu::Records(first, n);
    const auto c = tu::MakeChunk(id, file, 0, offsets[file], data);
    ASSERT_TRUE(a->store->AppendBatch("node-a", {&c}).error.ok());
    offsets[file] += data.size();
  };
  // Packets per file in the stored entry, after up to `wait` of real time
  // for it to reach `want` (the last value read if it does not).
  auto catalog_packets = [&](absl::Duration wait,
                             std::map<std::string, uint64_t> want) {
    std::map<std::string, uint64_t> got;
    const absl::Time deadline = absl::Now() + wait;
    do {
      absl::SleepFor(absl::Milliseconds(50));
      auto entry = StoredEntry(id);
      EXPECT_TRUE(entry.ok()) << entry.status();
      if (!entry.ok()) return got;
      got.clear();
      for (const auto& [k, f] : entry->files) got[k.first] = f.packets;
    } while (got != want && absl::Now() < deadline);
    return got;
  };
  using Packets = std::map<std::string, uint64_t>;

  int puts = client_.calls("PUT");
  append("run-1-w5/ring0", 0, 2);
  // The file is new: listed within about a second.
  EXPECT_EQ(catalog_packets(absl::Seconds(3), {{"run-1-w5/ring0", 2}}),
            (Packets{{"run-1-w5/ring0", 2}}));
  EXPECT_EQ(client_.calls("PUT") - puts, 2);  // the data, the counts

  // More of the same file: counts only, written once the interval passed,
  // then in one write, not one per batch.
  puts = client_.calls("PUT");
  for (int i = 1; i < 20; ++i) append("run-1-w5/ring0", 2 * i, 2);
  EXPECT_EQ(catalog_packets(absl::Milliseconds(2500), {}),
            (Packets{{"run-1-w5/ring0", 2}}));
  EXPECT_EQ(client_.calls("PUT") - puts, 19);
  Advance(absl::Seconds(5));
  EXPECT_EQ(catalog_packets(absl::Seconds(3), {{"run-1-w5/ring0", 40}}),
            (Packets{{"run-1-w5/ring0", 40}}));
  EXPECT_EQ(client_.calls("PUT") - puts, 20);

  // The ring moves on: the new file goes out without waiting.
  append("run-1-w5/ring1", 0, 3);
  EXPECT_EQ(catalog_packets(absl::Seconds(3),
                            {{"run-1-w5/ring0", 40}, {"run-1-w5/ring1", 3}}),
            (Packets{{"run-1-w5/ring0", 40}, {"run-1-w5/ring1", 3}}));
  auto entry = StoredEntry(id);
  ASSERT_TRUE(entry.ok()) << entry.status();
  EXPECT_EQ(entry->replica, "replica-a");
  EXPECT_EQ(entry->epoch, 1);
}

// A stopped capture's last bytes (tcpdump's flush after the agent said
// STOPPED) are in every replica's listing as soon as its data: the counts of
// a stopped capture are its final ones, so they do not wait for the write
// interval as a running capture's do.
TEST_F(ObjectStoreTest, AStoppedCapturesLastCountsAreWrittenAtOnce) {
  const std::string id = tu::CaptureId("web-1");
  auto a = OpenReplica("replica-a");  // writes counts only when flushed
  auto b = OpenReplica("replica-b");
  ASSERT_TRUE(a->store->AcquireNode("node-a", {}).ok());
  ASSERT_TRUE(a->store->PutStatus("node-a", tu::Status(id, "node-a")).ok());
  const std::string head = tu::PcapFile(0, 4);
  const Chunk first = tu::MakeChunk(id, "run-1-w5/ring0", 0, 0, head);
  ASSERT_TRUE(a->store->AppendBatch("node-a", {&first}).error.ok());
  ASSERT_TRUE(
      a->store->PutStatus("node-a", tu::Status(id, "node-a", Capture::STOPPED))
          .ok());
  ASSERT_TRUE(b->store->PollCatalog().ok());
  ASSERT_TRUE(b->registry.Get(id).has_value());
  EXPECT_EQ(b->registry.Get(id)->state(), Capture::STOPPED);
  EXPECT_EQ(b->registry.Get(id)->packets(), 4u);

  // The tail: one more record, then nothing.
  const int puts = client_.calls("PUT");
  const Chunk tail =
      tu::MakeChunk(id, "run-1-w5/ring0", 0, head.size(), tu::Records(4, 1));
  ASSERT_TRUE(a->store->AppendBatch("node-a", {&tail}).error.ok());
  EXPECT_EQ(client_.calls("PUT") - puts, 2);  // the data, the entry
  ASSERT_TRUE(b->store->PollCatalog().ok());
  EXPECT_EQ(b->registry.Get(id)->packets(), 5u);
  EXPECT_EQ(b->registry.Get(id)->bytes(),
            head.size() + tu::Records(4, 1).size());
  auto seqs = ptu::SequenceNumbers(Download(b->store.get(), id));
  ASSERT_TRUE(seqs.ok()) << seqs.status();
  EXPECT_EQ(seqs->size(), 5u);
}

// The counts of every running capture a replica holds go out in one
// object (its board), not in one catalog write per capture; the other
// replicas list them from it.
TEST_F(ObjectStoreTest, ManyCapturesCountsAreOneWrite) {
  auto a = OpenReplica("replica-a");  // writes counts only when flushed
  auto b = OpenReplica("replica-b");
  ASSERT_TRUE(a->store->AcquireNode("node-a", {}).ok());
  constexpr int kCaptures = 10;
  std::vector<std::string> ids;
  for (int i = 0; i < kCaptures; ++i) {
    ids.push_back(tu::CaptureId(absl::StrCat("web-", i)));
    StartCapture(a.get(), "node-a", ids.back(), 2);
  }
  const std::string head = tu::PcapFile(0, 2);
  int puts = client_.calls("PUT");
  a->store->FlushCatalog();
  EXPECT_EQ(client_.calls("PUT") - puts, 1);
  for (const std::string& id : ids) {
    const Chunk c =
        tu::MakeChunk(id, "run-1-w5/ring0", 0, head.size(), tu::Records(2, 3));
    ASSERT_TRUE(a->store->AppendBatch("node-a", {&c}).error.ok());
  }
  puts = client_.calls("PUT");
  a->store->FlushCatalog();
  EXPECT_EQ(client_.calls("PUT") - puts, 1);
  a->store->FlushCatalog();  // nothing changed: nothing written
  EXPECT_EQ(client_.calls("PUT") - puts, 1);

  ASSERT_TRUE(b->store->PollCatalog().ok());
  for (const std::string& id : ids) {
    ASSERT_TRUE(b->registry.Get(id).has_value()) << id;
    EXPECT_EQ(b->registry.Get(id)->packets(), 5u) << id;
    ExpectSameListing(*b->registry.Get(id), *a->registry.Get(id));
  }
  // A status change writes the entry itself, counts included; the board
  // stays as it is until it has something else to say.
  ASSERT_TRUE(
      a->store
          ->PutStatus("node-a", tu::Status(ids[0], "node-a", Capture::STOPPED))
          .ok());
  auto entry = DecodeCatalogEntry(
      client_.Objects()["cluster/catalog/" + ids[0] + ".pb"]);
  ASSERT_TRUE(entry.ok()) << entry.status();
  EXPECT_EQ(entry->files.begin()->second.packets, 5u);
  ASSERT_TRUE(b->store->PollCatalog().ok());
  EXPECT_EQ(b->registry.Get(ids[0])->state(), Capture::STOPPED);
  EXPECT_EQ(b->registry.Get(ids[0])->packets(), 5u);
}

// After a takeover the deposed replica's board names the old epoch: its
// late counts are not listed over the new holder's.
TEST_F(ObjectStoreTest, ADeposedReplicasBoardIsNotTaken) {
  const std::string id = tu::CaptureId("web-1");
  auto a = OpenReplica("replica-a");
  auto b = OpenReplica("replica-b");
  auto c = OpenReplica("replica-c");
  ASSERT_TRUE(a->store->AcquireNode("node-a", {}).ok());
  StartCapture(a.get(), "node-a", id, 2);
  a->store->FlushCatalog();

  // A pauses; B takes the node (epoch 2) and starts from A's board.
  a->ownership->Expire("node-a", /*tell=*/false);
  ASSERT_TRUE(b->store->AcquireNode("node-a", {}).ok());
  ASSERT_TRUE(c->store->PollCatalog().ok());
  EXPECT_EQ(c->registry.Get(id)->packets(), 2u);

  // A wakes and, not knowing, stores a batch the agent sent it and writes
  // its board: both are A's epoch 1.
  const Chunk late = tu::MakeChunk(
      id, "run-1-w5/ring0", 0, tu::PcapFile(0, 2).size(), tu::Records(2, 3));
  ASSERT_TRUE(a->store->AppendBatch("node-a", {&late}).error.ok());
  a->store->FlushCatalog();
  ASSERT_TRUE(c->store->PollCatalog().ok());
  EXPECT_EQ(c->registry.Get(id)->packets(), 2u);
  auto entry = StoredEntry(id);
  ASSERT_TRUE(entry.ok()) << entry.status();
  EXPECT_EQ(entry->replica, "replica-b");
  EXPECT_EQ(entry->epoch, 2);
}

// A released node's counts stay on the releasing replica's board, so the
// next holder starts from them (one PUT at release, not one per capture).
TEST_F(ObjectStoreTest, ReleasedCountsReachTheNextHolderThroughTheBoard) {
  auto a = OpenReplica("replica-a");
  auto b = OpenReplica("replica-b");
  ASSERT_TRUE(a->store->AcquireNode("node-a", {}).ok());
  std::vector<std::string> ids = {tu::CaptureId("web-1"),
                                  tu::CaptureId("web-2")};
  for (const std::string& id : ids) StartCapture(a.get(), "node-a", id, 3);
  const int puts = client_.calls("PUT");
  a->store->ReleaseNode("node-a");
  EXPECT_EQ(client_.calls("PUT") - puts, 1);

  const int gets = client_.calls("GET");
  ASSERT_TRUE(b->store->AcquireNode("node-a", {}).ok());
  // The entries and A's board; no data object is read back.
  EXPECT_EQ(client_.calls("GET") - gets, 3);
  for (const std::string& id : ids) {
    EXPECT_EQ(b->registry.Get(id)->packets(), 3u) << id;
    ExpectSameListing(*b->registry.Get(id), *a->registry.Get(id));
    auto entry = StoredEntry(id);
    ASSERT_TRUE(entry.ok()) << entry.status();
    EXPECT_EQ(entry->replica, "replica-b");
    EXPECT_EQ(entry->files.begin()->second.packets, 3u);
  }
}

// A replica restarted under the same name starts with an empty board; the
// counts its earlier process left on the board reach the entries when it
// takes the node again, so its first board write does not lose them.
TEST_F(ObjectStoreTest, ARestartedReplicaKeepsItsEarlierBoardsCounts) {
  const std::string id = tu::CaptureId("web-1");
  auto a = OpenReplica("replica-a");
  ASSERT_TRUE(a->store->AcquireNode("node-a", {}).ok());
  StartCapture(a.get(), "node-a", id, 2);
  a->store->FlushCatalog();
  a.reset();  // the node's Lease stays with "replica-a"

  auto again = OpenReplica("replica-a");
  ASSERT_TRUE(again->store->AcquireNode("node-a", {}).ok());
  StartCapture(again.get(), "node-a", tu::CaptureId("web-2"), 1);
  again->store->FlushCatalog();
  auto b = OpenReplica("replica-b");
  ASSERT_TRUE(b->registry.Get(id).has_value());
  EXPECT_EQ(b->registry.Get(id)->packets(), 2u);
}

// Nodes released together (a replica's agents all reconnect elsewhere)
// share board writes: each release waits for a write of its counts, and
// one that gathered while a write ran shares the next.
TEST_F(ObjectStoreTest, ReleasesTogetherShareBoardWrites) {
  auto a = OpenReplica("replica-a");
  constexpr int kNodes = 20;
  for (int i = 0; i < kNodes; ++i) {
    const std::string node = absl::StrCat("node-", i);
    ASSERT_TRUE(a->store->AcquireNode(node, {}).ok());
    StartCapture(a.get(), node, tu::CaptureId(absl::StrCat("web-", i)), 2);
  }
  std::atomic<int> board_puts{0};
  client_.SetHook([&](const std::string& method, const std::string& key) {
    if (method != "PUT" || !absl::StrContains(key, "/counts/")) return;
    ++board_puts;
    absl::SleepFor(absl::Milliseconds(50));  // a write takes a while
  });
  std::vector<std::thread> releases;
  for (int i = 0; i < kNodes; ++i) {
    releases.emplace_back(
        [&, i] { a->store->ReleaseNode(absl::StrCat("node-", i)); });
  }
  for (std::thread& t : releases) t.join();
  client_.SetHook(nullptr);
  EXPECT_GE(board_puts, 1);
  EXPECT_LE(board_puts, 4);
  // Every released capture's counts are on the board.
  auto b = OpenReplica("replica-b");
  for (int i = 0; i < kNodes; ++i) {
    const std::string id = tu::CaptureId(absl::StrCat("web-", i));
    ASSERT_TRUE(b->registry.Get(id).has_value()) << id;
    EXPECT_EQ(b->registry.Get(id)->packets(), 2u) << id;
  }
}

// The board of a replica that is gone is deleted once no entry takes
// counts from it; a live replica writes its board again if it was deleted.
TEST_F(ObjectStoreTest, UnusedBoardsAreDeleted) {
  const std::string id = tu::CaptureId("web-1");
  const std::string board_a = "cluster/catalog/counts/replica-a.pb";
  auto a = OpenReplica("replica-a");
  auto b = OpenReplica("replica-b");
  ASSERT_TRUE(a->store->AcquireNode("node-a", {}).ok());
  StartCapture(a.get(), "node-a", id, 2);
  a->store->FlushCatalog();
  ASSERT_EQ(client_.Objects().count(board_a), 1u);

  // In use (web-1's entry is behind it): kept however long.
  ASSERT_TRUE(b->store->PollCatalog().ok());
  b->store->Maintain();
  Advance(absl::Hours(2));
  b->store->Maintain();
  EXPECT_EQ(client_.Objects().count(board_a), 1u);

  // Deleted anyway (another operator's tool, a race): A writes it again at
  // its next flush, with or without new counts.
  ASSERT_TRUE(client_.Delete(board_a).ok());
  ASSERT_TRUE(a->store->PollCatalog().ok());
  a->store->FlushCatalog();
  EXPECT_EQ(client_.Objects().count(board_a), 1u);

  // A stops the capture: the entry takes the counts, and the board is
  // moot; once it is old enough another replica deletes it.
  ASSERT_TRUE(
      a->store->PutStatus("node-a", tu::Status(id, "node-a", Capture::STOPPED))
          .ok());
  ASSERT_TRUE(b->store->PollCatalog().ok());
  EXPECT_EQ(b->registry.Get(id)->packets(), 2u);
  b->store->Maintain();
  Advance(absl::Minutes(59));
  b->store->Maintain();
  EXPECT_EQ(client_.Objects().count(board_a), 1u);  // unused for 59 min
  Advance(absl::Minutes(1));
  b->store->Maintain();
  EXPECT_EQ(client_.Objects().count(board_a), 0u);
}

}  // namespace
}  // namespace pc::aggregator
