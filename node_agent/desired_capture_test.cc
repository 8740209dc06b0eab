#include "node_agent/desired_capture.h"

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace pc::agent {
namespace {

PodView RunningPod(const char* annotation) {
  PodView pod;
  pod.ns = "default";
  pod.name = "web-1";
  pod.uid = "0a1b2c3d-0000-4000-8000-00000000abcd";
  pod.node = "node-a";
  pod.phase = "Running";
  pod.ip = "198.18.1.2";
  if (annotation) pod.annotation = annotation;
  return pod;
}

DecideOptions Options(int max_files, bool allow_host_network) {
  DecideOptions options;
  options.max_files = max_files;
  options.allow_host_network = allow_host_network;
  return options;
}

TEST(DecideCapture, RunningAnnotatedPodIsCaptured) {
  Desired d = DecideCapture(RunningPod("5"), {});
  EXPECT_EQ(d.decision, Decision::kCapture);
  EXPECT_EQ(d.spec.max_files, 5);
  EXPECT_EQ(d.spec.ip, "198.18.1.2");
  EXPECT_EQ(d.spec.pod, "web-1");
}

TEST(DecideCapture, NoAnnotationDeletedOrFinishedWantsNothing) {
  EXPECT_EQ(DecideCapture(RunningPod(nullptr), {}).decision, Decision::kNone);
  PodView deleting = RunningPod("5");
  deleting.deleting = true;
  EXPECT_EQ(DecideCapture(deleting, {}).decision, Decision::kNone);
  PodView done = RunningPod("5");
  done.phase = "Succeeded";
  EXPECT_EQ(DecideCapture(done, {}).decision, Decision::kNone);
}

TEST(DecideCapture, PendingOrNoIpWaits) {
  PodView pending = RunningPod("5");
  pending.phase = "Pending";
  Desired d = DecideCapture(pending, {});
  EXPECT_EQ(d.decision, Decision::kWait);
  EXPECT_NE(d.reason.find("Pending"), std::string::npos);
  PodView no_ip = RunningPod("5");
  no_ip.ip.clear();
  EXPECT_EQ(DecideCapture(no_ip, {}).decision, Decision::kWait);
}

TEST(DecideCapture, InvalidValueIsReportedEvenBeforeRunning) {
  PodView pod = RunningPod("abc");
  pod.phase = "Pending";
  Desired d = DecideCapture(pod, {});
  EXPECT_EQ(d.decision, Decision::kInvalid);
  EXPECT_NE(d.reason.find("\"abc\""), std::string::npos);
  EXPECT_EQ(DecideCapture(RunningPod("101"), Options(100, false)).decision,
            Decision::kInvalid);
}

TEST(DecideCapture, HostNetworkRefusedUnlessAllowed) {
  PodView pod = RunningPod("2");
  pod.host_network = true;
  Desired refused = DecideCapture(pod, {});
  EXPECT_EQ(refused.decision, Decision::kRefused);
  EXPECT_NE(refused.reason.find("hostNetwork"), std::string::npos);
  EXPECT_EQ(DecideCapture(pod, Options(100, true)).decision,
            Decision::kCapture);
}

TEST(DecideCapture, NamesThatCouldEscapeADirectoryAreRefused) {
  for (const char* name : {"../etc", "a/b", "A", "", "-a", "a..b"}) {
    PodView pod = RunningPod("1");
    pod.name = name;
    EXPECT_EQ(DecideCapture(pod, {}).decision, Decision::kRefused) << name;
  }
  PodView bad_uid = RunningPod("1");
  bad_uid.uid = "../../0000-4000-8000-00000000abcd";
  EXPECT_EQ(DecideCapture(bad_uid, {}).decision, Decision::kRefused);
}

TEST(DecideCapture, OptionsAndLabelsReachTheSpec) {
  PodView pod = RunningPod("5");
  pod.option_annotations = {{"tcpdump.antrea.io/filter", "icmp"},
                            {"tcpdump.antrea.io/duration", "90s"}};
  pod.labels = {{"app", "web"}};
  Desired d = DecideCapture(pod, {});
  ASSERT_EQ(d.decision, Decision::kCapture) << d.reason;
  EXPECT_EQ(d.spec.options.filter, "icmp");
  EXPECT_EQ(d.spec.options.duration, absl::Seconds(90));
  EXPECT_EQ(d.spec.labels.at("app"), "web");
  // A changed option is a new spec (a restart); changed labels are not.
  PodView relabelled = pod;
  relabelled.labels["tier"] = "front";
  EXPECT_TRUE(DecideCapture(relabelled, {}).spec == d.spec);
  PodView refiltered = pod;
  refiltered.option_annotations["tcpdump.antrea.io/filter"] = "udp";
  EXPECT_FALSE(DecideCapture(refiltered, {}).spec == d.spec);
}

TEST(DecideCapture, BadOptionOrFilterIsInvalid) {
  PodView pod = RunningPod("5");
  pod.option_annotations = {{"tcpdump.antrea.io/snaplen", "0"}};
  Desired d = DecideCapture(pod, {});
  EXPECT_EQ(d.decision, Decision::kInvalid);
  EXPECT_NE(d.reason.find("tcpdump.antrea.io/snaplen"), std::string::npos);

  DecideOptions options;
  std::string checked;
  options.check_filter = [&checked](const std::string& filter, int snaplen) {
    checked = filter + "/" + std::to_string(snaplen);
    return absl::InvalidArgumentError("tcpdump.antrea.io/filter: syntax error");
  };
  PodView filtered = RunningPod("5");
  filtered.option_annotations = {{"tcpdump.antrea.io/filter", "tcp prot 80"},
                                 {"tcpdump.antrea.io/snaplen", "96"}};
  d = DecideCapture(filtered, options);
  EXPECT_EQ(d.decision, Decision::kInvalid);
  EXPECT_EQ(d.reason, "tcpdump.antrea.io/filter: syntax error");
  EXPECT_EQ(checked, "tcp prot 80/96");
}

TEST(DecideCapture, PodGoneOnlyWhenDeletedOrFinished) {
  EXPECT_FALSE(DecideCapture(RunningPod(nullptr), {}).pod_gone);
  PodView deleting = RunningPod("5");
  deleting.deleting = true;
  EXPECT_TRUE(DecideCapture(deleting, {}).pod_gone);
  PodView failed = RunningPod(nullptr);
  failed.phase = "Failed";
  EXPECT_TRUE(DecideCapture(failed, {}).pod_gone);
}

TEST(DecideCapture, RecordedLabelsAreBounded) {
  PodView pod = RunningPod("5");
  for (int i = 0; i < 100; ++i) {
    pod.labels[absl::StrCat("key-", 100 + i)] = std::string(63, 'v');
  }
  Desired d = DecideCapture(pod, {});
  ASSERT_EQ(d.decision, Decision::kCapture);
  EXPECT_EQ(d.spec.labels.size(), kMaxRecordedLabels);
  EXPECT_EQ(d.spec.labels.begin()->first, "key-100");
  pod.labels.clear();
  for (int i = 0; i < 40; ++i) {
    pod.labels[absl::StrCat("example.com/", std::string(240, 'k'), i)] =
        std::string(63, 'v');
  }
  d = DecideCapture(pod, {});
  size_t bytes = 0;
  for (const auto& [k, v] : d.spec.labels) bytes += k.size() + v.size();
  EXPECT_LE(bytes, kMaxRecordedLabelBytes);
  EXPECT_GT(d.spec.labels.size(), 0u);
}

TEST(NameRules, PodUid) {
  EXPECT_TRUE(IsPodUid("0a1b2c3d-0000-4000-8000-00000000abcd"));
  EXPECT_FALSE(IsPodUid("0A1B2C3D-0000-4000-8000-00000000ABCD"));
  EXPECT_FALSE(IsPodUid("0a1b2c3d-0000-4000-8000-00000000abc/"));
  EXPECT_FALSE(IsPodUid(""));
}

}  // namespace
}  // namespace pc::agent
