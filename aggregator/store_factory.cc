#include "aggregator/store_factory.h"

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "aggregator/object_store.h"

namespace pc::aggregator {
namespace {

constexpr absl::string_view kDirScheme = "dir://";
constexpr absl::string_view kS3Scheme = "s3://";

absl::StatusOr<OpenedStore> OpenDirStore(StoreConfig config,
                                         CaptureRegistry* registry) {
  std::string path = config.url.substr(kDirScheme.size());
  if (path.empty() || path[0] != '/') {
    return absl::InvalidArgumentError(absl::StrCat(
        "--store ", config.url, ": a directory store is dir:///ABSOLUTE/PATH"));
  }
  config.dir.data_dir = path;
  auto store = Store::Open(config.dir, registry);
  if (!store.ok()) return store.status();
  OpenedStore opened;
  opened.store = std::move(*store);
  opened.location = path;
  return opened;
}

absl::StatusOr<OpenedStore> OpenObjectStore(StoreConfig config,
                                            CaptureRegistry* registry) {
  std::string prefix;
  if (absl::Status s =
          s3::ParseStoreUrl(config.url, &config.s3.bucket, &prefix);
      !s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--store ", config.url, ": ", s.message()));
  }
  if (config.s3.endpoint.empty()) {
    return absl::InvalidArgumentError(
        "an s3:// store needs --s3_endpoint (e.g. https://s3.REGION."
        "amazonaws.com or http://minio.NAMESPACE:9000)");
  }
  if (config.lease.identity.empty() || config.lease.address.empty() ||
      config.lease.namespace_name.empty()) {
    return absl::InvalidArgumentError(
        "an s3:// store needs --replica_id, --advertise_address and "
        "--lease_namespace (or POD_NAME, POD_IP and the service account's "
        "namespace)");
  }
  if (config.lease_http == nullptr) {
    return absl::InvalidArgumentError("no Kubernetes client for the Leases");
  }
  if (absl::Status s = s3::LoadCredentials(config.s3_credentials, &config.s3);
      !s.ok()) {
    return s;
  }
  OpenedStore opened;
  auto client = s3::S3Client::Create(config.s3);
  if (!client.ok()) return client.status();
  opened.client = std::move(*client);
  // Agents of a killed replica are taken over by the first other replica
  // they reach, once its lease ran out.
  config.lease.wait_for_silent_holder = true;
  opened.leases = std::make_unique<NodeLeases>(config.lease_http, config.lease);
  ObjectStoreOptions options;
  options.client = opened.client.get();
  options.prefix = prefix;
  options.replica_id = config.lease.identity;
  options.ownership = opened.leases.get();
  options.retention = config.dir.retention;
  options.max_bytes = config.dir.max_bytes;
  options.catalog_poll_interval = config.catalog_poll_interval;
  options.catalog_write_interval = config.catalog_write_interval;
  options.compact_below_bytes = config.compact_below_bytes;
  options.max_file_bytes = config.max_file_bytes;
  auto store = ObjectStore::Open(std::move(options), registry);
  if (!store.ok()) return store.status();
  opened.store = std::move(*store);
  opened.location = absl::StrCat(kS3Scheme, config.s3.bucket, "/", prefix,
                                 " at ", config.s3.endpoint);
  return opened;
}

}  // namespace

bool IsObjectStoreUrl(absl::string_view url) {
  return absl::StartsWith(url, kS3Scheme);
}

absl::StatusOr<OpenedStore> OpenCaptureStore(StoreConfig config,
                                             CaptureRegistry* registry) {
  if (absl::StartsWith(config.url, kDirScheme)) {
    return OpenDirStore(std::move(config), registry);
  }
  if (IsObjectStoreUrl(config.url)) {
    return OpenObjectStore(std::move(config), registry);
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "--store ", config.url, ": expected dir:///PATH or s3://BUCKET/PREFIX"));
}

}  // namespace pc::aggregator
