#include "common/pcap/file_scanner.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/pcap/pcap_format.h"
#include "common/status_macros.h"

namespace pc::pcap {
namespace {

// Closes the descriptor when the poll ends. The file is reopened on every
// poll so that a file replaced by a new inode is seen as such rather than
// read through a descriptor of the unlinked old one.
class ScopedFd {
 public:
  explicit ScopedFd(int fd) : fd_(fd) {}
  ~ScopedFd() {
    if (fd_ >= 0) close(fd_);
  }
  ScopedFd(const ScopedFd&) = delete;
  ScopedFd& operator=(const ScopedFd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

absl::Status ErrnoStatus(int err, const std::string& what) {
  return absl::ErrnoToStatus(err, what);
}

// Reads up to `n` bytes at `offset`, retrying short reads; returns the bytes
// read, fewer than `n` only at end of file (e.g. the file shrank meanwhile).
absl::StatusOr<size_t> PreadFull(int fd, char* buf, size_t n, uint64_t offset,
                                 const std::string& path) {
  size_t done = 0;
  while (done < n) {
    const ssize_t r =
        pread(fd, buf + done, n - done, static_cast<off_t>(offset + done));
    if (r < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, absl::StrCat("pread ", path));
    }
    if (r == 0) break;
    done += static_cast<size_t>(r);
  }
  return done;
}

absl::Time MtimeOf(const struct stat& st) {
  return absl::FromUnixSeconds(st.st_mtim.tv_sec) +
         absl::Nanoseconds(st.st_mtim.tv_nsec);
}

}  // namespace

FileScanner::FileScanner(std::string path, Options options)
    : path_(std::move(path)), options_(options) {}

uint64_t FileScanner::Restart() {
  const uint64_t lost = size_seen_ > offset_ ? size_seen_ - offset_ : 0;
  ++generation_;
  has_header_ = false;
  header_ = GlobalHeader();
  raw_header_.clear();
  first_record_header_.clear();
  dev_ = 0;
  ino_ = 0;
  offset_ = 0;
  packets_ = 0;
  first_time_.reset();
  last_time_.reset();
  size_seen_ = 0;
  corrupt_ = absl::OkStatus();
  return lost;
}

absl::StatusOr<FileScanner::PollResult> FileScanner::Poll(
    std::string* records_out) {
  PollResult result;
  // O_NOFOLLOW: capture files are written by tcpdump as regular files; a
  // symlink in their place is not ours to follow.
  ScopedFd fd(open(path_.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (fd.get() < 0) {
    return ErrnoStatus(errno, absl::StrCat("open ", path_));
  }
  struct stat st;
  if (fstat(fd.get(), &st) != 0) {
    return ErrnoStatus(errno, absl::StrCat("fstat ", path_));
  }
  if (!S_ISREG(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat(path_, " is not a regular file"));
  }
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  mtime_ = MtimeOf(st);

  // Cheap signs of a new generation: another inode (file replaced), or less
  // data than we already consumed (tcpdump reopened it with O_TRUNC).
  if (has_header_ &&
      (st.st_dev != dev_ || st.st_ino != ino_ || size < offset_)) {
    result.restarted = true;
    result.lost_bytes = Restart();
    return result;
  }

  if (!has_header_) {
    // Before the header is complete there is nothing to identify or count.
    if (size < kGlobalHeaderSize) {
      size_seen_ = std::max(size_seen_, size);
      return result;
    }
    std::string raw(kGlobalHeaderSize, '\0');
    ASSIGN_OR_RETURN(const size_t got,
                     PreadFull(fd.get(), &raw[0], raw.size(), 0, path_));
    if (got < kGlobalHeaderSize) return result;  // shrank meanwhile
    absl::StatusOr<GlobalHeader> header = ParseGlobalHeader(raw);
    if (!header.ok()) {
      return absl::Status(header.status().code(),
                          absl::StrCat(path_, ": ", header.status().message()));
    }
    header_ = *header;
    raw_header_ = std::move(raw);
    has_header_ = true;
    dev_ = st.st_dev;
    ino_ = st.st_ino;
    offset_ = kGlobalHeaderSize;
  }

  // Read new bytes, unless a corrupt record blocks the way (then only the
  // generation check below runs, so a reuse of the file still recovers).
  std::string data;
  bool capped = false;
  if (corrupt_.ok() && size > offset_) {
    const uint64_t one_record = kRecordHeaderSize + MaxPlausibleCaplen(header_);
    const uint64_t limit =
        std::max<uint64_t>(options_.max_read_bytes, one_record);
    const uint64_t want = std::min<uint64_t>(size - offset_, limit);
    capped = want < size - offset_;
    data.resize(want);
    ASSIGN_OR_RETURN(const size_t got,
                     PreadFull(fd.get(), &data[0], want, offset_, path_));
    data.resize(got);
  }

  // Check, after reading, that the file still holds the generation whose
  // bytes we consumed: the same header and the same first record header. If
  // tcpdump reused the file before or during the read, `data` may come from
  // the new generation at an offset of the old one, which would be garbage;
  // if it reused it just after, the data was fine but is dropped anyway,
  // which is the safe side of the race.
  std::string expected_first = first_record_header_;
  if (expected_first.empty() && offset_ == kGlobalHeaderSize &&
      data.size() >= kRecordHeaderSize) {
    expected_first = data.substr(0, kRecordHeaderSize);
  }
  const size_t ident_size =
      kGlobalHeaderSize + (expected_first.empty() ? 0 : kRecordHeaderSize);
  std::string ident(ident_size, '\0');
  ASSIGN_OR_RETURN(const size_t ident_got,
                   PreadFull(fd.get(), &ident[0], ident_size, 0, path_));
  ident.resize(ident_got);
  if (ident != raw_header_ + expected_first) {
    result.restarted = true;
    result.lost_bytes = Restart();
    return result;
  }
  size_seen_ = std::max(size_seen_, size);

  const ScanResult scan = ScanRecords(header_, data);
  if (scan.records > 0 && first_record_header_.empty() &&
      offset_ == kGlobalHeaderSize) {
    first_record_header_ = data.substr(0, kRecordHeaderSize);
  }
  if (records_out != nullptr) {
    records_out->append(data.data(), scan.complete_bytes);
  }
  offset_ += scan.complete_bytes;
  packets_ += scan.records;
  if (scan.first_time.has_value() && !first_time_.has_value()) {
    first_time_ = scan.first_time;
  }
  if (scan.last_time.has_value()) last_time_ = scan.last_time;
  if (scan.corrupt()) {
    corrupt_ = absl::DataLossError(absl::StrCat(path_, ": at offset ", offset_,
                                                ": ", scan.status.message()));
  }
  result.new_bytes = scan.complete_bytes;
  result.new_packets = scan.records;
  result.more = capped && corrupt_.ok();
  return result;
}

}  // namespace pc::pcap
