#include "node_agent/capture_meta.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "common/time_proto.h"
#include "node_agent/capture_meta.pb.h"

namespace pc::agent {
namespace {

constexpr char kMetaFile[] = "capture.pb";

absl::Status WriteFileAtomically(const std::string& path,
                                 const std::string& data) {
  const std::string tmp = path + ".tmp";
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    return absl::InternalError(
        absl::StrCat("open ", tmp, ": ", strerror(errno)));
  }
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int err = errno;
      close(fd);
      return absl::InternalError(
          absl::StrCat("write ", tmp, ": ", strerror(err)));
    }
    done += n;
  }
  fsync(fd);
  close(fd);
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::InternalError(
        absl::StrCat("rename ", tmp, ": ", strerror(errno)));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status WriteCaptureMeta(const std::string& dir, const CaptureMeta& meta) {
  AgentCaptureMeta file;
  file.set_capture(meta.status.SerializeAsString());
  file.set_limits_start_unix_nanos(absl::ToUnixNanos(meta.limits_start));
  file.set_packets_before_run(meta.packets_before_run);
  file.set_counted_through_run(meta.counted_through_run);
  return WriteFileAtomically(absl::StrCat(dir, "/", kMetaFile),
                             file.SerializeAsString());
}

absl::StatusOr<CaptureMeta> ReadCaptureMeta(const std::string& dir) {
  const std::string path = absl::StrCat(dir, "/", kMetaFile);
  std::ifstream in(path, std::ios::binary);
  std::stringstream data;
  data << in.rdbuf();
  if (!in) return absl::DataLossError(absl::StrCat("unreadable ", path));
  CaptureMeta meta;
  AgentCaptureMeta file;
  if (file.ParseFromString(data.str()) && !file.capture().empty()) {
    if (!meta.status.ParseFromString(file.capture())) {
      return absl::DataLossError(absl::StrCat("unreadable ", path));
    }
    meta.limits_start = absl::FromUnixNanos(file.limits_start_unix_nanos());
    meta.packets_before_run = file.packets_before_run();
    meta.counted_through_run = file.counted_through_run();
    return meta;
  }
  // The format before options: a bare Capture.
  if (!meta.status.ParseFromString(data.str())) {
    return absl::DataLossError(absl::StrCat("unreadable ", path));
  }
  meta.limits_start = FromProto(meta.status.start_time());
  return meta;
}

}  // namespace pc::agent
