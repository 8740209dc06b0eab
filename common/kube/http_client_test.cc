#include "common/kube/http_client.h"

#include <stdlib.h>

#include <atomic>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "common/kube/fake_api_server.h"
#include "gtest/gtest.h"

namespace pc {
namespace kube {
namespace {

std::string TempPath(const std::string& name) {
  const char* base = getenv("TEST_TMPDIR");
  return absl::StrCat(base != nullptr ? base : "/tmp", "/", name);
}

void WriteFile(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << content;
}

std::unique_ptr<HttpClient> ClientFor(const FakeApiServer& server,
                                      KubeConfig config = {},
                                      HttpClient::Options options = {}) {
  config.server = server.url();
  absl::StatusOr<std::unique_ptr<HttpClient>> client =
      HttpClient::Create(std::move(config), std::move(options));
  EXPECT_TRUE(client.ok()) << client.status();
  return client.ok() ? *std::move(client) : nullptr;
}

TEST(HttpClientTest, GetAndPostWithHeaders) {
  auto server = FakeApiServer::Start([](const FakeRequest& request) {
    FakeResponse response;
    response.status = request.method == "POST" ? 201 : 200;
    response.body =
        absl::StrCat(request.method, " ", request.target, " ", request.body);
    return response;
  });
  ASSERT_TRUE(server.ok()) << server.status();
  KubeConfig config;
  config.token = "static-token";
  auto client = ClientFor(**server, config);

  absl::StatusOr<HttpResponse> get = client->Do("GET", "/api/v1/pods?limit=1");
  ASSERT_TRUE(get.ok()) << get.status();
  EXPECT_EQ(get->status_code, 200);
  EXPECT_EQ(get->body, "GET /api/v1/pods?limit=1 ");

  absl::StatusOr<HttpResponse> post =
      client->Do("POST", "/api/v1/namespaces/a/events", std::string(5000, 'x'));
  ASSERT_TRUE(post.ok()) << post.status();
  EXPECT_EQ(post->status_code, 201);
  EXPECT_EQ(post->body, absl::StrCat("POST /api/v1/namespaces/a/events ",
                                     std::string(5000, 'x')));

  std::vector<FakeRequest> requests = (*server)->requests();
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_EQ(requests[0].headers["authorization"], "Bearer static-token");
  EXPECT_EQ(requests[0].headers["accept"], "application/json");
  EXPECT_EQ(requests[1].headers["content-type"], "application/json");
  EXPECT_EQ(requests[1].headers.count("expect"), 0u);
}

TEST(HttpClientTest, HttpErrorsAreResponsesNotStatuses) {
  auto server = FakeApiServer::Start([](const FakeRequest&) {
    FakeResponse response;
    response.status = 404;
    response.body =
        R"({"kind":"Status","status":"Failure","message":"pods \"x\" not found","reason":"NotFound","code":404})";
    return response;
  });
  ASSERT_TRUE(server.ok());
  auto client = ClientFor(**server);
  absl::StatusOr<HttpResponse> response =
      client->Do("GET", "/api/v1/namespaces/a/pods/x");
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->status_code, 404);

  absl::Status error = HttpError(response->status_code, response->body);
  EXPECT_EQ(error.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(HttpCodeFromStatus(error), 404);
  EXPECT_NE(error.message().find("pods \"x\" not found"), std::string::npos)
      << error;
  EXPECT_EQ(HttpCodeFromStatus(absl::UnavailableError("x")), 0);
}

TEST(HttpClientTest, BodyLimit) {
  auto server = FakeApiServer::Start([](const FakeRequest&) {
    FakeResponse response;
    response.body = std::string(100000, 'z');
    return response;
  });
  ASSERT_TRUE(server.ok());
  HttpClient::Options options;
  options.max_body_bytes = 1000;
  auto client = ClientFor(**server, {}, options);
  absl::StatusOr<HttpResponse> response = client->Do("GET", "/big");
  EXPECT_EQ(response.status().code(), absl::StatusCode::kResourceExhausted)
      << response.status();
}

TEST(HttpClientTest, TransportErrorIsUnavailable) {
  int port;
  {
    auto server =
        FakeApiServer::Start([](const FakeRequest&) { return FakeResponse(); });
    ASSERT_TRUE(server.ok());
    port = (*server)->port();
  }  // closed: nothing listens there now
  KubeConfig config;
  config.server = absl::StrCat("http://127.0.0.1:", port);
  auto client = HttpClient::Create(config);
  ASSERT_TRUE(client.ok());
  absl::StatusOr<HttpResponse> response = (*client)->Do("GET", "/");
  EXPECT_EQ(response.status().code(), absl::StatusCode::kUnavailable)
      << response.status();
  absl::Status stream =
      (*client)->Stream("/", [](absl::string_view) { return true; });
  EXPECT_EQ(stream.code(), absl::StatusCode::kUnavailable) << stream;
}

TEST(HttpClientTest, ReusesIdleConnections) {
  auto server = FakeApiServer::Start(
      [](const FakeRequest& request) {
        FakeResponse response;
        response.body = request.target;
        return response;
      },
      /*keep_alive=*/true);
  ASSERT_TRUE(server.ok());
  auto client = ClientFor(**server);
  for (int i = 0; i < 20; ++i) {
    absl::StatusOr<HttpResponse> response =
        client->Do("POST", absl::StrCat("/r", i), "{}");
    ASSERT_TRUE(response.ok()) << response.status();
    EXPECT_EQ(response->body, absl::StrCat("/r", i));
  }
  EXPECT_EQ((*server)->accepted_connections(), 1u);

  // Calls at once get connections of their own, and keep at most
  // max_idle_connections of them for later.
  HttpClient::Options options;
  options.max_idle_connections = 2;
  auto bounded = ClientFor(**server, {}, options);
  const size_t before = (*server)->accepted_connections();
  std::vector<std::thread> threads;
  std::atomic<int> failed{0};
  for (int t = 0; t < 6; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 10; ++i) {
        if (!bounded->Do("GET", "/x").ok()) ++failed;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(failed.load(), 0);
  EXPECT_LT((*server)->accepted_connections() - before, 60u);  // some reused
  bounded.reset();
  // Only the kept ones were still open; the client closed them.
  for (int i = 0; i < 200 && (*server)->open_connections() > 1; ++i) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_EQ((*server)->open_connections(), 1u);  // `client`'s

  // Without a pool, each call connects anew.
  options.max_idle_connections = 0;
  auto unpooled = ClientFor(**server, {}, options);
  const size_t unpooled_before = (*server)->accepted_connections();
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(unpooled->Do("GET", "/y").ok());
  EXPECT_EQ((*server)->accepted_connections() - unpooled_before, 3u);
}

TEST(HttpClientTest, CallAfterACancelledCallWorks) {
  auto server = FakeApiServer::Start(
      [](const FakeRequest& request) {
        FakeResponse response;
        if (request.target == "/slow") {
          response.chunks = {"a", "b"};
          response.chunk_delay = absl::Seconds(1);
        } else {
          response.body = "fast";
        }
        return response;
      },
      /*keep_alive=*/true);
  ASSERT_TRUE(server.ok());
  HttpClient::Options options;
  options.max_idle_connections = 1;
  auto client = ClientFor(**server, {}, options);
  ASSERT_TRUE(client->Do("GET", "/fast").ok());
  std::atomic<bool> cancel{false};
  std::thread canceller([&] {
    (*server)->WaitForRequests(2, absl::Seconds(10));
    cancel.store(true);
  });
  absl::StatusOr<HttpResponse> slow =
      client->Do("GET", "/slow", "", "", &cancel);
  canceller.join();
  EXPECT_EQ(slow.status().code(), absl::StatusCode::kCancelled);
  absl::StatusOr<HttpResponse> next = client->Do("GET", "/fast");
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_EQ(next->body, "fast");
}

TEST(HttpClientTest, InvalidInputs) {
  KubeConfig config;
  config.server = "ftp://x";
  EXPECT_FALSE(HttpClient::Create(config).ok());
  config.server = "http://127.0.0.1:1";
  config.token = "a\r\nX-Injected: 1";
  EXPECT_FALSE(HttpClient::Create(config).ok());
  config.token = "";
  config.token_file = "/nonexistent/token";
  EXPECT_FALSE(HttpClient::Create(config).ok());
  config.token_file = "";
  auto client = HttpClient::Create(config);
  ASSERT_TRUE(client.ok());
  EXPECT_EQ((*client)->Do("GET", "no-slash").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*client)->Do("G T", "/").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(HttpClientTest, RereadsTokenFileAfter401AndRetriesOnce) {
  std::string token_path = TempPath("token-401");
  WriteFile(token_path, "old-token\n");
  auto server = FakeApiServer::Start([](const FakeRequest& request) {
    FakeResponse response;
    auto it = request.headers.find("authorization");
    if (it == request.headers.end() || it->second != "Bearer new-token") {
      response.status = 401;
      response.body =
          R"({"kind":"Status","status":"Failure","reason":"Unauthorized","code":401})";
    } else {
      response.chunks = {"o", "k"};
    }
    return response;
  });
  ASSERT_TRUE(server.ok());
  KubeConfig config;
  config.token_file = token_path;
  auto client = ClientFor(**server, config);

  absl::StatusOr<HttpResponse> response = client->Do("GET", "/x");
  ASSERT_TRUE(response.ok());
  EXPECT_EQ(response->status_code,
            401);  // rotated token not there yet: still 401
  EXPECT_EQ((*server)->requests().size(), 2u);  // one retry, not more

  WriteFile(token_path, "new-token\n");  // kubelet rotated the token
  response = client->Do("GET", "/x");
  ASSERT_TRUE(response.ok());
  EXPECT_EQ(response->status_code, 200);
  EXPECT_EQ(response->body, "ok");

  WriteFile(token_path, "old-token\n");
  std::string got;
  absl::Status status = client->Stream("/watch", [&](absl::string_view chunk) {
    got.append(chunk.data(), chunk.size());
    return true;
  });
  // The token is cached for a minute, so this uses new-token without a 401.
  EXPECT_TRUE(status.ok()) << status;
  EXPECT_EQ(got, "ok");
}

TEST(HttpClientTest, StreamDeliversChunksInOrder) {
  std::vector<std::string> chunks;
  std::string all;
  for (int i = 0; i < 50; ++i) {
    chunks.push_back(
        std::string(1 + (i * 37) % 200, static_cast<char>('a' + i % 26)));
    all += chunks.back();
  }
  auto server = FakeApiServer::Start([&](const FakeRequest&) {
    FakeResponse response;
    response.chunks = chunks;
    return response;
  });
  ASSERT_TRUE(server.ok());
  auto client = ClientFor(**server);
  std::string got;
  absl::Status status = client->Stream("/s", [&](absl::string_view chunk) {
    got.append(chunk.data(), chunk.size());
    return true;
  });
  EXPECT_TRUE(status.ok()) << status;
  EXPECT_EQ(got, all);
}

TEST(HttpClientTest, StreamNon200CarriesTheCode) {
  auto server = FakeApiServer::Start([](const FakeRequest&) {
    FakeResponse response;
    response.status = 410;
    response.body =
        R"({"kind":"Status","status":"Failure","message":"too old resource version","reason":"Expired","code":410})";
    return response;
  });
  ASSERT_TRUE(server.ok());
  auto client = ClientFor(**server);
  bool called = false;
  absl::Status status = client->Stream("/s", [&](absl::string_view) {
    called = true;
    return true;
  });
  EXPECT_FALSE(called);  // an error body is not stream data
  EXPECT_EQ(HttpCodeFromStatus(status), 410) << status;
  EXPECT_NE(status.message().find("too old resource version"),
            std::string::npos)
      << status;
}

TEST(HttpClientTest, StreamStopsWhenCallbackSaysSo) {
  auto server = FakeApiServer::Start([](const FakeRequest&) {
    FakeResponse response;
    response.chunks = {"first"};
    response.hang = true;
    return response;
  });
  ASSERT_TRUE(server.ok());
  auto client = ClientFor(**server);
  absl::Status status =
      client->Stream("/s", [](absl::string_view) { return false; });
  EXPECT_TRUE(status.ok()) << status;
}

TEST(HttpClientTest, CancelStopsAnIdleStreamPromptly) {
  auto server = FakeApiServer::Start([](const FakeRequest&) {
    FakeResponse response;
    response.chunks = {"hello"};
    response.hang = true;
    return response;
  });
  ASSERT_TRUE(server.ok());
  auto client = ClientFor(**server);
  std::atomic<bool> cancel{false};
  absl::Notification got_data;
  absl::Time cancelled_at;
  std::thread canceller([&] {
    got_data.WaitForNotificationWithTimeout(absl::Seconds(20));
    absl::SleepFor(absl::Milliseconds(200));
    cancelled_at = absl::Now();
    cancel.store(true);
  });
  absl::Status status = client->Stream(
      "/s",
      [&](absl::string_view) {
        if (!got_data.HasBeenNotified()) got_data.Notify();
        return true;
      },
      &cancel);
  absl::Time returned_at = absl::Now();
  canceller.join();
  EXPECT_EQ(status.code(), absl::StatusCode::kCancelled) << status;
  EXPECT_LT(returned_at - cancelled_at, absl::Milliseconds(500));
}

TEST(HttpClientTest, IdleTimeoutEndsADeadStream) {
  auto server = FakeApiServer::Start([](const FakeRequest&) {
    FakeResponse response;
    response.chunks = {"x"};
    response.hang = true;
    return response;
  });
  ASSERT_TRUE(server.ok());
  HttpClient::Options options;
  options.stream_idle_timeout = absl::Seconds(1);
  auto client = ClientFor(**server, {}, options);
  absl::Time start = absl::Now();
  absl::Status status =
      client->Stream("/s", [](absl::string_view) { return true; });
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
}

}  // namespace
}  // namespace kube
}  // namespace pc
