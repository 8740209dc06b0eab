#include "node_agent/reconciler.h"

#include "gtest/gtest.h"

namespace pc::agent {
namespace {

Desired Want(Decision decision, int n = 3, const char* ip = "198.18.1.2",
             const char* reason = "") {
  Desired d;
  d.decision = decision;
  d.reason = reason;
  d.spec.ns = "default";
  d.spec.pod = "p";
  d.spec.uid = "u";
  d.spec.ip = ip;
  d.spec.max_files = n;
  return d;
}

CurrentCapture Have(const Desired& d) {
  CurrentCapture c;
  c.decision = d.decision;
  c.reason = d.reason;
  c.spec = d.spec;
  return c;
}

TEST(PlanReconcile, StartsWhatIsWantedAndNew) {
  auto actions = PlanReconcile({{"u", Want(Decision::kCapture)}}, {});
  ASSERT_EQ(actions.size(), 1u);
  EXPECT_EQ(actions[0].type, ActionType::kStart);
  EXPECT_EQ(actions[0].desired.spec.max_files, 3);
}

TEST(PlanReconcile, NothingToDoWhenInAgreement) {
  Desired d = Want(Decision::kCapture);
  EXPECT_TRUE(PlanReconcile({{"u", d}}, {{"u", Have(d)}}).empty());
  Desired pending = Want(Decision::kWait, 3, "", "waiting");
  EXPECT_TRUE(PlanReconcile({{"u", pending}}, {{"u", Have(pending)}}).empty());
}

TEST(PlanReconcile, StopsWhenAnnotationRemovedOrPodGone) {
  Desired d = Want(Decision::kCapture);
  auto gone = PlanReconcile({}, {{"u", Have(d)}});
  ASSERT_EQ(gone.size(), 1u);
  EXPECT_EQ(gone[0].type, ActionType::kStop);
  EXPECT_TRUE(gone[0].desired.pod_gone);
  auto removed =
      PlanReconcile({{"u", Want(Decision::kNone)}}, {{"u", Have(d)}});
  ASSERT_EQ(removed.size(), 1u);
  EXPECT_EQ(removed[0].type, ActionType::kStop);
  EXPECT_FALSE(removed[0].desired.pod_gone);
  Desired deleted = Want(Decision::kNone);
  deleted.pod_gone = true;
  auto finished = PlanReconcile({{"u", deleted}}, {{"u", Have(d)}});
  ASSERT_EQ(finished.size(), 1u);
  EXPECT_TRUE(finished[0].desired.pod_gone);
}

TEST(PlanReconcile, RestartsWhenAnOptionChanges) {
  Desired d = Want(Decision::kCapture);
  Desired filtered = d;
  filtered.spec.options.filter = "icmp";
  auto actions = PlanReconcile({{"u", filtered}}, {{"u", Have(d)}});
  ASSERT_EQ(actions.size(), 1u);
  EXPECT_EQ(actions[0].type, ActionType::kRestart);
  Desired relabelled = d;
  relabelled.spec.labels["app"] = "web";
  EXPECT_TRUE(PlanReconcile({{"u", relabelled}}, {{"u", Have(d)}}).empty());
}

TEST(PlanReconcile, RestartsWhenNOrIpChanges) {
  Desired d = Want(Decision::kCapture);
  auto more_files =
      PlanReconcile({{"u", Want(Decision::kCapture, 7)}}, {{"u", Have(d)}});
  ASSERT_EQ(more_files.size(), 1u);
  EXPECT_EQ(more_files[0].type, ActionType::kRestart);
  auto new_ip = PlanReconcile(
      {{"u", Want(Decision::kCapture, 3, "198.18.1.9")}}, {{"u", Have(d)}});
  ASSERT_EQ(new_ip.size(), 1u);
  EXPECT_EQ(new_ip[0].type, ActionType::kRestart);
}

TEST(PlanReconcile, InvalidValueShownOnceAndReplacesACapture) {
  Desired bad = Want(Decision::kInvalid, 0, "", "tcpdump.antrea.io=\"x\"");
  auto first = PlanReconcile({{"u", bad}}, {});
  ASSERT_EQ(first.size(), 1u);
  EXPECT_EQ(first[0].type, ActionType::kShowFailed);
  EXPECT_TRUE(PlanReconcile({{"u", bad}}, {{"u", Have(bad)}}).empty());
  auto replaced =
      PlanReconcile({{"u", bad}}, {{"u", Have(Want(Decision::kCapture))}});
  ASSERT_EQ(replaced.size(), 1u);
  EXPECT_EQ(replaced[0].type, ActionType::kShowFailed);
}

TEST(PlanReconcile, FixedValueStartsAfterFailure) {
  Desired bad = Want(Decision::kInvalid, 0, "", "bad");
  auto actions =
      PlanReconcile({{"u", Want(Decision::kCapture)}}, {{"u", Have(bad)}});
  ASSERT_EQ(actions.size(), 1u);
  EXPECT_EQ(actions[0].type, ActionType::kStart);
}

TEST(PlanReconcile, StopsComeFirst) {
  Desired d = Want(Decision::kCapture);
  auto actions = PlanReconcile({{"a", d}}, {{"z", Have(d)}});
  ASSERT_EQ(actions.size(), 2u);
  EXPECT_EQ(actions[0].type, ActionType::kStop);
  EXPECT_EQ(actions[0].uid, "z");
  EXPECT_EQ(actions[1].type, ActionType::kStart);
}

}  // namespace
}  // namespace pc::agent
