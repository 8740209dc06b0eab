// Real network namespaces for tests that run as root, and a fake /proc view
// over them. Namespaces are made with `ip netns add` under a per-process
// prefix and deleted on destruction; addresses come from 198.18.240.0/20,
// which the local cluster never hands out, and nothing is routed anywhere.
//
// Thread-compatible; test-only.
#ifndef NODE_AGENT_NETNS_TEST_UTIL_H_
#define NODE_AGENT_NETNS_TEST_UTIL_H_

#include <memory>
#include <string>

namespace pc::agent::testutil {

// An address for this test process: 198.18.<240 + k>.<pid-derived>, so the
// same test running in two checkouts at once does not see the other's IP.
std::string UniqueTestIp(int k);

class TestNetns {
 public:
  // /run/netns/pcnt<pid>-<tag>, holding `ip` on interface pcdummy0 (up).
  // Null (after ADD_FAILURE) if `ip` fails.
  static std::unique_ptr<TestNetns> Create(const std::string& tag,
                                           const std::string& ip);
  ~TestNetns();

  const std::string& name() const { return name_; }
  std::string path() const { return "/run/netns/" + name_; }
  // What readlink(/proc/<pid>/ns/net) shows for a process inside it:
  // "net:[<inode>]".
  std::string Link() const;

 private:
  explicit TestNetns(std::string name) : name_(std::move(name)) {}
  std::string name_;
};

// A directory laid out like /proc for NetnsFinder's scan: <pid>/ns/net are
// symlinks to namespace files, re-pointable to fake a pid reused by a process
// of another namespace.
class FakeProc {
 public:
  FakeProc();  // under TEST_TMPDIR
  ~FakeProc();
  const std::string& root() const { return root_; }
  // <root>/<pid>/ns/net -> target, replacing an earlier link atomically.
  void Point(int pid, const std::string& target);

 private:
  std::string root_;
};

}  // namespace pc::agent::testutil

#endif  // NODE_AGENT_NETNS_TEST_UTIL_H_
