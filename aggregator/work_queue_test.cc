#include "aggregator/work_queue.h"

#include <atomic>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace pc::aggregator {
namespace {

TEST(Strand, RunsTasksInOrderOneAtATime) {
  std::vector<int> seen;
  std::atomic<int> running{0};
  bool overlap = false;
  {
    ThreadPool pool(4);
    auto strand = std::make_shared<Strand>(&pool);
    for (int i = 0; i < 500; ++i) {
      strand->Post([&, i] {
        if (running.fetch_add(1) != 0) overlap = true;
        seen.push_back(i);
        running.fetch_sub(1);
      });
    }
  }  // the pool drains before it joins
  ASSERT_EQ(seen.size(), 500u);
  for (int i = 0; i < 500; ++i) EXPECT_EQ(seen[i], i);
  EXPECT_FALSE(overlap);
}

TEST(Strand, DifferentStrandsRunInParallel) {
  // Declared before the pool, so they outlive it: a's task may still be
  // returning from b_done's wait when the main thread's wait returns.
  absl::Notification a_started, b_done;
  ThreadPool pool(2);
  auto a = std::make_shared<Strand>(&pool);
  auto b = std::make_shared<Strand>(&pool);
  a->Post([&] {
    a_started.Notify();
    // Blocks until b ran: only possible on another pool thread.
    EXPECT_TRUE(b_done.WaitForNotificationWithTimeout(absl::Seconds(10)));
  });
  a_started.WaitForNotification();
  b->Post([&] { b_done.Notify(); });
  EXPECT_TRUE(b_done.WaitForNotificationWithTimeout(absl::Seconds(10)));
}

// Each task must wake a waiting thread by itself: no later Schedule comes
// to run it. Posted from several threads at once, so the wake-ups overlap.
TEST(ThreadPool, EveryTaskRunsWithoutAnotherToWakeTheWorkers) {
  ThreadPool pool(8);
  std::vector<std::thread> posters;
  std::atomic<int> late{0};
  for (int t = 0; t < 4; ++t) {
    posters.emplace_back([&] {
      for (int i = 0; i < 500; ++i) {
        absl::Notification ran;
        pool.Schedule([&] { ran.Notify(); });
        if (!ran.WaitForNotificationWithTimeout(absl::Seconds(10))) ++late;
      }
    });
  }
  for (auto& t : posters) t.join();
  EXPECT_EQ(late.load(), 0);
}

TEST(ElasticPool, BlockingTasksEachGetAThreadUpToTheLimit) {
  absl::Notification release;
  std::atomic<int> started{0}, finished{0};
  {
    ElasticPool pool(20);
    for (int i = 0; i < 25; ++i) {
      pool.Schedule([&] {
        ++started;
        release.WaitForNotificationWithTimeout(absl::Seconds(10));
        ++finished;
      });
    }
    // 20 run at once, all blocked; the 5 beyond the limit wait for a thread.
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    while (started.load() < 20 && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(5));
    }
    absl::SleepFor(absl::Milliseconds(100));
    EXPECT_EQ(started.load(), 20);
    release.Notify();
  }  // runs what is queued, then joins
  EXPECT_EQ(finished.load(), 25);
}

}  // namespace
}  // namespace pc::aggregator
