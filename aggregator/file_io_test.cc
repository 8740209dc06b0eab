#include "aggregator/file_io.h"

#include <errno.h>

#include <filesystem>
#include <string>

#include "absl/strings/match.h"
#include "common/pcap/pcap_test_util.h"
#include "gtest/gtest.h"

namespace pc::aggregator {
namespace {

namespace ptu = pcap::testutil;

// The ingest service rejects one capture or the whole stream by this code.
TEST(IoErrorTest, MapsErrnoByTheScopeOfTheProblem) {
  for (int err : {ENOSPC, EDQUOT, EMFILE, ENFILE, ENOMEM}) {
    EXPECT_EQ(IoErrorCode(err), absl::StatusCode::kResourceExhausted) << err;
  }
  for (int err : {EIO, EROFS, EBADF}) {
    EXPECT_EQ(IoErrorCode(err), absl::StatusCode::kInternal) << err;
  }
  EXPECT_EQ(IoErrorCode(ENAMETOOLONG), absl::StatusCode::kInvalidArgument);
  for (int err : {EACCES, EPERM, ENOENT, ENOTDIR, EISDIR, EEXIST, EFBIG}) {
    EXPECT_EQ(IoErrorCode(err), absl::StatusCode::kFailedPrecondition) << err;
  }
  const absl::Status s = IoError(EACCES, "create x/run-1-w5/ring0.0.pcap");
  EXPECT_EQ(s.message(), "create x/run-1-w5/ring0.0.pcap: Permission denied");
}

TEST(FileIoTest, AtomicWriteReadsBackAndSmallReadsAreBounded) {
  const std::string dir = ptu::MakeTempDir();
  int flushes = 0;
  const FsyncFn counting = [&](int) {
    ++flushes;
    return 0;
  };
  ASSERT_EQ(WriteFileAtomically(dir, "meta", "first", counting), 0);
  ASSERT_EQ(WriteFileAtomically(dir, "meta", "second", counting), 0);
  EXPECT_EQ(flushes, 4);  // the file and its directory, each time
  EXPECT_FALSE(std::filesystem::exists(dir + "/meta.tmp"));
  std::string data;
  EXPECT_EQ(ReadSmallFile(dir + "/meta", 6, &data), 0);
  EXPECT_EQ(data, "second");
  EXPECT_EQ(ReadSmallFile(dir + "/meta", 5, &data), EFBIG);
  EXPECT_EQ(ReadSmallFile(dir + "/none", 5, &data), ENOENT);
  // A failed flush leaves the old content and no temporary file.
  EXPECT_EQ(WriteFileAtomically(dir, "meta", "third", [](int) { return EIO; }),
            EIO);
  EXPECT_EQ(ReadSmallFile(dir + "/meta", 100, &data), 0);
  EXPECT_EQ(data, "second");
  EXPECT_FALSE(std::filesystem::exists(dir + "/meta.tmp"));
}

}  // namespace
}  // namespace pc::aggregator
