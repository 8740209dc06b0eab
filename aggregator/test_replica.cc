#include "aggregator/test_replica.h"

#include <utility>

#include "gtest/gtest.h"

namespace pc::aggregator::testutil {

std::unique_ptr<Replica> OpenReplica(FakeLeases* leases,
                                     const std::string& name,
                                     ObjectStoreOptions options) {
  auto r = std::make_unique<Replica>();
  r->ownership = std::make_unique<FakeOwnership>(leases, name);
  options.replica_id = name;
  options.ownership = r->ownership.get();
  auto store = ObjectStore::Open(std::move(options), &r->registry);
  EXPECT_TRUE(store.ok()) << store.status();
  if (!store.ok()) return nullptr;
  r->store = std::move(*store);
  return r;
}

}  // namespace pc::aggregator::testutil
