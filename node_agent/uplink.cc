#include "node_agent/uplink.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
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

// Status updates (and served-view updates) that only move the upload
// counter are sent at most this often.
constexpr absl::Duration kCounterInterval = absl::Seconds(1);
// A connection that lasted this long resets the backoff.
constexpr absl::Duration kHealthyConnection = absl::Seconds(30);

// The configured replicas (validated by ValidateAgentConfig; taken as one
// address when they do not parse, so the error shows at connection time).
std::vector<std::string> AggregatorList(const std::string& text) {
  absl::StatusOr<std::vector<std::string>> list = ParseAggregatorList(text);
  if (list.ok()) return *std::move(list);
  return {text};
}
// In <capture_dir>/<id>/: "lost <n>\nuploaded <n>\n".
constexpr char kCountersFile[] = "uplink-counters";

constexpr char kLowerBound[] =
    "bytes_lost is a lower bound: some ring reuses could not be counted";

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

uint64_t Uplink::CaptureState::lost() const {
  uint64_t total = prior_lost + retired_lost;
  for (const auto& [name, f] : files) total += f.ledger.lost();
  return total;
}

uint64_t Uplink::CaptureState::uploaded() const {
  uint64_t total = prior_uploaded + retired_uploaded;
  for (const auto& [name, f] : files) total += f.ledger.uploaded();
  return total;
}

uint64_t Uplink::CaptureState::uploaded_gone() const {
  uint64_t total = prior_uploaded + retired_uploaded;
  for (const auto& [name, f] : files) total += f.ledger.uploaded_gone();
  return total;
}

Uplink::Uplink(UplinkOptions options, CaptureRegistry* registry,
               CaptureRegistry* served)
    : options_(std::move(options)),
      registry_(registry),
      targets_(AggregatorList(options_.aggregator)) {
  if (served != nullptr) view_ = std::make_unique<StatusView>(served);
}

Uplink::~Uplink() { Stop(); }

void Uplink::Start() {
  auto wake = [this] {
    absl::MutexLock lock(&mu_);
    wake_ = true;
  };
  auto ring = RingWatch::Create(options_.capture_dir, wake);
  if (ring.ok()) {
    ring_ = std::move(*ring);
  } else {
    LogLine("uplink_ring_watch_unavailable",
            {{"capture_dir", options_.capture_dir},
             {"error", ring.status().ToString()},
             {"effect", kLowerBound}});
  }
  subscription_ = registry_->Subscribe(
      [this](const CaptureRegistry::Event& event) {
        {
          absl::MutexLock lock(&mu_);
          const std::string& id = event.capture().id();
          switch (event.type()) {
            case packetcapture::v1::CaptureEvent::ADDED:
            case packetcapture::v1::CaptureEvent::MODIFIED:
              changed_[id] = event.capture();
              deleted_.erase(id);
              wake_ = true;
              break;
            case packetcapture::v1::CaptureEvent::DELETED:
              // A change not yet taken stays: it is the capture's last
              // status (STOPPED with its stop_reason), taken before the
              // deletion.
              deleted_.insert(id);
              wake_ = true;
              break;
            default:
              break;
          }
        }
        if (view_) view_->OnSourceEvent(event);
      },
      /*initial=*/true);
  thread_ = std::thread([this] { Run(); });
}

void Uplink::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (stop_ && !thread_.joinable()) return;
    stop_ = true;
    if (live_ != nullptr) live_->Cancel();
  }
  if (thread_.joinable()) {
    thread_.join();
    // The uplink thread is gone: its state is this thread's now.
    for (auto& [id, c] : captures_) {
      if (!c.draining()) SaveCounters(id, &c);
    }
  }
  if (subscription_ != 0) {
    registry_->Unsubscribe(subscription_);
    subscription_ = 0;
  }
  ring_.reset();
}

void Uplink::MarkInventorySynced() {
  absl::MutexLock lock(&mu_);
  synced_ = true;
  wake_ = true;
}

Uplink::Stats Uplink::stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

bool Uplink::stopping() const {
  absl::MutexLock lock(&mu_);
  return stop_;
}

uint64_t Uplink::Inflight() const {
  uint64_t total = 0;
  for (const auto& [id, c] : captures_) {
    for (const auto& [name, f] : c.files)
      total += f.ledger.sent() - f.ledger.acked();
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
    if (stopping()) return;
    Housekeep();
    address_ = targets_.Next();
    std::unique_ptr<IngestStream> stream = Connect();
    std::string redirect = RedirectOf(connect_error_);
    // Without the payload: `why` goes into logs and stats.
    absl::Status why(connect_error_.code(), connect_error_.message());
    bool healthy = false;
    if (stream != nullptr) {
      const absl::Time welcomed = absl::Now();
      why = Serve(stream.get());
      healthy = absl::Now() - welcomed >= kHealthyConnection;
      // The stream's own verdict (the ack deadline) says most.
      if (!stream->why().ok()) why = stream->why();
      const grpc::Status finished = stream->Finish();
      if (stream->why().ok() && !finished.ok() &&
          finished.error_code() != grpc::StatusCode::CANCELLED) {
        why = absl::Status(static_cast<absl::StatusCode>(finished.error_code()),
                           finished.error_message());
        redirect = stream->Redirect();
      }
      absl::MutexLock lock(&mu_);
      live_ = nullptr;
      ++stats_.disconnects;
      if (absl::IsDeadlineExceeded(stream->why())) ++stats_.ack_timeouts;
    }
    stream.reset();
    // Whatever was sent and not acknowledged is sent again next time; a
    // rejection holds for one connection.
    for (auto& [id, c] : captures_) {
      c.rejected = false;
      for (auto& [name, f] : c.files) f.ledger.Rewind();
    }
    {
      absl::MutexLock lock(&mu_);
      if (stop_) return;
      stats_.last_error = why.ToString();
    }
    if (healthy) backoff.Reset();
    if (!redirect.empty() && absl::IsFailedPrecondition(why)) {
      const bool followed = targets_.Redirect(redirect);
      LogLine(followed ? "uplink_redirected" : "uplink_redirect_ignored",
              {{"aggregator", address_},
               {"redirect", redirect},
               {"reason", why.ToString()}});
      if (followed) {
        absl::MutexLock lock(&mu_);
        ++stats_.redirects;
        continue;  // at once: the holder is known
      }
    } else {
      targets_.Failed();
    }
    const absl::Duration delay = backoff.Next();
    LogLine("uplink_disconnected", {{"aggregator", address_},
                                    {"reason", why.ToString()},
                                    {"retry_in", absl::FormatDuration(delay)}});
    // Counting goes on while the aggregator is away.
    const absl::Time retry_at = absl::Now() + delay;
    while (absl::Now() < retry_at) {
      if (!WaitForWork(std::min(retry_at - absl::Now(), kCounterInterval)))
        return;
      Housekeep();
    }
  }
}

std::set<std::string> Uplink::CaptureIds(bool with_disk) {
  std::set<std::string> ids;
  for (const auto& [id, c] : captures_) ids.insert(id);
  if (with_disk) {
    // Captures a previous agent process left, which the agent has not
    // adopted yet: what it has so far.
    if (DIR* d = opendir(options_.capture_dir.c_str())) {
      while (struct dirent* e = readdir(d)) {
        if (IsValidCaptureId(e->d_name)) ids.insert(e->d_name);
      }
      closedir(d);
    }
  }
  return ids;
}

std::unique_ptr<IngestStream> Uplink::Connect() {
  auto fail =
      [this](const absl::Status& status) -> std::unique_ptr<IngestStream> {
    connect_error_ = status;
    return nullptr;
  };
  connect_error_ = absl::CancelledError("uplink stopping");
  auto token = ReadToken(options_.token_file);
  if (!token.ok()) return fail(token.status());

  TakeRegistryChanges();
  bool synced;
  {
    absl::MutexLock lock(&mu_);
    if (stop_) return nullptr;
    synced = synced_;
  }
  AgentMessage hello;
  auto* h = hello.mutable_hello();
  h->set_node(options_.node);
  static const std::string* instance = new std::string(RandomInstance());
  h->set_agent_instance(*instance);
  h->set_token(*token);
  h->set_agent_version(options_.agent_version);
  for (const auto& id : CaptureIds(/*with_disk=*/!synced))
    h->add_capture_ids(id);
  h->set_inventory_pending(!synced);

  IngestStreamOptions stream_options;
  stream_options.aggregator = address_;
  stream_options.connect_timeout = options_.welcome_timeout;
  stream_options.keepalive_time = options_.keepalive_time;
  stream_options.keepalive_timeout = options_.keepalive_timeout;
  stream_options.ack_timeout = options_.ack_timeout;
  IngestStream::Welcome welcome;
  auto stream = IngestStream::Open(
      stream_options, hello,
      [this] {
        absl::MutexLock lock(&mu_);
        wake_ = true;
      },
      [this] {
        if (stopping()) return false;
        Housekeep();
        return true;
      },
      &welcome);
  if (!stream.ok()) return fail(stream.status());
  {
    absl::MutexLock lock(&mu_);
    if (stop_) return nullptr;
    live_ = stream->get();
  }
  inventory_due_ = !synced;

  resume_.clear();
  for (const auto& p : welcome.resume) {
    resume_[{p.capture_id(), p.file(), p.file_generation()}] = p.offset();
  }
  inflight_limit_ =
      std::max<uint64_t>(welcome.welcome.max_inflight_bytes(), 64 * 1024);
  const uint32_t offered = welcome.welcome.max_chunk_bytes();
  chunk_limit_ = std::min(options_.max_chunk_bytes,
                          offered > 0 ? offered : options_.max_chunk_bytes);
  batch_delay_ = std::min(absl::Milliseconds(welcome.welcome.batch_delay_ms()),
                          options_.max_batch_delay);
  batch_bytes_ = batch_delay_ > absl::ZeroDuration()
                     ? std::min<uint64_t>({welcome.welcome.batch_bytes(),
                                           chunk_limit_, inflight_limit_})
                     : 0;
  // The aggregator's resume points are authoritative.
  for (auto& [id, c] : captures_) {
    for (auto& [name, f] : c.files) {
      if (!f.ledger.tracking()) continue;
      auto it = resume_.find({id, name, f.generation});
      f.ledger.Start(it == resume_.end() ? 0 : it->second);
    }
    c.status_dirty = true;
  }
  {
    absl::MutexLock lock(&mu_);
    ++stats_.connects;
    stats_.inflight_limit = inflight_limit_;
  }
  LogLine("uplink_connected",
          {{"aggregator", address_},
           {"aggregator_instance", welcome.welcome.aggregator_instance()},
           {"resume_points", absl::StrCat(welcome.resume.size())},
           {"inventory_pending", synced ? "false" : "true"}});
  return std::move(*stream);
}

void Uplink::Housekeep() {
  TakeRegistryChanges();
  SettleAll();
  PublishView();
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
    const bool known = captures_.count(id) > 0;
    CaptureState& c = captures_[id];
    if (!known) LoadCounters(id, &c);
    c.drain_until = absl::InfiniteFuture();  // back (a relist): not stopped
    c.status = status;
    c.status_dirty = true;
    std::set<std::string> listed;
    for (const auto& file : status.files()) {
      if (!SafeFileName(file.name()) || c.retired.count(file.name())) continue;
      listed.insert(file.name());
      auto it = c.files.find(file.name());
      if (it == c.files.end()) {
        it = c.files.emplace(file.name(), FileState(options_.ring_file_bytes))
                 .first;
        it->second.path =
            absl::StrCat(options_.capture_dir, "/", id, "/", file.name());
      }
      it->second.listed_size = file.size();
    }
    for (auto it = c.files.begin(); it != c.files.end();) {
      if (listed.count(it->first)) {
        ++it;
        continue;
      }
      Retire(id, &c, it->first, &it->second);
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

uint64_t Uplink::Reuses(const std::string& id, const std::string& name) {
  if (ring_ == nullptr) return 0;
  ring_->Sync();
  return ring_->Reuses(id, name);
}

void Uplink::SettleAll() {
  if (ring_ == nullptr) {
    for (auto& [id, c] : captures_) c.lower_bound = true;
    return;
  }
  ring_->Sync();
  const uint64_t overflows = ring_->overflows();
  if (overflows != overflows_seen_) {
    // Reuses went uncounted somewhere: every capture may miss some.
    for (auto& [id, c] : captures_) c.lower_bound = true;
    overflows_seen_ = overflows;
    absl::MutexLock lock(&mu_);
    stats_.ring_overflows = overflows;
  }
  for (auto& [id, c] : captures_) {
    for (auto& [name, f] : c.files) {
      const uint64_t unseen = f.ledger.unseen();
      const uint64_t lost = f.ledger.Settle(ring_->Reuses(id, name));
      if (lost == 0) continue;
      LogLine(
          "uplink_ring_overwrote",
          {{"capture", id},
           {"file", name},
           {"generation", absl::StrCat(f.ledger.generation())},
           {"generations_never_read", absl::StrCat(f.ledger.unseen() - unseen)},
           {"bytes_lost", absl::StrCat(lost)}});
    }
  }
}

void Uplink::PublishView() {
  uint64_t lost = lost_gone_, unseen = unseen_gone_, lag = 0;
  const absl::Time now = absl::Now();
  for (auto& [id, c] : captures_) {
    unseen += c.retired_unseen;
    for (const auto& [name, f] : c.files) {
      unseen += f.ledger.unseen();
      if (f.ledger.unwatched() > 0) c.lower_bound = true;
      // The file's current content past what the aggregator acknowledged.
      const uint64_t acked = f.ledger.tracking() ? f.ledger.acked() : 0;
      const uint64_t size = std::max(f.listed_size, f.ledger.seen());
      if (size > acked) lag += size - acked;
    }
    lost += c.lost();
    if (!c.draining() &&
        (c.lost() != c.saved_lost || c.uploaded_gone() != c.saved_uploaded)) {
      if (now - c.saved_at >= kCounterInterval) SaveCounters(id, &c);
    }
    if (view_ == nullptr || c.draining()) continue;
    StatusView::Counters counters;
    counters.uploaded = c.uploaded();
    counters.lost = c.lost();
    for (const auto& [name, f] : c.files)
      counters.generations[name] = f.ledger.generation();
    if (c.lower_bound) counters.note = kLowerBound;
    if (counters == c.view) continue;
    StatusView::Counters only_uploaded = c.view;
    only_uploaded.uploaded = counters.uploaded;
    if (only_uploaded == counters && now - c.view_sent < kCounterInterval) {
      continue;  // upload progress: at most once a second
    }
    view_->SetCounters(id, counters);
    c.view = counters;
    c.view_sent = now;
  }
  absl::MutexLock lock(&mu_);
  stats_.bytes_lost = lost;
  stats_.generations_lost = unseen;
  stats_.lag_bytes = lag;
}

void Uplink::LoadCounters(const std::string& id, CaptureState* c) {
  const std::string path =
      absl::StrCat(options_.capture_dir, "/", id, "/", kCountersFile);
  std::ifstream in(path);
  if (!in) return;  // a new capture
  std::string lost_key, uploaded_key;
  uint64_t lost = 0, uploaded = 0;
  if (!(in >> lost_key >> lost >> uploaded_key >> uploaded) ||
      lost_key != "lost" || uploaded_key != "uploaded") {
    LogLine("uplink_counters_unreadable",
            {{"capture", id}, {"file", path}, {"effect", "counted from 0"}});
    return;
  }
  c->prior_lost = c->saved_lost = lost;
  c->prior_uploaded = c->saved_uploaded = uploaded;
}

void Uplink::SaveCounters(const std::string& id, CaptureState* c) {
  const std::string dir = absl::StrCat(options_.capture_dir, "/", id);
  const std::string tmp = absl::StrCat(dir, "/.", kCountersFile, ".tmp");
  const uint64_t lost = c->lost(), uploaded = c->uploaded_gone();
  c->saved_at = absl::Now();
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << "lost " << lost << "\nuploaded " << uploaded << "\n";
    out.flush();
    if (!out) return;  // the capture's directory is gone: nothing to keep
  }
  if (rename(tmp.c_str(), absl::StrCat(dir, "/", kCountersFile).c_str()) != 0)
    return;
  c->saved_lost = lost;
  c->saved_uploaded = uploaded;
}

void Uplink::Retire(const std::string& id, CaptureState* c,
                    const std::string& name, FileState* f) {
  const uint64_t before = f->ledger.lost();
  f->ledger.Settle(Reuses(id, name));
  f->ledger.Retire();
  uint64_t lost = f->ledger.lost() - before;
  if (!f->read_any) {
    // Never read (could not be opened, or pruned first): what the capture
    // said it held is gone.
    lost += f->listed_size;
    c->retired_lost += f->listed_size;
  }
  c->retired_lost += f->ledger.lost();
  c->retired_uploaded += f->ledger.uploaded();
  c->retired_unseen += f->ledger.unseen();
  c->retired.insert(name);
  if (lost > 0) {
    LogLine(
        "uplink_file_retired",
        {{"capture", id}, {"file", name}, {"bytes_lost", absl::StrCat(lost)}});
  }
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
      if (f.fd.get() >= 0 &&
          !(f.unlinked && f.idle && f.ledger.acked() >= f.ledger.sent()))
        complete = false;
    }
    if (!complete && now < c.drain_until) {
      ++it;
      continue;
    }
    const std::string id = it->first;
    for (auto& [name, f] : c.files) Retire(id, &c, name, &f);
    c.files.clear();
    // Ring slots the status never listed: every reuse lost a generation.
    if (ring_ != nullptr) {
      for (const auto& [name, reuses] : ring_->ReusedSlots(id)) {
        if (c.retired.count(name)) continue;
        c.retired_lost += reuses * options_.ring_file_bytes;
        c.retired_unseen += reuses;
      }
      ring_->Forget(id);
    }
    if (view_) view_->Forget(id);
    LogLine("uplink_drained", {{"capture", id},
                               {"complete", complete ? "true" : "false"},
                               {"bytes_uploaded", absl::StrCat(c.uploaded())},
                               {"bytes_lost", absl::StrCat(c.lost())}});
    if (complete) {
      absl::MutexLock lock(&mu_);
      ++stats_.captures_drained;
    }
    CaptureProto tomb = c.status;
    tomb.set_state(CaptureProto::STOPPED);
    tomb.set_on_node(false);
    if (tomb.stop_reason() == packetcapture::v1::STOP_REASON_UNSPECIFIED) {
      tomb.set_message(
          "stopped: annotation removed or pod gone; node files deleted");
    }
    if (!tomb.has_stop_time()) *tomb.mutable_stop_time() = ToProto(absl::Now());
    *tomb.mutable_update_time() = ToProto(absl::Now());
    StatusView::Counters counters;
    counters.uploaded = c.uploaded();
    counters.lost = c.lost();
    if (c.lower_bound) counters.note = kLowerBound;
    StatusView::Merge(counters, false, &tomb);
    tomb.clear_files();
    tombstones_[id] = std::move(tomb);
    lost_gone_ += c.lost();
    unseen_gone_ += c.retired_unseen;
    it = captures_.erase(it);
  }
}

void Uplink::HandleAck(const packetcapture::v1::Ack& ack) {
  auto c = captures_.find(ack.capture_id());
  if (c == captures_.end()) return;
  auto f = c->second.files.find(ack.file());
  if (f == c->second.files.end() || !f->second.ledger.tracking() ||
      f->second.generation != ack.file_generation()) {
    return;  // a generation the ring has overwritten since
  }
  FileState& file = f->second;
  if (ack.offset() > file.ledger.acked()) {
    absl::MutexLock lock(&mu_);
    stats_.bytes_acked += ack.offset() - file.ledger.acked();
  }
  file.ledger.Ack(ack.offset());
}

void Uplink::HandleRejection(
    const packetcapture::v1::CaptureRejected& rejected) {
  auto it = captures_.find(rejected.capture_id());
  if (it == captures_.end() || it->second.rejected) return;
  CaptureState& c = it->second;
  c.rejected = true;
  // Nothing of it is in flight any more: it is sent again next connection.
  for (auto& [name, f] : c.files) f.ledger.Rewind();
  LogLine("uplink_capture_rejected",
          {{"capture", rejected.capture_id()},
           {"code", absl::StatusCodeToString(
                        static_cast<absl::StatusCode>(rejected.code()))},
           {"reason", rejected.message()},
           {"effect", "not uploaded until the next connection"}});
  absl::MutexLock lock(&mu_);
  ++stats_.captures_rejected;
}

absl::Status Uplink::SendStatuses(IngestStream* stream, bool force) {
  for (auto it = tombstones_.begin(); it != tombstones_.end();) {
    AgentMessage m;
    *m.mutable_status() = it->second;
    if (!stream->Write(m)) return absl::UnavailableError("status not sent");
    it = tombstones_.erase(it);
  }
  const absl::Time now = absl::Now();
  for (auto& [id, c] : captures_) {
    if (c.draining() || c.rejected) continue;
    const uint64_t uploaded = c.uploaded();
    const uint64_t lost = c.lost();
    const bool counters =
        uploaded != c.reported_uploaded || lost != c.reported_lost;
    // Counter changes (progress, losses) go out at most once a second.
    if (!force && !c.status_dirty &&
        !(counters && now - c.status_sent >= kCounterInterval)) {
      continue;
    }
    AgentMessage m;
    CaptureProto* s = m.mutable_status();
    *s = c.status;
    StatusView::Counters merged;
    merged.uploaded = uploaded;
    merged.lost = lost;
    if (c.lower_bound) merged.note = kLowerBound;
    StatusView::Merge(merged, false, s);
    // Files as the chunks name them.
    for (auto& file : *s->mutable_files()) {
      auto f = c.files.find(file.name());
      if (f != c.files.end() && f->second.generation != 0) {
        file.set_generation(f->second.generation);
      }
    }
    if (!stream->Write(m)) return absl::UnavailableError("status not sent");
    c.status_dirty = false;
    c.status_sent = now;
    c.reported_uploaded = uploaded;
    c.reported_lost = lost;
  }
  return absl::OkStatus();
}

absl::Status Uplink::Serve(IngestStream* stream) {
  bool force = true;
  for (;;) {
    if (stopping()) return absl::CancelledError("uplink stopping");
    for (const auto& m : stream->Take()) {
      switch (m.kind_case()) {
        case AggregatorMessage::kAck:
          HandleAck(m.ack());
          break;
        case AggregatorMessage::kError:
          return absl::Status(static_cast<absl::StatusCode>(m.error().code()),
                              m.error().message());
        case AggregatorMessage::kCaptureRejected:
          HandleRejection(m.capture_rejected());
          break;
        default:
          // A welcome or resume batch out of turn: nothing to act on.
          LogLine("uplink_unexpected_message",
                  {{"aggregator", address_},
                   {"kind", absl::StrCat(m.kind_case())}});
          break;
      }
    }
    stream->SetInflight(Inflight());
    if (stream->done()) {
      if (!stream->why().ok()) return stream->why();
      return absl::UnavailableError("aggregator closed the stream");
    }
    // synced_ first, then the registry's changes: every capture the agent
    // registered before it called MarkInventorySynced() is then taken in and
    // listed in the inventory.
    bool synced;
    {
      absl::MutexLock lock(&mu_);
      synced = synced_;
    }
    TakeRegistryChanges();
    if (inventory_due_ && synced) {
      AgentMessage m;
      // Set even when empty: "no captures" is an answer too.
      auto* inventory = m.mutable_inventory();
      for (const auto& id : CaptureIds(false)) inventory->add_capture_ids(id);
      if (!stream->Write(m))
        return absl::UnavailableError("inventory not sent");
      inventory_due_ = false;
      LogLine("uplink_inventory_sent",
              {{"captures", absl::StrCat(m.inventory().capture_ids_size())}});
    }
    SettleAll();
    absl::Status sent = SendStatuses(stream, force);
    if (!sent.ok()) return sent;
    force = false;
    bool progress = false;
    for (auto& [id, c] : captures_) {
      if (c.rejected) continue;
      // Only the newest file of a running capture grows; the others are
      // sent at once.
      const bool running =
          !c.draining() &&
          c.status.state() == packetcapture::v1::Capture::RUNNING;
      const int newest = c.status.files_size() - 1;
      // Ring order (the status lists files oldest first).
      for (int i = 0; i <= newest; ++i) {
        const auto& listed = c.status.files(i);
        auto f = c.files.find(listed.name());
        if (f == c.files.end()) continue;
        auto pumped = PumpFile(stream, id, &c, f->first, &f->second,
                               running && i == newest);
        if (!pumped.ok()) return pumped.status();
        progress |= *pumped;
      }
    }
    PublishView();
    FinishDrains(absl::Now());
    if (!progress && !WaitForWork(options_.poll_interval)) {
      return absl::CancelledError("uplink stopping");
    }
  }
}

}  // namespace pc::agent
