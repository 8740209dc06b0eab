#include "aggregator/ingest_service.h"

#include <algorithm>
#include <climits>
#include <cstdint>
#include <deque>
#include <optional>
#include <set>
#include <utility>
#include <vector>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "aggregator/ingest_checks.h"
#include "aggregator/resume_pages.h"
#include "common/crc32c.h"
#include "common/grpc_status.h"
#include "common/kube/names.h"
#include "common/log.h"
#include "grpcpp/alarm.h"

namespace pc::aggregator {
namespace {

using packetcapture::v1::AgentMessage;
using packetcapture::v1::AggregatorMessage;

// Smaller batches are committed on the stream's strand when the commit
// strand is idle (100 slow agents: a strand hop per 16 KiB chunk cost more
// CPU than overlapping its write with a flush saved).
constexpr uint64_t kMinPipelinedBytes = 256 << 10;

std::string RandomInstance() {
  absl::BitGen gen;
  return absl::StrFormat("%016x", absl::Uniform<uint64_t>(gen));
}

int Millis(absl::Duration d) {
  return static_cast<int>(
      std::min<int64_t>(absl::ToInt64Milliseconds(d), INT32_MAX));
}

}  // namespace

int IngestMaxReceiveMessageBytes(const IngestOptions& options) {
  const uint64_t largest =
      std::max<uint64_t>(options.max_chunk_bytes, options.max_status_bytes);
  return static_cast<int>(std::min<uint64_t>(largest + (64 << 10), INT32_MAX));
}

void ConfigureIngestServer(const IngestOptions& options,
                           grpc::ServerBuilder* builder) {
  builder->SetMaxReceiveMessageSize(IngestMaxReceiveMessageBytes(options));
  const KeepaliveOptions& k = options.keepalive;
  builder->AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, Millis(k.time));
  builder->AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, Millis(k.timeout));
  // Ping (and accept pings on) connections without a call too, and without
  // a limit on pings while no data flows: an idle agent sends nothing.
  builder->AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder->AddChannelArgument(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  builder->AddChannelArgument(
      GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
      Millis(k.min_agent_ping_interval));
}

// One Report stream. Reference-counted: gRPC holds one reference until
// OnDone, each queued task, the hello alarm and the service's by_node_ entry
// one more each, so nothing outlives the object. The service waits for every
// Stream to be deleted before it goes.
class IngestServiceImpl::Stream final
    : public grpc::ServerBidiReactor<AgentMessage, AggregatorMessage> {
 public:
  // `ticket`: the stream's slot among unauthenticated streams, or why there
  // is none (the stream is then refused at once).
  Stream(IngestServiceImpl* service, grpc::CallbackServerContext* context,
         absl::StatusOr<AdmissionControl::Ticket> ticket)
      : service_(service),
        context_(context),
        peer_(context->peer()),
        strand_(std::make_shared<Strand>(&service->pool_)),
        commit_strand_(std::make_shared<Strand>(&service->pool_)),
        max_queued_(2 * service->options_.max_inflight_bytes +
                    service->options_.max_chunk_bytes) {
    ++service_->active_streams_;
    {
      absl::MutexLock lock(&service_->mu_);
      ++service_->live_streams_;
    }
    if (!ticket.ok()) {
      Reject(ticket.status());
      return;
    }
    ticket_ = std::move(*ticket);
    Ref();  // for the alarm's callback, which always runs
    hello_alarm_.Set(
        absl::ToChronoTime(absl::Now() + service_->options_.hello_timeout),
        [this](bool fired) {
          if (fired) OnHelloDeadline();
          Unref();
        });
    absl::MutexLock lock(&mu_);
    reading_ = true;
    StartRead(&in_);  // the hello; nothing more until it is accepted
  }

  ~Stream() override {
    ticket_.Release();
    IngestServiceImpl* service = service_;
    absl::MutexLock lock(&service->mu_);
    --service->live_streams_;
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      {
        absl::MutexLock lock(&mu_);
        reading_ = false;
      }
      Post([this] { OnEndOfInput(); });
      return;
    }
    auto message = std::make_shared<AgentMessage>(std::move(in_));
    in_.Clear();
    const size_t size = message->ByteSizeLong();
    {
      absl::MutexLock lock(&mu_);
      queued_bytes_ += size;
      ++handles_pending_;
    }
    Post([this, message, size] { Handle(message, size); });
    absl::MutexLock lock(&mu_);
    reading_ = false;
    MaybeReadLocked();
  }

  void OnWriteDone(bool ok) override {
    std::optional<grpc::Status> finish;
    {
      absl::MutexLock lock(&mu_);
      out_bytes_ -= out_.front().second;
      out_.pop_front();
      if (!ok) {
        out_.clear();
        out_bytes_ = 0;
        broken_ = true;
      }
      if (!out_.empty()) {
        StartWrite(&out_.front().first);
      } else {
        finish = MaybeFinish();
      }
      MaybeReadLocked();
    }
    if (finish) Finish(*finish);
  }

  // The peer left or the call was cancelled: end now. Messages still queued
  // are skipped (none of them was acknowledged); an in-flight batch is
  // stored only if the node's next stream replaces this one (OnReplaced).
  void OnCancel() override {
    std::optional<grpc::Status> finish;
    {
      absl::MutexLock lock(&mu_);
      broken_ = true;
      if (!finishing_) {
        finishing_ = true;
        finish_status_ = grpc::Status::CANCELLED;
      }
      finish = MaybeFinish();
    }
    if (finish) Finish(*finish);
  }

  // Ends the stream from any thread, e.g. when its node was lost.
  void End(const absl::Status& why) { Reject(why); }

  void OnDone() override {
    --service_->active_streams_;
    hello_alarm_.Cancel();
    Stream* registered = nullptr;
    {
      absl::MutexLock lock(&service_->mu_);
      auto it = service_->by_node_.find(registered_node_);
      if (!registered_node_.empty() && it != service_->by_node_.end() &&
          it->second == this) {
        service_->by_node_.erase(it);
        registered = this;
      }
    }
    if (registered != nullptr) registered->Unref();
    // On the strand: after a Welcome that may be acquiring the node, and
    // after the commits of what the stream wrote.
    Post([this] {
      ended_ = true;  // an acquisition finishing later releases at once
      PostCommit([this] {
        if (owns_node_) service_->store_->ReleaseNode(node_);
        owns_node_ = false;
      });
    });
    if (!node_for_log().empty() && service_->options_.on_agent_disconnected) {
      service_->options_.on_agent_disconnected(node_for_log());
    }
    if (!node_for_log().empty()) {
      LogLine("agent_disconnected",
              {{"node", node_for_log()},
               {"peer", peer_},
               {"chunks", absl::StrCat(chunks_.load())},
               {"bytes", absl::StrCat(bytes_.load())},
               {"rejected_captures", absl::StrCat(rejected_count_.load())},
               {"ignored_chunks", absl::StrCat(ignored_chunks_.load())}});
    }
    Unref();
  }

 private:
  friend class IngestServiceImpl;  // EndStreamOf holds a reference
  void Ref() { refs_.fetch_add(1); }
  void Unref() {
    if (refs_.fetch_sub(1) == 1) delete this;
  }

  void Post(std::function<void()> task) {
    Ref();
    strand_->Post([this, task = std::move(task)] {
      task();
      Unref();
    });
  }

  // Runs `task` on the commit strand, after the tasks posted there before.
  void PostCommit(std::function<void()> task) {
    Ref();
    {
      absl::MutexLock lock(&mu_);
      ++commit_tasks_;
    }
    commit_strand_->Post([this, task = std::move(task)] {
      task();
      {
        absl::MutexLock lock(&mu_);
        --commit_tasks_;
      }
      Unref();
    });
  }

  // Why a capture the agent no longer lists is marked gone.
  std::string GoneReason() const {
    return absl::StrCat("no longer reported by node ", node_);
  }

  std::string node_for_log() {
    absl::MutexLock lock(&mu_);
    return log_node_;
  }

  // Not authenticated in time: ends the stream from the alarm's thread, also
  // while the strand still waits for a token review.
  void OnHelloDeadline() {
    Reject(absl::DeadlineExceededError(absl::StrCat(
               "no valid hello within ",
               absl::FormatDuration(service_->options_.hello_timeout))),
           RejectMode::kIfUnauthenticated);
  }

  // ---- on the strand ----

  void Handle(const std::shared_ptr<AgentMessage>& message, size_t size) {
    {
      absl::MutexLock lock(&mu_);
      --handles_pending_;
    }
    if (!Closing() && !stopping_) Dispatch(message);
    absl::MutexLock lock(&mu_);
    queued_bytes_ -= size;
    MaybeReadLocked();
  }

  void Dispatch(const std::shared_ptr<AgentMessage>& shared) {
    const AgentMessage& message = *shared;
    // Chunks wait in batch_ only while more messages are queued behind them;
    // anything else is handled after the batch is stored and acknowledged.
    if (message.kind_case() != AgentMessage::kChunk) FlushBatch();
    if (Closing()) return;
    if (node_.empty()) {
      if (message.kind_case() != AgentMessage::kHello) {
        Reject(
            absl::UnauthenticatedError("the first message of a Report stream "
                                       "must be a hello with a token"));
        return;
      }
      OnHello(message.hello());
      return;
    }
    switch (message.kind_case()) {
      case AgentMessage::kHello:
        RejectAfterCommits(absl::FailedPreconditionError("hello sent twice"));
        return;
      case AgentMessage::kStatus:
        OnStatus(message.status());
        return;
      case AgentMessage::kChunk:
        OnChunk(shared);
        return;
      case AgentMessage::kInventory: {
        const auto& ids = message.inventory().capture_ids();
        service_->store_->MarkGone(
            node_, std::set<std::string>(ids.begin(), ids.end()), GoneReason());
        LogLine("agent_inventory",
                {{"node", node_}, {"captures", absl::StrCat(ids.size())}});
        return;
      }
      default:
        RejectAfterCommits(
            absl::InvalidArgumentError("empty or unknown message"));
        return;
    }
  }

  void OnHello(const packetcapture::v1::Hello& hello) {
    const IngestOptions& options = service_->options_;
    if (hello.token().empty()) {
      Reject(absl::UnauthenticatedError("hello carries no token"));
      return;
    }
    if (hello.token().size() > options.max_token_bytes) {
      Reject(absl::UnauthenticatedError(absl::StrCat(
          "token of ", hello.token().size(), " bytes is longer than ",
          options.max_token_bytes, " bytes: not a ServiceAccount token")));
      return;
    }
    if (!kube::IsDns1123Subdomain(hello.node())) {
      Reject(absl::InvalidArgumentError("hello.node is not a valid node name"));
      return;
    }
    auto identity = service_->authenticator_->Authenticate(hello.token());
    if (!identity.ok()) {
      Reject(identity.status());
      return;
    }
    if (identity->node.empty()) {
      Reject(absl::PermissionDeniedError(
          "the token names no node: a token bound to the agent's Pod is "
          "required"));
      return;
    }
    if (identity->node != hello.node()) {
      Reject(absl::PermissionDeniedError(
          absl::StrCat("token is bound to node ", identity->node,
                       identity->pod_name.empty()
                           ? ""
                           : absl::StrCat(" (pod ", identity->pod_namespace,
                                          "/", identity->pod_name, ")"),
                       ", hello says ", hello.node())));
      return;
    }
    {
      absl::MutexLock lock(&mu_);
      if (finishing_ || broken_) return;  // e.g. the hello deadline passed
      authenticated_ = true;
      log_node_ = hello.node();
      // Under mu_, so OnDone (which reads log_node_) cannot tell the monitor
      // of a disconnection before it heard of the connection.
      if (service_->options_.on_agent_connected) {
        service_->options_.on_agent_connected(log_node_);
      }
    }
    hello_alarm_.Cancel();
    ticket_.Release();
    node_ = hello.node();
    present_.insert(hello.capture_ids().begin(), hello.capture_ids().end());
    inventory_pending_ = hello.inventory_pending();
    agent_instance_ = hello.agent_instance().substr(0, 256);
    agent_version_ = hello.agent_version().substr(0, 256);

    // Take the node's place; the stream there stores its in-flight batch and
    // ends first, then this one is welcomed (OnPredecessorDone).
    Stream* old = nullptr;
    {
      absl::MutexLock lock(&service_->mu_);
      Stream*& slot = service_->by_node_[node_];
      old = slot;  // its reference passes to us
      slot = this;
      Ref();
      registered_node_ = node_;
    }
    if (old == nullptr) {
      Welcome();
      return;
    }
    waiting_for_predecessor_ = true;
    Ref();  // released once old has told us it is done
    old->Post([old, next = this] { old->OnReplaced(next); });
    old->Unref();
  }

  // This stream's node has a newer stream, `next`: finish what is in
  // flight, end with ABORTED, and let `next` go on.
  void OnReplaced(Stream* next) {
    const absl::Status replaced =
        absl::AbortedError("replaced by a newer stream from the same node");
    if (waiting_for_predecessor_) {
      // Never welcomed: end now, and hand `next` on once our own
      // predecessor is done.
      Reject(replaced, RejectMode::kInsteadOfQueued);
      successor_ = next;
      return;
    }
    FlushBatch();
    // Once what was written is committed (and acknowledged, if the replies
    // get out before the stream ends).
    PostCommit([this, next, replaced] {
      Reject(replaced, RejectMode::kInsteadOfQueued);
      next->Post([next] { next->OnPredecessorDone(); });
      next->Unref();
    });
  }

  void OnPredecessorDone() {
    waiting_for_predecessor_ = false;
    if (successor_ != nullptr) {
      Stream* next = std::exchange(successor_, nullptr);
      next->Post([next] { next->OnPredecessorDone(); });
      next->Unref();
      return;
    }
    if (!Closing()) Welcome();
  }

  // Takes the node (replicas: its Lease) before its resume points are read;
  // another replica owning it sends the agent there. Off the pool: a
  // replica may wait out a silent holder's Lease, and other nodes' streams
  // must not wait with it (the acquirer has a thread per acquisition).
  void Welcome() {
    CaptureStore::NodeReport report;
    // With the inventory pending, what the hello lists is not the whole
    // truth yet: nothing is marked gone until the Inventory.
    if (!inventory_pending_) report.present = std::move(present_);
    present_.clear();
    report.gone_reason = GoneReason();
    Ref();
    service_->acquirer_.Schedule([this, report = std::move(report)] {
      absl::Status owned = service_->store_->AcquireNode(node_, report);
      Post([this, owned = std::move(owned)] { OnAcquired(owned); });
      Unref();
    });
  }

  void OnAcquired(const absl::Status& owned) {
    const IngestOptions& options = service_->options_;
    CaptureStore* store = service_->store_;
    if (!owned.ok()) {
      if (auto to = owned.GetPayload(kRedirectPayload); to.has_value()) {
        context_->AddTrailingMetadata(kRedirectMetadata, std::string(*to));
      }
      Reject(owned);
      return;
    }
    if (ended_) {
      // The stream ended while the node was being acquired.
      store->ReleaseNode(node_);
      return;
    }
    owns_node_ = true;
    ResumePages pages =
        PageResumePoints(store->ResumePoints(node_), options.resume_page_bytes);
    AggregatorMessage out;
    auto* welcome = out.mutable_welcome();
    welcome->set_aggregator_instance(service_->instance_);
    size_t points = pages.welcome.size();
    for (auto& point : pages.welcome) *welcome->add_resume() = std::move(point);
    welcome->set_max_inflight_bytes(options.max_inflight_bytes);
    welcome->set_max_chunk_bytes(options.max_chunk_bytes);
    welcome->set_batch_bytes(options.agent_batch_bytes);
    welcome->set_batch_delay_ms(static_cast<uint32_t>(std::clamp<int64_t>(
        absl::ToInt64Milliseconds(options.agent_batch_delay), 0, UINT32_MAX)));
    welcome->set_more_resume(!pages.batches.empty());
    Send(std::move(out));
    for (size_t i = 0; i < pages.batches.size(); ++i) {
      AggregatorMessage batch;
      for (auto& point : pages.batches[i]) {
        *batch.mutable_resume_batch()->add_resume() = std::move(point);
      }
      points += pages.batches[i].size();
      batch.mutable_resume_batch()->set_last(i + 1 == pages.batches.size());
      Send(std::move(batch));
    }
    LogLine("agent_connected",
            {{"node", node_},
             {"instance", agent_instance_},
             {"version", agent_version_},
             {"peer", peer_},
             {"inventory_pending", inventory_pending_ ? "true" : "false"},
             {"resume_points", absl::StrCat(points)},
             {"resume_batches", absl::StrCat(pages.batches.size())}});
    absl::MutexLock lock(&mu_);
    welcomed_ = true;
    MaybeReadLocked();
  }

  void OnStatus(const packetcapture::v1::Capture& status) {
    absl::Status checked =
        CheckStatusSize(status, service_->options_.max_status_bytes);
    if (checked.ok()) checked = service_->store_->PutStatus(node_, status);
    if (checked.ok()) return;
    if (IsCaptureSpecific(checked.code())) {
      RejectCapture(status.id(), checked);
    } else {
      RejectAfterCommits(checked);
    }
  }

  // Checks a chunk and adds it to the batch; the batch is stored (one group
  // commit) once no message is queued behind it, it reaches the window, or a
  // chunk of another file arrives.
  void OnChunk(const std::shared_ptr<AgentMessage>& message) {
    const packetcapture::v1::Chunk& chunk = message->chunk();
    const IngestOptions& options = service_->options_;
    if (rejected_.count(CaptureKey(chunk.capture_id())) > 0) {
      ++ignored_chunks_;
      return;
    }
    absl::Status bounds = CheckChunkBounds(chunk, options.max_chunk_bytes,
                                           options.max_file_bytes);
    if (!bounds.ok()) {
      FlushBatch();
      if (!Closing()) RejectCapture(chunk.capture_id(), bounds);
      return;
    }
    if (Crc32c(chunk.data()) != chunk.crc32c()) {
      // Corrupted on the way: the stream is not to be trusted; the agent
      // reconnects and sends again.
      FlushBatch();
      RejectAfterCommits(absl::DataLossError(absl::StrCat(
          "CRC32C mismatch in chunk of ", CaptureKey(chunk.capture_id()), " ",
          chunk.file().substr(0, 256), " at offset ", chunk.offset())));
      return;
    }
    if (!batch_.empty()) {
      const auto& first = batch_.front()->chunk();
      if (first.capture_id() != chunk.capture_id() ||
          first.file() != chunk.file() ||
          first.file_generation() != chunk.file_generation()) {
        FlushBatch();
        if (Closing() || stopping_) return;
        if (rejected_.count(CaptureKey(chunk.capture_id())) > 0) {
          ++ignored_chunks_;
          return;
        }
      }
    }
    batch_.push_back(message);
    batch_bytes_ += chunk.data().size();
    bool more_queued;
    {
      absl::MutexLock lock(&mu_);
      more_queued = handles_pending_ > 0;
    }
    if (!more_queued || batch_bytes_ >= options.max_inflight_bytes) {
      FlushBatch();
    }
  }

  // Writes the batch and hands it to the commit strand, which acknowledges
  // it once it is durable (CommitBatch), while this strand goes on with the
  // next messages. A chunk the store refused stops this capture's chunks (or
  // the stream's, when the store itself failed) here at once; the refusal is
  // sent after the acks of the chunks before it.
  void FlushBatch() {
    if (batch_.empty()) return;
    auto batch = std::make_shared<std::vector<std::shared_ptr<AgentMessage>>>();
    batch->swap(batch_);
    const uint64_t bytes = std::exchange(batch_bytes_, 0);
    // The acks it will send count as replies already: the stream reads no
    // more while those pile up unread (or too much awaits its commit).
    uint64_t owed = 0;
    for (const auto& m : *batch) {
      owed += m->chunk().capture_id().size() + m->chunk().file().size() + 32;
    }
    // A small batch is committed right here when nothing waits or runs on
    // the commit strand (a commit, a refusal, the end), which its acks would
    // overtake: the hand-over costs more than its write saves.
    bool now;
    {
      absl::MutexLock lock(&mu_);
      now = commit_tasks_ == 0 && bytes < kMinPipelinedBytes;
      committing_bytes_ += bytes;
      owed_bytes_ += owed;
    }
    std::vector<const packetcapture::v1::Chunk*> chunks;
    chunks.reserve(batch->size());
    for (const auto& m : *batch) chunks.push_back(&m->chunk());
    std::shared_ptr<PendingBatch> pending =
        service_->store_->WriteBatch(node_, chunks);
    const absl::Status refused = pending->write_error();
    const std::string capture = chunks.front()->capture_id();
    auto commit = [this, batch = std::move(batch), pending = std::move(pending),
                   refused, bytes, owed] {
      CommitBatch(*batch, pending.get(), refused);
      absl::MutexLock lock(&mu_);
      committing_bytes_ -= bytes;
      owed_bytes_ -= owed;
      MaybeReadLocked();
    };
    if (now) {
      commit();
    } else {
      PostCommit(std::move(commit));
    }
    if (refused.ok()) return;
    // Refused now, so no later chunk of it is written; the refusal goes out
    // after the batch's acks.
    if (IsCaptureSpecific(refused.code())) {
      RejectCapture(capture, refused);
    } else {
      stopping_ = true;
    }
  }

  // Reject(), once the batches written before are committed and
  // acknowledged; the strand ignores what comes meanwhile.
  void RejectAfterCommits(const absl::Status& status) {
    stopping_ = true;
    PostCommit([this, status] { Reject(status); });
  }

  // ---- on the commit strand (or on the strand, when the commit strand is
  // idle: see kMinPipelinedBytes) ----

  // Commits a written batch and acknowledges what it stored; the chunk the
  // store stopped at refuses its capture, or ends the stream when the store
  // itself failed. After a failed commit, the batches of that capture
  // written meanwhile are abandoned, not committed: they may lie past bytes
  // that did not get stored.
  // `refused`: the write's error, which FlushBatch already acted on.
  void CommitBatch(const std::vector<std::shared_ptr<AgentMessage>>& batch,
                   PendingBatch* pending, const absl::Status& refused) {
    const std::string capture = batch.front()->chunk().capture_id();
    if (store_failed_ || failed_captures_.count(capture) > 0) return;
    BatchResult stored = pending->Commit();
    for (size_t i = 0; i < stored.results.size(); ++i) {
      const packetcapture::v1::Chunk& chunk = batch[i]->chunk();
      const AppendResult& result = stored.results[i];
      ++chunks_;
      if (!result.duplicate) bytes_ += chunk.data().size();
      if (result.gap > 0) {
        LogLine("chunk_gap", {{"node", node_},
                              {"capture", chunk.capture_id()},
                              {"file", chunk.file()},
                              {"bytes_lost", absl::StrCat(result.gap)}});
      }
      AggregatorMessage out;
      auto* ack = out.mutable_ack();
      ack->set_capture_id(chunk.capture_id());
      ack->set_file(chunk.file());
      ack->set_file_generation(chunk.file_generation());
      ack->set_offset(result.offset);
      Send(std::move(out));
    }
    if (stored.error.ok()) return;
    if (IsCaptureSpecific(stored.error.code())) {
      if (stored.error == refused) return;
      // The flush failed: refuse the capture now, and on the strand.
      if (failed_captures_.insert(capture).second) {
        Send(RejectedMessage(CaptureKey(capture), stored.error));
        Post([this, capture, error = stored.error] {
          if (!Closing()) RejectCapture(capture, error, /*sent=*/true);
        });
      }
    } else {
      store_failed_ = true;
      Reject(stored.error);
    }
  }

  // ---- on the strand ----

  // Refuses one capture for the rest of this stream (once), keeping the
  // stream.
  // `sent`: its message was sent already.
  void RejectCapture(const std::string& id, const absl::Status& status,
                     bool sent = false) {
    const std::string key = CaptureKey(id);
    if (rejected_.count(key) > 0) return;
    if (rejected_.size() >= service_->options_.max_rejected_captures) {
      RejectAfterCommits(absl::ResourceExhaustedError(
          absl::StrCat("more than ", service_->options_.max_rejected_captures,
                       " captures refused on one stream")));
      return;
    }
    rejected_.insert(key);
    ++rejected_count_;
    LogLine("capture_rejected",
            {{"node", node_},
             {"capture", key},
             {"code", absl::StatusCodeToString(status.code())},
             {"reason", std::string(status.message().substr(0, 1024))}});
    if (sent) return;
    // After the acks of the chunks written before.
    PostCommit([this, key, status] { Send(RejectedMessage(key, status)); });
  }

  static AggregatorMessage RejectedMessage(const std::string& key,
                                           const absl::Status& status) {
    AggregatorMessage out;
    auto* rejected = out.mutable_capture_rejected();
    rejected->set_capture_id(key);
    rejected->set_code(static_cast<int32_t>(status.code()));
    rejected->set_message(std::string(status.message().substr(0, 1024)));
    return out;
  }

  void OnEndOfInput() {
    if (!Closing() && !stopping_) FlushBatch();
    PostCommit([this] { FinishInput(); });
  }

  // On the commit strand: after the acks of every batch written.
  void FinishInput() {
    std::optional<grpc::Status> finish;
    {
      absl::MutexLock lock(&mu_);
      if (!finishing_) {
        finishing_ = true;
        finish_status_ = grpc::Status::OK;
      }
      finish = MaybeFinish();
    }
    if (finish) Finish(*finish);
  }

  // ---- any thread ----

  enum class RejectMode {
    kAfterQueued,        // after the replies queued before it
    kInsteadOfQueued,    // dropping queued replies not being written yet
    kIfUnauthenticated,  // only while the hello is not accepted
  };

  // Sends an IngestError and ends the stream with the same code.
  void Reject(const absl::Status& status,
              RejectMode mode = RejectMode::kAfterQueued) {
    AggregatorMessage out;
    out.mutable_error()->set_code(static_cast<int32_t>(status.code()));
    out.mutable_error()->set_message(std::string(status.message()));
    std::optional<grpc::Status> finish;
    std::string node;
    {
      absl::MutexLock lock(&mu_);
      if (finishing_) return;
      if (mode == RejectMode::kIfUnauthenticated && authenticated_) return;
      finishing_ = true;
      finish_status_ = ToGrpcStatus(status);
      node = log_node_;
      if (!broken_) {
        if (mode == RejectMode::kInsteadOfQueued) {
          while (out_.size() > 1) {
            out_bytes_ -= out_.back().second;
            out_.pop_back();
          }
        }
        const size_t size = out.ByteSizeLong();
        out_.emplace_back(std::move(out), size);
        out_bytes_ += size;
        if (out_.size() == 1) StartWrite(&out_.front().first);
      }
      finish = MaybeFinish();
    }
    uint64_t unlogged = 0;
    if (!node.empty() || service_->ShouldLogStranger(&unlogged)) {
      LogLine("ingest_rejected",
              {{"node", node},
               {"peer", peer_},
               {"code", absl::StatusCodeToString(status.code())},
               {"reason", std::string(status.message())},
               {"unlogged_before", absl::StrCat(unlogged)}});
    }
    if (finish) Finish(*finish);
  }

  bool Closing() {
    absl::MutexLock lock(&mu_);
    return finishing_ || broken_;
  }

  void Send(AggregatorMessage message) {
    const size_t size = message.ByteSizeLong();
    absl::MutexLock lock(&mu_);
    if (broken_ || finishing_) return;
    out_.emplace_back(std::move(message), size);
    out_bytes_ += size;
    if (out_.size() == 1) StartWrite(&out_.front().first);
  }

  // Starts the next read when the stream is welcomed, not ending, and
  // neither queued input nor unread replies are over their limits.
  void MaybeReadLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (reading_ || !welcomed_ || finishing_ || broken_ || finished_) return;
    if (queued_bytes_ + committing_bytes_ >= max_queued_ ||
        out_bytes_ + owed_bytes_ >= service_->options_.max_outgoing_bytes) {
      return;
    }
    reading_ = true;
    StartRead(&in_);
  }

  // The status to Finish with, once, when finishing and no write is left.
  std::optional<grpc::Status> MaybeFinish() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_ || !out_.empty() || !finishing_) return std::nullopt;
    finished_ = true;
    return finish_status_;
  }

  IngestServiceImpl* const service_;
  grpc::CallbackServerContext* const context_;
  const std::string peer_;
  std::shared_ptr<Strand> strand_;
  // Commits written batches in order and sends their acks.
  std::shared_ptr<Strand> commit_strand_;
  const uint64_t max_queued_;
  std::atomic<int> refs_{1};
  grpc::Alarm hello_alarm_;
  // The stream's place among unauthenticated streams, until its hello is
  // accepted or it is deleted. Strand (and destructor) only.
  AdmissionControl::Ticket ticket_;

  AgentMessage in_;  // owned by the outstanding read

  // Strand-only.
  std::string node_;               // set once the hello was accepted
  std::set<std::string> present_;  // the hello's captures, until Welcome()
  bool inventory_pending_ = false;
  std::string agent_instance_;
  std::string agent_version_;
  bool waiting_for_predecessor_ = false;
  Stream* successor_ = nullptr;  // referenced; see OnReplaced
  bool owns_node_ = false;       // AcquireNode() succeeded, not released
  bool ended_ = false;           // OnDone's task ran
  // Captures refused on this stream (CaptureKey).
  std::set<std::string> rejected_;
  // Chunks of one file awaiting their group commit.
  std::vector<std::shared_ptr<AgentMessage>> batch_;
  uint64_t batch_bytes_ = 0;
  // A Reject() waits for the commits before it: ignore what comes.
  bool stopping_ = false;

  // CommitBatch-only (one at a time: see commit_tasks_).
  std::set<std::string> failed_captures_;  // ids whose commit failed
  bool store_failed_ = false;

  // For the disconnect log line (OnDone).
  std::atomic<uint64_t> chunks_{0};
  std::atomic<uint64_t> bytes_{0};
  std::atomic<uint64_t> rejected_count_{0};
  std::atomic<uint64_t> ignored_chunks_{0};

  // Under the service's mu_.
  std::string registered_node_;

  absl::Mutex mu_;
  std::deque<std::pair<AggregatorMessage, size_t>> out_ ABSL_GUARDED_BY(mu_);
  uint64_t out_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t queued_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  // Chunk bytes written, not yet committed and acked.
  uint64_t committing_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t owed_bytes_ ABSL_GUARDED_BY(mu_) = 0;  // about their acks' size
  // Tasks posted to the commit strand (PostCommit, only ever from the
  // strand), queued or running.
  int commit_tasks_ ABSL_GUARDED_BY(mu_) = 0;
  int handles_pending_ ABSL_GUARDED_BY(mu_) = 0;  // posted, not yet started
  bool reading_ ABSL_GUARDED_BY(mu_) = false;     // a read is outstanding
  bool authenticated_ ABSL_GUARDED_BY(mu_) = false;
  bool welcomed_ ABSL_GUARDED_BY(mu_) = false;
  std::string log_node_ ABSL_GUARDED_BY(mu_);
  bool broken_ ABSL_GUARDED_BY(mu_) = false;
  bool finishing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status finish_status_ ABSL_GUARDED_BY(mu_);
};

IngestServiceImpl::IngestServiceImpl(CaptureStore* store,
                                     Authenticator* authenticator,
                                     IngestOptions options)
    : store_(store),
      authenticator_(authenticator),
      options_(std::move(options)),
      instance_(options_.instance.empty() ? RandomInstance()
                                          : options_.instance),
      admission_(options_.max_unauthenticated_streams,
                 options_.max_unauthenticated_per_peer),
      pool_(options_.worker_threads) {}

IngestServiceImpl::~IngestServiceImpl() {
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(
      +[](int* live) { return *live == 0; }, &live_streams_));
}

grpc::ServerBidiReactor<AgentMessage, AggregatorMessage>*
IngestServiceImpl::Report(grpc::CallbackServerContext* context) {
  return new Stream(this, context, admission_.Admit(context->peer()));
}

void IngestServiceImpl::EndStreamOf(const std::string& node,
                                    const absl::Status& why) {
  Stream* stream = nullptr;
  {
    absl::MutexLock lock(&mu_);
    auto it = by_node_.find(node);
    if (it == by_node_.end()) return;
    stream = it->second;
    stream->Ref();
  }
  stream->End(why);
  stream->Unref();
}

bool IngestServiceImpl::ShouldLogStranger(uint64_t* suppressed) {
  const absl::Time now = absl::Now();
  absl::MutexLock lock(&mu_);
  if (now - stranger_logged_ < absl::Seconds(1)) {
    ++strangers_unlogged_;
    return false;
  }
  stranger_logged_ = now;
  *suppressed = std::exchange(strangers_unlogged_, 0);
  return true;
}

}  // namespace pc::aggregator
