// The progress bar of `capturectl download` on a terminal:
// RenderProgress() is a pure function of bytes, total, elapsed time and
// terminal width (unit-tested); ProgressBar writes it to a terminal at most
// ten times a second. Thread-compatible.
#ifndef CLI_PROGRESS_H_
#define CLI_PROGRESS_H_

#include <cstdint>
#include <string>

#include "absl/time/time.h"

namespace pc::cli {

// One line, at most `width` characters, no newline or carriage return.
// total > 0: "[=====>    ]  45% 1.2 MiB/2.7 MiB 3.4 MiB/s ETA 0:02";
// total == 0 (size unknown): "1.2 MiB 3.4 MiB/s 0:05" (elapsed).
std::string RenderProgress(uint64_t bytes, uint64_t total,
                           absl::Duration elapsed, int width);

// "0:07", "12:34", "1:02:03".
std::string HumanClock(absl::Duration d);

class ProgressBar {
 public:
  // Draws on `fd` (a terminal) when enabled; otherwise does nothing.
  ProgressBar(int fd, bool enabled, uint64_t total);
  void Update(uint64_t bytes);
  // The final state, then a newline.
  void Finish(uint64_t bytes);

 private:
  void Draw(uint64_t bytes);

  const int fd_;
  const bool enabled_;
  const uint64_t total_;
  const absl::Time start_;
  absl::Time last_draw_ = absl::InfinitePast();
};

}  // namespace pc::cli

#endif  // CLI_PROGRESS_H_
