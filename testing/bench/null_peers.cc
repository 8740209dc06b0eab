// The benchmark's peers of the aggregator (see ingest_bench.cc's usage):
// the null server (acks without storing) and the null writer and null putter,
// which store every chunk durably as simply as possible (a file write and
// fdatasync; an object PUT) and ack it: no index, no log, no checks.
#include "testing/bench/null_peers.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/s3/s3_client.h"
#include "common/s3/s3_config.h"
#include "grpcpp/grpcpp.h"
#include "proto/packetcapture.grpc.pb.h"

namespace pc::bench {
namespace {

namespace v1 = packetcapture::v1;

// ---- null server ----

class NullReport final
    : public grpc::ServerBidiReactor<v1::AgentMessage, v1::AggregatorMessage> {
 public:
  NullReport() { StartRead(&in_); }

  void OnReadDone(bool ok) override {
    if (!ok) {
      std::lock_guard<std::mutex> lock(mu_);
      done_reading_ = true;
      if (out_.empty() && !finished_) {
        finished_ = true;
        Finish(grpc::Status::OK);
      }
      return;
    }
    v1::AggregatorMessage reply;
    bool has_reply = false;
    if (in_.has_hello()) {
      reply.mutable_welcome()->set_aggregator_instance("null");
      reply.mutable_welcome()->set_max_inflight_bytes(uint64_t{4} << 20);
      reply.mutable_welcome()->set_max_chunk_bytes(uint32_t{1} << 20);
      has_reply = true;
    } else if (in_.has_chunk()) {
      const auto& c = in_.chunk();
      auto* ack = reply.mutable_ack();
      ack->set_capture_id(c.capture_id());
      ack->set_file(c.file());
      ack->set_file_generation(c.file_generation());
      ack->set_offset(c.offset() + c.data().size());
      has_reply = true;
    }
    std::lock_guard<std::mutex> lock(mu_);
    if (has_reply) {
      out_.push_back(std::move(reply));
      if (out_.size() == 1) StartWrite(&out_.front());
    }
    StartRead(&in_);
  }

  void OnWriteDone(bool ok) override {
    std::lock_guard<std::mutex> lock(mu_);
    out_.pop_front();
    if (ok && !out_.empty()) {
      StartWrite(&out_.front());
    } else if (done_reading_ && !finished_ && (out_.empty() || !ok)) {
      finished_ = true;
      Finish(grpc::Status::OK);
    }
  }

  void OnDone() override { delete this; }

 private:
  v1::AgentMessage in_;
  std::mutex mu_;
  std::deque<v1::AggregatorMessage> out_;
  bool done_reading_ = false;
  bool finished_ = false;
};

class NullIngest final : public v1::IngestService::CallbackService {
  grpc::ServerBidiReactor<v1::AgentMessage, v1::AggregatorMessage>* Report(
      grpc::CallbackServerContext*) override {
    return new NullReport();
  }
};

class FileWriter final
    : public grpc::ServerWriteReactor<v1::DownloadCaptureResponse> {
 public:
  FileWriter(const std::string& path, size_t message_bytes)
      : in_(path, std::ios::binary), message_bytes_(message_bytes) {
    Next();
  }
  void OnWriteDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status::CANCELLED);
      return;
    }
    Next();
  }
  void OnDone() override { delete this; }

 private:
  void Next() {
    std::string* data = out_.mutable_data();
    data->resize(message_bytes_);
    in_.read(&(*data)[0], static_cast<std::streamsize>(message_bytes_));
    data->resize(static_cast<size_t>(in_.gcount()));
    if (data->empty()) {
      Finish(grpc::Status::OK);
      return;
    }
    out_.set_offset(offset_);
    offset_ += data->size();
    StartWrite(&out_);
  }
  std::ifstream in_;
  size_t message_bytes_;
  uint64_t offset_ = 0;
  v1::DownloadCaptureResponse out_;
};

class NullCapture final : public v1::CaptureService::CallbackService {
 public:
  NullCapture(std::string file, size_t message_bytes)
      : file_(std::move(file)), message_bytes_(message_bytes) {}
  grpc::ServerWriteReactor<v1::DownloadCaptureResponse>* DownloadCapture(
      grpc::CallbackServerContext*,
      const v1::DownloadCaptureRequest*) override {
    return new FileWriter(file_, message_bytes_);
  }

 private:
  std::string file_;
  size_t message_bytes_;
};

// ---- null writer and null putter ----

// Stores a round of chunks durably; false if any of it failed. One per
// stream, used by its worker thread only.
class ChunkSink {
 public:
  virtual ~ChunkSink() = default;
  virtual bool Store(const std::deque<v1::Chunk>& round) = 0;
};

// Each chunk at its offset in DIR/<capture>.<file>.<generation>, then one
// fdatasync per file written to.
class FileSink final : public ChunkSink {
 public:
  explicit FileSink(std::string dir) : dir_(std::move(dir)) {}
  ~FileSink() override {
    for (const auto& [name, fd] : fds_) close(fd);
  }

  bool Store(const std::deque<v1::Chunk>& round) override {
    bool failed = false;
    std::set<int> written;
    for (const v1::Chunk& c : round) {
      const int fd = FdFor(c);
      const std::string& d = c.data();
      size_t done = 0;
      while (fd >= 0 && done < d.size()) {
        const ssize_t n = pwrite(fd, d.data() + done, d.size() - done,
                                 static_cast<off_t>(c.offset() + done));
        if (n <= 0) break;
        done += static_cast<size_t>(n);
      }
      failed |= done != d.size();
      if (fd >= 0) written.insert(fd);
    }
    for (int fd : written) failed |= fdatasync(fd) != 0;
    // Keep only the last file's descriptor: ring files come one by one.
    const int last = round.empty() ? -1 : FdFor(round.back());
    for (auto it = fds_.begin(); it != fds_.end();) {
      if (it->second != last) {
        close(it->second);
        it = fds_.erase(it);
      } else {
        ++it;
      }
    }
    return !failed;
  }

 private:
  int FdFor(const v1::Chunk& c) {
    std::string name = c.capture_id() + "." + c.file() + "." +
                       std::to_string(c.file_generation());
    for (char& ch : name) {
      if (ch == '/') ch = '_';
    }
    auto it = fds_.find(name);
    if (it != fds_.end()) return it->second;
    const int fd =
        open((dir_ + "/" + name).c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd >= 0) fds_[name] = fd;
    return fd;
  }

  const std::string dir_;
  std::map<std::string, int> fds_;
};

// Each chunk as one object PREFIX/<capture>/<file>.<generation>/<offset>,
// PUT as a replica puts a batch (If-None-Match: *, the epoch and replica
// metadata, a signed payload) through the same S3 client: one per stream,
// whose connection stays open from PUT to PUT. (One client for 100 streams
// keeps 16 connections and opened a new one for most PUTs.)
class ObjectSink final : public ChunkSink {
 public:
  ObjectSink(std::unique_ptr<pc::s3::S3Client> client, std::string prefix)
      : client_(std::move(client)), prefix_(std::move(prefix)) {}

  bool Store(const std::deque<v1::Chunk>& round) override {
    pc::s3::PutOptions put;
    put.if_none_match_any = true;
    put.metadata["epoch"] = "1";
    put.metadata["replica"] = "null-putter";
    for (const v1::Chunk& c : round) {
      const std::string key =
          absl::StrFormat("%s/%s/%s.%d/%020d", prefix_, c.capture_id(),
                          c.file(), c.file_generation(), c.offset());
      if (!client_->Put(key, c.data(), put).ok()) return false;
    }
    return true;
  }

 private:
  const std::unique_ptr<pc::s3::S3Client> client_;
  const std::string prefix_;
};

class WriterReport final
    : public grpc::ServerBidiReactor<v1::AgentMessage, v1::AggregatorMessage> {
 public:
  WriterReport(std::unique_ptr<ChunkSink> sink, const v1::Welcome* batching)
      : sink_(std::move(sink)),
        batching_(batching),
        worker_([this] { Work(); }) {
    StartRead(&in_);
  }

  void OnReadDone(bool ok) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (!ok) {
      done_reading_ = true;
      cv_.notify_one();
      return;
    }
    if (in_.has_hello()) {
      v1::AggregatorMessage reply;
      *reply.mutable_welcome() = *batching_;
      reply.mutable_welcome()->set_aggregator_instance("null-peer");
      reply.mutable_welcome()->set_max_inflight_bytes(uint64_t{4} << 20);
      reply.mutable_welcome()->set_max_chunk_bytes(uint32_t{1} << 20);
      SendLocked(std::move(reply));
    } else if (in_.has_chunk()) {
      pending_.push_back(std::move(*in_.mutable_chunk()));
      cv_.notify_one();
    }
    in_.Clear();
    StartRead(&in_);
  }

  void OnWriteDone(bool ok) override {
    bool finish;
    {
      std::lock_guard<std::mutex> lock(mu_);
      out_.pop_front();
      if (!ok) out_.clear();
      if (!out_.empty()) StartWrite(&out_.front());
      finish = ShouldFinishLocked();
    }
    if (finish) Finish(grpc::Status::OK);
  }

  void OnDone() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
      cv_.notify_one();
    }
    Unref();
  }

 private:
  void Unref() {
    if (refs_.fetch_sub(1) == 1) {
      worker_.detach();
      delete this;
    }
  }

  void SendLocked(v1::AggregatorMessage m) {
    out_.push_back(std::move(m));
    if (out_.size() == 1) StartWrite(&out_.front());
  }

  bool ShouldFinishLocked() {
    if (finished_ || !worker_done_ || !done_reading_ || !out_.empty())
      return false;
    finished_ = true;
    return true;
  }

  // Writes, flushes and acks rounds of queued chunks until the stream ends.
  void Work() {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      cv_.wait(lock,
               [this] { return stop_ || done_reading_ || !pending_.empty(); });
      if (stop_) break;
      if (pending_.empty()) {  // done reading, all acked
        worker_done_ = true;
        const bool finish = ShouldFinishLocked();
        lock.unlock();
        if (finish) Finish(grpc::Status::OK);
        Unref();
        return;
      }
      std::deque<v1::Chunk> round;
      round.swap(pending_);
      lock.unlock();
      const bool failed = !sink_->Store(round);
      lock.lock();
      if (stop_) break;  // OnDone came: no more writes to the stream
      if (failed) {
        std::fprintf(stderr, "null peer: a write or flush failed\n");
        continue;  // never acks what is not durable
      }
      for (const v1::Chunk& c : round) {
        v1::AggregatorMessage reply;
        auto* ack = reply.mutable_ack();
        ack->set_capture_id(c.capture_id());
        ack->set_file(c.file());
        ack->set_file_generation(c.file_generation());
        ack->set_offset(c.offset() + c.data().size());
        SendLocked(std::move(reply));
      }
    }
    lock.unlock();
    Unref();
  }

  const std::unique_ptr<ChunkSink> sink_;  // worker only
  const v1::Welcome* const batching_;      // the batching its welcome asks for
  std::atomic<int> refs_{2};               // gRPC (until OnDone) and the worker
  v1::AgentMessage in_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<v1::Chunk> pending_;
  std::deque<v1::AggregatorMessage> out_;
  bool done_reading_ = false;
  bool worker_done_ = false;
  bool stop_ = false;
  bool finished_ = false;
  std::thread worker_;  // last: starts after the members above exist
};

// A WriterReport per stream, each with a sink of its own.
class WriterIngest final : public v1::IngestService::CallbackService {
 public:
  WriterIngest(std::function<std::unique_ptr<ChunkSink>()> new_sink,
               v1::Welcome batching)
      : new_sink_(std::move(new_sink)), batching_(std::move(batching)) {}
  grpc::ServerBidiReactor<v1::AgentMessage, v1::AggregatorMessage>* Report(
      grpc::CallbackServerContext*) override {
    return new WriterReport(new_sink_(), &batching_);
  }

 private:
  const std::function<std::unique_ptr<ChunkSink>()> new_sink_;
  const v1::Welcome batching_;
};

// BATCH_BYTES BATCH_DELAY_MS at argv[i], argv[i + 1], if there.
v1::Welcome BatchingArgs(int argc, char** argv, int i) {
  v1::Welcome batching;
  if (argc > i + 1) {
    batching.set_batch_bytes(
        static_cast<uint32_t>(std::strtoul(argv[i], nullptr, 10)));
    batching.set_batch_delay_ms(
        static_cast<uint32_t>(std::strtoul(argv[i + 1], nullptr, 10)));
  }
  return batching;
}

// Serves `services` on 127.0.0.1:PORT (0: any) and prints the port.
int Serve(const char* port_arg,
          std::initializer_list<grpc::Service*> services) {
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(std::string("127.0.0.1:") + port_arg,
                           grpc::InsecureServerCredentials(), &port);
  builder.SetMaxReceiveMessageSize(8 << 20);
  for (grpc::Service* service : services) builder.RegisterService(service);
  auto server = builder.BuildAndStart();
  if (!server) return 1;
  std::printf("listening %d\n", port);
  std::fflush(stdout);
  server->Wait();
  return 0;
}

}  // namespace

int NullWriter(int argc, char** argv) {
  if (argc != 4 && argc != 6) return 2;
  const std::string dir = argv[3];
  WriterIngest ingest([dir] { return std::make_unique<FileSink>(dir); },
                      BatchingArgs(argc, argv, 4));
  return Serve(argv[2], {&ingest});
}

int NullPutter(int argc, char** argv) {
  if (argc != 7 && argc != 9) return 2;
  pc::s3::S3Config config;
  config.endpoint = argv[3];
  config.bucket = argv[5];
  if (absl::Status s = pc::s3::LoadCredentials(argv[4], &config); !s.ok()) {
    std::fprintf(stderr, "null-putter: %s\n", s.ToString().c_str());
    return 1;
  }
  // Checked once here; each stream's client is made from the same config.
  if (auto client = pc::s3::S3Client::Create(config); !client.ok()) {
    std::fprintf(stderr, "null-putter: %s\n",
                 client.status().ToString().c_str());
    return 1;
  }
  const std::string prefix = argv[6];
  auto streams = std::make_shared<std::atomic<uint64_t>>(0);
  WriterIngest ingest(
      [config, prefix, streams] {
        return std::make_unique<ObjectSink>(
            *pc::s3::S3Client::Create(config),
            absl::StrCat(prefix, "/stream-", (*streams)++));
      },
      BatchingArgs(argc, argv, 7));
  return Serve(argv[2], {&ingest});
}

int NullServer(int argc, char** argv) {
  if (argc != 3 && argc != 5) return 2;
  NullIngest ingest;
  NullCapture capture(argc == 5 ? argv[3] : "/dev/null",
                      argc == 5 ? std::strtoul(argv[4], nullptr, 10) : 65536);
  return Serve(argv[2], {&ingest, &capture});
}

}  // namespace pc::bench
