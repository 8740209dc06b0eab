#include "aggregator/object_catalog.h"

#include <algorithm>
#include <set>
#include <tuple>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "aggregator/capture_meta.pb.h"
#include "aggregator/object_catalog.pb.h"
#include "aggregator/store_rules.h"
#include "common/capture_layout.h"
#include "common/log.h"
#include "common/time_proto.h"

namespace pc::aggregator {

using packetcapture::v1::Capture;

namespace {

void EncodeFiles(const std::map<FileKey, FileSummary>& files,
                 google::protobuf::RepeatedPtrField<CatalogFileSummary>* out) {
  for (const auto& [key, f] : files) {
    CatalogFileSummary* s = out->Add();
    s->set_name(key.first);
    s->set_generation(key.second);
    s->set_logical_len(f.logical_len);
    s->set_physical_len(f.physical_len);
    s->set_packets(f.packets);
    if (f.header) s->set_header(pcap::SerializeGlobalHeader(*f.header));
    if (f.first_time) {
      s->set_has_first_time(true);
      s->set_first_time_unix_nanos(absl::ToUnixNanos(*f.first_time));
    }
    if (f.last_time) {
      s->set_has_last_time(true);
      s->set_last_time_unix_nanos(absl::ToUnixNanos(*f.last_time));
    }
  }
}

absl::StatusOr<std::map<FileKey, FileSummary>> DecodeFiles(
    const google::protobuf::RepeatedPtrField<CatalogFileSummary>& in) {
  std::map<FileKey, FileSummary> files;
  for (const CatalogFileSummary& s : in) {
    std::string run, ring;
    if (!ParseStoredFileName(s.name(), &run, &ring) ||
        s.physical_len() > s.logical_len()) {
      return absl::InvalidArgumentError(
          absl::StrCat("catalog entry names an invalid file \"",
                       s.name().substr(0, 256), "\""));
    }
    FileSummary f;
    f.logical_len = s.logical_len();
    f.physical_len = s.physical_len();
    f.packets = s.packets();
    if (!s.header().empty()) {
      auto header = pcap::ParseGlobalHeader(s.header());
      if (!header.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat("catalog file \"", s.name(), "\" has no valid pcap ",
                         "header: ", header.status().message()));
      }
      f.header = *header;
    }
    if (s.has_first_time()) {
      f.first_time = absl::FromUnixNanos(s.first_time_unix_nanos());
    }
    if (s.has_last_time()) {
      f.last_time = absl::FromUnixNanos(s.last_time_unix_nanos());
    }
    files[{s.name(), s.generation()}] = f;
  }
  return files;
}

}  // namespace

std::string EncodeCatalogEntry(const CatalogEntry& entry) {
  CatalogEntryProto p;
  p.set_meta(EncodeCaptureMeta(entry.meta));
  EncodeFiles(entry.files, p.mutable_files());
  p.set_replica(entry.replica);
  p.set_epoch(entry.epoch);
  p.set_files_final(entry.files_final);
  p.set_counts_seq(entry.counts_seq);
  return p.SerializeAsString();
}

absl::StatusOr<CatalogEntry> DecodeCatalogEntry(absl::string_view data) {
  CatalogEntryProto p;
  if (!p.ParseFromArray(data.data(), static_cast<int>(data.size()))) {
    return absl::InvalidArgumentError("catalog entry does not parse");
  }
  CatalogEntry entry;
  auto meta = DecodeCaptureMeta(p.meta());
  if (!meta.ok()) return meta.status();
  entry.meta = std::move(*meta);
  auto files = DecodeFiles(p.files());
  if (!files.ok()) return files.status();
  entry.files = std::move(*files);
  entry.replica = p.replica();
  entry.epoch = p.epoch();
  // Only an entry off the node can be final.
  entry.files_final = p.files_final() && !entry.meta.status.on_node();
  entry.counts_seq = p.counts_seq();
  return entry;
}

std::string EncodeCountsBoard(const CountsBoard& board) {
  CountsBoardProto p;
  p.set_replica(board.replica);
  for (const auto& [id, b] : board.captures) {
    CountsBoardEntry* out = p.add_captures();
    out->set_capture_id(id);
    out->set_epoch(b.epoch);
    out->set_counts_seq(b.counts_seq);
    EncodeFiles(b.files, out->mutable_files());
    out->set_dropped_packets(b.dropped_packets);
    out->set_bytes_uploaded(b.bytes_uploaded);
    if (b.update_time) {
      out->set_has_update_time(true);
      out->set_update_time_unix_nanos(absl::ToUnixNanos(*b.update_time));
    }
  }
  return p.SerializeAsString();
}

absl::StatusOr<CountsBoard> DecodeCountsBoard(absl::string_view data) {
  CountsBoardProto p;
  if (!p.ParseFromArray(data.data(), static_cast<int>(data.size()))) {
    return absl::InvalidArgumentError("counts board does not parse");
  }
  CountsBoard board;
  board.replica = p.replica();
  for (const CountsBoardEntry& in : p.captures()) {
    if (!IsValidCaptureId(in.capture_id())) {
      return absl::InvalidArgumentError(
          absl::StrCat("counts board names an invalid capture \"",
                       in.capture_id().substr(0, 256), "\""));
    }
    auto files = DecodeFiles(in.files());
    if (!files.ok()) return files.status();
    BoardEntry& b = board.captures[in.capture_id()];
    b.epoch = in.epoch();
    b.counts_seq = in.counts_seq();
    b.files = std::move(*files);
    b.dropped_packets = in.dropped_packets();
    b.bytes_uploaded = in.bytes_uploaded();
    if (in.has_update_time()) {
      b.update_time = absl::FromUnixNanos(in.update_time_unix_nanos());
    }
  }
  return board;
}

const BoardEntry* NewerOnBoard(const CountsBoard& board, const std::string& id,
                               const CatalogEntry& entry) {
  if (entry.files_final || entry.replica != board.replica) return nullptr;
  auto it = board.captures.find(id);
  if (it == board.captures.end() || it->second.epoch != entry.epoch ||
      it->second.counts_seq <= entry.counts_seq) {
    return nullptr;
  }
  return &it->second;
}

bool OverlayBoard(const CountsBoard& board, const std::string& id,
                  CatalogEntry* entry) {
  const BoardEntry* newer = NewerOnBoard(board, id, *entry);
  if (newer == nullptr) return false;
  const BoardEntry& b = *newer;
  entry->files = b.files;
  entry->counts_seq = b.counts_seq;
  packetcapture::v1::Capture& status = entry->meta.status;
  status.set_dropped_packets(b.dropped_packets);
  status.set_bytes_uploaded(b.bytes_uploaded);
  if (b.update_time) *status.mutable_update_time() = ToProto(*b.update_time);
  return true;
}

BoardEntry BoardEntryOf(const CatalogEntry& entry) {
  BoardEntry b;
  b.epoch = entry.epoch;
  b.counts_seq = entry.counts_seq;
  b.files = entry.files;
  const packetcapture::v1::Capture& status = entry.meta.status;
  b.dropped_packets = status.dropped_packets();
  b.bytes_uploaded = status.bytes_uploaded();
  if (status.has_update_time()) b.update_time = FromProto(status.update_time());
  return b;
}

bool DownloadOrderLess(const FileKey& a, const FileSummary& sa,
                       const FileKey& b, const FileSummary& sb) {
  const absl::Time ta = sa.first_time.value_or(absl::InfiniteFuture());
  const absl::Time tb = sb.first_time.value_or(absl::InfiniteFuture());
  return std::tie(ta, a.first, a.second) < std::tie(tb, b.first, b.second);
}

Capture CatalogView(const CaptureMeta& meta,
                    const std::map<FileKey, FileSummary>& files,
                    absl::Duration retention) {
  Capture v = meta.status;
  v.clear_files();
  uint64_t bytes = 0, packets = 0, gaps = 0;
  std::vector<std::pair<FileKey, const FileSummary*>> shown;
  for (const auto& [key, f] : files) {
    gaps += f.logical_len - f.physical_len;
    if (f.physical_len > 0) shown.emplace_back(key, &f);
  }
  std::sort(shown.begin(), shown.end(), [](const auto& a, const auto& b) {
    return DownloadOrderLess(a.first, *a.second, b.first, *b.second);
  });
  for (const auto& [key, f] : shown) {
    auto* out = v.add_files();
    out->set_name(key.first);
    int index = 0;
    const std::string ring = key.first.substr(key.first.find('/') + 1);
    if (ring.size() > 4) absl::SimpleAtoi(ring.substr(4), &index);
    out->set_index(static_cast<uint32_t>(index));
    out->set_generation(key.second);
    out->set_size(f->physical_len);
    out->set_packets(f->packets);
    if (f->first_time) {
      *out->mutable_first_packet_time() = ToProto(*f->first_time);
    }
    if (f->last_time) *out->mutable_last_packet_time() = ToProto(*f->last_time);
    bytes += f->physical_len;
    packets += f->packets;
  }
  v.set_bytes(bytes);
  v.set_packets(packets);
  v.set_bytes_lost(meta.status.bytes_lost() + gaps);
  v.clear_expire_time();
  if (Stopped(meta.status) && meta.retention_start) {
    *v.mutable_expire_time() = ToProto(*meta.retention_start + retention);
  }
  return v;
}

ObjectCatalog::ObjectCatalog(s3::ObjectClient* client,
                             const ObjectLayout* layout, Listener listener)
    : client_(client), layout_(layout), listener_(std::move(listener)) {}

ObjectCatalog::~ObjectCatalog() { Stop(); }

void ObjectCatalog::Start(absl::Duration interval) {
  thread_ = std::thread([this, interval] { Run(interval); });
}

void ObjectCatalog::Stop() {
  if (!stop_.HasBeenNotified()) stop_.Notify();
  if (thread_.joinable()) thread_.join();
}

void ObjectCatalog::Run(absl::Duration interval) {
  absl::Status last = absl::OkStatus();
  while (!stop_.WaitForNotificationWithTimeout(interval)) {
    absl::Status round = Refresh();
    // One line per change of outcome, not one per failed round.
    if (round.ok() != last.ok()) {
      LogLine(round.ok() ? "catalog_poll_recovered" : "catalog_poll_error",
              {{"error", round.ToString()}});
    }
    last = round;
  }
}

absl::Status ObjectCatalog::Refresh() {
  uint64_t needed;
  {
    absl::MutexLock lock(&mu_);
    needed = rounds_started_ + 1;
  }
  absl::MutexLock round(&round_mu_);
  {
    absl::MutexLock lock(&mu_);
    // A round started after this call has ended meanwhile (its caller held
    // round_mu_): it saw all this one would.
    if (rounds_started_ >= needed) return last_round_;
    ++rounds_started_;
  }
  absl::Status result = Round();
  absl::MutexLock lock(&mu_);
  last_round_ = result;
  return result;
}

absl::Status ObjectCatalog::Round() {
  uint64_t start_seq;
  {
    absl::MutexLock lock(&mu_);
    start_seq = note_seq_;
  }
  // The listing: entries (id -> ETag) and boards (replica -> object).
  std::map<std::string, std::string> listed;
  std::map<std::string, s3::ObjectInfo> boards;
  std::string token;
  do {
    auto page = client_->List(layout_->CatalogPrefix(), "", token);
    if (!page.ok()) return page.status();
    for (const s3::ObjectInfo& o : page->objects) {
      std::string name;
      if (layout_->ParseCatalogKey(o.key, &name)) {
        listed[name] = o.etag;
      } else if (layout_->ParseCountsKey(o.key, &name)) {
        boards[name] = o;
      }
    }
    token = page->next_token;
  } while (!token.empty());

  // Boards first: an entry read below is overlaid with its board as listed.
  std::set<std::string> moved;
  absl::Status result = ReadBoards(boards, start_seq, &moved);
  std::set<std::string> gone;
  for (const auto& [id, etag] : listed) {
    {
      absl::MutexLock lock(&mu_);
      auto it = cache_.find(id);
      if (it != cache_.end() && it->second.record.etag == etag) continue;
    }
    auto record = Read(id);
    if (absl::IsNotFound(record.status())) {
      gone.insert(id);
    } else if (!record.ok()) {
      if (result.ok()) result = record.status();
    } else {
      moved.erase(id);
      if (listener_.changed) listener_.changed(id, *record);
    }
  }
  std::vector<std::string> vanished;
  std::vector<std::pair<std::string, CatalogRecord>> changed;
  {
    absl::MutexLock lock(&mu_);
    for (auto it = cache_.begin(); it != cache_.end();) {
      if ((!listed.count(it->first) || gone.count(it->first)) &&
          it->second.noted <= start_seq) {
        vanished.push_back(it->first);
        moved.erase(it->first);
        it = cache_.erase(it);
      } else {
        ++it;
      }
    }
    // Entries not read again whose counts a board moved.
    for (const std::string& id : moved) {
      auto it = cache_.find(id);
      if (it != cache_.end()) {
        changed.emplace_back(id, Overlaid(id, it->second.record));
      }
    }
    ++rounds_;
  }
  if (listener_.changed) {
    for (const auto& [id, record] : changed) listener_.changed(id, record);
  }
  if (listener_.vanished) {
    for (const std::string& id : vanished) listener_.vanished(id);
  }
  return result;
}

absl::Status ObjectCatalog::ReadBoards(
    const std::map<std::string, s3::ObjectInfo>& listed, uint64_t start_seq,
    std::set<std::string>* moved) {
  absl::Status result = absl::OkStatus();
  auto touch = [moved](const CountsBoard& board) {
    for (const auto& [id, b] : board.captures) moved->insert(id);
  };
  for (const auto& [replica, info] : listed) {
    {
      absl::MutexLock lock(&mu_);
      auto it = boards_.find(replica);
      if (it != boards_.end() && it->second.etag == info.etag) continue;
    }
    auto got = client_->Get(info.key);
    if (absl::IsNotFound(got.status())) continue;  // deleted since listed
    if (!got.ok()) {
      if (result.ok()) result = got.status();
      continue;
    }
    auto board = DecodeCountsBoard(got->body);
    if (board.ok() && board->replica != replica) {
      board = absl::InvalidArgumentError(absl::StrCat(
          "it names replica \"", board->replica.substr(0, 256), "\""));
    }
    if (!board.ok()) {
      // Kept empty: read once per version, and deleted as unused.
      LogLine("catalog_board_unreadable",
              {{"replica", replica}, {"error", board.status().ToString()}});
      board = CountsBoard{replica, {}};
    }
    touch(*board);
    absl::MutexLock lock(&mu_);
    Board& b = boards_[replica];
    touch(b.board);
    b = Board{got->etag, std::move(*board), 0};
  }
  absl::MutexLock lock(&mu_);
  for (auto it = boards_.begin(); it != boards_.end();) {
    if (!listed.count(it->first) && it->second.noted <= start_seq) {
      touch(it->second.board);
      it = boards_.erase(it);
    } else {
      ++it;
    }
  }
  return result;
}

CatalogRecord ObjectCatalog::Overlaid(const std::string& id,
                                      const CatalogRecord& record) const {
  CatalogRecord out = record;
  auto it = boards_.find(record.entry.replica);
  if (it != boards_.end()) OverlayBoard(it->second.board, id, &out.entry);
  return out;
}

absl::StatusOr<CatalogRecord> ObjectCatalog::Read(const std::string& id) {
  auto got = client_->Get(layout_->CatalogKey(id));
  if (!got.ok()) return got.status();
  auto entry = DecodeCatalogEntry(got->body);
  if (!entry.ok()) {
    LogLine("catalog_entry_unreadable",
            {{"capture", id}, {"error", entry.status().ToString()}});
    return absl::DataLossError(
        absl::StrCat("catalog entry of ", id, ": ", entry.status().message()));
  }
  CatalogRecord record{got->etag, std::move(*entry)};
  absl::MutexLock lock(&mu_);
  Cached& c = cache_[id];
  c.record = record;
  c.noted = 0;
  return Overlaid(id, record);
}

void ObjectCatalog::Note(const std::string& id, const CatalogRecord& record) {
  absl::MutexLock lock(&mu_);
  Cached& c = cache_[id];
  c.record = record;
  c.noted = ++note_seq_;
}

void ObjectCatalog::Forget(const std::string& id) {
  absl::MutexLock lock(&mu_);
  cache_.erase(id);
}

void ObjectCatalog::NoteBoard(const std::string& etag,
                              const CountsBoard& board) {
  absl::MutexLock lock(&mu_);
  Board& b = boards_[board.replica];
  b.etag = etag;
  b.board = board;
  b.noted = ++note_seq_;
}

bool ObjectCatalog::HasBoard(const std::string& replica) const {
  absl::MutexLock lock(&mu_);
  return boards_.count(replica) > 0;
}

std::map<std::string, std::string> ObjectCatalog::UnusedBoards() const {
  absl::MutexLock lock(&mu_);
  std::map<std::string, std::string> out;
  for (const auto& [replica, b] : boards_) out[replica] = b.etag;
  for (const auto& [id, c] : cache_) {
    auto it = boards_.find(c.record.entry.replica);
    if (it != boards_.end() &&
        NewerOnBoard(it->second.board, id, c.record.entry) != nullptr) {
      out.erase(it->first);
    }
  }
  return out;
}

bool ObjectCatalog::TakesFromBoard(const CountsBoard& board,
                                   const std::string& id) const {
  absl::MutexLock lock(&mu_);
  auto it = cache_.find(id);
  return it != cache_.end() &&
         NewerOnBoard(board, id, it->second.record.entry) != nullptr;
}

std::optional<CatalogRecord> ObjectCatalog::Get(const std::string& id) const {
  absl::MutexLock lock(&mu_);
  auto it = cache_.find(id);
  if (it == cache_.end()) return std::nullopt;
  return Overlaid(id, it->second.record);
}

std::optional<CatalogRecord> ObjectCatalog::GetAsWritten(
    const std::string& id) const {
  absl::MutexLock lock(&mu_);
  auto it = cache_.find(id);
  if (it == cache_.end()) return std::nullopt;
  return it->second.record;
}

std::map<std::string, CatalogRecord> ObjectCatalog::Snapshot() const {
  absl::MutexLock lock(&mu_);
  std::map<std::string, CatalogRecord> out;
  for (const auto& [id, c] : cache_) out[id] = Overlaid(id, c.record);
  return out;
}

std::map<std::string, CatalogRecord> ObjectCatalog::OfNode(
    const std::string& node) const {
  absl::MutexLock lock(&mu_);
  std::map<std::string, CatalogRecord> out;
  for (const auto& [id, c] : cache_) {
    if (c.record.entry.meta.status.node() == node) {
      out[id] = Overlaid(id, c.record);
    }
  }
  return out;
}

uint64_t ObjectCatalog::rounds() const {
  absl::MutexLock lock(&mu_);
  return rounds_;
}

}  // namespace pc::aggregator
