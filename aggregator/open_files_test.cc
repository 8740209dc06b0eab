#include "aggregator/open_files.h"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/pcap/pcap_test_util.h"
#include "gtest/gtest.h"

namespace pc::aggregator {
namespace {

namespace ptu = pcap::testutil;

bool IsOpen(int fd) { return fcntl(fd, F_GETFD) != -1; }

class OpenFilesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ptu::MakeTempDir();
    for (int i = 0; i < 6; ++i) {
      ptu::WriteFile(Data(i), absl::StrCat("data", i));
      ptu::WriteFile(Log(i), absl::StrCat("log", i));
    }
  }
  std::string Data(int i) const { return absl::StrCat(dir_, "/", i, ".pcap"); }
  std::string Log(int i) const { return absl::StrCat(dir_, "/", i, ".log"); }
  std::string dir_;
};

TEST_F(OpenFilesTest, KeepsAtMostCapacityIdleFilesLeastRecentlyUsedGoFirst) {
  OpenFiles files(2);
  std::vector<int> data_fds;
  for (int i = 0; i < 3; ++i) {
    OpenFiles::Handle h;
    ASSERT_EQ(files.Acquire(i, Data(i), Log(i), &h), 0);
    char c;
    ASSERT_EQ(pread(h.data_fd(), &c, 1, 4), 1);
    EXPECT_EQ(c, '0' + i);
    data_fds.push_back(h.data_fd());
  }
  EXPECT_EQ(files.open_files(), 2u);
  EXPECT_EQ(files.evictions(), 1u);
  // File 1 is used again, so file 2 is now the least recently used.
  {
    OpenFiles::Handle h;
    ASSERT_EQ(files.Acquire(1, Data(1), Log(1), &h), 0);
    EXPECT_EQ(h.data_fd(), data_fds[1]);  // still open: no reopen
  }
  OpenFiles::Handle h3;
  ASSERT_EQ(files.Acquire(3, Data(3), Log(3), &h3), 0);
  EXPECT_FALSE(IsOpen(data_fds[2]));
  EXPECT_TRUE(IsOpen(data_fds[1]));
}

TEST_F(OpenFilesTest, FilesInUseAreNeverClosedUnderTheirUser) {
  OpenFiles files(1);
  OpenFiles::Handle a, b;
  ASSERT_EQ(files.Acquire(0, Data(0), Log(0), &a), 0);
  ASSERT_EQ(files.Acquire(1, Data(1), Log(1), &b), 0);
  EXPECT_TRUE(IsOpen(a.data_fd()));
  EXPECT_TRUE(IsOpen(b.log_fd()));
  EXPECT_EQ(files.open_files(), 2u);  // over capacity while both are in use
  const int a_fd = a.data_fd();
  a = OpenFiles::Handle();  // released: now idle and over capacity
  EXPECT_EQ(files.open_files(), 1u);
  EXPECT_TRUE(IsOpen(b.data_fd()));
  (void)a_fd;
}

TEST_F(OpenFilesTest, ForgetClosesNowOrWhenTheLastUserIsDone) {
  OpenFiles files(4);
  OpenFiles::Handle idle;
  ASSERT_EQ(files.Acquire(0, Data(0), Log(0), &idle), 0);
  const int idle_fd = idle.data_fd();
  idle = OpenFiles::Handle();
  files.Forget(0);
  EXPECT_FALSE(IsOpen(idle_fd));

  OpenFiles::Handle busy;
  ASSERT_EQ(files.Acquire(1, Data(1), Log(1), &busy), 0);
  const int busy_fd = busy.log_fd();
  files.Forget(1);
  EXPECT_TRUE(IsOpen(busy_fd));
  EXPECT_EQ(files.open_files(), 0u);
  busy = OpenFiles::Handle();
  EXPECT_FALSE(IsOpen(busy_fd));
}

TEST_F(OpenFilesTest, AMissingFileIsAnErrnoAndLeavesNothingOpen) {
  OpenFiles files(4);
  OpenFiles::Handle h;
  EXPECT_EQ(files.Acquire(9, Data(0), dir_ + "/missing.log", &h), ENOENT);
  EXPECT_EQ(files.open_files(), 0u);
  EXPECT_EQ(h.data_fd(), -1);
}

}  // namespace
}  // namespace pc::aggregator
