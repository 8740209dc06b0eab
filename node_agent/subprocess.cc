#include "node_agent/subprocess.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/close_range.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"

namespace pc::agent {
namespace {

// What a child that could not exec reports through the error pipe.
struct ChildError {
  char step;
  int err;
  uint64_t dev;  // for 'm': the namespace the child found itself in
  uint64_t ino;
};

// Writes the failed step to the error pipe and exits; async-signal-safe.
[[noreturn]] void ChildFail(int error_fd, char step, uint64_t dev = 0,
                            uint64_t ino = 0) {
  ChildError e;
  memset(&e, 0, sizeof(e));
  e.step = step;
  e.err = errno;
  e.dev = dev;
  e.ino = ino;
  ssize_t ignored = write(error_fd, &e, sizeof(e));
  (void)ignored;
  _exit(127);
}

const char* StepName(char step) {
  switch (step) {
    case 's':
      return "enter network namespace";
    case 'v':
      return "verify network namespace";
    case 'e':
      return "exec";
    default:
      return "prepare child";
  }
}

}  // namespace

Subprocess::~Subprocess() {
  if (running()) {
    kill(pid_, SIGKILL);
    int status;
    waitpid(pid_, &status, 0);
  }
  if (output_fd_ >= 0) close(output_fd_);
}

absl::Status Subprocess::Start(const std::vector<std::string>& argv,
                               std::optional<ChildNetns> netns) {
  if (pid_ > 0) return absl::FailedPreconditionError("already started");
  if (argv.empty() || argv[0].empty() || argv[0][0] != '/') {
    return absl::InvalidArgumentError("argv[0] must be an absolute path");
  }
  if (netns && netns->fd < 0) {
    return absl::InvalidArgumentError("no network namespace descriptor");
  }
  // Everything the child needs is prepared before fork: after fork in a
  // multi-threaded process only async-signal-safe calls are allowed.
  std::vector<char*> c_argv;
  for (const auto& arg : argv) c_argv.push_back(const_cast<char*>(arg.c_str()));
  c_argv.push_back(nullptr);
  char* const envp[] = {const_cast<char*>("PATH=/usr/sbin:/usr/bin:/sbin:/bin"),
                        nullptr};

  int out_pipe[2];
  int err_pipe[2];
  if (pipe2(out_pipe, O_CLOEXEC) != 0) {
    return absl::InternalError(absl::StrCat("pipe: ", strerror(errno)));
  }
  if (pipe2(err_pipe, O_CLOEXEC) != 0) {
    close(out_pipe[0]);
    close(out_pipe[1]);
    return absl::InternalError(absl::StrCat("pipe: ", strerror(errno)));
  }
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) {
    int err = errno;
    for (int fd : {out_pipe[0], out_pipe[1], err_pipe[0], err_pipe[1]}) {
      close(fd);
    }
    return absl::ResourceExhaustedError(absl::StrCat("fork: ", strerror(err)));
  }
  if (pid == 0) {
    // Child. Die with the agent; if it already died, do not run orphaned.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(126);
    // A fresh process group so signals aimed at the agent's group (Ctrl-C in
    // a terminal) reach tcpdump only through the agent's own shutdown.
    setpgid(0, 0);
    sigset_t all;
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, nullptr);
    if (netns) {
      if (setns(netns->fd, CLONE_NEWNET) != 0) ChildFail(err_pipe[1], 's');
      // What was entered, as anyone looking at this process will see it.
      struct stat st;
      if (stat("/proc/self/ns/net", &st) != 0) ChildFail(err_pipe[1], 'v');
      if (static_cast<uint64_t>(st.st_dev) != netns->dev ||
          static_cast<uint64_t>(st.st_ino) != netns->ino) {
        errno = 0;
        ChildFail(err_pipe[1], 'm', st.st_dev, st.st_ino);
      }
    }
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, STDIN_FILENO);
    dup2(out_pipe[1], STDOUT_FILENO);
    dup2(out_pipe[1], STDERR_FILENO);
    // Leave no agent descriptor (gRPC sockets, capture files) open in tcpdump.
    syscall(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC);
    execve(c_argv[0], c_argv.data(), envp);
    ChildFail(err_pipe[1], 'e');
  }

  close(out_pipe[1]);
  close(err_pipe[1]);
  // The error pipe closes on a successful exec; otherwise it carries the step.
  ChildError e;
  ssize_t n;
  do {
    n = read(err_pipe[0], &e, sizeof(e));
  } while (n < 0 && errno == EINTR);
  close(err_pipe[0]);
  if (n == static_cast<ssize_t>(sizeof(e))) {
    int status;
    waitpid(pid, &status, 0);
    close(out_pipe[0]);
    if (e.step == 'm') {
      return absl::FailedPreconditionError(absl::StrCat(
          "network namespace changed: ", argv[0], " would have run in net:[",
          e.ino, "] (device ", e.dev, "), not in net:[", netns->ino,
          "] (device ", netns->dev, ") where the pod was found"));
    }
    return absl::FailedPreconditionError(absl::StrCat(
        StepName(e.step), " for ", argv[0], " failed: ", strerror(e.err)));
  }
  fcntl(out_pipe[0], F_SETFL, fcntl(out_pipe[0], F_GETFL) | O_NONBLOCK);
  pid_ = pid;
  output_fd_ = out_pipe[0];
  exit_status_.reset();
  return absl::OkStatus();
}

absl::Status Subprocess::Signal(int signo) {
  if (!running()) return absl::FailedPreconditionError("not running");
  if (kill(pid_, signo) != 0) {
    return absl::InternalError(absl::StrCat("kill: ", strerror(errno)));
  }
  return absl::OkStatus();
}

std::optional<int> Subprocess::Poll() {
  if (pid_ <= 0 || exit_status_.has_value()) return exit_status_;
  int status;
  pid_t r = waitpid(pid_, &status, WNOHANG);
  if (r == pid_) exit_status_ = status;
  return exit_status_;
}

std::string Subprocess::ReadOutput() {
  std::string out;
  if (output_fd_ < 0) return out;
  char buf[4096];
  // Bounded so a chatty child cannot starve the control loop.
  for (int i = 0; i < 16; ++i) {
    ssize_t n = read(output_fd_, buf, sizeof(buf));
    if (n > 0) {
      out.append(buf, n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    break;
  }
  return out;
}

std::string Subprocess::DescribeExit(int wait_status) {
  if (WIFEXITED(wait_status)) {
    return absl::StrCat("exited with ", WEXITSTATUS(wait_status));
  }
  if (WIFSIGNALED(wait_status)) {
    return absl::StrCat("killed by signal ", WTERMSIG(wait_status));
  }
  return absl::StrCat("ended with status ", wait_status);
}

}  // namespace pc::agent
