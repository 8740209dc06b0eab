// The catalog of the object-store backend: one object per capture
// (<prefix>/catalog/<id>.pb: its CaptureMeta, per-file summaries, and the
// writer's replica and epoch) and one counts board per replica
// (<prefix>/catalog/counts/<replica>.pb: newer file summaries of the
// captures it holds whose entries are behind), their encodings, the View
// every replica shows of a capture, and a cache kept fresh by listing the
// catalog every poll interval and re-reading objects whose ETag changed.
//
// An entry as read is overlaid with its writer's board: where the board
// holds the capture at the entry's epoch with a higher counts_seq (and the
// entry is not files_final), the board's files replace the entry's. So a
// running capture's counts move with one PUT per replica and interval, not
// one per capture.
//
// Thread-safe. The listener is called from the polling thread (or the
// caller of Refresh) with no lock of the catalog held; rounds are
// serialized.
#ifndef AGGREGATOR_OBJECT_CATALOG_H_
#define AGGREGATOR_OBJECT_CATALOG_H_

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "aggregator/capture_dir.h"
#include "aggregator/object_layout.h"
#include "aggregator/stored_file.h"
#include "common/s3/object_client.h"
#include "proto/packetcapture.pb.h"

namespace pc::aggregator {

struct CatalogEntry {
  CaptureMeta meta;
  std::map<FileKey, FileSummary> files;
  std::string replica;
  int64_t epoch = 0;
  // The holder wrote it with the capture off the node: `files` are exact
  // and will not grow (see LoadNode).
  bool files_final = false;
  // The holder's count sequence of these files (see CountsBoard).
  uint64_t counts_seq = 0;
};

// A replica's counts board: per capture, the files and the status fields
// that change without a catalog write (see Significant) at `counts_seq`, as
// the replica held the capture's node at `epoch`.
struct BoardEntry {
  int64_t epoch = 0;
  uint64_t counts_seq = 0;
  std::map<FileKey, FileSummary> files;
  uint64_t dropped_packets = 0;
  uint64_t bytes_uploaded = 0;
  std::optional<absl::Time> update_time;
};
// The board's entry for a capture as `entry` holds it.
BoardEntry BoardEntryOf(const CatalogEntry& entry);
struct CountsBoard {
  std::string replica;
  std::map<std::string, BoardEntry> captures;  // by capture id
};

std::string EncodeCatalogEntry(const CatalogEntry& entry);
// InvalidArgument if it does not parse.
absl::StatusOr<CatalogEntry> DecodeCatalogEntry(absl::string_view data);
std::string EncodeCountsBoard(const CountsBoard& board);
// InvalidArgument if it does not parse.
absl::StatusOr<CountsBoard> DecodeCountsBoard(absl::string_view data);
// The board's counts of capture `id` where they are newer than `entry`'s:
// same replica and epoch, higher counts_seq, entry not files_final; nullptr
// otherwise.
const BoardEntry* NewerOnBoard(const CountsBoard& board, const std::string& id,
                               const CatalogEntry& entry);
// Takes NewerOnBoard's files and counts into `entry`; true if it did.
bool OverlayBoard(const CountsBoard& board, const std::string& id,
                  CatalogEntry* entry);

// The capture as listed (what Store::View shows): the node's status with
// the stored files in download order, their bytes, packets, bytes lost
// (gaps included) and, once stopped, when it expires.
packetcapture::v1::Capture CatalogView(
    const CaptureMeta& meta, const std::map<FileKey, FileSummary>& files,
    absl::Duration retention);

// Capture order of files: first record's time (files without records
// last), then name and generation (as Store::DownloadOrder).
bool DownloadOrderLess(const FileKey& a, const FileSummary& sa,
                       const FileKey& b, const FileSummary& sb);

struct CatalogRecord {
  std::string etag;
  CatalogEntry entry;
};

class ObjectCatalog {
 public:
  // Records passed are overlaid with their writer's board.
  struct Listener {
    std::function<void(const std::string& id, const CatalogRecord&)> changed;
    std::function<void(const std::string& id)> vanished;
  };

  // `client` and `layout` must outlive the catalog.
  ObjectCatalog(s3::ObjectClient* client, const ObjectLayout* layout,
                Listener listener);
  ~ObjectCatalog();

  // Polls every `interval` on a thread of its own until Stop().
  void Start(absl::Duration interval);
  void Stop();

  // Returns once a round that started after this call has ended, with its
  // outcome: one round lists the catalog, reads the entries and boards
  // whose ETag changed and tells the listener of changed (an entry read
  // again, or one a changed board moves) and vanished ones (an object that
  // does not decode is logged and skipped). Callers that come while a
  // round runs share the next one: 100 nodes taken at once after a replica
  // restart are a few listings of the catalog, not 100.
  absl::Status Refresh() ABSL_LOCKS_EXCLUDED(round_mu_, mu_);
  // Reads one entry now (and caches it); NotFound if there is none.
  absl::StatusOr<CatalogRecord> Read(const std::string& id);
  // This replica wrote `record` (or deleted the entry).
  void Note(const std::string& id, const CatalogRecord& record);
  void Forget(const std::string& id);
  // This replica wrote its board (ETag `etag`).
  void NoteBoard(const std::string& etag, const CountsBoard& board);
  // Whether the last round listed replica's board (or this replica wrote
  // it since); a replica whose board was deleted writes it again.
  bool HasBoard(const std::string& replica) const;
  // Boards that no cached entry takes counts from, with their ETags, for
  // deleting a gone replica's board.
  std::map<std::string, std::string> UnusedBoards() const;
  // Whether readers take `board`'s counts of capture `id` over its entry as
  // cached (as written).
  bool TakesFromBoard(const CountsBoard& board, const std::string& id) const;

  // Overlaid with the writer's board.
  std::optional<CatalogRecord> Get(const std::string& id) const;
  // The entry as stored, without its writer's board.
  std::optional<CatalogRecord> GetAsWritten(const std::string& id) const;
  std::map<std::string, CatalogRecord> Snapshot() const;
  // The entries of one node's captures (a node's takeover copies those, not
  // the whole catalog).
  std::map<std::string, CatalogRecord> OfNode(const std::string& node) const;
  // Completed rounds, for tests.
  uint64_t rounds() const;

 private:
  struct Cached {
    CatalogRecord record;  // as written
    uint64_t noted = 0;    // note_seq_ when this replica wrote it; 0: read
  };
  struct Board {
    std::string etag;
    CountsBoard board;
    uint64_t noted = 0;  // as Cached's
  };
  void Run(absl::Duration interval);
  absl::Status Round() ABSL_EXCLUSIVE_LOCKS_REQUIRED(round_mu_);
  // Reads the boards whose ETag changed (`listed`: replica -> object);
  // adds the ids of captures they name, before and after, to `moved`.
  absl::Status ReadBoards(const std::map<std::string, s3::ObjectInfo>& listed,
                          uint64_t start_seq, std::set<std::string>* moved)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(round_mu_);
  CatalogRecord Overlaid(const std::string& id,
                         const CatalogRecord& record) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  s3::ObjectClient* const client_;
  const ObjectLayout* const layout_;
  const Listener listener_;
  absl::Mutex round_mu_ ABSL_ACQUIRED_BEFORE(mu_);  // one round at a time
  mutable absl::Mutex mu_;
  std::map<std::string, Cached> cache_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, Board> boards_ ABSL_GUARDED_BY(mu_);  // by replica
  uint64_t note_seq_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t rounds_ ABSL_GUARDED_BY(mu_) = 0;  // ended
  // Started (written under round_mu_ too), and the last one's outcome.
  uint64_t rounds_started_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status last_round_ ABSL_GUARDED_BY(mu_);
  absl::Notification stop_;
  std::thread thread_;
};

}  // namespace pc::aggregator

#endif  // AGGREGATOR_OBJECT_CATALOG_H_
