// Fuzzes ParseCaptureOptions: the first byte chooses which annotation the
// rest is the value of (one of the four options or an unknown name under
// the prefix). Accepted values are within their bounds, a duration spells
// back (FormatOptionDuration) to the same value, and every refusal names
// the annotation.
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/str_cat.h"
#include "node_agent/capture_options.h"
#include "testing/fuzz/fuzz_util.h"

namespace {

using pc::agent::CaptureOptionsSpec;

constexpr const char* kNames[] = {
    pc::agent::kFilterAnnotation, pc::agent::kSnaplenAnnotation,
    pc::agent::kDurationAnnotation, pc::agent::kMaxPacketsAnnotation,
    "tcpdump.antrea.io/other"};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  pc::fuzz::FuzzInput in(data, size);
  const std::string name = kNames[in.Byte() % 5];
  const std::string value = in.Rest();

  auto parsed = pc::agent::ParseCaptureOptions({{name, value}});
  if (!parsed.ok()) {
    FUZZ_CHECK(absl::IsInvalidArgument(parsed.status()),
               parsed.status().ToString());
    FUZZ_CHECK(parsed.status().message().find(name) != std::string::npos ||
                   name == pc::agent::kFilterAnnotation,
               parsed.status().ToString());
    FUZZ_CHECK(parsed.status().message().size() < 600,
               absl::StrCat(parsed.status().message().size()));
    return 0;
  }
  FUZZ_CHECK(name != "tcpdump.antrea.io/other", "unknown name accepted");
  const CaptureOptionsSpec& o = *parsed;
  FUZZ_CHECK(o.filter.size() <= pc::agent::kMaxFilterBytes, "filter size");
  FUZZ_CHECK(o.filter.find('\0') == std::string::npos, "NUL in filter");
  FUZZ_CHECK(o.snaplen == 0 || (o.snaplen >= pc::agent::kMinSnaplen &&
                                o.snaplen <= pc::agent::kMaxSnaplen),
             absl::StrCat(o.snaplen));
  FUZZ_CHECK(o.max_packets <= pc::agent::kMaxMaxPackets,
             absl::StrCat(o.max_packets));
  if (o.duration != absl::ZeroDuration()) {
    FUZZ_CHECK(o.duration >= pc::agent::kMinDuration &&
                   o.duration <= pc::agent::kMaxDuration,
               absl::FormatDuration(o.duration));
    auto back = pc::agent::ParseOptionDuration(
        pc::agent::FormatOptionDuration(o.duration));
    FUZZ_CHECK(back.ok() && *back == o.duration,
               pc::agent::FormatOptionDuration(o.duration));
  }
  // The proto form carries the same options.
  FUZZ_CHECK(pc::agent::OptionsFromProto(pc::agent::OptionsToProto(o)) == o,
             "proto round trip");
  return 0;
}
