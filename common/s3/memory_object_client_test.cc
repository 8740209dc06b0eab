#include "common/s3/memory_object_client.h"

#include "gtest/gtest.h"

namespace pc::s3 {
namespace {

TEST(MemoryObjectClient, ConditionalWritesBehaveLikeS3) {
  MemoryObjectClient client;
  PutOptions create;
  create.if_none_match_any = true;
  auto first = client.Put("a/1", "one", create);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(client.Put("a/1", "two", create).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(client.Get("a/1")->body, "one");
  PutOptions replace;
  replace.if_match = "\"stale\"";
  EXPECT_EQ(client.Put("a/1", "two", replace).status().code(),
            absl::StatusCode::kFailedPrecondition);
  replace.if_match = *first;
  auto second = client.Put("a/1", "two", replace);
  ASSERT_TRUE(second.ok());
  EXPECT_NE(*second, *first);
  EXPECT_EQ(client.Head("a/1")->etag, *second);
  EXPECT_EQ(client.Get("missing").status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(client.Delete("missing").ok());
}

TEST(MemoryObjectClient, RangesAndListing) {
  MemoryObjectClient client;
  for (const char* key : {"p/a/1", "p/a/2", "p/b", "p/c/1", "q/x"}) {
    ASSERT_TRUE(client.Put(key, "0123456789", PutOptions()).ok());
  }
  auto part = client.Get("p/b", 3, 4);
  ASSERT_TRUE(part.ok());
  EXPECT_EQ(part->body, "3456");
  EXPECT_EQ(part->object_size, 10u);
  EXPECT_EQ(client.Get("p/b", 8)->body, "89");

  auto page = client.List("p/", "/");
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->objects.size(), 1u);
  EXPECT_EQ(page->objects[0].key, "p/b");
  EXPECT_EQ(page->common_prefixes, (std::vector<std::string>{"p/a/", "p/c/"}));

  std::vector<std::string> keys;
  std::string token;
  int pages = 0;
  do {
    auto p = client.List("p/", "", token, 2);
    ASSERT_TRUE(p.ok());
    for (const auto& o : p->objects) keys.push_back(o.key);
    token = p->next_token;
    ++pages;
  } while (!token.empty());
  EXPECT_EQ(keys, (std::vector<std::string>{"p/a/1", "p/a/2", "p/b", "p/c/1"}));
  EXPECT_EQ(pages, 2);
}

TEST(MemoryObjectClient, InjectedFaults) {
  MemoryObjectClient client;
  client.FailNext(1);
  EXPECT_EQ(client.Put("k", "v", PutOptions()).status().code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(client.Head("k").status().code(), absl::StatusCode::kNotFound);
  client.FailNext(1, MemoryObjectClient::Fault::kAfter);
  EXPECT_EQ(client.Put("k", "v", PutOptions()).status().code(),
            absl::StatusCode::kUnavailable);
  EXPECT_TRUE(client.Head("k").ok());  // it landed
  client.SetDown(true);
  EXPECT_EQ(client.List("").status().code(), absl::StatusCode::kUnavailable);
  client.SetDown(false);
  EXPECT_TRUE(client.List("").ok());
}

}  // namespace
}  // namespace pc::s3
