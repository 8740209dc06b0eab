// Fuzzes every request the aggregator serves, through the real handlers:
// IngestServiceImpl.Report (agents' streams) and CaptureServiceImpl's
// ListCaptures, GetCapture, DownloadCapture and WatchCaptures, wired as
// aggregator/main.cc wires them (CaptureService reads the Store), on a real
// Store in a fresh temp directory, with a fake Authenticator, over the
// server's in-process channel. One input is a script of such calls:
//
//   op 0  Report: 1..8 AgentMessages, each a flags byte and a length-prefixed
//         serialized message (flag 1: set the chunk's CRC32C to match its
//         data, so chunks reach the store instead of stopping at the CRC).
//   op 1  ListCaptures, op 2 GetCapture, op 3 DownloadCapture,
//   op 4  WatchCaptures: a length-prefixed serialized request.
//   op 5  the store's clock moves on 0..255 hours, then Maintain().
//
// Checked: a Report stream ends with an IngestError exactly when its status
// is an error, with the same code; acks never go backwards; listings obey
// their filters and page size and their page token works; a download's
// offsets are continuous and its bytes one valid pcap stream of whole
// records; a watch sends only matching ADDED events before SYNCED. At the
// end the store is reopened from disk: the same captures, the same bytes.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "aggregator/authenticator.h"
#include "aggregator/ingest_service.h"
#include "aggregator/store.h"
#include "common/capture_registry.h"
#include "common/capture_service.h"
#include "common/crc32c.h"
#include "common/pcap/pcap_format.h"
#include "grpcpp/grpcpp.h"
#include "proto/packetcapture.grpc.pb.h"
#include "testing/fuzz/fuzz_util.h"

namespace {

namespace v1 = packetcapture::v1;
using pc::aggregator::AgentIdentity;

AgentIdentity Identity(const std::string& node) {
  AgentIdentity identity;
  identity.username = "agent";
  identity.node = node;
  return identity;
}

// Tokens the fake accepts, with the node each is bound to ("" = none, which
// the ingest service refuses).
class FakeAuthenticator : public pc::aggregator::Authenticator {
 public:
  absl::StatusOr<AgentIdentity> Authenticate(
      const std::string& token) override {
    if (token == "agent-token") return Identity("");
    if (token == "node-a-token") return Identity("node-a");
    if (token == "stranger") return absl::PermissionDeniedError("not agent");
    if (token == "flaky") return absl::UnavailableError("API unreachable");
    return absl::UnauthenticatedError("bad token");
  }
};

std::string TempDir() {
  const char* base = std::getenv("TEST_TMPDIR");
  std::string tmpl =
      absl::StrCat(base ? base : "/dev/shm", "/aggregator_fuzz.XXXXXX");
  FUZZ_CHECK(mkdtemp(&tmpl[0]) != nullptr, tmpl);
  return tmpl;
}

// The download of one capture, not following.
std::pair<std::string, grpc::Status> Download(
    v1::CaptureService::Stub& stub, const v1::DownloadCaptureRequest& request) {
  grpc::ClientContext context;
  if (request.follow()) {
    // A running capture is followed until the client leaves.
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::milliseconds(30));
  }
  auto reader = stub.DownloadCapture(&context, request);
  std::string data;
  v1::DownloadCaptureResponse response;
  while (reader->Read(&response)) {
    FUZZ_CHECK(response.offset() == data.size(),
               absl::StrCat("offset ", response.offset(), " after ",
                            data.size(), " bytes"));
    data += response.data();
  }
  return {data, reader->Finish()};
}

// The bytes of a download: one pcap stream of whole records.
void CheckStream(const std::string& data) {
  if (data.empty()) return;
  auto header = pc::pcap::ParseGlobalHeader(data);
  FUZZ_CHECK(header.ok(), "download does not start with a pcap header");
  const auto scan = pc::pcap::ScanRecords(
      *header, absl::string_view(data).substr(pc::pcap::kGlobalHeaderSize));
  FUZZ_CHECK(
      !scan.corrupt() &&
          scan.complete_bytes + pc::pcap::kGlobalHeaderSize == data.size(),
      absl::StrCat("download is not whole records: ", scan.complete_bytes,
                   " of ", data.size()));
}

bool Matches(const v1::Capture& c, const std::string& node,
             const std::string& ns, const std::string& pod) {
  return (node.empty() || c.node() == node) &&
         (ns.empty() || c.namespace_() == ns) &&
         (pod.empty() || c.pod() == pod);
}

class Aggregator {
 public:
  Aggregator(const std::string& dir, absl::Time* now) {
    pc::aggregator::StoreOptions options;
    options.data_dir = dir;
    options.clock = [now] { return *now; };
    options.max_bytes = 1 << 20;
    auto store = pc::aggregator::Store::Open(options, &registry_);
    FUZZ_CHECK(store.ok(), store.status().ToString());
    store_ = std::move(*store);
    pc::aggregator::IngestOptions ingest;
    ingest.max_chunk_bytes = 64 * 1024;
    ingest.worker_threads = 2;
    ingest.instance = "fuzz";
    ingest_ = std::make_unique<pc::aggregator::IngestServiceImpl>(
        store_.get(), &auth_, ingest);
    pc::aggregator::Store* store_ptr = store_.get();
    query_ = std::make_unique<pc::CaptureServiceImpl>(
        &registry_,
        [store_ptr](const v1::Capture& capture, bool follow) {
          return store_ptr->OpenReader(capture.id(), follow);
        },
        [](absl::string_view) { return true; });
    grpc::ServerBuilder builder;
    builder.RegisterService(ingest_.get());
    builder.RegisterService(query_.get());
    server_ = builder.BuildAndStart();
    FUZZ_CHECK(server_ != nullptr, "server did not start");
    channel_ = server_->InProcessChannel(grpc::ChannelArguments());
    ingest_stub_ = v1::IngestService::NewStub(channel_);
    query_stub_ = v1::CaptureService::NewStub(channel_);
  }
  ~Aggregator() {
    server_->Shutdown();
    server_->Wait();
  }

  pc::CaptureRegistry& registry() { return registry_; }
  pc::aggregator::Store& store() { return *store_; }
  v1::IngestService::Stub& ingest() { return *ingest_stub_; }
  v1::CaptureService::Stub& query() { return *query_stub_; }

 private:
  pc::CaptureRegistry registry_;
  FakeAuthenticator auth_;
  std::unique_ptr<pc::aggregator::Store> store_;
  std::unique_ptr<pc::aggregator::IngestServiceImpl> ingest_;
  std::unique_ptr<pc::CaptureServiceImpl> query_;
  std::unique_ptr<grpc::Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::IngestService::Stub> ingest_stub_;
  std::unique_ptr<v1::CaptureService::Stub> query_stub_;
};

void Report(Aggregator& a, pc::fuzz::FuzzInput& in) {
  std::vector<v1::AgentMessage> messages;
  const int n = 1 + in.Byte() % 8;
  for (int i = 0; i < n && !in.empty(); ++i) {
    const uint8_t flags = in.Byte();
    v1::AgentMessage m;
    if (!m.ParseFromString(in.LengthPrefixed())) m.Clear();
    if ((flags & 1) && m.has_chunk()) {
      m.mutable_chunk()->set_crc32c(pc::Crc32c(m.chunk().data()));
    }
    messages.push_back(std::move(m));
  }
  grpc::ClientContext context;
  auto stream = a.ingest().Report(&context);
  // Written on a thread of their own while replies are read, as an agent
  // does: the in-process transport buffers nothing, and the server reads
  // one message before a hello is accepted, so writing everything first
  // would wait forever on a server that rejects the hello.
  std::thread writer([&stream, &messages] {
    for (const auto& m : messages) {
      if (!stream->Write(m)) return;
    }
    stream->WritesDone();
  });
  std::vector<v1::AggregatorMessage> replies;
  v1::AggregatorMessage reply;
  while (stream->Read(&reply)) replies.push_back(reply);
  writer.join();
  const grpc::Status status = stream->Finish();

  std::map<std::tuple<std::string, std::string, uint64_t>, uint64_t> acked;
  for (size_t i = 0; i < replies.size(); ++i) {
    const auto& r = replies[i];
    if (r.has_error()) {
      FUZZ_CHECK(i + 1 == replies.size(), "messages after an IngestError");
      FUZZ_CHECK(!status.ok() && r.error().code() == status.error_code(),
                 absl::StrCat("IngestError ", r.error().code(), " but status ",
                              status.error_code()));
    }
    if (r.has_ack()) {
      auto key = std::make_tuple(r.ack().capture_id(), r.ack().file(),
                                 r.ack().file_generation());
      auto it = acked.find(key);
      FUZZ_CHECK(it == acked.end() || it->second <= r.ack().offset(),
                 absl::StrCat("ack went back from ", it->second, " to ",
                              r.ack().offset()));
      acked[key] = r.ack().offset();
    }
  }
  if (status.ok()) {
    FUZZ_CHECK(replies.empty() || !replies.back().has_error(),
               "IngestError with status OK");
  }
}

void List(Aggregator& a, const std::string& bytes) {
  v1::ListCapturesRequest request;
  if (!request.ParseFromString(bytes)) return;
  grpc::ClientContext context;
  v1::ListCapturesResponse response;
  const grpc::Status status =
      a.query().ListCaptures(&context, request, &response);
  if (!status.ok()) {
    FUZZ_CHECK(status.error_code() == grpc::StatusCode::INVALID_ARGUMENT,
               status.error_message());
    return;
  }
  const int limit =
      request.page_size() == 0 ? 100 : std::min(request.page_size(), 1000);
  FUZZ_CHECK(response.captures_size() <= limit, "page too long");
  FUZZ_CHECK(response.total_size() >= response.captures_size(), "total_size");
  for (const auto& c : response.captures()) {
    FUZZ_CHECK(Matches(c, request.node(), request.namespace_(), request.pod()),
               c.id());
    FUZZ_CHECK(request.state() == v1::Capture::STATE_UNSPECIFIED ||
                   c.state() == request.state(),
               c.id());
  }
  if (!response.next_page_token().empty()) {
    request.set_page_token(response.next_page_token());
    grpc::ClientContext next_context;
    v1::ListCapturesResponse next;
    const grpc::Status next_status =
        a.query().ListCaptures(&next_context, request, &next);
    FUZZ_CHECK(next_status.ok(), next_status.error_message());
    for (const auto& c : next.captures()) {
      for (const auto& seen : response.captures()) {
        FUZZ_CHECK(c.id() != seen.id(), "page repeats " + c.id());
      }
    }
  }
}

void Get(Aggregator& a, const std::string& bytes) {
  v1::GetCaptureRequest request;
  if (!request.ParseFromString(bytes)) return;
  grpc::ClientContext context;
  v1::Capture response;
  const grpc::Status status =
      a.query().GetCapture(&context, request, &response);
  if (status.ok()) {
    FUZZ_CHECK(response.id() == request.id(), response.id());
  } else {
    FUZZ_CHECK(status.error_code() == grpc::StatusCode::NOT_FOUND ||
                   status.error_code() == grpc::StatusCode::INVALID_ARGUMENT,
               status.error_message());
  }
}

void DownloadOp(Aggregator& a, const std::string& bytes) {
  v1::DownloadCaptureRequest request;
  if (!request.ParseFromString(bytes)) return;
  auto [data, status] = Download(a.query(), request);
  CheckStream(data);
  if (!status.ok()) {
    const auto code = status.error_code();
    FUZZ_CHECK(
        code == grpc::StatusCode::NOT_FOUND ||
            code == grpc::StatusCode::INVALID_ARGUMENT ||
            code == grpc::StatusCode::FAILED_PRECONDITION ||
            (request.follow() && code == grpc::StatusCode::DEADLINE_EXCEEDED),
        absl::StrCat(code, " ", status.error_message()));
  }
}

void Watch(Aggregator& a, const std::string& bytes) {
  v1::WatchCapturesRequest request;
  if (!request.ParseFromString(bytes)) return;
  grpc::ClientContext context;
  context.set_deadline(
      std::chrono::system_clock::now() +
      std::chrono::milliseconds(request.skip_initial() ? 5 : 2000));
  auto reader = a.query().WatchCaptures(&context, request);
  v1::CaptureEvent event;
  while (!request.skip_initial() && reader->Read(&event)) {
    if (event.type() == v1::CaptureEvent::SYNCED) break;
    FUZZ_CHECK(event.type() == v1::CaptureEvent::ADDED,
               absl::StrCat("initial event of type ", event.type()));
    FUZZ_CHECK(Matches(event.capture(), request.node(), request.namespace_(),
                       request.pod()),
               event.capture().id());
  }
  context.TryCancel();
  while (reader->Read(&event)) {
  }
  reader->Finish();
}

// What a restarted aggregator must find again: every capture, its bytes.
std::map<std::string, std::string> Contents(Aggregator& a) {
  std::map<std::string, std::string> out;
  for (const auto& c : a.registry().List()) {
    v1::DownloadCaptureRequest request;
    request.set_id(c.id());
    auto [data, status] = Download(a.query(), request);
    out[c.id()] = status.ok() ? data : "error: " + status.error_message();
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  pc::fuzz::FuzzInput in(data, size);
  const std::string dir = TempDir();
  absl::Time now = absl::FromUnixSeconds(1700000000);
  std::map<std::string, std::string> before;
  uint64_t bytes_before = 0;
  {
    Aggregator a(dir, &now);
    for (int step = 0; step < 16 && !in.empty(); ++step) {
      switch (in.Byte() % 6) {
        case 0:
          Report(a, in);
          break;
        case 1:
          List(a, in.LengthPrefixed());
          break;
        case 2:
          Get(a, in.LengthPrefixed());
          break;
        case 3:
          DownloadOp(a, in.LengthPrefixed());
          break;
        case 4:
          Watch(a, in.LengthPrefixed());
          break;
        case 5:
          now += absl::Hours(in.Byte());
          a.store().Maintain();
          break;
      }
    }
    before = Contents(a);
    bytes_before = a.store().total_bytes();
  }
  {
    Aggregator again(dir, &now);
    FUZZ_CHECK(again.store().total_bytes() == bytes_before,
               absl::StrCat(again.store().total_bytes(),
                            " bytes after restart, ", bytes_before, " before"));
    FUZZ_CHECK(Contents(again) == before, "captures differ after restart");
  }
  FUZZ_CHECK(std::system(absl::StrCat("rm -rf '", dir, "'").c_str()) == 0,
             "rm");
  return 0;
}
