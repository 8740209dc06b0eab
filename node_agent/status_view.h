// The agent's own capture list when an uplink runs: the capture manager's
// statuses with the uplink's counters merged in (bytes_uploaded, bytes_lost,
// each file's generation number), so the agent's CaptureService shows the
// numbers the uplink reports to the aggregator. The uplink owns them; the
// capture manager knows nothing of uploads.
//
// Thread-safe: source events arrive on the capture manager's thread,
// counters on the uplink's; every write to the served registry happens under
// one lock, so a capture's latest status and latest counters always meet.
#ifndef NODE_AGENT_STATUS_VIEW_H_
#define NODE_AGENT_STATUS_VIEW_H_

#include <cstdint>
#include <map>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "common/capture_registry.h"
#include "proto/packetcapture.pb.h"

namespace pc::agent {

class StatusView {
 public:
  struct Counters {
    uint64_t uploaded = 0;
    uint64_t lost = 0;
    // Generation number of each ring file (reuses counted), by file name.
    std::map<std::string, uint64_t> generations;
    // Said after the status message when set (e.g. why bytes_lost is only a
    // lower bound).
    std::string note;
    bool operator==(const Counters& o) const {
      return uploaded == o.uploaded && lost == o.lost &&
             generations == o.generations && note == o.note;
    }
  };

  // Writes to `served` (not owned), which nothing else writes.
  explicit StatusView(CaptureRegistry* served) : served_(served) {}

  // A change of the capture manager's registry (its listener).
  void OnSourceEvent(const CaptureRegistry::Event& event);
  // The uplink's latest counters for capture `id`.
  void SetCounters(const std::string& id, const Counters& counters);
  // The capture is gone for the uplink too.
  void Forget(const std::string& id);

  // Sets the counters in `status`: bytes_lost adds to what the status
  // carries. With `generations`, each listed file's generation becomes the
  // larger of its own and the counted one.
  static void Merge(const Counters& counters, bool generations,
                    packetcapture::v1::Capture* status);

 private:
  CaptureRegistry* const served_;
  absl::Mutex mu_;
  std::map<std::string, packetcapture::v1::Capture> base_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, Counters> counters_ ABSL_GUARDED_BY(mu_);
};

}  // namespace pc::agent

#endif  // NODE_AGENT_STATUS_VIEW_H_
