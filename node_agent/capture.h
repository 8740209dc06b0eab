// One capture: tcpdump for one Pod, writing a ring of 1 MB files under
// <capture dir>/<id>/. Each tcpdump start is a "run" in its own directory
// (run-<k>-w<N>/ring0..), so a restart (tcpdump died, N or IP changed, agent
// restarted) never truncates what earlier runs wrote; older runs' files are
// pruned oldest first so the capture never keeps more than N files.
//
// Owned and driven by the agent's control-loop thread (thread-compatible):
// Start/Restart/BeginStop/Tick are called there. Readers get copies (Status()).
#ifndef NODE_AGENT_CAPTURE_H_
#define NODE_AGENT_CAPTURE_H_

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/pcap/file_scanner.h"
#include "node_agent/capture_files.h"
#include "node_agent/desired_capture.h"
#include "node_agent/netns_finder.h"
#include "node_agent/subprocess.h"
#include "node_agent/tcpdump_command.h"
#include "node_agent/tcpdump_output.h"
#include "proto/packetcapture.pb.h"

namespace pc::agent {

// Settings shared by every capture of the agent; read-only after start.
struct CaptureEnv {
  std::string root;  // the agent's capture directory
  std::string node;
  const NetnsFinder* netns = nullptr;
  TcpdumpOptions tcpdump;  // binary and tuning; interface/output set per run
  absl::Duration stop_grace = absl::Seconds(2);
  absl::Duration stats_interval = absl::Seconds(5);
  absl::Duration scan_interval = absl::Milliseconds(500);
  // tcpdump exits within this long of starting count as failures in a row.
  absl::Duration healthy_after = absl::Seconds(30);
  int max_failures = 5;
};

// A Kubernetes Event the capture wants raised on its Pod.
struct CaptureNote {
  bool warning = false;
  std::string reason;  // CaptureStarted, CaptureStopped, CaptureFailed, ...
  std::string message;
};

// Bytes of one ring file: tcpdump -C 1 rotates after 1,000,000 bytes (a
// file ends at most one record later).
inline constexpr uint64_t kRingFileBytes = 1000000;

class Capture {
 public:
  // A new capture for spec; creates its directory. id from MakeId().
  static absl::StatusOr<std::unique_ptr<Capture>> Create(
      const CaptureEnv* env, const CaptureSpec& spec, absl::Time now);
  // A capture a previous agent process left in <root>/<id>. Not running.
  static absl::StatusOr<std::unique_ptr<Capture>> Recover(
      const CaptureEnv* env, const std::string& id);

  // MakeCaptureId (common/capture_layout.h) of the spec and start time.
  static std::string MakeId(const CaptureSpec& spec, absl::Time now);

  ~Capture();

  const std::string& id() const { return id_; }
  const CaptureSpec& spec() const { return spec_; }
  std::string dir() const;

  // Starts a new run: finds the pod's netns by IP and execs tcpdump in that
  // very namespace (entered through the descriptor it was examined by, its
  // identity checked in the child). On failure the capture retries with
  // backoff and turns FAILED after env.max_failures; an IP held by more than
  // one namespace turns it FAILED at once (retrying would not say which).
  void Start(absl::Time now);
  // New spec for the same pod: stop the current run, start a new one.
  void Restart(const CaptureSpec& spec, absl::Time now);
  // SIGTERM now, SIGKILL after stop_grace. finished() once tcpdump is gone.
  // With a reason (annotation removed, pod gone) the status says STOPPED
  // with it from now on; without (agent shutdown) nothing is shown.
  void BeginStop(absl::Time now,
                 packetcapture::v1::StopReason reason =
                     packetcapture::v1::STOP_REASON_UNSPECIFIED);
  bool stopping() const { return stopping_; }
  bool finished() const { return stopping_ && !process_running(); }
  // Deletes every file of the capture (after finished()).
  absl::Status DeleteFiles();

  // Advances timers, reaps tcpdump, rescans files. True if the status changed.
  bool Tick(absl::Time now);
  // When Tick next has something to do.
  absl::Time NextDeadline() const;

  bool failed() const { return state_ == packetcapture::v1::Capture::FAILED; }
  // Not running, not retrying, not stopping: a capture recovered from disk
  // before its first Start() in this process.
  bool idle() const {
    return !process_ && !retry_pending_ && !stopping_ && !failed() &&
           !limit_reached_;
  }
  // Stopped by its duration or max-packets option: files kept, no restart
  // until the spec changes (also after an agent restart).
  bool limit_reached() const { return limit_reached_; }
  packetcapture::v1::StopReason stop_reason() const { return stop_reason_; }
  packetcapture::v1::Capture Status() const;
  std::vector<CaptureNote> TakeNotes();

  // Files of every run, oldest first (ring order within a run).
  std::vector<RunFile> Files() const { return files_.List(); }

 private:
  Capture(const CaptureEnv* env, std::string id, CaptureSpec spec);

  bool process_running() const { return process_ && process_->running(); }
  void TryStartRun(absl::Time now);
  // OK if the volume has room for the whole ring (ResourceExhausted says
  // how much is free and needed otherwise).
  absl::Status CheckRoomForRing() const;
  void OnExit(int wait_status, absl::Time now);
  // Counts a failed start or an early exit: retry with backoff, or FAILED
  // after env.max_failures in a row.
  void RecordFailure(const std::string& why, absl::Time now);
  void Fail(const std::string& message, absl::Time now);
  void SetState(packetcapture::v1::Capture::State state,
                const std::string& message, absl::Time now);
  void Note(bool warning, const std::string& reason,
            const std::string& message);
  bool ScanFiles(absl::Time now);
  absl::Status SaveMeta() const;
  void SaveMetaOrLog() const;
  // Limits (capture_options.h): when the duration ends (InfiniteFuture if
  // none), adding a finished run's packets, and stopping for good.
  absl::Time LimitDeadline() const;
  void CountRunPackets(int run, uint64_t reported);
  void ReachLimit(packetcapture::v1::StopReason reason, absl::Time now);

  const CaptureEnv* env_;
  const std::string id_;
  CaptureSpec spec_;

  packetcapture::v1::Capture::State state_ =
      packetcapture::v1::Capture::PENDING;
  std::string message_;
  absl::Time start_time_;
  absl::Time update_time_;
  std::string interface_;
  uint32_t restarts_ = 0;

  std::unique_ptr<Subprocess> process_;
  TcpdumpOutput output_;
  int run_ = 0;  // current run number, 0 before the first
  absl::Time run_started_;
  int failures_in_a_row_ = 0;
  absl::Time retry_at_ = absl::InfinitePast();
  bool retry_pending_ = false;
  bool stopping_ = false;
  bool restart_after_exit_ = false;
  absl::Time kill_at_ = absl::InfiniteFuture();
  absl::Time next_stats_ = absl::InfiniteFuture();
  absl::Time next_scan_ = absl::InfinitePast();

  // Counters of finished runs, so totals survive restarts.
  uint64_t dropped_before_ = 0;

  // Limits of the options: counted from limits_start_ (persisted).
  absl::Time limits_start_;
  uint64_t packets_before_run_ = 0;  // finished runs since limits_start_
  int counted_through_run_ = 0;      // last run in packets_before_run_
  // The duration ended while tcpdump ran: it was sent SIGTERM.
  bool duration_stop_pending_ = false;
  bool limit_reached_ = false;
  packetcapture::v1::StopReason stop_reason_ =
      packetcapture::v1::STOP_REASON_UNSPECIFIED;
  absl::Time stop_time_;

  CaptureFiles files_;

  std::vector<CaptureNote> notes_;
};

}  // namespace pc::agent

#endif  // NODE_AGENT_CAPTURE_H_
