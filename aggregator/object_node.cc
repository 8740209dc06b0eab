// ObjectStore's view of a node it takes: the node's captures from a fresh
// listing of the catalog, the stored end of each file from its data
// objects, and each entry stamped with the new holder's epoch (so a
// deposed holder's next catalog write fails), marking those the agent no
// longer has gone in the same write. Captures a holder already wrote as off
// the node (files_final) are taken as they are.
#include "absl/strings/str_cat.h"
#include "aggregator/object_files.h"
#include "aggregator/object_store.h"
#include "aggregator/store_rules.h"
#include "common/log.h"
#include "common/status_macros.h"

namespace pc::aggregator {
namespace {

bool SameFiles(const std::map<FileKey, FileSummary>& a,
               const std::map<FileKey, FileSummary>& b) {
  if (a.size() != b.size()) return false;
  for (auto i = a.begin(), j = b.begin(); i != a.end(); ++i, ++j) {
    if (i->first != j->first ||
        i->second.logical_len != j->second.logical_len ||
        i->second.physical_len != j->second.physical_len ||
        i->second.packets != j->second.packets) {
      return false;
    }
  }
  return true;
}

}  // namespace

absl::StatusOr<std::map<FileKey, FileSummary>> ObjectStore::LoadFiles(
    const std::string& id, const std::map<FileKey, FileSummary>& known,
    std::map<FileKey, uint32_t>* counts) {
  // An object listed but gone when read was compacted (its bytes are in
  // another object now; the previous holder may still be compacting) or
  // dropped: a fresh listing tells which.
  absl::Status error;
  for (int attempt = 0; attempt < 3; ++attempt) {
    auto objects = ListFileObjects(options_.client, layout_, id);
    if (!objects.ok()) return objects.status();
    std::map<FileKey, FileSummary> files;
    counts->clear();
    // A file the catalog knows but without objects was dropped (ring,
    // retention) after the entry was written: it is gone.
    for (const auto& [key, list] : *objects) {
      auto it = known.find(key);
      FileSummary s = it == known.end() ? FileSummary() : it->second;
      // What was acknowledged after the entry was written is read back
      // from the objects: up to catalog_write_interval's growth of a file,
      // or a second's worth once new files appear (each is written within
      // a second).
      error = ScanObjects(options_.client, list, &s);
      if (!error.ok()) break;
      if (s.physical_len > 0) {
        files[key] = s;
        (*counts)[key] = list.size();
      }
    }
    if (error.ok()) return files;
    if (!absl::IsNotFound(error)) return error;
  }
  return error;
}

absl::StatusOr<std::map<std::string, std::shared_ptr<ObjectStore::HeldCapture>>>
ObjectStore::LoadNode(const std::string& node, int64_t epoch,
                      const NodeReport& report) {
  // Not only the poll's cache: the previous holder may have written since.
  RETURN_IF_ERROR(catalog_->Refresh());
  const absl::Time now = Now();
  std::map<std::string, std::shared_ptr<HeldCapture>> out;
  for (const auto& [id, record] : catalog_->OfNode(node)) {
    if (record.entry.epoch > epoch) {
      return absl::AbortedError(absl::StrCat(
          "capture ", id, " of node ", node, " was written by replica ",
          record.entry.replica, " at epoch ", record.entry.epoch,
          ", after this replica's epoch ", epoch));
    }
    auto c = std::make_shared<HeldCapture>();
    c->id = id;
    absl::MutexLock lock(&c->mu);
    c->entry = record.entry;
    c->etag = record.etag;
    c->written = Significant(record.entry.meta);
    // A capture drained and off the node (files_final) is taken as written,
    // so a takeover costs the captures that may still grow, not every
    // capture the node ever had. Its entry keeps the earlier epoch; a
    // deposed holder has nothing left to add to it. (Its small objects, if
    // that holder was compacting them, stay as they are; retention deletes
    // them.)
    if (!record.entry.files_final) {
      std::map<FileKey, uint32_t> counts;
      auto files = LoadFiles(id, record.entry.files, &counts);
      if (!files.ok()) return files.status();
      c->objects = std::move(counts);
      bool changed = !SameFiles(c->entry.files, *files);
      if (changed) ++c->entry.counts_seq;
      c->entry.files = std::move(*files);
      // Gone from the agent's report: marked in the stamp's write, so a
      // reconnect costs one PUT per such capture, not two.
      if (report.present && !report.present->count(id) &&
          MarkOffNode(report.gone_reason, now, &c->entry.meta)) {
        LogLine("capture_gone_from_node", {{"capture", id}, {"node", node}});
        changed = true;
      }
      // Counts taken from a board go into the entry: this replica's board
      // (a process of the same name before a restart, or before a release)
      // may not hold them any more.
      const std::optional<CatalogRecord> stored = catalog_->GetAsWritten(id);
      const bool from_board =
          !stored || stored->entry.counts_seq != record.entry.counts_seq;
      if (changed || from_board || record.entry.epoch != epoch ||
          record.entry.replica != options_.replica_id) {
        RETURN_IF_ERROR(WriteCatalog(node, epoch, c.get()));
      }
    }
    Publish(*c);
    out[id] = std::move(c);
  }
  return out;
}

absl::Status ObjectStore::DeleteObjects(const std::string& prefix) {
  auto listed = ListAll(options_.client, prefix);
  if (!listed.ok()) return listed.status();
  for (const s3::ObjectInfo& o : *listed) {
    RETURN_IF_ERROR(options_.client->Delete(o.key));
  }
  return absl::OkStatus();
}

}  // namespace pc::aggregator
