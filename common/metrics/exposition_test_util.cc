#include "common/metrics/exposition_test_util.h"

#include <cmath>
#include <sstream>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "prometheus/metric_family.h"
#include "prometheus/text_serializer.h"

namespace pc::metrics::testutil {

double Exposition::Get(const std::string& series) const {
  auto it = samples.find(series);
  return it == samples.end() ? -1 : it->second;
}

std::string ScrapeText(const prometheus::Collectable& collectable) {
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, collectable.Collect());
  return out.str();
}

absl::StatusOr<Exposition> ParseExposition(const std::string& text) {
  Exposition out;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (line.empty()) continue;
    if (line[0] == '#') {
      std::vector<std::string> words = absl::StrSplit(line, ' ');
      if (words.size() == 4 && words[1] == "TYPE")
        out.types[words[2]] = words[3];
      continue;
    }
    // The series ends at the space after the closing brace (label values
    // may hold spaces) or at the first space.
    size_t end = line.find('{');
    if (end != absl::string_view::npos) {
      end = line.find("} ", end);
      if (end == absl::string_view::npos) {
        return absl::InvalidArgumentError(absl::StrCat("bad line: ", line));
      }
      ++end;
    } else {
      end = line.find(' ');
    }
    if (end == absl::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat("bad line: ", line));
    }
    const std::string series(line.substr(0, end));
    std::vector<std::string> rest =
        absl::StrSplit(line.substr(end + 1), ' ', absl::SkipEmpty());
    if (rest.empty() || rest.size() > 2) {
      return absl::InvalidArgumentError(absl::StrCat("bad line: ", line));
    }
    double value = 0;
    if (rest[0] == "+Inf") {
      value = HUGE_VAL;
    } else if (rest[0] == "-Inf") {
      value = -HUGE_VAL;
    } else if (!absl::SimpleAtod(rest[0], &value)) {
      return absl::InvalidArgumentError(absl::StrCat("bad value: ", line));
    }
    if (!out.samples.emplace(series, value).second) {
      return absl::InvalidArgumentError(absl::StrCat("duplicate: ", series));
    }
  }
  return out;
}

}  // namespace pc::metrics::testutil
