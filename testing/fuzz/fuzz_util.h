// Helpers for fuzz harnesses: FuzzInput consumes structured values from the
// fuzzer's bytes, and FUZZ_CHECK aborts (a crash libFuzzer saves, a failure
// for the corpus test) when a harness's invariant does not hold.
// Header-only; thread-compatible.
#ifndef TESTING_FUZZ_FUZZ_UTIL_H_
#define TESTING_FUZZ_FUZZ_UTIL_H_

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

// Aborts with the condition and a message when `cond` is false.
#define FUZZ_CHECK(cond, msg)                                           \
  do {                                                                  \
    if (!(cond)) pc::fuzz::CheckFailed(__FILE__, __LINE__, #cond, msg); \
  } while (0)

// Present when a sanitizer runtime is linked in.
extern "C" void __sanitizer_report_error_summary(const char* summary)
    __attribute__((weak));

namespace pc::fuzz {

// Prints the failure and aborts. The message also goes to the sanitizer's
// report stream, which survives libFuzzer's -close_fd_mask=2 (testing/fuzz.sh
// silences the code's own stderr logs that way).
[[noreturn]] inline void CheckFailed(const char* file, int line,
                                     const char* cond, const std::string& msg) {
  const std::string text = std::string(file) + ":" + std::to_string(line) +
                           ": FUZZ_CHECK(" + cond + ") failed: " + msg;
  std::fprintf(stderr, "%s\n", text.c_str());
  if (__sanitizer_report_error_summary) {
    __sanitizer_report_error_summary(text.c_str());
  }
  std::abort();
}

// Reads values from the front of the input; past the end every value is 0 or
// empty, so a harness never has to check sizes.
class FuzzInput {
 public:
  FuzzInput(const uint8_t* data, size_t size) : data_(data), size_(size) {}

  bool empty() const { return pos_ >= size_; }
  size_t remaining() const { return empty() ? 0 : size_ - pos_; }

  uint8_t Byte() { return empty() ? 0 : data_[pos_++]; }
  bool Bool() { return (Byte() & 1) != 0; }
  uint16_t U16() { return static_cast<uint16_t>(Byte() | (Byte() << 8)); }
  uint32_t U32() { return U16() | (static_cast<uint32_t>(U16()) << 16); }
  uint64_t U64() { return U32() | (static_cast<uint64_t>(U32()) << 32); }

  // Up to n bytes (fewer at the end).
  std::string Bytes(size_t n) {
    if (n > remaining()) n = remaining();
    std::string out(reinterpret_cast<const char*>(data_ + pos_), n);
    pos_ += n;
    return out;
  }
  // A 16-bit little-endian length, then that many bytes.
  std::string LengthPrefixed() { return Bytes(U16()); }
  std::string Rest() { return Bytes(remaining()); }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

}  // namespace pc::fuzz

#endif  // TESTING_FUZZ_FUZZ_UTIL_H_
