#include "common/peer.h"

#include "gtest/gtest.h"

namespace pc {
namespace {

TEST(IsLoopbackPeer, Loopback) {
  EXPECT_TRUE(IsLoopbackPeer("ipv4:127.0.0.1:50312"));
  EXPECT_TRUE(IsLoopbackPeer("ipv4:127.3.2.1:1"));
  EXPECT_TRUE(IsLoopbackPeer("ipv6:[::1]:50312"));
  EXPECT_TRUE(IsLoopbackPeer("ipv6:%5B::1%5D:50312"));
  EXPECT_TRUE(IsLoopbackPeer("ipv6:[::ffff:127.0.0.1]:8080"));
  EXPECT_TRUE(IsLoopbackPeer("unix:/run/capture.sock"));
}

TEST(IsLoopbackPeer, NotLoopback) {
  EXPECT_FALSE(IsLoopbackPeer("ipv4:10.0.0.7:50312"));
  EXPECT_FALSE(IsLoopbackPeer("ipv4:198.18.0.1:9090"));
  EXPECT_FALSE(IsLoopbackPeer("ipv4:128.0.0.1:1"));
  EXPECT_FALSE(IsLoopbackPeer("ipv6:[fe80::1%eth0]:9090"));
  EXPECT_FALSE(IsLoopbackPeer("ipv6:[::ffff:10.1.2.3]:9090"));
  EXPECT_FALSE(IsLoopbackPeer("ipv6:[2001:db8::1]:9090"));
}

TEST(IsLoopbackPeer, MalformedIsNotLoopback) {
  EXPECT_FALSE(IsLoopbackPeer(""));
  EXPECT_FALSE(IsLoopbackPeer("127.0.0.1:80"));    // no scheme
  EXPECT_FALSE(IsLoopbackPeer("ipv4:127.0.0.1"));  // no port: host is "127.0.0"
  EXPECT_FALSE(IsLoopbackPeer("ipv4:localhost:80"));
  EXPECT_FALSE(IsLoopbackPeer("ipv6:::1:80"));  // no brackets
  EXPECT_FALSE(IsLoopbackPeer("ipv6:[::1:80"));
  EXPECT_FALSE(IsLoopbackPeer("ipv4:127.0.0.1.5:80"));
}

}  // namespace
}  // namespace pc
