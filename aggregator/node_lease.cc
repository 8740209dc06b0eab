#include "aggregator/node_lease.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "common/kube/kube_json.h"
#include "common/kube/names.h"
#include "common/log.h"
#include "common/sha256.h"
#include "google/protobuf/struct.pb.h"

namespace pc::aggregator {
namespace {

constexpr size_t kMaxNameBytes = 253;
constexpr char kPrefix[] = "capture-node-";
constexpr char kReplicaPrefix[] = "capture-replica-";
// Released node Leases kept for a quick retake (NodeLeases::released_): about
// 1 KiB each.
constexpr size_t kMaxReleasedLeases = 10000;
// kLeaseAddressAnnotation as a JSON pointer token ('/' is "~1").
constexpr char kLeaseAddressAnnotationPointer[] =
    "packetcapture.antrea.io~1address";
constexpr char kLeaseIncarnationAnnotationPointer[] =
    "packetcapture.antrea.io~1incarnation";

absl::Status ApiError(absl::string_view what, const absl::Status& status) {
  return absl::UnavailableError(
      absl::StrCat("lease ", what, ": ", status.message()));
}

bool Expired(const LeaseSpec& spec, absl::Time now) {
  absl::Time renewed;
  std::string err;
  if (!absl::ParseTime(absl::RFC3339_full, spec.renew_time(), &renewed, &err) &&
      !absl::ParseTime(absl::RFC3339_full, spec.acquire_time(), &renewed,
                       &err)) {
    return true;
  }
  return renewed + absl::Seconds(spec.lease_duration_seconds()) < now;
}

std::string Annotation(const Lease& lease, const char* key) {
  auto it = lease.metadata().annotations().find(key);
  return it == lease.metadata().annotations().end() ? "" : it->second;
}

// The JSON patch operation that sets renewTime to `t`.
std::string RenewTimeOp(absl::Time t) {
  return absl::StrCat(R"({"op":"replace","path":"/spec/renewTime","value":")",
                      FormatMicroTime(t), R"("})");
}

std::string NewIncarnation() {
  absl::BitGen gen;
  return absl::StrCat(
      absl::Hex(absl::Uniform<uint64_t>(gen), absl::kZeroPad16));
}

}  // namespace

std::string ReplicaLeaseName(const std::string& identity) {
  std::string name = absl::StrCat(kReplicaPrefix, identity);
  if (name.size() <= kMaxNameBytes && kube::IsDns1123Subdomain(name)) {
    return name;
  }
  return absl::StrCat(kReplicaPrefix, Sha256Hex(identity).substr(0, 16));
}

std::string NodeLeaseName(const std::string& node) {
  std::string name = absl::StrCat(kPrefix, node);
  if (name.size() <= kMaxNameBytes) return name;
  std::string suffix = absl::StrCat("-", Sha256Hex(node).substr(0, 16));
  name.resize(kMaxNameBytes - suffix.size());
  // Keep every dot-separated label ending in an alphanumeric.
  while (name.back() == '-' || name.back() == '.') name.pop_back();
  return name + suffix;
}

std::string FormatMicroTime(absl::Time t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", t, absl::UTCTimeZone());
}

NodeLeases::NodeLeases(kube::HttpClient* http, NodeLeaseOptions options)
    : http_(http),
      options_(std::move(options)),
      duration_seconds_(static_cast<int32_t>(std::max<int64_t>(
          1, absl::ToInt64Seconds(options_.lease_duration + absl::Seconds(1) -
                                  absl::Nanoseconds(1))))),
      node_duration_seconds_(
          options_.node_lease_duration == absl::ZeroDuration()
              ? duration_seconds_ * kNodeLeaseDurationFactor
              : std::max<int32_t>(
                    duration_seconds_,
                    static_cast<int32_t>(absl::ToInt64Seconds(
                        options_.node_lease_duration + absl::Seconds(1) -
                        absl::Nanoseconds(1))))),
      replica_lease_(ReplicaLeaseName(options_.identity)) {
  // The identity as a JSON string, written once by protobuf's printer (which
  // escapes it); empty if it cannot be (not UTF-8): then no patches, only
  // whole updates.
  google::protobuf::Value identity;
  identity.set_string_value(options_.identity);
  if (absl::StatusOr<std::string> quoted = kube::ToJson(identity);
      quoted.ok()) {
    holder_test_ =
        absl::StrCat(R"([{"op":"test","path":"/spec/holderIdentity","value":)",
                     *quoted, "},");
  }
  replica_renewer_ = std::thread([this] { ReplicaRenewLoop(); });
  node_renewer_ = std::thread([this] { NodeRenewLoop(); });
}

NodeLeases::~NodeLeases() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  replica_renewer_.join();
  node_renewer_.join();
}

absl::Time NodeLeases::Now() const {
  return options_.clock ? options_.clock() : absl::Now();
}

std::string NodeLeases::Path(const std::string& name) const {
  return absl::StrCat("/apis/coordination.k8s.io/v1/namespaces/",
                      options_.namespace_name, "/leases",
                      name.empty() ? "" : "/", name);
}

void NodeLeases::SetOnLost(std::function<void(const std::string&)> on_lost) {
  absl::MutexLock lock(&mu_);
  auto idle = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    return on_lost_running_ == 0;
  };
  mu_.Await(absl::Condition(&idle));
  on_lost_ = std::move(on_lost);
}

std::function<void(const std::string&)> NodeLeases::StartOnLost() {
  if (on_lost_) ++on_lost_running_;
  return on_lost_;
}

void NodeLeases::FinishOnLost(
    const std::function<void(const std::string&)>& on_lost,
    const std::vector<std::string>& nodes) {
  if (!on_lost) return;
  for (const std::string& node : nodes) on_lost(node);
  absl::MutexLock lock(&mu_);
  --on_lost_running_;
}

bool NodeLeases::Holds(const std::string& node) const {
  absl::MutexLock lock(&mu_);
  auto it = held_.find(node);
  const absl::Time now = Now();
  return it != held_.end() && replica_held_ &&
         now - replica_renewed_ < options_.lease_duration &&
         now - it->second.renewed < absl::Seconds(node_duration_seconds_);
}

absl::StatusOr<NodeLeases::Fetch> NodeLeases::Get(const std::string& name,
                                                  Lease* lease) {
  absl::StatusOr<kube::HttpResponse> response = http_->Do("GET", Path(name));
  if (!response.ok()) return ApiError("get", response.status());
  if (response->status_code == 404) return Fetch::kAbsent;
  if (response->status_code != 200) {
    return ApiError("get",
                    kube::HttpError(response->status_code, response->body));
  }
  absl::Status parsed = kube::ParseJson(response->body, lease);
  if (!parsed.ok()) return ApiError("get", parsed);
  return Fetch::kFound;
}

absl::Status NodeLeases::Write(const std::string& name, bool create,
                               Lease* lease) {
  lease->set_api_version("coordination.k8s.io/v1");
  lease->set_kind("Lease");
  lease->mutable_metadata()->set_name(name);
  lease->mutable_metadata()->set_namespace_(options_.namespace_name);
  absl::StatusOr<std::string> body = kube::ToJson(*lease);
  if (!body.ok()) return body.status();
  const char* what = create ? "create" : "update";
  absl::StatusOr<kube::HttpResponse> response =
      http_->Do(create ? "POST" : "PUT", Path(create ? "" : name), *body);
  if (!response.ok()) return ApiError(what, response.status());
  if (response->status_code == 409) {
    return absl::AbortedError(absl::StrCat("lease ", what, ": conflict"));
  }
  if (response->status_code != 200 && response->status_code != 201) {
    return ApiError(what,
                    kube::HttpError(response->status_code, response->body));
  }
  absl::Status parsed = kube::ParseJson(response->body, lease);
  if (!parsed.ok()) return ApiError(what, parsed);
  return absl::OkStatus();
}

absl::StatusOr<LeaseHolder> NodeLeases::TryAcquire(
    const AcquireContext& context, LeaseHolder* other, std::string* renewed) {
  const std::string& node = context.node;
  const std::string& name = context.name;
  Lease lease;
  absl::StatusOr<Fetch> fetch = Fetch::kFound;
  std::optional<Lease> released = TakeReleased(name);
  const bool as_released = released.has_value();
  if (as_released) {
    lease = std::move(*released);
  } else {
    fetch = Get(name, &lease);
  }
  if (!fetch.ok()) return fetch.status();
  const absl::Time now = Now();
  const std::string stamp = FormatMicroTime(now);
  LeaseSpec* spec = lease.mutable_spec();
  const bool create = *fetch == Fetch::kAbsent;
  const bool other_holder = !spec->holder_identity().empty() &&
                            spec->holder_identity() != options_.identity;
  // Recorded at every read, so that the wait for a silent holder counts
  // from the first one.
  const absl::Duration unchanged =
      other_holder ? UnchangedFor(name, *spec) : absl::ZeroDuration();
  if (!other_holder) Forget(name);
  bool held_by_other =
      other_holder &&
      (!Expired(*spec, now) || unchanged < options_.lease_duration / 2);
  std::string holder_renewed = spec->renew_time();
  if (held_by_other) {
    absl::StatusOr<Liveness> liveness = HolderLiveness(lease, &holder_renewed);
    if (!liveness.ok()) return liveness.status();
    held_by_other = *liveness != Liveness::kGone;
  }
  if (held_by_other) {
    LeaseHolder holder;
    holder.identity = spec->holder_identity();
    holder.address = Annotation(lease, kLeaseAddressAnnotation);
    holder.epoch = spec->lease_transitions();
    if (other != nullptr) *other = holder;
    *renewed = holder_renewed;
    return absl::FailedPreconditionError(
        absl::StrCat("node ", node, " is held by ", holder.identity, " at ",
                     holder.address));
  }
  if (create) {
    spec->set_lease_transitions(0);
    spec->set_acquire_time(stamp);
  } else if (spec->holder_identity() == options_.identity && context.ours) {
    // Renewal: same writer, same epoch.
  } else {
    // Free, expired, its holder gone, or left by an earlier incarnation of
    // this replica: a new writer, so a new epoch.
    spec->set_lease_transitions(spec->lease_transitions() + 1);
    spec->set_acquire_time(stamp);
  }
  // Written even when 0 (a renewal's patch tests it).
  spec->set_lease_transitions(spec->lease_transitions());
  spec->set_holder_identity(options_.identity);
  spec->set_lease_duration_seconds(node_duration_seconds_);
  spec->set_renew_time(stamp);
  auto& annotations = *lease.mutable_metadata()->mutable_annotations();
  annotations[kLeaseAddressAnnotation] = options_.address;
  annotations[kLeaseIncarnationAnnotation] = context.incarnation;
  if (absl::Status s = Write(name, create, &lease); !s.ok()) {
    // Changed or deleted since this replica released it: read it after all.
    if (as_released) return TryAcquire(context, other, renewed);
    return s;
  }
  Forget(name);
  LeaseHolder mine{options_.identity, options_.address,
                   lease.spec().lease_transitions()};
  absl::MutexLock lock(&mu_);
  if (replica_generation_ != context.generation) {
    // The replica Lease was lost meanwhile: this node Lease names the lost
    // incarnation, which other replicas take as gone.
    return absl::UnavailableError(absl::StrCat(
        "lease of node ", node, ": the replica Lease was lost meanwhile"));
  }
  Held& held = held_[node];
  held.epoch = mine.epoch;
  held.renewed = now;
  return mine;
}

absl::StatusOr<NodeLeases::Liveness> NodeLeases::HolderLiveness(
    const Lease& node_lease, std::string* renewed) {
  const std::string incarnation =
      Annotation(node_lease, kLeaseIncarnationAnnotation);
  if (incarnation.empty()) return Liveness::kUnknown;  // an older writer
  const std::string& holder = node_lease.spec().holder_identity();
  const std::string name = ReplicaLeaseName(holder);
  Lease replica;
  absl::StatusOr<Fetch> fetch = Get(name, &replica);
  if (!fetch.ok()) return fetch.status();
  if (*fetch == Fetch::kAbsent) return Liveness::kUnknown;
  *renewed = replica.spec().renew_time();
  if (replica.spec().holder_identity() != holder ||
      Annotation(replica, kLeaseIncarnationAnnotation) != incarnation) {
    return Liveness::kGone;  // that process is no longer the replica
  }
  const absl::Duration unchanged = UnchangedFor(name, replica.spec());
  return Expired(replica.spec(), Now()) &&
                 unchanged >= options_.lease_duration / 2
             ? Liveness::kGone
             : Liveness::kLive;
}

absl::Status NodeLeases::EnsureReplicaLease() {
  {
    absl::MutexLock lock(&mu_);
    if (replica_held_) return absl::OkStatus();
  }
  for (int attempt = 0; attempt < 2; ++attempt) {
    Lease lease;
    absl::StatusOr<Fetch> fetch = Get(replica_lease_, &lease);
    if (!fetch.ok()) return fetch.status();
    const absl::Time now = Now();
    const std::string stamp = FormatMicroTime(now);
    const std::string incarnation = NewIncarnation();
    LeaseSpec* spec = lease.mutable_spec();
    spec->set_holder_identity(options_.identity);
    spec->set_lease_duration_seconds(duration_seconds_);
    spec->set_acquire_time(stamp);
    spec->set_renew_time(stamp);
    auto& annotations = *lease.mutable_metadata()->mutable_annotations();
    annotations[kLeaseAddressAnnotation] = options_.address;
    annotations[kLeaseIncarnationAnnotation] = incarnation;
    absl::Status s = Write(replica_lease_, *fetch == Fetch::kAbsent, &lease);
    if (absl::IsAborted(s)) continue;  // written in between: read again
    if (!s.ok()) return s;
    incarnation_ = incarnation;
    LogLine("replica_lease_acquired",
            {{"lease", replica_lease_}, {"incarnation", incarnation}});
    absl::MutexLock lock(&mu_);
    replica_held_ = true;
    replica_renewed_ = now;
    return absl::OkStatus();
  }
  return absl::UnavailableError(
      absl::StrCat("lease ", replica_lease_, ": conflict twice"));
}

bool NodeLeases::RenewReplicaLease() {
  absl::Time renewed;
  {
    absl::MutexLock lock(&mu_);
    if (!replica_held_) return true;
    renewed = replica_renewed_;
  }
  const absl::Time now = Now();
  std::string error;
  if (holder_test_.empty()) {
    // No patch can test the identity: read, check, update whole.
    Lease lease;
    absl::StatusOr<Fetch> fetch = Get(replica_lease_, &lease);
    if (fetch.ok() &&
        (*fetch == Fetch::kAbsent ||
         lease.spec().holder_identity() != options_.identity ||
         Annotation(lease, kLeaseIncarnationAnnotation) != incarnation_)) {
      LogLine("replica_lease_lost", {{"lease", replica_lease_}});
      return false;
    }
    absl::Status s = fetch.status();
    if (s.ok()) {
      lease.mutable_spec()->set_renew_time(FormatMicroTime(now));
      s = Write(replica_lease_, false, &lease);
    }
    if (s.ok()) {
      absl::MutexLock lock(&mu_);
      replica_renewed_ = now;
      return true;
    }
    error = s.ToString();
  } else {
    absl::StatusOr<kube::HttpResponse> response = PatchIfHolder(
        absl::StrCat(R"({"op":"test","path":"/metadata/annotations/)",
                     kLeaseIncarnationAnnotationPointer, R"(","value":")",
                     incarnation_, R"("})"),
        RenewTimeOp(now), replica_lease_);
    if (response.ok() && response->status_code == 200) {
      absl::MutexLock lock(&mu_);
      replica_renewed_ = now;
      return true;
    }
    if (response.ok() &&
        (response->status_code == 404 || response->status_code == 422)) {
      // Deleted, or written by another process with our identity: this
      // incarnation's nodes may be taken from now on.
      LogLine("replica_lease_lost",
              {{"lease", replica_lease_},
               {"code", absl::StrCat(response->status_code)}});
      return false;
    }
    error =
        response.ok()
            ? kube::HttpError(response->status_code, response->body).ToString()
            : response.status().ToString();
  }
  if (now - renewed < options_.lease_duration) return true;  // retry
  LogLine("replica_lease_lost", {{"lease", replica_lease_}, {"error", error}});
  return false;
}

absl::Duration NodeLeases::UnchangedFor(const std::string& name,
                                        const LeaseSpec& spec) {
  const absl::Time now = Now();
  absl::MutexLock lock(&cache_mu_);
  Observed& seen = observed_[name];
  if (seen.since == absl::InfinitePast() ||
      seen.holder != spec.holder_identity() ||
      seen.renew_time != spec.renew_time() ||
      seen.transitions != spec.lease_transitions()) {
    seen = Observed{spec.holder_identity(), spec.renew_time(),
                    spec.lease_transitions(), now};
  }
  return now - seen.since;
}

void NodeLeases::Forget(const std::string& name) {
  absl::MutexLock lock(&cache_mu_);
  observed_.erase(name);
}

absl::StatusOr<LeaseHolder> NodeLeases::Acquire(const std::string& node,
                                                LeaseHolder* other) {
  std::string renewed;
  absl::StatusOr<LeaseHolder> result = AcquireOnce(node, other, &renewed);
  if (!options_.wait_for_silent_holder ||
      !absl::IsFailedPrecondition(result.status())) {
    return result;
  }
  // A holder that stopped renewing (its replica was killed) is waited out:
  // its lease expires within lease_duration. A live one renews every third
  // of it, which ends the wait with the holder's address.
  const absl::Time give_up = Now() + options_.lease_duration + absl::Seconds(1);
  const int64_t max_polls =
      (options_.lease_duration + absl::Seconds(1)) / options_.holder_poll + 1;
  for (int64_t i = 0; i < max_polls && Now() < give_up; ++i) {
    absl::SleepFor(options_.holder_poll);
    std::string again;
    result = AcquireOnce(node, other, &again);
    if (!absl::IsFailedPrecondition(result.status()) || again != renewed) {
      break;
    }
  }
  return result;
}

absl::StatusOr<LeaseHolder> NodeLeases::AcquireOnce(const std::string& node,
                                                    LeaseHolder* other,
                                                    std::string* renewed) {
  if (!kube::IsDns1123Subdomain(node)) {
    return absl::InvalidArgumentError("lease: bad node name");
  }
  if (!kube::IsDns1123Label(options_.namespace_name)) {
    return absl::InvalidArgumentError("lease: bad namespace");
  }
  AcquireContext context;
  context.node = node;
  context.name = NodeLeaseName(node);
  const std::string& name = context.name;
  absl::MutexLock node_lock(&NodeMutex(node));
  int64_t old_epoch = -1;
  {
    // Its node Leases name the incarnation, so the replica Lease comes first.
    absl::MutexLock replica_lock(&replica_mu_);
    if (absl::Status s = EnsureReplicaLease(); !s.ok()) return s;
    context.incarnation = incarnation_;
    absl::MutexLock lock(&mu_);
    context.generation = replica_generation_;
    auto it = held_.find(node);
    context.ours = it != held_.end();
    if (context.ours) old_epoch = it->second.epoch;
  }
  const bool ours = context.ours;
  absl::StatusOr<LeaseHolder> result = TryAcquire(context, other, renewed);
  if (absl::IsAborted(result.status())) {  // someone wrote in between
    result = TryAcquire(context, other, renewed);
    if (absl::IsAborted(result.status())) {
      result = absl::UnavailableError(
          absl::StrCat("lease of node ", node, ": conflict twice"));
    }
  }
  if (result.ok() && result->epoch != old_epoch) {
    LogLine("lease_acquired", {{"node", node},
                               {"lease", name},
                               {"epoch", absl::StrCat(result->epoch)}});
  } else if (absl::IsFailedPrecondition(result.status()) && ours) {
    // We thought we held it: we do not any more (writes check Holds()).
    absl::MutexLock lock(&mu_);
    held_.erase(node);
  }
  return result;
}

void NodeLeases::Release(const std::string& node) {
  absl::MutexLock node_lock(&NodeMutex(node));
  int64_t epoch;
  {
    absl::MutexLock lock(&mu_);
    auto it = held_.find(node);
    if (it == held_.end()) return;
    epoch = it->second.epoch;
    held_.erase(it);
  }
  const std::string name = NodeLeaseName(node);
  // One patch, if the Lease is still ours as we wrote it.
  absl::StatusOr<kube::HttpResponse> patched = PatchIfOurs(
      epoch,
      absl::StrCat(R"({"op":"remove","path":"/spec/holderIdentity"},)",
                   R"({"op":"remove","path":"/metadata/annotations/)",
                   kLeaseAddressAnnotationPointer, R"("})"),
      name);
  if (patched.ok() && patched->status_code == 200) {
    LogLine("lease_released", {{"node", node}, {"lease", name}});
    Lease lease;
    if (kube::ParseJson(patched->body, &lease).ok()) {
      KeepReleased(name, std::move(lease));
    }
    return;
  }
  // Not ours any more, or not as we wrote it (no address annotation): read
  // it and decide.
  for (int attempt = 0; attempt < 2; ++attempt) {
    Lease lease;
    absl::StatusOr<Fetch> fetch = Get(name, &lease);
    if (!fetch.ok()) {
      LogLine("lease_release_failed", {{"node", node},
                                       {"lease", name},
                                       {"error", fetch.status().ToString()}});
      return;
    }
    if (!Ours(*fetch, lease, epoch)) return;  // nothing to release
    lease.mutable_spec()->clear_holder_identity();
    lease.mutable_metadata()->mutable_annotations()->erase(
        kLeaseAddressAnnotation);
    absl::Status s = Write(name, false, &lease);
    if (s.ok()) {
      LogLine("lease_released", {{"node", node}, {"lease", name}});
      KeepReleased(name, std::move(lease));
      return;
    }
    if (!absl::IsAborted(s) || attempt == 1) {
      LogLine("lease_release_failed",
              {{"node", node}, {"lease", name}, {"error", s.ToString()}});
      return;
    }
  }
}

void NodeLeases::KeepReleased(const std::string& name, Lease lease) {
  if (lease.metadata().name() != name ||
      lease.metadata().resource_version().empty()) {
    return;
  }
  absl::MutexLock lock(&cache_mu_);
  if (released_.size() >= kMaxReleasedLeases) return;
  released_[name] = std::move(lease);
}

std::optional<Lease> NodeLeases::TakeReleased(const std::string& name) {
  absl::MutexLock lock(&cache_mu_);
  auto it = released_.find(name);
  if (it == released_.end()) return std::nullopt;
  Lease lease = std::move(it->second);
  released_.erase(it);
  return lease;
}

absl::Mutex& NodeLeases::NodeMutex(const std::string& node) {
  return node_mu_[std::hash<std::string>{}(node) % kNodeMutexes];
}

bool NodeLeases::Ours(Fetch fetch, const Lease& lease, int64_t epoch) const {
  return fetch == Fetch::kFound &&
         lease.spec().holder_identity() == options_.identity &&
         lease.spec().lease_transitions() == epoch;
}

absl::StatusOr<kube::HttpResponse> NodeLeases::PatchIfHolder(
    absl::string_view test, absl::string_view ops, const std::string& name) {
  if (holder_test_.empty()) {
    return absl::FailedPreconditionError("identity not expressible in JSON");
  }
  const std::string body = absl::StrCat(holder_test_, test, ",", ops, "]");
  return http_->Do("PATCH", Path(name), body, "application/json-patch+json");
}

absl::StatusOr<kube::HttpResponse> NodeLeases::PatchIfOurs(
    int64_t epoch, absl::string_view ops, const std::string& name) {
  return PatchIfHolder(
      absl::StrCat(R"({"op":"test","path":"/spec/leaseTransitions","value":)",
                   epoch, "}"),
      ops, name);
}

absl::Status NodeLeases::PatchRenewTime(const std::string& name, int64_t epoch,
                                        absl::Time now) {
  absl::StatusOr<kube::HttpResponse> response =
      PatchIfOurs(epoch, RenewTimeOp(now), name);
  if (absl::IsFailedPrecondition(response.status())) {
    return absl::AbortedError("lease renew: cannot patch");
  }
  if (!response.ok()) return ApiError("renew", response.status());
  switch (response->status_code) {
    case 200:
      return absl::OkStatus();
    case 404:
      return absl::NotFoundError("lease renew: gone");
    case 409:  // the server gave up retrying against concurrent writes
    case 422:  // a test failed
      return absl::AbortedError("lease renew: changed");
    default:
      return ApiError("renew",
                      kube::HttpError(response->status_code, response->body));
  }
}

bool NodeLeases::Renew(const std::string& node) {
  int64_t epoch;
  absl::Time renewed;
  {
    absl::MutexLock lock(&mu_);
    auto it = held_.find(node);
    if (it == held_.end()) return true;  // released meanwhile
    epoch = it->second.epoch;
    renewed = it->second.renewed;
  }
  const std::string name = NodeLeaseName(node);
  const absl::Time now = Now();
  absl::Status s = PatchRenewTime(name, epoch, now);
  if (absl::IsAborted(s) || absl::IsNotFound(s)) {
    // Taken or deleted; or changed concurrently, or written without
    // leaseTransitions (by an earlier version): read it, and if it is still
    // ours, update it whole (which writes leaseTransitions from then on).
    Lease lease;
    absl::StatusOr<Fetch> fetch = Get(name, &lease);
    if (!fetch.ok()) {
      s = fetch.status();
    } else if (!Ours(*fetch, lease, epoch)) {
      LogLine("lease_lost", {{"node", node},
                             {"lease", name},
                             {"holder", lease.spec().holder_identity()}});
      return false;
    } else {
      lease.mutable_spec()->set_lease_transitions(static_cast<int32_t>(epoch));
      lease.mutable_spec()->set_renew_time(FormatMicroTime(now));
      s = Write(name, false, &lease);  // a conflict: tried again next tick
    }
  }
  if (s.ok()) {
    absl::MutexLock lock(&mu_);
    auto it = held_.find(node);
    if (it != held_.end()) it->second.renewed = now;
    return true;
  }
  if (now - renewed < absl::Seconds(node_duration_seconds_)) return true;
  LogLine("lease_lost",
          {{"node", node}, {"lease", name}, {"error", s.ToString()}});
  return false;
}

bool NodeLeases::AwaitStop(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  mu_.AwaitWithTimeout(absl::Condition(&stop_), timeout);
  return stop_;
}

void NodeLeases::ReplicaRenewLoop() {
  while (!AwaitStop(options_.lease_duration / 3)) {
    std::vector<std::string> nodes;
    std::function<void(const std::string&)> on_lost;
    {
      // The loss is noted before another Acquire can see the replica Lease
      // as held (EnsureReplicaLease, under replica_mu_).
      absl::MutexLock replica_lock(&replica_mu_);
      if (RenewReplicaLease()) continue;
      absl::MutexLock lock(&mu_);
      on_lost = StartOnLost();
      for (const auto& [node, held] : held_) nodes.push_back(node);
      // Every node goes; the next Acquire takes the replica Lease again
      // with a new incarnation, so none of these looks live to others.
      held_.clear();
      replica_held_ = false;
      ++replica_generation_;
    }
    FinishOnLost(on_lost, nodes);
  }
}

void NodeLeases::NodeRenewLoop() {
  const absl::Duration period = options_.lease_duration / 3;
  // Node Leases every third of their own duration, give or take half a tick.
  const absl::Duration node_period =
      absl::Seconds(node_duration_seconds_) / 3 - period / 2;
  while (!AwaitStop(period)) {
    std::vector<std::string> nodes;
    {
      absl::MutexLock lock(&mu_);
      const absl::Time now = Now();
      for (const auto& [node, held] : held_) {
        if (now - held.renewed >= node_period) nodes.push_back(node);
      }
    }
    for (const std::string& node : nodes) {
      absl::Mutex& node_mu = NodeMutex(node);
      // Busy with an Acquire or Release (of this node, which writes its
      // Lease, or of one sharing its mutex): renewed next tick rather than
      // waited for here.
      if (!node_mu.TryLock()) continue;
      std::function<void(const std::string&)> on_lost;
      const bool kept = Renew(node);
      if (!kept) {
        absl::MutexLock lock(&mu_);
        held_.erase(node);
        on_lost = StartOnLost();
      }
      node_mu.Unlock();
      FinishOnLost(on_lost, {node});
    }
  }
}

}  // namespace pc::aggregator
