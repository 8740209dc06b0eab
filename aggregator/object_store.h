// The aggregator's store over an S3-compatible object store, shared by
// several aggregator replicas (issue 12). Objects are the record:
//   <prefix>/data/<id>/<run dir>/<ring>/<generation:020>/<offset:020>
//     an immutable run of a stored file's bytes starting at that file
//     offset (whole records; a file's first one starts with the pcap global
//     header), written with If-None-Match: * (a retry or a deposed writer's
//     copy of the same agent bytes gets 412 and is kept once), metadata
//     epoch and replica. A batch is one object (split only where the agent
//     skipped bytes); its chunks are acknowledged once its PUT succeeded.
//   <prefix>/catalog/<id>.pb
//     the capture's status (CaptureMeta), per-file summaries, and the
//     writer's replica and epoch (object_catalog.h); written with If-Match
//     on the ETag this replica last saw (If-None-Match: * when new): at once
//     on a status change, and with the bytes of a stopped or drained
//     capture (final counts). A 412 whose entry carries a newer epoch means
//     this replica was deposed: Aborted, and the node is written no more.
//   <prefix>/catalog/counts/<replica>.pb
//     the replica's counts board: the files and counts of the captures it
//     holds (or just released) whose entries are behind, each at its epoch
//     and counts_seq; readers take them over the entry where both name the
//     same replica and epoch and the board's counts_seq is higher. Written
//     within a second of a file's first bytes (a new file of the listing),
//     otherwise at most once per catalog_write_interval (5 s), so a running
//     capture's byte and packet counts lag the acknowledged objects by at
//     most that (plus a PUT). One object for every capture: with an entry
//     per capture, a store of many slow captures served nearly a third as
//     many catalog PUTs as data PUTs.
//
// One writer per node: AcquireNode takes the node through NodeOwnership
// (a Lease), then loads its captures from a fresh listing of the catalog and
// each capture's data objects (stored ends for ResumePoints: the catalog's
// summaries plus a scan of the objects written after them) and stamps the
// catalog entries with its epoch (marking those the agent's hello no longer
// lists gone in the same write); a capture the last holder wrote as off
// the node (drained: files_final) is taken as written, so a takeover costs
// the captures that can still grow, not the node's whole history. Every
// replica lists the catalog every
// catalog_poll_interval and publishes what changed to its CaptureRegistry,
// so listings agree within a poll interval plus a listing round; downloads
// list the data objects themselves and see every acknowledged byte.
//
// Retention and the byte budget (Maintain) run on any replica from what the
// catalog shows; deleting is idempotent (data objects first, then the
// entry, then the data objects again: see compaction).
//
// Compaction (object_compaction.cc): a held file with several data objects
// is sealed once a later file of its capture gets its first bytes, or the
// capture stops; if those objects are small (compact_below_bytes on
// average), a background thread then reads them, writes one
// object <offset:020>-<end:020> over each contiguous run of them (the same
// bytes; If-None-Match: *) and deletes the objects it replaces. Readers and
// takeover scans take overlapping objects once, so every interleaving keeps
// every byte readable. A compacted object whose file was dropped (ring) or
// whose capture was deleted meanwhile is deleted again.
//
// Thread-safe. The index is under one mutex held only for in-memory work;
// each held capture serializes its own object writes.
#ifndef AGGREGATOR_OBJECT_STORE_H_
#define AGGREGATOR_OBJECT_STORE_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "aggregator/capture_store.h"
#include "aggregator/node_ownership.h"
#include "aggregator/object_catalog.h"
#include "aggregator/object_layout.h"
#include "common/capture_registry.h"
#include "common/metrics/latency_histogram.h"
#include "common/s3/object_client.h"

namespace pc::aggregator {

struct ObjectStoreOptions {
  s3::ObjectClient* client = nullptr;  // outlives the store
  // Keys are "<prefix>/catalog/...", "<prefix>/data/..." ("" = none).
  std::string prefix;
  std::string replica_id;
  NodeOwnership* ownership = nullptr;  // outlives the store; required
  absl::Duration retention = absl::Hours(24);
  uint64_t max_bytes = 0;  // 0 = unlimited
  absl::Duration catalog_poll_interval = absl::Seconds(2);
  uint64_t max_file_bytes = 64 << 20;  // as the ingest service's
  std::function<absl::Time()> clock;   // absl::Now when empty
  // How often the byte and packet counts of held running captures reach
  // this replica's counts board (status changes and a stopped capture's
  // bytes go to the entry at once, new files to the board within a second
  // or this interval, whichever is shorter).
  absl::Duration catalog_write_interval = absl::Seconds(5);
  // A board no catalog entry took counts from (its replica is gone, or
  // holds nothing that runs) and unchanged for this long is deleted by
  // Maintain; a live replica whose board vanished writes it again.
  absl::Duration board_unused_for = absl::Hours(1);
  // Sealed files are compacted by a background thread; false: only by
  // CompactQueued() (tests).
  bool compact_in_background = true;
  // A sealed file is compacted only while its data objects average fewer
  // bytes than this (a slow capture's trickle): rewriting a file already in
  // a few large batches (e.g. 1 MB in ten 100 KiB objects) costs more
  // requests (a GET and a DELETE per object, one PUT) than reading it later
  // saves. 0: never compact.
  uint64_t compact_below_bytes = 64 << 10;
};

class ObjectStore final : public CaptureStore {
 public:
  // Lists the catalog once (publishing every capture to `registry`, which
  // must outlive the store), then keeps polling it.
  static absl::StatusOr<std::unique_ptr<ObjectStore>> Open(
      ObjectStoreOptions options, CaptureRegistry* registry);
  ~ObjectStore() override;

  absl::Status AcquireNode(const std::string& node,
                           const NodeReport& report) override;
  void ReleaseNode(const std::string& node) override;
  void SetOnNodeLost(
      std::function<void(const std::string& node)> on_lost) override;
  absl::Status PutStatus(const std::string& node,
                         const Capture& status) override;
  void MarkGone(const std::string& node, const std::set<std::string>& present,
                const std::string& reason) override;
  std::set<std::string> NodesWithCaptures() const override;
  std::vector<packetcapture::v1::ResumePoint> ResumePoints(
      const std::string& node) const override;
  BatchResult AppendBatch(
      const std::string& node,
      const std::vector<const packetcapture::v1::Chunk*>& chunks) override;
  std::vector<std::string> Maintain() override;
  absl::StatusOr<std::unique_ptr<PcapSource>> OpenReader(const std::string& id,
                                                         bool follow) override;
  StoreStats stats() const override;
  // How long data-object PUTs took.
  metrics::LatencyHistogram::Snapshot flush_latency() const override {
    return put_latency_.Take();
  }
  uint64_t max_bytes() const override { return options_.max_bytes; }
  // Stored pcap bytes of every capture, as listed.
  uint64_t total_bytes() const override;
  size_t open_files() const override { return 0; }

  // For tests: one catalog round now; writes the catalog entries whose
  // counts changed now (the flusher writes only those due: a file appeared,
  // or catalog_write_interval passed since the last write).
  absl::Status PollCatalog() { return catalog_->Refresh(); }
  void FlushCatalog() { FlushCatalog(/*due_only=*/false); }
  // Compacts the queued sealed files on the calling thread now; returns
  // how many compacted objects it wrote or kept.
  int CompactQueued();

 private:
  // A capture of a node this replica holds: this replica's truth of it.
  struct HeldCapture {
    std::string id;
    std::atomic<bool> fenced{false};  // the node was lost: write no more
    absl::Mutex mu;                   // serializes its object writes
    CatalogEntry entry ABSL_GUARDED_BY(mu);
    // The catalog entry's ETag as last written or read; empty: none yet.
    std::string etag ABSL_GUARDED_BY(mu);
    std::string written ABSL_GUARDED_BY(mu);  // Significant() last written
    // Counts (files, or status fields outside Significant) changed since
    // they last reached the store (the entry or this replica's board); each
    // such change also raises entry.counts_seq.
    bool dirty ABSL_GUARDED_BY(mu) = false;
    bool new_files ABSL_GUARDED_BY(mu) = false;  // a file appeared since
    bool deleted ABSL_GUARDED_BY(mu) = false;
    // Data objects per file as written or listed (compaction's trigger).
    std::map<FileKey, uint32_t> objects ABSL_GUARDED_BY(mu);
  };
  // A held capture with its node and the node's epoch.
  struct HeldRef {
    std::string node;
    int64_t epoch = 0;
    std::shared_ptr<HeldCapture> capture;
  };
  struct HeldNode {
    int refs = 0;
    int64_t epoch = 0;
    bool lost = false;
    std::map<std::string, std::shared_ptr<HeldCapture>> captures;
  };
  class Reader;

  ObjectStore(ObjectStoreOptions options, CaptureRegistry* registry);
  absl::Time Now() const;
  // The held capture `id` of `node` (nullptr if none) and the node's epoch;
  // Aborted if the node is not held (or was lost).
  absl::Status Held(const std::string& node, const std::string& id,
                    std::shared_ptr<HeldCapture>* capture, int64_t* epoch) const
      ABSL_LOCKS_EXCLUDED(mu_);
  void Publish(const HeldCapture& c) ABSL_EXCLUSIVE_LOCKS_REQUIRED(c.mu);
  // object_append.cc: stores `body` as data objects of capture `id`'s file
  // `key` from offset `start` (If-None-Match: *); the objects it took.
  absl::StatusOr<int> PutData(const std::string& id, const FileKey& key,
                              uint64_t start, absl::string_view body,
                              int64_t epoch);
  // Writes the capture's catalog entry (see the file comment for a 412).
  absl::Status WriteCatalog(const std::string& node, int64_t epoch,
                            HeldCapture* c)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(c->mu);
  void OnLost(const std::string& node);
  void RunFlusher();
  void FlushCatalog(bool due_only);
  // Takes the dirty counts of `held` into this replica's board and writes
  // it if it changed and is due (a file appeared, catalog_write_interval
  // passed since the last write, or !due_only); drops the captures whose
  // entries caught up or belong to another holder now.
  void WriteBoard(const std::vector<HeldRef>& held, bool due_only)
      ABSL_LOCKS_EXCLUDED(board_write_mu_, board_mu_);
  // Deletes the boards no entry took counts from (nor changed) for
  // board_unused_for: their replicas are gone.
  void DeleteUnusedBoards() ABSL_LOCKS_EXCLUDED(board_mu_);
  void OnCatalogChanged(const std::string& id, const CatalogRecord& record);
  void OnCatalogVanished(const std::string& id);

  // object_node.cc: the node's captures from a fresh catalog listing and
  // their data objects, each entry stamped with `epoch` (but those whose
  // entry is files_final, taken as written), in the same write that marks
  // it gone when `report` says the agent no longer has it.
  absl::StatusOr<std::map<std::string, std::shared_ptr<HeldCapture>>> LoadNode(
      const std::string& node, int64_t epoch, const NodeReport& report);
  // The files of a capture as its data objects show them, starting from
  // the catalog's summaries.
  absl::StatusOr<std::map<FileKey, FileSummary>> LoadFiles(
      const std::string& id, const std::map<FileKey, FileSummary>& known,
      std::map<FileKey, uint32_t>* objects);
  // Queues the capture's files with several objects for compaction: those
  // before `next` in download order; when `next` is null, every file if the
  // capture is stopped, else those before its last one.
  void QueueSealed(HeldCapture* c, const FileKey* next)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(c->mu);
  // Takes the next queued file to compact into `job`; false when the queue
  // is empty or, with `wait` (which waits for one), when stopping.
  bool TakeCompaction(bool wait, std::pair<std::string, FileKey>* job)
      ABSL_LOCKS_EXCLUDED(compact_mu_);
  void RunCompactor();
  // object_compaction.cc: compacts one queued file; the objects written.
  int CompactFile(const std::string& id, const FileKey& file);
  // Deletes every object under `prefix`.
  absl::Status DeleteObjects(const std::string& prefix);
  // Drops the oldest files beyond the capture's max_files.
  void MirrorRing(HeldCapture* c) ABSL_EXCLUSIVE_LOCKS_REQUIRED(c->mu);
  // The catalog path of MarkGone for a node this replica does not hold.
  void MarkGoneInCatalog(const std::string& node,
                         const std::set<std::string>& present,
                         const std::string& reason);
  absl::Status DeleteCapture(const std::string& id);

  const ObjectStoreOptions options_;
  CaptureRegistry* const registry_;
  const ObjectLayout layout_;
  std::unique_ptr<ObjectCatalog> catalog_;
  mutable metrics::LatencyHistogram put_latency_;

  mutable absl::Mutex mu_;
  std::map<std::string, HeldNode> nodes_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::string> held_ids_ ABSL_GUARDED_BY(mu_);  // -> node
  std::function<void(const std::string&)> on_lost_ ABSL_GUARDED_BY(mu_);
  // Stopped captures listed without a retention start: when first seen so.
  std::map<std::string, absl::Time> first_stopped_ ABSL_GUARDED_BY(mu_);
  bool over_budget_logged_ ABSL_GUARDED_BY(mu_) = false;
  StoreStats stats_ ABSL_GUARDED_BY(mu_);

  absl::Notification stop_;
  std::thread flusher_;

  // This replica's counts board (catalog/counts/<replica>.pb).
  // board_write_mu_ serializes its writes: callers that gathered while a
  // write ran share the next one (100 nodes released together are a few
  // PUTs, not 100). board_mu_ guards what is gathered, held only for memory
  // work; both come before any capture's mu.
  absl::Mutex board_write_mu_ ABSL_ACQUIRED_BEFORE(board_mu_);
  absl::Mutex board_mu_;
  CountsBoard board_ ABSL_GUARDED_BY(board_mu_);
  // The board changed since it was last written; a file appeared since.
  bool board_changed_ ABSL_GUARDED_BY(board_mu_) = false;
  bool board_new_files_ ABSL_GUARDED_BY(board_mu_) = false;
  // Gathers so far, and the last one a successful write covered.
  uint64_t board_gathers_ ABSL_GUARDED_BY(board_mu_) = 0;
  uint64_t board_written_upto_ ABSL_GUARDED_BY(board_mu_) = 0;
  // Captures gathered and not written yet, at the counts_seq gathered.
  std::vector<std::pair<std::shared_ptr<HeldCapture>, uint64_t>> board_taken_
      ABSL_GUARDED_BY(board_mu_);
  absl::Time board_written_at_ ABSL_GUARDED_BY(board_mu_) =
      absl::InfinitePast();
  // Other replicas' unused boards: the ETag seen and since when (this
  // replica's clock), so one is deleted only after it stayed unused and
  // unchanged for board_unused_for.
  std::map<std::string, std::pair<std::string, absl::Time>> unused_boards_
      ABSL_GUARDED_BY(board_mu_);

  absl::Mutex compact_mu_;
  // Sealed files to compact: (capture id, file).
  std::set<std::pair<std::string, FileKey>> compact_queue_
      ABSL_GUARDED_BY(compact_mu_);
  bool compact_stop_ ABSL_GUARDED_BY(compact_mu_) = false;
  std::thread compactor_;
};

}  // namespace pc::aggregator

#endif  // AGGREGATOR_OBJECT_STORE_H_
