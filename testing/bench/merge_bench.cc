// Merge benchmark (prints figures; not a test): writes FILES pcap files of
// MB megabytes each with an IMIX-like mix of packet sizes and interleaved
// timestamps, then merges them into one pcapng, alternately with our merger
// (common/pcap/pcapng_merger.h, reading the files as the servers' sources
// do) and with `mergecap -F pcapng -w`, RUNS times each, and prints both
// rates (input bytes / wall time) and their ratio. capinfos counts the
// packets of both outputs, which must agree with what was written.
//
//   merge_bench [--files 8] [--mb 64] [--runs 3] [--read_kib 1024]
//               [--dir DIR] [--keep]
// --read_kib: bytes asked of each input per read (the servers use 64).
#include <fcntl.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "common/pcap/byte_source.h"
#include "common/pcap/pcap_format.h"
#include "common/pcap/pcapng_merger.h"

extern char** environ;

namespace {

using Clock = std::chrono::steady_clock;

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "merge_bench: %s: %s\n", what.c_str(),
               std::strerror(errno));
  std::exit(1);
}

void WriteAll(int fd, const char* p, size_t n) {
  while (n > 0) {
    const ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) Die("write");
    p += w;
    n -= static_cast<size_t>(w);
  }
}

// A pcap file read in large blocks, as a download reads a capture.
class FileSource final : public pc::pcap::ByteSource {
 public:
  explicit FileSource(const std::string& path)
      : fd_(open(path.c_str(), O_RDONLY | O_CLOEXEC)) {
    if (fd_ < 0) Die("open " + path);
  }
  ~FileSource() override { close(fd_); }
  absl::StatusOr<size_t> Read(std::string* out, size_t max_bytes) override {
    const size_t at = out->size();
    out->resize(at + max_bytes);
    ssize_t n;
    do {
      n = read(fd_, &(*out)[at], max_bytes);
    } while (n < 0 && errno == EINTR);
    if (n < 0) Die("read");
    out->resize(at + static_cast<size_t>(n));
    if (n == 0) done_ = true;
    return static_cast<size_t>(n);
  }
  bool Done() override { return done_; }

 private:
  int fd_;
  bool done_ = false;
};

// Ethernet/IPv4/UDP-looking frames; sizes 7:4:1 of 60, 594 and 1514 bytes
// (simple IMIX), 1 to 20 µs apart, so every file covers about the same span.
uint64_t WriteCapture(const std::string& path, uint64_t bytes, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> mix(0, 11);
  std::uniform_int_distribution<int> gap_us(1, 20);
  pc::pcap::GlobalHeader header;
  std::string buf = pc::pcap::SerializeGlobalHeader(header);
  std::string frame(1514, '\0');
  for (size_t i = 0; i < frame.size(); ++i) {
    frame[i] = static_cast<char>(i * 7 + seed);
  }
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) Die("create " + path);
  uint64_t written = buf.size();
  uint64_t packets = 0;
  uint64_t ts_us = 1700000000ull * 1000000 + seed;
  while (written < bytes) {
    const int m = mix(rng);
    const uint32_t size = m < 7 ? 60 : m < 11 ? 594 : 1514;
    ts_us += static_cast<uint64_t>(gap_us(rng));
    pc::pcap::RecordHeader r;
    r.ts_sec = static_cast<uint32_t>(ts_us / 1000000);
    r.ts_frac = static_cast<uint32_t>(ts_us % 1000000);
    r.caplen = size;
    r.len = size;
    pc::pcap::AppendRecordHeader(header, r, &buf);
    buf.append(frame, 0, size);
    written += pc::pcap::kRecordHeaderSize + size;
    ++packets;
    if (buf.size() >= (4u << 20)) {
      WriteAll(fd, buf.data(), buf.size());
      buf.clear();
    }
  }
  WriteAll(fd, buf.data(), buf.size());
  close(fd);
  return packets;
}

double CpuSeconds(const rusage& u) {
  return u.ru_utime.tv_sec + u.ru_utime.tv_usec / 1e6 + u.ru_stime.tv_sec +
         u.ru_stime.tv_usec / 1e6;
}

// CPU seconds (user + sys) of the last merge, ours or mergecap's.
double last_cpu = 0;

size_t read_chunk = 1 << 20;

double MergeOurs(const std::vector<std::string>& inputs,
                 const std::string& out_path, uint64_t* packets) {
  rusage before;
  getrusage(RUSAGE_SELF, &before);
  const auto start = Clock::now();
  std::vector<pc::pcap::MergeInput> merge_inputs;
  for (size_t i = 0; i < inputs.size(); ++i) {
    pc::pcap::MergeInput in;
    in.source = std::make_unique<FileSource>(inputs[i]);
    in.interface.name = "bench/pod-" + std::to_string(i);
    merge_inputs.push_back(std::move(in));
  }
  pc::pcap::MergeOptions options;
  options.read_chunk = read_chunk;
  pc::pcap::PcapngMerger merger(std::move(merge_inputs), options);
  const int fd = open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) Die("create " + out_path);
  std::string buf;
  buf.reserve(2 << 20);
  for (;;) {
    buf.clear();
    auto n = merger.Read(&buf, 1 << 20);
    if (!n.ok()) {
      std::fprintf(stderr, "merge_bench: %s\n", n.status().ToString().c_str());
      std::exit(1);
    }
    if (*n == 0) break;
    WriteAll(fd, buf.data(), buf.size());
  }
  close(fd);
  *packets = merger.packets();
  const double wall =
      std::chrono::duration<double>(Clock::now() - start).count();
  rusage after;
  getrusage(RUSAGE_SELF, &after);
  last_cpu = CpuSeconds(after) - CpuSeconds(before);
  return wall;
}

// Runs argv; stdout to `out_path` (or inherited when empty). Exit status.
int Run(const std::vector<std::string>& args, const std::string& out_path) {
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  if (!out_path.empty()) {
    posix_spawn_file_actions_addopen(&actions, 1, out_path.c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
  }
  pid_t pid;
  if (posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ) !=
      0) {
    Die("spawn " + args[0]);
  }
  posix_spawn_file_actions_destroy(&actions);
  int status = 0;
  rusage usage;
  while (wait4(pid, &status, 0, &usage) < 0) {
    if (errno != EINTR) Die("wait4");
  }
  last_cpu = CpuSeconds(usage);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

double MergeMergecap(const std::vector<std::string>& inputs,
                     const std::string& out_path) {
  std::vector<std::string> argv = {"/usr/bin/mergecap", "-F", "pcapng", "-w",
                                   out_path};
  argv.insert(argv.end(), inputs.begin(), inputs.end());
  const auto start = Clock::now();
  if (Run(argv, "") != 0) {
    std::fprintf(stderr, "merge_bench: mergecap failed\n");
    std::exit(1);
  }
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// "Number of packets:" as capinfos -M -c prints it.
uint64_t CapinfosPackets(const std::string& path, const std::string& dir) {
  const std::string out = dir + "/capinfos.txt";
  if (Run({"/usr/bin/capinfos", "-M", "-c", path}, out) != 0) {
    std::fprintf(stderr, "merge_bench: capinfos failed on %s\n", path.c_str());
    std::exit(1);
  }
  FILE* f = std::fopen(out.c_str(), "r");
  char line[512];
  uint64_t n = 0;
  while (f != nullptr && std::fgets(line, sizeof(line), f) != nullptr) {
    const char* p = std::strstr(line, "Number of packets:");
    if (p != nullptr) n = std::strtoull(p + 18, nullptr, 10);
  }
  if (f != nullptr) std::fclose(f);
  return n;
}

uint64_t FileSize(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  int files = 8;
  int mb = 64;
  int runs = 3;
  bool keep = false;
  std::string dir;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "merge_bench: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--files") {
      files = std::atoi(next().c_str());
    } else if (a == "--mb") {
      mb = std::atoi(next().c_str());
    } else if (a == "--runs") {
      runs = std::atoi(next().c_str());
    } else if (a == "--read_kib") {
      read_chunk = static_cast<size_t>(std::atoi(next().c_str())) * 1024;
    } else if (a == "--dir") {
      dir = next();
    } else if (a == "--keep") {
      keep = true;
    } else {
      std::fprintf(stderr,
                   "usage: merge_bench [--files N] [--mb M] [--runs R] "
                   "[--read_kib K] [--dir DIR] [--keep]\n");
      return 2;
    }
  }
  if (files < 1 || files > 256 || mb < 1 || runs < 1 || read_chunk == 0) {
    std::fprintf(stderr, "merge_bench: bad --files/--mb/--runs\n");
    return 2;
  }
  if (dir.empty()) {
    char tmpl[] = "/tmp/pc-merge-bench.XXXXXX";
    if (mkdtemp(tmpl) == nullptr) Die("mkdtemp");
    dir = tmpl;
  }
  std::vector<std::string> inputs;
  uint64_t in_bytes = 0;
  uint64_t in_packets = 0;
  for (int i = 0; i < files; ++i) {
    inputs.push_back(dir + "/in" + std::to_string(i) + ".pcap");
    in_packets += WriteCapture(inputs.back(), uint64_t(mb) << 20,
                               static_cast<uint32_t>(i + 1));
    in_bytes += FileSize(inputs.back());
  }
  const double in_mb = in_bytes / 1e6;
  std::printf(
      "input: %d pcap files, %.1f MB, %llu packets (IMIX 60/594/1514)\n", files,
      in_mb, static_cast<unsigned long long>(in_packets));
  const std::string ours_out = dir + "/ours.pcapng";
  const std::string theirs_out = dir + "/mergecap.pcapng";
  // Warm the page cache for both alike.
  uint64_t merged_packets = 0;
  MergeOurs(inputs, ours_out, &merged_packets);
  std::vector<double> ours, theirs, ours_cpu, theirs_cpu;
  for (int r = 0; r < runs; ++r) {
    theirs.push_back(MergeMergecap(inputs, theirs_out));
    theirs_cpu.push_back(last_cpu);
    ours.push_back(MergeOurs(inputs, ours_out, &merged_packets));
    ours_cpu.push_back(last_cpu);
    std::printf(
        "run %d: ours %.3f s (%.0f MB/s, %.2f s CPU), mergecap %.3f s "
        "(%.0f MB/s, %.2f s CPU)\n",
        r + 1, ours.back(), in_mb / ours.back(), ours_cpu.back(), theirs.back(),
        in_mb / theirs.back(), theirs_cpu.back());
  }
  const double ours_rate = in_mb / Median(ours);
  const double theirs_rate = in_mb / Median(theirs);
  const uint64_t ours_count = CapinfosPackets(ours_out, dir);
  const uint64_t theirs_count = CapinfosPackets(theirs_out, dir);
  std::printf("output: ours %.1f MB, mergecap %.1f MB\n",
              FileSize(ours_out) / 1e6, FileSize(theirs_out) / 1e6);
  std::printf("packets (capinfos): ours %llu, mergecap %llu, written %llu%s\n",
              static_cast<unsigned long long>(ours_count),
              static_cast<unsigned long long>(theirs_count),
              static_cast<unsigned long long>(in_packets),
              ours_count == theirs_count && ours_count == in_packets
                  ? " (equal)"
                  : " (MISMATCH)");
  std::printf(
      "merge MB/s (median of %d): ours %.0f, mergecap %.0f, ratio %.2f "
      "(target >= 0.8)\n",
      runs, ours_rate, theirs_rate, ours_rate / theirs_rate);
  std::printf("merge MB per CPU second (median): ours %.0f, mergecap %.0f\n",
              in_mb / Median(ours_cpu), in_mb / Median(theirs_cpu));
  if (!keep) {
    for (const auto& f : inputs) unlink(f.c_str());
    unlink(ours_out.c_str());
    unlink(theirs_out.c_str());
    unlink((dir + "/capinfos.txt").c_str());
    rmdir(dir.c_str());
  }
  return ours_count == theirs_count && ours_count == in_packets ? 0 : 1;
}
