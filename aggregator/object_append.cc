// ObjectStore's appends: a batch of chunks becomes one data object (one per
// run of contiguous bytes), acknowledged once it is in the object store;
// and the ring mirroring that follows a new file.
#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "aggregator/chunk_cut.h"
#include "aggregator/object_store.h"
#include "aggregator/store_rules.h"
#include "common/capture_layout.h"
#include "common/log.h"

namespace pc::aggregator {

using packetcapture::v1::Chunk;

namespace {

// Contiguous bytes of one file to become one object. A batch is mostly one
// chunk: its bytes are PUT where they are, and copied only to join chunks.
class Run {
 public:
  explicit Run(uint64_t start) : start_(start) {}

  // Adds a chunk's bytes, which must outlive the Run.
  void Add(absl::string_view bytes) {
    if (chunks_ == 0) {
      first_ = bytes;
    } else {
      if (chunks_ == 1) joined_.assign(first_.data(), first_.size());
      joined_.append(bytes.data(), bytes.size());
    }
    ++chunks_;
  }
  uint64_t start() const { return start_; }  // file offset of body()[0]
  uint64_t end() const { return start_ + body().size(); }
  absl::string_view body() const {
    return chunks_ > 1 ? absl::string_view(joined_) : first_;
  }
  uint64_t chunks() const { return chunks_; }  // chunks that added bytes
  // The file's summary once the object is stored.
  const FileSummary& after() const { return after_; }
  void set_after(const FileSummary& after) { after_ = after; }

 private:
  uint64_t start_;
  FileSummary after_;
  absl::string_view first_;
  std::string joined_;
  uint64_t chunks_ = 0;
};

}  // namespace

BatchResult ObjectStore::AppendBatch(const std::string& node,
                                     const std::vector<const Chunk*>& chunks) {
  BatchResult out;
  if (chunks.empty()) return out;
  const Chunk& first = *chunks.front();
  const std::string& id = first.capture_id();
  std::string run_dir, ring;
  if (!IsValidCaptureId(id)) {
    out.error = absl::InvalidArgumentError(
        absl::StrCat("invalid capture id \"", id.substr(0, 256), "\""));
    return out;
  }
  if (!ParseStoredFileName(first.file(), &run_dir, &ring)) {
    out.error = absl::InvalidArgumentError(
        absl::StrCat("invalid file name \"", first.file().substr(0, 256),
                     "\" (expected run-<k>-w<N>/ring<i>)"));
    return out;
  }
  std::shared_ptr<HeldCapture> c;
  int64_t epoch;
  out.error = Held(node, id, &c, &epoch);
  if (!out.error.ok()) return out;
  if (c == nullptr) {
    std::optional<packetcapture::v1::Capture> listed = registry_->Get(id);
    out.error = listed && listed->node() != node
                    ? absl::PermissionDeniedError(absl::StrCat(
                          "capture ", id, " belongs to node ", listed->node()))
                    : absl::FailedPreconditionError(absl::StrCat(
                          "unknown capture ", id, ": send its status first"));
    return out;
  }
  const FileKey key{first.file(), first.file_generation()};
  absl::MutexLock lock(&c->mu);
  if (c->deleted) {
    out.error = absl::FailedPreconditionError(
        absl::StrCat("capture ", id, " was deleted meanwhile"));
    return out;
  }
  if (c->fenced.load()) {
    out.error = absl::AbortedError(
        absl::StrCat("replica ", options_.replica_id, " lost node ", node));
    return out;
  }
  auto existing = c->entry.files.find(key);
  const bool is_new = existing == c->entry.files.end();
  FileSummary summary = is_new ? FileSummary() : existing->second;
  if (is_new && first.offset() != 0) {
    out.error = absl::InvalidArgumentError(
        absl::StrCat("first chunk of ", first.file(), " generation ",
                     first.file_generation(), " must start at offset 0"));
    return out;
  }

  // Cut every chunk as the directory store would; group the new bytes into
  // runs. A result counts once the runs before it (and its own) are stored.
  std::vector<Run> runs;
  std::vector<std::pair<AppendResult, size_t>> pending;  // result, runs
  absl::Status cut_error;
  for (const Chunk* chunk : chunks) {
    if (chunk->capture_id() != id || chunk->file() != key.first ||
        chunk->file_generation() != key.second) {
      cut_error = absl::InternalError("a batch must hold chunks of one file");
      break;
    }
    if (chunk->offset() > options_.max_file_bytes ||
        chunk->data().size() > options_.max_file_bytes - chunk->offset()) {
      cut_error = absl::InvalidArgumentError(
          absl::StrCat(chunk->file(), " offset ", chunk->offset(),
                       ": ends beyond the largest file accepted (",
                       options_.max_file_bytes, " bytes)"));
      break;
    }
    auto cut = CutChunk(*chunk, summary.logical_len, summary.header);
    if (!cut.ok()) {
      cut_error = cut.status();
      break;
    }
    if (!cut->result.duplicate) {
      const uint64_t start = cut->result.offset - cut->data.size();
      if (runs.empty() || runs.back().end() != start) runs.emplace_back(start);
      Run& run = runs.back();
      run.Add(cut->data);
      summary.logical_len = cut->result.offset;
      summary.physical_len += cut->data.size();
      summary.packets += cut->scan.records;
      if (!summary.header) summary.header = cut->header;
      if (!summary.first_time) summary.first_time = cut->scan.first_time;
      if (cut->scan.last_time) summary.last_time = cut->scan.last_time;
      run.set_after(summary);
    }
    pending.emplace_back(cut->result, runs.size());
  }

  // Each run is one object (more after a lost reply: see PutData); nothing
  // is acknowledged before its PUT.
  size_t stored = 0;
  absl::Status put_error;
  const FileSummary before = is_new ? FileSummary() : existing->second;
  for (const Run& run : runs) {
    absl::StatusOr<int> objects =
        PutData(id, key, run.start(), run.body(), epoch);
    if (!objects.ok()) {
      put_error = objects.status();
      break;
    }
    c->entry.files[key] = run.after();
    c->objects[key] += *objects;
    ++stored;
    absl::MutexLock index(&mu_);
    stats_.chunks += run.chunks();
    stats_.bytes += run.body().size();
  }
  for (const auto& [result, needed] : pending) {
    if (needed > stored) break;
    out.results.push_back(result);
  }
  out.error = !put_error.ok() ? put_error : cut_error;
  if (stored == 0) return out;
  c->dirty = true;
  ++c->entry.counts_seq;
  if (!c->entry.meta.status.on_node() || Stopped(c->entry.meta.status)) {
    // Bytes of a stopped capture (tcpdump's last flush, or a backlog sent
    // after a reconnect): its counts are final and the other replicas list
    // them beside its STOPPED state and download its objects now, so they
    // are written now, not within catalog_write_interval. Of a capture its
    // agent called drained, too: its entry says files_final and a next
    // holder takes those counts as they are.
    const absl::Status written = WriteCatalog(node, epoch, c.get());
    if (!written.ok()) {
      LogLine("store_catalog_error",
              {{"capture", id}, {"error", written.ToString()}});
    }
  }
  if (before.physical_len == 0) {
    c->new_files = true;  // listings show it within a second
    // The ring moved on: the files before this one are sealed.
    MirrorRing(c.get());
    QueueSealed(c.get(), &key);
  }
  Publish(*c);
  return out;
}

absl::StatusOr<int> ObjectStore::PutData(const std::string& id,
                                         const FileKey& key, uint64_t start,
                                         absl::string_view body,
                                         int64_t epoch) {
  s3::PutOptions put;
  put.if_none_match_any = true;
  put.metadata["epoch"] = absl::StrCat(epoch);
  put.metadata["replica"] = options_.replica_id;
  // An object already at an offset (412) holds the same agent bytes: a PUT
  // of ours whose reply was lost, or a deposed writer's copy. If it covers
  // the rest of the body that is enough; if it is shorter (the agent resent
  // from that offset with more bytes), the rest goes into an object after
  // it. Bounded: each round moves past a non-empty object.
  for (int objects = 1;; ++objects) {
    const std::string object =
        layout_.DataKey(id, key.first, key.second, start);
    const absl::Time began = absl::Now();
    auto etag = options_.client->Put(object, body, put);
    put_latency_.Observe(absl::Now() - began);
    if (etag.ok()) return objects;
    if (!absl::IsFailedPrecondition(etag.status())) return etag.status();
    auto info = options_.client->Head(object);
    if (!info.ok()) return info.status();
    if (info->size >= body.size()) return objects;
    if (info->size == 0 || objects >= 16) {
      return absl::AbortedError(
          absl::StrCat("object ", id, "/", key.first, ".", key.second, "@",
                       start, " holds ", info->size, " of this batch's ",
                       body.size(), " bytes: another writer"));
    }
    start += info->size;
    body.remove_prefix(info->size);
  }
}

void ObjectStore::MirrorRing(HeldCapture* c) {
  const uint32_t max_files = c->entry.meta.status.max_files();
  if (max_files == 0 || c->entry.files.size() <= max_files) return;
  std::vector<std::pair<FileKey, FileSummary>> files(c->entry.files.begin(),
                                                     c->entry.files.end());
  std::sort(files.begin(), files.end(), [](const auto& a, const auto& b) {
    return DownloadOrderLess(a.first, a.second, b.first, b.second);
  });
  c->dirty = true;
  ++c->entry.counts_seq;
  for (size_t i = 0; i + max_files < files.size(); ++i) {
    const FileKey& key = files[i].first;
    LogLine("store_ring_dropped", {{"capture", c->id},
                                   {"file", key.first},
                                   {"generation", absl::StrCat(key.second)}});
    c->entry.files.erase(key);
    c->objects.erase(key);
    const absl::Status deleted =
        DeleteObjects(layout_.FilePrefix(c->id, key.first, key.second));
    if (!deleted.ok()) {
      // Left for retention to delete with the capture.
      LogLine("store_delete_error",
              {{"capture", c->id}, {"error", deleted.ToString()}});
    }
  }
}

}  // namespace pc::aggregator
