#include "aggregator/resume_pages.h"

#include <set>
#include <string>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace pc::aggregator {
namespace {

using packetcapture::v1::ResumeBatch;
using packetcapture::v1::ResumePoint;
using packetcapture::v1::Welcome;

ResumePoint Point(const std::string& id, const std::string& file,
                  uint64_t generation, uint64_t offset) {
  ResumePoint p;
  p.set_capture_id(id);
  p.set_file(file);
  p.set_file_generation(generation);
  p.set_offset(offset);
  return p;
}

TEST(ResumePagesTest, FewPointsFitTheWelcome) {
  auto pages = PageResumePoints({Point("c", "run-1-w5/ring0", 0, 10)}, 1 << 20);
  ASSERT_EQ(pages.welcome.size(), 1u);
  EXPECT_TRUE(pages.batches.empty());
  pages = PageResumePoints({}, 1 << 20);
  EXPECT_TRUE(pages.welcome.empty());
  EXPECT_TRUE(pages.batches.empty());
}

// A node with 60,000 stored files (about 6 MB of resume points, near the
// agent's 8 MiB receive limit in one message): every message stays near
// 1 MiB, nothing is lost or repeated, and the newest generations lead.
TEST(ResumePagesTest, ManyPointsArePagedNewestFirst) {
  std::vector<ResumePoint> points;
  for (int c = 0; c < 600; ++c) {
    const std::string id =
        absl::StrCat("namespace-", c, "_pod-with-a-long-name-", c,
                     "_0123abcd_1700000000000");
    for (int f = 0; f < 50; ++f) {
      for (uint64_t g = 0; g < 2; ++g) {
        points.push_back(
            Point(id, absl::StrCat("run-1-w50/ring", f), g, 1000000 + f));
      }
    }
  }
  const size_t total = points.size();
  std::set<std::tuple<std::string, std::string, uint64_t>> want;
  for (const auto& p : points) {
    want.emplace(p.capture_id(), p.file(), p.file_generation());
  }
  const size_t kPage = 1 << 20;
  auto pages = PageResumePoints(points, kPage);
  ASSERT_GE(pages.batches.size(), 5u);

  Welcome welcome;
  for (const auto& p : pages.welcome) *welcome.add_resume() = p;
  welcome.set_more_resume(true);
  welcome.set_max_inflight_bytes(4 << 20);
  welcome.set_max_chunk_bytes(1 << 20);
  EXPECT_LE(welcome.ByteSizeLong(), kPage + 64);
  std::set<std::tuple<std::string, std::string, uint64_t>> got;
  size_t count = 0;
  bool older_seen = false;
  auto visit = [&](const ResumePoint& p) {
    EXPECT_TRUE(
        got.emplace(p.capture_id(), p.file(), p.file_generation()).second);
    ++count;
    if (p.file_generation() == 0) older_seen = true;
    EXPECT_FALSE(older_seen && p.file_generation() == 1)
        << "a newest generation after an older one";
  };
  for (const auto& p : pages.welcome) visit(p);
  for (size_t i = 0; i < pages.batches.size(); ++i) {
    const auto& batch = pages.batches[i];
    ResumeBatch message;
    for (const auto& p : batch) *message.add_resume() = p;
    message.set_last(true);
    EXPECT_LE(message.ByteSizeLong(), kPage + 8);
    if (i + 1 < pages.batches.size()) {
      EXPECT_GT(message.ByteSizeLong(), kPage - 200);  // pages are full
    }
    EXPECT_FALSE(batch.empty());
    for (const auto& p : batch) visit(p);
  }
  EXPECT_EQ(count, total);
  EXPECT_EQ(got, want);
}

TEST(ResumePagesTest, APointLargerThanAPageGetsItsOwn) {
  auto pages = PageResumePoints({Point(std::string(300, 'a'), "f", 0, 1),
                                 Point(std::string(300, 'b'), "f", 0, 1)},
                                100);
  EXPECT_EQ(pages.welcome.size(), 1u);
  ASSERT_EQ(pages.batches.size(), 1u);
  EXPECT_EQ(pages.batches[0].size(), 1u);
}

}  // namespace
}  // namespace pc::aggregator
