// ObjectStore's downloads: the capture's data objects read in capture order
// (as Store's reader: the first file's global header, then the records of
// each file), overlapping objects read once (a compacted object and those
// it replaces, until they are deleted), gaps skipped; an object gone since
// the listing (compacted, dropped) makes it list again; with follow, the
// objects are listed again about every second while the capture runs.
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "aggregator/object_files.h"
#include "aggregator/object_store.h"
#include "common/capture_layout.h"
#include "common/pcap/pcap_format.h"
#include "common/status_macros.h"

namespace pc::aggregator {
namespace {
constexpr absl::Duration kFollowListInterval = absl::Seconds(1);
// Listings per Read made stale by an object gone before its first GET.
constexpr int kStaleRelists = 3;
}  // namespace

// Holds at most one range of one object (kObjectReadBytes). Thread-compatible.
class ObjectStore::Reader : public PcapSource {
 public:
  Reader(ObjectStore* store, std::string id, bool follow)
      : store_(store), id_(std::move(id)), follow_(follow) {}

  absl::StatusOr<size_t> Read(std::string* out, size_t max_bytes) override {
    bool relisted = false;
    int stale_relists = 0;
    auto relist = [&](bool forced) -> absl::StatusOr<bool> {
      if (relisted) return false;
      if (!forced && listed_ &&
          (!follow_ || absl::Now() - listed_at_ < kFollowListInterval)) {
        return false;
      }
      relisted = true;
      RETURN_IF_ERROR(Relist());
      return true;
    };
    if (!listed_) {
      auto r = relist(true);
      if (!r.ok()) return r.status();
    }
    for (int attempts = 0; attempts < 1000; ++attempts) {
      if (current_) {
        auto it = files_.find(*current_);
        bool dropped = it == files_.end();
        bool gone = false;  // an object of it was not found
        if (!dropped) {
          for (const DataObject& o : it->second.objects) {
            if (o.offset + o.size <= pos_) continue;
            if (o.offset > pos_) pos_ = o.offset;  // bytes never sent
            const uint64_t n = std::min<uint64_t>(
                {static_cast<uint64_t>(max_bytes), kObjectReadBytes,
                 o.offset + o.size - pos_});
            auto got = store_->options_.client->Get(o.key, pos_ - o.offset, n);
            if (absl::IsNotFound(got.status())) {
              gone = true;
              break;
            }
            if (!got.ok()) return got.status();
            if (got->body.empty()) {
              return absl::DataLossError(absl::StrCat(o.key, " shrank"));
            }
            pos_ += got->body.size();
            out->append(got->body);
            return got->body.size();
          }
        }
        if (gone) {
          // Compacted (its bytes are in another object now), or the ring or
          // retention removed the file: a listing made after this GET
          // tells, even if this call listed already.
          if (stale_relists++ >= kStaleRelists) {
            return absl::UnavailableError(absl::StrCat(
                "objects of ", current_->first, " keep vanishing"));
          }
          relisted = true;
          RETURN_IF_ERROR(Relist());
          if (files_.count(*current_)) continue;  // read on from pos_
          dropped = true;
        } else if (dropped) {
          auto r = relist(true);
          if (!r.ok()) return r.status();
          if (*r && files_.count(*current_)) continue;
        }
        if (dropped) {
          consumed_.insert(*current_);
          current_.reset();
          continue;
        }
        // Finished with this file once another unread one exists.
        std::vector<FileKey> unread = Unread();
        if (vanished_ && stale_relists++ < kStaleRelists) {
          RETURN_IF_ERROR(Relist());
          continue;
        }
        if (unread.empty()) {
          auto r = relist(false);
          if (!r.ok()) return r.status();
          if (*r) continue;
          return 0;
        }
        consumed_.insert(*current_);
        current_.reset();
        continue;
      }
      std::vector<FileKey> unread = Unread();
      // A file whose header was not readable now would be read out of order
      // (or not at all): list again first.
      if (vanished_ && stale_relists++ < kStaleRelists) {
        RETURN_IF_ERROR(Relist());
        continue;
      }
      if (unread.empty()) {
        auto r = relist(false);
        if (!r.ok()) return r.status();
        if (*r) continue;
        return 0;
      }
      const FileKey& next = unread.front();
      const pcap::GlobalHeader header = *files_[next].header;
      if (!stream_header_) {
        stream_header_ = header;
        pos_ = 0;
      } else {
        if (!pcap::SameStreamFormat(*stream_header_, header)) {
          return absl::FailedPreconditionError(absl::StrCat(
              "stored file ", next.first, " has a different pcap format"));
        }
        pos_ = pcap::kGlobalHeaderSize;
      }
      current_ = next;
    }
    return 0;
  }

  bool Done() override {
    if (!follow_) return true;
    std::optional<Capture> c = store_->registry_->Get(id_);
    if (c && c->on_node() &&
        (c->state() == Capture::RUNNING || c->state() == Capture::PENDING)) {
      stopped_listing_ = false;
      return false;
    }
    // Stopped: drained once a listing made after the stop is read.
    if (!stopped_listing_) {
      if (!Relist().ok()) return false;
      stopped_listing_ = true;
    }
    if (!Unread().empty()) return false;
    if (!current_) return true;
    auto it = files_.find(*current_);
    if (it == files_.end()) return true;
    for (const DataObject& o : it->second.objects) {
      if (o.offset + o.size > pos_) return false;
    }
    return true;
  }

 private:
  struct File {
    std::vector<DataObject> objects;
    absl::optional<pcap::GlobalHeader> header;
    absl::optional<absl::Time> first_time;
    bool probed = false;  // since this listing
  };

  absl::Status Relist() {
    auto listed =
        ListFileObjects(store_->options_.client, store_->layout_, id_);
    if (!listed.ok()) return listed.status();
    std::optional<CatalogRecord> record = store_->catalog_->Get(id_);
    std::map<FileKey, File> files;
    for (auto& [key, objects] : *listed) {
      File& f = files[key];
      f.objects = std::move(objects);
      auto old = files_.find(key);
      if (old != files_.end()) {
        f.header = old->second.header;
        f.first_time = old->second.first_time;
      }
      if (record) {
        auto known = record->entry.files.find(key);
        if (known != record->entry.files.end()) {
          if (!f.header) f.header = known->second.header;
          if (!f.first_time) f.first_time = known->second.first_time;
        }
      }
    }
    files_ = std::move(files);
    vanished_ = false;
    listed_ = true;
    listed_at_ = absl::Now();
    return absl::OkStatus();
  }

  // Reads a file's global header and first record's time from its objects
  // (what the catalog does not know yet).
  absl::Status Probe(File* f) {
    if (f->probed || (f->header && f->first_time)) return absl::OkStatus();
    f->probed = true;
    std::string head;  // the file's first bytes, up to the first record's
    for (const DataObject& o : f->objects) {
      const uint64_t want = pcap::kGlobalHeaderSize + pcap::kRecordHeaderSize;
      if (o.offset != head.size() || head.size() >= want) break;
      auto got = store_->options_.client->Get(
          o.key, 0, std::min<uint64_t>(o.size, want - head.size()));
      if (absl::IsNotFound(got.status())) {
        vanished_ = true;  // compacted or dropped since the listing
        break;
      }
      if (!got.ok()) return got.status();
      head += got->body;
    }
    if (!f->header) {
      auto header = pcap::ParseGlobalHeader(head);
      if (!header.ok()) return absl::OkStatus();  // not readable (yet)
      f->header = *header;
    }
    if (head.size() >= pcap::kGlobalHeaderSize + pcap::kRecordHeaderSize) {
      auto record = pcap::DecodeRecordHeader(
          *f->header, absl::string_view(head).substr(pcap::kGlobalHeaderSize));
      if (record.ok()) f->first_time = record->Timestamp(f->header->precision);
    }
    return absl::OkStatus();
  }

  // Files neither open nor read, with a header, in capture order.
  std::vector<FileKey> Unread() {
    std::vector<FileKey> out;
    for (auto& [key, f] : files_) {
      if (consumed_.count(key) || (current_ && *current_ == key)) continue;
      if (!Probe(&f).ok() || !f.header) continue;
      out.push_back(key);
    }
    std::sort(out.begin(), out.end(),
              [this](const FileKey& a, const FileKey& b) {
                FileSummary sa, sb;
                sa.first_time = files_[a].first_time;
                sb.first_time = files_[b].first_time;
                return DownloadOrderLess(a, sa, b, sb);
              });
    return out;
  }

  ObjectStore* const store_;
  const std::string id_;
  const bool follow_;
  std::map<FileKey, File> files_;  // as last listed
  bool listed_ = false;
  // An object of this listing was gone when probed: the listing is stale.
  bool vanished_ = false;
  absl::Time listed_at_;
  bool stopped_listing_ = false;  // listed since the capture was seen stopped
  std::set<FileKey> consumed_;
  std::optional<FileKey> current_;
  uint64_t pos_ = 0;  // next file offset of current_ to send
  absl::optional<pcap::GlobalHeader> stream_header_;
};

absl::StatusOr<std::unique_ptr<PcapSource>> ObjectStore::OpenReader(
    const std::string& id, bool follow) {
  const absl::Status unknown = absl::NotFoundError(
      absl::StrCat("no capture with id \"", id.substr(0, 256), "\""));
  if (!IsValidCaptureId(id)) return unknown;
  if (!registry_->Get(id)) {
    // Made through another replica since the last catalog round?
    auto record = catalog_->Read(id);
    if (absl::IsNotFound(record.status())) return unknown;
    if (!record.ok()) return record.status();
  }
  return std::unique_ptr<PcapSource>(new Reader(this, id, follow));
}

}  // namespace pc::aggregator
