// capturectl's commands against a CaptureService: list, get, describe,
// download/follow, watch, and capture (with the Kubernetes API). Each
// returns the process exit code: 0, kRpcFailed, or kUsageError.
#ifndef CLI_COMMANDS_H_
#define CLI_COMMANDS_H_

#include "cli/options.h"
#include "proto/packetcapture.grpc.pb.h"

namespace pc::cli {

inline constexpr int kRpcFailed = 1;
inline constexpr int kUsageError = 2;
// Interrupted (Ctrl-C) before a capture started: 128 + SIGINT, as shells do.
inline constexpr int kInterrupted = 130;

// "capturectl: <message>" on stderr; returns kRpcFailed.
int Fail(const std::string& message);

int List(const Options& options, packetcapture::v1::CaptureService::Stub& stub);
int Get(const Options& options, packetcapture::v1::CaptureService::Stub& stub);
int Describe(const Options& options,
             packetcapture::v1::CaptureService::Stub& stub);
int Download(const Options& options,
             packetcapture::v1::CaptureService::Stub& stub, bool follow);
int Watch(const Options& options,
          packetcapture::v1::CaptureService::Stub& stub);
// SIGINT and SIGTERM must be blocked in every thread (main does it before
// any thread starts); a thread of its own takes them with sigwait.
int CaptureCommand(const Options& options,
                   packetcapture::v1::CaptureService::Stub& stub);

}  // namespace pc::cli

#endif  // CLI_COMMANDS_H_
