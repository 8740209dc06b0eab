// Finds the network namespace that holds a Pod's IP, among the host's
// namespaces: files in configured directories (/var/run/netns, where CNIs and
// `ip netns` put them) and, with hostPID, /proc/<pid>/ns/net of every process.
// Each candidate is opened once, identified by the device and inode of what
// was opened (a namespace seen under many names counts once), entered through
// that descriptor on a short-lived thread (setns affects only the calling
// thread) and its interfaces are listed there. The match keeps the descriptor
// open, so whoever uses it enters the namespace that was examined, not
// whatever its path names by then (a reused pid, a recreated netns file).
//
// Thread-safe; each call does its own scan.
#ifndef NODE_AGENT_NETNS_FINDER_H_
#define NODE_AGENT_NETNS_FINDER_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace pc::agent {

// A network namespace's identity: the nsfs device and inode that stat() of
// any of its files shows. Unique among live namespaces.
struct NetnsId {
  uint64_t dev = 0;
  uint64_t ino = 0;
  bool operator==(const NetnsId& o) const {
    return dev == o.dev && ino == o.ino;
  }
  bool operator!=(const NetnsId& o) const { return !(*this == o); }
  bool operator<(const NetnsId& o) const {
    return dev != o.dev ? dev < o.dev : ino < o.ino;
  }
  // "net:[4026532263]", as readlink(/proc/<pid>/ns/net) shows it.
  std::string ToString() const;
};

// An open network namespace file. The descriptor pins the namespace: it stays
// the same namespace (and alive) until the handle is destroyed. Move-only.
class NetnsHandle {
 public:
  NetnsHandle() = default;
  // NotFound if the path cannot be opened, FailedPrecondition if it is not a
  // network namespace (an empty file left in /run/netns, say).
  static absl::StatusOr<NetnsHandle> Open(const std::string& path);
  ~NetnsHandle();
  NetnsHandle(NetnsHandle&& other) noexcept;
  NetnsHandle& operator=(NetnsHandle&& other) noexcept;
  NetnsHandle(const NetnsHandle&) = delete;
  NetnsHandle& operator=(const NetnsHandle&) = delete;

  bool valid() const { return fd_ >= 0; }
  int fd() const { return fd_; }
  const NetnsId& id() const { return id_; }

 private:
  NetnsHandle(int fd, NetnsId id) : fd_(fd), id_(id) {}
  int fd_ = -1;
  NetnsId id_;
};

struct NetnsMatch {
  std::string path;       // where the namespace was found (for messages)
  std::string interface;  // interface holding the IP, e.g. "eth0"
  NetnsHandle netns;      // the namespace examined, open: enter this one
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

  // The one namespace holding ip. NotFound names the places searched;
  // FailedPrecondition when more than one distinct namespace holds it (it
  // names each: a guess could record another pod's traffic); InvalidArgument
  // for a bad IP. Virtual so tests can change the world between the scan and
  // its use.
  virtual absl::StatusOr<NetnsMatch> FindByIp(const std::string& ip) const;

  // The interfaces and addresses seen in one namespace (for tests and logs).
  static absl::StatusOr<std::vector<std::pair<std::string, std::string>>>
  ListAddresses(const NetnsHandle& netns);
  static absl::StatusOr<std::vector<std::pair<std::string, std::string>>>
  ListAddresses(const std::string& netns_path);

 private:
  std::vector<std::string> Candidates() const;
  NetnsFinderOptions options_;
};

}  // namespace pc::agent

#endif  // NODE_AGENT_NETNS_FINDER_H_
