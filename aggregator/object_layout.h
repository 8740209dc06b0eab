// Key names of the object-store backend (ISSUE12 §2), built only from
// validated capture ids and stored file names, and parsed back strictly:
//   <prefix>/catalog/<capture id>.pb
//   <prefix>/catalog/counts/<replica id>.pb   (a replica's counts board)
//   <prefix>/data/<capture id>/<run dir>/<ring>/<generation:020>/<offset:020>
//   <prefix>/data/<capture id>/<run dir>/<ring>/<generation:020>/
//       <offset:020>-<end:020>   (a compacted object: bytes [offset, end))
// An empty prefix means none (keys start with "catalog/" and "data/").
// Pure functions; thread-safe.
#ifndef AGGREGATOR_OBJECT_LAYOUT_H_
#define AGGREGATOR_OBJECT_LAYOUT_H_

#include <cstdint>
#include <string>
#include <utility>

namespace pc::aggregator {

// A stored file: (name "run-<k>-w<N>/ring<i>", generation).
using FileKey = std::pair<std::string, uint64_t>;

// Where one data object belongs: a stored file ("run-<k>-w<N>/ring<i>"),
// its generation, and the file offset its bytes start at; for a compacted
// object also the offset it ends at (exclusive, > offset).
struct DataKeyParts {
  std::string file;
  uint64_t generation = 0;
  uint64_t offset = 0;
  uint64_t end = 0;  // 0: a batch's object (its size tells its end)
};

// A replica id that may name a counts board: a DNS-1123 subdomain (pod
// names and host names are).
bool IsValidReplicaId(const std::string& replica);

class ObjectLayout {
 public:
  // `prefix` without leading or trailing '/'.
  explicit ObjectLayout(std::string prefix);

  // "<prefix>/catalog/"
  std::string CatalogPrefix() const;
  // `id` must be valid (IsValidCaptureId).
  std::string CatalogKey(const std::string& id) const;
  // The capture id of a catalog key; false for anything else.
  bool ParseCatalogKey(const std::string& key, std::string* id) const;

  // `replica` must be a DNS-1123 subdomain (IsValidReplicaId).
  std::string CountsKey(const std::string& replica) const;
  // The replica of a counts board's key; false for anything else.
  bool ParseCountsKey(const std::string& key, std::string* replica) const;

  // "<prefix>/data/<id>/"
  std::string DataPrefix(const std::string& id) const;
  // "<prefix>/data/<id>/<file>/<generation:020>/"
  std::string FilePrefix(const std::string& id, const std::string& file,
                         uint64_t generation) const;
  // `file` must be valid (ParseStoredFileName).
  std::string DataKey(const std::string& id, const std::string& file,
                      uint64_t generation, uint64_t offset) const;
  // The object that replaces a file's objects covering [offset, end);
  // `end` > `offset`.
  std::string CompactedKey(const std::string& id, const std::string& file,
                           uint64_t generation, uint64_t offset,
                           uint64_t end) const;
  // A key under DataPrefix(id) of either form; false for anything else.
  bool ParseDataKey(const std::string& id, const std::string& key,
                    DataKeyParts* parts) const;

 private:
  std::string root_;  // "<prefix>/" or ""
};

}  // namespace pc::aggregator

#endif  // AGGREGATOR_OBJECT_LAYOUT_H_
