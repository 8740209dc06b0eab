// A capture's data objects as stored files: listing them (every page),
// grouped per (file, generation) in offset order, and reading what they
// hold past a known summary, in ranges of at most kObjectReadBytes.
// Thread-safe (stateless; the client is).
#ifndef AGGREGATOR_OBJECT_FILES_H_
#define AGGREGATOR_OBJECT_FILES_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "aggregator/object_layout.h"
#include "aggregator/stored_file.h"
#include "common/s3/object_client.h"

namespace pc::aggregator {

// The largest range read from an object at once (bounds a reader's memory).
inline constexpr uint64_t kObjectReadBytes = 1 << 20;

struct DataObject {
  std::string key;
  uint64_t offset = 0;  // file offset of its first byte
  uint64_t size = 0;
};
// Per file, its objects by offset, the longer first at one offset (a
// compacted object before the batch objects it replaces), then key.
using FileObjects = std::map<FileKey, std::vector<DataObject>>;

// Every object under `prefix`, following continuation tokens.
absl::StatusOr<std::vector<s3::ObjectInfo>> ListAll(s3::ObjectClient* client,
                                                    const std::string& prefix);

// The data objects of capture `id`; keys that do not parse are skipped, and
// so is a compacted object whose size is not what its key says.
absl::StatusOr<FileObjects> ListFileObjects(s3::ObjectClient* client,
                                            const ObjectLayout& layout,
                                            const std::string& id);

// The data objects of one file of capture `id`, in the order above.
absl::StatusOr<std::vector<DataObject>> ListFileObjectsOf(
    s3::ObjectClient* client, const ObjectLayout& layout, const std::string& id,
    const FileKey& file);

// Adds to *summary what `objects` (one file's, by offset) hold past its
// logical_len: records, times, bytes, and gaps between objects. DataLoss if
// an object's bytes are not whole records.
absl::Status ScanObjects(s3::ObjectClient* client,
                         const std::vector<DataObject>& objects,
                         FileSummary* summary);

}  // namespace pc::aggregator

#endif  // AGGREGATOR_OBJECT_FILES_H_
