// A real versitygw (S3 gateway, POSIX backend) for tests: started with
// fork/exec on a free 127.0.0.1 port over a fresh temporary directory, with
// a bucket created, stopped (SIGKILL) on Stop or destruction. The binary is
// $VERSITYGW_BIN, else $PACKET_CAPTURE_CACHE/bin/versitygw (default cache
// /var/cache/packet-capture; testing/tools/install.sh builds it).
// Thread-compatible.
#ifndef COMMON_S3_VERSITYGW_SERVER_H_
#define COMMON_S3_VERSITYGW_SERVER_H_

#include <sys/types.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/s3/s3_config.h"

namespace pc::s3 {

class VersitygwServer {
 public:
  // Where the binary is expected (whether or not it is there).
  static std::string BinaryPath();

  // Starts the server and creates `bucket`. FailedPrecondition naming the
  // path and testing/tools/install.sh when the binary is missing.
  static absl::StatusOr<std::unique_ptr<VersitygwServer>> Start(
      const std::string& bucket);
  ~VersitygwServer();

  // A config for this server's bucket (path-style, its credentials).
  S3Config Config() const;
  std::string endpoint() const;
  int port() const { return port_; }
  const std::string& data_dir() const { return data_dir_; }

  // Kills the server (SIGKILL) and waits for it; idempotent.
  void Stop();

 private:
  VersitygwServer() = default;
  absl::Status Launch();

  std::string root_;      // temporary directory: data/ and log
  std::string data_dir_;  // the POSIX backend's root
  std::string bucket_;
  int port_ = 0;
  pid_t pid_ = -1;
};

}  // namespace pc::s3

#endif  // COMMON_S3_VERSITYGW_SERVER_H_
