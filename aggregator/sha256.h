// SHA-256 (FIPS 180-4), for keys that stand in for secrets: the
// authenticator caches answers under a token's digest, never the token.
// Pure function; thread-safe.
#ifndef AGGREGATOR_SHA256_H_
#define AGGREGATOR_SHA256_H_

#include <array>
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"

namespace pc::aggregator {

using Sha256Digest = std::array<uint8_t, 32>;

Sha256Digest Sha256(absl::string_view data);

// Lower-case hex of a digest (64 characters).
std::string ToHex(const Sha256Digest& digest);

}  // namespace pc::aggregator

#endif  // AGGREGATOR_SHA256_H_
