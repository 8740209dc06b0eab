// What a store did with one uploaded chunk.
#ifndef AGGREGATOR_APPEND_RESULT_H_
#define AGGREGATOR_APPEND_RESULT_H_

#include <cstdint>

namespace pc::aggregator {

struct AppendResult {
  // Bytes of (file, generation) now durable: the offset to acknowledge.
  uint64_t offset = 0;
  // The chunk lay entirely before the stored length: nothing was written.
  bool duplicate = false;
  // Bytes between the stored length and the chunk's offset that the agent
  // never sent (counted into the capture's bytes_lost).
  uint64_t gap = 0;
};

}  // namespace pc::aggregator

#endif  // AGGREGATOR_APPEND_RESULT_H_
