#include "common/s3/s3_client.h"

#include <algorithm>
#include <cstdint>
#include <random>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/log.h"
#include "common/s3/s3_xml.h"

namespace pc::s3 {
namespace {

// Bodies of answers that are not objects (Put, Delete, errors).
constexpr size_t kMaxSmallBody = 64 << 10;
// A ListObjectsV2 page: 1000 keys of up to 1 KiB, entity-encoded.
constexpr size_t kMaxListBody = 32 << 20;
constexpr size_t kMaxKeyBytes = 1024;

std::string Describe(absl::string_view op, absl::string_view key) {
  return absl::StrCat("S3 ", op, " \"", absl::CHexEscape(key), "\"");
}

S3ErrorInfo ErrorInfo(const S3Http::Response& r) {
  return ParseErrorXml(r.body);
}

bool Retryable(const S3Http::Response& r) {
  if (r.status == 429 || (r.status >= 500 && r.status != 501)) return true;
  return r.status == 409 && ErrorInfo(r).code == "ConditionalRequestConflict";
}

// The status for an HTTP answer the operation did not expect.
absl::Status HttpError(absl::string_view what, const S3Http::Response& r,
                       absl::string_view note = "") {
  S3ErrorInfo e = ErrorInfo(r);
  std::string msg = absl::StrCat(what, ": HTTP ", r.status);
  if (!e.code.empty()) absl::StrAppend(&msg, " ", e.code);
  if (!e.message.empty()) absl::StrAppend(&msg, ": ", e.message);
  if (!note.empty()) absl::StrAppend(&msg, " (", note, ")");
  switch (r.status) {
    case 400:
      return absl::InvalidArgumentError(msg);
    case 401:
    case 403:
      return absl::PermissionDeniedError(msg);
    case 404:
      return absl::NotFoundError(msg);
    case 409:
      if (e.code == "ConditionalRequestConflict") {
        return absl::FailedPreconditionError(msg);
      }
      return absl::AbortedError(msg);
    case 412:
      return absl::FailedPreconditionError(msg);
    case 416:
      return absl::OutOfRangeError(msg);
    case 501:
      return absl::UnimplementedError(msg);
    case 301:
    case 307:
      return absl::FailedPreconditionError(
          absl::StrCat(msg, " (redirected: wrong region or endpoint?)"));
    default:
      break;
  }
  if (r.status == 429 || r.status >= 500) return absl::UnavailableError(msg);
  return absl::UnknownError(msg);
}

absl::Status CheckKey(absl::string_view what, absl::string_view key) {
  if (key.empty())
    return absl::InvalidArgumentError(absl::StrCat(what, ": empty key"));
  if (key.size() > kMaxKeyBytes) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": key over 1 KiB"));
  }
  return absl::OkStatus();
}

std::string HeaderOr(const S3Http::Response& r, const char* name,
                     std::string fallback = "") {
  auto it = r.headers.find(name);
  return it == r.headers.end() ? fallback : it->second;
}

// Uniform in [base/2, base]: spread, yet never much shorter than planned.
absl::Duration Jittered(absl::Duration base) {
  thread_local std::mt19937_64 rng(std::random_device{}());
  std::uniform_real_distribution<double> u(0.5, 1.0);
  return base * u(rng);
}

}  // namespace

absl::StatusOr<std::unique_ptr<S3Client>> S3Client::Create(S3Config config) {
  auto endpoint = ParseEndpoint(config.endpoint);
  if (!endpoint.ok()) return endpoint.status();
  std::string bucket, prefix;
  if (auto s =
          ParseStoreUrl(absl::StrCat("s3://", config.bucket), &bucket, &prefix);
      !s.ok() || !prefix.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("S3: bad bucket name \"", config.bucket, "\""));
  }
  if (config.access_key.empty() || config.secret_key.empty()) {
    return absl::InvalidArgumentError("S3: no access key or secret key");
  }
  if (config.region.empty() ||
      config.region.find_first_not_of(
          "abcdefghijklmnopqrstuvwxyz0123456789-") != std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("S3: bad region \"", config.region, "\""));
  }
  if (config.max_attempts < 1 ||
      config.request_timeout <= absl::ZeroDuration() ||
      config.initial_backoff < absl::ZeroDuration() ||
      config.max_backoff < config.initial_backoff) {
    return absl::InvalidArgumentError(
        "S3: max_attempts must be >= 1, request_timeout > 0 and "
        "0 <= initial_backoff <= max_backoff");
  }
  return std::unique_ptr<S3Client>(
      new S3Client(std::move(config), *std::move(endpoint)));
}

S3Client::S3Client(S3Config config, Endpoint endpoint)
    : config_(std::move(config)),
      endpoint_(std::move(endpoint)),
      http_(S3Http::Options{config_.request_timeout, config_.ca_file}) {}

absl::StatusOr<S3Http::Response> S3Client::Execute(
    Op op, const std::string& what, const RequestSpec& spec,
    absl::string_view body, size_t max_response_body, bool* uncertain) {
  absl::Duration base = config_.initial_backoff;
  absl::Status last;
  for (int attempt = 1;; ++attempt) {
    requests_[op].fetch_add(1, std::memory_order_relaxed);
    // Signed per attempt: x-amz-date must be current.
    PreparedRequest prepared =
        PrepareRequest(config_, endpoint_, spec, body, absl::Now());
    S3Http::Request request;
    request.method = spec.method;
    request.url = std::move(prepared.url);
    request.headers = std::move(prepared.headers);
    request.body = body;
    request.max_response_body = max_response_body;
    auto response = http_.Send(request);
    if (response.ok() && !Retryable(*response)) return response;
    if (!response.ok()) {
      if (response.status().code() == absl::StatusCode::kResourceExhausted) {
        return absl::ResourceExhaustedError(
            absl::StrCat(what, ": ", response.status().message()));
      }
      last = response.status();
      *uncertain = true;
    } else {
      last = HttpError(what, *response);
      if (response->status >= 500) *uncertain = true;
    }
    if (attempt >= config_.max_attempts) break;
    absl::Duration delay = Jittered(base);
    base = std::min(base * 2, config_.max_backoff);
    LogLine("s3_retry",
            {{"request", what},
             {"attempt", absl::StrCat(attempt)},
             {"error", std::string(last.message())},
             {"delay_ms", absl::StrCat(absl::ToInt64Milliseconds(delay))}});
    absl::SleepFor(delay);
  }
  std::string suffix = absl::StrCat(" (", config_.max_attempts, " attempts)");
  if (absl::StartsWith(last.message(), what)) {  // an HTTP error
    return absl::Status(last.code(), absl::StrCat(last.message(), suffix));
  }
  return absl::Status(last.code(),
                      absl::StrCat(what, ": ", last.message(), suffix));
}

std::map<std::string, uint64_t> S3Client::RequestCounts() const {
  static constexpr const char* kNames[kOps] = {"PUT",  "GET",    "HEAD",
                                               "LIST", "DELETE", "OTHER"};
  std::map<std::string, uint64_t> out;
  for (int op = 0; op < kOps; ++op) {
    const uint64_t n = requests_[op].load(std::memory_order_relaxed);
    if (n > 0) out[kNames[op]] = n;
  }
  return out;
}

absl::StatusOr<std::string> S3Client::Put(absl::string_view key,
                                          absl::string_view body,
                                          const PutOptions& options) {
  std::string what = Describe("PUT", key);
  if (auto s = CheckKey(what, key); !s.ok()) return s;
  RequestSpec spec;
  spec.method = "PUT";
  spec.key = std::string(key);
  if (!options.content_type.empty()) {
    spec.headers.emplace_back("Content-Type", options.content_type);
  }
  if (options.if_none_match_any)
    spec.headers.emplace_back("If-None-Match", "*");
  if (!options.if_match.empty()) {
    spec.headers.emplace_back("If-Match", options.if_match);
  }
  for (const auto& [name, value] : options.metadata) {
    if (name.empty() ||
        name.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789-") !=
            std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": metadata names must be [a-z0-9-]+: ", name));
    }
    for (char c : value) {
      if (static_cast<unsigned char>(c) < 0x20 ||
          static_cast<unsigned char>(c) >= 0x7f) {
        return absl::InvalidArgumentError(absl::StrCat(
            what, ": metadata value of ", name, " is not printable ASCII"));
      }
    }
    spec.headers.emplace_back(absl::StrCat("x-amz-meta-", name), value);
  }
  for (const auto& [name, value] : spec.headers) {
    for (char c : value) {
      if (c == '\r' || c == '\n' || c == '\0') {
        return absl::InvalidArgumentError(
            absl::StrCat(what, ": ", name, " holds a line break"));
      }
    }
  }
  bool uncertain = false;
  auto r = Execute(kPut, what, spec, body, kMaxSmallBody, &uncertain);
  if (!r.ok()) return r.status();
  if (r->status != 200) {
    bool maybe_ours =
        r->status == 412 && uncertain && options.if_none_match_any;
    return HttpError(what, *r,
                     maybe_ours ? "an earlier attempt failed in transit and "
                                  "may have stored this object"
                                : "");
  }
  std::string etag = HeaderOr(*r, "etag");
  if (etag.empty()) return absl::UnknownError(what + ": no ETag in the answer");
  return etag;
}

absl::StatusOr<GetResult> S3Client::Get(absl::string_view key, uint64_t offset,
                                        uint64_t length) {
  std::string what = Describe("GET", key);
  if (auto s = CheckKey(what, key); !s.ok()) return s;
  if (length > kMaxGetBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": a Get returns at most ", kMaxGetBytes, " bytes"));
  }
  if (length > 0 && offset > UINT64_MAX - length) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": range overflows"));
  }
  RequestSpec spec;
  spec.method = "GET";
  spec.key = std::string(key);
  bool ranged = offset > 0 || length > 0;
  if (ranged) {
    std::string range = absl::StrCat("bytes=", offset, "-");
    if (length > 0) absl::StrAppend(&range, offset + length - 1);
    spec.headers.emplace_back("Range", range);
  }
  bool uncertain = false;
  // Room for an error document even when few bytes are asked for.
  size_t limit =
      length > 0 ? std::max<size_t>(length, kMaxSmallBody) : kMaxGetBytes;
  auto r = Execute(kGet, what, spec, "", limit, &uncertain);
  if (!r.ok()) return r.status();
  if (r->status != 200 && r->status != 206) return HttpError(what, *r);
  GetResult out;
  out.etag = HeaderOr(*r, "etag");
  for (const auto& [name, value] : r->headers) {
    if (absl::StartsWith(name, "x-amz-meta-")) {
      out.metadata[name.substr(11)] = value;
    }
  }
  if (r->status == 206) {
    // "bytes FIRST-LAST/SIZE"
    std::string range = HeaderOr(*r, "content-range");
    size_t slash = range.rfind('/');
    if (slash == std::string::npos ||
        !absl::SimpleAtoi(range.substr(slash + 1), &out.object_size)) {
      return absl::UnknownError(
          absl::StrCat(what, ": bad Content-Range \"", range, "\""));
    }
    out.body = std::move(r->body);
    return out;
  }
  // 200: the whole object (a server may ignore Range).
  out.object_size = r->body.size();
  if (offset > out.object_size) {
    return absl::OutOfRangeError(
        absl::StrCat(what, ": offset past the object's end"));
  }
  out.body =
      ranged ? r->body.substr(offset, length > 0 ? length : std::string::npos)
             : std::move(r->body);
  return out;
}

absl::StatusOr<ObjectInfo> S3Client::Head(absl::string_view key) {
  std::string what = Describe("HEAD", key);
  if (auto s = CheckKey(what, key); !s.ok()) return s;
  RequestSpec spec;
  spec.method = "HEAD";
  spec.key = std::string(key);
  bool uncertain = false;
  auto r = Execute(kHead, what, spec, "", kMaxSmallBody, &uncertain);
  if (!r.ok()) return r.status();
  if (r->status != 200) return HttpError(what, *r);
  ObjectInfo info;
  info.key = std::string(key);
  info.etag = HeaderOr(*r, "etag");
  if (!absl::SimpleAtoi(HeaderOr(*r, "content-length"), &info.size)) {
    return absl::UnknownError(absl::StrCat(what, ": no Content-Length"));
  }
  std::string modified = HeaderOr(*r, "last-modified");
  std::string err;
  if (!modified.empty() &&
      !absl::ParseTime("%a, %d %b %Y %H:%M:%S GMT", modified,
                       &info.last_modified, &err)) {
    return absl::UnknownError(
        absl::StrCat(what, ": bad Last-Modified \"", modified, "\""));
  }
  return info;
}

absl::StatusOr<ListPage> S3Client::List(absl::string_view prefix,
                                        absl::string_view delimiter,
                                        absl::string_view continuation,
                                        int max_keys) {
  std::string what = Describe("LIST", prefix);
  if (max_keys < 1 || max_keys > 1000) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": max_keys must be 1..1000"));
  }
  RequestSpec spec;
  spec.method = "GET";
  spec.query = {{"list-type", "2"}, {"max-keys", absl::StrCat(max_keys)}};
  if (!prefix.empty()) spec.query.emplace_back("prefix", std::string(prefix));
  if (!delimiter.empty()) {
    spec.query.emplace_back("delimiter", std::string(delimiter));
  }
  if (!continuation.empty()) {
    spec.query.emplace_back("continuation-token", std::string(continuation));
  }
  bool uncertain = false;
  auto r = Execute(kList, what, spec, "", kMaxListBody, &uncertain);
  if (!r.ok()) return r.status();
  if (r->status != 200) return HttpError(what, *r);
  auto page = ParseListObjectsV2(r->body);
  if (!page.ok()) {
    return absl::UnknownError(
        absl::StrCat(what, ": ", page.status().message()));
  }
  return page;
}

absl::Status S3Client::Delete(absl::string_view key) {
  std::string what = Describe("DELETE", key);
  if (auto s = CheckKey(what, key); !s.ok()) return s;
  RequestSpec spec;
  spec.method = "DELETE";
  spec.key = std::string(key);
  bool uncertain = false;
  auto r = Execute(kDelete, what, spec, "", kMaxSmallBody, &uncertain);
  if (!r.ok()) return r.status();
  if (r->status == 200 || r->status == 204) return absl::OkStatus();
  // Absent is fine; a missing bucket is not.
  if (r->status == 404 && ErrorInfo(*r).code != "NoSuchBucket") {
    return absl::OkStatus();
  }
  return HttpError(what, *r);
}

absl::Status S3Client::CreateBucket() {
  std::string what = absl::StrCat("S3 create bucket ", config_.bucket);
  std::string body;
  if (config_.region != "us-east-1") {
    body = absl::StrCat(
        "<CreateBucketConfiguration "
        "xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
        "<LocationConstraint>",
        config_.region, "</LocationConstraint></CreateBucketConfiguration>");
  }
  RequestSpec spec;
  spec.method = "PUT";
  bool uncertain = false;
  auto r = Execute(kOther, what, spec, body, kMaxSmallBody, &uncertain);
  if (!r.ok()) return r.status();
  if (r->status == 200) return absl::OkStatus();
  if (r->status == 409 && ErrorInfo(*r).code == "BucketAlreadyOwnedByYou") {
    return absl::OkStatus();
  }
  if (r->status == 409) {
    return absl::AlreadyExistsError(
        HttpError(what, *r).message());  // someone else's
  }
  return HttpError(what, *r);
}

}  // namespace pc::s3
