#include "common/kube/pod_watcher.h"

#include <cstdio>
#include <random>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/kube/backoff.h"
#include "common/kube/kube_json.h"
#include "common/kube/names.h"
#include "common/status_macros.h"

namespace pc {
namespace kube {
namespace {

// An expired continue token restarts the list; give up after this many.
constexpr int kMaxListRestarts = 3;

}  // namespace

absl::StatusOr<std::unique_ptr<PodWatcher>> PodWatcher::Create(
    HttpClient* client, Options options, Handler* handler) {
  if (client == nullptr || handler == nullptr) {
    return absl::InvalidArgumentError(
        "PodWatcher needs a client and a handler");
  }
  if (!IsDns1123Subdomain(options.node_name)) {
    return absl::InvalidArgumentError(
        absl::StrCat("node name \"", options.node_name.substr(0, 300),
                     "\" is not a DNS-1123 subdomain"));
  }
  if (options.list_page_size <= 0) {
    return absl::InvalidArgumentError("list_page_size must be positive");
  }
  if (options.watch_timeout < absl::Seconds(1)) {
    return absl::InvalidArgumentError("watch_timeout must be at least 1 s");
  }
  return std::unique_ptr<PodWatcher>(
      new PodWatcher(client, std::move(options), handler));
}

PodWatcher::PodWatcher(HttpClient* client, Options options, Handler* handler)
    : client_(client),
      options_(std::move(options)),
      handler_(handler),
      field_selector_(
          UrlEscape(absl::StrCat("spec.nodeName=", options_.node_name))) {}

PodWatcher::~PodWatcher() { Stop(); }

void PodWatcher::Start() {
  absl::MutexLock join_lock(&join_mu_);
  absl::MutexLock lock(&mu_);
  if (started_ || stopped_) return;
  started_ = true;
  thread_ = std::thread([this] { Run(); });
}

void PodWatcher::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopped_ = true;
    cancel_.store(true);
  }
  absl::MutexLock join_lock(&join_mu_);
  if (thread_.joinable()) thread_.join();
}

PodWatcher::Counters PodWatcher::counters() const {
  Counters c;
  c.lists = lists_.load();
  c.watches = watches_.load();
  c.events = events_.load();
  c.bookmarks = bookmarks_.load();
  c.errors = errors_.load();
  c.expired = expired_.load();
  c.decode_errors = decode_errors_.load();
  return c;
}

bool PodWatcher::Sleep(absl::Duration d) {
  absl::MutexLock lock(&mu_);
  mu_.AwaitWithTimeout(absl::Condition(&stopped_), d);
  return !stopped_;
}

void PodWatcher::Run() {
  std::mt19937_64 rng(std::random_device{}());
  Backoff backoff(options_.initial_backoff, options_.max_backoff,
                  options_.backoff_jitter, rng());
  const int64_t min_timeout = absl::ToInt64Seconds(options_.watch_timeout);
  std::string resource_version;
  bool need_list = true;
  while (!stopping()) {
    if (need_list) {
      std::vector<Pod> pods;
      absl::Status status = List(&pods, &resource_version);
      if (stopping()) break;
      if (!status.ok()) {
        ++errors_;
        handler_->OnWatchError(status);
        Sleep(backoff.Next());
        continue;
      }
      ++lists_;
      need_list = false;
      handler_->OnPodsListed(std::move(pods));
    }

    int64_t timeout_seconds =
        min_timeout +
        static_cast<int64_t>(rng() % static_cast<uint64_t>(min_timeout));
    WatchOutcome outcome = Watch(&resource_version, timeout_seconds);
    if (stopping()) break;
    if (outcome.delivered > 0 || outcome.duration >= options_.healthy_watch)
      backoff.Reset();
    bool failed =
        !outcome.status.ok() ||
        (outcome.delivered == 0 && outcome.duration < options_.min_watch);
    if (outcome.expired) {
      ++expired_;
      need_list = true;
      handler_->OnWatchError(outcome.status);
    } else if (failed) {
      ++errors_;
      handler_->OnWatchError(
          outcome.status.ok()
              ? absl::UnavailableError(absl::StrCat(
                    "watch closed after ",
                    absl::FormatDuration(outcome.duration), " without events"))
              : outcome.status);
    }
    // A watch that failed straight away (including an immediate 410) waits, so
    // a persistently broken server is not hammered.
    if (failed) Sleep(backoff.Next());
  }
}

absl::Status PodWatcher::List(std::vector<Pod>* pods,
                              std::string* resource_version) {
  for (int restart = 0; restart < kMaxListRestarts; ++restart) {
    pods->clear();
    std::string continue_token;
    bool restarted = false;
    do {
      std::string path =
          absl::StrCat("/api/v1/pods?fieldSelector=", field_selector_,
                       "&limit=", options_.list_page_size);
      if (!continue_token.empty())
        absl::StrAppend(&path, "&continue=", UrlEscape(continue_token));
      ASSIGN_OR_RETURN(HttpResponse response,
                       client_->Do("GET", path, "", "", &cancel_));
      if (response.status_code == 410 && !continue_token.empty()) {
        // The snapshot behind the continue token is gone: start over.
        restarted = true;
        break;
      }
      if (response.status_code != 200)
        return HttpError(response.status_code, response.body);
      PodList list;
      RETURN_IF_ERROR(ParseJson(response.body, &list));
      for (Pod& pod : *list.mutable_items()) pods->push_back(std::move(pod));
      *resource_version = list.metadata().resource_version();
      continue_token = list.metadata().continue_();
    } while (!continue_token.empty());
    if (!restarted) {
      if (resource_version->empty()) {
        return absl::InvalidArgumentError(
            "pod list has no metadata.resourceVersion");
      }
      return absl::OkStatus();
    }
  }
  return absl::AbortedError(absl::StrCat("pod list: continue token expired ",
                                         kMaxListRestarts, " times in a row"));
}

PodWatcher::WatchOutcome PodWatcher::Watch(std::string* resource_version,
                                           int64_t timeout_seconds) {
  ++watches_;
  std::string path = absl::StrCat(
      "/api/v1/pods?watch=1&fieldSelector=", field_selector_,
      "&resourceVersion=", UrlEscape(*resource_version),
      "&allowWatchBookmarks=true", "&timeoutSeconds=", timeout_seconds);
  WatchOutcome outcome;
  absl::Status stop;  // set when a line ends the watch
  LineSplitter splitter;
  auto on_line = [&](absl::string_view line) {
    if (!stop.ok()) return;
    absl::StatusOr<WatchEvent> event = DecodeWatchEvent(line);
    if (!event.ok()) {
      ++decode_errors_;
      // As in client-go: end the watch and resume from the last good version.
      stop = event.status();
      return;
    }
    switch (event->type) {
      case EventType::kBookmark:
        ++bookmarks_;
        ++outcome.delivered;
        if (!event->pod.metadata().resource_version().empty()) {
          *resource_version = event->pod.metadata().resource_version();
        }
        return;
      case EventType::kError: {
        int code = event->status.code();
        absl::StatusOr<std::string> json = ToJson(event->status);
        stop = HttpError(code, json.ok() ? *json : "");
        if (code == 410) outcome.expired = true;
        return;
      }
      case EventType::kAdded:
      case EventType::kModified:
      case EventType::kDeleted:
        ++events_;
        ++outcome.delivered;
        if (!event->pod.metadata().resource_version().empty()) {
          *resource_version = event->pod.metadata().resource_version();
        }
        handler_->OnPodEvent(event->type, event->pod);
        return;
    }
  };

  absl::Time start = absl::Now();
  absl::Status streamed = client_->Stream(
      path,
      [&](absl::string_view chunk) {
        uint64_t dropped = splitter.dropped_lines();
        splitter.Feed(chunk, on_line);
        if (splitter.dropped_lines() != dropped && stop.ok()) {
          ++decode_errors_;
          stop = absl::DataLossError(
              "watch line longer than the line limit dropped");
        }
        return stop.ok() && !stopping();
      },
      &cancel_);
  outcome.duration = absl::Now() - start;
  outcome.status = stop.ok() ? streamed : stop;
  if (HttpCodeFromStatus(outcome.status) == 410) outcome.expired = true;
  return outcome;
}

}  // namespace kube
}  // namespace pc
