#include "aggregator/stored_file.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <limits>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "aggregator/chunk_cut.h"
#include "common/crc32c.h"
#include "common/log.h"

namespace pc::aggregator {
namespace {

using packetcapture::v1::Chunk;

void Put64(uint64_t v, char* p) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<char>((v >> (8 * i)) & 0xff);
}
void Put32(uint32_t v, char* p) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<char>((v >> (8 * i)) & 0xff);
}
uint64_t Get64(const char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}
uint32_t Get32(const char* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

// LogEntry::commit_start, on disk: packets never reach 2^63.
constexpr uint64_t kCommitStartBit = uint64_t{1} << 63;

uint64_t TimeNs(absl::Time t) {
  return static_cast<uint64_t>(absl::ToUnixNanos(t));
}

// Reads exactly n bytes at offset (fewer means the file is shorter).
absl::StatusOr<std::string> ReadExactly(int fd, uint64_t offset, size_t n,
                                        const std::string& what) {
  std::string out;
  const int64_t r = AppendRange(fd, offset, n, &out);
  if (r < 0) return IoError(static_cast<int>(-r), what);
  return out;
}

}  // namespace

std::string StoredFile::EncodeEntry(const LogEntry& e) {
  std::string out(kEntrySize, '\0');
  Put64(e.logical_end, &out[0]);
  Put64(e.physical_end, &out[8]);
  Put64(e.packets | (e.commit_start ? kCommitStartBit : 0), &out[16]);
  Put64(e.last_time_ns, &out[24]);
  Put32(e.data_crc, &out[32]);
  Put32(Crc32c(absl::string_view(out.data(), 36)), &out[36]);
  return out;
}

bool StoredFile::DecodeEntry(const char* p, LogEntry* e) {
  if (Get32(p + 36) != Crc32c(absl::string_view(p, 36))) return false;
  e->logical_end = Get64(p);
  e->physical_end = Get64(p + 8);
  const uint64_t packets = Get64(p + 16);
  e->packets = packets & ~kCommitStartBit;
  e->commit_start = (packets & kCommitStartBit) != 0;
  e->last_time_ns = Get64(p + 24);
  e->data_crc = Get32(p + 32);
  return e->physical_end <= e->logical_end;
}

StoredFile::StoredFile(std::shared_ptr<CaptureDir> dir, std::string name,
                       uint64_t generation, const StoredFileContext* context)
    : dir_(std::move(dir)),
      name_(std::move(name)),
      generation_(generation),
      context_(context),
      key_(context->open_files->NewKey()),
      run_dir_(name_.substr(0, name_.find('/'))),
      data_path_(
          absl::StrCat(dir_->path(), "/", name_, ".", generation, ".pcap")),
      log_path_(
          absl::StrCat(dir_->path(), "/", name_, ".", generation, ".log")),
      label_(absl::StrCat(dir_->id(), "/", name_, ".", generation)) {}

StoredFile::~StoredFile() { context_->open_files->Forget(key_); }

int StoredFile::ring_index() const {
  int index = 0;
  const std::string ring = name_.substr(name_.find('/') + 1);
  if (ring.size() > 4) absl::SimpleAtoi(ring.substr(4), &index);
  return index;
}

void StoredFile::Remove() {
  removed_.store(true);
  unlink(data_path_.c_str());
  unlink(log_path_.c_str());
  context_->open_files->Forget(key_);
}

bool StoredFile::RemoveIfEmpty() {
  absl::MutexLock io(&io_mu_);
  if (entries_ > 0 || write_seq_ > std::max(committed_seq_, failed_seq_)) {
    return false;
  }
  Remove();
  return true;
}

FileSummary StoredFile::Summary() const {
  FileSummary s;
  s.logical_len = last_.logical_end;
  s.physical_len = last_.physical_end;
  s.packets = last_.packets;
  s.header = header_;
  s.first_time = first_time_;
  if (last_.packets > 0) {
    s.last_time = absl::FromUnixNanos(static_cast<int64_t>(last_.last_time_ns));
  }
  s.commits = entries_;
  return s;
}

absl::StatusOr<FileSummary> StoredFile::Recover() {
  absl::MutexLock io(&io_mu_);
  on_disk_ = true;
  const int data_fd = open(data_path_.c_str(), O_RDWR | O_CLOEXEC);
  if (data_fd < 0)
    return IoError(errno, absl::StrCat("open ", label_, ".pcap"));
  const int log_fd = open(log_path_.c_str(), O_RDWR | O_CLOEXEC);
  if (log_fd < 0) {
    const int err = errno;
    close(data_fd);
    return IoError(err, absl::StrCat("open ", label_, ".log"));
  }
  // Descriptors are only needed while recovering.
  struct Closer {
    int a, b;
    ~Closer() {
      close(a);
      close(b);
    }
  } closer{data_fd, log_fd};

  struct stat data_st, log_st;
  if (fstat(data_fd, &data_st) != 0 || fstat(log_fd, &log_st) != 0) {
    return IoError(errno, absl::StrCat("stat ", label_));
  }
  const uint64_t data_size = static_cast<uint64_t>(data_st.st_size);
  auto log = ReadExactly(log_fd, 0, static_cast<size_t>(log_st.st_size),
                         absl::StrCat("read ", label_, ".log"));
  if (!log.ok()) return log.status();
  // Entries are valid up to the first torn or corrupt one.
  std::vector<LogEntry> entries;
  for (size_t pos = 0; pos + kEntrySize <= log->size(); pos += kEntrySize) {
    LogEntry e;
    if (!DecodeEntry(log->data() + pos, &e)) break;
    const LogEntry prev = entries.empty() ? LogEntry() : entries.back();
    if (e.physical_end <= prev.physical_end ||
        e.logical_end <= prev.logical_end || e.physical_end > data_size) {
      break;
    }
    entries.push_back(e);
  }
  // The last commit's entries were flushed together with their data, so a
  // crash may have kept an entry and lost (some of) its data: each of them
  // must match its data's checksum, and the first that does not ends the
  // file. Every earlier commit finished its flush before the next one wrote
  // its entries. A log without commit marks (written when the data was
  // flushed before its entries) has only its last entry checked, which then
  // fails only on media corruption.
  size_t check_from = entries.empty() ? 0 : entries.size() - 1;
  for (size_t i = entries.size(); i-- > 0;) {
    if (entries[i].commit_start) {
      check_from = i;
      break;
    }
  }
  for (size_t i = check_from; i < entries.size(); ++i) {
    const uint64_t begin = i > 0 ? entries[i - 1].physical_end : 0;
    auto data = ReadExactly(data_fd, begin, entries[i].physical_end - begin,
                            absl::StrCat("read ", label_, ".pcap"));
    if (!data.ok() || data->size() != entries[i].physical_end - begin ||
        Crc32c(*data) != entries[i].data_crc) {
      entries.resize(i);
      break;
    }
  }
  const uint64_t keep = entries.empty() ? 0 : entries.back().physical_end;
  if (keep < data_size || entries.size() * kEntrySize < log->size()) {
    LogLine("store_truncated", {{"file", label_},
                                {"from", absl::StrCat(data_size)},
                                {"to", absl::StrCat(keep)}});
    if (ftruncate(data_fd, static_cast<off_t>(keep)) != 0 ||
        ftruncate(log_fd, static_cast<off_t>(entries.size() * kEntrySize)) !=
            0) {
      return IoError(errno, absl::StrCat("truncate the torn tail of ", label_));
    }
    fdatasync(data_fd);
    fdatasync(log_fd);
  }
  if (entries.empty()) {
    unlink(data_path_.c_str());
    unlink(log_path_.c_str());
    return absl::NotFoundError(
        absl::StrCat(label_, " holds no committed data"));
  }
  auto head =
      ReadExactly(data_fd, 0, pcap::kGlobalHeaderSize + pcap::kRecordHeaderSize,
                  absl::StrCat("read ", label_, ".pcap"));
  if (!head.ok()) return head.status();
  auto header = pcap::ParseGlobalHeader(*head);
  if (!header.ok()) {
    return absl::DataLossError(
        absl::StrCat(label_, ": ", header.status().message()));
  }
  header_ = *header;
  if (head->size() == pcap::kGlobalHeaderSize + pcap::kRecordHeaderSize) {
    auto record = pcap::DecodeRecordHeader(
        *header, absl::string_view(*head).substr(pcap::kGlobalHeaderSize));
    if (record.ok()) first_time_ = record->Timestamp(header->precision);
  }
  entries_ = entries.size();
  last_ = entries.back();
  written_ = last_;
  written_header_ = header_;
  written_first_time_ = first_time_;
  return Summary();
}

absl::Status StoredFile::Create(OpenFiles::Handle* handle) {
  int data_fd = -1, log_fd = -1;
  absl::Status created = dir_->CreateIn(run_dir_, [&]() -> absl::Status {
    data_fd =
        open(data_path_.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (data_fd < 0)
      return IoError(errno, absl::StrCat("create ", label_, ".pcap"));
    log_fd =
        open(log_path_.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (log_fd < 0)
      return IoError(errno, absl::StrCat("create ", label_, ".log"));
    return absl::OkStatus();
  });
  if (!created.ok()) {
    if (data_fd >= 0) close(data_fd);
    if (log_fd >= 0) close(log_fd);
    return created;
  }
  *handle = context_->open_files->Adopt(key_, data_fd, log_fd);
  on_disk_ = true;
  return absl::OkStatus();
}

FileAppend StoredFile::Append(const std::vector<const Chunk*>& chunks,
                              uint64_t writer) {
  FileWrite write = Write(chunks);
  return Commit(&write, writer);
}

FileWrite StoredFile::Write(const std::vector<const Chunk*>& chunks) {
  FileWrite out;
  absl::MutexLock io(&io_mu_);
  if (removed_.load()) {
    out.removed = true;
    return out;
  }
  OpenFiles::Handle handle;
  if (!on_disk_) {
    out.error = Create(&handle);
    if (!out.error.ok()) return out;
    // Removed while being created: Remove()'s unlink may have come first.
    if (removed_.load()) {
      unlink(data_path_.c_str());
      unlink(log_path_.c_str());
      out.removed = true;
      return out;
    }
  } else if (const int err = context_->open_files->Acquire(key_, data_path_,
                                                           log_path_, &handle);
             err != 0) {
    out.error = IoError(err, absl::StrCat("open ", label_));
    return out;
  }

  // Each chunk's bytes are written at once; their log entries wait for the
  // commit, which writes them and flushes the data and the log in one round
  // (shared with other streams' commits).
  LogEntry last = written_;
  absl::optional<pcap::GlobalHeader> header = written_header_;
  absl::optional<absl::Time> first_time = written_first_time_;
  std::vector<LogEntry> entries;
  uint64_t bytes = 0;
  for (const Chunk* c : chunks) {
    if (c->capture_id() != dir_->id() || c->file() != name_ ||
        c->file_generation() != generation_) {
      out.error = absl::InternalError("a batch must hold chunks of one file");
      break;
    }
    auto cut = CutChunk(*c, last.logical_end, header);
    if (!cut.ok()) {
      out.error = cut.status();
      break;
    }
    if (cut->result.duplicate) {
      out.results.push_back(cut->result);
      continue;
    }
    const absl::string_view data = cut->data;
    const pcap::ScanResult& scan = cut->scan;
    if (const int err = WriteAll(handle.data_fd(), data, last.physical_end);
        err != 0) {
      out.error = IoError(err, absl::StrCat("write ", label_, ".pcap"));
      break;
    }
    LogEntry entry;
    entry.logical_end = cut->result.offset;
    entry.physical_end = last.physical_end + data.size();
    entry.packets = last.packets + scan.records;
    entry.last_time_ns =
        scan.last_time ? TimeNs(*scan.last_time) : last.last_time_ns;
    entry.data_crc = Crc32c(data);
    entries.push_back(entry);
    last = entry;
    if (!header) header = cut->header;
    if (!first_time) first_time = scan.first_time;
    bytes += data.size();
    out.results.push_back(cut->result);
  }
  // Results depend on the writes before this one (duplicates included).
  out.seq = write_seq_;
  if (entries.empty()) return out;  // nothing written (all duplicates?)
  out.seq = ++write_seq_;
  out.wrote = true;
  out.bytes = bytes;
  out.handle = std::move(handle);
  unlogged_.insert(unlogged_.end(), entries.begin(), entries.end());
  written_ = last;
  written_header_ = header;
  written_first_time_ = first_time;
  return out;
}

FileAppend StoredFile::Commit(FileWrite* write, uint64_t writer) {
  FileAppend out;
  out.results = std::move(write->results);
  out.error = write->error;
  out.removed = write->removed;
  if (write->seq == 0) return out;
  absl::MutexLock io(&io_mu_);
  for (;;) {
    if (write->seq <= committed_seq_) {
      out.committed = write->wrote;
      out.after = Summary();
      out.bytes = write->bytes;
      return out;
    }
    if (write->seq <= failed_seq_) {
      out.results.clear();
      out.error = failed_error_;
      return out;
    }
    if (!committing_) break;
    io_mu_.Await(absl::Condition(
        +[](bool* committing) { return !*committing; }, &committing_));
  }
  // Commit every write so far: their entries are appended to the log, the
  // first one marked as a commit's start, and one round flushes the data and
  // the log together. A commit costs one flush however many writes it covers
  // (less when other streams' commits share the round); Recover() checks the
  // data of the last commit's entries. Writes made meanwhile wait for the
  // next commit.
  committing_ = true;
  const uint64_t through = write_seq_;
  const LogEntry last = written_;
  const absl::optional<pcap::GlobalHeader> header = written_header_;
  const absl::optional<absl::Time> first_time = written_first_time_;
  std::string entries;
  for (size_t i = 0; i < unlogged_.size(); ++i) {
    LogEntry e = unlogged_[i];
    e.commit_start = i == 0;
    entries += EncodeEntry(e);
  }
  unlogged_.clear();
  const uint64_t log_offset = entries_ * kEntrySize;
  const int data_fd = write->handle.data_fd();
  const int log_fd = write->handle.log_fd();
  io_mu_.Unlock();
  absl::Status commit;
  if (const int err = WriteAll(log_fd, entries, log_offset); err != 0) {
    commit = IoError(err, absl::StrCat("write ", label_, ".log"));
  } else {
    commit = context_->sync->Sync({data_fd, log_fd}, writer, label_);
  }
  io_mu_.Lock();
  committing_ = false;
  if (commit.ok()) {
    entries_ += entries.size() / kEntrySize;
    last_ = last;
    header_ = header;
    first_time_ = first_time;
    committed_seq_ = through;
  } else {
    // Nothing written since the last commit counts, the writes made during
    // this one included (they were placed after bytes that do not count).
    FailUncommitted(commit);
  }
  if (write->seq <= committed_seq_) {
    out.committed = write->wrote;
    out.after = Summary();
    out.bytes = write->bytes;
  } else {
    out.results.clear();
    out.error = failed_error_;
  }
  return out;
}

void StoredFile::FailUncommitted(const absl::Status& error) {
  // The next write starts where the last committed entry ends, over whatever
  // was written since.
  failed_seq_ = write_seq_;
  failed_error_ = error;
  written_ = last_;
  written_header_ = header_;
  written_first_time_ = first_time_;
  unlogged_.clear();
}

void StoredFile::Abandon(FileWrite* write) {
  if (write->seq == 0) return;
  absl::MutexLock io(&io_mu_);
  io_mu_.Await(absl::Condition(
      +[](bool* committing) { return !*committing; }, &committing_));
  if (write->seq <= committed_seq_ || write->seq <= failed_seq_) return;
  FailUncommitted(absl::AbortedError(
      absl::StrCat("a write to ", label_, " was abandoned before its commit")));
}

}  // namespace pc::aggregator
