#include "common/pcap/file_scanner.h"

#include <stdio.h>
#include <unistd.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/pcap/pcap_format.h"
#include "common/pcap/pcap_test_util.h"
#include "gtest/gtest.h"

namespace pc::pcap {
namespace {

using testutil::AppendFile;
using testutil::MakePcapFile;
using testutil::MakeRecords;
using testutil::MakeTempDir;
using testutil::SequenceNumbers;
using testutil::WriteFile;

absl::Time Base() { return absl::FromUnixSeconds(1700000000); }

class FileScannerTest : public ::testing::Test {
 protected:
  std::string dir_ = MakeTempDir();
  std::string path_ = dir_ + "/cap.pcap";
};

FileScanner::PollResult MustPoll(FileScanner& scanner,
                                 std::string* out = nullptr) {
  absl::StatusOr<FileScanner::PollResult> r = scanner.Poll(out);
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? *r : FileScanner::PollResult();
}

TEST_F(FileScannerTest, MissingFileIsNotFound) {
  FileScanner scanner(path_);
  EXPECT_EQ(scanner.Poll().status().code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE(scanner.has_header());
}

TEST_F(FileScannerTest, NotAPcapIsInvalidArgument) {
  WriteFile(path_, std::string(100, 'x'));
  FileScanner scanner(path_);
  EXPECT_EQ(scanner.Poll().status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(FileScannerTest, CountsOnlyCompleteRecordsWhileFileGrowsInPieces) {
  GlobalHeader h;
  h.precision = TimestampPrecision::kNano;
  const std::string file = MakePcapFile(h, 0, 40, 70);
  // Where each record ends, as a file offset.
  std::vector<size_t> ends;
  for (size_t pos = kGlobalHeaderSize; pos < file.size();) {
    pos += kRecordHeaderSize + 70;
    ends.push_back(pos);
  }
  WriteFile(path_, "");
  FileScanner scanner(path_);
  std::string out;
  size_t written = 0;
  // Pieces of 1..37 bytes land anywhere: inside the header, between a
  // record header and its data (libpcap's two writes), inside data.
  for (size_t step = 1; written < file.size(); step = step % 37 + 1) {
    const size_t n = std::min(step, file.size() - written);
    AppendFile(path_, absl::string_view(file).substr(written, n));
    written += n;
    FileScanner::PollResult r = MustPoll(scanner, &out);
    EXPECT_FALSE(r.restarted);
    size_t want_records = 0;
    size_t want_offset = written >= kGlobalHeaderSize ? kGlobalHeaderSize : 0;
    for (size_t end : ends) {
      if (end <= written) {
        ++want_records;
        want_offset = end;
      }
    }
    ASSERT_EQ(scanner.has_header(), written >= kGlobalHeaderSize) << written;
    ASSERT_EQ(scanner.complete_bytes(), want_offset) << written;
    ASSERT_EQ(scanner.packets(), want_records) << written;
    ASSERT_EQ(scanner.size_seen(), written);
  }
  // What the scanner handed out is exactly the records, in order.
  EXPECT_EQ(out, file.substr(kGlobalHeaderSize));
  absl::StatusOr<std::vector<uint32_t>> seqs =
      SequenceNumbers(SerializeGlobalHeader(h) + out);
  ASSERT_TRUE(seqs.ok()) << seqs.status();
  EXPECT_EQ(*seqs, testutil::Range(0, 40));
  EXPECT_EQ(scanner.first_time(), Base());
  EXPECT_EQ(scanner.last_time(), Base() + absl::Milliseconds(39));
  EXPECT_EQ(scanner.generation(), 0u);
  EXPECT_EQ(scanner.header(), h);
}

TEST_F(FileScannerTest, ReadsABacklogInBoundedSteps) {
  GlobalHeader h;
  h.snaplen = 100;  // one record at most 16 + 356 bytes
  WriteFile(path_, MakePcapFile(h, 0, 100, 60));
  FileScanner::Options options;
  options.max_read_bytes = 1;  // raised to one maximal record
  FileScanner scanner(path_, options);
  int polls = 0;
  std::string out;
  while (true) {
    FileScanner::PollResult r = MustPoll(scanner, &out);
    ++polls;
    EXPECT_LE(r.new_bytes, kRecordHeaderSize + MaxPlausibleCaplen(h));
    if (!r.more) break;
    ASSERT_GT(r.new_packets, 0u);
  }
  EXPECT_GT(polls, 10);
  EXPECT_EQ(scanner.packets(), 100u);
  EXPECT_EQ(out.size(), 100 * (kRecordHeaderSize + 60));
}

TEST_F(FileScannerTest, TruncationRestartsWithNextGenerationAndCountsLoss) {
  GlobalHeader h;
  const std::string records = MakeRecords(h, 0, 5);
  const size_t record_size = records.size() / 5;
  // 5 records and half of a sixth.
  WriteFile(path_, SerializeGlobalHeader(h) + records +
                       MakeRecords(h, 5, 1).substr(0, 10));
  FileScanner scanner(path_);
  MustPoll(scanner);
  ASSERT_EQ(scanner.packets(), 5u);

  // tcpdump reusing the file: O_TRUNC, then the header.
  WriteFile(path_, SerializeGlobalHeader(h));
  FileScanner::PollResult r = MustPoll(scanner);
  EXPECT_TRUE(r.restarted);
  EXPECT_EQ(r.lost_bytes, 10u);  // the half record that was never finished
  EXPECT_EQ(scanner.generation(), 1u);
  EXPECT_EQ(scanner.packets(), 0u);
  EXPECT_FALSE(scanner.first_time().has_value());

  AppendFile(path_, MakeRecords(h, 100, 2));
  r = MustPoll(scanner);
  EXPECT_FALSE(r.restarted);
  EXPECT_EQ(scanner.packets(), 2u);
  EXPECT_EQ(scanner.complete_bytes(), kGlobalHeaderSize + 2 * record_size);
  EXPECT_EQ(scanner.first_time(), Base() + absl::Milliseconds(100));
  EXPECT_EQ(scanner.generation(), 1u);
}

TEST_F(FileScannerTest, ReuseThatOutgrewTheOffsetIsDetected) {
  // Between two polls tcpdump truncated the file and wrote more than we had
  // read: size alone does not show it, the first record does.
  GlobalHeader h;
  WriteFile(path_, MakePcapFile(h, 0, 3));
  FileScanner scanner(path_);
  MustPoll(scanner);
  ASSERT_EQ(scanner.packets(), 3u);

  WriteFile(path_, MakePcapFile(h, 50, 10));  // same inode, O_TRUNC
  std::string out;
  FileScanner::PollResult r = MustPoll(scanner, &out);
  EXPECT_TRUE(r.restarted);
  EXPECT_EQ(r.lost_bytes, 0u);  // everything of the old generation was read
  EXPECT_TRUE(out.empty()) << "no bytes of the new generation at old offsets";
  EXPECT_EQ(scanner.generation(), 1u);

  MustPoll(scanner, &out);
  EXPECT_EQ(scanner.packets(), 10u);
  absl::StatusOr<std::vector<uint32_t>> seqs =
      SequenceNumbers(SerializeGlobalHeader(h) + out);
  ASSERT_TRUE(seqs.ok()) << seqs.status();
  EXPECT_EQ(*seqs, testutil::Range(50, 10));
}

TEST_F(FileScannerTest, ReplacedInodeIsDetected) {
  GlobalHeader h;
  WriteFile(path_, MakePcapFile(h, 0, 3));
  FileScanner scanner(path_);
  MustPoll(scanner);
  // Same content, new inode: still a new file.
  const std::string tmp = dir_ + "/tmp.pcap";
  WriteFile(tmp, MakePcapFile(h, 0, 3));
  ASSERT_EQ(rename(tmp.c_str(), path_.c_str()), 0);
  FileScanner::PollResult r = MustPoll(scanner);
  EXPECT_TRUE(r.restarted);
  EXPECT_EQ(scanner.generation(), 1u);
  MustPoll(scanner);
  EXPECT_EQ(scanner.packets(), 3u);
}

TEST_F(FileScannerTest, RewrittenHeaderIsDetected) {
  GlobalHeader h;
  WriteFile(path_, SerializeGlobalHeader(h));
  FileScanner scanner(path_);
  MustPoll(scanner);
  ASSERT_TRUE(scanner.has_header());
  GlobalHeader other = h;
  other.linktype = 113;
  WriteFile(path_, MakePcapFile(other, 0, 2));
  EXPECT_TRUE(MustPoll(scanner).restarted);
  MustPoll(scanner);
  EXPECT_EQ(scanner.header().linktype, 113u);
  EXPECT_EQ(scanner.packets(), 2u);
}

TEST_F(FileScannerTest, CorruptRecordStopsUntilTheFileIsReused) {
  GlobalHeader h;
  std::string file = MakePcapFile(h, 0, 4);
  AppendRecordHeader(h, RecordHeader{1, 2, 0x7fffffff, 0x7fffffff}, &file);
  file.append(500, 'x');
  WriteFile(path_, file);
  FileScanner scanner(path_);
  FileScanner::PollResult r = MustPoll(scanner);
  EXPECT_EQ(r.new_packets, 4u);
  EXPECT_EQ(scanner.corrupt_status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(scanner.corrupt_status().message().find(path_),
            absl::string_view::npos);
  AppendFile(path_, MakeRecords(h, 10, 3));
  r = MustPoll(scanner);
  EXPECT_EQ(r.new_packets, 0u);
  EXPECT_EQ(scanner.packets(), 4u);

  WriteFile(path_, MakePcapFile(h, 20, 2));
  EXPECT_TRUE(MustPoll(scanner).restarted);
  MustPoll(scanner);
  EXPECT_TRUE(scanner.corrupt_status().ok());
  EXPECT_EQ(scanner.packets(), 2u);
}

TEST_F(FileScannerTest, SymlinkIsRefused) {
  WriteFile(path_, MakePcapFile(GlobalHeader(), 0, 1));
  const std::string link = dir_ + "/link.pcap";
  ASSERT_EQ(symlink(path_.c_str(), link.c_str()), 0);
  FileScanner scanner(link);
  EXPECT_FALSE(scanner.Poll().ok());
}

}  // namespace
}  // namespace pc::pcap
