// One stored file of a capture: the bytes an agent uploaded for one (file,
// generation) in <prefix>.pcap and their commit log in <prefix>.log (see
// store.h for the format and the durability order). Checks and appends
// chunks; at start, finds the committed length again and cuts a torn tail.
//
// Thread-safe: appends serialize on the file's own mutex; descriptors come
// from the store's OpenFiles and are held only during an append. Remove()
// never waits for an append (one stuck in a slow flush included).
#ifndef AGGREGATOR_STORED_FILE_H_
#define AGGREGATOR_STORED_FILE_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/optional.h"
#include "aggregator/append_result.h"
#include "aggregator/capture_dir.h"
#include "aggregator/file_io.h"
#include "aggregator/open_files.h"
#include "aggregator/sync_group.h"
#include "common/pcap/pcap_format.h"
#include "proto/packetcapture.pb.h"

namespace pc::aggregator {

// What the store's index shows of a stored file.
struct FileSummary {
  uint64_t logical_len = 0;   // agent offsets covered, gaps included
  uint64_t physical_len = 0;  // bytes in the data file
  uint64_t packets = 0;
  absl::optional<pcap::GlobalHeader> header;
  absl::optional<absl::Time> first_time;  // of the first record
  absl::optional<absl::Time> last_time;   // of the last record
  uint64_t commits = 0;  // log entries; a later summary has more
};

// What StoredFile::Append() did.
struct FileAppend {
  std::vector<AppendResult> results;  // one per chunk handled, in order
  absl::Status error;                 // what stopped it; OK if nothing did
  bool removed = false;    // the file was removed first: nothing was done
  bool committed = false;  // new bytes are durable; `after` describes them
  FileSummary after;
  uint64_t bytes = 0;  // bytes added to the data file
};

// What StoredFile::Write() did: chunks written into the data file, not yet
// durable. Pass it to Commit().
struct FileWrite {
  std::vector<AppendResult> results;  // one per chunk handled, in order
  absl::Status error;                 // what stopped it; OK if nothing did
  bool removed = false;  // the file was removed first: nothing was done
  bool wrote = false;    // bytes were added to the data file
  // The file's write (its own or an earlier one) whose commit the results
  // depend on; 0: none.
  uint64_t seq = 0;
  uint64_t bytes = 0;
  OpenFiles::Handle handle;  // the descriptors, held until committed
};

// What every stored file of one store shares.
struct StoredFileContext {
  OpenFiles* open_files;
  SyncGroup* sync;
  FsyncFn fsync;  // directories
};

class StoredFile {
 public:
  // `name`: "run-<k>-w<N>/ring<i>", already validated. `context` must
  // outlive the file.
  StoredFile(std::shared_ptr<CaptureDir> dir, std::string name,
             uint64_t generation, const StoredFileContext* context);
  ~StoredFile();
  StoredFile(const StoredFile&) = delete;
  StoredFile& operator=(const StoredFile&) = delete;

  // For a file found on disk at start: log entries count up to the first
  // torn or corrupt one (or one whose data fails its checksum), and data
  // and log are truncated to the last that counts. NotFound when nothing
  // was committed (both files are then removed); other errors leave the
  // files as they are.
  absl::StatusOr<FileSummary> Recover();

  // Stores consecutive chunks of this file (see Store::AppendBatch); the
  // first append of a new file creates it. Errors per chunk:
  // InvalidArgument (not whole records, first chunk not at offset 0 or
  // without a pcap header, offset + size overflows, a partly stored chunk
  // whose new part does not start at one of its record boundaries); I/O
  // errors as IoError() maps them.
  FileAppend Append(const std::vector<const packetcapture::v1::Chunk*>& chunks,
                    uint64_t writer) ABSL_LOCKS_EXCLUDED(io_mu_);

  // Append() in two steps, so a writer can write its next chunks while the
  // ones before are being flushed. Write() checks the chunks and writes
  // their bytes into the data file (after every earlier write, committed or
  // not); Commit() returns once they are durable: it appends the log entries
  // of every write not yet committed, then flushes the data and the log in
  // one round (one commit can cover several writes; the later Commit()s then
  // return at once). Commit()s of one file run one at a time, so only the
  // last commit's entries can name bytes that a crash lost: Recover() checks
  // the data of each of them (see LogEntry::commit_start).
  // If a commit fails, every write not committed by then fails with it
  // (their results are cleared): the next write starts where the last
  // committed entry ends. Each Write() must be followed by its Commit().
  FileWrite Write(const std::vector<const packetcapture::v1::Chunk*>& chunks)
      ABSL_LOCKS_EXCLUDED(io_mu_);
  FileAppend Commit(FileWrite* write, uint64_t writer)
      ABSL_LOCKS_EXCLUDED(io_mu_);
  // Instead of Commit(): the write (unless committed already) and every
  // later one not committed fail; the next write starts where the last
  // committed entry ends.
  void Abandon(FileWrite* write) ABSL_LOCKS_EXCLUDED(io_mu_);

  // Unlinks both files and lets go of their descriptors; later appends do
  // nothing (FileAppend::removed).
  void Remove();
  // Remove() if nothing was ever committed to the file and no write awaits
  // its commit (waits for a write under way); true if removed.
  bool RemoveIfEmpty() ABSL_LOCKS_EXCLUDED(io_mu_);

  const std::string& name() const { return name_; }
  uint64_t generation() const { return generation_; }
  int ring_index() const;
  const std::string& data_path() const { return data_path_; }
  // "<capture id>/<name>.<generation>": names the file in errors and logs.
  const std::string& label() const { return label_; }

 private:
  // One commit-log entry: everything of the file up to logical_end (agent
  // offsets) is in the data file up to physical_end.
  struct LogEntry {
    uint64_t logical_end = 0;
    uint64_t physical_end = 0;
    uint64_t packets = 0;       // cumulative complete records
    uint64_t last_time_ns = 0;  // timestamp of the last record
    uint32_t data_crc = 0;  // CRC32C of (previous physical_end, physical_end]
    // The first entry of a commit (the top bit of the packets field on
    // disk). A commit's entries and data are flushed together, so after a
    // crash Recover() checks the data of every entry from the last such mark
    // on. Logs written before the mark existed have none: their data was
    // flushed before each entry was written, and only the last entry is
    // checked.
    bool commit_start = false;
  };
  static constexpr size_t kEntrySize = 40;
  static std::string EncodeEntry(const LogEntry& e);
  static bool DecodeEntry(const char* p, LogEntry* e);

  // Creates the run directory and both files (truncated).
  absl::Status Create(OpenFiles::Handle* handle)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_);
  FileSummary Summary() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_);
  // Every write not committed fails with `error`.
  void FailUncommitted(const absl::Status& error)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(io_mu_);

  const std::shared_ptr<CaptureDir> dir_;
  const std::string name_;
  const uint64_t generation_;
  const StoredFileContext* const context_;
  const uint64_t key_;         // in context_->open_files
  const std::string run_dir_;  // "run-<k>-w<N>"
  const std::string data_path_;
  const std::string log_path_;
  const std::string label_;
  std::atomic<bool> removed_{false};

  absl::Mutex io_mu_;
  bool on_disk_ ABSL_GUARDED_BY(io_mu_) = false;
  uint64_t entries_ ABSL_GUARDED_BY(io_mu_) = 0;
  LogEntry last_ ABSL_GUARDED_BY(io_mu_);  // zeros before the first
  absl::optional<pcap::GlobalHeader> header_ ABSL_GUARDED_BY(io_mu_);
  absl::optional<absl::Time> first_time_ ABSL_GUARDED_BY(io_mu_);

  // What Write() has added beyond the committed state above: the state
  // after every write so far, and the log entries not yet committed.
  LogEntry written_ ABSL_GUARDED_BY(io_mu_);
  absl::optional<pcap::GlobalHeader> written_header_ ABSL_GUARDED_BY(io_mu_);
  absl::optional<absl::Time> written_first_time_ ABSL_GUARDED_BY(io_mu_);
  std::vector<LogEntry> unlogged_ ABSL_GUARDED_BY(io_mu_);
  // Writes are numbered from 1; every write up to committed_seq_ is
  // durable, every later one up to failed_seq_ failed with failed_error_.
  uint64_t write_seq_ ABSL_GUARDED_BY(io_mu_) = 0;
  uint64_t committed_seq_ ABSL_GUARDED_BY(io_mu_) = 0;
  uint64_t failed_seq_ ABSL_GUARDED_BY(io_mu_) = 0;
  absl::Status failed_error_ ABSL_GUARDED_BY(io_mu_);
  bool committing_ ABSL_GUARDED_BY(io_mu_) = false;
};

}  // namespace pc::aggregator

#endif  // AGGREGATOR_STORED_FILE_H_
