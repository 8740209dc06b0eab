// The aggregator's durable store: capture metadata and the pcap bytes agents
// upload, under one data directory, with the index rebuilt from disk at start.
//
// Layout (every path component comes from a validated id or name, never from
// raw input):
//   <data_dir>/captures/<capture id>/capture.pb    metadata (atomic write)
//   <data_dir>/captures/<id>/run-<k>-w<N>/ring<i>.<gen>.pcap   uploaded bytes
//   <data_dir>/captures/<id>/run-<k>-w<N>/ring<i>.<gen>.log    commit log
// capture.pb holds the Capture as the node reported it and when the store
// first saw it stopped (capture_meta.proto), at most kMaxMetaFileBytes.
// A chunk's bytes are written and flushed before its commit entry is
// appended to the log (and the log flushed), so at start the stored length is
// the end of the last valid, checksummed entry and any torn tail is truncated
// away. A batch (AppendBatch) writes all its chunks' bytes, flushes once,
// then appends all their entries and flushes once; flushes of concurrent
// streams are shared (SyncGroup). Each (capture, file, generation) has its
// own files (stored_file.h).
//
// Descriptors: a stored file's are opened on demand and kept in a bounded
// cache (OpenFiles, max_open_files), so their number does not grow with the
// stored files; a download holds one descriptor while it reads.
//
// Retention counts on the aggregator's clock from when the store first saw a
// capture stopped or gone (persisted), never from times an agent reports.
//
// Errors, and what the ingest service should do with them:
//  - InvalidArgument: this message is bad (id, file name, chunk contents,
//    offsets, a status over kMaxStatusBytes) or the capture's id does not
//    fit a file name; reject this capture's message.
//  - FailedPrecondition: this capture cannot take it now: unknown capture
//    (send its status first), capture deleted meanwhile, or a file-system
//    problem confined to this capture's directory (EACCES, ENOENT, ENOTDIR,
//    EFBIG, ...); reject this capture.
//  - PermissionDenied: the capture belongs to another node.
//  - ResourceExhausted: store-wide, the disk is full or the process is out
//    of descriptors or memory (ENOSPC, EDQUOT, EMFILE, ENFILE, ENOMEM); the
//    whole stream should back off.
//  - Internal (and DataLoss): store-wide I/O failure (EIO, EROFS, ...).
// Messages name captures and files relative to the data directory, never
// server paths (file_io.h's IoError is the one errno mapping).
//
// Thread-safe. The index is under one mutex, held only for in-memory work:
// flushes, renames, unlinks and directory removal happen outside it. Each
// stored file serializes its own appends and each capture its metadata
// writes, so one slow file holds up only its own stream.
#ifndef AGGREGATOR_STORE_H_
#define AGGREGATOR_STORE_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/optional.h"
#include "aggregator/capture_dir.h"
#include "aggregator/capture_store.h"
#include "aggregator/file_io.h"
#include "aggregator/open_files.h"
#include "aggregator/store_rules.h"  // ParseStoredFileName
#include "aggregator/stored_file.h"
#include "aggregator/sync_group.h"
#include "common/capture_registry.h"
#include "common/capture_service.h"
#include "common/metrics/latency_histogram.h"
#include "common/pcap/pcap_format.h"
#include "proto/packetcapture.pb.h"

namespace pc::aggregator {

struct StoreOptions {
  std::string data_dir;
  // How long a stopped capture (or one its node no longer reports) is kept,
  // counted from when the store first saw it so.
  absl::Duration retention = absl::Hours(24);
  // Total bytes of stored pcap data; 0 = unlimited. Over budget, stopped
  // captures are evicted oldest first.
  uint64_t max_bytes = 0;
  // Stored files whose descriptors (two each) stay open between appends.
  // Fewer when RLIMIT_NOFILE is low: the cache keeps within a quarter of the
  // soft limit.
  int max_open_files = 256;
  // How concurrent appends share their flushes (see SyncGroup).
  SyncGroupOptions sync;
  // Injected for tests: the flushes of stored files (SyncGroup) and of
  // metadata files and directories; the system calls when empty.
  SyncGroup::Ops sync_ops;
  FsyncFn fsync;
  // Injected for tests; absl::Now when empty.
  std::function<absl::Time()> clock;
  // A capture's listing (the registry) takes its acknowledged chunks at most
  // this often; the last change of an interval is published at its end.
  // Status changes are published at once. A listing costs in proportion to
  // the capture's files, so publishing each commit of a capture with
  // thousands of files would cost in proportion to their square. Zero: each
  // commit at once. Counted on the real clock, not `clock`.
  absl::Duration listing_interval = absl::ZeroDuration();
};

class Store final : public CaptureStore {
 public:
  // Creates the directory if needed and rebuilds the index from disk;
  // publishes every capture found to `registry` (which must outlive the
  // store). Unreadable entries are logged and skipped.
  static absl::StatusOr<std::unique_ptr<Store>> Open(StoreOptions options,
                                                     CaptureRegistry* registry);
  ~Store() override;

  // One writer: every node is this store's. Applies the report as MarkGone.
  absl::Status AcquireNode(const std::string& node,
                           const NodeReport& report) override;
  void ReleaseNode(const std::string&) override {}
  void SetOnNodeLost(std::function<void(const std::string&)>) override {}

  // Upserts the status `node` reports for a capture; returns once it is
  // durable. InvalidArgument for an invalid id or a status larger than
  // kMaxStatusBytes (the capture keeps its previous status); PermissionDenied
  // if the status names another node or the capture belongs to another node.
  absl::Status PutStatus(const std::string& node,
                         const Capture& status) override;

  // `node` reports exactly `present`: its other captures are no longer on the
  // node (on_node false; running ones become STOPPED with `reason` as their
  // message), and their retention starts now.
  void MarkGone(const std::string& node, const std::set<std::string>& present,
                const std::string& reason) override;

  // Nodes with a capture still on the node (on_node): those whose agent the
  // store still expects back.
  std::set<std::string> NodesWithCaptures() const override;

  // Every (capture, file, generation) of `node` with its stored length.
  std::vector<packetcapture::v1::ResumePoint> ResumePoints(
      const std::string& node) const override;

  // Checks and durably appends a chunk (see AppendResult). A chunk partly
  // stored already adds the part past the stored end. Errors: see above.
  absl::StatusOr<AppendResult> Append(const std::string& node,
                                      const packetcapture::v1::Chunk& chunk);

  // Append() for consecutive chunks of one (capture, file, generation), with
  // one data flush and one log flush for all of them (group commit). Stops at
  // the first chunk Append() would reject; the chunks before it are stored
  // and have results.
  BatchResult AppendBatch(
      const std::string& node,
      const std::vector<const packetcapture::v1::Chunk*>& chunks) override;
  // AppendBatch() in two steps: writes now, flushes in Commit(); see
  // CaptureStore::WriteBatch and StoredFile::Write.
  std::unique_ptr<PendingBatch> WriteBatch(
      const std::string& node,
      const std::vector<const packetcapture::v1::Chunk*>& chunks) override;

  // Applies retention and the byte budget; returns the captures deleted.
  std::vector<std::string> Maintain() override;

  // Download of one capture: the first file's global header, then the
  // records of each stored file in capture order. With follow, waits for more
  // while the capture runs. NotFound for an unknown id. The reader must not
  // outlive the store.
  absl::StatusOr<std::unique_ptr<PcapSource>> OpenReader(const std::string& id,
                                                         bool follow) override;

  using Stats = StoreStats;
  Stats stats() const override;
  // How long appends waited for their data and log flushes.
  metrics::LatencyHistogram::Snapshot flush_latency() const override;
  uint64_t max_bytes() const override { return options_.max_bytes; }

  // Total stored pcap bytes.
  uint64_t total_bytes() const override;
  // Stored files whose descriptors are open now.
  size_t open_files() const override;

 private:
  // A stored file in the index: its I/O object and what the index shows.
  struct FileEntry {
    std::shared_ptr<StoredFile> io;
    FileSummary summary;   // guarded by Store::mu_
    bool deleted = false;  // guarded by Store::mu_: dropped from the index
  };
  struct StoredCapture {
    CaptureMeta meta;  // status as the node reported it, plus ours
    // Significant() of meta as of `version`, bumped with each change of it;
    // capture.pb holds saved_version.
    std::string noted;
    uint64_t version = 0;
    uint64_t saved_version = 0;
    std::shared_ptr<CaptureDir> dir;
    std::map<std::pair<std::string, uint64_t>, std::shared_ptr<FileEntry>>
        files;
    // Bytes on disk in files recovery could not read: counted against the
    // budget until the capture is deleted.
    uint64_t unreadable_bytes = 0;
    // View()'s files (those with stored bytes) in download order, sorted
    // when file_set_version_ was `order_version`: re-sorted only after the
    // order may have changed, not on every commit (a long capture has
    // thousands of files). Every drop of a file changes file_set_version_,
    // so an entry is read only while it is in `files`. Guarded by
    // Store::mu_.
    mutable std::vector<const FileEntry*> order;
    mutable std::optional<uint64_t> order_version;
    // When the listing was last published, and whether it has changed since
    // (then its id is in stale_listings_). Guarded by Store::mu_.
    absl::Time listed_at = absl::InfinitePast();
    bool listing_stale = false;
  };
  // What to remove from disk once the index has let go of it.
  struct Removal {
    std::vector<std::shared_ptr<StoredFile>> files;
    std::vector<std::shared_ptr<CaptureDir>> dirs;
    std::vector<std::string> ids;  // of the captures in dirs
    void Run();
  };
  // A capture.pb to write.
  struct MetaWrite {
    std::string id;
    std::shared_ptr<CaptureDir> dir;
    CaptureMeta meta;
    std::string significant;
    uint64_t version;
  };
  class Reader;

  Store(StoreOptions options, CaptureRegistry* registry);
  class Pending;
  // Commits a write of WriteBatch() and updates the index.
  absl::Status CommitWrite(const std::string& id,
                           const std::shared_ptr<FileEntry>& entry,
                           FileWrite* write, uint64_t writer,
                           std::vector<AppendResult>* results);
  absl::Time Now() const;
  // store_recovery.cc
  void Recover();
  std::unique_ptr<StoredCapture> RecoverCapture(const std::string& id);

  // Takes note of a changed status: when its durable part changed (or an
  // earlier version is not saved yet), returns the write to make (outside
  // mu_).
  absl::optional<MetaWrite> NoteChange(const std::string& id,
                                       StoredCapture* capture)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Writes capture.pb (no lock held) and records it as saved.
  absl::Status Save(const MetaWrite& write) ABSL_LOCKS_EXCLUDED(mu_);
  Capture View(const StoredCapture& capture) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Publish(StoredCapture& capture) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Publish() now if the last one is listing_interval ago, else leaves it
  // to the lister thread (ListLoop), at most listing_interval later.
  void PublishSoon(const std::string& id, StoredCapture& capture)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ListLoop();
  bool ListerHasWork() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return stopping_ || !stale_listings_.empty();
  }
  // Drops the oldest files beyond the capture's max_files.
  void MirrorRing(StoredCapture* capture, Removal* removal)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Takes a file out of the index; its files are removed by *removal (by
  // the caller, if null).
  void DropFile(StoredCapture* capture, const std::shared_ptr<FileEntry>& f,
                Removal* removal) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void DeleteCapture(const std::string& id, Removal* removal)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::string CaptureDirPath(const std::string& id) const;
  std::shared_ptr<FileEntry> NewFileEntry(const StoredCapture& capture,
                                          const std::string& name,
                                          uint64_t generation) const;
  // Capture order: by first record's time (files without records last),
  // then name and generation. Reads summaries: needs mu_.
  static bool DownloadOrder(const std::shared_ptr<FileEntry>& a,
                            const std::shared_ptr<FileEntry>& b);
  // Files of a capture in download order; *version is file_set_version_ at
  // the time (optional).
  std::vector<std::shared_ptr<FileEntry>> OrderedFiles(
      const std::string& id, bool* running, uint64_t* version = nullptr) const;

  const StoreOptions options_;
  CaptureRegistry* registry_;
  int dir_fd_ = -1;  // the data directory, for syncfs()
  std::unique_ptr<SyncGroup> sync_;
  std::unique_ptr<OpenFiles> open_files_;
  StoredFileContext file_context_;

  mutable absl::Mutex mu_;
  std::map<std::string, std::unique_ptr<StoredCapture>> captures_
      ABSL_GUARDED_BY(mu_);
  // Captures deleted from the index whose directory is still being removed:
  // the id cannot be used again until then.
  std::set<std::string> removing_ ABSL_GUARDED_BY(mu_);
  uint64_t total_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  // Bumped whenever any capture's download order may have changed (a file
  // added, dropped, or given its first record), so readers re-sort only then.
  uint64_t file_set_version_ ABSL_GUARDED_BY(mu_) = 0;
  bool over_budget_logged_ ABSL_GUARDED_BY(mu_) = false;
  Stats stats_ ABSL_GUARDED_BY(mu_);
  // Captures whose listing waits for the lister thread.
  std::set<std::string> stale_listings_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread lister_;  // with a listing_interval only
};

}  // namespace pc::aggregator

#endif  // AGGREGATOR_STORE_H_
