#include "common/pcap/ring_reader.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/pcap/pcap_format.h"
#include "common/pcap/pcap_test_util.h"
#include "gtest/gtest.h"

extern char** environ;

namespace pc::pcap {
namespace {

using testutil::AppendFile;
using testutil::MakePcapFile;
using testutil::MakeRecords;
using testutil::MakeTempDir;
using testutil::Range;
using testutil::SequenceNumbers;
using testutil::SetMtime;
using testutil::WriteFile;

absl::Time Base() { return absl::FromUnixSeconds(1700000000); }

std::vector<uint32_t> Concat(std::vector<std::vector<uint32_t>> parts) {
  std::vector<uint32_t> all;
  for (const auto& p : parts) all.insert(all.end(), p.begin(), p.end());
  return all;
}

TEST(RingFileNameTest, PadsLikeTcpdump) {
  EXPECT_EQ(RingFileName("ring", 0, 11), "ring00");
  EXPECT_EQ(RingFileName("ring", 10, 11), "ring10");
  EXPECT_EQ(RingFileName("ring", 3, 10), "ring3");
  EXPECT_EQ(RingFileName("ring", 5, 100), "ring05");
  EXPECT_EQ(RingFileName("ring", 7, 101), "ring007");
  EXPECT_EQ(RingFileName("ring", 1, 2), "ring1");
  // tcpdump -W 1 writes the bare name.
  EXPECT_EQ(RingFileName("ring", 0, 1), "ring");
}

TEST(ValidateRingBaseTest, AcceptsOnlyPlainNames) {
  EXPECT_TRUE(ValidateRingBase("ring").ok());
  EXPECT_TRUE(ValidateRingBase("cap-01_x").ok());
  for (absl::string_view bad :
       {"", "../ring", "a/b", "Ring", "a.b", "a b", "ring\n", ".."}) {
    EXPECT_EQ(ValidateRingBase(bad).code(), absl::StatusCode::kInvalidArgument)
        << bad;
  }
  EXPECT_FALSE(ValidateRingBase(std::string(201, 'a')).ok());
  EXPECT_FALSE(ValidateRingBase(absl::string_view("a\0b", 3)).ok());
}

std::vector<int> SortedIndices(std::vector<std::pair<int, int>> index_mtime) {
  std::vector<RingFile> files;
  for (auto [index, ms] : index_mtime) {
    RingFile f;
    f.index = index;
    f.mtime = Base() + absl::Milliseconds(ms);
    files.push_back(f);
  }
  SortRingOldestFirst(&files);
  std::vector<int> out;
  for (const RingFile& f : files) out.push_back(f.index);
  return out;
}

TEST(SortRingOldestFirstTest, FindsTheRotation) {
  // First pass, not wrapped yet.
  EXPECT_EQ(SortedIndices({{0, 1}, {1, 2}, {2, 3}}),
            (std::vector<int>{0, 1, 2}));
  // Wrapped: 2 and 3 are left from the first pass.
  EXPECT_EQ(SortedIndices({{0, 5}, {1, 6}, {2, 3}, {3, 4}}),
            (std::vector<int>{2, 3, 0, 1}));
  // Equal mtimes across the wrap from 3 to 0: 3 was written before 0, which
  // (mtime, index) order would get wrong.
  EXPECT_EQ(SortedIndices({{0, 5}, {1, 2}, {2, 3}, {3, 5}}),
            (std::vector<int>{1, 2, 3, 0}));
  // Ties inside the run keep index order.
  EXPECT_EQ(SortedIndices({{0, 7}, {1, 7}, {2, 5}, {3, 7}}),
            (std::vector<int>{2, 3, 0, 1}));
  // All equal: index order.
  EXPECT_EQ(SortedIndices({{2, 1}, {0, 1}, {1, 1}}),
            (std::vector<int>{0, 1, 2}));
  // No rotation fits (someone touched file 1): plain mtime order.
  EXPECT_EQ(SortedIndices({{0, 1}, {1, 9}, {2, 3}, {3, 4}}),
            (std::vector<int>{0, 2, 3, 1}));
  EXPECT_TRUE(SortedIndices({}).empty());
}

// Writes ring files the way tcpdump would, with strictly increasing mtimes so
// the test does not depend on the file system's timestamp granularity.
class FakeRing {
 public:
  FakeRing(std::string dir, int max_files)
      : dir_(std::move(dir)), max_files_(max_files) {}

  std::string Path(int index) const {
    return absl::StrCat(dir_, "/", RingFileName("ring", index, max_files_));
  }

  // Creates or reuses (O_TRUNC) file `index` with records [first, first+n).
  void Write(int index, const GlobalHeader& h, uint32_t first, uint32_t n) {
    WriteFile(Path(index), MakePcapFile(h, first, n));
    Touch(index);
  }
  void Append(int index, absl::string_view data) {
    AppendFile(Path(index), data);
    Touch(index);
  }
  void Touch(int index) {
    clock_ += absl::Milliseconds(10);
    SetMtime(Path(index), clock_);
  }

 private:
  const std::string dir_;
  const int max_files_;
  absl::Time clock_ = Base();
};

class RingReaderTest : public ::testing::Test {
 protected:
  std::unique_ptr<RingReader> MustOpen(int max_files,
                                       RingReader::Options options = {}) {
    absl::StatusOr<std::unique_ptr<RingReader>> r =
        RingReader::Open(dir_, "ring", max_files, options);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? std::move(*r) : nullptr;
  }

  // Reads until Read() reports nothing new, `cap` bytes at a time.
  static std::string Drain(RingReader& reader, size_t cap = 1 << 16) {
    std::string out;
    std::string buf(cap, '\0');
    for (int i = 0; i < 100000; ++i) {
      absl::StatusOr<size_t> n = reader.Read(&buf[0], cap);
      EXPECT_TRUE(n.ok()) << n.status();
      if (!n.ok() || *n == 0) break;
      out.append(buf.data(), *n);
    }
    return out;
  }

  std::string dir_ = MakeTempDir();
  GlobalHeader header_;
};

TEST_F(RingReaderTest, OpenValidatesArguments) {
  EXPECT_EQ(RingReader::Open(dir_, "../x", 3).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(RingReader::Open(dir_, "ring", 0).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(RingReader::Open(dir_, "ring", kMaxRingFiles + 1).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(RingReader::Open(dir_ + "/missing", "ring", 3).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(RingReaderTest, EmptyRingHasNothingYet) {
  std::unique_ptr<RingReader> reader = MustOpen(4);
  ASSERT_NE(reader, nullptr);
  EXPECT_EQ(Drain(*reader), "");
  EXPECT_FALSE(reader->current_index().has_value());
  // A file with half a header is not a stream yet either.
  WriteFile(dir_ + "/ring0", SerializeGlobalHeader(header_).substr(0, 10));
  EXPECT_EQ(Drain(*reader), "");
  EXPECT_FALSE(reader->header().has_value());
}

TEST_F(RingReaderTest, MergesAWrappedRingInWriteOrder) {
  FakeRing ring(dir_, 4);
  // tcpdump -W 4 wrote 0,1,2,3 and then reused 0 and 1.
  ring.Write(0, header_, 0, 5);
  ring.Write(1, header_, 5, 5);
  ring.Write(2, header_, 10, 5);
  ring.Write(3, header_, 15, 5);
  ring.Write(0, header_, 20, 5);
  ring.Write(1, header_, 25, 3);

  absl::StatusOr<std::vector<RingFile>> files = ListRingFiles(dir_, "ring", 4);
  ASSERT_TRUE(files.ok()) << files.status();
  std::vector<std::string> names;
  for (const RingFile& f : *files) names.push_back(f.name);
  EXPECT_EQ(names,
            (std::vector<std::string>{"ring2", "ring3", "ring0", "ring1"}));
  EXPECT_EQ((*files)[0].path, dir_ + "/ring2");
  EXPECT_EQ((*files)[0].index, 2);
  EXPECT_EQ((*files)[3].size, kGlobalHeaderSize + 3 * (kRecordHeaderSize + 60));

  std::unique_ptr<RingReader> reader = MustOpen(4);
  ASSERT_NE(reader, nullptr);
  const std::string stream = Drain(*reader);
  // One header, then records 10..27: files 2, 3, 0, 1.
  EXPECT_EQ(stream.substr(0, kGlobalHeaderSize),
            SerializeGlobalHeader(header_));
  const ScanResult scan =
      ScanRecords(header_, absl::string_view(stream).substr(kGlobalHeaderSize));
  EXPECT_TRUE(scan.status.ok());
  EXPECT_EQ(scan.records, 18u);
  EXPECT_EQ(scan.complete_bytes, stream.size() - kGlobalHeaderSize);
  absl::StatusOr<std::vector<uint32_t>> seqs = SequenceNumbers(stream);
  ASSERT_TRUE(seqs.ok()) << seqs.status();
  EXPECT_EQ(*seqs, Range(10, 18));
  EXPECT_EQ(reader->records_read(), 18u);
  EXPECT_EQ(reader->bytes_read(), stream.size());
  EXPECT_EQ(reader->lost_bytes(), 0u);
  EXPECT_EQ(reader->current_index(), 1);
}

TEST_F(RingReaderTest, TinyReadsProduceTheSameStream) {
  FakeRing ring(dir_, 3);
  ring.Write(0, header_, 0, 4);
  ring.Write(1, header_, 4, 4);
  ring.Write(2, header_, 8, 4);
  std::unique_ptr<RingReader> big = MustOpen(3);
  std::unique_ptr<RingReader> tiny = MustOpen(3);
  ASSERT_NE(big, nullptr);
  ASSERT_NE(tiny, nullptr);
  const std::string want = Drain(*big);
  EXPECT_EQ(Drain(*tiny, 7), want);
  EXPECT_EQ(Drain(*tiny, 1), "");
}

TEST_F(RingReaderTest, NanosecondBigEndianRingKeepsItsHeader) {
  GlobalHeader h;
  h.big_endian = true;
  h.precision = TimestampPrecision::kNano;
  FakeRing ring(dir_, 2);
  ring.Write(0, h, 0, 3);
  ring.Write(1, h, 3, 3);
  std::unique_ptr<RingReader> reader = MustOpen(2);
  ASSERT_NE(reader, nullptr);
  const std::string stream = Drain(*reader);
  EXPECT_EQ(stream.substr(0, kGlobalHeaderSize), SerializeGlobalHeader(h));
  absl::StatusOr<std::vector<uint32_t>> seqs = SequenceNumbers(stream);
  ASSERT_TRUE(seqs.ok()) << seqs.status();
  EXPECT_EQ(*seqs, Range(0, 6));
}

TEST_F(RingReaderTest, FollowPicksUpAppendedRecordsAndTheNextFile) {
  FakeRing ring(dir_, 3);
  ring.Write(0, header_, 0, 2);
  std::unique_ptr<RingReader> reader = MustOpen(3);
  ASSERT_NE(reader, nullptr);
  std::string stream = Drain(*reader);
  EXPECT_EQ(stream.size(), kGlobalHeaderSize + 2 * (kRecordHeaderSize + 60));

  // One record and the header of the next (libpcap's two writes).
  const std::string next = MakeRecords(header_, 3, 1);
  ring.Append(0,
              MakeRecords(header_, 2, 1) + next.substr(0, kRecordHeaderSize));
  std::string more = Drain(*reader);
  EXPECT_EQ(more.size(), kRecordHeaderSize + 60) << "the half record waits";
  stream += more;
  ring.Append(0, next.substr(kRecordHeaderSize));
  stream += Drain(*reader);
  EXPECT_EQ(reader->current_index(), 0);

  // tcpdump rotates: file 1 appears; file 0 is final.
  ring.Write(1, header_, 4, 3);
  stream += Drain(*reader);
  EXPECT_EQ(reader->current_index(), 1);
  ring.Append(1, MakeRecords(header_, 7, 2));
  stream += Drain(*reader);

  absl::StatusOr<std::vector<uint32_t>> seqs = SequenceNumbers(stream);
  ASSERT_TRUE(seqs.ok()) << seqs.status();
  EXPECT_EQ(*seqs, Range(0, 9));
  EXPECT_EQ(reader->lost_bytes(), 0u);
}

TEST_F(RingReaderTest, FollowAcrossTheWrap) {
  FakeRing ring(dir_, 2);
  ring.Write(0, header_, 0, 2);
  std::unique_ptr<RingReader> reader = MustOpen(2);
  ASSERT_NE(reader, nullptr);
  std::string stream = Drain(*reader);
  ring.Write(1, header_, 2, 2);
  stream += Drain(*reader);
  ring.Write(0, header_, 4, 2);  // reuse of a file we finished: no loss
  stream += Drain(*reader);
  ring.Write(1, header_, 6, 2);
  stream += Drain(*reader);
  absl::StatusOr<std::vector<uint32_t>> seqs = SequenceNumbers(stream);
  ASSERT_TRUE(seqs.ok()) << seqs.status();
  EXPECT_EQ(*seqs, Range(0, 8));
  EXPECT_EQ(reader->lost_bytes(), 0u);
}

TEST_F(RingReaderTest, FileReusedMidReadCountsLostBytesAndSkipsAhead) {
  GlobalHeader h;
  h.snaplen = 64;  // so one read step (16 + 64 + slack bytes) is small
  FakeRing ring(dir_, 3);
  ring.Write(0, h, 0, 20);
  ring.Write(1, h, 20, 5);
  ring.Write(2, h, 25, 5);
  RingReader::Options options;
  options.max_read_bytes = 1;  // one step per Read
  std::unique_ptr<RingReader> reader = MustOpen(3, options);
  ASSERT_NE(reader, nullptr);

  std::string stream;
  std::string buf(1 << 16, '\0');
  absl::StatusOr<size_t> n = reader->Read(&buf[0], buf.size());
  ASSERT_TRUE(n.ok()) << n.status();
  stream.append(buf.data(), *n);
  const size_t record = kRecordHeaderSize + 60;
  const size_t read_from_file0 = stream.size() - kGlobalHeaderSize;
  ASSERT_GT(read_from_file0, 0u);
  ASSERT_LT(read_from_file0, 20 * record) << "file 0 must be half read";
  ASSERT_EQ(read_from_file0 % record, 0u);

  // tcpdump wraps and reuses file 0 before we finish it.
  ring.Write(0, h, 30, 3);
  stream += Drain(*reader);

  EXPECT_EQ(reader->lost_bytes(), 20 * record - read_from_file0);
  absl::StatusOr<std::vector<uint32_t>> seqs = SequenceNumbers(stream);
  ASSERT_TRUE(seqs.ok()) << seqs.status();
  const uint32_t first_part = static_cast<uint32_t>(read_from_file0 / record);
  // What was read of old file 0, then files 1 and 2, then the new file 0.
  EXPECT_EQ(*seqs, Concat({Range(0, first_part), Range(20, 10), Range(30, 3)}));
}

TEST_F(RingReaderTest, ReuseBeforeTheFirstReadStartsAtTheOldestSurvivor) {
  // tcpdump reuses the oldest file after Open but before the first Read: the
  // stream starts at the file that is now the oldest and ends with the
  // reused file's new contents.
  FakeRing ring(dir_, 3);
  ring.Write(0, header_, 0, 5);
  ring.Write(1, header_, 5, 5);
  ring.Write(2, header_, 10, 5);
  std::unique_ptr<RingReader> reader = MustOpen(3);
  ASSERT_NE(reader, nullptr);
  ring.Write(0, header_, 15, 2);
  const std::string stream = Drain(*reader);
  absl::StatusOr<std::vector<uint32_t>> seqs = SequenceNumbers(stream);
  ASSERT_TRUE(seqs.ok()) << seqs.status();
  EXPECT_EQ(*seqs, Range(5, 12));
}

TEST_F(RingReaderTest, MismatchedLinktypeIsAnError) {
  FakeRing ring(dir_, 3);
  ring.Write(0, header_, 0, 2);
  GlobalHeader cooked = header_;
  cooked.linktype = 113;
  ring.Write(1, cooked, 2, 2);
  std::unique_ptr<RingReader> reader = MustOpen(3);
  ASSERT_NE(reader, nullptr);
  std::string stream;
  std::string buf(1 << 16, '\0');
  absl::Status error;
  for (int i = 0; i < 10 && error.ok(); ++i) {
    absl::StatusOr<size_t> n = reader->Read(&buf[0], buf.size());
    if (!n.ok()) {
      error = n.status();
    } else {
      if (*n == 0) break;
      stream.append(buf.data(), *n);
    }
  }
  EXPECT_EQ(error.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(error.message().find("linktype 113"), absl::string_view::npos)
      << error;
  // Nothing of the foreign file got into the stream, which stays valid.
  absl::StatusOr<std::vector<uint32_t>> seqs = SequenceNumbers(stream);
  ASSERT_TRUE(seqs.ok()) << seqs.status();
  EXPECT_EQ(*seqs, Range(0, 2));
  // Sticky: the stream cannot continue.
  EXPECT_EQ(reader->Read(&buf[0], buf.size()).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(RingReaderTest, UnfinishedTailOfAFinishedFileIsLost) {
  FakeRing ring(dir_, 2);
  ring.Write(0, header_, 0, 2);
  ring.Append(0, MakeRecords(header_, 2, 1).substr(0, 30));  // tcpdump killed
  ring.Write(1, header_, 3, 2);
  std::unique_ptr<RingReader> reader = MustOpen(2);
  ASSERT_NE(reader, nullptr);
  const std::string stream = Drain(*reader);
  absl::StatusOr<std::vector<uint32_t>> seqs = SequenceNumbers(stream);
  ASSERT_TRUE(seqs.ok()) << seqs.status();
  EXPECT_EQ(*seqs, Concat({Range(0, 2), Range(3, 2)}));
  EXPECT_EQ(reader->lost_bytes(), 30u);
}

TEST_F(RingReaderTest, SingleFileRingUsesTheBareName) {
  WriteFile(dir_ + "/ring", MakePcapFile(header_, 0, 3));
  std::unique_ptr<RingReader> reader = MustOpen(1);
  ASSERT_NE(reader, nullptr);
  absl::StatusOr<std::vector<uint32_t>> seqs = SequenceNumbers(Drain(*reader));
  ASSERT_TRUE(seqs.ok()) << seqs.status();
  EXPECT_EQ(*seqs, Range(0, 3));
}

// Runs argv with stdout and stderr to files; returns the exit status.
int RunProcess(const std::vector<std::string>& args,
               const std::string& out_path, const std::string& err_path) {
  std::vector<char*> argv;
  for (const std::string& a : args) {
    argv.push_back(const_cast<char*>(a.c_str()));
  }
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, out_path.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&actions, 2, err_path.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  pid_t pid;
  const int rc =
      posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) return -1;
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return -1;
  }
  return status;
}

// The merged stream of a wrapped ring is a pcap file that tcpdump itself
// reads back, packet for packet.
TEST_F(RingReaderTest, TcpdumpReadsTheMergedStream) {
  constexpr char kTcpdump[] = "/usr/bin/tcpdump";
  if (access(kTcpdump, X_OK) != 0) GTEST_SKIP() << "no " << kTcpdump;
  FakeRing ring(dir_, 3);
  ring.Write(0, header_, 0, 7);
  ring.Write(1, header_, 7, 7);
  ring.Write(2, header_, 14, 7);
  ring.Write(0, header_, 21, 4);  // wrapped: file 1 is now the oldest
  std::unique_ptr<RingReader> reader = MustOpen(3);
  ASSERT_NE(reader, nullptr);
  const std::string stream = Drain(*reader);
  const std::string merged = dir_ + "/merged.pcap";
  WriteFile(merged, stream);

  const std::string out = dir_ + "/tcpdump.out";
  const std::string err = dir_ + "/tcpdump.err";
  // -Z root: as root, tcpdump otherwise switches to user "tcpdump".
  const int status =
      RunProcess({kTcpdump, "-r", merged, "-n", "-Z", "root"}, out, err);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << "status " << status << ": " << testutil::ReadFile(err);
  std::vector<std::string> lines =
      absl::StrSplit(testutil::ReadFile(out), '\n', absl::SkipEmpty());
  EXPECT_EQ(lines.size(), 18u)
      << testutil::ReadFile(out) << testutil::ReadFile(err);
  // One UDP packet per line, in capture order (files 1, 2, 0).
  ASSERT_FALSE(lines.empty());
  EXPECT_NE(lines[0].find("10.0.0.1.40000 > 10.0.0.2.9: UDP"),
            std::string::npos)
      << lines[0];
  EXPECT_NE(lines[0].find(":20.007"), std::string::npos) << lines[0];
}

}  // namespace
}  // namespace pc::pcap
