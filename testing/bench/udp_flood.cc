// Paced UDP sender for the agent CPU benchmark: sends 64-byte datagrams to
// ADDRESS:9 at PPS packets per second for SECONDS seconds with sendmmsg, and
// prints how many it sent. Refuses any destination outside 198.18.0.0/15 (the
// test network of the local cluster), so it can never flood anything else.
//
// Each payload starts with the 8 bytes "PCFLOOD1" and then the datagram's
// sequence number (0, 1, 2, ...; 8 bytes, big-endian), so a reader of the
// capture can tell which datagrams it holds and which are missing even after
// a ring of files has wrapped. The rest of the payload is 'x'.
//
//   udp_flood ADDRESS PPS SECONDS
// Output (one line): "sent <N> packets in <T> s (<R> pps)"
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace {

constexpr int kBatch = 64;
constexpr size_t kPayload = 64;
constexpr char kMagic[8] = {'P', 'C', 'F', 'L', 'O', 'O', 'D', '1'};

double Now() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

void PutSeq(unsigned char* payload, uint64_t seq) {
  for (int i = 0; i < 8; ++i) {
    payload[sizeof(kMagic) + i] =
        static_cast<unsigned char>(seq >> (56 - 8 * i));
  }
}

// Whole-string parse of a positive number; false on junk.
bool ParseNumber(const char* text, double* out) {
  char* end = nullptr;
  errno = 0;
  const double v = std::strtod(text, &end);
  if (errno != 0 || end == text || *end != '\0') return false;
  *out = v;
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s ADDRESS PPS SECONDS\n", argv[0]);
    return 2;
  }
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(9);  // discard
  if (inet_pton(AF_INET, argv[1], &to.sin_addr) != 1) {
    std::fprintf(stderr, "not an IPv4 address: %s\n", argv[1]);
    return 2;
  }
  const uint32_t addr = ntohl(to.sin_addr.s_addr);
  if ((addr & 0xfffe0000u) != 0xc6120000u) {  // 198.18.0.0/15
    std::fprintf(stderr, "refusing %s: only 198.18.0.0/15 is allowed\n",
                 argv[1]);
    return 2;
  }
  double pps = 0;
  double seconds = 0;
  if (!ParseNumber(argv[2], &pps) || !ParseNumber(argv[3], &seconds) ||
      pps < 1 || pps > 2000000 || seconds <= 0 || seconds > 120) {
    std::fprintf(stderr, "PPS must be 1..2000000 and SECONDS in (0, 120]\n");
    return 2;
  }
  const int fd = socket(AF_INET, SOCK_DGRAM, 0);
  if (fd < 0) {
    std::perror("socket");
    return 1;
  }
  std::vector<unsigned char> payloads(kBatch * kPayload, 'x');
  std::vector<iovec> iov(kBatch);
  std::vector<mmsghdr> msgs(kBatch);
  for (int i = 0; i < kBatch; ++i) {
    unsigned char* p = &payloads[i * kPayload];
    std::memcpy(p, kMagic, sizeof(kMagic));
    iov[i] = iovec{p, kPayload};
    msgs[i].msg_hdr = {};
    msgs[i].msg_hdr.msg_name = &to;
    msgs[i].msg_hdr.msg_namelen = sizeof(to);
    msgs[i].msg_hdr.msg_iov = &iov[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
  }
  const double start = Now();
  const double end = start + seconds;
  uint64_t sent = 0;
  uint64_t errors = 0;
  // Bounded by time: every pass re-reads the clock and stops at `end`.
  while (true) {
    const double now = Now();
    if (now >= end) break;
    const uint64_t due = static_cast<uint64_t>((now - start) * pps);
    if (sent >= due) {
      usleep(200);
      continue;
    }
    const int count = static_cast<int>(std::min<uint64_t>(kBatch, due - sent));
    for (int i = 0; i < count; ++i) PutSeq(&payloads[i * kPayload], sent + i);
    const int n = sendmmsg(fd, msgs.data(), count, 0);
    if (n > 0) {
      sent += n;  // unsent slots are refilled with the same numbers next pass
    } else {
      ++errors;
      usleep(200);
    }
  }
  const double elapsed = Now() - start;
  close(fd);
  std::printf("sent %llu packets in %.2f s (%.0f pps)",
              static_cast<unsigned long long>(sent), elapsed, sent / elapsed);
  if (errors > 0)
    std::printf(", %llu failed sendmmsg calls",
                static_cast<unsigned long long>(errors));
  std::printf("\n");
  return 0;
}
