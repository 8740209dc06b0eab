#include "common/pcap/pcapng_merger.h"

#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/status_macros.h"

namespace pc::pcap {
namespace {

constexpr bool kHostBigEndian = __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__;

inline uint32_t Field(const char* p, bool swap) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return swap ? __builtin_bswap32(v) : v;
}

}  // namespace

struct PcapngMerger::Input {
  std::unique_ptr<ByteSource> source;
  pcapng::InterfaceDescription idb;
  // Unread bytes are buf[pos, size); the next record starts at pos.
  std::string buf;
  size_t pos = 0;
  std::optional<GlobalHeader> header;
  bool swap = false;  // the header's byte order is not the host's
  uint32_t max_caplen = 0;
  bool ended = false;
  bool described = false;
  uint32_t interface_id = 0;
  // The next record, whole in buf at pos, when has_record.
  bool has_record = false;
  RecordHeader record;
  uint64_t key_ns = 0;
  // The timestamp of the last record sent.
  bool sent_any = false;
  uint64_t last_key_ns = 0;
  // Since when a live input has had nothing to read.
  std::optional<absl::Time> empty_since;
};

PcapngMerger::PcapngMerger(std::vector<MergeInput> inputs, MergeOptions options)
    : options_(std::move(options)) {
  inputs_.resize(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) {
    inputs_[i].source = std::move(inputs[i].source);
    inputs_[i].idb = std::move(inputs[i].interface);
  }
  heap_.reserve(inputs_.size());
  waiting_.reserve(inputs_.size());
}

PcapngMerger::~PcapngMerger() = default;

absl::StatusOr<PcapngMerger::Fill> PcapngMerger::FillInput(Input& in) {
  if (in.has_record) return Fill::kRecord;
  if (in.ended) return Fill::kEnded;
  for (;;) {
    const size_t avail = in.buf.size() - in.pos;
    const char* p = in.buf.data() + in.pos;
    if (!in.header) {
      if (avail >= kGlobalHeaderSize) {
        auto header = ParseGlobalHeader(absl::string_view(p, avail));
        if (!header.ok()) {
          return absl::DataLossError(absl::StrCat(
              in.idb.name, ": not a pcap stream: ", header.status().message()));
        }
        in.header = *header;
        in.swap = header->big_endian != kHostBigEndian;
        in.max_caplen = MaxPlausibleCaplen(*header);
        in.pos += kGlobalHeaderSize;
        continue;
      }
    } else if (avail >= kRecordHeaderSize) {
      RecordHeader& r = in.record;
      r.ts_sec = Field(p, in.swap);
      r.ts_frac = Field(p + 4, in.swap);
      r.caplen = Field(p + 8, in.swap);
      r.len = Field(p + 12, in.swap);
      if (r.caplen > in.max_caplen) {
        return absl::DataLossError(
            absl::StrCat(in.idb.name, ": implausible pcap record: caplen ",
                         r.caplen, " exceeds ", in.max_caplen));
      }
      if (avail >= kRecordHeaderSize + r.caplen) {
        in.has_record = true;
        in.key_ns = uint64_t{r.ts_sec} * 1000000000u +
                    (in.header->precision == TimestampPrecision::kNano
                         ? uint64_t{r.ts_frac}
                         : uint64_t{r.ts_frac} * 1000u);
        in.empty_since.reset();
        return Fill::kRecord;
      }
    }
    // Keep the partial record, drop what was sent, read more.
    if (in.pos > 0) {
      in.buf.erase(0, in.pos);
      in.pos = 0;
    }
    ASSIGN_OR_RETURN(const size_t n,
                     in.source->Read(&in.buf, options_.read_chunk));
    if (n > 0) {
      in.empty_since.reset();
      continue;
    }
    if (!options_.follow || in.source->Done()) {
      in.ended = true;
      in.source.reset();  // its descriptors
      std::string().swap(in.buf);
      in.pos = 0;
      return Fill::kEnded;
    }
    if (!in.empty_since) in.empty_since = options_.clock();
    return Fill::kWaiting;
  }
}

void PcapngMerger::DescribeInput(Input& in, std::string* out) {
  pcapng::InterfaceDescription idb = in.idb;
  if (in.header) {
    const pcapng::InterfaceDescription format =
        pcapng::InterfaceFor(*in.header);
    idb.linktype = format.linktype;
    idb.snaplen = format.snaplen;
    idb.precision = format.precision;
  }
  pcapng::AppendInterfaceDescription(idb, out);
  in.interface_id = next_interface_++;
  in.described = true;
}

absl::StatusOr<bool> PcapngMerger::Start(std::string* out) {
  if (!first_read_) first_read_ = options_.clock();
  bool missing = false;
  for (Input& in : inputs_) {
    RETURN_IF_ERROR(FillInput(in).status());
    if (!in.header && !in.ended) missing = true;
  }
  // Interface ids follow the input order when every header is known in time.
  if (missing && options_.follow &&
      options_.clock() - *first_read_ < options_.max_wait) {
    return false;
  }
  pcapng::AppendSectionHeader(options_.section, out);
  for (size_t i = 0; i < inputs_.size(); ++i) {
    Input& in = inputs_[i];
    if (in.header || in.ended) DescribeInput(in, out);
    if (in.has_record) {
      HeapPush(static_cast<int>(i));
    } else if (!in.ended) {
      waiting_.push_back(static_cast<int>(i));
    }
  }
  started_ = true;
  return true;
}

absl::Status PcapngMerger::PollWaiting(std::string* out) {
  for (size_t i = 0; i < waiting_.size();) {
    const int index = waiting_[i];
    Input& in = inputs_[index];
    ASSIGN_OR_RETURN(const Fill fill, FillInput(in));
    if (!in.described && (in.header || in.ended)) DescribeInput(in, out);
    if (fill == Fill::kWaiting) {
      ++i;
      continue;
    }
    waiting_[i] = waiting_.back();
    waiting_.pop_back();
    if (fill == Fill::kRecord) HeapPush(index);
  }
  return absl::OkStatus();
}

bool PcapngMerger::MaySendPast(uint64_t top_key_ns, absl::Time now) const {
  const int64_t now_ns = absl::ToUnixNanos(now);
  const int64_t wait_ns = absl::ToInt64Nanoseconds(options_.max_wait);
  if (now_ns - wait_ns >= 0 &&
      top_key_ns <= static_cast<uint64_t>(now_ns - wait_ns)) {
    return true;
  }
  for (int w : waiting_) {
    const Input& in = inputs_[w];
    // An input's records come in order: nothing older than its last.
    if (in.sent_any && top_key_ns <= in.last_key_ns) continue;
    if (!in.empty_since || now - *in.empty_since < options_.max_wait) {
      return false;
    }
  }
  return true;
}

absl::StatusOr<size_t> PcapngMerger::Read(std::string* out, size_t max_bytes) {
  const size_t start = out->size();
  if (!started_) {
    ASSIGN_OR_RETURN(const bool started, Start(out));
    if (!started) return 0;
  }
  RETURN_IF_ERROR(PollWaiting(out));
  absl::Time now;
  if (!waiting_.empty()) now = options_.clock();
  while (!heap_.empty()) {
    Input& in = inputs_[heap_[0]];
    if (!waiting_.empty() && !MaySendPast(in.key_ns, now)) break;
    const uint32_t caplen = in.record.caplen;
    const size_t written = out->size() - start;
    if (written >= max_bytes ||
        (written > 0 &&
         written + pcapng::EnhancedPacketSize(caplen) > max_bytes)) {
      break;
    }
    pcapng::AppendEnhancedPacket(
        in.interface_id,
        pcapng::PcapngTimestamp(in.record, in.header->precision),
        absl::string_view(in.buf.data() + in.pos + kRecordHeaderSize, caplen),
        in.record.len, out);
    ++packets_;
    in.sent_any = true;
    in.last_key_ns = in.key_ns;
    in.pos += kRecordHeaderSize + caplen;
    in.has_record = false;
    ASSIGN_OR_RETURN(const Fill fill, FillInput(in));
    if (fill == Fill::kRecord) {
      SiftDown(0);
      continue;
    }
    const int index = heap_[0];
    HeapPop();
    if (fill == Fill::kWaiting) {
      waiting_.push_back(index);
      now = options_.clock();
    }
  }
  return out->size() - start;
}

bool PcapngMerger::Done() {
  return started_ && heap_.empty() && waiting_.empty();
}

// ---- the heap of inputs with a record ----

bool PcapngMerger::Less(int a, int b) const {
  const uint64_t ka = inputs_[a].key_ns;
  const uint64_t kb = inputs_[b].key_ns;
  return ka != kb ? ka < kb : a < b;
}

void PcapngMerger::HeapPush(int input) {
  size_t at = heap_.size();
  heap_.push_back(input);
  while (at > 0) {
    const size_t parent = (at - 1) / 2;
    if (!Less(heap_[at], heap_[parent])) break;
    std::swap(heap_[at], heap_[parent]);
    at = parent;
  }
}

void PcapngMerger::HeapPop() {
  heap_[0] = heap_.back();
  heap_.pop_back();
  if (!heap_.empty()) SiftDown(0);
}

void PcapngMerger::SiftDown(size_t at) {
  const size_t n = heap_.size();
  for (;;) {
    const size_t left = 2 * at + 1;
    if (left >= n) return;
    size_t least = left;
    if (left + 1 < n && Less(heap_[left + 1], heap_[left])) least = left + 1;
    if (!Less(heap_[least], heap_[at])) return;
    std::swap(heap_[at], heap_[least]);
    at = least;
  }
}

}  // namespace pc::pcap
