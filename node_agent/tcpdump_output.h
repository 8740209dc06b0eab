// Reads what tcpdump prints: the "listening on" line that shows it started,
// the counters it prints on SIGUSR1 and at exit, and its last error line.
// Accumulates output across reads. Thread-compatible.
#ifndef NODE_AGENT_TCPDUMP_OUTPUT_H_
#define NODE_AGENT_TCPDUMP_OUTPUT_H_

#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"

namespace pc::agent {

class TcpdumpOutput {
 public:
  // Feeds raw output; lines may be split across calls.
  void Feed(absl::string_view text);

  bool listening() const { return listening_; }
  bool has_counters() const { return has_counters_; }
  uint64_t captured() const { return captured_; }
  uint64_t received() const { return received_; }
  uint64_t dropped_by_kernel() const { return dropped_by_kernel_; }
  // The last line that was not a counter or the banner: usually the reason
  // tcpdump exited ("tcpdump: eth9: No such device exists").
  const std::string& last_message() const { return last_message_; }

 private:
  void Line(absl::string_view line);

  std::string partial_;
  bool listening_ = false;
  bool has_counters_ = false;
  uint64_t captured_ = 0;
  uint64_t received_ = 0;
  uint64_t dropped_by_kernel_ = 0;
  std::string last_message_;
};

}  // namespace pc::agent

#endif  // NODE_AGENT_TCPDUMP_OUTPUT_H_
