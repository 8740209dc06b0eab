// Load generator and peers for testing/aggregator_benchmark.py (prints
// figures; not a test).
//
//   ingest_bench null-server PORT [DOWNLOAD_FILE MESSAGE_BYTES]
//       IngestService that acks every chunk at once without storing it, and
//       CaptureService.DownloadCapture that streams DOWNLOAD_FILE in
//       MESSAGE_BYTES messages: the "raw gRPC stream" peers.
//   ingest_bench null-writer PORT DIR [BATCH_BYTES BATCH_DELAY_MS]
//       The minimal durable peer: an IngestService that writes each chunk at
//       its offset into DIR/<capture>.<file>.<generation> (one file per
//       (capture, file, generation); no index, no commit log, no checks) and
//       acks it once fdatasync() of that file returned. Each stream has one
//       thread: it writes every chunk queued since its last round, flushes
//       each file written to once, then acks them in order. Its welcome asks
//       for BATCH_BYTES / BATCH_DELAY_MS batching (default none), so it can
//       be sent what an aggregator asking for the same would be sent.
//   ingest_bench null-putter PORT ENDPOINT CREDENTIALS BUCKET PREFIX
//                [BATCH_BYTES BATCH_DELAY_MS]
//       The null writer's object-store twin: PUTs each chunk as one object
//       PREFIX/stream-<k>/<capture>/<file>.<generation>/<offset> through
//       common/s3 (If-None-Match: *, the replica's two metadata headers) to
//       ENDPOINT (http://host:port) and acks it once the PUT returned.
//       CREDENTIALS: a file as the aggregator's --s3_credentials takes.
//   ingest_bench ingest TARGET TOKEN_DIR NODE_PREFIX STREAMS MIB_PER_STREAM
//                KIB_PER_SEC CHUNK_BYTES WINDOW_BYTES
//       STREAMS agents, each on its own connection, speaking IngestService
//       like node_agent/uplink.cc: hello with the token in
//       TOKEN_DIR/<node>.token (one bound to a Pod on that node: the
//       aggregator lets a token report for its Pod's node only), a RUNNING
//       status, then valid pcap chunks of 1 MB ring files (CRC32C, offsets,
//       packets), keeping at most min(WINDOW_BYTES, welcome's max_inflight)
//       unacked. At a set rate it honours the welcome's batching as the
//       agent does: new bytes wait until batch_bytes are there (at most the
//       welcome's max_chunk_bytes, then sent as one chunk) or the oldest
//       waited batch_delay_ms; a ring file's end goes out at once.
//       The node of stream i is NODE_PREFIX + i, or NODE_PREFIX
//       itself when STREAMS is 1. With TARGET on loopback, stream i connects
//       from 127.1.0.1 + i, as agents of different nodes come from different
//       addresses. A hello refused with RESOURCE_EXHAUSTED
//       (too many streams waiting for their token check) is sent again on a
//       new stream after a backoff like the agent's, only shorter: 50 ms
//       doubling to at most 2 s, +-20 % jitter. KIB_PER_SEC = 0: as fast as
//       acks allow.
//       Prints acked bytes, MB/s (over the whole run, retries included),
//       the refused or unconnected hellos ("retries", and the most of one
//       stream), when the last stream was welcomed and when the first one
//       had all its bytes acked ("first_done"; -1 if none): between the two
//       every stream sends at its rate, the steady state.
//   ingest_bench download TARGET ID
//       DownloadCapture(ID); prints bytes and MB/s.
//   ingest_bench follow TARGET ID
//       DownloadCapture(ID, follow=true); for every record holding a
//       udp_flood payload ("PCFLOOD1" + 8-byte big-endian sequence number)
//       prints "seq <N> <CLOCK_MONOTONIC seconds>" as soon as it arrives.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "common/crc32c.h"
#include "grpcpp/create_channel_posix.h"
#include "grpcpp/grpcpp.h"
#include "proto/packetcapture.grpc.pb.h"
#include "testing/bench/null_peers.h"

namespace {

namespace v1 = packetcapture::v1;
using Clock = std::chrono::steady_clock;

constexpr uint64_t kRingFileBytes = 1000000;  // tcpdump -C 1
constexpr uint32_t kPacketBytes = 1000;       // caplen of each record

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// ---- agent-like client ----

// One 1 MB ring file of valid pcap: global header + 1000-byte records.
std::string MakeRingFile(uint32_t salt) {
  std::string f;
  auto put32 = [&f](uint32_t v) { f.append(reinterpret_cast<char*>(&v), 4); };
  auto put16 = [&f](uint16_t v) { f.append(reinterpret_cast<char*>(&v), 2); };
  put32(0xa1b2c3d4);
  put16(2);
  put16(4);
  put32(0);
  put32(0);
  put32(262144);
  put32(1);  // Ethernet
  uint32_t n = 0;
  while (f.size() + 16 + kPacketBytes <= kRingFileBytes) {
    put32(1700000000 + n / 1000);
    put32((n % 1000) * 1000);
    put32(kPacketBytes);
    put32(kPacketBytes);
    std::string body(kPacketBytes, static_cast<char>(salt + n));
    f += body;
    ++n;
  }
  return f;
}

struct Batching {
  bool on = false;
  uint64_t bytes = 0;  // send once this many are held (capped by chunk size)
  std::chrono::milliseconds delay{0};  // or the oldest held byte is this old
};

Batching BatchingOf(const v1::Welcome& w, uint64_t bytes_per_sec) {
  Batching b;
  // Like node_agent/uplink.cc: both fields or none; the delay capped at 10 s.
  if (bytes_per_sec == 0 || w.batch_bytes() == 0 || w.batch_delay_ms() == 0) {
    return b;  // as fast as acks allow, or nothing asked: send at once
  }
  b.on = true;
  const uint64_t largest =
      w.max_chunk_bytes() > 0 ? w.max_chunk_bytes() : uint64_t{1} << 20;
  b.bytes = std::min<uint64_t>(w.batch_bytes(), largest);
  b.delay =
      std::chrono::milliseconds(std::min<uint32_t>(w.batch_delay_ms(), 10000));
  return b;
}

// When a batch starting at byte `sent` of the stream (produced at
// bytes_per_sec from t0) goes out, and how many bytes it then holds (at most
// *want, which the caller capped at the file's end: the agent sends a file
// the ring moved past at once).
Clock::time_point BatchSendTime(const Batching& b, Clock::time_point t0,
                                uint64_t bytes_per_sec, uint64_t sent,
                                uint64_t* want) {
  auto produced = [&](uint64_t bytes) {
    return t0 + std::chrono::duration_cast<Clock::duration>(
                    std::chrono::duration<double>(static_cast<double>(bytes) /
                                                  bytes_per_sec));
  };
  const Clock::time_point full = produced(sent + *want);
  const Clock::time_point waited = produced(sent) + b.delay;
  if (full <= waited) return full;
  const double seconds = std::chrono::duration<double>(waited - t0).count();
  const uint64_t by_then = static_cast<uint64_t>(seconds * bytes_per_sec);
  // At least a header and one whole record (the uplink sends whole records).
  const uint64_t least = std::min<uint64_t>(*want, 24 + 16 + kPacketBytes);
  *want = std::max(std::min(*want, by_then > sent ? by_then - sent : 0), least);
  return waited;
}

struct StreamResult {
  uint64_t acked = 0;
  uint64_t chunks = 0;
  int retries = 0;  // hellos refused with RESOURCE_EXHAUSTED, or not connected
  double welcomed_after = -1;  // seconds from the start of the run
  double done_after = -1;      // when every byte was acked (same clock)
  std::string error;
  std::string capture_id;
};

struct IngestParams {
  std::string target, token, node;
  uint64_t total_bytes = 0;
  uint64_t bytes_per_sec = 0;
  uint32_t chunk_bytes = 0;
  uint64_t window = 0;
  int index = 0;
  Clock::time_point start;
  Clock::time_point deadline;
};

// Stream `index`'s own source address (host order) when the target is on
// loopback, else 0 (any). Agents connect from their nodes' addresses, and an
// aggregator admits at most 8 hellos per address (and 32 in all) to wait for
// their token checks: 100 streams from one address met the first limit,
// which agents of 100 nodes never do.
uint32_t SourceAddress(const std::string& target, int index) {
  const std::string host = target.substr(0, target.rfind(':'));
  in_addr a;
  if (inet_pton(AF_INET, host.c_str(), &a) != 1 ||
      (ntohl(a.s_addr) >> 24) != 127) {
    return 0;
  }
  return 0x7f010001u + static_cast<uint32_t>(index);  // 127.1.0.1, ...
}

// A channel to `target`; from `source` (see SourceAddress) if not 0, over one
// connection made here (nullptr if it could not be made). gRPC 1.51 has no
// public way to bind a channel's own connections.
std::shared_ptr<grpc::Channel> Connect(const std::string& target,
                                       uint32_t source,
                                       const grpc::ChannelArguments& args) {
  if (source == 0) {
    return grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(),
                                     args);
  }
  const size_t colon = target.rfind(':');
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(static_cast<uint16_t>(
      std::strtoul(target.c_str() + colon + 1, nullptr, 10)));
  inet_pton(AF_INET, target.substr(0, colon).c_str(), &to.sin_addr);
  sockaddr_in from{};
  from.sin_family = AF_INET;
  from.sin_addr.s_addr = htonl(source);
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return nullptr;
  const int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);  // as gRPC does
  if (bind(fd, reinterpret_cast<sockaddr*>(&from), sizeof from) != 0 ||
      connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof to) != 0) {
    close(fd);
    return nullptr;
  }
  return grpc::CreateCustomInsecureChannelFromFd(target, fd, args);
}

// The agent's retry delays (node_agent/uplink.cc uses kube::Backoff), shorter:
// a refused hello only waits for others' token checks.
constexpr auto kFirstRetry = std::chrono::milliseconds(50);
constexpr auto kLongestRetry = std::chrono::milliseconds(2000);

void RunAgent(const IngestParams& p, const std::string& ring, StreamResult* r) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);  // own connection
  args.SetMaxReceiveMessageSize(8 << 20);
  const uint32_t source = SourceAddress(p.target, p.index);
  std::shared_ptr<grpc::Channel> channel = Connect(p.target, source, args);
  std::unique_ptr<v1::IngestService::Stub> stub;
  if (channel != nullptr) stub = v1::IngestService::NewStub(channel);
  v1::AgentMessage hello;
  hello.mutable_hello()->set_node(p.node);
  hello.mutable_hello()->set_agent_instance("bench" + std::to_string(p.index));
  hello.mutable_hello()->set_token(p.token);
  hello.mutable_hello()->set_agent_version("ingest_bench");
  const int64_t start_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(
          std::chrono::system_clock::now().time_since_epoch())
          .count();
  char uid[16];
  std::snprintf(uid, sizeof uid, "%08x",
                0xbe000000u + static_cast<unsigned>(p.index));
  const std::string pod = "bench-" + std::to_string(p.index);
  const std::string id =
      "bench_" + pod + "_" + uid + "_" + std::to_string(start_ms);
  r->capture_id = id;
  hello.mutable_hello()->add_capture_ids(id);

  std::mt19937 rng(static_cast<uint32_t>(p.index) * 2654435761u + 1);
  std::uniform_real_distribution<double> jitter(0.8, 1.2);
  auto delay = std::chrono::duration<double>(kFirstRetry);
  std::unique_ptr<grpc::ClientContext> ctx;
  std::unique_ptr<
      grpc::ClientReaderWriter<v1::AgentMessage, v1::AggregatorMessage>>
      stream;
  v1::AggregatorMessage in;
  for (;;) {
    bool got = false;
    grpc::Status st(grpc::StatusCode::UNAVAILABLE, "could not connect");
    in.Clear();
    if (channel != nullptr) {
      ctx = std::make_unique<grpc::ClientContext>();
      stream = stub->Report(ctx.get());
      // A stream refused at once may fail the write of the hello; the
      // aggregator's error is read all the same.
      stream->Write(hello);
      got = stream->Read(&in);
      if (got && in.has_welcome()) break;
      // Refused: the aggregator sent an error and ends the stream with its
      // code. With a message read, cancel before Finish, as the agent's
      // uplink does: after WritesDone, Finish sometimes never returned here
      // although the server's trailers and RST_STREAM had arrived (gRPC
      // 1.51, streams refused at once). Without one the stream is over and
      // Finish has its status.
      if (got) ctx->TryCancel();
      st = stream->Finish();
    }
    const int code = in.has_error() ? in.error().code() : st.error_code();
    // Refused for now, or (with nothing read) not connected: an agent backs
    // off and tries again in both cases. 100 connects at once to one
    // loopback port sometimes see the second.
    const bool again = code == grpc::StatusCode::RESOURCE_EXHAUSTED ||
                       (!got && code == grpc::StatusCode::UNAVAILABLE);
    if (again && Clock::now() + delay < p.deadline) {
      ++r->retries;
      std::this_thread::sleep_for(delay * jitter(rng));
      delay = std::min<std::chrono::duration<double>>(delay * 2, kLongestRetry);
      // Not connected: a connection made from a source address is not
      // made again by gRPC.
      if (!got && code == grpc::StatusCode::UNAVAILABLE) {
        stream.reset();
        ctx.reset();
        stub.reset();
        channel = Connect(p.target, source, args);
        if (channel != nullptr) stub = v1::IngestService::NewStub(channel);
      }
      continue;
    }
    r->error = in.has_error() ? in.error().message() : "no welcome";
    r->error += " / " + st.error_message();
    return;
  }
  r->welcomed_after = Seconds(p.start, Clock::now());
  uint64_t window = p.window;
  if (in.welcome().max_inflight_bytes() > 0) {
    window = std::min<uint64_t>(window, in.welcome().max_inflight_bytes());
  }
  uint32_t chunk_limit = p.chunk_bytes;
  if (in.welcome().max_chunk_bytes() > 0) {
    chunk_limit = std::min(chunk_limit, in.welcome().max_chunk_bytes());
  }
  // Batching asked in the welcome, as the agent's uplink honours it: at a
  // set rate, hold new bytes until batch_bytes are there (up to the largest
  // chunk the welcome allows) or the oldest waited batch_delay_ms.
  const Batching batching = BatchingOf(in.welcome(), p.bytes_per_sec);
  const uint64_t files = (p.total_bytes + ring.size() - 1) / ring.size();
  v1::AgentMessage status;
  auto* s = status.mutable_status();
  s->set_id(id);
  s->set_node(p.node);
  s->set_namespace_("bench");
  s->set_pod(pod);
  s->set_pod_uid(std::string(uid) + "-0000-0000-0000-000000000000");
  s->set_pod_ip("198.18.0.1");
  s->set_interface("eth0");
  const uint32_t max_files =
      static_cast<uint32_t>(std::max<uint64_t>(files, 1));
  s->set_max_files(max_files);
  s->set_state(v1::Capture::RUNNING);
  s->set_on_node(true);  // as an agent reports a capture it runs
  s->set_annotation(std::to_string(max_files));
  s->mutable_start_time()->set_seconds(start_ms / 1000);
  if (!stream->Write(status)) {
    r->error = "status not sent";
    return;
  }

  std::mutex mu;
  std::condition_variable cv;
  uint64_t inflight = 0;
  bool reader_done = false;
  std::thread reader([&] {
    v1::AggregatorMessage m;
    // Acks are cumulative per file: track the last offset of each file.
    std::string last_file;
    uint64_t last_offset = 0;
    while (stream->Read(&m)) {
      if (m.has_error()) {
        std::lock_guard<std::mutex> lock(mu);
        r->error = m.error().message();
        continue;
      }
      if (!m.has_ack()) continue;
      const std::string key =
          m.ack().file() + "#" + std::to_string(m.ack().file_generation());
      uint64_t delta;
      if (key != last_file) {
        last_file = key;
        last_offset = 0;
      }
      delta =
          m.ack().offset() > last_offset ? m.ack().offset() - last_offset : 0;
      last_offset = std::max(last_offset, m.ack().offset());
      std::lock_guard<std::mutex> lock(mu);
      r->acked += delta;
      ++r->chunks;
      inflight -= std::min(inflight, delta);
      cv.notify_all();
    }
    std::lock_guard<std::mutex> lock(mu);
    reader_done = true;
    cv.notify_all();
  });

  const std::string run = "run-1-w" + std::to_string(max_files);
  const Clock::time_point t0 = Clock::now();
  uint64_t sent = 0;
  bool ok = true;
  for (uint64_t f = 0; f < files && ok; ++f) {
    uint64_t off = 0;
    while (off < ring.size() && sent < p.total_bytes) {
      // The uplink cuts at complete records: header + whole records only.
      uint64_t want = std::min<uint64_t>(chunk_limit, ring.size() - off);
      Clock::time_point send_at = t0;
      if (batching.on) {
        want = std::min<uint64_t>(batching.bytes, ring.size() - off);
        send_at = BatchSendTime(batching, t0, p.bytes_per_sec, sent, &want);
      }
      uint64_t cut;
      if (off == 0) {
        cut = 24 + ((want - 24) / (16 + kPacketBytes)) * (16 + kPacketBytes);
      } else {
        cut = (want / (16 + kPacketBytes)) * (16 + kPacketBytes);
      }
      if (cut == 0) cut = want;
      {
        std::unique_lock<std::mutex> lock(mu);
        cv.wait(lock, [&] {
          return inflight + cut <= window || inflight == 0 || reader_done;
        });
        if (reader_done || !r->error.empty() || Clock::now() > p.deadline) {
          ok = false;
          break;
        }
        inflight += cut;
      }
      if (batching.on) {
        std::this_thread::sleep_until(send_at);
      } else if (p.bytes_per_sec > 0) {
        const auto due =
            t0 + std::chrono::duration_cast<Clock::duration>(
                     std::chrono::duration<double>(static_cast<double>(sent) /
                                                   p.bytes_per_sec));
        std::this_thread::sleep_until(due);
      }
      v1::AgentMessage m;
      auto* c = m.mutable_chunk();
      c->set_capture_id(id);
      // tcpdump's names: zero-padded to the digits of max_files - 1.
      char ring_name[32];
      std::snprintf(ring_name, sizeof ring_name, "ring%0*llu",
                    static_cast<int>(std::to_string(max_files - 1).size()),
                    static_cast<unsigned long long>(f));
      c->set_file(run + "/" +
                  (max_files == 1 ? std::string("ring") : ring_name));
      c->set_file_generation(0);
      c->set_offset(off);
      std::string data = ring.substr(off, cut);
      c->set_crc32c(pc::Crc32c(data));
      c->set_packets(
          static_cast<uint32_t>(off == 0 ? (cut - 24) / (16 + kPacketBytes)
                                         : cut / (16 + kPacketBytes)));
      c->set_data(std::move(data));
      if (!stream->Write(m)) {
        ok = false;
        break;
      }
      off += cut;
      sent += cut;
    }
  }
  {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait_until(lock, Clock::now() + std::chrono::seconds(30),
                  [&] { return inflight == 0 || reader_done; });
    if (ok && inflight == 0 && r->error.empty()) {
      r->done_after = Seconds(p.start, Clock::now());
    }
  }
  stream->WritesDone();
  reader.join();
  grpc::Status st = stream->Finish();
  if (!st.ok() && r->error.empty()) r->error = st.error_message();
}

int Ingest(int argc, char** argv) {
  if (argc != 10) return 2;
  const int streams = std::atoi(argv[5]);
  const std::string token_dir = argv[3];
  IngestParams base;
  base.target = argv[2];
  base.total_bytes = std::strtoull(argv[6], nullptr, 10) << 20;
  base.bytes_per_sec = std::strtoull(argv[7], nullptr, 10) * 1024;
  base.chunk_bytes = static_cast<uint32_t>(std::strtoul(argv[8], nullptr, 10));
  base.window = std::strtoull(argv[9], nullptr, 10);
  const std::string ring = MakeRingFile(7);
  std::vector<IngestParams> params(streams, base);
  for (int i = 0; i < streams; ++i) {
    IngestParams& p = params[i];
    p.index = i;
    p.node = streams == 1 ? std::string(argv[4])
                          : std::string(argv[4]) + std::to_string(i);
    const std::string path = token_dir + "/" + p.node + ".token";
    std::ifstream f(path);
    p.token.assign(std::istreambuf_iterator<char>(f),
                   std::istreambuf_iterator<char>());
    while (!p.token.empty() &&
           (p.token.back() == '\n' || p.token.back() == '\r')) {
      p.token.pop_back();
    }
    if (!f || p.token.empty()) {
      std::fprintf(stderr, "ingest_bench: no token in %s\n", path.c_str());
      return 1;
    }
  }
  std::vector<StreamResult> results(streams);
  std::vector<std::thread> threads;
  const Clock::time_point t0 = Clock::now();
  for (IngestParams& p : params) {
    p.start = t0;
    p.deadline = t0 + std::chrono::seconds(600);
    threads.emplace_back(RunAgent, p, std::cref(ring), &results[p.index]);
  }
  for (auto& t : threads) t.join();
  const double secs = Seconds(t0, Clock::now());
  uint64_t acked = 0, chunks = 0;
  int failed = 0, retries = 0, max_retries = 0;
  double last_welcome = 0;
  double first_done = -1;  // -1: no stream had all its bytes acked
  for (const auto& r : results) {
    acked += r.acked;
    chunks += r.chunks;
    retries += r.retries;
    max_retries = std::max(max_retries, r.retries);
    last_welcome = std::max(last_welcome, r.welcomed_after);
    if (r.done_after >= 0 && (first_done < 0 || r.done_after < first_done)) {
      first_done = r.done_after;
    }
    if (!r.error.empty()) {
      ++failed;
      if (failed <= 3)
        std::fprintf(stderr, "stream error: %s\n", r.error.c_str());
    }
  }
  std::printf(
      "acked_bytes %llu chunks %llu seconds %.3f mbps %.1f failed %d retries "
      "%d max_retries %d last_welcome %.3f first_done %.3f\n",
      static_cast<unsigned long long>(acked),
      static_cast<unsigned long long>(chunks), secs, acked / secs / 1e6, failed,
      retries, max_retries, last_welcome, first_done);
  for (const auto& r : results)
    std::printf("capture %s\n", r.capture_id.c_str());
  return failed == 0 ? 0 : 1;
}

// A CaptureService client for the download and follow modes.
std::unique_ptr<v1::CaptureService::Stub> CaptureStub(
    const std::string& target) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  return v1::CaptureService::NewStub(grpc::CreateCustomChannel(
      target, grpc::InsecureChannelCredentials(), args));
}

int Download(int argc, char** argv) {
  if (argc != 4) return 2;
  auto stub = CaptureStub(argv[2]);
  grpc::ClientContext ctx;
  v1::DownloadCaptureRequest req;
  req.set_id(argv[3]);
  const Clock::time_point t0 = Clock::now();
  auto reader = stub->DownloadCapture(&ctx, req);
  v1::DownloadCaptureResponse m;
  uint64_t bytes = 0, messages = 0, max_message = 0;
  while (reader->Read(&m)) {
    bytes += m.data().size();
    max_message = std::max<uint64_t>(max_message, m.data().size());
    ++messages;
  }
  grpc::Status st = reader->Finish();
  const double secs = Seconds(t0, Clock::now());
  std::printf(
      "bytes %llu messages %llu max_message %llu seconds %.3f mbps %.1f status "
      "%s\n",
      static_cast<unsigned long long>(bytes),
      static_cast<unsigned long long>(messages),
      static_cast<unsigned long long>(max_message), secs, bytes / secs / 1e6,
      st.ok() ? "OK" : st.error_message().c_str());
  return st.ok() ? 0 : 1;
}

int Follow(int argc, char** argv) {
  if (argc != 4) return 2;
  auto stub = CaptureStub(argv[2]);
  grpc::ClientContext ctx;
  v1::DownloadCaptureRequest req;
  req.set_id(argv[3]);
  req.set_follow(true);
  auto reader = stub->DownloadCapture(&ctx, req);
  v1::DownloadCaptureResponse m;
  std::string buf;
  bool header_done = false;
  std::printf("following\n");
  std::fflush(stdout);
  while (reader->Read(&m)) {
    timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    buf += m.data();
    size_t pos = 0;
    if (!header_done) {
      if (buf.size() < 24) continue;
      pos = 24;
      header_done = true;
    }
    while (buf.size() - pos >= 16) {
      uint32_t caplen;
      std::memcpy(&caplen, buf.data() + pos + 8, 4);
      if (buf.size() - pos - 16 < caplen) break;
      const std::string rec = buf.substr(pos + 16, caplen);
      const size_t at = rec.find("PCFLOOD1");
      if (at != std::string::npos && at + 16 <= rec.size()) {
        uint64_t seq = 0;
        for (int i = 0; i < 8; ++i) {
          seq = (seq << 8) | static_cast<unsigned char>(rec[at + 8 + i]);
        }
        std::printf("seq %llu %.6f\n", static_cast<unsigned long long>(seq),
                    now.tv_sec + now.tv_nsec / 1e9);
        std::fflush(stdout);
      }
      pos += 16 + caplen;
    }
    buf.erase(0, pos);
  }
  grpc::Status st = reader->Finish();
  std::printf("end %s\n", st.ok() ? "OK" : st.error_message().c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // As the aggregator and the agent do: Debian's abseil checks every Mutex
  // acquisition for lock-order cycles (a global graph, under a global lock),
  // gRPC's own locks included. A peer that kept it would be slowed by it.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  int rc = 2;
  const std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "null-server") rc = pc::bench::NullServer(argc, argv);
  if (mode == "null-writer") rc = pc::bench::NullWriter(argc, argv);
  if (mode == "null-putter") rc = pc::bench::NullPutter(argc, argv);
  if (mode == "ingest") rc = Ingest(argc, argv);
  if (mode == "download") rc = Download(argc, argv);
  if (mode == "follow") rc = Follow(argc, argv);
  if (rc == 2)
    std::fprintf(stderr,
                 "usage: see the comment at the top of ingest_bench.cc\n");
  return rc;
}
