#include "aggregator/sync_group.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "aggregator/file_io.h"
#include "gtest/gtest.h"

namespace pc::aggregator {
namespace {

constexpr int kFsFd = 99;

// Ops that record every call; sync_file can be held until released, and
// fails with `fail_errno` for `fail_fd`.
struct FakeOps {
  absl::Mutex mu;
  std::vector<std::string> calls ABSL_GUARDED_BY(mu);
  absl::Notification* hold = nullptr;  // sync_file waits for it
  absl::Notification entered;          // set by the first sync_file
  int fail_fd = -1;
  int fail_errno = 0;

  SyncGroup::Ops Ops() {
    SyncGroup::Ops ops;
    ops.sync_file = [this](int fd) {
      {
        absl::MutexLock lock(&mu);
        calls.push_back("file " + std::to_string(fd));
      }
      if (!entered.HasBeenNotified()) entered.Notify();
      if (hold != nullptr) hold->WaitForNotification();
      return fd == fail_fd ? fail_errno : 0;
    };
    ops.sync_fs = [this](int fd) {
      absl::MutexLock lock(&mu);
      calls.push_back("fs " + std::to_string(fd));
      return fail_fd == kFsFd ? fail_errno : 0;
    };
    return ops;
  }
  std::vector<std::string> Calls() {
    absl::MutexLock lock(&mu);
    return calls;
  }
};

SyncGroupOptions Options(int min_files_for_fs,
                         absl::Duration max_delay = absl::ZeroDuration()) {
  SyncGroupOptions options;
  options.min_files_for_fs = min_files_for_fs;
  options.max_delay = max_delay;
  // Rounds never count as stalled unless a test says so.
  options.stall_after = absl::Hours(1);
  return options;
}

void WaitUntilQueued(const SyncGroup& group, int n) {
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (group.queued() < n && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  ASSERT_EQ(group.queued(), n);
}

TEST(SyncGroupTest, ALoneCallerFlushesOnlyItsFile) {
  FakeOps fake;
  SyncGroup group(kFsFd, Options(4), fake.Ops());
  EXPECT_TRUE(group.Sync(7, 1, "/data/a").ok());
  EXPECT_EQ(fake.Calls(), std::vector<std::string>{"file 7"});
  EXPECT_EQ(group.stats().rounds, 1u);
}

// A commit asks for its data file and its log in one request: one round
// flushes both, and an error of either is the request's.
TEST(SyncGroupTest, OneRequestForTwoFilesIsOneRoundAndFailsWithEither) {
  FakeOps fake;
  SyncGroup group(kFsFd, Options(4), fake.Ops());
  EXPECT_TRUE(group.Sync({7, 8}, 1, "/data/a").ok());
  EXPECT_EQ(fake.Calls(), (std::vector<std::string>{"file 7", "file 8"}));
  EXPECT_EQ(group.stats().rounds, 1u);

  fake.fail_fd = 8;
  fake.fail_errno = EIO;
  const absl::Status failed = group.Sync({7, 8}, 1, "/data/a");
  EXPECT_EQ(failed.code(), IoErrorCode(EIO)) << failed;
  EXPECT_TRUE(absl::StrContains(failed.message(), "flush /data/a")) << failed;
  EXPECT_EQ(group.stats().rounds, 2u);

  EXPECT_EQ(group.Sync({}, 1, "/data/a").code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(group.Sync({1, 2, 3}, 1, "/data/a").code(),
            absl::StatusCode::kInvalidArgument);
}

// SyncAll flushes the filesystem at once, whatever min_files_for_fs says.
TEST(SyncGroupTest, SyncAllFlushesTheFilesystemOutsideAnyRound) {
  FakeOps fake;
  SyncGroup group(kFsFd, Options(0), fake.Ops());
  EXPECT_TRUE(group.SyncAll("/data").ok());
  EXPECT_EQ(fake.Calls(),
            (std::vector<std::string>{"fs " + std::to_string(kFsFd)}));
  EXPECT_EQ(group.stats().rounds, 0u);
  fake.fail_fd = kFsFd;
  fake.fail_errno = EIO;
  EXPECT_FALSE(group.SyncAll("/data").ok());
}

TEST(SyncGroupTest, RequestsArrivingDuringAFlushWaitForTheNextOneAndShareIt) {
  FakeOps fake;
  absl::Notification release;
  fake.hold = &release;
  SyncGroup group(kFsFd, Options(4), fake.Ops());
  std::atomic<int> returned{0};
  std::vector<std::thread> threads;
  threads.emplace_back([&] {
    EXPECT_TRUE(group.Sync(1, 1, "/data/1").ok());
    ++returned;
  });
  fake.entered.WaitForNotification();  // fd 1's flush is running
  for (int fd = 2; fd <= 6; ++fd) {
    threads.emplace_back([&, fd] {
      EXPECT_TRUE(group.Sync(fd, 1, "/data/x").ok());
      ++returned;
    });
  }
  WaitUntilQueued(group, 5);
  // The running flush started before their writes were asked for: it must
  // not count for them.
  absl::SleepFor(absl::Milliseconds(20));
  EXPECT_EQ(returned.load(), 0);
  release.Notify();
  for (auto& t : threads) t.join();
  EXPECT_EQ(returned.load(), 6);
  // Five files in the second round: one filesystem flush serves them all.
  EXPECT_EQ(fake.Calls(), (std::vector<std::string>{
                              "file 1", "fs " + std::to_string(kFsFd)}));
  const SyncGroup::Stats stats = group.stats();
  EXPECT_EQ(stats.rounds, 2u);
  EXPECT_EQ(stats.file_syncs, 1u);
  EXPECT_EQ(stats.fs_syncs, 1u);
}

TEST(SyncGroupTest, SmallRoundsFlushEachFileOnceAndReportItsOwnError) {
  FakeOps fake;
  absl::Notification release;
  fake.hold = &release;
  fake.fail_fd = 3;
  fake.fail_errno = EIO;
  SyncGroup group(kFsFd, Options(4), fake.Ops());
  std::vector<std::thread> threads;
  threads.emplace_back([&] { EXPECT_TRUE(group.Sync(1, 1, "/data/1").ok()); });
  fake.entered.WaitForNotification();
  absl::Status status3a, status3b, status2;
  threads.emplace_back([&] { status3a = group.Sync(3, 1, "/data/three"); });
  threads.emplace_back([&] { status3b = group.Sync(3, 1, "/data/three"); });
  threads.emplace_back([&] { status2 = group.Sync(2, 1, "/data/2"); });
  WaitUntilQueued(group, 3);
  release.Notify();
  for (auto& t : threads) t.join();
  EXPECT_TRUE(status2.ok()) << status2;
  for (const absl::Status& s : {status3a, status3b}) {
    EXPECT_EQ(s.code(), IoErrorCode(EIO)) << s;
    EXPECT_NE(s.message().find("/data/three"), absl::string_view::npos) << s;
  }
  // Two distinct files are below the filesystem threshold; fd 3 is flushed
  // once for both of its requests.
  EXPECT_EQ(fake.Calls(),
            (std::vector<std::string>{"file 1", "file 2", "file 3"}));
}

TEST(SyncGroupTest, AFailedFilesystemFlushFailsEveryRequestOfItsRound) {
  FakeOps fake;
  fake.fail_fd = kFsFd;
  fake.fail_errno = EIO;
  SyncGroup group(kFsFd, Options(1), fake.Ops());
  const absl::Status status = group.Sync(5, 1, "/data/5");
  EXPECT_EQ(status.code(), IoErrorCode(EIO)) << status;
  EXPECT_EQ(fake.Calls(),
            std::vector<std::string>{"fs " + std::to_string(kFsFd)});
}

TEST(SyncGroupTest, ZeroThresholdNeverFlushesTheFilesystem) {
  FakeOps fake;
  absl::Notification release;
  fake.hold = &release;
  SyncGroup group(kFsFd, Options(0), fake.Ops());
  std::vector<std::thread> threads;
  threads.emplace_back([&] { EXPECT_TRUE(group.Sync(1, 1, "/data/1").ok()); });
  fake.entered.WaitForNotification();
  for (int fd = 2; fd <= 9; ++fd) {
    threads.emplace_back(
        [&, fd] { EXPECT_TRUE(group.Sync(fd, 1, "/d").ok()); });
  }
  WaitUntilQueued(group, 8);
  release.Notify();
  for (auto& t : threads) t.join();
  const SyncGroup::Stats stats = group.stats();
  EXPECT_EQ(stats.fs_syncs, 0u);
  EXPECT_EQ(stats.file_syncs, 9u);
}

TEST(SyncGroupTest, ALoneWriterNeverWaits) {
  FakeOps fake;
  SyncGroup group(kFsFd, Options(4, absl::Seconds(10)), fake.Ops());
  const absl::Time start = absl::Now();
  for (int fd = 1; fd <= 5; ++fd) {
    EXPECT_TRUE(group.Sync(fd, /*writer=*/7, "/data/x").ok());
  }
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
  EXPECT_EQ(group.stats().rounds, 5u);
}

TEST(SyncGroupTest, ARoundWaitsForTheOtherRecentWriterAndSharesOneFlush) {
  FakeOps fake;
  SyncGroup group(kFsFd, Options(2, absl::Seconds(4)), fake.Ops());
  // Writer 1 alone: flushed at once.
  EXPECT_TRUE(group.Sync(10, 1, "/data/10").ok());
  // Writer 2's round waits for writer 1, who comes back 50 ms later; both
  // are served by one filesystem flush, long before the delay is up.
  const absl::Time start = absl::Now();
  std::thread second([&] { EXPECT_TRUE(group.Sync(20, 2, "/data/20").ok()); });
  WaitUntilQueued(group, 1);
  absl::SleepFor(absl::Milliseconds(50));
  EXPECT_EQ(group.stats().rounds, 1u);  // still gathering
  EXPECT_TRUE(group.Sync(11, 1, "/data/11").ok());
  second.join();
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
  EXPECT_EQ(fake.Calls(), (std::vector<std::string>{
                              "file 10", "fs " + std::to_string(kFsFd)}));
  EXPECT_EQ(group.stats().rounds, 2u);
}

TEST(SyncGroupTest, TheWaitForOtherWritersIsBounded) {
  FakeOps fake;
  SyncGroup group(kFsFd, Options(4, absl::Milliseconds(200)), fake.Ops());
  EXPECT_TRUE(group.Sync(1, 1, "/data/1").ok());
  const absl::Time start = absl::Now();
  EXPECT_TRUE(group.Sync(2, 2, "/data/2").ok());  // writer 1 never comes
  const absl::Duration waited = absl::Now() - start;
  EXPECT_GE(waited, absl::Milliseconds(150));
  EXPECT_LT(waited, absl::Seconds(5));
  EXPECT_EQ(fake.Calls(), (std::vector<std::string>{"file 1", "file 2"}));
}

// One file whose flush hangs (a stalled device, a huge dirty file) must not
// hold back every other writer: once the stuck round has run for a while,
// requests queued behind it are flushed by a round of their own.
TEST(SyncGroupTest, AStuckFlushDoesNotHoldBackOtherFiles) {
  absl::Notification release;
  absl::Notification stuck_entered;
  SyncGroup::Ops ops;
  ops.sync_file = [&](int fd) {
    if (fd == 1) {
      stuck_entered.Notify();
      release.WaitForNotification();
    }
    return 0;
  };
  ops.sync_fs = [](int) { return 0; };
  SyncGroupOptions options = Options(0);
  options.stall_after = absl::Milliseconds(50);
  SyncGroup group(kFsFd, options, ops);
  std::thread stuck([&] { EXPECT_TRUE(group.Sync(1, 1, "/data/1").ok()); });
  stuck_entered.WaitForNotification();
  absl::Notification others_done;
  std::thread others([&] {
    EXPECT_TRUE(group.Sync(2, 2, "/data/2").ok());
    EXPECT_TRUE(group.Sync(3, 3, "/data/3").ok());
    others_done.Notify();
  });
  const bool done =
      others_done.WaitForNotificationWithTimeout(absl::Seconds(10));
  EXPECT_TRUE(done) << "flushes of other files waited for the stuck one";
  release.Notify();
  stuck.join();
  others.join();
}

TEST(SyncGroupTest, SystemCallsFlushARealFile) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string dir = tmp != nullptr ? tmp : "/tmp";
  const std::string path = dir + "/sync_group_test.dat";
  const int fd = open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0600);
  ASSERT_GE(fd, 0);
  const int dir_fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  ASSERT_GE(dir_fd, 0);
  ASSERT_EQ(write(fd, "pcap", 4), 4);
  SyncGroup per_file(dir_fd, Options(0));
  EXPECT_TRUE(per_file.Sync(fd, 1, path).ok());
  SyncGroup whole_fs(dir_fd, Options(1));
  EXPECT_TRUE(whole_fs.Sync(fd, 1, path).ok());
  EXPECT_EQ(whole_fs.stats().fs_syncs, 1u);
  // A descriptor that is not open fails with the path in the message.
  const absl::Status bad = per_file.Sync(-1, 1, "/no/such");
  EXPECT_EQ(bad.code(), IoErrorCode(EBADF));
  EXPECT_NE(bad.message().find("/no/such"), absl::string_view::npos);
  close(fd);
  close(dir_fd);
}

}  // namespace
}  // namespace pc::aggregator
