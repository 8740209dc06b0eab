// A small libcurl HTTP(S) client bound to one Kubernetes API server: TLS from a
// KubeConfig, bearer token re-read from its file, plain request/response calls
// and cancellable streaming for watches.
//
// Thread-safe: Do() and Stream() may be called concurrently from any threads.
// Do() reuses idle connections (kept by a bounded pool of curl multi handles),
// so a burst of calls, e.g. the TokenReviews of many agents' hellos, does not
// pay a TCP and TLS handshake each; Stream() uses a connection of its own.
// The process should ignore SIGPIPE (TLS writes to a closed peer may raise it).
#ifndef COMMON_KUBE_HTTP_CLIENT_H_
#define COMMON_KUBE_HTTP_CLIENT_H_

#include <atomic>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/kube/kube_config.h"

namespace pc {
namespace kube {

struct HttpResponse {
  int status_code = 0;
  std::string body;
};

class HttpClient {
 public:
  struct Options {
    absl::Duration connect_timeout = absl::Seconds(10);
    // Whole-request limit for Do(); Stream() has none (see
    // stream_idle_timeout).
    absl::Duration request_timeout = absl::Seconds(30);
    // Do() fails with ResourceExhaustedError beyond this many body bytes.
    size_t max_body_bytes = size_t{64} << 20;
    // token_file is re-read at most this often (and right after a 401).
    absl::Duration token_refresh_interval = absl::Seconds(60);
    // Stream() gives up (UnavailableError) when no byte arrives for this long.
    // Watches with allowWatchBookmarks get a bookmark about every minute, and
    // TCP keepalive catches most dead peers earlier.
    absl::Duration stream_idle_timeout = absl::Seconds(180);
    std::string user_agent = "packet-capture/kube";
    // Do() keeps at most this many idle connections to the server for the
    // next calls (0: a new connection per call). More calls than this at
    // once open connections of their own, closed after the call.
    int max_idle_connections = 8;
  };

  // Validates the config (server URL, readable token_file) and initializes
  // libcurl once per process.
  static absl::StatusOr<std::unique_ptr<HttpClient>> Create(KubeConfig config,
                                                            Options options);
  static absl::StatusOr<std::unique_ptr<HttpClient>> Create(KubeConfig config) {
    return Create(std::move(config), Options());
  }

  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;
  ~HttpClient();

  // One request to server + path_and_query (which must start with '/'). Any
  // HTTP status is returned in the response, not as an error; transport
  // failures are UnavailableError with curl's message. A 401 makes the client
  // re-read token_file and retry once. `body` is sent (with `content_type`)
  // when non-empty or when the method is POST. When *cancel becomes true the
  // call returns CancelledError within about 100 ms.
  absl::StatusOr<HttpResponse> Do(
      absl::string_view method, absl::string_view path_and_query,
      absl::string_view body = "",
      absl::string_view content_type = "application/json",
      const std::atomic<bool>* cancel = nullptr);

  // GET that hands the 200 response body to `on_data` chunk by chunk as it
  // arrives (chunk boundaries are arbitrary). Returns:
  //  - OK when the server ends the response or `on_data` returns false;
  //  - CancelledError when *cancel becomes true (checked at least every 100 ms
  //    and before each chunk);
  //  - HttpError(code, body) for a non-200 status (see HttpCodeFromStatus);
  //  - UnavailableError for transport failures, including idle timeout.
  // `on_data` runs on the calling thread.
  absl::Status Stream(
      absl::string_view path_and_query,
      const std::function<bool(absl::string_view chunk)>& on_data,
      const std::atomic<bool>* cancel = nullptr);

  const KubeConfig& config() const { return config_; }

 private:
  HttpClient(KubeConfig config, Options options);

  // Current bearer token ("" for none). `force_reload` re-reads token_file.
  std::string Token(bool force_reload) ABSL_LOCKS_EXCLUDED(mu_);

  // A curl multi handle for one Do() call, with the idle connections it
  // kept from earlier calls (nullptr if curl cannot make one); Release puts
  // it back for the next call, or frees it (closing its connections) when
  // max_idle_connections are idle already.
  void* Acquire() ABSL_LOCKS_EXCLUDED(pool_mu_);
  void Release(void* multi) ABSL_LOCKS_EXCLUDED(pool_mu_);

  const KubeConfig config_;
  const Options options_;

  absl::Mutex mu_;
  std::string token_ ABSL_GUARDED_BY(mu_);
  absl::Time token_read_at_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();

  absl::Mutex pool_mu_;
  std::vector<void*> idle_ ABSL_GUARDED_BY(pool_mu_);  // CURLM*
};

// The error for a non-success HTTP response: canonical code derived from the
// HTTP status (401 Unauthenticated, 403 PermissionDenied, 404 NotFound,
// 409 Aborted, 410 FailedPrecondition, 429 ResourceExhausted, 5xx Unavailable,
// ...), message "HTTP <code> <reason>: <message>" from the API's Status body
// when it parses, and the code itself attached for HttpCodeFromStatus.
absl::Status HttpError(int status_code, absl::string_view body);

// The HTTP status code carried by an HttpError status, or 0 when there is none.
int HttpCodeFromStatus(const absl::Status& status);

}  // namespace kube
}  // namespace pc

#endif  // COMMON_KUBE_HTTP_CLIENT_H_
