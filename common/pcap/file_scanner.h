// Incremental scanner of one pcap file that a writer (tcpdump) is appending
// to: each Poll() reads only the bytes added since the last complete record,
// counts packets and, on request, hands out the new complete records. It
// notices when the file is truncated or reused (tcpdump's ring mode reopens
// the same inode with O_TRUNC) and restarts counting with generation + 1.
// Thread-compatible: one thread at a time.
#ifndef COMMON_PCAP_FILE_SCANNER_H_
#define COMMON_PCAP_FILE_SCANNER_H_

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/optional.h"
#include "common/pcap/pcap_format.h"

namespace pc::pcap {

class FileScanner {
 public:
  struct Options {
    // Upper bound on the bytes read by one Poll(), so a large backlog is
    // consumed in bounded steps. Raised, if needed, to fit one record of
    // MaxPlausibleCaplen() so every Poll can make progress.
    size_t max_read_bytes = size_t{4} << 20;
  };

  // What one Poll() observed.
  struct PollResult {
    // Complete-record bytes and records added by this poll (the global
    // header is not counted).
    uint64_t new_bytes = 0;
    uint64_t new_packets = 0;
    // The file was truncated, replaced or rewritten since the previous poll:
    // counters were reset and generation() incremented. Nothing of the new
    // contents is read in the same call, so a caller can decide what to do
    // first (RingReader moves to an older surviving file).
    bool restarted = false;
    // On restart: bytes of the previous generation that were seen in the
    // file (its last observed size) but never consumed. A lower bound: what
    // was written after the last observation is unknown.
    uint64_t lost_bytes = 0;
    // The read was capped by max_read_bytes; more data is already waiting.
    bool more = false;
  };

  explicit FileScanner(std::string path) : FileScanner(std::move(path), {}) {}
  FileScanner(std::string path, Options options);

  FileScanner(const FileScanner&) = delete;
  FileScanner& operator=(const FileScanner&) = delete;

  // Reads what was appended since the last complete record. If `records_out`
  // is not null, appends the new complete records (never a partial one, never
  // the global header) to it.
  // Errors: NotFound if the file does not exist (state is kept; if it comes
  // back as a different inode, the next poll restarts); InvalidArgument if
  // the file is not a classic pcap file; other errno-based errors for I/O.
  // A file shorter than its header is not an error: nothing to read yet.
  // Corrupt record data is not an error either: see corrupt_status().
  absl::StatusOr<PollResult> Poll(std::string* records_out = nullptr);

  const std::string& path() const { return path_; }

  // True once the global header has been read in the current generation.
  bool has_header() const { return has_header_; }
  // Valid only when has_header().
  const GlobalHeader& header() const { return header_; }

  // File offset just past the last complete record (global header included);
  // 0 until the header was read. A reader may copy [0, complete_bytes()).
  uint64_t complete_bytes() const { return offset_; }
  // Complete records in [0, complete_bytes()).
  uint64_t packets() const { return packets_; }
  // Timestamps of the first and last counted record, in file order.
  const absl::optional<absl::Time>& first_time() const { return first_time_; }
  const absl::optional<absl::Time>& last_time() const { return last_time_; }
  // 0 for the file first seen; +1 each time truncation or reuse is detected.
  uint64_t generation() const { return generation_; }
  // Largest file size observed in the current generation, which may include
  // an unfinished record after complete_bytes().
  uint64_t size_seen() const { return size_seen_; }
  // Modification time at the last poll that found the file.
  absl::Time mtime() const { return mtime_; }

  // DataLoss once a record header after complete_bytes() is implausible: the
  // scanner stops there until the file is truncated or reused; OK otherwise.
  const absl::Status& corrupt_status() const { return corrupt_; }

 private:
  // Forgets the current generation; returns the bytes it loses.
  uint64_t Restart();

  const std::string path_;
  const Options options_;

  bool has_header_ = false;
  GlobalHeader header_;
  // The raw header and the first record header of the current generation:
  // tcpdump rewrites the same header bytes when it reuses a file, but the
  // first record (its timestamp) differs, which identifies the generation.
  std::string raw_header_;
  std::string first_record_header_;
  dev_t dev_ = 0;
  ino_t ino_ = 0;

  uint64_t offset_ = 0;
  uint64_t packets_ = 0;
  absl::optional<absl::Time> first_time_;
  absl::optional<absl::Time> last_time_;
  uint64_t generation_ = 0;
  uint64_t size_seen_ = 0;
  absl::Time mtime_ = absl::InfinitePast();
  absl::Status corrupt_;
};

}  // namespace pc::pcap

#endif  // COMMON_PCAP_FILE_SCANNER_H_
