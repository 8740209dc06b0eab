#include "common/pcap/fuzz_files.h"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "testing/fuzz/fuzz_util.h"

namespace pc::pcap::fuzz {

std::string MakeTempDir(const std::string& prefix) {
  const char* base = std::getenv("TEST_TMPDIR");
  std::string tmpl = absl::StrCat(base ? base : "/tmp", "/", prefix, ".XXXXXX");
  FUZZ_CHECK(mkdtemp(&tmpl[0]) != nullptr, "mkdtemp");
  return tmpl;
}

void WriteAll(const std::string& path, const std::string& data, int flags) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | flags, 0600);
  FUZZ_CHECK(fd >= 0, path);
  FUZZ_CHECK(
      write(fd, data.data(), data.size()) == static_cast<ssize_t>(data.size()),
      "write");
  close(fd);
}

std::string Records(const GlobalHeader& header, uint32_t seconds, int n,
                    size_t size) {
  std::string out;
  for (int i = 0; i < n; ++i) {
    (void)AppendRecord(header,
                       absl::FromUnixSeconds(seconds) + absl::Microseconds(i),
                       std::string(size, static_cast<char>('a' + i)), 0, &out);
  }
  return out;
}

}  // namespace pc::pcap::fuzz
