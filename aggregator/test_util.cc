#include "aggregator/test_util.h"

#include "absl/strings/str_cat.h"
#include "common/crc32c.h"
#include "common/pcap/pcap_format.h"
#include "common/pcap/pcap_test_util.h"

namespace pc::aggregator::testutil {

std::string CaptureId(const std::string& pod, int64_t start_ms) {
  return absl::StrCat("default_", pod, "_0123abcd_", start_ms);
}

packetcapture::v1::Capture Status(const std::string& id,
                                  const std::string& node,
                                  packetcapture::v1::Capture::State state,
                                  uint32_t max_files) {
  packetcapture::v1::Capture c;
  c.set_id(id);
  c.set_node(node);
  c.set_namespace_("default");
  if (id.size() > 8) c.set_pod(id.substr(8, id.find('_', 8) - 8));
  c.set_pod_uid("0123abcd-0000-0000-0000-000000000000");
  c.set_max_files(max_files);
  c.set_state(state);
  c.set_on_node(true);
  c.mutable_start_time()->set_seconds(1700000000);
  return c;
}

packetcapture::v1::Chunk MakeChunk(const std::string& id,
                                   const std::string& file, uint64_t generation,
                                   uint64_t offset, const std::string& data) {
  packetcapture::v1::Chunk c;
  c.set_capture_id(id);
  c.set_file(file);
  c.set_file_generation(generation);
  c.set_offset(offset);
  c.set_data(data);
  c.set_crc32c(Crc32c(data));
  return c;
}

std::string PcapFile(uint32_t first, uint32_t count) {
  return pcap::testutil::MakePcapFile(pcap::GlobalHeader(), first, count);
}

std::string Records(uint32_t first, uint32_t count) {
  return pcap::testutil::MakeRecords(pcap::GlobalHeader(), first, count);
}

}  // namespace pc::aggregator::testutil
