#include "aggregator/store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <tuple>

#include "absl/hash/hash.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/capture_layout.h"
#include "common/crc32c.h"
#include "common/log.h"
#include "common/pcap/ring_reader.h"
#include "common/status_macros.h"
#include "common/time_proto.h"

namespace pc::aggregator {
namespace {

using packetcapture::v1::Capture;
using packetcapture::v1::Chunk;
using packetcapture::v1::ResumePoint;

constexpr char kMetaFile[] = "capture.pb";
constexpr char kCapturesDir[] = "captures";
constexpr char kRingBase[] = "ring";

// One commit-log entry, little-endian: everything of the file up to
// logical_end (agent offsets) is in the data file up to physical_end.
constexpr size_t kEntrySize = 40;
struct LogEntry {
  uint64_t logical_end = 0;
  uint64_t physical_end = 0;
  uint64_t packets = 0;       // cumulative complete records
  uint64_t last_time_ns = 0;  // timestamp of the last record
  uint32_t data_crc = 0;      // CRC32C of (previous physical_end, physical_end]
};

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

std::string EncodeEntry(const LogEntry& e) {
  std::string out(kEntrySize, '\0');
  Put64(e.logical_end, &out[0]);
  Put64(e.physical_end, &out[8]);
  Put64(e.packets, &out[16]);
  Put64(e.last_time_ns, &out[24]);
  Put32(e.data_crc, &out[32]);
  Put32(Crc32c(absl::string_view(out.data(), 36)), &out[36]);
  return out;
}

bool DecodeEntry(const char* p, LogEntry* e) {
  if (Get32(p + 36) != Crc32c(absl::string_view(p, 36))) return false;
  e->logical_end = Get64(p);
  e->physical_end = Get64(p + 8);
  e->packets = Get64(p + 16);
  e->last_time_ns = Get64(p + 24);
  e->data_crc = Get32(p + 32);
  return e->physical_end <= e->logical_end;
}

absl::Status Errno(const std::string& what) {
  return absl::ErrnoToStatus(errno, what);
}

absl::Status WriteAll(int fd, absl::string_view data, uint64_t offset,
                      const std::string& path) {
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = pwrite(fd, data.data() + done, data.size() - done,
                             static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Errno(absl::StrCat("write ", path));
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

// Appends up to n bytes at offset to *out (fewer at end of file); returns how
// many. Reads straight into *out: downloads pass every byte through here.
absl::StatusOr<size_t> AppendRange(int fd, uint64_t offset, size_t n,
                                   const std::string& path, std::string* out) {
  const size_t start = out->size();
  out->resize(start + n);
  size_t done = 0;
  while (done < n) {
    const ssize_t r = pread(fd, &(*out)[start + done], n - done,
                            static_cast<off_t>(offset + done));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      out->resize(start);
      return Errno(absl::StrCat("read ", path));
    }
    if (r == 0) break;
    done += static_cast<size_t>(r);
  }
  out->resize(start + done);
  return done;
}

absl::StatusOr<std::string> ReadRange(int fd, uint64_t offset, size_t n,
                                      const std::string& path) {
  std::string out;
  auto read = AppendRange(fd, offset, n, path, &out);
  if (!read.ok()) return read.status();
  return out;
}

void SyncDir(const std::string& dir) {
  int fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    fsync(fd);
    close(fd);
  }
}

absl::Status WriteFileAtomically(const std::string& dir,
                                 const std::string& name,
                                 const std::string& data) {
  const std::string path = absl::StrCat(dir, "/", name);
  const std::string tmp = path + ".tmp";
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return Errno(absl::StrCat("open ", tmp));
  absl::Status status = WriteAll(fd, data, 0, tmp);
  if (status.ok() && fsync(fd) != 0)
    status = Errno(absl::StrCat("fsync ", tmp));
  close(fd);
  if (status.ok() && rename(tmp.c_str(), path.c_str()) != 0) {
    status = Errno(absl::StrCat("rename ", tmp));
  }
  if (!status.ok()) {
    unlink(tmp.c_str());
    return status;
  }
  SyncDir(dir);
  return absl::OkStatus();
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

bool Stopped(const Capture& c, bool on_node) {
  return !on_node || c.state() == Capture::STOPPED ||
         c.state() == Capture::FAILED;
}

// The status without the fields that change with every scan: a change in
// the rest is worth a durable metadata write.
std::string Significant(const Capture& c) {
  Capture s = c;
  s.clear_files();
  s.clear_bytes();
  s.clear_packets();
  s.clear_dropped_packets();
  s.clear_bytes_uploaded();
  s.clear_update_time();
  return s.SerializeAsString();
}

uint64_t TimeNs(absl::Time t) {
  return static_cast<uint64_t>(absl::ToUnixNanos(t));
}

}  // namespace

bool ParseStoredFileName(const std::string& name, std::string* run_dir,
                         std::string* ring) {
  std::vector<std::string> parts = absl::StrSplit(name, '/');
  if (parts.size() != 2) return false;
  int run, max_files;
  if (!ParseRunDirName(parts[0], &run, &max_files) ||
      max_files > pcap::kMaxRingFiles) {
    return false;
  }
  const std::string& r = parts[1];
  if (r.size() < 4 || r.compare(0, 4, kRingBase) != 0) return false;
  int index = 0;
  if (r.size() > 4 && !absl::SimpleAtoi(r.substr(4), &index)) return false;
  if (index < 0 || index >= max_files ||
      pcap::RingFileName(kRingBase, index, max_files) != r) {
    return false;
  }
  *run_dir = parts[0];
  *ring = r;
  return true;
}

struct Store::StoredFile {
  std::string capture_id;
  std::string name;  // "run-1-w5/ring3"
  uint64_t generation = 0;
  std::string data_path;
  std::string log_path;

  // Serializes appends; guards the descriptors and the authoritative lengths.
  absl::Mutex io_mu;
  int data_fd = -1;
  int log_fd = -1;
  uint64_t entries = 0;
  LogEntry last;  // last committed entry (zeros before the first)
  absl::optional<pcap::GlobalHeader> io_header;

  // Copies for readers and listings, guarded by Store::mu_.
  uint64_t logical_len = 0;
  uint64_t physical_len = 0;
  uint64_t packets = 0;
  absl::optional<pcap::GlobalHeader> header;
  absl::optional<absl::Time> first_time;
  absl::optional<absl::Time> last_time;
  bool deleted = false;

  ~StoredFile() {
    if (data_fd >= 0) close(data_fd);
    if (log_fd >= 0) close(log_fd);
  }

  int ring_index() const {
    int index = 0;
    const std::string ring = name.substr(name.find('/') + 1);
    if (ring.size() > 4) absl::SimpleAtoi(ring.substr(4), &index);
    return index;
  }
};

struct Store::StoredCapture {
  Capture status;     // as the node reported it, plus on_node/stop_time
  std::string saved;  // Significant() of what capture.pb holds
  std::map<std::pair<std::string, uint64_t>, std::shared_ptr<StoredFile>> files;
};

// ---- Store ----

Store::Store(StoreOptions options, CaptureRegistry* registry)
    : options_(std::move(options)), registry_(registry) {}

Store::~Store() {
  if (dir_fd_ >= 0) close(dir_fd_);
}

absl::Time Store::Now() const {
  return options_.clock ? options_.clock() : absl::Now();
}

std::string Store::CaptureDir(const std::string& id) const {
  return absl::StrCat(options_.data_dir, "/", kCapturesDir, "/", id);
}

absl::StatusOr<std::unique_ptr<Store>> Store::Open(StoreOptions options,
                                                   CaptureRegistry* registry) {
  if (options.data_dir.empty() || options.data_dir[0] != '/') {
    return absl::InvalidArgumentError("data_dir must be an absolute path");
  }
  std::error_code ec;
  std::filesystem::create_directories(
      absl::StrCat(options.data_dir, "/", kCapturesDir), ec);
  if (ec) {
    return absl::InternalError(
        absl::StrCat("create ", options.data_dir, ": ", ec.message()));
  }
  if (options.sync.min_files_for_fs < 0 ||
      options.sync.max_delay < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "sync: min_files_for_fs and max_delay must not be negative");
  }
  std::unique_ptr<Store> store(new Store(std::move(options), registry));
  store->dir_fd_ = open(store->options_.data_dir.c_str(),
                        O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (store->dir_fd_ < 0) {
    return Errno(absl::StrCat("open ", store->options_.data_dir));
  }
  store->sync_ =
      std::make_unique<SyncGroup>(store->dir_fd_, store->options_.sync);
  store->Recover();
  return store;
}

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
    uint64_t bytes = 0;
    for (const auto& [key, file] : capture->files) bytes += file->physical_len;
    total_bytes_ += bytes;
    LogLine("store_recovered", {{"capture", id},
                                {"node", capture->status.node()},
                                {"files", absl::StrCat(capture->files.size())},
                                {"bytes", absl::StrCat(bytes)}});
    Publish(*capture);
    captures_[id] = std::move(capture);
  }
}

std::unique_ptr<Store::StoredCapture> Store::RecoverCapture(
    const std::string& id) {
  const std::string dir = CaptureDir(id);
  int fd =
      open(absl::StrCat(dir, "/", kMetaFile).c_str(), O_RDONLY | O_CLOEXEC);
  std::string data;
  if (fd >= 0) {
    auto read = ReadRange(fd, 0, 1 << 20, dir);
    close(fd);
    if (read.ok()) data = *read;
  }
  auto capture = std::make_unique<StoredCapture>();
  if (fd < 0 || !capture->status.ParseFromString(data) ||
      capture->status.id() != id) {
    LogLine("store_skip",
            {{"path", dir}, {"reason", "missing or corrupt capture.pb"}});
    return nullptr;
  }
  capture->saved = Significant(capture->status);
  for (const std::string& run_dir : ListDir(dir)) {
    int run, n;
    if (run_dir == kMetaFile || run_dir == absl::StrCat(kMetaFile, ".tmp"))
      continue;
    if (!ParseRunDirName(run_dir, &run, &n)) {
      LogLine("store_skip", {{"path", absl::StrCat(dir, "/", run_dir)},
                             {"reason", "unexpected entry"}});
      continue;
    }
    for (const std::string& entry : ListDir(absl::StrCat(dir, "/", run_dir))) {
      // ring<i>.<generation>.pcap; its .log is handled with it.
      std::vector<std::string> parts = absl::StrSplit(entry, '.');
      if (parts.size() == 3 && parts[2] == "log") continue;
      if (parts.size() != 3 || parts[2] != "pcap") {
        LogLine("store_skip",
                {{"path", absl::StrCat(dir, "/", run_dir, "/", entry)},
                 {"reason", "unexpected entry"}});
        continue;
      }
      std::shared_ptr<StoredFile> file =
          RecoverFile(dir, run_dir, absl::StrCat(parts[0], ".", parts[1]));
      if (file == nullptr) continue;
      file->capture_id = id;
      capture->files[{file->name, file->generation}] = file;
    }
  }
  return capture;
}

std::shared_ptr<Store::StoredFile> Store::RecoverFile(
    const std::string& capture_dir, const std::string& run_dir,
    const std::string& base) {
  const std::string prefix = absl::StrCat(capture_dir, "/", run_dir, "/", base);
  auto skip = [&](const std::string& why) -> std::shared_ptr<StoredFile> {
    LogLine("store_skip", {{"path", prefix + ".pcap"}, {"reason", why}});
    return nullptr;
  };
  const size_t dot = base.find('.');
  std::string run, ring;
  uint64_t generation;
  if (!ParseStoredFileName(absl::StrCat(run_dir, "/", base.substr(0, dot)),
                           &run, &ring) ||
      !absl::SimpleAtoi(base.substr(dot + 1), &generation) ||
      absl::StrCat(generation) != base.substr(dot + 1)) {
    return skip("unexpected file name");
  }
  auto file = std::make_shared<StoredFile>();
  file->name = absl::StrCat(run_dir, "/", ring);
  file->generation = generation;
  file->data_path = prefix + ".pcap";
  file->log_path = prefix + ".log";
  file->data_fd = open(file->data_path.c_str(), O_RDWR | O_CLOEXEC);
  file->log_fd = open(file->log_path.c_str(), O_RDWR | O_CLOEXEC);
  if (file->data_fd < 0 || file->log_fd < 0)
    return skip("cannot open data or log");
  struct stat data_st, log_st;
  if (fstat(file->data_fd, &data_st) != 0 ||
      fstat(file->log_fd, &log_st) != 0) {
    return skip("cannot stat");
  }
  const uint64_t data_size = static_cast<uint64_t>(data_st.st_size);
  auto log = ReadRange(file->log_fd, 0, static_cast<size_t>(log_st.st_size),
                       file->log_path);
  if (!log.ok()) return skip(log.status().ToString());
  // Entries are valid up to the first torn or corrupt one.
  std::vector<LogEntry> entries;
  for (size_t pos = 0; pos + kEntrySize <= log->size(); pos += kEntrySize) {
    LogEntry e;
    if (!DecodeEntry(log->data() + pos, &e)) break;
    const LogEntry& prev = entries.empty() ? LogEntry() : entries.back();
    if (e.physical_end <= prev.physical_end ||
        e.logical_end <= prev.logical_end || e.physical_end > data_size) {
      break;
    }
    entries.push_back(e);
  }
  // The data of the last entry must match its checksum (it was synced before
  // the entry was written, so this only fails on media corruption).
  while (!entries.empty()) {
    const LogEntry& e = entries.back();
    const uint64_t begin =
        entries.size() > 1 ? entries[entries.size() - 2].physical_end : 0;
    auto data = ReadRange(file->data_fd, begin, e.physical_end - begin,
                          file->data_path);
    if (data.ok() && data->size() == e.physical_end - begin &&
        Crc32c(*data) == e.data_crc) {
      break;
    }
    entries.pop_back();
  }
  const uint64_t keep = entries.empty() ? 0 : entries.back().physical_end;
  if (keep < data_size || entries.size() * kEntrySize < log->size()) {
    LogLine("store_truncated", {{"path", file->data_path},
                                {"from", absl::StrCat(data_size)},
                                {"to", absl::StrCat(keep)}});
    if (ftruncate(file->data_fd, static_cast<off_t>(keep)) != 0 ||
        ftruncate(file->log_fd,
                  static_cast<off_t>(entries.size() * kEntrySize)) != 0) {
      return skip("cannot truncate torn tail");
    }
    fdatasync(file->data_fd);
    fdatasync(file->log_fd);
  }
  if (entries.empty()) {
    unlink(file->data_path.c_str());
    unlink(file->log_path.c_str());
    return nullptr;
  }
  auto head = ReadRange(file->data_fd, 0,
                        pcap::kGlobalHeaderSize + pcap::kRecordHeaderSize,
                        file->data_path);
  if (!head.ok()) return skip(head.status().ToString());
  auto header = pcap::ParseGlobalHeader(*head);
  if (!header.ok()) return skip(header.status().ToString());
  file->io_header = *header;
  file->header = *header;
  if (head->size() == pcap::kGlobalHeaderSize + pcap::kRecordHeaderSize) {
    auto record = pcap::DecodeRecordHeader(
        *header, absl::string_view(*head).substr(pcap::kGlobalHeaderSize));
    if (record.ok()) file->first_time = record->Timestamp(header->precision);
  }
  file->entries = entries.size();
  file->last = entries.back();
  file->logical_len = file->last.logical_end;
  file->physical_len = file->last.physical_end;
  file->packets = file->last.packets;
  if (file->packets > 0) {
    file->last_time =
        absl::FromUnixNanos(static_cast<int64_t>(file->last.last_time_ns));
  }
  return file;
}

absl::Status Store::SaveMeta(const StoredCapture& capture) {
  return WriteFileAtomically(CaptureDir(capture.status.id()), kMetaFile,
                             capture.status.SerializeAsString());
}

Capture Store::View(const StoredCapture& c) const {
  Capture v = c.status;
  v.clear_files();
  uint64_t bytes = 0, packets = 0, gaps = 0;
  std::vector<std::shared_ptr<StoredFile>> files;
  for (const auto& [key, f] : c.files) {
    gaps += f->logical_len - f->physical_len;
    if (f->physical_len > 0) files.push_back(f);
  }
  std::sort(files.begin(), files.end(), [](const auto& a, const auto& b) {
    return std::make_tuple(a->first_time.value_or(absl::InfiniteFuture()),
                           a->name, a->generation) <
           std::make_tuple(b->first_time.value_or(absl::InfiniteFuture()),
                           b->name, b->generation);
  });
  for (const auto& f : files) {
    auto* out = v.add_files();
    out->set_name(f->name);
    out->set_index(static_cast<uint32_t>(f->ring_index()));
    out->set_generation(f->generation);
    out->set_size(f->physical_len);
    out->set_packets(f->packets);
    if (f->first_time)
      *out->mutable_first_packet_time() = ToProto(*f->first_time);
    if (f->last_time) *out->mutable_last_packet_time() = ToProto(*f->last_time);
    bytes += f->physical_len;
    packets += f->packets;
  }
  v.set_bytes(bytes);
  v.set_packets(packets);
  v.set_bytes_lost(c.status.bytes_lost() + gaps);
  v.clear_expire_time();
  if (Stopped(c.status, c.status.on_node())) {
    absl::Time ref = c.status.has_stop_time()
                         ? FromProto(c.status.stop_time())
                         : FromProto(c.status.update_time());
    *v.mutable_expire_time() = ToProto(ref + options_.retention);
  }
  return v;
}

void Store::Publish(const StoredCapture& capture) {
  registry_->Put(View(capture));
}

absl::Status Store::PutStatus(const std::string& node, const Capture& status) {
  if (!IsValidCaptureId(status.id())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "invalid capture id \"", status.id().substr(0, 256), "\""));
  }
  if (status.node() != node) {
    return absl::PermissionDeniedError(absl::StrCat(
        "status of capture ", status.id(), " names node \"",
        status.node().substr(0, 256), "\", not this agent's node ", node));
  }
  absl::MutexLock lock(&mu_);
  auto it = captures_.find(status.id());
  if (it != captures_.end() && it->second->status.node() != node) {
    return absl::PermissionDeniedError(absl::StrCat("capture ", status.id(),
                                                    " belongs to node ",
                                                    it->second->status.node()));
  }
  if (it == captures_.end()) {
    const std::string dir = CaptureDir(status.id());
    if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
      return Errno(absl::StrCat("mkdir ", dir));
    }
    SyncDir(absl::StrCat(options_.data_dir, "/", kCapturesDir));
    it =
        captures_.emplace(status.id(), std::make_unique<StoredCapture>()).first;
  }
  StoredCapture& c = *it->second;
  Capture s = status;
  s.clear_expire_time();
  s.clear_files();  // the listing shows the stored files, not the node's
  if (Stopped(s, s.on_node()) && !s.has_stop_time()) {
    *s.mutable_stop_time() = ToProto(Now());
  }
  if (!s.has_update_time()) *s.mutable_update_time() = ToProto(Now());
  c.status = std::move(s);
  const std::string significant = Significant(c.status);
  if (significant != c.saved) {
    RETURN_IF_ERROR(SaveMeta(c));
    c.saved = significant;
  }
  Publish(c);
  return absl::OkStatus();
}

void Store::MarkGone(const std::string& node,
                     const std::set<std::string>& present,
                     const std::string& reason) {
  absl::MutexLock lock(&mu_);
  const absl::Time now = Now();
  for (auto& [id, c] : captures_) {
    if (c->status.node() != node || present.count(id) || !c->status.on_node()) {
      continue;
    }
    c->status.set_on_node(false);
    if (c->status.state() == Capture::RUNNING ||
        c->status.state() == Capture::PENDING) {
      c->status.set_state(Capture::STOPPED);
      c->status.set_message(reason);
    }
    if (!c->status.has_stop_time())
      *c->status.mutable_stop_time() = ToProto(now);
    *c->status.mutable_update_time() = ToProto(now);
    auto saved = SaveMeta(*c);
    if (!saved.ok()) {
      LogLine("store_meta_error",
              {{"capture", id}, {"error", saved.ToString()}});
    }
    c->saved = Significant(c->status);
    LogLine("capture_gone_from_node", {{"capture", id}, {"node", node}});
    Publish(*c);
  }
}

std::vector<ResumePoint> Store::ResumePoints(const std::string& node) const {
  std::vector<ResumePoint> out;
  absl::MutexLock lock(&mu_);
  for (const auto& [id, c] : captures_) {
    if (c->status.node() != node) continue;
    for (const auto& [key, f] : c->files) {
      ResumePoint p;
      p.set_capture_id(id);
      p.set_file(f->name);
      p.set_file_generation(f->generation);
      p.set_offset(f->logical_len);
      out.push_back(std::move(p));
    }
  }
  return out;
}

absl::StatusOr<AppendResult> Store::Append(const std::string& node,
                                           const Chunk& chunk) {
  BatchResult batch = AppendBatch(node, {&chunk});
  if (!batch.error.ok()) return batch.error;
  return batch.results.front();
}

BatchResult Store::AppendBatch(const std::string& node,
                               const std::vector<const Chunk*>& chunks) {
  BatchResult out;
  out.error = AppendBatchTo(node, chunks, &out.results);
  return out;
}

absl::Status Store::AppendBatchTo(const std::string& node,
                                  const std::vector<const Chunk*>& chunks,
                                  std::vector<AppendResult>* results) {
  if (chunks.empty()) return absl::OkStatus();
  const Chunk& chunk = *chunks.front();
  std::string run_dir, ring;
  if (!IsValidCaptureId(chunk.capture_id())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "invalid capture id \"", chunk.capture_id().substr(0, 256), "\""));
  }
  if (!ParseStoredFileName(chunk.file(), &run_dir, &ring)) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid file name \"", chunk.file().substr(0, 256),
                     "\" (expected run-<k>-w<N>/ring<i>)"));
  }
  std::shared_ptr<StoredFile> file;
  bool created = false;
  {
    absl::MutexLock lock(&mu_);
    auto it = captures_.find(chunk.capture_id());
    if (it == captures_.end()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "unknown capture ", chunk.capture_id(), ": send its status first"));
    }
    StoredCapture& c = *it->second;
    if (c.status.node() != node) {
      return absl::PermissionDeniedError(
          absl::StrCat("capture ", chunk.capture_id(), " belongs to node ",
                       c.status.node()));
    }
    auto& slot = c.files[{chunk.file(), chunk.file_generation()}];
    if (slot == nullptr) {
      if (chunk.offset() != 0) {
        c.files.erase({chunk.file(), chunk.file_generation()});
        return absl::InvalidArgumentError(
            absl::StrCat("first chunk of ", chunk.file(), " generation ",
                         chunk.file_generation(), " must start at offset 0"));
      }
      auto f = std::make_shared<StoredFile>();
      f->capture_id = chunk.capture_id();
      f->name = chunk.file();
      f->generation = chunk.file_generation();
      const std::string dir =
          absl::StrCat(CaptureDir(chunk.capture_id()), "/", run_dir);
      const std::string prefix =
          absl::StrCat(dir, "/", ring, ".", chunk.file_generation());
      f->data_path = prefix + ".pcap";
      f->log_path = prefix + ".log";
      if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
        c.files.erase({chunk.file(), chunk.file_generation()});
        return Errno(absl::StrCat("mkdir ", dir));
      }
      f->data_fd = open(f->data_path.c_str(),
                        O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
      f->log_fd = open(f->log_path.c_str(),
                       O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
      if (f->data_fd < 0 || f->log_fd < 0) {
        c.files.erase({chunk.file(), chunk.file_generation()});
        return Errno(absl::StrCat("create ", prefix));
      }
      SyncDir(dir);
      SyncDir(CaptureDir(chunk.capture_id()));
      slot = f;
      created = true;
    }
    file = slot;
  }

  absl::MutexLock io(&file->io_mu);
  // Each chunk's bytes are written at once; one flush of the data then
  // covers them all, and only then are their entries appended to the log
  // (one more flush). So an entry never names bytes that are not durable,
  // and a batch costs two flushes however many chunks it holds (fewer when
  // other streams' batches share them).
  LogEntry last = file->last;
  absl::optional<pcap::GlobalHeader> io_header = file->io_header;
  const bool was_empty = last.logical_end == 0;
  std::string entries;
  uint64_t bytes = 0;
  absl::optional<absl::Time> first_time, last_time;
  absl::Status error;
  for (const Chunk* c : chunks) {
    if (c->capture_id() != chunk.capture_id() || c->file() != chunk.file() ||
        c->file_generation() != chunk.file_generation()) {
      error = absl::InternalError("a batch must hold chunks of one file");
      break;
    }
    if (c->data().empty()) {
      error = absl::InvalidArgumentError("empty chunk");
      break;
    }
    const uint64_t stored = last.logical_end;
    AppendResult result;
    if (c->offset() < stored || (c->offset() == 0 && stored > 0)) {
      result.offset = stored;
      result.duplicate = true;
      results->push_back(result);
      continue;
    }
    absl::string_view data = c->data();
    absl::string_view records = data;
    pcap::GlobalHeader header;
    if (stored == 0) {
      auto parsed = pcap::ParseGlobalHeader(data);
      if (!parsed.ok()) {
        error = absl::InvalidArgumentError(absl::StrCat(
            c->file(), ": first chunk must begin with a pcap header: ",
            parsed.status().message()));
        break;
      }
      header = *parsed;
      records = data.substr(pcap::kGlobalHeaderSize);
    } else {
      header = *io_header;
      result.gap = c->offset() - stored;
    }
    const pcap::ScanResult scan = pcap::ScanRecords(header, records);
    if (scan.corrupt() || scan.complete_bytes != records.size()) {
      error = absl::InvalidArgumentError(absl::StrCat(
          c->file(), " offset ", c->offset(),
          ": chunk is not a sequence of whole pcap records",
          scan.corrupt() ? absl::StrCat(" (", scan.status.message(), ")")
                         : ""));
      break;
    }
    error = WriteAll(file->data_fd, data, last.physical_end, file->data_path);
    if (!error.ok()) break;
    LogEntry entry;
    entry.logical_end = c->offset() + data.size();
    entry.physical_end = last.physical_end + data.size();
    entry.packets = last.packets + scan.records;
    entry.last_time_ns =
        scan.last_time ? TimeNs(*scan.last_time) : last.last_time_ns;
    entry.data_crc = Crc32c(data);
    entries += EncodeEntry(entry);
    last = entry;
    if (stored == 0) io_header = header;
    if (!first_time) first_time = scan.first_time;
    if (scan.last_time) last_time = scan.last_time;
    bytes += data.size();
    result.offset = entry.logical_end;
    results->push_back(result);
  }
  if (entries.empty()) return error;  // nothing written (all duplicates?)

  // Commit what was written before any error: the chunks before it stay
  // valid and are acknowledged.
  // The node names the writer: one agent, one stream.
  const uint64_t writer = absl::Hash<std::string>()(node);
  absl::Status commit = sync_->Sync(file->data_fd, writer, file->data_path);
  if (commit.ok()) {
    commit = WriteAll(file->log_fd, entries, file->entries * kEntrySize,
                      file->log_path);
  }
  if (commit.ok()) commit = sync_->Sync(file->log_fd, writer, file->log_path);
  if (!commit.ok()) {
    // Nothing of this batch counts: the next write starts where the last
    // committed entry ends, over whatever was written here.
    results->clear();
    return commit;
  }
  file->entries += entries.size() / kEntrySize;
  file->last = last;
  file->io_header = io_header;

  absl::MutexLock lock(&mu_);
  if (file->deleted) return error;  // dropped meanwhile: nothing to account
  file->logical_len = last.logical_end;
  file->physical_len = last.physical_end;
  file->packets = last.packets;
  if (was_empty) file->header = io_header;
  // A file joins the download order with its first bytes and moves in it
  // when its first record's time becomes known.
  if (was_empty || (!file->first_time && first_time)) ++file_set_version_;
  if (!file->first_time && first_time) file->first_time = first_time;
  if (last_time) file->last_time = last_time;
  total_bytes_ += bytes;
  auto it = captures_.find(chunk.capture_id());
  if (it != captures_.end()) {
    if (created || was_empty) MirrorRing(it->second.get());
    Publish(*it->second);
  }
  return error;
}

void Store::MirrorRing(StoredCapture* c) {
  const uint32_t max_files = c->status.max_files();
  if (max_files == 0 || c->files.size() <= max_files) return;
  std::vector<std::shared_ptr<StoredFile>> files;
  for (const auto& [key, f] : c->files) files.push_back(f);
  std::sort(files.begin(), files.end(), [](const auto& a, const auto& b) {
    return std::make_tuple(a->first_time.value_or(absl::InfiniteFuture()),
                           a->name, a->generation) <
           std::make_tuple(b->first_time.value_or(absl::InfiniteFuture()),
                           b->name, b->generation);
  });
  for (size_t i = 0; i + max_files < files.size(); ++i) {
    StoredFile& f = *files[i];
    f.deleted = true;
    total_bytes_ -= f.physical_len;
    unlink(f.data_path.c_str());
    unlink(f.log_path.c_str());
    c->files.erase({f.name, f.generation});
    ++file_set_version_;
    LogLine("store_ring_dropped", {{"capture", f.capture_id},
                                   {"file", f.name},
                                   {"generation", absl::StrCat(f.generation)}});
  }
}

void Store::DeleteCapture(const std::string& id) {
  auto it = captures_.find(id);
  if (it == captures_.end()) return;
  for (auto& [key, f] : it->second->files) {
    f->deleted = true;
    total_bytes_ -= f->physical_len;
  }
  captures_.erase(it);
  ++file_set_version_;
  std::error_code ec;
  std::filesystem::remove_all(CaptureDir(id), ec);
  registry_->Remove(id);
}

std::vector<std::string> Store::Maintain() {
  std::vector<std::string> deleted;
  absl::MutexLock lock(&mu_);
  const absl::Time now = Now();
  // Stopped captures with the time their retention started.
  std::vector<std::pair<absl::Time, std::string>> stopped;
  for (const auto& [id, c] : captures_) {
    if (!Stopped(c->status, c->status.on_node())) continue;
    const absl::Time ref = c->status.has_stop_time()
                               ? FromProto(c->status.stop_time())
                               : FromProto(c->status.update_time());
    stopped.emplace_back(ref, id);
  }
  std::sort(stopped.begin(), stopped.end());
  size_t next = 0;
  for (; next < stopped.size(); ++next) {
    if (now < stopped[next].first + options_.retention) break;
    LogLine("capture_expired", {{"capture", stopped[next].second}});
    DeleteCapture(stopped[next].second);
    deleted.push_back(stopped[next].second);
  }
  if (options_.max_bytes == 0) return deleted;
  while (total_bytes_ > options_.max_bytes && next < stopped.size()) {
    LogLine("capture_evicted",
            {{"capture", stopped[next].second},
             {"total_bytes", absl::StrCat(total_bytes_)},
             {"max_bytes", absl::StrCat(options_.max_bytes)}});
    DeleteCapture(stopped[next].second);
    deleted.push_back(stopped[next].second);
    ++next;
  }
  if (total_bytes_ > options_.max_bytes) {
    if (!over_budget_logged_) {
      LogLine("store_over_budget",
              {{"total_bytes", absl::StrCat(total_bytes_)},
               {"max_bytes", absl::StrCat(options_.max_bytes)},
               {"reason", "only running captures left"}});
    }
    over_budget_logged_ = true;
  } else {
    over_budget_logged_ = false;
  }
  return deleted;
}

uint64_t Store::total_bytes() const {
  absl::MutexLock lock(&mu_);
  return total_bytes_;
}

std::vector<std::shared_ptr<Store::StoredFile>> Store::OrderedFiles(
    const std::string& id, bool* running, uint64_t* version) const {
  std::vector<std::shared_ptr<StoredFile>> files;
  absl::MutexLock lock(&mu_);
  if (version != nullptr) *version = file_set_version_;
  *running = false;
  auto it = captures_.find(id);
  if (it == captures_.end()) return files;
  const Capture& s = it->second->status;
  *running = s.on_node() &&
             (s.state() == Capture::RUNNING || s.state() == Capture::PENDING);
  for (const auto& [key, f] : it->second->files) {
    if (f->physical_len > 0) files.push_back(f);
  }
  std::sort(files.begin(), files.end(), [](const auto& a, const auto& b) {
    return std::make_tuple(a->first_time.value_or(absl::InfiniteFuture()),
                           a->name, a->generation) <
           std::make_tuple(b->first_time.value_or(absl::InfiniteFuture()),
                           b->name, b->generation);
  });
  return files;
}

// ---- Reader ----

// Reads the stored files of one capture in order. Thread-compatible.
class Store::Reader : public PcapSource {
 public:
  Reader(const Store* store, std::string id, bool follow)
      : store_(store), id_(std::move(id)), follow_(follow) {}
  ~Reader() override {
    if (fd_ >= 0) close(fd_);
  }

  absl::StatusOr<size_t> Read(std::string* out, size_t max_bytes) override {
    for (int attempts = 0; attempts < 1000; ++attempts) {
      // Fast path: more bytes of the open file. The file order is consulted
      // only at a file's end.
      if (current_ != nullptr) {
        uint64_t length;
        {
          absl::MutexLock lock(&store_->mu_);
          length = current_->physical_len;
        }
        if (pos_ < length) {
          const size_t n =
              static_cast<size_t>(std::min<uint64_t>(max_bytes, length - pos_));
          auto read = AppendRange(fd_, pos_, n, current_->data_path, out);
          if (!read.ok()) return read.status();
          if (*read == 0) return absl::DataLossError("stored file shrank");
          pos_ += *read;
          return *read;
        }
      }
      Refresh();
      // The first file in capture order that is neither open nor read.
      while (
          next_ < files_.size() &&
          (files_[next_] == current_ ||
           consumed_.count({files_[next_]->name, files_[next_]->generation}))) {
        ++next_;
      }
      const bool later = next_ < files_.size();
      if (current_ == nullptr) {
        if (!later) return 0;
        RETURN_IF_ERROR(OpenFile(files_[next_]));
        continue;  // read from it (or, if it vanished, try the next one)
      }
      // Finished with this file once another unread one exists (or it was
      // dropped from the store).
      if (!later && current_listed_) {
        // Bytes may have landed between the length check and now.
        absl::MutexLock lock(&store_->mu_);
        if (pos_ < current_->physical_len) continue;
        return 0;
      }
      consumed_.insert({current_->name, current_->generation});
      close(fd_);
      fd_ = -1;
      current_.reset();
      if (!later) return 0;
    }
    return 0;
  }

  bool Done() override {
    if (!follow_) return true;
    bool running;
    std::vector<std::shared_ptr<StoredFile>> files =
        store_->OrderedFiles(id_, &running);
    if (running) return false;
    for (const auto& f : files) {
      if (f == current_) {
        absl::MutexLock lock(&store_->mu_);
        if (pos_ < f->physical_len) return false;
      } else if (!consumed_.count({f->name, f->generation})) {
        return false;
      }
    }
    return true;
  }

 private:
  absl::Status OpenFile(const std::shared_ptr<StoredFile>& f) {
    fd_ = open(f->data_path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) {
      consumed_.insert({f->name, f->generation});  // dropped meanwhile
      return absl::OkStatus();
    }
    pcap::GlobalHeader header;
    {
      absl::MutexLock lock(&store_->mu_);
      header = *f->header;
    }
    if (!stream_header_) {
      stream_header_ = header;
      pos_ = 0;
    } else {
      if (!pcap::SameStreamFormat(*stream_header_, header)) {
        close(fd_);
        fd_ = -1;
        return absl::FailedPreconditionError(absl::StrCat(
            "stored file ", f->name, " has a different pcap format"));
      }
      pos_ = pcap::kGlobalHeaderSize;
    }
    current_ = f;
    current_listed_ = true;  // it came from files_
    return absl::OkStatus();
  }

  // Re-reads the capture's file order when the store's file set changed: a
  // sort over every file, so not once per message (a 1 GiB capture has
  // about a thousand files).
  void Refresh() {
    {
      absl::MutexLock lock(&store_->mu_);
      if (version_ && *version_ == store_->file_set_version_) return;
    }
    bool running;
    uint64_t version;
    files_ = store_->OrderedFiles(id_, &running, &version);
    version_ = version;
    next_ = 0;
    current_listed_ =
        current_ != nullptr &&
        std::find(files_.begin(), files_.end(), current_) != files_.end();
  }

  const Store* store_;
  const std::string id_;
  const bool follow_;
  std::set<std::pair<std::string, uint64_t>> consumed_;
  // The capture's files in order as of store version version_; files before
  // next_ are known to be consumed.
  std::vector<std::shared_ptr<StoredFile>> files_;
  absl::optional<uint64_t> version_;
  size_t next_ = 0;
  bool current_listed_ = false;  // current_ is in files_
  std::shared_ptr<StoredFile> current_;
  int fd_ = -1;
  uint64_t pos_ = 0;
  absl::optional<pcap::GlobalHeader> stream_header_;
};

absl::StatusOr<std::unique_ptr<PcapSource>> Store::OpenReader(
    const std::string& id, bool follow) {
  {
    absl::MutexLock lock(&mu_);
    if (!captures_.count(id)) {
      return absl::NotFoundError(
          absl::StrCat("no capture with id \"", id.substr(0, 256), "\""));
    }
  }
  return std::unique_ptr<PcapSource>(new Reader(this, id, follow));
}

}  // namespace pc::aggregator
