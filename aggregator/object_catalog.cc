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
#include "common/log.h"
#include "common/time_proto.h"

namespace pc::aggregator {

using packetcapture::v1::Capture;

std::string EncodeCatalogEntry(const CatalogEntry& entry) {
  CatalogEntryProto p;
  p.set_meta(EncodeCaptureMeta(entry.meta));
  for (const auto& [key, f] : entry.files) {
    CatalogFileSummary* out = p.add_files();
    out->set_name(key.first);
    out->set_generation(key.second);
    out->set_logical_len(f.logical_len);
    out->set_physical_len(f.physical_len);
    out->set_packets(f.packets);
    if (f.header) out->set_header(pcap::SerializeGlobalHeader(*f.header));
    if (f.first_time) {
      out->set_has_first_time(true);
      out->set_first_time_unix_nanos(absl::ToUnixNanos(*f.first_time));
    }
    if (f.last_time) {
      out->set_has_last_time(true);
      out->set_last_time_unix_nanos(absl::ToUnixNanos(*f.last_time));
    }
  }
  p.set_replica(entry.replica);
  p.set_epoch(entry.epoch);
  p.set_files_final(entry.files_final);
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
  for (const CatalogFileSummary& in : p.files()) {
    std::string run, ring;
    if (!ParseStoredFileName(in.name(), &run, &ring) ||
        in.physical_len() > in.logical_len()) {
      return absl::InvalidArgumentError(
          absl::StrCat("catalog entry names an invalid file \"",
                       in.name().substr(0, 256), "\""));
    }
    FileSummary f;
    f.logical_len = in.logical_len();
    f.physical_len = in.physical_len();
    f.packets = in.packets();
    if (!in.header().empty()) {
      auto header = pcap::ParseGlobalHeader(in.header());
      if (!header.ok()) return header.status();
      f.header = *header;
    }
    if (in.has_first_time()) {
      f.first_time = absl::FromUnixNanos(in.first_time_unix_nanos());
    }
    if (in.has_last_time()) {
      f.last_time = absl::FromUnixNanos(in.last_time_unix_nanos());
    }
    entry.files[{in.name(), in.generation()}] = f;
  }
  entry.replica = p.replica();
  entry.epoch = p.epoch();
  // Only an entry off the node can be final.
  entry.files_final = p.files_final() && !entry.meta.status.on_node();
  return entry;
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
  // The listing: id -> ETag.
  std::map<std::string, std::string> listed;
  std::string token;
  do {
    auto page = client_->List(layout_->CatalogPrefix(), "", token);
    if (!page.ok()) return page.status();
    for (const s3::ObjectInfo& o : page->objects) {
      std::string id;
      if (layout_->ParseCatalogKey(o.key, &id)) listed[id] = o.etag;
    }
    token = page->next_token;
  } while (!token.empty());

  absl::Status result = absl::OkStatus();
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
    } else if (listener_.changed) {
      listener_.changed(id, *record);
    }
  }
  std::vector<std::string> vanished;
  {
    absl::MutexLock lock(&mu_);
    for (auto it = cache_.begin(); it != cache_.end();) {
      if ((!listed.count(it->first) || gone.count(it->first)) &&
          it->second.noted <= start_seq) {
        vanished.push_back(it->first);
        it = cache_.erase(it);
      } else {
        ++it;
      }
    }
    ++rounds_;
  }
  if (listener_.vanished) {
    for (const std::string& id : vanished) listener_.vanished(id);
  }
  return result;
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
  return record;
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

std::optional<CatalogRecord> ObjectCatalog::Get(const std::string& id) const {
  absl::MutexLock lock(&mu_);
  auto it = cache_.find(id);
  if (it == cache_.end()) return std::nullopt;
  return it->second.record;
}

std::map<std::string, CatalogRecord> ObjectCatalog::Snapshot() const {
  absl::MutexLock lock(&mu_);
  std::map<std::string, CatalogRecord> out;
  for (const auto& [id, c] : cache_) out[id] = c.record;
  return out;
}

std::map<std::string, CatalogRecord> ObjectCatalog::OfNode(
    const std::string& node) const {
  absl::MutexLock lock(&mu_);
  std::map<std::string, CatalogRecord> out;
  for (const auto& [id, c] : cache_) {
    if (c.record.entry.meta.status.node() == node) out[id] = c.record;
  }
  return out;
}

uint64_t ObjectCatalog::rounds() const {
  absl::MutexLock lock(&mu_);
  return rounds_;
}

}  // namespace pc::aggregator
