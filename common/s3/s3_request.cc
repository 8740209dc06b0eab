#include "common/s3/s3_request.h"

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace pc::s3 {
namespace {

int DefaultPort(absl::string_view scheme) {
  return scheme == "https" ? 443 : 80;
}

}  // namespace

absl::StatusOr<Endpoint> ParseEndpoint(absl::string_view url) {
  Endpoint ep;
  absl::string_view rest = url;
  if (absl::ConsumePrefix(&rest, "http://")) {
    ep.scheme = "http";
  } else if (absl::ConsumePrefix(&rest, "https://")) {
    ep.scheme = "https";
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("S3 endpoint must start with http:// or https://: ", url));
  }
  absl::ConsumeSuffix(&rest, "/");
  if (rest.find_first_of("/?#@") != absl::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat(
        "S3 endpoint must be scheme://host[:port] without a path: ", url));
  }
  absl::string_view host = rest;
  absl::string_view port;
  if (absl::StartsWith(rest, "[")) {  // [IPv6]:port
    size_t close = rest.find(']');
    if (close == absl::string_view::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("S3 endpoint: unbalanced '[': ", url));
    }
    host = rest.substr(0, close + 1);
    absl::string_view after = rest.substr(close + 1);
    if (!after.empty() && !absl::ConsumePrefix(&after, ":")) {
      return absl::InvalidArgumentError(
          absl::StrCat("S3 endpoint: junk after ']': ", url));
    }
    port = after;
  } else if (size_t colon = rest.rfind(':'); colon != absl::string_view::npos) {
    host = rest.substr(0, colon);
    port = rest.substr(colon + 1);
  }
  if (host.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("S3 endpoint has no host: ", url));
  }
  for (char c : host) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) {
      return absl::InvalidArgumentError(
          absl::StrCat("S3 endpoint host holds spaces or controls: ", url));
    }
  }
  ep.host = absl::AsciiStrToLower(host);
  if (!port.empty()) {
    int p = 0;
    if (!absl::SimpleAtoi(port, &p) || p <= 0 || p > 65535) {
      return absl::InvalidArgumentError(
          absl::StrCat("S3 endpoint: bad port in ", url));
    }
    ep.port = p == DefaultPort(ep.scheme) ? 0 : p;
  }
  return ep;
}

std::string HostHeader(const Endpoint& endpoint, const std::string& bucket,
                       bool path_style) {
  std::string host =
      path_style ? endpoint.host : absl::StrCat(bucket, ".", endpoint.host);
  if (endpoint.port != 0) absl::StrAppend(&host, ":", endpoint.port);
  return host;
}

std::string RequestPath(const std::string& bucket, bool path_style,
                        const std::string& key) {
  std::string path = path_style ? absl::StrCat("/", bucket) : "";
  if (!key.empty() || !path_style) {
    absl::StrAppend(&path, "/", UriEncode(key, /*keep_slash=*/true));
  }
  return path;
}

PreparedRequest PrepareRequest(const S3Config& config, const Endpoint& endpoint,
                               const RequestSpec& spec, absl::string_view body,
                               absl::Time now) {
  std::string host = HostHeader(endpoint, config.bucket, config.path_style);
  SigV4Request signing;
  signing.method = spec.method;
  signing.canonical_uri =
      RequestPath(config.bucket, config.path_style, spec.key);
  signing.query = spec.query;
  signing.payload_hash = Sha256Hex(body);
  signing.headers = spec.headers;
  signing.headers.emplace_back("Host", host);
  signing.headers.emplace_back("x-amz-date", AmzDate(now));
  signing.headers.emplace_back("x-amz-content-sha256", signing.payload_hash);
  if (!config.session_token.empty()) {
    signing.headers.emplace_back("x-amz-security-token", config.session_token);
  }
  SigV4Credentials credentials{config.access_key, config.secret_key,
                               config.session_token};
  std::string authorization =
      SigV4Authorization(signing, now, credentials, config.region, "s3");

  PreparedRequest out;
  out.url = absl::StrCat(endpoint.scheme, "://", host, signing.canonical_uri);
  std::string query = CanonicalQueryString(spec.query);
  if (!query.empty()) absl::StrAppend(&out.url, "?", query);
  out.headers = std::move(signing.headers);
  out.headers.emplace_back("Authorization", std::move(authorization));
  return out;
}

}  // namespace pc::s3
