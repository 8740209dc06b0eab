#include "node_agent/agent.h"

#include <sys/stat.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/kube/kube_config.h"
#include "common/log.h"
#include "node_agent/annotation.h"
#include "node_agent/capture_options.h"
#include "node_agent/filter_check.h"

namespace pc::agent {

PodView ToPodView(const kube::Pod& pod) {
  PodView v;
  v.ns = pod.metadata().namespace_();
  v.name = pod.metadata().name();
  v.uid = pod.metadata().uid();
  v.node = pod.spec().node_name();
  v.phase = pod.status().phase();
  v.ip = pod.status().pod_ip();
  v.host_network = pod.spec().host_network();
  v.deleting = !pod.metadata().deletion_timestamp().empty();
  auto it = pod.metadata().annotations().find(kCaptureAnnotation);
  if (it != pod.metadata().annotations().end()) v.annotation = it->second;
  for (const auto& [name, value] : pod.metadata().annotations()) {
    if (absl::StartsWith(name, kOptionPrefix)) {
      v.option_annotations[name] = value;
    }
  }
  v.labels.insert(pod.metadata().labels().begin(),
                  pod.metadata().labels().end());
  return v;
}

Agent::Agent(const AgentConfig& config, CaptureRegistry* registry)
    : config_(config),
      netns_(NetnsFinderOptions{config.netns_dirs, config.scan_proc, "/proc"}) {
  (void)registry;
}

absl::StatusOr<std::unique_ptr<Agent>> Agent::Create(
    const AgentConfig& config, CaptureRegistry* registry) {
  auto status = ValidateAgentConfig(config);
  if (!status.ok()) return status;
  if (mkdir(config.capture_dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot create capture_dir ", config.capture_dir, ": ",
                     strerror(errno)));
  }
  absl::StatusOr<kube::KubeConfig> kube_config =
      config.kubeconfig.empty() ? kube::InClusterConfig()
                                : kube::LoadKubeconfig(config.kubeconfig);
  if (!kube_config.ok()) return kube_config.status();

  std::unique_ptr<Agent> agent(new Agent(config, registry));
  agent->env_.root = config.capture_dir;
  agent->env_.node = config.node_name;
  agent->env_.netns = &agent->netns_;
  agent->env_.tcpdump.binary = config.tcpdump_binary;
  agent->env_.tcpdump.snaplen = config.snaplen;
  agent->env_.tcpdump.buffer_kib = config.buffer_kib;
  agent->env_.tcpdump.immediate = config.immediate_mode;
  agent->env_.stop_grace = absl::Seconds(config.stop_grace_seconds);

  auto http = kube::HttpClient::Create(*kube_config);
  if (!http.ok()) return http.status();
  agent->http_ = std::move(*http);

  kube::EventRecorder::Options recorder_options;
  recorder_options.source.component = "capture-agent";
  recorder_options.source.host = config.node_name;
  auto recorder =
      kube::EventRecorder::Create(agent->http_.get(), recorder_options);
  if (!recorder.ok()) return recorder.status();
  agent->recorder_ = std::move(*recorder);

  kube::PodWatcher::Options watch_options;
  watch_options.node_name = config.node_name;
  watch_options.watch_timeout = absl::Seconds(config.watch_timeout_seconds);
  auto watcher =
      kube::PodWatcher::Create(agent->http_.get(), watch_options, agent.get());
  if (!watcher.ok()) return watcher.status();
  agent->watcher_ = std::move(*watcher);

  Budget budget;
  budget.max_captures = config.max_captures;
  budget.max_bytes = config.max_bytes;
  agent->manager_ = std::make_unique<CaptureManager>(&agent->env_, budget,
                                                     agent.get(), registry);
  return agent;
}

Agent::~Agent() { Stop(); }

void Agent::OnFirstSync(std::function<void()> callback) {
  on_first_sync_ = std::move(callback);
}

void Agent::Start() {
  manager_->RecoverFromDisk();
  // tcpdump children are forked from the loop thread, which lives as long as
  // the agent: PR_SET_PDEATHSIG is tied to the forking thread.
  loop_ = std::thread([this] { Loop(); });
  watcher_->Start();
}

void Agent::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (stop_ && !loop_.joinable()) return;
    stop_ = true;
  }
  if (watcher_) watcher_->Stop();
  if (loop_.joinable()) loop_.join();
  if (recorder_) recorder_->Stop();
}

void Agent::OnPodsListed(std::vector<kube::Pod> pods) {
  std::map<std::string, PodView> views;
  for (const auto& pod : pods) {
    PodView v = ToPodView(pod);
    // The field selector already limits the list; a pod of another node
    // must never be captured here even if a server ignored it.
    if (v.node != config_.node_name || v.uid.empty()) continue;
    views[v.uid] = std::move(v);
  }
  absl::MutexLock lock(&mu_);
  pods_ = std::move(views);
  listed_ = true;
  dirty_ = true;
}

void Agent::OnPodEvent(kube::EventType type, const kube::Pod& pod) {
  PodView v = ToPodView(pod);
  if (v.uid.empty()) return;
  absl::MutexLock lock(&mu_);
  if (type == kube::EventType::kDeleted || v.node != config_.node_name) {
    pods_.erase(v.uid);
  } else if (type == kube::EventType::kAdded ||
             type == kube::EventType::kModified) {
    pods_[v.uid] = std::move(v);
  } else {
    return;
  }
  dirty_ = true;
}

void Agent::OnWatchError(const absl::Status& status) {
  LogLine("watch_error",
          {{"node", config_.node_name}, {"error", status.ToString()}});
}

void Agent::PodEvent(const CaptureSpec& pod, bool warning,
                     const std::string& reason, const std::string& message) {
  kube::PodRef ref;
  ref.ns = pod.ns;
  ref.name = pod.pod;
  ref.uid = pod.uid;
  auto status = recorder_->Record(
      ref, warning ? kube::EventLevel::kWarning : kube::EventLevel::kNormal,
      reason, message);
  if (!status.ok()) {
    LogLine("event_dropped", {{"pod", absl::StrCat(pod.ns, "/", pod.pod)},
                              {"reason", reason},
                              {"error", status.ToString()}});
  }
}

void Agent::Loop() {
  DecideOptions decide;
  decide.max_files = config_.max_files;
  decide.allow_host_network = config_.allow_host_network;
  FilterChecker filters;  // this thread's only
  decide.check_filter = [&filters](const std::string& filter, int snaplen) {
    return filters.Check(filter, snaplen);
  };
  while (true) {
    std::map<std::string, PodView> pods;
    bool reconcile = false;
    {
      absl::MutexLock lock(&mu_);
      // Wake on new pod state, a stop, or the next capture deadline.
      const absl::Time deadline = std::min(
          manager_->NextDeadline(), absl::Now() + absl::Milliseconds(200));
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stop_ || (dirty_ && listed_);
      };
      mu_.AwaitWithDeadline(absl::Condition(&ready), deadline);
      if (stop_) break;
      // Nothing is decided before the first full list: a restarted agent
      // must not delete captures it simply has not heard about yet.
      if (dirty_ && listed_) {
        pods = pods_;
        dirty_ = false;
        reconcile = true;
      }
    }
    const absl::Time now = absl::Now();
    if (reconcile) {
      std::map<std::string, Desired> desired;
      for (const auto& [uid, pod] : pods) {
        desired[uid] = DecideCapture(pod, decide);
      }
      manager_->Reconcile(desired, now);
      if (on_first_sync_) {
        LogLine("first_sync_reconciled", {{"node", config_.node_name},
                                          {"pods", absl::StrCat(pods.size())}});
        on_first_sync_();
        on_first_sync_ = nullptr;
      }
    }
    manager_->Tick(absl::Now());
  }
  manager_->Shutdown();
}

}  // namespace pc::agent
