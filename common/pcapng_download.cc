#include "common/pcapng_download.h"

#include <sys/utsname.h>

#include <algorithm>
#include <map>
#include <set>
#include <tuple>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "common/label_selector.h"
#include "common/pcap/pcapng_merger.h"
#include "common/time_proto.h"

namespace pc {
namespace {

using packetcapture::v1::Capture;
using packetcapture::v1::DownloadCapturesRequest;

// A capture with nothing to read.
class NoData final : public pcap::ByteSource {
 public:
  absl::StatusOr<size_t> Read(std::string*, size_t) override { return 0; }
  bool Done() override { return true; }
};

std::string Rfc3339(absl::Time t) {
  return absl::FormatTime("%Y-%m-%d%ET%H:%M:%E3SZ", t, absl::UTCTimeZone());
}

bool Set(const google::protobuf::Timestamp& t) {
  return t.seconds() != 0 || t.nanos() != 0;
}

std::string Filters(const DownloadCapturesRequest& r) {
  std::vector<std::string> parts;
  if (!r.node().empty()) parts.push_back(absl::StrCat("node=", r.node()));
  if (!r.namespace_().empty()) {
    parts.push_back(absl::StrCat("namespace=", r.namespace_()));
  }
  if (!r.pod().empty()) parts.push_back(absl::StrCat("pod=", r.pod()));
  if (r.state() != Capture::STATE_UNSPECIFIED) {
    parts.push_back(absl::StrCat("state=", Capture::State_Name(r.state())));
  }
  if (!r.label_selector().empty()) {
    parts.push_back(
        absl::StrCat("label_selector=\"", r.label_selector(), "\""));
  }
  return parts.empty() ? "no filters" : absl::StrJoin(parts, ", ");
}

}  // namespace

absl::StatusOr<std::vector<Capture>> SelectCaptures(
    std::vector<Capture> all, const DownloadCapturesRequest& request) {
  std::vector<Capture> chosen;
  if (request.ids_size() > 0) {
    if (request.ids_size() > kMaxMergedCaptures) {
      return absl::InvalidArgumentError(
          absl::StrCat(request.ids_size(), " ids: at most ", kMaxMergedCaptures,
                       " captures per DownloadCaptures"));
    }
    std::map<std::string, Capture*> by_id;
    for (Capture& c : all) by_id[c.id()] = &c;
    std::set<std::string> seen;
    for (const std::string& id : request.ids()) {
      if (!seen.insert(id).second) continue;
      auto it = by_id.find(id);
      if (it == by_id.end()) {
        return absl::NotFoundError(
            absl::StrCat("no capture with id \"", id.substr(0, 256), "\""));
      }
      chosen.push_back(std::move(*it->second));
    }
    return chosen;
  }
  if (!Capture::State_IsValid(request.state())) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown state ", request.state()));
  }
  auto selector = LabelSelector::Parse(request.label_selector());
  if (!selector.ok()) return selector.status();
  for (Capture& c : all) {
    if ((!request.node().empty() && c.node() != request.node()) ||
        (!request.namespace_().empty() &&
         c.namespace_() != request.namespace_()) ||
        (!request.pod().empty() && c.pod() != request.pod()) ||
        (request.state() != Capture::STATE_UNSPECIFIED &&
         c.state() != request.state()) ||
        !selector->Matches(c.pod_labels())) {
      continue;
    }
    chosen.push_back(std::move(c));
  }
  auto key = [](const Capture& c) {
    return std::make_tuple(c.namespace_(), c.pod(), c.start_time().seconds(),
                           c.start_time().nanos(), c.id());
  };
  std::sort(
      chosen.begin(), chosen.end(),
      [&](const Capture& a, const Capture& b) { return key(a) < key(b); });
  return chosen;
}

absl::Status CheckChosen(size_t chosen,
                         const DownloadCapturesRequest& request) {
  if (chosen == 0) {
    return absl::NotFoundError(
        absl::StrCat("no capture matches (", Filters(request),
                     "); ListCaptures with the same filters shows what "
                     "exists"));
  }
  if (chosen > static_cast<size_t>(kMaxMergedCaptures)) {
    return absl::InvalidArgumentError(
        absl::StrCat(chosen, " captures match (", Filters(request),
                     "): at most ", kMaxMergedCaptures,
                     " per DownloadCaptures; narrow the filters or pass ids"));
  }
  return absl::OkStatus();
}

pcapng::SectionHeader SectionFor(const std::vector<Capture>& captures,
                                 const PcapngInfo& info, bool follow) {
  absl::Time from = absl::InfiniteFuture();
  absl::Time to = absl::InfinitePast();
  bool running = false;
  for (const Capture& c : captures) {
    if (c.state() == Capture::RUNNING || c.state() == Capture::PENDING) {
      running = true;
    }
    for (const auto& f : c.files()) {
      if (Set(f.first_packet_time())) {
        from = std::min(from, FromProto(f.first_packet_time()));
      }
      if (Set(f.last_packet_time())) {
        to = std::max(to, FromProto(f.last_packet_time()));
      }
    }
    if (Set(c.start_time())) from = std::min(from, FromProto(c.start_time()));
    if (Set(c.stop_time())) to = std::max(to, FromProto(c.stop_time()));
  }
  std::string range;
  if (from != absl::InfiniteFuture()) {
    range = absl::StrCat("from ", Rfc3339(from));
    if (follow && running) {
      absl::StrAppend(&range, " on, followed live");
    } else if (to != absl::InfinitePast() && to >= from) {
      absl::StrAppend(&range, " to ", Rfc3339(to));
    }
  }
  pcapng::SectionHeader shb;
  std::vector<std::string> comment;
  if (!info.cluster_name.empty()) {
    comment.push_back(absl::StrCat("cluster ", info.cluster_name));
  }
  comment.push_back(absl::StrCat(
      captures.size(), captures.size() == 1 ? " capture" : " captures"));
  if (!range.empty()) comment.push_back(range);
  shb.comment = absl::StrJoin(comment, ", ");
  shb.userappl = info.application;
  struct utsname u;
  if (uname(&u) == 0) {
    shb.os = absl::StrCat(u.sysname, " ", u.release);
    shb.hardware = u.machine;
  }
  return shb;
}

pcapng::InterfaceDescription InterfaceFor(const Capture& c) {
  pcapng::InterfaceDescription idb;
  idb.name = absl::StrCat(c.namespace_(), "/", c.pod());
  std::vector<std::string> parts;
  parts.push_back(absl::StrCat("pod ", idb.name));
  if (!c.node().empty()) parts.push_back(absl::StrCat("node ", c.node()));
  if (!c.pod_ip().empty()) parts.push_back(absl::StrCat("pod IP ", c.pod_ip()));
  if (!c.interface().empty()) {
    parts.push_back(absl::StrCat("interface ", c.interface()));
  }
  parts.push_back(absl::StrCat("capture ", c.id()));
  idb.description = absl::StrJoin(parts, ", ");
  idb.filter = c.options().filter();
  return idb;
}

std::unique_ptr<pcap::ByteSource> MakePcapngStream(
    const std::vector<Capture>& captures,
    std::vector<absl::StatusOr<std::unique_ptr<pcap::ByteSource>>> sources,
    const PcapngInfo& info, bool follow) {
  std::vector<pcap::MergeInput> inputs;
  for (size_t i = 0; i < captures.size() && i < sources.size(); ++i) {
    pcap::MergeInput in;
    in.interface = InterfaceFor(captures[i]);
    if (sources[i].ok()) {
      in.source = std::move(*sources[i]);
    } else {
      in.source = std::make_unique<NoData>();
      in.interface.comment =
          absl::StrCat("no packets: ", sources[i].status().message());
    }
    inputs.push_back(std::move(in));
  }
  pcap::MergeOptions options;
  options.section = SectionFor(captures, info, follow);
  options.follow = follow;
  return std::make_unique<pcap::PcapngMerger>(std::move(inputs),
                                              std::move(options));
}

}  // namespace pc
