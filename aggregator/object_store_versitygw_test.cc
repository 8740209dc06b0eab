// ObjectStore over the real S3 client and a real versitygw (POSIX backend):
// two replicas sharing one bucket store, list and download what the
// directory store would, hand a node over, fence the old writer, and apply
// retention; prints how soon one replica lists what the other wrote; and
// compacts a trickle's sealed file.
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "aggregator/fake_node_ownership.h"
#include "aggregator/object_store.h"
#include "aggregator/store.h"
#include "aggregator/test_replica.h"
#include "aggregator/test_util.h"
#include "common/pcap/pcap_test_util.h"
#include "common/s3/s3_client.h"
#include "common/s3/versitygw_server.h"
#include "gtest/gtest.h"

namespace pc::aggregator {
namespace {

namespace tu = testutil;
namespace ptu = pcap::testutil;
using packetcapture::v1::Capture;
using packetcapture::v1::Chunk;
using testutil::Replica;

class ObjectStoreVersitygwTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto server = s3::VersitygwServer::Start("packet-capture");
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    auto client = s3::S3Client::Create(server_->Config());
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = std::move(*client);
  }

  std::unique_ptr<Replica> OpenReplica(const std::string& name,
                                       absl::Duration poll) {
    ObjectStoreOptions options;
    options.client = client_.get();
    options.prefix = "cluster";
    options.retention = absl::Hours(1);
    options.catalog_poll_interval = poll;
    options.clock = [this] {
      absl::MutexLock lock(&clock_mu_);
      return now_;
    };
    return tu::OpenReplica(&leases_, name, std::move(options));
  }

  static std::string Download(CaptureStore* store, const std::string& id) {
    auto reader = store->OpenReader(id, false);
    EXPECT_TRUE(reader.ok()) << reader.status();
    if (!reader.ok()) return "";
    std::string out;
    for (int i = 0; i < 100000; ++i) {
      auto n = (*reader)->Read(&out, 64 << 10);
      EXPECT_TRUE(n.ok()) << n.status();
      if (!n.ok() || *n == 0) break;
    }
    return out;
  }

  std::unique_ptr<s3::VersitygwServer> server_;
  std::unique_ptr<s3::S3Client> client_;
  tu::FakeLeases leases_;
  absl::Mutex clock_mu_;
  absl::Time now_ ABSL_GUARDED_BY(clock_mu_) = absl::Now();
};

// A capture of two files: a 3 MB one uploaded in 64 KiB chunks and batches
// of 16 (objects of about 1 MiB, read back in ranges), a re-sent chunk, a
// gap, and a small second file.
std::vector<std::vector<Chunk>> Batches(const std::string& id) {
  std::vector<std::vector<Chunk>> batches;
  const std::string file = ptu::MakePcapFile(pcap::GlobalHeader(), 0, 2000,
                                             1500);  // ~3 MB
  const pcap::GlobalHeader header;
  // Cut at record boundaries about every 64 KiB.
  std::vector<Chunk> chunks;
  size_t pos = 0;
  const size_t record = pcap::kRecordHeaderSize + 1500;
  while (pos < file.size()) {
    size_t n = pos == 0 ? pcap::kGlobalHeaderSize + 43 * record : 43 * record;
    n = std::min(n, file.size() - pos);
    chunks.push_back(
        tu::MakeChunk(id, "run-1-w5/ring0", 0, pos, file.substr(pos, n)));
    pos += n;
  }
  for (size_t i = 0; i < chunks.size(); i += 16) {
    batches.emplace_back(chunks.begin() + i,
                         chunks.begin() + std::min(i + 16, chunks.size()));
  }
  batches.back().push_back(chunks[chunks.size() - 2]);  // re-sent
  const uint64_t end = file.size();
  batches.push_back({tu::MakeChunk(id, "run-1-w5/ring0", 0, end + 100 * record,
                                   ptu::MakeRecords(header, 2100, 5, 1500))});
  batches.push_back(
      {tu::MakeChunk(id, "run-1-w5/ring1", 0, 0, tu::PcapFile(3000, 20))});
  return batches;
}

TEST_F(ObjectStoreVersitygwTest, ReplicasShareARealBucket) {
  const std::string id = tu::CaptureId("web-1");
  const auto batches = Batches(id);
  auto feed = [&](CaptureStore* store) {
    for (const auto& batch : batches) {
      std::vector<const Chunk*> ptrs;
      for (const Chunk& c : batch) ptrs.push_back(&c);
      BatchResult r = store->AppendBatch("node-a", ptrs);
      ASSERT_TRUE(r.error.ok()) << r.error;
      ASSERT_EQ(r.results.size(), ptrs.size());
    }
  };
  CaptureRegistry dir_registry;
  StoreOptions dir_options;
  dir_options.data_dir = ptu::MakeTempDir();
  auto dir = Store::Open(dir_options, &dir_registry);
  ASSERT_TRUE(dir.ok()) << dir.status();
  ASSERT_TRUE((*dir)->PutStatus("node-a", tu::Status(id, "node-a")).ok());
  feed(dir->get());
  const std::string expected = Download(dir->get(), id);
  auto seqs = ptu::SequenceNumbers(expected);
  ASSERT_TRUE(seqs.ok()) << seqs.status();
  EXPECT_EQ(seqs->size(), 2000u + 5 + 20);

  constexpr absl::Duration kPoll = absl::Milliseconds(500);
  auto a = OpenReplica("replica-a", kPoll);
  auto b = OpenReplica("replica-b", kPoll);
  ASSERT_TRUE(a && b);
  ASSERT_TRUE(a->store->AcquireNode("node-a", {}).ok());
  const absl::Time put = absl::Now();
  ASSERT_TRUE(a->store->PutStatus("node-a", tu::Status(id, "node-a")).ok());
  const absl::Time written = absl::Now();
  while (!b->registry.Get(id) && absl::Now() - put < absl::Seconds(10)) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  ASSERT_TRUE(b->registry.Get(id).has_value());
  std::cout << "listing freshness against versitygw: poll interval " << kPoll
            << ", catalog PUT " << (written - put) << ", listed by the other "
            << "replica after " << (absl::Now() - put) << std::endl;
  const absl::Time fed = absl::Now();
  feed(a->store.get());
  std::cout << "stored " << expected.size() << " bytes in "
            << (absl::Now() - fed) << std::endl;
  EXPECT_EQ(Download(a->store.get(), id), expected);
  EXPECT_EQ(Download(b->store.get(), id), expected);
  // A's flusher writes its counts board within a second of new files; here
  // at once, so the test does not race it.
  a->store->FlushCatalog();

  // B takes the node over from a silent A: same resume points; A fenced.
  const auto a_points = a->store->ResumePoints("node-a");
  a->ownership->Expire("node-a", /*tell=*/false);
  ASSERT_TRUE(b->store->AcquireNode("node-a", {}).ok());
  const auto b_points = b->store->ResumePoints("node-a");
  ASSERT_EQ(a_points.size(), b_points.size());
  for (size_t i = 0; i < a_points.size(); ++i) {
    EXPECT_EQ(a_points[i].SerializeAsString(), b_points[i].SerializeAsString());
  }
  EXPECT_EQ(b->registry.Get(id)->packets(), dir_registry.Get(id)->packets());
  EXPECT_EQ(b->registry.Get(id)->bytes_lost(),
            dir_registry.Get(id)->bytes_lost());
  EXPECT_EQ(
      a->store->PutStatus("node-a", tu::Status(id, "node-a", Capture::STOPPED))
          .code(),
      absl::StatusCode::kAborted);

  // Retention, on the replica that does not hold the node.
  ASSERT_TRUE(
      b->store->PutStatus("node-a", tu::Status(id, "node-a", Capture::STOPPED))
          .ok());
  ASSERT_TRUE(a->store->PollCatalog().ok());
  {
    absl::MutexLock lock(&clock_mu_);
    now_ += absl::Hours(2);
  }
  EXPECT_EQ(a->store->Maintain(), std::vector<std::string>{id});
  auto left = client_->List("cluster/");
  ASSERT_TRUE(left.ok()) << left.status();
  // Only A's board is left: a replica's own board stays while it lives
  // (the others delete it once unused for a while: UnusedBoardsAreDeleted).
  std::vector<std::string> keys;
  for (const auto& object : left->objects) keys.push_back(object.key);
  EXPECT_EQ(keys,
            std::vector<std::string>{"cluster/catalog/counts/replica-a.pb"})
      << absl::StrJoin(keys, "\n");
}

// A trickle over the real client: 25 objects in ring0, then ring1 seals it
// and the background compactor makes it one object <0>-<end> (If-None-Match
// PUT, ranged GETs, DELETEs against versitygw), downloaded byte for byte
// as before, by the holder and by a replica taking the node over.
TEST_F(ObjectStoreVersitygwTest, SealedFileIsCompactedInTheBackground) {
  const std::string id = tu::CaptureId("slow-1");
  auto a = OpenReplica("replica-a", absl::Hours(1));
  ASSERT_TRUE(a);
  ASSERT_TRUE(a->store->AcquireNode("node-a", {}).ok());
  ASSERT_TRUE(a->store->PutStatus("node-a", tu::Status(id, "node-a")).ok());
  auto append = [&](const Chunk& chunk) {
    BatchResult r = a->store->AppendBatch("node-a", {&chunk});
    ASSERT_TRUE(r.error.ok()) << r.error;
  };
  uint64_t offset = 0;
  for (int i = 0; i < 25; ++i) {
    const std::string data =
        i == 0 ? tu::PcapFile(0, 4) : tu::Records(4 * i, 4);
    append(tu::MakeChunk(id, "run-1-w5/ring0", 0, offset, data));
    offset += data.size();
  }
  const std::string ring0 =
      absl::StrCat("cluster/data/", id, "/run-1-w5/ring0/");
  auto listed = client_->List(ring0);
  ASSERT_TRUE(listed.ok()) << listed.status();
  EXPECT_EQ(listed->objects.size(), 25u);
  const std::string before = Download(a->store.get(), id);
  append(tu::MakeChunk(id, "run-1-w5/ring1", 0, 0, tu::PcapFile(100, 2)));
  const std::string expected = before + tu::Records(100, 2);
  const absl::Time sealed = absl::Now();
  while (absl::Now() - sealed < absl::Seconds(20)) {
    listed = client_->List(ring0);
    ASSERT_TRUE(listed.ok()) << listed.status();
    if (listed->objects.size() == 1) break;
    absl::SleepFor(absl::Milliseconds(20));
  }
  ASSERT_EQ(listed->objects.size(), 1u);
  std::cout << "compacted 25 objects of " << offset << " bytes in "
            << (absl::Now() - sealed) << std::endl;
  EXPECT_EQ(listed->objects[0].key,
            absl::StrCat(ring0, "00000000000000000000/00000000000000000000-",
                         absl::StrFormat("%020u", offset)));
  EXPECT_EQ(listed->objects[0].size, offset);
  EXPECT_EQ(Download(a->store.get(), id), expected);
  EXPECT_EQ(a->store->stats().compactions, 1u);
  EXPECT_EQ(a->store->stats().objects_compacted, 25u);

  const auto points = a->store->ResumePoints("node-a");
  auto b = OpenReplica("replica-b", absl::Hours(1));
  ASSERT_TRUE(b);
  a->ownership->Expire("node-a", /*tell=*/true);
  ASSERT_TRUE(b->store->AcquireNode("node-a", {}).ok());
  const auto b_points = b->store->ResumePoints("node-a");
  ASSERT_EQ(points.size(), b_points.size());
  for (size_t i = 0; i < points.size(); ++i) {
    EXPECT_EQ(points[i].SerializeAsString(), b_points[i].SerializeAsString());
  }
  EXPECT_EQ(Download(b->store.get(), id), expected);
}

}  // namespace
}  // namespace pc::aggregator
