#include "common/s3/s3_config.h"

#include <stdlib.h>
#include <sys/stat.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "gtest/gtest.h"

namespace pc::s3 {
namespace {

TEST(ParseStoreUrlTest, BucketAndPrefix) {
  std::string bucket, prefix;
  ASSERT_TRUE(
      ParseStoreUrl("s3://packet-capture/cluster", &bucket, &prefix).ok());
  EXPECT_EQ(bucket, "packet-capture");
  EXPECT_EQ(prefix, "cluster");
  ASSERT_TRUE(ParseStoreUrl("s3://my.bucket//a/b/", &bucket, &prefix).ok());
  EXPECT_EQ(bucket, "my.bucket");
  EXPECT_EQ(prefix, "a/b");
  ASSERT_TRUE(ParseStoreUrl("s3://abc", &bucket, &prefix).ok());
  EXPECT_EQ(bucket, "abc");
  EXPECT_EQ(prefix, "");
  ASSERT_TRUE(ParseStoreUrl("s3://abc/", &bucket, &prefix).ok());
  EXPECT_EQ(prefix, "");
}

TEST(ParseStoreUrlTest, Rejects) {
  std::string bucket = "unchanged", prefix;
  for (const char* bad : {"", "dir:///data", "s3://", "s3:///p", "s3://ab/p",
                          "s3://Upper/p", "s3://-abc/p", "s3://a..b/p",
                          "s3://a_b/p", "s3://abc/a//b", "http://abc/p"}) {
    EXPECT_FALSE(ParseStoreUrl(bad, &bucket, &prefix).ok()) << bad;
  }
  EXPECT_EQ(bucket, "unchanged");
}

class LoadCredentialsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/s3_config_test.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    unsetenv("AWS_ACCESS_KEY_ID");
    unsetenv("AWS_SECRET_ACCESS_KEY");
    unsetenv("AWS_SESSION_TOKEN");
  }
  void TearDown() override {
    for (const char* f : {"creds", "s/access_key_id", "s/secret_access_key",
                          "s/session_token", "bad"}) {
      std::remove((dir_ + "/" + f).c_str());
    }
    rmdir((dir_ + "/s").c_str());
    rmdir(dir_.c_str());
  }
  void Write(const std::string& name, const std::string& content) {
    std::ofstream(dir_ + "/" + name) << content;
  }
  std::string dir_;
};

TEST_F(LoadCredentialsTest, FileOfLines) {
  Write("creds",
        "# generated\n\naccess_key_id = AK\nsecret_access_key=SE=CRET\n"
        "session_token=TOK\n");
  S3Config c;
  ASSERT_TRUE(LoadCredentials(dir_ + "/creds", &c).ok());
  EXPECT_EQ(c.access_key, "AK");
  EXPECT_EQ(c.secret_key, "SE=CRET");
  EXPECT_EQ(c.session_token, "TOK");
}

TEST_F(LoadCredentialsTest, AwsPrefixedNames) {
  Write("creds", "aws_access_key_id=AK\nAWS_SECRET_ACCESS_KEY=S\n");
  S3Config c;
  ASSERT_TRUE(LoadCredentials(dir_ + "/creds", &c).ok());
  EXPECT_EQ(c.access_key, "AK");
  EXPECT_EQ(c.secret_key, "S");
  EXPECT_EQ(c.session_token, "");
}

TEST_F(LoadCredentialsTest, DirectoryOfFilesAsASecretMounts) {
  ASSERT_EQ(mkdir((dir_ + "/s").c_str(), 0700), 0);
  Write("s/access_key_id", "AK\n");
  Write("s/secret_access_key", "SECRET\n");
  S3Config c;
  ASSERT_TRUE(LoadCredentials(dir_ + "/s", &c).ok());
  EXPECT_EQ(c.access_key, "AK");
  EXPECT_EQ(c.secret_key, "SECRET");
}

TEST_F(LoadCredentialsTest, ErrorsNameTheKeyNeverTheValue) {
  Write("creds", "access_key_id=AK\n");
  S3Config c;
  absl::Status s = LoadCredentials(dir_ + "/creds", &c);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("secret_access_key"), std::string::npos);
  Write("bad", "access_key_id=AK\nTHE-SECRET-ITSELF\n");
  s = LoadCredentials(dir_ + "/bad", &c);
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.message().find("THE-SECRET"), std::string::npos) << s;
  EXPECT_EQ(LoadCredentials(dir_ + "/missing", &c).code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(c.access_key, "");  // nothing applied on failure
}

TEST_F(LoadCredentialsTest, Environment) {
  S3Config c;
  EXPECT_FALSE(LoadCredentials("", &c).ok());
  setenv("AWS_ACCESS_KEY_ID", "EAK", 1);
  setenv("AWS_SECRET_ACCESS_KEY", "ESK", 1);
  setenv("AWS_SESSION_TOKEN", "ETOK", 1);
  ASSERT_TRUE(LoadCredentials("", &c).ok());
  EXPECT_EQ(c.access_key, "EAK");
  EXPECT_EQ(c.secret_key, "ESK");
  EXPECT_EQ(c.session_token, "ETOK");
}

}  // namespace
}  // namespace pc::s3
