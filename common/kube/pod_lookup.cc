#include "common/kube/pod_lookup.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "common/kube/kube_json.h"
#include "common/kube/names.h"
#include "common/status_macros.h"

namespace pc {
namespace kube {

absl::StatusOr<Pod> GetPod(HttpClient& client, absl::string_view ns,
                           absl::string_view name,
                           const std::atomic<bool>* cancel) {
  if (!IsDns1123Label(ns) || !IsDns1123Subdomain(name)) {
    return absl::InvalidArgumentError(
        absl::StrCat("not a valid pod reference: \"", SanitizeUtf8(ns, 64), "/",
                     SanitizeUtf8(name, 253), "\""));
  }
  ASSIGN_OR_RETURN(
      HttpResponse response,
      client.Do("GET", absl::StrCat("/api/v1/namespaces/", ns, "/pods/", name),
                "", "application/json", cancel));
  if (response.status_code != 200) {
    return HttpError(response.status_code, response.body);
  }
  Pod pod;
  absl::Status parsed = ParseJson(response.body, &pod);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "pod ", ns, "/", name, ": unreadable answer: ", parsed.message()));
  }
  return pod;
}

}  // namespace kube
}  // namespace pc
