// Merges several classic pcap streams (one per capture) into one pcapng
// stream in timestamp order: a Section Header Block, one Interface
// Description Block per input, then every record as an Enhanced Packet Block
// naming its input's interface.
//
// Memory is bounded: per input, one read buffer (at most read_chunk bytes
// plus one partial record) whose head is the input's next record, and a
// binary heap of the inputs that have one. No allocation per packet.
//
// Ordering guarantee. Without follow, every input is read to its end, so the
// output is in non-decreasing timestamp order (ties: the input listed first)
// except for records that were out of order within one input. With follow,
// an input that is still running may have no record available yet; the
// merge then holds the other inputs' records back until either the held
// record's timestamp is max_wait older than the clock (a live input delivers
// packets within that delay, so it cannot have an older one still to come),
// or that input has had nothing for max_wait (a record no younger than the
// last one sent from that input is not held: each input is in order). Records
// that a live input delivers later than that are sent as soon as they arrive,
// possibly after younger ones: none is dropped, and a silent input delays the
// others by at most max_wait.
//
// Thread-compatible (one download).
#ifndef COMMON_PCAP_PCAPNG_MERGER_H_
#define COMMON_PCAP_PCAPNG_MERGER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/pcap/byte_source.h"
#include "common/pcap/pcap_format.h"
#include "common/pcap/pcapng_writer.h"

namespace pc::pcap {

struct MergeInput {
  std::unique_ptr<ByteSource> source;
  // Its Interface Description Block's strings; link type, snaplen and
  // timestamp resolution come from the input's pcap global header.
  pcapng::InterfaceDescription interface;
};

struct MergeOptions {
  pcapng::SectionHeader section;
  // Inputs may still grow: a read of 0 bytes ends an input only once its
  // Done() is true. Without follow, a read of 0 bytes ends it.
  bool follow = false;
  absl::Duration max_wait = absl::Seconds(1);
  // Bytes asked of an input per read: with the partial record kept from the
  // last read, what one input's buffer holds at most (256 inputs × 64 KiB:
  // about 16 MiB, more only for records longer than that).
  size_t read_chunk = 64 * 1024;
  std::function<absl::Time()> clock = [] { return absl::Now(); };
};

class PcapngMerger final : public ByteSource {
 public:
  PcapngMerger(std::vector<MergeInput> inputs, MergeOptions options);
  ~PcapngMerger() override;

  // Appends pcapng bytes: whole blocks, at most max_bytes unless a single
  // block is larger. 0: nothing can be sent now (follow: try again later).
  // DataLoss when an input is not a pcap stream.
  absl::StatusOr<size_t> Read(std::string* out, size_t max_bytes) override;
  bool Done() override;

  // Records sent so far.
  uint64_t packets() const { return packets_; }

 private:
  struct Input;
  enum class Fill { kRecord, kWaiting, kEnded };

  // Reads until the input's next record is whole in its buffer, it has
  // nothing now, or it ended.
  absl::StatusOr<Fill> FillInput(Input& in);
  // Appends the input's Interface Description Block, assigning its id.
  void DescribeInput(Input& in, std::string* out);
  // First call: waits (follow) up to max_wait for every live input's
  // header, then writes the SHB and the IDBs of the inputs known so far.
  absl::StatusOr<bool> Start(std::string* out);
  // Polls inputs that had nothing; those with a record join the heap.
  absl::Status PollWaiting(std::string* out);
  // True when the heap's top may be sent although `waiting_` inputs have
  // nothing (see the ordering guarantee above).
  bool MaySendPast(uint64_t top_key_ns, absl::Time now) const;

  void HeapPush(int input);
  void HeapPop();
  void SiftDown(size_t at);
  bool Less(int a, int b) const;

  std::vector<Input> inputs_;
  MergeOptions options_;
  bool started_ = false;
  std::optional<absl::Time> first_read_;
  uint32_t next_interface_ = 0;
  std::vector<int> heap_;     // inputs with a record, min key on top
  std::vector<int> waiting_;  // live inputs with nothing yet
  uint64_t packets_ = 0;
};

}  // namespace pc::pcap

#endif  // COMMON_PCAP_PCAPNG_MERGER_H_
