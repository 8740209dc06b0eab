// An ObjectClient that keeps objects in memory, for unit tests of what is
// built on the object store: conditional writes (If-None-Match: *, If-Match
// -> FailedPrecondition as a 412), ETags, ranged reads, ListObjectsV2 paging
// with prefix and delimiter, and injected faults.
//
// Thread-safe.
#ifndef COMMON_S3_MEMORY_OBJECT_CLIENT_H_
#define COMMON_S3_MEMORY_OBJECT_CLIENT_H_

#include <cstdint>
#include <functional>
#include <map>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "common/s3/object_client.h"

namespace pc::s3 {

class MemoryObjectClient final : public ObjectClient {
 public:
  // How an injected fault behaves.
  enum class Fault {
    kBefore,  // the call fails and does nothing (the server was down)
    kAfter,   // the call takes effect, then fails (the reply was lost)
  };

  absl::StatusOr<std::string> Put(absl::string_view key, absl::string_view body,
                                  const PutOptions& options) override;
  absl::StatusOr<GetResult> Get(absl::string_view key, uint64_t offset = 0,
                                uint64_t length = 0) override;
  absl::StatusOr<ObjectInfo> Head(absl::string_view key) override;
  absl::StatusOr<ListPage> List(absl::string_view prefix,
                                absl::string_view delimiter = "",
                                absl::string_view continuation = "",
                                int max_keys = 1000) override;
  absl::Status Delete(absl::string_view key) override;
  // Every call, also those failed by FailNext or SetDown.
  std::map<std::string, uint64_t> RequestCounts() const override;

  // The next `calls` calls (of any kind) fail with Unavailable.
  void FailNext(int calls, Fault fault = Fault::kBefore);
  // Every call fails with Unavailable until cleared (the server is down).
  void SetDown(bool down);
  // Called with the method name ("PUT", "GET", ...) and key of every call
  // before it runs (no lock held); for tests that interleave.
  void SetHook(std::function<void(const std::string&, const std::string&)>);

  // Test inspection.
  std::map<std::string, std::string> Objects() const;
  int calls(const std::string& method) const;
  void SetMaxKeysPerPage(int n);

 private:
  struct Object {
    std::string body;
    std::string etag;
    std::map<std::string, std::string> metadata;
  };
  // Decides an injected fault for one call: OK, or the error to return
  // (*after: only once the call took effect).
  absl::Status TakeFault(const std::string& method, const std::string& key,
                         bool* after);

  mutable absl::Mutex mu_;
  std::map<std::string, Object, std::less<>> objects_ ABSL_GUARDED_BY(mu_);
  uint64_t next_etag_ ABSL_GUARDED_BY(mu_) = 1;
  int fail_next_ ABSL_GUARDED_BY(mu_) = 0;
  Fault fault_ ABSL_GUARDED_BY(mu_) = Fault::kBefore;
  bool down_ ABSL_GUARDED_BY(mu_) = false;
  int max_keys_ ABSL_GUARDED_BY(mu_) = 1000;
  std::map<std::string, int> calls_ ABSL_GUARDED_BY(mu_);
  std::function<void(const std::string&, const std::string&)> hook_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace pc::s3

#endif  // COMMON_S3_MEMORY_OBJECT_CLIENT_H_
