// S3Client against a real versitygw (POSIX backend on a temporary directory).
#include "common/s3/s3_client.h"

#include <algorithm>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "common/s3/versitygw_server.h"
#include "gtest/gtest.h"

namespace pc::s3 {
namespace {

std::string RandomBytes(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string out(n, '\0');
  for (char& c : out) c = static_cast<char>(rng());
  return out;
}

class S3ClientTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto server = VersitygwServer::Start("test-bucket");
    if (!server.ok()) {
      *start_error_ = server.status();
      return;
    }
    server_ = server->release();
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  void SetUp() override {
    ASSERT_NE(server_, nullptr) << *start_error_;
    auto client = S3Client::Create(server_->Config());
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = *std::move(client);
  }

  static VersitygwServer* server_;
  static absl::Status* start_error_;
  std::unique_ptr<S3Client> client_;
};

VersitygwServer* S3ClientTest::server_ = nullptr;
absl::Status* S3ClientTest::start_error_ = new absl::Status();

TEST_F(S3ClientTest, PutGetHeadDeleteWithMetadata) {
  PutOptions opts;
  opts.metadata = {{"epoch", "7"}, {"replica", "aggregator-0"}};
  auto etag = client_->Put("rt/object", "hello, store", opts);
  ASSERT_TRUE(etag.ok()) << etag.status();
  EXPECT_FALSE(etag->empty());

  auto got = client_->Get("rt/object");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->body, "hello, store");
  EXPECT_EQ(got->etag, *etag);
  EXPECT_EQ(got->object_size, 12u);
  EXPECT_EQ(got->metadata, (std::map<std::string, std::string>{
                               {"epoch", "7"}, {"replica", "aggregator-0"}}));

  auto head = client_->Head("rt/object");
  ASSERT_TRUE(head.ok()) << head.status();
  EXPECT_EQ(head->key, "rt/object");
  EXPECT_EQ(head->size, 12u);
  EXPECT_EQ(head->etag, *etag);
  EXPECT_LT(absl::AbsDuration(head->last_modified - absl::Now()),
            absl::Minutes(2));

  ASSERT_TRUE(client_->Delete("rt/object").ok());
  EXPECT_EQ(client_->Head("rt/object").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(client_->Get("rt/object").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_TRUE(client_->Delete("rt/object").ok());  // absent is fine
}

TEST_F(S3ClientTest, RangedGets) {
  std::string body = RandomBytes(1000, 1);
  ASSERT_TRUE(client_->Put("range/obj", body, {}).ok());
  auto mid = client_->Get("range/obj", 100, 50);
  ASSERT_TRUE(mid.ok()) << mid.status();
  EXPECT_EQ(mid->body, body.substr(100, 50));
  EXPECT_EQ(mid->object_size, 1000u);
  auto tail = client_->Get("range/obj", 990);
  ASSERT_TRUE(tail.ok()) << tail.status();
  EXPECT_EQ(tail->body, body.substr(990));
  EXPECT_EQ(tail->object_size, 1000u);
  auto past = client_->Get("range/obj", 995, 100);  // clipped at the end
  ASSERT_TRUE(past.ok()) << past.status();
  EXPECT_EQ(past->body, body.substr(995));
  EXPECT_EQ(client_->Get("range/obj", 1000, 10).status().code(),
            absl::StatusCode::kOutOfRange);
}

TEST_F(S3ClientTest, IfNoneMatchKeepsTheFirstObject) {
  PutOptions create;
  create.if_none_match_any = true;
  ASSERT_TRUE(client_->Put("cond/once", "first", create).ok());
  auto second = client_->Put("cond/once", "second", create);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition)
      << second.status();
  auto got = client_->Get("cond/once");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->body, "first");
}

TEST_F(S3ClientTest, IfMatchReplacesOnlyTheVersionRead) {
  auto v1 = client_->Put("cond/swap", "v1", {});
  ASSERT_TRUE(v1.ok());
  PutOptions replace;
  replace.if_match = *v1;
  auto v2 = client_->Put("cond/swap", "v2", replace);
  ASSERT_TRUE(v2.ok()) << v2.status();
  EXPECT_NE(*v2, *v1);
  auto stale = client_->Put("cond/swap", "v3", replace);  // still v1's ETag
  EXPECT_EQ(stale.status().code(), absl::StatusCode::kFailedPrecondition)
      << stale.status();
  EXPECT_EQ(client_->Get("cond/swap")->body, "v2");
}

TEST_F(S3ClientTest, ListWithPrefixDelimiterAndContinuation) {
  constexpr int kKeys = 2500;
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < 4; ++t) {  // also exercises one client from threads
    threads.emplace_back([&, t] {
      for (int i = t; i < kKeys; i += 4) {
        if (!client_->Put(absl::StrFormat("list/k%05d", i), "x", {}).ok()) {
          ++failures;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  ASSERT_EQ(failures.load(), 0);
  ASSERT_TRUE(client_->Put("list/sub/a", "y", {}).ok());
  ASSERT_TRUE(client_->Put("list/sub/b", "y", {}).ok());
  ASSERT_TRUE(client_->Put("listing-not-under-prefix", "z", {}).ok());

  std::vector<std::string> keys;
  std::set<std::string> prefixes;
  std::string token;
  int pages = 0;
  do {
    auto page = client_->List("list/", "/", token, 1000);
    ASSERT_TRUE(page.ok()) << page.status();
    ++pages;
    for (const ObjectInfo& o : page->objects) {
      keys.push_back(o.key);
      EXPECT_EQ(o.size, 1u);
      EXPECT_FALSE(o.etag.empty());
      EXPECT_LT(absl::AbsDuration(o.last_modified - absl::Now()),
                absl::Minutes(5));
    }
    prefixes.insert(page->common_prefixes.begin(), page->common_prefixes.end());
    token = page->next_token;
    ASSERT_LT(pages, 10);
  } while (!token.empty());
  EXPECT_GE(pages, 3);
  ASSERT_EQ(keys.size(), static_cast<size_t>(kKeys));
  EXPECT_TRUE(std::is_sorted(keys.begin(), keys.end()));
  EXPECT_EQ(keys.front(), "list/k00000");
  EXPECT_EQ(keys.back(), absl::StrFormat("list/k%05d", kKeys - 1));
  EXPECT_EQ(prefixes, std::set<std::string>{"list/sub/"});

  auto sub = client_->List("list/sub/");
  ASSERT_TRUE(sub.ok());
  ASSERT_EQ(sub->objects.size(), 2u);
  EXPECT_EQ(sub->objects[1].key, "list/sub/b");
  EXPECT_EQ(sub->next_token, "");
  EXPECT_EQ(client_->List("list/", "", "", 0).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(S3ClientTest, KeysWithSpecialCharacters) {
  const std::vector<std::string> keys = {
      "special/a b",
      "special/plus+sign",
      "special/eq=ual&amp",
      "special/tilde~and%25percent",
      "special/!*'()$,;:@[]",
      "special/\xc3\xb1\xc3\xa9 \xe4\xb8\xad\xe6\x96\x87",  // ñé 中文
      "special/deep/er/key",
      "special/<xml>&\"quotes\"",
  };
  for (const std::string& k : keys) {
    ASSERT_TRUE(client_->Put(k, "body:" + k, {}).ok()) << k;
  }
  for (const std::string& k : keys) {
    auto got = client_->Get(k);
    ASSERT_TRUE(got.ok()) << k << ": " << got.status();
    EXPECT_EQ(got->body, "body:" + k);
  }
  auto page = client_->List("special/");
  ASSERT_TRUE(page.ok()) << page.status();
  std::set<std::string> listed;
  for (const auto& o : page->objects) listed.insert(o.key);
  EXPECT_EQ(listed, std::set<std::string>(keys.begin(), keys.end()));
}

TEST_F(S3ClientTest, FiveMebibyteObject) {
  std::string body = RandomBytes(5 << 20, 5);
  auto etag = client_->Put("big/five", body, {});
  ASSERT_TRUE(etag.ok()) << etag.status();
  auto got = client_->Get("big/five");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE(got->body == body);
  auto part = client_->Get("big/five", 3 << 20, 1 << 20);
  ASSERT_TRUE(part.ok());
  EXPECT_TRUE(part->body == body.substr(3 << 20, 1 << 20));
  EXPECT_EQ(part->object_size, 5u << 20);
}

TEST_F(S3ClientTest, WrongSecretIsPermissionDeniedWithoutTheSecret) {
  S3Config config = server_->Config();
  config.secret_key = "not-the-secret-SENTINEL";
  auto client = S3Client::Create(config);
  ASSERT_TRUE(client.ok());
  auto put = (*client)->Put("auth/x", "x", {});
  EXPECT_EQ(put.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_NE(put.status().message().find("SignatureDoesNotMatch"),
            std::string::npos)
      << put.status();
  EXPECT_EQ(put.status().message().find("SENTINEL"), std::string::npos);
  EXPECT_EQ(put.status().message().find("Signature="), std::string::npos);
  EXPECT_EQ((*client)->List("").status().code(),
            absl::StatusCode::kPermissionDenied);
}

TEST_F(S3ClientTest, MissingBucketIsNotFoundEvenForDelete) {
  S3Config config = server_->Config();
  config.bucket = "no-such-bucket";
  auto client = S3Client::Create(config);
  ASSERT_TRUE(client.ok());
  EXPECT_EQ((*client)->Put("k", "v", {}).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ((*client)->Delete("k").code(), absl::StatusCode::kNotFound);
}

TEST_F(S3ClientTest, CreateBucketIsIdempotent) {
  EXPECT_TRUE(client_->CreateBucket().ok());
}

TEST(S3ClientStoppedServerTest, UnavailableAfterBoundedRetries) {
  auto server = VersitygwServer::Start("stopped");
  ASSERT_TRUE(server.ok()) << server.status();
  S3Config config = (*server)->Config();
  config.max_attempts = 4;
  config.initial_backoff = absl::Milliseconds(50);
  config.max_backoff = absl::Milliseconds(200);
  auto client = S3Client::Create(config);
  ASSERT_TRUE(client.ok());
  ASSERT_TRUE((*client)->Put("k", "v", {}).ok());  // connection now pooled
  (*server)->Stop();
  absl::Time start = absl::Now();
  auto put = (*client)->Put("k", "v2", {});
  absl::Duration took = absl::Now() - start;
  EXPECT_EQ(put.status().code(), absl::StatusCode::kUnavailable)
      << put.status();
  EXPECT_NE(put.status().message().find("4 attempts"), std::string::npos)
      << put.status();
  // Three sleeps of at least 25, 50 and 100 ms; well under a second in all.
  EXPECT_GE(took, absl::Milliseconds(175));
  EXPECT_LT(took, absl::Seconds(3));
  EXPECT_EQ((*client)->Get("k").status().code(),
            absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace pc::s3
