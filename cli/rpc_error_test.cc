#include "cli/rpc_error.h"

#include "gtest/gtest.h"

namespace pc::cli {
namespace {

TEST(FormatRpcError, UnreachableSaysWhatToDo) {
  EXPECT_EQ(
      FormatRpcError("127.0.0.1:9090", 14,
                     "failed to connect to all addresses; last error: "
                     "UNKNOWN: ipv4:127.0.0.1:9090: Connection refused"),
      "cannot reach the capture server at 127.0.0.1:9090 (UNAVAILABLE: failed "
      "to connect to all addresses; last error: UNKNOWN: "
      "ipv4:127.0.0.1:9090: Connection refused): start `kubectl -n "
      "kube-system port-forward svc/capture-aggregator 9090:9090` (see "
      "README) or set --server / $CAPTURECTL_SERVER");
}

TEST(FormatRpcError, OtherErrorsKeepTheCode) {
  EXPECT_EQ(FormatRpcError("agg:9090", 5, "no capture \"x\""),
            "agg:9090: NOT_FOUND: no capture \"x\"");
  EXPECT_EQ(FormatRpcError("agg:9090", 99, "?"), "agg:9090: 99: ?");
}

}  // namespace
}  // namespace pc::cli
