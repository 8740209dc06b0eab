// Store's start: rebuilding the index from what is on disk.
#include <sys/stat.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "aggregator/store.h"
#include "aggregator/store_internal.h"
#include "common/capture_layout.h"
#include "common/log.h"

namespace pc::aggregator {
namespace {

uint64_t SizeOnDisk(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
}

}  // namespace

void Store::Recover() {
  const std::string root = absl::StrCat(options_.data_dir, "/", kCapturesDir);
  absl::MutexLock lock(&mu_);
  for (const std::string& id : ListDir(root)) {
    if (!IsValidCaptureId(id)) {
      LogLine("store_skip", {{"path", absl::StrCat(root, "/", id)},
                             {"reason", "not a capture id"}});
      continue;
    }
    std::unique_ptr<StoredCapture> capture = RecoverCapture(id);
    if (capture == nullptr) continue;
    uint64_t bytes = capture->unreadable_bytes;
    for (const auto& [key, file] : capture->files) {
      bytes += file->summary.physical_len;
    }
    total_bytes_ += bytes;
    LogLine("store_recovered", {{"capture", id},
                                {"node", capture->meta.status.node()},
                                {"files", absl::StrCat(capture->files.size())},
                                {"bytes", absl::StrCat(bytes)}});
    Publish(*capture);
    captures_[id] = std::move(capture);
  }
  // What was read back may still be only in the page cache (the process
  // died, the machine did not): the resume points given to agents must not
  // name bytes a later power loss would take.
  if (const absl::Status flushed = sync_->SyncAll(root); !flushed.ok()) {
    LogLine("store_recovery_flush_failed",
            {{"error", std::string(flushed.message())}});
  }
}

std::unique_ptr<Store::StoredCapture> Store::RecoverCapture(
    const std::string& id) {
  const std::string dir = CaptureDirPath(id);
  bool legacy = false;
  auto meta = CaptureDir::ReadMeta(dir, &legacy);
  if (!meta.ok() || meta->status.id() != id) {
    LogLine("store_skip",
            {{"path", dir},
             {"reason", meta.ok() ? "capture.pb names another capture"
                                  : std::string(meta.status().message())}});
    return nullptr;
  }
  auto capture = std::make_unique<StoredCapture>();
  capture->meta = std::move(*meta);
  capture->dir = std::make_shared<CaptureDir>(dir, id, options_.fsync);
  for (const std::string& run_dir : ListDir(dir)) {
    int run, n;
    if (run_dir == kMetaFile || run_dir == absl::StrCat(kMetaFile, ".tmp")) {
      continue;
    }
    if (!ParseRunDirName(run_dir, &run, &n)) {
      LogLine("store_skip", {{"path", absl::StrCat(dir, "/", run_dir)},
                             {"reason", "unexpected entry"}});
      continue;
    }
    for (const std::string& entry : ListDir(absl::StrCat(dir, "/", run_dir))) {
      // ring<i>.<generation>.pcap; its .log is handled with it.
      const std::string path = absl::StrCat(dir, "/", run_dir, "/", entry);
      std::vector<std::string> parts = absl::StrSplit(entry, '.');
      if (parts.size() == 3 && parts[2] == "log") continue;
      std::string run_name, ring;
      uint64_t generation = 0;
      if (parts.size() != 3 || parts[2] != "pcap" ||
          !ParseStoredFileName(absl::StrCat(run_dir, "/", parts[0]), &run_name,
                               &ring) ||
          !absl::SimpleAtoi(parts[1], &generation) ||
          absl::StrCat(generation) != parts[1]) {
        LogLine("store_skip", {{"path", path}, {"reason", "unexpected entry"}});
        continue;
      }
      std::shared_ptr<FileEntry> file =
          NewFileEntry(*capture, absl::StrCat(run_dir, "/", ring), generation);
      auto summary = file->io->Recover();
      if (summary.ok()) {
        file->summary = *summary;
        capture->files[{file->io->name(), generation}] = file;
      } else if (!absl::IsNotFound(summary.status())) {
        // Left on disk until the capture goes, so counted against the budget.
        const uint64_t bytes =
            SizeOnDisk(path) +
            SizeOnDisk(absl::StrCat(path.substr(0, path.size() - 5), ".log"));
        capture->unreadable_bytes += bytes;
        LogLine("store_skip",
                {{"path", path},
                 {"reason", std::string(summary.status().message())},
                 {"bytes", absl::StrCat(bytes)}});
      }
    }
  }
  // Captures stopped before retention_start was kept (legacy capture.pb)
  // start their retention now: never earlier than the aggregator saw them.
  const bool needs_start =
      Stopped(capture->meta.status) && !capture->meta.retention_start;
  if (needs_start) capture->meta.retention_start = Now();
  capture->noted = Significant(capture->meta);
  capture->version = 1;
  if (!legacy && !needs_start) {
    capture->saved_version = 1;
  } else if (const absl::Status saved =
                 capture->dir->WriteMeta(capture->meta, 1);
             saved.ok()) {
    capture->saved_version = 1;
  } else {
    LogLine("store_meta_error", {{"capture", id}, {"error", saved.ToString()}});
  }
  return capture;
}

}  // namespace pc::aggregator
