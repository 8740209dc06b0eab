// How capturectl words a failed call to the capture server: the server, the
// gRPC code and message, and for an unreachable server what to do about it
// (start the README's port-forward, or point --server/$CAPTURECTL_SERVER
// elsewhere). Pure.
#ifndef CLI_RPC_ERROR_H_
#define CLI_RPC_ERROR_H_

#include <string>

namespace pc::cli {

// "OK", "CANCELLED", ... "UNAUTHENTICATED"; the number when unknown.
std::string GrpcCodeName(int code);

// `code` is a grpc::StatusCode value.
std::string FormatRpcError(const std::string& server, int code,
                           const std::string& message);

}  // namespace pc::cli

#endif  // CLI_RPC_ERROR_H_
