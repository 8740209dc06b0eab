// Prints N randomized S3 requests as JSON lines, each with the URL and the
// Authorization header our request builder (PrepareRequest + SigV4) gives
// it, for sigv4_botocore_check.py to recompute with botocore's own signer.
// Deterministic for a seed.
//
//   sigv4_request_gen SEED COUNT
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/s3/s3_request.h"

namespace pc::s3 {
namespace {

class Gen {
 public:
  explicit Gen(uint64_t seed) : rng_(seed) {}

  size_t Below(size_t n) { return rng_() % n; }
  bool Chance(int percent) { return Below(100) < static_cast<size_t>(percent); }
  template <typename T>
  const T& Pick(const std::vector<T>& v) {
    return v[Below(v.size())];
  }

  // Keys mix what URI encoding must get right: reserved and unreserved
  // characters, '/', "." and ".." segments, spaces, '%', multi-byte UTF-8.
  std::string Key() {
    static const std::vector<std::string> kPieces = {"a",
                                                     "Z",
                                                     "0",
                                                     "-",
                                                     "_",
                                                     ".",
                                                     "~",
                                                     "/",
                                                     "//",
                                                     " ",
                                                     "+",
                                                     "=",
                                                     "%",
                                                     "%20",
                                                     "&",
                                                     "?",
                                                     "#",
                                                     "!",
                                                     "*",
                                                     "'",
                                                     "(",
                                                     ")",
                                                     "$",
                                                     ",",
                                                     ";",
                                                     ":",
                                                     "@",
                                                     "[",
                                                     "]",
                                                     "\"",
                                                     "<",
                                                     ">",
                                                     "{",
                                                     "|",
                                                     "\\",
                                                     "^",
                                                     "`",
                                                     "..",
                                                     "./",
                                                     "\xc3\xa9",          // é
                                                     "\xe4\xb8\xad",      // 中
                                                     "\xf0\x9f\x98\x80",  // 😀
                                                     "data/",
                                                     "capture-1/",
                                                     "00000000000000000042"};
    std::string key;
    size_t n = 1 + Below(12);
    for (size_t i = 0; i < n; ++i) key += Pick(kPieces);
    return key;
  }

  std::string Token(const std::string& alphabet, size_t min, size_t max) {
    std::string out;
    size_t n = min + Below(max - min + 1);
    for (size_t i = 0; i < n; ++i)
      out.push_back(alphabet[Below(alphabet.size())]);
    return out;
  }

  // Printable ASCII with runs of spaces, leading and trailing ones too.
  std::string HeaderValue() {
    std::string out;
    size_t n = Below(24);
    for (size_t i = 0; i < n; ++i) {
      out.push_back(Chance(20) ? ' ' : static_cast<char>(0x21 + Below(94)));
    }
    return out;
  }

  std::string QueryText() {
    static const std::vector<std::string> kPieces = {
        "a", "B", "9", "-", "_", ".", "~", " ",        "+",
        "=", "&", "/", "%", "?", "#", "*", "\xc3\xa9", "\xe4\xb8\xad",
        ",", ":"};
    std::string out;
    size_t n = Below(6);
    for (size_t i = 0; i < n; ++i) out += Pick(kPieces);
    return out;
  }

  std::mt19937_64 rng_;
};

std::string Json(absl::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
    } else if (c < 0x20 || c == 0x7f) {
      absl::StrAppend(&out, "\\u00", absl::Hex(c, absl::kZeroPad2));
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  out.push_back('"');
  return out;
}

std::string JsonPairs(
    const std::vector<std::pair<std::string, std::string>>& v) {
  std::string out = "[";
  for (size_t i = 0; i < v.size(); ++i) {
    absl::StrAppend(&out, i ? "," : "", "[", Json(v[i].first), ",",
                    Json(v[i].second), "]");
  }
  return out + "]";
}

int Main(uint64_t seed, int count) {
  Gen g(seed);
  const std::vector<std::string> kEndpoints = {
      "http://127.0.0.1:9000", "https://s3.eu-west-1.amazonaws.com",
      "http://localhost",      "https://minio.example.internal:8443",
      "http://[::1]:7070",     "https://s3.amazonaws.com:443"};
  const std::vector<std::string> kRegions = {"us-east-1", "eu-west-1",
                                             "ap-southeast-2", "us-gov-west-1"};
  const std::vector<std::string> kBuckets = {"packet-capture", "my.bucket.1",
                                             "abc", "a-b-c-0123456789"};
  const std::vector<std::string> kMethods = {"GET", "PUT", "HEAD", "DELETE"};
  const std::string kAlnum =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  for (int i = 0; i < count; ++i) {
    S3Config config;
    config.endpoint = g.Pick(kEndpoints);
    config.path_style =
        config.endpoint.find('[') != std::string::npos || g.Chance(60);
    config.region = g.Pick(kRegions);
    config.bucket = g.Pick(kBuckets);
    config.access_key = g.Token(kAlnum, 16, 20);
    config.secret_key = g.Token(kAlnum + "/+", 30, 40);
    if (g.Chance(25)) config.session_token = g.Token(kAlnum + "/+=", 20, 60);
    auto endpoint = ParseEndpoint(config.endpoint);
    if (!endpoint.ok()) {
      std::fprintf(stderr, "%s\n", endpoint.status().ToString().c_str());
      return 1;
    }

    RequestSpec spec;
    spec.method = g.Pick(kMethods);
    spec.key = g.Chance(5) ? "" : g.Key();
    std::string body;
    size_t params = g.Chance(40) ? 1 + g.Below(5) : 0;
    for (size_t p = 0; p < params; ++p) {
      std::string name =
          g.Chance(50)
              ? g.Pick(std::vector<std::string>{
                    "list-type", "prefix", "delimiter", "continuation-token",
                    "max-keys", "uploads", "versionId"})
              : g.QueryText();
      if (name.empty()) name = "n";
      spec.query.emplace_back(name, g.Chance(30) ? "" : g.QueryText());
    }
    if (g.Chance(40)) {
      spec.headers.emplace_back(g.Chance(50) ? "Content-Type" : "content-type",
                                g.Pick(std::vector<std::string>{
                                    "application/octet-stream", "text/plain",
                                    "application/x-protobuf"}));
    }
    if (spec.method == "GET" && g.Chance(40)) {
      spec.headers.emplace_back(
          "Range",
          absl::StrCat("bytes=", g.Below(1000), "-",
                       g.Chance(50) ? absl::StrCat(1000 + g.Below(9000)) : ""));
    }
    if (spec.method == "PUT") {
      body = g.Token(std::string("\0\x01\xff\x80 abc\n", 9), 0, 300);
      if (g.Chance(30)) spec.headers.emplace_back("If-None-Match", "*");
      if (g.Chance(30)) {
        spec.headers.emplace_back(
            "If-Match",
            absl::StrCat("\"", g.Token("0123456789abcdef", 32, 32), "\""));
      }
    }
    size_t metas = g.Chance(50) ? 1 + g.Below(4) : 0;
    for (size_t m = 0; m < metas; ++m) {
      spec.headers.emplace_back(
          absl::StrCat(g.Chance(50) ? "x-amz-meta-" : "X-Amz-Meta-",
                       g.Token("abcdefghijklmnopqrstuvwxyz0123456789-", 1, 12),
                       "-", m),
          g.HeaderValue());
    }
    int64_t seconds = 946684800 + static_cast<int64_t>(g.Below(3155760000));
    PreparedRequest prepared = PrepareRequest(config, *endpoint, spec, body,
                                              absl::FromUnixSeconds(seconds));
    std::string authorization;
    for (const auto& [name, value] : prepared.headers) {
      if (name == "Authorization") authorization = value;
    }
    std::printf(
        "{\"method\":%s,\"endpoint\":%s,\"path_style\":%s,\"bucket\":%s,"
        "\"region\":%s,\"key\":%s,\"query\":%s,\"headers\":%s,\"body_hex\":%s,"
        "\"time\":%lld,\"access_key\":%s,\"secret_key\":%s,"
        "\"session_token\":%s,\"url\":%s,\"authorization\":%s}\n",
        Json(spec.method).c_str(), Json(config.endpoint).c_str(),
        config.path_style ? "true" : "false", Json(config.bucket).c_str(),
        Json(config.region).c_str(), Json(spec.key).c_str(),
        JsonPairs(spec.query).c_str(), JsonPairs(spec.headers).c_str(),
        Json(absl::BytesToHexString(body)).c_str(),
        static_cast<long long>(seconds),  // NOLINT(runtime/int)
        Json(config.access_key).c_str(), Json(config.secret_key).c_str(),
        Json(config.session_token).c_str(), Json(prepared.url).c_str(),
        Json(authorization).c_str());
  }
  return 0;
}

}  // namespace
}  // namespace pc::s3

int main(int argc, char** argv) {
  uint64_t seed = 0;
  int count = 0;
  if (argc != 3 || !absl::SimpleAtoi(argv[1], &seed) ||
      !absl::SimpleAtoi(argv[2], &count) || count < 0) {
    std::fprintf(stderr, "usage: sigv4_request_gen SEED COUNT\n");
    return 2;
  }
  return pc::s3::Main(seed, count);
}
