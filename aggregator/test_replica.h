// An aggregator replica over the object store, for the tests of several
// replicas sharing one bucket: its registry, its FakeOwnership of the test's
// leases and its ObjectStore. Test-only; thread-compatible.
#ifndef AGGREGATOR_TEST_REPLICA_H_
#define AGGREGATOR_TEST_REPLICA_H_

#include <memory>
#include <string>

#include "aggregator/fake_node_ownership.h"
#include "aggregator/object_store.h"
#include "common/capture_registry.h"

namespace pc::aggregator::testutil {

struct Replica {
  CaptureRegistry registry;
  std::unique_ptr<FakeOwnership> ownership;
  std::unique_ptr<ObjectStore> store;  // destroyed first
};

// Opens replica `name` with the test's `options` (client, prefix, intervals,
// clock), its ownership taken from `leases` and its replica id `name`;
// nullptr, with a test failure, when the store does not open.
std::unique_ptr<Replica> OpenReplica(FakeLeases* leases,
                                     const std::string& name,
                                     ObjectStoreOptions options);

}  // namespace pc::aggregator::testutil

#endif  // AGGREGATOR_TEST_REPLICA_H_
