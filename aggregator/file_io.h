// POSIX file helpers for the aggregator's store: whole writes and reads at
// offsets, atomic replacement of a small file, directory listing and
// flushing, and the one mapping from errno to the store's error codes (see
// store.h). Stateless; thread-safe.
#ifndef AGGREGATOR_FILE_IO_H_
#define AGGREGATOR_FILE_IO_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace pc::aggregator {

// Flushes one open file or directory: 0 or an errno. fsync(2) by default;
// tests inject slow or failing ones.
using FsyncFn = std::function<int(int fd)>;
FsyncFn SystemFsync();

// The store's status for a failed system call, by what the errno says about
// the scope of the problem:
//  - store-wide: ENOSPC, EDQUOT, EMFILE, ENFILE, ENOMEM, EMLINK ->
//    ResourceExhausted; EIO, EROFS and anything unexpected -> Internal;
//  - one capture's: ENAMETOOLONG -> InvalidArgument; EACCES, EPERM, ENOENT,
//    ENOTDIR, EISDIR, EEXIST, ELOOP, EFBIG, ENOTEMPTY -> FailedPrecondition.
// `what` names the operation and the object without server paths (e.g.
// "create <capture id>/run-1-w5/ring0.3.pcap"); the message is
// "<what>: <strerror>".
absl::Status IoError(int err, absl::string_view what);
absl::StatusCode IoErrorCode(int err);

// Writes all of `data` at `offset`: 0 or an errno.
int WriteAll(int fd, absl::string_view data, uint64_t offset);

// Appends up to n bytes read at `offset` to *out (fewer at end of file):
// the count, or -errno. Reads straight into *out: downloads pass every byte
// through here.
int64_t AppendRange(int fd, uint64_t offset, size_t n, std::string* out);

// Replaces dir/name with `data`: written to dir/name.tmp, flushed, renamed
// over, then the directory flushed. 0 or an errno (the temporary file is
// removed on failure).
int WriteFileAtomically(const std::string& dir, const std::string& name,
                        absl::string_view data, const FsyncFn& fsync);

// Reads a whole file of at most max_bytes: EFBIG beyond that, else an errno.
int ReadSmallFile(const std::string& path, size_t max_bytes, std::string* out);

// Flushes a directory (its entries): 0 or an errno.
int SyncDir(const std::string& dir, const FsyncFn& fsync);

// Entries of `dir` except "." and "..", sorted; empty if it cannot be read.
std::vector<std::string> ListDir(const std::string& dir);

}  // namespace pc::aggregator

#endif  // AGGREGATOR_FILE_IO_H_
