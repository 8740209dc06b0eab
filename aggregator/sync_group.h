// Group commit for durable writes made by many threads at once: callers ask
// for the written data of one or two files (a commit's data and its log) to
// be made durable, and the requests that
// arrive while a flush is running are served together by the next one. When
// several writers (agents) have been active lately, a round also waits a
// little (at most max_delay) for each of them to have a request queued. A
// round that holds several files is flushed with a single syncfs() of the
// data directory's filesystem instead of one fdatasync() per file: with 100
// slow agent streams, one flush then covers a chunk of many of them.
//
// syncfs() also flushes whatever else is dirty on that filesystem, so the
// data directory should be a filesystem of its own (a PVC). min_files_for_fs
// sets the round size from which it is used; 0 never uses it.
//
// Rounds normally run one at a time (that is what lets requests gather).
// A round still flushing stall_after after it started no longer holds back the
// requests queued behind it: they start a round of their own (at most
// max_parallel_rounds at once), so one file whose flush hangs does not stall
// every other writer.
//
// Thread-safe. Sync() blocks its caller until its round is flushed.
#ifndef AGGREGATOR_SYNC_GROUP_H_
#define AGGREGATOR_SYNC_GROUP_H_

#include <array>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/metrics/latency_histogram.h"

namespace pc::aggregator {

struct SyncGroupOptions {
  // Rounds with at least this many distinct files use one syncfs(); 0 never.
  int min_files_for_fs = 4;
  // How long a round may wait for the other recently active writers' requests
  // (0 = never wait). Adds at most this to an acknowledgement's latency.
  absl::Duration max_delay = absl::Milliseconds(10);
  // A round stops waiting once it holds this many requests (about the number
  // of threads that can be waiting in Sync at once).
  int max_round = 16;
  // After this long, the running rounds count as stalled and queued requests
  // may start another round, up to max_parallel_rounds rounds at once.
  absl::Duration stall_after = absl::Milliseconds(100);
  int max_parallel_rounds = 4;
};

class SyncGroup {
 public:
  // The system calls, injectable for tests: each returns 0 or an errno.
  struct Ops {
    std::function<int(int fd)> sync_file;  // fdatasync
    std::function<int(int fd)> sync_fs;    // syncfs
  };
  static Ops SystemOps();

  // fs_fd: an open descriptor on the data directory (owned by the caller,
  // open for the group's lifetime).
  SyncGroup(int fs_fd, SyncGroupOptions options, Ops ops = SystemOps());

  // Returns once everything written to fd before the call is durable: a
  // flush of fd (or of the whole filesystem) that started after the call
  // has finished. `writer` names who asks (an agent's node), so a round
  // knows how many writers may still join it. Errors are IoError()s naming
  // `path`.
  absl::Status Sync(int fd, uint64_t writer, const std::string& path);
  // The same for at most kMaxFds descriptors in one request (a data file and
  // its log): all of them are flushed by the same round. The first error of
  // their flushes is returned.
  static constexpr size_t kMaxFds = 2;
  absl::Status Sync(std::initializer_list<int> fds, uint64_t writer,
                    const std::string& path);
  // Flushes the whole filesystem now, outside any round (syncfs(), whatever
  // min_files_for_fs says): for a store that has just read back files a
  // crash may have left partly in the page cache only.
  absl::Status SyncAll(const std::string& path);

  struct Stats {
    uint64_t rounds = 0;
    uint64_t file_syncs = 0;  // fdatasync calls
    uint64_t fs_syncs = 0;    // syncfs calls
  };
  Stats stats() const;
  // Requests waiting for a round that has not started yet.
  int queued() const;
  // How long Sync() calls took, from the request to durable (the wait for
  // the round included).
  metrics::LatencyHistogram::Snapshot latency() const {
    return latency_.Take();
  }

 private:
  struct Request {
    std::array<int, kMaxFds> fds;
    size_t fd_count;
    int error = 0;
    bool taken = false;  // a round holds it
    bool done = false;
  };
  // Distinct writers among the last requests.
  size_t RecentWriters() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // When a queued request may lead a round of its own: now if no round is
  // running, once every running round has run for stall_after if fewer than
  // max_parallel_rounds are, never (InfiniteFuture) otherwise.
  absl::Time LeadAllowedAt() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Flushes `round` (outside mu_) and sets each request's error.
  void Flush(const std::vector<Request*>& round);

  const int fs_fd_;
  const SyncGroupOptions options_;
  const Ops ops_;

  mutable absl::Mutex mu_;
  std::vector<Request*> waiting_ ABSL_GUARDED_BY(mu_);
  // When each running round started flushing (InfiniteFuture while it is
  // still gathering).
  std::multiset<absl::Time> running_ ABSL_GUARDED_BY(mu_);
  // Bumped whenever a round ends (waiters re-check whether they may lead).
  uint64_t rounds_ended_ ABSL_GUARDED_BY(mu_) = 0;
  std::array<uint64_t, 64> recent_ ABSL_GUARDED_BY(mu_) = {};
  size_t recent_count_ ABSL_GUARDED_BY(mu_) = 0;
  Stats stats_ ABSL_GUARDED_BY(mu_);
  metrics::LatencyHistogram latency_{metrics::LatencyHistogram::FlushBounds()};
};

}  // namespace pc::aggregator

#endif  // AGGREGATOR_SYNC_GROUP_H_
