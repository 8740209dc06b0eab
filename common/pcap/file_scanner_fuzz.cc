// Fuzzes FileScanner against a model of the file it reads. The input is a
// script of writer actions on one file, as tcpdump (or something worse)
// would do them: append raw bytes, append well-formed records (whole or cut
// short), truncate, reuse the file as tcpdump's ring does (O_TRUNC, a new
// header and first record), replace it with a new file, and poll.
//
// After each poll: a new generation the scanner can recognize (the file
// shorter than its cut, another header or first record) restarted it; while
// the bytes cut before are still the file's prefix, the records handed out
// are exactly the file's bytes from the previous cut to the new one and are
// whole records, and the counters agree with a scan of the file.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/pcap/file_scanner.h"
#include "common/pcap/fuzz_files.h"
#include "common/pcap/pcap_format.h"
#include "testing/fuzz/fuzz_util.h"

namespace {

using pc::pcap::GlobalHeader;
using pc::pcap::kGlobalHeaderSize;
using pc::pcap::fuzz::Records;
using pc::pcap::fuzz::WriteAll;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  pc::fuzz::FuzzInput in(data, size);
  GlobalHeader h;
  const uint8_t format = in.Byte();
  h.big_endian = format & 1;
  h.precision = (format & 2) ? pc::pcap::TimestampPrecision::kNano
                             : pc::pcap::TimestampPrecision::kMicro;
  h.snaplen = (format & 4) ? 128 : pc::pcap::kMaxCaplen;
  pc::pcap::FileScanner::Options options;
  options.max_read_bytes = 16 + in.U16() % 4096;

  const std::string dir = pc::pcap::fuzz::MakeTempDir("fsfuzz");
  const std::string path = dir + "/ring0";
  std::string content = pc::pcap::SerializeGlobalHeader(h);
  WriteAll(path, content, O_TRUNC);
  uint32_t ts = 1700000000;

  pc::pcap::FileScanner scanner(path, options);
  std::string consumed;  // the file's bytes the scanner has cut so far
  // The file was rewritten below the cut in a way no reader can notice:
  // from then on the scanner's records need not line up with the file's.
  bool untraceable = false;
  for (int step = 0; step < 64 && !in.empty(); ++step) {
    const int op = in.Byte() % 7;
    switch (op) {
      case 0: {  // raw bytes
        const std::string bytes = in.Bytes(in.Byte());
        content += bytes;
        WriteAll(path, bytes, O_APPEND);
        break;
      }
      case 1:    // whole records
      case 2: {  // records, the last one cut short (a write in progress)
        // One read per statement: argument order is unspecified.
        const int n = 1 + in.Byte() % 4;
        const size_t record_size = in.Byte();
        std::string recs = Records(h, ts++, n, record_size);
        if (recs.size() > 1 && in.Bool()) recs.resize(in.U16() % recs.size());
        content += recs;
        WriteAll(path, recs, O_APPEND);
        break;
      }
      case 3: {  // truncate
        const size_t to = in.U16() % (content.size() + 1);
        content.resize(to);
        FUZZ_CHECK(truncate(path.c_str(), to) == 0, "truncate");
        break;
      }
      case 4:    // reuse, as tcpdump's ring does: O_TRUNC, new header + data
      case 5: {  // replace with a new file (another inode)
        if (op == 5) unlink(path.c_str());
        content = pc::pcap::SerializeGlobalHeader(h) +
                  Records(h, ts++, in.Byte() % 3, 40);
        WriteAll(path, content, O_TRUNC);
        break;
      }
      case 6: {  // poll
        const uint64_t before = scanner.complete_bytes();
        const uint64_t generation = scanner.generation();
        const size_t ident = std::min<size_t>(
            consumed.size(), kGlobalHeaderSize + pc::pcap::kRecordHeaderSize);
        const bool must_restart =
            !consumed.empty() &&
            (content.size() < consumed.size() ||
             content.compare(0, ident, consumed, 0, ident) != 0);
        std::string out;
        auto poll = scanner.Poll(in.Bool() ? &out : nullptr);
        if (!poll.ok()) {
          FUZZ_CHECK(absl::IsInvalidArgument(poll.status()),
                     poll.status().ToString());
          break;
        }
        if (poll->restarted) {
          FUZZ_CHECK(scanner.generation() == generation + 1, "generation");
          FUZZ_CHECK(scanner.complete_bytes() == 0, "offset after restart");
          FUZZ_CHECK(out.empty() && poll->new_bytes == 0, "read on restart");
          consumed.clear();
          untraceable = false;
          break;
        }
        FUZZ_CHECK(scanner.generation() == generation, "generation");
        // A new generation the scanner can see (fewer bytes than it cut, or
        // another header or first record) must restart it. Other rewrites
        // below the cut (truncated halfway, then regrown past it between
        // two polls) leave no trace; tcpdump does not make them.
        FUZZ_CHECK(!must_restart, "new generation not noticed");
        if (content.compare(0, consumed.size(), consumed) != 0) {
          consumed = content.substr(0, scanner.complete_bytes());
          untraceable = true;  // until the next generation
          break;
        }
        if (!scanner.has_header()) break;
        const uint64_t start = before == 0 ? kGlobalHeaderSize : before;
        const uint64_t end = scanner.complete_bytes();
        FUZZ_CHECK(end >= start && end <= content.size(),
                   absl::StrCat(start, "..", end, " of ", content.size()));
        FUZZ_CHECK(poll->new_bytes == end - start, "new_bytes");
        FUZZ_CHECK(out.empty() || out == content.substr(start, end - start),
                   "records differ from the file");
        const auto mine = pc::pcap::ScanRecords(
            scanner.header(),
            absl::string_view(content).substr(start, end - start));
        FUZZ_CHECK(mine.complete_bytes == end - start && !mine.corrupt(),
                   "not whole records");
        FUZZ_CHECK(mine.records == poll->new_packets, "new_packets");
        if (!untraceable) {
          const auto all = pc::pcap::ScanRecords(
              scanner.header(),
              absl::string_view(content).substr(kGlobalHeaderSize,
                                                end - kGlobalHeaderSize));
          FUZZ_CHECK(all.complete_bytes == end - kGlobalHeaderSize,
                     "cut inside a record");
          FUZZ_CHECK(all.records == scanner.packets(), "packet count");
        }
        consumed = content.substr(0, end);
        break;
      }
    }
  }
  unlink(path.c_str());
  rmdir(dir.c_str());
  return 0;
}
