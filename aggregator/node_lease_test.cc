#include "aggregator/node_lease.h"

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/synchronization/mutex.h"
#include "aggregator/json_patch_test.pb.h"
#include "aggregator/lease_types.pb.h"
#include "common/kube/fake_api_server.h"
#include "common/kube/kube_json.h"
#include "common/kube/names.h"
#include "gtest/gtest.h"

namespace pc::aggregator {
namespace {

using kube::FakeRequest;
using kube::FakeResponse;

constexpr char kBase[] = "/apis/coordination.k8s.io/v1/namespaces/ns/leases";

// An in-memory Lease API with resourceVersion checks, plus faults.
class LeaseApi {
 public:
  LeaseApi() {
    server_ = *kube::FakeApiServer::Start(
        [this](const FakeRequest& r) { return Handle(r); });
    kube::KubeConfig config;
    config.server = server_->url();
    http_ = *kube::HttpClient::Create(config);
  }
  kube::HttpClient* http() { return http_.get(); }

  void Put(const std::string& name, Lease lease) {
    absl::MutexLock lock(&mu_);
    lease.mutable_metadata()->set_resource_version(absl::StrCat(++rv_));
    leases_[name] = lease;
  }
  Lease Stored(const std::string& name) {
    absl::MutexLock lock(&mu_);
    return leases_[name];
  }
  void set_failing(bool failing) { failing_ = failing; }
  // Before the next n PUTs are served, `meddle` changes the stored lease
  // (another replica writing in between), so they get 409.
  void InterfereWithPuts(int n, std::function<void(Lease*)> meddle) {
    absl::MutexLock lock(&mu_);
    interfere_ = n;
    meddle_ = std::move(meddle);
  }
  std::vector<FakeRequest> requests() { return server_->requests(); }

 private:
  static FakeResponse Code(int status) {
    FakeResponse response;
    response.status = status;
    response.body = "{}";
    return response;
  }
  static FakeResponse Json(int status, const Lease& lease) {
    FakeResponse response = Code(status);
    response.body = *kube::ToJson(lease);
    return response;
  }
  FakeResponse Handle(const FakeRequest& r) {
    if (failing_) return Code(500);
    absl::MutexLock lock(&mu_);
    if (r.method == "POST" && r.target == kBase) {
      Lease lease;
      if (!kube::ParseJson(r.body, &lease).ok()) return Code(400);
      const std::string name = lease.metadata().name();
      if (leases_.count(name)) return Code(409);
      lease.mutable_metadata()->set_resource_version(absl::StrCat(++rv_));
      leases_[name] = lease;
      return Json(201, lease);
    }
    if (!absl::StartsWith(r.target, absl::StrCat(kBase, "/"))) return Code(400);
    const std::string name = r.target.substr(sizeof(kBase));
    auto it = leases_.find(name);
    if (it == leases_.end()) return Code(404);
    if (r.method == "GET") return Json(200, it->second);
    if (r.method == "PATCH") return Patch(r, &it->second);
    if (r.method != "PUT") return Code(405);
    if (interfere_ > 0) {
      --interfere_;
      meddle_(&it->second);
      it->second.mutable_metadata()->set_resource_version(absl::StrCat(++rv_));
    }
    Lease lease;
    if (!kube::ParseJson(r.body, &lease).ok()) return Code(400);
    if (lease.metadata().resource_version() !=
        it->second.metadata().resource_version()) {
      return Code(409);
    }
    lease.mutable_metadata()->set_resource_version(absl::StrCat(++rv_));
    it->second = lease;
    return Json(200, lease);
  }

  // The JSON patches renewals and releases send: tests of holderIdentity
  // and leaseTransitions (failing with 422 as the API does, also when the
  // field is missing), replace of renewTime, remove of holderIdentity and of
  // an annotation (422 when it is missing).
  FakeResponse Patch(const FakeRequest& r, Lease* stored)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto type = r.headers.find("content-type");
    if (type == r.headers.end() ||
        type->second != "application/json-patch+json") {
      return Code(415);
    }
    JsonPatch patch;
    if (!kube::ParseJson(absl::StrCat(R"({"ops":)", r.body, "}"), &patch)
             .ok()) {
      return Code(400);
    }
    Lease lease = *stored;
    for (const JsonPatchOp& op : patch.ops()) {
      const std::string& verb = op.op();
      const std::string& path = op.path();
      const google::protobuf::Value& value = op.value();
      if (verb == "test" && path == "/spec/holderIdentity") {
        if (lease.spec().holder_identity() != value.string_value()) {
          return Code(422);
        }
      } else if (verb == "test" && path == "/spec/leaseTransitions") {
        if (!lease.spec().has_lease_transitions() ||
            lease.spec().lease_transitions() != value.number_value()) {
          return Code(422);
        }
      } else if (verb == "replace" && path == "/spec/renewTime") {
        lease.mutable_spec()->set_renew_time(value.string_value());
      } else if (verb == "remove" && path == "/spec/holderIdentity") {
        lease.mutable_spec()->clear_holder_identity();
      } else if (verb == "remove" &&
                 absl::StartsWith(path, "/metadata/annotations/")) {
        std::string key = absl::StrReplaceAll(
            path.substr(sizeof("/metadata/annotations/") - 1),
            {{"~1", "/"}, {"~0", "~"}});
        if (lease.metadata().annotations().count(key) == 0) return Code(422);
        lease.mutable_metadata()->mutable_annotations()->erase(key);
      } else {
        return Code(400);
      }
    }
    lease.mutable_metadata()->set_resource_version(absl::StrCat(++rv_));
    *stored = lease;
    return Json(200, lease);
  }

  std::unique_ptr<kube::FakeApiServer> server_;
  std::unique_ptr<kube::HttpClient> http_;
  std::atomic<bool> failing_{false};
  absl::Mutex mu_;
  int rv_ ABSL_GUARDED_BY(mu_) = 100;
  std::map<std::string, Lease> leases_ ABSL_GUARDED_BY(mu_);
  int interfere_ ABSL_GUARDED_BY(mu_) = 0;
  std::function<void(Lease*)> meddle_ ABSL_GUARDED_BY(mu_);
};

NodeLeaseOptions Options(const std::string& identity,
                         absl::Duration duration = absl::Seconds(8)) {
  NodeLeaseOptions options;
  options.namespace_name = "ns";
  options.identity = identity;
  options.address = absl::StrCat("198.18.0.", identity == "a" ? 1 : 2, ":9000");
  options.lease_duration = duration;
  return options;
}

Lease HeldBy(const std::string& holder, absl::Time renewed, int transitions,
             int duration_seconds = 8) {
  Lease lease;
  lease.mutable_metadata()->set_name("capture-node-n1");
  (*lease.mutable_metadata()->mutable_annotations())[kLeaseAddressAnnotation] =
      "198.18.0.9:9000";
  lease.mutable_spec()->set_holder_identity(holder);
  lease.mutable_spec()->set_lease_duration_seconds(duration_seconds);
  lease.mutable_spec()->set_renew_time(FormatMicroTime(renewed));
  lease.mutable_spec()->set_lease_transitions(transitions);
  return lease;
}

// Methods of the requests after the first `skip`.
std::vector<std::string> MethodsAfter(LeaseApi& api, size_t skip) {
  std::vector<std::string> methods;
  std::vector<FakeRequest> requests = api.requests();
  for (size_t i = skip; i < requests.size(); ++i) {
    methods.push_back(requests[i].method);
  }
  return methods;
}

TEST(NodeLeaseName, ShortAndLong) {
  EXPECT_EQ(NodeLeaseName("node-1.example"), "capture-node-node-1.example");
  std::string long_a = std::string(120, 'a') + "." + std::string(132, 'b');
  std::string long_b =
      std::string(120, 'a') + "." + std::string(131, 'b') + "c";
  ASSERT_TRUE(kube::IsDns1123Subdomain(long_a));
  std::string a = NodeLeaseName(long_a), b = NodeLeaseName(long_b);
  EXPECT_LE(a.size(), 253u);
  EXPECT_TRUE(kube::IsDns1123Subdomain(a)) << a;
  EXPECT_TRUE(kube::IsDns1123Subdomain(b)) << b;
  EXPECT_NE(a, b);
  EXPECT_TRUE(absl::StartsWith(a, "capture-node-aaaa"));
}

TEST(NodeLeaseName, MicroTime) {
  absl::Time t = absl::FromUnixMicros(1796196600123456);  // 2026-12-02
  EXPECT_EQ(FormatMicroTime(t), "2026-12-02T07:30:00.123456Z");
}

TEST(NodeLeases, CreatesWhenAbsentAndRenews) {
  LeaseApi api;
  NodeLeases leases(api.http(), Options("a", absl::Seconds(1)));
  absl::StatusOr<LeaseHolder> got = leases.Acquire("n1");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->epoch, 0);
  EXPECT_EQ(got->identity, "a");
  EXPECT_TRUE(leases.Holds("n1"));
  Lease stored = api.Stored("capture-node-n1");
  EXPECT_EQ(stored.spec().holder_identity(), "a");
  EXPECT_EQ(stored.spec().lease_duration_seconds(), 1);
  EXPECT_EQ(stored.metadata().annotations().at(kLeaseAddressAnnotation),
            "198.18.0.1:9000");
  EXPECT_EQ(stored.spec().renew_time().size(),
            std::string("2026-12-02T07:30:00.123456Z").size());
  EXPECT_EQ(api.requests()[1].method, "POST");
  const std::string first_renew = stored.spec().renew_time();
  absl::SleepFor(absl::Milliseconds(1500));  // > lease_duration
  EXPECT_TRUE(leases.Holds("n1"));
  stored = api.Stored("capture-node-n1");
  EXPECT_GT(stored.spec().renew_time(), first_renew);
  EXPECT_EQ(stored.spec().lease_transitions(), 0);
  // Acquiring again while held is a renewal: same epoch.
  got = leases.Acquire("n1");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->epoch, 0);
}

TEST(NodeLeases, HeldByAnotherLiveReplica) {
  LeaseApi api;
  api.Put("capture-node-n1", HeldBy("b", absl::Now(), 4));
  NodeLeases leases(api.http(), Options("a"));
  LeaseHolder other;
  absl::StatusOr<LeaseHolder> got = leases.Acquire("n1", &other);
  EXPECT_TRUE(absl::IsFailedPrecondition(got.status())) << got.status();
  EXPECT_EQ(got.status().message(), "node n1 is held by b at 198.18.0.9:9000");
  EXPECT_EQ(other.identity, "b");
  EXPECT_EQ(other.address, "198.18.0.9:9000");
  EXPECT_FALSE(leases.Holds("n1"));
  EXPECT_EQ(api.Stored("capture-node-n1").spec().holder_identity(), "b");
}

TEST(NodeLeases, TakesOverAnExpiredLease) {
  LeaseApi api;
  const absl::Time renewed = absl::Now() - absl::Seconds(1);
  api.Put("capture-node-n1", HeldBy("b", renewed, 4));
  NodeLeaseOptions options = Options("a");
  absl::Time now = renewed + absl::Seconds(7);
  options.clock = [&now] { return now; };
  NodeLeases leases(api.http(), options);
  EXPECT_TRUE(absl::IsFailedPrecondition(leases.Acquire("n1").status()));
  // Past renewTime + 8s, but read unchanged for only 2 s of the 4 s (half
  // the duration) this replica waits by its own clock.
  now = renewed + absl::Seconds(9);
  EXPECT_TRUE(absl::IsFailedPrecondition(leases.Acquire("n1").status()));
  now = renewed + absl::Seconds(11);
  absl::StatusOr<LeaseHolder> got = leases.Acquire("n1");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->epoch, 5);
  Lease stored = api.Stored("capture-node-n1");
  EXPECT_EQ(stored.spec().holder_identity(), "a");
  EXPECT_EQ(stored.spec().lease_transitions(), 5);
  EXPECT_EQ(stored.spec().renew_time(), FormatMicroTime(now));
  EXPECT_EQ(stored.spec().acquire_time(), FormatMicroTime(now));
  // The takeover was a PUT with the resourceVersion read.
  std::vector<FakeRequest> requests = api.requests();
  ASSERT_EQ(requests.back().method, "PUT");
  EXPECT_TRUE(
      absl::StrContains(requests.back().body, "\"resourceVersion\":\"101\""))
      << requests.back().body;
}

// Expiry by the writer's renewTime alone trusts every replica's clock: one
// whose clock runs an hour ahead would take every live holder's lease. A
// lease is taken only once this replica has also seen it unchanged for half
// its duration on its own clock, which a holder renewing every third of it
// never allows.
TEST(NodeLeases, AClockAheadDoesNotTakeALiveHoldersLease) {
  LeaseApi api;
  api.Put("capture-node-n1", HeldBy("b", absl::Now(), 4, 2));
  NodeLeaseOptions options = Options("a", absl::Seconds(2));
  options.clock = [] { return absl::Now() + absl::Hours(1); };
  NodeLeases leases(api.http(), options);
  const absl::Time end = absl::Now() + absl::Seconds(3);
  int refused = 0;
  while (absl::Now() < end) {
    // b renews every third of its 2 s lease, by its own (right) clock.
    api.Put("capture-node-n1", HeldBy("b", absl::Now(), 4, 2));
    absl::StatusOr<LeaseHolder> got = leases.Acquire("n1");
    ASSERT_TRUE(absl::IsFailedPrecondition(got.status())) << got.status();
    ++refused;
    absl::SleepFor(absl::Milliseconds(600));
  }
  EXPECT_GE(refused, 4);
  EXPECT_EQ(api.Stored("capture-node-n1").spec().holder_identity(), "b");
  // Once b goes silent, a takes the lease after reading it unchanged for 1 s.
  api.Put("capture-node-n1", HeldBy("b", absl::Now(), 4, 2));
  EXPECT_TRUE(absl::IsFailedPrecondition(leases.Acquire("n1").status()));
  absl::SleepFor(absl::Milliseconds(500));
  EXPECT_TRUE(absl::IsFailedPrecondition(leases.Acquire("n1").status()));
  absl::SleepFor(absl::Milliseconds(700));
  absl::StatusOr<LeaseHolder> got = leases.Acquire("n1");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->epoch, 5);
}

// A replica that was killed renews nothing: the first other replica its
// agent reaches waits for the lease to expire and takes it, instead of
// sending the agent to the dead one.
TEST(NodeLeases, WaitsOutASilentHolder) {
  LeaseApi api;
  const absl::Time renewed = absl::Now() - absl::Seconds(1);
  api.Put("capture-node-n1", HeldBy("b", renewed, 4, 2));
  NodeLeaseOptions options = Options("a", absl::Seconds(2));
  options.wait_for_silent_holder = true;
  options.holder_poll = absl::Milliseconds(100);
  NodeLeases leases(api.http(), options);
  const absl::Time start = absl::Now();
  absl::StatusOr<LeaseHolder> got = leases.Acquire("n1");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->epoch, 5);
  // Expired at renewed + 2 s, about 1 s after the call.
  EXPECT_GE(absl::Now(), renewed + absl::Seconds(2));
  EXPECT_LT(absl::Now() - start, absl::Seconds(3));
  EXPECT_EQ(api.Stored("capture-node-n1").spec().holder_identity(), "a");
}

// A live holder renews within a third of its lease: the wait ends then,
// with the holder's address, long before the lease could expire.
TEST(NodeLeases, WaitForASilentHolderEndsWhenItRenews) {
  LeaseApi api;
  Lease lease = HeldBy("b", absl::Now(), 4);
  api.Put("capture-node-n1", lease);
  NodeLeaseOptions options = Options("a");
  options.wait_for_silent_holder = true;
  options.holder_poll = absl::Milliseconds(100);
  NodeLeases leases(api.http(), options);
  std::thread holder([&] {
    absl::SleepFor(absl::Milliseconds(500));
    Lease renewed = HeldBy("b", absl::Now(), 4);
    api.Put("capture-node-n1", renewed);
  });
  const absl::Time start = absl::Now();
  LeaseHolder other;
  absl::StatusOr<LeaseHolder> got = leases.Acquire("n1", &other);
  holder.join();
  EXPECT_TRUE(absl::IsFailedPrecondition(got.status())) << got.status();
  EXPECT_EQ(other.address, "198.18.0.9:9000");
  EXPECT_LT(absl::Now() - start, absl::Seconds(3));
  EXPECT_EQ(api.Stored("capture-node-n1").spec().holder_identity(), "b");
}

TEST(NodeLeases, ConflictRereadsOnceThenReports) {
  LeaseApi api;
  api.Put("capture-node-n1", HeldBy("b", absl::Now() - absl::Seconds(60), 1));
  NodeLeaseOptions options = Options("a");
  absl::Time now = absl::Now();
  options.clock = [&now] { return now; };
  NodeLeases leases(api.http(), options);
  // Expired, but first read just now: taken once read unchanged for 4 s.
  EXPECT_TRUE(absl::IsFailedPrecondition(leases.Acquire("n1").status()));
  now += absl::Seconds(5);
  // Someone else takes it between our read and our write.
  api.InterfereWithPuts(1, [](Lease* l) {
    l->mutable_spec()->set_holder_identity("c");
    l->mutable_spec()->set_renew_time(FormatMicroTime(absl::Now()));
  });
  LeaseHolder other;
  absl::StatusOr<LeaseHolder> got = leases.Acquire("n1", &other);
  EXPECT_TRUE(absl::IsFailedPrecondition(got.status())) << got.status();
  EXPECT_EQ(other.identity, "c");
  // Two conflicts in a row: Unavailable, nothing held.
  api.Put("capture-node-n1", HeldBy("b", absl::Now() - absl::Seconds(60), 1));
  EXPECT_TRUE(absl::IsFailedPrecondition(leases.Acquire("n1").status()));
  now += absl::Seconds(5);
  api.InterfereWithPuts(2, [](Lease* l) {  // (not the holder's renewal)
    (*l->mutable_metadata()->mutable_annotations())["touched"] = "yes";
  });
  got = leases.Acquire("n1");
  EXPECT_TRUE(absl::IsUnavailable(got.status())) << got.status();
  EXPECT_FALSE(leases.Holds("n1"));
}

TEST(NodeLeases, ReleaseLetsAnotherReplicaTakeAtOnce) {
  LeaseApi api;
  NodeLeases a(api.http(), Options("a"));
  NodeLeases b(api.http(), Options("b"));
  ASSERT_TRUE(a.Acquire("n1").ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(b.Acquire("n1").status()));
  const size_t before = api.requests().size();
  a.Release("n1");
  EXPECT_FALSE(a.Holds("n1"));
  EXPECT_EQ(api.Stored("capture-node-n1").spec().holder_identity(), "");
  EXPECT_EQ(api.Stored("capture-node-n1")
                .metadata()
                .annotations()
                .count(kLeaseAddressAnnotation),
            0u);
  EXPECT_EQ(MethodsAfter(api, before), std::vector<std::string>{"PATCH"});
  absl::StatusOr<LeaseHolder> got = b.Acquire("n1");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->epoch, 1);
  // And back: the epoch keeps growing with every change of writer.
  b.Release("n1");
  got = a.Acquire("n1");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->epoch, 2);
}

TEST(NodeLeases, ApiDownLosesTheLeaseAfterItsDuration) {
  LeaseApi api;
  NodeLeases leases(api.http(), Options("a", absl::Seconds(1)));
  absl::Mutex mu;
  std::vector<std::string> lost;
  leases.SetOnLost([&](const std::string& node) {
    absl::MutexLock lock(&mu);
    lost.push_back(node);
  });
  ASSERT_TRUE(leases.Acquire("n1").ok());
  const absl::Time down = absl::Now();
  api.set_failing(true);
  absl::SleepFor(absl::Milliseconds(500));
  EXPECT_TRUE(leases.Holds("n1"));  // a failed renewal is retried first
  {
    absl::MutexLock lock(&mu);
    auto one = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu) { return !lost.empty(); };
    ASSERT_TRUE(mu.AwaitWithTimeout(absl::Condition(&one), absl::Seconds(5)));
    EXPECT_EQ(lost, std::vector<std::string>{"n1"});
  }
  EXPECT_LT(absl::Now() - down, absl::Seconds(3));  // 1 s + a renewal tick
  EXPECT_FALSE(leases.Holds("n1"));
  EXPECT_TRUE(absl::IsUnavailable(leases.Acquire("n2").status()));
}

TEST(NodeLeases, RenewalFindsItTaken) {
  LeaseApi api;
  NodeLeases leases(api.http(), Options("a", absl::Seconds(1)));
  std::atomic<int> lost{0};
  leases.SetOnLost([&](const std::string&) { ++lost; });
  ASSERT_TRUE(leases.Acquire("n1").ok());
  api.Put("capture-node-n1", HeldBy("c", absl::Now(), 1));
  for (int i = 0; i < 50 && lost == 0; ++i)
    absl::SleepFor(absl::Milliseconds(50));
  EXPECT_EQ(lost, 1);
  EXPECT_FALSE(leases.Holds("n1"));
  EXPECT_EQ(api.Stored("capture-node-n1").spec().holder_identity(), "c");
}

TEST(NodeLeases, RenewalsPatchTheRenewTimeOfTheirOwnEpoch) {
  LeaseApi api;
  NodeLeases leases(api.http(), Options("a \"quoted\"", absl::Seconds(1)));
  ASSERT_TRUE(leases.Acquire("n1").ok());
  Lease stored = api.Stored("capture-node-n1");
  ASSERT_TRUE(stored.spec().has_lease_transitions());  // 0, written
  const size_t acquired = api.requests().size();
  // Another party writes something else of the lease (a new
  // resourceVersion): renewals do not depend on it.
  (*stored.mutable_metadata()->mutable_annotations())["team"] = "net";
  api.Put("capture-node-n1", stored);
  absl::SleepFor(absl::Milliseconds(1500));  // > lease_duration
  EXPECT_TRUE(leases.Holds("n1"));
  const std::vector<std::string> methods = MethodsAfter(api, acquired);
  ASSERT_GE(methods.size(), 3u);
  for (const std::string& method : methods) EXPECT_EQ(method, "PATCH");
  const FakeRequest patch = api.requests().back();
  EXPECT_EQ(patch.target, absl::StrCat(kBase, "/capture-node-n1"));
  EXPECT_TRUE(absl::StrContains(
      patch.body,
      R"({"op":"test","path":"/spec/holderIdentity","value":"a \"quoted\""})"))
      << patch.body;
  EXPECT_TRUE(absl::StrContains(
      patch.body, R"({"op":"test","path":"/spec/leaseTransitions","value":0})"))
      << patch.body;
  stored = api.Stored("capture-node-n1");
  EXPECT_GT(stored.spec().renew_time(),
            FormatMicroTime(absl::Now() - absl::Seconds(1)));
  EXPECT_EQ(stored.metadata().annotations().at("team"), "net");
}

TEST(NodeLeases, ALeaseWithoutTransitionsIsRenewedByAnUpdate) {
  // Written by an earlier version, which left leaseTransitions out when it
  // was 0: the patch's test fails, the lease is read, still ours, and
  // updated whole, with the field; later renewals patch again.
  LeaseApi api;
  NodeLeases leases(api.http(), Options("a", absl::Seconds(1)));
  std::atomic<int> lost{0};
  leases.SetOnLost([&](const std::string&) { ++lost; });
  ASSERT_TRUE(leases.Acquire("n1").ok());
  Lease old = api.Stored("capture-node-n1");
  old.mutable_spec()->clear_lease_transitions();
  api.Put("capture-node-n1", old);
  const size_t before = api.requests().size();
  absl::SleepFor(absl::Milliseconds(1500));
  EXPECT_EQ(lost, 0);
  EXPECT_TRUE(leases.Holds("n1"));
  const std::vector<std::string> methods = MethodsAfter(api, before);
  ASSERT_GE(methods.size(), 4u);
  EXPECT_EQ(std::vector<std::string>(methods.begin(), methods.begin() + 4),
            (std::vector<std::string>{"PATCH", "GET", "PUT", "PATCH"}));
  Lease stored = api.Stored("capture-node-n1");
  EXPECT_TRUE(stored.spec().has_lease_transitions());
  EXPECT_EQ(stored.spec().holder_identity(), "a");
}

TEST(NodeLeases, ReleaseReadsTheLeaseWhenItIsNotAsWritten) {
  LeaseApi api;
  NodeLeases a(api.http(), Options("a"));
  ASSERT_TRUE(a.Acquire("n1").ok());
  // Someone removed the address annotation: the patch fails, the Lease is
  // read, still a's, and updated whole.
  Lease changed = api.Stored("capture-node-n1");
  changed.mutable_metadata()->mutable_annotations()->clear();
  api.Put("capture-node-n1", changed);
  size_t before = api.requests().size();
  a.Release("n1");
  EXPECT_EQ(MethodsAfter(api, before),
            (std::vector<std::string>{"PATCH", "GET", "PUT"}));
  EXPECT_EQ(api.Stored("capture-node-n1").spec().holder_identity(), "");
  // Taken by another replica meanwhile: read, and left alone.
  ASSERT_TRUE(a.Acquire("n1").ok());
  api.Put("capture-node-n1", HeldBy("c", absl::Now(), 9));
  before = api.requests().size();
  a.Release("n1");
  EXPECT_EQ(MethodsAfter(api, before),
            (std::vector<std::string>{"PATCH", "GET"}));
  EXPECT_EQ(api.Stored("capture-node-n1").spec().holder_identity(), "c");
}

TEST(NodeLeases, RejectsBadNodeNames) {
  LeaseApi api;
  NodeLeases leases(api.http(), Options("a"));
  EXPECT_TRUE(absl::IsInvalidArgument(leases.Acquire("../x").status()));
  EXPECT_TRUE(absl::IsInvalidArgument(leases.Acquire("").status()));
  NodeLeaseOptions options = Options("a");
  options.namespace_name = "ns/../x";
  NodeLeases bad_namespace(api.http(), options);
  EXPECT_TRUE(absl::IsInvalidArgument(bad_namespace.Acquire("n1").status()));
  EXPECT_TRUE(api.requests().empty());
}

}  // namespace
}  // namespace pc::aggregator
