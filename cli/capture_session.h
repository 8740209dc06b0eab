// `capturectl capture`: the ksniff-style flow in one command. Finds the
// Pod(s), refuses Pods someone else is capturing (unless forced), annotates
// them, waits until every capture is RUNNING, streams the capture live to a
// sink, and always removes the annotations it set: when the stream ends, on
// --duration, on an interrupt (Ctrl-C), and after any error.
//
// The capture server is behind CaptureBackend (gRPC in capture_backend.h, a
// fake in tests); the Kubernetes side is PodAnnotator. RunCapture runs on the
// calling thread plus one timer thread of its own; Interrupt is the only
// thing other threads touch.
#ifndef CLI_CAPTURE_SESSION_H_
#define CLI_CAPTURE_SESSION_H_

#include <atomic>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "cli/pod_annotator.h"
#include "proto/packetcapture.pb.h"

namespace pc::cli {

// What capturectl needs from a CaptureService. Cancel() may be called from
// any thread; the rest from the session's thread only.
class CaptureBackend {
 public:
  virtual ~CaptureBackend() = default;
  // Opens a watch of the namespace's captures that ends by itself at
  // `deadline`; returns the captures the server holds now (until SYNCED).
  virtual absl::StatusOr<std::vector<packetcapture::v1::Capture>> StartWatch(
      const std::string& ns, absl::Time deadline) = 0;
  // The next changed capture; an error once the watch ended (deadline:
  // DeadlineExceeded; Cancel(): Cancelled).
  virtual absl::StatusOr<packetcapture::v1::Capture> NextChange() = 0;
  virtual void StopWatch() = 0;
  // Follows the captures to `write` until the server ends the stream: one id
  // as pcap (DownloadCapture), several merged as pcapng (DownloadCaptures).
  // Cancel() ends it with Cancelled.
  virtual absl::Status Stream(
      const std::vector<std::string>& ids,
      const std::function<absl::Status(absl::string_view)>& write) = 0;
  virtual void Cancel() = 0;
};

// Set from a signal-handling thread; read by the session.
class Interrupt {
 public:
  void Trigger() { triggered_.store(true); }
  bool triggered() const { return triggered_.load(); }

 private:
  std::atomic<bool> triggered_{false};
};

struct CaptureRequest {
  std::string ns;
  std::string pod;             // one Pod, or
  std::string label_selector;  // every Running Pod matching it
  CaptureSpec spec;
  // Client-side end: this long after the captures are RUNNING the
  // annotations are removed (the server stops the capture with the
  // tcpdump.antrea.io/duration option too), then the stream has `grace` to
  // end by itself. Zero: until interrupted or the stream ends.
  absl::Duration duration = absl::ZeroDuration();
  absl::Duration grace = absl::Seconds(5);
  absl::Duration wait_timeout = absl::Seconds(60);
  bool force = false;
};

// Runs the whole flow; `log` gets one line per step for the person at the
// terminal (stderr). OK when the stream ended, the duration passed or the
// user interrupted, and the annotations are gone. Any error (including a
// failed cleanup, which says how to remove the annotation by hand) is
// returned after the cleanup ran.
absl::Status RunCapture(
    const CaptureRequest& request, PodAnnotator& pods, CaptureBackend& backend,
    Interrupt& interrupt,
    const std::function<absl::Status(absl::string_view)>& write,
    const std::function<void(const std::string&)>& log);

}  // namespace pc::cli

#endif  // CLI_CAPTURE_SESSION_H_
