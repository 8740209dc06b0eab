// Jittered exponential backoff for re-watching and re-listing, in the shape of
// client-go's reflector (0.8 s doubling to 30 s, reset after a healthy period).
// Pure computation, deterministic for a given seed; thread-compatible.
#ifndef COMMON_KUBE_BACKOFF_H_
#define COMMON_KUBE_BACKOFF_H_

#include <cstdint>
#include <random>

#include "absl/time/time.h"

namespace pc {
namespace kube {

class Backoff {
 public:
  // The n-th delay (from 0) after a Reset() is base_n * (1 + jitter * u) with
  // base_n = min(initial * 2^n, max) and u uniform in [0, 1): at least base_n
  // and below base_n * (1 + jitter). Jitter spreads the reconnects of many
  // agents after an API server outage.
  Backoff(absl::Duration initial, absl::Duration max, double jitter,
          uint64_t seed);
  Backoff()
      : Backoff(absl::Milliseconds(800), absl::Seconds(30), 0.2,
                std::random_device()()) {}

  // The delay to wait before the next attempt; advances the sequence.
  absl::Duration Next();

  // Back to the initial delay (after a healthy watch).
  void Reset() { base_ = initial_; }

 private:
  const absl::Duration initial_;
  const absl::Duration max_;
  const double jitter_;
  absl::Duration base_;
  std::mt19937_64 rng_;
};

}  // namespace kube
}  // namespace pc

#endif  // COMMON_KUBE_BACKOFF_H_
