// Fuzzes the watch-stream decoder. The first byte picks the splitter's line
// limit (tiny limits exercise the over-long-line path); the rest is a watch
// stream. Network chunks may end anywhere, so feeding the stream whole, cut
// in two at every boundary, or one byte at a time must give the same lines,
// the same drop count and the same partial line. Every line is decoded; a
// decoded event re-encoded with ToJson must decode to the same event.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/kube/kube_json.h"
#include "common/kube/watch_decoder.h"
#include "google/protobuf/util/message_differencer.h"
#include "testing/fuzz/fuzz_util.h"

namespace {

using pc::kube::DecodeWatchEvent;
using pc::kube::EventType;
using pc::kube::LineSplitter;

struct Split {
  std::vector<std::string> lines;
  uint64_t dropped = 0;
  size_t buffered = 0;
};

// Feeds `stream` in pieces ending at `cuts` (ascending offsets).
Split Feed(size_t max_line, const std::string& stream,
           const std::vector<size_t>& cuts) {
  LineSplitter splitter(max_line);
  Split out;
  auto on_line = [&](absl::string_view line) {
    FUZZ_CHECK(!line.empty(), "empty line");
    FUZZ_CHECK(line.find('\n') == absl::string_view::npos, "newline in line");
    FUZZ_CHECK(line.size() <= max_line, absl::StrCat(line.size()));
    out.lines.emplace_back(line);
  };
  size_t pos = 0;
  for (size_t cut : cuts) {
    splitter.Feed(absl::string_view(stream).substr(pos, cut - pos), on_line);
    FUZZ_CHECK(splitter.buffered_bytes() <= max_line,
               absl::StrCat(splitter.buffered_bytes()));
    pos = cut;
  }
  splitter.Feed(absl::string_view(stream).substr(pos), on_line);
  out.dropped = splitter.dropped_lines();
  out.buffered = splitter.buffered_bytes();
  return out;
}

void CheckSame(const Split& a, const Split& b, const std::string& how) {
  FUZZ_CHECK(a.lines == b.lines, how);
  FUZZ_CHECK(a.dropped == b.dropped, how);
  FUZZ_CHECK(a.buffered == b.buffered, how);
}

void CheckDecode(absl::string_view line) {
  auto event = DecodeWatchEvent(line);
  if (!event.ok()) {
    FUZZ_CHECK(absl::IsInvalidArgument(event.status()),
               event.status().ToString());
    return;
  }
  if (event->type == EventType::kError) return;
  // Re-encode the pod and decode it again: the same pod.
  auto json = pc::kube::ToJson(event->pod);
  if (!json.ok()) return;  // e.g. strings that are not UTF-8
  const std::string again_line =
      absl::StrCat("{\"type\":\"", pc::kube::EventTypeName(event->type),
                   "\",\"object\":", *json, "}");
  auto again = DecodeWatchEvent(again_line);
  FUZZ_CHECK(again.ok(),
             absl::StrCat(again.status().ToString(), " for ", again_line));
  FUZZ_CHECK(again->type == event->type, again_line);
  FUZZ_CHECK(google::protobuf::util::MessageDifferencer::Equals(again->pod,
                                                                event->pod),
             absl::StrCat(event->pod.ShortDebugString(), " vs ",
                          again->pod.ShortDebugString()));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  pc::fuzz::FuzzInput in(data, size);
  const uint8_t limit = in.Byte();
  const size_t max_line = (limit & 0x80)
                              ? LineSplitter::kDefaultMaxLineBytes
                              : static_cast<size_t>(limit & 0x3f) + 1;
  const std::string stream = in.Rest();

  const Split whole = Feed(max_line, stream, {});
  // Every two-piece split (quadratic: the fuzzer's inputs stay small).
  if (stream.size() <= 4096) {
    for (size_t cut = 0; cut <= stream.size(); ++cut) {
      CheckSame(whole, Feed(max_line, stream, {cut}),
                absl::StrCat("cut at ", cut));
    }
  }
  std::vector<size_t> bytewise;
  for (size_t i = 1; i < stream.size(); ++i) bytewise.push_back(i);
  CheckSame(whole, Feed(max_line, stream, bytewise), "byte by byte");

  for (const auto& line : whole.lines) CheckDecode(line);
  return 0;
}
