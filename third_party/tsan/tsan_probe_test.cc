// Checks the --config=tsan build itself: TSan still reports a real race, and
// reports nothing for threads that synchronize only through Debian's
// (uninstrumented) Abseil, whose locks third_party/tsan makes visible.
// Without TSan (the plain and ASan builds) there is nothing to check.
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "gtest/gtest.h"

namespace {

struct ProbeRun {
  int exit_code = -1;
  std::string output;
};

ProbeRun Probe(const std::string& mode) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string log = std::string(tmp ? tmp : "/tmp") + "/probe-" + mode;
  const std::string command =
      "third_party/tsan_probe " + mode + " > " + log + " 2>&1";
  const int status = std::system(command.c_str());
  ProbeRun run;
  run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  std::ifstream in(log);
  std::stringstream text;
  text << in.rdbuf();
  run.output = text.str();
  return run;
}

#if defined(__SANITIZE_THREAD__)
constexpr bool kTsan = true;
#else
constexpr bool kTsan = false;
#endif

TEST(TsanProbe, ReportsARealRace) {
  if (!kTsan) GTEST_SKIP() << "not a ThreadSanitizer build";
  ProbeRun run = Probe("race");
  EXPECT_EQ(run.exit_code, 66) << run.output;  // TSan's exit code
  EXPECT_NE(run.output.find("WARNING: ThreadSanitizer: data race"),
            std::string::npos)
      << run.output;
}

TEST(TsanProbe, AbseilSynchronizationIsVisible) {
  if (!kTsan) GTEST_SKIP() << "not a ThreadSanitizer build";
  ProbeRun run = Probe("synchronized");
  EXPECT_EQ(run.exit_code, 0) << run.output;
  EXPECT_EQ(run.output.find("ThreadSanitizer"), std::string::npos)
      << run.output;
}

}  // namespace
