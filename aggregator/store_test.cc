#include "aggregator/store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <functional>
#include <iostream>
#include <map>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "aggregator/test_util.h"
#include "common/crc32c.h"
#include "common/pcap/pcap_test_util.h"
#include "common/time_proto.h"
#include "gtest/gtest.h"

namespace pc::aggregator {
namespace {

namespace tu = testutil;
namespace ptu = pcap::testutil;
using packetcapture::v1::Capture;

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = ptu::MakeTempDir(); }

  std::unique_ptr<Store> OpenStore(CaptureRegistry* registry,
                                   int syncfs_min_files = 4) {
    StoreOptions options;
    options.data_dir = dir_;
    options.sync.min_files_for_fs = syncfs_min_files;
    options.retention = absl::Hours(1);
    options.max_bytes = max_bytes_;
    options.clock = [this] { return now_; };
    options.listing_interval = listing_interval_;
    if (no_flush_) {  // for tests about something else than durability
      options.fsync = [](int) { return 0; };
      options.sync_ops.sync_file = [](int) { return 0; };
      options.sync_ops.sync_fs = [](int) { return 0; };
    }
    auto store = Store::Open(options, registry);
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? std::move(*store) : nullptr;
  }

  std::string Download(Store* store, const std::string& id) {
    auto reader = store->OpenReader(id, false);
    EXPECT_TRUE(reader.ok()) << reader.status();
    std::string out;
    for (int i = 0; i < 1000; ++i) {
      auto n = (*reader)->Read(&out, 1000);
      EXPECT_TRUE(n.ok()) << n.status();
      if (!n.ok() || *n == 0) break;
    }
    return out;
  }

  std::string DataPath(const std::string& id, const std::string& run,
                       const std::string& ring, uint64_t gen, const char* ext) {
    return absl::StrCat(dir_, "/captures/", id, "/", run, "/", ring, ".", gen,
                        ext);
  }

  std::string dir_;
  uint64_t max_bytes_ = 0;
  bool no_flush_ = false;
  absl::Duration listing_interval_ = absl::ZeroDuration();
  absl::Time now_ = absl::FromUnixSeconds(1700000000);
};

TEST(StoredFileName, AcceptsOnlyTheAgentsNames) {
  std::string run, ring;
  EXPECT_TRUE(ParseStoredFileName("run-1-w5/ring3", &run, &ring));
  EXPECT_EQ(run, "run-1-w5");
  EXPECT_EQ(ring, "ring3");
  EXPECT_TRUE(ParseStoredFileName("run-2-w11/ring07", &run, &ring));
  EXPECT_TRUE(ParseStoredFileName("run-2-w1/ring", &run, &ring));
  for (const char* bad :
       {"run-1-w5/ring5", "run-1-w11/ring7", "run-1-w5/../ring1", "../ring1",
        "run-1-w5/ring1/x", "run-1-w5", "/run-1-w5/ring1", "run-1-w5/ring-1",
        "run-1-w5/Ring1", "run-01-w5/ring1", "run-1-w1/ring0", ""}) {
    EXPECT_FALSE(ParseStoredFileName(bad, &run, &ring)) << bad;
  }
}

TEST_F(StoreTest, AppendsDurablyAndRebuildsTheIndexFromDisk) {
  const std::string id = tu::CaptureId("web-1");
  const std::string file0 = tu::PcapFile(0, 10);
  const std::string more = tu::Records(10, 5);
  {
    CaptureRegistry registry;
    auto store = OpenStore(&registry);
    ASSERT_TRUE(store->PutStatus("node-a", tu::Status(id, "node-a")).ok());
    auto r = store->Append("node-a",
                           tu::MakeChunk(id, "run-1-w5/ring0", 7, 0, file0));
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->offset, file0.size());
    r = store->Append(
        "node-a", tu::MakeChunk(id, "run-1-w5/ring0", 7, file0.size(), more));
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->offset, file0.size() + more.size());
    auto shown = registry.Get(id);
    ASSERT_TRUE(shown.has_value());
    EXPECT_EQ(shown->bytes(), file0.size() + more.size());
    EXPECT_EQ(shown->packets(), 15u);
    ASSERT_EQ(shown->files_size(), 1);
    EXPECT_EQ(shown->files(0).name(), "run-1-w5/ring0");
    EXPECT_EQ(shown->files(0).generation(), 7u);
  }
  CaptureRegistry registry;
  auto store = OpenStore(&registry);
  auto points = store->ResumePoints("node-a");
  ASSERT_EQ(points.size(), 1u);
  EXPECT_EQ(points[0].capture_id(), id);
  EXPECT_EQ(points[0].file(), "run-1-w5/ring0");
  EXPECT_EQ(points[0].file_generation(), 7u);
  EXPECT_EQ(points[0].offset(), file0.size() + more.size());
  EXPECT_TRUE(store->ResumePoints("node-b").empty());
  auto shown = registry.Get(id);
  ASSERT_TRUE(shown.has_value());
  EXPECT_EQ(shown->node(), "node-a");
  EXPECT_EQ(shown->packets(), 15u);
  auto seqs = ptu::SequenceNumbers(Download(store.get(), id));
  ASSERT_TRUE(seqs.ok()) << seqs.status();
  EXPECT_EQ(*seqs, ptu::Range(0, 15));
}

// Agents appending at once share flushes (rounds wait for the other active
// agents, one syncfs() for a round of several files here); every
// acknowledged byte is there after a restart.
TEST_F(StoreTest, ConcurrentStreamsSharingFlushesKeepEveryAcknowledgedByte) {
  constexpr int kStreams = 8;
  constexpr int kChunks = 20;
  std::vector<std::string> ids;
  for (int s = 0; s < kStreams; ++s) {
    ids.push_back(tu::CaptureId(absl::StrCat("web-", s)));
  }
  std::vector<uint64_t> acked(kStreams, 0);
  {
    CaptureRegistry registry;
    auto store = OpenStore(&registry, /*syncfs_min_files=*/2);
    for (int s = 0; s < kStreams; ++s) {
      const std::string node = absl::StrCat("node-", s);
      ASSERT_TRUE(store->PutStatus(node, tu::Status(ids[s], node)).ok());
    }
    std::vector<std::thread> threads;
    for (int s = 0; s < kStreams; ++s) {
      threads.emplace_back([&, s] {
        std::string data = tu::PcapFile(0, 3);
        uint64_t offset = 0;
        for (int c = 0; c < kChunks; ++c) {
          auto r = store->Append(
              absl::StrCat("node-", s),
              tu::MakeChunk(ids[s], "run-1-w5/ring0", 1, offset, data));
          ASSERT_TRUE(r.ok()) << r.status();
          offset += data.size();
          EXPECT_EQ(r->offset, offset);
          acked[s] = r->offset;
          data = tu::Records(3 * (c + 1), 3);
        }
      });
    }
    for (auto& t : threads) t.join();
  }
  CaptureRegistry registry;
  auto store = OpenStore(&registry);
  for (int s = 0; s < kStreams; ++s) {
    auto seqs = ptu::SequenceNumbers(Download(store.get(), ids[s]));
    ASSERT_TRUE(seqs.ok()) << seqs.status();
    EXPECT_EQ(*seqs, ptu::Range(0, 3 * kChunks)) << ids[s];
    auto shown = registry.Get(ids[s]);
    ASSERT_TRUE(shown.has_value());
    EXPECT_EQ(shown->bytes(), acked[s]);
  }
}

// Group commit: a batch is stored as if each chunk were appended alone, and
// a bad chunk stops it without losing the chunks before it.
TEST_F(StoreTest, BatchStoresChunksInOrderAndStopsAtABadOne) {
  const std::string id = tu::CaptureId("web-1");
  const std::string head = tu::PcapFile(0, 4);
  const std::string more = tu::Records(4, 3);
  const std::string last = tu::Records(7, 2);
  {
    CaptureRegistry registry;
    auto store = OpenStore(&registry);
    ASSERT_TRUE(store->PutStatus("node-a", tu::Status(id, "node-a")).ok());
    const auto c0 = tu::MakeChunk(id, "run-1-w5/ring0", 0, 0, head);
    const auto c1 = tu::MakeChunk(id, "run-1-w5/ring0", 0, head.size(), more);
    const auto c2 =
        tu::MakeChunk(id, "run-1-w5/ring0", 0, head.size() + more.size(), last);
    BatchResult b = store->AppendBatch("node-a", {&c0, &c1, &c0, &c2});
    ASSERT_TRUE(b.error.ok()) << b.error;
    ASSERT_EQ(b.results.size(), 4u);
    EXPECT_EQ(b.results[0].offset, head.size());
    EXPECT_EQ(b.results[1].offset, head.size() + more.size());
    EXPECT_TRUE(b.results[2].duplicate);
    EXPECT_EQ(b.results[3].offset, head.size() + more.size() + last.size());
    EXPECT_EQ(registry.Get(id)->packets(), 9u);

    // A chunk cut inside a record stops the batch; the one before it stays.
    const uint64_t end = head.size() + more.size() + last.size();
    const auto good =
        tu::MakeChunk(id, "run-1-w5/ring0", 0, end, tu::Records(9, 1));
    const std::string cut = tu::Records(10, 2);
    const auto bad =
        tu::MakeChunk(id, "run-1-w5/ring0", 0, end + tu::Records(9, 1).size(),
                      cut.substr(0, cut.size() - 1));
    b = store->AppendBatch("node-a", {&good, &bad});
    EXPECT_EQ(b.error.code(), absl::StatusCode::kInvalidArgument) << b.error;
    ASSERT_EQ(b.results.size(), 1u);
    EXPECT_EQ(b.results[0].offset, end + tu::Records(9, 1).size());
  }
  // Every stored chunk survives a restart.
  CaptureRegistry registry;
  auto store = OpenStore(&registry);
  auto seqs = ptu::SequenceNumbers(Download(store.get(), id));
  ASSERT_TRUE(seqs.ok()) << seqs.status();
  EXPECT_EQ(*seqs, ptu::Range(0, 10));
}

TEST_F(StoreTest, TornTailIsTruncatedToTheLastCheckedEntry) {
  const std::string id = tu::CaptureId("web-1");
  const std::string file0 = tu::PcapFile(0, 10);
  const std::string more = tu::Records(10, 5);
  {
    CaptureRegistry registry;
    auto store = OpenStore(&registry);
    ASSERT_TRUE(store->PutStatus("node-a", tu::Status(id, "node-a")).ok());
    ASSERT_TRUE(
        store
            ->Append("node-a", tu::MakeChunk(id, "run-1-w5/ring0", 0, 0, file0))
            .ok());
    ASSERT_TRUE(store
                    ->Append("node-a", tu::MakeChunk(id, "run-1-w5/ring0", 0,
                                                     file0.size(), more))
                    .ok());
  }
  // A crash after the data write of a third chunk, with half its log entry.
  ptu::AppendFile(DataPath(id, "run-1-w5", "ring0", 0, ".pcap"),
                  tu::Records(15, 3));
  ptu::AppendFile(DataPath(id, "run-1-w5", "ring0", 0, ".log"),
                  std::string(17, '\x5a'));
  {
    CaptureRegistry registry;
    auto store = OpenStore(&registry);
    auto points = store->ResumePoints("node-a");
    ASSERT_EQ(points.size(), 1u);
    EXPECT_EQ(points[0].offset(), file0.size() + more.size());
    auto seqs = ptu::SequenceNumbers(Download(store.get(), id));
    ASSERT_TRUE(seqs.ok()) << seqs.status();
    EXPECT_EQ(*seqs, ptu::Range(0, 15));
    // Appending continues where the checked data ends.
    auto r = store->Append("node-a", tu::MakeChunk(id, "run-1-w5/ring0", 0,
                                                   file0.size() + more.size(),
                                                   tu::Records(15, 2)));
    ASSERT_TRUE(r.ok()) << r.status();
  }
  // Corrupt data under the last entry: that entry no longer counts.
  const std::string data_path = DataPath(id, "run-1-w5", "ring0", 0, ".pcap");
  std::string data = ptu::ReadFile(data_path);
  data[data.size() - 3] ^= 0x40;
  ptu::WriteFile(data_path, data);
  CaptureRegistry registry;
  auto store = OpenStore(&registry);
  auto points = store->ResumePoints("node-a");
  ASSERT_EQ(points.size(), 1u);
  EXPECT_EQ(points[0].offset(), file0.size() + more.size());
}

// A commit writes its log entries next to its data and flushes both in one
// round, so a crash in that flush can keep an entry whose data (or part of
// it) never reached the disk, while a later entry's data did. Every entry of
// the last commit is checked: the first that does not match its data ends
// the file.
TEST_F(StoreTest, ACrashInTheLastCommitsFlushKeepsOnlyItsCheckedEntries) {
  const std::string id = tu::CaptureId("web-1");
  const std::string head = tu::PcapFile(0, 4);
  const std::string more = tu::Records(4, 3);
  const std::string last = tu::Records(7, 2);
  {
    CaptureRegistry registry;
    auto store = OpenStore(&registry);
    ASSERT_TRUE(store->PutStatus("node-a", tu::Status(id, "node-a")).ok());
    // One batch of three chunks: one commit, three entries.
    const auto c0 = tu::MakeChunk(id, "run-1-w5/ring0", 0, 0, head);
    const auto c1 = tu::MakeChunk(id, "run-1-w5/ring0", 0, head.size(), more);
    const auto c2 =
        tu::MakeChunk(id, "run-1-w5/ring0", 0, head.size() + more.size(), last);
    BatchResult r = store->AppendBatch("node-a", {&c0, &c1, &c2});
    ASSERT_TRUE(r.error.ok()) << r.error;
  }
  // The middle chunk's bytes were lost; the last chunk's were not.
  const std::string data_path = DataPath(id, "run-1-w5", "ring0", 0, ".pcap");
  std::string data = ptu::ReadFile(data_path);
  ASSERT_EQ(data.size(), head.size() + more.size() + last.size());
  std::fill(data.begin() + head.size(),
            data.begin() + head.size() + more.size(), '\0');
  ptu::WriteFile(data_path, data);
  CaptureRegistry registry;
  auto store = OpenStore(&registry);
  auto points = store->ResumePoints("node-a");
  ASSERT_EQ(points.size(), 1u);
  EXPECT_EQ(points[0].offset(), head.size());
  auto seqs = ptu::SequenceNumbers(Download(store.get(), id));
  ASSERT_TRUE(seqs.ok()) << seqs.status();
  EXPECT_EQ(*seqs, ptu::Range(0, 4));
  EXPECT_EQ(ptu::ReadFile(data_path).size(), head.size())
      << "the unchecked tail stays on disk";
}

// Logs written before commits were marked (their data was flushed before
// each entry was written) still open: all their entries count, and only
// the last one is checked against its data.
TEST_F(StoreTest, ALogWithoutCommitMarksChecksItsLastEntryOnly) {
  const std::string id = tu::CaptureId("web-1");
  const std::string head = tu::PcapFile(0, 4);
  const std::string more = tu::Records(4, 3);
  const std::string last = tu::Records(7, 2);
  {
    CaptureRegistry registry;
    auto store = OpenStore(&registry);
    ASSERT_TRUE(store->PutStatus("node-a", tu::Status(id, "node-a")).ok());
    uint64_t offset = 0;
    for (const std::string* part : {&head, &more, &last}) {
      ASSERT_TRUE(store
                      ->Append("node-a", tu::MakeChunk(id, "run-1-w5/ring0", 0,
                                                       offset, *part))
                      .ok());
      offset += part->size();
    }
  }
  // The entry layout: logical_end, physical_end, packets (its top bit the
  // commit mark), last_time_ns (8 bytes each), data_crc, entry_crc (4 each).
  const std::string log_path = DataPath(id, "run-1-w5", "ring0", 0, ".log");
  std::string log = ptu::ReadFile(log_path);
  ASSERT_EQ(log.size(), 3u * 40);
  for (size_t pos = 0; pos < log.size(); pos += 40) {
    ASSERT_NE(log[pos + 23] & 0x80, 0) << "every commit here has one entry";
    log[pos + 23] = static_cast<char>(log[pos + 23] & 0x7f);
    const uint32_t crc = Crc32c(absl::string_view(log.data() + pos, 36));
    for (int i = 0; i < 4; ++i) {
      log[pos + 36 + i] = static_cast<char>((crc >> (8 * i)) & 0xff);
    }
  }
  ptu::WriteFile(log_path, log);
  {
    CaptureRegistry registry;
    auto store = OpenStore(&registry);
    auto seqs = ptu::SequenceNumbers(Download(store.get(), id));
    ASSERT_TRUE(seqs.ok()) << seqs.status();
    EXPECT_EQ(*seqs, ptu::Range(0, 9));
  }
  // Corrupt data under the last entry: that entry no longer counts.
  const std::string data_path = DataPath(id, "run-1-w5", "ring0", 0, ".pcap");
  std::string data = ptu::ReadFile(data_path);
  data[data.size() - 3] ^= 0x40;
  ptu::WriteFile(data_path, data);
  CaptureRegistry registry;
  auto store = OpenStore(&registry);
  auto points = store->ResumePoints("node-a");
  ASSERT_EQ(points.size(), 1u);
  EXPECT_EQ(points[0].offset(), head.size() + more.size());
}

TEST_F(StoreTest, CorruptEntriesAreSkippedNotFatal) {
  const std::string good = tu::CaptureId("good");
  const std::string bad = tu::CaptureId("bad");
  {
    CaptureRegistry registry;
    auto store = OpenStore(&registry);
    ASSERT_TRUE(store->PutStatus("node-a", tu::Status(good, "node-a")).ok());
    ASSERT_TRUE(store->PutStatus("node-a", tu::Status(bad, "node-a")).ok());
    ASSERT_TRUE(store
                    ->Append("node-a", tu::MakeChunk(good, "run-1-w5/ring0", 0,
                                                     0, tu::PcapFile(0, 3)))
                    .ok());
  }
  // Metadata is replaced atomically: no temp file is left behind.
  EXPECT_FALSE(std::filesystem::exists(
      absl::StrCat(dir_, "/captures/", good, "/capture.pb.tmp")));
  ptu::WriteFile(absl::StrCat(dir_, "/captures/", bad, "/capture.pb"),
                 "garbage");
  std::filesystem::create_directories(
      absl::StrCat(dir_, "/captures/not-an-id"));
  std::filesystem::create_directories(
      absl::StrCat(dir_, "/captures/", good, "/strange"));
  ptu::WriteFile(
      absl::StrCat(dir_, "/captures/", good, "/run-1-w5/ring9.x.pcap"), "x");
  // A data file whose log is missing entirely.
  ptu::WriteFile(
      absl::StrCat(dir_, "/captures/", good, "/run-1-w5/ring1.0.pcap"),
      tu::PcapFile(0, 1));
  CaptureRegistry registry;
  auto store = OpenStore(&registry);
  EXPECT_TRUE(registry.Get(good).has_value());
  EXPECT_FALSE(registry.Get(bad).has_value());
  EXPECT_EQ(store->ResumePoints("node-a").size(), 1u);
}

TEST_F(StoreTest, DuplicatesGapsAndBadChunks) {
  const std::string id = tu::CaptureId("web-1");
  CaptureRegistry registry;
  auto store = OpenStore(&registry);
  ASSERT_TRUE(store->PutStatus("node-a", tu::Status(id, "node-a")).ok());
  const std::string file0 = tu::PcapFile(0, 4);
  ASSERT_TRUE(
      store->Append("node-a", tu::MakeChunk(id, "run-1-w5/ring0", 0, 0, file0))
          .ok());
  auto dup =
      store->Append("node-a", tu::MakeChunk(id, "run-1-w5/ring0", 0, 0, file0));
  ASSERT_TRUE(dup.ok());
  EXPECT_TRUE(dup->duplicate);
  EXPECT_EQ(dup->offset, file0.size());
  // A gap of two records: the next chunk is stored right after the data.
  const std::string skipped = tu::Records(4, 2);
  auto gap =
      store->Append("node-a", tu::MakeChunk(id, "run-1-w5/ring0", 0,
                                            file0.size() + skipped.size(),
                                            tu::Records(6, 2)));
  ASSERT_TRUE(gap.ok()) << gap.status();
  EXPECT_EQ(gap->gap, skipped.size());
  EXPECT_EQ(registry.Get(id)->bytes_lost(), skipped.size());
  auto seqs = ptu::SequenceNumbers(Download(store.get(), id));
  ASSERT_TRUE(seqs.ok());
  EXPECT_EQ(*seqs, (std::vector<uint32_t>{0, 1, 2, 3, 6, 7}));

  const std::string half = tu::Records(8, 1).substr(0, 20);
  EXPECT_EQ(store
                ->Append("node-a",
                         tu::MakeChunk(id, "run-1-w5/ring0", 0, 10000, half))
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store
                ->Append("node-a", tu::MakeChunk(id, "run-1-w5/ring1", 0, 24,
                                                 tu::Records(0, 1)))
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      store
          ->Append("node-a", tu::MakeChunk(id, "../../etc/passwd", 0, 0, file0))
          .status()
          .code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      store->Append("node-b", tu::MakeChunk(id, "run-1-w5/ring1", 0, 0, file0))
          .status()
          .code(),
      absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(store
                ->Append("node-a", tu::MakeChunk(tu::CaptureId("other"),
                                                 "run-1-w5/ring1", 0, 0, file0))
                .status()
                .code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store->PutStatus("node-b", tu::Status(id, "node-b")).code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(store->PutStatus("node-b", tu::Status(tu::CaptureId("x"), "node-a"))
                .code(),
            absl::StatusCode::kPermissionDenied);
  auto bad_id = tu::Status("../x", "node-a");
  EXPECT_EQ(store->PutStatus("node-a", bad_id).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(StoreTest, RunningCaptureMirrorsTheRing) {
  const std::string id = tu::CaptureId("web-1");
  CaptureRegistry registry;
  auto store = OpenStore(&registry);
  ASSERT_TRUE(
      store->PutStatus("node-a", tu::Status(id, "node-a", Capture::RUNNING, 2))
          .ok());
  // Ring of two files; the third upload reuses ring0 (generation 1).
  ASSERT_TRUE(store
                  ->Append("node-a", tu::MakeChunk(id, "run-1-w2/ring0", 0, 0,
                                                   tu::PcapFile(0, 3)))
                  .ok());
  ASSERT_TRUE(store
                  ->Append("node-a", tu::MakeChunk(id, "run-1-w2/ring1", 0, 0,
                                                   tu::PcapFile(3, 3)))
                  .ok());
  ASSERT_TRUE(store
                  ->Append("node-a", tu::MakeChunk(id, "run-1-w2/ring0", 1, 0,
                                                   tu::PcapFile(6, 3)))
                  .ok());
  auto shown = registry.Get(id);
  ASSERT_EQ(shown->files_size(), 2);
  EXPECT_EQ(shown->files(0).name(), "run-1-w2/ring1");
  EXPECT_EQ(shown->files(1).name(), "run-1-w2/ring0");
  EXPECT_EQ(shown->files(1).generation(), 1u);
  auto seqs = ptu::SequenceNumbers(Download(store.get(), id));
  ASSERT_TRUE(seqs.ok());
  EXPECT_EQ(*seqs, ptu::Range(3, 6));
  EXPECT_FALSE(
      std::filesystem::exists(DataPath(id, "run-1-w2", "ring0", 0, ".pcap")));
  EXPECT_EQ(store->total_bytes(), 2 * tu::PcapFile(0, 3).size());
}

// The listing keeps its download order (first packet time) through appends,
// new files (earlier and later) and ring drops; its sizes follow every
// commit. (View reuses its sorted order between changes of the file set.)
TEST_F(StoreTest, TheListingFollowsEveryChangeOfTheFiles) {
  const std::string id = tu::CaptureId("web-1");
  CaptureRegistry registry;
  auto store = OpenStore(&registry);
  ASSERT_TRUE(
      store->PutStatus("node-a", tu::Status(id, "node-a", Capture::RUNNING, 3))
          .ok());
  std::map<std::pair<std::string, uint32_t>, uint64_t> sizes;
  auto append = [&](const std::string& file, uint32_t generation,
                    uint32_t first, uint32_t n) {
    uint64_t& size = sizes[{file, generation}];
    const std::string data =
        size == 0 ? tu::PcapFile(first, n) : tu::Records(first, n);
    ASSERT_TRUE(
        store->Append("node-a", tu::MakeChunk(id, file, generation, size, data))
            .ok());
    size += data.size();
  };
  // "name/generation:size" of each listed file, in listing order.
  auto listed = [&] {
    std::vector<std::string> out;
    auto shown = registry.Get(id);
    if (!shown.has_value()) return out;
    for (const auto& f : shown->files()) {
      out.push_back(absl::StrCat(f.name(), "/", f.generation(), ":", f.size()));
    }
    return out;
  };
  auto entry = [&](const std::string& file, uint32_t generation) {
    return absl::StrCat(file, "/", generation, ":", sizes[{file, generation}]);
  };
  const std::string r0 = "run-1-w3/ring0", r1 = "run-1-w3/ring1",
                    r2 = "run-1-w3/ring2";
  append(r0, 0, 100, 2);
  EXPECT_EQ(listed(), std::vector<std::string>({entry(r0, 0)}));
  append(r1, 0, 10, 2);  // earlier packets: listed first
  EXPECT_EQ(listed(), std::vector<std::string>({entry(r1, 0), entry(r0, 0)}));
  append(r0, 0, 102, 3);  // a count-only change
  append(r1, 0, 12, 1);
  EXPECT_EQ(listed(), std::vector<std::string>({entry(r1, 0), entry(r0, 0)}));
  append(r2, 0, 200, 2);
  EXPECT_EQ(listed(), std::vector<std::string>(
                          {entry(r1, 0), entry(r0, 0), entry(r2, 0)}));
  // The ring wraps: ring1 (the oldest) is dropped.
  append(r0, 1, 300, 2);
  EXPECT_EQ(listed(), std::vector<std::string>(
                          {entry(r0, 0), entry(r2, 0), entry(r0, 1)}));
  append(r2, 0, 202, 4);
  append(r0, 1, 302, 1);
  EXPECT_EQ(listed(), std::vector<std::string>(
                          {entry(r0, 0), entry(r2, 0), entry(r0, 1)}));
  auto shown = registry.Get(id);
  ASSERT_TRUE(shown.has_value());
  EXPECT_EQ(shown->packets(), 2u + 3u + 2u + 4u + 2u + 1u);
}

TEST_F(StoreTest, TheListingTakesCommitsAtMostOncePerInterval) {
  no_flush_ = true;
  listing_interval_ = absl::Seconds(1);
  const std::string id = tu::CaptureId("web-1");
  CaptureRegistry registry;
  absl::Mutex mu;
  std::vector<uint64_t> published_bytes;  // of each MODIFIED event
  registry.Subscribe(
      [&](const CaptureRegistry::Event& e) {
        absl::MutexLock lock(&mu);
        if (e.type() == CaptureRegistry::Event::MODIFIED) {
          published_bytes.push_back(e.capture().bytes());
        }
      },
      /*initial=*/false);
  auto store = OpenStore(&registry);
  // A status goes out at once.
  ASSERT_TRUE(
      store->PutStatus("node-a", tu::Status(id, "node-a", Capture::RUNNING, 3))
          .ok());
  ASSERT_TRUE(registry.Get(id).has_value());
  const absl::Time start = absl::Now();
  uint64_t size = 0;
  for (uint32_t i = 0; i < 20; ++i) {
    const std::string data =
        i == 0 ? tu::PcapFile(0, 2) : tu::Records(2 * i, 2);
    ASSERT_TRUE(store
                    ->Append("node-a",
                             tu::MakeChunk(id, "run-1-w3/ring0", 0, size, data))
                    .ok());
    size += data.size();
  }
  if (absl::Now() - start < absl::Milliseconds(800)) {
    // Within the interval of the status's publication: not listed yet.
    EXPECT_EQ(registry.Get(id)->bytes(), 0u);
  }
  // The last commit is listed by the end of the interval, in one event.
  for (int i = 0; i < 40 && registry.Get(id)->bytes() != size; ++i) {
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_EQ(registry.Get(id)->bytes(), size);
  EXPECT_EQ(registry.Get(id)->packets(), 40u);
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
  {
    absl::MutexLock lock(&mu);
    EXPECT_LE(published_bytes.size(), 2u);
    EXPECT_EQ(published_bytes.back(), size);
  }
  // A stop is listed at once, even within the interval; so is the commit
  // that came just before it.
  const std::string more = tu::Records(40, 1);
  ASSERT_TRUE(
      store
          ->Append("node-a", tu::MakeChunk(id, "run-1-w3/ring0", 0, size, more))
          .ok());
  ASSERT_TRUE(
      store->PutStatus("node-a", tu::Status(id, "node-a", Capture::STOPPED, 3))
          .ok());
  EXPECT_EQ(registry.Get(id)->state(), Capture::STOPPED);
  EXPECT_EQ(registry.Get(id)->bytes(), size + more.size());
  // A commit left for the lister when the store closes is no trouble.
  ASSERT_TRUE(store
                  ->Append("node-a", tu::MakeChunk(id, "run-1-w3/ring0", 0,
                                                   size + more.size(),
                                                   tu::Records(41, 1)))
                  .ok());
  store.reset();
}

// A follow reader sees bytes appended to the file it is reading and moves on
// to the next file once one exists, without repeating its global header.
TEST_F(StoreTest, FollowReaderPicksUpAppendsAndNewFiles) {
  const std::string id = tu::CaptureId("web-1");
  CaptureRegistry registry;
  auto store = OpenStore(&registry);
  ASSERT_TRUE(
      store->PutStatus("node-a", tu::Status(id, "node-a", Capture::RUNNING, 3))
          .ok());
  const std::string first = tu::PcapFile(0, 2);
  ASSERT_TRUE(
      store->Append("node-a", tu::MakeChunk(id, "run-1-w3/ring0", 0, 0, first))
          .ok());
  auto reader = store->OpenReader(id, /*follow=*/true);
  ASSERT_TRUE(reader.ok()) << reader.status();
  std::string out;
  auto drain = [&] {
    for (int i = 0; i < 100; ++i) {
      auto n = (*reader)->Read(&out, 50);
      ASSERT_TRUE(n.ok()) << n.status();
      if (*n == 0) return;
    }
    FAIL() << "reader never caught up";
  };
  drain();
  EXPECT_EQ(out, first);
  EXPECT_FALSE((*reader)->Done());
  ASSERT_TRUE(
      store
          ->Append("node-a", tu::MakeChunk(id, "run-1-w3/ring0", 0,
                                           first.size(), tu::Records(2, 2)))
          .ok());
  drain();
  ASSERT_TRUE(store
                  ->Append("node-a", tu::MakeChunk(id, "run-1-w3/ring1", 0, 0,
                                                   tu::PcapFile(4, 3)))
                  .ok());
  drain();
  auto seqs = ptu::SequenceNumbers(out);
  ASSERT_TRUE(seqs.ok()) << seqs.status();
  EXPECT_EQ(*seqs, ptu::Range(0, 7));
  EXPECT_FALSE((*reader)->Done());
  ASSERT_TRUE(
      store->PutStatus("node-a", tu::Status(id, "node-a", Capture::STOPPED, 3))
          .ok());
  EXPECT_TRUE((*reader)->Done());
}

TEST_F(StoreTest, RetentionAndByteBudgetEvictOldestStoppedFirst) {
  max_bytes_ = 3 * tu::PcapFile(0, 10).size();
  CaptureRegistry registry;
  auto store = OpenStore(&registry);
  const std::string a = tu::CaptureId("a"), b = tu::CaptureId("b"),
                    c = tu::CaptureId("c"), d = tu::CaptureId("d");
  for (const auto& id : {a, b, c, d}) {
    ASSERT_TRUE(store->PutStatus("node-a", tu::Status(id, "node-a")).ok());
    ASSERT_TRUE(store
                    ->Append("node-a", tu::MakeChunk(id, "run-1-w5/ring0", 0, 0,
                                                     tu::PcapFile(0, 10)))
                    .ok());
  }
  // a stops first, then b; c and d keep running.
  ASSERT_TRUE(
      store->PutStatus("node-a", tu::Status(a, "node-a", Capture::STOPPED))
          .ok());
  now_ += absl::Minutes(10);
  ASSERT_TRUE(
      store->PutStatus("node-a", tu::Status(b, "node-a", Capture::STOPPED))
          .ok());
  const absl::Time a_stopped = now_ - absl::Minutes(10);
  auto shown = registry.Get(a);
  ASSERT_TRUE(shown->has_expire_time());
  EXPECT_EQ(FromProto(shown->expire_time()), a_stopped + absl::Hours(1));
  EXPECT_FALSE(registry.Get(c)->has_expire_time());

  // Over budget (4 captures, room for 3): the oldest stopped one goes.
  EXPECT_EQ(store->Maintain(), std::vector<std::string>{a});
  EXPECT_FALSE(registry.Get(a).has_value());
  EXPECT_FALSE(std::filesystem::exists(absl::StrCat(dir_, "/captures/", a)));
  EXPECT_TRUE(registry.Get(b).has_value());
  EXPECT_TRUE(store->Maintain().empty());

  // Retention: b expires an hour after it stopped.
  now_ += absl::Minutes(59);
  EXPECT_TRUE(store->Maintain().empty());
  now_ += absl::Minutes(2);
  EXPECT_EQ(store->Maintain(), std::vector<std::string>{b});

  // d is no longer reported by its node: stopped, on_node false, expiring.
  store->MarkGone("node-a", {c}, "no longer reported by node node-a");
  shown = registry.Get(d);
  EXPECT_FALSE(shown->on_node());
  EXPECT_EQ(shown->state(), Capture::STOPPED);
  EXPECT_EQ(FromProto(shown->expire_time()), now_ + absl::Hours(1));
  EXPECT_TRUE(registry.Get(c)->on_node());
  // Running captures are never evicted, even over budget.
  max_bytes_ = 1;
  CaptureRegistry registry2;
  store.reset();
  store = OpenStore(&registry2);
  EXPECT_EQ(store->Maintain(), std::vector<std::string>{d});
  EXPECT_TRUE(registry2.Get(c).has_value());
  EXPECT_FALSE(registry2.Get(d).has_value());
}

// Descriptors open in this process.
int OpenDescriptors() {
  int n = 0;
  DIR* d = opendir("/proc/self/fd");
  if (d == nullptr) return -1;
  while (struct dirent* e = readdir(d)) {
    if (e->d_name[0] != '.') ++n;
  }
  closedir(d);
  return n - 1;  // the directory stream's own
}

// Lowers the soft RLIMIT_NOFILE for the scope of one test.
class ScopedFileLimit {
 public:
  explicit ScopedFileLimit(rlim_t soft) {
    getrlimit(RLIMIT_NOFILE, &saved_);
    struct rlimit lowered = saved_;
    lowered.rlim_cur = soft;
    ok_ = setrlimit(RLIMIT_NOFILE, &lowered) == 0;
  }
  ~ScopedFileLimit() { setrlimit(RLIMIT_NOFILE, &saved_); }
  bool ok() const { return ok_; }

 private:
  struct rlimit saved_;
  bool ok_ = false;
};

// Hundreds of stored files under a descriptor limit of a few dozen: every
// file is stored, appended to again later, served, and recovered after a
// restart, with the store's descriptors bounded whatever the file count.
TEST_F(StoreTest, ManyStoredFilesFitUnderALowDescriptorLimit) {
  constexpr int kCaptures = 40;
  constexpr int kFiles = 5;  // run-1-w5/ring0..4 each: 200 stored files
  no_flush_ = true;          // 400 files: spare the disk
  const int base = OpenDescriptors();
  ScopedFileLimit limit(static_cast<rlim_t>(base + 48));
  ASSERT_TRUE(limit.ok());
  std::vector<std::string> ids;
  for (int i = 0; i < kCaptures; ++i) {
    ids.push_back(tu::CaptureId(absl::StrCat("web-", i)));
  }
  auto file = [](int f) { return absl::StrCat("run-1-w5/ring", f); };
  {
    CaptureRegistry registry;
    auto store = OpenStore(&registry);
    ASSERT_NE(store, nullptr);
    for (const auto& id : ids) {
      ASSERT_TRUE(store->PutStatus("node-a", tu::Status(id, "node-a")).ok());
    }
    // First pass creates every file, the second appends to each again.
    for (const auto& id : ids) {
      for (int f = 0; f < kFiles; ++f) {
        auto r = store->Append(
            "node-a",
            tu::MakeChunk(id, file(f), 0, 0, tu::PcapFile(10 * f, 3)));
        ASSERT_TRUE(r.ok()) << id << " " << file(f) << ": " << r.status();
      }
    }
    const uint64_t head = tu::PcapFile(0, 3).size();
    for (const auto& id : ids) {
      for (int f = 0; f < kFiles; ++f) {
        auto r = store->Append(
            "node-a",
            tu::MakeChunk(id, file(f), 0, head, tu::Records(10 * f + 3, 2)));
        ASSERT_TRUE(r.ok()) << id << " " << file(f) << ": " << r.status();
      }
    }
    const int used = OpenDescriptors() - base;
    std::cout << "descriptors open with " << kCaptures * kFiles
              << " stored files: " << used << std::endl;
    EXPECT_LE(used, 40);
    for (const auto& id : ids) {
      auto seqs = ptu::SequenceNumbers(Download(store.get(), id));
      ASSERT_TRUE(seqs.ok()) << id << ": " << seqs.status();
      EXPECT_EQ(seqs->size(), 5u * kFiles) << id;
    }
  }
  CaptureRegistry registry;
  auto store = OpenStore(&registry);
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->ResumePoints("node-a").size(), size_t{kCaptures * kFiles});
  EXPECT_EQ(store->total_bytes(),
            uint64_t{kCaptures} * kFiles * tu::PcapFile(0, 5).size());
  for (const auto& id : ids) {
    auto seqs = ptu::SequenceNumbers(Download(store.get(), id));
    ASSERT_TRUE(seqs.ok()) << id << ": " << seqs.status();
    EXPECT_EQ(seqs->size(), 5u * kFiles) << id;
  }
}

// A chunk that starts inside the stored data but runs past its end (the
// agent re-sends from an older acknowledgement) adds its new tail.
TEST_F(StoreTest, PartlyOverlappingChunkStoresItsNewTail) {
  const std::string id = tu::CaptureId("web-1");
  CaptureRegistry registry;
  auto store = OpenStore(&registry);
  ASSERT_TRUE(store->PutStatus("node-a", tu::Status(id, "node-a")).ok());
  const std::string head = tu::PcapFile(0, 4);
  ASSERT_TRUE(
      store->Append("node-a", tu::MakeChunk(id, "run-1-w5/ring0", 0, 0, head))
          .ok());
  // Records 2..5 at the offset of record 2: 2 and 3 are stored, 4 and 5 new.
  const uint64_t rec2 = head.size() - tu::Records(2, 2).size();
  auto r = store->Append("node-a", tu::MakeChunk(id, "run-1-w5/ring0", 0, rec2,
                                                 tu::Records(2, 4)));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->duplicate);
  EXPECT_EQ(r->gap, 0u);
  EXPECT_EQ(r->offset, rec2 + tu::Records(2, 4).size());
  // A whole file re-sent from offset 0 with one more record.
  r = store->Append(
      "node-a", tu::MakeChunk(id, "run-1-w5/ring0", 0, 0, tu::PcapFile(0, 7)));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->offset, tu::PcapFile(0, 7).size());
  auto seqs = ptu::SequenceNumbers(Download(store.get(), id));
  ASSERT_TRUE(seqs.ok()) << seqs.status();
  EXPECT_EQ(*seqs, ptu::Range(0, 7));
  EXPECT_EQ(registry.Get(id)->packets(), 7u);
  // The stored end must fall on one of the chunk's record boundaries.
  const uint64_t end = tu::PcapFile(0, 7).size();
  const std::string two = tu::Records(6, 2);
  auto bad = store->Append(
      "node-a", tu::MakeChunk(id, "run-1-w5/ring0", 0, end - 10, two));
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument)
      << bad.status();
  EXPECT_EQ(registry.Get(id)->packets(), 7u);
}

// Retention runs on the aggregator's clock from when it saw the capture
// stop, whatever stop time the agent claims, and survives a restart.
TEST_F(StoreTest, RetentionCountsFromWhenTheAggregatorSawTheStop) {
  const std::string id = tu::CaptureId("web-1");
  const absl::Time seen = now_;
  {
    CaptureRegistry registry;
    auto store = OpenStore(&registry);
    ASSERT_TRUE(store->PutStatus("node-a", tu::Status(id, "node-a")).ok());
    Capture stopped = tu::Status(id, "node-a", Capture::STOPPED);
    *stopped.mutable_stop_time() = ToProto(now_ - absl::Hours(24 * 30));
    *stopped.mutable_update_time() = ToProto(now_ - absl::Hours(24 * 30));
    ASSERT_TRUE(store->PutStatus("node-a", stopped).ok());
    EXPECT_TRUE(store->Maintain().empty());
    ASSERT_TRUE(registry.Get(id).has_value());
    EXPECT_EQ(FromProto(registry.Get(id)->expire_time()),
              seen + absl::Hours(1));
    // The agent's stop time is still shown as it reported it.
    EXPECT_EQ(FromProto(registry.Get(id)->stop_time()),
              now_ - absl::Hours(24 * 30));
  }
  now_ += absl::Minutes(50);
  CaptureRegistry registry;
  auto store = OpenStore(&registry);
  EXPECT_TRUE(store->Maintain().empty());
  ASSERT_TRUE(registry.Get(id).has_value());
  EXPECT_EQ(FromProto(registry.Get(id)->expire_time()), seen + absl::Hours(1));
  now_ += absl::Minutes(11);
  EXPECT_EQ(store->Maintain(), std::vector<std::string>{id});
}

// What is persisted of a status reads back whole; one too large to be
// persisted is refused and the capture keeps its last status.
TEST_F(StoreTest, StatusesAreBoundedAndReadBackWhole) {
  const std::string id = tu::CaptureId("web-1");
  Capture big = tu::Status(id, "node-a");
  big.set_message(std::string(60 << 10, 'm'));
  {
    CaptureRegistry registry;
    auto store = OpenStore(&registry);
    ASSERT_TRUE(store->PutStatus("node-a", big).ok());
    Capture huge = tu::Status(id, "node-a", Capture::FAILED);
    huge.set_message(std::string(2 << 20, 'h'));
    const absl::Status put = store->PutStatus("node-a", huge);
    EXPECT_EQ(put.code(), absl::StatusCode::kInvalidArgument) << put;
    EXPECT_EQ(registry.Get(id)->state(), Capture::RUNNING);
  }
  CaptureRegistry registry;
  auto store = OpenStore(&registry);
  auto shown = registry.Get(id);
  ASSERT_TRUE(shown.has_value());
  EXPECT_EQ(shown->message(), big.message());
  EXPECT_EQ(shown->state(), Capture::RUNNING);
}

TEST_F(StoreTest, ChunkOffsetsThatOverflowAreRejected) {
  const std::string id = tu::CaptureId("web-1");
  CaptureRegistry registry;
  auto store = OpenStore(&registry);
  ASSERT_TRUE(store->PutStatus("node-a", tu::Status(id, "node-a")).ok());
  ASSERT_TRUE(store
                  ->Append("node-a", tu::MakeChunk(id, "run-1-w5/ring0", 0, 0,
                                                   tu::PcapFile(0, 2)))
                  .ok());
  const std::string more = tu::Records(2, 2);
  auto r = store->Append("node-a",
                         tu::MakeChunk(id, "run-1-w5/ring0", 0,
                                       UINT64_MAX - more.size() + 1, more));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument)
      << (r.ok() ? absl::StrCat("stored, offset ", r->offset)
                 : r.status().ToString());
  auto points = store->ResumePoints("node-a");
  ASSERT_EQ(points.size(), 1u);
  EXPECT_EQ(points[0].offset(), tu::PcapFile(0, 2).size());
}

// One capture's file-system trouble is that capture's error (a code the
// ingest service treats as per-capture, a message without server paths),
// never a store-wide one, and other captures carry on.
TEST_F(StoreTest, OneCapturesFileSystemTroubleIsACaptureError) {
  CaptureRegistry registry;
  auto store = OpenStore(&registry);
  auto per_capture = [&](const absl::Status& s) {
    EXPECT_TRUE(s.code() == absl::StatusCode::kInvalidArgument ||
                s.code() == absl::StatusCode::kFailedPrecondition)
        << s;
    EXPECT_FALSE(absl::StrContains(s.message(), dir_)) << s;
  };
  // A name too long for the file system.
  const std::string long_id =
      absl::StrCat(std::string(63, 'n'), "_", std::string(200, 'p'),
                   "_0123abcd_1700000000000");
  per_capture(store->PutStatus("node-a", tu::Status(long_id, "node-a")));
  // Its directory was removed behind the store's back.
  const std::string gone = tu::CaptureId("gone");
  ASSERT_TRUE(store->PutStatus("node-a", tu::Status(gone, "node-a")).ok());
  std::filesystem::remove_all(absl::StrCat(dir_, "/captures/", gone));
  per_capture(store
                  ->Append("node-a", tu::MakeChunk(gone, "run-1-w5/ring0", 0, 0,
                                                   tu::PcapFile(0, 2)))
                  .status());
  // A file where its run directory should be.
  const std::string blocked = tu::CaptureId("blocked");
  ASSERT_TRUE(store->PutStatus("node-a", tu::Status(blocked, "node-a")).ok());
  ptu::WriteFile(absl::StrCat(dir_, "/captures/", blocked, "/run-1-w5"), "x");
  per_capture(store
                  ->Append("node-a", tu::MakeChunk(blocked, "run-1-w5/ring0", 0,
                                                   0, tu::PcapFile(0, 2)))
                  .status());
  // Another capture is unaffected.
  const std::string fine = tu::CaptureId("fine");
  ASSERT_TRUE(store->PutStatus("node-a", tu::Status(fine, "node-a")).ok());
  EXPECT_TRUE(store
                  ->Append("node-a", tu::MakeChunk(fine, "run-1-w5/ring0", 0, 0,
                                                   tu::PcapFile(0, 2)))
                  .ok());
}

// The file a descriptor refers to.
std::string FdPath(int fd) {
  char buf[4096];
  const ssize_t n =
      readlink(absl::StrCat("/proc/self/fd/", fd).c_str(), buf, sizeof(buf));
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
}

// Runs operations that must finish while something else is stuck, each with
// a deadline instead of a hang; the threads are joined at the end (after the
// stuck part has been released).
class Deadlines {
 public:
  ~Deadlines() { Join(); }
  void Expect(const std::string& what, std::function<void()> fn) {
    auto done = std::make_shared<absl::Notification>();
    threads_.emplace_back([fn = std::move(fn), done] {
      fn();
      done->Notify();
    });
    if (!done->WaitForNotificationWithTimeout(absl::Seconds(5))) {
      ADD_FAILURE() << what << " waited for another capture's stuck flush";
    }
  }
  void Join() {
    for (auto& t : threads_) t.join();
    threads_.clear();
  }

 private:
  std::vector<std::thread> threads_;
};

// A flush that hangs on one capture's files (data, log, capture.pb or its
// directories) holds up only that capture: other captures' appends, status
// updates and downloads, listings and maintenance go on.
TEST_F(StoreTest, ASlowFlushHoldsUpOnlyItsOwnCapture) {
  const std::string slow = tu::CaptureId("slow");
  const std::string other = tu::CaptureId("other");
  const std::string gone = tu::CaptureId("gone");
  std::atomic<bool> armed{false};
  std::atomic<int> stuck{0};
  absl::Notification release;
  auto hook = [&](int (*flush)(int)) {
    return [&, flush](int fd) {
      if (armed.load() && absl::StrContains(FdPath(fd), slow)) {
        ++stuck;
        release.WaitForNotification();
      }
      return flush(fd) == 0 ? 0 : errno;
    };
  };
  StoreOptions options;
  options.data_dir = dir_;
  options.retention = absl::Hours(1);
  options.clock = [this] { return now_; };
  options.sync.min_files_for_fs = 0;
  options.sync_ops.sync_file = hook(fdatasync);
  options.sync_ops.sync_fs = [](int fd) { return syncfs(fd) == 0 ? 0 : errno; };
  options.fsync = hook(fsync);
  CaptureRegistry registry;
  auto opened = Store::Open(options, &registry);
  ASSERT_TRUE(opened.ok()) << opened.status();
  Store* store = opened->get();
  const std::string head = tu::PcapFile(0, 2);
  for (const auto& [id, node] :
       {std::pair{slow, "node-a"}, std::pair{other, "node-b"},
        std::pair{gone, "node-b"}}) {
    ASSERT_TRUE(store->PutStatus(node, tu::Status(id, node)).ok());
    ASSERT_TRUE(
        store->Append(node, tu::MakeChunk(id, "run-1-w5/ring0", 0, 0, head))
            .ok());
  }
  ASSERT_TRUE(
      store->PutStatus("node-b", tu::Status(gone, "node-b", Capture::STOPPED))
          .ok());
  now_ += absl::Hours(2);  // `gone` has expired

  armed = true;
  absl::Status slow_append, slow_status;
  std::thread append_thread([&] {
    slow_append =
        store
            ->Append("node-a", tu::MakeChunk(slow, "run-1-w5/ring0", 0,
                                             head.size(), tu::Records(2, 2)))
            .status();
  });
  auto wait_stuck = [&](int n) {
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    while (stuck.load() < n && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(1));
    }
    EXPECT_GE(stuck.load(), n) << "the slow capture's flush never started";
  };
  wait_stuck(1);  // its data flush hangs
  std::thread status_thread([&] {
    slow_status = store->PutStatus(
        "node-a", tu::Status(slow, "node-a", Capture::STOPPED));
  });
  wait_stuck(2);  // and its capture.pb flush too

  Deadlines deadlines;
  deadlines.Expect("an append to another capture", [&] {
    EXPECT_TRUE(
        store
            ->Append("node-b", tu::MakeChunk(other, "run-1-w5/ring0", 0,
                                             head.size(), tu::Records(2, 2)))
            .ok());
  });
  deadlines.Expect("a new file of another capture", [&] {
    EXPECT_TRUE(store
                    ->Append("node-b", tu::MakeChunk(other, "run-1-w5/ring1", 0,
                                                     0, tu::PcapFile(4, 2)))
                    .ok());
  });
  deadlines.Expect("another capture's status", [&] {
    Capture changed = tu::Status(other, "node-b");
    changed.set_message("still running");
    EXPECT_TRUE(store->PutStatus("node-b", changed).ok());
  });
  deadlines.Expect("a download of another capture", [&] {
    auto seqs = ptu::SequenceNumbers(Download(store, other));
    ASSERT_TRUE(seqs.ok()) << seqs.status();
    EXPECT_EQ(*seqs, ptu::Range(0, 6));
  });
  deadlines.Expect("listing", [&] {
    EXPECT_EQ(registry.List().size(), 3u);
    EXPECT_EQ(store->ResumePoints("node-b").size(), 3u);
    EXPECT_GT(store->total_bytes(), 0u);
  });
  deadlines.Expect("maintenance", [&] {
    EXPECT_EQ(store->Maintain(), std::vector<std::string>{gone});
  });
  deadlines.Expect("another node's disconnection",
                   [&] { store->MarkGone("node-b", {other}, "gone"); });
  release.Notify();
  append_thread.join();
  status_thread.join();
  deadlines.Join();
  EXPECT_TRUE(slow_append.ok()) << slow_append;
  EXPECT_TRUE(slow_status.ok()) << slow_status;
  EXPECT_EQ(registry.Get(slow)->state(), Capture::STOPPED);
  EXPECT_EQ(registry.Get(slow)->packets(), 4u);
}

// A new stored file makes its entries durable with a flush of its run's
// directory; the capture's directory, which only gains the run directory,
// is flushed once per run (not once per file: every flush of a directory
// is a journal commit, and a file comes every megabyte).
TEST_F(StoreTest, ANewFileFlushesItsRunsDirectoryAndTheCapturesOnlyOnce) {
  const std::string id = tu::CaptureId("dirs");
  absl::Mutex mu;
  std::map<std::string, int> flushes;  // directory path -> fsync calls
  StoreOptions options;
  options.data_dir = dir_;
  options.retention = absl::Hours(1);
  options.clock = [this] { return now_; };
  options.fsync = [&](int fd) {
    const std::string path = FdPath(fd);
    absl::MutexLock lock(&mu);
    ++flushes[path];
    return fsync(fd) == 0 ? 0 : errno;
  };
  CaptureRegistry registry;
  auto opened = Store::Open(options, &registry);
  ASSERT_TRUE(opened.ok()) << opened.status();
  Store* store = opened->get();
  ASSERT_TRUE(store->PutStatus("node-a", tu::Status(id, "node-a")).ok());
  {
    absl::MutexLock lock(&mu);
    flushes.clear();  // capture.pb's flushes are not this test's subject
  }
  for (const char* name : {"run-1-w5/ring0", "run-1-w5/ring1", "run-1-w5/ring2",
                           "run-2-w5/ring0", "run-2-w5/ring1"}) {
    ASSERT_TRUE(store
                    ->Append("node-a",
                             tu::MakeChunk(id, name, 0, 0, tu::PcapFile(0, 2)))
                    .ok())
        << name;
  }
  const std::string capture_dir = absl::StrCat(dir_, "/captures/", id);
  absl::MutexLock lock(&mu);
  EXPECT_EQ(flushes[capture_dir], 2) << "once for each new run directory";
  EXPECT_EQ(flushes[capture_dir + "/run-1-w5"], 3) << "once per new file";
  EXPECT_EQ(flushes[capture_dir + "/run-2-w5"], 2) << "once per new file";
}

// capture.pb as earlier versions wrote it (a bare Capture, no retention
// start) still reads; a stopped one starts its retention at recovery, never
// at the stop time it claims, and is rewritten in the current format.
TEST_F(StoreTest, EarlierCaptureMetadataReadsAndRetentionStartsAtRecovery) {
  const std::string id = tu::CaptureId("web-1");
  {
    CaptureRegistry registry;
    auto store = OpenStore(&registry);
    ASSERT_TRUE(store->PutStatus("node-a", tu::Status(id, "node-a")).ok());
    ASSERT_TRUE(store
                    ->Append("node-a", tu::MakeChunk(id, "run-1-w5/ring0", 0, 0,
                                                     tu::PcapFile(0, 3)))
                    .ok());
  }
  Capture old = tu::Status(id, "node-a", Capture::STOPPED);
  *old.mutable_stop_time() = ToProto(now_ - absl::Hours(24 * 30));
  const std::string meta_path =
      absl::StrCat(dir_, "/captures/", id, "/capture.pb");
  ptu::WriteFile(meta_path, old.SerializeAsString());
  now_ += absl::Minutes(5);
  CaptureRegistry registry;
  auto store = OpenStore(&registry);
  auto shown = registry.Get(id);
  ASSERT_TRUE(shown.has_value());
  EXPECT_EQ(shown->state(), Capture::STOPPED);
  EXPECT_EQ(shown->packets(), 3u);
  EXPECT_EQ(FromProto(shown->expire_time()), now_ + absl::Hours(1));
  EXPECT_TRUE(store->Maintain().empty());
  bool legacy = true;
  auto meta = DecodeCaptureMeta(ptu::ReadFile(meta_path), &legacy);
  ASSERT_TRUE(meta.ok()) << meta.status();
  EXPECT_FALSE(legacy);
  ASSERT_TRUE(meta->retention_start.has_value());
  EXPECT_EQ(*meta->retention_start, now_);
}

// A capture marked gone (its node no longer reports it) starts retention
// then, and a status saying it runs again ends that.
TEST_F(StoreTest, MarkGoneStartsRetentionAndARunningStatusEndsIt) {
  const std::string id = tu::CaptureId("web-1");
  CaptureRegistry registry;
  auto store = OpenStore(&registry);
  ASSERT_TRUE(store->PutStatus("node-a", tu::Status(id, "node-a")).ok());
  EXPECT_EQ(store->NodesWithCaptures(), std::set<std::string>{"node-a"});
  store->MarkGone("node-a", {}, "node node-a gone");
  EXPECT_TRUE(store->NodesWithCaptures().empty());
  EXPECT_EQ(registry.Get(id)->state(), Capture::STOPPED);
  EXPECT_EQ(registry.Get(id)->stop_reason(), packetcapture::v1::NOT_ON_NODE);
  EXPECT_EQ(registry.Get(id)->message(), "node node-a gone");
  EXPECT_EQ(FromProto(registry.Get(id)->expire_time()), now_ + absl::Hours(1));
  now_ += absl::Minutes(30);
  ASSERT_TRUE(store->PutStatus("node-a", tu::Status(id, "node-a")).ok());
  EXPECT_FALSE(registry.Get(id)->has_expire_time());
  now_ += absl::Hours(2);
  EXPECT_TRUE(store->Maintain().empty());
  ASSERT_TRUE(
      store->PutStatus("node-a", tu::Status(id, "node-a", Capture::STOPPED))
          .ok());
  EXPECT_EQ(FromProto(registry.Get(id)->expire_time()), now_ + absl::Hours(1));
}

}  // namespace
}  // namespace pc::aggregator
