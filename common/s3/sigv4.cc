#include "common/s3/sigv4.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace pc::s3 {
namespace {

constexpr char kAlgorithm[] = "AWS4-HMAC-SHA256";

bool Unreserved(unsigned char c) {
  return absl::ascii_isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~';
}

std::string HmacSha256(absl::string_view key, absl::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int out_len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), out,
       &out_len);
  return std::string(reinterpret_cast<const char*>(out), out_len);
}

// SigV4's Trimall: no leading or trailing whitespace, inner runs as one space.
std::string TrimAll(absl::string_view value) {
  std::string out;
  out.reserve(value.size());
  bool pending_space = false;
  for (char c : value) {
    if (absl::ascii_isspace(static_cast<unsigned char>(c))) {
      pending_space = !out.empty();
      continue;
    }
    if (pending_space) out.push_back(' ');
    pending_space = false;
    out.push_back(c);
  }
  return out;
}

std::string DateStamp(absl::Time time) {
  return absl::FormatTime("%Y%m%d", time, absl::UTCTimeZone());
}

// The signing key: four chained HMACs of the secret over the date, region,
// service and "aws4_request". It changes once a day, so each thread keeps
// the last one it derived: OpenSSL 3's one-shot HMAC() looks its algorithm
// up on every call, and deriving the key for each request cost four of the
// five HMACs a signature takes.
const std::string& SigningKey(absl::string_view secret, absl::string_view date,
                              absl::string_view region,
                              absl::string_view service) {
  struct Derived {
    std::string secret, date, region, service, key;
  };
  thread_local Derived last;
  if (last.key.empty() || last.secret != secret || last.date != date ||
      last.region != region || last.service != service) {
    std::string key = HmacSha256(absl::StrCat("AWS4", secret), date);
    key = HmacSha256(key, region);
    key = HmacSha256(key, service);
    last = {std::string(secret), std::string(date), std::string(region),
            std::string(service), HmacSha256(key, "aws4_request")};
  }
  return last.key;
}

}  // namespace

std::string UriEncode(absl::string_view in, bool keep_slash) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(in.size() * 3 / 2);
  for (char ch : in) {
    auto c = static_cast<unsigned char>(ch);
    if (Unreserved(c) || (keep_slash && c == '/')) {
      out.push_back(ch);
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0xf]);
    }
  }
  return out;
}

std::string CanonicalQueryString(
    const std::vector<std::pair<std::string, std::string>>& query) {
  std::vector<std::pair<std::string, std::string>> encoded;
  encoded.reserve(query.size());
  for (const auto& [name, value] : query) {
    encoded.emplace_back(UriEncode(name, false), UriEncode(value, false));
  }
  std::sort(encoded.begin(), encoded.end());
  return absl::StrJoin(encoded, "&", absl::PairFormatter("="));
}

std::string AmzDate(absl::Time time) {
  return absl::FormatTime("%Y%m%dT%H%M%SZ", time, absl::UTCTimeZone());
}

std::string Sha256Hex(absl::string_view data) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(),
         digest);
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(digest), sizeof(digest)));
}

std::string CanonicalRequest(const SigV4Request& request,
                             std::string* signed_headers) {
  // Lowercased names, stable-sorted so repeated names keep their order.
  std::vector<std::pair<std::string, std::string>> headers;
  headers.reserve(request.headers.size());
  for (const auto& [name, value] : request.headers) {
    headers.emplace_back(absl::AsciiStrToLower(TrimAll(name)), TrimAll(value));
  }
  std::stable_sort(
      headers.begin(), headers.end(),
      [](const auto& a, const auto& b) { return a.first < b.first; });
  std::string canonical_headers;
  std::vector<absl::string_view> names;
  for (size_t i = 0; i < headers.size();) {
    size_t j = i;
    std::string values;
    for (; j < headers.size() && headers[j].first == headers[i].first; ++j) {
      if (j > i) values.push_back(',');
      values += headers[j].second;
    }
    absl::StrAppend(&canonical_headers, headers[i].first, ":", values, "\n");
    names.push_back(headers[i].first);
    i = j;
  }
  *signed_headers = absl::StrJoin(names, ";");
  return absl::StrCat(
      request.method, "\n",
      request.canonical_uri.empty() ? "/" : request.canonical_uri, "\n",
      CanonicalQueryString(request.query), "\n", canonical_headers, "\n",
      *signed_headers, "\n", request.payload_hash);
}

std::string SigV4Authorization(const SigV4Request& request, absl::Time time,
                               const SigV4Credentials& credentials,
                               absl::string_view region,
                               absl::string_view service) {
  std::string signed_headers;
  std::string canonical = CanonicalRequest(request, &signed_headers);
  std::string date = DateStamp(time);
  std::string scope =
      absl::StrCat(date, "/", region, "/", service, "/aws4_request");
  std::string string_to_sign = absl::StrCat(
      kAlgorithm, "\n", AmzDate(time), "\n", scope, "\n", Sha256Hex(canonical));
  std::string signature = absl::BytesToHexString(
      HmacSha256(SigningKey(credentials.secret_key, date, region, service),
                 string_to_sign));
  return absl::StrCat(kAlgorithm, " Credential=", credentials.access_key, "/",
                      scope, ",SignedHeaders=", signed_headers,
                      ",Signature=", signature);
}

}  // namespace pc::s3
