#include "node_agent/reconciler.h"

namespace pc::agent {

const char* ActionName(ActionType type) {
  switch (type) {
    case ActionType::kStart:
      return "start";
    case ActionType::kRestart:
      return "restart";
    case ActionType::kStop:
      return "stop";
    case ActionType::kShowPending:
      return "pending";
    case ActionType::kShowFailed:
      return "failed";
  }
  return "unknown";
}

std::vector<Action> PlanReconcile(
    const std::map<std::string, Desired>& desired,
    const std::map<std::string, CurrentCapture>& current) {
  std::vector<Action> stops;
  std::vector<Action> others;

  for (const auto& [uid, have] : current) {
    auto it = desired.find(uid);
    if (it == desired.end()) {
      // No longer in the node's list: deleted or moved away.
      Desired gone;
      gone.pod_gone = true;
      stops.push_back({ActionType::kStop, uid, gone});
    } else if (it->second.decision == Decision::kNone) {
      stops.push_back({ActionType::kStop, uid, it->second});
    }
  }

  for (const auto& [uid, want] : desired) {
    auto it = current.find(uid);
    const CurrentCapture* have = it == current.end() ? nullptr : &it->second;
    switch (want.decision) {
      case Decision::kNone:
        break;
      case Decision::kCapture:
        if (have == nullptr || have->decision != Decision::kCapture) {
          others.push_back({ActionType::kStart, uid, want});
        } else if (!(have->spec == want.spec)) {
          others.push_back({ActionType::kRestart, uid, want});
        }
        // Same spec: running, starting, in backoff or failed for good; the
        // capture's own supervisor owns those transitions.
        break;
      case Decision::kWait:
        if (have == nullptr || have->decision != Decision::kWait ||
            have->reason != want.reason) {
          others.push_back({ActionType::kShowPending, uid, want});
        }
        break;
      case Decision::kInvalid:
      case Decision::kRefused:
        if (have == nullptr || have->decision != want.decision ||
            have->reason != want.reason) {
          others.push_back({ActionType::kShowFailed, uid, want});
        }
        break;
    }
  }
  stops.insert(stops.end(), others.begin(), others.end());
  return stops;
}

}  // namespace pc::agent
