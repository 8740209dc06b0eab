// Owns every capture of this node and carries out the reconciler's plan:
// starts, restarts and stops captures, keeps PENDING/FAILED entries visible,
// enforces the node-wide budget, finds what a previous agent process left on
// disk, publishes status to the CaptureRegistry and raises Pod Events.
//
// Thread-compatible: only the agent's control-loop thread calls it (tcpdump is
// forked from that thread, which PR_SET_PDEATHSIG ties it to).
#ifndef NODE_AGENT_CAPTURE_MANAGER_H_
#define NODE_AGENT_CAPTURE_MANAGER_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "common/capture_registry.h"
#include "node_agent/capture.h"
#include "node_agent/reconciler.h"

namespace pc::agent {

// Where Pod Events go (the Kubernetes EventRecorder, or a fake in tests).
class PodEventSink {
 public:
  virtual ~PodEventSink() = default;
  virtual void PodEvent(const CaptureSpec& pod, bool warning,
                        const std::string& reason,
                        const std::string& message) = 0;
};

struct Budget {
  int max_captures = 64;
  // Bytes reserved per file: tcpdump's -C 1 limit plus one maximal record
  // (it checks the size before each write, so a file overshoots by at most
  // one packet).
  static constexpr int64_t kBytesPerFile = 1000000 + 262144 + 16;
  int64_t max_bytes = 1024LL * 1024 * 1024;
};

class CaptureManager {
 public:
  CaptureManager(const CaptureEnv* env, Budget budget, PodEventSink* events,
                 CaptureRegistry* registry);
  ~CaptureManager();

  // Loads captures left in the capture directory by a previous agent process
  // (they are not running yet: the first Reconcile decides) and kills any
  // tcpdump still writing there. Unknown entries are reported and left alone.
  void RecoverFromDisk();

  void Reconcile(const std::map<std::string, Desired>& desired, absl::Time now);
  void Tick(absl::Time now);
  absl::Time NextDeadline() const;

  // Stops everything (agent shutdown): SIGTERM, bounded wait, SIGKILL. Files
  // stay on disk so a restarted agent continues the captures.
  void Shutdown();

  // For tests and metrics.
  int active_captures() const;
  int64_t reserved_bytes() const;

 private:
  struct Entry {
    CurrentCapture current;
    std::unique_ptr<Capture> capture;  // null for PENDING/FAILED-only entries
    packetcapture::v1::Capture shown;  // status of an entry without capture
  };

  void Apply(const Action& action, absl::Time now);
  void StartCapture(const std::string& uid, const Desired& desired,
                    absl::Time now);
  void StopEntry(const std::string& uid, absl::Time now,
                 packetcapture::v1::StopReason reason);
  void ShowOnly(const std::string& uid, const Desired& desired,
                packetcapture::v1::Capture::State state, absl::Time now);
  void Publish();
  void ForwardNotes(Capture* capture);

  const CaptureEnv* env_;
  const Budget budget_;
  PodEventSink* events_;
  CaptureRegistry* registry_;

  std::map<std::string, Entry> entries_;  // by pod uid
  std::vector<std::unique_ptr<Capture>> stopping_;
  // Captures found on disk, by pod uid, until the first Reconcile.
  std::map<std::string, std::unique_ptr<Capture>> recovered_;
};

// Kills tcpdump processes whose -w path lies under root (left by an agent
// that died in a way PR_SET_PDEATHSIG did not cover). Returns how many.
int KillOrphanTcpdumps(const std::string& root, const std::string& proc_root);

}  // namespace pc::agent

#endif  // NODE_AGENT_CAPTURE_MANAGER_H_
