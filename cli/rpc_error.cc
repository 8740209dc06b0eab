#include "cli/rpc_error.h"

#include "absl/strings/str_cat.h"
#include "cli/options.h"

namespace pc::cli {

std::string GrpcCodeName(int code) {
  static const char* kCodes[] = {"OK",
                                 "CANCELLED",
                                 "UNKNOWN",
                                 "INVALID_ARGUMENT",
                                 "DEADLINE_EXCEEDED",
                                 "NOT_FOUND",
                                 "ALREADY_EXISTS",
                                 "PERMISSION_DENIED",
                                 "RESOURCE_EXHAUSTED",
                                 "FAILED_PRECONDITION",
                                 "ABORTED",
                                 "OUT_OF_RANGE",
                                 "UNIMPLEMENTED",
                                 "INTERNAL",
                                 "UNAVAILABLE",
                                 "DATA_LOSS",
                                 "UNAUTHENTICATED"};
  return code >= 0 && code < 17 ? kCodes[code] : absl::StrCat(code);
}

std::string FormatRpcError(const std::string& server, int code,
                           const std::string& message) {
  constexpr int kUnavailable = 14;
  if (code == kUnavailable) {
    return absl::StrCat("cannot reach the capture server at ", server,
                        " (UNAVAILABLE: ", message, "): start `",
                        kPortForwardHint,
                        "` (see README) or set --server / $CAPTURECTL_SERVER");
  }
  return absl::StrCat(server, ": ", GrpcCodeName(code), ": ", message);
}

}  // namespace pc::cli
