// SHA-256 (FIPS 180-4), so that secrets such as bearer tokens can key caches
// by digest without being kept. Self-contained: the images carry no
// cryptography library of their own for this one function. Pure; thread-safe.
#ifndef COMMON_SHA256_H_
#define COMMON_SHA256_H_

#include <string>

#include "absl/strings/string_view.h"

namespace pc {

// The 32-byte digest of `data`.
std::string Sha256(absl::string_view data);

// The digest as 64 lower-case hex digits.
std::string Sha256Hex(absl::string_view data);

}  // namespace pc

#endif  // COMMON_SHA256_H_
