#include "common/kube/fake_api_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace pc {
namespace kube {
namespace {

constexpr size_t kMaxHeaderBytes = 64 << 10;

bool SendAll(int fd, absl::string_view data) {
  while (!data.empty()) {
    ssize_t n = send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

const char* Reason(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 401:
      return "Unauthorized";
    case 404:
      return "Not Found";
    case 410:
      return "Gone";
    case 429:
      return "Too Many Requests";
    case 500:
      return "Internal Server Error";
    default:
      return "Status";
  }
}

// Reads one request; false if the client went away or sent garbage.
bool ReadRequest(int fd, FakeRequest* request) {
  std::string data;
  size_t header_end;
  char buf[4096];
  while ((header_end = data.find("\r\n\r\n")) == std::string::npos) {
    if (data.size() > kMaxHeaderBytes) return false;
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.append(buf, static_cast<size_t>(n));
  }
  std::vector<std::string> lines =
      absl::StrSplit(absl::string_view(data).substr(0, header_end), "\r\n");
  std::vector<std::string> start = absl::StrSplit(lines[0], ' ');
  if (start.size() != 3) return false;
  request->method = start[0];
  request->target = start[1];
  for (size_t i = 1; i < lines.size(); ++i) {
    size_t colon = lines[i].find(':');
    if (colon == std::string::npos) continue;
    request->headers[absl::AsciiStrToLower(lines[i].substr(0, colon))] =
        std::string(absl::StripAsciiWhitespace(lines[i].substr(colon + 1)));
  }
  size_t length = 0;
  auto it = request->headers.find("content-length");
  if (it != request->headers.end() && !absl::SimpleAtoi(it->second, &length))
    return false;
  request->body = data.substr(header_end + 4);
  while (request->body.size() < length) {
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    request->body.append(buf, static_cast<size_t>(n));
  }
  request->body.resize(length);
  return true;
}

}  // namespace

absl::StatusOr<std::unique_ptr<FakeApiServer>> FakeApiServer::Start(
    Handler handler, bool keep_alive) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return absl::InternalError(absl::StrCat("socket: ", std::strerror(errno)));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      listen(fd, 64) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    std::string error = std::strerror(errno);
    close(fd);
    return absl::InternalError(absl::StrCat("bind/listen: ", error));
  }
  std::unique_ptr<FakeApiServer> server(new FakeApiServer(
      fd, ntohs(addr.sin_port), std::move(handler), keep_alive));
  server->accept_thread_ = std::thread([s = server.get()] { s->AcceptLoop(); });
  return server;
}

FakeApiServer::FakeApiServer(int listen_fd, int port, Handler handler,
                             bool keep_alive)
    : listen_fd_(listen_fd),
      port_(port),
      handler_(std::move(handler)),
      keep_alive_(keep_alive) {}

FakeApiServer::~FakeApiServer() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    for (int fd : open_fds_) shutdown(fd, SHUT_RDWR);
  }
  shutdown(listen_fd_, SHUT_RDWR);  // wakes accept()
  accept_thread_.join();
  close(listen_fd_);
  std::vector<std::thread> threads;
  {
    absl::MutexLock lock(&mu_);
    threads.swap(conn_threads_);
  }
  for (std::thread& t : threads) t.join();
}

std::string FakeApiServer::url() const {
  return absl::StrCat("http://127.0.0.1:", port_);
}

std::vector<FakeRequest> FakeApiServer::requests() const {
  absl::MutexLock lock(&mu_);
  return requests_;
}

bool FakeApiServer::WaitForRequests(size_t n, absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto enough = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return requests_.size() >= n;
  };
  return mu_.AwaitWithTimeout(absl::Condition(&enough), timeout);
}

size_t FakeApiServer::open_connections() const {
  absl::MutexLock lock(&mu_);
  return open_fds_.size();
}

size_t FakeApiServer::accepted_connections() const {
  absl::MutexLock lock(&mu_);
  return accepted_;
}

bool FakeApiServer::Stopping() const {
  absl::MutexLock lock(&mu_);
  return stopping_;
}

void FakeApiServer::AcceptLoop() {
  while (true) {
    int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      return;  // shut down
    }
    absl::MutexLock lock(&mu_);
    if (stopping_) {
      close(fd);
      return;
    }
    open_fds_.insert(fd);
    ++accepted_;
    conn_threads_.emplace_back([this, fd] { Serve(fd); });
  }
}

void FakeApiServer::Serve(int fd) {
  FakeRequest request;
  while (ReadRequest(fd, &request) && Respond(fd, request)) {
    request = FakeRequest();
  }
  absl::MutexLock lock(&mu_);
  open_fds_.erase(fd);
  close(fd);
}

bool FakeApiServer::Respond(int fd, const FakeRequest& request) {
  {
    absl::MutexLock lock(&mu_);
    requests_.push_back(request);
  }
  FakeResponse response = handler_(request);
  const bool plain = response.chunks.empty() && !response.hang;
  const bool keep = keep_alive_ && plain;
  std::string head = absl::StrFormat(
      "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nConnection: %s\r\n",
      response.status, Reason(response.status), response.content_type,
      keep ? "keep-alive" : "close");
  if (plain) {
    return SendAll(fd,
                   absl::StrCat(head, "Content-Length: ", response.body.size(),
                                "\r\n\r\n", response.body)) &&
           keep;
  }
  bool ok =
      SendAll(fd, absl::StrCat(head, "Transfer-Encoding: chunked\r\n\r\n"));
  for (const std::string& chunk : response.chunks) {
    if (!ok || Stopping()) break;
    if (response.chunk_delay > absl::ZeroDuration())
      absl::SleepFor(response.chunk_delay);
    if (chunk.empty()) continue;  // an empty chunk would end the body
    ok = SendAll(fd,
                 absl::StrCat(absl::Hex(chunk.size()), "\r\n", chunk, "\r\n"));
  }
  if (ok && response.hang) {
    // Until the client hangs up (readable with EOF) or the server stops.
    while (!Stopping()) {
      pollfd p{fd, POLLIN, 0};
      int r = poll(&p, 1, 20);
      if (r < 0 && errno != EINTR) break;
      if (r > 0) {
        char buf[256];
        if (recv(fd, buf, sizeof(buf), 0) <= 0) break;
      }
    }
    ok = false;
  }
  if (ok) SendAll(fd, "0\r\n\r\n");
  return false;
}

}  // namespace kube
}  // namespace pc
