// One HTTP exchange with an S3 server over libcurl: sends exactly the given
// method, URL and headers (nothing is re-encoded or normalized, so what was
// signed is what goes out), reads the status, headers and a bounded body.
// Easy handles are pooled so their keep-alive connections are reused across
// requests. Thread-safe: each Send takes its own handle.
#ifndef COMMON_S3_S3_HTTP_H_
#define COMMON_S3_S3_HTTP_H_

#include <cstddef>
#include <map>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/s3/sigv4.h"

namespace pc::s3 {

class S3Http {
 public:
  struct Options {
    absl::Duration timeout = absl::Seconds(30);  // connect + transfer
    std::string ca_file;                         // empty: system CAs
  };
  struct Request {
    std::string method;  // GET, PUT, HEAD, DELETE
    std::string url;
    HeaderList headers;
    absl::string_view body;  // sent with PUT
    size_t max_response_body = 0;
  };
  struct Response {
    long status = 0;  // NOLINT(runtime/int): curl's type
    // Lowercased names of the final response's headers.
    std::map<std::string, std::string> headers;
    std::string body;
  };

  explicit S3Http(Options options);
  ~S3Http();
  S3Http(const S3Http&) = delete;
  S3Http& operator=(const S3Http&) = delete;

  // Any HTTP status is a Response. Transport failures: Unavailable (curl's
  // reason in the message), DeadlineExceeded when the timeout passed,
  // ResourceExhausted when the body exceeded max_response_body.
  absl::StatusOr<Response> Send(const Request& request);

 private:
  void* Acquire();
  void Release(void* handle);

  const Options options_;
  absl::Mutex mu_;
  std::vector<void*> idle_ ABSL_GUARDED_BY(mu_);
};

}  // namespace pc::s3

#endif  // COMMON_S3_S3_HTTP_H_
