#include "cli/progress.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "cli/format.h"

namespace pc::cli {

std::string HumanClock(absl::Duration d) {
  int64_t s = std::max<int64_t>(0, absl::ToInt64Seconds(d));
  if (s >= 3600) {
    return absl::StrFormat("%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60);
  }
  return absl::StrFormat("%d:%02d", s / 60, s % 60);
}

std::string RenderProgress(uint64_t bytes, uint64_t total,
                           absl::Duration elapsed, int width) {
  const double seconds = absl::ToDoubleSeconds(elapsed);
  const double rate = seconds > 0 ? static_cast<double>(bytes) / seconds : 0;
  const std::string rate_text =
      rate > 0 ? absl::StrCat(HumanBytes(static_cast<uint64_t>(rate)), "/s")
               : "-/s";
  std::string text;
  if (total == 0) {
    text = absl::StrCat(HumanBytes(bytes), " ", rate_text, " ",
                        HumanClock(elapsed));
    return text.size() > static_cast<size_t>(std::max(width, 0))
               ? text.substr(0, static_cast<size_t>(std::max(width, 0)))
               : text;
  }
  const uint64_t done = std::min(bytes, total);
  const int percent = static_cast<int>(done * 100 / total);
  std::string eta = "ETA -:--";
  if (done == total) {
    eta = absl::StrCat("in ", HumanClock(elapsed));
  } else if (rate > 0) {
    eta = absl::StrCat(
        "ETA ",
        HumanClock(absl::Seconds(static_cast<double>(total - done) / rate)));
  }
  text = absl::StrFormat("%3d%% %s/%s %s %s", percent, HumanBytes(bytes),
                         HumanBytes(total), rate_text, eta);
  // The bar takes what the numbers leave, between 10 and 40 columns; on a
  // narrow terminal the numbers alone.
  const int room = width - static_cast<int>(text.size()) - 3;
  if (room < 10) {
    return text.size() > static_cast<size_t>(std::max(width, 0))
               ? text.substr(0, static_cast<size_t>(std::max(width, 0)))
               : text;
  }
  const int bar = std::min(room, 40);
  const int filled =
      static_cast<int>(done * static_cast<uint64_t>(bar) / total);
  std::string drawn(static_cast<size_t>(filled), '=');
  if (filled < bar) {
    drawn += '>';
    drawn += std::string(static_cast<size_t>(bar - filled - 1), ' ');
  }
  return absl::StrCat("[", drawn, "] ", text);
}

ProgressBar::ProgressBar(int fd, bool enabled, uint64_t total)
    : fd_(fd), enabled_(enabled), total_(total), start_(absl::Now()) {}

void ProgressBar::Draw(uint64_t bytes) {
  winsize ws{};
  int width =
      ioctl(fd_, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0 ? ws.ws_col : 80;
  // Carriage return, the line, then erase the rest of the old line.
  std::string line = absl::StrCat(
      "\r", RenderProgress(bytes, total_, absl::Now() - start_, width - 1),
      "\x1b[K");
  ssize_t ignored = write(fd_, line.data(), line.size());
  (void)ignored;  // a progress bar that cannot be drawn is no error
}

void ProgressBar::Update(uint64_t bytes) {
  if (!enabled_) return;
  absl::Time now = absl::Now();
  if (now - last_draw_ < absl::Milliseconds(100)) return;
  last_draw_ = now;
  Draw(bytes);
}

void ProgressBar::Finish(uint64_t bytes) {
  if (!enabled_) return;
  Draw(bytes);
  ssize_t ignored = write(fd_, "\n", 1);
  (void)ignored;
}

}  // namespace pc::cli
