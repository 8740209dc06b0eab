#include "common/kube/event_recorder.h"

#include <cstdio>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/kube/kube_json.h"
#include "common/kube/kube_types.pb.h"
#include "common/kube/names.h"

namespace pc {
namespace kube {
namespace {

constexpr size_t kMaxReasonBytes = 128;
constexpr size_t kMaxInstanceBytes = 128;  // API validation limit
constexpr size_t kMaxNameBytes = 253;
// Past this many remembered events, expired ones are pruned (and if that is
// not enough, all are forgotten): dedup must not grow without bound.
constexpr size_t kMaxRecent = 4096;

absl::Status ValidatePod(const PodRef& pod) {
  if (!IsDns1123Label(pod.ns)) {
    return absl::InvalidArgumentError(
        absl::StrCat("event: bad namespace \"",
                     absl::CHexEscape(pod.ns.substr(0, 80)), "\""));
  }
  if (!IsDns1123Subdomain(pod.name)) {
    return absl::InvalidArgumentError(
        absl::StrCat("event: bad pod name \"",
                     absl::CHexEscape(pod.name.substr(0, 80)), "\""));
  }
  return absl::OkStatus();
}

absl::Status ValidateReason(absl::string_view reason) {
  if (reason.empty() || reason.size() > kMaxReasonBytes) {
    return absl::InvalidArgumentError(
        "event: reason must be 1..128 characters");
  }
  for (char c : reason) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c))) {
      return absl::InvalidArgumentError(
          absl::StrCat("event: reason \"", absl::CHexEscape(reason),
                       "\" is not UpperCamelCase alphanumerics"));
    }
  }
  return absl::OkStatus();
}

std::string Rfc3339(absl::Time t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", t, absl::UTCTimeZone());
}

// "<pod>.<hex nanoseconds>", kept a valid DNS subdomain of at most 253 bytes.
std::string EventName(absl::string_view pod_name, absl::Time now) {
  std::string suffix = absl::StrFormat(".%x", absl::ToUnixNanos(now));
  absl::string_view base = pod_name.substr(0, kMaxNameBytes - suffix.size());
  while (!base.empty() && (base.back() == '-' || base.back() == '.'))
    base.remove_suffix(1);
  return absl::StrCat(base, suffix);
}

}  // namespace

absl::StatusOr<std::string> BuildEventJson(const PodRef& pod, EventLevel level,
                                           absl::string_view reason,
                                           absl::string_view message,
                                           const EventReporter& source,
                                           absl::Time now,
                                           size_t max_message_bytes) {
  if (absl::Status s = ValidatePod(pod); !s.ok()) return s;
  if (absl::Status s = ValidateReason(reason); !s.ok()) return s;
  Event event;
  event.set_api_version("v1");
  event.set_kind("Event");
  event.mutable_metadata()->set_name(EventName(pod.name, now));
  event.mutable_metadata()->set_namespace_(pod.ns);
  ObjectReference* ref = event.mutable_involved_object();
  ref->set_api_version("v1");
  ref->set_kind("Pod");
  ref->set_namespace_(pod.ns);
  ref->set_name(pod.name);
  ref->set_uid(SanitizeUtf8(pod.uid, 128));
  event.set_reason(std::string(reason));
  event.set_message(SanitizeUtf8(message, max_message_bytes));
  event.set_type(level == EventLevel::kWarning ? "Warning" : "Normal");
  std::string component = SanitizeUtf8(source.component, 253);
  std::string host = SanitizeUtf8(source.host, 253);
  event.mutable_source()->set_component(component);
  event.mutable_source()->set_host(host);
  std::string timestamp = Rfc3339(now);
  event.set_first_timestamp(timestamp);
  event.set_last_timestamp(timestamp);
  event.set_count(1);
  event.set_reporting_component(component);
  std::string instance =
      source.instance.empty()
          ? (host.empty() ? component : absl::StrCat(component, "-", host))
          : source.instance;
  event.set_reporting_instance(SanitizeUtf8(instance, kMaxInstanceBytes));
  return ToJson(event);
}

EventRecorder::EventRecorder(HttpClient* client, Options options)
    : client_(client), options_(std::move(options)) {}

absl::StatusOr<std::unique_ptr<EventRecorder>> EventRecorder::Create(
    HttpClient* client, Options options) {
  if (client == nullptr)
    return absl::InvalidArgumentError("EventRecorder needs a client");
  if (options.source.component.empty()) {
    return absl::InvalidArgumentError("EventRecorder needs source.component");
  }
  if (options.queue_capacity == 0) {
    return absl::InvalidArgumentError(
        "EventRecorder queue_capacity must be positive");
  }
  std::unique_ptr<EventRecorder> recorder(
      new EventRecorder(client, std::move(options)));
  absl::MutexLock lock(&recorder->join_mu_);
  recorder->thread_ = std::thread([r = recorder.get()] { r->Run(); });
  return recorder;
}

EventRecorder::~EventRecorder() { Stop(); }

absl::Status EventRecorder::Record(const PodRef& pod, EventLevel level,
                                   absl::string_view reason,
                                   absl::string_view message) {
  absl::Time now = absl::Now();
  absl::StatusOr<std::string> body =
      BuildEventJson(pod, level, reason, message, options_.source, now,
                     options_.max_message_bytes);
  if (!body.ok()) return body.status();

  absl::MutexLock lock(&mu_);
  if (stopping_) return absl::FailedPreconditionError("event recorder stopped");
  const bool dedup = options_.dedup_window > absl::ZeroDuration();
  std::string key;
  if (dedup) {
    key = absl::StrCat(pod.uid.empty() ? pod.ns + "/" + pod.name : pod.uid,
                       "\n", reason, "\n",
                       SanitizeUtf8(message, options_.max_message_bytes));
    auto it = recent_.find(key);
    if (it != recent_.end() && now - it->second < options_.dedup_window) {
      ++deduplicated_;
      return absl::OkStatus();
    }
  }
  if (queue_.size() >= options_.queue_capacity) {
    ++dropped_;
    return absl::ResourceExhaustedError("event queue full; event dropped");
  }
  queue_.push_back(
      Pending{pod.ns, pod.name, std::string(reason), *std::move(body)});
  if (dedup) {
    if (recent_.size() >= kMaxRecent) {
      absl::erase_if(recent_, [&](const auto& entry) {
        return now - entry.second >= options_.dedup_window;
      });
      if (recent_.size() >= kMaxRecent) recent_.clear();
    }
    recent_[key] = now;
  }
  return absl::OkStatus();
}

void EventRecorder::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (!stopping_) {
      stopping_ = true;
      drain_deadline_ = absl::Now() + options_.drain_timeout;
    }
  }
  absl::MutexLock join_lock(&join_mu_);
  if (!thread_.joinable()) return;
  {
    // Let the worker drain until the deadline, then abort the in-flight post.
    absl::MutexLock lock(&mu_);
    if (!mu_.AwaitWithDeadline(absl::Condition(&worker_done_),
                               drain_deadline_)) {
      cancel_.store(true);
    }
  }
  thread_.join();
}

EventRecorder::Counters EventRecorder::counters() const {
  Counters c;
  c.posted = posted_.load();
  c.failed = failed_.load();
  c.dropped = dropped_.load();
  c.deduplicated = deduplicated_.load();
  return c;
}

void EventRecorder::Run() {
  while (true) {
    Pending event;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return !queue_.empty() || stopping_;
      };
      mu_.Await(absl::Condition(&ready));
      if (stopping_ && (queue_.empty() || absl::Now() >= drain_deadline_ ||
                        cancel_.load())) {
        dropped_ += queue_.size();
        queue_.clear();
        worker_done_ = true;
        return;
      }
      event = std::move(queue_.front());
      queue_.pop_front();
    }
    Post(event);
  }
}

void EventRecorder::Post(const Pending& event) {
  std::string path = absl::StrCat("/api/v1/namespaces/", event.ns, "/events");
  absl::StatusOr<HttpResponse> response =
      client_->Do("POST", path, event.body, "application/json", &cancel_);
  absl::Status status;
  if (!response.ok()) {
    status = response.status();
  } else if (response->status_code != 201 && response->status_code != 200) {
    status = HttpError(response->status_code, response->body);
  }
  if (status.ok()) {
    ++posted_;
    return;
  }
  if (absl::IsCancelled(status)) {  // Stop() ran out of drain time
    ++dropped_;
    return;
  }
  ++failed_;
  // ns, pod name and reason were validated ([a-z0-9.-], alphanumerics), so
  // only the error text needs escaping to stay on one line.
  std::fprintf(
      stderr,
      "kube event: post failed pod=%s/%s reason=%s code=%s error=\"%s\"\n",
      event.ns.c_str(), event.pod_name.c_str(), event.reason.c_str(),
      absl::StatusCodeToString(status.code()).c_str(),
      absl::CHexEscape(status.message()).c_str());
}

}  // namespace kube
}  // namespace pc
