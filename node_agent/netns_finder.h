// Finds the network namespace that holds a Pod's IP, among the host's
// namespaces: files in configured directories (/var/run/netns, where CNIs and
// `ip netns` put them) and, with hostPID, /proc/<pid>/ns/net of every process.
// Each candidate is entered on a short-lived thread (setns affects only the
// calling thread) and its interfaces are listed there.
//
// Thread-safe; each call does its own scan.
#ifndef NODE_AGENT_NETNS_FINDER_H_
#define NODE_AGENT_NETNS_FINDER_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace pc::agent {

struct NetnsMatch {
  std::string path;       // file to setns() into
  std::string interface;  // interface holding the IP, e.g. "eth0"
};

struct NetnsFinderOptions {
  std::vector<std::string> dirs = {"/var/run/netns"};
  bool scan_proc = false;  // needs hostPID in Kubernetes
  std::string proc_root = "/proc";
};

class NetnsFinder {
 public:
  explicit NetnsFinder(NetnsFinderOptions options)
      : options_(std::move(options)) {}
  virtual ~NetnsFinder() = default;

  // NotFound names the places searched; InvalidArgument for a bad IP.
  // Virtual so tests can change the world between the scan and its use.
  virtual absl::StatusOr<NetnsMatch> FindByIp(const std::string& ip) const;

  // The interfaces and addresses seen in one namespace (for tests and logs).
  static absl::StatusOr<std::vector<std::pair<std::string, std::string>>>
  ListAddresses(const std::string& netns_path);

 private:
  std::vector<std::string> Candidates() const;
  NetnsFinderOptions options_;
};

}  // namespace pc::agent

#endif  // NODE_AGENT_NETNS_FINDER_H_
