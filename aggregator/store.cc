// Store: opening, the index of stored files, appends and ring mirroring.
#include "aggregator/store.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <tuple>

#include "absl/hash/hash.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "aggregator/store_internal.h"
#include "common/capture_layout.h"
#include "common/log.h"
#include "common/pcap/ring_reader.h"
#include "common/status_macros.h"
#include "common/time_proto.h"

namespace pc::aggregator {

using packetcapture::v1::Capture;
using packetcapture::v1::Chunk;
using packetcapture::v1::ResumePoint;

// ---- Store ----

Store::Store(StoreOptions options, CaptureRegistry* registry)
    : options_(std::move(options)), registry_(registry) {}

Store::~Store() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (lister_.joinable()) lister_.join();
  {
    absl::MutexLock lock(&mu_);
    captures_.clear();  // stored files let go of their descriptors
  }
  if (dir_fd_ >= 0) close(dir_fd_);
}

absl::Time Store::Now() const {
  return options_.clock ? options_.clock() : absl::Now();
}

std::string Store::CaptureDirPath(const std::string& id) const {
  return absl::StrCat(options_.data_dir, "/", kCapturesDir, "/", id);
}

std::shared_ptr<Store::FileEntry> Store::NewFileEntry(
    const StoredCapture& capture, const std::string& name,
    uint64_t generation) const {
  auto entry = std::make_shared<FileEntry>();
  entry->io = std::make_shared<StoredFile>(capture.dir, name, generation,
                                           &file_context_);
  return entry;
}

absl::StatusOr<std::unique_ptr<Store>> Store::Open(StoreOptions options,
                                                   CaptureRegistry* registry) {
  if (options.data_dir.empty() || options.data_dir[0] != '/') {
    return absl::InvalidArgumentError("data_dir must be an absolute path");
  }
  if (options.sync.min_files_for_fs < 0 ||
      options.sync.max_delay < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "sync: min_files_for_fs and max_delay must not be negative");
  }
  if (options.max_open_files < 1) {
    return absl::InvalidArgumentError("max_open_files must be at least 1");
  }
  if (options.listing_interval < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("listing_interval must not be negative");
  }
  std::error_code ec;
  std::filesystem::create_directories(
      absl::StrCat(options.data_dir, "/", kCapturesDir), ec);
  if (ec) {
    return absl::InternalError(
        absl::StrCat("create ", options.data_dir, ": ", ec.message()));
  }
  if (!options.sync_ops.sync_file || !options.sync_ops.sync_fs) {
    options.sync_ops = SyncGroup::SystemOps();
  }
  if (!options.fsync) options.fsync = SystemFsync();
  // The cached descriptors stay within a quarter of the soft limit: the rest
  // is for sockets, downloads and everything else.
  size_t capacity = static_cast<size_t>(options.max_open_files);
  struct rlimit limit;
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 &&
      limit.rlim_cur != RLIM_INFINITY) {
    capacity = std::min<size_t>(
        capacity, std::max<size_t>(static_cast<size_t>(limit.rlim_cur / 8), 4));
  }

  std::unique_ptr<Store> store(new Store(std::move(options), registry));
  store->dir_fd_ = open(store->options_.data_dir.c_str(),
                        O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (store->dir_fd_ < 0) {
    return absl::ErrnoToStatus(errno,
                               absl::StrCat("open ", store->options_.data_dir));
  }
  store->sync_ = std::make_unique<SyncGroup>(
      store->dir_fd_, store->options_.sync, store->options_.sync_ops);
  store->open_files_ = std::make_unique<OpenFiles>(capacity);
  store->file_context_ = StoredFileContext{
      store->open_files_.get(), store->sync_.get(), store->options_.fsync};
  store->Recover();
  if (store->options_.listing_interval > absl::ZeroDuration()) {
    Store* s = store.get();
    store->lister_ = std::thread([s] { s->ListLoop(); });
  }
  LogLine("store_opened", {{"data_dir", store->options_.data_dir},
                           {"max_open_files", absl::StrCat(capacity)},
                           {"bytes", absl::StrCat(store->total_bytes())}});
  return store;
}

bool Store::DownloadOrder(const std::shared_ptr<FileEntry>& a,
                          const std::shared_ptr<FileEntry>& b) {
  // References, not copies: a sort of a long capture's files compares
  // thousands of times, and copied names were a malloc each.
  const absl::Time ta = a->summary.first_time.value_or(absl::InfiniteFuture());
  const absl::Time tb = b->summary.first_time.value_or(absl::InfiniteFuture());
  return std::forward_as_tuple(ta, a->io->name(), a->io->generation()) <
         std::forward_as_tuple(tb, b->io->name(), b->io->generation());
}

void Store::Removal::Run() {
  for (const auto& file : files) file->Remove();
  for (const auto& dir : dirs) dir->Remove();
}

std::vector<ResumePoint> Store::ResumePoints(const std::string& node) const {
  std::vector<ResumePoint> out;
  absl::MutexLock lock(&mu_);
  for (const auto& [id, c] : captures_) {
    if (c->meta.status.node() != node) continue;
    for (const auto& [key, f] : c->files) {
      ResumePoint p;
      p.set_capture_id(id);
      p.set_file(key.first);
      p.set_file_generation(key.second);
      p.set_offset(f->summary.logical_len);
      out.push_back(std::move(p));
    }
  }
  return out;
}

absl::StatusOr<AppendResult> Store::Append(const std::string& node,
                                           const Chunk& chunk) {
  BatchResult batch = AppendBatch(node, {&chunk});
  if (!batch.error.ok()) return batch.error;
  return batch.results.front();
}

// A batch written by WriteBatch(), committed by Commit() or abandoned.
class Store::Pending final : public PendingBatch {
 public:
  Pending(Store* store, absl::Status early)
      : store_(store), early_(std::move(early)) {}
  Pending(Store* store, std::string id, std::shared_ptr<FileEntry> entry,
          FileWrite write, uint64_t writer)
      : store_(store),
        id_(std::move(id)),
        entry_(std::move(entry)),
        write_(std::move(write)),
        writer_(writer) {}
  ~Pending() override {
    if (!committed_ && entry_ != nullptr) entry_->io->Abandon(&write_);
  }
  const absl::Status& write_error() const override {
    return early_.ok() ? write_.error : early_;
  }
  BatchResult Commit() override {
    committed_ = true;
    BatchResult out;
    if (!early_.ok()) {
      out.error = early_;
      return out;
    }
    out.error =
        store_->CommitWrite(id_, entry_, &write_, writer_, &out.results);
    return out;
  }

 private:
  Store* const store_;
  const absl::Status early_;
  const std::string id_;
  const std::shared_ptr<FileEntry> entry_;
  FileWrite write_;
  const uint64_t writer_ = 0;
  bool committed_ = false;
};

BatchResult Store::AppendBatch(const std::string& node,
                               const std::vector<const Chunk*>& chunks) {
  return WriteBatch(node, chunks)->Commit();
}

std::unique_ptr<PendingBatch> Store::WriteBatch(
    const std::string& node, const std::vector<const Chunk*>& chunks) {
  if (chunks.empty()) {
    return std::make_unique<Pending>(this, absl::OkStatus());
  }
  const Chunk& chunk = *chunks.front();
  const std::string& id = chunk.capture_id();
  std::string run_dir, ring;
  auto fail = [this](absl::Status error) {
    return std::make_unique<Pending>(this, std::move(error));
  };
  if (!IsValidCaptureId(id)) {
    return fail(absl::InvalidArgumentError(
        absl::StrCat("invalid capture id \"", id.substr(0, 256), "\"")));
  }
  if (!ParseStoredFileName(chunk.file(), &run_dir, &ring)) {
    return fail(absl::InvalidArgumentError(
        absl::StrCat("invalid file name \"", chunk.file().substr(0, 256),
                     "\" (expected run-<k>-w<N>/ring<i>)")));
  }
  const std::pair<std::string, uint64_t> key{chunk.file(),
                                             chunk.file_generation()};
  // The node names the writer: one agent, one stream.
  const uint64_t writer = absl::Hash<std::string>()(node);
  // A file dropped between the lookup and the write is looked up again.
  for (int attempt = 0;; ++attempt) {
    std::shared_ptr<FileEntry> entry;
    {
      absl::MutexLock lock(&mu_);
      auto it = captures_.find(id);
      if (it == captures_.end()) {
        return fail(absl::FailedPreconditionError(
            absl::StrCat("unknown capture ", id, ": send its status first")));
      }
      StoredCapture& c = *it->second;
      if (c.meta.status.node() != node) {
        return fail(absl::PermissionDeniedError(absl::StrCat(
            "capture ", id, " belongs to node ", c.meta.status.node())));
      }
      auto slot = c.files.find(key);
      if (slot == c.files.end()) {
        if (chunk.offset() != 0) {
          return fail(absl::InvalidArgumentError(absl::StrCat(
              "first chunk of ", chunk.file(), " generation ",
              chunk.file_generation(), " must start at offset 0")));
        }
        slot =
            c.files.emplace(key, NewFileEntry(c, key.first, key.second)).first;
      }
      entry = slot->second;
    }

    FileWrite write = entry->io->Write(chunks);
    if (write.removed) {
      if (attempt < 2) continue;
      return fail(absl::FailedPreconditionError(
          absl::StrCat(entry->io->label(), " was dropped meanwhile")));
    }
    return std::make_unique<Pending>(this, id, std::move(entry),
                                     std::move(write), writer);
  }
}

absl::Status Store::CommitWrite(const std::string& id,
                                const std::shared_ptr<FileEntry>& entry,
                                FileWrite* write, uint64_t writer,
                                std::vector<AppendResult>* results) {
  FileAppend appended = entry->io->Commit(write, writer);
  *results = std::move(appended.results);
  // A file with nothing stored leaves the index (and the disk): its
  // creation or its first chunk failed.
  const bool drop = !appended.committed && entry->io->RemoveIfEmpty();
  Removal removal;
  {
    absl::MutexLock lock(&mu_);
    auto it = captures_.find(id);
    StoredCapture* c = it == captures_.end() ? nullptr : it->second.get();
    if (entry->deleted || c == nullptr) {
      // Dropped meanwhile: nothing to account.
    } else if (drop) {
      DropFile(c, entry, /*removal=*/nullptr);
    } else if (appended.committed &&
               appended.after.commits > entry->summary.commits) {
      const FileSummary& after = appended.after;
      FileSummary& before = entry->summary;
      const bool was_empty = before.physical_len == 0;
      // A file joins the download order with its first bytes and moves in
      // it when its first record's time becomes known.
      if (was_empty || (!before.first_time && after.first_time)) {
        ++file_set_version_;
      }
      total_bytes_ += after.physical_len - before.physical_len;
      stats_.chunks += after.commits - before.commits;
      stats_.bytes += after.physical_len - before.physical_len;
      before = after;
      if (was_empty) MirrorRing(c, &removal);
      PublishSoon(id, *c);
    }
  }
  removal.Run();
  return appended.error;
}

void Store::DropFile(StoredCapture* c, const std::shared_ptr<FileEntry>& f,
                     Removal* removal) {
  f->deleted = true;
  total_bytes_ -= f->summary.physical_len;
  c->files.erase({f->io->name(), f->io->generation()});
  ++file_set_version_;
  if (removal != nullptr) removal->files.push_back(f->io);
}

void Store::MirrorRing(StoredCapture* c, Removal* removal) {
  const uint32_t max_files = c->meta.status.max_files();
  if (max_files == 0 || c->files.size() <= max_files) return;
  std::vector<std::shared_ptr<FileEntry>> files;
  for (const auto& [key, f] : c->files) files.push_back(f);
  std::sort(files.begin(), files.end(), DownloadOrder);
  for (size_t i = 0; i + max_files < files.size(); ++i) {
    LogLine("store_ring_dropped",
            {{"capture", c->meta.status.id()},
             {"file", files[i]->io->name()},
             {"generation", absl::StrCat(files[i]->io->generation())}});
    DropFile(c, files[i], removal);
  }
}

uint64_t Store::total_bytes() const {
  absl::MutexLock lock(&mu_);
  return total_bytes_;
}

size_t Store::open_files() const { return open_files_->open_files(); }

Store::Stats Store::stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

metrics::LatencyHistogram::Snapshot Store::flush_latency() const {
  return sync_->latency();
}

std::vector<std::shared_ptr<Store::FileEntry>> Store::OrderedFiles(
    const std::string& id, bool* running, uint64_t* version) const {
  std::vector<std::shared_ptr<FileEntry>> files;
  absl::MutexLock lock(&mu_);
  if (version != nullptr) *version = file_set_version_;
  *running = false;
  auto it = captures_.find(id);
  if (it == captures_.end()) return files;
  const Capture& s = it->second->meta.status;
  *running = s.on_node() &&
             (s.state() == Capture::RUNNING || s.state() == Capture::PENDING);
  for (const auto& [key, f] : it->second->files) {
    if (f->summary.physical_len > 0) files.push_back(f);
  }
  std::sort(files.begin(), files.end(), DownloadOrder);
  return files;
}

}  // namespace pc::aggregator
