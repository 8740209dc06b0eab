// Files for the pcap fuzz harnesses (file_scanner_fuzz, ring_reader_fuzz):
// a scratch directory, whole writes, and well-formed records to write, as
// tcpdump's ring would hold them. Failures abort through FUZZ_CHECK.
// Thread-compatible.
#ifndef COMMON_PCAP_FUZZ_FILES_H_
#define COMMON_PCAP_FUZZ_FILES_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "common/pcap/pcap_format.h"

namespace pc::pcap::fuzz {

// A new directory under $TEST_TMPDIR (or /tmp) whose name starts with `prefix`.
std::string MakeTempDir(const std::string& prefix);

// Writes all of `data` to `path`, opened with O_WRONLY | O_CREAT | `flags`
// (O_TRUNC to rewrite it, O_APPEND to add to it).
void WriteAll(const std::string& path, const std::string& data, int flags);

// `n` records of `size` bytes each, the first stamped `seconds`, the next
// one microsecond later each.
std::string Records(const GlobalHeader& header, uint32_t seconds, int n,
                    size_t size);

}  // namespace pc::pcap::fuzz

#endif  // COMMON_PCAP_FUZZ_FILES_H_
