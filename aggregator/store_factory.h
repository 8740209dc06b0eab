// Opens the store `--store` names: the directory store ("dir:///data", the
// default) or, for replicas, the object store ("s3://BUCKET/PREFIX") with
// its S3 client and the node Leases that decide which replica writes a
// node's captures.
#ifndef AGGREGATOR_STORE_FACTORY_H_
#define AGGREGATOR_STORE_FACTORY_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "aggregator/capture_store.h"
#include "aggregator/node_lease.h"
#include "aggregator/store.h"
#include "common/capture_registry.h"
#include "common/kube/http_client.h"
#include "common/s3/s3_client.h"

namespace pc::aggregator {

struct StoreConfig {
  // "dir:///PATH" or "s3://BUCKET/PREFIX".
  std::string url;
  // The directory store's options (data_dir comes from url); retention and
  // max_bytes apply to both stores.
  StoreOptions dir;
  // The object store: endpoint, region, path style, CA (bucket and
  // credentials are filled here).
  s3::S3Config s3;
  // A file or directory of keys (see s3::LoadCredentials); empty: the
  // AWS_* environment.
  std::string s3_credentials;
  NodeLeaseOptions lease;
  absl::Duration catalog_poll_interval = absl::Seconds(2);
  // See ObjectStoreOptions::catalog_write_interval.
  absl::Duration catalog_write_interval = absl::Seconds(5);
  // See ObjectStoreOptions::compact_below_bytes.
  uint64_t compact_below_bytes = 64 << 10;
  uint64_t max_file_bytes = uint64_t{64} << 20;
  // For the Leases; must outlive the store.
  kube::HttpClient* lease_http = nullptr;
};

// What OpenCaptureStore made; `store` goes first, then what it uses.
struct OpenedStore {
  std::unique_ptr<s3::S3Client> client;
  std::unique_ptr<NodeLeases> leases;
  std::unique_ptr<CaptureStore> store;
  // For the start-up log line: the data directory, or the bucket and prefix.
  std::string location;
  OpenedStore() = default;
  OpenedStore(OpenedStore&&) = default;
  OpenedStore& operator=(OpenedStore&&) = default;
  ~OpenedStore() { store.reset(); }
};

// Whether `url` names the object store (an s3:// URL), not whether it is a
// valid one: for defaults that differ by store before OpenCaptureStore runs.
bool IsObjectStoreUrl(absl::string_view url);

// InvalidArgument for a URL of another scheme, a bad bucket, a missing
// endpoint, replica id or address; the stores' own errors otherwise.
absl::StatusOr<OpenedStore> OpenCaptureStore(StoreConfig config,
                                             CaptureRegistry* registry);

}  // namespace pc::aggregator

#endif  // AGGREGATOR_STORE_FACTORY_H_
