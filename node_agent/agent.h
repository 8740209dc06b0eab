// The capture agent: wires the Pod watch (its own thread) to the control loop
// (one thread that owns all capture state) and publishes status to the
// CaptureRegistry that the gRPC service reads.
//
// Thread-safe entry points: the PodWatcher::Handler callbacks only post to the
// control loop's queue; Stop() may be called from any thread.
#ifndef NODE_AGENT_AGENT_H_
#define NODE_AGENT_AGENT_H_

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "common/capture_registry.h"
#include "common/kube/event_recorder.h"
#include "common/kube/http_client.h"
#include "common/kube/pod_watcher.h"
#include "node_agent/capture_manager.h"
#include "node_agent/config.h"
#include "node_agent/netns_finder.h"
#include "node_agent/pod_view.h"

namespace pc::agent {

// A kube Pod as the decision logic sees it.
PodView ToPodView(const kube::Pod& pod);

class Agent : public kube::PodWatcher::Handler, public PodEventSink {
 public:
  static absl::StatusOr<std::unique_ptr<Agent>> Create(
      const AgentConfig& config, CaptureRegistry* registry);
  ~Agent() override;

  // Runs `callback` once, on the control loop, right after the first full
  // list of the node's Pods was reconciled (the registry then holds every
  // capture the agent has). Call before Start().
  void OnFirstSync(std::function<void()> callback);
  // Starts the watch and the control loop.
  void Start();
  // Stops both; running tcpdumps are stopped, their files kept for the next
  // agent process.
  void Stop();

  // kube::PodWatcher::Handler (watch thread): post and return.
  void OnPodsListed(std::vector<kube::Pod> pods) override;
  void OnPodEvent(kube::EventType type, const kube::Pod& pod) override;
  void OnWatchError(const absl::Status& status) override;

  // PodEventSink (control loop thread).
  void PodEvent(const CaptureSpec& pod, bool warning, const std::string& reason,
                const std::string& message) override;

 private:
  explicit Agent(const AgentConfig& config, CaptureRegistry* registry);
  void Loop();

  const AgentConfig config_;
  CaptureEnv env_;
  NetnsFinder netns_;
  std::unique_ptr<kube::HttpClient> http_;
  std::unique_ptr<kube::EventRecorder> recorder_;
  std::unique_ptr<kube::PodWatcher> watcher_;
  std::unique_ptr<CaptureManager> manager_;
  std::function<void()> on_first_sync_;  // read by the loop thread only

  absl::Mutex mu_;
  // The node's pods by uid, as last seen; replaced on every (re)list.
  std::map<std::string, PodView> pods_ ABSL_GUARDED_BY(mu_);
  bool listed_ ABSL_GUARDED_BY(mu_) = false;
  bool dirty_ ABSL_GUARDED_BY(mu_) = false;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread loop_;
};

}  // namespace pc::agent

#endif  // NODE_AGENT_AGENT_H_
