// Resume points of one node cut into messages an agent can receive: the
// Welcome carries the first page, ResumeBatch messages the rest. The newest
// generation of each (capture, file) comes first, since that is where an
// agent still uploads; older generations only complete the picture. Pure
// function; thread-safe.
#ifndef AGGREGATOR_RESUME_PAGES_H_
#define AGGREGATOR_RESUME_PAGES_H_

#include <cstddef>
#include <vector>

#include "proto/packetcapture.pb.h"

namespace pc::aggregator {

struct ResumePages {
  // For the Welcome.
  std::vector<packetcapture::v1::ResumePoint> welcome;
  // For the ResumeBatch messages after it, in order (empty: none follow).
  std::vector<std::vector<packetcapture::v1::ResumePoint>> batches;
};

// Pages hold points of at most `page_bytes` encoded bytes together (a point
// larger than that gets a page of its own); no page is empty except the
// Welcome's when there are no points at all. Order within each group
// (newest, then older) is kept.
ResumePages PageResumePoints(std::vector<packetcapture::v1::ResumePoint> points,
                             size_t page_bytes);

}  // namespace pc::aggregator

#endif  // AGGREGATOR_RESUME_PAGES_H_
