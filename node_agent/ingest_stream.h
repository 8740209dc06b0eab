// One IngestService.Report stream from the agent to the aggregator, up to
// and after the welcome: its own channel and TCP connection (never one that
// a previous stream left half-open) with gRPC keepalive, a reader thread
// that queues what the aggregator sends, and an ack deadline: while bytes
// are in flight, no acknowledgement for ack_timeout cancels the stream. A
// partition or a frozen aggregator is so noticed in seconds instead of
// TCP's ~15 minutes. Open() returns once the welcome and every resume batch
// announced by it have arrived, so nothing is sent before the agent knows
// where each file resumes.
//
// Writes never block the owner: they queue for a writer thread (the owner
// bounds what it queues by the aggregator's in-flight window), so a frozen
// aggregator does not stall the agent's counting of what the ring loses.
//
// Thread-safe: the owner (the uplink thread) writes and takes messages;
// Cancel() may come from any thread; the reader, the writer and the deadline
// run on threads of their own, which Finish() (or the destructor) joins.
#ifndef NODE_AGENT_INGEST_STREAM_H_
#define NODE_AGENT_INGEST_STREAM_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "proto/packetcapture.grpc.pb.h"

namespace pc::agent {

// Trailing metadata by which a replica that does not hold the node's Lease
// names the one that does (with FAILED_PRECONDITION).
inline constexpr char kRedirectMetadata[] = "aggregator-redirect";

// The aggregator-redirect value (unvalidated, at most 512 bytes) a failed
// IngestStream::Open() carried; "" for none.
std::string RedirectOf(const absl::Status& status);

struct IngestStreamOptions {
  std::string aggregator;  // host:port
  // Bounds the TCP + HTTP/2 connection, and then the welcome (each resume
  // batch gets as long again).
  absl::Duration connect_timeout = absl::Seconds(15);
  // Keepalive pings (also without calls). gRPC sends at most two pings after
  // the agent's last data frame, which keeps it within the default policy of
  // servers (pings closer than 5 minutes apart without data are "too many").
  absl::Duration keepalive_time = absl::Seconds(10);
  absl::Duration keepalive_timeout = absl::Seconds(5);
  absl::Duration ack_timeout = absl::Seconds(15);
  // Every message stays far below this; resume points come in batches.
  int max_receive_bytes = 8 << 20;
};

class IngestStream {
 public:
  using AgentMessage = packetcapture::v1::AgentMessage;
  using AggregatorMessage = packetcapture::v1::AggregatorMessage;

  struct Welcome {
    packetcapture::v1::Welcome welcome;
    // From the welcome and every ResumeBatch.
    std::vector<packetcapture::v1::ResumePoint> resume;
  };

  // Connects, sends `hello`, waits for the welcome and its resume batches.
  // `wake` runs (on the reader thread, no lock held) whenever a message is
  // queued or the stream ends. `waiting` runs on the caller's thread about
  // every 200 ms while Open() waits; returning false gives up (CANCELLED).
  static absl::StatusOr<std::unique_ptr<IngestStream>> Open(
      const IngestStreamOptions& options, const AgentMessage& hello,
      std::function<void()> wake, const std::function<bool()>& waiting,
      Welcome* welcome);
  ~IngestStream();
  IngestStream(const IngestStream&) = delete;
  IngestStream& operator=(const IngestStream&) = delete;

  // Queues a message; false once the stream is broken (nothing queued).
  bool Write(AgentMessage message);
  // Messages queued since the last call, in order.
  std::deque<AggregatorMessage> Take();
  // The stream ended (the aggregator closed it, it broke, or was cancelled);
  // why() says why when it is known here (the ack deadline, a peer that
  // stopped reading).
  bool done() const;
  absl::Status why() const;
  // Unacknowledged bytes now. The ack clock starts when they leave 0 and
  // restarts with every acknowledgement.
  void SetInflight(uint64_t bytes);
  // Ends the stream: Read and Write return at once.
  void Cancel();
  // The final gRPC status (after done()); cancels first if needed.
  grpc::Status Finish();
  // After Finish(): the aggregator-redirect trailing metadata of a stream
  // that ended with FAILED_PRECONDITION (unvalidated, at most 512 bytes), or
  // "".
  std::string Redirect() const;

 private:
  IngestStream(IngestStreamOptions options, std::function<void()> wake);
  void ReadLoop();
  void WriteLoop();
  void Deadline();

  const IngestStreamOptions options_;
  const std::function<void()> wake_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<packetcapture::v1::IngestService::Stub> stub_;
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReaderWriter<AgentMessage, AggregatorMessage>>
      stream_;
  std::thread reader_, writer_, deadline_;
  bool finished_ = false;  // owner thread only
  grpc::Status final_;

  mutable absl::Mutex mu_;
  std::deque<AggregatorMessage> inbox_ ABSL_GUARDED_BY(mu_);
  bool reader_done_ ABSL_GUARDED_BY(mu_) = false;
  bool closing_ ABSL_GUARDED_BY(mu_) = false;  // ends Deadline(), WriteLoop()
  std::deque<AgentMessage> outbox_ ABSL_GUARDED_BY(mu_);
  bool broken_ ABSL_GUARDED_BY(mu_) = false;  // a write failed
  uint64_t inflight_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time ack_clock_ ABSL_GUARDED_BY(mu_);
  absl::Status why_ ABSL_GUARDED_BY(mu_);
};

}  // namespace pc::agent

#endif  // NODE_AGENT_INGEST_STREAM_H_
