#include "common/s3/versitygw_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/s3/s3_client.h"

namespace pc::s3 {
namespace {

constexpr char kAccessKey[] = "test-access-key";
constexpr char kSecretKey[] = "test-secret-key-0123456789";

absl::StatusOr<int> FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return absl::InternalError("socket failed");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    close(fd);
    return absl::InternalError("bind to 127.0.0.1:0 failed");
  }
  close(fd);
  return ntohs(addr.sin_port);
}

bool Accepts(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  bool ok = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  close(fd);
  return ok;
}

std::string Tail(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream s;
  s << in.rdbuf();
  std::string all = s.str();
  return all.size() > 2000 ? all.substr(all.size() - 2000) : all;
}

int RemoveEntry(const char* path, const struct stat*, int, struct FTW*) {
  return remove(path);
}

}  // namespace

std::string VersitygwServer::BinaryPath() {
  if (const char* bin = std::getenv("VERSITYGW_BIN"); bin && *bin) return bin;
  const char* cache = std::getenv("PACKET_CAPTURE_CACHE");
  return absl::StrCat(cache && *cache ? cache : "/var/cache/packet-capture",
                      "/bin/versitygw");
}

absl::StatusOr<std::unique_ptr<VersitygwServer>> VersitygwServer::Start(
    const std::string& bucket) {
  std::string bin = BinaryPath();
  if (access(bin.c_str(), X_OK) != 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "versitygw not found at ", bin,
        ": run testing/tools/install.sh (or testing/setup.sh), or set "
        "VERSITYGW_BIN"));
  }
  std::unique_ptr<VersitygwServer> server(new VersitygwServer());
  const char* tmp = std::getenv("TEST_TMPDIR");
  std::string tmpl = absl::StrCat(tmp && *tmp ? tmp : "/tmp", "/vgw.XXXXXX");
  if (mkdtemp(tmpl.data()) == nullptr) {
    return absl::InternalError(absl::StrCat("mkdtemp ", tmpl, " failed"));
  }
  server->root_ = tmpl;
  server->data_dir_ = tmpl + "/data";
  server->bucket_ = bucket;
  if (mkdir(server->data_dir_.c_str(), 0700) != 0) {
    return absl::InternalError("mkdir data failed");
  }
  // Another process may take the free port between probe and bind: retry.
  absl::Status launched;
  for (int i = 0; i < 3; ++i) {
    launched = server->Launch();
    if (launched.ok()) break;
  }
  if (!launched.ok()) return launched;
  auto client = S3Client::Create(server->Config());
  if (!client.ok()) return client.status();
  if (auto s = (*client)->CreateBucket(); !s.ok()) return s;
  return server;
}

absl::Status VersitygwServer::Launch() {
  auto port = FreePort();
  if (!port.ok()) return port.status();
  port_ = *port;
  std::string bin = BinaryPath();
  std::string log = root_ + "/versitygw.log";
  std::string listen = absl::StrCat("127.0.0.1:", port_);
  std::vector<std::string> args = {
      bin,    "--access",     kAccessKey, "--secret", kSecretKey, "--port",
      listen, "--keep-alive", "-q",       "posix",    data_dir_};
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) return absl::InternalError("fork failed");
  if (pid == 0) {
    // Dies with the test, even on a crash.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
    }
    execv(argv[0], argv.data());
    _exit(127);
  }
  pid_ = pid;
  absl::Time deadline = absl::Now() + absl::Seconds(15);
  while (absl::Now() < deadline) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return absl::UnavailableError(
          absl::StrCat("versitygw exited at start: ", Tail(log)));
    }
    if (Accepts(port_)) return absl::OkStatus();
    absl::SleepFor(absl::Milliseconds(10));
  }
  Stop();
  return absl::UnavailableError(
      absl::StrCat("versitygw did not listen within 15 s: ", Tail(log)));
}

VersitygwServer::~VersitygwServer() {
  Stop();
  if (!root_.empty())
    nftw(root_.c_str(), RemoveEntry, 16, FTW_DEPTH | FTW_PHYS);
}

void VersitygwServer::Stop() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

S3Config VersitygwServer::Config() const {
  S3Config c;
  c.endpoint = endpoint();
  c.bucket = bucket_;
  c.access_key = kAccessKey;
  c.secret_key = kSecretKey;
  return c;
}

std::string VersitygwServer::endpoint() const {
  return absl::StrCat("http://127.0.0.1:", port_);
}

}  // namespace pc::s3
