// Builds tcpdump's argv for one capture run. Pure, thread-safe. No shell is
// ever involved: the result goes straight to execv.
#ifndef NODE_AGENT_TCPDUMP_COMMAND_H_
#define NODE_AGENT_TCPDUMP_COMMAND_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace pc::agent {

struct TcpdumpOptions {
  std::string binary = "/usr/bin/tcpdump";
  std::string interface;     // inside the pod's network namespace
  std::string output_base;   // <run dir>/ring: tcpdump appends 0..N-1
  int max_files = 0;         // -W
  int snaplen = 0;           // -s; 0 keeps tcpdump's default (262144)
  int buffer_kib = 0;        // -B; 0 keeps the default
  bool immediate = false;    // --immediate-mode: ~1 s lower latency, more CPU
  int64_t packet_count = 0;  // -c: exit after this many packets; 0: no limit
  // pcap filter expression (checked with libpcap beforehand): one argv
  // element after "--", so even one starting with '-' is never an option.
  std::string filter;
};

absl::StatusOr<std::vector<std::string>> BuildTcpdumpArgv(
    const TcpdumpOptions& options);

}  // namespace pc::agent

#endif  // NODE_AGENT_TCPDUMP_COMMAND_H_
