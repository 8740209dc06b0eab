#include "common/capture_layout.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/kube/names.h"
#include "gtest/gtest.h"

namespace pc {
namespace {

TEST(RunDirName, RoundTripsAndRejectsLookalikes) {
  EXPECT_EQ(RunDirName(3, 5), "run-3-w5");
  int run, n;
  ASSERT_TRUE(ParseRunDirName("run-12-w100", &run, &n));
  EXPECT_EQ(run, 12);
  EXPECT_EQ(n, 100);
  for (const char* bad : {"run-0-w5", "run-1-w0", "run-01-w5", "run-1-w5x",
                          "run-1", "run--1-w5", "../run-1-w5", "run-1-w5/.."}) {
    EXPECT_FALSE(ParseRunDirName(bad, &run, &n)) << bad;
  }
}

TEST(CaptureId, ValidIdsAreSafeDirectoryNames) {
  const std::string id =
      MakeCaptureId("default", "web-1.example",
                    "0a1b2c3d-0000-4000-8000-00000000abcd", 1764342877123);
  EXPECT_EQ(id, "default_web-1.example_0a1b2c3d_1764342877123");
  EXPECT_TRUE(IsValidCaptureId(id));
  for (const char* bad :
       {"", "..", "a_b_0a1b2c3d", "a/b_c_0a1b2c3d_1", "a_b_0A1B2C3D_1",
        "a_b_0a1b2c3d_x", "a_b_0a1b2c3d_1_2", "A_b_0a1b2c3d_1",
        "a_b_0a1b2c3d_0"}) {
    EXPECT_FALSE(IsValidCaptureId(bad)) << bad;
  }
}

// The longest names Kubernetes allows: a 63-character namespace (a DNS label)
// and a 253-character pod name (a DNS subdomain, dots allowed).
std::string MaxNamespace() { return std::string(63, 'n'); }
std::string MaxPodName() {
  // 63 + 1 + 63 + 1 + 63 + 1 + 61 = 253: four labels of distinct letters.
  return absl::StrCat(std::string(63, 'a'), ".", std::string(63, 'b'), ".",
                      std::string(63, 'c'), ".", std::string(61, 'd'));
}

TEST(CaptureId, MaximalNamesGiveADirectoryNameOfAtMost200Bytes) {
  const std::string ns = MaxNamespace();
  const std::string pod = MaxPodName();
  ASSERT_EQ(pod.size(), 253u);
  ASSERT_TRUE(kube::IsDns1123Subdomain(pod)) << pod;
  const std::string id = MakeCaptureId(
      ns, pod, "0a1b2c3d-0000-4000-8000-00000000abcd", 1764342877123);
  EXPECT_LE(id.size(), 200u) << id;
  EXPECT_TRUE(IsValidCaptureId(id)) << id;
  // The format is part of the on-disk layout: pinned.
  EXPECT_EQ(
      id, absl::StrCat(ns, "_", std::string(63, 'a'), ".", std::string(36, 'b'),
                       "-8b50ab2ca1b8_0a1b2c3d_1764342877123"));
  // Readable: namespace, the start of the pod name, uid prefix, start time.
  EXPECT_EQ(id.rfind(ns + "_" + pod.substr(0, 60), 0), 0u) << id;
  EXPECT_NE(id.find("_0a1b2c3d_1764342877123"), std::string::npos) << id;
  // And a directory of that name can be made, with room for the run files.
  const char* tmp = getenv("TEST_TMPDIR");
  const std::string dir = absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/", id);
  ASSERT_EQ(mkdir(dir.c_str(), 0700), 0) << dir << ": " << strerror(errno);
  EXPECT_EQ(mkdir((dir + "/run-1-w10").c_str(), 0700), 0) << strerror(errno);
  rmdir((dir + "/run-1-w10").c_str());
  rmdir(dir.c_str());
}

TEST(CaptureId, ShortenedIdsStayUniqueAndStable) {
  const std::string ns = MaxNamespace();
  const std::string a = std::string(200, 'x') + "-a";
  const std::string b = std::string(200, 'x') + "-b";
  const std::string uid = "0a1b2c3d-0000-4000-8000-00000000abcd";
  // Same namespace, uid prefix and start: only the pod names' tails differ.
  const std::string id_a = MakeCaptureId(ns, a, uid, 1);
  const std::string id_b = MakeCaptureId(ns, b, uid, 1);
  EXPECT_NE(id_a, id_b);
  EXPECT_EQ(id_a, MakeCaptureId(ns, a, uid, 1));
  EXPECT_TRUE(IsValidCaptureId(id_a)) << id_a;
  EXPECT_TRUE(IsValidCaptureId(id_b)) << id_b;
  // Cut right after a dot: the dot goes too, or the pod part would hold
  // ".-" and not be a DNS subdomain (nor a valid id).
  const std::string dotted = std::string(155, 'x') + "." + std::string(97, 'y');
  const std::string id_dotted =
      MakeCaptureId("default", dotted, uid, 1764342877123);
  EXPECT_TRUE(IsValidCaptureId(id_dotted)) << id_dotted;
  EXPECT_EQ(id_dotted.find(".-"), std::string::npos) << id_dotted;
}

TEST(CaptureId, ReadableWhileItFitsShortenedAtTheFirstByteOver) {
  const std::string uid = "0a1b2c3d-0000-4000-8000-00000000abcd";
  const int64_t ms = 1764342877123;  // 13 digits
  const std::string ns = "default";
  // "default_" + pod + "_0a1b2c3d_1764342877123" = 31 + pod bytes.
  const std::string fits(200 - 31, 'f');
  const std::string over(200 - 31 + 1, 'f');
  EXPECT_EQ(MakeCaptureId(ns, fits, uid, ms),
            absl::StrCat(ns, "_", fits, "_0a1b2c3d_", ms));
  const std::string shortened = MakeCaptureId(ns, over, uid, ms);
  EXPECT_LE(shortened.size(), 200u);
  EXPECT_EQ(shortened.find(over), std::string::npos) << shortened;
  EXPECT_TRUE(IsValidCaptureId(shortened)) << shortened;
}

TEST(CaptureId, AcceptsEveryOldIdThatIsADirectoryName) {
  // Older agents wrote "<ns>_<pod>_<uid8>_<ms>" whatever the length; those
  // up to NAME_MAX (255) bytes exist on disks and in aggregators.
  const std::string old_long =
      absl::StrCat(MaxNamespace(), "_", std::string(168, 'p'), "_0a1b2c3d_",
                   int64_t{1764342877123});
  ASSERT_EQ(old_long.size(), 255u);
  EXPECT_TRUE(IsValidCaptureId(old_long));
  // One byte more could never have been a directory: refused before any
  // mkdir, with the rest of the checks.
  const std::string too_long =
      absl::StrCat(MaxNamespace(), "_", std::string(169, 'p'), "_0a1b2c3d_",
                   int64_t{1764342877123});
  EXPECT_FALSE(IsValidCaptureId(too_long));
}

}  // namespace
}  // namespace pc
