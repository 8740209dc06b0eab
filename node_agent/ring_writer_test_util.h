// Test-only: writes a capture ring the way tcpdump -C -W does, to drive the
// uplink and the ring watch without tcpdump. Thread-compatible.
#ifndef NODE_AGENT_RING_WRITER_TEST_UTIL_H_
#define NODE_AGENT_RING_WRITER_TEST_UTIL_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace pc::agent::testutil {

// One file open at a time, written a packet at a time; once the file is
// larger than `rotate_bytes` it is closed and the next slot is opened with
// O_TRUNC (the same inode when it exists), as tcpdump rotates. Files are
// named as tcpdump names them ("ring" alone for a ring of 1). Packets carry
// sequence numbers 0, 1, ... (aggregator::testutil::Records).
class TcpdumpRing {
 public:
  TcpdumpRing(std::string dir, int max_files, uint64_t rotate_bytes);
  ~TcpdumpRing();
  TcpdumpRing(const TcpdumpRing&) = delete;
  TcpdumpRing& operator=(const TcpdumpRing&) = delete;

  void Packets(uint32_t count);
  // Writes packets until `n` rotations happened in all (and one packet
  // into the file opened last).
  void RotateTo(int n);

  std::string Name(int slot) const;
  // Sizes of every generation closed so far, in order.
  const std::vector<uint64_t>& closed_sizes() const { return closed_sizes_; }
  int rotations() const { return static_cast<int>(closed_sizes_.size()); }
  // Size of the file being written.
  uint64_t size() const { return size_; }

 private:
  void Open();
  void Write(const std::string& bytes);

  const std::string dir_;
  const int max_files_;
  const uint64_t rotate_;
  int fd_ = -1;
  int slot_ = 0;
  uint32_t seq_ = 0;
  uint64_t size_ = 0;
  std::vector<uint64_t> closed_sizes_;
};

}  // namespace pc::agent::testutil

#endif  // NODE_AGENT_RING_WRITER_TEST_UTIL_H_
