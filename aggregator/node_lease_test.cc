#include "aggregator/node_lease.h"

#include <algorithm>
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
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
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
  // Requests about Lease `name` wait until Open() (a slow or stuck API call).
  void Hold(const std::string& name) {
    absl::MutexLock lock(&mu_);
    held_ = name;
  }
  // Whether a request about the held Lease is waiting, within `timeout`.
  bool AwaitHeldRequest(absl::Duration timeout) {
    return held_request_.WaitForNotificationWithTimeout(timeout);
  }
  void Open() { opened_.Notify(); }

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
    bool held;
    {
      absl::MutexLock lock(&mu_);
      held = !held_.empty() && absl::EndsWith(r.target, "/" + held_);
    }
    if (held) {
      if (!held_request_.HasBeenNotified()) held_request_.Notify();
      opened_.WaitForNotification();
    }
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
      } else if (verb == "test" &&
                 absl::StartsWith(path, "/metadata/annotations/")) {
        auto it = lease.metadata().annotations().find(AnnotationKey(path));
        if (it == lease.metadata().annotations().end() ||
            it->second != value.string_value()) {
          return Code(422);
        }
      } else if (verb == "replace" && path == "/spec/renewTime") {
        lease.mutable_spec()->set_renew_time(value.string_value());
      } else if (verb == "remove" && path == "/spec/holderIdentity") {
        lease.mutable_spec()->clear_holder_identity();
      } else if (verb == "remove" &&
                 absl::StartsWith(path, "/metadata/annotations/")) {
        const std::string key = AnnotationKey(path);
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

  static std::string AnnotationKey(const std::string& path) {
    return absl::StrReplaceAll(
        path.substr(sizeof("/metadata/annotations/") - 1),
        {{"~1", "/"}, {"~0", "~"}});
  }

  std::unique_ptr<kube::FakeApiServer> server_;
  std::unique_ptr<kube::HttpClient> http_;
  std::atomic<bool> failing_{false};
  absl::Mutex mu_;
  int rv_ ABSL_GUARDED_BY(mu_) = 100;
  std::map<std::string, Lease> leases_ ABSL_GUARDED_BY(mu_);
  int interfere_ ABSL_GUARDED_BY(mu_) = 0;
  std::function<void(Lease*)> meddle_ ABSL_GUARDED_BY(mu_);
  std::string held_ ABSL_GUARDED_BY(mu_);
  absl::Notification held_request_, opened_;
};

// With the default node_lease_duration: 5 x `duration`. Tests of node Lease
// renewals pass `node` = `duration`, so that they come every third of it.
NodeLeaseOptions Options(const std::string& identity,
                         absl::Duration duration = absl::Seconds(8),
                         absl::Duration node = absl::ZeroDuration()) {
  NodeLeaseOptions options;
  options.node_lease_duration = node;
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

// The nodes a NodeLeases reports lost, as its renewal thread reports them.
class LostNodes {
 public:
  explicit LostNodes(NodeLeases& leases) : leases_(leases) {
    leases_.SetOnLost([this](const std::string& node) {
      absl::MutexLock lock(&mu_);
      nodes_.push_back(node);
    });
  }
  ~LostNodes() { leases_.SetOnLost(nullptr); }
  // Whether `n` nodes were reported within `timeout`.
  bool Await(size_t n, absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    auto enough = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
      return nodes_.size() >= n;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&enough), timeout);
  }
  std::vector<std::string> Sorted() {
    absl::MutexLock lock(&mu_);
    std::vector<std::string> sorted = nodes_;
    std::sort(sorted.begin(), sorted.end());
    return sorted;
  }

 private:
  NodeLeases& leases_;
  absl::Mutex mu_;
  std::vector<std::string> nodes_ ABSL_GUARDED_BY(mu_);
};

// Requests after the first `skip` about Lease `name` (all when empty).
std::vector<FakeRequest> RequestsAfter(LeaseApi& api, size_t skip,
                                       const std::string& name = "") {
  std::vector<FakeRequest> about;
  std::vector<FakeRequest> requests = api.requests();
  for (size_t i = skip; i < requests.size(); ++i) {
    if (name.empty() || requests[i].target == absl::StrCat(kBase, "/", name)) {
      about.push_back(requests[i]);
    }
  }
  return about;
}

// Their methods.
std::vector<std::string> MethodsAfter(LeaseApi& api, size_t skip,
                                      const std::string& name = "") {
  std::vector<std::string> methods;
  for (const FakeRequest& r : RequestsAfter(api, skip, name)) {
    methods.push_back(r.method);
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
  NodeLeases leases(api.http(),
                    Options("a", absl::Seconds(1), absl::Seconds(1)));
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
  // The replica Lease, then the node's: each read, then created.
  const std::vector<std::string> methods = MethodsAfter(api, 0);
  ASSERT_GE(methods.size(), 4u);
  EXPECT_EQ(std::vector<std::string>(methods.begin(), methods.begin() + 4),
            (std::vector<std::string>{"GET", "POST", "GET", "POST"}));
  EXPECT_EQ(api.Stored("capture-replica-a").spec().holder_identity(), "a");
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
  EXPECT_EQ(MethodsAfter(api, before, "capture-node-n1"),
            std::vector<std::string>{"PATCH"});
  absl::StatusOr<LeaseHolder> got = b.Acquire("n1");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->epoch, 1);
  // And back: the epoch keeps growing with every change of writer.
  b.Release("n1");
  got = a.Acquire("n1");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->epoch, 2);
}

// An agent reconnecting to the replica that released its node: one PUT on
// the Lease as the release left it, no GET first. Written by another
// replica since (or deleted), the PUT fails and the Lease is read after all.
TEST(NodeLeases, RetakingALeaseItReleasedIsOneWrite) {
  LeaseApi api;
  NodeLeases a(api.http(), Options("a"));
  NodeLeases b(api.http(), Options("b"));
  ASSERT_TRUE(a.Acquire("n1").ok());
  a.Release("n1");
  size_t before = api.requests().size();
  absl::StatusOr<LeaseHolder> got = a.Acquire("n1");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->epoch, 1);
  EXPECT_EQ(MethodsAfter(api, before, "capture-node-n1"),
            std::vector<std::string>{"PUT"});
  EXPECT_EQ(api.Stored("capture-node-n1").spec().holder_identity(), "a");

  // b takes and releases it meanwhile: a's PUT is refused (409).
  a.Release("n1");
  ASSERT_TRUE(b.Acquire("n1").ok());
  b.Release("n1");
  before = api.requests().size();
  got = a.Acquire("n1");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->epoch, 3);
  EXPECT_EQ(MethodsAfter(api, before, "capture-node-n1"),
            (std::vector<std::string>{"PUT", "GET", "PUT"}));

  // b holds it meanwhile: a learns so from the read.
  a.Release("n1");
  ASSERT_TRUE(b.Acquire("n1").ok());
  LeaseHolder other;
  EXPECT_TRUE(absl::IsFailedPrecondition(a.Acquire("n1", &other).status()));
  EXPECT_EQ(other.identity, "b");
}

TEST(NodeLeases, ApiDownLosesTheLeaseAfterItsDuration) {
  LeaseApi api;
  NodeLeases leases(api.http(), Options("a", absl::Seconds(1)));
  LostNodes lost(leases);
  ASSERT_TRUE(leases.Acquire("n1").ok());
  const absl::Time down = absl::Now();
  api.set_failing(true);
  absl::SleepFor(absl::Milliseconds(500));
  EXPECT_TRUE(leases.Holds("n1"));  // a failed renewal is retried first
  ASSERT_TRUE(lost.Await(1, absl::Seconds(5)));
  EXPECT_EQ(lost.Sorted(), std::vector<std::string>{"n1"});
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
  NodeLeases leases(
      api.http(), Options("a \"quoted\"", absl::Seconds(1), absl::Seconds(1)));
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
  const std::vector<FakeRequest> renewals =
      RequestsAfter(api, acquired, "capture-node-n1");
  ASSERT_GE(renewals.size(), 3u);
  for (const FakeRequest& r : renewals) EXPECT_EQ(r.method, "PATCH");
  const FakeRequest patch = renewals.back();
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
  NodeLeases leases(api.http(),
                    Options("a", absl::Seconds(1), absl::Seconds(1)));
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
  const std::vector<std::string> methods =
      MethodsAfter(api, before, "capture-node-n1");
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
  EXPECT_EQ(MethodsAfter(api, before, "capture-node-n1"),
            (std::vector<std::string>{"PATCH", "GET", "PUT"}));
  EXPECT_EQ(api.Stored("capture-node-n1").spec().holder_identity(), "");
  // Taken by another replica meanwhile: read, and left alone.
  ASSERT_TRUE(a.Acquire("n1").ok());
  api.Put("capture-node-n1", HeldBy("c", absl::Now(), 9));
  before = api.requests().size();
  a.Release("n1");
  EXPECT_EQ(MethodsAfter(api, before, "capture-node-n1"),
            (std::vector<std::string>{"PATCH", "GET"}));
  EXPECT_EQ(api.Stored("capture-node-n1").spec().holder_identity(), "c");
}

// Liveness is the replica's own Lease: one renewal a period however many
// nodes it holds; node Leases last 5 x as long and are renewed 5 x less.
TEST(NodeLeases, OneReplicaRenewalPerPeriodForManyNodes) {
  LeaseApi api;
  NodeLeases leases(api.http(), Options("a", absl::Seconds(1)));
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(leases.Acquire(absl::StrCat("n", i)).ok());
  }
  const Lease replica = api.Stored("capture-replica-a");
  const std::string incarnation =
      replica.metadata().annotations().at(kLeaseIncarnationAnnotation);
  EXPECT_EQ(incarnation.size(), 16u);
  EXPECT_EQ(replica.spec().lease_duration_seconds(), 1);
  const Lease node = api.Stored("capture-node-n3");
  EXPECT_EQ(node.spec().lease_duration_seconds(), 5);
  EXPECT_EQ(node.metadata().annotations().at(kLeaseIncarnationAnnotation),
            incarnation);
  const size_t before = api.requests().size();
  absl::SleepFor(absl::Milliseconds(1200));  // > lease_duration
  for (int i = 0; i < 10; ++i) EXPECT_TRUE(leases.Holds(absl::StrCat("n", i)));
  const std::vector<FakeRequest> after = RequestsAfter(api, before);
  const std::vector<FakeRequest> renewals =
      RequestsAfter(api, before, "capture-replica-a");
  EXPECT_EQ(after.size(), renewals.size());  // no node Lease was written
  ASSERT_GE(renewals.size(), 3u);
  for (const FakeRequest& r : renewals) EXPECT_EQ(r.method, "PATCH");
  EXPECT_TRUE(absl::StrContains(
      renewals.back().body,
      absl::StrCat(R"({"op":"test","path":"/metadata/annotations/)",
                   R"(packetcapture.antrea.io~1incarnation","value":")",
                   incarnation, R"("})")))
      << renewals.back().body;
  EXPECT_GT(api.Stored("capture-replica-a").spec().renew_time(),
            replica.spec().renew_time());
}

// A replica killed with its node Leases still valid (5 s here): another
// one takes them once the replica Lease has expired (1 s) and been read
// unchanged for half of it, not after the node Leases' 5 s. While the
// holder lives, it keeps them.
TEST(NodeLeases, AHolderWhoseReplicaLeaseExpiredIsTakenOver) {
  LeaseApi api;
  auto a =
      std::make_unique<NodeLeases>(api.http(), Options("a", absl::Seconds(1)));
  ASSERT_TRUE(a->Acquire("n1").ok());
  NodeLeaseOptions options = Options("b", absl::Seconds(1));
  options.wait_for_silent_holder = true;
  options.holder_poll = absl::Milliseconds(100);
  NodeLeases b(api.http(), options);
  absl::SleepFor(absl::Milliseconds(1500));  // past a's replica lease_duration
  LeaseHolder other;
  EXPECT_TRUE(absl::IsFailedPrecondition(b.Acquire("n1", &other).status()));
  EXPECT_EQ(other.identity, "a");
  EXPECT_EQ(other.address, "198.18.0.1:9000");
  a.reset();  // dies: stops renewing, releases nothing
  const absl::Time died = absl::Now();
  absl::StatusOr<LeaseHolder> got = b.Acquire("n1");
  ASSERT_TRUE(got.ok()) << got.status();
  const absl::Duration took = absl::Now() - died;
  EXPECT_EQ(got->epoch, 1);
  EXPECT_GE(took, absl::Milliseconds(500)) << took;
  EXPECT_LT(took, absl::Seconds(4)) << took;  // the node Lease said 5 s
  EXPECT_EQ(api.Stored("capture-node-n1").spec().holder_identity(), "b");
}

// A replica restarted under the same identity takes its replica Lease with
// a new incarnation at its first Acquire: the nodes the dead process held
// are free at once for every replica.
TEST(NodeLeases, ARestartedReplicasOldNodesAreFreeAtOnce) {
  LeaseApi api;
  auto a = std::make_unique<NodeLeases>(api.http(), Options("a"));
  ASSERT_TRUE(a->Acquire("n1").ok());
  a.reset();
  NodeLeases b(api.http(), Options("b"));
  EXPECT_TRUE(absl::IsFailedPrecondition(b.Acquire("n1").status()));
  NodeLeases a2(api.http(), Options("a"));
  ASSERT_TRUE(a2.Acquire("n2").ok());
  absl::StatusOr<LeaseHolder> got = b.Acquire("n1");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->epoch, 1);
}

// Another process wrote this replica's Lease (same identity, a new
// incarnation): every node is dropped and reported; the next Acquire takes
// the replica Lease again, with an incarnation of its own and new epochs.
TEST(NodeLeases, LosingTheReplicaLeaseDropsEveryNode) {
  LeaseApi api;
  NodeLeases a(api.http(), Options("a", absl::Seconds(1)));
  LostNodes lost(a);
  ASSERT_TRUE(a.Acquire("n1").ok());
  ASSERT_TRUE(a.Acquire("n2").ok());
  Lease replica = api.Stored("capture-replica-a");
  const std::string first =
      replica.metadata().annotations().at(kLeaseIncarnationAnnotation);
  (*replica.mutable_metadata()
        ->mutable_annotations())[kLeaseIncarnationAnnotation] = "another";
  api.Put("capture-replica-a", replica);
  ASSERT_TRUE(lost.Await(2, absl::Seconds(3)));
  EXPECT_EQ(lost.Sorted(), (std::vector<std::string>{"n1", "n2"}));
  EXPECT_FALSE(a.Holds("n1"));
  EXPECT_FALSE(a.Holds("n2"));
  absl::StatusOr<LeaseHolder> got = a.Acquire("n1");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->epoch, 1);
  const std::string second = api.Stored("capture-replica-a")
                                 .metadata()
                                 .annotations()
                                 .at(kLeaseIncarnationAnnotation);
  EXPECT_NE(second, first);
  EXPECT_NE(second, "another");
  EXPECT_EQ(api.Stored("capture-node-n1")
                .metadata()
                .annotations()
                .at(kLeaseIncarnationAnnotation),
            second);
}

// An API call about one node's Lease that hangs (up to the client's 30 s
// timeout) holds up only that node: other nodes are taken, and the replica
// Lease and the held node Leases are renewed meanwhile, so the replica does
// not lose every node to one slow request.
TEST(NodeLeases, ASlowCallAboutOneNodeHoldsUpNoOther) {
  LeaseApi api;
  // Replica Lease renewed every 2/3 s, lost after 2 s without a renewal.
  NodeLeases a(api.http(), Options("a", absl::Seconds(2), absl::Seconds(2)));
  LostNodes lost(a);
  ASSERT_TRUE(a.Acquire("n0").ok());
  api.Hold("capture-node-slow");
  std::thread slow([&] { EXPECT_TRUE(a.Acquire("slow").ok()); });
  ASSERT_TRUE(api.AwaitHeldRequest(absl::Seconds(10)));
  absl::Notification fast_done;
  absl::StatusOr<LeaseHolder> fast = absl::UnknownError("not run");
  std::thread fast_thread([&] {
    fast = a.Acquire("fast");
    fast_done.Notify();
  });
  const bool fast_in_time =
      fast_done.WaitForNotificationWithTimeout(absl::Seconds(1));
  // Longer than the replica Lease's duration.
  absl::SleepFor(absl::Seconds(3));
  const bool n0_held = a.Holds("n0");
  api.Open();
  slow.join();
  fast_thread.join();
  EXPECT_TRUE(fast_in_time) << "node fast waited for node slow's API call";
  EXPECT_TRUE(fast.ok()) << fast.status();
  EXPECT_TRUE(n0_held) << "renewals waited for node slow's API call";
  EXPECT_TRUE(lost.Sorted().empty());
  EXPECT_TRUE(a.Holds("slow"));
  EXPECT_TRUE(a.Holds("fast"));
}

// A node Lease's renewal that hangs does not hold up the replica Lease's,
// which every held node depends on.
TEST(NodeLeases, ASlowNodeRenewalDoesNotDelayTheReplicaLeases) {
  LeaseApi api;
  // Replica Lease: 2 s, renewed every 2/3 s; node Leases: 10 s, renewed
  // about every 3 s.
  NodeLeases a(api.http(), Options("a", absl::Seconds(2)));
  LostNodes lost(a);
  ASSERT_TRUE(a.Acquire("n0").ok());
  ASSERT_TRUE(a.Acquire("n1").ok());
  api.Hold("capture-node-n0");
  ASSERT_TRUE(api.AwaitHeldRequest(absl::Seconds(10)));  // n0's renewal
  absl::SleepFor(absl::Seconds(3));  // longer than the replica Lease's 2 s
  const bool n1_held = a.Holds("n1");
  api.Open();
  EXPECT_TRUE(n1_held) << "the replica Lease waited for n0's renewal";
  absl::SleepFor(absl::Seconds(1));
  EXPECT_TRUE(lost.Sorted().empty());
  EXPECT_TRUE(a.Holds("n0"));
  EXPECT_TRUE(a.Holds("n1"));
}

// SetOnLost returns only once a callback already running has returned, so
// the owner of the old callback (the store) may be destroyed right after.
TEST(NodeLeases, SetOnLostWaitsForARunningCallback) {
  LeaseApi api;
  NodeLeases a(api.http(), Options("a", absl::Seconds(2)));
  ASSERT_TRUE(a.Acquire("n0").ok());
  absl::Notification in_callback, finish_callback;
  std::atomic<bool> callback_done{false};
  a.SetOnLost([&](const std::string&) {
    in_callback.Notify();
    finish_callback.WaitForNotification();
    callback_done = true;
  });
  api.set_failing(true);  // the replica Lease is lost after 2 s
  ASSERT_TRUE(in_callback.WaitForNotificationWithTimeout(absl::Seconds(10)));
  std::thread finisher([&] {
    absl::SleepFor(absl::Milliseconds(300));
    finish_callback.Notify();
  });
  a.SetOnLost(nullptr);
  EXPECT_TRUE(callback_done) << "SetOnLost returned while the old callback ran";
  finisher.join();
}

TEST(ReplicaLeaseName, AnIdentityThatIsNoNameIsHashed) {
  EXPECT_EQ(ReplicaLeaseName("aggregator-0"), "capture-replica-aggregator-0");
  const std::string hashed = ReplicaLeaseName("Replica A");
  EXPECT_TRUE(kube::IsDns1123Subdomain(hashed)) << hashed;
  EXPECT_EQ(hashed.size(), std::string("capture-replica-").size() + 16);
  EXPECT_NE(hashed, ReplicaLeaseName("Replica B"));
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
