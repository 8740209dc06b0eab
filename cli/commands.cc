#include "cli/commands.h"

#include <fcntl.h>
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
#include "cli/describe.h"
#include "cli/download_totals.h"
#include "cli/format.h"
#include "cli/progress.h"
#include "cli/rpc_error.h"
#include "google/protobuf/util/json_util.h"
#include "grpcpp/grpcpp.h"

namespace pc::cli {
namespace {

using packetcapture::v1::Capture;
using packetcapture::v1::CaptureService;

int RpcFailed(const Options& options, const grpc::Status& status) {
  return Fail(FormatRpcError(options.server, status.error_code(),
                             status.error_message()));
}

// Writes all of data; false with errno set on failure.
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

// GetCapture, or the formatted error.
bool GetOne(const Options& options, CaptureService::Stub& stub,
            Capture* capture, grpc::Status* status) {
  packetcapture::v1::GetCaptureRequest request;
  request.set_id(options.id);
  auto context = UnaryContext(options);
  *status = stub.GetCapture(context.get(), request, capture);
  return status->ok();
}

// The size of the download of `c` when known: a pcap holds the ring's files
// with the 24-byte header once. 0 (unknown) for pcapng.
uint64_t ExpectedSize(const Capture& c, const Options& options) {
  if (options.download_format != packetcapture::v1::FORMAT_PCAP) return 0;
  uint64_t headers = c.files_size() > 1 ? 24 * (c.files_size() - 1) : 0;
  return c.bytes() > headers ? c.bytes() - headers : 0;
}

}  // namespace

int Fail(const std::string& message) {
  std::cerr << "capturectl: " << message << std::endl;
  return kRpcFailed;
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
  switch (options.format) {
    case OutputFormat::kJson:
    case OutputFormat::kYaml: {
      absl::StatusOr<std::string> text = options.format == OutputFormat::kJson
                                             ? CapturesToJson(captures)
                                             : CapturesToYaml(captures);
      if (!text.ok()) return Fail(std::string(text.status().message()));
      std::cout << *text;
      return 0;
    }
    case OutputFormat::kTable:
    case OutputFormat::kWide:
      std::cout << FormatCaptureTable(captures, absl::Now(),
                                      options.format == OutputFormat::kWide);
      if (captures.empty()) std::cerr << "no captures" << std::endl;
      return 0;
  }
  return 0;
}

int Get(const Options& options, CaptureService::Stub& stub) {
  Capture capture;
  grpc::Status status;
  if (!GetOne(options, stub, &capture, &status)) {
    return RpcFailed(options, status);
  }
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

int Describe(const Options& options, CaptureService::Stub& stub) {
  Capture capture;
  grpc::Status status;
  if (!GetOne(options, stub, &capture, &status)) {
    return RpcFailed(options, status);
  }
  std::cout << FormatDescribe(capture, absl::Now());
  return 0;
}

// download and follow. A download to a file goes to a temporary name beside
// it and is renamed only once the server said the file is complete, so a
// failed download never leaves a truncated file under the asked-for name.
// follow writes as it receives.
int Download(const Options& options, CaptureService::Stub& stub, bool follow) {
  const bool to_stdout = options.output == "-";
  // A progress bar for a person watching a download on a terminal; never
  // in a pipe or log, never for a live follow.
  const bool progress = !follow && !options.quiet && isatty(2) == 1;
  uint64_t total = 0;
  if (progress) {
    Capture capture;
    grpc::Status ignored;
    if (GetOne(options, stub, &capture, &ignored)) {
      total = ExpectedSize(capture, options);
    }
  }
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
  request.set_format(options.download_format);
  grpc::ClientContext context;
  AddToken(options, &context);
  auto reader = stub.DownloadCapture(&context, request);
  packetcapture::v1::DownloadCaptureResponse message;
  DownloadTotals totals;
  ProgressBar bar(2, progress, total);
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
    totals.Add(message);
    bar.Update(totals.bytes());
  }
  grpc::Status status = reader->Finish();
  if (reader_gone) return cleanup(0);
  if (!status.ok()) {
    if (progress) std::cerr << std::endl;  // leave the bar's line
    return cleanup(RpcFailed(options, status));
  }
  bar.Finish(totals.bytes());
  if (totals.bytes() == 0 && !follow) {
    // Not even a pcap header (tcpdump writes it with the first packet): an
    // empty file would be no pcap at all.
    return cleanup(Fail(absl::StrCat(
        "capture ", options.id, " holds no packets so far: nothing written")));
  }
  if (!temp.empty()) {
    if (fsync(fd) != 0 || rename(temp.c_str(), options.output.c_str()) != 0) {
      return cleanup(Fail(absl::StrCat("cannot write ", options.output, ": ",
                                       std::strerror(errno))));
    }
    temp.clear();
  }
  if (!to_stdout && !options.quiet) {
    std::cerr << "wrote " << totals.bytes() << " bytes (" << totals.packets()
              << " packets) to " << options.output << std::endl;
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
    std::cout << FormatEvent(event) << std::endl;
    if (!std::cout) {  // stdout closed: nobody is watching any more
      context.TryCancel();
      reader->Finish();
      return 0;
    }
  }
  grpc::Status status = reader->Finish();
  return status.ok() ? 0 : RpcFailed(options, status);
}

}  // namespace pc::cli
