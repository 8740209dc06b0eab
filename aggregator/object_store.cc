// ObjectStore: opening, node ownership, the catalog writes and the
// listings built on the registry.
#include "aggregator/object_store.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "aggregator/store_rules.h"
#include "common/log.h"
#include "common/status_macros.h"

namespace pc::aggregator {

using packetcapture::v1::Capture;
using packetcapture::v1::ResumePoint;

ObjectStore::ObjectStore(ObjectStoreOptions options, CaptureRegistry* registry)
    : options_(std::move(options)),
      registry_(registry),
      layout_(options_.prefix),
      put_latency_(metrics::LatencyHistogram::FlushBounds()) {}

absl::StatusOr<std::unique_ptr<ObjectStore>> ObjectStore::Open(
    ObjectStoreOptions options, CaptureRegistry* registry) {
  if (options.client == nullptr || options.ownership == nullptr) {
    return absl::InvalidArgumentError("client and ownership are required");
  }
  if (!IsValidReplicaId(options.replica_id)) {
    return absl::InvalidArgumentError(
        absl::StrCat("replica_id \"", options.replica_id.substr(0, 256),
                     "\" must be a DNS-1123 subdomain (a pod or host name)"));
  }
  if (!options.prefix.empty() &&
      (options.prefix.front() == '/' || options.prefix.back() == '/')) {
    return absl::InvalidArgumentError("prefix must not begin or end with '/'");
  }
  if (options.catalog_poll_interval <= absl::ZeroDuration() ||
      options.catalog_write_interval <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "catalog_poll_interval and catalog_write_interval must be > 0");
  }
  std::unique_ptr<ObjectStore> store(
      new ObjectStore(std::move(options), registry));
  ObjectStore* s = store.get();
  store->catalog_ = std::make_unique<ObjectCatalog>(
      s->options_.client, &s->layout_,
      ObjectCatalog::Listener{
          [s](const std::string& id, const CatalogRecord& r) {
            s->OnCatalogChanged(id, r);
          },
          [s](const std::string& id) { s->OnCatalogVanished(id); }});
  // A store that cannot be reached now is polled again; one that refuses
  // us (credentials, bucket) is a configuration error.
  const absl::Status listed = store->catalog_->Refresh();
  if (absl::IsPermissionDenied(listed) || absl::IsInvalidArgument(listed) ||
      absl::IsNotFound(listed)) {
    return listed;
  }
  if (!listed.ok()) {
    LogLine("catalog_poll_error", {{"error", listed.ToString()}});
  }
  s->options_.ownership->SetOnLost(
      [s](const std::string& node) { s->OnLost(node); });
  store->catalog_->Start(s->options_.catalog_poll_interval);
  store->flusher_ = std::thread([s] { s->RunFlusher(); });
  if (s->options_.compact_in_background) {
    store->compactor_ = std::thread([s] { s->RunCompactor(); });
  }
  LogLine("store_opened",
          {{"store", "object"},
           {"prefix", s->options_.prefix},
           {"replica", s->options_.replica_id},
           {"captures", absl::StrCat(registry->List().size())}});
  return store;
}

ObjectStore::~ObjectStore() {
  {
    absl::MutexLock lock(&compact_mu_);
    compact_stop_ = true;
  }
  if (compactor_.joinable()) compactor_.join();
  stop_.Notify();
  if (flusher_.joinable()) flusher_.join();
  // The next holder of these nodes starts from fresh counts.
  FlushCatalog();
  catalog_->Stop();
  options_.ownership->SetOnLost(nullptr);
}

absl::Time ObjectStore::Now() const {
  return options_.clock ? options_.clock() : absl::Now();
}

absl::Status ObjectStore::Held(const std::string& node, const std::string& id,
                               std::shared_ptr<HeldCapture>* capture,
                               int64_t* epoch) const {
  absl::MutexLock lock(&mu_);
  auto it = nodes_.find(node);
  if (it == nodes_.end() || it->second.refs == 0) {
    return absl::AbortedError(absl::StrCat(
        "node ", node, " is not held by replica ", options_.replica_id));
  }
  if (it->second.lost) {
    return absl::AbortedError(
        absl::StrCat("replica ", options_.replica_id, " lost node ", node));
  }
  *epoch = it->second.epoch;
  auto c = it->second.captures.find(id);
  *capture = c == it->second.captures.end() ? nullptr : c->second;
  return absl::OkStatus();
}

void ObjectStore::Publish(const HeldCapture& c) {
  registry_->Put(CatalogView(c.entry.meta, c.entry.files, options_.retention));
}

absl::Status ObjectStore::WriteCatalog(const std::string& node, int64_t epoch,
                                       HeldCapture* c) {
  if (c->fenced.load()) {
    return absl::AbortedError(
        absl::StrCat("replica ", options_.replica_id, " lost node ", node));
  }
  CatalogEntry entry = c->entry;
  entry.replica = options_.replica_id;
  entry.epoch = epoch;
  // The holder's summaries count every acknowledged byte; off the node, the
  // agent sends no more.
  entry.files_final = !entry.meta.status.on_node();
  const std::string body = EncodeCatalogEntry(entry);
  const std::string key = layout_.CatalogKey(c->id);
  for (int attempt = 0; attempt < 2; ++attempt) {
    s3::PutOptions put;
    put.if_none_match_any = c->etag.empty();
    put.if_match = c->etag;
    auto etag = options_.client->Put(key, body, put);
    if (etag.ok()) {
      c->etag = *etag;
      c->written = Significant(c->entry.meta);
      c->dirty = false;
      c->new_files = false;
      catalog_->Note(c->id, CatalogRecord{*etag, std::move(entry)});
      return absl::OkStatus();
    }
    if (!absl::IsFailedPrecondition(etag.status())) return etag.status();
    // Someone else wrote it: a newer holder (we are deposed), or our own
    // earlier write whose reply was lost, or a replica marking it gone.
    auto current = catalog_->Read(c->id);
    if (absl::IsNotFound(current.status())) {
      if (c->etag.empty()) continue;  // deleted meanwhile: create again
      c->deleted = true;
      return absl::FailedPreconditionError(
          absl::StrCat("capture ", c->id, " was deleted meanwhile"));
    }
    if (!current.ok()) return current.status();
    if (current->entry.meta.status.node() != node) {
      // Epochs are per node: another node's entry says nothing about ours.
      c->deleted = c->etag.empty();
      return absl::PermissionDeniedError(
          absl::StrCat("capture ", c->id, " belongs to node ",
                       current->entry.meta.status.node()));
    }
    if (current->entry.epoch > epoch) {
      LogLine("store_deposed",
              {{"node", node},
               {"capture", c->id},
               {"epoch", absl::StrCat(epoch)},
               {"holder", current->entry.replica},
               {"holder_epoch", absl::StrCat(current->entry.epoch)}});
      OnLost(node);
      return absl::AbortedError(absl::StrCat(
          "capture ", c->id, " is written by replica ", current->entry.replica,
          " (epoch ", current->entry.epoch, " > ", epoch, ")"));
    }
    c->etag = current->etag;
  }
  return absl::AbortedError(
      absl::StrCat("catalog entry of ", c->id, " keeps changing"));
}

void ObjectStore::OnLost(const std::string& node) {
  std::function<void(const std::string&)> on_lost;
  {
    absl::MutexLock lock(&mu_);
    auto it = nodes_.find(node);
    if (it == nodes_.end() || it->second.lost) return;
    it->second.lost = true;
    // The catalog is the truth of these captures now (another replica
    // writes them): its changes are published again.
    for (auto& [id, c] : it->second.captures) {
      c->fenced.store(true);
      held_ids_.erase(id);
    }
    on_lost = on_lost_;
  }
  LogLine("store_node_lost",
          {{"node", node}, {"replica", options_.replica_id}});
  if (on_lost) on_lost(node);
}

void ObjectStore::SetOnNodeLost(
    std::function<void(const std::string& node)> on_lost) {
  absl::MutexLock lock(&mu_);
  on_lost_ = std::move(on_lost);
}

absl::Status ObjectStore::AcquireNode(const std::string& node,
                                      const NodeReport& report) {
  LeaseHolder other;
  auto held = options_.ownership->Acquire(node, &other);
  if (!held.ok()) {
    if (!absl::IsFailedPrecondition(held.status())) return held.status();
    absl::Status redirect = absl::FailedPreconditionError(
        absl::StrCat("node ", node, " is held by replica ", other.identity,
                     " at ", other.address));
    redirect.SetPayload(kRedirectPayload, absl::Cord(other.address));
    return redirect;
  }
  {
    absl::MutexLock lock(&mu_);
    auto it = nodes_.find(node);
    if (it != nodes_.end() && it->second.refs > 0 && !it->second.lost &&
        it->second.epoch == held->epoch) {
      ++it->second.refs;
      if (report.present) MarkGone(node, *report.present, report.gone_reason);
      return absl::OkStatus();
    }
  }
  auto captures = LoadNode(node, held->epoch, report);
  if (!captures.ok()) {
    bool release;
    {
      absl::MutexLock lock(&mu_);
      auto it = nodes_.find(node);
      release = it == nodes_.end() || it->second.refs == 0;
    }
    if (release) options_.ownership->Release(node);
    return captures.status();
  }
  std::vector<std::shared_ptr<HeldCapture>> loaded;
  {
    absl::MutexLock lock(&mu_);
    HeldNode& n = nodes_[node];
    for (auto& [id, c] : n.captures) {
      c->fenced.store(true);  // an earlier tenure's
      held_ids_.erase(id);
    }
    ++n.refs;
    n.epoch = held->epoch;
    n.lost = false;
    n.captures = std::move(*captures);
    for (auto& [id, c] : n.captures) {
      held_ids_[id] = node;
      loaded.push_back(c);
    }
    LogLine("store_node_acquired",
            {{"node", node},
             {"replica", options_.replica_id},
             {"epoch", absl::StrCat(n.epoch)},
             {"captures", absl::StrCat(n.captures.size())}});
  }
  // What an earlier holder sealed but did not compact.
  for (const auto& c : loaded) {
    absl::MutexLock lock(&c->mu);
    QueueSealed(c.get(), nullptr);
  }
  return absl::OkStatus();
}

void ObjectStore::ReleaseNode(const std::string& node) {
  std::map<std::string, std::shared_ptr<HeldCapture>> captures;
  int64_t epoch = 0;
  bool lost = false;
  {
    absl::MutexLock lock(&mu_);
    auto it = nodes_.find(node);
    if (it == nodes_.end() || it->second.refs == 0) return;
    if (--it->second.refs > 0) return;
    captures = std::move(it->second.captures);
    epoch = it->second.epoch;
    lost = it->second.lost;
    for (const auto& [id, c] : captures) held_ids_.erase(id);
    nodes_.erase(it);
  }
  // The next holder starts from fresh counts: the board keeps them until
  // that holder's entries do.
  if (!lost) {
    std::vector<HeldRef> held;
    for (auto& [id, c] : captures) held.push_back(HeldRef{node, epoch, c});
    WriteBoard(held, /*due_only=*/false);
  }
  for (auto& [id, c] : captures) c->fenced.store(true);
  options_.ownership->Release(node);
}

void ObjectStore::FlushCatalog(bool due_only) {
  std::vector<HeldRef> held;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [node, n] : nodes_) {
      if (n.lost) continue;
      for (const auto& [id, c] : n.captures) {
        held.push_back(HeldRef{node, n.epoch, c});
      }
    }
  }
  WriteBoard(held, due_only);
}

void ObjectStore::WriteBoard(const std::vector<HeldRef>& held, bool due_only) {
  uint64_t gathered;
  {
    // The dirty counts, at their counts_seq.
    absl::MutexLock board(&board_mu_);
    board_.replica = options_.replica_id;
    for (const HeldRef& h : held) {
      HeldCapture* c = h.capture.get();
      absl::MutexLock lock(&c->mu);
      if (!c->dirty || c->deleted || c->fenced.load()) continue;
      BoardEntry b = BoardEntryOf(c->entry);
      b.epoch = h.epoch;
      board_.captures[c->id] = std::move(b);
      board_changed_ = true;
      board_new_files_ = board_new_files_ || c->new_files;
      board_taken_.emplace_back(h.capture, c->entry.counts_seq);
    }
    gathered = ++board_gathers_;
  }
  absl::MutexLock write(&board_write_mu_);
  const absl::Time now = Now();
  CountsBoard snapshot;
  std::vector<std::pair<std::shared_ptr<HeldCapture>, uint64_t>> taken;
  uint64_t upto;
  {
    absl::MutexLock board(&board_mu_);
    // A write that started after this gather wrote it.
    if (board_written_upto_ >= gathered) return;
    // A board another replica deleted as unused is written again.
    const bool listed = catalog_->HasBoard(options_.replica_id);
    if (!listed && !board_.captures.empty()) board_changed_ = true;
    const bool due = !due_only || board_new_files_ ||
                     now - board_written_at_ >= options_.catalog_write_interval;
    if (!board_changed_ || !due) return;
    // The others leave once the entry as stored has their counts (or is
    // another holder's, or gone): readers would not take them.
    std::set<std::string> pending;
    for (const auto& [c, seq] : board_taken_) pending.insert(c->id);
    for (auto it = board_.captures.begin(); it != board_.captures.end();) {
      if (!pending.count(it->first) &&
          !catalog_->TakesFromBoard(board_, it->first)) {
        it = board_.captures.erase(it);
      } else {
        ++it;
      }
    }
    board_changed_ = false;
    board_new_files_ = false;
    // Nothing a reader would take: the board as listed (if any) is moot.
    if (board_.captures.empty()) return;
    snapshot = board_;
    taken = std::move(board_taken_);
    board_taken_.clear();
    upto = board_gathers_;
  }
  auto etag = options_.client->Put(layout_.CountsKey(options_.replica_id),
                                   EncodeCountsBoard(snapshot), {});
  absl::MutexLock board(&board_mu_);
  if (!etag.ok()) {
    LogLine("store_catalog_error", {{"board", options_.replica_id},
                                    {"error", etag.status().ToString()}});
    // Written again at the next flush.
    board_changed_ = true;
    for (auto& t : taken) board_taken_.push_back(std::move(t));
    return;
  }
  board_written_upto_ = upto;
  board_written_at_ = now;
  catalog_->NoteBoard(*etag, snapshot);
  for (const auto& [c, seq] : taken) {
    absl::MutexLock lock(&c->mu);
    if (c->entry.counts_seq != seq) continue;  // changed again meanwhile
    c->dirty = false;
    c->new_files = false;
  }
}

void ObjectStore::DeleteUnusedBoards() {
  const absl::Time now = Now();
  std::vector<std::string> expired;
  {
    absl::MutexLock board(&board_mu_);
    std::map<std::string, std::pair<std::string, absl::Time>> unused;
    for (const auto& [replica, etag] : catalog_->UnusedBoards()) {
      if (replica == options_.replica_id) continue;
      auto it = unused_boards_.find(replica);
      const absl::Time since =
          it != unused_boards_.end() && it->second.first == etag
              ? it->second.second
              : now;
      unused[replica] = {etag, since};
      if (now - since >= options_.board_unused_for) expired.push_back(replica);
    }
    unused_boards_ = std::move(unused);
  }
  for (const std::string& replica : expired) {
    const absl::Status deleted =
        options_.client->Delete(layout_.CountsKey(replica));
    LogLine(deleted.ok() ? "store_board_deleted" : "store_delete_error",
            {{"board", replica}, {"error", deleted.ToString()}});
  }
}

void ObjectStore::RunFlusher() {
  // Ticks often enough to write a new file's counts within a second.
  const absl::Duration tick =
      std::min(options_.catalog_write_interval, absl::Seconds(1));
  while (!stop_.WaitForNotificationWithTimeout(tick)) {
    FlushCatalog(/*due_only=*/true);
  }
}

void ObjectStore::OnCatalogChanged(const std::string& id,
                                   const CatalogRecord& record) {
  {
    absl::MutexLock lock(&mu_);
    // This replica's own view of a held capture is newer than the catalog.
    if (held_ids_.count(id)) return;
  }
  registry_->Put(
      CatalogView(record.entry.meta, record.entry.files, options_.retention));
}

void ObjectStore::OnCatalogVanished(const std::string& id) {
  std::shared_ptr<HeldCapture> held;
  {
    absl::MutexLock lock(&mu_);
    auto it = held_ids_.find(id);
    if (it != held_ids_.end()) {
      auto n = nodes_.find(it->second);
      if (n != nodes_.end()) {
        auto c = n->second.captures.find(id);
        if (c != n->second.captures.end()) {
          held = c->second;
          n->second.captures.erase(c);
        }
      }
      held_ids_.erase(it);
    }
  }
  if (held != nullptr) {
    absl::MutexLock lock(&held->mu);
    held->deleted = true;
  }
  registry_->Remove(id);
}

std::set<std::string> ObjectStore::NodesWithCaptures() const {
  std::set<std::string> nodes;
  for (const Capture& c : registry_->List()) {
    if (c.on_node()) nodes.insert(c.node());
  }
  return nodes;
}

std::vector<ResumePoint> ObjectStore::ResumePoints(
    const std::string& node) const {
  std::vector<std::shared_ptr<HeldCapture>> captures;
  {
    absl::MutexLock lock(&mu_);
    auto it = nodes_.find(node);
    if (it != nodes_.end()) {
      for (const auto& [id, c] : it->second.captures) captures.push_back(c);
    }
  }
  std::vector<ResumePoint> out;
  for (const auto& c : captures) {
    absl::MutexLock lock(&c->mu);
    if (c->deleted) continue;
    for (const auto& [key, f] : c->entry.files) {
      ResumePoint p;
      p.set_capture_id(c->id);
      p.set_file(key.first);
      p.set_file_generation(key.second);
      p.set_offset(f.logical_len);
      out.push_back(std::move(p));
    }
  }
  return out;
}

StoreStats ObjectStore::stats() const {
  StoreStats out;
  {
    absl::MutexLock lock(&mu_);
    out = stats_;
  }
  out.object_requests = options_.client->RequestCounts();
  return out;
}

uint64_t ObjectStore::total_bytes() const {
  uint64_t total = 0;
  for (const Capture& c : registry_->List()) total += c.bytes();
  return total;
}

}  // namespace pc::aggregator
