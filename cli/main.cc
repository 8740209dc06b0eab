// capturectl: list, inspect, download and follow packet captures through a
// packetcapture.v1.CaptureService (the aggregator, or one node's agent).
#include <fcntl.h>
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
#include "absl/time/clock.h"
#include "cli/format.h"
#include "cli/options.h"
#include "google/protobuf/util/json_util.h"
#include "grpcpp/grpcpp.h"
#include "proto/packetcapture.grpc.pb.h"

namespace {

using packetcapture::v1::Capture;
using packetcapture::v1::CaptureService;
using pc::cli::Options;

constexpr int kRpcFailed = 1;
constexpr int kUsageError = 2;

int Fail(const std::string& message) {
  std::cerr << "capturectl: " << message << std::endl;
  return kRpcFailed;
}

int RpcFailed(const Options& options, const grpc::Status& status) {
  static const char* kCodes[] = {"OK",
                                 "CANCELLED",
                                 "UNKNOWN",
                                 "INVALID_ARGUMENT",
                                 "DEADLINE_EXCEEDED",
                                 "NOT_FOUND",
                                 "ALREADY_EXISTS",
                                 "PERMISSION_DENIED",
                                 "RESOURCE_EXHAUSTED",
                                 "FAILED_PRECONDITION",
                                 "ABORTED",
                                 "OUT_OF_RANGE",
                                 "UNIMPLEMENTED",
                                 "INTERNAL",
                                 "UNAVAILABLE",
                                 "DATA_LOSS",
                                 "UNAUTHENTICATED"};
  int code = status.error_code();
  std::string name = code >= 0 && code < 17 ? kCodes[code] : absl::StrCat(code);
  return Fail(
      absl::StrCat(options.server, ": ", name, ": ", status.error_message()));
}

// Writes all of data; false with errno set on failure.
bool WriteAll(int fd, const std::string& data) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

// Every call carries the bearer token, when there is one.
void AddToken(const Options& options, grpc::ClientContext* context) {
  if (!options.token.empty()) {
    context->AddMetadata("authorization", "Bearer " + options.token);
  }
}

std::unique_ptr<grpc::ClientContext> UnaryContext(const Options& options) {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(std::chrono::system_clock::now() +
                        std::chrono::seconds(20));
  AddToken(options, context.get());
  return context;
}

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

int List(const Options& options, CaptureService::Stub& stub) {
  packetcapture::v1::ListCapturesRequest request;
  request.set_node(options.node);
  request.set_namespace_(options.namespace_);
  request.set_pod(options.pod);
  request.set_state(options.state);
  request.set_page_size(1000);
  std::vector<Capture> captures;
  // Every page; the bound only guards against a server that never ends.
  for (int page = 0; page < 1000; ++page) {
    auto context = UnaryContext(options);
    packetcapture::v1::ListCapturesResponse response;
    grpc::Status status = stub.ListCaptures(context.get(), request, &response);
    if (!status.ok()) return RpcFailed(options, status);
    captures.insert(captures.end(), response.captures().begin(),
                    response.captures().end());
    if (response.next_page_token().empty()) break;
    request.set_page_token(response.next_page_token());
  }
  std::cout << pc::cli::FormatCaptureTable(captures, absl::Now());
  if (captures.empty()) std::cerr << "no captures" << std::endl;
  return 0;
}

int Get(const Options& options, CaptureService::Stub& stub) {
  packetcapture::v1::GetCaptureRequest request;
  request.set_id(options.id);
  auto context = UnaryContext(options);
  Capture capture;
  grpc::Status status = stub.GetCapture(context.get(), request, &capture);
  if (!status.ok()) return RpcFailed(options, status);
  google::protobuf::util::JsonPrintOptions print;
  print.add_whitespace = true;
  print.preserve_proto_field_names = true;  // as grpcurl prints them
  std::string json;
  if (!google::protobuf::util::MessageToJsonString(capture, &json, print)
           .ok()) {
    return Fail("cannot print the capture as JSON");
  }
  std::cout << json;
  return 0;
}

// download and follow. A download to a file goes to a temporary name beside
// it and is renamed only once the server said the pcap is complete, so a
// failed download never leaves a truncated file under the asked-for name.
// follow writes as it receives: each message holds complete records, so
// stopping it at any point leaves a readable pcap.
int Download(const Options& options, CaptureService::Stub& stub, bool follow) {
  const bool to_stdout = options.output == "-";
  std::string temp;
  int fd = 1;
  if (!to_stdout) {
    if (follow) {
      fd = open(options.output.c_str(),
                O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    } else {
      temp = options.output + ".partial-XXXXXX";
      fd = mkostemp(temp.data(), O_CLOEXEC);  // mode 0600: pcaps are sensitive
    }
    if (fd < 0) {
      return Fail(absl::StrCat("cannot create ", follow ? options.output : temp,
                               ": ", std::strerror(errno)));
    }
  }
  auto cleanup = [&](int rc) {
    if (!to_stdout) close(fd);
    if (!temp.empty()) unlink(temp.c_str());
    return rc;
  };

  packetcapture::v1::DownloadCaptureRequest request;
  request.set_id(options.id);
  request.set_follow(follow);
  grpc::ClientContext context;
  AddToken(options, &context);
  auto reader = stub.DownloadCapture(&context, request);
  packetcapture::v1::DownloadCaptureResponse message;
  uint64_t bytes = 0;
  uint64_t packets = 0;
  bool reader_gone = false;
  while (reader->Read(&message)) {
    if (!WriteAll(fd, message.data())) {
      if (to_stdout && errno == EPIPE) {  // the reader (wireshark, head) quit
        reader_gone = true;
        context.TryCancel();
        break;
      }
      int error = errno;
      context.TryCancel();
      reader->Finish();
      return cleanup(Fail(absl::StrCat("cannot write ",
                                       to_stdout ? "stdout" : options.output,
                                       ": ", std::strerror(error))));
    }
    bytes += message.data().size();
    packets += message.packets();
  }
  grpc::Status status = reader->Finish();
  if (reader_gone) return cleanup(0);
  if (!status.ok()) return cleanup(RpcFailed(options, status));
  if (!temp.empty()) {
    if (fsync(fd) != 0 || rename(temp.c_str(), options.output.c_str()) != 0) {
      return cleanup(Fail(absl::StrCat("cannot write ", options.output, ": ",
                                       std::strerror(errno))));
    }
    temp.clear();
  }
  if (!to_stdout) {
    std::cerr << "wrote " << bytes << " bytes (" << packets << " packets) to "
              << options.output << std::endl;
  }
  return cleanup(0);
}

int Watch(const Options& options, CaptureService::Stub& stub) {
  packetcapture::v1::WatchCapturesRequest request;
  request.set_node(options.node);
  request.set_namespace_(options.namespace_);
  request.set_pod(options.pod);
  grpc::ClientContext context;
  AddToken(options, &context);
  auto reader = stub.WatchCaptures(&context, request);
  packetcapture::v1::CaptureEvent event;
  while (reader->Read(&event)) {
    std::cout << pc::cli::FormatEvent(event) << std::endl;
    if (!std::cout) {  // stdout closed: nobody is watching any more
      context.TryCancel();
      reader->Finish();
      return 0;
    }
  }
  grpc::Status status = reader->Finish();
  return status.ok() ? 0 : RpcFailed(options, status);
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
  if (options->command == pc::cli::Command::kHelp) {
    std::cout << pc::cli::kUsage;
    return 0;
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
  auto stub = CaptureService::NewStub(
      grpc::CreateChannel(options->server, grpc::InsecureChannelCredentials()));
  switch (options->command) {
    case pc::cli::Command::kList:
      return List(*options, *stub);
    case pc::cli::Command::kGet:
      return Get(*options, *stub);
    case pc::cli::Command::kDownload:
      return Download(*options, *stub, /*follow=*/false);
    case pc::cli::Command::kFollow:
      return Download(*options, *stub, /*follow=*/true);
    case pc::cli::Command::kWatch:
      return Watch(*options, *stub);
    case pc::cli::Command::kHelp:
      break;
  }
  return 0;
}
