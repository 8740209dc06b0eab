#include "aggregator/sync_group.h"

#include <errno.h>
#include <unistd.h>

#include <algorithm>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "aggregator/file_io.h"

namespace pc::aggregator {
namespace {

int ErrnoOf(int rc) { return rc == 0 ? 0 : errno; }

}  // namespace

SyncGroup::Ops SyncGroup::SystemOps() {
  Ops ops;
  ops.sync_file = [](int fd) { return ErrnoOf(fdatasync(fd)); };
  ops.sync_fs = [](int fd) { return ErrnoOf(syncfs(fd)); };
  return ops;
}

SyncGroup::SyncGroup(int fs_fd, SyncGroupOptions options, Ops ops)
    : fs_fd_(fs_fd), options_(options), ops_(std::move(ops)) {}

size_t SyncGroup::RecentWriters() const {
  const size_t n = std::min(recent_count_, recent_.size());
  std::vector<uint64_t> writers(recent_.begin(), recent_.begin() + n);
  std::sort(writers.begin(), writers.end());
  return std::unique(writers.begin(), writers.end()) - writers.begin();
}

absl::Time SyncGroup::LeadAllowedAt() const {
  if (running_.empty()) return absl::InfinitePast();
  if (running_.size() >=
      static_cast<size_t>(std::max(options_.max_parallel_rounds, 1))) {
    return absl::InfiniteFuture();
  }
  // The youngest running round decides: all of them must look stalled.
  return *running_.rbegin() + options_.stall_after;
}

absl::Status SyncGroup::Sync(int fd, uint64_t writer, const std::string& path) {
  return Sync({fd}, writer, path);
}

absl::Status SyncGroup::SyncAll(const std::string& path) {
  const int error = ops_.sync_fs(fs_fd_);
  {
    absl::MutexLock lock(&mu_);
    ++stats_.fs_syncs;
  }
  if (error != 0) return IoError(error, absl::StrCat("flush ", path));
  return absl::OkStatus();
}

absl::Status SyncGroup::Sync(std::initializer_list<int> fds, uint64_t writer,
                             const std::string& path) {
  if (fds.size() == 0 || fds.size() > kMaxFds) {
    return absl::InvalidArgumentError(absl::StrCat(
        "flush ", path, ": ", fds.size(), " descriptors in one request"));
  }
  Request request{};
  std::copy(fds.begin(), fds.end(), request.fds.begin());
  request.fd_count = fds.size();
  const absl::Time asked = absl::Now();
  absl::MutexLock lock(&mu_);
  waiting_.push_back(&request);
  recent_[recent_count_++ % recent_.size()] = writer;
  // Whoever finds no round under way (or only stalled ones) leads the next
  // one: it may wait for the other recent writers, then takes every request
  // queued so far (all written before the flush starts) and flushes them;
  // the others wait for their round to finish.
  while (!request.done) {
    if (request.taken) {
      mu_.Await(absl::Condition(&request.done));
      continue;
    }
    const absl::Time allowed = LeadAllowedAt();
    if (absl::Now() < allowed) {
      // Woken (by mu_'s unlock) only when this request is done or a round
      // has ended, not by every other request's arrival; or when the
      // running rounds start to count as stalled.
      struct Turn {
        const Request* request;
        const uint64_t* ended;
        uint64_t seen;
      } turn{&request, &rounds_ended_, rounds_ended_};
      const absl::Condition turn_changed(
          +[](Turn* t) { return t->request->done || *t->ended != t->seen; },
          &turn);
      if (allowed == absl::InfiniteFuture()) {
        mu_.Await(turn_changed);
      } else {
        mu_.AwaitWithDeadline(turn_changed, allowed);
      }
      continue;
    }
    // A round that is still gathering is not stalled: it is about to take
    // every queued request.
    auto round_start = running_.insert(absl::InfiniteFuture());
    const size_t want = std::min(
        RecentWriters(), static_cast<size_t>(std::max(options_.max_round, 1)));
    if (want > 1 && options_.max_delay > absl::ZeroDuration()) {
      // A lone writer never waits: its next request comes only after this
      // one is answered.
      struct Goal {
        const std::vector<Request*>* waiting;
        size_t want;
      } goal{&waiting_, want};
      mu_.AwaitWithTimeout(
          absl::Condition(
              +[](Goal* g) { return g->waiting->size() >= g->want; }, &goal),
          options_.max_delay);
    }
    std::vector<Request*> round;
    round.swap(waiting_);
    for (Request* r : round) r->taken = true;
    running_.erase(round_start);
    round_start = running_.insert(absl::Now());
    mu_.Unlock();
    Flush(round);
    mu_.Lock();
    running_.erase(round_start);
    ++rounds_ended_;
    for (Request* r : round) r->done = true;
  }
  latency_.Observe(absl::Now() - asked);
  if (request.error != 0) {
    return IoError(request.error, absl::StrCat("flush ", path));
  }
  return absl::OkStatus();
}

void SyncGroup::Flush(const std::vector<Request*>& round) {
  std::set<int> fds;
  for (const Request* r : round) {
    fds.insert(r->fds.begin(), r->fds.begin() + r->fd_count);
  }
  uint64_t file_syncs = 0, fs_syncs = 0;
  if (options_.min_files_for_fs > 0 &&
      fds.size() >= static_cast<size_t>(options_.min_files_for_fs)) {
    const int error = ops_.sync_fs(fs_fd_);
    ++fs_syncs;
    for (Request* r : round) r->error = error;
  } else {
    for (int fd : fds) {
      const int error = ops_.sync_file(fd);
      ++file_syncs;
      for (Request* r : round) {
        const auto end = r->fds.begin() + r->fd_count;
        if (r->error == 0 && std::find(r->fds.begin(), end, fd) != end) {
          r->error = error;
        }
      }
    }
  }
  absl::MutexLock lock(&mu_);
  ++stats_.rounds;
  stats_.file_syncs += file_syncs;
  stats_.fs_syncs += fs_syncs;
}

SyncGroup::Stats SyncGroup::stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

int SyncGroup::queued() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(waiting_.size());
}

}  // namespace pc::aggregator
