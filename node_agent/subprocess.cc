#include "node_agent/subprocess.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/close_range.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"

namespace pc::agent {
namespace {

// Writes "<step>:<errno>" to the error pipe and exits; async-signal-safe.
[[noreturn]] void ChildFail(int error_fd, char step) {
  int err = errno;
  char msg[2 + sizeof(int)];
  msg[0] = step;
  msg[1] = ':';
  memcpy(msg + 2, &err, sizeof(int));
  ssize_t ignored = write(error_fd, msg, sizeof(msg));
  (void)ignored;
  _exit(127);
}

const char* StepName(char step) {
  switch (step) {
    case 'n':
      return "open network namespace";
    case 's':
      return "enter network namespace";
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
                               const std::string& netns_path) {
  if (pid_ > 0) return absl::FailedPreconditionError("already started");
  if (argv.empty() || argv[0].empty() || argv[0][0] != '/') {
    return absl::InvalidArgumentError("argv[0] must be an absolute path");
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
    if (!netns_path.empty()) {
      int ns = open(netns_path.c_str(), O_RDONLY | O_CLOEXEC);
      if (ns < 0) ChildFail(err_pipe[1], 'n');
      if (setns(ns, CLONE_NEWNET) != 0) ChildFail(err_pipe[1], 's');
      close(ns);
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
  char msg[2 + sizeof(int)];
  ssize_t n;
  do {
    n = read(err_pipe[0], msg, sizeof(msg));
  } while (n < 0 && errno == EINTR);
  close(err_pipe[0]);
  if (n == static_cast<ssize_t>(sizeof(msg))) {
    int err;
    memcpy(&err, msg + 2, sizeof(int));
    int status;
    waitpid(pid, &status, 0);
    close(out_pipe[0]);
    return absl::FailedPreconditionError(absl::StrCat(
        StepName(msg[0]), " for ", argv[0], " failed: ", strerror(err)));
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
