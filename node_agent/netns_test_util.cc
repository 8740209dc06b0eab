#include "node_agent/netns_test_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace pc::agent::testutil {
namespace {

int Shell(const std::string& cmd) { return system(cmd.c_str()); }

}  // namespace

std::string UniqueTestIp(int k) {
  return absl::StrCat("198.18.", 240 + k, ".", getpid() % 250 + 1);
}

std::unique_ptr<TestNetns> TestNetns::Create(const std::string& tag,
                                             const std::string& ip) {
  const std::string name = absl::StrCat("pcnt", getpid(), "-", tag);
  if (Shell("ip netns add " + name) != 0) {
    ADD_FAILURE() << "ip netns add " << name;
    return nullptr;
  }
  std::unique_ptr<TestNetns> ns(new TestNetns(name));
  if (Shell(absl::StrCat("ip -n ", name,
                         " link add pcdummy0 type veth peer name pcdummy1 && "
                         "ip -n ",
                         name, " addr add ", ip, "/32 dev pcdummy0 && ip -n ",
                         name, " link set pcdummy0 up")) != 0) {
    ADD_FAILURE() << "configuring " << name;
    return nullptr;
  }
  return ns;
}

TestNetns::~TestNetns() { Shell("ip netns del " + name_); }

std::string TestNetns::Link() const {
  struct stat st;
  if (stat(path().c_str(), &st) != 0) return "";
  return absl::StrCat("net:[", st.st_ino, "]");
}

FakeProc::FakeProc() {
  const char* tmp = getenv("TEST_TMPDIR");
  std::string templ =
      absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/procXXXXXX");
  root_ = mkdtemp(templ.data()) != nullptr ? templ : "";
  EXPECT_FALSE(root_.empty());
}

FakeProc::~FakeProc() {
  std::error_code ec;
  std::filesystem::remove_all(root_, ec);
}

void FakeProc::Point(int pid, const std::string& target) {
  const std::string dir = absl::StrCat(root_, "/", pid, "/ns");
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  const std::string tmp = dir + "/net.new";
  unlink(tmp.c_str());
  ASSERT_EQ(symlink(target.c_str(), tmp.c_str()), 0) << tmp;
  ASSERT_EQ(rename(tmp.c_str(), (dir + "/net").c_str()), 0) << dir;
}

}  // namespace pc::agent::testutil
