#include "common/capture_service.h"

#include <string>
#include <vector>

#include "common/capture_registry.h"
#include "gtest/gtest.h"

namespace pc {
namespace {

using packetcapture::v1::Capture;
using packetcapture::v1::CaptureEvent;
using packetcapture::v1::ListCapturesRequest;

Capture Make(const std::string& id, const std::string& node,
             const std::string& ns, int64_t start, Capture::State state) {
  Capture c;
  c.set_id(id);
  c.set_node(node);
  c.set_namespace_(ns);
  c.set_pod(id);
  c.set_state(state);
  c.mutable_start_time()->set_seconds(start);
  return c;
}

std::vector<Capture> Sample() {
  return {Make("a", "node-a", "web", 100, Capture::RUNNING),
          Make("b", "node-b", "web", 300, Capture::FAILED),
          Make("c", "node-a", "db", 200, Capture::RUNNING),
          Make("d", "node-a", "web", 300, Capture::STOPPED)};
}

std::vector<std::string> Ids(const packetcapture::v1::ListCapturesResponse& r) {
  std::vector<std::string> ids;
  for (const auto& c : r.captures()) ids.push_back(c.id());
  return ids;
}

TEST(ListPage, NewestFirstThenById) {
  auto page = CaptureServiceImpl::ListPage(Sample(), ListCapturesRequest());
  ASSERT_TRUE(page.ok());
  EXPECT_EQ(Ids(*page), (std::vector<std::string>{"b", "d", "c", "a"}));
  EXPECT_EQ(page->total_size(), 4);
  EXPECT_TRUE(page->next_page_token().empty());
}

TEST(ListPage, Filters) {
  ListCapturesRequest request;
  request.set_node("node-a");
  request.set_namespace_("web");
  auto page = CaptureServiceImpl::ListPage(Sample(), request);
  ASSERT_TRUE(page.ok());
  EXPECT_EQ(Ids(*page), (std::vector<std::string>{"d", "a"}));
  request.set_state(Capture::RUNNING);
  page = CaptureServiceImpl::ListPage(Sample(), request);
  ASSERT_TRUE(page.ok());
  EXPECT_EQ(Ids(*page), (std::vector<std::string>{"a"}));
}

TEST(ListPage, PagesWithTokensUntilTheEnd) {
  ListCapturesRequest request;
  request.set_page_size(3);
  std::vector<std::string> all;
  for (int pages = 0; pages < 5; ++pages) {
    auto page = CaptureServiceImpl::ListPage(Sample(), request);
    ASSERT_TRUE(page.ok());
    for (const auto& id : Ids(*page)) all.push_back(id);
    if (page->next_page_token().empty()) break;
    request.set_page_token(page->next_page_token());
  }
  EXPECT_EQ(all, (std::vector<std::string>{"b", "d", "c", "a"}));
}

TEST(ListPage, BadInputIsInvalidArgument) {
  ListCapturesRequest bad_token;
  bad_token.set_page_token("not a token");
  EXPECT_EQ(CaptureServiceImpl::ListPage(Sample(), bad_token).status().code(),
            absl::StatusCode::kInvalidArgument);
  ListCapturesRequest negative;
  negative.set_page_size(-1);
  EXPECT_EQ(CaptureServiceImpl::ListPage(Sample(), negative).status().code(),
            absl::StatusCode::kInvalidArgument);
  ListCapturesRequest state;
  state.set_state(static_cast<Capture::State>(42));
  EXPECT_EQ(CaptureServiceImpl::ListPage(Sample(), state).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(CaptureRegistry, EventsForAddModifyDeleteAndInitialSync) {
  CaptureRegistry registry;
  registry.Put(Make("a", "node-a", "web", 1, Capture::PENDING));
  std::vector<std::string> seen;
  int handle = registry.Subscribe(
      [&](const CaptureEvent& e) {
        seen.push_back(CaptureEvent::Type_Name(e.type()) + ":" + e.capture().id());
      },
      /*initial=*/true);
  registry.Put(Make("a", "node-a", "web", 1, Capture::PENDING));  // unchanged
  registry.Put(Make("a", "node-a", "web", 1, Capture::RUNNING));
  registry.ReplaceAll({Make("b", "node-a", "web", 2, Capture::RUNNING)});
  registry.Unsubscribe(handle);
  registry.Remove("b");
  EXPECT_EQ(seen, (std::vector<std::string>{"ADDED:a", "SYNCED:", "MODIFIED:a",
                                            "ADDED:b", "DELETED:a"}));
  EXPECT_FALSE(registry.Get("b").has_value());
}

}  // namespace
}  // namespace pc
