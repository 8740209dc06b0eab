// Counts, with inotify, every generation tcpdump starts in a ring file under
// <root>/<capture id>/run-<k>-w<N>/ring<i>, however fast the ring turns:
// polling a file sees only the generation present when it looks, and a flood
// can rewrite a 1-file ring dozens of times between two looks.
//
// tcpdump's ring mode closes ring<i> and then opens ring<(i+1) mod N>,
// truncating it when it exists (same inode, no IN_CREATE). So in a run
// directory, a modification of ring<j> that follows the close of its
// predecessor, with no creation of ring<j> in between, is a reuse of slot j:
// the generation that was in it is gone. Counting starts when the directory
// is first watched (0 = the content found then, or the file created after).
// Directories are watched as soon as they appear (capture directories in
// the root, run directories in those), before tcpdump has usually opened
// anything in them.
//
// If the kernel's event queue overflows, events are lost: overflows() grows
// and counting resumes at each run directory's next close, so the counts are
// then a lower bound (the uplink's own identity checks still see that a
// slot changed, at least once).
//
// Thread-safe. A thread of its own reads events (in batches, so a flood of
// writes costs a few wake-ups per second, not one per packet) and calls
// on_reuse after counting a reuse; Sync() reads whatever is queued now, so a
// caller can bracket a read of a file with two Sync() calls and know
// whether the slot was reused in between.
#ifndef NODE_AGENT_RING_WATCH_H_
#define NODE_AGENT_RING_WATCH_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

struct inotify_event;

namespace pc::agent {

class RingWatch {
 public:
  // Watches root (which must exist) and what appears under it. on_reuse runs
  // on the watch's thread with no lock held and must not block.
  static absl::StatusOr<std::unique_ptr<RingWatch>> Create(
      const std::string& root, std::function<void()> on_reuse);
  ~RingWatch();
  RingWatch(const RingWatch&) = delete;
  RingWatch& operator=(const RingWatch&) = delete;

  // Reads and counts every event queued so far (and watches the
  // directories they announce). Cheap when nothing is queued.
  void Sync();

  // Reuses of slot `file` ("run-<k>-w<N>/ring<i>") of capture `id` since its
  // directory was first watched; 0 if none or unknown.
  uint64_t Reuses(const std::string& id, const std::string& file) const;
  // Every slot of capture `id` with at least one reuse, by file name.
  std::map<std::string, uint64_t> ReusedSlots(const std::string& id) const;
  // Whether run directory `run_dir` of capture `id` is being watched (its
  // counts are meaningful).
  bool Watching(const std::string& id, const std::string& run_dir) const;
  // How often events were lost (queue overflow, no watch left).
  uint64_t overflows() const;
  // Drops the counts of a capture that is gone.
  void Forget(const std::string& id);

 private:
  enum class Kind { kRoot, kCapture, kRun };
  struct Watched {
    Kind kind = Kind::kRoot;
    std::string id;   // capture id (kCapture, kRun)
    std::string run;  // run directory name (kRun)
    int max_files = 0;
    // The slot tcpdump opens next (its predecessor was just closed), or -1
    // when unknown (nothing closed since the watch began or an overflow).
    int pending = -1;
  };

  RingWatch(std::string root, int fd, int stop_fd,
            std::function<void()> on_reuse);
  void Loop();
  // Returns whether a reuse was counted.
  bool ReadEvents() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool Handle(const struct inotify_event& event)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void AddCaptureDir(const std::string& id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void AddRunDir(const std::string& id, const std::string& run)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // inotify_add_watch, unless the path is watched already; -1 on failure.
  int AddWatch(const std::string& path, uint32_t mask, const Watched& what)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string root_;
  const int fd_;       // inotify, non-blocking
  const int stop_fd_;  // eventfd that ends Loop()
  const std::function<void()> on_reuse_;
  std::thread thread_;

  mutable absl::Mutex mu_;
  std::map<int, Watched> watched_ ABSL_GUARDED_BY(mu_);  // by watch descriptor
  // capture id -> file name -> reuses.
  std::map<std::string, std::map<std::string, uint64_t>> reuses_
      ABSL_GUARDED_BY(mu_);
  uint64_t overflows_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace pc::agent

#endif  // NODE_AGENT_RING_WATCH_H_
