#include "common/kube/http_client.h"

#include <curl/curl.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <memory>
#include <mutex>
#include <sstream>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/cord.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/kube/kube_json.h"
#include "common/kube/kube_types.pb.h"

namespace pc {
namespace kube {
namespace {

constexpr char kHttpCodePayload[] = "pc.kube/http-status-code";
// How much of a non-200 stream body is kept for the error message.
constexpr size_t kMaxErrorBody = 64 << 10;
// Upper bound on how long Stream() takes to notice *cancel while idle.
constexpr int kCancelPollMs = 100;

struct EasyDeleter {
  void operator()(CURL* h) const { curl_easy_cleanup(h); }
};
using EasyHandle = std::unique_ptr<CURL, EasyDeleter>;

struct SlistDeleter {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};
using Slist = std::unique_ptr<curl_slist, SlistDeleter>;

struct MultiDeleter {
  void operator()(CURLM* m) const { curl_multi_cleanup(m); }
};
using MultiHandle = std::unique_ptr<CURLM, MultiDeleter>;

std::once_flag g_curl_init_once;
CURLcode g_curl_init_result = CURLE_OK;

long Millis(absl::Duration d) {  // NOLINT(runtime/int): curl takes long
  return static_cast<long>(
      std::max<int64_t>(1, absl::ToInt64Milliseconds(d)));  // NOLINT
}

absl::StatusOr<std::string> ReadToken(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return absl::NotFoundError(absl::StrCat("cannot read token file ", path));
  std::ostringstream out;
  out << in.rdbuf();
  std::string token(absl::StripAsciiWhitespace(out.str()));
  for (char c : token) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      return absl::InvalidArgumentError(
          absl::StrCat("token file ", path, " holds control characters"));
    }
  }
  return token;
}

absl::Status TransportError(CURLcode code, const char* errbuf) {
  std::string detail = errbuf[0] != '\0' ? errbuf : curl_easy_strerror(code);
  return absl::UnavailableError(absl::StrCat("kube API: ", detail));
}

// Everything a request needs that outlives curl_easy_setopt.
struct RequestSetup {
  EasyHandle handle;
  Slist headers;
  char errbuf[CURL_ERROR_SIZE] = {0};
};

absl::StatusOr<std::unique_ptr<RequestSetup>> NewRequest(
    const KubeConfig& config, const HttpClient::Options& options,
    absl::string_view path_and_query, const std::string& token) {
  if (path_and_query.empty() || path_and_query[0] != '/') {
    return absl::InvalidArgumentError(
        absl::StrCat("request path must start with '/': ", path_and_query));
  }
  auto setup = std::make_unique<RequestSetup>();
  setup->handle.reset(curl_easy_init());
  CURL* h = setup->handle.get();
  if (h == nullptr) return absl::InternalError("curl_easy_init failed");

  std::string url = absl::StrCat(config.server, path_and_query);
  curl_easy_setopt(h, CURLOPT_URL, url.c_str());
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, setup->errbuf);
  // Signals are unusable with threads; this also disables SIGALRM DNS timeouts.
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
                   Millis(options.connect_timeout));
  curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(h, CURLOPT_TCP_KEEPIDLE, 30L);
  curl_easy_setopt(h, CURLOPT_TCP_KEEPINTVL, 10L);
  curl_easy_setopt(h, CURLOPT_USERAGENT, options.user_agent.c_str());
  curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING,
                   "");  // any encoding curl decodes

  if (config.insecure_skip_tls_verify) {
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
  } else if (!config.ca_pem.empty() || !config.ca_file.empty()) {
    // Trust only the cluster CA, not the system bundle as well.
    curl_easy_setopt(h, CURLOPT_CAPATH, nullptr);
    if (!config.ca_pem.empty()) {
      curl_easy_setopt(h, CURLOPT_CAINFO, nullptr);
      curl_blob blob{const_cast<char*>(config.ca_pem.data()),
                     config.ca_pem.size(), CURL_BLOB_COPY};
      curl_easy_setopt(h, CURLOPT_CAINFO_BLOB, &blob);
    } else {
      curl_easy_setopt(h, CURLOPT_CAINFO, config.ca_file.c_str());
    }
  }
  if (!config.client_cert_pem.empty()) {
    curl_blob blob{const_cast<char*>(config.client_cert_pem.data()),
                   config.client_cert_pem.size(), CURL_BLOB_COPY};
    curl_easy_setopt(h, CURLOPT_SSLCERT_BLOB, &blob);
    curl_easy_setopt(h, CURLOPT_SSLCERTTYPE, "PEM");
  } else if (!config.client_cert_file.empty()) {
    curl_easy_setopt(h, CURLOPT_SSLCERT, config.client_cert_file.c_str());
    curl_easy_setopt(h, CURLOPT_SSLCERTTYPE, "PEM");
  }
  if (!config.client_key_pem.empty()) {
    curl_blob blob{const_cast<char*>(config.client_key_pem.data()),
                   config.client_key_pem.size(), CURL_BLOB_COPY};
    curl_easy_setopt(h, CURLOPT_SSLKEY_BLOB, &blob);
    curl_easy_setopt(h, CURLOPT_SSLKEYTYPE, "PEM");
  } else if (!config.client_key_file.empty()) {
    curl_easy_setopt(h, CURLOPT_SSLKEY, config.client_key_file.c_str());
    curl_easy_setopt(h, CURLOPT_SSLKEYTYPE, "PEM");
  }

  curl_slist* list = nullptr;
  list = curl_slist_append(list, "Accept: application/json");
  list = curl_slist_append(list, "Expect:");  // no 100-continue round trip
  if (!token.empty()) {
    list = curl_slist_append(
        list, absl::StrCat("Authorization: Bearer ", token).c_str());
  }
  setup->headers.reset(list);
  return setup;
}

absl::Status ApplyHeaders(RequestSetup* setup, absl::string_view content_type) {
  if (!content_type.empty()) {
    for (char c : content_type) {
      if (static_cast<unsigned char>(c) < 0x20) {
        return absl::InvalidArgumentError(
            "content type holds control characters");
      }
    }
    curl_slist* list =
        curl_slist_append(setup->headers.release(),
                          absl::StrCat("Content-Type: ", content_type).c_str());
    setup->headers.reset(list);
  }
  curl_easy_setopt(setup->handle.get(), CURLOPT_HTTPHEADER,
                   setup->headers.get());
  return absl::OkStatus();
}

struct BodySink {
  std::string* body = nullptr;
  size_t limit = 0;
  bool overflow = false;
};

size_t WriteBody(char* data, size_t size, size_t nmemb, void* user) {
  auto* sink = static_cast<BodySink*>(user);
  size_t n = size * nmemb;
  if (sink->body->size() + n > sink->limit) {
    sink->overflow = true;
    return 0;  // aborts the transfer with CURLE_WRITE_ERROR
  }
  sink->body->append(data, n);
  return n;
}

struct StreamSink {
  CURL* handle = nullptr;
  const std::function<bool(absl::string_view)>* on_data = nullptr;
  const std::atomic<bool>* cancel = nullptr;
  long code = 0;  // NOLINT(runtime/int)
  std::string error_body;
  bool stopped_by_callee = false;
  bool cancelled = false;
};

size_t WriteStream(char* data, size_t size, size_t nmemb, void* user) {
  auto* sink = static_cast<StreamSink*>(user);
  size_t n = size * nmemb;
  if (sink->cancel != nullptr && sink->cancel->load()) {
    sink->cancelled = true;
    return 0;
  }
  if (sink->code == 0)
    curl_easy_getinfo(sink->handle, CURLINFO_RESPONSE_CODE, &sink->code);
  if (sink->code != 200) {
    // An error body is a small Status object; keep enough for the message.
    size_t keep = std::min(
        n, kMaxErrorBody - std::min(kMaxErrorBody, sink->error_body.size()));
    sink->error_body.append(data, keep);
    return n;
  }
  if (!(*sink->on_data)(absl::string_view(data, n))) {
    sink->stopped_by_callee = true;
    return 0;
  }
  return n;
}

absl::StatusCode CodeForHttp(int status) {
  switch (status) {
    case 400:
    case 422:
      return absl::StatusCode::kInvalidArgument;
    case 401:
      return absl::StatusCode::kUnauthenticated;
    case 403:
      return absl::StatusCode::kPermissionDenied;
    case 404:
      return absl::StatusCode::kNotFound;
    case 409:
      return absl::StatusCode::kAborted;
    case 410:
      return absl::StatusCode::kFailedPrecondition;
    case 429:
      return absl::StatusCode::kResourceExhausted;
    case 500:
    case 502:
    case 503:
    case 504:
      return absl::StatusCode::kUnavailable;
    default:
      if (status >= 500) return absl::StatusCode::kInternal;
      return absl::StatusCode::kUnknown;
  }
}

// Runs one transfer on `multi` (used by no other thread meanwhile) so that
// *cancel is noticed every kCancelPollMs even while the server sends
// nothing; the connection stays in multi's cache for its next transfer
// unless curl closes it (errors, cancellation, the server's wish). Returns
// the transfer's result; sets *cancelled when it stopped because of *cancel.
absl::StatusOr<CURLcode> RunTransfer(CURLM* multi, CURL* h,
                                     const std::atomic<bool>* cancel,
                                     bool* cancelled) {
  if (curl_multi_add_handle(multi, h) != CURLM_OK) {
    return absl::InternalError("curl_multi_add_handle failed");
  }
  absl::StatusOr<CURLcode> result = CURLE_OK;
  bool done = false;
  while (!done) {
    if (cancel != nullptr && cancel->load()) {
      *cancelled = true;
      break;
    }
    int running = 0;
    CURLMcode mc = curl_multi_perform(multi, &running);
    if (mc != CURLM_OK) {
      result = absl::InternalError(
          absl::StrCat("curl_multi_perform: ", curl_multi_strerror(mc)));
      break;
    }
    int queued = 0;
    while (CURLMsg* msg = curl_multi_info_read(multi, &queued)) {
      if (msg->msg == CURLMSG_DONE && msg->easy_handle == h) {
        result = msg->data.result;
        done = true;
      }
    }
    if (done || running == 0) break;
    mc = curl_multi_poll(multi, nullptr, 0, kCancelPollMs, nullptr);
    if (mc != CURLM_OK) {
      result = absl::InternalError(
          absl::StrCat("curl_multi_poll: ", curl_multi_strerror(mc)));
      break;
    }
  }
  curl_multi_remove_handle(multi, h);
  return result;
}

}  // namespace

absl::Status HttpError(int status_code, absl::string_view body) {
  std::string message = absl::StrCat("HTTP ", status_code);
  Status api_status;
  if (!body.empty() && ParseJson(body, &api_status).ok()) {
    if (!api_status.reason().empty())
      absl::StrAppend(&message, " ", api_status.reason());
    if (!api_status.message().empty())
      absl::StrAppend(&message, ": ", api_status.message());
  } else if (!body.empty()) {
    absl::StrAppend(&message, ": ", body.substr(0, 256));
  }
  absl::Status status(CodeForHttp(status_code), message);
  status.SetPayload(kHttpCodePayload, absl::Cord(absl::StrCat(status_code)));
  return status;
}

int HttpCodeFromStatus(const absl::Status& status) {
  absl::optional<absl::Cord> payload = status.GetPayload(kHttpCodePayload);
  int code = 0;
  if (!payload || !absl::SimpleAtoi(std::string(*payload), &code)) return 0;
  return code;
}

HttpClient::HttpClient(KubeConfig config, Options options)
    : config_(std::move(config)), options_(std::move(options)) {}

HttpClient::~HttpClient() {
  absl::MutexLock lock(&pool_mu_);
  for (void* multi : idle_) curl_multi_cleanup(multi);
}

void* HttpClient::Acquire() {
  {
    absl::MutexLock lock(&pool_mu_);
    if (!idle_.empty()) {
      void* multi = idle_.back();  // the most recently used: likely alive
      idle_.pop_back();
      return multi;
    }
  }
  return curl_multi_init();
}

void HttpClient::Release(void* multi) {
  {
    absl::MutexLock lock(&pool_mu_);
    if (idle_.size() <
        static_cast<size_t>(std::max(0, options_.max_idle_connections))) {
      idle_.push_back(multi);
      return;
    }
  }
  curl_multi_cleanup(multi);
}

absl::StatusOr<std::unique_ptr<HttpClient>> HttpClient::Create(
    KubeConfig config, Options options) {
  std::call_once(g_curl_init_once, [] {
    g_curl_init_result = curl_global_init(CURL_GLOBAL_DEFAULT);
  });
  if (g_curl_init_result != CURLE_OK) {
    return absl::InternalError(absl::StrCat(
        "curl_global_init: ", curl_easy_strerror(g_curl_init_result)));
  }
  while (!config.server.empty() && config.server.back() == '/')
    config.server.pop_back();
  if (!absl::StartsWith(config.server, "https://") &&
      !absl::StartsWith(config.server, "http://")) {
    return absl::InvalidArgumentError(absl::StrCat(
        "API server \"", config.server, "\" is not an http(s) URL"));
  }
  for (char c : config.token) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      return absl::InvalidArgumentError("token holds control characters");
    }
  }
  std::unique_ptr<HttpClient> client(
      new HttpClient(std::move(config), std::move(options)));
  if (!client->config_.token_file.empty()) {
    auto token = ReadToken(client->config_.token_file);
    if (!token.ok()) return token.status();
    absl::MutexLock lock(&client->mu_);
    client->token_ = *std::move(token);
    client->token_read_at_ = absl::Now();
  }
  return client;
}

std::string HttpClient::Token(bool force_reload) {
  absl::MutexLock lock(&mu_);
  if (config_.token_file.empty()) return config_.token;
  absl::Time now = absl::Now();
  if (force_reload || now - token_read_at_ >= options_.token_refresh_interval) {
    token_read_at_ = now;
    auto token = ReadToken(config_.token_file);
    if (token.ok()) {
      token_ = *std::move(token);
    } else {
      // Keep the last good token: a rotation in progress must not cut us off.
      std::fprintf(stderr, "kube: keeping previous token: %s\n",
                   std::string(token.status().message()).c_str());
    }
  }
  return token_.empty() ? config_.token : token_;
}

absl::StatusOr<HttpResponse> HttpClient::Do(absl::string_view method,
                                            absl::string_view path_and_query,
                                            absl::string_view body,
                                            absl::string_view content_type,
                                            const std::atomic<bool>* cancel) {
  std::string verb = absl::AsciiStrToUpper(method);
  if (verb.empty() ||
      !std::all_of(verb.begin(), verb.end(), absl::ascii_isupper)) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad HTTP method \"", method, "\""));
  }
  for (int attempt = 0;; ++attempt) {
    if (cancel != nullptr && cancel->load())
      return absl::CancelledError("request cancelled");
    auto setup =
        NewRequest(config_, options_, path_and_query, Token(attempt > 0));
    if (!setup.ok()) return setup.status();
    CURL* h = (*setup)->handle.get();
    bool send_body = !body.empty() || verb == "POST";
    absl::Status header_status =
        ApplyHeaders(setup->get(), send_body ? content_type : "");
    if (!header_status.ok()) return header_status;

    if (send_body) {
      curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE,
                       static_cast<curl_off_t>(body.size()));
      curl_easy_setopt(h, CURLOPT_POSTFIELDS, body.data());
      if (verb != "POST")
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, verb.c_str());
    } else if (verb == "HEAD") {
      curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    } else if (verb != "GET") {
      curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, verb.c_str());
    }
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, Millis(options_.request_timeout));

    HttpResponse response;
    BodySink sink;
    sink.body = &response.body;
    sink.limit = options_.max_body_bytes;
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, &WriteBody);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &sink);

    bool cancelled = false;
    CURLM* multi = Acquire();
    if (multi == nullptr) return absl::InternalError("curl_multi_init failed");
    absl::StatusOr<CURLcode> result = RunTransfer(multi, h, cancel, &cancelled);
    Release(multi);
    if (!result.ok()) return result.status();
    if (cancelled) return absl::CancelledError("request cancelled");
    CURLcode rc = *result;
    if (sink.overflow) {
      return absl::ResourceExhaustedError(
          absl::StrCat("kube API: response body of ", verb, " ", path_and_query,
                       " exceeds ", options_.max_body_bytes, " bytes"));
    }
    if (rc != CURLE_OK) return TransportError(rc, (*setup)->errbuf);
    long code = 0;  // NOLINT(runtime/int)
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    response.status_code = static_cast<int>(code);
    if (code == 401 && attempt == 0 && !config_.token_file.empty()) continue;
    return response;
  }
}

absl::Status HttpClient::Stream(
    absl::string_view path_and_query,
    const std::function<bool(absl::string_view)>& on_data,
    const std::atomic<bool>* cancel) {
  for (int attempt = 0;; ++attempt) {
    if (cancel != nullptr && cancel->load())
      return absl::CancelledError("stream cancelled");
    auto setup =
        NewRequest(config_, options_, path_and_query, Token(attempt > 0));
    if (!setup.ok()) return setup.status();
    CURL* h = (*setup)->handle.get();
    absl::Status header_status = ApplyHeaders(setup->get(), "");
    if (!header_status.ok()) return header_status;
    // A dead connection is noticed when nothing arrives for the idle timeout.
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME,
                     std::max(1L, Millis(options_.stream_idle_timeout) / 1000));

    StreamSink sink;
    sink.handle = h;
    sink.on_data = &on_data;
    sink.cancel = cancel;
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, &WriteStream);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &sink);

    // A watch holds its connection for minutes: it gets one of its own.
    MultiHandle multi(curl_multi_init());
    if (!multi) return absl::InternalError("curl_multi_init failed");
    absl::StatusOr<CURLcode> result =
        RunTransfer(multi.get(), h, cancel, &sink.cancelled);
    if (!result.ok()) return result.status();
    CURLcode rc = *result;
    if (sink.cancelled) return absl::CancelledError("stream cancelled");
    if (sink.stopped_by_callee) return absl::OkStatus();
    if (rc != CURLE_OK) return TransportError(rc, (*setup)->errbuf);
    long code = 0;  // NOLINT(runtime/int)
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    if (code == 401 && attempt == 0 && !config_.token_file.empty()) continue;
    if (code != 200) return HttpError(static_cast<int>(code), sink.error_body);
    return absl::OkStatus();
  }
}

}  // namespace kube
}  // namespace pc
