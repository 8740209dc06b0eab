#include "aggregator/capture_dir.h"

#include <errno.h>
#include <sys/stat.h>

#include <filesystem>
#include <system_error>
#include <utility>

#include "absl/strings/str_cat.h"
#include "aggregator/capture_meta.pb.h"
#include "common/status_macros.h"

namespace pc::aggregator {

std::string EncodeCaptureMeta(const CaptureMeta& meta) {
  StoredCaptureMeta stored;
  stored.set_capture(meta.status.SerializeAsString());
  if (meta.retention_start) {
    stored.set_retention_start_unix_nanos(
        absl::ToUnixNanos(*meta.retention_start));
  }
  return stored.SerializeAsString();
}

absl::StatusOr<CaptureMeta> DecodeCaptureMeta(absl::string_view data,
                                              bool* legacy) {
  StoredCaptureMeta stored;
  CaptureMeta meta;
  if (!stored.ParseFromArray(data.data(), static_cast<int>(data.size()))) {
    return absl::InvalidArgumentError("capture.pb does not parse");
  }
  const bool old_format = stored.capture().empty();
  if (legacy != nullptr) *legacy = old_format;
  const absl::string_view capture = old_format ? data : stored.capture();
  if (!meta.status.ParseFromArray(capture.data(),
                                  static_cast<int>(capture.size()))) {
    return absl::InvalidArgumentError("capture.pb holds no valid Capture");
  }
  if (stored.retention_start_unix_nanos() != 0) {
    meta.retention_start =
        absl::FromUnixNanos(stored.retention_start_unix_nanos());
  }
  return meta;
}

CaptureDir::CaptureDir(std::string path, std::string id, FsyncFn fsync)
    : path_(std::move(path)), id_(std::move(id)), fsync_(std::move(fsync)) {}

absl::Status CaptureDir::Create(const std::string& path, const std::string& id,
                                const FsyncFn& fsync) {
  if (mkdir(path.c_str(), 0700) != 0 && errno != EEXIST) {
    return IoError(errno, absl::StrCat("create the directory of capture ", id));
  }
  const std::string parent = path.substr(0, path.rfind('/'));
  if (const int err = SyncDir(parent, fsync); err != 0) {
    return IoError(err, "flush the captures directory");
  }
  return absl::OkStatus();
}

absl::StatusOr<CaptureMeta> CaptureDir::ReadMeta(const std::string& path,
                                                 bool* legacy) {
  std::string data;
  if (const int err = ReadSmallFile(absl::StrCat(path, "/", kMetaFile),
                                    kMaxMetaReadBytes, &data);
      err != 0) {
    return IoError(err, "read capture.pb");
  }
  return DecodeCaptureMeta(data, legacy);
}

absl::Status CaptureDir::RemovedError() const {
  return absl::FailedPreconditionError(
      absl::StrCat("capture ", id_, " was deleted"));
}

absl::Status CaptureDir::WriteMeta(const CaptureMeta& meta, uint64_t version) {
  const std::string data = EncodeCaptureMeta(meta);
  if (data.size() > kMaxMetaFileBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "status of capture ", id_, " is too large (", data.size(), " bytes)"));
  }
  absl::MutexLock lock(&mu_);
  if (removed_) return RemovedError();
  if (version <= written_version_) return absl::OkStatus();
  if (const int err = WriteFileAtomically(path_, kMetaFile, data, fsync_);
      err != 0) {
    return IoError(err, absl::StrCat("write capture.pb of capture ", id_));
  }
  written_version_ = version;
  return absl::OkStatus();
}

absl::Status CaptureDir::CreateIn(const std::string& subdir,
                                  const std::function<absl::Status()>& create) {
  absl::MutexLock lock(&mu_);
  if (removed_) return RemovedError();
  const std::string label = absl::StrCat(id_, "/", subdir);
  const std::string path = absl::StrCat(path_, "/", subdir);
  if (!durable_subdirs_.contains(subdir)) {
    if (mkdir(path.c_str(), 0700) != 0 && errno != EEXIST) {
      return IoError(errno, absl::StrCat("create the directory ", label));
    }
    if (const int err = SyncDir(path_, fsync_); err != 0) {
      return IoError(err, absl::StrCat("flush the directory of ", id_));
    }
    durable_subdirs_.insert(subdir);
  }
  RETURN_IF_ERROR(create());
  if (const int err = SyncDir(path, fsync_); err != 0) {
    return IoError(err, absl::StrCat("flush the directory ", label));
  }
  return absl::OkStatus();
}

void CaptureDir::Remove() {
  absl::MutexLock lock(&mu_);
  removed_ = true;
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

}  // namespace pc::aggregator
