// Fuzzes RingReader on a ring of files the input describes, with the writer
// still at work between reads. The first bytes choose -W (1..5) and, for each
// file of the ring, whether it exists, its contents (a header in one of two
// formats, then well-formed records cut anywhere, or raw bytes) and its
// mtime. Then a script interleaves reads of arbitrary sizes with writes:
// append records to a file, rotate to the next one (tcpdump's O_TRUNC reuse),
// or delete a file.
//
// Whatever the files hold, the output must be ONE valid pcap stream: a
// global header, then whole records only; every time Read() has nothing
// more (or fails), no record is left cut off; counters match the bytes.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/pcap/fuzz_files.h"
#include "common/pcap/pcap_format.h"
#include "common/pcap/ring_reader.h"
#include "testing/fuzz/fuzz_util.h"

namespace {

using pc::pcap::GlobalHeader;
using pc::pcap::kGlobalHeaderSize;
using pc::pcap::fuzz::Records;
using pc::pcap::fuzz::WriteAll;

void SetMtime(const std::string& path, int64_t ms) {
  struct timespec times[2];
  times[0].tv_sec = times[1].tv_sec = 1700000000 + ms / 1000;
  times[0].tv_nsec = times[1].tv_nsec = (ms % 1000) * 1000000;
  utimensat(AT_FDCWD, path.c_str(), times, 0);
}

// The stream so far must be a header and whole records.
void CheckWhole(const std::string& out, uint64_t records_read) {
  if (out.empty()) return;
  auto h = pc::pcap::ParseGlobalHeader(out);
  FUZZ_CHECK(h.ok(), "stream does not start with a header");
  const auto scan = pc::pcap::ScanRecords(
      *h, absl::string_view(out).substr(kGlobalHeaderSize));
  FUZZ_CHECK(!scan.corrupt(), scan.status.ToString());
  FUZZ_CHECK(scan.complete_bytes == out.size() - kGlobalHeaderSize,
             absl::StrCat("a record cut off at ", scan.complete_bytes, " of ",
                          out.size() - kGlobalHeaderSize));
  FUZZ_CHECK(
      scan.records == records_read,
      absl::StrCat(scan.records, " records, reader says ", records_read));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  pc::fuzz::FuzzInput in(data, size);
  const int max_files = 1 + in.Byte() % 5;
  GlobalHeader formats[2];
  formats[1].big_endian = true;
  formats[1].precision = pc::pcap::TimestampPrecision::kNano;
  const std::string dir = pc::pcap::fuzz::MakeTempDir("rrfuzz");
  auto path = [&](int i) {
    return absl::StrCat(dir, "/", pc::pcap::RingFileName("ring", i, max_files));
  };

  uint32_t ts = 1700000000;
  for (int i = 0; i < max_files; ++i) {
    const uint8_t how = in.Byte();
    if (how & 1) continue;  // this file does not exist (yet)
    std::string content;
    if (how & 2) {
      content = in.Bytes(in.Byte());
    } else {
      const GlobalHeader& h = formats[(how >> 2) & 1];
      // One read per statement: argument order is unspecified.
      const int n = in.Byte() % 5;
      const size_t record_size = 20 + in.Byte();
      content =
          pc::pcap::SerializeGlobalHeader(h) + Records(h, ts++, n, record_size);
      if (how & 8) content.resize(in.U16() % (content.size() + 1));
    }
    WriteAll(path(i), content, O_TRUNC);
    SetMtime(path(i), in.U16());
  }

  pc::pcap::RingReader::Options options;
  options.max_read_bytes = 64 + in.U16() % 4096;
  auto reader = pc::pcap::RingReader::Open(dir, "ring", max_files, options);
  FUZZ_CHECK(reader.ok(), reader.status().ToString());

  std::string out;
  char buf[4096];
  int writer = 0;  // the file tcpdump writes now
  int64_t clock_ms = 70000;
  for (int step = 0; step < 64 && !in.empty(); ++step) {
    switch (in.Byte() % 4) {
      case 0:
      case 1: {  // read
        const size_t cap = 1 + in.U16() % sizeof(buf);
        auto n = (*reader)->Read(buf, cap);
        if (n.ok() && *n > 0) {
          FUZZ_CHECK(*n <= cap, "read past cap");
          out.append(buf, *n);
        } else {
          CheckWhole(out, (*reader)->records_read());
        }
        FUZZ_CHECK((*reader)->bytes_read() == out.size(), "bytes_read");
        break;
      }
      case 2: {  // tcpdump appends to the current file
        const GlobalHeader& h = formats[0];
        const int n = 1 + in.Byte() % 3;
        const size_t record_size = in.Byte();
        std::string recs = Records(h, ts++, n, record_size);
        if (in.Bool()) recs.resize(in.U16() % (recs.size() + 1));
        WriteAll(path(writer), recs, O_APPEND);
        SetMtime(path(writer), clock_ms += 10);
        break;
      }
      case 3: {  // tcpdump moves on to the next file (reusing it) or a file
                 // disappears
        if (in.Bool()) {
          unlink(path(in.Byte() % max_files).c_str());
          break;
        }
        writer = (writer + 1) % max_files;
        const GlobalHeader& h = formats[0];
        WriteAll(path(writer),
                 pc::pcap::SerializeGlobalHeader(h) +
                     Records(h, ts++, in.Byte() % 3, 30),
                 O_TRUNC);
        SetMtime(path(writer), clock_ms += 10);
        break;
      }
    }
  }
  // Drain what is left.
  for (int i = 0; i < 1000; ++i) {
    auto n = (*reader)->Read(buf, sizeof(buf));
    if (!n.ok() || *n == 0) break;
    out.append(buf, *n);
  }
  CheckWhole(out, (*reader)->records_read());

  reader->reset();
  for (int i = 0; i < max_files; ++i) unlink(path(i).c_str());
  rmdir(dir.c_str());
  return 0;
}
