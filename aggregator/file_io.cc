#include "aggregator/file_io.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace pc::aggregator {

FsyncFn SystemFsync() {
  return [](int fd) { return fsync(fd) == 0 ? 0 : errno; };
}

absl::StatusCode IoErrorCode(int err) {
  switch (err) {
    case ENOSPC:
    case EDQUOT:
    case EMFILE:
    case ENFILE:
    case ENOMEM:
    case EMLINK:
      return absl::StatusCode::kResourceExhausted;
    case ENAMETOOLONG:
      return absl::StatusCode::kInvalidArgument;
    case EACCES:
    case EPERM:
    case ENOENT:
    case ENOTDIR:
    case EISDIR:
    case EEXIST:
    case ELOOP:
    case EFBIG:
    case ENOTEMPTY:
      return absl::StatusCode::kFailedPrecondition;
    default:  // EIO, EROFS, ...
      return absl::StatusCode::kInternal;
  }
}

absl::Status IoError(int err, absl::string_view what) {
  return absl::Status(IoErrorCode(err),
                      absl::StrCat(what, ": ", strerror(err)));
}

int WriteAll(int fd, absl::string_view data, uint64_t offset) {
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = pwrite(fd, data.data() + done, data.size() - done,
                             static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno;
    if (n == 0) return EIO;
    done += static_cast<size_t>(n);
  }
  return 0;
}

int64_t AppendRange(int fd, uint64_t offset, size_t n, std::string* out) {
  const size_t start = out->size();
  out->resize(start + n);
  size_t done = 0;
  while (done < n) {
    const ssize_t r = pread(fd, &(*out)[start + done], n - done,
                            static_cast<off_t>(offset + done));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      const int err = errno;
      out->resize(start);
      return -err;
    }
    if (r == 0) break;
    done += static_cast<size_t>(r);
  }
  out->resize(start + done);
  return static_cast<int64_t>(done);
}

int WriteFileAtomically(const std::string& dir, const std::string& name,
                        absl::string_view data, const FsyncFn& fsync) {
  const std::string path = absl::StrCat(dir, "/", name);
  const std::string tmp = path + ".tmp";
  const int fd =
      open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return errno;
  int err = WriteAll(fd, data, 0);
  if (err == 0) err = fsync(fd);
  close(fd);
  if (err == 0 && rename(tmp.c_str(), path.c_str()) != 0) err = errno;
  if (err != 0) {
    unlink(tmp.c_str());
    return err;
  }
  return SyncDir(dir, fsync);
}

int ReadSmallFile(const std::string& path, size_t max_bytes, std::string* out) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno;
  struct stat st;
  int err = fstat(fd, &st) == 0 ? 0 : errno;
  if (err == 0 && static_cast<uint64_t>(st.st_size) > max_bytes) err = EFBIG;
  if (err == 0) {
    out->clear();
    // One byte more than its size tells a file that grew meanwhile.
    const int64_t n =
        AppendRange(fd, 0, static_cast<size_t>(st.st_size) + 1, out);
    if (n < 0)
      err = static_cast<int>(-n);
    else if (static_cast<size_t>(n) > max_bytes)
      err = EFBIG;
  }
  close(fd);
  return err;
}

int SyncDir(const std::string& dir, const FsyncFn& fsync) {
  const int fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return errno;
  const int err = fsync(fd);
  close(fd);
  return err;
}

std::vector<std::string> ListDir(const std::string& dir) {
  std::vector<std::string> names;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return names;
  while (struct dirent* e = readdir(d)) {
    std::string name = e->d_name;
    if (name != "." && name != "..") names.push_back(std::move(name));
  }
  closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace pc::aggregator
