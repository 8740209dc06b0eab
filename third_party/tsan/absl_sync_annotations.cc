// Makes Debian's Abseil synchronization visible to ThreadSanitizer. Linked
// only under --config=tsan (see third_party/BUILD.bazel).
//
// libabsl_synchronization.a is not built with -fsanitize=thread, so TSan
// never sees absl::Mutex (it spins and blocks with atomics and futexes in
// uninstrumented code): every ABSL_GUARDED_BY member read on two threads looks
// like a data race. Abseil's own TSan build annotates each operation with the
// __tsan_mutex_* interface; this file adds the same annotations from outside:
// the link wraps each entry point (-Wl,--wrap=SYMBOL sends every undefined
// reference to SYMBOL to __wrap_SYMBOL, which calls __real_SYMBOL), for our
// code and for gRPC, whose gpr_mu/grpc_core::Mutex are absl::Mutex. Calls
// inside mutex.o itself (CondVar::Wait's internal unlock and relock) are not
// wrapped; the CondVar and Await wrappers model them as unlock + lock.
//
// Between __tsan_mutex_pre_* and __tsan_mutex_post_* TSan ignores the thread's
// memory accesses, as Abseil's annotations do: Condition functions evaluated
// inside Lock/Unlock/Await run there.
//
// The mangled names are those of Debian's Abseil 20220623 (inline namespace
// debian3); another Abseil fails to link with undefined __real_ symbols.
#include <sanitizer/common_interface_defs.h>
#include <sanitizer/tsan_interface.h>

#include <atomic>
#include <cstdint>
#include <cstring>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

namespace {

constexpr unsigned kRead = __tsan_mutex_read_lock;
constexpr unsigned kTry = __tsan_mutex_try_lock;
constexpr unsigned kTryFailed = __tsan_mutex_try_lock_failed;

void PreLock(void* mu, unsigned flags) { __tsan_mutex_pre_lock(mu, flags); }
void PostLock(void* mu, unsigned flags) {
  __tsan_mutex_post_lock(mu, flags, 0);
}
void PreUnlock(void* mu, unsigned flags) { __tsan_mutex_pre_unlock(mu, flags); }
void PostUnlock(void* mu, unsigned flags) {
  __tsan_mutex_post_unlock(mu, flags);
}

}  // namespace

// Mutex::Lock / ReaderLock / LockWhen*: acquire.
#define PC_WRAP_LOCK(sym, flags)                  \
  extern "C" void __real_##sym(absl::Mutex*);     \
  extern "C" void __wrap_##sym(absl::Mutex* mu) { \
    PreLock(mu, flags);                           \
    __real_##sym(mu);                             \
    PostLock(mu, flags);                          \
  }
PC_WRAP_LOCK(_ZN4absl7debian35Mutex4LockEv, 0)
PC_WRAP_LOCK(_ZN4absl7debian35Mutex10ReaderLockEv, kRead)
#undef PC_WRAP_LOCK

#define PC_WRAP_UNLOCK(sym, flags)                \
  extern "C" void __real_##sym(absl::Mutex*);     \
  extern "C" void __wrap_##sym(absl::Mutex* mu) { \
    PreUnlock(mu, flags);                         \
    __real_##sym(mu);                             \
    PostUnlock(mu, flags);                        \
  }
PC_WRAP_UNLOCK(_ZN4absl7debian35Mutex6UnlockEv, 0)
PC_WRAP_UNLOCK(_ZN4absl7debian35Mutex12ReaderUnlockEv, kRead)
#undef PC_WRAP_UNLOCK

// ReleasableMutexLock::Release() unlocks inside mutex.o (gRPC's thread pool
// uses it); its only member is the Mutex*, cleared by the call.
extern "C" void __real__ZN4absl7debian319ReleasableMutexLock7ReleaseEv(void*);
extern "C" void __wrap__ZN4absl7debian319ReleasableMutexLock7ReleaseEv(
    void* lock) {
  absl::Mutex* mu = *static_cast<absl::Mutex**>(lock);
  PreUnlock(mu, 0);
  __real__ZN4absl7debian319ReleasableMutexLock7ReleaseEv(lock);
  PostUnlock(mu, 0);
}

#define PC_WRAP_TRYLOCK(sym, flags)                         \
  extern "C" bool __real_##sym(absl::Mutex*);               \
  extern "C" bool __wrap_##sym(absl::Mutex* mu) {           \
    PreLock(mu, flags | kTry);                              \
    const bool locked = __real_##sym(mu);                   \
    PostLock(mu, flags | kTry | (locked ? 0 : kTryFailed)); \
    return locked;                                          \
  }
PC_WRAP_TRYLOCK(_ZN4absl7debian35Mutex7TryLockEv, 0)
PC_WRAP_TRYLOCK(_ZN4absl7debian35Mutex13ReaderTryLockEv, kRead)
#undef PC_WRAP_TRYLOCK

// LockWhen(cond) and friends: return with the lock held, whatever the result.

extern "C" void __real__ZN4absl7debian35Mutex8LockWhenERKNS0_9ConditionE(
    absl::Mutex*, const absl::Condition&);
extern "C" void __wrap__ZN4absl7debian35Mutex8LockWhenERKNS0_9ConditionE(
    absl::Mutex* mu, const absl::Condition& cond) {
  PreLock(mu, 0);
  __real__ZN4absl7debian35Mutex8LockWhenERKNS0_9ConditionE(mu, cond);
  PostLock(mu, 0);
}

extern "C" void __real__ZN4absl7debian35Mutex14ReaderLockWhenERKNS0_9ConditionE(
    absl::Mutex*, const absl::Condition&);
extern "C" void __wrap__ZN4absl7debian35Mutex14ReaderLockWhenERKNS0_9ConditionE(
    absl::Mutex* mu, const absl::Condition& cond) {
  PreLock(mu, kRead);
  __real__ZN4absl7debian35Mutex14ReaderLockWhenERKNS0_9ConditionE(mu, cond);
  PostLock(mu, kRead);
}

#define PC_WRAP_LOCK_WHEN_TIMED(sym, flags, T)                               \
  extern "C" bool __real_##sym(absl::Mutex*, const absl::Condition&, T);     \
  extern "C" bool __wrap_##sym(absl::Mutex* mu, const absl::Condition& cond, \
                               T t) {                                        \
    PreLock(mu, flags);                                                      \
    const bool r = __real_##sym(mu, cond, t);                                \
    PostLock(mu, flags);                                                     \
    return r;                                                                \
  }
PC_WRAP_LOCK_WHEN_TIMED(
    _ZN4absl7debian35Mutex19LockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE,
    0, absl::Duration)
PC_WRAP_LOCK_WHEN_TIMED(
    _ZN4absl7debian35Mutex20LockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE, 0,
    absl::Time)
PC_WRAP_LOCK_WHEN_TIMED(
    _ZN4absl7debian35Mutex25ReaderLockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE,
    kRead, absl::Duration)
PC_WRAP_LOCK_WHEN_TIMED(
    _ZN4absl7debian35Mutex26ReaderLockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE,
    kRead, absl::Time)
#undef PC_WRAP_LOCK_WHEN_TIMED

// Await(cond): called with the lock held; may release it while waiting and
// returns with it held again: an unlock followed by a lock. (Abseil does not
// say whether a reader lock may Await; treat it as the writer lock.)
extern "C" void __real__ZN4absl7debian35Mutex5AwaitERKNS0_9ConditionE(
    absl::Mutex*, const absl::Condition&);
extern "C" void __wrap__ZN4absl7debian35Mutex5AwaitERKNS0_9ConditionE(
    absl::Mutex* mu, const absl::Condition& cond) {
  PreUnlock(mu, 0);
  __real__ZN4absl7debian35Mutex5AwaitERKNS0_9ConditionE(mu, cond);
  PostUnlock(mu, 0);
  PreLock(mu, 0);
  PostLock(mu, 0);
}

#define PC_WRAP_AWAIT_TIMED(sym, T)                                          \
  extern "C" bool __real_##sym(absl::Mutex*, const absl::Condition&, T);     \
  extern "C" bool __wrap_##sym(absl::Mutex* mu, const absl::Condition& cond, \
                               T t) {                                        \
    PreUnlock(mu, 0);                                                        \
    const bool r = __real_##sym(mu, cond, t);                                \
    PostUnlock(mu, 0);                                                       \
    PreLock(mu, 0);                                                          \
    PostLock(mu, 0);                                                         \
    return r;                                                                \
  }
PC_WRAP_AWAIT_TIMED(
    _ZN4absl7debian35Mutex16AwaitWithTimeoutERKNS0_9ConditionENS0_8DurationE,
    absl::Duration)
PC_WRAP_AWAIT_TIMED(
    _ZN4absl7debian35Mutex17AwaitWithDeadlineERKNS0_9ConditionENS0_4TimeE,
    absl::Time)
#undef PC_WRAP_AWAIT_TIMED

namespace {

// Whether the code at `pc` is gRPC's event-engine thread pool. Each call
// site is symbolized once (a few hundred in a test binary) and remembered
// in a fixed table under a spinlock (no absl::Mutex here: this runs inside
// ~Mutex).
bool InGrpcThreadPool(void* pc) {
  struct Seen {
    uintptr_t pc;
    bool pool;
  };
  constexpr size_t kSlots = 4096;
  static Seen seen[kSlots];
  static std::atomic_flag busy = ATOMIC_FLAG_INIT;
  const uintptr_t key = reinterpret_cast<uintptr_t>(pc);
  const size_t home = (key >> 2) % kSlots;
  auto find = [&](bool* pool) {
    while (busy.test_and_set(std::memory_order_acquire)) {
    }
    bool found = false;
    for (size_t i = 0; i < kSlots; ++i) {
      const Seen& s = seen[(home + i) % kSlots];
      if (s.pc == 0) break;
      if (s.pc == key) {
        *pool = s.pool;
        found = true;
        break;
      }
    }
    busy.clear(std::memory_order_release);
    return found;
  };
  bool pool = false;
  if (find(&pool)) return pool;
  char name[1024] = "";
  __sanitizer_symbolize_pc(pc, "%f", name, sizeof(name));
  pool = std::strstr(name, "grpc_event_engine::experimental::ThreadPool::") !=
         nullptr;
  while (busy.test_and_set(std::memory_order_acquire)) {
  }
  for (size_t i = 0; i < kSlots; ++i) {
    Seen& s = seen[(home + i) % kSlots];
    if (s.pc == 0 || s.pc == key) {
      s = Seen{key, pool};
      break;
    }
  }
  busy.clear(std::memory_order_release);
  return pool;
}

// ~Mutex: a later Mutex at the same address (on a stack) starts afresh.
//
// gRPC 1.51's event-engine thread pool destroys its queue's Mutex in
// whichever pool thread drops the last reference to the pool's state; the
// shared_ptr's count (in uninstrumented code) orders the other threads'
// last unlocks before it, which TSan cannot see, so it reported the destroy
// racing with another pool thread's last lock (CI attempts of
// capture_service_downloads_test and ingest_service_test). A destruction
// called from that pool first acquires what the Mutex's unlocks released.
// Every other ~Mutex (ours included) is checked as before.
void Destroy(void* mu, void* caller) {
  if (InGrpcThreadPool(caller)) __tsan_acquire(mu);
  __tsan_mutex_destroy(mu, 0);
}

}  // namespace

extern "C" void __real__ZN4absl7debian35MutexD1Ev(absl::Mutex*);
extern "C" void __wrap__ZN4absl7debian35MutexD1Ev(absl::Mutex* mu) {
  Destroy(mu, __builtin_return_address(0));
  __real__ZN4absl7debian35MutexD1Ev(mu);
}
extern "C" void __real__ZN4absl7debian35MutexD2Ev(absl::Mutex*);
extern "C" void __wrap__ZN4absl7debian35MutexD2Ev(absl::Mutex* mu) {
  Destroy(mu, __builtin_return_address(0));
  __real__ZN4absl7debian35MutexD2Ev(mu);
}

// CondVar::Wait*(mu): releases mu while blocked and reacquires it before
// returning (inside mutex.o, so unwrapped): an unlock followed by a lock.
extern "C" void __real__ZN4absl7debian37CondVar4WaitEPNS0_5MutexE(
    absl::CondVar*, absl::Mutex*);
extern "C" void __wrap__ZN4absl7debian37CondVar4WaitEPNS0_5MutexE(
    absl::CondVar* cv, absl::Mutex* mu) {
  PreUnlock(mu, 0);
  __real__ZN4absl7debian37CondVar4WaitEPNS0_5MutexE(cv, mu);
  PostUnlock(mu, 0);
  PreLock(mu, 0);
  PostLock(mu, 0);
}

#define PC_WRAP_CV_TIMED(sym, T)                                          \
  extern "C" bool __real_##sym(absl::CondVar*, absl::Mutex*, T);          \
  extern "C" bool __wrap_##sym(absl::CondVar* cv, absl::Mutex* mu, T t) { \
    PreUnlock(mu, 0);                                                     \
    const bool r = __real_##sym(cv, mu, t);                               \
    PostUnlock(mu, 0);                                                    \
    PreLock(mu, 0);                                                       \
    PostLock(mu, 0);                                                      \
    return r;                                                             \
  }
PC_WRAP_CV_TIMED(
    _ZN4absl7debian37CondVar15WaitWithTimeoutEPNS0_5MutexENS0_8DurationE,
    absl::Duration)
PC_WRAP_CV_TIMED(
    _ZN4absl7debian37CondVar16WaitWithDeadlineEPNS0_5MutexENS0_4TimeE,
    absl::Time)
#undef PC_WRAP_CV_TIMED

// Notification: WaitForNotification* returns at once, without the internal
// mutex, once notified_yet_ is set: release in Notify, acquire after a wait.
// (HasBeenNotified() is inline and stays invisible.)
extern "C" void __real__ZN4absl7debian312Notification6NotifyEv(
    absl::Notification*);
extern "C" void __wrap__ZN4absl7debian312Notification6NotifyEv(
    absl::Notification* n) {
  __tsan_release(n);
  __real__ZN4absl7debian312Notification6NotifyEv(n);
}
extern "C" void __real__ZNK4absl7debian312Notification19WaitForNotificationEv(
    const absl::Notification*);
extern "C" void __wrap__ZNK4absl7debian312Notification19WaitForNotificationEv(
    const absl::Notification* n) {
  __real__ZNK4absl7debian312Notification19WaitForNotificationEv(n);
  __tsan_acquire(const_cast<absl::Notification*>(n));
}
#define PC_WRAP_NOTIFICATION_TIMED(sym, T)                         \
  extern "C" bool __real_##sym(const absl::Notification*, T);      \
  extern "C" bool __wrap_##sym(const absl::Notification* n, T t) { \
    const bool r = __real_##sym(n, t);                             \
    __tsan_acquire(const_cast<absl::Notification*>(n));            \
    return r;                                                      \
  }
PC_WRAP_NOTIFICATION_TIMED(
    _ZNK4absl7debian312Notification30WaitForNotificationWithTimeoutENS0_8DurationE,
    absl::Duration)
PC_WRAP_NOTIFICATION_TIMED(
    _ZNK4absl7debian312Notification31WaitForNotificationWithDeadlineENS0_4TimeE,
    absl::Time)
#undef PC_WRAP_NOTIFICATION_TIMED
