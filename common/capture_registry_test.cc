#include "common/capture_registry.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace pc {
namespace {

using packetcapture::v1::Capture;
using packetcapture::v1::CaptureEvent;

Capture Running(const std::string& id, uint64_t bytes) {
  Capture c;
  c.set_id(id);
  c.set_state(Capture::RUNNING);
  c.set_bytes(bytes);
  c.set_packets(bytes / 100);
  auto* file = c.add_files();
  file->set_name("capture.pcap0");
  file->set_size(bytes);
  return c;
}

// What a listener saw, as "TYPE id bytes".
class Recorder {
 public:
  CaptureRegistry::Listener listener() {
    return [this](const CaptureEvent& e) { seen.push_back(Describe(e)); };
  }
  static std::string Describe(const CaptureEvent& e) {
    return CaptureEvent::Type_Name(e.type()) + " " + e.capture().id() + " " +
           std::to_string(e.capture().bytes());
  }
  std::vector<std::string> seen;
};

TEST(CaptureRegistryTest, ListenersHearOnlyRealChanges) {
  CaptureRegistry registry;
  Recorder recorder;
  registry.Subscribe(recorder.listener(), /*initial=*/false);
  registry.Put(Running("a", 100));
  registry.Put(Running("a", 100));  // the same: no event
  registry.Put(Running("a", 200));
  registry.Remove("a");
  registry.Remove("a");  // gone already: no event
  EXPECT_EQ(recorder.seen,
            (std::vector<std::string>{"ADDED a 100", "MODIFIED a 200",
                                      "DELETED a 200"}));
}

TEST(CaptureRegistryTest, AChangeDeepInTheFilesIsAChange) {
  // Same totals, state and number of files: only a file's name and a
  // message differ. The cheap first comparison must not hide that.
  CaptureRegistry registry;
  Recorder recorder;
  registry.Subscribe(recorder.listener(), /*initial=*/false);
  registry.Put(Running("a", 100));
  Capture renamed = Running("a", 100);
  renamed.mutable_files(0)->set_name("capture.pcap1");
  registry.Put(renamed);
  Capture messaged = renamed;
  messaged.set_message("disk full on the node");
  registry.Put(messaged);
  EXPECT_EQ(recorder.seen,
            (std::vector<std::string>{"ADDED a 100", "MODIFIED a 100",
                                      "MODIFIED a 100"}));
  EXPECT_EQ(registry.Get("a")->files(0).name(), "capture.pcap1");
  EXPECT_EQ(registry.Get("a")->message(), "disk full on the node");
}

TEST(CaptureRegistryTest, ALateListenerGetsTheLatestStateThenSynced) {
  // Changes made while nobody listens are kept (only their events are not
  // made): a listener that comes later starts from the latest state.
  CaptureRegistry registry;
  registry.Put(Running("a", 100));
  registry.Put(Running("a", 300));
  registry.Put(Running("b", 50));
  registry.ReplaceAll({Running("b", 60), Running("c", 1)});
  Recorder recorder;
  const int handle = registry.Subscribe(recorder.listener(), /*initial=*/true);
  EXPECT_EQ(recorder.seen,
            (std::vector<std::string>{"ADDED b 60", "ADDED c 1", "SYNCED  0"}));
  registry.Unsubscribe(handle);
  registry.Put(Running("c", 2));
  EXPECT_EQ(recorder.seen.size(), 3u);
  EXPECT_EQ(registry.Get("c")->bytes(), 2u);
  EXPECT_FALSE(registry.Get("a").has_value());
}

TEST(CaptureRegistryTest, ReplaceAllReportsWhatChanged) {
  CaptureRegistry registry;
  Recorder recorder;
  registry.Put(Running("a", 1));
  registry.Put(Running("b", 2));
  registry.Subscribe(recorder.listener(), /*initial=*/false);
  registry.ReplaceAll({Running("b", 2), Running("c", 3)});
  EXPECT_EQ(recorder.seen,
            (std::vector<std::string>{"ADDED c 3", "DELETED a 1"}));
  ASSERT_EQ(registry.List().size(), 2u);
}

}  // namespace
}  // namespace pc
