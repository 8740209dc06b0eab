// S3Client's retry policy and error mapping against a scripted HTTP server
// (a fake for the one I/O edge a real S3 server will not produce on demand:
// 5xx, throttling, hangs). Everything else is tested against versitygw in
// s3_client_test.cc.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <functional>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/s3/s3_client.h"
#include "gtest/gtest.h"

namespace pc::s3 {
namespace {

struct Reply {
  int status = 200;
  std::string headers;  // extra "Name: value\r\n" lines
  std::string body;
  bool hang = false;  // never answer
};

// Answers the n-th request (from 0) with script(n); keeps connections alive.
class ScriptedServer {
 public:
  explicit ScriptedServer(std::function<Reply(int)> script)
      : script_(std::move(script)) {
    listen_fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    listen(listen_fd_, 8);
    thread_ = std::thread([this] { Loop(); });
  }
  ~ScriptedServer() {
    stop_ = true;
    thread_.join();
    close(listen_fd_);
  }
  int requests() const { return requests_.load(); }
  std::vector<std::string> dates() {
    absl::MutexLock lock(&mu_);
    return dates_;
  }
  S3Config Config() const {
    S3Config c;
    c.endpoint = absl::StrCat("http://127.0.0.1:", port_);
    c.bucket = "bucket";
    c.access_key = "AK";
    c.secret_key = "SK";
    c.max_attempts = 3;
    c.initial_backoff = absl::Milliseconds(10);
    c.max_backoff = absl::Milliseconds(40);
    return c;
  }

 private:
  bool Readable(int fd) {
    pollfd p{fd, POLLIN, 0};
    return poll(&p, 1, 50) > 0;
  }
  void Loop() {
    while (!stop_) {
      if (!Readable(listen_fd_)) continue;
      int fd = accept(listen_fd_, nullptr, nullptr);
      if (fd < 0) continue;
      Serve(fd);
      close(fd);
    }
  }
  void Serve(int fd) {
    std::string in;
    char buf[65536];
    while (!stop_) {
      size_t end = in.find("\r\n\r\n");
      if (end == std::string::npos) {
        if (!Readable(fd)) continue;
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n <= 0) return;
        in.append(buf, n);
        continue;
      }
      std::string head = absl::AsciiStrToLower(in.substr(0, end));
      size_t length = 0;
      if (size_t at = head.find("content-length:"); at != std::string::npos) {
        absl::SimpleAtoi(head.substr(at + 15, head.find('\r', at) - at - 15),
                         &length);
      }
      while (in.size() < end + 4 + length && !stop_) {
        if (!Readable(fd)) continue;
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n <= 0) return;
        in.append(buf, n);
      }
      if (size_t at = head.find("x-amz-date:"); at != std::string::npos) {
        absl::MutexLock lock(&mu_);
        dates_.push_back(head.substr(at + 11, head.find('\r', at) - at - 11));
      }
      in.erase(0, end + 4 + length);
      Reply reply = script_(requests_++);
      if (reply.hang) {
        while (!stop_ && !Readable(fd)) {
        }
        return;
      }
      std::string out = absl::StrCat(
          "HTTP/1.1 ", reply.status, " X\r\n", reply.headers,
          "Content-Length: ", reply.body.size(), "\r\n\r\n", reply.body);
      if (write(fd, out.data(), out.size()) !=
          static_cast<ssize_t>(out.size())) {
        return;
      }
    }
  }

  std::function<Reply(int)> script_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> requests_{0};
  absl::Mutex mu_;
  std::vector<std::string> dates_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

std::string ErrorXml(const std::string& code) {
  return absl::StrCat("<?xml version=\"1.0\"?><Error><Code>", code,
                      "</Code><Message>scripted</Message></Error>");
}

std::unique_ptr<S3Client> Client(const S3Config& config) {
  auto client = S3Client::Create(config);
  EXPECT_TRUE(client.ok()) << client.status();
  return *std::move(client);
}

TEST(S3ClientRetryTest, SlowDownIsRetriedThenUnavailable) {
  ScriptedServer server([](int) {
    return Reply{503, "", ErrorXml("SlowDown")};
  });
  auto put = Client(server.Config())->Put("k", "v", {});
  EXPECT_EQ(put.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(put.status().message().find("SlowDown"), std::string::npos)
      << put.status();
  EXPECT_EQ(server.requests(), 3);
}

TEST(S3ClientRetryTest, ServerErrorsThenSuccess) {
  ScriptedServer server([](int n) {
    if (n == 0) return Reply{500, "", ErrorXml("InternalError")};
    if (n == 1) return Reply{429, "", ""};
    return Reply{200, "ETag: \"abc\"\r\n", ""};
  });
  auto put = Client(server.Config())->Put("k", "v", {});
  ASSERT_TRUE(put.ok()) << put.status();
  EXPECT_EQ(*put, "\"abc\"");
  EXPECT_EQ(server.requests(), 3);
}

// Every attempt is a request the object store bills: counted by operation.
TEST(S3ClientRetryTest, RequestCountsCountEveryAttempt) {
  ScriptedServer server([](int n) {
    if (n == 0) return Reply{503, "", ErrorXml("SlowDown")};
    if (n == 3) return Reply{204, "", ""};  // the DELETE
    return Reply{200, "ETag: \"abc\"\r\n", "v"};
  });
  auto client = Client(server.Config());
  EXPECT_TRUE(client->RequestCounts().empty());
  ASSERT_TRUE(client->Put("k", "v", {}).ok());  // 503, then 200
  ASSERT_TRUE(client->Get("k").ok());
  ASSERT_TRUE(client->Delete("k").ok());
  EXPECT_EQ(
      client->RequestCounts(),
      (std::map<std::string, uint64_t>{{"PUT", 2}, {"GET", 1}, {"DELETE", 1}}));
  EXPECT_EQ(server.requests(), 4);
}

TEST(S3ClientRetryTest, ClientErrorsAreNotRetried) {
  const struct {
    int status;
    const char* code;
    absl::StatusCode want;
  } kCases[] = {
      {400, "InvalidRequest", absl::StatusCode::kInvalidArgument},
      {403, "AccessDenied", absl::StatusCode::kPermissionDenied},
      {404, "NoSuchKey", absl::StatusCode::kNotFound},
      {412, "PreconditionFailed", absl::StatusCode::kFailedPrecondition},
      {501, "NotImplemented", absl::StatusCode::kUnimplemented},
  };
  for (const auto& c : kCases) {
    ScriptedServer server([&](int) {
      return Reply{c.status, "", ErrorXml(c.code)};
    });
    auto got = Client(server.Config())->Get("k");
    EXPECT_EQ(got.status().code(), c.want) << c.status;
    EXPECT_NE(got.status().message().find(c.code), std::string::npos)
        << got.status();
    EXPECT_EQ(server.requests(), 1) << c.status;
  }
}

TEST(S3ClientRetryTest, ConditionalRequestConflictIsRetried) {
  ScriptedServer server([](int n) {
    if (n == 0) return Reply{409, "", ErrorXml("ConditionalRequestConflict")};
    return Reply{200, "ETag: \"e\"\r\n", ""};
  });
  PutOptions create;
  create.if_none_match_any = true;
  EXPECT_TRUE(Client(server.Config())->Put("k", "v", create).ok());
  EXPECT_EQ(server.requests(), 2);
}

TEST(S3ClientRetryTest, CreateOnlyPutSaysWhenAnEarlierAttemptMayHaveWritten) {
  ScriptedServer server([](int n) {
    if (n == 0) return Reply{500, "", ErrorXml("InternalError")};
    return Reply{412, "", ErrorXml("PreconditionFailed")};
  });
  PutOptions create;
  create.if_none_match_any = true;
  auto put = Client(server.Config())->Put("k", "v", create);
  EXPECT_EQ(put.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(put.status().message().find("may have stored"), std::string::npos)
      << put.status();
}

TEST(S3ClientRetryTest, EachAttemptIsSignedAfresh) {
  ScriptedServer server([](int) {
    return Reply{503, "", ErrorXml("SlowDown")};
  });
  S3Config config = server.Config();
  config.max_attempts = 2;
  // x-amz-date has whole seconds: the retry must come at least 1.1 s later,
  // and the jitter makes a delay anywhere in [base/2, base].
  config.initial_backoff = absl::Milliseconds(2200);
  config.max_backoff = absl::Milliseconds(2200);
  Client(config)->Get("k").IgnoreError();
  std::vector<std::string> dates = server.dates();
  ASSERT_EQ(dates.size(), 2u);
  EXPECT_NE(dates[0], dates[1]);
}

TEST(S3ClientRetryTest, HangingServerIsDeadlineExceeded) {
  ScriptedServer server([](int) { return Reply{200, "", "", true}; });
  S3Config config = server.Config();
  config.request_timeout = absl::Milliseconds(200);
  config.max_attempts = 2;
  absl::Time start = absl::Now();
  auto got = Client(config)->Get("k");
  EXPECT_EQ(got.status().code(), absl::StatusCode::kDeadlineExceeded)
      << got.status();
  EXPECT_LT(absl::Now() - start, absl::Seconds(3));
  EXPECT_EQ(server.requests(), 2);
}

TEST(S3ClientRetryTest, ResponsesAreBounded) {
  ScriptedServer server([](int) {
    return Reply{200, "", std::string(100 << 10, 'x')};
  });
  auto got = Client(server.Config())->Get("k", 0, 10);  // 64 KiB at most
  EXPECT_EQ(got.status().code(), absl::StatusCode::kResourceExhausted)
      << got.status();
  EXPECT_EQ(server.requests(), 1);
}

}  // namespace
}  // namespace pc::s3
