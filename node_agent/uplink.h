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
// Inventory: until MarkInventorySynced() (the agent reconciled its first full
// list of its node's Pods), the hello says inventory_pending with the
// captures found so far (in the registry and on disk), so a restarted agent
// makes the aggregator mark nothing gone; once synced, one Inventory with the
// full list follows on that connection, and later hellos carry the full list.
//
// A file generation is identified by the timestamp of its first record (ns
// since the epoch): tcpdump writes a new first record whenever it reuses a
// ring slot, and the value is the same for every agent process, so resume
// points stay valid across agent restarts. Before bytes go out they are
// checked to still belong to that generation (the header and first record
// read again after the data), so a reused slot is never sent under its old
// generation.
//
// Gaps are counted, not sampled: a RingWatch (inotify) counts every reuse of
// every ring slot however fast the ring turns, and a SlotLedger per file
// turns those counts and the acknowledgements into bytes_lost (see
// slot_ledger.h for what a generation that was never seen counts). The
// uplink owns the number: it goes to the aggregator in the capture's status
// and, through a StatusView, into the agent's own CaptureService view. What
// belongs to generations no longer on disk (bytes lost, bytes uploaded) is
// kept in <capture_dir>/<id>/uplink-counters, so an agent restart does not
// start a capture's counters from zero.
//
// Connections: see ingest_stream.h (keepalive, ack deadline, resume batches).
// A CaptureRejected stops that capture's uploads and statuses on the current
// connection (logged once); the node's other captures go on, and the next
// connection tries it again.
//
// Threads: the uplink runs on its own thread (file reads happen there, never
// on the agent's control loop); the stream adds a reader, a writer and a
// deadline thread per connection (so a peer that stops reading never blocks
// the uplink's counting), the RingWatch one thread.
// Start/Stop/MarkInventorySynced from any thread; the registry callback only
// records and wakes the uplink thread.
//
// Stopping a capture deletes its node files at once (seed semantics). The
// uplink keeps every file it uploads open, so when a capture leaves the
// registry it goes on reading the deleted files through those descriptors
// and uploads what tcpdump wrote last ("drain"), for at most drain_timeout;
// only what is still unacknowledged then counts as lost. The disk space of
// a deleted file returns when its descriptor closes.
#ifndef NODE_AGENT_UPLINK_H_
#define NODE_AGENT_UPLINK_H_

#include <cstdint>
#include <functional>
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
#include "node_agent/aggregator_targets.h"
#include "node_agent/ingest_stream.h"
#include "node_agent/ring_watch.h"
#include "node_agent/slot_ledger.h"
#include "node_agent/status_view.h"
#include "proto/packetcapture.pb.h"

namespace pc::agent {

struct UplinkOptions {
  std::string node;
  // host:port, or several replicas' host:port,host:port,... tried in turn
  // (see aggregator_targets.h: rotation on failure, one redirect followed).
  std::string aggregator;
  // Projected ServiceAccount token for the aggregator's audience; re-read at
  // every connection (kubelet rotates it).
  std::string token_file;
  std::string capture_dir;
  std::string agent_version = "capture-agent";
  // How often files are checked for new records when nothing else happens.
  absl::Duration poll_interval = absl::Milliseconds(200);
  absl::Duration initial_backoff = absl::Milliseconds(800);
  absl::Duration max_backoff = absl::Seconds(30);
  // Bounds the connection, then the welcome (and each resume batch).
  absl::Duration welcome_timeout = absl::Seconds(15);
  // Bytes in flight and no acknowledgement for this long: the stream is
  // abandoned and the uplink reconnects with backoff.
  absl::Duration ack_timeout = absl::Seconds(15);
  absl::Duration keepalive_time = absl::Seconds(10);
  absl::Duration keepalive_timeout = absl::Seconds(5);
  // Upper bound on a chunk, whatever the aggregator allows.
  uint32_t max_chunk_bytes = uint32_t{1} << 20;
  // Upper bound on the batching delay an aggregator may ask for
  // (Welcome.batch_delay_ms).
  absl::Duration max_batch_delay = absl::Seconds(10);
  // How long a stopped capture's last bytes may take to reach the aggregator.
  absl::Duration drain_timeout = absl::Seconds(10);
  // tcpdump's -C size: a generation the ring overwrote held more than this.
  uint64_t ring_file_bytes = 1000000;
  // Test hook: runs after a file's generation was read, before its data is.
  std::function<void(const std::string& path)> before_data_read;
};

class Uplink {
 public:
  struct Stats {
    uint64_t connects = 0;     // welcomes received
    uint64_t disconnects = 0;  // welcomed connections that ended
    uint64_t redirects = 0;    // aggregator-redirects followed
    uint64_t chunks_sent = 0;
    uint64_t bytes_sent = 0;
    uint64_t bytes_acked = 0;
    uint64_t bytes_lost = 0;        // over every capture, gone ones too
    uint64_t generations_lost = 0;  // overwritten before any read saw them
    uint64_t captures_drained = 0;  // stopped captures fully uploaded
    uint64_t captures_rejected = 0;
    uint64_t ack_timeouts = 0;
    uint64_t ring_overflows = 0;  // inotify events lost
    uint64_t max_inflight = 0;    // highest unacknowledged byte count seen
    // Bytes in the captures' files not acknowledged yet (sent or not): how
    // far the aggregator's copy is behind the node's.
    uint64_t lag_bytes = 0;
    uint64_t inflight_limit = 0;  // from the last welcome
    std::string last_error;
  };

  // With `served`, the uplink keeps it equal to `registry` plus its counters
  // (the agent's CaptureService view); nothing else may write it.
  Uplink(UplinkOptions options, CaptureRegistry* registry,
         CaptureRegistry* served = nullptr);
  ~Uplink();

  void Start();
  void Stop();
  // The agent reconciled its first full list of the node's Pods: the
  // registry now holds every capture it has.
  void MarkInventorySynced();
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
    explicit FileState(uint64_t rotate_bytes) : ledger(rotate_bytes) {}
    std::string path;
    HeldFd fd;                 // open since the file was first seen; see above
    bool unlinked = false;     // the agent deleted it (st_nlink == 0)
    bool idle = false;         // the last pump found nothing it could send
    bool read_any = false;     // a generation was ever read
    bool open_failed = false;  // logged once
    uint64_t listed_size = 0;  // from the capture's status
    // Since when bytes past `sent` wait for their batch (see batch_bytes_).
    absl::Time held_since = absl::InfiniteFuture();
    uint64_t generation = 0;  // first record's timestamp; 0 = not known yet
    pcap::GlobalHeader header;
    SlotLedger ledger;
  };
  struct CaptureState {
    packetcapture::v1::Capture status;       // latest from the registry
    std::map<std::string, FileState> files;  // by file name
    // Of files no longer listed (pruned).
    uint64_t retired_uploaded = 0, retired_lost = 0, retired_unseen = 0;
    // From earlier agent processes (uplink-counters), and as last saved.
    uint64_t prior_lost = 0, prior_uploaded = 0;
    uint64_t saved_lost = 0, saved_uploaded = 0;
    absl::Time saved_at = absl::InfinitePast();
    std::set<std::string> retired;
    bool status_dirty = true;
    bool rejected = false;     // by the aggregator, on this connection
    bool lower_bound = false;  // some reuses may have gone uncounted
    // Set when the capture left the registry: upload the rest until then.
    absl::Time drain_until = absl::InfiniteFuture();
    bool draining() const { return drain_until != absl::InfiniteFuture(); }
    absl::Time status_sent = absl::InfinitePast();
    uint64_t reported_uploaded = 0, reported_lost = 0;
    absl::Time view_sent = absl::InfinitePast();
    StatusView::Counters view;  // last given to the StatusView
    uint64_t lost() const;
    uint64_t uploaded() const;
    // Acknowledged bytes of generations no longer on disk.
    uint64_t uploaded_gone() const;
  };

  void Run();
  // Connects, says hello, waits for the welcome. Null on failure.
  std::unique_ptr<IngestStream> Connect();
  // Streams until the connection fails or Stop(); returns why.
  absl::Status Serve(IngestStream* stream);
  // What goes on whether connected or not: registry changes, ring reuses,
  // the served view.
  void Housekeep();
  void TakeRegistryChanges();
  // Counts the ring reuses of every file into its ledger.
  void SettleAll();
  void PublishView();
  // Loads / saves a capture's uplink-counters (see above).
  void LoadCounters(const std::string& id, CaptureState* capture);
  void SaveCounters(const std::string& id, CaptureState* capture);
  // Ends the drains that are complete or out of time: the capture's last
  // status (STOPPED, files gone) replaces it.
  void FinishDrains(absl::Time now);
  void Retire(const std::string& id, CaptureState* capture,
              const std::string& name, FileState* file);
  void HandleAck(const packetcapture::v1::Ack& ack);
  void HandleRejection(const packetcapture::v1::CaptureRejected& rejected);
  // The ring watch's reuse count of a file, after reading queued events.
  uint64_t Reuses(const std::string& id, const std::string& name);
  // Checks a file for reuse and new data; sends at most one chunk.
  // `may_hold`: the file may still grow (the newest of a running capture),
  // so its new bytes may wait for their batch (Welcome.batch_bytes).
  absl::StatusOr<bool> PumpFile(IngestStream* stream, const std::string& id,
                                CaptureState* capture, const std::string& name,
                                FileState* file, bool may_hold);
  // True while `file`'s `unsent` new bytes should wait for more (the
  // aggregator's batching); starts the wait's clock.
  bool HoldBack(FileState* file, uint64_t unsent, absl::Time now);
  absl::Status SendStatuses(IngestStream* stream, bool force);
  // Every capture the agent has (registry and draining), plus, before the
  // first sync, the capture directories on disk.
  std::set<std::string> CaptureIds(bool with_disk);
  bool WaitForWork(absl::Duration timeout);
  bool stopping() const;
  uint64_t Inflight() const;

  const UplinkOptions options_;
  CaptureRegistry* registry_;
  std::unique_ptr<StatusView> view_;
  std::unique_ptr<RingWatch> ring_;
  int subscription_ = 0;
  std::thread thread_;

  // Shared with the registry callback, the stream's threads and Stop().
  mutable absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool wake_ ABSL_GUARDED_BY(mu_) = false;
  bool synced_ ABSL_GUARDED_BY(mu_) = false;
  std::map<std::string, packetcapture::v1::Capture> changed_
      ABSL_GUARDED_BY(mu_);
  std::set<std::string> deleted_ ABSL_GUARDED_BY(mu_);
  IngestStream* live_ ABSL_GUARDED_BY(mu_) = nullptr;
  Stats stats_ ABSL_GUARDED_BY(mu_);

  // Uplink thread only.
  AggregatorTargets targets_;
  std::string address_;  // of the current attempt
  std::map<std::string, CaptureState> captures_;
  std::map<std::string, packetcapture::v1::Capture> tombstones_;
  std::map<std::tuple<std::string, std::string, uint64_t>, uint64_t> resume_;
  absl::Status connect_error_;  // why the last Connect() failed
  uint64_t inflight_limit_ = 0;
  uint32_t chunk_limit_ = 0;
  // The aggregator's batching (Welcome.batch_bytes / batch_delay_ms, capped
  // by the chunk and in-flight limits and max_batch_delay): 0 = none.
  uint64_t batch_bytes_ = 0;
  absl::Duration batch_delay_;
  bool inventory_due_ = false;  // this connection's hello was pending
  // Of captures no longer tracked: bytes lost, generations never read.
  uint64_t lost_gone_ = 0, unseen_gone_ = 0;
  uint64_t overflows_seen_ = 0;
};

}  // namespace pc::agent

#endif  // NODE_AGENT_UPLINK_H_
