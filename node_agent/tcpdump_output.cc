#include "node_agent/tcpdump_output.h"

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/strip.h"

namespace pc::agent {
namespace {

constexpr size_t kMaxLine = 1024;

// "123 packets captured" -> 123 if the line ends with suffix.
bool CounterLine(absl::string_view line, absl::string_view suffix,
                 uint64_t* value) {
  if (!absl::EndsWith(line, suffix)) return false;
  absl::string_view number = line.substr(0, line.size() - suffix.size());
  return absl::SimpleAtoi(absl::StripAsciiWhitespace(number), value);
}

}  // namespace

void TcpdumpOutput::Feed(absl::string_view text) {
  for (char c : text) {
    if (c == '\n') {
      Line(partial_);
      partial_.clear();
    } else if (partial_.size() < kMaxLine) {
      partial_.push_back(c);
    }
  }
}

void TcpdumpOutput::Line(absl::string_view line) {
  line = absl::StripAsciiWhitespace(line);
  if (line.empty()) return;
  uint64_t value;
  if (CounterLine(line, " packets captured", &value) ||
      CounterLine(line, " packet captured", &value)) {
    captured_ = value;
    has_counters_ = true;
  } else if (CounterLine(line, " packets received by filter", &value) ||
             CounterLine(line, " packet received by filter", &value)) {
    received_ = value;
  } else if (CounterLine(line, " packets dropped by kernel", &value) ||
             CounterLine(line, " packet dropped by kernel", &value)) {
    dropped_by_kernel_ = value;
  } else if (absl::StartsWith(line, "tcpdump: listening on ")) {
    listening_ = true;
  } else if (!absl::StrContains(line, "packets dropped by interface") &&
             !absl::StrContains(line, "packet dropped by interface")) {
    last_message_ = std::string(line);
  }
}

}  // namespace pc::agent
