#include "common/s3/s3_request.h"

#include "gtest/gtest.h"

namespace pc::s3 {
namespace {

TEST(ParseEndpointTest, SchemesHostsPorts) {
  auto ep = ParseEndpoint("http://127.0.0.1:9000");
  ASSERT_TRUE(ep.ok()) << ep.status();
  EXPECT_EQ(ep->scheme, "http");
  EXPECT_EQ(ep->host, "127.0.0.1");
  EXPECT_EQ(ep->port, 9000);
  ep = ParseEndpoint("https://S3.eu-west-1.amazonaws.com:443/");
  ASSERT_TRUE(ep.ok()) << ep.status();
  EXPECT_EQ(ep->host, "s3.eu-west-1.amazonaws.com");
  EXPECT_EQ(ep->port, 0);  // the default is left out of Host
  ep = ParseEndpoint("http://[::1]:8080");
  ASSERT_TRUE(ep.ok()) << ep.status();
  EXPECT_EQ(ep->host, "[::1]");
  EXPECT_EQ(ep->port, 8080);
  for (const char* bad :
       {"", "127.0.0.1:9000", "ftp://h", "http://", "http://h/path",
        "http://h:0", "http://h:99999", "http://h:x", "http://u@h",
        "http://[::1", "http://h?x=1", "http://h b"}) {
    EXPECT_FALSE(ParseEndpoint(bad).ok()) << bad;
  }
}

S3Config TestConfig(bool path_style) {
  S3Config c;
  c.endpoint = "http://127.0.0.1:9000";
  c.bucket = "bkt";
  c.path_style = path_style;
  c.access_key = "AK";
  c.secret_key = "SK";
  return c;
}

std::string HeaderValue(const PreparedRequest& r, const std::string& name) {
  for (const auto& [n, v] : r.headers) {
    if (n == name) return v;
  }
  return "<none>";
}

TEST(PrepareRequestTest, PathStyleUrlMatchesWhatIsSigned) {
  S3Config c = TestConfig(true);
  auto ep = ParseEndpoint(c.endpoint);
  ASSERT_TRUE(ep.ok());
  RequestSpec spec;
  spec.method = "GET";
  spec.key = "dir/a b+c=%~";
  spec.query = {{"x", ""}, {"a", "1/2"}};
  PreparedRequest r =
      PrepareRequest(c, *ep, spec, "", absl::FromUnixSeconds(1369353600));
  EXPECT_EQ(r.url, "http://127.0.0.1:9000/bkt/dir/a%20b%2Bc%3D%25~?a=1%2F2&x=");
  EXPECT_EQ(HeaderValue(r, "Host"), "127.0.0.1:9000");
  EXPECT_EQ(HeaderValue(r, "x-amz-date"), "20130524T000000Z");
  EXPECT_EQ(HeaderValue(r, "x-amz-content-sha256"),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(HeaderValue(r, "x-amz-security-token"), "<none>");
  std::string auth = HeaderValue(r, "Authorization");
  EXPECT_EQ(auth.rfind("AWS4-HMAC-SHA256 Credential=AK/20130524/us-east-1/s3/"
                       "aws4_request,SignedHeaders=host;x-amz-content-sha256;"
                       "x-amz-date,Signature=",
                       0),
            0u)
      << auth;
  EXPECT_EQ(auth.find("SK"), std::string::npos);
}

TEST(PrepareRequestTest, VirtualHostedBucketRootAndSessionToken) {
  S3Config c = TestConfig(false);
  c.session_token = "TOKEN";
  auto ep = ParseEndpoint(c.endpoint);
  ASSERT_TRUE(ep.ok());
  RequestSpec spec;
  spec.method = "GET";
  spec.query = {{"list-type", "2"}};
  PreparedRequest r = PrepareRequest(c, *ep, spec, "", absl::UnixEpoch());
  EXPECT_EQ(r.url, "http://bkt.127.0.0.1:9000/?list-type=2");
  EXPECT_EQ(HeaderValue(r, "Host"), "bkt.127.0.0.1:9000");
  EXPECT_EQ(HeaderValue(r, "x-amz-security-token"), "TOKEN");
  EXPECT_NE(HeaderValue(r, "Authorization").find("x-amz-security-token"),
            std::string::npos);
}

TEST(PrepareRequestTest, RequestPaths) {
  EXPECT_EQ(RequestPath("b", true, ""), "/b");
  EXPECT_EQ(RequestPath("b", true, "k"), "/b/k");
  EXPECT_EQ(RequestPath("b", false, ""), "/");
  EXPECT_EQ(RequestPath("b", false, "a//../k"), "/a//../k");
}

}  // namespace
}  // namespace pc::s3
