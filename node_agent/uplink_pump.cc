// The uplink's reading side: a capture file checked for a reused slot and
// new whole records, at most one chunk of them sent per call, and the
// batching the aggregator asked for (Welcome.batch_bytes / batch_delay_ms).
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/crc32c.h"
#include "common/log.h"
#include "node_agent/uplink.h"

namespace pc::agent {
namespace {

using packetcapture::v1::AgentMessage;

// The global header and the first record header: what identifies a
// generation (tcpdump rewrites the same header, the first record differs).
constexpr size_t kIdentSize = pcap::kGlobalHeaderSize + pcap::kRecordHeaderSize;

// pread that retries on EINTR and short reads; returns the bytes read.
size_t PreadAll(int fd, char* buf, size_t n, uint64_t offset) {
  size_t done = 0;
  while (done < n) {
    const ssize_t r =
        pread(fd, buf + done, n - done, static_cast<off_t>(offset + done));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    done += static_cast<size_t>(r);
  }
  return done;
}

// The identity bytes at the start of the file (fewer if it is shorter) and
// its size, read in that order.
bool ReadIdent(int fd, std::string* ident, uint64_t* size, bool* unlinked) {
  ident->assign(kIdentSize, '\0');
  ident->resize(PreadAll(fd, ident->data(), kIdentSize, 0));
  struct stat st;
  if (fstat(fd, &st) != 0) return false;
  *size = static_cast<uint64_t>(st.st_size);
  *unlinked = st.st_nlink == 0;
  return true;
}

}  // namespace

absl::StatusOr<bool> Uplink::PumpFile(IngestStream* stream,
                                      const std::string& id,
                                      CaptureState* capture,
                                      const std::string& name, FileState* file,
                                      bool may_hold) {
  file->idle = true;
  if (file->fd.get() < 0) {
    const int opened =
        open(file->path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (opened < 0) {
      // Not there yet, or pruned (counted when the status drops it).
      if (errno != ENOENT && !file->open_failed) {
        file->open_failed = true;
        LogLine("uplink_open_failed",
                {{"capture", id},
                 {"file", name},
                 {"error", strerror(errno)},
                 {"effect", "not uploaded; counted as lost when it goes"}});
      }
      return false;
    }
    file->fd.reset(opened);
  }
  const int fd = file->fd.get();

  // Which generation is in the slot: the ring watch's count before and after
  // reading the identity must agree, or the slot was reused meanwhile.
  const uint64_t reuses = Reuses(id, name);
  std::string ident;
  uint64_t size = 0;
  if (!ReadIdent(fd, &ident, &size, &file->unlinked)) return false;
  if (Reuses(id, name) != reuses) {
    file->idle = false;  // look again at once
    return false;
  }
  if (ident.size() < kIdentSize) {
    file->ledger.Settle(reuses);
    return false;  // no first record yet
  }
  auto header = pcap::ParseGlobalHeader(ident);
  if (!header.ok()) return false;
  auto first = pcap::DecodeRecordHeader(
      *header, absl::string_view(ident).substr(pcap::kGlobalHeaderSize));
  if (!first.ok()) return false;
  const uint64_t generation = static_cast<uint64_t>(
      absl::ToUnixNanos(first->Timestamp(header->precision)));
  if (generation == 0) return false;

  const uint64_t lost_before = file->ledger.lost();
  const uint64_t unwatched = file->ledger.unwatched();
  if (file->ledger.Observe(ident, reuses, size)) {
    file->read_any = true;
    file->generation = generation;
    file->header = *header;
    auto it = resume_.find({id, name, generation});
    file->ledger.Start(it == resume_.end() ? 0 : it->second);
    capture->status_dirty = true;
  }
  if (file->ledger.lost() > lost_before) {
    LogLine("uplink_ring_overwrote",
            {{"capture", id},
             {"file", name},
             {"generation", absl::StrCat(file->ledger.generation())},
             {"seen_by", file->ledger.unwatched() > unwatched ? "read only"
                                                              : "ring watch"},
             {"bytes_lost", absl::StrCat(file->ledger.lost() - lost_before)}});
  }

  const uint64_t sent = file->ledger.sent();
  if (size <= sent) return false;
  if (may_hold && HoldBack(file, size - sent, absl::Now())) return false;
  const uint64_t inflight = Inflight();
  if (inflight >= inflight_limit_) {
    file->idle = false;  // more to send once acks come
    return false;
  }
  const uint64_t want = std::min<uint64_t>(
      {chunk_limit_, inflight_limit_ - inflight, size - sent});
  if (options_.before_data_read) options_.before_data_read(file->path);
  std::string data(static_cast<size_t>(want), '\0');
  data.resize(PreadAll(fd, data.data(), data.size(), sent));
  // tcpdump may have reused the slot while we read: then these bytes (some
  // or all) belong to the new generation and must not go out as the old.
  std::string again;
  uint64_t ignored;
  bool unlinked;
  if (!ReadIdent(fd, &again, &ignored, &unlinked) || again != ident ||
      Reuses(id, name) != reuses) {
    file->idle = false;
    return false;
  }
  size_t cut;
  uint32_t packets;
  if (sent == 0) {
    if (data.size() < pcap::kGlobalHeaderSize) return false;
    const pcap::ScanResult scan = pcap::ScanRecords(
        file->header, absl::string_view(data).substr(pcap::kGlobalHeaderSize));
    if (scan.records == 0) return false;
    cut = pcap::kGlobalHeaderSize + scan.complete_bytes;
    packets = static_cast<uint32_t>(scan.records);
  } else {
    const pcap::ScanResult scan = pcap::ScanRecords(file->header, data);
    if (scan.records == 0) return false;
    cut = scan.complete_bytes;
    packets = static_cast<uint32_t>(scan.records);
  }
  data.resize(cut);
  AgentMessage m;
  auto* chunk = m.mutable_chunk();
  chunk->set_capture_id(id);
  chunk->set_file(name);
  chunk->set_file_generation(generation);
  chunk->set_offset(sent);
  chunk->set_crc32c(Crc32c(data));
  chunk->set_packets(packets);
  chunk->set_data(std::move(data));
  // In flight from now: a Write blocked by a dead peer is on the clock.
  stream->SetInflight(inflight + cut);
  if (!stream->Write(m)) return absl::UnavailableError("chunk not sent");
  file->ledger.Sent(sent + cut);
  // The bytes seen waiting went out (or go next, past the chunk limit).
  if (sent + cut >= size) file->held_since = absl::InfiniteFuture();
  file->idle = false;
  absl::MutexLock lock(&mu_);
  ++stats_.chunks_sent;
  stats_.bytes_sent += cut;
  stats_.max_inflight = std::max(stats_.max_inflight, inflight + cut);
  return true;
}

bool Uplink::HoldBack(FileState* file, uint64_t unsent, absl::Time now) {
  if (batch_bytes_ == 0 || unsent >= batch_bytes_) return false;
  if (file->held_since == absl::InfiniteFuture()) file->held_since = now;
  return now - file->held_since < batch_delay_;
}

}  // namespace pc::agent
