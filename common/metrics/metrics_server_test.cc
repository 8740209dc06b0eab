#include "common/metrics/metrics_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/metrics/exposition_test_util.h"
#include "common/metrics/families.h"
#include "gtest/gtest.h"

namespace pc::metrics {
namespace {

using testutil::Exposition;
using testutil::ParseExposition;

class FakeCollector : public prometheus::Collectable {
 public:
  std::vector<prometheus::MetricFamily> Collect() const override {
    LatencyHistogram h({0.01, 0.1});
    h.Observe(absl::Milliseconds(5));
    h.Observe(absl::Milliseconds(50));
    h.Observe(absl::Seconds(1));
    std::vector<prometheus::MetricFamily> out;
    out.push_back(
        Gauge("test_things", "things").Add(3, {{"kind", "a b"}}).Build());
    out.push_back(Counter("test_events_total", "events").Add(7).Build());
    out.push_back(Histogram("test_latency_seconds", "latency")
                      .AddHistogram(h.Take())
                      .Build());
    return out;
  }
};

// GET path from 127.0.0.1:port; the whole response (headers and body).
std::string HttpGet(int port, const std::string& path) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return "";
  }
  const std::string request =
      absl::StrCat("GET ", path, " HTTP/1.0\r\nHost: localhost\r\n\r\n");
  if (write(fd, request.data(), request.size()) < 0) {
    close(fd);
    return "";
  }
  std::string response;
  char buf[4096];
  ssize_t n;
  while ((n = read(fd, buf, sizeof(buf))) > 0) response.append(buf, n);
  close(fd);
  return response;
}

std::string Body(const std::string& response) {
  const size_t end = response.find("\r\n\r\n");
  return end == std::string::npos ? "" : response.substr(end + 4);
}

TEST(MetricsServerTest, ServesCollectorsInTextFormat) {
  auto server =
      MetricsServer::Start("127.0.0.1:0", {std::make_shared<FakeCollector>()});
  ASSERT_TRUE(server.ok()) << server.status();
  ASSERT_GT((*server)->port(), 0);
  const std::string response = HttpGet((*server)->port(), "/metrics");
  ASSERT_TRUE(absl::StartsWith(response, "HTTP/1.1 200")) << response;
  EXPECT_TRUE(absl::StrContains(response, "Content-Type: text/plain"))
      << response;
  auto parsed = ParseExposition(Body(response));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->Get("test_things{kind=\"a b\"}"), 3);
  EXPECT_EQ(parsed->Get("test_events_total"), 7);
  EXPECT_EQ(parsed->types.at("test_events_total"), "counter");
  EXPECT_EQ(parsed->types.at("test_latency_seconds"), "histogram");
  EXPECT_EQ(parsed->Get("test_latency_seconds_bucket{le=\"0.01\"}"), 1);
  EXPECT_EQ(parsed->Get("test_latency_seconds_bucket{le=\"0.1\"}"), 2);
  EXPECT_EQ(parsed->Get("test_latency_seconds_bucket{le=\"+Inf\"}"), 3);
  EXPECT_EQ(parsed->Get("test_latency_seconds_count"), 3);
  EXPECT_NEAR(parsed->Get("test_latency_seconds_sum"), 1.055, 1e-9);
}

TEST(MetricsServerTest, BusyPortIsAnError) {
  auto first = MetricsServer::Start("127.0.0.1:0", {});
  ASSERT_TRUE(first.ok()) << first.status();
  auto second =
      MetricsServer::Start(absl::StrCat("127.0.0.1:", (*first)->port()), {});
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
}

TEST(MetricsServerTest, MalformedAddressIsAnError) {
  for (const char* address :
       {"127.0.0.1", ":9102", "127.0.0.1:x", "127.0.0.1:70000"}) {
    EXPECT_EQ(MetricsServer::Start(address, {}).status().code(),
              absl::StatusCode::kInvalidArgument)
        << address;
  }
}

TEST(MetricsServerTest, StartMetricsOrLogSkipsEmptyAndSurvivesFailure) {
  EXPECT_EQ(StartMetricsOrLog("", {}), nullptr);
  EXPECT_EQ(StartMetricsOrLog("not-an-address", {}), nullptr);
  auto running = StartMetricsOrLog("127.0.0.1:0", {});
  ASSERT_NE(running, nullptr);
  EXPECT_GT(running->port(), 0);
}

TEST(MetricsServerTest, StopsWithinASecond) {
  // civetweb alone notices a stop only between 2-second polls.
  for (const char* address : {"127.0.0.1:0", "0.0.0.0:0"}) {
    auto server = MetricsServer::Start(address, {});
    ASSERT_TRUE(server.ok()) << server.status();
    const int port = (*server)->port();
    const absl::Time start = absl::Now();
    server->reset();
    EXPECT_LT(absl::Now() - start, absl::Seconds(1)) << address;
    EXPECT_EQ(HttpGet(port, "/metrics"), "") << address;
  }
}

}  // namespace
}  // namespace pc::metrics
