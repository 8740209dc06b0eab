// A by-hand throughput check (not a test): PUTs N objects of SIZE KiB with T
// threads through one S3Client and prints MB/s. Against a running server:
//
//   s3_put_bench ENDPOINT BUCKET ACCESS_KEY SECRET_KEY [N=200] [KIB=256] [T=1]
#include <atomic>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "common/s3/s3_client.h"

int main(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr,
                 "usage: s3_put_bench ENDPOINT BUCKET ACCESS_KEY SECRET_KEY "
                 "[N=200] [KIB=256] [THREADS=1]\n");
    return 2;
  }
  int n = 200, kib = 256, threads = 1;
  if ((argc > 5 && !absl::SimpleAtoi(argv[5], &n)) ||
      (argc > 6 && !absl::SimpleAtoi(argv[6], &kib)) ||
      (argc > 7 && !absl::SimpleAtoi(argv[7], &threads)) || n < 1 || kib < 1 ||
      threads < 1) {
    std::fprintf(stderr, "bad numbers\n");
    return 2;
  }
  pc::s3::S3Config config;
  config.endpoint = argv[1];
  config.bucket = argv[2];
  config.access_key = argv[3];
  config.secret_key = argv[4];
  auto client = pc::s3::S3Client::Create(config);
  if (!client.ok()) {
    std::fprintf(stderr, "%s\n", client.status().ToString().c_str());
    return 1;
  }
  std::string body(static_cast<size_t>(kib) << 10, 'x');
  for (size_t i = 0; i < body.size(); ++i) body[i] = static_cast<char>(i * 131);
  std::atomic<int> next{0}, failed{0};
  absl::Time start = absl::Now();
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&] {
      for (int i; (i = next++) < n;) {
        auto put = (*client)->Put(absl::StrFormat("bench/%06d", i), body, {});
        if (!put.ok()) {
          if (failed++ == 0) {
            std::fprintf(stderr, "%s\n", put.status().ToString().c_str());
          }
        }
      }
    });
  }
  for (auto& w : workers) w.join();
  double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  double mb = static_cast<double>(n) * body.size() / 1e6;
  std::printf(
      "%d PUTs of %d KiB, %d thread(s): %.2f s, %.1f MB/s (%.1f MiB/s), "
      "%d failed\n",
      n, kib, threads, seconds, mb / seconds, mb * 1e6 / (1 << 20) / seconds,
      failed.load());
  return failed.load() == 0 ? 0 : 1;
}
