#include "node_agent/ring_writer_test_util.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <iostream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "aggregator/test_util.h"
#include "common/pcap/ring_reader.h"

namespace pc::agent::testutil {

TcpdumpRing::TcpdumpRing(std::string dir, int max_files, uint64_t rotate_bytes)
    : dir_(std::move(dir)), max_files_(max_files), rotate_(rotate_bytes) {
  Open();
}

TcpdumpRing::~TcpdumpRing() {
  if (fd_ >= 0) close(fd_);
}

std::string TcpdumpRing::Name(int slot) const {
  return pcap::RingFileName("ring", slot, max_files_);
}

void TcpdumpRing::Packets(uint32_t count) {
  for (uint32_t i = 0; i < count; ++i) {
    if (size_ > rotate_) {
      close(fd_);
      closed_sizes_.push_back(size_);
      slot_ = (slot_ + 1) % max_files_;
      Open();
    }
    Write(aggregator::testutil::Records(seq_++, 1));
  }
}

void TcpdumpRing::RotateTo(int n) {
  while (rotations() < n) Packets(1);
}

void TcpdumpRing::Open() {
  const std::string path = absl::StrCat(dir_, "/", Name(slot_));
  fd_ = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd_ < 0) {
    std::cerr << "cannot open " << path << std::endl;
    abort();
  }
  size_ = 0;
  Write(aggregator::testutil::PcapFile(0, 0));
}

void TcpdumpRing::Write(const std::string& bytes) {
  if (write(fd_, bytes.data(), bytes.size()) !=
      static_cast<ssize_t>(bytes.size())) {
    std::cerr << "short write in " << dir_ << std::endl;
    abort();
  }
  size_ += bytes.size();
}

}  // namespace pc::agent::testutil
