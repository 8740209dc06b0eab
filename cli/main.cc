// capturectl: capture, list, inspect, download and follow packet captures
// through a packetcapture.v1.CaptureService (the aggregator, or one node's
// agent) and, for `capture`, the Kubernetes API.
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "cli/commands.h"
#include "cli/completion.h"
#include "cli/options.h"
#include "grpcpp/grpcpp.h"
#include "proto/packetcapture.grpc.pb.h"

namespace {

using pc::cli::Fail;
using pc::cli::kUsageError;
using pc::cli::Options;

// Reads --token-file into options->token (at most 64 KiB: tokens are a few
// KiB, and /dev/zero must not hang us).
bool ReadTokenFile(Options* options) {
  int fd = open(options->token_file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    Fail(absl::StrCat("cannot read --token-file ", options->token_file, ": ",
                      std::strerror(errno)));
    return false;
  }
  std::string contents(64 * 1024 + 1, '\0');
  size_t size = 0;
  while (size < contents.size()) {
    ssize_t n = read(fd, contents.data() + size, contents.size() - size);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int error = errno;
      close(fd);
      Fail(absl::StrCat("cannot read --token-file ", options->token_file, ": ",
                        std::strerror(error)));
      return false;
    }
    if (n == 0) break;
    size += static_cast<size_t>(n);
  }
  close(fd);
  if (size == contents.size()) {
    Fail(
        absl::StrCat(options->token_file, ": larger than 64 KiB, not a token"));
    return false;
  }
  contents.resize(size);
  auto token = pc::cli::TokenFromFileContents(contents);
  if (!token.ok()) {
    Fail(absl::StrCat(options->token_file, ": ", token.status().message()));
    return false;
  }
  options->token = *std::move(token);
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);  // a closed pipe is an EPIPE we handle
  const char* env_server = getenv("CAPTURECTL_SERVER");
  auto options =
      pc::cli::ParseOptions(std::vector<std::string>(argv + 1, argv + argc),
                            env_server ? env_server : "");
  if (!options.ok()) {
    std::cerr << "capturectl: " << options.status().message()
              << "\nrun 'capturectl help' for usage" << std::endl;
    return kUsageError;
  }
  switch (options->command) {
    case pc::cli::Command::kHelp:
      std::cout << options->help_text;
      return 0;
    case pc::cli::Command::kCompletion:
      std::cout << pc::cli::BashCompletionScript(pc::cli::CommandTable());
      return 0;
    default:
      break;
  }
  if (options->command == pc::cli::Command::kCapture) {
    // Before any thread starts (gRPC's, libcurl's), so every thread inherits
    // the mask and only capture's sigwait thread takes Ctrl-C: the
    // annotations are removed on the way out instead of the process dying.
    // A shell starts background commands with SIGINT ignored, and an
    // ignored signal is discarded, never reaching sigwait: take them back.
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
  }
  if (!options->token_file.empty() && !ReadTokenFile(&*options)) {
    return kUsageError;
  }
  if (!options->token.empty() && !pc::cli::IsLoopbackServer(options->server)) {
    std::cerr << "capturectl: warning: the token goes to " << options->server
              << " in plaintext; anyone who can read the traffic can use it "
                 "until it expires"
              << std::endl;
  }
  auto stub = packetcapture::v1::CaptureService::NewStub(
      grpc::CreateChannel(options->server, grpc::InsecureChannelCredentials()));
  switch (options->command) {
    case pc::cli::Command::kList:
      return pc::cli::List(*options, *stub);
    case pc::cli::Command::kGet:
      return pc::cli::Get(*options, *stub);
    case pc::cli::Command::kDescribe:
      return pc::cli::Describe(*options, *stub);
    case pc::cli::Command::kDownload:
      return pc::cli::Download(*options, *stub, /*follow=*/false);
    case pc::cli::Command::kFollow:
      return pc::cli::Download(*options, *stub, /*follow=*/true);
    case pc::cli::Command::kWatch:
      return pc::cli::Watch(*options, *stub);
    case pc::cli::Command::kCapture:
      return pc::cli::CaptureCommand(*options, *stub);
    case pc::cli::Command::kCompletion:
    case pc::cli::Command::kHelp:
      break;
  }
  return 0;
}
