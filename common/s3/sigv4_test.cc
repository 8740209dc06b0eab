#include "common/s3/sigv4.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace pc::s3 {
namespace {

// The examples of AWS's "Signature Calculations for the Authorization Header:
// Transferring Payload in a Single Chunk" (Amazon S3 API reference), all for
// examplebucket.s3.amazonaws.com at 2013-05-24T00:00:00Z in us-east-1.
constexpr char kEmptySha256[] =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
constexpr char kHost[] = "examplebucket.s3.amazonaws.com";
constexpr char kScope[] =
    "AWS4-HMAC-SHA256 "
    "Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,";

absl::Time ExampleTime() { return absl::FromUnixSeconds(1369353600); }

SigV4Credentials ExampleCredentials() {
  SigV4Credentials c;
  c.access_key = "AKIAIOSFODNN7EXAMPLE";
  c.secret_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
  return c;
}

std::string Sign(const SigV4Request& request) {
  return SigV4Authorization(request, ExampleTime(), ExampleCredentials(),
                            "us-east-1", "s3");
}

TEST(SigV4Test, AwsExampleGetObjectWithRange) {
  SigV4Request r;
  r.method = "GET";
  r.canonical_uri = "/test.txt";
  r.payload_hash = kEmptySha256;
  r.headers = {{"Host", kHost},
               {"Range", "bytes=0-9"},
               {"x-amz-content-sha256", kEmptySha256},
               {"x-amz-date", "20130524T000000Z"}};
  std::string signed_headers;
  EXPECT_EQ(CanonicalRequest(r, &signed_headers),
            "GET\n/test.txt\n\nhost:examplebucket.s3.amazonaws.com\n"
            "range:bytes=0-9\n"
            "x-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b"
            "934ca495991b7852b855\nx-amz-date:20130524T000000Z\n\n"
            "host;range;x-amz-content-sha256;x-amz-date\n"
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Sign(r),
            std::string(kScope) +
                "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,"
                "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd910"
                "39c6036bdb41");
}

TEST(SigV4Test, AwsExamplePutObject) {
  const std::string body = "Welcome to Amazon S3.";
  SigV4Request r;
  r.method = "PUT";
  r.canonical_uri = "/" + UriEncode("test$file.text", true);
  EXPECT_EQ(r.canonical_uri, "/test%24file.text");
  r.payload_hash = Sha256Hex(body);
  EXPECT_EQ(r.payload_hash,
            "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");
  r.headers = {{"Host", kHost},
               {"Date", "Fri, 24 May 2013 00:00:00 GMT"},
               {"x-amz-date", "20130524T000000Z"},
               {"x-amz-storage-class", "REDUCED_REDUNDANCY"},
               {"x-amz-content-sha256", r.payload_hash}};
  EXPECT_EQ(Sign(r),
            std::string(kScope) +
                "SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;"
                "x-amz-storage-class,Signature=98ad721746da40c64f1a55b78f14c238"
                "d841ea1380cd77a1b5971af0ece108bd");
}

TEST(SigV4Test, AwsExampleGetBucketLifecycleEmptyQueryValue) {
  SigV4Request r;
  r.method = "GET";
  r.canonical_uri = "/";
  r.query = {{"lifecycle", ""}};
  r.payload_hash = kEmptySha256;
  r.headers = {{"Host", kHost},
               {"x-amz-date", "20130524T000000Z"},
               {"x-amz-content-sha256", kEmptySha256}};
  EXPECT_EQ(Sign(r),
            std::string(kScope) +
                "SignedHeaders=host;x-amz-content-sha256;x-amz-date,"
                "Signature=fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a20"
                "0a0136783543");
}

TEST(SigV4Test, AwsExampleListObjectsQuerySorted) {
  SigV4Request r;
  r.method = "GET";
  r.canonical_uri = "/";
  r.query = {{"prefix", "J"}, {"max-keys", "2"}};  // sorted by the signer
  r.payload_hash = kEmptySha256;
  r.headers = {{"Host", kHost},
               {"x-amz-date", "20130524T000000Z"},
               {"x-amz-content-sha256", kEmptySha256}};
  EXPECT_EQ(Sign(r),
            std::string(kScope) +
                "SignedHeaders=host;x-amz-content-sha256;x-amz-date,"
                "Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5"
                "711ef69dc6f7");
}

TEST(SigV4Test, UriEncodeKeepsOnlyUnreservedAndOptionallySlash) {
  EXPECT_EQ(UriEncode("a b+c=d~e_f.g-h/i%j", true),
            "a%20b%2Bc%3Dd~e_f.g-h/i%25j");
  EXPECT_EQ(UriEncode("a/b", false), "a%2Fb");
  EXPECT_EQ(UriEncode("\xc3\xa9", true), "%C3%A9");  // é in UTF-8
  EXPECT_EQ(UriEncode("", true), "");
}

TEST(SigV4Test, QueryKeepsEmptyValuesAndSortsByEncodedNameThenValue) {
  EXPECT_EQ(CanonicalQueryString({{"b", "2"}, {"a", ""}, {"b", "1"}}),
            "a=&b=1&b=2");
  // '%' (0x25) sorts before letters once encoded: "%20x" < "A".
  EXPECT_EQ(CanonicalQueryString({{"A", "x y"}, {" x", "/"}}),
            "%20x=%2F&A=x%20y");
  EXPECT_EQ(CanonicalQueryString({}), "");
}

TEST(SigV4Test, HeaderValuesTrimmedAndRepeatedNamesJoined) {
  SigV4Request r;
  r.method = "GET";
  r.canonical_uri = "";
  r.payload_hash = kUnsignedPayload;
  r.headers = {{"X-Amz-Meta-B", "  two   words "},
               {"host", "h"},
               {"x-amz-meta-a", "1"},
               {"X-AMZ-META-A", "2"}};
  std::string signed_headers;
  EXPECT_EQ(CanonicalRequest(r, &signed_headers),
            "GET\n/\n\nhost:h\nx-amz-meta-a:1,2\nx-amz-meta-b:two words\n\n"
            "host;x-amz-meta-a;x-amz-meta-b\nUNSIGNED-PAYLOAD");
  EXPECT_EQ(signed_headers, "host;x-amz-meta-a;x-amz-meta-b");
}

// SigV4's signature as its definition computes it, deriving the key anew.
std::string Uncached(const SigV4Request& r, absl::Time time,
                     const SigV4Credentials& c, const std::string& region,
                     const std::string& service) {
  auto hmac = [](const std::string& key, const std::string& data) {
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
         reinterpret_cast<const unsigned char*>(data.data()), data.size(), out,
         &len);
    return std::string(reinterpret_cast<const char*>(out), len);
  };
  const std::string date = AmzDate(time).substr(0, 8);
  const std::string scope =
      absl::StrCat(date, "/", region, "/", service, "/aws4_request");
  std::string signed_headers;
  const std::string to_sign =
      absl::StrCat("AWS4-HMAC-SHA256\n", AmzDate(time), "\n", scope, "\n",
                   Sha256Hex(CanonicalRequest(r, &signed_headers)));
  const std::string key =
      hmac(hmac(hmac(hmac("AWS4" + c.secret_key, date), region), service),
           "aws4_request");
  return absl::StrCat("AWS4-HMAC-SHA256 Credential=", c.access_key, "/", scope,
                      ",SignedHeaders=", signed_headers, ",Signature=",
                      absl::BytesToHexString(hmac(key, to_sign)));
}

// Each thread keeps its last signing key: a request of another day, secret,
// region or service must get a key of its own, and the first one's key must
// be right again after them.
TEST(SigV4Test, EveryDateSecretRegionAndServiceGetsItsOwnKey) {
  SigV4Request r;
  r.method = "GET";
  r.canonical_uri = "/test.txt";
  r.payload_hash = kEmptySha256;
  r.headers = {{"Host", kHost},
               {"x-amz-content-sha256", kEmptySha256},
               {"x-amz-date", "20130524T000000Z"}};
  SigV4Credentials other_secret = ExampleCredentials();
  other_secret.secret_key += "x";
  const struct {
    absl::Time time;
    SigV4Credentials credentials;
    std::string region, service;
  } cases[] = {
      {ExampleTime(), ExampleCredentials(), "us-east-1", "s3"},
      {ExampleTime() + absl::Hours(24), ExampleCredentials(), "us-east-1",
       "s3"},
      {ExampleTime() + absl::Hours(24), other_secret, "us-east-1", "s3"},
      {ExampleTime() + absl::Hours(24), other_secret, "eu-west-1", "s3"},
      {ExampleTime() + absl::Hours(24), other_secret, "eu-west-1", "sts"},
      {ExampleTime(), ExampleCredentials(), "us-east-1", "s3"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(absl::StrCat(AmzDate(c.time), " ", c.region, " ", c.service,
                              " ", c.credentials.secret_key));
    EXPECT_EQ(SigV4Authorization(r, c.time, c.credentials, c.region, c.service),
              Uncached(r, c.time, c.credentials, c.region, c.service));
  }
}

TEST(SigV4Test, AmzDateIsUtc) {
  EXPECT_EQ(AmzDate(absl::FromUnixSeconds(1369353600 + 3723)),
            "20130524T010203Z");
}

}  // namespace
}  // namespace pc::s3
