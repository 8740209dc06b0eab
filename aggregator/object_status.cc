// ObjectStore's statuses: what agents report (PutStatus, MarkGone) and how
// it reaches the catalog.
#include "absl/strings/str_cat.h"
#include "aggregator/object_store.h"
#include "aggregator/store_rules.h"
#include "common/capture_layout.h"
#include "common/log.h"
#include "common/time_proto.h"

namespace pc::aggregator {

using packetcapture::v1::Capture;

absl::Status ObjectStore::PutStatus(const std::string& node,
                                    const Capture& status) {
  const std::string& id = status.id();
  if (absl::Status checked = CheckReportedStatus(node, status); !checked.ok()) {
    return checked;
  }
  std::shared_ptr<HeldCapture> c;
  int64_t epoch;
  absl::Status held = Held(node, id, &c, &epoch);
  if (!held.ok()) return held;
  if (c == nullptr) {
    // New to this node: it must not be another node's.
    std::optional<Capture> listed = registry_->Get(id);
    if (listed && listed->node() != node) {
      return absl::PermissionDeniedError(
          absl::StrCat("capture ", id, " belongs to node ", listed->node()));
    }
    auto created = std::make_shared<HeldCapture>();
    created->id = id;
    absl::MutexLock lock(&mu_);
    auto it = nodes_.find(node);
    if (it == nodes_.end() || it->second.lost) {
      return absl::AbortedError(
          absl::StrCat("replica ", options_.replica_id, " lost node ", node));
    }
    c = it->second.captures.emplace(id, created).first->second;
    held_ids_[id] = node;
  }
  absl::MutexLock lock(&c->mu);
  if (c->deleted) {
    return absl::FailedPreconditionError(
        absl::StrCat("capture ", id, " is being deleted"));
  }
  CaptureMeta& meta = c->entry.meta;
  Capture s = status;
  s.clear_expire_time();
  s.clear_files();  // the listing shows the stored files, not the node's
  const absl::Time now = Now();
  if (Stopped(s)) {
    // Shown as the agent says; retention counts from our own clock.
    if (!s.has_stop_time()) *s.mutable_stop_time() = ToProto(now);
    if (!meta.retention_start) meta.retention_start = now;
  } else {
    meta.retention_start.reset();
  }
  if (!s.has_update_time()) *s.mutable_update_time() = ToProto(now);
  const CaptureMeta before = meta;
  meta.status = std::move(s);
  if (!c->etag.empty() && Significant(meta) == c->written) {
    // Counts only: the flusher writes them (to the board).
    c->dirty = true;
    ++c->entry.counts_seq;
    Publish(*c);
    QueueSealed(c.get(), nullptr);
    return absl::OkStatus();
  }
  const absl::Status written = WriteCatalog(node, epoch, c.get());
  if (!written.ok()) {
    if (c->etag.empty()) {
      // Never written: not kept (no other replica would know it).
      c->deleted = true;
      absl::MutexLock index(&mu_);
      auto it = nodes_.find(node);
      if (it != nodes_.end()) it->second.captures.erase(id);
      held_ids_.erase(id);
    } else {
      meta = before;
    }
    return written;
  }
  Publish(*c);
  QueueSealed(c.get(), nullptr);  // all of them once stopped
  return absl::OkStatus();
}

void ObjectStore::MarkGone(const std::string& node,
                           const std::set<std::string>& present,
                           const std::string& reason) {
  std::vector<std::shared_ptr<HeldCapture>> captures;
  int64_t epoch = 0;
  bool held = false;
  {
    absl::MutexLock lock(&mu_);
    auto it = nodes_.find(node);
    held = it != nodes_.end() && it->second.refs > 0 && !it->second.lost;
    if (held) {
      epoch = it->second.epoch;
      for (const auto& [id, c] : it->second.captures) {
        if (!present.count(id)) captures.push_back(c);
      }
    }
  }
  if (!held) {
    MarkGoneInCatalog(node, present, reason);
    return;
  }
  const absl::Time now = Now();
  for (const auto& c : captures) {
    absl::MutexLock lock(&c->mu);
    if (c->deleted || !MarkOffNode(reason, now, &c->entry.meta)) continue;
    LogLine("capture_gone_from_node", {{"capture", c->id}, {"node", node}});
    const absl::Status written = WriteCatalog(node, epoch, c.get());
    if (!written.ok()) {
      LogLine("store_meta_error",
              {{"capture", c->id}, {"error", written.ToString()}});
    }
    Publish(*c);
    QueueSealed(c.get(), nullptr);  // stopped: all of its files
  }
}

// A node no replica streams from (its agent is gone): its entries are
// changed where they are, each with If-Match on the ETag last listed, so a
// holder writing meanwhile wins and the next round tries again.
void ObjectStore::MarkGoneInCatalog(const std::string& node,
                                    const std::set<std::string>& present,
                                    const std::string& reason) {
  const absl::Time now = Now();
  for (auto& [id, record] : catalog_->OfNode(node)) {
    if (present.count(id) || !MarkOffNode(reason, now, &record.entry.meta)) {
      continue;
    }
    // Its counts are the last holder's last write, which may lag its
    // objects: the next holder reads them back (LoadNode).
    record.entry.files_final = false;
    s3::PutOptions put;
    put.if_match = record.etag;
    auto etag = options_.client->Put(layout_.CatalogKey(id),
                                     EncodeCatalogEntry(record.entry), put);
    if (!etag.ok()) {
      LogLine("store_meta_error",
              {{"capture", id}, {"error", etag.status().ToString()}});
      continue;
    }
    LogLine("capture_gone_from_node", {{"capture", id}, {"node", node}});
    record.etag = *etag;
    catalog_->Note(id, record);
    OnCatalogChanged(id, record);
  }
}

}  // namespace pc::aggregator
