// A program for tsan_probe_test: `tsan_probe race` races two threads on an
// unguarded counter; `tsan_probe synchronized` hands data between threads
// only through Abseil (Mutex, LockWhen, Await, CondVar, Notification), which
// TSan can see only through third_party/tsan's annotations.
#include <cstdio>
#include <cstring>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

namespace {

int Race() {
  int counter = 0;
  std::thread a([&] {
    for (int i = 0; i < 1000; ++i) ++counter;
  });
  std::thread b([&] {
    for (int i = 0; i < 1000; ++i) ++counter;
  });
  a.join();
  b.join();
  return counter > 0 ? 0 : 1;
}

int Synchronized() {
  absl::Mutex mu;
  int guarded = 0;
  bool ready = false;
  absl::CondVar cv;
  std::thread writer([&] {
    for (int i = 0; i < 1000; ++i) {
      absl::MutexLock lock(&mu);
      ++guarded;
    }
    absl::MutexLock lock(&mu);
    ready = true;
    cv.Signal();
  });
  {
    absl::MutexLock lock(&mu);
    while (!ready) cv.Wait(&mu);
    ++guarded;  // after the writer, through CondVar::Wait
  }
  writer.join();

  // LockWhen and Await.
  int step = 0;
  std::thread stepper([&] {
    mu.LockWhen(absl::Condition(
        +[](int* s) { return *s == 1; }, &step));
    step = 2;
    mu.Unlock();
  });
  {
    absl::MutexLock lock(&mu);
    step = 1;
    mu.Await(absl::Condition(
        +[](int* s) { return *s == 2; }, &step));
    ++guarded;
  }
  stepper.join();

  // Notification, including the wait that returns at once.
  int payload = 0;
  absl::Notification done;
  std::thread producer([&] {
    payload = 42;
    done.Notify();
  });
  producer.join();
  done.WaitForNotification();
  if (!done.WaitForNotificationWithTimeout(absl::Seconds(1))) return 1;
  return payload == 42 && guarded == 1002 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 2 && std::strcmp(argv[1], "race") == 0) return Race();
  if (argc == 2 && std::strcmp(argv[1], "synchronized") == 0) {
    return Synchronized();
  }
  std::fprintf(stderr, "usage: tsan_probe race|synchronized\n");
  return 2;
}
