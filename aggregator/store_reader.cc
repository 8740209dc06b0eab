// Store's downloads: Store::Reader and Store::OpenReader.
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "aggregator/store.h"
#include "common/status_macros.h"

namespace pc::aggregator {

// Reads the stored files of one capture in order, each through a descriptor
// of its own (so a file dropped while it is read is still read to its end).
// Holds at most one descriptor. Thread-compatible.
class Store::Reader : public PcapSource {
 public:
  Reader(const Store* store, std::string id, bool follow)
      : store_(store), id_(std::move(id)), follow_(follow) {}
  ~Reader() override {
    if (fd_ >= 0) close(fd_);
  }

  absl::StatusOr<size_t> Read(std::string* out, size_t max_bytes) override {
    for (int attempts = 0; attempts < 1000; ++attempts) {
      // Fast path: more bytes of the open file. The file order is consulted
      // only at a file's end.
      if (current_ != nullptr) {
        uint64_t length;
        {
          absl::MutexLock lock(&store_->mu_);
          length = current_->summary.physical_len;
        }
        if (pos_ < length) {
          const size_t n =
              static_cast<size_t>(std::min<uint64_t>(max_bytes, length - pos_));
          const int64_t read = AppendRange(fd_, pos_, n, out);
          if (read < 0) {
            return IoError(static_cast<int>(-read),
                           absl::StrCat("read ", current_->io->label()));
          }
          if (read == 0) return absl::DataLossError("stored file shrank");
          pos_ += static_cast<uint64_t>(read);
          return static_cast<size_t>(read);
        }
      }
      Refresh();
      // The first file in capture order that is neither open nor read.
      while (next_ < files_.size() &&
             (files_[next_] == current_ || consumed_.count(files_[next_]))) {
        ++next_;
      }
      const bool later = next_ < files_.size();
      if (current_ == nullptr) {
        if (!later) return 0;
        RETURN_IF_ERROR(OpenFile(files_[next_]));
        continue;  // read from it (or, if it vanished, try the next one)
      }
      // Finished with this file once another unread one exists (or it was
      // dropped from the store).
      if (!later && current_listed_) {
        // Bytes may have landed between the length check and now.
        absl::MutexLock lock(&store_->mu_);
        if (pos_ < current_->summary.physical_len) continue;
        return 0;
      }
      consumed_.insert(current_);
      close(fd_);
      fd_ = -1;
      current_.reset();
      if (!later) return 0;
    }
    return 0;
  }

  bool Done() override {
    if (!follow_) return true;
    bool running;
    std::vector<std::shared_ptr<FileEntry>> files =
        store_->OrderedFiles(id_, &running);
    if (running) return false;
    for (const auto& f : files) {
      if (f == current_) {
        absl::MutexLock lock(&store_->mu_);
        if (pos_ < f->summary.physical_len) return false;
      } else if (!consumed_.count(f)) {
        return false;
      }
    }
    return true;
  }

 private:
  absl::Status OpenFile(const std::shared_ptr<FileEntry>& f) {
    fd_ = open(f->io->data_path().c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) {
      if (errno == ENOENT) {
        consumed_.insert(f);  // dropped meanwhile
        return absl::OkStatus();
      }
      return IoError(errno, absl::StrCat("open ", f->io->label()));
    }
    pcap::GlobalHeader header;
    {
      absl::MutexLock lock(&store_->mu_);
      header = *f->summary.header;
    }
    if (!stream_header_) {
      stream_header_ = header;
      pos_ = 0;
    } else {
      if (!pcap::SameStreamFormat(*stream_header_, header)) {
        close(fd_);
        fd_ = -1;
        return absl::FailedPreconditionError(absl::StrCat(
            "stored file ", f->io->name(), " has a different pcap format"));
      }
      pos_ = pcap::kGlobalHeaderSize;
    }
    current_ = f;
    current_listed_ = true;  // it came from files_
    return absl::OkStatus();
  }

  // Re-reads the capture's file order when the store's file set changed: a
  // sort over every file, so not once per message (a 1 GiB capture has
  // about a thousand files).
  void Refresh() {
    {
      absl::MutexLock lock(&store_->mu_);
      if (version_ && *version_ == store_->file_set_version_) return;
    }
    bool running;
    uint64_t version;
    files_ = store_->OrderedFiles(id_, &running, &version);
    version_ = version;
    next_ = 0;
    current_listed_ =
        current_ != nullptr &&
        std::find(files_.begin(), files_.end(), current_) != files_.end();
  }

  const Store* store_;
  const std::string id_;
  const bool follow_;
  std::set<std::shared_ptr<FileEntry>> consumed_;
  // The capture's files in order as of store version version_; files before
  // next_ are known to be consumed.
  std::vector<std::shared_ptr<FileEntry>> files_;
  absl::optional<uint64_t> version_;
  size_t next_ = 0;
  bool current_listed_ = false;  // current_ is in files_
  std::shared_ptr<FileEntry> current_;
  int fd_ = -1;
  uint64_t pos_ = 0;
  absl::optional<pcap::GlobalHeader> stream_header_;
};

absl::StatusOr<std::unique_ptr<PcapSource>> Store::OpenReader(
    const std::string& id, bool follow) {
  {
    absl::MutexLock lock(&mu_);
    if (!captures_.count(id)) {
      return absl::NotFoundError(
          absl::StrCat("no capture with id \"", id.substr(0, 256), "\""));
    }
  }
  return std::unique_ptr<PcapSource>(new Reader(this, id, follow));
}

}  // namespace pc::aggregator
