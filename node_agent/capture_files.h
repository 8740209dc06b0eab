// The files of one capture's runs under its directory (run-<k>-w<N>/ring<i>):
// listing them oldest first, pruning earlier runs so the capture keeps at
// most N files, and counting each file's complete records.
// Thread-compatible: the capture's owner (the control loop) calls it.
#ifndef NODE_AGENT_CAPTURE_FILES_H_
#define NODE_AGENT_CAPTURE_FILES_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "common/pcap/file_scanner.h"
#include "proto/packetcapture.pb.h"

namespace pc::agent {

// tcpdump -w <run dir>/ring: it appends the ring index.
inline constexpr char kRingBase[] = "ring";

// One file of one run, as the status and downloads see it.
struct RunFile {
  std::string path;
  std::string name;  // "run-2-w5/ring3": unique within the capture
  int run = 0;
  int index = 0;
  int64_t size = 0;
  absl::Time mtime;
};

class CaptureFiles {
 public:
  explicit CaptureFiles(std::string dir) : dir_(std::move(dir)) {}

  // Files of every run, oldest first (ring order within a run).
  std::vector<RunFile> List() const;
  // The highest run number on disk; 0 if none.
  int LastRunNumber() const;
  // Deletes the oldest files of runs other than current_run until at most
  // max_files remain (current_run's ring is bounded by tcpdump itself), and
  // the run directories that became empty.
  void PruneOldRuns(int max_files, int current_run);
  // Rescans every file. active_run: the run tcpdump writes now (its newest
  // file is marked active), 0 if none. True if the totals changed.
  bool Scan(int active_run);

  const std::vector<packetcapture::v1::CaptureFile>& files() const {
    return files_;
  }
  uint64_t bytes() const { return bytes_; }
  uint64_t packets() const { return packets_; }
  // Packets in the files of one run, as of the last Scan.
  uint64_t PacketsOfRun(int run) const;

 private:
  const std::string dir_;
  // Per-file packet counting, keyed by path; rebuilt when files vanish.
  std::map<std::string, std::unique_ptr<pcap::FileScanner>> scanners_;
  std::vector<packetcapture::v1::CaptureFile> files_;
  uint64_t bytes_ = 0;
  uint64_t packets_ = 0;
};

}  // namespace pc::agent

#endif  // NODE_AGENT_CAPTURE_FILES_H_
