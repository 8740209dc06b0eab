// A classic pcap byte stream that may still grow: what a download reads (a
// capture's ring files on a node, the aggregator's stored copy) and what the
// pcapng merger consumes and itself provides. Implementations are
// thread-compatible (one reader).
#ifndef COMMON_PCAP_BYTE_SOURCE_H_
#define COMMON_PCAP_BYTE_SOURCE_H_

#include <cstddef>
#include <string>

#include "absl/status/statusor.h"

namespace pc::pcap {

class ByteSource {
 public:
  virtual ~ByteSource() = default;
  // Appends at most max_bytes to *out (pcap sources: the global header
  // first, then complete records). Returns the bytes appended; 0 means
  // nothing new right now.
  virtual absl::StatusOr<size_t> Read(std::string* out, size_t max_bytes) = 0;
  // True once no more data will come (the capture stopped and was drained).
  virtual bool Done() = 0;
};

}  // namespace pc::pcap

#endif  // COMMON_PCAP_BYTE_SOURCE_H_
