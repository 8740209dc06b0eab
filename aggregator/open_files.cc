#include "aggregator/open_files.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <utility>

namespace pc::aggregator {
namespace {

void CloseAll(const std::vector<int>& fds) {
  for (int fd : fds) close(fd);
}

}  // namespace

OpenFiles::Handle::Handle(Handle&& other) noexcept { *this = std::move(other); }

OpenFiles::Handle& OpenFiles::Handle::operator=(Handle&& other) noexcept {
  if (this != &other) {
    Release();
    owner_ = std::exchange(other.owner_, nullptr);
    key_ = other.key_;
    data_fd_ = std::exchange(other.data_fd_, -1);
    log_fd_ = std::exchange(other.log_fd_, -1);
  }
  return *this;
}

OpenFiles::Handle::~Handle() { Release(); }

void OpenFiles::Handle::Release() {
  if (owner_ != nullptr) owner_->Release(*this);
  owner_ = nullptr;
  data_fd_ = log_fd_ = -1;
}

OpenFiles::OpenFiles(size_t capacity)
    : capacity_(std::max<size_t>(capacity, 1)) {}

OpenFiles::~OpenFiles() {
  absl::MutexLock lock(&mu_);
  for (const auto& [key, e] : entries_) {
    close(e.data_fd);
    close(e.log_fd);
  }
}

OpenFiles::Handle OpenFiles::Use(uint64_t key, Entry* entry) {
  if (entry->users++ == 0) idle_.erase(entry->idle_pos);
  Handle h;
  h.owner_ = this;
  h.key_ = key;
  h.data_fd_ = entry->data_fd;
  h.log_fd_ = entry->log_fd;
  return h;
}

int OpenFiles::Acquire(uint64_t key, const std::string& data_path,
                       const std::string& log_path, Handle* handle) {
  {
    absl::MutexLock lock(&mu_);
    auto it = entries_.find(key);
    if (it != entries_.end()) {
      *handle = Use(key, &it->second);
      return 0;
    }
  }
  int data_fd = -1, log_fd = -1;
  int err = 0;
  for (int attempt = 0; attempt < 2; ++attempt) {
    data_fd = open(data_path.c_str(), O_RDWR | O_CLOEXEC);
    if (data_fd >= 0) {
      log_fd = open(log_path.c_str(), O_RDWR | O_CLOEXEC);
      if (log_fd < 0) {
        err = errno;
        close(data_fd);
        data_fd = -1;
      }
    } else {
      err = errno;
    }
    if (data_fd >= 0) break;
    if (attempt > 0 || (err != EMFILE && err != ENFILE)) return err;
    CloseIdle();
  }
  *handle = Adopt(key, data_fd, log_fd);
  return 0;
}

OpenFiles::Handle OpenFiles::Adopt(uint64_t key, int data_fd, int log_fd) {
  std::vector<int> to_close;
  Handle h;
  {
    absl::MutexLock lock(&mu_);
    auto [it, inserted] = entries_.try_emplace(key);
    if (!inserted) {
      // Opened by another caller meanwhile: use theirs.
      to_close = {data_fd, log_fd};
    } else {
      it->second.data_fd = data_fd;
      it->second.log_fd = log_fd;
      it->second.idle_pos = idle_.insert(idle_.begin(), key);
    }
    h = Use(key, &it->second);
    Trim(capacity_, &to_close);
  }
  CloseAll(to_close);
  return h;
}

void OpenFiles::Release(const Handle& handle) {
  std::vector<int> to_close;
  {
    absl::MutexLock lock(&mu_);
    auto it = entries_.find(handle.key_);
    if (it == entries_.end() || it->second.data_fd != handle.data_fd_) {
      // Forgotten while in use: the last user closes it.
      auto f = std::find_if(
          forgotten_.begin(), forgotten_.end(),
          [&](const Entry& e) { return e.data_fd == handle.data_fd_; });
      if (f != forgotten_.end() && --f->users == 0) {
        to_close = {f->data_fd, f->log_fd};
        forgotten_.erase(f);
      }
    } else if (--it->second.users == 0) {
      it->second.idle_pos = idle_.insert(idle_.begin(), handle.key_);
      Trim(capacity_, &to_close);
    }
  }
  CloseAll(to_close);
}

void OpenFiles::Forget(uint64_t key) {
  std::vector<int> to_close;
  {
    absl::MutexLock lock(&mu_);
    auto it = entries_.find(key);
    if (it == entries_.end()) return;
    if (it->second.users == 0) {
      idle_.erase(it->second.idle_pos);
      to_close = {it->second.data_fd, it->second.log_fd};
    } else {
      forgotten_.push_back(it->second);
    }
    entries_.erase(it);
  }
  CloseAll(to_close);
}

void OpenFiles::Trim(size_t keep, std::vector<int>* fds) {
  while (entries_.size() > keep && !idle_.empty()) {
    auto it = entries_.find(idle_.back());
    idle_.pop_back();
    fds->push_back(it->second.data_fd);
    fds->push_back(it->second.log_fd);
    entries_.erase(it);
    ++evictions_;
  }
}

void OpenFiles::CloseIdle() {
  std::vector<int> to_close;
  {
    absl::MutexLock lock(&mu_);
    Trim(0, &to_close);
  }
  CloseAll(to_close);
}

size_t OpenFiles::open_files() const {
  absl::MutexLock lock(&mu_);
  return entries_.size();
}

uint64_t OpenFiles::evictions() const {
  absl::MutexLock lock(&mu_);
  return evictions_;
}

}  // namespace pc::aggregator
