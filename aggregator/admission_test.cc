#include "aggregator/admission.h"

#include <utility>
#include <vector>

#include "gtest/gtest.h"

namespace pc::aggregator {
namespace {

TEST(PeerAddressTest, DropsThePort) {
  EXPECT_EQ(PeerAddress("ipv4:10.0.0.1:5000"), "ipv4:10.0.0.1");
  EXPECT_EQ(PeerAddress("ipv6:[fd00::1]:5000"), "ipv6:[fd00::1]");
  EXPECT_EQ(PeerAddress("ipv6:%5B::1%5D:443"), "ipv6:%5B::1%5D");
  EXPECT_EQ(PeerAddress("unix:/run/x.sock"), "unix:/run/x.sock");
  EXPECT_EQ(PeerAddress(""), "");
}

TEST(AdmissionControlTest, LimitsPerPeerAndInTotal) {
  AdmissionControl admission(/*max_total=*/3, /*max_per_peer=*/2);
  std::vector<AdmissionControl::Ticket> held;
  for (const char* peer : {"ipv4:10.0.0.1:1", "ipv4:10.0.0.1:2"}) {
    auto t = admission.Admit(peer);
    ASSERT_TRUE(t.ok()) << t.status();
    held.push_back(std::move(*t));
  }
  // Another port of the same address: over its limit.
  auto refused = admission.Admit("ipv4:10.0.0.1:3");
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(refused.status().message().find("10.0.0.1"), std::string::npos);
  auto other = admission.Admit("ipv4:10.0.0.2:1");
  ASSERT_TRUE(other.ok());
  EXPECT_EQ(admission.total(), 3);
  // Everyone is at the limit now.
  EXPECT_EQ(admission.Admit("ipv4:10.0.0.3:1").status().code(),
            absl::StatusCode::kResourceExhausted);

  held[0].Release();
  held[0].Release();  // once only
  EXPECT_EQ(admission.total(), 2);
  EXPECT_TRUE(admission.Admit("ipv4:10.0.0.1:4").ok());  // released at once
  {
    AdmissionControl::Ticket moved = std::move(*other);
    EXPECT_FALSE(other->held());
    EXPECT_TRUE(moved.held());
  }
  EXPECT_EQ(admission.total(), 1);
  held.clear();
  EXPECT_EQ(admission.total(), 0);
}

}  // namespace
}  // namespace pc::aggregator
