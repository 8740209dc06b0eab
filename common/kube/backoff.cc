#include "common/kube/backoff.h"

#include <algorithm>

namespace pc {
namespace kube {

Backoff::Backoff(absl::Duration initial, absl::Duration max, double jitter,
                 uint64_t seed)
    : initial_(initial),
      max_(std::max(initial, max)),
      jitter_(std::max(0.0, jitter)),
      base_(initial),
      rng_(seed) {}

absl::Duration Backoff::Next() {
  absl::Duration base = base_;
  base_ = std::min(base_ * 2, max_);
  // 53 random bits scaled into [0, 1); uniform_real_distribution may return 1.
  double u = static_cast<double>(rng_() >> 11) * (1.0 / 9007199254740992.0);
  return base + base * (jitter_ * u);
}

}  // namespace kube
}  // namespace pc
