// Test-only HTTP/1.1 server on 127.0.0.1:<ephemeral> that answers each request
// with whatever a test callback returns: plain bodies, chunked streams cut at
// chosen boundaries, or a stream held open until the client leaves. One
// request per connection (Connection: close) unless started with keep_alive,
// a thread per connection.
//
// Thread-safe: the handler runs on connection threads, possibly concurrently.
#ifndef COMMON_KUBE_FAKE_API_SERVER_H_
#define COMMON_KUBE_FAKE_API_SERVER_H_

#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace pc {
namespace kube {

struct FakeRequest {
  std::string method;
  std::string target;                          // path and query, as sent
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
};

struct FakeResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;  // sent with Content-Length when `chunks` is empty
  // Non-empty: chunked transfer encoding, one HTTP chunk (and one socket
  // write) per element, `chunk_delay` apart.
  std::vector<std::string> chunks;
  absl::Duration chunk_delay = absl::ZeroDuration();
  // After the chunks, keep the response open until the client disconnects or
  // the server is destroyed.
  bool hang = false;
};

class FakeApiServer {
 public:
  using Handler = std::function<FakeResponse(const FakeRequest&)>;

  // keep_alive: plain (Content-Length) responses leave the connection open
  // for the client's next request, as an API server does.
  static absl::StatusOr<std::unique_ptr<FakeApiServer>> Start(
      Handler handler, bool keep_alive = false);
  ~FakeApiServer();

  int port() const { return port_; }
  std::string url() const;  // "http://127.0.0.1:<port>"

  std::vector<FakeRequest> requests() const ABSL_LOCKS_EXCLUDED(mu_);
  // Waits until at least `n` requests have arrived; false on timeout.
  bool WaitForRequests(size_t n, absl::Duration timeout)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Connections currently open (e.g. to check a client hung up).
  size_t open_connections() const ABSL_LOCKS_EXCLUDED(mu_);
  // Connections accepted since the start.
  size_t accepted_connections() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  FakeApiServer(int listen_fd, int port, Handler handler, bool keep_alive);
  // Answers one request; false when the connection is to be closed.
  bool Respond(int fd, const FakeRequest& request);
  void AcceptLoop();
  void Serve(int fd);
  bool Stopping() const ABSL_LOCKS_EXCLUDED(mu_);

  const int listen_fd_;
  const int port_;
  const Handler handler_;
  const bool keep_alive_;
  std::thread accept_thread_;

  mutable absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<FakeRequest> requests_ ABSL_GUARDED_BY(mu_);
  std::set<int> open_fds_ ABSL_GUARDED_BY(mu_);
  size_t accepted_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::thread> conn_threads_ ABSL_GUARDED_BY(mu_);
};

}  // namespace kube
}  // namespace pc

#endif  // COMMON_KUBE_FAKE_API_SERVER_H_
