// Kubernetes label selectors over a capture's pod labels, as kubectl's -l:
// "app=web", "app==web", "tier!=db", "env in (prod,staging)",
// "env notin (dev)", "canary" (has the label), "!canary" (lacks it); commas
// AND the requirements. Keys and values are checked as Kubernetes checks
// them (a key: optional DNS-subdomain prefix and "/", then a name of at most
// 63 characters; a value: at most 63 characters, possibly empty).
//
// Immutable after Parse; thread-safe.
#ifndef COMMON_LABEL_SELECTOR_H_
#define COMMON_LABEL_SELECTOR_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/map.h"

namespace pc {

class LabelSelector {
 public:
  using Labels = google::protobuf::Map<std::string, std::string>;

  // The empty selector (also from Parse("")) matches everything.
  LabelSelector() = default;

  // InvalidArgument naming the offending part and what was expected.
  static absl::StatusOr<LabelSelector> Parse(absl::string_view text);

  bool Matches(const Labels& labels) const;
  bool empty() const { return requirements_.empty(); }

 private:
  enum class Op { kEquals, kNotEquals, kIn, kNotIn, kExists, kNotExists };
  struct Requirement {
    std::string key;
    Op op;
    std::vector<std::string> values;
  };

  std::vector<Requirement> requirements_;
};

}  // namespace pc

#endif  // COMMON_LABEL_SELECTOR_H_
