// Paced UDP sender for the agent CPU benchmark: sends 64-byte datagrams to
// ADDRESS:9 at PPS packets per second for SECONDS seconds with sendmmsg, and
// prints how many it sent. Refuses any destination outside 198.18.0.0/15 (the
// test network of the local cluster), so it can never flood anything else.
//
//   udp_flood ADDRESS PPS SECONDS
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <algorithm>
#include <cstring>
#include <vector>

namespace {

double Now() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
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
    std::fprintf(stderr, "refusing %s: only 198.18.0.0/15 is allowed\n", argv[1]);
    return 2;
  }
  const long pps = std::atol(argv[2]);
  const double seconds = std::atof(argv[3]);
  if (pps <= 0 || pps > 2000000 || seconds <= 0 || seconds > 120) {
    std::fprintf(stderr, "PPS must be 1..2000000 and SECONDS 0..120\n");
    return 2;
  }
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  if (fd < 0) {
    std::perror("socket");
    return 1;
  }
  constexpr int kBatch = 64;
  char payload[64];
  std::memset(payload, 'x', sizeof(payload));
  std::vector<iovec> iov(kBatch, iovec{payload, sizeof(payload)});
  std::vector<mmsghdr> msgs(kBatch);
  for (int i = 0; i < kBatch; ++i) {
    msgs[i].msg_hdr = {};
    msgs[i].msg_hdr.msg_name = &to;
    msgs[i].msg_hdr.msg_namelen = sizeof(to);
    msgs[i].msg_hdr.msg_iov = &iov[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
  }
  const double start = Now();
  const double end = start + seconds;
  long sent = 0;
  while (true) {
    const double now = Now();
    if (now >= end) break;
    const long due = static_cast<long>((now - start) * pps);
    if (sent >= due) {
      usleep(200);
      continue;
    }
    const int n = sendmmsg(fd, msgs.data(), std::min<long>(kBatch, due - sent), 0);
    if (n > 0) sent += n;
  }
  close(fd);
  std::printf("sent %ld packets in %.2f s (%.0f pps)\n", sent, Now() - start,
              sent / (Now() - start));
  return 0;
}
