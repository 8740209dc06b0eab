// Compares what the Pods of this node want (Desired, by pod uid) with what the
// agent has (CurrentCapture, by pod uid) and lists the actions that make them
// agree. Pure logic, thread-safe; the CaptureManager carries the actions out.
#ifndef NODE_AGENT_RECONCILER_H_
#define NODE_AGENT_RECONCILER_H_

#include <map>
#include <string>
#include <vector>

#include "node_agent/desired_capture.h"

namespace pc::agent {

// What the agent holds for one pod uid.
struct CurrentCapture {
  // kCapture for a capture with tcpdump (running, starting or in backoff);
  // kWait, kInvalid, kRefused for an entry that only shows a state.
  Decision decision = Decision::kNone;
  std::string reason;
  CaptureSpec spec;
  // A running capture that failed for good (netns gone, budget, tcpdump keeps
  // dying) stays FAILED until its spec changes: no retry storm.
  bool failed = false;
};

enum class ActionType {
  kStart,        // start a capture for desired.spec
  kRestart,      // same pod, new spec (N or IP changed): new tcpdump run
  kStop,         // stop tcpdump, delete the node's files, forget the entry
  kShowPending,  // record/refresh a PENDING entry (stops tcpdump if running)
  kShowFailed,   // record/refresh a FAILED entry + Warning Event
};

struct Action {
  ActionType type;
  std::string uid;
  // For kStop: kNone, with pod_gone when the Pod is deleted, finished or
  // no longer listed (otherwise the annotation was removed).
  Desired desired;
};

const char* ActionName(ActionType type);

// Actions in a stable order: stops first (they free budget), then the rest by
// pod uid.
std::vector<Action> PlanReconcile(
    const std::map<std::string, Desired>& desired,
    const std::map<std::string, CurrentCapture>& current);

}  // namespace pc::agent

#endif  // NODE_AGENT_RECONCILER_H_
