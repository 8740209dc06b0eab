#include "aggregator/ingest_service.h"

#include <deque>
#include <optional>
#include <set>
#include <utility>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/crc32c.h"
#include "common/grpc_status.h"
#include "common/kube/names.h"
#include "common/log.h"

namespace pc::aggregator {
namespace {

using packetcapture::v1::AgentMessage;
using packetcapture::v1::AggregatorMessage;

std::string RandomInstance() {
  absl::BitGen gen;
  return absl::StrFormat("%016x", absl::Uniform<uint64_t>(gen));
}

}  // namespace

// One Report stream. Reference-counted: gRPC holds one reference until
// OnDone, each queued task one more, so a task never outlives the object.
class IngestServiceImpl::Stream final
    : public grpc::ServerBidiReactor<AgentMessage, AggregatorMessage> {
 public:
  Stream(IngestServiceImpl* service, std::string peer)
      : service_(service),
        peer_(std::move(peer)),
        strand_(std::make_shared<Strand>(&service->pool_)),
        max_queued_(2 * service->options_.max_inflight_bytes +
                    service->options_.max_chunk_bytes) {
    ++service_->active_streams_;
    StartRead(&in_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
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
    // StartRead and Finish both happen under mu_'s ordering: never a read
    // started after Finish.
    if (queued_bytes_ >= max_queued_) {
      read_paused_ = true;
    } else if (!finished_) {
      StartRead(&in_);
    }
  }

  void OnWriteDone(bool ok) override {
    std::optional<grpc::Status> finish;
    {
      absl::MutexLock lock(&mu_);
      out_.pop_front();
      if (!ok) {
        out_.clear();
        broken_ = true;
      }
      if (!out_.empty()) {
        StartWrite(&out_.front());
      } else {
        finish = MaybeFinish();
      }
    }
    if (finish) Finish(*finish);
  }

  void OnCancel() override {
    absl::MutexLock lock(&mu_);
    broken_ = true;
  }

  void OnDone() override {
    --service_->active_streams_;
    if (!node_.empty() && service_->options_.on_agent_disconnected) {
      service_->options_.on_agent_disconnected(node_);
    }
    if (!node_.empty()) {
      LogLine("agent_disconnected", {{"node", node_},
                                     {"peer", peer_},
                                     {"chunks", absl::StrCat(chunks_)},
                                     {"bytes", absl::StrCat(bytes_)}});
    }
    Unref();
  }

 private:
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

  // ---- on the strand ----

  void Handle(const std::shared_ptr<AgentMessage>& message, size_t size) {
    {
      absl::MutexLock lock(&mu_);
      --handles_pending_;
    }
    if (!Closing()) Dispatch(message);
    absl::MutexLock lock(&mu_);
    queued_bytes_ -= size;
    if (read_paused_ && queued_bytes_ < max_queued_ && !finished_) {
      read_paused_ = false;
      StartRead(&in_);
    }
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
        Reject(absl::FailedPreconditionError("hello sent twice"));
        return;
      case AgentMessage::kStatus: {
        absl::Status put = service_->store_->PutStatus(node_, message.status());
        if (!put.ok()) Reject(put);
        return;
      }
      case AgentMessage::kChunk:
        OnChunk(shared);
        return;
      default:
        Reject(absl::InvalidArgumentError("empty or unknown message"));
        return;
    }
  }

  void OnHello(const packetcapture::v1::Hello& hello) {
    if (hello.token().empty()) {
      Reject(absl::UnauthenticatedError("hello carries no token"));
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
    if (!identity->node.empty() && identity->node != hello.node()) {
      Reject(absl::PermissionDeniedError(
          absl::StrCat("token is bound to node ", identity->node,
                       ", hello says ", hello.node())));
      return;
    }
    node_ = hello.node();
    if (service_->options_.on_agent_connected) {
      service_->options_.on_agent_connected(node_);
    }
    std::set<std::string> present(hello.capture_ids().begin(),
                                  hello.capture_ids().end());
    service_->store_->MarkGone(
        node_, present, absl::StrCat("no longer reported by node ", node_));
    AggregatorMessage out;
    auto* welcome = out.mutable_welcome();
    welcome->set_aggregator_instance(service_->instance_);
    for (auto& point : service_->store_->ResumePoints(node_)) {
      *welcome->add_resume() = std::move(point);
    }
    welcome->set_max_inflight_bytes(service_->options_.max_inflight_bytes);
    welcome->set_max_chunk_bytes(service_->options_.max_chunk_bytes);
    LogLine("agent_connected",
            {{"node", node_},
             {"instance", hello.agent_instance()},
             {"version", hello.agent_version()},
             {"peer", peer_},
             {"resume_points", absl::StrCat(welcome->resume_size())}});
    Send(std::move(out));
  }

  // Checks a chunk and adds it to the batch; the batch is stored (one group
  // commit) once no message is queued behind it, it reaches the window, or a
  // chunk of another file arrives.
  void OnChunk(const std::shared_ptr<AgentMessage>& message) {
    const packetcapture::v1::Chunk& chunk = message->chunk();
    if (chunk.data().size() > service_->options_.max_chunk_bytes) {
      FlushBatch();
      Reject(absl::InvalidArgumentError(absl::StrCat(
          "chunk of ", chunk.data().size(), " bytes exceeds max_chunk_bytes ",
          service_->options_.max_chunk_bytes)));
      return;
    }
    if (Crc32c(chunk.data()) != chunk.crc32c()) {
      FlushBatch();
      Reject(absl::DataLossError(absl::StrCat(
          "CRC32C mismatch in chunk of ", chunk.capture_id().substr(0, 256),
          " ", chunk.file().substr(0, 256), " at offset ", chunk.offset())));
      return;
    }
    if (!batch_.empty()) {
      const auto& first = batch_.front()->chunk();
      if (first.capture_id() != chunk.capture_id() ||
          first.file() != chunk.file() ||
          first.file_generation() != chunk.file_generation()) {
        FlushBatch();
        if (Closing()) return;
      }
    }
    batch_.push_back(message);
    batch_bytes_ += chunk.data().size();
    bool more_queued;
    {
      absl::MutexLock lock(&mu_);
      more_queued = handles_pending_ > 0;
    }
    if (!more_queued || batch_bytes_ >= service_->options_.max_inflight_bytes) {
      FlushBatch();
    }
  }

  // Stores the batch and acknowledges what was stored; rejects the stream if
  // the store stopped at a chunk.
  void FlushBatch() {
    if (batch_.empty()) return;
    std::vector<const packetcapture::v1::Chunk*> chunks;
    chunks.reserve(batch_.size());
    for (const auto& m : batch_) chunks.push_back(&m->chunk());
    BatchResult stored = service_->store_->AppendBatch(node_, chunks);
    for (size_t i = 0; i < stored.results.size(); ++i) {
      const packetcapture::v1::Chunk& chunk = *chunks[i];
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
    batch_.clear();
    batch_bytes_ = 0;
    if (!stored.error.ok()) Reject(stored.error);
  }

  void OnEndOfInput() {
    if (!Closing()) FlushBatch();
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

  // Sends an IngestError and ends the stream with the same code.
  void Reject(const absl::Status& status) {
    LogLine("ingest_rejected",
            {{"node", node_},
             {"peer", peer_},
             {"code", absl::StatusCodeToString(status.code())},
             {"reason", std::string(status.message())}});
    AggregatorMessage out;
    out.mutable_error()->set_code(static_cast<int32_t>(status.code()));
    out.mutable_error()->set_message(std::string(status.message()));
    std::optional<grpc::Status> finish;
    {
      absl::MutexLock lock(&mu_);
      if (finishing_) return;
      finishing_ = true;
      finish_status_ = ToGrpcStatus(status);
      if (!broken_) {
        out_.push_back(std::move(out));
        if (out_.size() == 1) StartWrite(&out_.front());
      }
      finish = MaybeFinish();
    }
    if (finish) Finish(*finish);
  }

  bool Closing() {
    absl::MutexLock lock(&mu_);
    return finishing_ || broken_;
  }

  void Send(AggregatorMessage message) {
    absl::MutexLock lock(&mu_);
    if (broken_ || finishing_) return;
    out_.push_back(std::move(message));
    if (out_.size() == 1) StartWrite(&out_.front());
  }

  // The status to Finish with, once, when finishing and no write is left.
  std::optional<grpc::Status> MaybeFinish() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_ || !out_.empty()) return std::nullopt;
    if (!finishing_ && !broken_) return std::nullopt;
    if (!finishing_) return std::nullopt;  // broken: wait for end of input
    finished_ = true;
    return finish_status_;
  }

  IngestServiceImpl* service_;
  const std::string peer_;
  std::shared_ptr<Strand> strand_;
  const uint64_t max_queued_;
  std::atomic<int> refs_{1};

  AgentMessage in_;  // owned by the outstanding read

  // Strand-only.
  std::string node_;  // set once the hello was accepted
  uint64_t chunks_ = 0;
  uint64_t bytes_ = 0;
  // Chunks of one file awaiting their group commit.
  std::vector<std::shared_ptr<AgentMessage>> batch_;
  uint64_t batch_bytes_ = 0;

  absl::Mutex mu_;
  std::deque<AggregatorMessage> out_ ABSL_GUARDED_BY(mu_);
  uint64_t queued_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  int handles_pending_ ABSL_GUARDED_BY(mu_) = 0;  // posted, not yet started
  bool read_paused_ ABSL_GUARDED_BY(mu_) = false;
  bool broken_ ABSL_GUARDED_BY(mu_) = false;
  bool finishing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status finish_status_ ABSL_GUARDED_BY(mu_);
};

IngestServiceImpl::IngestServiceImpl(Store* store, Authenticator* authenticator,
                                     IngestOptions options)
    : store_(store),
      authenticator_(authenticator),
      options_(std::move(options)),
      instance_(options_.instance.empty() ? RandomInstance()
                                          : options_.instance),
      pool_(options_.worker_threads) {}

IngestServiceImpl::~IngestServiceImpl() = default;

grpc::ServerBidiReactor<AgentMessage, AggregatorMessage>*
IngestServiceImpl::Report(grpc::CallbackServerContext* context) {
  return new Stream(this, context->peer());
}

}  // namespace pc::aggregator
