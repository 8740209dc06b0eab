// One writer per node among aggregator replicas: a coordination.k8s.io/v1
// Lease per node, "capture-node-<node>" in one namespace (shortened with a
// hash past 253 characters), holderIdentity = this replica's id, annotation
// packetcapture.antrea.io/address = the replica's advertised host:port.
// Every write carries the resourceVersion read, so of two replicas racing for
// a node one gets 409 and loses. Taking a node's Lease from anyone (or from
// an earlier incarnation of this replica) adds one to leaseTransitions,
// which is the node's epoch: a fencing number that grows with every change
// of writer.
//
// A replica's liveness is one Lease of its own, "capture-replica-<id>",
// renewed every lease_duration / 3 and annotated with the incarnation (a
// random number per process, new after every loss) that its node Leases
// name too. So 100 held nodes cost one renewal per period, not 100 (which
// were ~37 a second and a tenth of a replica's CPU). Node Leases say
// leaseDurationSeconds = 5 x lease_duration and are renewed every third of
// that, which keeps them valid for readers that judge only the node Lease
// and notices a Lease someone else wrote.
//
// A node Lease held by another replica is free when it has no holder; or
// when it names an incarnation and its holder's replica Lease names another
// one (the holder restarted) or has expired; or when the node Lease itself
// has expired. Expired means renewTime + leaseDurationSeconds has passed
// and this replica has also read that Lease unchanged for half of
// lease_duration by its own clock (else a replica whose clock runs ahead
// would take live holders' nodes). A replica Lease that is absent decides
// nothing: then only the node Lease's own expiry counts.
//
// A replica that cannot renew its replica Lease within lease_duration (API
// down), or finds that another process wrote it, drops every node; a node
// Lease that cannot be renewed in its own duration, or that someone else
// took, is dropped alone. Both are reported through on_lost.
//
// Thread-safe. Calls about one node's Lease are serialized; those about
// different nodes, and the replica Lease's renewals, run concurrently, so
// one slow API request (up to the client's timeout) delays only its own
// node, not every takeover and not the renewals that keep every node.
#ifndef AGGREGATOR_NODE_LEASE_H_
#define AGGREGATOR_NODE_LEASE_H_

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "aggregator/lease_types.pb.h"
#include "aggregator/node_ownership.h"
#include "common/kube/http_client.h"

namespace pc::aggregator {

inline constexpr char kLeaseAddressAnnotation[] =
    "packetcapture.antrea.io/address";
inline constexpr char kLeaseIncarnationAnnotation[] =
    "packetcapture.antrea.io/incarnation";
// A node Lease's duration, in replica lease durations.
inline constexpr int kNodeLeaseDurationFactor = 5;

struct NodeLeaseOptions {
  std::string namespace_name, identity, address;
  absl::Duration lease_duration = absl::Seconds(8);
  // Node Leases' leaseDurationSeconds; zero: kNodeLeaseDurationFactor x
  // lease_duration. Never below lease_duration.
  absl::Duration node_lease_duration = absl::ZeroDuration();
  std::function<absl::Time()> clock;  // absl::Now when empty
  // Acquire of a node whose holder does not renew its lease waits (up to
  // lease_duration) for the lease to expire and takes it, re-reading it
  // every holder_poll; a renewal seen meanwhile ends the wait with
  // FailedPrecondition. So an agent whose replica died is taken by the
  // first other replica it reaches, without a round of redirects to the
  // dead one. Off: FailedPrecondition at once.
  bool wait_for_silent_holder = false;
  absl::Duration holder_poll = absl::Milliseconds(500);
};

// The Lease's name for `node`: "capture-node-<node>", or, past 253
// characters, a prefix of it + "-" + 16 hex digits of the node's SHA-256.
std::string NodeLeaseName(const std::string& node);

// The replica Lease's name for `identity`: "capture-replica-<identity>", or,
// when that is no DNS subdomain, "capture-replica-" + 16 hex digits of the
// identity's SHA-256.
std::string ReplicaLeaseName(const std::string& identity);

// MicroTime as the API writes it: "2026-12-02T07:30:00.123456Z".
std::string FormatMicroTime(absl::Time t);

class NodeLeases final : public NodeOwnership {
 public:
  NodeLeases(kube::HttpClient* http, NodeLeaseOptions options);
  ~NodeLeases() override;  // stops renewing; does not release
  NodeLeases(const NodeLeases&) = delete;
  NodeLeases& operator=(const NodeLeases&) = delete;

  // Takes (create / free or expired / already ours) the node's lease and
  // keeps renewing it until Release. FailedPrecondition("node N is held by R
  // at ADDR") + *other filled when another identity holds an unexpired lease;
  // Unavailable when the API fails; InvalidArgument for a bad node name.
  absl::StatusOr<LeaseHolder> Acquire(const std::string& node,
                                      LeaseHolder* other = nullptr) override;
  // Stops renewing and clears holderIdentity (and the address), so another
  // replica can take the node at once: one patch that tests holder and
  // epoch, or, if that fails, a read and a whole update if still ours.
  void Release(const std::string& node) override;
  // Held; the replica Lease renewed within lease_duration and the node's
  // within its own duration.
  bool Holds(const std::string& node) const override;
  // Called (from a renewal thread, no lock held) for each node lost: its
  // Lease was taken or not renewed in time, or the replica Lease was.
  // Returns once no call of the callback it replaces is running (so the
  // callback must not call it).
  void SetOnLost(std::function<void(const std::string& node)> on_lost) override;

 private:
  struct Held {
    int64_t epoch = 0;
    absl::Time renewed = absl::InfinitePast();
  };
  enum class Fetch { kFound, kAbsent };
  // Another replica's lease as this one last read it, and since when (by
  // this replica's clock) it has read it so.
  struct Observed {
    std::string holder, renew_time;
    int64_t transitions = 0;
    absl::Time since = absl::InfinitePast();
  };

  // What another replica's Lease of its own says about a node Lease it holds.
  enum class Liveness { kLive, kGone, kUnknown };

  absl::Time Now() const;
  std::string Path(const std::string& name) const;
  absl::StatusOr<Fetch> Get(const std::string& name, Lease* lease);
  // PUT (or POST when `create`); 409 -> Aborted. *lease becomes the answer.
  absl::Status Write(const std::string& name, bool create, Lease* lease);
  // Acquire without waiting for a silent holder; *renewed is the holder's
  // renewTime when another replica holds the node. Takes the node's mutex.
  absl::StatusOr<LeaseHolder> AcquireOnce(const std::string& node,
                                          LeaseHolder* other,
                                          std::string* renewed);
  // What one Acquire round knows of the replica Lease and of the node.
  struct AcquireContext {
    std::string node, name;  // the node and its Lease's name
    std::string incarnation;
    uint64_t generation = 0;  // replica_generation_ when it was read
    bool ours = false;        // held_ had the node
  };
  // One read-decide-write round of Acquire; Aborted on a write conflict.
  // The caller holds the node's mutex.
  absl::StatusOr<LeaseHolder> TryAcquire(const AcquireContext& context,
                                         LeaseHolder* other,
                                         std::string* renewed);
  // A JSON patch of `ops` (comma-separated operations) that first tests
  // that holderIdentity is ours, then `test` (one operation). The response
  // as it came; FailedPrecondition when the identity cannot be written.
  absl::StatusOr<kube::HttpResponse> PatchIfHolder(absl::string_view test,
                                                   absl::string_view ops,
                                                   const std::string& name);
  // PatchIfHolder testing that leaseTransitions is still `epoch`.
  absl::StatusOr<kube::HttpResponse> PatchIfOurs(int64_t epoch,
                                                 absl::string_view ops,
                                                 const std::string& name);
  // PATCH of renewTime if holderIdentity and leaseTransitions are still
  // ours: Aborted when a test failed or the write conflicted, NotFound when
  // the lease is gone.
  absl::Status PatchRenewTime(const std::string& name, int64_t epoch,
                              absl::Time now);
  // How long this replica has read `spec` (another replica's lease `name`)
  // unchanged: zero when it differs from the last read.
  absl::Duration UnchangedFor(const std::string& name, const LeaseSpec& spec)
      ABSL_LOCKS_EXCLUDED(cache_mu_);
  // Forgets what was read of `name` (it is ours now).
  void Forget(const std::string& name) ABSL_LOCKS_EXCLUDED(cache_mu_);
  // Creates or overwrites this replica's own Lease with a new incarnation,
  // unless it is held and fresh.
  absl::Status EnsureReplicaLease() ABSL_EXCLUSIVE_LOCKS_REQUIRED(replica_mu_);
  // Patches its renewTime, testing holder and incarnation; false when it is
  // lost (another process wrote it, or not renewed within lease_duration).
  bool RenewReplicaLease() ABSL_EXCLUSIVE_LOCKS_REQUIRED(replica_mu_);
  // For a node Lease held by another replica: kGone when it names an
  // incarnation that the holder's replica Lease no longer names, or that
  // Lease has expired (see the file comment); kUnknown without a replica
  // Lease or an incarnation. *renewed: the replica Lease's renewTime.
  absl::StatusOr<Liveness> HolderLiveness(const Lease& node_lease,
                                          std::string* renewed);
  // Keeps `lease` (named `name`, as a release left it) in released_.
  void KeepReleased(const std::string& name, Lease lease)
      ABSL_LOCKS_EXCLUDED(cache_mu_);
  // Takes `name`'s entry out of released_, if any.
  std::optional<Lease> TakeReleased(const std::string& name)
      ABSL_LOCKS_EXCLUDED(cache_mu_);
  // Whether a read Lease is still the one we hold at `epoch`.
  bool Ours(Fetch fetch, const Lease& lease, int64_t epoch) const;
  // Renews one held lease; false when it is lost (taken, or not renewed in
  // time). The caller holds the node's mutex.
  bool Renew(const std::string& node);
  // The mutex that serializes the calls about `node`'s Lease (one of
  // kNodeMutexes, by a hash of the name).
  absl::Mutex& NodeMutex(const std::string& node);
  // The on_lost callback for nodes about to be reported, counted as running
  // until FinishOnLost.
  std::function<void(const std::string&)> StartOnLost()
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Calls `on_lost` (from StartOnLost) for each of `nodes`.
  void FinishOnLost(const std::function<void(const std::string&)>& on_lost,
                    const std::vector<std::string>& nodes)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Whether Stop came, waiting for it up to `timeout`.
  bool AwaitStop(absl::Duration timeout) ABSL_LOCKS_EXCLUDED(mu_);
  // The replica Lease's renewals, on a thread of their own: a node Lease's
  // request that hangs (up to the client's timeout) does not delay them.
  void ReplicaRenewLoop();
  void NodeRenewLoop();

  kube::HttpClient* const http_;
  const NodeLeaseOptions options_;
  const int32_t duration_seconds_;       // the replica Lease's
  const int32_t node_duration_seconds_;  // node Leases'
  const std::string replica_lease_;
  // `[{"op":"test","path":"/spec/holderIdentity","value":"<identity>"},`
  std::string holder_test_;

  // Lock order: a node's mutex, replica_mu_, cache_mu_, mu_. No API call
  // is made under cache_mu_ or mu_.
  static constexpr size_t kNodeMutexes = 64;
  std::array<absl::Mutex, kNodeMutexes> node_mu_;
  // Serializes the replica Lease's writes.
  absl::Mutex replica_mu_ ABSL_ACQUIRED_BEFORE(cache_mu_, mu_);
  absl::Mutex cache_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  // Other replicas' leases as last read (nodes this replica was asked for).
  std::map<std::string, Observed> observed_ ABSL_GUARDED_BY(cache_mu_);
  // Node Leases as this replica's releases left them (the answer to the
  // release's patch), so taking the node again (its agent reconnecting) is
  // one PUT on that resourceVersion instead of a GET and a PUT; a PUT that
  // fails (written or deleted since) reads the Lease after all. At most
  // kMaxReleasedLeases; taking a node removes its entry.
  std::map<std::string, Lease> released_ ABSL_GUARDED_BY(cache_mu_);
  // This process's incarnation since the replica Lease was last (re)taken.
  std::string incarnation_ ABSL_GUARDED_BY(replica_mu_);
  mutable absl::Mutex mu_;
  std::map<std::string, Held> held_ ABSL_GUARDED_BY(mu_);
  // Whether the replica Lease is ours, and when it was last written.
  bool replica_held_ ABSL_GUARDED_BY(mu_) = false;
  // Counts the losses of the replica Lease: a node taken while it was lost
  // (its Lease names the lost incarnation) is not kept.
  uint64_t replica_generation_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time replica_renewed_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  std::function<void(const std::string&)> on_lost_ ABSL_GUARDED_BY(mu_);
  int on_lost_running_ ABSL_GUARDED_BY(mu_) = 0;  // calls of it under way
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread replica_renewer_, node_renewer_;
};

}  // namespace pc::aggregator

#endif  // AGGREGATOR_NODE_LEASE_H_
