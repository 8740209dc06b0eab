#include "node_agent/uplink.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <optional>
#include <sstream>
#include <tuple>
#include <vector>

#include "absl/random/random.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/capture_layout.h"
#include "common/crc32c.h"
#include "common/kube/backoff.h"
#include "common/log.h"
#include "common/time_proto.h"

namespace pc::agent {
namespace {

using packetcapture::v1::AgentMessage;
using packetcapture::v1::AggregatorMessage;
using CaptureProto = packetcapture::v1::Capture;

// Status updates that only move the upload counters are sent at most this
// often.
constexpr absl::Duration kCounterInterval = absl::Seconds(1);
// A connection that lasted this long resets the backoff.
constexpr absl::Duration kHealthyConnection = absl::Seconds(30);

// "run-<k>-w<N>/ring<digits>": the only names the uplink opens.
bool SafeFileName(const std::string& name) {
  std::vector<std::string> parts = absl::StrSplit(name, '/');
  int run, n;
  if (parts.size() != 2 || !ParseRunDirName(parts[0], &run, &n)) return false;
  const std::string& ring = parts[1];
  if (ring.compare(0, 4, "ring") != 0 || ring.size() > 10) return false;
  for (size_t i = 4; i < ring.size(); ++i) {
    if (ring[i] < '0' || ring[i] > '9') return false;
  }
  return true;
}

absl::StatusOr<std::string> ReadToken(const std::string& path) {
  std::ifstream in(path);
  if (!in)
    return absl::NotFoundError(absl::StrCat("cannot read token file ", path));
  std::stringstream text;
  text << in.rdbuf();
  std::string token(absl::StripAsciiWhitespace(text.str()));
  if (token.empty())
    return absl::NotFoundError(absl::StrCat("token file ", path, " is empty"));
  return token;
}

// pread that retries on EINTR and short reads; returns the bytes read.
size_t PreadAll(int fd, char* buf, size_t n, uint64_t offset) {
  size_t done = 0;
  while (done < n) {
    const ssize_t r =
        pread(fd, buf + done, n - done, static_cast<off_t>(offset + done));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    done += static_cast<size_t>(r);
  }
  return done;
}

std::string RandomInstance() {
  absl::BitGen gen;
  return absl::StrFormat("%016x", absl::Uniform<uint64_t>(gen));
}

}  // namespace

Uplink::HeldFd& Uplink::HeldFd::operator=(HeldFd&& other) noexcept {
  if (this != &other) reset(other.release());
  return *this;
}

Uplink::HeldFd::~HeldFd() { reset(-1); }

void Uplink::HeldFd::reset(int fd) {
  if (fd_ >= 0) close(fd_);
  fd_ = fd;
}

int Uplink::HeldFd::release() {
  const int fd = fd_;
  fd_ = -1;
  return fd;
}

struct Uplink::Connection {
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<packetcapture::v1::IngestService::Stub> stub;
  grpc::ClientContext context;
  std::unique_ptr<grpc::ClientReaderWriter<AgentMessage, AggregatorMessage>>
      stream;
  std::thread reader;
  absl::Time welcomed_at;
};

Uplink::Uplink(UplinkOptions options, CaptureRegistry* registry)
    : options_(std::move(options)), registry_(registry) {}

Uplink::~Uplink() { Stop(); }

void Uplink::Start() {
  subscription_ = registry_->Subscribe(
      [this](const CaptureRegistry::Event& event) {
        absl::MutexLock lock(&mu_);
        const std::string& id = event.capture().id();
        switch (event.type()) {
          case packetcapture::v1::CaptureEvent::ADDED:
          case packetcapture::v1::CaptureEvent::MODIFIED:
            changed_[id] = event.capture();
            deleted_.erase(id);
            break;
          case packetcapture::v1::CaptureEvent::DELETED:
            changed_.erase(id);
            deleted_.insert(id);
            break;
          default:
            return;
        }
        wake_ = true;
      },
      /*initial=*/true);
  thread_ = std::thread([this] { Run(); });
}

void Uplink::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (stop_ && !thread_.joinable()) return;
    stop_ = true;
    if (live_context_ != nullptr) live_context_->TryCancel();
  }
  if (thread_.joinable()) thread_.join();
  if (subscription_ != 0) {
    registry_->Unsubscribe(subscription_);
    subscription_ = 0;
  }
}

Uplink::Stats Uplink::stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

uint64_t Uplink::Inflight() const {
  uint64_t total = 0;
  for (const auto& [id, c] : captures_) {
    for (const auto& [name, f] : c.files) total += f.sent - f.acked;
  }
  return total;
}

bool Uplink::WaitForWork(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  mu_.AwaitWithTimeout(absl::Condition(
                           +[](Uplink* u) ABSL_EXCLUSIVE_LOCKS_REQUIRED(
                                u->mu_) { return u->wake_ || u->stop_; },
                           this),
                       timeout);
  wake_ = false;
  return !stop_;
}

void Uplink::Run() {
  kube::Backoff backoff(options_.initial_backoff, options_.max_backoff, 0.2,
                        absl::Uniform<uint64_t>(absl::BitGen()));
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      if (stop_) return;
    }
    TakeRegistryChanges();
    std::unique_ptr<Connection> conn = Connect();
    absl::Status why = connect_error_;
    bool healthy = false;
    if (conn != nullptr) {
      why = Serve(conn.get());
      healthy = absl::Now() - conn->welcomed_at >= kHealthyConnection;
    }
    if (conn != nullptr) {
      conn->context.TryCancel();
      if (conn->reader.joinable()) conn->reader.join();
      grpc::Status finished = conn->stream->Finish();
      if (!finished.ok() &&
          finished.error_code() != grpc::StatusCode::CANCELLED) {
        why = absl::Status(static_cast<absl::StatusCode>(finished.error_code()),
                           finished.error_message());
      }
      absl::MutexLock lock(&mu_);
      live_context_ = nullptr;
      inbox_.clear();
    }
    // Whatever was sent and not acknowledged is sent again next time.
    for (auto& [id, c] : captures_) {
      for (auto& [name, f] : c.files) f.sent = f.acked;
    }
    {
      absl::MutexLock lock(&mu_);
      if (stop_) return;
      stats_.last_error = why.ToString();
    }
    if (healthy) backoff.Reset();
    const absl::Duration delay = backoff.Next();
    LogLine("uplink_disconnected", {{"aggregator", options_.aggregator},
                                    {"reason", why.ToString()},
                                    {"retry_in", absl::FormatDuration(delay)}});
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(&stop_), delay);
  }
}

std::unique_ptr<Uplink::Connection> Uplink::Connect() {
  auto fail =
      [this](const absl::Status& status) -> std::unique_ptr<Connection> {
    connect_error_ = status;
    return nullptr;
  };
  connect_error_ = absl::CancelledError("uplink stopping");
  auto token = ReadToken(options_.token_file);
  if (!token.ok()) return fail(token.status());

  auto conn = std::make_unique<Connection>();
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(8 << 20);
  conn->channel = grpc::CreateCustomChannel(
      options_.aggregator, grpc::InsecureChannelCredentials(), args);
  conn->stub = packetcapture::v1::IngestService::NewStub(conn->channel);
  {
    absl::MutexLock lock(&mu_);
    if (stop_) return nullptr;
    live_context_ = &conn->context;
    reader_done_ = false;
    inbox_.clear();
  }
  auto clear_context = [this] {
    absl::MutexLock lock(&mu_);
    live_context_ = nullptr;
  };
  conn->stream = conn->stub->Report(&conn->context);

  AgentMessage hello;
  auto* h = hello.mutable_hello();
  h->set_node(options_.node);
  static const std::string* instance = new std::string(RandomInstance());
  h->set_agent_instance(*instance);
  h->set_token(*token);
  h->set_agent_version(options_.agent_version);
  std::set<std::string> ids;
  for (const auto& c : registry_->List()) {
    if (IsValidCaptureId(c.id())) ids.insert(c.id());
  }
  for (const auto& [id, c] : captures_) {
    if (c.draining()) ids.insert(id);  // still uploading: resume points wanted
  }
  for (const auto& id : ids) h->add_capture_ids(id);
  if (!conn->stream->Write(hello)) {
    conn->context.TryCancel();
    grpc::Status s = conn->stream->Finish();
    clear_context();
    return fail(absl::UnavailableError(
        absl::StrCat("hello not sent: ", s.error_message())));
  }
  Connection* raw = conn.get();
  conn->reader = std::thread([this, raw] {
    AggregatorMessage message;
    while (raw->stream->Read(&message)) {
      absl::MutexLock lock(&mu_);
      inbox_.push_back(std::move(message));
      wake_ = true;
    }
    absl::MutexLock lock(&mu_);
    reader_done_ = true;
    wake_ = true;
  });

  // The welcome, or the reason there is none.
  absl::Status why =
      absl::DeadlineExceededError("no welcome from the aggregator");
  const absl::Time deadline = absl::Now() + options_.welcome_timeout;
  std::optional<packetcapture::v1::Welcome> welcome;
  {
    absl::MutexLock lock(&mu_);
    while (!welcome && !stop_ && absl::Now() < deadline) {
      mu_.AwaitWithDeadline(
          absl::Condition(
              +[](Uplink* u) ABSL_EXCLUSIVE_LOCKS_REQUIRED(u->mu_) {
                return !u->inbox_.empty() || u->reader_done_ || u->stop_;
              },
              this),
          deadline);
      if (!inbox_.empty()) {
        AggregatorMessage m = std::move(inbox_.front());
        inbox_.pop_front();
        if (m.has_welcome()) {
          welcome = m.welcome();
        } else if (m.has_error()) {
          why = absl::Status(static_cast<absl::StatusCode>(m.error().code()),
                             m.error().message());
          break;
        }
      } else if (reader_done_) {
        why = absl::UnavailableError("stream ended before the welcome");
        break;
      }
    }
  }
  if (!welcome) {
    conn->context.TryCancel();
    conn->reader.join();
    grpc::Status s = conn->stream->Finish();
    clear_context();
    if (why.code() == absl::StatusCode::kDeadlineExceeded && !s.ok() &&
        s.error_code() != grpc::StatusCode::CANCELLED) {
      why = absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                         s.error_message());
    }
    return fail(why);
  }

  resume_.clear();
  for (const auto& p : welcome->resume()) {
    resume_[{p.capture_id(), p.file(), p.file_generation()}] = p.offset();
  }
  inflight_limit_ =
      std::max<uint64_t>(welcome->max_inflight_bytes(), 64 * 1024);
  chunk_limit_ =
      std::min(options_.max_chunk_bytes, welcome->max_chunk_bytes() > 0
                                             ? welcome->max_chunk_bytes()
                                             : options_.max_chunk_bytes);
  // The aggregator's resume points are authoritative.
  for (auto& [id, c] : captures_) {
    for (auto& [name, f] : c.files) {
      if (f.generation == 0) continue;
      auto it = resume_.find({id, name, f.generation});
      f.acked = f.sent = it == resume_.end() ? 0 : it->second;
    }
    c.status_dirty = true;
  }
  tombstones_.clear();  // the hello's capture list tells the aggregator
  conn->welcomed_at = absl::Now();
  {
    absl::MutexLock lock(&mu_);
    ++stats_.connects;
    stats_.inflight_limit = inflight_limit_;
  }
  LogLine("uplink_connected",
          {{"aggregator", options_.aggregator},
           {"aggregator_instance", welcome->aggregator_instance()},
           {"resume_points", absl::StrCat(welcome->resume_size())}});
  return conn;
}

void Uplink::TakeRegistryChanges() {
  std::map<std::string, CaptureProto> changed;
  std::set<std::string> deleted;
  {
    absl::MutexLock lock(&mu_);
    changed.swap(changed_);
    deleted.swap(deleted_);
  }
  for (auto& [id, status] : changed) {
    if (!IsValidCaptureId(id)) continue;
    CaptureState& c = captures_[id];
    c.drain_until = absl::InfiniteFuture();  // back (a relist): not stopped
    c.status = status;
    c.status_dirty = true;
    std::set<std::string> listed;
    for (const auto& file : status.files()) {
      if (!SafeFileName(file.name())) continue;
      listed.insert(file.name());
      FileState& f = c.files[file.name()];
      if (f.path.empty()) {
        f.path = absl::StrCat(options_.capture_dir, "/", id, "/", file.name());
      }
    }
    for (auto it = c.files.begin(); it != c.files.end();) {
      if (listed.count(it->first)) {
        ++it;
        continue;
      }
      Retire(&c, it->second);
      it = c.files.erase(it);
    }
  }
  const absl::Time now = absl::Now();
  for (const std::string& id : deleted) {
    auto it = captures_.find(id);
    if (it == captures_.end() || it->second.draining()) continue;
    it->second.drain_until = now + options_.drain_timeout;
    it->second.status_dirty = false;  // its next status is the final one
  }
  FinishDrains(now);
}

void Uplink::Retire(CaptureState* c, const FileState& f) {
  if (f.seen > f.acked) {
    c->lost += f.seen - f.acked;
    absl::MutexLock lock(&mu_);
    stats_.bytes_lost += f.seen - f.acked;
  }
  c->uploaded_before += f.acked;
}

void Uplink::FinishDrains(absl::Time now) {
  for (auto it = captures_.begin(); it != captures_.end();) {
    CaptureState& c = it->second;
    if (!c.draining()) {
      ++it;
      continue;
    }
    // Complete: tcpdump is gone (the agent deletes the files only after it
    // exited), every file was read to its end and all of it acknowledged.
    bool complete = true;
    for (const auto& [name, f] : c.files) {
      if (f.fd.get() >= 0 && !(f.unlinked && f.idle && f.acked >= f.sent))
        complete = false;
    }
    if (!complete && now < c.drain_until) {
      ++it;
      continue;
    }
    const std::string& id = it->first;
    for (const auto& [name, f] : c.files) Retire(&c, f);
    LogLine("uplink_drained",
            {{"capture", id},
             {"complete", complete ? "true" : "false"},
             {"bytes_uploaded", absl::StrCat(c.uploaded_before)},
             {"bytes_lost", absl::StrCat(c.lost)}});
    if (complete) {
      absl::MutexLock lock(&mu_);
      ++stats_.captures_drained;
    }
    CaptureProto tomb = c.status;
    tomb.set_state(CaptureProto::STOPPED);
    tomb.set_on_node(false);
    tomb.set_message(
        "stopped: annotation removed or pod gone; node files deleted");
    if (!tomb.has_stop_time()) *tomb.mutable_stop_time() = ToProto(absl::Now());
    *tomb.mutable_update_time() = ToProto(absl::Now());
    tomb.set_bytes_uploaded(c.uploaded_before);
    tomb.set_bytes_lost(tomb.bytes_lost() + c.lost);
    tomb.clear_files();
    tombstones_[id] = std::move(tomb);
    it = captures_.erase(it);
  }
}

void Uplink::HandleAck(const packetcapture::v1::Ack& ack) {
  auto c = captures_.find(ack.capture_id());
  if (c == captures_.end()) return;
  auto f = c->second.files.find(ack.file());
  if (f == c->second.files.end() ||
      f->second.generation != ack.file_generation()) {
    return;  // a generation the ring has overwritten since
  }
  FileState& file = f->second;
  if (ack.offset() > file.acked) {
    absl::MutexLock lock(&mu_);
    stats_.bytes_acked += ack.offset() - file.acked;
    file.acked = ack.offset();
  }
  if (file.acked > file.sent) file.sent = file.acked;
}

absl::Status Uplink::SendStatuses(Connection* conn, bool force) {
  for (auto& [id, tomb] : tombstones_) {
    AgentMessage m;
    *m.mutable_status() = tomb;
    if (!conn->stream->Write(m))
      return absl::UnavailableError("status not sent");
  }
  tombstones_.clear();
  const absl::Time now = absl::Now();
  for (auto& [id, c] : captures_) {
    if (c.draining()) continue;  // its final status follows the drain
    uint64_t uploaded = c.uploaded_before;
    for (const auto& [name, f] : c.files) uploaded += f.acked;
    const bool counters =
        uploaded != c.reported_uploaded || c.lost != c.reported_lost;
    if (!force && !c.status_dirty &&
        !(counters && now - c.status_sent >= kCounterInterval)) {
      continue;
    }
    AgentMessage m;
    CaptureProto* s = m.mutable_status();
    *s = c.status;
    s->set_bytes_uploaded(uploaded);
    s->set_bytes_lost(c.status.bytes_lost() + c.lost);
    for (auto& file : *s->mutable_files()) {
      auto f = c.files.find(file.name());
      if (f != c.files.end() && f->second.generation != 0) {
        file.set_generation(f->second.generation);
      }
    }
    if (!conn->stream->Write(m))
      return absl::UnavailableError("status not sent");
    c.status_dirty = false;
    c.status_sent = now;
    c.reported_uploaded = uploaded;
    c.reported_lost = c.lost;
  }
  return absl::OkStatus();
}

absl::StatusOr<bool> Uplink::PumpFile(Connection* conn, const std::string& id,
                                      CaptureState* capture,
                                      const std::string& name,
                                      FileState* file) {
  file->idle = true;
  if (file->fd.get() < 0) {
    const int opened = open(file->path.c_str(), O_RDONLY | O_CLOEXEC);
    if (opened < 0)
      return false;  // not there yet, or pruned: the status will say
    file->fd.reset(opened);
  }
  const int fd = file->fd.get();
  struct stat st;
  if (fstat(fd, &st) != 0) return false;
  file->unlinked = st.st_nlink == 0;
  char head[pcap::kGlobalHeaderSize + pcap::kRecordHeaderSize];
  if (PreadAll(fd, head, sizeof(head), 0) < sizeof(head)) return false;
  auto header = pcap::ParseGlobalHeader(absl::string_view(head, sizeof(head)));
  if (!header.ok()) return false;
  auto first = pcap::DecodeRecordHeader(
      *header, absl::string_view(head + pcap::kGlobalHeaderSize,
                                 pcap::kRecordHeaderSize));
  if (!first.ok()) return false;
  const uint64_t generation = static_cast<uint64_t>(
      absl::ToUnixNanos(first->Timestamp(header->precision)));
  if (generation == 0) return false;
  if (file->generation != generation) {
    if (file->generation != 0) {
      // tcpdump reused the slot: what was not acknowledged is gone.
      const uint64_t lost =
          file->seen > file->acked ? file->seen - file->acked : 0;
      capture->lost += lost;
      capture->uploaded_before += file->acked;
      capture->status_dirty = true;
      {
        absl::MutexLock lock(&mu_);
        stats_.bytes_lost += lost;
      }
      if (lost > 0) {
        LogLine("uplink_ring_overwrote", {{"capture", id},
                                          {"file", name},
                                          {"bytes_lost", absl::StrCat(lost)}});
      }
    }
    file->generation = generation;
    file->header = *header;
    auto it = resume_.find({id, name, generation});
    file->acked = file->sent = it == resume_.end() ? 0 : it->second;
    file->seen = 0;
  }
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  file->seen = std::max(file->seen, size);
  if (size <= file->sent) return false;
  const uint64_t inflight = Inflight();
  if (inflight >= inflight_limit_) {
    file->idle = false;  // more to send once acks come
    return false;
  }
  const uint64_t want = std::min<uint64_t>(
      {chunk_limit_, inflight_limit_ - inflight, size - file->sent});
  std::string data(static_cast<size_t>(want), '\0');
  data.resize(PreadAll(fd, data.data(), data.size(), file->sent));
  size_t cut;
  uint32_t packets;
  if (file->sent == 0) {
    if (data.size() < pcap::kGlobalHeaderSize) return false;
    const pcap::ScanResult scan = pcap::ScanRecords(
        file->header, absl::string_view(data).substr(pcap::kGlobalHeaderSize));
    if (scan.records == 0) return false;
    cut = pcap::kGlobalHeaderSize + scan.complete_bytes;
    packets = static_cast<uint32_t>(scan.records);
  } else {
    const pcap::ScanResult scan = pcap::ScanRecords(file->header, data);
    if (scan.records == 0) return false;
    cut = scan.complete_bytes;
    packets = static_cast<uint32_t>(scan.records);
  }
  data.resize(cut);
  AgentMessage m;
  auto* chunk = m.mutable_chunk();
  chunk->set_capture_id(id);
  chunk->set_file(name);
  chunk->set_file_generation(generation);
  chunk->set_offset(file->sent);
  chunk->set_crc32c(Crc32c(data));
  chunk->set_packets(packets);
  chunk->set_data(std::move(data));
  if (!conn->stream->Write(m)) return absl::UnavailableError("chunk not sent");
  file->sent += cut;
  file->idle = false;
  absl::MutexLock lock(&mu_);
  ++stats_.chunks_sent;
  stats_.bytes_sent += cut;
  stats_.max_inflight = std::max(stats_.max_inflight, inflight + cut);
  return true;
}

absl::Status Uplink::Serve(Connection* conn) {
  bool force = true;
  for (;;) {
    std::deque<AggregatorMessage> inbox;
    bool reader_done;
    {
      absl::MutexLock lock(&mu_);
      if (stop_) return absl::CancelledError("uplink stopping");
      inbox.swap(inbox_);
      reader_done = reader_done_;
    }
    for (const auto& m : inbox) {
      if (m.has_ack()) {
        HandleAck(m.ack());
      } else if (m.has_error()) {
        return absl::Status(static_cast<absl::StatusCode>(m.error().code()),
                            m.error().message());
      }
    }
    if (reader_done)
      return absl::UnavailableError("aggregator closed the stream");
    TakeRegistryChanges();
    absl::Status sent = SendStatuses(conn, force);
    if (!sent.ok()) return sent;
    force = false;
    bool progress = false;
    for (auto& [id, c] : captures_) {
      // Ring order (the status lists files oldest first).
      for (const auto& listed : c.status.files()) {
        auto f = c.files.find(listed.name());
        if (f == c.files.end()) continue;
        auto pumped = PumpFile(conn, id, &c, f->first, &f->second);
        if (!pumped.ok()) return pumped.status();
        progress |= *pumped;
      }
    }
    FinishDrains(absl::Now());
    if (!progress && !WaitForWork(options_.poll_interval)) {
      return absl::CancelledError("uplink stopping");
    }
  }
}

}  // namespace pc::agent
