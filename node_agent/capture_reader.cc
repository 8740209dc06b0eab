#include "node_agent/capture_reader.h"

#include <dirent.h>

#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/capture_layout.h"

namespace pc::agent {

CaptureReader::CaptureReader(std::string capture_dir,
                             std::function<bool()> still_running)
    : dir_(std::move(capture_dir)), still_running_(std::move(still_running)) {}

absl::Status CaptureReader::OpenNextRun(bool* opened) {
  *opened = false;
  int next = 0, next_n = 0;
  DIR* d = opendir(dir_.c_str());
  if (d == nullptr) return absl::OkStatus();  // deleted: nothing more
  while (struct dirent* e = readdir(d)) {
    int run, n;
    if (ParseRunDirName(e->d_name, &run, &n) && run > run_ &&
        (next == 0 || run < next)) {
      next = run;
      next_n = n;
    }
  }
  closedir(d);
  if (next == 0) return absl::OkStatus();
  auto reader = pcap::RingReader::Open(
      absl::StrCat(dir_, "/", RunDirName(next, next_n)), "ring", next_n);
  if (!reader.ok()) return reader.status();
  reader_ = std::move(*reader);
  run_ = next;
  skip_ = runs_opened_ > 0 ? pcap::kGlobalHeaderSize : 0;
  ++runs_opened_;
  *opened = true;
  return absl::OkStatus();
}

absl::StatusOr<size_t> CaptureReader::Read(std::string* out, size_t max_bytes) {
  if (!held_.empty()) {
    const size_t n = std::min(max_bytes, held_.size());
    out->append(held_, 0, n);
    held_.erase(0, n);
    return n;
  }
  std::string buf(max_bytes, '\0');
  // Bounded: at most a few runs are skipped per call.
  for (int attempts = 0; attempts < 64; ++attempts) {
    if (reader_ == nullptr) {
      bool opened;
      auto status = OpenNextRun(&opened);
      if (!status.ok()) return status;
      if (!opened) return 0;
    }
    auto n = reader_->Read(buf.data(), buf.size());
    if (!n.ok()) return n.status();
    if (*n > 0) {
      // Every run of a capture is one interface with the same options, so the
      // headers match; if they do not, stop rather than emit an invalid pcap.
      if (reader_->header()) {
        if (!header_) {
          header_ = *reader_->header();
        } else if (!pcap::SameStreamFormat(*header_, *reader_->header())) {
          return absl::FailedPreconditionError(absl::StrCat(
              "run ", run_, " has a different link type or snapshot length"));
        }
      }
      size_t begin = 0;
      if (skip_ > 0) {
        begin = std::min<uint64_t>(skip_, *n);
        skip_ -= begin;
      }
      out->append(buf.data() + begin, *n - begin);
      if (*n - begin > 0) return *n - begin;
      continue;
    }
    // This run has nothing new; a newer run means this one is finished.
    std::unique_ptr<pcap::RingReader> current = std::move(reader_);
    const int current_run = run_;
    bool opened;
    auto status = OpenNextRun(&opened);
    if (!status.ok()) return status;
    if (!opened) {
      reader_ = std::move(current);
      run_ = current_run;
      return 0;
    }
  }
  return 0;
}

bool CaptureReader::Done() {
  if (still_running_()) return false;
  // tcpdump may have flushed its last packets between our last Read and its
  // exit: look once more before declaring the end.
  std::string more;
  auto n = Read(&more, 64 * 1024);
  if (n.ok() && *n > 0) {
    held_ = std::move(more);
    return false;
  }
  return true;
}

}  // namespace pc::agent
