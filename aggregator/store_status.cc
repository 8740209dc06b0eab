// Store's statuses: what agents report (PutStatus, MarkGone), how it is
// kept (capture.pb, written outside the index lock) and shown (View).
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "aggregator/store.h"
#include "aggregator/store_internal.h"
#include "aggregator/store_rules.h"
#include "common/capture_layout.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "common/time_proto.h"

namespace pc::aggregator {

using packetcapture::v1::Capture;

absl::optional<Store::MetaWrite> Store::NoteChange(const std::string& id,
                                                   StoredCapture* c) {
  std::string significant = Significant(c->meta);
  if (significant != c->noted) {
    ++c->version;
    c->noted = std::move(significant);
  } else if (c->saved_version == c->version) {
    return absl::nullopt;
  }
  return MetaWrite{id, c->dir, c->meta, c->noted, c->version};
}

absl::Status Store::Save(const MetaWrite& write) {
  RETURN_IF_ERROR(write.dir->WriteMeta(write.meta, write.version));
  absl::MutexLock lock(&mu_);
  auto it = captures_.find(write.id);
  if (it != captures_.end() && it->second->dir == write.dir) {
    it->second->saved_version =
        std::max(it->second->saved_version, write.version);
  }
  return absl::OkStatus();
}

Capture Store::View(const StoredCapture& c) const {
  Capture v = c.meta.status;
  v.clear_files();
  uint64_t bytes = 0, packets = 0, gaps = 0;
  for (const auto& [key, f] : c.files) {
    gaps += f->summary.logical_len - f->summary.physical_len;
  }
  if (c.order_version != file_set_version_) {
    std::vector<std::shared_ptr<FileEntry>> files;
    for (const auto& [key, f] : c.files) {
      if (f->summary.physical_len > 0) files.push_back(f);
    }
    std::sort(files.begin(), files.end(), DownloadOrder);
    c.order.clear();
    for (const auto& f : files) c.order.push_back(f.get());
    c.order_version = file_set_version_;
  }
  for (const FileEntry* f : c.order) {
    auto* out = v.add_files();
    out->set_name(f->io->name());
    out->set_index(static_cast<uint32_t>(f->io->ring_index()));
    out->set_generation(f->io->generation());
    out->set_size(f->summary.physical_len);
    out->set_packets(f->summary.packets);
    if (f->summary.first_time) {
      *out->mutable_first_packet_time() = ToProto(*f->summary.first_time);
    }
    if (f->summary.last_time) {
      *out->mutable_last_packet_time() = ToProto(*f->summary.last_time);
    }
    bytes += f->summary.physical_len;
    packets += f->summary.packets;
  }
  v.set_bytes(bytes);
  v.set_packets(packets);
  v.set_bytes_lost(c.meta.status.bytes_lost() + gaps);
  v.clear_expire_time();
  if (Stopped(c.meta.status) && c.meta.retention_start) {
    *v.mutable_expire_time() =
        ToProto(*c.meta.retention_start + options_.retention);
  }
  return v;
}

void Store::Publish(StoredCapture& capture) {
  registry_->Put(View(capture));
  capture.listed_at = absl::Now();
  capture.listing_stale = false;  // ListLoop skips it
}

void Store::PublishSoon(const std::string& id, StoredCapture& capture) {
  if (absl::Now() - capture.listed_at >= options_.listing_interval) {
    Publish(capture);
  } else if (!capture.listing_stale) {
    capture.listing_stale = true;
    stale_listings_.insert(id);
  }
}

void Store::ListLoop() {
  absl::MutexLock lock(&mu_);
  while (true) {
    mu_.Await(absl::Condition(this, &Store::ListerHasWork));
    // Each stale listing was published less than listing_interval ago.
    mu_.AwaitWithTimeout(absl::Condition(&stopping_),
                         options_.listing_interval);
    if (stopping_) return;
    std::set<std::string> due;
    due.swap(stale_listings_);
    for (const std::string& id : due) {
      auto it = captures_.find(id);
      if (it != captures_.end() && it->second->listing_stale) {
        Publish(*it->second);
      }
    }
  }
}

absl::Status Store::PutStatus(const std::string& node, const Capture& status) {
  const std::string& id = status.id();
  if (absl::Status checked = CheckReportedStatus(node, status); !checked.ok()) {
    return checked;
  }
  auto other_node = [&](const StoredCapture& c) {
    return absl::PermissionDeniedError(absl::StrCat(
        "capture ", id, " belongs to node ", c.meta.status.node()));
  };
  const absl::Status being_deleted = absl::FailedPreconditionError(
      absl::StrCat("capture ", id, " is being deleted"));
  bool known;
  {
    absl::MutexLock lock(&mu_);
    if (removing_.count(id)) return being_deleted;
    auto it = captures_.find(id);
    known = it != captures_.end();
    if (known && it->second->meta.status.node() != node) {
      return other_node(*it->second);
    }
  }
  if (!known) {
    RETURN_IF_ERROR(CaptureDir::Create(CaptureDirPath(id), id, options_.fsync));
  }
  absl::optional<MetaWrite> write;
  {
    absl::MutexLock lock(&mu_);
    if (removing_.count(id)) return being_deleted;
    auto it = captures_.find(id);
    if (it == captures_.end()) {
      auto c = std::make_unique<StoredCapture>();
      c->dir =
          std::make_shared<CaptureDir>(CaptureDirPath(id), id, options_.fsync);
      it = captures_.emplace(id, std::move(c)).first;
    } else if (it->second->meta.status.node() != node) {
      return other_node(*it->second);
    }
    StoredCapture& c = *it->second;
    Capture s = status;
    s.clear_expire_time();
    s.clear_files();  // the listing shows the stored files, not the node's
    const absl::Time now = Now();
    if (Stopped(s)) {
      // Shown as the agent says; retention counts from our own clock.
      if (!s.has_stop_time()) *s.mutable_stop_time() = ToProto(now);
      if (!c.meta.retention_start) c.meta.retention_start = now;
    } else {
      c.meta.retention_start.reset();
    }
    if (!s.has_update_time()) *s.mutable_update_time() = ToProto(now);
    c.meta.status = std::move(s);
    write = NoteChange(id, &c);
    if (!write) {
      Publish(c);
      return absl::OkStatus();
    }
  }
  const absl::Status saved = Save(*write);
  absl::MutexLock lock(&mu_);
  auto it = captures_.find(id);
  if (it == captures_.end() || it->second->dir != write->dir) {
    return saved.ok() ? absl::FailedPreconditionError(absl::StrCat(
                            "capture ", id, " was deleted meanwhile"))
                      : saved;
  }
  StoredCapture& c = *it->second;
  if (!saved.ok()) {
    // A capture never saved is not kept: at a restart it would not be found.
    if (c.saved_version == 0 && c.files.empty()) captures_.erase(it);
    return saved;
  }
  Publish(c);
  return absl::OkStatus();
}

absl::Status Store::AcquireNode(const std::string& node,
                                const NodeReport& report) {
  if (report.present) MarkGone(node, *report.present, report.gone_reason);
  return absl::OkStatus();
}

void Store::MarkGone(const std::string& node,
                     const std::set<std::string>& present,
                     const std::string& reason) {
  std::vector<MetaWrite> writes;
  {
    absl::MutexLock lock(&mu_);
    const absl::Time now = Now();
    for (auto& [id, c] : captures_) {
      if (c->meta.status.node() != node || present.count(id) ||
          !MarkOffNode(reason, now, &c->meta)) {
        continue;
      }
      if (auto write = NoteChange(id, c.get())) writes.push_back(*write);
      LogLine("capture_gone_from_node", {{"capture", id}, {"node", node}});
      Publish(*c);
    }
  }
  for (const MetaWrite& write : writes) {
    const absl::Status saved = Save(write);
    if (!saved.ok()) {
      LogLine("store_meta_error",
              {{"capture", write.id}, {"error", saved.ToString()}});
    }
  }
}

std::set<std::string> Store::NodesWithCaptures() const {
  std::set<std::string> nodes;
  absl::MutexLock lock(&mu_);
  for (const auto& [id, c] : captures_) {
    if (c->meta.status.on_node()) nodes.insert(c->meta.status.node());
  }
  return nodes;
}

}  // namespace pc::aggregator
