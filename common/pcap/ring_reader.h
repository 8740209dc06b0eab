// Turns the ring of files that `tcpdump -C <MB> -W <N> -w <dir>/<base>` writes
// into ONE valid pcap stream: the first file's global header, then the
// complete records of every file in the order tcpdump wrote them. Follows the
// ring while tcpdump is still writing, and counts the bytes it could not
// deliver because tcpdump reused a file before it was read out.
// RingReader is thread-compatible (one reader thread at a time); the free
// functions are thread-safe.
#ifndef COMMON_PCAP_RING_READER_H_
#define COMMON_PCAP_RING_READER_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/optional.h"
#include "common/pcap/file_scanner.h"
#include "common/pcap/pcap_format.h"

namespace pc::pcap {

// Largest -W accepted: every poll of the ring stats each file.
inline constexpr int kMaxRingFiles = 10000;

// One existing file of the ring.
struct RingFile {
  std::string name;  // e.g. "ring03"
  int index = 0;     // tcpdump's file number, 0..max_files-1
  std::string path;  // dir + "/" + name
  uint64_t size = 0;
  absl::Time mtime;  // nanosecond resolution
};

// OK if `base` may be used as the ring's base name: 1 to 200 characters of
// [a-z0-9_-]. Anything else (slashes, dots, upper case) is InvalidArgument so
// a name from an API request can never reach outside the capture directory.
absl::Status ValidateRingBase(absl::string_view base);

// tcpdump's name for file `index` of a ring of `max_files`: `base` followed by
// `index` zero-padded to the digits of max_files - 1
// (-W 11 → ring00..ring10).
// With max_files == 1 tcpdump uses `base` alone, without a number.
// Expects a valid base and 0 <= index < max_files.
std::string RingFileName(absl::string_view base, int index, int max_files);

// Puts ring files into the order tcpdump wrote them, oldest first. tcpdump
// writes file k, then (k+1) mod N, so the right order is the rotation of the
// index order along which mtimes never decrease; this breaks mtime ties
// correctly even across the wrap from N-1 to 0 (the kernel's mtime clock is
// coarse, so a file and its successor often share an mtime). If no rotation
// fits (a file touched by someone else), falls back to (mtime, index).
// Pure; exposed for tests.
void SortRingOldestFirst(std::vector<RingFile>* files);

// The existing regular files of the ring, oldest first. Paths are built only
// from `dir`, ValidateRingBase()-checked `base` and the index; the directory
// is never listed. Symlinks and other non-regular files are ignored.
// Errors: InvalidArgument for a bad base or max_files outside
// [1, kMaxRingFiles]; errno-based errors when stat fails other than ENOENT.
absl::StatusOr<std::vector<RingFile>> ListRingFiles(const std::string& dir,
                                                    absl::string_view base,
                                                    int max_files);

class RingReader {
 public:
  struct Options {
    // Bytes read from a file per refill; bounds memory (see FileScanner).
    size_t max_read_bytes = size_t{4} << 20;
  };

  // Validates the arguments and that `dir` is a directory. The ring may still
  // be empty: tcpdump creates its first file a few ms after it starts.
  static absl::StatusOr<std::unique_ptr<RingReader>> Open(
      const std::string& dir, const std::string& base, int max_files);
  static absl::StatusOr<std::unique_ptr<RingReader>> Open(
      const std::string& dir, const std::string& base, int max_files,
      Options options);

  RingReader(const RingReader&) = delete;
  RingReader& operator=(const RingReader&) = delete;

  // Copies up to `cap` bytes of the stream into `buf` and returns how many.
  // 0 means nothing new right now: a one-shot reader stops there, a follower
  // calls again later. The bytes are the global header once, then whole
  // records; a record may be split across two Read() calls but never cut off:
  // what follows is always its rest.
  // Errors: FailedPrecondition (sticky) if a file's header does not match the
  // stream's (another linktype, snaplen, precision or byte order, i.e. not
  // the same capture); transient I/O errors, after which Read may be retried.
  absl::StatusOr<size_t> Read(char* buf, size_t cap);

  // Bytes known to be lost: data of a file seen in the ring but truncated by
  // tcpdump (reused) before it was read out, plus unfinished tails of files
  // that tcpdump left. A lower bound: files reused before they were ever
  // seen are not counted.
  uint64_t lost_bytes() const { return lost_bytes_; }
  // Stream bytes returned by Read() so far, header included.
  uint64_t bytes_read() const { return bytes_read_; }
  // Records placed into the stream so far (some may still be buffered).
  uint64_t records_read() const { return records_read_; }
  // Ring index of the file being read; empty before the first file appears.
  absl::optional<int> current_index() const;
  // The stream's header, once the first file's header has been read.
  const absl::optional<GlobalHeader>& header() const { return stream_header_; }

 private:
  RingReader(std::string dir, std::string base, int max_files, Options options);

  // Refills pending_ with the next records (or the header); leaves it empty
  // when nothing is new.
  absl::Status Fill();
  void StartFile(const RingFile& file);
  // Emits the stream header from the first file, or checks a later file's.
  absl::Status AcceptHeader();
  // Handles the signs that the current file was reused under us; returns
  // true if the caller must pick a file again.
  bool CheckReused(const FileScanner::PollResult& poll);

  const std::string dir_;
  const std::string base_;
  const int max_files_;
  const Options options_;

  std::unique_ptr<FileScanner> current_;
  int current_index_ = -1;
  // Size in the listing that made us start the current file, and whether it
  // has been polled since: a file reused between listing and first poll
  // looks like a fresh file to FileScanner, only smaller.
  uint64_t listed_size_ = 0;
  bool first_poll_ = false;

  absl::optional<GlobalHeader> stream_header_;
  std::string pending_;  // complete stream bytes not yet returned
  size_t pending_pos_ = 0;
  absl::Status error_;  // sticky: the stream cannot continue validly

  uint64_t lost_bytes_ = 0;
  uint64_t bytes_read_ = 0;
  uint64_t records_read_ = 0;
};

}  // namespace pc::pcap

#endif  // COMMON_PCAP_RING_READER_H_
