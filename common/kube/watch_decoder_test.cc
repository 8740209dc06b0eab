#include "common/kube/watch_decoder.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace pc {
namespace kube {
namespace {

std::vector<std::string> FeedAll(LineSplitter& splitter,
                                 const std::vector<absl::string_view>& chunks) {
  std::vector<std::string> lines;
  for (absl::string_view chunk : chunks) {
    splitter.Feed(chunk,
                  [&](absl::string_view line) { lines.emplace_back(line); });
  }
  return lines;
}

TEST(LineSplitterTest, EverySplitPositionYieldsTheSameLines) {
  const std::string buffer =
      "{\"a\":1}\n{\"b\":22}\r\n\n{\"c\":333}\nrest-without-newline";
  const std::vector<std::string> want = {"{\"a\":1}", "{\"b\":22}",
                                         "{\"c\":333}"};
  absl::string_view all(buffer);
  for (size_t i = 0; i <= buffer.size(); ++i) {
    for (size_t j = i; j <= buffer.size(); ++j) {
      LineSplitter splitter;
      std::vector<std::string> lines = FeedAll(
          splitter, {all.substr(0, i), all.substr(i, j - i), all.substr(j)});
      ASSERT_EQ(lines, want) << "split at " << i << "," << j;
      EXPECT_EQ(splitter.buffered_bytes(),
                std::string("rest-without-newline").size());
      EXPECT_EQ(splitter.dropped_lines(), 0u);
    }
  }
}

TEST(LineSplitterTest, ByteByByte) {
  const std::string buffer = "one\ntwo\nthree\n";
  LineSplitter splitter;
  std::vector<std::string> lines;
  for (char c : buffer) {
    splitter.Feed(absl::string_view(&c, 1),
                  [&](absl::string_view l) { lines.emplace_back(l); });
  }
  EXPECT_EQ(lines, (std::vector<std::string>{"one", "two", "three"}));
  EXPECT_EQ(splitter.buffered_bytes(), 0u);
}

TEST(LineSplitterTest, OverlongLineIsDroppedAndSplitterResyncs) {
  const std::string long_line(100, 'x');
  const std::string buffer =
      "ok1\n" + long_line + "\nok2\n" + std::string(10, 'y') + "\nok3\n";
  absl::string_view all(buffer);
  for (size_t chunk = 1; chunk <= buffer.size(); ++chunk) {
    LineSplitter splitter(/*max_line_bytes=*/10);
    std::vector<std::string> lines;
    size_t max_buffered = 0;
    for (size_t pos = 0; pos < buffer.size(); pos += chunk) {
      splitter.Feed(all.substr(pos, chunk),
                    [&](absl::string_view l) { lines.emplace_back(l); });
      max_buffered = std::max(max_buffered, splitter.buffered_bytes());
    }
    // A line of exactly the limit passes; the longer one is dropped.
    EXPECT_EQ(lines, (std::vector<std::string>{"ok1", "ok2",
                                               std::string(10, 'y'), "ok3"}))
        << "chunk " << chunk;
    EXPECT_EQ(splitter.dropped_lines(), 1u) << "chunk " << chunk;
    EXPECT_LE(max_buffered, 10u) << "chunk " << chunk;
  }
}

TEST(LineSplitterTest, ResetForgetsPartialLine) {
  LineSplitter splitter;
  std::vector<std::string> lines = FeedAll(splitter, {"partial"});
  EXPECT_TRUE(lines.empty());
  splitter.Reset();
  lines = FeedAll(splitter, {"fresh\n"});
  EXPECT_EQ(lines, std::vector<std::string>{"fresh"});
}

constexpr char kPodJson[] = R"({"kind":"Pod","apiVersion":"v1",
 "metadata":{"name":"web-0","namespace":"shop","uid":"u-1","resourceVersion":"1001",
   "annotations":{"packetcapture.io/capture":"true"},"managedFields":[{"manager":"kubectl"}]},
 "spec":{"nodeName":"node-1","containers":[{"name":"c","image":"nginx"}],"hostNetwork":false},
 "status":{"phase":"Running","podIP":"10.1.0.5","podIPs":[{"ip":"10.1.0.5"}],
   "containerStatuses":[{"name":"c","ready":true,"restartCount":0}]},
 "futureField":{"nested":[1,2,{"x":null}]}})";

std::string Line(absl::string_view type, absl::string_view object) {
  std::string line =
      absl::StrCat(R"({"type":")", type, R"(","object":)", object, "}");
  line.erase(std::remove(line.begin(), line.end(), '\n'), line.end());
  return line;
}

TEST(DecodeWatchEventTest, PodEventsWithUnknownFields) {
  for (auto [name, type] :
       {std::pair<const char*, EventType>{"ADDED", EventType::kAdded},
        {"MODIFIED", EventType::kModified},
        {"DELETED", EventType::kDeleted}}) {
    absl::StatusOr<WatchEvent> event = DecodeWatchEvent(Line(name, kPodJson));
    ASSERT_TRUE(event.ok()) << name << ": " << event.status();
    EXPECT_EQ(event->type, type);
    EXPECT_EQ(EventTypeName(event->type), name);
    EXPECT_EQ(event->pod.metadata().name(), "web-0");
    EXPECT_EQ(event->pod.metadata().namespace_(), "shop");
    EXPECT_EQ(event->pod.metadata().uid(), "u-1");
    EXPECT_EQ(event->pod.metadata().resource_version(), "1001");
    EXPECT_EQ(
        event->pod.metadata().annotations().at("packetcapture.io/capture"),
        "true");
    EXPECT_EQ(event->pod.spec().node_name(), "node-1");
    EXPECT_EQ(event->pod.status().phase(), "Running");
    EXPECT_EQ(event->pod.status().pod_ip(), "10.1.0.5");
    ASSERT_EQ(event->pod.status().pod_ips_size(), 1);
  }
}

TEST(DecodeWatchEventTest, DeletionTimestampAndUnknownTopLevelFields) {
  absl::StatusOr<WatchEvent> event = DecodeWatchEvent(
      R"({"object":{"metadata":{"name":"p","deletionTimestamp":"2024-05-01T10:00:00Z"}},)"
      R"("type":"MODIFIED","extra":true})");
  ASSERT_TRUE(event.ok()) << event.status();
  EXPECT_EQ(event->pod.metadata().deletion_timestamp(), "2024-05-01T10:00:00Z");
}

TEST(DecodeWatchEventTest, Bookmark) {
  absl::StatusOr<WatchEvent> event = DecodeWatchEvent(
      R"({"type":"BOOKMARK","object":{"kind":"Pod","apiVersion":"v1","metadata":{"resourceVersion":"12345","annotations":{"k8s.io/initial-events-end":"true"},"creationTimestamp":null},"spec":{"containers":null},"status":{}}})");
  ASSERT_TRUE(event.ok()) << event.status();
  EXPECT_EQ(event->type, EventType::kBookmark);
  EXPECT_EQ(event->pod.metadata().resource_version(), "12345");
}

TEST(DecodeWatchEventTest, ErrorCarriesStatus) {
  absl::StatusOr<WatchEvent> event = DecodeWatchEvent(
      R"({"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","metadata":{},)"
      R"j("status":"Failure","message":"too old resource version: 5 (1001)",)j"
      R"("reason":"Expired","code":410}})");
  ASSERT_TRUE(event.ok()) << event.status();
  EXPECT_EQ(event->type, EventType::kError);
  EXPECT_EQ(event->status.code(), 410);
  EXPECT_EQ(event->status.reason(), "Expired");
  EXPECT_EQ(event->status.status(), "Failure");
  EXPECT_EQ(event->status.message(), "too old resource version: 5 (1001)");

  // A Status without the string "status" still decodes as an ERROR.
  event = DecodeWatchEvent(
      R"({"type":"ERROR","object":{"code":500,"message":"boom"}})");
  ASSERT_TRUE(event.ok()) << event.status();
  EXPECT_EQ(event->type, EventType::kError);
  EXPECT_EQ(event->status.code(), 500);
}

TEST(DecodeWatchEventTest, MalformedIsAnError) {
  for (const char* line :
       {"", "{", "not json", "[]", "{\"type\":\"ADDED\"}",
        "{\"type\":\"ADDED\",\"object\":5}",
        "{\"type\":\"ADDED\",\"object\":{\"metadata\":[]}}",
        "{\"type\":\"SOMETHING\",\"object\":{}}", "{\"type\":\"ERROR\"}",
        "{\"type\":\"ERROR\",\"object\":\"x\"}",
        "{\"type\":\"ADDED\",\"object\":{\"status\":\"Failure\"}}",
        "{\"type\":\"ADDED\",\"object\":{}}}}}",
        "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"\xff\"}}"}) {
    absl::StatusOr<WatchEvent> event = DecodeWatchEvent(line);
    EXPECT_FALSE(event.ok()) << line;
  }
}

TEST(DecodeWatchEventTest, HugeObject) {
  std::string big_annotation(4 << 20, 'a');
  std::string unknown;
  for (int i = 0; i < 20000; ++i)
    absl::StrAppend(&unknown, "\"f", i, "\":[1,{\"x\":\"y\"}],");
  std::string line = absl::StrCat(
      R"({"type":"ADDED","object":{)", unknown,
      R"("metadata":{"name":"big","resourceVersion":"7","annotations":{"big":")",
      big_annotation, R"("}}}})");
  absl::StatusOr<WatchEvent> event = DecodeWatchEvent(line);
  ASSERT_TRUE(event.ok()) << event.status();
  EXPECT_EQ(event->pod.metadata().name(), "big");
  EXPECT_EQ(event->pod.metadata().annotations().at("big").size(),
            big_annotation.size());
}

}  // namespace
}  // namespace kube
}  // namespace pc
