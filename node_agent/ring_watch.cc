#include "node_agent/ring_watch.h"

#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/capture_layout.h"
#include "common/log.h"
#include "common/pcap/ring_reader.h"

namespace pc::agent {
namespace {

// How long the watch thread lets events gather after the first one: writes
// to the same file merge into one queued event meanwhile.
constexpr int kBatchMillis = 20;

constexpr uint32_t kDirMask = IN_CREATE | IN_MOVED_TO | IN_ONLYDIR;
constexpr uint32_t kRunMask =
    IN_CREATE | IN_MODIFY | IN_CLOSE_WRITE | IN_ONLYDIR;

// The slot of ring file `name` in a ring of max_files, named as tcpdump
// names them ("ring" alone for -W 1); -1 for any other name.
int RingSlot(const std::string& name, int max_files) {
  if (name.size() > 10 || name.compare(0, 4, "ring") != 0) return -1;
  int slot = 0;
  if (name.size() > 4 &&
      (name.find_first_not_of("0123456789", 4) != std::string::npos ||
       !absl::SimpleAtoi(name.substr(4), &slot))) {
    return -1;
  }
  if (slot < 0 || slot >= max_files ||
      pcap::RingFileName("ring", slot, max_files) != name) {
    return -1;
  }
  return slot;
}

std::vector<std::string> Subdirectories(const std::string& path) {
  std::vector<std::string> names;
  DIR* d = opendir(path.c_str());
  if (d == nullptr) return names;
  while (struct dirent* e = readdir(d)) {
    const std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    struct stat st;
    if (e->d_type == DT_DIR ||
        (e->d_type == DT_UNKNOWN &&
         stat((path + "/" + name).c_str(), &st) == 0 && S_ISDIR(st.st_mode))) {
      names.push_back(name);
    }
  }
  closedir(d);
  return names;
}

}  // namespace

absl::StatusOr<std::unique_ptr<RingWatch>> RingWatch::Create(
    const std::string& root, std::function<void()> on_reuse) {
  const int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (fd < 0) return absl::ErrnoToStatus(errno, "inotify_init1");
  const int stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (stop_fd < 0) {
    const int err = errno;
    close(fd);
    return absl::ErrnoToStatus(err, "eventfd");
  }
  std::unique_ptr<RingWatch> watch(
      new RingWatch(root, fd, stop_fd, std::move(on_reuse)));
  {
    absl::MutexLock lock(&watch->mu_);
    Watched what;
    what.kind = Kind::kRoot;
    const int wd = inotify_add_watch(fd, root.c_str(), kDirMask);
    if (wd < 0) {
      return absl::ErrnoToStatus(errno, absl::StrCat("inotify watch ", root));
    }
    watch->watched_[wd] = what;
    for (const auto& name : Subdirectories(root)) {
      if (IsValidCaptureId(name)) watch->AddCaptureDir(name);
    }
  }
  watch->thread_ = std::thread([w = watch.get()] { w->Loop(); });
  return watch;
}

RingWatch::RingWatch(std::string root, int fd, int stop_fd,
                     std::function<void()> on_reuse)
    : root_(std::move(root)),
      fd_(fd),
      stop_fd_(stop_fd),
      on_reuse_(std::move(on_reuse)) {}

RingWatch::~RingWatch() {
  const uint64_t one = 1;
  if (write(stop_fd_, &one, sizeof(one)) < 0) {
    // The eventfd cannot be full; nothing else to do.
  }
  if (thread_.joinable()) thread_.join();
  close(fd_);
  close(stop_fd_);
}

void RingWatch::Loop() {
  for (;;) {
    struct pollfd fds[2] = {{fd_, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      LogLine("ring_watch_failed", {{"error", strerror(errno)}});
      return;
    }
    if (fds[1].revents != 0) return;
    // Let events gather (stop still ends the wait at once).
    if (poll(&fds[1], 1, kBatchMillis) > 0) return;
    bool reused;
    {
      absl::MutexLock lock(&mu_);
      reused = ReadEvents();
    }
    if (reused && on_reuse_) on_reuse_();
  }
}

void RingWatch::Sync() {
  absl::MutexLock lock(&mu_);
  ReadEvents();
}

bool RingWatch::ReadEvents() {
  alignas(struct inotify_event) char buf[64 * 1024];
  bool reused = false;
  for (;;) {
    const ssize_t n = read(fd_, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // EAGAIN: nothing more queued
    for (ssize_t at = 0; at < n;) {
      const auto* event = reinterpret_cast<const struct inotify_event*>(
          buf + static_cast<size_t>(at));
      reused |= Handle(*event);
      at += static_cast<ssize_t>(sizeof(struct inotify_event) + event->len);
    }
  }
  return reused;
}

bool RingWatch::Handle(const struct inotify_event& event) {
  if (event.mask & IN_Q_OVERFLOW) {
    ++overflows_;
    for (auto& [wd, w] : watched_) w.pending = -1;
    LogLine("ring_watch_overflow",
            {{"root", root_},
             {"effect", "ring reuses missed; bytes_lost is a lower bound"}});
    return true;  // so the uplink learns it now
  }
  auto it = watched_.find(event.wd);
  if (it == watched_.end()) return false;
  if (event.mask & IN_IGNORED) {  // directory deleted
    watched_.erase(it);
    return false;
  }
  const std::string name = event.len > 0 ? std::string(event.name) : "";
  Watched& w = it->second;
  switch (w.kind) {
    case Kind::kRoot:
      if ((event.mask & IN_ISDIR) && IsValidCaptureId(name))
        AddCaptureDir(name);
      return false;
    case Kind::kCapture: {
      int run, n;
      if ((event.mask & IN_ISDIR) && ParseRunDirName(name, &run, &n)) {
        const std::string id = w.id;  // AddRunDir may add to watched_
        AddRunDir(id, name);
      }
      return false;
    }
    case Kind::kRun:
      break;
  }
  const int slot = RingSlot(name, w.max_files);
  if (slot < 0) return false;
  bool reused = false;
  if (event.mask & IN_CREATE) {
    if (w.pending == slot) w.pending = -1;  // a new file, not a reuse
  }
  if (event.mask & IN_MODIFY) {
    if (w.pending == slot) {
      ++reuses_[w.id][absl::StrCat(w.run, "/", name)];
      w.pending = -1;
      reused = true;
    }
  }
  if (event.mask & IN_CLOSE_WRITE) w.pending = (slot + 1) % w.max_files;
  return reused;
}

int RingWatch::AddWatch(const std::string& path, uint32_t mask,
                        const Watched& what) {
  const int wd = inotify_add_watch(fd_, path.c_str(), mask);
  if (wd < 0) {
    if (errno != ENOENT) {  // ENOENT: deleted again already
      ++overflows_;
      LogLine("ring_watch_failed",
              {{"path", path},
               {"error", strerror(errno)},
               {"effect", "ring reuses missed; bytes_lost is a lower bound"}});
    }
    return -1;
  }
  watched_.emplace(wd, what);  // keeps the state of a path watched already
  return wd;
}

void RingWatch::AddCaptureDir(const std::string& id) {
  Watched what;
  what.kind = Kind::kCapture;
  what.id = id;
  const std::string path = absl::StrCat(root_, "/", id);
  if (AddWatch(path, kDirMask, what) < 0) return;
  // Run directories created before the watch.
  for (const auto& name : Subdirectories(path)) {
    int run, n;
    if (ParseRunDirName(name, &run, &n)) AddRunDir(id, name);
  }
}

void RingWatch::AddRunDir(const std::string& id, const std::string& run) {
  int k, n;
  if (!ParseRunDirName(run, &k, &n)) return;
  Watched what;
  what.kind = Kind::kRun;
  what.id = id;
  what.run = run;
  what.max_files = n;
  AddWatch(absl::StrCat(root_, "/", id, "/", run), kRunMask, what);
}

uint64_t RingWatch::Reuses(const std::string& id,
                           const std::string& file) const {
  absl::MutexLock lock(&mu_);
  auto c = reuses_.find(id);
  if (c == reuses_.end()) return 0;
  auto f = c->second.find(file);
  return f == c->second.end() ? 0 : f->second;
}

std::map<std::string, uint64_t> RingWatch::ReusedSlots(
    const std::string& id) const {
  absl::MutexLock lock(&mu_);
  auto c = reuses_.find(id);
  return c == reuses_.end() ? std::map<std::string, uint64_t>() : c->second;
}

bool RingWatch::Watching(const std::string& id, const std::string& run) const {
  absl::MutexLock lock(&mu_);
  for (const auto& [wd, w] : watched_) {
    if (w.kind == Kind::kRun && w.id == id && w.run == run) return true;
  }
  return false;
}

uint64_t RingWatch::overflows() const {
  absl::MutexLock lock(&mu_);
  return overflows_;
}

void RingWatch::Forget(const std::string& id) {
  absl::MutexLock lock(&mu_);
  reuses_.erase(id);
}

}  // namespace pc::agent
