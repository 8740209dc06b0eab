#include "aggregator/resume_pages.h"

#include <cstdint>
#include <map>
#include <string>
#include <utility>

#include "google/protobuf/io/coded_stream.h"

namespace pc::aggregator {

using packetcapture::v1::ResumePoint;

ResumePages PageResumePoints(std::vector<ResumePoint> points,
                             size_t page_bytes) {
  std::map<std::pair<std::string, std::string>, uint64_t> newest;
  for (const ResumePoint& p : points) {
    uint64_t& g = newest[{p.capture_id(), p.file()}];
    if (p.file_generation() > g) g = p.file_generation();
  }
  std::vector<ResumePoint> ordered;
  ordered.reserve(points.size());
  std::vector<ResumePoint> older;
  for (ResumePoint& p : points) {
    const bool is_newest =
        p.file_generation() == newest[{p.capture_id(), p.file()}];
    (is_newest ? ordered : older).push_back(std::move(p));
  }
  for (ResumePoint& p : older) ordered.push_back(std::move(p));

  ResumePages pages;
  std::vector<ResumePoint>* page = &pages.welcome;
  size_t bytes = 0;
  for (ResumePoint& p : ordered) {
    const size_t size = p.ByteSizeLong();
    // As a repeated field: a tag byte and the length before the point.
    const size_t encoded =
        1 + google::protobuf::io::CodedOutputStream::VarintSize64(size) + size;
    if (!page->empty() && bytes + encoded > page_bytes) {
      pages.batches.emplace_back();
      page = &pages.batches.back();
      bytes = 0;
    }
    page->push_back(std::move(p));
    bytes += encoded;
  }
  return pages;
}

}  // namespace pc::aggregator
