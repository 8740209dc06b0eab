// The store's two-step append (WriteBatch, then Commit): what a stream may
// rely on when it writes its next batch while the one before is flushed.
#include <errno.h>
#include <unistd.h>

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "aggregator/store.h"
#include "aggregator/test_util.h"
#include "common/pcap/pcap_test_util.h"
#include "gtest/gtest.h"

namespace pc::aggregator {
namespace {

namespace tu = testutil;
namespace ptu = pcap::testutil;

class StorePipelineTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = ptu::MakeTempDir(); }

  // Flushes are real fdatasync()s, counted; while fail_ is set they fail
  // with EIO. One fdatasync() per file per round (no syncfs).
  std::unique_ptr<Store> OpenStore(CaptureRegistry* registry) {
    StoreOptions options;
    options.data_dir = dir_;
    options.retention = absl::Hours(1);
    options.sync.min_files_for_fs = 0;
    options.sync_ops.sync_file = [this](int fd) {
      ++flushes_;
      if (fail_.load()) return EIO;
      return fdatasync(fd) == 0 ? 0 : errno;
    };
    options.sync_ops.sync_fs = [](int fd) {
      return syncfs(fd) == 0 ? 0 : errno;
    };
    auto store = Store::Open(options, registry);
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? std::move(*store) : nullptr;
  }

  std::vector<uint32_t> Stored(const std::string& id) {
    CaptureRegistry registry;
    auto store = OpenStore(&registry);
    auto reader = store->OpenReader(id, false);
    EXPECT_TRUE(reader.ok()) << reader.status();
    std::string out;
    for (int i = 0; i < 1000; ++i) {
      auto n = (*reader)->Read(&out, 1000);
      if (!n.ok() || *n == 0) break;
    }
    auto seqs = ptu::SequenceNumbers(out);
    EXPECT_TRUE(seqs.ok()) << seqs.status();
    return seqs.ok() ? *seqs : std::vector<uint32_t>();
  }

  std::string dir_;
  std::atomic<int> flushes_{0};
  std::atomic<bool> fail_{false};
};

// Batches written one after the other are acknowledged (and shown) only
// once committed; the first commit covers every batch written before it
// with one round flushing the data and the log, and the later commits
// return at once.
TEST_F(StorePipelineTest, OneCommitCoversTheBatchesWrittenBeforeIt) {
  const std::string id = tu::CaptureId("web-1");
  const std::string head = tu::PcapFile(0, 4);
  const std::string more = tu::Records(4, 3);
  CaptureRegistry registry;
  auto store = OpenStore(&registry);
  ASSERT_TRUE(store->PutStatus("node-a", tu::Status(id, "node-a")).ok());
  const auto c0 = tu::MakeChunk(id, "run-1-w5/ring0", 0, 0, head);
  const auto c1 = tu::MakeChunk(id, "run-1-w5/ring0", 0, head.size(), more);
  auto first = store->WriteBatch("node-a", {&c0});
  auto second = store->WriteBatch("node-a", {&c1});
  auto again = store->WriteBatch("node-a", {&c1});  // a duplicate of it
  EXPECT_TRUE(first->write_error().ok());
  EXPECT_EQ(registry.Get(id)->packets(), 0u) << "shown before durable";
  flushes_ = 0;
  BatchResult r0 = first->Commit();
  ASSERT_TRUE(r0.error.ok()) << r0.error;
  EXPECT_EQ(flushes_.load(), 2);  // the data and the log, in one round
  ASSERT_EQ(r0.results.size(), 1u);
  EXPECT_EQ(r0.results[0].offset, head.size());
  EXPECT_EQ(registry.Get(id)->packets(), 7u);
  BatchResult r1 = second->Commit();
  BatchResult r2 = again->Commit();
  EXPECT_EQ(flushes_.load(), 2);
  ASSERT_TRUE(r1.error.ok() && r2.error.ok());
  ASSERT_EQ(r1.results.size(), 1u);
  EXPECT_EQ(r1.results[0].offset, head.size() + more.size());
  ASSERT_EQ(r2.results.size(), 1u);
  EXPECT_TRUE(r2.results[0].duplicate);
  EXPECT_EQ(r2.results[0].offset, head.size() + more.size());
  // Pending batches hold the store's descriptors: they go first.
  first.reset();
  second.reset();
  again.reset();
  store.reset();
  EXPECT_EQ(Stored(id), ptu::Range(0, 7));
}

// A failed flush fails every batch written before it was known (none of
// them is acknowledged, duplicates of them included); the next write starts
// again at the last committed end.
TEST_F(StorePipelineTest, AFailedFlushFailsTheBatchesWrittenAfterIt) {
  const std::string id = tu::CaptureId("web-1");
  const std::string head = tu::PcapFile(0, 4);
  const std::string more = tu::Records(4, 3);
  const std::string last = tu::Records(7, 2);
  CaptureRegistry registry;
  auto store = OpenStore(&registry);
  ASSERT_TRUE(store->PutStatus("node-a", tu::Status(id, "node-a")).ok());
  const auto c0 = tu::MakeChunk(id, "run-1-w5/ring0", 0, 0, head);
  const auto c1 = tu::MakeChunk(id, "run-1-w5/ring0", 0, head.size(), more);
  const auto c2 =
      tu::MakeChunk(id, "run-1-w5/ring0", 0, head.size() + more.size(), last);
  ASSERT_TRUE(store->AppendBatch("node-a", {&c0}).error.ok());
  auto second = store->WriteBatch("node-a", {&c1});
  auto third = store->WriteBatch("node-a", {&c2});
  auto dup = store->WriteBatch("node-a", {&c1});
  fail_ = true;
  BatchResult r1 = second->Commit();
  fail_ = false;
  EXPECT_EQ(r1.error.code(), absl::StatusCode::kInternal) << r1.error;
  EXPECT_TRUE(r1.results.empty());
  BatchResult r2 = third->Commit();
  EXPECT_FALSE(r2.error.ok());
  EXPECT_TRUE(r2.results.empty()) << "acknowledged past a failed flush";
  BatchResult r3 = dup->Commit();
  EXPECT_FALSE(r3.error.ok());
  EXPECT_TRUE(r3.results.empty()) << "a duplicate of unflushed bytes acked";
  EXPECT_EQ(registry.Get(id)->packets(), 4u);

  // Sent again, from the last acknowledgement: stored as if nothing failed.
  BatchResult again = store->AppendBatch("node-a", {&c1, &c2});
  ASSERT_TRUE(again.error.ok()) << again.error;
  ASSERT_EQ(again.results.size(), 2u);
  EXPECT_EQ(again.results[0].gap, 0u);
  EXPECT_EQ(again.results[1].offset, head.size() + more.size() + last.size());
  // Pending batches hold the store's descriptors: they go first.
  second.reset();
  third.reset();
  dup.reset();
  store.reset();
  EXPECT_EQ(Stored(id), ptu::Range(0, 9));
}

// A written batch dropped without its commit (the stream gave up on it) is
// not stored, and neither is what was written after it.
TEST_F(StorePipelineTest, AnAbandonedBatchAndTheOnesAfterItAreNotStored) {
  const std::string id = tu::CaptureId("web-1");
  const std::string head = tu::PcapFile(0, 4);
  const std::string more = tu::Records(4, 3);
  const std::string last = tu::Records(7, 2);
  CaptureRegistry registry;
  auto store = OpenStore(&registry);
  ASSERT_TRUE(store->PutStatus("node-a", tu::Status(id, "node-a")).ok());
  const auto c0 = tu::MakeChunk(id, "run-1-w5/ring0", 0, 0, head);
  const auto c1 = tu::MakeChunk(id, "run-1-w5/ring0", 0, head.size(), more);
  const auto c2 =
      tu::MakeChunk(id, "run-1-w5/ring0", 0, head.size() + more.size(), last);
  ASSERT_TRUE(store->AppendBatch("node-a", {&c0}).error.ok());
  auto second = store->WriteBatch("node-a", {&c1});
  auto third = store->WriteBatch("node-a", {&c2});
  second.reset();
  BatchResult r2 = third->Commit();
  EXPECT_FALSE(r2.error.ok());
  EXPECT_TRUE(r2.results.empty());
  // The next write continues from the committed end, not past a gap.
  BatchResult next = store->AppendBatch("node-a", {&c1});
  ASSERT_TRUE(next.error.ok()) << next.error;
  ASSERT_EQ(next.results.size(), 1u);
  EXPECT_EQ(next.results[0].gap, 0u);
  // Pending batches hold the store's descriptors: they go first.
  third.reset();
  store.reset();
  EXPECT_EQ(Stored(id), ptu::Range(0, 7));
}

}  // namespace
}  // namespace pc::aggregator
