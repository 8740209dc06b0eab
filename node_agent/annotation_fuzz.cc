// Fuzzes ParseMaxFiles: the first four bytes choose max_files (any positive
// int, not only the 1..10000 the agent's config allows: the function states
// no precondition), the rest is the annotation value. An accepted value must
// be exactly the decimal spelling of a number in 1..max_files.
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/str_cat.h"
#include "node_agent/annotation.h"
#include "testing/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  pc::fuzz::FuzzInput in(data, size);
  uint32_t raw = in.U32() & 0x7fffffff;
  const int max_files = raw == 0 ? 1 : static_cast<int>(raw);
  const std::string value = in.Rest();

  auto n = pc::agent::ParseMaxFiles(value, max_files);
  if (n.ok()) {
    FUZZ_CHECK(*n >= 1 && *n <= max_files, absl::StrCat(*n));
    FUZZ_CHECK(absl::StrCat(*n) == value, value);
  } else {
    FUZZ_CHECK(absl::IsInvalidArgument(n.status()), n.status().ToString());
    FUZZ_CHECK(!n.status().message().empty(), "empty message");
  }
  // Every number in range is accepted in its decimal spelling.
  const int k = 1 + static_cast<int>(raw % static_cast<uint32_t>(max_files));
  auto back = pc::agent::ParseMaxFiles(absl::StrCat(k), max_files);
  FUZZ_CHECK(back.ok() && *back == k, absl::StrCat(k, " of ", max_files));
  return 0;
}
