// A child process started with fork + execv (never a shell), optionally inside
// another network namespace, tied to the agent's lifetime with
// PR_SET_PDEATHSIG. Its stdout and stderr go to one non-blocking pipe the
// owner drains with ReadOutput().
//
// Thread-compatible: one owner thread. PR_SET_PDEATHSIG fires when the thread
// that called Start() exits, so start children from a long-lived thread.
#ifndef NODE_AGENT_SUBPROCESS_H_
#define NODE_AGENT_SUBPROCESS_H_

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace pc::agent {

// A network namespace for the child to join: an open namespace file and the
// identity (st_dev, st_ino) the child must see in /proc/self/ns/net once it
// joined, checked before exec.
struct ChildNetns {
  int fd = -1;
  uint64_t dev = 0;
  uint64_t ino = 0;
};

class Subprocess {
 public:
  Subprocess() = default;
  ~Subprocess();  // SIGKILLs and reaps a child still running
  Subprocess(const Subprocess&) = delete;
  Subprocess& operator=(const Subprocess&) = delete;

  // argv[0] must be an absolute path. With netns, the child joins that
  // namespace through the open descriptor (never by a path, which could name
  // another namespace by then) and checks its identity before exec: a
  // mismatch is FailedPrecondition and nothing runs. Fails if already started
  // or the exec fails (errors are reported through a close-on-exec pipe, so
  // "no such file" is an error here, not a mysterious exit later).
  absl::Status Start(const std::vector<std::string>& argv,
                     std::optional<ChildNetns> netns = std::nullopt);

  absl::Status Signal(int signo);

  // Non-blocking: the exit status (as from waitpid) once the child has exited.
  std::optional<int> Poll();

  // Drains what the child wrote since the last call (bounded per call).
  std::string ReadOutput();

  pid_t pid() const { return pid_; }
  bool running() const { return pid_ > 0 && !exit_status_.has_value(); }

  // "exited with 1", "killed by signal 9".
  static std::string DescribeExit(int wait_status);

 private:
  pid_t pid_ = -1;
  int output_fd_ = -1;
  std::optional<int> exit_status_;
};

}  // namespace pc::agent

#endif  // NODE_AGENT_SUBPROCESS_H_
