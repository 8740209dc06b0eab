#include "node_agent/filter_check.h"

#include <pcap/pcap.h>

#include "absl/strings/str_cat.h"
#include "node_agent/capture_options.h"

namespace pc::agent {

absl::Status CheckPcapFilter(const std::string& filter, int snaplen,
                             int linktype) {
  pcap_t* handle = pcap_open_dead(linktype, snaplen > 0 ? snaplen : 262144);
  if (handle == nullptr) {
    return absl::InternalError("libpcap: pcap_open_dead failed");
  }
  struct bpf_program program;
  absl::Status result = absl::OkStatus();
  if (pcap_compile(handle, &program, filter.c_str(), /*optimize=*/1,
                   PCAP_NETMASK_UNKNOWN) != 0) {
    result = absl::InvalidArgumentError(
        absl::StrCat(kFilterAnnotation,
                     " is not a valid pcap filter: ", pcap_geterr(handle)));
  } else {
    pcap_freecode(&program);
  }
  pcap_close(handle);
  return result;
}

absl::Status FilterChecker::Check(const std::string& filter, int snaplen) {
  auto key = std::make_pair(filter, snaplen);
  auto it = cache_.find(key);
  if (it != cache_.end()) return it->second;
  absl::Status status = CheckPcapFilter(filter, snaplen);
  if (cache_.size() >= kMaxEntries) cache_.clear();
  cache_.emplace(std::move(key), status);
  return status;
}

}  // namespace pc::agent
