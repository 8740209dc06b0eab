// Guards the API's wire contract: method names users type into grpcurl and the
// field numbers agents and aggregators of different versions rely on.
#include <string>

#include "google/protobuf/descriptor.h"
#include "gtest/gtest.h"
#include "proto/packetcapture.grpc.pb.h"
#include "proto/packetcapture.pb.h"

namespace packetcapture::v1 {
namespace {

TEST(ApiContract, ServiceAndMethodNames) {
  const auto* capture =
      google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(
          "packetcapture.v1.CaptureService");
  ASSERT_NE(capture, nullptr);
  EXPECT_EQ(capture->full_name(), "packetcapture.v1.CaptureService");
  for (const char* method :
       {"ListCaptures", "GetCapture", "DownloadCapture", "WatchCaptures"}) {
    EXPECT_NE(capture->FindMethodByName(method), nullptr) << method;
  }
  EXPECT_TRUE(capture->FindMethodByName("DownloadCapture")->server_streaming());
  EXPECT_TRUE(capture->FindMethodByName("WatchCaptures")->server_streaming());

  const auto* ingest =
      google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(
          "packetcapture.v1.IngestService");
  ASSERT_NE(ingest, nullptr);
  EXPECT_EQ(ingest->full_name(), "packetcapture.v1.IngestService");
  const auto* report = ingest->FindMethodByName("Report");
  ASSERT_NE(report, nullptr);
  EXPECT_TRUE(report->client_streaming());
  EXPECT_TRUE(report->server_streaming());
}

TEST(ApiContract, CaptureRoundTripsThroughWireFormat) {
  Capture capture;
  capture.set_id("default.web-1.0a1b2c3d.1");
  capture.set_state(Capture::RUNNING);
  capture.set_max_files(5);
  auto* file = capture.add_files();
  file->set_name("ring0");
  file->set_size(1000212);
  file->set_generation(3);

  std::string wire;
  ASSERT_TRUE(capture.SerializeToString(&wire));
  Capture parsed;
  ASSERT_TRUE(parsed.ParseFromString(wire));
  EXPECT_EQ(parsed.id(), "default.web-1.0a1b2c3d.1");
  EXPECT_EQ(parsed.state(), Capture::RUNNING);
  ASSERT_EQ(parsed.files_size(), 1);
  EXPECT_EQ(parsed.files(0).size(), 1000212u);
  EXPECT_EQ(parsed.files(0).generation(), 3u);
}

TEST(ApiContract, FieldNumbersAreStable) {
  const auto* chunk = Chunk::descriptor();
  EXPECT_EQ(chunk->FindFieldByName("offset")->number(), 4);
  EXPECT_EQ(chunk->FindFieldByName("crc32c")->number(), 6);
  EXPECT_EQ(Capture::descriptor()->FindFieldByName("state")->number(), 9);
  EXPECT_EQ(AgentMessage::descriptor()->FindFieldByName("hello")->number(), 1);
}

}  // namespace
}  // namespace packetcapture::v1
