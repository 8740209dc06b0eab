#include "node_agent/ingest_stream.h"

#include <algorithm>
#include <utility>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace pc::agent {
namespace {

constexpr absl::Duration kSlice = absl::Milliseconds(200);
// The owner bounds chunk bytes by the in-flight window and statuses by rate;
// this many queued messages means the peer has not read for a long time.
constexpr size_t kMaxQueued = 10000;

int Millis(absl::Duration d) {
  return static_cast<int>(
      std::min<int64_t>(absl::ToInt64Milliseconds(d), int64_t{1} << 30));
}

absl::Status FromGrpc(const grpc::Status& s) {
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                      s.error_message());
}

constexpr char kRedirectPayload[] = "pc.agent/aggregator-redirect";
constexpr size_t kMaxRedirectBytes = 512;

}  // namespace

std::string RedirectOf(const absl::Status& status) {
  absl::optional<absl::Cord> payload = status.GetPayload(kRedirectPayload);
  return payload.has_value() ? std::string(*payload) : std::string();
}

IngestStream::IngestStream(IngestStreamOptions options,
                           std::function<void()> wake)
    : options_(std::move(options)), wake_(std::move(wake)) {}

IngestStream::~IngestStream() { Finish(); }

absl::StatusOr<std::unique_ptr<IngestStream>> IngestStream::Open(
    const IngestStreamOptions& options, const AgentMessage& hello,
    std::function<void()> wake, const std::function<bool()>& waiting,
    Welcome* out) {
  std::unique_ptr<IngestStream> s(new IngestStream(options, std::move(wake)));
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(options.max_receive_bytes);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, Millis(options.keepalive_time));
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, Millis(options.keepalive_timeout));
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  // A subchannel of this channel's own: a new stream must never ride on the
  // TCP connection a half-open previous one is stuck on.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  s->channel_ = grpc::CreateCustomChannel(
      options.aggregator, grpc::InsecureChannelCredentials(), args);

  // The connection, in slices so that `waiting` runs meanwhile.
  const absl::Time connect_by = absl::Now() + options.connect_timeout;
  grpc_connectivity_state state = s->channel_->GetState(true);
  while (state != GRPC_CHANNEL_READY) {
    if (state == GRPC_CHANNEL_TRANSIENT_FAILURE ||
        state == GRPC_CHANNEL_SHUTDOWN) {
      return absl::UnavailableError(
          absl::StrCat("cannot connect to ", options.aggregator));
    }
    if (absl::Now() >= connect_by) {
      return absl::DeadlineExceededError(
          absl::StrCat("no connection to ", options.aggregator, " within ",
                       absl::FormatDuration(options.connect_timeout)));
    }
    s->channel_->WaitForStateChange(
        state, absl::ToChronoTime(std::min(absl::Now() + kSlice, connect_by)));
    if (!waiting()) return absl::CancelledError("uplink stopping");
    state = s->channel_->GetState(true);
  }

  s->stub_ = packetcapture::v1::IngestService::NewStub(s->channel_);
  s->stream_ = s->stub_->Report(&s->context_);
  if (!s->stream_->Write(hello)) {  // before the writer thread exists
    const grpc::Status finished = s->Finish();
    return absl::UnavailableError(
        absl::StrCat("hello not sent: ", finished.error_message()));
  }
  s->reader_ = std::thread([p = s.get()] { p->ReadLoop(); });

  // The welcome, then the resume batches it announces.
  bool welcomed = false, more = false;
  absl::Time deadline = absl::Now() + options.connect_timeout;
  std::deque<AggregatorMessage> later;
  for (;;) {
    std::deque<AggregatorMessage> got;
    bool ended;
    {
      absl::MutexLock lock(&s->mu_);
      s->mu_.AwaitWithDeadline(
          absl::Condition(
              +[](IngestStream* p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(p->mu_) {
                return !p->inbox_.empty() || p->reader_done_;
              },
              s.get()),
          std::min(absl::Now() + kSlice, deadline));
      got.swap(s->inbox_);
      ended = s->reader_done_;
    }
    for (auto& m : got) {
      if (m.has_error()) {
        return absl::Status(static_cast<absl::StatusCode>(m.error().code()),
                            m.error().message());
      }
      if (!welcomed && m.has_welcome()) {
        welcomed = true;
        out->welcome = m.welcome();
        out->resume.assign(m.welcome().resume().begin(),
                           m.welcome().resume().end());
        more = m.welcome().more_resume();
        deadline = absl::Now() + options.connect_timeout;
      } else if (welcomed && more && m.has_resume_batch()) {
        const auto& batch = m.resume_batch();
        out->resume.insert(out->resume.end(), batch.resume().begin(),
                           batch.resume().end());
        more = !batch.last();
        deadline = absl::Now() + options.connect_timeout;
      } else {
        later.push_back(std::move(m));  // for the owner to judge
      }
    }
    if (welcomed && !more) break;
    if (ended) {
      const grpc::Status finished = s->Finish();
      if (!finished.ok()) {
        absl::Status status = FromGrpc(finished);
        const std::string redirect = s->Redirect();
        if (!redirect.empty())
          status.SetPayload(kRedirectPayload, absl::Cord(redirect));
        return status;
      }
      return absl::UnavailableError(
          welcomed ? "stream ended before the last resume batch"
                   : "stream ended before the welcome");
    }
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(
          welcomed ? "no last resume batch from the aggregator"
                   : "no welcome from the aggregator");
    }
    if (!waiting()) return absl::CancelledError("uplink stopping");
  }
  {
    absl::MutexLock lock(&s->mu_);
    while (!later.empty()) {
      s->inbox_.push_front(std::move(later.back()));
      later.pop_back();
    }
  }
  s->writer_ = std::thread([p = s.get()] { p->WriteLoop(); });
  s->deadline_ = std::thread([p = s.get()] { p->Deadline(); });
  return s;
}

void IngestStream::ReadLoop() {
  AggregatorMessage m;
  while (stream_->Read(&m)) {
    {
      absl::MutexLock lock(&mu_);
      if (m.has_ack()) ack_clock_ = absl::Now();
      inbox_.push_back(std::move(m));
    }
    if (wake_) wake_();
  }
  {
    absl::MutexLock lock(&mu_);
    reader_done_ = true;
  }
  if (wake_) wake_();
}

void IngestStream::Deadline() {
  {
    absl::MutexLock lock(&mu_);
    for (;;) {
      mu_.AwaitWithTimeout(
          absl::Condition(
              +[](IngestStream* p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(p->mu_) {
                return p->closing_ || p->reader_done_;
              },
              this),
          absl::Milliseconds(100));
      if (closing_ || reader_done_) return;
      if (inflight_ > 0 && absl::Now() - ack_clock_ >= options_.ack_timeout) {
        why_ = absl::DeadlineExceededError(
            absl::StrCat("no acknowledgement for ",
                         absl::FormatDuration(options_.ack_timeout), " with ",
                         inflight_, " bytes in flight"));
        break;
      }
    }
  }
  Cancel();
}

void IngestStream::WriteLoop() {
  for (;;) {
    AgentMessage m;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](IngestStream* p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(p->mu_) {
            return p->closing_ || !p->outbox_.empty();
          },
          this));
      if (closing_) return;
      m = std::move(outbox_.front());
      outbox_.pop_front();
    }
    // Blocks while the peer does not read (HTTP/2 flow control); Cancel()
    // ends it.
    if (!stream_->Write(m)) {
      absl::MutexLock lock(&mu_);
      broken_ = true;
      outbox_.clear();
      return;
    }
  }
}

bool IngestStream::Write(AgentMessage message) {
  {
    absl::MutexLock lock(&mu_);
    if (broken_ || closing_ || reader_done_) return false;
    if (outbox_.size() < kMaxQueued) {
      outbox_.push_back(std::move(message));
      return true;
    }
    broken_ = true;
    why_ = absl::ResourceExhaustedError(absl::StrCat(
        "the aggregator has not read ", kMaxQueued, " queued messages"));
  }
  Cancel();
  return false;
}

std::deque<IngestStream::AggregatorMessage> IngestStream::Take() {
  std::deque<AggregatorMessage> out;
  absl::MutexLock lock(&mu_);
  out.swap(inbox_);
  return out;
}

bool IngestStream::done() const {
  absl::MutexLock lock(&mu_);
  return reader_done_;
}

absl::Status IngestStream::why() const {
  absl::MutexLock lock(&mu_);
  return why_;
}

void IngestStream::SetInflight(uint64_t bytes) {
  absl::MutexLock lock(&mu_);
  if (inflight_ == 0 && bytes > 0) ack_clock_ = absl::Now();
  inflight_ = bytes;
}

void IngestStream::Cancel() { context_.TryCancel(); }

grpc::Status IngestStream::Finish() {
  if (finished_) return final_;
  finished_ = true;
  if (stream_ == nullptr) return final_;
  // A stream that ended on its own keeps its status (say, the keepalive's).
  if (!done()) Cancel();  // unblocks the reader
  if (reader_.joinable()) reader_.join();
  {
    absl::MutexLock lock(&mu_);
    closing_ = true;
  }
  if (writer_.joinable()) writer_.join();
  if (deadline_.joinable()) deadline_.join();
  final_ = stream_->Finish();
  return final_;
}

std::string IngestStream::Redirect() const {
  if (!finished_ || stream_ == nullptr ||
      final_.error_code() != grpc::StatusCode::FAILED_PRECONDITION) {
    return "";
  }
  const auto& trailers = context_.GetServerTrailingMetadata();
  auto it = trailers.find(kRedirectMetadata);
  if (it == trailers.end()) return "";
  return std::string(it->second.data(),
                     std::min(it->second.size(), kMaxRedirectBytes));
}

}  // namespace pc::agent
