// What the ingest service, CaptureService, the node monitor, metrics and
// maintenance need of the aggregator's store, whatever keeps the bytes:
// Store (one data directory, the default) or ObjectStore (an S3-compatible
// object store shared by several aggregator replicas).
//
// Errors, and what the ingest service does with them:
//  - InvalidArgument, FailedPrecondition, PermissionDenied, NotFound,
//    AlreadyExists, OutOfRange: this capture's message is refused
//    (CaptureRejected); the stream goes on.
//  - ResourceExhausted: store-wide (disk full, out of descriptors): the
//    stream ends and the agent backs off.
//  - Unavailable, Internal, DataLoss: the store (or the object store behind
//    it) failed; the stream ends and the agent backs off.
//  - Aborted: this replica no longer owns the node (its Lease was lost or
//    taken over): the stream ends and the agent reconnects, to the owner.
#ifndef AGGREGATOR_CAPTURE_STORE_H_
#define AGGREGATOR_CAPTURE_STORE_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "aggregator/append_result.h"
#include "common/capture_streams.h"
#include "common/metrics/latency_histogram.h"
#include "proto/packetcapture.pb.h"

namespace pc::aggregator {

// The payload of AcquireNode's FailedPrecondition naming the replica that
// owns the node ("host:port"); the ingest service sends it to the agent as
// the trailing metadata kRedirectMetadata.
inline constexpr char kRedirectPayload[] =
    "type.packetcapture.antrea.io/aggregator-redirect";
inline constexpr char kRedirectMetadata[] = "aggregator-redirect";

// What AppendBatch() did: one result per chunk handled, in order, and the
// error that stopped it (OK if every chunk was handled).
struct BatchResult {
  std::vector<AppendResult> results;
  absl::Status error;
};

// A batch written but not yet durable (CaptureStore::WriteBatch). Dropping
// it without Commit() abandons it: it and every later write to its file
// that is not committed yet fail (so nothing is stored past a gap the
// caller did not mean).
class PendingBatch {
 public:
  virtual ~PendingBatch() = default;
  // The error that stopped the write at one of its chunks (as
  // BatchResult::error), known before Commit(); the chunks before it were
  // written. OK if every chunk was.
  virtual const absl::Status& write_error() const = 0;
  // Returns once the written chunks are durable, with what AppendBatch()
  // would have returned. A failed flush clears the results and sets the
  // error. Once.
  virtual BatchResult Commit() = 0;
};

// PendingBatch for a batch already stored in full (or refused).
class DonePendingBatch final : public PendingBatch {
 public:
  explicit DonePendingBatch(BatchResult result) : result_(std::move(result)) {}
  const absl::Status& write_error() const override { return result_.error; }
  BatchResult Commit() override { return std::move(result_); }

 private:
  BatchResult result_;
};

// Counters since the store opened, for metrics.
struct StoreStats {
  uint64_t chunks = 0;  // chunks stored
  uint64_t bytes = 0;   // pcap bytes those chunks added
  // Captures deleted because the byte budget was exceeded, and because
  // their retention ended.
  uint64_t evicted_for_budget = 0;
  uint64_t expired = 0;
  // Object store: compacted objects written, and the data objects they
  // replaced (deleted).
  uint64_t compactions = 0;
  uint64_t objects_compacted = 0;
  // Object store: requests sent by operation (ObjectClient::RequestCounts).
  std::map<std::string, uint64_t> object_requests;
};

// Thread-safe.
class CaptureStore {
 public:
  using Capture = packetcapture::v1::Capture;
  virtual ~CaptureStore() = default;

  // What a node's agent reported when its stream began.
  struct NodeReport {
    // The captures it still has; its other captures are marked gone as
    // MarkGone(node, *present, gone_reason) does. Unset: not known yet (they
    // come in an Inventory), so nothing is marked gone.
    std::optional<std::set<std::string>> present;
    std::string gone_reason;
  };

  // A node's agent stream was accepted: take ownership of the node's
  // captures before its resume points are read, and apply the agent's
  // report. (ObjectStore stamps each capture it takes in the same write that
  // marks it gone.) A store with one writer (Store) always succeeds. Calls
  // nest: each needs a ReleaseNode. A FailedPrecondition with
  // kRedirectPayload names the replica that owns the node; Unavailable when
  // ownership cannot be decided now.
  virtual absl::Status AcquireNode(const std::string& node,
                                   const NodeReport& report) = 0;
  // The stream of an AcquireNode() ended.
  virtual void ReleaseNode(const std::string& node) = 0;
  // Told (from any thread) when ownership of a node is lost while a stream
  // holds it, so that stream ends. Set once, before streams come.
  virtual void SetOnNodeLost(
      std::function<void(const std::string& node)> on_lost) = 0;

  // Upserts the status `node` reports for a capture; returns once it is
  // durable. InvalidArgument for an invalid id or an oversized status (the
  // capture keeps its previous status); PermissionDenied if the status names
  // another node or the capture belongs to another node.
  virtual absl::Status PutStatus(const std::string& node,
                                 const Capture& status) = 0;

  // `node` reports exactly `present`: its other captures are no longer on
  // the node (on_node false; running ones become STOPPED with `reason` as
  // their message), and their retention starts now.
  virtual void MarkGone(const std::string& node,
                        const std::set<std::string>& present,
                        const std::string& reason) = 0;

  // Nodes with a capture still on the node (on_node).
  virtual std::set<std::string> NodesWithCaptures() const = 0;

  // Every (capture, file, generation) of `node` with its stored length.
  virtual std::vector<packetcapture::v1::ResumePoint> ResumePoints(
      const std::string& node) const = 0;

  // Checks and durably stores consecutive chunks of one (capture, file,
  // generation); stops at the first chunk it must refuse (the chunks
  // before it are stored and have results). A chunk partly stored already
  // adds the part past the stored end.
  virtual BatchResult AppendBatch(
      const std::string& node,
      const std::vector<const packetcapture::v1::Chunk*>& chunks) = 0;

  // AppendBatch() in two steps, so a stream can check and write its next
  // batch while this one is flushed: writes the batch (checks included) and
  // returns before it is durable; PendingBatch::Commit() waits for that.
  // Pending batches of one stream must be committed in the order they were
  // written; acknowledge only what Commit() returned. The chunks must stay
  // alive until then, and the store must outlive the pending batch. The
  // default stores the whole batch at once.
  virtual std::unique_ptr<PendingBatch> WriteBatch(
      const std::string& node,
      const std::vector<const packetcapture::v1::Chunk*>& chunks) {
    return std::make_unique<DonePendingBatch>(AppendBatch(node, chunks));
  }

  // Applies retention and the byte budget; returns the captures deleted.
  virtual std::vector<std::string> Maintain() = 0;

  // Download of one capture: the first file's global header, then the
  // records of each stored file in capture order. With follow, waits for
  // more while the capture runs. NotFound for an unknown id. The reader must
  // not outlive the store.
  virtual absl::StatusOr<std::unique_ptr<PcapSource>> OpenReader(
      const std::string& id, bool follow) = 0;

  virtual StoreStats stats() const = 0;
  // How long appends waited for their bytes to become durable.
  virtual metrics::LatencyHistogram::Snapshot flush_latency() const = 0;
  // The byte budget (0: none) and the stored pcap bytes.
  virtual uint64_t max_bytes() const = 0;
  virtual uint64_t total_bytes() const = 0;
  // Stored files whose descriptors are open now (0 where there are none).
  virtual size_t open_files() const = 0;
};

}  // namespace pc::aggregator

#endif  // AGGREGATOR_CAPTURE_STORE_H_
