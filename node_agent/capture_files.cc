#include "node_agent/capture_files.h"

#include <dirent.h>
#include <unistd.h>

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/capture_layout.h"
#include "common/pcap/ring_reader.h"
#include "common/time_proto.h"

namespace pc::agent {

int CaptureFiles::LastRunNumber() const {
  int last = 0;
  DIR* d = opendir(dir_.c_str());
  if (d == nullptr) return 0;
  while (struct dirent* e = readdir(d)) {
    int run, n;
    if (ParseRunDirName(e->d_name, &run, &n)) last = std::max(last, run);
  }
  closedir(d);
  return last;
}

std::vector<RunFile> CaptureFiles::List() const {
  std::vector<std::pair<int, int>> runs;  // (run, max_files)
  DIR* d = opendir(dir_.c_str());
  if (d != nullptr) {
    while (struct dirent* e = readdir(d)) {
      int run, n;
      if (ParseRunDirName(e->d_name, &run, &n)) runs.emplace_back(run, n);
    }
    closedir(d);
  }
  std::sort(runs.begin(), runs.end());
  std::vector<RunFile> files;
  for (const auto& [run, n] : runs) {
    const std::string run_dir = RunDirName(run, n);
    // Oldest first: tcpdump writes slot k, then k+1 mod N.
    auto ring =
        pcap::ListRingFiles(absl::StrCat(dir_, "/", run_dir), kRingBase, n);
    if (!ring.ok()) continue;
    for (const auto& r : *ring) {
      RunFile f;
      f.path = r.path;
      f.name = absl::StrCat(run_dir, "/", r.name);
      f.run = run;
      f.index = r.index;
      f.size = static_cast<int64_t>(r.size);
      f.mtime = r.mtime;
      files.push_back(std::move(f));
    }
  }
  return files;
}

void CaptureFiles::PruneOldRuns(int max_files, int current_run) {
  std::vector<RunFile> files = List();
  int excess = static_cast<int>(files.size()) - max_files;
  for (const auto& f : files) {
    if (excess <= 0) break;
    if (f.run == current_run) continue;
    if (unlink(f.path.c_str()) == 0) --excess;
  }
  // Remove run directories that are now empty (rmdir fails on non-empty).
  for (const auto& f : files) {
    if (f.run != current_run) {
      rmdir(f.path.substr(0, f.path.rfind('/')).c_str());
    }
  }
}

bool CaptureFiles::Scan(int active_run) {
  std::vector<RunFile> files = List();
  std::map<std::string, std::unique_ptr<pcap::FileScanner>> scanners;
  std::vector<packetcapture::v1::CaptureFile> out;
  uint64_t bytes = 0;
  uint64_t packets = 0;
  for (size_t i = 0; i < files.size(); ++i) {
    const RunFile& f = files[i];
    auto it = scanners_.find(f.path);
    std::unique_ptr<pcap::FileScanner> scanner =
        it != scanners_.end() ? std::move(it->second)
                              : std::make_unique<pcap::FileScanner>(f.path);
    // Count as far as the file has complete records; stop early on errors.
    for (int rounds = 0; rounds < 8; ++rounds) {
      auto polled = scanner->Poll();
      if (!polled.ok() || !polled->more) break;
    }
    packetcapture::v1::CaptureFile file;
    file.set_name(f.name);
    file.set_index(f.index);
    file.set_generation(scanner->generation());
    file.set_size(f.size);
    file.set_packets(scanner->packets());
    if (scanner->first_time()) {
      *file.mutable_first_packet_time() = ToProto(*scanner->first_time());
    }
    if (scanner->last_time()) {
      *file.mutable_last_packet_time() = ToProto(*scanner->last_time());
    }
    file.set_active(active_run != 0 && f.run == active_run &&
                    i + 1 == files.size());
    bytes += f.size;
    packets += scanner->packets();
    scanners[f.path] = std::move(scanner);
    out.push_back(std::move(file));
  }
  scanners_ = std::move(scanners);
  const bool changed =
      bytes != bytes_ || packets != packets_ || out.size() != files_.size();
  files_ = std::move(out);
  bytes_ = bytes;
  packets_ = packets;
  return changed;
}

uint64_t CaptureFiles::PacketsOfRun(int run) const {
  const std::string prefix = absl::StrCat("run-", run, "-");
  uint64_t packets = 0;
  for (const auto& f : files_) {
    if (f.name().rfind(prefix, 0) == 0) packets += f.packets();
  }
  return packets;
}

}  // namespace pc::agent
