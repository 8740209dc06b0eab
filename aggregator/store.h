// The aggregator's durable store: capture metadata and the pcap bytes agents
// upload, under one data directory, with the index rebuilt from disk at start.
//
// Layout (every path component comes from a validated id or name, never from
// raw input):
//   <data_dir>/captures/<capture id>/capture.pb          Capture (atomic write)
//   <data_dir>/captures/<id>/run-<k>-w<N>/ring<i>.<gen>.pcap   uploaded bytes
//   <data_dir>/captures/<id>/run-<k>-w<N>/ring<i>.<gen>.log    commit log
// A chunk's bytes are written and flushed before its commit entry is
// appended to the log (and the log flushed), so at start the stored length is
// the end of the last valid, checksummed entry and any torn tail is truncated
// away. A batch (AppendBatch) writes all its chunks' bytes, flushes once,
// then appends all their entries and flushes once; flushes of concurrent
// streams are shared (SyncGroup). Each (capture, file, generation) has its
// own files.
//
// Thread-safe. The index is under one mutex; each stored file serializes its
// own I/O, so streams of different agents write in parallel.
#ifndef AGGREGATOR_STORE_H_
#define AGGREGATOR_STORE_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/optional.h"
#include "aggregator/sync_group.h"
#include "common/capture_registry.h"
#include "common/capture_service.h"
#include "common/pcap/pcap_format.h"
#include "proto/packetcapture.pb.h"

namespace pc::aggregator {

struct StoreOptions {
  std::string data_dir;
  // How long a stopped capture (or one its node no longer reports) is kept.
  absl::Duration retention = absl::Hours(24);
  // Total bytes of stored pcap data; 0 = unlimited. Over budget, stopped
  // captures are evicted oldest first.
  uint64_t max_bytes = 0;
  // How concurrent appends share their flushes (see SyncGroup).
  SyncGroupOptions sync;
  // Injected for tests; absl::Now when empty.
  std::function<absl::Time()> clock;
};

// "run-<k>-w<N>/ring<i>" exactly as the agent names it (ring index below N,
// zero-padded the way tcpdump does). Sets *run_dir and *ring when valid.
bool ParseStoredFileName(const std::string& name, std::string* run_dir,
                         std::string* ring);

// What Append() did with a chunk.
struct AppendResult {
  // Bytes of (file, generation) now durable: the offset to acknowledge.
  uint64_t offset = 0;
  // The chunk lay entirely before the stored length: nothing was written.
  bool duplicate = false;
  // Bytes between the stored length and the chunk's offset that the agent
  // never sent (counted into the capture's bytes_lost).
  uint64_t gap = 0;
};

// What AppendBatch() did: one result per chunk handled, in order, and the
// error that stopped it (OK if every chunk was handled).
struct BatchResult {
  std::vector<AppendResult> results;
  absl::Status error;
};

class Store {
 public:
  using Capture = packetcapture::v1::Capture;

  // Creates the directory if needed and rebuilds the index from disk;
  // publishes every capture found to `registry` (which must outlive the
  // store). Unreadable entries are logged and skipped.
  static absl::StatusOr<std::unique_ptr<Store>> Open(StoreOptions options,
                                                     CaptureRegistry* registry);
  ~Store();

  // Upserts the status `node` reports for a capture. InvalidArgument for an
  // invalid id; PermissionDenied if the status names another node or the
  // capture belongs to another node.
  absl::Status PutStatus(const std::string& node, const Capture& status);

  // `node` reports exactly `present`: its other captures are no longer on the
  // node (on_node false; running ones become STOPPED with `reason` as their
  // message).
  void MarkGone(const std::string& node, const std::set<std::string>& present,
                const std::string& reason);

  // Every (capture, file, generation) of `node` with its stored length.
  std::vector<packetcapture::v1::ResumePoint> ResumePoints(
      const std::string& node) const;

  // Checks and durably appends a chunk (see AppendResult). Errors:
  // InvalidArgument (bad names, data not whole pcap records, first chunk not
  // at offset 0), FailedPrecondition (unknown capture: send its status
  // first), PermissionDenied (another node's capture), DataLoss/Internal for
  // I/O.
  absl::StatusOr<AppendResult> Append(const std::string& node,
                                      const packetcapture::v1::Chunk& chunk);

  // Append() for consecutive chunks of one (capture, file, generation), with
  // one data flush and one log flush for all of them (group commit). Stops at
  // the first chunk Append() would reject; the chunks before it are stored
  // and have results.
  BatchResult AppendBatch(
      const std::string& node,
      const std::vector<const packetcapture::v1::Chunk*>& chunks);

  // Applies retention and the byte budget; returns the captures deleted.
  std::vector<std::string> Maintain();

  // Download of one capture: the first file's global header, then the
  // records of each stored file in capture order. With follow, waits for more
  // while the capture runs. NotFound for an unknown id.
  absl::StatusOr<std::unique_ptr<PcapSource>> OpenReader(const std::string& id,
                                                         bool follow);

  // Total stored pcap bytes.
  uint64_t total_bytes() const;

 private:
  struct StoredFile;
  struct StoredCapture;
  class Reader;

  Store(StoreOptions options, CaptureRegistry* registry);
  absl::Status AppendBatchTo(
      const std::string& node,
      const std::vector<const packetcapture::v1::Chunk*>& chunks,
      std::vector<AppendResult>* results);
  absl::Time Now() const;
  void Recover();
  std::unique_ptr<StoredCapture> RecoverCapture(const std::string& id);
  std::shared_ptr<StoredFile> RecoverFile(const std::string& capture_dir,
                                          const std::string& run_dir,
                                          const std::string& base);
  absl::Status SaveMeta(const StoredCapture& capture);
  Capture View(const StoredCapture& capture) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Publish(const StoredCapture& capture) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Drops the oldest files beyond the capture's max_files.
  void MirrorRing(StoredCapture* capture) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void DeleteCapture(const std::string& id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::string CaptureDir(const std::string& id) const;
  // Files of a capture in download order; *version is file_set_version_ at
  // the time (optional).
  std::vector<std::shared_ptr<StoredFile>> OrderedFiles(
      const std::string& id, bool* running, uint64_t* version = nullptr) const;

  const StoreOptions options_;
  CaptureRegistry* registry_;
  int dir_fd_ = -1;  // the data directory, for syncfs()
  std::unique_ptr<SyncGroup> sync_;

  mutable absl::Mutex mu_;
  std::map<std::string, std::unique_ptr<StoredCapture>> captures_
      ABSL_GUARDED_BY(mu_);
  uint64_t total_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  // Bumped whenever any capture's download order may have changed (a file
  // added, dropped, or given its first record), so readers re-sort only then.
  uint64_t file_set_version_ ABSL_GUARDED_BY(mu_) = 0;
  bool over_budget_logged_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace pc::aggregator

#endif  // AGGREGATOR_STORE_H_
