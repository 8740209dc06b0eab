#include "common/pcap/ring_reader.h"

#include <errno.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/memory/memory.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/pcap/file_scanner.h"
#include "common/pcap/pcap_format.h"
#include "common/status_macros.h"

namespace pc::pcap {
namespace {

constexpr size_t kMaxBaseLength = 200;

// Digits tcpdump pads the file number to (its getWflagChars()).
int IndexDigits(int max_files) {
  int digits = 0;
  for (int x = max_files - 1; x > 0; x /= 10) ++digits;
  return digits;
}

absl::Status ValidateMaxFiles(int max_files) {
  if (max_files < 1 || max_files > kMaxRingFiles) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ring size ", max_files, " outside [1, ", kMaxRingFiles, "]"));
  }
  return absl::OkStatus();
}

// The file after `index` in `files` (oldest first), or null if `index` is the
// newest or not there.
const RingFile* Successor(const std::vector<RingFile>& files, int index) {
  for (size_t i = 0; i + 1 < files.size(); ++i) {
    if (files[i].index == index) return &files[i + 1];
  }
  return nullptr;
}

std::string DescribeHeader(const GlobalHeader& h) {
  return absl::StrFormat(
      "linktype %u, snaplen %u, %s, %s-endian, version %u.%u", h.linktype,
      h.snaplen, h.precision == TimestampPrecision::kNano ? "ns" : "us",
      h.big_endian ? "big" : "little", h.version_major, h.version_minor);
}

}  // namespace

absl::Status ValidateRingBase(absl::string_view base) {
  if (base.empty() || base.size() > kMaxBaseLength) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ring base name must have 1 to ", kMaxBaseLength, " characters"));
  }
  for (char c : base) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '-';
    if (!ok) {
      return absl::InvalidArgumentError(
          absl::StrCat("ring base name \"", absl::CHexEscape(base),
                       "\" may contain only [a-z0-9_-]"));
    }
  }
  return absl::OkStatus();
}

std::string RingFileName(absl::string_view base, int index, int max_files) {
  const int digits = IndexDigits(max_files);
  // Same rule as tcpdump's MakeFilename(): no number at all for -W 1.
  if (digits == 0 && index == 0) return std::string(base);
  return absl::StrFormat("%s%0*d", base, digits, index);
}

void SortRingOldestFirst(std::vector<RingFile>* files) {
  std::vector<RingFile>& f = *files;
  std::sort(f.begin(), f.end(), [](const RingFile& a, const RingFile& b) {
    return a.index < b.index;
  });
  const size_t n = f.size();
  if (n < 2) return;
  // Along the true rotation mtimes never decrease, so in cyclic index order
  // there is exactly one descent (from the newest file to the oldest), or
  // none when all mtimes are equal.
  size_t descents = 0;
  size_t start = 0;
  for (size_t i = 0; i < n; ++i) {
    if (f[i].mtime > f[(i + 1) % n].mtime) {
      ++descents;
      start = (i + 1) % n;
    }
  }
  if (descents <= 1) {
    std::rotate(f.begin(), f.begin() + static_cast<std::ptrdiff_t>(start),
                f.end());
    return;
  }
  std::stable_sort(
      f.begin(), f.end(),
      [](const RingFile& a, const RingFile& b) { return a.mtime < b.mtime; });
}

absl::StatusOr<std::vector<RingFile>> ListRingFiles(const std::string& dir,
                                                    absl::string_view base,
                                                    int max_files) {
  RETURN_IF_ERROR(ValidateRingBase(base));
  RETURN_IF_ERROR(ValidateMaxFiles(max_files));
  std::vector<RingFile> files;
  for (int i = 0; i < max_files; ++i) {
    RingFile file;
    file.name = RingFileName(base, i, max_files);
    file.index = i;
    file.path = absl::StrCat(dir, "/", file.name);
    struct stat st;
    if (lstat(file.path.c_str(), &st) != 0) {
      // Before tcpdump's first wrap the later files do not exist yet.
      if (errno == ENOENT) continue;
      return absl::ErrnoToStatus(errno, absl::StrCat("lstat ", file.path));
    }
    if (!S_ISREG(st.st_mode)) continue;
    file.size = static_cast<uint64_t>(st.st_size);
    file.mtime = absl::FromUnixSeconds(st.st_mtim.tv_sec) +
                 absl::Nanoseconds(st.st_mtim.tv_nsec);
    files.push_back(std::move(file));
  }
  SortRingOldestFirst(&files);
  return files;
}

absl::StatusOr<std::unique_ptr<RingReader>> RingReader::Open(
    const std::string& dir, const std::string& base, int max_files) {
  return Open(dir, base, max_files, Options());
}

absl::StatusOr<std::unique_ptr<RingReader>> RingReader::Open(
    const std::string& dir, const std::string& base, int max_files,
    Options options) {
  RETURN_IF_ERROR(ValidateRingBase(base));
  RETURN_IF_ERROR(ValidateMaxFiles(max_files));
  if (dir.empty()) {
    return absl::InvalidArgumentError("ring directory is empty");
  }
  struct stat st;
  if (stat(dir.c_str(), &st) != 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("stat ", dir));
  }
  if (!S_ISDIR(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat(dir, " is not a directory"));
  }
  return absl::WrapUnique(new RingReader(dir, base, max_files, options));
}

RingReader::RingReader(std::string dir, std::string base, int max_files,
                       Options options)
    : dir_(std::move(dir)),
      base_(std::move(base)),
      max_files_(max_files),
      options_(options) {}

absl::optional<int> RingReader::current_index() const {
  if (current_ == nullptr) return absl::nullopt;
  return current_index_;
}

absl::StatusOr<size_t> RingReader::Read(char* buf, size_t cap) {
  if (cap == 0) return 0;
  if (pending_pos_ == pending_.size()) {
    pending_.clear();
    pending_pos_ = 0;
    if (!error_.ok()) return error_;
    absl::Status filled = Fill();
    // Deliver what was gathered before a failure; a sticky error is returned
    // by the next call, a transient one recurs if it persists.
    if (!filled.ok() && pending_.empty()) return filled;
  }
  const size_t n = std::min(cap, pending_.size() - pending_pos_);
  std::memcpy(buf, pending_.data() + pending_pos_, n);
  pending_pos_ += n;
  bytes_read_ += n;
  return n;
}

void RingReader::StartFile(const RingFile& file) {
  FileScanner::Options scanner_options;
  scanner_options.max_read_bytes = options_.max_read_bytes;
  current_ = std::make_unique<FileScanner>(file.path, scanner_options);
  current_index_ = file.index;
  listed_size_ = file.size;
  first_poll_ = true;
}

absl::Status RingReader::AcceptHeader() {
  if (!current_->has_header()) return absl::OkStatus();
  if (!stream_header_.has_value()) {
    // Nothing was emitted before the first header, so it leads the stream.
    stream_header_ = current_->header();
    pending_.append(SerializeGlobalHeader(*stream_header_));
    return absl::OkStatus();
  }
  if (!SameStreamFormat(*stream_header_, current_->header())) {
    // Records under another header would make the merged stream lie about
    // its contents; refuse rather than produce an invalid pcap.
    error_ = absl::FailedPreconditionError(absl::StrCat(
        current_->path(), ": pcap header (", DescribeHeader(current_->header()),
        ") differs from the stream's (", DescribeHeader(*stream_header_),
        "): not the same capture"));
    return error_;
  }
  return absl::OkStatus();
}

bool RingReader::CheckReused(const FileScanner::PollResult& poll) {
  const bool was_first_poll = first_poll_;
  first_poll_ = false;
  if (poll.restarted) {
    lost_bytes_ += poll.lost_bytes;
    return true;
  }
  // Reused between our listing and the first poll: FileScanner saw only the
  // new generation, which is smaller than what the listing showed.
  if (was_first_poll && current_->generation() == 0 &&
      current_->size_seen() < listed_size_) {
    lost_bytes_ +=
        listed_size_ > kGlobalHeaderSize ? listed_size_ - kGlobalHeaderSize : 0;
    return true;
  }
  return false;
}

absl::Status RingReader::Fill() {
  // Each pass emits data, moves to another file, or returns because nothing
  // is new; the bound only keeps one call from spinning on a pathological
  // ring (e.g. files reused faster than they can be opened).
  for (int pass = 0; pass < 2 * max_files_ + 4; ++pass) {
    if (current_ == nullptr) {
      // Start, or restart after a reuse, at the oldest surviving file. After
      // tcpdump reused file k, every other file was rewritten after k's old
      // contents, so nothing there was delivered already.
      ASSIGN_OR_RETURN(std::vector<RingFile> files,
                       ListRingFiles(dir_, base_, max_files_));
      if (files.empty()) return absl::OkStatus();  // tcpdump not started yet
      StartFile(files.front());
    }

    std::string chunk;
    ASSIGN_OR_RETURN(FileScanner::PollResult poll, current_->Poll(&chunk));
    if (CheckReused(poll)) {
      current_.reset();
      continue;
    }
    RETURN_IF_ERROR(AcceptHeader());
    if (!chunk.empty()) {
      pending_.append(chunk);
      records_read_ += poll.new_packets;
      return absl::OkStatus();
    }

    // Nothing new in this file. It is finished only once a newer file exists:
    // tcpdump closes (and so flushes) a file before it creates the next.
    ASSIGN_OR_RETURN(std::vector<RingFile> files,
                     ListRingFiles(dir_, base_, max_files_));
    const RingFile* next = Successor(files, current_index_);
    if (next == nullptr) return absl::OkStatus();  // newest: wait for tcpdump

    // Drain what was written between the poll above and the listing.
    ASSIGN_OR_RETURN(poll, current_->Poll(&chunk));
    if (CheckReused(poll)) {
      current_.reset();
      continue;
    }
    RETURN_IF_ERROR(AcceptHeader());
    if (!chunk.empty()) {
      // Emit now; the next Fill drains again before moving on.
      pending_.append(chunk);
      records_read_ += poll.new_packets;
      return absl::OkStatus();
    }
    // The file is final. Bytes after its last complete record (tcpdump was
    // killed mid-record, or the data was corrupt) can never be delivered.
    if (current_->size_seen() > current_->complete_bytes()) {
      lost_bytes_ += current_->size_seen() - current_->complete_bytes();
    }
    StartFile(*next);
  }
  return absl::OkStatus();
}

}  // namespace pc::pcap
