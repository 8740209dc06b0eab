// `capturectl capture`: wires the session to the real world: the
// kubeconfig, the gRPC backend, the output (stdout or -w FILE) and the
// signals. See capture_session.h for the flow.
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <iostream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "cli/capture_session.h"
#include "cli/commands.h"
#include "cli/grpc_backend.h"
#include "cli/packet_counter.h"
#include "cli/pod_annotator.h"
#include "common/kube/http_client.h"
#include "common/kube/kube_config.h"

namespace pc::cli {
namespace {

// Like kubectl: --kubeconfig, else the first file of $KUBECONFIG, else
// ~/.kube/config.
std::string KubeconfigPath(const Options& options) {
  if (!options.kubeconfig.empty()) return options.kubeconfig;
  const char* env = getenv("KUBECONFIG");
  if (env != nullptr && *env != '\0') {
    for (absl::string_view path : absl::StrSplit(env, ':')) {
      if (!path.empty() && access(std::string(path).c_str(), R_OK) == 0) {
        return std::string(path);
      }
    }
  }
  const char* home = getenv("HOME");
  return absl::StrCat(home != nullptr ? home : "", "/.kube/config");
}

bool WriteAll(int fd, absl::string_view data) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

}  // namespace

int CaptureCommand(const Options& options,
                   packetcapture::v1::CaptureService::Stub& stub) {
  const bool to_stdout = options.output == "-";
  if (to_stdout && isatty(1) == 1) {
    std::cerr << "capturectl: refusing to write pcap to a terminal: pipe it "
                 "(| wireshark -k -i -, | tcpdump -r - -n) or give -w FILE"
              << std::endl;
    return kUsageError;
  }
  const std::string kubeconfig = KubeconfigPath(options);
  absl::StatusOr<kube::KubeConfig> config =
      kube::LoadKubeconfig(kubeconfig, options.context);
  if (!config.ok()) {
    return Fail(absl::StrCat("kubeconfig ", kubeconfig, ": ",
                             config.status().message(),
                             " (give --kubeconfig or set $KUBECONFIG)"));
  }
  kube::HttpClient::Options http;
  http.connect_timeout = absl::Seconds(5);
  http.request_timeout = absl::Seconds(15);
  http.user_agent = "capturectl";
  absl::StatusOr<std::unique_ptr<kube::HttpClient>> client =
      kube::HttpClient::Create(*std::move(config), http);
  if (!client.ok()) {
    return Fail(absl::StrCat("kubeconfig ", kubeconfig, ": ",
                             client.status().message()));
  }
  int fd = 1;
  if (!to_stdout) {
    fd = open(options.output.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
              0600);  // pcaps are sensitive
    if (fd < 0) {
      return Fail(absl::StrCat("cannot create ", options.output, ": ",
                               std::strerror(errno)));
    }
  }

  // Static: the signal thread below outlives this function (until exit).
  static absl::Mutex log_mu;
  auto log = [](const std::string& line) {
    absl::MutexLock lock(&log_mu);
    std::cerr << "capturectl: " << line << std::endl;
  };
  // Ctrl-C and SIGTERM (blocked in every thread by main) arrive here.
  static Interrupt interrupt;
  std::thread([log] {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    int signal_number = 0;
    while (sigwait(&set, &signal_number) == 0) {
      if (!interrupt.triggered()) {
        log(absl::StrCat(signal_number == SIGINT ? "interrupted" : "terminated",
                         ": stopping and removing the annotations"));
      }
      interrupt.Trigger();
    }
  }).detach();  // blocks in sigwait until the process exits

  PacketCounter counter;
  auto write = [&](absl::string_view data) -> absl::Status {
    if (!WriteAll(fd, data)) {
      if (to_stdout && errno == EPIPE) {
        return absl::CancelledError("the reader of stdout left");
      }
      return absl::UnavailableError(
          absl::StrCat("cannot write ", to_stdout ? "stdout" : options.output,
                       ": ", std::strerror(errno)));
    }
    counter.Add(data);
    return absl::OkStatus();
  };

  CaptureRequest request;
  request.ns = options.namespace_;
  request.pod = options.pod;
  request.label_selector = options.label_selector;
  request.spec.files = options.files;
  request.spec.filter = options.filter;
  request.spec.snaplen = options.snaplen;
  request.spec.duration = options.duration_text;
  request.spec.max_packets = options.max_packets;
  request.duration = options.duration;
  request.wait_timeout = options.wait_timeout;
  request.force = options.force;
  PodAnnotator pods(**client);
  GrpcCaptureBackend backend(stub, options.server, options.token);
  absl::Status status =
      RunCapture(request, pods, backend, interrupt, write, log);
  if (!to_stdout) {
    if (fsync(fd) != 0 && status.ok()) {
      status = absl::UnavailableError(absl::StrCat(
          "cannot write ", options.output, ": ", std::strerror(errno)));
    }
    close(fd);
  }
  // Not even a pcap header: the pod sent and received nothing tcpdump kept
  // (tcpdump writes its file's header with the first packet), so there is
  // no file to give. An empty file would be no pcap at all: say so instead.
  const bool nothing =
      counter.bytes() == 0 && (status.ok() || absl::IsCancelled(status));
  if (nothing) {
    if (!to_stdout) unlink(options.output.c_str());
    log(absl::StrCat(
        "no packet was captured (the pod sent and received "
        "nothing that was kept)",
        to_stdout ? "" : absl::StrCat(": ", options.output, " not written")));
  }
  if (absl::IsCancelled(status)) {
    log(std::string(status.message()));
    return kInterrupted;
  }
  if (!status.ok()) return Fail(std::string(status.message()));
  if (!to_stdout && !nothing) {
    log(absl::StrCat("wrote ", counter.bytes(), " bytes (", counter.packets(),
                     " packets) to ", options.output));
  }
  return 0;
}

}  // namespace pc::cli
