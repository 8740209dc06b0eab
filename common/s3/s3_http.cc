#include "common/s3/s3_http.h"

#include <curl/curl.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <mutex>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace pc::s3 {
namespace {

// Idle handles kept for reuse; more concurrent requests than this still
// work, their handles are just not kept.
constexpr size_t kMaxIdleHandles = 16;

std::once_flag g_curl_init_once;

struct SlistDeleter {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};

long Millis(absl::Duration d) {  // NOLINT(runtime/int): curl takes long
  return static_cast<long>(      // NOLINT(runtime/int)
      std::max<int64_t>(1, absl::ToInt64Milliseconds(d)));
}

struct Transfer {
  absl::string_view upload;
  size_t uploaded = 0;
  S3Http::Response* response = nullptr;
  size_t limit = 0;
  bool overflow = false;
};

size_t OnBody(char* data, size_t size, size_t nmemb, void* user) {
  auto* t = static_cast<Transfer*>(user);
  size_t n = size * nmemb;
  if (t->response->body.size() + n > t->limit) {
    t->overflow = true;
    return 0;  // aborts with CURLE_WRITE_ERROR
  }
  t->response->body.append(data, n);
  return n;
}

size_t OnHeader(char* data, size_t size, size_t nmemb, void* user) {
  auto* t = static_cast<Transfer*>(user);
  size_t n = size * nmemb;
  absl::string_view line(data, n);
  if (absl::StartsWith(line, "HTTP/")) {
    // A new response (after a 100 Continue, say): only the last one counts.
    t->response->headers.clear();
    return n;
  }
  size_t colon = line.find(':');
  if (colon == absl::string_view::npos) return n;
  std::string name =
      absl::AsciiStrToLower(absl::StripAsciiWhitespace(line.substr(0, colon)));
  t->response->headers[name] =
      std::string(absl::StripAsciiWhitespace(line.substr(colon + 1)));
  return n;
}

size_t OnRead(char* buffer, size_t size, size_t nitems, void* user) {
  auto* t = static_cast<Transfer*>(user);
  size_t n = std::min(size * nitems, t->upload.size() - t->uploaded);
  std::memcpy(buffer, t->upload.data() + t->uploaded, n);
  t->uploaded += n;
  return n;
}

int OnSeek(void* user, curl_off_t offset, int origin) {
  auto* t = static_cast<Transfer*>(user);
  if (origin != SEEK_SET || offset < 0 ||
      static_cast<size_t>(offset) > t->upload.size()) {
    return CURL_SEEKFUNC_CANTSEEK;
  }
  t->uploaded = static_cast<size_t>(offset);
  return CURL_SEEKFUNC_OK;
}

}  // namespace

S3Http::S3Http(Options options) : options_(std::move(options)) {
  std::call_once(g_curl_init_once,
                 [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

S3Http::~S3Http() {
  absl::MutexLock lock(&mu_);
  for (void* h : idle_) curl_easy_cleanup(static_cast<CURL*>(h));
}

void* S3Http::Acquire() {
  {
    absl::MutexLock lock(&mu_);
    if (!idle_.empty()) {
      void* h = idle_.back();
      idle_.pop_back();
      return h;
    }
  }
  return curl_easy_init();
}

void S3Http::Release(void* handle) {
  {
    absl::MutexLock lock(&mu_);
    if (idle_.size() < kMaxIdleHandles) {
      idle_.push_back(handle);
      return;
    }
  }
  curl_easy_cleanup(static_cast<CURL*>(handle));
}

absl::StatusOr<S3Http::Response> S3Http::Send(const Request& request) {
  CURL* h = static_cast<CURL*>(Acquire());
  if (h == nullptr) return absl::InternalError("curl_easy_init failed");
  // Reset keeps the handle's connections; everything else is set anew.
  curl_easy_reset(h);

  Response response;
  Transfer transfer;
  transfer.upload = request.body;
  transfer.response = &response;
  transfer.limit = request.max_response_body;
  char errbuf[CURL_ERROR_SIZE] = {0};

  curl_slist* list = nullptr;
  for (const auto& [name, value] : request.headers) {
    list = curl_slist_append(list, absl::StrCat(name, ": ", value).c_str());
  }
  // No 100-continue round trip for large bodies; no default Accept.
  list = curl_slist_append(list, "Expect:");
  list = curl_slist_append(list, "Accept:");
  std::unique_ptr<curl_slist, SlistDeleter> headers(list);

  curl_easy_setopt(h, CURLOPT_URL, request.url.c_str());
  // The path is sent as signed: no "/../" squashing.
  curl_easy_setopt(h, CURLOPT_PATH_AS_IS, 1L);
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, Millis(options_.timeout));
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
                   Millis(std::min(options_.timeout, absl::Seconds(10))));
  curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(h, CURLOPT_USERAGENT, "packet-capture-s3/1");
  if (!options_.ca_file.empty()) {
    curl_easy_setopt(h, CURLOPT_CAINFO, options_.ca_file.c_str());
    curl_easy_setopt(h, CURLOPT_CAPATH, nullptr);
  }
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers.get());
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, OnBody);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &transfer);
  curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, OnHeader);
  curl_easy_setopt(h, CURLOPT_HEADERDATA, &transfer);
  if (request.method == "PUT") {
    curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(h, CURLOPT_READFUNCTION, OnRead);
    curl_easy_setopt(h, CURLOPT_READDATA, &transfer);
    curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, OnSeek);
    curl_easy_setopt(h, CURLOPT_SEEKDATA, &transfer);
    curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE,
                     static_cast<curl_off_t>(request.body.size()));
  } else if (request.method == "HEAD") {
    curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
  } else if (request.method == "GET") {
    curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
  } else {
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, request.method.c_str());
  }

  CURLcode rc = curl_easy_perform(h);
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &response.status);
  // The handle must not keep pointers into this frame while pooled.
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, nullptr);
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, nullptr);
  Release(h);
  if (rc == CURLE_OK) return response;
  if (transfer.overflow) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "response body larger than ", request.max_response_body, " bytes"));
  }
  std::string detail = errbuf[0] != '\0' ? errbuf : curl_easy_strerror(rc);
  if (rc == CURLE_OPERATION_TIMEDOUT) {
    return absl::DeadlineExceededError(detail);
  }
  return absl::UnavailableError(detail);
}

}  // namespace pc::s3
