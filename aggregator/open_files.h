// The store's open descriptors, bounded: a stored file (its data and its
// commit log, two descriptors) is opened on demand and stays open while it
// is used often; beyond `capacity` files, the least recently used file that
// nobody is using is closed. A file in use (a Handle exists) is never closed
// under its user, so the bound is exceeded only by files in use at once.
//
// Thread-safe.
#ifndef AGGREGATOR_OPEN_FILES_H_
#define AGGREGATOR_OPEN_FILES_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <list>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace pc::aggregator {

class OpenFiles {
 public:
  // The descriptors of one file, usable until the handle is destroyed.
  class Handle {
   public:
    Handle() = default;
    Handle(Handle&& other) noexcept;
    Handle& operator=(Handle&& other) noexcept;
    Handle(const Handle&) = delete;
    Handle& operator=(const Handle&) = delete;
    ~Handle();

    int data_fd() const { return data_fd_; }
    int log_fd() const { return log_fd_; }

   private:
    friend class OpenFiles;
    void Release();

    OpenFiles* owner_ = nullptr;
    uint64_t key_ = 0;
    int data_fd_ = -1;
    int log_fd_ = -1;
  };

  // capacity: files (not descriptors) kept open while idle; at least 1.
  explicit OpenFiles(size_t capacity);
  ~OpenFiles();  // closes everything; no handle may outlive it
  OpenFiles(const OpenFiles&) = delete;
  OpenFiles& operator=(const OpenFiles&) = delete;

  // A key no other file of this cache uses.
  uint64_t NewKey() { return next_key_.fetch_add(1) + 1; }

  // Sets *handle to file `key`'s descriptors, opening data_path and
  // log_path (read-write) if they are not open. When the process is out of
  // descriptors (EMFILE, ENFILE), closes every idle file and tries again
  // once. Returns 0 or the errno of the failed open.
  int Acquire(uint64_t key, const std::string& data_path,
              const std::string& log_path, Handle* handle);

  // Takes over two descriptors just opened for `key` (e.g. when the files
  // were created), in use by the returned handle.
  Handle Adopt(uint64_t key, int data_fd, int log_fd);

  // Closes `key`'s descriptors now, or, if it is in use, when its handle is
  // released; a later Acquire opens the paths again.
  void Forget(uint64_t key);

  // Files whose descriptors are open (idle or in use).
  size_t open_files() const;
  // Files closed to stay within capacity, since creation.
  uint64_t evictions() const;

 private:
  struct Entry {
    int data_fd = -1;
    int log_fd = -1;
    int users = 0;
    std::list<uint64_t>::iterator idle_pos;  // valid when users == 0
  };

  Handle Use(uint64_t key, Entry* entry) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Release(const Handle& handle);
  // Closes idle files (least recently used first) beyond `keep` open files;
  // the descriptors to close are added to *fds.
  void Trim(size_t keep, std::vector<int>* fds)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CloseIdle();

  const size_t capacity_;
  std::atomic<uint64_t> next_key_{0};
  mutable absl::Mutex mu_;
  std::unordered_map<uint64_t, Entry> entries_ ABSL_GUARDED_BY(mu_);
  // Idle files, most recently used first.
  std::list<uint64_t> idle_ ABSL_GUARDED_BY(mu_);
  // Files forgotten while in use, closed by their last user.
  std::vector<Entry> forgotten_ ABSL_GUARDED_BY(mu_);
  uint64_t evictions_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace pc::aggregator

#endif  // AGGREGATOR_OPEN_FILES_H_
