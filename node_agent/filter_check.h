// Checks a pcap filter expression with libpcap itself (pcap_compile against
// a dead handle), so a filter tcpdump would refuse is refused before tcpdump
// starts, with libpcap's own words. No I/O. pcap_compile is reentrant in
// libpcap >= 1.8; FilterChecker's cache is not: one thread (the agent's
// control loop) uses each instance.
#ifndef NODE_AGENT_FILTER_CHECK_H_
#define NODE_AGENT_FILTER_CHECK_H_

#include <map>
#include <string>
#include <utility>

#include "absl/status/status.h"

namespace pc::agent {

// OK if libpcap compiles `filter` for link type `linktype` (a DLT_ value;
// DLT_EN10MB = 1 is what a Pod's veth has) and `snaplen` (0: 262144).
// InvalidArgument "tcpdump.antrea.io/filter is not a valid pcap filter:
// <libpcap's message>" otherwise.
absl::Status CheckPcapFilter(const std::string& filter, int snaplen,
                             int linktype = 1);

// CheckPcapFilter with a small memo: the agent decides every annotated Pod
// at each change of any Pod, and the same filters come back every time.
class FilterChecker {
 public:
  absl::Status Check(const std::string& filter, int snaplen);

 private:
  static constexpr size_t kMaxEntries = 256;
  std::map<std::pair<std::string, int>, absl::Status> cache_;
};

}  // namespace pc::agent

#endif  // NODE_AGENT_FILTER_CHECK_H_
