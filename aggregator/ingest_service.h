// packetcapture.v1.IngestService: agents report capture status and upload
// pcap chunks over one bidi stream each. Hello first (token checked by the
// Authenticator, node bound to the token), then Welcome with resume points
// (more in ResumeBatch messages when they do not fit one); status upserts;
// chunks are checked (size, offset, CRC32C, whole records), stored durably
// and acknowledged; an Inventory (after a hello with inventory_pending)
// says which captures are still on the node.
//
// What a peer can cost before it authenticates: streams are admitted only
// while fewer than max_unauthenticated_streams (and per peer address
// max_unauthenticated_per_peer) await their hello's check, more are refused
// with RESOURCE_EXHAUSTED; one message is read from each (at most gRPC's
// receive limit, see ConfigureIngestServer), tokens over max_token_bytes are
// refused unreviewed, and a stream without a valid hello after
// hello_timeout is ended with DEADLINE_EXCEEDED.
//
// One active stream per node: a newly accepted hello replaces the node's old
// stream, which stores its in-flight batch and then ends with ABORTED; the
// new one is welcomed after that.
//
// A status or chunk refused for a reason of its own capture gets a
// CaptureRejected and the stream goes on (later chunks of that capture on
// this stream are ignored, unacknowledged); errors of the store as a whole
// (disk full, I/O) end the stream with an IngestError.
//
// Callback API: reactions only queue; each stream's messages are handled in
// order on a Strand of a small worker pool (token reviews and fdatasync block
// there, never in a reaction). One read and one write outstanding per stream;
// reading pauses while too many bytes of input are queued or too many replies
// wait for a peer that does not read, so a misbehaving agent cannot grow the
// aggregator's memory. Thread-safe. Destroy it only after the gRPC server
// serving it has shut down.
#ifndef AGGREGATOR_INGEST_SERVICE_H_
#define AGGREGATOR_INGEST_SERVICE_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "aggregator/admission.h"
#include "aggregator/authenticator.h"
#include "aggregator/capture_store.h"
#include "aggregator/work_queue.h"
#include "grpcpp/server_builder.h"
#include "proto/packetcapture.grpc.pb.h"

namespace pc::aggregator {

// HTTP/2 keepalive of the ingest server, so that a stream whose agent is
// gone (node powered off, network cut) ends within time + timeout instead of
// when TCP gives up, hours later.
struct KeepaliveOptions {
  // The server pings a connection after this long without activity...
  absl::Duration time = absl::Seconds(30);
  // ...and closes it when the answer does not come within this.
  absl::Duration timeout = absl::Seconds(10);
  // Agents' own pings are accepted this often, also on idle streams (agents
  // ping every 10 s); more often is answered with GOAWAY "too_many_pings".
  absl::Duration min_agent_ping_interval = absl::Seconds(5);
};

struct IngestOptions {
  uint64_t max_inflight_bytes = uint64_t{4} << 20;
  uint32_t max_chunk_bytes = uint32_t{1} << 20;
  // A stream must send an acceptable hello within this.
  absl::Duration hello_timeout = absl::Seconds(10);
  // Streams waiting for their hello to be accepted, in total and per peer
  // address; more are refused at once with RESOURCE_EXHAUSTED.
  int max_unauthenticated_streams = 32;
  int max_unauthenticated_per_peer = 8;
  // Longer tokens are refused without a review.
  size_t max_token_bytes = 8192;
  // Larger statuses are refused (CaptureRejected).
  size_t max_status_bytes = 64 << 10;
  // No chunk may end beyond this offset of its file (ring files are about
  // 1 MB; this bounds offsets and gaps, and offset + size cannot overflow).
  uint64_t max_file_bytes = uint64_t{64} << 20;
  // Replies waiting for a peer that does not read them: reading from it
  // pauses beyond this many bytes.
  size_t max_outgoing_bytes = 1 << 20;
  // Resume points per Welcome / ResumeBatch message (the agent accepts
  // messages of up to 8 MiB).
  size_t resume_page_bytes = 1 << 20;
  // Captures one stream may have refused; beyond, the stream ends.
  size_t max_rejected_captures = 1024;
  KeepaliveOptions keepalive;
  // Streams' strands run here and block in their flushes; a flush round
  // (SyncGroup) can only gather as many streams as are waiting at once, so
  // there are more threads than cores.
  int worker_threads = 16;
  // Sent in Welcome; random per process when empty.
  std::string instance;
  // Asked of agents in Welcome (batch_bytes, batch_delay_ms): hold back a
  // growing file's new bytes until this many are there or the oldest waited
  // this long. Off (0) by default; an object store asks for it so a slow
  // capture is not one object per agent poll.
  uint32_t agent_batch_bytes = 0;
  absl::Duration agent_batch_delay = absl::ZeroDuration();
  // Told when a node's agent stream is accepted and when it ends (optional;
  // the NodeMonitor).
  std::function<void(const std::string& node)> on_agent_connected;
  std::function<void(const std::string& node)> on_agent_disconnected;
};

// The largest message the ingest server accepts: a chunk of max_chunk_bytes
// (or a status of max_status_bytes) with 64 KiB for its other fields, a
// hello's or inventory's capture list. gRPC reads a message whole before the
// service sees it, so this is also what a stranger's hello can cost.
int IngestMaxReceiveMessageBytes(const IngestOptions& options);

// Applies the receive limit and keepalive settings to the server's builder
// (all services on that server share them).
void ConfigureIngestServer(const IngestOptions& options,
                           grpc::ServerBuilder* builder);

class IngestServiceImpl final
    : public packetcapture::v1::IngestService::CallbackService {
 public:
  IngestServiceImpl(CaptureStore* store, Authenticator* authenticator,
                    IngestOptions options);
  // Waits until every stream object is gone (the server must be shut down).
  ~IngestServiceImpl() override;

  grpc::ServerBidiReactor<packetcapture::v1::AgentMessage,
                          packetcapture::v1::AggregatorMessage>*
  Report(grpc::CallbackServerContext* context) override;

  // Ends the node's accepted stream, if any, with `why` (e.g. Aborted when
  // this replica lost the node).
  void EndStreamOf(const std::string& node, const absl::Status& why);

  // Streams currently open (for tests and logs).
  int active_streams() const { return active_streams_.load(); }
  // Streams admitted and not authenticated yet.
  int unauthenticated_streams() const { return admission_.total(); }

 private:
  class Stream;

  // Rejections of strangers are logged at most once a second; returns
  // whether to log now and how many were not logged since.
  bool ShouldLogStranger(uint64_t* suppressed);

  CaptureStore* store_;
  Authenticator* authenticator_;
  const IngestOptions options_;
  std::string instance_;
  AdmissionControl admission_;
  std::atomic<int> active_streams_{0};

  absl::Mutex mu_;
  // The accepted stream of each node; each holds a reference.
  std::map<std::string, Stream*> by_node_ ABSL_GUARDED_BY(mu_);
  int live_streams_ ABSL_GUARDED_BY(mu_) = 0;  // Stream objects not deleted
  absl::Time stranger_logged_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  uint64_t strangers_unlogged_ ABSL_GUARDED_BY(mu_) = 0;

  // Node acquisitions (CaptureStore::AcquireNode), which may wait out a
  // silent Lease holder for seconds: a thread each, up to this many at once.
  ElasticPool acquirer_{256};
  // Last: destroyed first, running the tasks still queued.
  ThreadPool pool_;
};

}  // namespace pc::aggregator

#endif  // AGGREGATOR_INGEST_SERVICE_H_
