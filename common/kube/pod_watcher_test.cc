#include "common/kube/pod_watcher.h"

#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "common/kube/fake_api_server.h"
#include "gtest/gtest.h"

namespace pc {
namespace kube {
namespace {

// Records what the watcher reports, one string per callback.
class RecordingHandler : public PodWatcher::Handler {
 public:
  void OnPodsListed(std::vector<Pod> pods) override {
    std::vector<std::string> names;
    for (const Pod& pod : pods) names.push_back(pod.metadata().name());
    Add(absl::StrCat("LISTED ", absl::StrJoin(names, ",")));
  }
  void OnPodEvent(EventType type, const Pod& pod) override {
    Add(absl::StrCat(EventTypeName(type), " ", pod.metadata().name()));
  }
  void OnWatchError(const absl::Status& status) override {
    int code = HttpCodeFromStatus(status);
    Add(code != 0 ? absl::StrCat("ERROR ", code) : "ERROR");
  }

  bool WaitFor(absl::string_view entry, absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    auto seen = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return std::find(log_.begin(), log_.end(), entry) != log_.end();
    };
    return mu_.AwaitWithTimeout(absl::Condition(&seen), timeout);
  }
  std::vector<std::string> log() {
    absl::MutexLock lock(&mu_);
    return log_;
  }

 private:
  void Add(std::string entry) {
    absl::MutexLock lock(&mu_);
    log_.push_back(std::move(entry));
  }
  absl::Mutex mu_;
  std::vector<std::string> log_ ABSL_GUARDED_BY(mu_);
};

std::string PodJson(absl::string_view name, absl::string_view rv) {
  return absl::StrCat(
      R"({"metadata":{"name":")", name,
      R"(","namespace":"default","uid":"uid-)", name,
      R"(","resourceVersion":")", rv,
      R"(","managedFields":[{"manager":"x"}]},"spec":{"nodeName":"node-1",)",
      R"("containers":[{"name":"c"}]},"status":{"phase":"Running",)",
      R"("podIP":"10.0.0.1","podIPs":[{"ip":"10.0.0.1"}]}})");
}

std::string ListJson(std::vector<std::string> items, absl::string_view rv,
                     absl::string_view continue_token) {
  return absl::StrCat(
      R"({"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":")",
      rv, R"(","continue":")", continue_token, R"("},"items":[)",
      absl::StrJoin(items, ","), "]}");
}

std::string EventLine(absl::string_view type, absl::string_view object) {
  return absl::StrCat(R"({"type":")", type, R"(","object":)", object, "}\n");
}

std::string StatusJson(int code, absl::string_view reason) {
  return absl::StrCat(
      R"({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",)",
      R"("message":"m","reason":")", reason, R"(","code":)", code, "}");
}

// Cuts `stream` into pieces of `size` bytes, so lines straddle chunks.
std::vector<std::string> Cut(const std::string& stream, size_t size) {
  std::vector<std::string> out;
  for (size_t i = 0; i < stream.size(); i += size)
    out.push_back(stream.substr(i, size));
  return out;
}

// The query value of `key` in a request target, or "".
std::string Query(const std::string& target, absl::string_view key) {
  std::string needle = absl::StrCat(key, "=");
  for (absl::string_view part :
       absl::StrSplit(target.substr(target.find('?') + 1), '&')) {
    if (absl::StartsWith(part, needle))
      return std::string(part.substr(needle.size()));
  }
  return "";
}

PodWatcher::Options FastOptions() {
  PodWatcher::Options options;
  options.node_name = "node-1";
  options.initial_backoff = absl::Milliseconds(10);
  options.max_backoff = absl::Milliseconds(50);
  return options;
}

std::unique_ptr<HttpClient> ClientFor(const FakeApiServer& server) {
  KubeConfig config;
  config.server = server.url();
  auto client = HttpClient::Create(config);
  EXPECT_TRUE(client.ok()) << client.status();
  return *std::move(client);
}

TEST(PodWatcherTest, ListWatchRewatchRelistAndStop) {
  absl::Mutex mu;
  int lists = 0, page2 = 0, watches = 0;
  auto server = FakeApiServer::Start([&](const FakeRequest& request) {
    absl::MutexLock lock(&mu);
    FakeResponse response;
    bool is_watch = Query(request.target, "watch") == "1";
    if (!is_watch) {
      if (!Query(request.target, "continue").empty()) {
        // The first continuation has expired: the watcher must restart the
        // list.
        if (page2++ == 0) {
          response.status = 410;
          response.body = StatusJson(410, "Expired");
        } else {
          response.body = ListJson({PodJson("c", "99")}, "105", "");
        }
        return response;
      }
      ++lists;
      if (lists <= 2) {
        response.body =
            ListJson({PodJson("a", "90"), PodJson("b", "95")}, "105", "c1");
      } else if (lists == 3) {
        response.body = ListJson(
            {PodJson("a", "150"), PodJson("c", "99"), PodJson("e", "160")},
            "200", "");
      } else {
        response.body = ListJson({PodJson("a", "250")}, "300", "");
      }
      return response;
    }
    switch (++watches) {
      case 1: {
        std::string stream =
            EventLine("ADDED", PodJson("d", "106")) +
            EventLine("MODIFIED", PodJson("a", "107")) +
            EventLine(
                "BOOKMARK",
                R"({"kind":"Pod","metadata":{"resourceVersion":"110"}})") +
            EventLine("DELETED", PodJson("b", "111"));
        response.chunks = Cut(stream, 7);
        break;
      }
      case 2:
        response.chunks =
            Cut(EventLine("ERROR", StatusJson(410, "Expired")), 5);
        break;
      case 3:
        response.status = 500;
        response.body = StatusJson(500, "InternalError");
        break;
      case 4:
        response.status = 410;
        response.body = StatusJson(410, "Gone");
        break;
      default:
        response.chunks = {EventLine("ADDED", PodJson("f", "301"))};
        response.hang = true;
        break;
    }
    return response;
  });
  ASSERT_TRUE(server.ok()) << server.status();
  auto client = ClientFor(**server);
  RecordingHandler handler;
  auto watcher = PodWatcher::Create(client.get(), FastOptions(), &handler);
  ASSERT_TRUE(watcher.ok()) << watcher.status();
  (*watcher)->Start();

  ASSERT_TRUE(handler.WaitFor("ADDED f", absl::Seconds(20)))
      << absl::StrJoin(handler.log(), "|");
  absl::Time stop_start = absl::Now();
  (*watcher)->Stop();
  EXPECT_LT(absl::Now() - stop_start, absl::Milliseconds(500));

  EXPECT_EQ(handler.log(),
            (std::vector<std::string>{
                "LISTED a,b,c", "ADDED d", "MODIFIED a", "DELETED b",
                "ERROR 410",  // ERROR event: relist
                "LISTED a,c,e",
                "ERROR 500",  // re-watch from the same version
                "ERROR 410",  // HTTP 410: relist
                "LISTED a", "ADDED f"}));

  std::vector<std::string> watch_versions;
  for (const FakeRequest& request : (*server)->requests()) {
    EXPECT_EQ(request.method, "GET");
    EXPECT_EQ(Query(request.target, "fieldSelector"), "spec.nodeName%3Dnode-1")
        << request.target;
    if (Query(request.target, "watch") == "1") {
      watch_versions.push_back(Query(request.target, "resourceVersion"));
      EXPECT_EQ(Query(request.target, "allowWatchBookmarks"), "true");
      int timeout = 0;
      ASSERT_TRUE(
          absl::SimpleAtoi(Query(request.target, "timeoutSeconds"), &timeout));
      EXPECT_GE(timeout, 300);
      EXPECT_LT(timeout, 600);
    } else {
      EXPECT_EQ(Query(request.target, "limit"), "500");
      EXPECT_EQ(Query(request.target, "resourceVersion"), "");
    }
  }
  // After the bookmark (110) and the delete (111), the re-watch resumes at 111.
  EXPECT_EQ(watch_versions,
            (std::vector<std::string>{"105", "111", "200", "200", "300"}));

  PodWatcher::Counters counters = (*watcher)->counters();
  EXPECT_EQ(counters.lists, 3u);
  EXPECT_EQ(counters.watches, 5u);
  EXPECT_EQ(counters.events, 4u);
  EXPECT_EQ(counters.bookmarks, 1u);
  EXPECT_EQ(counters.errors, 1u);
  EXPECT_EQ(counters.expired, 2u);
  EXPECT_EQ(counters.decode_errors, 0u);
}

TEST(PodWatcherTest, BadLineEndsWatchAndResumesFromLastGoodVersion) {
  absl::Mutex mu;
  int watches = 0;
  auto server = FakeApiServer::Start([&](const FakeRequest& request) {
    absl::MutexLock lock(&mu);
    FakeResponse response;
    if (Query(request.target, "watch") != "1") {
      response.body = ListJson({}, "10", "");
    } else if (++watches == 1) {
      response.chunks =
          Cut(EventLine("ADDED", PodJson("a", "11")) + "{not json\n" +
                  EventLine("ADDED", PodJson("never", "12")),
              13);
    } else {
      response.chunks = {EventLine("ADDED", PodJson("b", "13"))};
      response.hang = true;
    }
    return response;
  });
  ASSERT_TRUE(server.ok());
  auto client = ClientFor(**server);
  RecordingHandler handler;
  auto watcher = PodWatcher::Create(client.get(), FastOptions(), &handler);
  ASSERT_TRUE(watcher.ok());
  (*watcher)->Start();
  ASSERT_TRUE(handler.WaitFor("ADDED b", absl::Seconds(20)))
      << absl::StrJoin(handler.log(), "|");
  (*watcher)->Stop();
  EXPECT_EQ(handler.log(), (std::vector<std::string>{"LISTED ", "ADDED a",
                                                     "ERROR", "ADDED b"}));
  EXPECT_EQ((*watcher)->counters().decode_errors, 1u);
  EXPECT_EQ((*watcher)->counters().lists, 1u);
  std::vector<FakeRequest> requests = (*server)->requests();
  ASSERT_EQ(requests.size(), 3u);
  EXPECT_EQ(Query(requests[2].target, "resourceVersion"), "11");
}

TEST(PodWatcherTest, EmptyQuickWatchIsAnErrorAndStopInterruptsBackoff) {
  auto server = FakeApiServer::Start([](const FakeRequest& request) {
    FakeResponse response;
    response.body =
        Query(request.target, "watch") == "1" ? "" : ListJson({}, "1", "");
    return response;
  });
  ASSERT_TRUE(server.ok());
  auto client = ClientFor(**server);
  RecordingHandler handler;
  PodWatcher::Options options = FastOptions();
  options.initial_backoff = absl::Seconds(60);  // would sleep a minute
  options.max_backoff = absl::Seconds(60);
  auto watcher = PodWatcher::Create(client.get(), options, &handler);
  ASSERT_TRUE(watcher.ok());
  (*watcher)->Start();
  ASSERT_TRUE(handler.WaitFor("ERROR", absl::Seconds(20)));
  absl::Time start = absl::Now();
  (*watcher)->Stop();
  EXPECT_LT(absl::Now() - start, absl::Milliseconds(500));
  EXPECT_EQ((*watcher)->counters().errors, 1u);
  EXPECT_EQ((*watcher)->counters().watches, 1u);
}

TEST(PodWatcherTest, StopInterruptsAHungList) {
  auto server = FakeApiServer::Start([](const FakeRequest&) {
    FakeResponse response;
    response.hang = true;  // headers, then nothing
    return response;
  });
  ASSERT_TRUE(server.ok());
  auto client = ClientFor(**server);
  RecordingHandler handler;
  auto watcher = PodWatcher::Create(client.get(), FastOptions(), &handler);
  ASSERT_TRUE(watcher.ok());
  (*watcher)->Start();
  ASSERT_TRUE((*server)->WaitForRequests(1, absl::Seconds(20)));
  absl::Time start = absl::Now();
  (*watcher)->Stop();
  EXPECT_LT(absl::Now() - start, absl::Milliseconds(500));
  EXPECT_TRUE(handler.log().empty());
}

TEST(PodWatcherTest, RejectsBadNodeNames) {
  KubeConfig config;
  config.server = "http://127.0.0.1:1";
  auto client = HttpClient::Create(config);
  ASSERT_TRUE(client.ok());
  RecordingHandler handler;
  for (const char* name :
       {"", "Node-1", "node&watch=0", "a/b", "node 1", "-x"}) {
    PodWatcher::Options options;
    options.node_name = name;
    EXPECT_FALSE(PodWatcher::Create(client->get(), options, &handler).ok())
        << name;
  }
}

TEST(PodWatcherTest, DestroyWithoutStartOrStopIsFine) {
  KubeConfig config;
  config.server = "http://127.0.0.1:1";
  auto client = HttpClient::Create(config);
  ASSERT_TRUE(client.ok());
  RecordingHandler handler;
  auto watcher = PodWatcher::Create(client->get(), FastOptions(), &handler);
  ASSERT_TRUE(watcher.ok());
  watcher->reset();
  auto started = PodWatcher::Create(client->get(), FastOptions(), &handler);
  ASSERT_TRUE(started.ok());
  (*started)->Start();
  (*started)->Start();
  started->reset();  // destructor stops
}

}  // namespace
}  // namespace kube
}  // namespace pc
