#include "cli/capture_session.h"

#include <limits>
#include <map>
#include <set>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/kube/http_client.h"

namespace pc::cli {
namespace {

using packetcapture::v1::Capture;

std::string Name(const std::string& ns, const std::string& name) {
  return absl::StrCat(ns, "/", name);
}

// Removes the annotations from every Pod capturectl annotated (or tried
// to: a PATCH that timed out may have applied), once, from whichever thread
// gets there first (--duration's timer or the session on its way out).
class Cleanup {
 public:
  Cleanup(PodAnnotator& pods,
          const std::function<void(const std::string&)>& log)
      : pods_(pods), log_(log) {}

  void Add(const std::string& ns, const std::string& name) {
    absl::MutexLock lock(&mu_);
    targets_.emplace_back(ns, name);
  }

  absl::Status Run() {
    absl::MutexLock lock(&mu_);
    if (done_) return status_;
    done_ = true;
    for (const auto& [ns, name] : targets_) {
      absl::Status removed = pods_.Remove(ns, name);
      if (removed.ok()) {
        log_(absl::StrCat("removed the annotations from pod ", Name(ns, name)));
        continue;
      }
      log_(absl::StrCat("could not remove the annotations from pod ",
                        Name(ns, name), ": ", removed.message(),
                        "; remove them with: ", ManualRemoveCommand(ns, name)));
      if (status_.ok()) {
        status_ = absl::Status(
            removed.code(),
            absl::StrCat("could not remove the annotations from pod ",
                         Name(ns, name), ": ", removed.message()));
      }
    }
    return status_;
  }

 private:
  PodAnnotator& pods_;
  const std::function<void(const std::string&)>& log_;
  absl::Mutex mu_;
  std::vector<std::pair<std::string, std::string>> targets_
      ABSL_GUARDED_BY(mu_);
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status status_ ABSL_GUARDED_BY(mu_);
};

struct Target {
  std::string uid;
  std::string id;          // the RUNNING capture, once seen
  std::string last_state;  // for the timeout message
};

// The Pods to capture: the named one, or every Running one the selector
// matches.
absl::StatusOr<std::vector<kube::Pod>> FindPods(
    const CaptureRequest& request, PodAnnotator& pods,
    const std::function<void(const std::string&)>& log) {
  if (!request.pod.empty()) {
    absl::StatusOr<kube::Pod> pod = pods.Get(request.ns, request.pod);
    if (!pod.ok()) {
      return absl::Status(pod.status().code(),
                          absl::StrCat("pod ", Name(request.ns, request.pod),
                                       ": ", pod.status().message()));
    }
    if (pod->status().phase() != "Running") {
      log(absl::StrCat(
          "pod ", Name(request.ns, request.pod), " is ",
          pod->status().phase().empty() ? "not Running" : pod->status().phase(),
          ": the capture starts when it runs"));
    }
    return std::vector<kube::Pod>{*pod};
  }
  absl::StatusOr<std::vector<kube::Pod>> listed =
      pods.List(request.ns, request.label_selector);
  if (!listed.ok()) {
    return absl::Status(
        listed.status().code(),
        absl::StrCat("pods of ", request.ns, " with -l ",
                     request.label_selector, ": ", listed.status().message()));
  }
  std::vector<kube::Pod> running;
  for (const kube::Pod& pod : *listed) {
    if (pod.status().phase() == "Running" && !pod.status().pod_ip().empty() &&
        pod.metadata().deletion_timestamp().empty()) {
      running.push_back(pod);
    } else {
      log(absl::StrCat("skipping pod ", Name(request.ns, pod.metadata().name()),
                       ": not Running with an IP"));
    }
  }
  if (running.empty()) {
    return absl::NotFoundError(absl::StrCat("no Running pod in namespace ",
                                            request.ns, " matches -l ",
                                            request.label_selector));
  }
  return running;
}

}  // namespace

absl::Status RunCapture(
    const CaptureRequest& request, PodAnnotator& pods, CaptureBackend& backend,
    Interrupt& interrupt,
    const std::function<absl::Status(absl::string_view)>& write,
    const std::function<void(const std::string&)>& log) {
  absl::StatusOr<std::vector<kube::Pod>> found = FindPods(request, pods, log);
  if (!found.ok()) return found.status();
  // Refuse before touching anything: our cleanup would end someone's
  // capture and delete its files.
  for (const kube::Pod& pod : *found) {
    absl::Status free = CheckNotAnnotated(pod, request.force);
    if (!free.ok()) return free;
  }
  // Watch first, so captures that existed before our annotation (stopped
  // ones the aggregator keeps) are known and not mistaken for ours.
  absl::StatusOr<std::vector<Capture>> existing =
      backend.StartWatch(request.ns, absl::Now() + request.wait_timeout);
  if (!existing.ok()) return existing.status();
  std::set<std::string> before;
  for (const Capture& c : *existing) before.insert(c.id());

  Cleanup cleanup(pods, log);
  constexpr int64_t kNever = std::numeric_limits<int64_t>::max();
  std::atomic<int64_t> stop_at_ns{kNever};
  std::atomic<bool> finished{false};
  // Interrupts and --duration, while the session's thread blocks in the
  // watch or the stream.
  std::thread timer([&] {
    bool cancelled = false;
    bool removed = false;
    while (!finished.load()) {
      if (interrupt.triggered() && !cancelled) {
        backend.Cancel();
        cancelled = true;
      }
      const int64_t stop_at = stop_at_ns.load();
      const int64_t now = absl::ToUnixNanos(absl::Now());
      if (stop_at != kNever && now >= stop_at && !removed) {
        log("--duration reached: removing the annotations");
        cleanup.Run().IgnoreError();  // logged; returned again at the end
        removed = true;
      }
      if (stop_at != kNever && !cancelled &&
          now >= stop_at + absl::ToInt64Nanoseconds(request.grace)) {
        backend.Cancel();
        cancelled = true;
      }
      absl::SleepFor(absl::Milliseconds(50));
    }
  });

  auto body = [&]() -> absl::Status {
    std::map<std::string, Target> targets;  // by pod name
    for (const kube::Pod& pod : *found) {
      const std::string& name = pod.metadata().name();
      if (interrupt.triggered()) {
        return absl::CancelledError("interrupted before the capture started");
      }
      cleanup.Add(request.ns, name);
      absl::Status annotated = pods.Annotate(pod, request.spec);
      if (!annotated.ok()) {
        std::string hint =
            kube::HttpCodeFromStatus(annotated) == 409
                ? " (the pod changed while capturectl read it: run again)"
                : "";
        return absl::Status(
            annotated.code(),
            absl::StrCat("cannot annotate pod ", Name(request.ns, name), ": ",
                         annotated.message(), hint));
      }
      targets[name].uid = pod.metadata().uid();
      log(absl::StrCat("annotated pod ", Name(request.ns, name), " with ",
                       kAnnotation, "=", request.spec.files));
    }
    size_t waiting = targets.size();
    log(absl::StrCat("waiting for ",
                     waiting == 1 ? "the capture" : "the captures",
                     " to be RUNNING"));
    while (waiting > 0) {
      absl::StatusOr<Capture> c = backend.NextChange();
      if (!c.ok()) {
        if (interrupt.triggered()) {
          return absl::CancelledError("interrupted before the capture started");
        }
        if (absl::IsDeadlineExceeded(c.status())) {
          std::vector<std::string> late;
          for (const auto& [name, t] : targets) {
            if (t.id.empty()) {
              late.push_back(absl::StrCat(
                  Name(request.ns, name), " (",
                  t.last_state.empty() ? "no capture seen" : t.last_state,
                  ")"));
            }
          }
          return absl::DeadlineExceededError(absl::StrCat(
              "not RUNNING within ", absl::FormatDuration(request.wait_timeout),
              ": ", absl::StrJoin(late, ", "),
              "; is capture-agent running on the pod's node?"));
        }
        return c.status();
      }
      auto it = targets.find(c->pod());
      if (c->namespace_() != request.ns || it == targets.end()) continue;
      Target& t = it->second;
      if (!t.id.empty() ||
          (!t.uid.empty() && !c->pod_uid().empty() && c->pod_uid() != t.uid)) {
        continue;
      }
      const bool old = before.count(c->id()) > 0;
      if (old && !(request.force && c->state() == Capture::RUNNING)) continue;
      t.last_state = Capture::State_Name(c->state());
      if (!c->message().empty())
        absl::StrAppend(&t.last_state, ": ", c->message());
      if (c->state() == Capture::FAILED) {
        return absl::FailedPreconditionError(
            absl::StrCat("the capture of pod ", Name(request.ns, c->pod()),
                         " FAILED: ", c->message()));
      }
      if (c->state() == Capture::RUNNING) {
        t.id = c->id();
        --waiting;
        log(absl::StrCat("capture ", c->id(), " of pod ",
                         Name(request.ns, c->pod()), " on node ", c->node(),
                         " is RUNNING"));
      }
    }
    backend.StopWatch();
    std::vector<std::string> ids;
    for (const auto& [name, t] : targets) ids.push_back(t.id);
    log(absl::StrCat(
        "streaming", ids.size() > 1 ? " (merged pcapng)" : "",
        request.duration > absl::ZeroDuration()
            ? absl::StrCat(" for ", absl::FormatDuration(request.duration))
            : "",
        "; Ctrl-C stops and removes the annotations"));
    if (request.duration > absl::ZeroDuration()) {
      stop_at_ns.store(absl::ToUnixNanos(absl::Now() + request.duration));
    }
    absl::Status streamed = backend.Stream(ids, write);
    if (absl::IsCancelled(streamed)) {
      // Ctrl-C, --duration's grace over, or the reader of stdout left.
      log(interrupt.triggered() ? "interrupted"
                                : std::string(streamed.message()));
      return absl::OkStatus();
    }
    return streamed;
  };
  absl::Status result = body();
  finished.store(true);
  timer.join();
  backend.StopWatch();
  absl::Status cleaned = cleanup.Run();
  return result.ok() ? cleaned : result;
}

}  // namespace pc::cli
