#include "node_agent/capture_options.h"

#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "node_agent/annotation.h"

namespace pc::agent {
namespace {

absl::Status Invalid(const char* name, absl::string_view value,
                     absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat(
      name, "=", QuoteAnnotationValue(value), " is not valid: ", why));
}

// Decimal digits only, no sign or leading zero, at most max: the same rule
// as the file count.
absl::StatusOr<uint64_t> ParseCount(const char* name, absl::string_view value,
                                    uint64_t min, uint64_t max) {
  const std::string expected =
      absl::StrCat("expected a whole number from ", min, " to ", max);
  if (value.empty() || value.size() > 10 || value[0] == '0') {
    return Invalid(name, value, expected);
  }
  uint64_t n = 0;
  for (char c : value) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) {
      return Invalid(name, value, expected);
    }
    n = n * 10 + static_cast<uint64_t>(c - '0');
  }
  if (n < min || n > max) return Invalid(name, value, expected);
  return n;
}

absl::Status CheckFilterText(absl::string_view value) {
  if (value.size() > kMaxFilterBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        kFilterAnnotation, " is ", value.size(), " bytes long, more than the ",
        kMaxFilterBytes, " bytes allowed"));
  }
  for (char c : value) {
    const unsigned char u = static_cast<unsigned char>(c);
    // A NUL cannot travel in argv; other control characters have no place
    // in a filter and would garble Events and logs.
    if (u < 0x20 && c != '\t' && c != '\n' && c != '\r') {
      return Invalid(kFilterAnnotation, value,
                     "control characters are not allowed in a filter");
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<absl::Duration> ParseOptionDuration(absl::string_view value) {
  const std::string expected = absl::StrCat(
      "expected a duration such as \"90s\", \"10m\" or \"1h30m\" from ",
      FormatOptionDuration(kMinDuration), " to ",
      FormatOptionDuration(kMaxDuration));
  // absl::ParseDuration takes Go's syntax but also a sign, "inf" and bare
  // "0": only digits may start the value, and only digits, '.' and unit
  // letters follow.
  if (value.empty() || value.size() > 64 ||
      !absl::ascii_isdigit(static_cast<unsigned char>(value[0]))) {
    return Invalid(kDurationAnnotation, value, expected);
  }
  for (char c : value) {
    if (!(absl::ascii_isdigit(static_cast<unsigned char>(c)) || c == '.' ||
          c == 'n' || c == 'u' || c == 'm' || c == 's' || c == 'h')) {
      return Invalid(kDurationAnnotation, value, expected);
    }
  }
  absl::Duration d;
  if (!absl::ParseDuration(std::string(value), &d) || d < kMinDuration ||
      d > kMaxDuration) {
    return Invalid(kDurationAnnotation, value, expected);
  }
  // Abseil keeps quarter nanoseconds ("1.00000000025s"); the capture shows
  // and persists whole nanoseconds, so keep only those.
  return absl::Trunc(d, absl::Nanoseconds(1));
}

std::string FormatOptionDuration(absl::Duration d) {
  if (d <= absl::ZeroDuration()) return "0s";
  std::string out;
  const int64_t hours = absl::IDivDuration(d, absl::Hours(1), &d);
  const int64_t minutes = absl::IDivDuration(d, absl::Minutes(1), &d);
  if (hours > 0) absl::StrAppend(&out, hours, "h");
  if (minutes > 0) absl::StrAppend(&out, minutes, "m");
  const int64_t ns = absl::ToInt64Nanoseconds(d);
  std::string seconds = absl::StrCat(ns / 1000000000);
  if (int64_t frac = ns % 1000000000; frac != 0) {
    std::string digits = absl::StrCat(1000000000 + frac).substr(1);
    while (!digits.empty() && digits.back() == '0') digits.pop_back();
    absl::StrAppend(&seconds, ".", digits);
  }
  // Zero parts are left out ("1h30m", "2m", "1h5s"); Go's parser reads
  // every such spelling.
  if (seconds != "0" || out.empty()) absl::StrAppend(&out, seconds, "s");
  return out;
}

absl::StatusOr<CaptureOptionsSpec> ParseCaptureOptions(
    const std::map<std::string, std::string>& annotations) {
  CaptureOptionsSpec out;
  for (const auto& [name, value] : annotations) {
    if (!absl::StartsWith(name, kOptionPrefix)) continue;
    if (name == kFilterAnnotation) {
      if (absl::Status s = CheckFilterText(value); !s.ok()) return s;
      // Only blanks means no filter, as tcpdump would read it.
      if (!absl::StripAsciiWhitespace(value).empty()) out.filter = value;
    } else if (name == kSnaplenAnnotation) {
      auto n = ParseCount(kSnaplenAnnotation, value, kMinSnaplen, kMaxSnaplen);
      if (!n.ok()) return n.status();
      out.snaplen = static_cast<int>(*n);
    } else if (name == kDurationAnnotation) {
      auto d = ParseOptionDuration(value);
      if (!d.ok()) return d.status();
      out.duration = *d;
    } else if (name == kMaxPacketsAnnotation) {
      auto n = ParseCount(kMaxPacketsAnnotation, value, 1, kMaxMaxPackets);
      if (!n.ok()) return n.status();
      out.max_packets = *n;
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown annotation ", QuoteAnnotationValue(name, 64),
                       ": the capture options are ", kFilterAnnotation, ", ",
                       kSnaplenAnnotation, ", ", kDurationAnnotation, " and ",
                       kMaxPacketsAnnotation));
    }
  }
  return out;
}

std::string DescribeOptions(const CaptureOptionsSpec& options) {
  std::vector<std::string> parts;
  if (!options.filter.empty()) {
    parts.push_back(
        absl::StrCat("filter ", QuoteAnnotationValue(options.filter, 256)));
  }
  if (options.snaplen > 0) {
    parts.push_back(absl::StrCat("snaplen ", options.snaplen));
  }
  if (options.duration > absl::ZeroDuration()) {
    parts.push_back(
        absl::StrCat("duration ", FormatOptionDuration(options.duration)));
  }
  if (options.max_packets > 0) {
    parts.push_back(absl::StrCat("max-packets ", options.max_packets));
  }
  if (parts.empty()) return "no options";
  return absl::StrJoin(parts, ", ");
}

packetcapture::v1::CaptureOptions OptionsToProto(
    const CaptureOptionsSpec& options) {
  packetcapture::v1::CaptureOptions p;
  p.set_filter(options.filter);
  p.set_snaplen(static_cast<uint32_t>(options.snaplen));
  if (options.duration > absl::ZeroDuration()) {
    const int64_t ns = absl::ToInt64Nanoseconds(options.duration);
    p.mutable_duration()->set_seconds(ns / 1000000000);
    p.mutable_duration()->set_nanos(static_cast<int32_t>(ns % 1000000000));
  }
  p.set_max_packets(options.max_packets);
  return p;
}

CaptureOptionsSpec OptionsFromProto(
    const packetcapture::v1::CaptureOptions& proto) {
  CaptureOptionsSpec o;
  o.filter = proto.filter();
  o.snaplen = static_cast<int>(proto.snaplen());
  if (proto.has_duration()) {
    o.duration = absl::Seconds(proto.duration().seconds()) +
                 absl::Nanoseconds(proto.duration().nanos());
  }
  o.max_packets = proto.max_packets();
  return o;
}

}  // namespace pc::agent
