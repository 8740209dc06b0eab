// ObjectStore's compaction of sealed files (issue 12): a file of a held
// capture that a trickle left as many small objects becomes one object per
// contiguous run of them, on a background thread, never in the ingest path.
//
// Order per run: read its objects (NotFound: someone deleted them, stop),
// PUT <offset>-<end> with If-None-Match: * (412: an equal compaction exists;
// same bytes), check that the capture's catalog entry still exists (else a
// deletion raced us: delete the new object), check under the capture's
// mutex that the file was not dropped from the ring meanwhile (MirrorRing
// runs under it and lists the file's objects after our PUT if it runs
// after this check), then delete the replaced objects. The capture's mutex
// is held only for that check, so appends never wait for compaction I/O.
// Every step leaves the file's bytes readable: the new object holds the
// same bytes as those it replaces, and readers take overlaps once.
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "aggregator/object_files.h"
#include "aggregator/object_store.h"
#include "aggregator/store_rules.h"
#include "common/log.h"

namespace pc::aggregator {
namespace {

// Bytes [from, to) of the file, read from `object`.
struct Piece {
  DataObject object;
  uint64_t from = 0;
  uint64_t to = 0;
};

// Contiguous bytes [start, end) of a file: the objects within it and the
// pieces of them that hold each byte once.
struct Segment {
  uint64_t start = 0;
  uint64_t end = 0;
  std::vector<DataObject> objects;
  std::vector<Piece> pieces;
};

// `objects` in ListFileObjects' order (by offset, longer first).
std::vector<Segment> Segments(const std::vector<DataObject>& objects) {
  std::vector<Segment> out;
  for (const DataObject& o : objects) {
    const uint64_t end = o.offset + o.size;
    if (out.empty() || o.offset > out.back().end) {
      out.emplace_back();
      out.back().start = out.back().end = o.offset;
    }
    Segment& s = out.back();
    s.objects.push_back(o);
    if (end > s.end) {
      s.pieces.push_back(Piece{o, s.end, end});
      s.end = end;
    }
  }
  return out;
}

}  // namespace

void ObjectStore::QueueSealed(HeldCapture* c, const FileKey* next) {
  const FileSummary* next_summary = nullptr;
  if (next != nullptr) {
    auto it = c->entry.files.find(*next);
    if (it == c->entry.files.end()) return;
    next_summary = &it->second;
  } else if (!Stopped(c->entry.meta.status)) {
    // Running: every file but the last one in download order.
    for (const auto& [key, f] : c->entry.files) {
      if (next_summary == nullptr ||
          DownloadOrderLess(*next, *next_summary, key, f)) {
        next = &key;
        next_summary = &f;
      }
    }
    if (next == nullptr) return;
  }
  std::vector<FileKey> sealed;
  for (const auto& [key, f] : c->entry.files) {
    auto n = c->objects.find(key);
    if (n == c->objects.end() || n->second < 2 ||
        f.physical_len >= options_.compact_below_bytes * n->second) {
      continue;  // one object already, or a few large ones
    }
    if (next != nullptr &&
        (key == *next || !DownloadOrderLess(key, f, *next, *next_summary))) {
      continue;
    }
    sealed.push_back(key);
  }
  if (sealed.empty()) return;
  absl::MutexLock lock(&compact_mu_);
  for (FileKey& key : sealed) compact_queue_.emplace(c->id, std::move(key));
}

bool ObjectStore::TakeCompaction(bool wait,
                                 std::pair<std::string, FileKey>* job) {
  absl::MutexLock lock(&compact_mu_);
  if (wait) {
    compact_mu_.Await(absl::Condition(
        +[](ObjectStore* s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->compact_mu_) {
          return s->compact_stop_ || !s->compact_queue_.empty();
        },
        this));
    if (compact_stop_) return false;
  }
  if (compact_queue_.empty()) return false;
  *job = compact_queue_.extract(compact_queue_.begin()).value();
  return true;
}

void ObjectStore::RunCompactor() {
  std::pair<std::string, FileKey> job;
  while (TakeCompaction(/*wait=*/true, &job)) {
    CompactFile(job.first, job.second);
  }
}

int ObjectStore::CompactQueued() {
  int written = 0;
  std::pair<std::string, FileKey> job;
  while (TakeCompaction(/*wait=*/false, &job)) {
    written += CompactFile(job.first, job.second);
  }
  return written;
}

int ObjectStore::CompactFile(const std::string& id, const FileKey& file) {
  std::shared_ptr<HeldCapture> c;
  int64_t epoch = 0;
  {
    absl::MutexLock lock(&mu_);
    auto node = held_ids_.find(id);
    if (node == held_ids_.end()) return 0;
    auto n = nodes_.find(node->second);
    if (n == nodes_.end() || n->second.lost || n->second.refs == 0) return 0;
    auto it = n->second.captures.find(id);
    if (it == n->second.captures.end()) return 0;
    c = it->second;
    epoch = n->second.epoch;
  }
  // Whether the file is still this capture's and in the ring (kGone: it was
  // dropped or the capture deleted), and the node still held.
  enum class State { kHeld, kGone, kLost };
  auto state = [&] {
    absl::MutexLock lock(&c->mu);
    if (c->deleted || c->entry.files.count(file) == 0) return State::kGone;
    return c->fenced.load() ? State::kLost : State::kHeld;
  };
  if (state() != State::kHeld) return 0;
  const std::string where = absl::StrCat(id, "/", file.first, ".", file.second);
  int written = 0;
  auto fail = [&](const absl::Status& error) {
    LogLine("store_compaction_error",
            {{"capture", id},
             {"file", file.first},
             {"generation", absl::StrCat(file.second)},
             {"error", error.ToString()}});
    return written;
  };
  auto objects = ListFileObjectsOf(options_.client, layout_, id, file);
  if (!objects.ok()) return fail(objects.status());
  for (const Segment& s : Segments(*objects)) {
    if (s.objects.size() < 2) continue;
    const uint64_t size = s.end - s.start;
    const DataObject& first = s.pieces.front().object;
    std::string key;
    bool fresh = false;  // this call created `key`
    if (s.pieces.size() == 1 && first.offset == s.start) {
      key = first.key;  // an earlier compaction covers the run already
    } else {
      if (size > options_.max_file_bytes) {
        return fail(absl::FailedPreconditionError(
            absl::StrCat(where, ": ", size, " bytes to compact")));
      }
      std::string body;
      body.reserve(size);
      for (const Piece& p : s.pieces) {
        for (uint64_t pos = p.from; pos < p.to;) {
          const uint64_t n = std::min<uint64_t>(kObjectReadBytes, p.to - pos);
          auto got =
              options_.client->Get(p.object.key, pos - p.object.offset, n);
          if (!got.ok()) return fail(got.status());  // NotFound: deleted
          if (got->body.empty()) {
            return fail(
                absl::DataLossError(absl::StrCat(p.object.key, " shrank")));
          }
          body.append(got->body);
          pos += got->body.size();
        }
      }
      if (body.size() != size) {
        return fail(absl::DataLossError(absl::StrCat(
            where, ": read ", body.size(), " of ", size, " bytes")));
      }
      if (c->fenced.load()) return written;  // the node was lost
      key = layout_.CompactedKey(id, file.first, file.second, s.start, s.end);
      s3::PutOptions put;
      put.if_none_match_any = true;
      put.metadata["epoch"] = absl::StrCat(epoch);
      put.metadata["replica"] = options_.replica_id;
      auto etag = options_.client->Put(key, body, put);
      fresh = etag.ok();
      if (absl::IsFailedPrecondition(etag.status())) {
        // Compacted the same way before (a retry, or the node's previous
        // holder): the same bytes.
        auto info = options_.client->Head(key);
        if (!info.ok()) return fail(info.status());
        if (info->size != size) {
          return fail(absl::DataLossError(
              absl::StrCat(key, " holds ", info->size, " bytes, not ", size)));
        }
      } else if (!etag.ok()) {
        return fail(etag.status());
      }
    }
    // A deletion of the capture, or a ring drop of the file, that listed
    // the file's objects before `key` existed would leave it behind.
    auto entry = options_.client->Head(layout_.CatalogKey(id));
    const State now = absl::IsNotFound(entry.status()) ? State::kGone : state();
    if (now == State::kGone || (!entry.ok() && fresh)) {
      // Without `key` the file is as it was (or gone, as it should be).
      const absl::Status removed = options_.client->Delete(key);
      if (!removed.ok()) return fail(removed);
    }
    if (now == State::kGone) return written;
    if (!entry.ok()) return fail(entry.status());
    // Lost meanwhile: `key` and the objects it covers hold the same bytes;
    // the next holder reads either.
    if (now == State::kLost) return written;
    uint32_t deleted = 0;
    absl::Status delete_error;
    for (const DataObject& o : s.objects) {
      if (o.key == key) continue;
      delete_error = options_.client->Delete(o.key);
      if (!delete_error.ok()) break;
      ++deleted;
    }
    {
      absl::MutexLock lock(&c->mu);
      auto n = c->objects.find(file);
      if (n != c->objects.end()) {
        const int64_t left =
            static_cast<int64_t>(n->second) + (fresh ? 1 : 0) - deleted;
        n->second = static_cast<uint32_t>(std::max<int64_t>(1, left));
      }
    }
    {
      absl::MutexLock lock(&mu_);
      if (fresh) ++stats_.compactions;
      stats_.objects_compacted += deleted;
    }
    ++written;
    LogLine("store_file_compacted",
            {{"capture", id},
             {"file", file.first},
             {"generation", absl::StrCat(file.second)},
             {"objects", absl::StrCat(s.objects.size())},
             {"deleted", absl::StrCat(deleted)},
             {"bytes", absl::StrCat(size)},
             {"offset", absl::StrCat(s.start)},
             {"written", fresh ? "true" : "false"}});
    if (!delete_error.ok()) return fail(delete_error);
  }
  return written;
}

}  // namespace pc::aggregator
