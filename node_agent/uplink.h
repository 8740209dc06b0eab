// The agent's uplink to the aggregator: one IngestService.Report stream that
// carries every capture status change and the pcap bytes tcpdump writes, as
// chunks of complete records, each acknowledged once the aggregator stored it
// durably. The local ring is the only buffer: files are read at the acked or
// sent offset, in chunks, never whole; unacknowledged bytes are bounded by the
// aggregator's max_inflight_bytes, so a slow or absent aggregator costs the
// agent neither memory nor tcpdump's speed — only, if the ring wraps first,
// data, which is counted in bytes_lost and reported in the capture's status.
//
// It works only from the agent's CaptureRegistry (statuses, including each
// file's name) and the files under <capture_dir>/<id>/<file name>.
//
// A file generation is identified by the timestamp of its first record (ns
// since the epoch): tcpdump writes a new first record whenever it reuses a
// ring slot, and the value is the same for every agent process, so resume
// points stay valid across agent restarts.
//
// Threads: the uplink runs on its own thread (blocking file reads and gRPC
// writes happen there, never on the agent's control loop) plus one reader
// thread per connection for acks; it uses gRPC's sync client, which costs
// those two threads for the agent's single stream. Start/Stop from any
// thread; the registry callback only records and wakes the uplink thread.
//
// Stopping a capture deletes its node files at once (seed semantics). The
// uplink keeps every file it uploads open, so when a capture leaves the
// registry it goes on reading the deleted files through those descriptors
// and uploads what tcpdump wrote last ("drain"), for at most drain_timeout;
// only what is still unacknowledged then counts as lost. The disk space of
// a deleted file returns when its descriptor closes.
#ifndef NODE_AGENT_UPLINK_H_
#define NODE_AGENT_UPLINK_H_

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <tuple>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/capture_registry.h"
#include "common/pcap/pcap_format.h"
#include "grpcpp/grpcpp.h"
#include "proto/packetcapture.grpc.pb.h"

namespace pc::agent {

struct UplinkOptions {
  std::string node;
  std::string aggregator;  // host:port
  // Projected ServiceAccount token for the aggregator's audience; re-read at
  // every connection (kubelet rotates it).
  std::string token_file;
  std::string capture_dir;
  std::string agent_version = "capture-agent";
  // How often files are checked for new records when nothing else happens.
  absl::Duration poll_interval = absl::Milliseconds(200);
  absl::Duration initial_backoff = absl::Milliseconds(800);
  absl::Duration max_backoff = absl::Seconds(30);
  absl::Duration welcome_timeout = absl::Seconds(15);
  // Upper bound on a chunk, whatever the aggregator allows.
  uint32_t max_chunk_bytes = uint32_t{1} << 20;
  // How long a stopped capture's last bytes may take to reach the aggregator.
  absl::Duration drain_timeout = absl::Seconds(10);
};

class Uplink {
 public:
  struct Stats {
    uint64_t connects = 0;  // welcomes received
    uint64_t chunks_sent = 0;
    uint64_t bytes_sent = 0;
    uint64_t bytes_acked = 0;
    uint64_t bytes_lost = 0;
    uint64_t captures_drained = 0;  // stopped captures fully uploaded
    uint64_t max_inflight = 0;      // highest unacknowledged byte count seen
    uint64_t inflight_limit = 0;    // from the last welcome
    std::string last_error;
  };

  Uplink(UplinkOptions options, CaptureRegistry* registry);
  ~Uplink();

  void Start();
  void Stop();
  Stats stats() const;

 private:
  // An open file descriptor, closed with its owner.
  class HeldFd {
   public:
    HeldFd() = default;
    HeldFd(HeldFd&& other) noexcept : fd_(other.release()) {}
    HeldFd& operator=(HeldFd&& other) noexcept;
    ~HeldFd();
    int get() const { return fd_; }
    void reset(int fd);
    int release();

   private:
    int fd_ = -1;
  };
  // One file of one capture as the uplink tracks it.
  struct FileState {
    std::string path;
    HeldFd fd;                // open since the file was first seen; see above
    bool unlinked = false;    // the agent deleted it (st_nlink == 0)
    bool idle = false;        // the last pump found nothing it could send
    uint64_t generation = 0;  // first record's timestamp; 0 = not known yet
    pcap::GlobalHeader header;
    uint64_t sent = 0;   // next offset to send
    uint64_t acked = 0;  // durable at the aggregator
    uint64_t seen = 0;   // complete-record bytes seen in this generation
  };
  struct CaptureState {
    packetcapture::v1::Capture status;       // latest from the registry
    std::map<std::string, FileState> files;  // by file name
    uint64_t uploaded_before = 0;            // acked bytes of generations gone
    uint64_t lost = 0;
    bool status_dirty = true;
    // Set when the capture left the registry: upload the rest until then.
    absl::Time drain_until = absl::InfiniteFuture();
    bool draining() const { return drain_until != absl::InfiniteFuture(); }
    absl::Time status_sent = absl::InfinitePast();
    uint64_t reported_uploaded = 0, reported_lost = 0;
  };
  struct Connection;

  void Run();
  // Connects, says hello, waits for the welcome. Null on failure.
  std::unique_ptr<Connection> Connect();
  // Streams until the connection fails or Stop(); returns why.
  absl::Status Serve(Connection* conn);
  void TakeRegistryChanges();
  // Ends the drains that are complete or out of time: the capture's last
  // status (STOPPED, files gone) replaces it.
  void FinishDrains(absl::Time now);
  void Retire(CaptureState* capture, const FileState& file);
  void HandleAck(const packetcapture::v1::Ack& ack);
  // Checks a file for reuse and new data; sends at most one chunk.
  absl::StatusOr<bool> PumpFile(Connection* conn, const std::string& id,
                                CaptureState* capture, const std::string& name,
                                FileState* file);
  absl::Status SendStatuses(Connection* conn, bool force);
  bool WaitForWork(absl::Duration timeout);
  uint64_t Inflight() const;

  const UplinkOptions options_;
  CaptureRegistry* registry_;
  int subscription_ = 0;
  std::thread thread_;

  // Shared with the registry callback, the reader thread and Stop().
  mutable absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool wake_ ABSL_GUARDED_BY(mu_) = false;
  std::map<std::string, packetcapture::v1::Capture> changed_
      ABSL_GUARDED_BY(mu_);
  std::set<std::string> deleted_ ABSL_GUARDED_BY(mu_);
  std::deque<packetcapture::v1::AggregatorMessage> inbox_ ABSL_GUARDED_BY(mu_);
  grpc::ClientContext* live_context_ ABSL_GUARDED_BY(mu_) = nullptr;
  bool reader_done_ ABSL_GUARDED_BY(mu_) = false;  // current connection's
  Stats stats_ ABSL_GUARDED_BY(mu_);

  // Uplink thread only.
  std::map<std::string, CaptureState> captures_;
  std::map<std::string, packetcapture::v1::Capture> tombstones_;
  std::map<std::tuple<std::string, std::string, uint64_t>, uint64_t> resume_;
  absl::Status connect_error_;  // why the last Connect() failed
  uint64_t inflight_limit_ = 0;
  uint32_t chunk_limit_ = 0;
};

}  // namespace pc::agent

#endif  // NODE_AGENT_UPLINK_H_
