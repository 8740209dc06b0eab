// packetcapture.v1.IngestService: agents report capture status and upload
// pcap chunks over one bidi stream each. Hello first (token checked by the
// Authenticator), then Welcome with resume points; status upserts; chunks are
// checked (CRC32C, whole records, offsets), stored durably and acknowledged.
//
// Callback API: reactions only queue; each stream's messages are handled in
// order on a Strand of a small worker pool (token reviews and fdatasync block
// there, never in a reaction). One read and one write outstanding per stream;
// reading pauses when too many bytes are queued, so a misbehaving agent cannot
// grow the aggregator's memory. Thread-safe.
#ifndef AGGREGATOR_INGEST_SERVICE_H_
#define AGGREGATOR_INGEST_SERVICE_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "aggregator/authenticator.h"
#include "aggregator/store.h"
#include "aggregator/work_queue.h"
#include "proto/packetcapture.grpc.pb.h"

namespace pc::aggregator {

struct IngestOptions {
  uint64_t max_inflight_bytes = uint64_t{4} << 20;
  uint32_t max_chunk_bytes = uint32_t{1} << 20;
  // Streams' strands run here and block in their flushes; a flush round
  // (SyncGroup) can only gather as many streams as are waiting at once, so
  // there are more threads than cores.
  int worker_threads = 16;
  // Sent in Welcome; random per process when empty.
  std::string instance;
  // Told when a node's agent stream is accepted and when it ends (optional;
  // the NodeMonitor).
  std::function<void(const std::string& node)> on_agent_connected;
  std::function<void(const std::string& node)> on_agent_disconnected;
};

class IngestServiceImpl final
    : public packetcapture::v1::IngestService::CallbackService {
 public:
  IngestServiceImpl(Store* store, Authenticator* authenticator,
                    IngestOptions options);
  ~IngestServiceImpl() override;

  grpc::ServerBidiReactor<packetcapture::v1::AgentMessage,
                          packetcapture::v1::AggregatorMessage>*
  Report(grpc::CallbackServerContext* context) override;

  // Streams currently open (for tests and logs).
  int active_streams() const { return active_streams_.load(); }

 private:
  class Stream;

  Store* store_;
  Authenticator* authenticator_;
  const IngestOptions options_;
  std::string instance_;
  ThreadPool pool_;
  std::atomic<int> active_streams_{0};
};

}  // namespace pc::aggregator

#endif  // AGGREGATOR_INGEST_SERVICE_H_
